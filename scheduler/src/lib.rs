//! # skiff-scheduler: places pending pods on nodes
//!
//! Upstream's shape (DESIGN.md section 5): a cache fed by the Node and Pod watches feeds a
//! scheduling cycle per pending pod — every [`framework::FilterPlugin`] on every node, then the
//! [`framework::ScorePlugin`]s on the survivors (normalized, weighted) — and the winner is
//! bound with `POST pods/{name}/binding`, exactly as kube-scheduler does. Plugins live in
//! [`plugins`], one file each, named as upstream's.
//!
//! Start reading at [`Scheduler::run`]. Invariants:
//! - One scheduling decision at a time (a lock around filter/score/assume), so two pods never
//!   take the same free capacity; a pod is *assumed* on its node as soon as it is chosen, until
//!   the pod watch shows the binding. The [`cache`] keeps every node's pods and requested
//!   resources incrementally, so a cycle costs O(nodes), not O(all pods).
//! - A pod that fits nowhere gets `PodScheduled=False` (`Unschedulable`) with upstream's
//!   summary ("0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint
//!   ...") and a `FailedScheduling` Event, and is retried with back-off and on node changes.
//! - Only pods whose `schedulerName` is one of ours are touched.

pub mod cache;
pub mod framework;
pub mod plugins;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cache::Cache;
use framework::{CycleState, FilterPlugin, NodeInfo, ScorePlugin, Status};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Scheduling cycles (each ends with a binding) in flight at once.
const BIND_CONCURRENCY: u16 = 16;

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

/// Upstream's `minFeasibleNodesToFind`: below this many nodes, every node is filtered.
const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// Upstream's `minFeasibleNodesPercentageToFind`.
const MIN_FEASIBLE_NODES_PERCENTAGE: usize = 5;

