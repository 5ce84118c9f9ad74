//! # skiff-scheduler: places pending pods on nodes
//!
//! Upstream's shape (DESIGN.md section 5): a [`queue::SchedulingQueue`] of pending pods
//! (priority order, back-off, unschedulable pods parked until a relevant cluster event) feeds
//! one scheduling cycle at a time — every [`framework::FilterPlugin`] on the nodes, then the
//! [`framework::ScorePlugin`]s on the survivors (normalized, weighted) — over a [`cache`] of
//! nodes kept current by the Node and Pod watches. The winner is bound with
//! `POST pods/{name}/binding` in the background, as kube-scheduler's binding cycle. When no
//! node fits, the PostFilter plugins (upstream's DefaultPreemption) may evict pods of lower
//! priority; Reserve plugins run after the choice and the Bind plugin (DefaultBinder)
//! writes it. Plugins live in [`plugins`], one file each, named as upstream's;
//! [`config`] reads a `KubeSchedulerConfiguration`; [`explain`] shows every plugin's verdict
//! for a pod without binding it.
//!
//! Start reading at [`Scheduler::run`], then [`schedule_one`]. Invariants:
//! - One scheduling decision at a time (one lock around the cache and the queue), so two
//!   pods never take the same free capacity; a pod is *assumed* on its node as soon as it is
//!   chosen, until the pod watch shows the binding. The cache keeps every node's pods and
//!   requested resources incrementally, so a cycle costs O(nodes), not O(all pods).
//! - A pod that fits nowhere gets `PodScheduled=False` (`Unschedulable`) with upstream's
//!   summary ("0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint
//!   ...") and a `FailedScheduling` Event, and waits for a node or pod change.
//! - Only pods whose `schedulerName` is one of the profiles' are touched.
//! - With leader election, only the holder of the `kube-system/kube-scheduler` Lease binds.

pub mod cache;
pub mod config;
pub mod explain;
pub mod framework;
pub mod plugins;
pub mod queue;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cache::Cache;
use framework::{
    BindPlugin, CycleState, FilterPlugin, NodeInfo, Nomination, PostFilterPlugin, ReservePlugin, ScorePlugin, Status,
};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};
use queue::{ClusterEvent, SchedulingQueue};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Scheduling cycles whose API writes (binding, or status and evictions) are in flight at
/// once. Decisions are serial; the writes are latency-bound (an etcd commit each), so many
/// overlap: 16 capped the scheduler at ~500 pods/s, 64 reaches ~1,500 on 2 cores. Kept
/// (with the 8 event writers) under the apiserver's per-user share of mutating requests
/// (75 of the default 200), past which every request of this user would get 429 and a
/// one-second Retry-After.
const BIND_CONCURRENCY: usize = 64;

/// Why the scheduler stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("leader election: {0}")]
    Leader(String),
    #[error("{0}")]
    Config(String),
}

/// The plugins of one profile, with score weights.
pub struct Profile {
    pub scheduler_name: String,
    pub filters: Vec<Box<dyn FilterPlugin>>,
    pub scores: Vec<(Box<dyn ScorePlugin>, i64)>,
    pub post_filters: Vec<Box<dyn PostFilterPlugin>>,
    pub reserves: Vec<Box<dyn ReservePlugin>>,
    pub binder: Box<dyn BindPlugin>,
    /// Upstream's `percentageOfNodesToScore`: `None` (or 0) is adaptive
    /// ([`num_feasible_nodes_to_find`]), 100 filters every node.
    pub percentage_of_nodes_to_score: Option<u32>,
}

impl Profile {
    /// Upstream's default plugin set and weights.
    pub fn default_profile(scheduler_name: &str) -> Self {
        Self::new(scheduler_name, plugins::default_filters(), plugins::default_scores())
    }

    /// These filters and scores, with upstream's default PostFilter (DefaultPreemption) and
    /// Bind (DefaultBinder) plugins and no Reserve plugin.
    pub fn new(
        scheduler_name: &str,
        filters: Vec<Box<dyn FilterPlugin>>,
        scores: Vec<(Box<dyn ScorePlugin>, i64)>,
    ) -> Self {
        Self {
            scheduler_name: scheduler_name.into(),
            filters,
            scores,
            post_filters: vec![Box::new(plugins::default_preemption::DefaultPreemption)],
            reserves: Vec::new(),
            binder: Box::new(plugins::default_binder::DefaultBinder),
            percentage_of_nodes_to_score: None,
        }
    }

