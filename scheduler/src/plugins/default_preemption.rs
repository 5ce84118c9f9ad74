//! `DefaultPreemption` (PostFilter), as upstream's `defaultpreemption` plugin: when no node
//! fits a pod, find a node where evicting pods of *lower* priority would make it fit,
//! evicting as few and as unimportant pods as possible.
//!
//! For every node that failed only with a resolvable status (`Unschedulable`, not
//! `UnschedulableAndUnresolvable`: evicting pods cannot fix a taint or a node selector),
//! [`select_victims_on_node`] removes every lower-priority pod, checks that the pod then
//! passes every filter, and adds pods back ("reprieves" them), most important first, as
//! long as the pod still fits. [`pick_one_node`] then chooses among the candidates as
//! upstream's `pickOneNodeForPreemption`: the lowest highest-victim priority, then the
//! lowest sum of victim priorities, then the fewest victims, then the node whose most
//! important victims started latest.
//!
//! The scheduler then records `status.nominatedNodeName` on the preemptor, deletes the
//! victims (gracefully), and binds the pod once the room is really there; until then
//! other pods of lower or equal priority see the nominated pod as if it were on that node.
//!
//! Pure, like the plugins. Not modelled: PodDisruptionBudgets (not served by Skiff yet),
//! and the cluster-wide state of PodTopologySpread / InterPodAffinity is computed with the
//! victims still present, so preemption never evicts pods only to satisfy an
//! anti-affinity or spread constraint (it only frees resources and ports).

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

use crate::framework::{CycleState, FilterPlugin, NodeInfo, Nomination, PostFilterPlugin};

/// Upstream's plugin name.
pub const NAME: &str = "DefaultPreemption";

/// Evicts lower-priority pods to make room; see the module docs.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultPreemption;

impl PostFilterPlugin for DefaultPreemption {
    fn name(&self) -> &'static str {
        NAME
    }

    fn post_filter(
        &self,
        filters: &[Box<dyn FilterPlugin>],
        pod: &Pod,
        nodes: &[NodeInfo],
        resolvable: &[usize],
    ) -> Option<Nomination> {
        find_candidate(filters, pod, nodes, resolvable)
    }
}

/// Upstream's `MinCandidateNodesAbsolute` and `MinCandidateNodesPercentage`: how many
/// candidate nodes are evaluated at most.
const MIN_CANDIDATE_NODES_ABSOLUTE: usize = 100;
const MIN_CANDIDATE_NODES_PERCENTAGE: usize = 10;

/// A node where evicting `victims` lets the pod fit.
pub type Candidate = Nomination;

/// `spec.priority`, 0 when unset (as upstream's `corev1helpers.PodPriority`).
pub fn priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

fn start_time(pod: &Pod) -> Option<k8s_openapi::jiff::Timestamp> {
    pod.status.as_ref().and_then(|s| s.start_time.as_ref()).or(pod.metadata.creation_timestamp.as_ref()).map(|t| t.0)
}

/// Upstream's `MoreImportantPod`: higher priority, then the one that started earlier.
fn more_important(a: &Pod, b: &Pod) -> std::cmp::Ordering {
    priority(b).cmp(&priority(a)).then_with(|| start_time(a).cmp(&start_time(b)))
}

/// Upstream's `PodEligibleToPreemptOthers`: not with `preemptionPolicy: Never`, and not
/// while a victim of an earlier preemption is still terminating on its nominated node
/// (that room is coming; preempting again would evict more than needed).
pub fn eligible(pod: &Pod, nodes: &[NodeInfo]) -> bool {
    if pod.spec.as_ref().and_then(|s| s.preemption_policy.as_deref()) == Some("Never") {
        return false;
    }
    let nominated = pod.status.as_ref().and_then(|s| s.nominated_node_name.as_deref()).filter(|n| !n.is_empty());
    let Some(nominated) = nominated else { return true };
    let Some(info) = nodes.iter().find(|n| n.node.name_any() == nominated) else { return true };
    let p = priority(pod);
    !info.pods.iter().any(|v| v.metadata.deletion_timestamp.is_some() && priority(v) < p)
}

fn passes_filters(filters: &[Box<dyn FilterPlugin>], state: &mut CycleState, pod: &Pod, node: &NodeInfo) -> bool {
    filters.iter().all(|f| f.filter(state, pod, node).is_success())
}