/// How many feasible nodes a cycle looks for before it stops filtering (upstream's
/// `numFeasibleNodesToFind`, `percentageOfNodesToScore` unset = adaptive): all of them up to
/// 100 nodes; beyond, 50 % minus 1 % per 125 nodes, at least 5 % and at least 100 nodes.
/// Scoring 10 % of 5,000 nodes finds as good a node in practice, at a tenth of the cost.
pub fn num_feasible_nodes_to_find(num_all: usize) -> usize {
    if num_all < MIN_FEASIBLE_NODES_TO_FIND {
        return num_all;
    }
    let percentage = 50usize.saturating_sub(num_all / 125).max(MIN_FEASIBLE_NODES_PERCENTAGE);
    (num_all * percentage / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

/// Runs filters and scores for `pod` over `nodes`. Pure: unit-testable without a cluster.
pub fn decide(profile: &Profile, pod: &Pod, nodes: &[NodeInfo]) -> Decision {
    decide_from(profile, pod, nodes, 0).0
}

/// [`decide`], filtering from node `start` onwards (wrapping) and stopping once
/// [`num_feasible_nodes_to_find`] nodes passed, as upstream; also returns how many nodes
/// were filtered, so the next cycle starts after them (every node gets its turn).
pub fn decide_from(profile: &Profile, pod: &Pod, nodes: &[NodeInfo], start: usize) -> (Decision, usize) {
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
    let want = num_feasible_nodes_to_find(to_filter.len());
    let start = if to_filter.is_empty() { 0 } else { start % to_filter.len() };
    let mut processed = 0;
    'nodes: for n in to_filter[start..].iter().chain(&to_filter[..start]) {
        if feasible.len() >= want {
            break;
        }
        processed += 1;
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
        return (Decision::Unschedulable(summary), processed);
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
    (Decision::Bind(tied[(seed as usize) % tied.len()].node.name_any()), processed)
}

struct Ctx {
    client: Client,
    profiles: Vec<Profile>,
    /// Nodes and their pods, assumed ones included; locked for one decision at a time
    /// (never across an await).
    cache: Arc<std::sync::Mutex<Cache>>,
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
    if cache::node_of(&pod).is_some() || pod.metadata.deletion_timestamp.is_some() || cache::is_terminal(&pod) {
        return Ok(Action::await_change());
    }
    let scheduler_name = spec.scheduler_name.clone().unwrap_or_else(|| "default-scheduler".into());
    let Some(profile) = ctx.profiles.iter().find(|p| p.scheduler_name == scheduler_name) else {
        return Ok(Action::await_change()); // another scheduler's pod
    };
    let (Some(ns), Some(uid)) = (pod.namespace(), pod.metadata.uid.clone()) else { return Ok(Action::await_change()) };
    let name = pod.name_any();
    let decision = {
        let mut cache = ctx.cache.lock().expect("scheduler cache lock");
        if cache.is_assumed(&uid) {
            return Ok(Action::await_change()); // bound a moment ago; the watch lags
        }
        let (decision, processed) = decide_from(profile, &pod, cache.infos(), cache.next_start);
        cache.next_start = cache.next_start.wrapping_add(processed);
        if let Decision::Bind(node) = &decision {
            cache.assume(&pod, node);
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
                    ctx.cache.lock().expect("scheduler cache lock").forget(&uid);
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
        let cache = Arc::new(std::sync::Mutex::new(Cache::default()));
        let node_api: Api<Node> = Api::all(self.client.clone());
        let pod_api: Api<Pod> = Api::all(self.client.clone());
        // The cache follows the Node and Pod watches, each in its own task; node changes
        // also re-trigger every pending pod (a node joining or freeing up may make it
        // schedulable).
        let (trigger_tx, trigger_rx) = tokio::sync::mpsc::channel::<()>(1);
        let (nodes_ready, pods_ready) = (Arc::new(tokio::sync::Notify::new()), Arc::new(tokio::sync::Notify::new()));
        let nodes = watcher(node_api, watcher::Config::default()).default_backoff();
        tokio::spawn(follow(nodes, cache.clone(), nodes_ready.clone(), shutdown.clone(), move |cache, event| {
            match event {
                Change::Apply(n) => cache.set_node(n),
                Change::Delete(n) => cache.remove_node(&n.name_any()),
                Change::Reset(all) => cache.reset_nodes(all),
            }
            // A full channel already carries a pending "reconcile all".
            let _ = trigger_tx.try_send(());
        }));
        let pods = watcher(pod_api.clone(), watcher::Config::default()).default_backoff();
        tokio::spawn(follow(pods, cache.clone(), pods_ready.clone(), shutdown.clone(), |cache, event| match event {
            Change::Apply(p) => cache.update_pod(p),
            Change::Delete(p) => cache.remove_pod(&p),
            Change::Reset(all) => cache.reset_pods(all),
        }));
        // Bindings (and their Events) in flight at once: decisions are serial anyway, and an
        // unbounded burst would trip the apiserver's per-user in-flight limit (429, then a
        // one-second Retry-After for every request of this user).
        let controller = Controller::new(pod_api, watcher::Config::default().fields("spec.nodeName="))
            .with_config(kube::runtime::controller::Config::default().concurrency(BIND_CONCURRENCY));
        let ctx = Arc::new(Ctx { client: self.client.clone(), profiles: self.profiles, cache });
        tokio::join!(nodes_ready.notified(), pods_ready.notified());
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

/// A watch event as the cache takes it: one object, or a whole (re-)listed set.
enum Change<K> {
    Apply(K),
    Delete(K),
    Reset(Vec<K>),
}

/// Feeds a watch into the cache until `shutdown`; `ready` is notified after the first list.
async fn follow<K, S>(
    stream: S,
    cache: Arc<std::sync::Mutex<Cache>>,
    ready: Arc<tokio::sync::Notify>,
    shutdown: CancellationToken,
    mut apply: impl FnMut(&mut Cache, Change<K>),
) where
    K: kube::Resource,
    S: futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
{
    // managedFields are the bulk of a stored object and no plugin reads them (upstream's
    // informers strip them too).
    let strip = |mut k: K| {
        k.meta_mut().managed_fields = None;
        k
    };
    use futures::StreamExt;
    let mut stream = std::pin::pin!(stream);
    let mut listing: Option<Vec<K>> = None;
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => return,
            event = stream.next() => match event {
                None => return,
                Some(Err(e)) => { warn!(error = %e, "watch failed; retrying"); continue }
                Some(Ok(event)) => event,
            },
        };
        let change = match event {
            watcher::Event::Init => {
                listing = Some(Vec::new());
                continue;
            }
            watcher::Event::InitApply(k) => {
                listing.get_or_insert_with(Vec::new).push(strip(k));
                continue;
            }
            watcher::Event::InitDone => Change::Reset(listing.take().unwrap_or_default()),
            watcher::Event::Apply(k) => Change::Apply(strip(k)),
            watcher::Event::Delete(k) => Change::Delete(k),
        };
        let first = matches!(change, Change::Reset(_));
        apply(&mut cache.lock().expect("scheduler cache lock"), change);
        if first {
            // notify_one stores a permit, so a waiter that arrives later still wakes.
            ready.notify_one();
        }
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
    fn feasible_nodes_to_find_follow_upstream() {
        let cases =
            [(50, 50), (100, 100), (250, 120), (500, 230), (1000, 420), (5000, 500), (6000, 300), (20000, 1000)];
        for (all, want) in cases {
            assert_eq!(num_feasible_nodes_to_find(all), want, "{all} nodes");
        }
    }

    #[test]
    fn large_clusters_are_sampled_from_a_rotating_start() {
        let nodes: Vec<NodeInfo> = (0..500)
            .map(|i| {
                info(
                    node(json!({"metadata": {"name": format!("n{i:03}")},
                        "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}})),
                    vec![],
                )
            })
            .collect();
        let profile = Profile::default_profile("default-scheduler");
        let p =
            pod(json!({"metadata": {"name": "p", "uid": "u"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}));
        let (d, processed) = decide_from(&profile, &p, &nodes, 400);
        assert_eq!(processed, 230, "46 % of 500 nodes");
        let Decision::Bind(chosen) = d else { panic!("{d:?}") };
        let i: usize = chosen[1..].parse().unwrap();
        assert!(!(130..400).contains(&i), "chosen among the 230 nodes from n400 on, wrapping: {chosen}");
        // Nowhere to go: every node is looked at, and the summary counts them all.
        let big =
            pod(json!({"metadata": {"name": "big", "uid": "b"}, "spec": {"containers": [{"name": "c", "image": "i",
            "resources": {"requests": {"cpu": "64"}}}]}}));
        let (d, processed) = decide_from(&profile, &big, &nodes, 400);
        assert_eq!(processed, 500);
        assert_eq!(d, Decision::Unschedulable("0/500 nodes are available: 500 Insufficient cpu.".into()));
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
