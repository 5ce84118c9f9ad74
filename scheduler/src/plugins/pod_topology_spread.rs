//! `PodTopologySpread` (filter and score), as upstream's `podtopologyspread` plugin: spreads
//! pods matching a selector evenly over topology domains (the values of a node label such as
//! `topology.kubernetes.io/zone`), per `spec.topologySpreadConstraints`.
//!
//! - Which nodes count: a node must carry every constraint's `topologyKey`; with
//!   `nodeAffinityPolicy: Honor` (the default) it must also match the pod's `nodeSelector` and
//!   required node affinity, and with `nodeTaintsPolicy: Honor` (default `Ignore`) the pod must
//!   tolerate its `NoSchedule`/`NoExecute` taints. A domain exists when an eligible node has
//!   that label value. Counted pods: those in the incoming pod's namespace that match the
//!   constraint's `labelSelector` (plus `matchLabelKeys` with the incoming pod's values; no
//!   selector matches nothing), and are not terminating.
//! - PreFilter (`whenUnsatisfiable: DoNotSchedule`): the matching pods per domain, and the
//!   global minimum over domains, which is 0 when there are fewer domains than `minDomains`.
//! - Filter: a node without the key fails with
//!   `node(s) didn't match pod topology spread constraints (missing required label)`
//!   (UnschedulableAndUnresolvable); otherwise
//!   `skew = matching pods in the node's domain + (1 if the pod matches the selector itself) - min`
//!   and `skew > maxSkew` fails with `node(s) didn't match pod topology spread constraints`
//!   (Unschedulable).
//! - PreScore/Score (`whenUnsatisfiable: ScheduleAnyway`): a node's raw score is the sum over
//!   constraints of the matching pods in its domain; normalized reversed (fewer pods, higher
//!   score). Nodes missing a key score 0.
//!
//! Counting is the cost: upstream recounts every pod of the cluster in each cycle. Here a
//! node's count and domain for a (namespace, selector, topology key) are remembered with the
//! node's [`NodeInfo::generation`] and recomputed only when the node or its pods changed, so
//! a cycle costs a few integer operations per node instead of O(all pods) label matching.
//! The memo never changes an answer.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::{Node, Pod, TopologySpreadConstraint};
use skiff_api::selector::{LabelSelector, Operator, Requirement};

use super::node_affinity::required_node_affinity_matches;
use super::taint_toleration::{find_matching_untolerated_taint, is_do_not_schedule_taint};
use super::{default_normalize_score, MAX_NODE_SCORE};
use crate::framework::{CycleState, FilterPlugin, NodeInfo, ScorePlugin, Status};

/// Upstream's plugin name.
pub const NAME: &str = "PodTopologySpread";

/// Upstream's `ErrReasonConstraintsNotMatch`.
pub const ERR_REASON_CONSTRAINTS_NOT_MATCH: &str = "node(s) didn't match pod topology spread constraints";

/// Upstream's `ErrReasonNodeLabelNotMatch`.
pub const ERR_REASON_NODE_LABEL_NOT_MATCH: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

const PRE_FILTER_STATE_KEY: &str = "PreFilterPodTopologySpread";
const PRE_SCORE_STATE_KEY: &str = "PreScorePodTopologySpread";

/// The raw score of a node that is left out of scoring (missing a topology key).
const IGNORED: i64 = -1;

/// Filters on `DoNotSchedule` constraints; scores `ScheduleAnyway` constraints.
#[derive(Default)]
pub struct PodTopologySpread {
    counts: Mutex<CountMemo>,
}

impl std::fmt::Debug for PodTopologySpread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PodTopologySpread")
    }
}

/// What is remembered per (namespace, selector, topology key): per node position, the
/// node's generation, its matching pods and its domain (an index into `domains`, `None`
/// without the key).
#[derive(Default)]
struct Memo {
    domains: Vec<String>,
    index: HashMap<String, u32>,
    slots: Vec<(u64, i64, Option<u32>)>,
}

impl Memo {
    fn intern(&mut self, domain: &str) -> u32 {
        if let Some(&i) = self.index.get(domain) {
            return i;
        }
        let i = u32::try_from(self.domains.len()).unwrap_or(u32::MAX);
        self.domains.push(domain.to_string());
        self.index.insert(domain.to_string(), i);
        i
    }
}

