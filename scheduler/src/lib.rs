//! # skiff-scheduler: places pending pods on nodes
//!
//! Upstream's shape (DESIGN.md section 5): reflector caches of Nodes and Pods feed a
//! scheduling cycle per pending pod — every [`framework::FilterPlugin`] on every node, then the
//! [`framework::ScorePlugin`]s on the survivors (normalized, weighted) — and the winner is
//! bound with `POST pods/{name}/binding`, exactly as kube-scheduler does. Plugins live in
//! [`plugins`], one file each, named as upstream's.
//!
//! Start reading at [`Scheduler::run`]. Invariants:
//! - One scheduling decision at a time (a lock around filter/score/assume), so two pods never
//!   take the same free capacity; a pod is *assumed* on its node as soon as it is chosen, until
//!   the pod cache shows the binding.
//! - A pod that fits nowhere gets `PodScheduled=False` (`Unschedulable`) with upstream's
//!   summary ("0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint
//!   ...") and a `FailedScheduling` Event, and is retried with back-off and on node changes.
//! - Only pods whose `schedulerName` is one of ours are touched.

pub mod framework;
pub mod plugins;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use framework::{CycleState, FilterPlugin, NodeInfo, Resources, ScorePlugin, Status};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Why scheduling a pod failed or the scheduler stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Unschedulable(String),
}

/// The plugins of one profile, with score weights.
pub struct Profile {
    pub scheduler_name: String,
    pub filters: Vec<Box<dyn FilterPlugin>>,
    pub scores: Vec<(Box<dyn ScorePlugin>, i64)>,
}

impl Profile {
    /// Upstream's default plugin set and weights.
    pub fn default_profile(scheduler_name: &str) -> Self {
        Self {
            scheduler_name: scheduler_name.into(),
            filters: plugins::default_filters(),
            scores: plugins::default_scores(),
        }
    }
}

/// The outcome of one scheduling cycle.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Bind(String),
    /// No feasible node: the user-facing summary.
    Unschedulable(String),
}

/// Runs filters and scores for `pod` over `nodes`. Pure: unit-testable without a cluster.
pub fn decide(profile: &Profile, pod: &Pod, nodes: &[NodeInfo]) -> Decision {
    let mut state = CycleState::default();
    let mut feasible: Vec<&NodeInfo> = Vec::new();
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    // PreFilter: a failure there rejects every node with its reason.
    let pre_filter_failure =
        profile.filters.iter().find_map(|f| f.pre_filter(&mut state, pod, nodes).reason().map(str::to_string));
    let to_filter = if pre_filter_failure.is_some() { &[][..] } else { nodes };
    if let Some(r) = pre_filter_failure {
        reasons.insert(r, nodes.len());
    }
    'nodes: for n in to_filter {
        for f in &profile.filters {
            let status = f.filter(&mut state, pod, n);
            if let Some(r) = status.reason() {
                *reasons.entry(r.to_string()).or_default() += 1;
                continue 'nodes;
            }
            debug_assert!(matches!(status, Status::Success));
        }
        feasible.push(n);
    }
    if feasible.is_empty() {
        let mut parts: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
        parts.sort();
        let summary = if nodes.is_empty() {
            "0/0 nodes are available: no nodes available to schedule pods.".to_string()
        } else {
            format!("0/{} nodes are available: {}.", nodes.len(), parts.join(", "))
        };
        return Decision::Unschedulable(summary);
    }
    let mut totals = vec![0i64; feasible.len()];
    for (plugin, _) in &profile.scores {
        plugin.pre_score(&mut state, pod, nodes, &feasible);
    }
    for (plugin, weight) in &profile.scores {
        let mut scores: Vec<i64> = feasible.iter().map(|n| plugin.score(&mut state, pod, n)).collect();
        plugin.normalize(&mut scores);
        for (t, s) in totals.iter_mut().zip(scores) {
            *t += s * weight;
        }
    }
    // The best total wins; ties go to the node name order after a per-pod rotation, so equal
    // nodes share pods instead of all going to the first name.
    let best = totals.iter().copied().max().unwrap_or(0);
    let mut tied: Vec<&NodeInfo> = feasible.iter().zip(&totals).filter(|(_, t)| **t == best).map(|(n, _)| *n).collect();
    tied.sort_by_key(|n| n.node.name_any());
    let seed = pod
        .metadata
        .uid
        .as_deref()
        .unwrap_or("")
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    Decision::Bind(tied[(seed as usize) % tied.len()].node.name_any())
}

