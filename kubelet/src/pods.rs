//! Pod workers, the PLEG and the status manager.
//!
//! - A watch on the pods bound to this node (`spec.nodeName=<node>`) feeds one **worker task
//!   per pod UID**. A worker is level-triggered: each pass reads the runtime's truth for its
//!   pod (`ListPodSandbox`/`ListContainers` by the pod-UID label), decides with the pure
//!   [`crate::sync::compute_pod_actions`], acts, and writes the pod's status when it changed.
//!   It wakes on a new version of the pod, on a runtime event, on a probe result, at the end
//!   of a back-off, and every 10 s regardless.
//! - The **PLEG** relists the runtime every second and wakes the workers of pods whose
//!   containers changed state; it also removes sandboxes and containers of pods that no
//!   longer exist in the API (deleted while the kubelet was down).
//! - Deletion: a pod with a `deletionTimestamp` is stopped gracefully (preStop hooks,
//!   SIGTERM, SIGKILL after the grace period), then the kubelet deletes it from the API with
//!   grace 0 (uid precondition), as upstream's status manager does.
//!
//! Restart safety: all state that matters lives in the runtime (labels, attempt numbers),
//! so a restarted kubelet adopts running sandboxes and containers instead of starting new ones.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Container, Event, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;
use serde_json::json;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::cri::{pod_labels, Cri, CriError, LABEL_CONTAINER_NAME, LABEL_POD_UID};
use crate::probes::ProbeManager;
use crate::spec::NodeSettings;
use crate::status::{pod_status, Observed};
use crate::sync::{
    compute_pod_actions, pod_is_finished, Backoff, ContainerInfo, Nanos, RuntimePod, SandboxInfo, State,
};
use crate::volumes::{self, Sources};
use crate::Config;

pub fn now_nanos() -> Nanos {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as Nanos)
}

/// What every worker shares.
pub struct Shared {
    pub cfg: Config,
    pub cri: Cri,
    pub client: kube::Client,
    pub probes: ProbeManager,
    pub settings: NodeSettings,
    pub host_resolv: String,
    pub memory_capacity: f64,
    /// The pods bound to this node, by UID, as last seen in the API.
    pub pods: RwLock<HashMap<String, Pod>>,
    /// The pods' ServiceAccount tokens (projected volumes).
    pub tokens: crate::tokens::TokenManager,
    workers: Mutex<HashMap<String, WorkerHandle>>,
    tracker: TaskTracker,
}

struct WorkerHandle {
    tx: watch::Sender<Option<Pod>>,
    wake: Arc<Notify>,
}

impl Shared {
    pub fn new(cfg: Config, cri: Cri, client: kube::Client) -> Arc<Self> {
        let settings = NodeSettings {
            root: cfg.root_dir.clone(),
            cluster_dns: cfg.cluster_dns.clone(),
            cluster_domain: cfg.cluster_domain.clone(),
        };
        let host_resolv = std::fs::read_to_string(&cfg.resolv_conf).unwrap_or_default();
        let memory_capacity = cfg.memory.unwrap_or_else(|| crate::node::host_facts(&cfg.root_dir).memory_total) as f64;
        Arc::new(Self {
            probes: ProbeManager::new(cri.clone()),
            cfg,
            cri,
            client,
            settings,
            host_resolv,
            memory_capacity,
            pods: Default::default(),
            tokens: Default::default(),
            workers: Default::default(),
            tracker: TaskTracker::new(),
        })
    }

    /// A pod by namespace and name, from the pods bound to this node.
    pub fn find(&self, ns: &str, name: &str) -> Option<Pod> {
        self.pods
            .read()
            .expect("pods lock")
            .values()
            .find(|p| p.metadata.namespace.as_deref() == Some(ns) && p.metadata.name.as_deref() == Some(name))
            .cloned()
    }

    fn wake(&self, uid: &str) {
        if let Some(w) = self.workers.lock().expect("workers lock").get(uid) {
            w.wake.notify_one();
        }
    }