type CountMemo = HashMap<(String, Option<LabelSelector>, String), Memo>;

/// Distinct (namespace, selector, key) remembered at most; past it the memo starts over.
const MAX_MEMO_SELECTORS: usize = 64;

/// One constraint, parsed.
#[derive(Debug, Clone)]
struct Constraint {
    max_skew: i64,
    topology_key: String,
    /// `None`: no `labelSelector`, which matches nothing (upstream's `labels.Nothing()`).
    selector: Option<LabelSelector>,
    min_domains: usize,
    honor_node_affinity: bool,
    honor_node_taints: bool,
}

impl Constraint {
    fn parse(c: &TopologySpreadConstraint, pod: &Pod) -> Result<Self, String> {
        let selector = match &c.label_selector {
            None => None,
            Some(s) => {
                let mut selector = LabelSelector::from_meta(s).map_err(|e| e.to_string())?;
                // matchLabelKeys: the incoming pod's values for these keys join the selector.
                let labels = pod.metadata.labels.as_ref();
                for key in c.match_label_keys.iter().flatten() {
                    if let Some(v) = labels.and_then(|l| l.get(key)) {
                        let r = Requirement::new(key.clone(), Operator::In, [v.clone()]).map_err(|e| e.to_string())?;
                        selector = selector.with_requirement(r);
                    }
                }
                Some(selector)
            }
        };
        Ok(Self {
            max_skew: i64::from(c.max_skew),
            topology_key: c.topology_key.clone(),
            selector,
            min_domains: c.min_domains.map_or(1, |m| usize::try_from(m).unwrap_or(1).max(1)),
            honor_node_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
            honor_node_taints: c.node_taints_policy.as_deref() == Some("Honor"),
        })
    }

    fn selects(&self, pod: &Pod) -> bool {
        self.selector.as_ref().is_some_and(|s| s.matches_opt(pod.metadata.labels.as_ref()))
    }

    /// Upstream's `matchNodeInclusionPolicies`.
    fn includes_node(&self, pod: &Pod, node: &Node) -> bool {
        if self.honor_node_affinity && !required_node_affinity_matches(pod, node) {
            return false;
        }
        if self.honor_node_taints {
            let taints = node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or(&[]);
            let tolerations = pod.spec.as_ref().and_then(|s| s.tolerations.as_deref()).unwrap_or(&[]);
            if find_matching_untolerated_taint(taints, tolerations, is_do_not_schedule_taint).is_some() {
                return false;
            }
        }
        true
    }

    /// Upstream's `countPodsMatchSelector`: the non-terminating pods of `node` in `namespace`
    /// that the selector matches.
    fn count_on(&self, node: &NodeInfo, namespace: &str) -> i64 {
        let n = node
            .pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| namespace_of(p) == namespace)
            .filter(|p| self.selects(p))
            .count();
        i64::try_from(n).unwrap_or(i64::MAX)
    }
}

fn namespace_of(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or("default")
}

fn label<'a>(node: &'a Node, key: &str) -> Option<&'a str> {
    node.metadata.labels.as_ref().and_then(|l| l.get(key)).map(String::as_str)
}

/// The constraints of `pod` with the given `whenUnsatisfiable`.
fn constraints(pod: &Pod, when_unsatisfiable: &str) -> Result<Vec<Constraint>, String> {
    pod.spec
        .as_ref()
        .and_then(|s| s.topology_spread_constraints.as_deref())
        .unwrap_or(&[])
        .iter()
        .filter(|c| c.when_unsatisfiable == when_unsatisfiable)
        .map(|c| Constraint::parse(c, pod))
        .collect()
}