fn is_terminal(p: &Pod) -> bool {
    matches!(p.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"))
}

/// Builds the node infos from the caches plus the pods assumed but not yet seen bound.
fn node_infos(nodes: &Store<Node>, pods: &Store<Pod>, assumed: &HashMap<String, (String, Pod)>) -> Vec<NodeInfo> {
    let mut by_node: HashMap<String, Vec<Pod>> = HashMap::new();
    let mut seen = std::collections::HashSet::new();
    for p in pods.state() {
        let Some(n) = p.spec.as_ref().and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty()) else { continue };
        if is_terminal(&p) {
            continue;
        }
        if let Some(uid) = &p.metadata.uid {
            seen.insert(uid.clone());
        }
        by_node.entry(n).or_default().push((*p).clone());
    }
    for (uid, (node, pod)) in assumed {
        if !seen.contains(uid) {
            by_node.entry(node.clone()).or_default().push(pod.clone());
        }
    }
    let mut out: Vec<NodeInfo> = nodes
        .state()
        .iter()
        .map(|n| {
            let pods = by_node.remove(&n.name_any()).unwrap_or_default();
            let mut requested = Resources::default();
            for p in &pods {
                let r = framework::pod_requests(p);
                requested.milli_cpu += r.milli_cpu;
                requested.memory += r.memory;
                requested.ephemeral_storage += r.ephemeral_storage;
                requested.pods += 1;
            }
            NodeInfo {
                node: (**n).clone(),
                pods,
                requested,
                allocatable: plugins::node_resources_fit::node_allocatable(n),
            }
        })
        .collect();
    out.sort_by_key(|n| n.node.name_any());
    out
}

struct Ctx {
    client: Client,
    profiles: Vec<Profile>,
    nodes: Store<Node>,
    pods: Store<Pod>,
    /// Pods chosen and bound by us: uid → (node, pod), until the pod cache shows them bound.
    assumed: Mutex<HashMap<String, (String, Pod)>>,
}

async fn event(client: &Client, pod: &Pod, type_: &str, reason: &str, message: &str) {
    let ns = pod.namespace().unwrap_or_default();
    let now = k8s_openapi::jiff::Timestamp::now();
    let ev = json!({"apiVersion": "v1", "kind": "Event",
        "metadata": {"name": format!("{}.{:x}", pod.name_any(), now.as_nanosecond())},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": pod.name_any(), "namespace": ns, "uid": pod.metadata.uid},
        "reason": reason, "message": message, "type": type_, "source": {"component": "default-scheduler"},
        "reportingComponent": "default-scheduler",
        "firstTimestamp": now.to_string(), "lastTimestamp": now.to_string(), "count": 1});
    if let Ok(ev) = serde_json::from_value::<k8s_openapi::api::core::v1::Event>(ev) {
        if let Err(e) = Api::<k8s_openapi::api::core::v1::Event>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &ev)
            .await
        {
            warn!(error = %e, "recording an event failed");
        }
    }
}

