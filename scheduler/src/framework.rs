//! The scheduling framework, in upstream's shape: a pod goes through every Filter plugin for
//! every node (a node survives only if all say Success), then the Score plugins rank the
//! survivors (each plugin's scores normalized to 0..=100, then weighted and summed), and the
//! best node wins. Plugin names are upstream's.
//!
//! After the filters, upstream's other extension points: [`PostFilterPlugin`] (when no node
//! fits: DefaultPreemption), [`ReservePlugin`] (after the choice, before binding) and
//! [`BindPlugin`] (DefaultBinder: `POST pods/{name}/binding`).
//!
//! Plugins that need the whole cluster (PodTopologySpread, InterPodAffinity) compute it once
//! per cycle at upstream's PreFilter and PreScore points ([`FilterPlugin::pre_filter`],
//! [`ScorePlugin::pre_score`]) and keep it in the [`CycleState`] for their per-node calls.

use std::any::Any;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Pod};

/// The outcome of a filter, as upstream's framework.Status (only the codes used here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Success,
    /// The pod cannot go on this node; the reason is shown to users, upstream's wording
    /// ("node(s) had untolerated taint {...}", "Insufficient cpu").
    Unschedulable(String),
    /// Like Unschedulable, but preemption could not help either.
    UnschedulableAndUnresolvable(String),
}

impl Status {
    pub fn is_success(&self) -> bool {
        matches!(self, Status::Success)
    }
    pub fn reason(&self) -> Option<&str> {
        match self {
            Status::Success => None,
            Status::Unschedulable(r) | Status::UnschedulableAndUnresolvable(r) => Some(r),
        }
    }
}

/// Resource amounts in upstream's units: CPU in millicores, memory and ephemeral storage in
/// bytes, and the number of pods.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    pub pods: i64,
}

/// A node and what is already placed on it (bound pods plus pods this scheduler assumed).
/// The sums are kept as pods come and go, as upstream's NodeInfo does, so no plugin
/// re-adds every pod's requests per cycle.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub node: Node,
    pub pods: Vec<Pod>,
    /// Sum of the requests of `pods` (computed with [`pod_requests`]), with `pods` = count.
    pub requested: Resources,
    /// The same with missing CPU and memory requests counted as upstream's defaults
    /// ([`crate::plugins::node_resources_fit::pod_requests_non_zero`]), for scoring.
    pub non_zero_requested: Resources,
    /// `status.allocatable` (falls back to capacity).
    pub allocatable: Resources,
    /// The subset of `pods` with any pod affinity or anti-affinity term (upstream's
    /// `PodsWithAffinity`): InterPodAffinity only needs these when the incoming pod has no
    /// terms of its own, which keeps a cycle O(nodes) instead of O(all pods).
    pub pods_with_affinity: Vec<Pod>,
    /// `status.images`, normalized name → size (ImageLocality), computed once per Node
    /// change instead of once per cycle.
    pub images: BTreeMap<String, i64>,
    /// Changes whenever the node or its pods do; unique across all NodeInfos of the
    /// process (a clone shares it until either changes), so plugins can memoize per-node
    /// results across cycles (upstream's `NodeInfo.Generation`).
    pub generation: u64,
}

/// The next [`NodeInfo::generation`]: a process-wide counter, never 0.
fn next_generation() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Whether the pod has any pod affinity or anti-affinity term.
pub fn has_pod_affinity(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .is_some_and(|a| a.pod_affinity.is_some() || a.pod_anti_affinity.is_some())
}

fn accumulate(total: &mut Resources, r: &Resources, sign: i64) {
    total.milli_cpu += sign * r.milli_cpu;
    total.memory += sign * r.memory;
    total.ephemeral_storage += sign * r.ephemeral_storage;
    total.pods += sign;
}

impl NodeInfo {
    /// A node with no pods.
    pub fn new(node: Node) -> Self {
        let allocatable = crate::plugins::node_resources_fit::node_allocatable(&node);
        let images = crate::plugins::image_locality::node_images(&node);
        Self {
            node,
            pods: Vec::new(),
            requested: Resources::default(),
            non_zero_requested: Resources::default(),
            allocatable,
            pods_with_affinity: Vec::new(),
            images,
            generation: next_generation(),
        }
    }

    /// A node with these pods on it.
    pub fn with_pods(node: Node, pods: Vec<Pod>) -> Self {
        let mut info = Self::new(node);
        for p in pods {
            info.add_pod(p);
        }
        info
    }

    /// Replaces the Node object (a status or label change), keeping the pods.
    pub fn set_node(&mut self, node: Node) {
        self.allocatable = crate::plugins::node_resources_fit::node_allocatable(&node);
        let old_images = self.node.status.as_ref().and_then(|s| s.images.as_ref());
        if old_images != node.status.as_ref().and_then(|s| s.images.as_ref()) {
            self.images = crate::plugins::image_locality::node_images(&node);
        }
        self.node = node;
        self.generation = next_generation();
    }

    pub fn add_pod(&mut self, pod: Pod) {
        accumulate(&mut self.requested, &pod_requests(&pod), 1);
        accumulate(&mut self.non_zero_requested, &crate::plugins::node_resources_fit::pod_requests_non_zero(&pod), 1);
        if has_pod_affinity(&pod) {
            self.pods_with_affinity.push(pod.clone());
        }
        self.pods.push(pod);
        self.generation = next_generation();
    }