/// Matching pods per domain, one map per constraint, over the nodes that carry every
/// constraint's key and that each constraint's inclusion policies admit.
fn count_domains(
    memo: &Mutex<CountMemo>,
    constraints: &[Constraint],
    pod: &Pod,
    nodes: &[NodeInfo],
) -> Vec<HashMap<String, i64>> {
    if constraints.is_empty() {
        return Vec::new();
    }
    let namespace = namespace_of(pod);
    let mut memo = memo.lock().unwrap_or_else(|e| e.into_inner());
    if memo.len() > MAX_MEMO_SELECTORS {
        memo.clear();
    }
    let key = |c: &Constraint| (namespace.to_string(), c.selector.clone(), c.topology_key.clone());
    // Each constraint's memo, taken out of the map for the loop.
    let mut memos: Vec<Memo> = constraints
        .iter()
        .map(|c| {
            let mut m = memo.remove(&key(c)).unwrap_or_default();
            m.slots.resize(nodes.len(), (0, 0, None));
            m
        })
        .collect();
    // Inclusion depends on the incoming pod; skipped when it admits every node.
    let pod_has_node_constraints = pod.spec.as_ref().is_some_and(|s| {
        s.node_selector.as_ref().is_some_and(|m| !m.is_empty())
            || s.affinity.as_ref().and_then(|a| a.node_affinity.as_ref()).is_some()
    });
    let check_inclusion: Vec<bool> = constraints
        .iter()
        .map(|c| (c.honor_node_affinity && pod_has_node_constraints) || c.honor_node_taints)
        .collect();
    // Per constraint, per domain: matching pods (None: no eligible node has the domain).
    let mut per_domain: Vec<Vec<Option<i64>>> = vec![Vec::new(); constraints.len()];
    'nodes: for (i, n) in nodes.iter().enumerate() {
        for (c, m) in constraints.iter().zip(memos.iter_mut()) {
            if m.slots[i].0 != n.generation {
                let domain = label(&n.node, &c.topology_key).map(|v| m.intern(v));
                let count = if domain.is_some() { c.count_on(n, namespace) } else { 0 };
                m.slots[i] = (n.generation, count, domain);
            }
            if m.slots[i].2.is_none() {
                continue 'nodes; // a node must carry every constraint's key
            }
        }
        for (ci, (c, m)) in constraints.iter().zip(&memos).enumerate() {
            if check_inclusion[ci] && !c.includes_node(pod, &n.node) {
                continue;
            }
            let (_, count, Some(domain)) = m.slots[i] else { continue };
            let d = domain as usize;
            if per_domain[ci].len() <= d {
                per_domain[ci].resize(d + 1, None);
            }
            *per_domain[ci][d].get_or_insert(0) += count;
        }
    }
    let counts = per_domain
        .iter()
        .zip(&memos)
        .map(|(counts, m)| counts.iter().enumerate().filter_map(|(d, c)| Some((m.domains[d].clone(), (*c)?))).collect())
        .collect();
    for (c, m) in constraints.iter().zip(memos) {
        memo.insert(key(c), m);
    }
    counts
}

/// What PreFilter computed: the `DoNotSchedule` constraints, their counts per domain and
/// global minimums.
#[derive(Debug)]
struct PreFilterState {
    constraints: Vec<Constraint>,
    counts: Vec<HashMap<String, i64>>,
    min_match: Vec<i64>,
    /// 1 where the incoming pod matches the constraint's selector itself.
    self_match: Vec<i64>,
}

/// What PreScore computed: the `ScheduleAnyway` constraints and their counts per domain.
#[derive(Debug)]
struct PreScoreState {
    constraints: Vec<Constraint>,
    counts: Vec<HashMap<String, i64>>,
}

impl FilterPlugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        NAME
    }

    fn pre_filter(&self, state: &mut CycleState, pod: &Pod, nodes: &[NodeInfo]) -> Status {
        let constraints = match constraints(pod, "DoNotSchedule") {
            Ok(c) => c,
            Err(e) => return Status::UnschedulableAndUnresolvable(format!("invalid topology spread constraint: {e}")),
        };
        let counts = count_domains(&self.counts, &constraints, pod, nodes);
        let self_match = constraints.iter().map(|c| i64::from(c.selects(pod))).collect();
        let min_match = constraints
            .iter()
            .zip(&counts)
            .map(
                |(c, domains)| {
                    if domains.len() < c.min_domains {
                        0
                    } else {
                        domains.values().copied().min().unwrap_or(0)
                    }
                },
            )
            .collect();
        state.insert(PRE_FILTER_STATE_KEY, PreFilterState { constraints, counts, min_match, self_match });
        Status::Success
    }

    fn filter(&self, state: &mut CycleState, _pod: &Pod, node: &NodeInfo) -> Status {
        let Some(s) = state.get::<PreFilterState>(PRE_FILTER_STATE_KEY) else {
            return Status::UnschedulableAndUnresolvable(format!(
                "reading \"{PRE_FILTER_STATE_KEY}\" from cycleState: not found"
            ));
        };
        for (i, c) in s.constraints.iter().enumerate() {
            let Some(value) = label(&node.node, &c.topology_key) else {
                return Status::UnschedulableAndUnresolvable(ERR_REASON_NODE_LABEL_NOT_MATCH.to_string());
            };
            let matching = s.counts[i].get(value).copied().unwrap_or(0);
            if matching + s.self_match[i] - s.min_match[i] > c.max_skew {
                return Status::Unschedulable(ERR_REASON_CONSTRAINTS_NOT_MATCH.to_string());
            }
        }
        Status::Success
    }
}