    /// Hands a pod to its worker, starting one if needed.
    fn upsert(self: &Arc<Self>, pod: Pod, shutdown: &CancellationToken) {
        let Some(uid) = pod.metadata.uid.clone() else { return };
        self.pods.write().expect("pods lock").insert(uid.clone(), pod.clone());
        let mut workers = self.workers.lock().expect("workers lock");
        if let Some(w) = workers.get(&uid) {
            w.tx.send_replace(Some(pod));
            return;
        }
        let (tx, rx) = watch::channel(Some(pod));
        let wake = Arc::new(Notify::new());
        workers.insert(uid.clone(), WorkerHandle { tx, wake: wake.clone() });
        let me = self.clone();
        let stop = shutdown.clone();
        self.tracker.spawn(async move {
            let w = Worker { shared: me.clone(), uid: uid.clone(), rx, wake, state: Default::default() };
            w.run(stop).await;
        });
    }

    /// The pod is gone from the API: its worker cleans up and exits.
    fn remove(&self, uid: &str) {
        self.pods.write().expect("pods lock").remove(uid);
        if let Some(w) = self.workers.lock().expect("workers lock").get(uid) {
            w.tx.send_replace(None);
        }
    }

    /// Records a core/v1 Event about a pod (fire and forget, as upstream's recorder).
    pub fn event(&self, pod: &Pod, type_: &str, reason: &str, message: String) {
        let ns = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
        let name = pod.metadata.name.clone().unwrap_or_default();
        let now = Time(Timestamp::now());
        let ev: Event = match serde_json::from_value(json!({
            // Upstream's naming: the object's name and a unique hex suffix.
            "metadata": {"name": format!("{name}.{:x}", now_nanos()), "namespace": ns},
            "involvedObject": {"kind": "Pod", "apiVersion": "v1", "namespace": ns, "name": name,
                               "uid": pod.metadata.uid, "resourceVersion": pod.metadata.resource_version},
            "type": type_, "reason": reason, "message": message,
            "source": {"component": "kubelet", "host": self.cfg.node_name},
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        })) {
            Ok(e) => e,
            Err(_) => return,
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        tokio::spawn(async move {
            if let Err(e) = api.create(&PostParams::default(), &ev).await {
                debug!(error = %e, "cannot record an event");
            }
        });
    }
}

/// Reads a pod's sandboxes and containers from the runtime.
pub async fn runtime_pod(cri: &Cri, uid: &str) -> Result<RuntimePod, CriError> {
    let mut rt = RuntimePod::default();
    for s in cri.list_pod_sandboxes(pod_labels(uid)).await? {
        let ready = s.state == crate::cri::types::PodSandboxState::SandboxReady as i32;
        let ip = if ready {
            match cri.pod_sandbox_status(&s.id).await {
                Ok(st) => st.network.map(|n| n.ip).filter(|ip| !ip.is_empty()),
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e),
            }
        } else {
            None
        };
        rt.sandboxes.push(SandboxInfo {
            id: s.id.clone(),
            attempt: s.metadata.map_or(0, |m| m.attempt),
            ready,
            created_at: s.created_at,
            ip,
        });
    }
    for c in cri.list_containers(pod_labels(uid)).await? {
        let st = match cri.container_status(&c.id).await {
            Ok(st) => st,
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e),
        };
        use crate::cri::types::ContainerState as S;
        let state = match S::try_from(st.state) {
            Ok(S::ContainerCreated) => State::Created,
            Ok(S::ContainerRunning) => State::Running,
            Ok(S::ContainerExited) => State::Exited,
            _ => State::Unknown,
        };
        rt.containers.push(ContainerInfo {
            id: c.id.clone(),
            name: c.labels.get(LABEL_CONTAINER_NAME).cloned().unwrap_or_default(),
            attempt: c.metadata.as_ref().map_or(0, |m| m.attempt),
            sandbox_id: c.pod_sandbox_id.clone(),
            state,
            created_at: st.created_at,
            started_at: st.started_at,
            finished_at: st.finished_at,
            exit_code: st.exit_code,
            reason: st.reason.clone(),
            message: st.message.clone(),
            image: st.image.map(|i| i.image).unwrap_or_default(),
            image_ref: st.image_ref.clone(),
        });
    }
    rt.sort();
    Ok(rt)
}

#[derive(Default)]
struct WorkerState {
    backoffs: HashMap<String, Backoff>,
    image_backoffs: HashMap<String, Backoff>,
    waiting: HashMap<String, (String, String)>,
    last_status: Option<serde_json::Value>,
    /// Set once the pod's containers were stopped for deletion.
    terminated: bool,
    last_pod: Option<Pod>,
}

