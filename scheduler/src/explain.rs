//! Explain: what every plugin thinks of every node for one pod, without binding it — the
//! dry run behind `skiff-scheduler explain -f pod.yaml`. Beyond upstream, which only says
//! "0/5 nodes are available: ...": here every filter runs on every node (no stopping at
//! the first failure, no sampling), and every score plugin's raw, normalized and weighted
//! score is shown for every feasible node, so "why did it go *there*?" has an answer too.

use std::collections::HashMap;
use std::fmt::Write;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::api::{Api, ListParams};
use kube::ResourceExt;

use crate::framework::{CycleState, NodeInfo, Status};
use crate::{schedule_one, Decision, Profile};

/// One score plugin's view of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScoreLine {
    pub plugin: &'static str,
    pub raw: i64,
    /// After the plugin's normalization, 0..=100.
    pub normalized: i64,
    pub weight: i64,
}

/// Everything about one node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeExplanation {
    pub node: String,
    /// Every filter's verdict (or the PreFilter failure that rejected every node).
    pub filters: Vec<(&'static str, Status)>,
    /// Empty unless the node passed every filter.
    pub scores: Vec<ScoreLine>,
}

impl NodeExplanation {
    pub fn feasible(&self) -> bool {
        self.filters.iter().all(|(_, s)| s.is_success())
    }

    /// The weighted sum the scheduler ranks by (feasible nodes).
    pub fn total(&self) -> Option<i64> {
        self.feasible().then(|| self.scores.iter().map(|s| s.normalized * s.weight).sum())
    }
}

/// The whole dry run.
#[derive(Debug)]
pub struct Explanation {
    pub nodes: Vec<NodeExplanation>,
    /// What the scheduler would do (the same cycle as a real one, from the first node).
    pub decision: Decision,
}

/// Runs every filter on every node and every score on the feasible ones. Pure.
pub fn explain(profile: &Profile, pod: &Pod, nodes: &[NodeInfo]) -> Explanation {
    let mut state = CycleState::default();
    let pre_filter = profile.filters.iter().find_map(|f| {
        let s = f.pre_filter(&mut state, pod, nodes);
        (!s.is_success()).then(|| (f.name(), s))
    });
    let mut out: Vec<NodeExplanation> = nodes
        .iter()
        .map(|n| {
            let filters = match &pre_filter {
                Some(failure) => vec![failure.clone()],
                None => profile.filters.iter().map(|f| (f.name(), f.filter(&mut state, pod, n))).collect(),
            };
            NodeExplanation { node: n.node.name_any(), filters, scores: Vec::new() }
        })
        .collect();
    let feasible: Vec<&NodeInfo> = nodes.iter().zip(&out).filter(|(_, e)| e.feasible()).map(|(n, _)| n).collect();
    if !feasible.is_empty() {
        for (plugin, _) in &profile.scores {
            plugin.pre_score(&mut state, pod, nodes, &feasible);
        }
        let feasible_idx: Vec<usize> = out.iter().enumerate().filter(|(_, e)| e.feasible()).map(|(i, _)| i).collect();
        for (plugin, weight) in &profile.scores {
            let raw: Vec<i64> = feasible.iter().map(|n| plugin.score(&mut state, pod, n)).collect();
            let mut normalized = raw.clone();
            plugin.normalize(&mut normalized);
            for ((&i, r), n) in feasible_idx.iter().zip(raw).zip(normalized) {
                out[i].scores.push(ScoreLine { plugin: plugin.name(), raw: r, normalized: n, weight: *weight });
            }
        }
    }
    let decision = schedule_one(profile, pod, nodes, 0).decision;
    Explanation { nodes: out, decision }
}

/// Why explaining a pod against a live cluster failed.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("no profile is named {0:?} (the pod's schedulerName)")]
    NoProfile(String),
    #[error("{0}")]
    Kube(#[from] kube::Error),
}

/// The dry run against a live cluster: the nodes and their (non-terminal) pods as the
/// scheduler's cache would hold them, the pod's priority as priority admission would set it
/// (for a manifest not created yet), the profile its `schedulerName` selects. Returns the
/// [`render`]ed report. Reads only; binds nothing.
pub async fn explain_in_cluster(
    client: &kube::Client,
    profiles: &[Profile],
    pod: &Pod,
) -> Result<String, ExplainError> {
    let mut pod = pod.clone();
    if pod.metadata.uid.is_none() {
        pod.metadata.uid = Some(format!("explain-{}", pod.name_any()));
    }
    let spec = pod.spec.get_or_insert_with(Default::default);
    if let (None, Some(class)) = (spec.priority, spec.priority_class_name.clone()) {
        spec.priority = Some(Api::<PriorityClass>::all(client.clone()).get(&class).await?.value);
    }
    let scheduler_name = spec.scheduler_name.clone().unwrap_or_else(|| "default-scheduler".into());
    let profile =
        profiles.iter().find(|p| p.scheduler_name == scheduler_name).ok_or(ExplainError::NoProfile(scheduler_name))?;
    let nodes = Api::<Node>::all(client.clone()).list(&ListParams::default()).await?.items;
    let mut by_node: HashMap<String, Vec<Pod>> = HashMap::new();
    for p in Api::<Pod>::all(client.clone()).list(&ListParams::default()).await?.items {
        if crate::cache::is_terminal(&p) || p.metadata.uid == pod.metadata.uid {
            continue;
        }
        if let Some(node) = crate::cache::node_of(&p) {
            by_node.entry(node.to_string()).or_default().push(p);
        }
    }
    let mut infos: Vec<NodeInfo> = nodes
        .into_iter()
        .map(|n| {
            let pods = by_node.remove(&n.name_any()).unwrap_or_default();
            NodeInfo::with_pods(n, pods)
        })
        .collect();
    infos.sort_by(|a, b| a.node.metadata.name.cmp(&b.node.metadata.name));
    let e = explain(profile, &pod, &infos);
    Ok(render(&pod, profile, &e))
}