async fn reconcile(pod: Arc<Pod>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let spec = pod.spec.clone().unwrap_or_default();
    if spec.node_name.as_deref().is_some_and(|n| !n.is_empty())
        || pod.metadata.deletion_timestamp.is_some()
        || is_terminal(&pod)
    {
        return Ok(Action::await_change());
    }
    let scheduler_name = spec.scheduler_name.clone().unwrap_or_else(|| "default-scheduler".into());
    let Some(profile) = ctx.profiles.iter().find(|p| p.scheduler_name == scheduler_name) else {
        return Ok(Action::await_change()); // another scheduler's pod
    };
    let (Some(ns), Some(uid)) = (pod.namespace(), pod.metadata.uid.clone()) else { return Ok(Action::await_change()) };
    let name = pod.name_any();
    let decision = {
        let mut assumed = ctx.assumed.lock().await;
        if assumed.contains_key(&uid) {
            return Ok(Action::await_change()); // bound a moment ago; the cache lags
        }
        // Forget assumptions the cache has caught up with.
        let bound: std::collections::HashSet<String> = ctx
            .pods
            .state()
            .iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some_and(|n| !n.is_empty()))
            .filter_map(|p| p.metadata.uid.clone())
            .collect();
        assumed.retain(|u, _| !bound.contains(u));
        let decision = decide(profile, &pod, &node_infos(&ctx.nodes, &ctx.pods, &assumed));
        if let Decision::Bind(node) = &decision {
            assumed.insert(uid.clone(), (node.clone(), (*pod).clone()));
        }
        decision
    };
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    match decision {
        Decision::Bind(node) => {
            let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name, "namespace": ns, "uid": uid},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node}});
            match pods
                .create_subresource::<_, kube::core::Status>("binding", &name, &PostParams::default(), &binding)
                .await
            {
                Ok(_) => {
                    info!(pod = format!("{ns}/{name}"), node, "bound");
                    event(
                        &ctx.client,
                        &pod,
                        "Normal",
                        "Scheduled",
                        &format!("Successfully assigned {ns}/{name} to {node}"),
                    )
                    .await;
                    Ok(Action::await_change())
                }
                Err(e) => {
                    ctx.assumed.lock().await.remove(&uid);
                    match e {
                        kube::Error::Api(s) if s.code == 409 || s.code == 404 => Ok(Action::await_change()),
                        e => Err(e.into()),
                    }
                }
            }
        }
        Decision::Unschedulable(message) => {
            let already = pod.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|cs| {
                cs.iter().any(|c| {
                    c.type_ == "PodScheduled" && c.status == "False" && c.message.as_deref() == Some(message.as_str())
                })
            });
            if !already {
                let now = k8s_openapi::jiff::Timestamp::now().to_string();
                let mut conditions: Vec<serde_json::Value> = pod
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.clone())
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|c| c.type_ != "PodScheduled")
                    .map(|c| serde_json::to_value(c).unwrap_or_default())
                    .collect();
                conditions.push(json!({"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message, "lastProbeTime": null, "lastTransitionTime": now}));
                pods.patch_status(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": {"conditions": conditions}})),
                )
                .await?;
                event(&ctx.client, &pod, "Warning", "FailedScheduling", &message).await;
                info!(pod = format!("{ns}/{name}"), %message, "unschedulable");
            }
            Err(Error::Unschedulable(message))
        }
    }
}

fn error_policy(_pod: Arc<Pod>, error: &Error, _ctx: Arc<Ctx>) -> Action {
    match error {
        // Retried on any node change too (see `run`); this is the back-off floor.
        Error::Unschedulable(_) => Action::requeue(Duration::from_secs(10)),
        e => {
            warn!(error = %e, "scheduling failed; retrying");
            Action::requeue(Duration::from_secs(1))
        }
    }
}

/// The scheduler; start it with [`Scheduler::run`].
pub struct Scheduler {
    client: Client,
    profiles: Vec<Profile>,
}

impl Scheduler {
    /// Upstream's default profile under both `default-scheduler` and `skiff-scheduler`.
    pub fn new(client: Client) -> Self {
        Self {
            client,
            profiles: vec![Profile::default_profile("default-scheduler"), Profile::default_profile("skiff-scheduler")],
        }
    }

    pub fn with_profiles(client: Client, profiles: Vec<Profile>) -> Self {
        Self { client, profiles }
    }

