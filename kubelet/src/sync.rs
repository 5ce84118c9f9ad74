//! What a pod worker must do next: a pure function of the pod's spec and what the runtime
//! reports (upstream's `computePodActions`), so every rule is unit-tested without containerd.
//!
//! The order of a pod's life: a sandbox (network namespace, pod IP), then the init
//! containers one at a time, each to a successful exit, then every app container. Exited
//! containers restart as `restartPolicy` says, spaced by the crash-loop back-off (see
//! [`Backoff`]). A sandbox that dies takes the pod's containers with it and is recreated,
//! unless the pod can never run again (`restartPolicy: Never` and something already ran).

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Container, Pod};

/// Nanoseconds since the Unix epoch, as CRI reports times.
pub type Nanos = i64;
const SECOND: Nanos = 1_000_000_000;

/// Upstream's crash-loop back-off: 10 s doubling to 5 min, forgotten after 10 min quiet.
pub const BACKOFF_INITIAL: Nanos = 10 * SECOND;
pub const BACKOFF_MAX: Nanos = 300 * SECOND;

/// A container state as CRI reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Created,
    Running,
    Exited,
    Unknown,
}

/// One sandbox of a pod, from `ListPodSandbox` + `PodSandboxStatus`.
#[derive(Clone, Debug, PartialEq)]
pub struct SandboxInfo {
    pub id: String,
    pub attempt: u32,
    pub ready: bool,
    pub created_at: Nanos,
    pub ip: Option<String>,
}

/// One container instance (any restart of any container of the pod).
#[derive(Clone, Debug, PartialEq)]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    pub attempt: u32,
    pub sandbox_id: String,
    pub state: State,
    pub created_at: Nanos,
    pub started_at: Nanos,
    pub finished_at: Nanos,
    pub exit_code: i32,
    pub reason: String,
    pub message: String,
    pub image: String,
    pub image_ref: String,
}

/// Everything the runtime knows about one pod.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RuntimePod {
    /// Newest first.
    pub sandboxes: Vec<SandboxInfo>,
    /// Newest first.
    pub containers: Vec<ContainerInfo>,
}

impl RuntimePod {
    pub fn sort(&mut self) {
        self.sandboxes.sort_by_key(|s| std::cmp::Reverse(s.created_at));
        self.containers.sort_by(|a, b| b.attempt.cmp(&a.attempt).then(b.created_at.cmp(&a.created_at)));
    }

    /// The newest instance of a container, if it ever existed.
    pub fn latest(&self, name: &str) -> Option<&ContainerInfo> {
        self.containers.iter().find(|c| c.name == name)
    }

    /// The newest instance of a container in the given sandbox.
    pub fn latest_in(&self, name: &str, sandbox: &str) -> Option<&ContainerInfo> {
        self.containers.iter().find(|c| c.name == name && c.sandbox_id == sandbox)
    }

    pub fn current_sandbox(&self) -> Option<&SandboxInfo> {
        self.sandboxes.first()
    }
}

/// The crash-loop back-off of one container, as upstream's `flowcontrol.Backoff`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Backoff {
    /// The current delay (0: no entry).
    pub delay: Nanos,
    /// When the exit that set it happened.
    pub last_update: Nanos,
}

impl Backoff {
    /// Whether a container that exited at `finished` must still wait at `now`.
    pub fn in_backoff_since(&self, finished: Nanos, now: Nanos) -> bool {
        if self.delay == 0 || self.expired(finished) {
            return false;
        }
        now - finished < self.delay
    }

    /// Records a restart after an exit at `finished`: the next wait doubles.
    pub fn next(&mut self, finished: Nanos) {
        if self.delay == 0 || self.expired(finished) {
            self.delay = BACKOFF_INITIAL;
        } else {
            self.delay = (self.delay * 2).min(BACKOFF_MAX);
        }
        self.last_update = finished;
    }