struct Worker {
    shared: Arc<Shared>,
    uid: String,
    rx: watch::Receiver<Option<Pod>>,
    wake: Arc<Notify>,
    state: WorkerState,
}

fn grace_of(pod: &Pod) -> Duration {
    let secs = pod
        .metadata
        .deletion_grace_period_seconds
        .or_else(|| pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds))
        .unwrap_or(30);
    Duration::from_secs(secs.max(0) as u64)
}

impl Worker {
    async fn run(mut self, shutdown: CancellationToken) {
        loop {
            let pod = self.rx.borrow_and_update().clone();
            let next: Option<Duration>;
            match pod {
                None => {
                    // Gone from the API (or never to run again here): stop and clean up.
                    let grace = self.state.last_pod.as_ref().map_or(Duration::from_secs(2), grace_of);
                    self.terminate(grace).await;
                    self.cleanup().await;
                    self.shared.workers.lock().expect("workers lock").remove(&self.uid);
                    debug!(uid = %self.uid, "pod worker done");
                    return;
                }
                Some(p) => {
                    self.state.last_pod = Some(p.clone());
                    if p.metadata.deletion_timestamp.is_some() {
                        if !self.state.terminated {
                            self.terminate(grace_of(&p)).await;
                        }
                        if self.state.terminated {
                            self.confirm_deletion(&p).await;
                        }
                        next = Some(Duration::from_secs(2));
                    } else {
                        match self.sync(&p).await {
                            Ok(n) => next = n,
                            Err(e) => {
                                warn!(pod = %p.metadata.name.as_deref().unwrap_or(""), error = %e, "pod sync failed; retrying");
                                next = Some(Duration::from_secs(2));
                            }
                        }
                    }
                }
            }
            let sleep = tokio::time::sleep(next.unwrap_or(Duration::from_secs(10)));
            tokio::select! {
                _ = shutdown.cancelled() => return,
                r = self.rx.changed() => if r.is_err() { return },
                _ = self.wake.notified() => {}
                _ = sleep => {}
            }
        }
    }