    /// Removes the pod with this uid, if here.
    pub fn remove_pod(&mut self, uid: &str) -> Option<Pod> {
        let at = self.pods.iter().position(|p| p.metadata.uid.as_deref() == Some(uid))?;
        let pod = self.pods.swap_remove(at);
        if let Some(i) = self.pods_with_affinity.iter().position(|p| p.metadata.uid.as_deref() == Some(uid)) {
            self.pods_with_affinity.swap_remove(i);
        }
        accumulate(&mut self.requested, &pod_requests(&pod), -1);
        accumulate(&mut self.non_zero_requested, &crate::plugins::node_resources_fit::pod_requests_non_zero(&pod), -1);
        self.generation = next_generation();
        Some(pod)
    }

    /// Removes every pod.
    pub fn clear_pods(&mut self) {
        self.pods.clear();
        self.pods_with_affinity.clear();
        self.generation = next_generation();
        self.requested = Resources::default();
        self.non_zero_requested = Resources::default();
    }
}

/// Per-cycle scratch space shared by the plugins of one pod's scheduling cycle: typed data
/// (upstream's `StateData`) under a key, usually what a plugin's PreFilter or PreScore
/// computed for its Filter or Score. A handful of entries, read once per node per plugin:
/// a short list beats a hash map here.
#[derive(Default)]
pub struct CycleState {
    data: Vec<(&'static str, Box<dyn Any + Send + Sync>)>,
}

impl CycleState {
    /// Stores `value` under `key`, replacing what was there.
    pub fn insert<T: Any + Send + Sync>(&mut self, key: &'static str, value: T) {
        match self.data.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = Box::new(value),
            None => self.data.push((key, Box::new(value))),
        }
    }

    /// The value under `key`, if there is one of type `T`.
    pub fn get<T: Any>(&self, key: &str) -> Option<&T> {
        self.data.iter().find(|(k, _)| *k == key).and_then(|(_, v)| v.downcast_ref::<T>())
    }
}

impl std::fmt::Debug for CycleState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut keys: Vec<&str> = self.data.iter().map(|(k, _)| *k).collect();
        keys.sort();
        f.debug_struct("CycleState").field("data", &keys).finish()
    }
}

pub trait FilterPlugin: Send + Sync {
    fn name(&self) -> &'static str;
    /// Upstream's PreFilter: called once per cycle with every node, before any `filter`. A
    /// non-success status fails every node with its reason.
    fn pre_filter(&self, _state: &mut CycleState, _pod: &Pod, _nodes: &[NodeInfo]) -> Status {
        Status::Success
    }
    fn filter(&self, state: &mut CycleState, pod: &Pod, node: &NodeInfo) -> Status;
}

pub trait ScorePlugin: Send + Sync {
    fn name(&self) -> &'static str;
    /// Upstream's PreScore: called once per cycle, before any `score`, with every node and
    /// the ones that passed the filters.
    fn pre_score(&self, _state: &mut CycleState, _pod: &Pod, _nodes: &[NodeInfo], _feasible: &[&NodeInfo]) {}
    /// A raw score for one node (any range; see `normalize`).
    fn score(&self, state: &mut CycleState, pod: &Pod, node: &NodeInfo) -> i64;
    /// Maps the raw scores of all feasible nodes to 0..=100 (default: already in range).
    fn normalize(&self, scores: &mut [i64]) {
        for s in scores.iter_mut() {
            *s = (*s).clamp(0, 100);
        }
    }
}

/// What a PostFilter plugin proposes when no node fits (upstream's `PostFilterResult` with
/// its `NominatingInfo`): evict `victims`, and the pod will fit on `node`.
#[derive(Debug, Clone, PartialEq)]
pub struct Nomination {
    pub node: String,
    pub victims: Vec<Pod>,
}

/// Upstream's PostFilter point: runs only when no node passed the filters, in profile
/// order; the first plugin that returns a [`Nomination`] wins.
pub trait PostFilterPlugin: Send + Sync {
    fn name(&self) -> &'static str;
    /// `filters`: the profile's filters (to re-check a node with pods removed);
    /// `resolvable`: indexes in `nodes` of the nodes that failed with resolvable statuses
    /// only (`Unschedulable`, not `UnschedulableAndUnresolvable`).
    fn post_filter(
        &self,
        filters: &[Box<dyn FilterPlugin>],
        pod: &Pod,
        nodes: &[NodeInfo],
        resolvable: &[usize],
    ) -> Option<Nomination>;
}

/// Upstream's Reserve point: once a node is chosen and the pod assumed on it, before the
/// binding. A failure un-reserves the plugins that had reserved (in reverse order), the
/// assumption is dropped, and the pod is retried after its back-off; a failed binding
/// un-reserves too. Skiff ships no Reserve plugin (upstream's only one is VolumeBinding);
/// the point is there for plugins of one's own.
pub trait ReservePlugin: Send + Sync {
    fn name(&self) -> &'static str;
    fn reserve(&self, pod: &Pod, node: &NodeInfo) -> Status;
    fn unreserve(&self, _pod: &Pod, _node: &str) {}
}

/// Upstream's Bind point: writes the decision to the cluster (the one extension point that
/// does IO).
pub trait BindPlugin: Send + Sync {
    fn name(&self) -> &'static str;
    fn bind<'a>(
        &'a self,
        client: &'a kube::Client,
        pod: &'a Pod,
        node: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<(), kube::Error>>;
}

/// The requests of a pod as upstream computes them for scheduling: the sum over containers,
/// or the largest init container if larger (per resource), plus `overhead`.
pub fn pod_requests(pod: &Pod) -> Resources {
    crate::plugins::node_resources_fit::pod_requests(pod)
}
