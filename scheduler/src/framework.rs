//! The scheduling framework, in upstream's shape: a pod goes through every Filter plugin for
//! every node (a node survives only if all say Success), then the Score plugins rank the
//! survivors (each plugin's scores normalized to 0..=100, then weighted and summed), and the
//! best node wins. Plugin names are upstream's.

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
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub node: Node,
    pub pods: Vec<Pod>,
    /// Sum of the requests of `pods` (computed with [`pod_requests`]), with `pods` = count.
    pub requested: Resources,
    /// `status.allocatable` (falls back to capacity).
    pub allocatable: Resources,
}

/// Per-cycle scratch space shared by the plugins of one pod's scheduling cycle.
#[derive(Debug, Default)]
pub struct CycleState {
    pub values: BTreeMap<String, String>,
}

pub trait FilterPlugin: Send + Sync {
    fn name(&self) -> &'static str;
    fn filter(&self, state: &mut CycleState, pod: &Pod, node: &NodeInfo) -> Status;
}

pub trait ScorePlugin: Send + Sync {
    fn name(&self) -> &'static str;
    /// A raw score for one node (any range; see `normalize`).
    fn score(&self, state: &mut CycleState, pod: &Pod, node: &NodeInfo) -> i64;
    /// Maps the raw scores of all feasible nodes to 0..=100 (default: already in range).
    fn normalize(&self, scores: &mut [i64]) {
        for s in scores.iter_mut() {
            *s = (*s).clamp(0, 100);
        }
    }
}

/// The requests of a pod as upstream computes them for scheduling: the sum over containers,
/// or the largest init container if larger (per resource), plus `overhead`.
pub fn pod_requests(pod: &Pod) -> Resources {
    crate::plugins::node_resources_fit::pod_requests(pod)
}
