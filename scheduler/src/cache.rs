//! The scheduler cache, as upstream's: one [`NodeInfo`] per node, kept up to date
//! incrementally from the Node and Pod watch events and from the scheduler's own
//! assumptions, so a scheduling cycle reads it in place instead of rebuilding it from every
//! pod in the cluster (which made each cycle O(all pods) and a 1,000-pod rollout
//! quadratic).
//!
//! A pod counts on its node from the moment the scheduler *assumes* it there (before the
//! binding is written) until the watch shows it gone, terminal (Succeeded/Failed) or moved.
//! A bound pod whose node is not (yet) in the cache waits aside and joins the node when
//! it appears. A re-list of either resource replaces that resource's contents wholesale,
//! keeping assumed pods the list does not show yet.

use std::collections::{HashMap, HashSet};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;

use crate::framework::NodeInfo;

/// Nodes and the pods placed on them; see the module docs.
#[derive(Debug, Default)]
pub struct Cache {
    /// Sorted by node name: the order every cycle sees.
    infos: Vec<NodeInfo>,
    index: HashMap<String, usize>,
    /// uid → the node the pod is counted on.
    placed: HashMap<String, String>,
    /// Pods assumed by the scheduler, not yet seen bound by the watch.
    assumed: HashSet<String>,
    /// Bound pods whose node the cache does not know, by uid.
    waiting: HashMap<String, Pod>,
    /// Pending pods with `status.nominatedNodeName` (they preempted, and wait for their
    /// victims to go), by uid: counted on that node for pods of lower or equal priority.
    nominated: HashMap<String, Pod>,
    /// Where the next cycle starts filtering (upstream's `nextStartNodeIndex`), so with
    /// sampling every node gets its turn.
    pub next_start: usize,
}

/// The node a pending pod was nominated for by preemption.
pub(crate) fn nominated_node(pod: &Pod) -> Option<&str> {
    pod.status.as_ref()?.nominated_node_name.as_deref().filter(|n| !n.is_empty())
}

/// Whether a node update can change where pods fit (labels, taints, allocatable,
/// conditions, `spec.unschedulable`), as opposed to a heartbeat.
fn node_changed_for_scheduling(old: &Node, new: &Node) -> bool {
    let status = |n: &Node| {
        n.status.as_ref().map(|s| {
            let conditions: Vec<(String, String)> =
                s.conditions.iter().flatten().map(|c| (c.type_.clone(), c.status.clone())).collect();
            (s.allocatable.clone(), conditions, s.images.as_ref().map(Vec::len))
        })
    };
    old.metadata.labels != new.metadata.labels || old.spec != new.spec || status(old) != status(new)
}

/// The node a pod is bound (or assumed) to, if any.
pub(crate) fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref()?.node_name.as_deref().filter(|n| !n.is_empty())
}