    /// One level-triggered pass over a pod that should run. Returns when to look again.
    async fn sync(&mut self, pod: &Pod) -> anyhow::Result<Option<Duration>> {
        let sh = self.shared.clone();
        let mut rt = runtime_pod(&sh.cri, &self.uid).await?;
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("");
        let terminal = phase == "Succeeded" || phase == "Failed";
        if terminal || pod_is_finished(pod, &rt) {
            // Nothing will run again: release the sandbox (its IP), keep the containers for logs.
            if rt.sandboxes.iter().any(|s| s.ready) {
                self.stop_all_containers(pod, &rt, Duration::from_secs(0)).await;
            }
            for s in rt.sandboxes.iter().filter(|s| s.ready) {
                sh.cri.stop_pod_sandbox(&s.id).await?;
            }
            if !terminal {
                self.write_status(pod, &rt, HashMap::new()).await;
            }
            return Ok(None);
        }

        let live = sh.probes.results().live;
        let actions = compute_pod_actions(pod, &rt, &self.state.backoffs, &live, now_nanos());
        debug!(pod = %pod.metadata.name.as_deref().unwrap_or(""), ?actions, "sync");
        if actions.kill_pod {
            self.stop_all_containers(pod, &rt, grace_of(pod)).await;
            for s in rt.sandboxes.iter().filter(|s| s.ready) {
                sh.cri.stop_pod_sandbox(&s.id).await?;
            }
        }
        let spec = pod.spec.clone().unwrap_or_default();
        for (id, why) in &actions.kill {
            if let Some(c) = rt.containers.iter().find(|c| &c.id == id) {
                sh.event(pod, "Normal", "Killing", format!("Container {} {why}", c.name));
                let grace = spec.termination_grace_period_seconds.unwrap_or(30).max(0) as u64;
                self.stop_container(pod, c, Duration::from_secs(grace)).await;
            }
        }

        // Every pass: configMap and secret volumes follow their objects (upstream refreshes
        // them on its sync period too); a pod without such references costs no API call.
        let sources = match fetch_sources(&sh, pod).await {
            Ok(s) => s,
            Err(e) => {
                // A token the API refuses (the account is gone) is a mount failure the
                // user must see, as a missing Secret is.
                sh.event(pod, "Warning", "FailedMount", format!("{e:#}"));
                return Err(e);
            }
        };
        let needs_containers = actions.start_init.is_some() || !actions.start.is_empty();
        let volume_paths = match volumes::setup(&sh.cfg.root_dir, pod, &sources) {
            Ok(v) => v,
            Err(e) => {
                sh.event(pod, "Warning", "FailedMount", e.to_string());
                for c in spec.containers.iter().chain(spec.init_containers.iter().flatten()) {
                    if rt.latest(&c.name).is_none() {
                        self.state.waiting.insert(c.name.clone(), ("ContainerCreating".into(), e.to_string()));
                    }
                }
                self.write_status(pod, &rt, HashMap::new()).await;
                return Ok(Some(Duration::from_secs(2)));
            }
        };

        if let Some(attempt) = actions.create_sandbox {
            let cfg = crate::spec::sandbox_config(pod, attempt, &sh.settings, &sh.host_resolv);
            std::fs::create_dir_all(PathBuf::from(&cfg.log_directory))?;
            match sh.cri.run_pod_sandbox(cfg).await {
                Ok(id) => debug!(sandbox = %id, "sandbox running"),
                Err(e) => {
                    sh.event(pod, "Warning", "FailedCreatePodSandBox", format!("Failed to create pod sandbox: {e}"));
                    self.write_status(pod, &rt, HashMap::new()).await;
                    return Ok(Some(Duration::from_secs(2)));
                }
            }
            rt = runtime_pod(&sh.cri, &self.uid).await?;
            // Old sandboxes (and their exited containers) go once a new one is up.
            for s in rt.sandboxes.iter().skip(1) {
                for c in rt.containers.iter().filter(|c| c.sandbox_id == s.id) {
                    let _ = sh.cri.remove_container(&c.id).await;
                }
                let _ = sh.cri.remove_pod_sandbox(&s.id).await;
            }
            if rt.sandboxes.len() > 1 {
                rt = runtime_pod(&sh.cri, &self.uid).await?;
            }
        }

        let mut backing_off: HashMap<String, Nanos> = actions.backing_off.iter().cloned().collect();
        for (name, _) in &actions.backing_off {
            if let Some(c) =
                spec.containers.iter().chain(spec.init_containers.iter().flatten()).find(|c| &c.name == name)
            {
                if !self.state.waiting.contains_key(name) {
                    sh.event(
                        pod,
                        "Warning",
                        "BackOff",
                        format!("Back-off restarting failed container {} in pod {}", c.name, pod_ref(pod)),
                    );
                }
            }
        }
        if let Some((i, attempt)) = actions.start_init {
            let c = spec.init_containers.as_ref().expect("index from the spec")[i].clone();
            self.start_container(pod, &c, attempt, &rt, &sources, &volume_paths).await;
        }
        for (i, attempt) in &actions.start {
            let c = spec.containers[*i].clone();
            self.start_container(pod, &c, *attempt, &rt, &sources, &volume_paths).await;
        }
        if needs_containers || !actions.kill.is_empty() {
            rt = runtime_pod(&sh.cri, &self.uid).await?;
        }

        // Probes for running containers; old exited instances beyond the previous one go.
        if let Some(sandbox) = rt.current_sandbox() {
            for c in spec.containers.iter().chain(spec.init_containers.iter().flatten()) {
                if let Some(ci) = rt.latest_in(&c.name, &sandbox.id).filter(|ci| ci.state == State::Running) {
                    sh.probes.ensure(c, &ci.id, sandbox.ip.clone(), self.wake.clone());
                }
            }
        }
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for c in &rt.containers {
            let n = seen.entry(c.name.as_str()).or_default();
            *n += 1;
            if *n > 2 && c.state == State::Exited {
                let _ = sh.cri.remove_container(&c.id).await;
            }
        }

        // The nearest back-off end is when to look again.
        let now = now_nanos();
        backing_off.retain(|_, until| *until > now);
        let next =
            backing_off.values().min().map(|until| Duration::from_nanos((until - now).max(0) as u64 + 50_000_000));
        self.write_status(pod, &rt, backing_off).await;
        Ok(Some(next.unwrap_or(Duration::from_secs(10)).min(Duration::from_secs(10))))
    }

