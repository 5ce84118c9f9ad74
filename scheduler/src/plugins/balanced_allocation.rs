//! `NodeResourcesBalancedAllocation` (score), as upstream's `noderesources` BalancedAllocation
//! plugin: prefers nodes whose cpu and memory would be used in similar fractions after
//! placing the pod.
//!
//! For each of cpu and memory with allocatable > 0, `fraction = (requested on node + pod
//! request) / allocatable`, capped at 1 (actual requests, not the non-zero defaults:
//! upstream's `useRequested`). With two fractions `std = |f1 − f2| / 2`; with more, the
//! population standard deviation; score = `(1 − std) × 100`, truncated. A best-effort pod
//! (no cpu or memory requests) scores 0 everywhere, as upstream skips the plugin for it.

use k8s_openapi::api::core::v1::Pod;

use super::node_resources_fit::pod_requests;
use super::MAX_NODE_SCORE;
use crate::framework::{CycleState, NodeInfo, ScorePlugin};

/// Upstream's plugin name.
pub const NAME: &str = "NodeResourcesBalancedAllocation";

/// Favors nodes where cpu and memory are equally used.
#[derive(Debug, Clone, Copy, Default)]
pub struct NodeResourcesBalancedAllocation;

/// Upstream's `balancedResourceScorer` over `(requested, allocatable)` pairs.
pub fn balanced_resource_score(values: &[(i64, i64)]) -> i64 {
    let fractions: Vec<f64> = values
        .iter()
        .filter(|(_, allocatable)| *allocatable != 0)
        .map(|&(requested, allocatable)| (requested as f64 / allocatable as f64).min(1.0))
        .collect();
    let std = match fractions.len() {
        2 => ((fractions[0] - fractions[1]) / 2.0).abs(),
        n if n > 2 => {
            let mean = fractions.iter().sum::<f64>() / n as f64;
            (fractions.iter().map(|f| (f - mean) * (f - mean)).sum::<f64>() / n as f64).sqrt()
        }
        _ => 0.0,
    };
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

const PRE_SCORE_KEY: &str = "PreScoreNodeResourcesBalancedAllocation";

impl ScorePlugin for NodeResourcesBalancedAllocation {
    fn name(&self) -> &'static str {
        NAME
    }

    /// The pod's requests, parsed once per cycle rather than once per node.
    fn pre_score(&self, state: &mut CycleState, pod: &Pod, _nodes: &[NodeInfo], _feasible: &[&NodeInfo]) {
        state.insert(PRE_SCORE_KEY, pod_requests(pod));
    }

    fn score(&self, state: &mut CycleState, pod: &Pod, node: &NodeInfo) -> i64 {
        let req = state.get::<crate::framework::Resources>(PRE_SCORE_KEY).copied().unwrap_or_else(|| pod_requests(pod));
        if req.milli_cpu == 0 && req.memory == 0 {
            return 0;
        }
        let alloc = node.allocatable;
        let used = node.requested;
        balanced_resource_score(&[
            (used.milli_cpu + req.milli_cpu, alloc.milli_cpu),
            (used.memory + req.memory, alloc.memory),
        ])
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::plugins::testutil::{info, node_with_allocatable, pod, pod_with_requests, state};

    fn score(p: &Pod, n: &NodeInfo) -> i64 {
        NodeResourcesBalancedAllocation.score(&mut state(), p, n)
    }

    #[test]
    fn upstream_example_differently_sized_nodes() {
        // Upstream's test: pod 3000m/5000 on 4000m/10000: fractions 0.75 and 0.5 → std 0.125
        // → 87; on 6000m/10000: 0.5 and 0.5 → 100.
        let p = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "a", "image": "x", "resources": {"requests": {"cpu": "1", "memory": "2000"}}},
            {"name": "b", "image": "x", "resources": {"requests": {"cpu": "2", "memory": "3000"}}}]}}));
        let n1 = info(node_with_allocatable("n1", json!({"cpu": "4", "memory": "10000", "pods": "10"})), vec![]);
        let n2 = info(node_with_allocatable("n2", json!({"cpu": "6", "memory": "10000", "pods": "10"})), vec![]);
        assert_eq!(score(&p, &n1), 87);
        assert_eq!(score(&p, &n2), 100);
    }

    #[test]
    fn counts_pods_already_on_the_node() {
        // Node 4 cpu / 4000 memory with 2 cpu / 0 memory used; pod 1 cpu / 1000:
        // fractions 0.75 and 0.25 → std 0.25 → 75.
        let n = info(
            node_with_allocatable("n", json!({"cpu": "4", "memory": "4000", "pods": "10"})),
            vec![pod_with_requests("a", Some("2"), Some("0"))],
        );
        assert_eq!(score(&pod_with_requests("p", Some("1"), Some("1000")), &n), 75);
    }

    #[test]
    fn fractions_capped_at_one() {
        let n = info(node_with_allocatable("n", json!({"cpu": "1", "memory": "1000", "pods": "10"})), vec![]);
        // cpu 3/1 → capped 1; memory 0.5 → std 0.25 → 75.
        assert_eq!(score(&pod_with_requests("p", Some("3"), Some("500")), &n), 75);
    }

    #[test]
    fn best_effort_pod_scores_zero() {
        let n = info(node_with_allocatable("n", json!({"cpu": "1", "memory": "1000", "pods": "10"})), vec![]);
        assert_eq!(score(&pod_with_requests("p", None, None), &n), 0);
    }

    #[test]
    fn resources_without_allocatable_are_skipped() {
        // Only cpu offered: one fraction → std 0 → 100.
        let n = info(node_with_allocatable("n", json!({"cpu": "2", "pods": "10"})), vec![]);
        assert_eq!(score(&pod_with_requests("p", Some("1"), Some("1Gi")), &n), 100);
    }

    #[test]
    fn more_than_two_resources_use_population_std() {
        // Fractions 0, 0.5, 1: mean 0.5, std sqrt(1/6) ≈ 0.408 → 59.
        assert_eq!(balanced_resource_score(&[(0, 10), (5, 10), (10, 10)]), 59);
        assert_eq!(balanced_resource_score(&[]), 100);
    }
}