    /// Until when a container that exited at `finished` waits.
    pub fn until(&self, finished: Nanos) -> Nanos {
        finished + self.delay
    }

    fn expired(&self, at: Nanos) -> bool {
        // A container that ran quietly for twice the maximum starts over at 10 s.
        at - self.last_update > 2 * BACKOFF_MAX
    }
}

/// The worker's decision for one sync.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodActions {
    /// Stop every container and the sandbox (before a new sandbox, or because the pod is done).
    pub kill_pod: bool,
    /// Create a sandbox with this attempt number.
    pub create_sandbox: Option<u32>,
    /// Start this init container (index into `spec.initContainers`) with this attempt.
    pub start_init: Option<(usize, u32)>,
    /// Start these app containers (index into `spec.containers`) with these attempts.
    pub start: Vec<(usize, u32)>,
    /// Containers to stop (failed liveness, or not in the spec any more).
    pub kill: Vec<(String, &'static str)>,
    /// Containers that wait out a crash-loop back-off: name → until.
    pub backing_off: Vec<(String, Nanos)>,
}

/// What the kubelet's probes say about running containers, by container ID.
pub trait ProbeView {
    /// `Some(false)` when the liveness probe failed past its threshold.
    fn live(&self, container_id: &str) -> Option<bool>;
}

impl ProbeView for HashMap<String, bool> {
    fn live(&self, id: &str) -> Option<bool> {
        self.get(id).copied()
    }
}

fn restart_policy(pod: &Pod) -> &str {
    pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()).unwrap_or("Always")
}

/// Whether an exited container should run again under the pod's restart policy.
pub fn should_restart(pod: &Pod, c: &ContainerInfo) -> bool {
    match restart_policy(pod) {
        "Never" => false,
        "OnFailure" => c.exit_code != 0,
        _ => true,
    }
}

/// Decides the next step for a pod that should be running.
pub fn compute_pod_actions(
    pod: &Pod,
    rt: &RuntimePod,
    backoffs: &HashMap<String, Backoff>,
    probes: &dyn ProbeView,
    now: Nanos,
) -> PodActions {
    let mut a = PodActions::default();
    let spec = pod.spec.clone().unwrap_or_default();
    let init = spec.init_containers.clone().unwrap_or_default();
    let host_network = spec.host_network.unwrap_or(false);

    // 1. The sandbox.
    let sandbox = rt.current_sandbox();
    let sandbox_ok = sandbox.is_some_and(|s| s.ready && (host_network || s.ip.is_some()));
    if !sandbox_ok {
        let attempt = sandbox.map_or(0, |s| s.attempt + 1);
        a.kill_pod = sandbox.is_some() || !rt.containers.is_empty();
        // A Never pod whose containers already ran cannot start over in a fresh sandbox.
        if restart_policy(pod) == "Never" && !rt.containers.is_empty() {
            return a;
        }
        a.create_sandbox = Some(attempt);
        if !init.is_empty() {
            a.start_init = Some((0, next_attempt(rt, &init[0].name)));
        } else {
            a.start = spec.containers.iter().enumerate().map(|(i, c)| (i, next_attempt(rt, &c.name))).collect();
        }
        return a;
    }
    let sandbox = sandbox.expect("checked above");

    // Containers of this sandbox not in the spec any more (or from an older sandbox) go.
    let names: Vec<&str> = init.iter().chain(spec.containers.iter()).map(|c| c.name.as_str()).collect();
    for c in &rt.containers {
        if c.state == State::Running && (!names.contains(&c.name.as_str()) || c.sandbox_id != sandbox.id) {
            a.kill.push((c.id.clone(), "not part of the pod any more"));
        }
    }

    // 2. Init containers, in order, each to success.
    for (i, c) in init.iter().enumerate() {
        match rt.latest_in(&c.name, &sandbox.id) {
            Some(s) if s.state == State::Exited && s.exit_code == 0 => continue,
            Some(s) if matches!(s.state, State::Running | State::Created) => return a,
            Some(s) if s.state == State::Exited => {
                // Failed init container: Never → the pod has failed; else retry with back-off.
                if restart_policy(pod) == "Never" {
                    a.kill_pod = true;
                    return a;
                }
                if let Some(until) = backoff_wait(backoffs, c, s, now) {
                    a.backing_off.push((c.name.clone(), until));
                } else {
                    a.start_init = Some((i, s.attempt + 1));
                }
                return a;
            }
            _ => {
                a.start_init = Some((i, next_attempt(rt, &c.name)));
                return a;
            }
        }
    }

    // 3. App containers.
    for (i, c) in spec.containers.iter().enumerate() {
        match rt.latest_in(&c.name, &sandbox.id) {
            None => a.start.push((i, next_attempt(rt, &c.name))),
            Some(s) if s.state == State::Running => {
                if probes.live(&s.id) == Some(false) {
                    a.kill.push((s.id.clone(), "failed its liveness probe and will be restarted"));
                }
            }
            Some(s) if s.state == State::Created => {
                // Created but never started (the kubelet died in between): start it over.
                a.kill.push((s.id.clone(), "was created but never started"));
                a.start.push((i, s.attempt + 1));
            }
            Some(s) => {
                if !should_restart(pod, s) {
                    continue;
                }
                if let Some(until) = backoff_wait(backoffs, c, s, now) {
                    a.backing_off.push((c.name.clone(), until));
                } else {
                    a.start.push((i, s.attempt + 1));
                }
            }
        }
    }
    a
}