    async fn start_container(
        &mut self,
        pod: &Pod,
        c: &Container,
        attempt: u32,
        rt: &RuntimePod,
        sources: &Sources,
        volume_paths: &BTreeMap<String, PathBuf>,
    ) {
        let sh = self.shared.clone();
        let Some(sandbox) = rt.current_sandbox() else { return };
        let image = c.image.clone().unwrap_or_default();
        if let Err((reason, msg)) = self.ensure_image(pod, c, &image).await {
            self.state.waiting.insert(c.name.clone(), (reason, msg));
            return;
        }
        let env = match crate::spec::environment(pod, c, sources) {
            Ok(e) => e,
            Err(e) => {
                sh.event(pod, "Warning", "Failed", format!("Error: {e}"));
                self.state.waiting.insert(c.name.clone(), ("CreateContainerConfigError".into(), e.to_string()));
                return;
            }
        };
        let term_dir = volumes::pod_dir(&sh.cfg.root_dir, &self.uid).join("containers").join(&c.name);
        let term_file = term_dir.join(attempt.to_string());
        let _ = std::fs::create_dir_all(&term_dir).and_then(|_| std::fs::write(&term_file, b""));
        let mounts = match crate::spec::mounts(c, volume_paths, Some(&term_file)) {
            Ok(m) => m,
            Err(e) => {
                self.state.waiting.insert(c.name.clone(), ("CreateContainerConfigError".into(), e.to_string()));
                return;
            }
        };
        // A restart after an exit moves the crash-loop back-off along (upstream's doBackOff).
        if let Some(prev) = rt.latest(&c.name).filter(|p| p.state == State::Exited) {
            self.state.backoffs.entry(c.name.clone()).or_default().next(prev.finished_at);
        }
        let config = crate::spec::container_config(pod, c, attempt, env, mounts, &image, sh.memory_capacity);
        let sandbox_config = crate::spec::sandbox_config(pod, sandbox.attempt, &sh.settings, &sh.host_resolv);
        let id = match sh.cri.create_container(&sandbox.id, config, sandbox_config).await {
            Ok(id) => id,
            Err(e) => {
                sh.event(pod, "Warning", "Failed", format!("Error: {e}"));
                self.state.waiting.insert(c.name.clone(), ("CreateContainerError".into(), e.to_string()));
                return;
            }
        };
        if let Err(e) = sh.cri.start_container(&id).await {
            sh.event(pod, "Warning", "Failed", format!("Error: {e}"));
            self.state.waiting.insert(c.name.clone(), ("RunContainerError".into(), e.to_string()));
            return;
        }
        self.state.waiting.remove(&c.name);
        sh.event(pod, "Normal", "Started", format!("Started container {}", c.name));
        // postStart (exec): a failure kills the container, as upstream.
        if let Some(cmd) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()).and_then(|h| h.exec.as_ref()) {
            let cmd = cmd.command.clone().unwrap_or_default();
            match sh.cri.exec_sync(&id, cmd, Duration::from_secs(30)).await {
                Ok(r) if r.exit_code == 0 => {}
                other => {
                    let why = match other {
                        Ok(r) => format!("exit code {}", r.exit_code),
                        Err(e) => e.to_string(),
                    };
                    sh.event(pod, "Warning", "FailedPostStartHook", format!("PostStartHook failed: {why}"));
                    let _ = sh.cri.stop_container(&id, Duration::from_secs(0)).await;
                }
            }
        }
    }

    /// Makes the image present as `imagePullPolicy` says. Err: (waiting reason, message).
    async fn ensure_image(&mut self, pod: &Pod, c: &Container, image: &str) -> Result<(), (String, String)> {
        let sh = &self.shared;
        let latest = !image.contains('@')
            && image.rsplit('/').next().is_some_and(|last| !last.contains(':') || last.ends_with(":latest"));
        let policy =
            c.image_pull_policy.clone().unwrap_or_else(|| if latest { "Always".into() } else { "IfNotPresent".into() });
        let present = matches!(sh.cri.image_status(image).await, Ok(Some(_)));
        if present && policy != "Always" {
            return Ok(());
        }
        if policy == "Never" {
            let msg = format!("Container image \"{image}\" is not present with pull policy of Never");
            sh.event(pod, "Warning", "ErrImageNeverPull", msg.clone());
            return Err(("ErrImageNeverPull".into(), msg));
        }
        let key = c.name.clone();
        let now = now_nanos();
        if let Some(b) = self.state.image_backoffs.get(&key) {
            if b.in_backoff_since(b.last_update, now) {
                return Err(("ImagePullBackOff".into(), format!("Back-off pulling image \"{image}\"")));
            }
        }
        match sh.cri.pull_image(image).await {
            Ok(_) => {
                self.state.image_backoffs.remove(&key);
                Ok(())
            }
            // Always with the image present: a failed pull (no registry here) is not fatal.
            Err(_) if present => Ok(()),
            Err(e) => {
                self.state.image_backoffs.entry(key).or_default().next(now);
                let msg = format!("Failed to pull image \"{image}\": {e}");
                sh.event(pod, "Warning", "Failed", msg.clone());
                Err(("ErrImagePull".into(), msg))
            }
        }
    }

    async fn stop_container(&self, pod: &Pod, c: &ContainerInfo, grace: Duration) {
        let sh = &self.shared;
        let deadline = tokio::time::Instant::now() + grace;
        // preStop (exec or httpGet) runs first, inside the grace period.
        let spec = pod.spec.clone().unwrap_or_default();
        let hook = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .find(|s| s.name == c.name)
            .and_then(|s| s.lifecycle.clone())
            .and_then(|l| l.pre_stop);
        if let Some(h) = hook {
            if c.state == State::Running {
                if let Some(e) = h.exec {
                    let _ = tokio::time::timeout(grace, sh.cri.exec_sync(&c.id, e.command.unwrap_or_default(), grace))
                        .await;
                } else if let Some(s) = h.sleep {
                    tokio::time::sleep(Duration::from_secs(s.seconds.max(0) as u64).min(grace)).await;
                }
            }
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if let Err(e) = sh.cri.stop_container(&c.id, left).await {
            if !e.is_not_found() {
                warn!(container = %c.id, error = %e, "stop failed");
            }
        }
    }

    async fn stop_all_containers(&self, pod: &Pod, rt: &RuntimePod, grace: Duration) {
        let running: Vec<&ContainerInfo> =
            rt.containers.iter().filter(|c| matches!(c.state, State::Running | State::Created)).collect();
        futures::future::join_all(running.into_iter().map(|c| self.stop_container(pod, c, grace))).await;
    }

    /// Graceful stop of everything the pod runs.
    async fn terminate(&mut self, grace: Duration) {
        let sh = self.shared.clone();
        let pod = self.state.last_pod.clone().unwrap_or_default();
        let rt = match runtime_pod(&sh.cri, &self.uid).await {
            Ok(rt) => rt,
            Err(e) => {
                warn!(uid = %self.uid, error = %e, "cannot list the pod's containers to stop them");
                return;
            }
        };
        if rt.containers.iter().any(|c| c.state == State::Running) {
            for c in rt.containers.iter().filter(|c| c.state == State::Running) {
                sh.event(&pod, "Normal", "Killing", format!("Stopping container {}", c.name));
            }
        }
        self.stop_all_containers(&pod, &rt, grace).await;
        for s in rt.sandboxes.iter().filter(|s| s.ready) {
            if let Err(e) = sh.cri.stop_pod_sandbox(&s.id).await {
                warn!(sandbox = %s.id, error = %e, "cannot stop the sandbox");
                return;
            }
        }
        self.state.terminated = true;
    }

    /// The pod's containers are stopped: remove it from the API (grace 0, this pod only).
    async fn confirm_deletion(&self, pod: &Pod) {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.shared.client.clone(), &ns);
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions { uid: Some(self.uid.clone()), resource_version: None }),
            ..Default::default()
        };
        match api.delete(pod.metadata.name.as_deref().unwrap_or(""), &dp).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => warn!(error = %e, "cannot confirm the pod's deletion"),
        }
    }

    /// Removes every trace of the pod from the node: containers, sandboxes, volumes, logs.
    async fn cleanup(&self) {
        let sh = &self.shared;
        if let Ok(rt) = runtime_pod(&sh.cri, &self.uid).await {
            for c in &rt.containers {
                let _ = sh.cri.remove_container(&c.id).await;
            }
            for s in &rt.sandboxes {
                let _ = sh.cri.stop_pod_sandbox(&s.id).await;
                let _ = sh.cri.remove_pod_sandbox(&s.id).await;
            }
        }
        if let Err(e) = volumes::teardown(&sh.cfg.root_dir, &self.uid) {
            warn!(uid = %self.uid, error = %e, "cannot remove the pod directory");
        }
        sh.tokens.forget(&self.uid);
        if let Some(pod) = &self.state.last_pod {
            let _ = std::fs::remove_dir_all(crate::spec::log_directory(&sh.cfg.root_dir, pod));
        }
    }

    async fn write_status(&mut self, pod: &Pod, rt: &RuntimePod, backing_off: HashMap<String, Nanos>) {
        let sh = &self.shared;
        let probes = sh.probes.results();
        let obs = Observed {
            waiting: self.state.waiting.clone(),
            backing_off,
            ready: probes.ready,
            started: probes.started,
            host_ip: sh.cfg.node_ip.clone(),
        };
        let status = pod_status(pod, rt, &obs);
        let value = serde_json::to_value(&status).unwrap_or_default();
        let current = serde_json::to_value(pod.status.clone().unwrap_or_default()).unwrap_or_default();
        if value == current || self.state.last_status.as_ref() == Some(&value) {
            return;
        }
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(sh.client.clone(), &ns);
        let patch = json!({"metadata": {"uid": self.uid}, "status": value});
        match api
            .patch_status(pod.metadata.name.as_deref().unwrap_or(""), &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => self.state.last_status = Some(value),
            Err(e) => debug!(error = %e, "status write failed; the next sync retries"),
        }
    }
}