    /// The PostFilter plugins in order; the first nomination wins.
    fn post_filter(&self, pod: &Pod, nodes: &[NodeInfo], resolvable: &[usize]) -> Option<Nomination> {
        self.post_filters.iter().find_map(|p| p.post_filter(&self.filters, pod, nodes, resolvable))
    }

    /// The Reserve plugins in order; on a failure, those that reserved are un-reserved (in
    /// reverse) and the failing plugin's name and reason are returned.
    fn reserve(&self, pod: &Pod, node: &NodeInfo) -> Result<(), (&'static str, String)> {
        for (i, r) in self.reserves.iter().enumerate() {
            if let Some(reason) = r.reserve(pod, node).reason() {
                for done in self.reserves[..i].iter().rev() {
                    done.unreserve(pod, &node.node.name_any());
                }
                return Err((r.name(), reason.to_string()));
            }
        }
        Ok(())
    }

    fn unreserve(&self, pod: &Pod, node: &str) {
        for r in self.reserves.iter().rev() {
            r.unreserve(pod, node);
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

/// A scheduling cycle's decision with what the queue and preemption need to know.
#[derive(Debug)]
pub struct Outcome {
    pub decision: Decision,
    /// Nodes filtered (the next cycle starts after them).
    pub processed: usize,
    /// Plugins that rejected at least one node (or the pod at PreFilter).
    pub rejected_by: BTreeSet<&'static str>,
    /// Indexes of the nodes that failed with resolvable statuses only (preemption may help).
    pub resolvable: Vec<usize>,
}

/// Upstream's `minFeasibleNodesToFind`: below this many nodes, every node is filtered.
const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// Upstream's `minFeasibleNodesPercentageToFind`.
const MIN_FEASIBLE_NODES_PERCENTAGE: usize = 5;

/// How many feasible nodes a cycle looks for before it stops filtering (upstream's
/// `numFeasibleNodesToFind`). With `percentage` unset or 0 (adaptive): all of them up to
/// 100 nodes; beyond, 50 % minus 1 % per 125 nodes, at least 5 % and at least 100 nodes.
/// Scoring 10 % of 5,000 nodes finds as good a node in practice, at a tenth of the cost.
/// A configured percentage applies as is (still at least 100 nodes).
pub fn num_feasible_nodes_to_find(num_all: usize, percentage: Option<u32>) -> usize {
    if num_all < MIN_FEASIBLE_NODES_TO_FIND || percentage.is_some_and(|p| p >= 100) {
        return num_all;
    }
    let percentage = match percentage.filter(|p| *p > 0) {
        Some(p) => p as usize,
        None => 50usize.saturating_sub(num_all / 125).max(MIN_FEASIBLE_NODES_PERCENTAGE),
    };
    (num_all * percentage / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

/// Runs filters and scores for `pod` over `nodes`. Pure: unit-testable without a cluster.
pub fn decide(profile: &Profile, pod: &Pod, nodes: &[NodeInfo]) -> Decision {
    schedule_one(profile, pod, nodes, 0).decision
}

/// [`decide`], filtering from node `start` onwards; also returns how many nodes were
/// filtered.
pub fn decide_from(profile: &Profile, pod: &Pod, nodes: &[NodeInfo], start: usize) -> (Decision, usize) {
    let o = schedule_one(profile, pod, nodes, start);
    (o.decision, o.processed)
}

/// One scheduling cycle (upstream's `schedulePod`): filters from node `start` onwards
/// (wrapping), stopping once [`num_feasible_nodes_to_find`] nodes passed, then scores the
/// feasible ones. Pure.
pub fn schedule_one(profile: &Profile, pod: &Pod, nodes: &[NodeInfo], start: usize) -> Outcome {
    let mut state = CycleState::default();
    let mut feasible: Vec<&NodeInfo> = Vec::new();
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut rejected_by = BTreeSet::new();
    let mut resolvable = Vec::new();
    // PreFilter: a failure there rejects every node with its reason.
    let pre_filter_failure = profile.filters.iter().find_map(|f| {
        let status = f.pre_filter(&mut state, pod, nodes);
        status.reason().map(|r| (f.name(), r.to_string()))
    });
    let to_filter = if pre_filter_failure.is_some() { &[][..] } else { nodes };
    if let Some((plugin, r)) = pre_filter_failure {
        rejected_by.insert(plugin);
        reasons.insert(r, nodes.len());
    }
    let want = num_feasible_nodes_to_find(to_filter.len(), profile.percentage_of_nodes_to_score);
    let start = if to_filter.is_empty() { 0 } else { start % to_filter.len() };
    let mut processed = 0;
    'nodes: for (i, n) in to_filter.iter().enumerate().skip(start).chain(to_filter.iter().enumerate().take(start)) {
        if feasible.len() >= want {
            break;
        }
        processed += 1;
        for f in &profile.filters {
            let status = f.filter(&mut state, pod, n);
            if let Some(r) = status.reason() {
                *reasons.entry(r.to_string()).or_default() += 1;
                rejected_by.insert(f.name());
                if matches!(status, Status::Unschedulable(_)) {
                    resolvable.push(i);
                }
                continue 'nodes;
            }
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
        return Outcome { decision: Decision::Unschedulable(summary), processed, rejected_by, resolvable };
    }
    let totals = score(profile, &mut state, pod, nodes, &feasible);
    // The best total wins; ties go to the node name order after a per-pod rotation, so equal
    // nodes share pods instead of all going to the first name.
    let best = totals.iter().copied().max().unwrap_or(0);
    let mut tied: Vec<&NodeInfo> = feasible.iter().zip(&totals).filter(|(_, t)| **t == best).map(|(n, _)| *n).collect();
    tied.sort_by(|a, b| a.node.metadata.name.cmp(&b.node.metadata.name));
    let seed = pod
        .metadata
        .uid
        .as_deref()
        .unwrap_or("")
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    let chosen = tied[(seed as usize) % tied.len()].node.name_any();
    Outcome { decision: Decision::Bind(chosen), processed, rejected_by, resolvable }
}

/// The weighted total of every score plugin for each feasible node.
fn score(profile: &Profile, state: &mut CycleState, pod: &Pod, nodes: &[NodeInfo], feasible: &[&NodeInfo]) -> Vec<i64> {
    let mut totals = vec![0i64; feasible.len()];
    for (plugin, _) in &profile.scores {
        plugin.pre_score(state, pod, nodes, feasible);
    }
    for (plugin, weight) in &profile.scores {
        let mut scores: Vec<i64> = feasible.iter().map(|n| plugin.score(state, pod, n)).collect();
        plugin.normalize(&mut scores);
        for (t, s) in totals.iter_mut().zip(scores) {
            *t += s * weight;
        }
    }
    totals
}

/// What the watches, the scheduling loop and the binding tasks share, behind one lock
/// (never held across an await).
#[derive(Default)]
struct Shared {
    cache: Cache,
    queue: SchedulingQueue,
}

type SharedRef = Arc<Mutex<Shared>>;

fn lock(shared: &SharedRef) -> std::sync::MutexGuard<'_, Shared> {
    shared.lock().expect("scheduler state lock")
}

/// Events queued for writing at most; past this, new ones are dropped (and logged), as
/// client-go's broadcaster does when its queue is full.
const EVENT_QUEUE: usize = 4096;
/// Event writes in flight at once.
const EVENT_WRITERS: usize = 8;

/// Writes Events in the background, as client-go's event broadcaster: scheduling never
/// waits for an Event, and an Event never holds a binding slot.
#[derive(Clone)]
struct Recorder {
    tx: tokio::sync::mpsc::Sender<k8s_openapi::api::core::v1::Event>,
}

impl Recorder {
    fn start(client: Client, stop: CancellationToken) -> Self {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<k8s_openapi::api::core::v1::Event>(EVENT_QUEUE);
        tokio::spawn(async move {
            let writers = Arc::new(tokio::sync::Semaphore::new(EVENT_WRITERS));
            loop {
                let ev = tokio::select! {
                    ev = rx.recv() => match ev { Some(ev) => ev, None => return },
                    _ = stop.cancelled() => return,
                };
                let Ok(permit) = writers.clone().acquire_owned().await else { return };
                let client = client.clone();
                tokio::spawn(async move {
                    let ns = ev.metadata.namespace.clone().unwrap_or_default();
                    let api = Api::<k8s_openapi::api::core::v1::Event>::namespaced(client, &ns);
                    if let Err(e) = api.create(&PostParams::default(), &ev).await {
                        warn!(error = %e, "recording an event failed");
                    }
                    drop(permit);
                });
            }
        });
        Self { tx }
    }

    /// Queues an Event about `pod`.
    fn record(&self, pod: &Pod, type_: &str, reason: &str, message: &str) {
        let ns = pod.namespace().unwrap_or_default();
        let now = k8s_openapi::jiff::Timestamp::now();
        let ev = json!({"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": format!("{}.{:x}", pod.name_any(), now.as_nanosecond()), "namespace": ns},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": pod.name_any(), "namespace": ns, "uid": pod.metadata.uid},
            "reason": reason, "message": message, "type": type_, "source": {"component": "default-scheduler"},
            "reportingComponent": "default-scheduler",
            "firstTimestamp": now.to_string(), "lastTimestamp": now.to_string(), "count": 1});
        let Ok(ev) = serde_json::from_value(ev) else { return };
        if self.tx.try_send(ev).is_err() {
            warn!(pod = pod.name_any(), reason, "event queue full; event dropped");
        }
    }
}

/// Everything a scheduling loop needs.
struct Ctx {
    client: Client,
    events: Recorder,
    profiles: Vec<Profile>,
    shared: SharedRef,
    /// Wakes the loop: a pod was queued or a binding failed.
    wake: Arc<tokio::sync::Notify>,
}

impl Ctx {
    fn profile_index(&self, pod: &Pod) -> Option<usize> {
        let name = pod.spec.as_ref().and_then(|s| s.scheduler_name.as_deref()).unwrap_or("default-scheduler");
        self.profiles.iter().position(|p| p.scheduler_name == name)
    }

    fn profile_for(&self, pod: &Pod) -> Option<&Profile> {
        self.profile_index(pod).map(|i| &self.profiles[i])
    }

    /// A pending pod one of our profiles schedules.
    fn wants(&self, pod: &Pod) -> bool {
        cache::node_of(pod).is_none()
            && pod.metadata.deletion_timestamp.is_none()
            && !cache::is_terminal(pod)
            && self.profile_for(pod).is_some()
    }
}

/// One scheduling cycle for a popped pod: decide under the lock, then hand the API writes
/// to a task that holds `permit` (bounding the writes in flight).
fn schedule(ctx: &Arc<Ctx>, pod: Pod, permit: tokio::sync::OwnedSemaphorePermit) {
    let Some(profile_index) = ctx.profile_index(&pod) else { return };
    let profile = &ctx.profiles[profile_index];
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let now = Instant::now();
    let (decision, nomination) = {
        let mut guard = lock(&ctx.shared);
        let s = &mut *guard;
        let start = s.cache.next_start;
        let (outcome, nomination) = s.cache.with_nominated(&pod, |infos| {
            let outcome = schedule_one(profile, &pod, infos, start);
            let nomination = match outcome.decision {
                Decision::Unschedulable(_) => profile.post_filter(&pod, infos, &outcome.resolvable),
                Decision::Bind(_) => None,
            };
            (outcome, nomination)
        });
        s.cache.next_start = start.wrapping_add(outcome.processed);
        let mut decision = outcome.decision;
        if let Decision::Bind(node) = &decision {
            let reserved = match s.cache.info(node) {
                Some(info) => profile.reserve(&pod, info),
                None => Ok(()),
            };
            match reserved {
                Ok(()) => {
                    s.cache.assume(&pod, node);
                    s.queue.on_event(ClusterEvent::AssignedPodAdd, now);
                }
                Err((plugin, reason)) => {
                    warn!(pod = pod.name_any(), plugin, %reason, "reserve failed");
                    s.queue.failed(&uid, None, now);
                    decision = Decision::Unschedulable(format!("running Reserve plugin {plugin:?}: {reason}"));
                }
            }
        } else {
            if let Some(n) = &nomination {
                s.cache.nominate(&pod, &n.node);
            }
            s.queue.failed(&uid, Some(outcome.rejected_by), now);
        }
        (decision, nomination)
    };
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let profile = &ctx.profiles[profile_index];
        match decision {
            Decision::Bind(node) => bind(&ctx, profile, &pod, &node).await,
            Decision::Unschedulable(message) => report_unschedulable(&ctx, &pod, &message, nomination).await,
        }
        drop(permit);
    });
}

/// Upstream's binding cycle, through the profile's Bind plugin.
async fn bind(ctx: &Ctx, profile: &Profile, pod: &Pod, node: &str) {
    let (ns, name, uid) =
        (pod.namespace().unwrap_or_default(), pod.name_any(), pod.metadata.uid.clone().unwrap_or_default());
    match profile.binder.bind(&ctx.client, pod, node).await {
        Ok(()) => {
            lock(&ctx.shared).queue.done(&uid);
            info!(pod = format!("{ns}/{name}"), node, "bound");
            ctx.events.record(pod, "Normal", "Scheduled", &format!("Successfully assigned {ns}/{name} to {node}"));
        }
        Err(e) => {
            profile.unreserve(pod, node);
            let mut s = lock(&ctx.shared);
            s.cache.forget(&uid);
            match e {
                // Bound meanwhile (by us through another path, or another scheduler), or gone.
                kube::Error::Api(st) if st.code == 409 || st.code == 404 => s.queue.delete(&uid),
                e => {
                    warn!(pod = format!("{ns}/{name}"), error = %e, "binding failed; retrying after back-off");
                    s.queue.failed(&uid, None, Instant::now());
                }
            }
            drop(s);
            ctx.wake.notify_one();
        }
    }
}

/// A pod that fits nowhere: evict the victims preemption chose (if any), then record
/// `PodScheduled=False` (and `nominatedNodeName`) and a `FailedScheduling` Event, unless
/// the pod already says exactly this.
async fn report_unschedulable(ctx: &Ctx, pod: &Pod, message: &str, candidate: Option<Nomination>) {
    let (ns, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let nominated = candidate.as_ref().map(|c| c.node.clone());
    if let Some(c) = &candidate {
        for victim in &c.victims {
            let vns = victim.namespace().unwrap_or_default();
            let msg =
                format!("Preempted by pod {} on node {}", pod.metadata.uid.as_deref().unwrap_or_default(), c.node);
            info!(
                victim = format!("{vns}/{}", victim.name_any()),
                preemptor = format!("{ns}/{name}"),
                node = c.node,
                "preempting"
            );
            let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &vns);
            // Upstream marks the victim with DisruptionTarget before deleting it gracefully.
            let condition = json!({"status": {"conditions": [{"type": "DisruptionTarget", "status": "True",
                "reason": "PreemptionByScheduler", "message": format!("{}: preempting to accommodate a higher priority pod", "default-scheduler"),
                "lastTransitionTime": k8s_openapi::jiff::Timestamp::now().to_string()}]}});
            if let Err(e) =
                api.patch_status(&victim.name_any(), &PatchParams::default(), &Patch::Strategic(condition)).await
            {
                debug!(error = %e, "marking a victim failed");
            }
            let dp = DeleteParams {
                preconditions: victim
                    .metadata
                    .uid
                    .clone()
                    .map(|uid| kube::api::Preconditions { uid: Some(uid), resource_version: None }),
                ..Default::default()
            };
            match api.delete(&victim.name_any(), &dp).await {
                Ok(_) => ctx.events.record(victim, "Normal", "Preempted", &msg),
                Err(e) => warn!(error = %e, victim = victim.name_any(), "evicting a preemption victim failed"),
            }
        }
    }
    let status = pod.status.as_ref();
    let already = status.and_then(|s| s.conditions.as_ref()).is_some_and(|cs| {
        cs.iter().any(|c| c.type_ == "PodScheduled" && c.status == "False" && c.message.as_deref() == Some(message))
    }) && (nominated.is_none()
        || status.and_then(|s| s.nominated_node_name.as_ref()) == nominated.as_ref());
    if already {
        return;
    }
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    // A strategic merge patch merges conditions by type: only PodScheduled changes.
    let mut patch = json!({"status": {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": message, "lastProbeTime": null, "lastTransitionTime": now}]}});
    if let Some(node) = &nominated {
        patch["status"]["nominatedNodeName"] = json!(node);
    }
    if let Err(e) = pods.patch_status(&name, &PatchParams::default(), &Patch::Strategic(patch)).await {
        warn!(pod = format!("{ns}/{name}"), error = %e, "recording PodScheduled=False failed");
        return;
    }
    ctx.events.record(pod, "Warning", "FailedScheduling", message);
    info!(pod = format!("{ns}/{name}"), %message, nominated = nominated.as_deref().unwrap_or(""), "unschedulable");
}

/// The scheduler; start it with [`Scheduler::run`].
pub struct Scheduler {
    client: Client,
    profiles: Vec<Profile>,
    leader: Option<skiff_controllers::leader::LeaseConfig>,
}

impl Scheduler {
    /// Upstream's default profile under both `default-scheduler` and `skiff-scheduler`,
    /// without leader election.
    pub fn new(client: Client) -> Self {
        Self::with_profiles(
            client,
            vec![Profile::default_profile("default-scheduler"), Profile::default_profile("skiff-scheduler")],
        )
    }

    pub fn with_profiles(client: Client, profiles: Vec<Profile>) -> Self {
        Self { client, profiles, leader: None }
    }

    /// Schedules only while holding the Lease `cfg` names; stops (with an error, so the
    /// process exits and restarts as upstream's does) when the lease is lost.
    pub fn with_leader_election(mut self, cfg: skiff_controllers::leader::LeaseConfig) -> Self {
        self.leader = Some(cfg);
        self
    }

    /// Runs until `shutdown` (or until leadership is lost).
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Error> {
        let active = match self.leader.clone() {
            None => shutdown.clone(),
            Some(cfg) => match skiff_controllers::leader::lead(self.client.clone(), cfg, shutdown.clone()).await {
                Ok(Some(token)) => token,
                Ok(None) => return Ok(()),
                Err(e) => return Err(Error::Leader(e.to_string())),
            },
        };
        let (client, leader) = (self.client.clone(), self.leader.clone());
        self.run_leading(active.clone()).await;
        if active.is_cancelled() && !shutdown.is_cancelled() {
            return Err(Error::Leader("lost the lease; stopping".into()));
        }
        if let Some(cfg) = &leader {
            skiff_controllers::leader::release(&client, cfg).await;
        }
        Ok(())
    }

    async fn run_leading(self, stop: CancellationToken) {
        let shared: SharedRef = Arc::default();
        let wake = Arc::new(tokio::sync::Notify::new());
        let ctx = Arc::new(Ctx {
            client: self.client.clone(),
            events: Recorder::start(self.client.clone(), stop.clone()),
            profiles: self.profiles,
            shared: shared.clone(),
            wake: wake.clone(),
        });
        let (nodes_ready, pods_ready) = (Arc::new(tokio::sync::Notify::new()), Arc::new(tokio::sync::Notify::new()));
        let nodes = watcher(Api::<Node>::all(self.client.clone()), watcher::Config::default()).default_backoff();
        let node_wake = wake.clone();
        tokio::spawn(follow(nodes, shared.clone(), nodes_ready.clone(), stop.clone(), move |s, event| {
            let now = Instant::now();
            let changed = match event {
                Change::Apply(n) => s.cache.set_node(n),
                Change::Delete(n) => {
                    s.cache.remove_node(&n.name_any());
                    false
                }
                Change::Reset(all) => {
                    s.cache.reset_nodes(all);
                    true
                }
            };
            if changed {
                s.queue.on_event(ClusterEvent::NodeChange, now);
                node_wake.notify_one();
            }
        }));
        let pods = watcher(Api::<Pod>::all(self.client.clone()), watcher::Config::default()).default_backoff();
        let watch_ctx = ctx.clone();
        tokio::spawn(follow(pods, shared.clone(), pods_ready.clone(), stop.clone(), move |s, event| {
            let now = Instant::now();
            match event {
                Change::Apply(p) => {
                    let uid = p.metadata.uid.clone().unwrap_or_default();
                    let was_placed = s.cache.is_placed(&uid);
                    let queued = watch_ctx.wants(&p).then(|| p.clone());
                    s.cache.update_pod(p);
                    let placed = s.cache.is_placed(&uid);
                    if was_placed && !placed {
                        s.queue.on_event(ClusterEvent::AssignedPodDelete, now); // finished
                    } else if placed && !was_placed {
                        s.queue.on_event(ClusterEvent::AssignedPodAdd, now); // bound by someone else
                    }
                    match queued {
                        Some(pod) => s.queue.add_or_update(pod, now),
                        None => s.queue.delete(&uid),
                    }
                }
                Change::Delete(p) => {
                    let uid = p.metadata.uid.clone().unwrap_or_default();
                    if s.cache.is_placed(&uid) {
                        s.queue.on_event(ClusterEvent::AssignedPodDelete, now);
                    }
                    s.cache.remove_pod(&p);
                    s.queue.delete(&uid);
                }
                Change::Reset(all) => {
                    let pending: Vec<Pod> = all.iter().filter(|p| watch_ctx.wants(p)).cloned().collect();
                    s.cache.reset_pods(all);
                    let uids: HashSet<String> = pending.iter().filter_map(|p| p.metadata.uid.clone()).collect();
                    s.queue.retain(&uids);
                    for p in pending {
                        s.queue.add_or_update(p, now);
                    }
                    s.queue.on_event(ClusterEvent::NodeChange, now);
                }
            }
            watch_ctx.wake.notify_one();
        }));
        tokio::select! {
            _ = async { tokio::join!(nodes_ready.notified(), pods_ready.notified()) } => {}
            _ = stop.cancelled() => return,
        }
        info!("scheduler started");
        let permits = Arc::new(tokio::sync::Semaphore::new(BIND_CONCURRENCY));
        loop {
            let permit = tokio::select! {
                p = permits.clone().acquire_owned() => p.expect("never closed"),
                _ = stop.cancelled() => break,
            };
            let (next, ready_at) = {
                let mut s = lock(&shared);
                (s.queue.pop(Instant::now()), s.queue.next_ready())
            };
            match next {
                Some(q) => schedule(&ctx, q.pod, permit),
                None => {
                    drop(permit);
                    // Flushes unschedulable leftovers at least this often.
                    let until = ready_at.unwrap_or_else(|| Instant::now() + Duration::from_secs(30));
                    tokio::select! {
                        _ = wake.notified() => {}
                        _ = tokio::time::sleep_until(until.into()) => {}
                        _ = stop.cancelled() => break,
                    }
                }
            }
        }
        // Let the writes in flight finish, briefly.
        let _ = tokio::time::timeout(Duration::from_secs(5), permits.acquire_many(BIND_CONCURRENCY as u32)).await;
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
    shared: SharedRef,
    ready: Arc<tokio::sync::Notify>,
    shutdown: CancellationToken,
    mut apply: impl FnMut(&mut Shared, Change<K>),
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
        apply(&mut lock(&shared), change);
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
            assert_eq!(num_feasible_nodes_to_find(all, None), want, "{all} nodes");
        }
        // A configured percentage: as given, at least 100 nodes; 100 % is every node.
        assert_eq!(num_feasible_nodes_to_find(5000, Some(20)), 1000);
        assert_eq!(num_feasible_nodes_to_find(5000, Some(1)), 100);
        assert_eq!(num_feasible_nodes_to_find(5000, Some(100)), 5000);
        assert_eq!(num_feasible_nodes_to_find(5000, Some(0)), 500, "0 is adaptive");
        assert_eq!(num_feasible_nodes_to_find(80, Some(10)), 80);
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
        let profile = Profile::new("s", vec![Box::new(Refuse)], vec![]);
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
        state.insert("k", 6u32);
        assert_eq!(state.get::<u32>("k"), Some(&6), "replaced");
        assert!(format!("{state:?}").contains("\"k\""));
    }
}
