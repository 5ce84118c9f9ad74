//! Three coursework placement policies as score plugins (not upstream plugins; enable one
//! alone, with weight 1, to compare it with the default profile):
//!
//! - [`LeastPods`]: fewer pods on the node → higher score.
//! - [`RoundRobin`]: each scheduling cycle gives 100 to the next feasible node in turn.
//! - [`Random`]: a pseudo-random score per (pod, node), seeded from the pod's uid, so the
//!   same pod on the same nodes always gets the same scores.

use std::sync::atomic::{AtomicUsize, Ordering};

use k8s_openapi::api::core::v1::Pod;

use super::{default_normalize_score, MAX_NODE_SCORE};
use crate::framework::{CycleState, NodeInfo, ScorePlugin};

/// [`LeastPods`]'s name.
pub const LEAST_PODS: &str = "LeastPods";
/// [`RoundRobin`]'s name.
pub const ROUND_ROBIN: &str = "RoundRobin";
/// [`Random`]'s name.
pub const RANDOM: &str = "Random";

/// Prefers the node with the fewest pods: raw score = pods on the node, normalized reversed
/// (the emptiest node gets 100, the fullest 0 when they differ).
#[derive(Debug, Clone, Copy, Default)]
pub struct LeastPods;

impl ScorePlugin for LeastPods {
    fn name(&self) -> &'static str {
        LEAST_PODS
    }

    fn score(&self, _state: &mut CycleState, _pod: &Pod, node: &NodeInfo) -> i64 {
        (node.pods.len() as i64).max(node.requested.pods)
    }

    fn normalize(&self, scores: &mut [i64]) {
        default_normalize_score(MAX_NODE_SCORE, true, scores);
    }
}

/// Rotates through the feasible nodes: every node scores 0 in `score`, then `normalize`
/// (called once per scheduling cycle with the feasible nodes' scores, in the order the
/// scheduler lists them — by name) gives 100 to position `counter % n` and advances the
/// counter. Deterministic given the counter's start.
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl RoundRobin {
    /// A rotation whose first cycle picks position `start % n`.
    pub fn starting_at(start: usize) -> Self {
        Self { next: AtomicUsize::new(start) }
    }

    /// The counter the next cycle will use.
    pub fn position(&self) -> usize {
        self.next.load(Ordering::Relaxed)
    }
}

impl ScorePlugin for RoundRobin {
    fn name(&self) -> &'static str {
        ROUND_ROBIN
    }

    fn score(&self, _state: &mut CycleState, _pod: &Pod, _node: &NodeInfo) -> i64 {
        0
    }

    fn normalize(&self, scores: &mut [i64]) {
        if scores.is_empty() {
            return;
        }
        let pick = self.next.fetch_add(1, Ordering::Relaxed) % scores.len();
        for (i, s) in scores.iter_mut().enumerate() {
            *s = if i == pick { MAX_NODE_SCORE } else { 0 };
        }
    }
}

/// A pseudo-random score in `0..=100` per (pod, node): xorshift64* seeded from a hash of the
/// pod's uid (its namespace/name when it has none) and the node's name.
#[derive(Debug, Clone, Copy, Default)]
pub struct Random;

/// FNV-1a, 64 bits.
fn fnv1a(bytes: &[u8], mut h: u64) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// One xorshift64* step from a non-zero state.
fn xorshift64star(mut x: u64) -> u64 {
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    x.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

/// The seed for `pod`: its uid, or `namespace/name` when it has no uid yet.
fn pod_seed(pod: &Pod) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    match pod.metadata.uid.as_deref().filter(|u| !u.is_empty()) {
        Some(uid) => fnv1a(uid.as_bytes(), OFFSET),
        None => {
            let ns = pod.metadata.namespace.as_deref().unwrap_or("");
            let name = pod.metadata.name.as_deref().unwrap_or("");
            fnv1a(name.as_bytes(), fnv1a(b"/", fnv1a(ns.as_bytes(), OFFSET)))
        }
    }
}