fn pod_ref(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or(""),
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.uid.as_deref().unwrap_or("")
    )
}

/// The configMaps and secrets a pod's volumes and environment refer to, and the tokens of
/// its projected ServiceAccount token sources (from the token manager's cache while fresh).
async fn fetch_sources(sh: &Shared, pod: &Pod) -> anyhow::Result<Sources> {
    let client = &sh.client;
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let (mut cms, mut secrets) = volumes::referenced(pod);
    let spec = pod.spec.clone().unwrap_or_default();
    for c in spec.containers.iter().chain(spec.init_containers.iter().flatten()) {
        for f in c.env_from.iter().flatten() {
            if let Some(r) = &f.config_map_ref {
                cms.push((r.name.clone(), true));
            }
            if let Some(r) = &f.secret_ref {
                secrets.push((r.name.clone(), true));
            }
        }
        for e in c.env.iter().flatten() {
            if let Some(v) = &e.value_from {
                if let Some(r) = &v.config_map_key_ref {
                    cms.push((r.name.clone(), true));
                }
                if let Some(r) = &v.secret_key_ref {
                    secrets.push((r.name.clone(), true));
                }
            }
        }
    }
    let mut src = Sources::default();
    let cm_api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    for (name, _) in cms {
        if let std::collections::btree_map::Entry::Vacant(e) = src.config_maps.entry(name.clone()) {
            if let Some(cm) = cm_api.get_opt(&name).await? {
                e.insert(cm);
            }
        }
    }
    let s_api: Api<Secret> = Api::namespaced(client.clone(), &ns);
    for (name, _) in secrets {
        if let std::collections::btree_map::Entry::Vacant(e) = src.secrets.entry(name.clone()) {
            if let Some(s) = s_api.get_opt(&name).await? {
                e.insert(s);
            }
        }
    }
    for t in volumes::token_sources(pod) {
        let token = sh.tokens.token(client, pod, t).await?;
        src.tokens.insert(volumes::token_key(t), token);
    }
    Ok(src)
}