/// The report as text: the decision, then one block per node (feasible ones by total,
/// best first, then the rejected ones).
pub fn render(pod: &Pod, profile: &Profile, e: &Explanation) -> String {
    let mut s = String::new();
    let priority = pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0);
    let _ = writeln!(
        s,
        "Pod {}/{} (priority {priority}), profile {:?}",
        pod.namespace().unwrap_or_else(|| "default".into()),
        pod.name_any(),
        profile.scheduler_name
    );
    let _ = match &e.decision {
        Decision::Bind(node) => writeln!(s, "Decision: bind to {node}"),
        Decision::Unschedulable(msg) => writeln!(s, "Decision: unschedulable: {msg}"),
    };
    let mut order: Vec<&NodeExplanation> = e.nodes.iter().collect();
    order.sort_by_key(|n| (std::cmp::Reverse(n.total()), n.node.clone()));
    for n in order {
        let _ = writeln!(s);
        match n.total() {
            Some(total) => {
                let _ = writeln!(s, "{}: feasible, score {total}", n.node);
            }
            None => {
                let _ = writeln!(s, "{}: rejected", n.node);
            }
        }
        for (plugin, status) in &n.filters {
            let verdict = match status {
                Status::Success => "passed".to_string(),
                Status::Unschedulable(r) => format!("FAILED: {r}"),
                Status::UnschedulableAndUnresolvable(r) => format!("FAILED (preemption cannot help): {r}"),
            };
            let _ = writeln!(s, "  filter {plugin:<32} {verdict}");
        }
        for l in &n.scores {
            let _ = writeln!(
                s,
                "  score  {:<32} raw {:>6}  normalized {:>3} x weight {} = {}",
                l.plugin,
                l.raw,
                l.normalized,
                l.weight,
                l.normalized * l.weight
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::plugins::testutil::{info, node, pod};

    #[test]
    fn every_filter_and_score_on_every_node() {
        let nodes = vec![
            info(
                node(
                    json!({"metadata": {"name": "small"}, "status": {"allocatable": {"cpu": "1", "memory": "1Gi", "pods": "110"}}}),
                ),
                vec![],
            ),
            info(
                node(
                    json!({"metadata": {"name": "big"}, "status": {"allocatable": {"cpu": "8", "memory": "16Gi", "pods": "110"}}}),
                ),
                vec![],
            ),
            info(
                node(
                    json!({"metadata": {"name": "tainted"}, "spec": {"unschedulable": true, "taints": [{"key": "k", "effect": "NoSchedule"}]},
                    "status": {"allocatable": {"cpu": "1", "memory": "1Gi", "pods": "110"}}}),
                ),
                vec![],
            ),
        ];
        let p = pod(json!({"metadata": {"name": "web", "namespace": "default", "uid": "u"},
            "spec": {"containers": [{"name": "c", "image": "i", "resources": {"requests": {"cpu": "2"}}}]}}));
        let profile = Profile::default_profile("default-scheduler");
        let e = explain(&profile, &p, &nodes);
        assert_eq!(e.decision, Decision::Bind("big".into()));
        let by_name = |n: &str| e.nodes.iter().find(|x| x.node == n).unwrap();
        assert!(by_name("big").feasible());
        assert_eq!(by_name("big").scores.len(), profile.scores.len());
        assert!(by_name("big").filters.iter().all(|(_, s)| s.is_success()));
        // Not stopping at the first failure: the cordoned node shows all three problems.
        let failed: Vec<&str> =
            by_name("tainted").filters.iter().filter(|(_, s)| !s.is_success()).map(|(p, _)| *p).collect();
        assert_eq!(failed, ["NodeUnschedulable", "TaintToleration", "NodeResourcesFit"]);
        assert_eq!(by_name("small").total(), None);
        let text = render(&p, &profile, &e);
        assert!(
            text.starts_with("Pod default/web (priority 0), profile \"default-scheduler\"\nDecision: bind to big\n"),
            "{text}"
        );
        assert!(text.contains("filter NodeResourcesFit                 FAILED: Insufficient cpu"), "{text}");
        assert!(text.contains("FAILED (preemption cannot help): node(s) were unschedulable"), "{text}");
        assert!(
            text.contains("score  TaintToleration                  raw      0  normalized 100 x weight 3 = 300"),
            "{text}"
        );
        assert!(text.find("big: feasible").unwrap() < text.find("small: rejected").unwrap(), "best first");
    }

    #[test]
    fn a_pre_filter_failure_is_shown_on_every_node() {
        let nodes = vec![info(
            node(
                json!({"metadata": {"name": "n"}, "status": {"allocatable": {"cpu": "1", "memory": "1Gi", "pods": "110"}}}),
            ),
            vec![],
        )];
        let p =
            pod(json!({"metadata": {"name": "p", "uid": "u"}, "spec": {"containers": [{"name": "c", "image": "i"}],
            "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
                "labelSelector": {"matchExpressions": [{"key": "app", "operator": "Bogus"}]}}]}}));
        let e = explain(&Profile::default_profile("default-scheduler"), &p, &nodes);
        assert!(matches!(e.decision, Decision::Unschedulable(_)));
        assert_eq!(e.nodes[0].filters.len(), 1);
        assert_eq!(e.nodes[0].filters[0].0, "PodTopologySpread");
    }
}
