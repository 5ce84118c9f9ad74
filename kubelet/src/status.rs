//! A pod's API status from what the runtime reports: phase, conditions and one
//! `containerStatus` per container, as upstream's `generateAPIPodStatus` and `getPhase`.
//! Pure functions; the status manager (`pods.rs`) writes the result when it changed.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus,
    Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::sync::{should_restart, ContainerInfo, Nanos, RuntimePod, State};

/// What the kubelet itself knows beyond the runtime: why a container is not running yet,
/// and what the probes say.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// Container name → (reason, message) of the last failed start (image, config, create).
    pub waiting: HashMap<String, (String, String)>,
    /// Container name → until when it waits out a crash-loop back-off.
    pub backing_off: HashMap<String, Nanos>,
    /// Container ID → readiness probe result (absent: no result yet).
    pub ready: HashMap<String, bool>,
    /// Container ID → startup probe passed (absent: no startup probe or no result yet).
    pub started: HashMap<String, bool>,
    /// Node's address for `status.hostIP`.
    pub host_ip: Option<String>,
}

pub fn time(n: Nanos) -> Option<Time> {
    (n > 0).then(|| Time(Timestamp::from_nanosecond(n as i128).unwrap_or(Timestamp::UNIX_EPOCH)))
}

fn terminated(c: &ContainerInfo) -> ContainerState {
    let reason = if !c.reason.is_empty() {
        c.reason.clone()
    } else if c.exit_code == 0 {
        "Completed".into()
    } else {
        "Error".into()
    };
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            container_id: Some(format!("containerd://{}", c.id)),
            exit_code: c.exit_code,
            reason: Some(reason),
            message: (!c.message.is_empty()).then(|| c.message.clone()),
            started_at: time(c.started_at),
            finished_at: time(c.finished_at),
            signal: None,
        }),
        ..Default::default()
    }
}

fn waiting(reason: &str, message: Option<String>) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting { reason: Some(reason.into()), message }),
        ..Default::default()
    }
}

/// Whether a container has a probe of each kind.
fn has_readiness(c: &Container) -> bool {
    c.readiness_probe.is_some()
}

fn container_status(
    pod: &Pod,
    spec: &Container,
    rt: &RuntimePod,
    obs: &Observed,
    sandbox: Option<&str>,
    is_init: bool,
) -> ContainerStatus {
    let name = &spec.name;
    let mut instances = rt.containers.iter().filter(|c| &c.name == name);
    let latest = instances.next();
    let previous = instances.next();
    let mut st = ContainerStatus {
        name: name.clone(),
        image: crate::spec::normalize_image(spec.image.as_deref().unwrap_or_default()),
        image_id: String::new(),
        restart_count: latest.map_or(0, |c| c.attempt as i32),
        ready: false,
        started: Some(false),
        ..Default::default()
    };
    let pod_ref = || {
        let m = &pod.metadata;
        format!(
            "{}_{}({})",
            m.name.as_deref().unwrap_or(""),
            m.namespace.as_deref().unwrap_or(""),
            m.uid.as_deref().unwrap_or("")
        )
    };
    match latest {
        None => {
            let (reason, message) =
                obs.waiting.get(name).cloned().map_or(("ContainerCreating".to_string(), None), |(r, m)| (r, Some(m)));
            let reason = if is_init && reason == "ContainerCreating" { "PodInitializing".to_string() } else { reason };
            st.state = Some(waiting(&reason, message));
        }
        Some(c) => {
            st.container_id = Some(format!("containerd://{}", c.id));
            st.image_id = c.image_ref.clone();
            match c.state {
                State::Running => {
                    let started = obs.started.get(&c.id).copied().unwrap_or(spec.startup_probe.is_none());
                    st.started = Some(started);
                    st.ready = started && obs.ready.get(&c.id).copied().unwrap_or(!has_readiness(spec));
                    st.state = Some(ContainerState {
                        running: Some(ContainerStateRunning { started_at: time(c.started_at) }),
                        ..Default::default()
                    });
                    if let Some(p) = previous {
                        st.last_state = Some(terminated(p));
                    }
                }
                State::Exited | State::Unknown
                    if sandbox.is_some_and(|s| s == c.sandbox_id) || !should_restart(pod, c) =>
                {
                    if let Some((reason, message)) = obs.waiting.get(name) {
                        // A restart failed (e.g. the image disappeared): waiting, last state = the exit.
                        st.state = Some(waiting(reason, Some(message.clone())));
                        st.last_state = Some(terminated(c));
                    } else if let Some(until) = obs.backing_off.get(name) {
                        let delay = (until - c.finished_at).max(0) / 1_000_000_000;
                        st.state = Some(waiting(
                            "CrashLoopBackOff",
                            Some(format!("back-off {}s restarting failed container={name} pod={}", delay, pod_ref())),
                        ));
                        st.last_state = Some(terminated(c));
                    } else if should_restart(pod, c) && !(is_init && c.exit_code == 0) {
                        // About to be restarted by the next sync.
                        st.state = Some(terminated(c));
                    } else {
                        st.state = Some(terminated(c));
                        if let Some(p) = previous {
                            st.last_state = Some(terminated(p));
                        }
                    }
                }
                _ => {
                    // Created but not started, or from a sandbox that is being replaced.
                    let reason = if is_init { "PodInitializing" } else { "ContainerCreating" };
                    st.state = Some(waiting(reason, None));
                    if c.state == State::Exited {
                        st.last_state = Some(terminated(c));
                    }
                }
            }
        }
    }
    st
}