impl ScorePlugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        NAME
    }

    fn pre_score(&self, state: &mut CycleState, pod: &Pod, nodes: &[NodeInfo], _feasible: &[&NodeInfo]) {
        // An invalid constraint was already reported by the filter; score nothing then.
        let constraints = constraints(pod, "ScheduleAnyway").unwrap_or_default();
        let counts = count_domains(&self.counts, &constraints, pod, nodes);
        state.insert(PRE_SCORE_STATE_KEY, PreScoreState { constraints, counts });
    }

    fn score(&self, state: &mut CycleState, _pod: &Pod, node: &NodeInfo) -> i64 {
        let Some(s) = state.get::<PreScoreState>(PRE_SCORE_STATE_KEY) else { return 0 };
        let mut score = 0;
        for (c, domains) in s.constraints.iter().zip(&s.counts) {
            let Some(value) = label(&node.node, &c.topology_key) else { return IGNORED };
            score += domains.get(value).copied().unwrap_or(0);
        }
        score
    }

    /// Fewer matching pods score higher (reversed `DefaultNormalizeScore`); ignored nodes get 0.
    fn normalize(&self, scores: &mut [i64]) {
        let mut counted: Vec<i64> = scores.iter().copied().filter(|s| *s != IGNORED).collect();
        default_normalize_score(MAX_NODE_SCORE, true, &mut counted);
        let mut counted = counted.into_iter();
        for s in scores.iter_mut() {
            *s = if *s == IGNORED { 0 } else { counted.next().unwrap_or(0) };
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::plugins::testutil::{info, node, pod, state};

    fn zone_node(name: &str, zone: Option<&str>, pods: Vec<Pod>) -> NodeInfo {
        let labels = match zone {
            Some(z) => json!({"zone": z, "kubernetes.io/hostname": name}),
            None => json!({"kubernetes.io/hostname": name}),
        };
        info(node(json!({"metadata": {"name": name, "labels": labels}})), pods)
    }

    fn app_pod(name: &str, app: &str) -> Pod {
        pod(json!({"metadata": {"name": name, "namespace": "default", "labels": {"app": app}},
            "spec": {"containers": []}}))
    }

    fn spreading(labels: Value, constraints: Value) -> Pod {
        pod(json!({"metadata": {"name": "new", "namespace": "default", "labels": labels},
            "spec": {"containers": [], "topologySpreadConstraints": constraints}}))
    }

    fn constraint(max_skew: i32, when: &str) -> Value {
        json!({"maxSkew": max_skew, "topologyKey": "zone", "whenUnsatisfiable": when,
            "labelSelector": {"matchLabels": {"app": "web"}}})
    }

    fn webs(prefix: &str, n: usize) -> Vec<Pod> {
        (0..n).map(|i| app_pod(&format!("{prefix}-{i}"), "web")).collect()
    }

    /// The filter outcome per node, after PreFilter over all of them.
    fn filter_all(p: &Pod, nodes: &[NodeInfo]) -> Vec<Status> {
        let mut st = state();
        assert!(PodTopologySpread::default().pre_filter(&mut st, p, nodes).is_success());
        nodes.iter().map(|n| PodTopologySpread::default().filter(&mut st, p, n)).collect()
    }

    fn unschedulable() -> Status {
        Status::Unschedulable(ERR_REASON_CONSTRAINTS_NOT_MATCH.into())
    }

    #[test]
    fn remembered_counts_follow_pod_changes() {
        // One plugin instance across cycles, as in the scheduler: a node's count is reused
        // while its pods stay, recounted when they change.
        let plugin = PodTopologySpread::default();
        let p = spreading(json!({"app": "web"}), json!([constraint(1, "DoNotSchedule")]));
        let mut nodes = vec![zone_node("a", Some("a"), webs("a", 1)), zone_node("b", Some("b"), vec![])];
        let run = |nodes: &[NodeInfo]| {
            let mut st = state();
            assert!(plugin.pre_filter(&mut st, &p, nodes).is_success());
            nodes.iter().map(|n| plugin.filter(&mut st, &p, n).is_success()).collect::<Vec<_>>()
        };
        assert_eq!(run(&nodes), [false, true]);
        assert_eq!(run(&nodes), [false, true], "same answer from the memo");
        nodes[1].add_pod(app_pod("b-0", "web"));
        assert_eq!(run(&nodes), [true, true], "b's new pod is counted");
        let uid_less = nodes[0].pods[0].clone();
        nodes[0].clear_pods();
        assert_eq!(run(&nodes), [true, false], "a emptied");
        nodes[0].add_pod(uid_less);
        nodes.swap(0, 1);
        assert_eq!(run(&nodes), [true, true], "positions moved: nothing stale is reused");
    }

    #[test]
    fn no_constraints_fit_everywhere() {
        let p = app_pod("new", "web");
        let nodes = [zone_node("a", Some("a"), webs("a", 3)), zone_node("x", None, vec![])];
        assert!(filter_all(&p, &nodes).iter().all(Status::is_success));
    }

    #[test]
    fn skew_counts_the_pod_itself_when_it_matches() {
        let nodes = [zone_node("a", Some("a"), webs("a", 1)), zone_node("b", Some("b"), vec![])];
        // The pod matches its own selector: going to a would make a=2, b=0 (skew 2).
        let p = spreading(json!({"app": "web"}), json!([constraint(1, "DoNotSchedule")]));
        assert_eq!(filter_all(&p, &nodes), [unschedulable(), Status::Success]);
        // A pod not matching the selector does not add to the skew.
        let p = spreading(json!({"app": "other"}), json!([constraint(1, "DoNotSchedule")]));
        assert_eq!(filter_all(&p, &nodes), [Status::Success, Status::Success]);
        // maxSkew 2 allows it.
        let p = spreading(json!({"app": "web"}), json!([constraint(2, "DoNotSchedule")]));
        assert_eq!(filter_all(&p, &nodes), [Status::Success, Status::Success]);
    }

    #[test]
    fn only_same_namespace_and_live_pods_count() {
        let mut other_ns = app_pod("o", "web");
        other_ns.metadata.namespace = Some("other".into());
        let mut terminating = app_pod("t", "web");
        terminating.metadata.deletion_timestamp = Some(serde_json::from_value(json!("2024-01-01T00:00:00Z")).unwrap());
        let nodes = [zone_node("a", Some("a"), vec![other_ns, terminating]), zone_node("b", Some("b"), vec![])];
        let p = spreading(json!({"app": "web"}), json!([constraint(1, "DoNotSchedule")]));
        assert_eq!(filter_all(&p, &nodes), [Status::Success, Status::Success]);
    }

    #[test]
    fn min_domains_makes_the_minimum_zero() {
        // Two domains with 1 pod each: min is 1, so either fits with maxSkew 1.
        let nodes = [zone_node("a", Some("a"), webs("a", 1)), zone_node("b", Some("b"), webs("b", 1))];
        let p = spreading(json!({"app": "web"}), json!([constraint(1, "DoNotSchedule")]));
        assert_eq!(filter_all(&p, &nodes), [Status::Success, Status::Success]);
        // minDomains 3 with only 2 domains: the min counts as 0, so 1 + 1 - 0 > 1.
        let mut c = constraint(1, "DoNotSchedule");
        c["minDomains"] = json!(3);
        let p = spreading(json!({"app": "web"}), json!([c]));
        assert_eq!(filter_all(&p, &nodes), [unschedulable(), unschedulable()]);
        // minDomains 2 is satisfied.
        let mut c = constraint(1, "DoNotSchedule");
        c["minDomains"] = json!(2);
        let p = spreading(json!({"app": "web"}), json!([c]));
        assert_eq!(filter_all(&p, &nodes), [Status::Success, Status::Success]);
    }

    #[test]
    fn node_without_the_key_is_unresolvable() {
        let nodes = [zone_node("a", Some("a"), vec![]), zone_node("x", None, webs("x", 5))];
        let p = spreading(json!({"app": "web"}), json!([constraint(1, "DoNotSchedule")]));
        assert_eq!(
            filter_all(&p, &nodes),
            [
                Status::Success,
                Status::UnschedulableAndUnresolvable(
                    "node(s) didn't match pod topology spread constraints (missing required label)".into()
                )
            ]
        );
    }

    #[test]
    fn node_affinity_policy_honor_limits_the_domains() {
        // Zone b is excluded by the nodeSelector, so its emptiness does not pin the minimum.
        let nodes = [
            info(node(json!({"metadata": {"name": "a", "labels": {"zone": "a", "disk": "ssd"}}})), webs("a", 1)),
            info(node(json!({"metadata": {"name": "c", "labels": {"zone": "c", "disk": "ssd"}}})), webs("c", 1)),
            zone_node("b", Some("b"), vec![]),
        ];
        let mut p = spreading(json!({"app": "web"}), json!([constraint(1, "DoNotSchedule")]));
        p.spec.as_mut().unwrap().node_selector = Some([("disk".to_string(), "ssd".to_string())].into());
        let got = filter_all(&p, &nodes);
        assert_eq!(got[..2], [Status::Success, Status::Success]);
        // With Ignore, zone b (0 pods) counts and a, c are too crowded.
        let mut c = constraint(1, "DoNotSchedule");
        c["nodeAffinityPolicy"] = json!("Ignore");
        let mut p = spreading(json!({"app": "web"}), json!([c]));
        p.spec.as_mut().unwrap().node_selector = Some([("disk".to_string(), "ssd".to_string())].into());
        assert_eq!(filter_all(&p, &nodes)[..2], [unschedulable(), unschedulable()]);
    }

    #[test]
    fn missing_selector_matches_nothing() {
        let nodes = [zone_node("a", Some("a"), webs("a", 3)), zone_node("b", Some("b"), vec![])];
        let p = spreading(
            json!({"app": "web"}),
            json!([{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}]),
        );
        assert_eq!(filter_all(&p, &nodes), [Status::Success, Status::Success]);
    }

    #[test]
    fn schedule_anyway_does_not_filter_but_prefers_emptier_domains() {
        let nodes = [
            zone_node("a", Some("a"), webs("a", 2)),
            zone_node("b", Some("b"), webs("b", 1)),
            zone_node("c", Some("c"), vec![]),
            zone_node("x", None, vec![]),
        ];
        let p = spreading(json!({"app": "web"}), json!([constraint(1, "ScheduleAnyway")]));
        assert!(filter_all(&p, &nodes).iter().all(Status::is_success));
        let mut st = state();
        let feasible: Vec<&NodeInfo> = nodes.iter().collect();
        PodTopologySpread::default().pre_score(&mut st, &p, &nodes, &feasible);
        let mut scores: Vec<i64> = nodes.iter().map(|n| PodTopologySpread::default().score(&mut st, &p, n)).collect();
        assert_eq!(scores, [2, 1, 0, IGNORED]);
        ScorePlugin::normalize(&PodTopologySpread::default(), &mut scores);
        assert_eq!(scores, [0, 50, 100, 0]);
    }

    #[test]
    fn scores_are_uniform_without_constraints() {
        let nodes = [zone_node("a", Some("a"), webs("a", 2)), zone_node("x", None, vec![])];
        let p = app_pod("new", "web");
        let mut st = state();
        PodTopologySpread::default().pre_score(&mut st, &p, &nodes, &nodes.iter().collect::<Vec<_>>());
        let mut scores: Vec<i64> = nodes.iter().map(|n| PodTopologySpread::default().score(&mut st, &p, n)).collect();
        ScorePlugin::normalize(&PodTopologySpread::default(), &mut scores);
        assert_eq!(scores, [100, 100]);
    }
}