fn next_attempt(rt: &RuntimePod, name: &str) -> u32 {
    rt.latest(name).map_or(0, |c| c.attempt + 1)
}

fn backoff_wait(backoffs: &HashMap<String, Backoff>, c: &Container, s: &ContainerInfo, now: Nanos) -> Option<Nanos> {
    let b = backoffs.get(&c.name)?;
    b.in_backoff_since(s.finished_at, now).then(|| b.until(s.finished_at))
}

/// Whether every container of the pod has finished for good: nothing runs and nothing will
/// be restarted (the pod is `Succeeded` or `Failed`).
pub fn pod_is_finished(pod: &Pod, rt: &RuntimePod) -> bool {
    let spec = pod.spec.clone().unwrap_or_default();
    let Some(sandbox) = rt.current_sandbox() else { return false };
    if restart_policy(pod) == "Never" {
        if let Some(init) = &spec.init_containers {
            if init.iter().any(|c| {
                rt.latest_in(&c.name, &sandbox.id).is_some_and(|s| s.state == State::Exited && s.exit_code != 0)
            }) {
                return true;
            }
        }
    }
    spec.containers
        .iter()
        .all(|c| rt.latest(&c.name).is_some_and(|s| s.state == State::Exited && !should_restart(pod, s)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "default", "uid": "u1"}, "spec": v}))
            .unwrap()
    }

    fn sandbox(id: &str, attempt: u32, ready: bool) -> SandboxInfo {
        SandboxInfo { id: id.into(), attempt, ready, created_at: attempt as i64, ip: Some("10.244.0.5".into()) }
    }

    fn ctr(name: &str, attempt: u32, state: State, exit: i32, finished: Nanos) -> ContainerInfo {
        ContainerInfo {
            id: format!("{name}-{attempt}"),
            name: name.into(),
            attempt,
            sandbox_id: "s0".into(),
            state,
            created_at: attempt as i64,
            started_at: 0,
            finished_at: finished,
            exit_code: exit,
            reason: String::new(),
            message: String::new(),
            image: "busybox".into(),
            image_ref: String::new(),
        }
    }

    fn rt(sandboxes: Vec<SandboxInfo>, containers: Vec<ContainerInfo>) -> RuntimePod {
        let mut r = RuntimePod { sandboxes, containers };
        r.sort();
        r
    }

    fn none() -> HashMap<String, bool> {
        HashMap::new()
    }

    #[test]
    fn a_new_pod_gets_a_sandbox_and_all_app_containers() {
        let p = pod(json!({"containers": [{"name": "a"}, {"name": "b"}]}));
        let a = compute_pod_actions(&p, &RuntimePod::default(), &HashMap::new(), &none(), 0);
        assert_eq!(a.create_sandbox, Some(0));
        assert!(!a.kill_pod);
        assert_eq!(a.start, vec![(0, 0), (1, 0)]);
    }

    #[test]
    fn init_containers_run_one_at_a_time_before_app_containers() {
        let p = pod(json!({"initContainers": [{"name": "i1"}, {"name": "i2"}], "containers": [{"name": "a"}]}));
        let a = compute_pod_actions(&p, &RuntimePod::default(), &HashMap::new(), &none(), 0);
        assert_eq!((a.create_sandbox, a.start_init, a.start.len()), (Some(0), Some((0, 0)), 0));

        let running = rt(vec![sandbox("s0", 0, true)], vec![ctr("i1", 0, State::Running, 0, 0)]);
        let a = compute_pod_actions(&p, &running, &HashMap::new(), &none(), 0);
        assert_eq!(a, PodActions::default(), "wait for the running init container");

        let first_done = rt(vec![sandbox("s0", 0, true)], vec![ctr("i1", 0, State::Exited, 0, 5)]);
        let a = compute_pod_actions(&p, &first_done, &HashMap::new(), &none(), 0);
        assert_eq!(a.start_init, Some((1, 0)));

        let all_done = rt(
            vec![sandbox("s0", 0, true)],
            vec![ctr("i1", 0, State::Exited, 0, 5), ctr("i2", 0, State::Exited, 0, 6)],
        );
        let a = compute_pod_actions(&p, &all_done, &HashMap::new(), &none(), 0);
        assert_eq!((a.start_init, a.start), (None, vec![(0, 0)]));
    }

    #[test]
    fn a_failed_init_container_fails_a_never_pod_and_retries_otherwise() {
        let failed = rt(vec![sandbox("s0", 0, true)], vec![ctr("i1", 0, State::Exited, 1, 5)]);
        let never =
            pod(json!({"restartPolicy": "Never", "initContainers": [{"name": "i1"}], "containers": [{"name": "a"}]}));
        let a = compute_pod_actions(&never, &failed, &HashMap::new(), &none(), 0);
        assert!(a.kill_pod && a.start_init.is_none() && a.start.is_empty());
        assert!(pod_is_finished(&never, &failed));

        let always = pod(json!({"initContainers": [{"name": "i1"}], "containers": [{"name": "a"}]}));
        let a = compute_pod_actions(&always, &failed, &HashMap::new(), &none(), 0);
        assert_eq!(a.start_init, Some((0, 1)));
        assert!(!pod_is_finished(&always, &failed));
    }

    #[test]
    fn restart_policies_decide_who_runs_again() {
        let exited_ok = rt(vec![sandbox("s0", 0, true)], vec![ctr("a", 0, State::Exited, 0, 5)]);
        let exited_bad = rt(vec![sandbox("s0", 0, true)], vec![ctr("a", 0, State::Exited, 3, 5)]);
        let by = |policy: &str, r: &RuntimePod| {
            let p = pod(json!({"restartPolicy": policy, "containers": [{"name": "a"}]}));
            (compute_pod_actions(&p, r, &HashMap::new(), &none(), 0).start, pod_is_finished(&p, r))
        };
        assert_eq!(by("Always", &exited_ok), (vec![(0, 1)], false));
        assert_eq!(by("Always", &exited_bad), (vec![(0, 1)], false));
        assert_eq!(by("OnFailure", &exited_ok), (vec![], true));
        assert_eq!(by("OnFailure", &exited_bad), (vec![(0, 1)], false));
        assert_eq!(by("Never", &exited_ok), (vec![], true));
        assert_eq!(by("Never", &exited_bad), (vec![], true));
    }

    #[test]
    fn crash_loop_back_off_doubles_to_five_minutes_and_resets_after_quiet() {
        let mut b = Backoff::default();
        // First exit: restart at once, then 10 s, 20 s, 40 s ... capped at 300 s.
        assert!(!b.in_backoff_since(0, 0));
        b.next(0);
        assert!(b.in_backoff_since(SECOND, 5 * SECOND), "second exit waits 10 s");
        assert!(!b.in_backoff_since(SECOND, 11 * SECOND + 1));
        let mut delays = vec![];
        for i in 0..8 {
            b.next(SECOND * (i + 2));
            delays.push(b.delay / SECOND);
        }
        assert_eq!(delays, vec![20, 40, 80, 160, 300, 300, 300, 300]);
        // A container that ran for more than 10 minutes starts over at 10 s.
        b.next(b.last_update + 11 * 60 * SECOND);
        assert_eq!(b.delay, BACKOFF_INITIAL);
    }

    #[test]
    fn a_crashing_container_waits_out_its_back_off() {
        let p = pod(json!({"containers": [{"name": "a"}]}));
        let r = rt(vec![sandbox("s0", 0, true)], vec![ctr("a", 2, State::Exited, 1, 100 * SECOND)]);
        let backoffs = HashMap::from([("a".to_string(), Backoff { delay: 20 * SECOND, last_update: 90 * SECOND })]);
        let a = compute_pod_actions(&p, &r, &backoffs, &none(), 105 * SECOND);
        assert!(a.start.is_empty());
        assert_eq!(a.backing_off, vec![("a".to_string(), 120 * SECOND)]);
        let a = compute_pod_actions(&p, &r, &backoffs, &none(), 121 * SECOND);
        assert_eq!(a.start, vec![(0, 3)], "restart count keeps counting");
    }

    #[test]
    fn a_dead_sandbox_is_replaced_and_everything_restarts() {
        let p = pod(json!({"containers": [{"name": "a"}]}));
        let r = rt(vec![sandbox("s0", 0, false)], vec![ctr("a", 0, State::Exited, 137, 5)]);
        let a = compute_pod_actions(&p, &r, &HashMap::new(), &none(), 0);
        assert!(a.kill_pod);
        assert_eq!(a.create_sandbox, Some(1));
        assert_eq!(a.start, vec![(0, 1)]);
        // ...but a Never pod that already ran is over.
        let never = pod(json!({"restartPolicy": "Never", "containers": [{"name": "a"}]}));
        let a = compute_pod_actions(&never, &r, &HashMap::new(), &none(), 0);
        assert_eq!(a.create_sandbox, None);
    }

    #[test]
    fn a_failed_liveness_probe_kills_and_strays_are_removed() {
        let p = pod(json!({"containers": [{"name": "a"}]}));
        let r = rt(
            vec![sandbox("s0", 0, true)],
            vec![ctr("a", 0, State::Running, 0, 0), ctr("old", 0, State::Running, 0, 0)],
        );
        let probes = HashMap::from([("a-0".to_string(), false)]);
        let a = compute_pod_actions(&p, &r, &HashMap::new(), &probes, 0);
        let killed: Vec<&str> = a.kill.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(killed, vec!["old-0", "a-0"]);
        assert!(a.start.is_empty(), "restart after the kill shows up as an exit");
    }

    #[test]
    fn host_network_pods_need_no_ip() {
        let p = pod(json!({"hostNetwork": true, "containers": [{"name": "a"}]}));
        let mut s = sandbox("s0", 0, true);
        s.ip = None;
        let a = compute_pod_actions(&p, &rt(vec![s], vec![]), &HashMap::new(), &none(), 0);
        assert_eq!((a.create_sandbox, a.start), (None, vec![(0, 0)]));
    }
}