/// Runs the pod source (a watch on this node's pods) and the PLEG until shutdown.
pub async fn run(shared: Arc<Shared>, shutdown: CancellationToken) {
    let pods: Api<Pod> = Api::all(shared.client.clone());
    let cfg = watcher::Config::default().fields(&format!("spec.nodeName={}", shared.cfg.node_name));
    let synced = Arc::new(tokio::sync::Notify::new());
    let is_synced = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pleg = {
        let (shared, stop, is_synced) = (shared.clone(), shutdown.clone(), is_synced.clone());
        tokio::spawn(async move { pleg(shared, is_synced, stop).await })
    };
    let mut stream = watcher(pods, cfg).default_backoff().boxed();
    let mut init: HashSet<String> = HashSet::new();
    loop {
        let ev = tokio::select! {
            _ = shutdown.cancelled() => break,
            ev = stream.try_next() => ev,
        };
        match ev {
            Ok(Some(watcher::Event::Apply(p))) | Ok(Some(watcher::Event::InitApply(p))) => {
                if let Some(uid) = &p.metadata.uid {
                    init.insert(uid.clone());
                }
                shared.upsert(p, &shutdown);
            }
            Ok(Some(watcher::Event::Delete(p))) => {
                if let Some(uid) = &p.metadata.uid {
                    shared.remove(uid);
                }
            }
            Ok(Some(watcher::Event::Init)) => init.clear(),
            Ok(Some(watcher::Event::InitDone)) => {
                // Pods that vanished while we were not watching.
                let known: Vec<String> = shared.workers.lock().expect("workers lock").keys().cloned().collect();
                for uid in known.iter().filter(|u| !init.contains(*u)) {
                    shared.remove(uid);
                }
                is_synced.store(true, std::sync::atomic::Ordering::SeqCst);
                synced.notify_waiters();
                info!(pods = init.len(), "pod source synced");
            }
            Ok(None) => break,
            Err(e) => warn!(error = %e, "pod watch error; retrying"),
        }
    }
    pleg.abort();
    info!("stopping pod workers");
    shared.tracker.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), shared.tracker.wait()).await;
}