fn condition(ty: &str, ok: bool, reason: Option<&str>, message: Option<String>, old: &PodStatus) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    // Keep the transition time while the status is unchanged, so writes are no-ops.
    let previous = old.conditions.iter().flatten().find(|c| c.type_ == ty);
    let last_transition_time = match previous {
        Some(p) if p.status == status => p.last_transition_time.clone(),
        _ => Some(Time(Timestamp::now())),
    };
    PodCondition {
        type_: ty.into(),
        status: status.into(),
        reason: if ok { None } else { reason.map(Into::into) },
        message: if ok { None } else { message },
        last_transition_time,
        ..Default::default()
    }
}

/// Upstream's `getPhase`.
pub fn phase(pod: &Pod, init: &[ContainerStatus], app: &[ContainerStatus]) -> &'static str {
    let policy = pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()).unwrap_or("Always");
    let term = |s: &ContainerStatus| s.state.as_ref().and_then(|s| s.terminated.as_ref()).map(|t| t.exit_code);
    let last_term =
        |s: &ContainerStatus| s.last_state.as_ref().and_then(|s| s.terminated.as_ref()).map(|t| t.exit_code);
    // Init containers: any not yet successful keeps the pod Pending (or fails it under Never).
    for s in init {
        match term(s) {
            Some(0) => continue,
            Some(_) if policy == "Never" => return "Failed",
            _ => {
                if s.state.as_ref().is_some_and(|st| st.waiting.is_some())
                    && last_term(s).is_some_and(|c| c != 0)
                    && policy == "Never"
                {
                    return "Failed";
                }
                return "Pending";
            }
        }
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for s in app {
        let st = s.state.clone().unwrap_or_default();
        if st.running.is_some() {
            running += 1;
        } else if let Some(t) = st.terminated {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if st.waiting.is_some() {
            if last_term(s).is_some() {
                stopped += 1;
            } else {
                waiting += 1;
            }
        } else {
            waiting += 1;
        }
    }
    if waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped == app.len() && !app.is_empty() {
        if policy == "Always" {
            return "Running";
        }
        if succeeded == stopped {
            return "Succeeded";
        }
        return if policy == "Never" { "Failed" } else { "Running" };
    }
    "Pending"
}

/// The whole status the kubelet reports for a pod.
pub fn pod_status(pod: &Pod, rt: &RuntimePod, obs: &Observed) -> PodStatus {
    let old = pod.status.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let sandbox = rt.current_sandbox();
    let sandbox_id = sandbox.map(|s| s.id.as_str());
    let init: Vec<ContainerStatus> =
        spec.init_containers.iter().flatten().map(|c| container_status(pod, c, rt, obs, sandbox_id, true)).collect();
    let mut app: Vec<ContainerStatus> =
        spec.containers.iter().map(|c| container_status(pod, c, rt, obs, sandbox_id, false)).collect();
    let init_done =
        init.iter().all(|s| s.state.as_ref().and_then(|s| s.terminated.as_ref()).is_some_and(|t| t.exit_code == 0));
    if !init_done {
        // App containers wait for the init containers, as upstream reports it.
        for s in &mut app {
            if let Some(w) = s.state.as_mut().and_then(|st| st.waiting.as_mut()) {
                if w.reason.as_deref() == Some("ContainerCreating") {
                    w.reason = Some("PodInitializing".into());
                }
            }
        }
    }
    let phase = match old.phase.as_deref() {
        // Terminal phases are final, as upstream.
        Some(p @ ("Succeeded" | "Failed")) => {
            if p == "Succeeded" {
                "Succeeded"
            } else {
                "Failed"
            }
        }
        _ => phase(pod, &init, &app),
    };

    let initialized =
        init.iter().all(|s| s.state.as_ref().and_then(|s| s.terminated.as_ref()).is_some_and(|t| t.exit_code == 0));
    let not_ready: Vec<&str> = app.iter().filter(|s| !s.ready).map(|s| s.name.as_str()).collect();
    let containers_ready = not_ready.is_empty() && phase == "Running";
    let not_ready_msg =
        (!not_ready.is_empty()).then(|| format!("containers with unready status: [{}]", not_ready.join(" ")));
    let readiness_gates_ok = spec
        .readiness_gates
        .iter()
        .flatten()
        .all(|g| old.conditions.iter().flatten().any(|c| c.type_ == g.condition_type && c.status == "True"));
    let (ready_reason, cr_reason) = if phase == "Succeeded" || phase == "Failed" {
        ("PodCompleted", "PodCompleted")
    } else {
        ("ContainersNotReady", "ContainersNotReady")
    };
    let init_msg = (!initialized).then(|| {
        let names: Vec<&str> = init
            .iter()
            .filter(|s| s.state.as_ref().and_then(|s| s.terminated.as_ref()).is_none_or(|t| t.exit_code != 0))
            .map(|s| s.name.as_str())
            .collect();
        format!("containers with incomplete status: [{}]", names.join(" "))
    });
    let mut conditions = vec![
        condition("PodReadyToStartContainers", sandbox.is_some_and(|s| s.ready), None, None, &old),
        condition(
            "Initialized",
            initialized,
            Some(if phase == "Succeeded" || phase == "Failed" { "PodCompleted" } else { "ContainersNotInitialized" }),
            init_msg,
            &old,
        ),
        condition("Ready", containers_ready && readiness_gates_ok, Some(ready_reason), not_ready_msg.clone(), &old),
        condition("ContainersReady", containers_ready, Some(cr_reason), not_ready_msg, &old),
    ];
    if initialized && phase != "Pending" {
        conditions[1].reason = None;
    }
    // Keep conditions owned by others (PodScheduled, readiness gates, DisruptionTarget).
    let ours = ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady"];
    let mut all: Vec<PodCondition> =
        old.conditions.iter().flatten().filter(|c| !ours.contains(&c.type_.as_str())).cloned().collect();
    all.extend(conditions);

    let pod_ip = sandbox
        .and_then(|s| s.ip.clone())
        .or_else(|| spec.host_network.unwrap_or(false).then(|| obs.host_ip.clone()).flatten());
    let start_time = old.start_time.clone().or_else(|| Some(Time(Timestamp::now())));
    PodStatus {
        phase: Some(phase.into()),
        conditions: Some(all),
        host_ip: obs.host_ip.clone(),
        host_ips: obs.host_ip.clone().map(|ip| vec![k8s_openapi::api::core::v1::HostIP { ip }]),
        pod_ip: pod_ip.clone(),
        pod_ips: pod_ip.map(|ip| vec![PodIP { ip }]),
        start_time,
        qos_class: Some(qos_class(pod).into()),
        init_container_statuses: (!init.is_empty()).then_some(init),
        container_statuses: Some(app),
        nominated_node_name: old.nominated_node_name,
        reason: old.reason,
        message: old.message,
        ..Default::default()
    }
}

/// Upstream's QoS class: Guaranteed when every container has equal CPU and memory requests
/// and limits, BestEffort when none has any, else Burstable.
pub fn qos_class(pod: &Pod) -> &'static str {
    let spec = pod.spec.clone().unwrap_or_default();
    let all: Vec<&Container> = spec.containers.iter().chain(spec.init_containers.iter().flatten()).collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in &all {
        let r = c.resources.clone().unwrap_or_default();
        let req: BTreeMap<_, _> = r.requests.unwrap_or_default();
        let lim: BTreeMap<_, _> = r.limits.unwrap_or_default();
        for res in ["cpu", "memory"] {
            let (rq, li) = (req.get(res), lim.get(res));
            if rq.is_some() || li.is_some() {
                any = true;
            }
            // A missing request defaults to the limit.
            match (rq, li) {
                (_, None) => guaranteed = false,
                (Some(a), Some(b)) if a.0 != b.0 => guaranteed = false,
                _ => {}
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::{SandboxInfo, State};
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "ns", "uid": "u"}, "spec": spec})).unwrap()
    }

    fn ctr(name: &str, attempt: u32, state: State, exit: i32) -> ContainerInfo {
        ContainerInfo {
            id: format!("{name}{attempt}"),
            name: name.into(),
            attempt,
            sandbox_id: "s".into(),
            state,
            created_at: 1,
            started_at: 1_000_000_000,
            finished_at: if state == State::Exited { 2_000_000_000 } else { 0 },
            exit_code: exit,
            reason: String::new(),
            message: String::new(),
            image: "docker.io/library/busybox:latest".into(),
            image_ref: "sha256:abc".into(),
        }
    }

    fn rt(cs: Vec<ContainerInfo>) -> RuntimePod {
        let mut r = RuntimePod {
            sandboxes: vec![SandboxInfo {
                id: "s".into(),
                attempt: 0,
                ready: true,
                created_at: 1,
                ip: Some("10.244.1.2".into()),
            }],
            containers: cs,
        };
        r.sort();
        r
    }

    fn cond<'a>(s: &'a PodStatus, ty: &str) -> &'a str {
        s.conditions.iter().flatten().find(|c| c.type_ == ty).map(|c| c.status.as_str()).unwrap()
    }

    #[test]
    fn running_pod_is_ready_with_ip_and_qos() {
        let p = pod(json!({"containers": [{"name": "a", "image": "busybox"}]}));
        let s = pod_status(&p, &rt(vec![ctr("a", 0, State::Running, 0)]), &Observed::default());
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(s.pod_ip.as_deref(), Some("10.244.1.2"));
        assert_eq!((cond(&s, "Ready"), cond(&s, "ContainersReady"), cond(&s, "Initialized")), ("True", "True", "True"));
        let c = &s.container_statuses.unwrap()[0];
        assert!(c.ready && c.state.as_ref().unwrap().running.is_some());
        assert_eq!(c.container_id.as_deref(), Some("containerd://a0"));
        assert_eq!(s.qos_class.as_deref(), Some("BestEffort"));
    }

    #[test]
    fn readiness_probe_gates_ready() {
        let p = pod(json!({"containers": [{"name": "a", "readinessProbe": {"exec": {"command": ["true"]}}}]}));
        let r = rt(vec![ctr("a", 0, State::Running, 0)]);
        let s = pod_status(&p, &r, &Observed::default());
        assert_eq!(cond(&s, "Ready"), "False", "no probe result yet: not ready");
        let obs = Observed { ready: HashMap::from([("a0".into(), true)]), ..Default::default() };
        assert_eq!(cond(&pod_status(&p, &r, &obs), "Ready"), "True");
    }

    #[test]
    fn crash_loop_shows_waiting_with_last_state_and_restarts() {
        let p = pod(json!({"containers": [{"name": "a"}]}));
        let obs = Observed { backing_off: HashMap::from([("a".into(), 22_000_000_000)]), ..Default::default() };
        let s = pod_status(&p, &rt(vec![ctr("a", 2, State::Exited, 1), ctr("a", 1, State::Exited, 1)]), &obs);
        let c = &s.container_statuses.unwrap()[0];
        let w = c.state.as_ref().unwrap().waiting.as_ref().unwrap();
        assert_eq!(w.reason.as_deref(), Some("CrashLoopBackOff"));
        assert!(w.message.as_ref().unwrap().contains("back-off 20s restarting failed container=a pod=p_ns(u)"));
        assert_eq!(c.last_state.as_ref().unwrap().terminated.as_ref().unwrap().exit_code, 1);
        assert_eq!(c.restart_count, 2);
        assert_eq!(s.phase.as_deref(), Some("Running"));
    }

    #[test]
    fn phases_of_finished_pods() {
        let never = pod(json!({"restartPolicy": "Never", "containers": [{"name": "a"}, {"name": "b"}]}));
        let ok = rt(vec![ctr("a", 0, State::Exited, 0), ctr("b", 0, State::Exited, 0)]);
        let s = pod_status(&never, &ok, &Observed::default());
        assert_eq!(s.phase.as_deref(), Some("Succeeded"));
        let c = &s.container_statuses.as_ref().unwrap()[0];
        assert_eq!(c.state.as_ref().unwrap().terminated.as_ref().unwrap().reason.as_deref(), Some("Completed"));
        assert_eq!(cond(&s, "Ready"), "False");
        let bad = rt(vec![ctr("a", 0, State::Exited, 0), ctr("b", 0, State::Exited, 2)]);
        assert_eq!(pod_status(&never, &bad, &Observed::default()).phase.as_deref(), Some("Failed"));
        let one_running = rt(vec![ctr("a", 0, State::Exited, 0), ctr("b", 0, State::Running, 0)]);
        assert_eq!(pod_status(&never, &one_running, &Observed::default()).phase.as_deref(), Some("Running"));
    }

    #[test]
    fn pending_while_images_fail_and_init_runs() {
        let p = pod(json!({"initContainers": [{"name": "i"}], "containers": [{"name": "a"}]}));
        let r = rt(vec![ctr("i", 0, State::Running, 0)]);
        let s = pod_status(&p, &r, &Observed::default());
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        assert_eq!(cond(&s, "Initialized"), "False");
        let a = &s.container_statuses.as_ref().unwrap()[0];
        assert_eq!(a.state.as_ref().unwrap().waiting.as_ref().unwrap().reason.as_deref(), Some("PodInitializing"));

        let p = pod(json!({"containers": [{"name": "a", "image": "nope:1"}]}));
        let obs = Observed {
            waiting: HashMap::from([(
                "a".into(),
                (
                    "ErrImageNeverPull".into(),
                    "Container image \"nope:1\" is not present with pull policy of Never".into(),
                ),
            )]),
            ..Default::default()
        };
        let s = pod_status(&p, &rt(vec![]), &obs);
        let w = s.container_statuses.unwrap()[0].state.clone().unwrap().waiting.unwrap();
        assert_eq!(w.reason.as_deref(), Some("ErrImageNeverPull"));
        assert_eq!(s.phase.as_deref(), Some("Pending"));
    }

    #[test]
    fn oom_kill_reason_is_reported() {
        let p = pod(json!({"restartPolicy": "Never", "containers": [{"name": "a"}]}));
        let mut c = ctr("a", 0, State::Exited, 137);
        c.reason = "OOMKilled".into();
        let s = pod_status(&p, &rt(vec![c]), &Observed::default());
        let t = s.container_statuses.unwrap()[0].state.clone().unwrap().terminated.unwrap();
        assert_eq!((t.reason.as_deref(), t.exit_code), (Some("OOMKilled"), 137));
        assert_eq!(s.phase.as_deref(), Some("Failed"));
    }

    #[test]
    fn qos_classes() {
        let g = pod(json!({"containers": [{"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}));
        assert_eq!(qos_class(&g), "Guaranteed");
        let b = pod(json!({"containers": [{"name": "a", "resources": {"requests": {"cpu": "100m"}}}]}));
        assert_eq!(qos_class(&b), "Burstable");
        let u = pod(
            json!({"containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}, "limits": {"cpu": "2", "memory": "1Gi"}}}]}),
        );
        assert_eq!(qos_class(&u), "Burstable");
    }
}