/// The fewest, least important pods to evict from `node` so `pod` fits; `None` if
/// evicting every lower-priority pod is not enough.
pub fn select_victims_on_node(
    filters: &[Box<dyn FilterPlugin>],
    state: &mut CycleState,
    pod: &Pod,
    node: &NodeInfo,
) -> Option<Vec<Pod>> {
    let p = priority(pod);
    let mut potential: Vec<Pod> = node.pods.iter().filter(|v| priority(v) < p).cloned().collect();
    if potential.is_empty() {
        return None;
    }
    let mut info = node.clone();
    for v in &potential {
        info.remove_pod(v.metadata.uid.as_deref().unwrap_or_default());
    }
    if !passes_filters(filters, state, pod, &info) {
        return None;
    }
    potential.sort_by(more_important);
    let mut victims = Vec::new();
    for v in potential {
        info.add_pod(v.clone());
        if !passes_filters(filters, state, pod, &info) {
            info.remove_pod(v.metadata.uid.as_deref().unwrap_or_default());
            victims.push(v);
        }
    }
    Some(victims)
}

/// Upstream's `pickOneNodeForPreemption` (without PDBs), over non-empty candidates.
pub fn pick_one_node(candidates: Vec<Candidate>) -> Option<Candidate> {
    // Every key is "smaller is better".
    let key = |c: &Candidate| {
        let highest = c.victims.iter().map(priority).max().unwrap_or(i32::MIN);
        // Offset so negative priorities still sum to a smaller total for fewer victims.
        let sum: i64 = c.victims.iter().map(|v| i64::from(priority(v)) + i64::from(i32::MAX) + 1).sum();
        let earliest_of_highest =
            c.victims.iter().filter(|v| priority(v) == highest).filter_map(start_time).min().map(|t| t.as_nanosecond());
        (highest, sum, c.victims.len(), std::cmp::Reverse(earliest_of_highest))
    };
    candidates.into_iter().min_by_key(key)
}