    /// Runs until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Error> {
        use futures::StreamExt;
        let nodes_writer = reflector::store::Writer::<Node>::default();
        let nodes = nodes_writer.as_reader();
        let pods_writer = reflector::store::Writer::<Pod>::default();
        let pods_store = pods_writer.as_reader();
        let node_api: Api<Node> = Api::all(self.client.clone());
        let pod_api: Api<Pod> = Api::all(self.client.clone());
        // Node and pod caches, each driven by its own task; node changes re-trigger every
        // pending pod (a node joining or freeing up may make it schedulable).
        let node_changes =
            reflector(nodes_writer, watcher(node_api, watcher::Config::default()).default_backoff()).touched_objects();
        let pod_cache = reflector(pods_writer, watcher(pod_api.clone(), watcher::Config::default()).default_backoff())
            .touched_objects();
        let (trigger_tx, trigger_rx) = tokio::sync::mpsc::channel::<()>(1);
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let mut s = std::pin::pin!(node_changes);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    item = s.next() => match item {
                        None => return,
                        // A full channel already carries a pending "reconcile all".
                        Some(_) => { let _ = trigger_tx.try_send(()); }
                    },
                }
            }
        });
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let mut s = std::pin::pin!(pod_cache);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    item = s.next() => if item.is_none() { return },
                }
            }
        });
        let controller = Controller::new(pod_api, watcher::Config::default().fields("spec.nodeName="));
        let ctx = Arc::new(Ctx {
            client: self.client.clone(),
            profiles: self.profiles,
            nodes: nodes.clone(),
            pods: pods_store.clone(),
            assumed: Mutex::new(HashMap::new()),
        });
        let _ = tokio::join!(nodes.wait_until_ready(), pods_store.wait_until_ready());
        info!("scheduler started");
        controller
            .reconcile_all_on(tokio_stream::wrappers::ReceiverStream::new(trigger_rx))
            .graceful_shutdown_on(async move { shutdown.cancelled().await })
            .run(reconcile, error_policy, ctx)
            .for_each(|_| async {})
            .await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::plugins::testutil::{info, node, pod};

    fn zone_node(name: &str, zone: &str, web_pods: usize) -> NodeInfo {
        let pods = (0..web_pods)
            .map(|i| {
                pod(json!({"metadata": {"name": format!("{name}-{i}"), "namespace": "default", "labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "busybox"}], "nodeName": name}}))
            })
            .collect();
        info(
            node(json!({"metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": zone}},
                "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}})),
            pods,
        )
    }

    fn spreading_pod(when: &str) -> Pod {
        pod(json!({"metadata": {"name": "new", "namespace": "default", "uid": "u-new", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}], "topologySpreadConstraints": [
                {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": when,
                 "labelSelector": {"matchLabels": {"app": "web"}}}]}}))
    }

    fn three_zones() -> Vec<NodeInfo> {
        vec![zone_node("node-a", "a", 2), zone_node("node-b", "b", 2), zone_node("node-c", "c", 1)]
    }

    #[test]
    fn topology_spread_sends_the_pod_to_the_emptiest_zone() {
        let profile = Profile::default_profile("default-scheduler");
        assert_eq!(decide(&profile, &spreading_pod("DoNotSchedule"), &three_zones()), Decision::Bind("node-c".into()));
        assert_eq!(decide(&profile, &spreading_pod("ScheduleAnyway"), &three_zones()), Decision::Bind("node-c".into()));
    }

    #[test]
    fn topology_spread_failure_is_summarized() {
        let profile = Profile::default_profile("default-scheduler");
        let mut unlabelled = zone_node("node-x", "x", 0);
        unlabelled.node.metadata.labels = None;
        let nodes = vec![zone_node("node-a", "a", 1), zone_node("node-b", "b", 1), unlabelled];
        let mut p = spreading_pod("DoNotSchedule");
        // Fewer domains (2) than minDomains (3): the global minimum counts as 0.
        p.spec.as_mut().unwrap().topology_spread_constraints.as_mut().unwrap()[0].min_domains = Some(3);
        assert_eq!(
            decide(&profile, &p, &nodes),
            Decision::Unschedulable(
                "0/3 nodes are available: 1 node(s) didn't match pod topology spread constraints (missing required \
                 label), 2 node(s) didn't match pod topology spread constraints."
                    .into()
            )
        );
    }

    struct Refuse;

    impl FilterPlugin for Refuse {
        fn name(&self) -> &'static str {
            "Refuse"
        }
        fn pre_filter(&self, _state: &mut CycleState, _pod: &Pod, _nodes: &[NodeInfo]) -> Status {
            Status::UnschedulableAndUnresolvable("pre-filter said no".into())
        }
        fn filter(&self, _state: &mut CycleState, _pod: &Pod, _node: &NodeInfo) -> Status {
            unreachable!("filter runs after a failed pre_filter")
        }
    }

    #[test]
    fn a_failed_pre_filter_rejects_every_node() {
        let profile = Profile { scheduler_name: "s".into(), filters: vec![Box::new(Refuse)], scores: vec![] };
        let p = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": []}}));
        assert_eq!(
            decide(&profile, &p, &three_zones()),
            Decision::Unschedulable("0/3 nodes are available: 3 pre-filter said no.".into())
        );
        assert_eq!(
            decide(&profile, &p, &[]),
            Decision::Unschedulable("0/0 nodes are available: no nodes available to schedule pods.".into())
        );
    }

    #[test]
    fn cycle_state_holds_typed_values() {
        let mut state = CycleState::default();
        state.insert("k", 5u32);
        assert_eq!(state.get::<u32>("k"), Some(&5));
        assert_eq!(state.get::<String>("k"), None);
        assert_eq!(state.get::<u32>("missing"), None);
        state.values.insert("v".into(), "x".into());
        assert!(format!("{state:?}").contains("\"k\""));
    }
}