impl ScorePlugin for Random {
    fn name(&self) -> &'static str {
        RANDOM
    }

    fn score(&self, _state: &mut CycleState, pod: &Pod, node: &NodeInfo) -> i64 {
        let node_name = node.node.metadata.name.as_deref().unwrap_or("");
        let mut x = fnv1a(node_name.as_bytes(), pod_seed(pod));
        if x == 0 {
            x = 0x9e37_79b9_7f4a_7c15;
        }
        // A few rounds so that similar seeds diverge.
        for _ in 0..3 {
            x = xorshift64star(x);
        }
        ((x >> 33) % (MAX_NODE_SCORE as u64 + 1)) as i64
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::plugins::testutil::{bare, info, node, pod, pod_with_requests, state};

    fn with_pods(name: &str, n: usize) -> NodeInfo {
        let pods = (0..n).map(|i| pod_with_requests(&format!("{name}-{i}"), None, None)).collect();
        info(node(json!({"metadata": {"name": name}})), pods)
    }

    fn scores(plugin: &dyn ScorePlugin, pod: &Pod, nodes: &[NodeInfo]) -> Vec<i64> {
        let mut s = state();
        let mut raw: Vec<i64> = nodes.iter().map(|n| plugin.score(&mut s, pod, n)).collect();
        plugin.normalize(&mut raw);
        raw
    }

    #[test]
    fn least_pods_prefers_emptier_nodes() {
        let p = pod_with_requests("p", None, None);
        let nodes = [with_pods("a", 4), with_pods("b", 0), with_pods("c", 2)];
        assert_eq!(scores(&LeastPods, &p, &nodes), [0, 100, 50]);
        assert_eq!(scores(&LeastPods, &p, &[bare("x"), bare("y")]), [100, 100]);
    }

    #[test]
    fn round_robin_rotates_through_nodes() {
        let rr = RoundRobin::default();
        let p = pod_with_requests("p", None, None);
        let nodes = [bare("a"), bare("b"), bare("c")];
        assert_eq!(scores(&rr, &p, &nodes), [100, 0, 0]);
        assert_eq!(scores(&rr, &p, &nodes), [0, 100, 0]);
        assert_eq!(scores(&rr, &p, &nodes), [0, 0, 100]);
        assert_eq!(scores(&rr, &p, &nodes), [100, 0, 0]);
        assert_eq!(rr.position(), 4);
        // Fewer feasible nodes: the counter wraps on their number.
        assert_eq!(scores(&rr, &p, &nodes[..2]), [100, 0]);
        let mut empty: [i64; 0] = [];
        rr.normalize(&mut empty);
        assert_eq!(rr.position(), 5);
    }

    #[test]
    fn round_robin_start_is_deterministic() {
        let p = pod_with_requests("p", None, None);
        let nodes = [bare("a"), bare("b")];
        assert_eq!(scores(&RoundRobin::starting_at(7), &p, &nodes), [0, 100]);
    }

    #[test]
    fn random_is_deterministic_per_pod_and_node() {
        let nodes: Vec<NodeInfo> = (0..20).map(|i| bare(&format!("node-{i}"))).collect();
        let p1 = pod_with_requests("p1", None, None);
        let p2 = pod_with_requests("p2", None, None);
        let s1 = scores(&Random, &p1, &nodes);
        assert_eq!(s1, scores(&Random, &p1, &nodes));
        assert!(s1.iter().all(|s| (0..=100).contains(s)));
        // Different nodes and different pods see different scores.
        assert!(s1.iter().any(|s| *s != s1[0]));
        assert_ne!(s1, scores(&Random, &p2, &nodes));
    }

    #[test]
    fn random_without_uid_uses_namespace_and_name() {
        let a = pod(json!({"metadata": {"name": "a", "namespace": "ns"}, "spec": {"containers": []}}));
        let b = pod(json!({"metadata": {"name": "b", "namespace": "ns"}, "spec": {"containers": []}}));
        let nodes: Vec<NodeInfo> = (0..20).map(|i| bare(&format!("n{i}"))).collect();
        assert_eq!(scores(&Random, &a, &nodes), scores(&Random, &a, &nodes));
        assert_ne!(scores(&Random, &a, &nodes), scores(&Random, &b, &nodes));
    }

    #[test]
    fn names() {
        assert_eq!(LeastPods.name(), "LeastPods");
        assert_eq!(RoundRobin::default().name(), "RoundRobin");
        assert_eq!(Random.name(), "Random");
    }
}