/// The pod lifecycle event generator: relists the runtime every second and wakes the
/// workers of pods whose containers changed; removes what belongs to no pod.
async fn pleg(shared: Arc<Shared>, synced: Arc<std::sync::atomic::AtomicBool>, shutdown: CancellationToken) {
    let mut last: HashMap<String, Vec<(String, i32)>> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let (containers, sandboxes) = match (
            shared.cri.list_containers(HashMap::new()).await,
            shared.cri.list_pod_sandboxes(HashMap::new()).await,
        ) {
            (Ok(c), Ok(s)) => (c, s),
            (Err(e), _) | (_, Err(e)) => {
                debug!(error = %e, "relist failed");
                continue;
            }
        };
        let mut now: HashMap<String, Vec<(String, i32)>> = HashMap::new();
        for c in &containers {
            if let Some(uid) = c.labels.get(LABEL_POD_UID) {
                now.entry(uid.clone()).or_default().push((c.id.clone(), c.state));
            }
        }
        for s in &sandboxes {
            if let Some(uid) = s.labels.get(LABEL_POD_UID) {
                now.entry(uid.clone()).or_default().push((s.id.clone(), s.state));
            }
        }
        for v in now.values_mut() {
            v.sort();
        }
        for (uid, v) in &now {
            if last.get(uid) != Some(v) {
                shared.wake(uid);
            }
        }
        // Probe workers only for running containers.
        let running: HashSet<String> = containers
            .iter()
            .filter(|c| c.state == crate::cri::types::ContainerState::ContainerRunning as i32)
            .map(|c| c.id.clone())
            .collect();
        shared.probes.retain(&running);
        // Orphans: runtime objects of pods the API no longer has (once the pod list is known).
        if synced.load(std::sync::atomic::Ordering::SeqCst) {
            let workers: HashSet<String> = shared.workers.lock().expect("workers lock").keys().cloned().collect();
            for uid in now.keys().filter(|u| !workers.contains(*u)) {
                info!(uid, "removing the containers of a pod that no longer exists");
                if let Ok(rt) = runtime_pod(&shared.cri, uid).await {
                    for c in rt.containers.iter() {
                        let _ = shared.cri.stop_container(&c.id, Duration::from_secs(2)).await;
                        let _ = shared.cri.remove_container(&c.id).await;
                    }
                    for s in &rt.sandboxes {
                        let _ = shared.cri.stop_pod_sandbox(&s.id).await;
                        let _ = shared.cri.remove_pod_sandbox(&s.id).await;
                    }
                }
                let _ = volumes::teardown(&shared.cfg.root_dir, uid);
            }
        }
        last = now;
    }
}