/// Succeeded or Failed: it holds no resources any more.
pub(crate) fn is_terminal(p: &Pod) -> bool {
    matches!(p.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"))
}

impl Cache {
    /// What a scheduling cycle filters and scores: every node, sorted by name.
    pub fn infos(&self) -> &[NodeInfo] {
        &self.infos
    }

    pub fn is_assumed(&self, uid: &str) -> bool {
        self.assumed.contains(uid)
    }

    fn reindex(&mut self) {
        self.index = self.infos.iter().enumerate().map(|(i, n)| (n.node.name_any(), i)).collect();
    }

    /// The node called `name`.
    pub fn info(&self, name: &str) -> Option<&NodeInfo> {
        self.index.get(name).map(|&i| &self.infos[i])
    }

    /// Whether the pod with this uid is counted on a node (bound or assumed).
    pub fn is_placed(&self, uid: &str) -> bool {
        self.placed.contains_key(uid)
    }

    /// A node was added or changed; true when that can change where pods fit.
    pub fn set_node(&mut self, node: Node) -> bool {
        let name = node.name_any();
        if let Some(&i) = self.index.get(&name) {
            let changed = node_changed_for_scheduling(&self.infos[i].node, &node);
            self.infos[i].set_node(node);
            return changed;
        }
        let at = self.infos.partition_point(|n| n.node.name_any() < name);
        self.infos.insert(at, NodeInfo::new(node));
        self.reindex();
        let arriving: Vec<String> =
            self.waiting.iter().filter(|(_, p)| node_of(p) == Some(name.as_str())).map(|(u, _)| u.clone()).collect();
        for uid in arriving {
            if let Some(p) = self.waiting.remove(&uid) {
                self.place(uid, p);
            }
        }
        true
    }

    /// A node was deleted: its pods wait aside in case it comes back.
    pub fn remove_node(&mut self, name: &str) {
        let Some(i) = self.index.get(name).copied() else { return };
        let info = self.infos.remove(i);
        self.reindex();
        for p in info.pods {
            if let Some(uid) = p.metadata.uid.clone() {
                self.placed.remove(&uid);
                self.waiting.insert(uid, p);
            }
        }
    }

    /// The node list after a (re-)list.
    pub fn reset_nodes(&mut self, nodes: Vec<Node>) {
        let keep: HashSet<String> = nodes.iter().map(|n| n.name_any()).collect();
        let gone: Vec<String> = self.index.keys().filter(|n| !keep.contains(*n)).cloned().collect();
        for name in gone {
            self.remove_node(&name);
        }
        for n in nodes {
            self.set_node(n);
        }
    }

    /// Counts `pod` (with uid `uid`) on its node, or sets it aside if the node is unknown.
    fn place(&mut self, uid: String, pod: Pod) {
        let Some(node) = node_of(&pod).map(str::to_string) else { return };
        let Some(&i) = self.index.get(&node) else {
            self.waiting.insert(uid, pod);
            return;
        };
        self.infos[i].add_pod(pod);
        self.placed.insert(uid, node);
    }

    /// Stops counting the pod with this uid anywhere.
    fn unplace(&mut self, uid: &str) {
        self.waiting.remove(uid);
        let Some(node) = self.placed.remove(uid) else { return };
        let Some(&i) = self.index.get(&node) else { return };
        self.infos[i].remove_pod(uid);
    }

    /// A pod was added or changed (a watch event).
    pub fn update_pod(&mut self, pod: Pod) {
        let Some(uid) = pod.metadata.uid.clone() else { return };
        if node_of(&pod).is_none() && nominated_node(&pod).is_some() && !is_terminal(&pod) {
            self.nominated.insert(uid.clone(), pod.clone());
        } else {
            self.nominated.remove(&uid);
        }
        if node_of(&pod).is_none() {
            // Not bound (yet): only an assumption of ours counts it somewhere.
            if !self.assumed.contains(&uid) {
                self.unplace(&uid);
            }
            return;
        }
        self.assumed.remove(&uid);
        self.unplace(&uid);
        if !is_terminal(&pod) {
            self.place(uid, pod);
        }
    }

    /// A pod was deleted (a watch event).
    pub fn remove_pod(&mut self, pod: &Pod) {
        if let Some(uid) = &pod.metadata.uid {
            self.nominated.remove(uid);
            self.assumed.remove(uid);
            self.unplace(uid);
        }
    }

    /// The pod list after a (re-)list; assumed pods it does not show bound yet stay.
    pub fn reset_pods(&mut self, pods: Vec<Pod>) {
        let assumed: Vec<Pod> = self
            .infos
            .iter()
            .flat_map(|n| n.pods.iter())
            .filter(|p| p.metadata.uid.as_deref().is_some_and(|u| self.assumed.contains(u)))
            .cloned()
            .collect();
        for info in &mut self.infos {
            info.clear_pods();
        }
        self.placed.clear();
        self.waiting.clear();
        self.nominated = pods
            .iter()
            .filter(|p| node_of(p).is_none() && nominated_node(p).is_some() && !is_terminal(p))
            .filter_map(|p| Some((p.metadata.uid.clone()?, p.clone())))
            .collect();
        let listed_bound: HashSet<String> =
            pods.iter().filter(|p| node_of(p).is_some()).filter_map(|p| p.metadata.uid.clone()).collect();
        self.assumed.retain(|u| !listed_bound.contains(u));
        for p in pods
            .into_iter()
            .chain(assumed.into_iter().filter(|p| p.metadata.uid.as_deref().is_some_and(|u| !listed_bound.contains(u))))
        {
            if node_of(&p).is_some() && !is_terminal(&p) {
                if let Some(uid) = p.metadata.uid.clone() {
                    self.place(uid, p);
                }
            }
        }
    }

    /// The scheduler chose `node` for `pod`: count it there until the watch confirms.
    pub fn assume(&mut self, pod: &Pod, node: &str) {
        let Some(uid) = pod.metadata.uid.clone() else { return };
        let mut p = pod.clone();
        p.spec.get_or_insert_with(Default::default).node_name = Some(node.to_string());
        self.unplace(&uid);
        self.assumed.insert(uid.clone());
        self.place(uid, p);
    }

    /// Preemption nominated `node` for `pod`: count it there (for pods of lower or equal
    /// priority) before the watch shows the status.
    pub fn nominate(&mut self, pod: &Pod, node: &str) {
        let Some(uid) = pod.metadata.uid.clone() else { return };
        let mut p = pod.clone();
        p.status.get_or_insert_with(Default::default).nominated_node_name = Some(node.to_string());
        self.nominated.insert(uid, p);
    }

    /// Runs `f` over the nodes with the nominated pods of priority at least `pod`'s (other
    /// than `pod` itself) counted on their nominated nodes, as upstream's
    /// `addNominatedPods`: room a preemption freed is kept for the pod it was freed for.
    pub fn with_nominated<R>(&mut self, pod: &Pod, f: impl FnOnce(&[NodeInfo]) -> R) -> R {
        let priority = crate::plugins::default_preemption::priority(pod);
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        let adds: Vec<(usize, Pod)> = self
            .nominated
            .iter()
            .filter(|(u, p)| u.as_str() != uid && crate::plugins::default_preemption::priority(p) >= priority)
            .filter_map(|(_, p)| Some((*self.index.get(nominated_node(p)?)?, p.clone())))
            .collect();
        for (i, p) in &adds {
            self.infos[*i].add_pod(p.clone());
        }
        let result = f(&self.infos);
        for (i, p) in adds {
            self.infos[i].remove_pod(p.metadata.uid.as_deref().unwrap_or_default());
        }
        result
    }

    /// The binding failed: the assumption goes.
    pub fn forget(&mut self, uid: &str) {
        if self.assumed.remove(uid) {
            self.unplace(uid);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn node(name: &str) -> Node {
        serde_json::from_value(json!({"metadata": {"name": name},
            "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}}))
        .unwrap()
    }

    fn pod(uid: &str, node: Option<&str>, phase: &str) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": uid, "namespace": "default", "uid": uid},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i",
                "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]},
            "status": {"phase": phase}}))
        .unwrap()
    }

    fn counts(c: &Cache) -> Vec<(String, usize, i64)> {
        c.infos().iter().map(|n| (n.node.name_any(), n.pods.len(), n.requested.milli_cpu)).collect()
    }

    #[test]
    fn pods_follow_their_events() {
        let mut c = Cache::default();
        c.reset_nodes(vec![node("b"), node("a")]);
        assert_eq!(counts(&c), [("a".into(), 0, 0), ("b".into(), 0, 0)], "sorted by name");
        c.update_pod(pod("p1", None, "Pending"));
        assert_eq!(counts(&c)[0].1, 0, "an unbound pod counts nowhere");
        c.assume(&pod("p1", None, "Pending"), "a");
        assert_eq!(counts(&c)[0], ("a".into(), 1, 100));
        assert!(c.is_assumed("p1"));
        c.update_pod(pod("p1", None, "Pending"));
        assert_eq!(counts(&c)[0].1, 1, "a stale unbound event does not undo the assumption");
        c.update_pod(pod("p1", Some("a"), "Running"));
        assert!(!c.is_assumed("p1"), "the watch confirmed the binding");
        assert_eq!(counts(&c)[0], ("a".into(), 1, 100), "counted once");
        c.update_pod(pod("p1", Some("a"), "Succeeded"));
        assert_eq!(counts(&c)[0], ("a".into(), 0, 0), "a finished pod frees its node");
        c.update_pod(pod("p2", Some("b"), "Running"));
        c.remove_pod(&pod("p2", Some("b"), "Running"));
        assert_eq!(counts(&c)[1], ("b".into(), 0, 0));
    }

    #[test]
    fn a_failed_binding_is_forgotten() {
        let mut c = Cache::default();
        c.set_node(node("a"));
        c.assume(&pod("p1", None, "Pending"), "a");
        c.forget("p1");
        assert_eq!(counts(&c)[0], ("a".into(), 0, 0));
        c.update_pod(pod("p2", Some("a"), "Running"));
        c.forget("p2");
        assert_eq!(counts(&c)[0].1, 1, "forget touches only assumptions");
    }

    #[test]
    fn nominated_pods_hold_their_room_for_equal_or_lower_priority() {
        let mut c = Cache::default();
        c.set_node(node("a"));
        let mut preemptor = pod("pre", None, "Pending");
        preemptor.spec.as_mut().unwrap().priority = Some(100);
        c.nominate(&preemptor, "a");
        let cpu_seen = |c: &mut Cache, p: &Pod| c.with_nominated(p, |infos| infos[0].requested.milli_cpu);
        let mut low = pod("low", None, "Pending");
        low.spec.as_mut().unwrap().priority = Some(5);
        assert_eq!(cpu_seen(&mut c, &low), 100, "a lower-priority pod sees the room taken");
        assert_eq!(cpu_seen(&mut c, &preemptor), 0, "the preemptor does not count itself");
        let mut higher = pod("higher", None, "Pending");
        higher.spec.as_mut().unwrap().priority = Some(1000);
        assert_eq!(cpu_seen(&mut c, &higher), 0);
        assert_eq!(counts(&c)[0], ("a".into(), 0, 0), "nothing stays added");
        // Once bound, it counts as any pod, not twice.
        c.update_pod(pod("pre", Some("a"), "Running"));
        assert_eq!(cpu_seen(&mut c, &low), 100);
    }

    #[test]
    fn pods_with_affinity_are_tracked_alongside() {
        let mut c = Cache::default();
        c.set_node(node("a"));
        let mut anti = pod("anti", Some("a"), "Running");
        anti.spec.as_mut().unwrap().affinity = Some(
            serde_json::from_value(json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "x"}}, "topologyKey": "kubernetes.io/hostname"}]}}))
            .unwrap(),
        );
        c.update_pod(anti);
        c.update_pod(pod("plain", Some("a"), "Running"));
        let uids = |c: &Cache| -> Vec<String> {
            c.infos()[0].pods_with_affinity.iter().map(|p| p.metadata.uid.clone().unwrap()).collect()
        };
        assert_eq!(uids(&c), ["anti"]);
        assert_eq!(c.infos()[0].pods.len(), 2);
        c.remove_pod(&pod("anti", Some("a"), "Running"));
        assert!(uids(&c).is_empty());
        assert_eq!(c.infos()[0].pods.len(), 1);
    }

    #[test]
    fn heartbeats_are_not_scheduling_changes() {
        let mut c = Cache::default();
        assert!(c.set_node(node("a")), "a new node");
        let mut beat = node("a");
        beat.status.as_mut().unwrap().conditions = Some(vec![serde_json::from_value(
            json!({"type": "Ready", "status": "True", "lastHeartbeatTime": "2026-01-01T00:00:00Z"}),
        )
        .unwrap()]);
        assert!(c.set_node(beat.clone()), "Ready appeared");
        beat.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].last_heartbeat_time =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time("2026-01-01T00:00:10Z".parse().unwrap()));
        assert!(!c.set_node(beat.clone()), "only the heartbeat moved");
        beat.spec = Some(serde_json::from_value(json!({"unschedulable": true})).unwrap());
        assert!(c.set_node(beat), "cordoned");
    }

    #[test]
    fn pods_of_unknown_nodes_wait_for_them() {
        let mut c = Cache::default();
        c.update_pod(pod("p1", Some("late"), "Running"));
        c.set_node(node("late"));
        assert_eq!(counts(&c), [("late".into(), 1, 100)]);
        c.remove_node("late");
        assert!(counts(&c).is_empty());
        c.set_node(node("late"));
        assert_eq!(counts(&c), [("late".into(), 1, 100)], "a node that comes back finds its pods");
    }

    #[test]
    fn a_relist_replaces_pods_but_keeps_assumptions() {
        let mut c = Cache::default();
        c.reset_nodes(vec![node("a"), node("b")]);
        c.update_pod(pod("gone", Some("a"), "Running"));
        c.assume(&pod("mine", None, "Pending"), "b");
        c.reset_pods(vec![pod("new", Some("a"), "Running"), pod("mine", None, "Pending")]);
        assert_eq!(counts(&c), [("a".into(), 1, 100), ("b".into(), 1, 100)]);
        assert_eq!(c.infos()[0].pods[0].metadata.uid.as_deref(), Some("new"));
        assert!(c.is_assumed("mine"));
        c.reset_nodes(vec![node("a")]);
        assert_eq!(counts(&c), [("a".into(), 1, 100)]);
    }
}