/// DefaultPreemption for `pod`, which fit nowhere; `resolvable` are the indexes in `nodes`
/// of the nodes that failed only with resolvable statuses. `None`: preemption cannot help.
pub fn find_candidate(
    filters: &[Box<dyn FilterPlugin>],
    pod: &Pod,
    nodes: &[NodeInfo],
    resolvable: &[usize],
) -> Option<Candidate> {
    if !eligible(pod, nodes) || resolvable.is_empty() {
        return None;
    }
    let mut state = CycleState::default();
    for f in filters {
        if !f.pre_filter(&mut state, pod, nodes).is_success() {
            return None;
        }
    }
    let limit = (nodes.len() * MIN_CANDIDATE_NODES_PERCENTAGE / 100).max(MIN_CANDIDATE_NODES_ABSOLUTE);
    let mut candidates = Vec::new();
    for &i in resolvable {
        if candidates.len() >= limit {
            break;
        }
        let Some(node) = nodes.get(i) else { continue };
        if let Some(victims) = select_victims_on_node(filters, &mut state, pod, node) {
            candidates.push(Candidate { node: node.node.name_any(), victims });
        }
    }
    pick_one_node(candidates)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::plugins::testutil::{info, node, pod as make_pod};
    use crate::{schedule_one, Decision, Profile};

    fn node_info(name: &str, pods: Vec<Pod>) -> NodeInfo {
        info(
            node(
                json!({"metadata": {"name": name}, "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}}),
            ),
            pods,
        )
    }

    fn pod(name: &str, cpu: &str, prio: i32, started: &str) -> Pod {
        make_pod(json!({"metadata": {"name": name, "namespace": "default", "uid": name, "creationTimestamp": started},
            "spec": {"priority": prio, "containers": [{"name": "c", "image": "i", "resources": {"requests": {"cpu": cpu}}}]}}))
    }

    fn on(node: &str, mut p: Pod) -> Pod {
        p.spec.as_mut().unwrap().node_name = Some(node.into());
        p
    }

    fn names(pods: &[Pod]) -> Vec<String> {
        pods.iter().map(|p| p.name_any()).collect()
    }

    const T: &str = "2026-01-01T00:00:00Z";

    fn preempt(pod: &Pod, nodes: &[NodeInfo]) -> Option<Candidate> {
        let profile = Profile::default_profile("default-scheduler");
        let outcome = schedule_one(&profile, pod, nodes, 0);
        assert!(matches!(outcome.decision, Decision::Unschedulable(_)), "{:?}", outcome.decision);
        DefaultPreemption.post_filter(&profile.filters, pod, nodes, &outcome.resolvable)
    }

    #[test]
    fn evicts_the_fewest_lowest_priority_pods() {
        // n1: two 2-CPU pods of priority 10; n2: one 3-CPU pod of priority 5 and one of 100.
        let nodes = vec![
            node_info("n1", vec![on("n1", pod("a", "2", 10, T)), on("n1", pod("b", "2", 10, T))]),
            node_info("n2", vec![on("n2", pod("c", "3", 5, T)), on("n2", pod("d", "1", 100, T))]),
        ];
        let c = preempt(&pod("new", "3", 50, T), &nodes).expect("a candidate");
        assert_eq!(
            (c.node.as_str(), names(&c.victims)),
            ("n2", vec!["c".to_string()]),
            "highest victim priority 5 < 10"
        );
        // Only pods of lower priority are victims: at 8 the 10s are safe, and n2 frees 3 CPUs.
        let c = preempt(&pod("new", "2", 8, T), &nodes).expect("a candidate");
        assert_eq!(names(&c.victims), ["c"]);
        // Nothing of lower priority frees enough.
        assert_eq!(preempt(&pod("new", "4", 6, T), &nodes), None);
    }

    #[test]
    fn reprieves_the_most_important_victims() {
        // 4 CPUs full of 1-CPU pods; the new pod needs 2: only the two least important go.
        let pods = vec![
            on("n1", pod("old-low", "1", 1, "2026-01-01T00:00:00Z")),
            on("n1", pod("new-low", "1", 1, "2026-01-02T00:00:00Z")),
            on("n1", pod("mid", "1", 3, T)),
            on("n1", pod("high", "1", 4, T)),
        ];
        let c = preempt(&pod("p", "2", 10, T), &[node_info("n1", pods)]).unwrap();
        let mut victims = names(&c.victims);
        victims.sort();
        assert_eq!(victims, ["new-low", "old-low"]);
    }

    #[test]
    fn ties_go_to_fewer_victims_then_later_start() {
        let nodes = vec![
            node_info("two", vec![on("two", pod("a", "2", 1, T)), on("two", pod("b", "2", 1, T))]),
            node_info("one", vec![on("one", pod("c", "4", 1, T))]),
        ];
        assert_eq!(preempt(&pod("p", "4", 10, T), &nodes).unwrap().node, "one");
        let nodes = vec![
            node_info("early", vec![on("early", pod("a", "4", 1, "2026-01-01T00:00:00Z"))]),
            node_info("late", vec![on("late", pod("b", "4", 1, "2026-01-05T00:00:00Z"))]),
        ];
        assert_eq!(preempt(&pod("p", "4", 10, T), &nodes).unwrap().node, "late");
    }

    #[test]
    fn unresolvable_nodes_and_ineligible_pods_are_left_alone() {
        let mut tainted = node_info("tainted", vec![on("tainted", pod("a", "4", 1, T))]);
        tainted.node.spec =
            Some(serde_json::from_value(json!({"taints": [{"key": "k", "effect": "NoSchedule"}]})).unwrap());
        assert_eq!(preempt(&pod("p", "4", 10, T), &[tainted]), None, "evicting cannot remove a taint");

        let nodes = vec![node_info("n1", vec![on("n1", pod("a", "4", 1, T))])];
        let mut never = pod("p", "4", 10, T);
        never.spec.as_mut().unwrap().preemption_policy = Some("Never".into());
        assert_eq!(preempt(&never, &nodes), None);

        // A victim of an earlier round still terminating on the nominated node: wait.
        let mut terminating = on("n1", pod("a", "4", 1, T));
        terminating.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time("2026-01-01T00:00:10Z".parse().unwrap()));
        let nodes = vec![node_info("n1", vec![terminating])];
        let mut waiting = pod("p", "4", 10, T);
        waiting.status = Some(serde_json::from_value(json!({"nominatedNodeName": "n1"})).unwrap());
        assert!(!eligible(&waiting, &nodes));
        assert_eq!(preempt(&waiting, &nodes), None);
    }
}
