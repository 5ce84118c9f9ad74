//! `NodeAffinity` (filter and score), as upstream's `nodeaffinity` plugin with the matching
//! rules of `k8s.io/component-helpers/scheduling/corev1/nodeaffinity`.
//!
//! - Filter: the node must carry every `spec.nodeSelector` label, and match
//!   `requiredDuringSchedulingIgnoredDuringExecution`: its `nodeSelectorTerms` are ORed, and
//!   inside a term all `matchExpressions` (on labels: `In`, `NotIn`, `Exists`,
//!   `DoesNotExist`, `Gt`, `Lt`) and `matchFields` (only `metadata.name`, `In`/`NotIn` with one
//!   value) are ANDed. A term with neither matches nothing; a term that does not parse (an
//!   unknown operator, a `Gt` value that is not an integer, ...) matches nothing either. A
//!   required node selector with no terms matches no node. Reason:
//!   `node(s) didn't match Pod's node affinity/selector` (UnschedulableAndUnresolvable).
//! - Score: the sum of the weights of the matching
//!   `preferredDuringSchedulingIgnoredDuringExecution` terms, normalized to 0..=100 by the
//!   best node's sum.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, NodeSelectorRequirement, NodeSelectorTerm, Pod};
use skiff_api::selector::{Operator, Requirement};

use super::{default_normalize_score, MAX_NODE_SCORE};
use crate::framework::{CycleState, FilterPlugin, NodeInfo, ScorePlugin, Status};

/// Upstream's plugin name.
pub const NAME: &str = "NodeAffinity";

/// Upstream's `ErrReasonPod`.
pub const ERR_REASON_POD: &str = "node(s) didn't match Pod's node affinity/selector";

/// The only field `matchFields` can select on.
pub const FIELD_METADATA_NAME: &str = "metadata.name";

/// Filters on `nodeSelector` and required node affinity; scores preferred node affinity.
#[derive(Debug, Clone, Copy, Default)]
pub struct NodeAffinity;

/// Upstream's `nodeSelectorRequirementsAsSelector` for one label expression: `None` if it
/// does not parse (unknown operator, wrong number of values, invalid key or value).
fn label_requirement(expr: &NodeSelectorRequirement) -> Option<Requirement> {
    let op = match expr.operator.as_str() {
        "In" => Operator::In,
        "NotIn" => Operator::NotIn,
        "Exists" => Operator::Exists,
        "DoesNotExist" => Operator::DoesNotExist,
        "Gt" => Operator::GreaterThan,
        "Lt" => Operator::LessThan,
        _ => return None,
    };
    Requirement::new(expr.key.clone(), op, expr.values.clone().unwrap_or_default()).ok()
}

/// Upstream's `nodeSelectorRequirementsAsFieldSelector` for one field expression, matched
/// against the node's fields (`metadata.name`; any other field reads as empty). `None` if it
/// does not parse.
fn field_matches(expr: &NodeSelectorRequirement, node_name: &str) -> Option<bool> {
    let [value] = expr.values.as_deref().unwrap_or(&[]) else {
        return None;
    };
    let actual = if expr.key == FIELD_METADATA_NAME { node_name } else { "" };
    match expr.operator.as_str() {
        "In" => Some(actual == value),
        "NotIn" => Some(actual != value),
        _ => None,
    }
}

fn is_empty_term(term: &NodeSelectorTerm) -> bool {
    term.match_expressions.as_ref().is_none_or(Vec::is_empty) && term.match_fields.as_ref().is_none_or(Vec::is_empty)
}

/// Whether `node` matches one node selector term (expressions and fields ANDed). An empty
/// term, or one that does not parse, matches nothing.
pub fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    if is_empty_term(term) {
        return false;
    }
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    let node_name = node.metadata.name.as_deref().unwrap_or("");
    let mut matched = true;
    for expr in term.match_expressions.as_deref().unwrap_or(&[]) {
        match label_requirement(expr) {
            None => return false,
            Some(r) => matched &= r.matches(labels),
        }
    }
    for expr in term.match_fields.as_deref().unwrap_or(&[]) {
        match field_matches(expr, node_name) {
            None => return false,
            // Upstream skips field matching for a node without fields (no name).
            Some(m) => matched &= m || node_name.is_empty(),
        }
    }
    matched
}

/// Whether `node` matches any of `terms` (upstream's `NodeSelector` semantics: ORed terms;
/// no terms → no match).
pub fn node_matches_terms(terms: &[NodeSelectorTerm], node: &Node) -> bool {
    terms.iter().any(|t| term_matches(t, node))
}

/// Upstream's `GetRequiredNodeAffinity(pod).Match(node)`: `spec.nodeSelector` AND the
/// required node affinity.
pub fn required_node_affinity_matches(pod: &Pod, node: &Node) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return true;
    };
    if let Some(selector) = &spec.node_selector {
        let labels = node.metadata.labels.as_ref();
        if !selector.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v)) {
            return false;
        }
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| na.required_during_scheduling_ignored_during_execution.as_ref());
    match required {
        None => true,
        Some(selector) => node_matches_terms(&selector.node_selector_terms, node),
    }
}

/// The sum of the weights of the pod's preferred node-affinity terms that `node` matches
/// (terms with weight 0 or no requirements are skipped, as upstream).
pub fn preferred_node_affinity_score(pod: &Pod, node: &Node) -> i64 {
    let preferred = pod
        .spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| na.preferred_during_scheduling_ignored_during_execution.as_deref())
        .unwrap_or(&[]);
    preferred
        .iter()
        .filter(|t| t.weight != 0 && !is_empty_term(&t.preference))
        .filter(|t| term_matches(&t.preference, node))
        .map(|t| i64::from(t.weight))
        .sum()
}

impl FilterPlugin for NodeAffinity {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filter(&self, _state: &mut CycleState, pod: &Pod, node: &NodeInfo) -> Status {
        if required_node_affinity_matches(pod, &node.node) {
            Status::Success
        } else {
            Status::UnschedulableAndUnresolvable(ERR_REASON_POD.to_string())
        }
    }
}

impl ScorePlugin for NodeAffinity {
    fn name(&self) -> &'static str {
        NAME
    }

    fn score(&self, _state: &mut CycleState, pod: &Pod, node: &NodeInfo) -> i64 {
        preferred_node_affinity_score(pod, &node.node)
    }

    fn normalize(&self, scores: &mut [i64]) {
        default_normalize_score(MAX_NODE_SCORE, false, scores);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::plugins::testutil::{info, node, pod, state};

    fn labelled(name: &str, labels: Value) -> NodeInfo {
        info(node(json!({"metadata": {"name": name, "labels": labels}})), vec![])
    }

    fn with_spec(spec: Value) -> Pod {
        let mut spec = spec;
        spec["containers"] = json!([]);
        pod(json!({"metadata": {"name": "p"}, "spec": spec}))
    }

    fn required(terms: Value) -> Pod {
        with_spec(json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": terms}}}}))
    }

    fn fits(p: &Pod, n: &NodeInfo) -> bool {
        let s = NodeAffinity.filter(&mut state(), p, n);
        if let Some(r) = s.reason() {
            assert_eq!(s, Status::UnschedulableAndUnresolvable(r.into()));
            assert_eq!(r, "node(s) didn't match Pod's node affinity/selector");
        }
        s.is_success()
    }

    fn expr(key: &str, op: &str, values: Value) -> Value {
        json!({"matchExpressions": [{"key": key, "operator": op, "values": values}]})
    }

    #[test]
    fn no_constraints_fit() {
        assert!(fits(&with_spec(json!({})), &labelled("n", json!({}))));
        assert!(fits(&pod(json!({"metadata": {"name": "p"}})), &labelled("n", json!({}))));
    }

    #[test]
    fn node_selector_requires_every_label() {
        let p = with_spec(json!({"nodeSelector": {"disk": "ssd", "zone": "a"}}));
        assert!(fits(&p, &labelled("n", json!({"disk": "ssd", "zone": "a", "extra": "x"}))));
        assert!(!fits(&p, &labelled("n", json!({"disk": "ssd"}))));
        assert!(!fits(&p, &labelled("n", json!({"disk": "hdd", "zone": "a"}))));
        assert!(!fits(&p, &labelled("n", json!(null))));
    }

    #[test]
    fn operators_in_and_not_in() {
        let n = labelled("n", json!({"zone": "a"}));
        assert!(fits(&required(json!([expr("zone", "In", json!(["a", "b"]))])), &n));
        assert!(!fits(&required(json!([expr("zone", "In", json!(["b"]))])), &n));
        assert!(!fits(&required(json!([expr("zone", "NotIn", json!(["a"]))])), &n));
        assert!(fits(&required(json!([expr("zone", "NotIn", json!(["b"]))])), &n));
        // NotIn matches a node without the label.
        assert!(fits(&required(json!([expr("rack", "NotIn", json!(["b"]))])), &n));
        assert!(!fits(&required(json!([expr("rack", "In", json!(["b"]))])), &n));
    }

    #[test]
    fn operators_exists_and_does_not_exist() {
        let n = labelled("n", json!({"gpu": ""}));
        assert!(fits(&required(json!([{"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}])), &n));
        assert!(!fits(&required(json!([{"matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"}]}])), &n));
        assert!(fits(&required(json!([{"matchExpressions": [{"key": "tpu", "operator": "DoesNotExist"}]}])), &n));
        assert!(!fits(&required(json!([{"matchExpressions": [{"key": "tpu", "operator": "Exists"}]}])), &n));
    }

    #[test]
    fn operators_gt_and_lt() {
        let n = labelled("n", json!({"cores": "8", "name": "abc"}));
        assert!(fits(&required(json!([expr("cores", "Gt", json!(["4"]))])), &n));
        assert!(!fits(&required(json!([expr("cores", "Gt", json!(["8"]))])), &n));
        assert!(fits(&required(json!([expr("cores", "Lt", json!(["16"]))])), &n));
        assert!(!fits(&required(json!([expr("cores", "Lt", json!(["8"]))])), &n));
        // A label that is not an integer, or a missing label, does not match.
        assert!(!fits(&required(json!([expr("name", "Gt", json!(["1"]))])), &n));
        assert!(!fits(&required(json!([expr("missing", "Lt", json!(["1"]))])), &n));
        // Invalid requirement values make the term fail.
        assert!(!fits(&required(json!([expr("cores", "Gt", json!(["x"]))])), &n));
        assert!(!fits(&required(json!([expr("cores", "Gt", json!(["1", "2"]))])), &n));
    }

    #[test]
    fn expressions_in_a_term_are_anded() {
        let n = labelled("n", json!({"zone": "a", "disk": "ssd"}));
        let both = json!([{"matchExpressions": [
            {"key": "zone", "operator": "In", "values": ["a"]},
            {"key": "disk", "operator": "In", "values": ["ssd"]}]}]);
        assert!(fits(&required(both), &n));
        let one_wrong = json!([{"matchExpressions": [
            {"key": "zone", "operator": "In", "values": ["a"]},
            {"key": "disk", "operator": "In", "values": ["hdd"]}]}]);
        assert!(!fits(&required(one_wrong), &n));
    }

    #[test]
    fn terms_are_ored() {
        let n = labelled("n", json!({"zone": "b"}));
        let terms = json!([expr("zone", "In", json!(["a"])), expr("zone", "In", json!(["b"]))]);
        assert!(fits(&required(terms), &n));
    }

    #[test]
    fn empty_or_invalid_terms_match_nothing() {
        let n = labelled("n", json!({"zone": "a"}));
        assert!(!fits(&required(json!([])), &n));
        assert!(!fits(&required(json!([{}])), &n));
        assert!(!fits(&required(json!([{"matchExpressions": []}])), &n));
        assert!(!fits(&required(json!([expr("zone", "Like", json!(["a"]))])), &n));
        assert!(!fits(&required(json!([expr("zone", "In", json!([]))])), &n));
        assert!(!fits(&required(json!([expr("bad key!", "Exists", json!(null))])), &n));
        // An invalid term does not spoil a valid one.
        let terms = json!([expr("zone", "Like", json!(["a"])), expr("zone", "In", json!(["a"]))]);
        assert!(fits(&required(terms), &n));
    }

    #[test]
    fn match_fields_on_metadata_name() {
        let n = labelled("node-1", json!({}));
        let in_name = |v: &str| json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [v]}]}]);
        assert!(fits(&required(in_name("node-1")), &n));
        assert!(!fits(&required(in_name("node-2")), &n));
        let not_in = json!([{"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["node-1"]}]}]);
        assert!(!fits(&required(not_in), &n));
        // Fields need exactly one value and In/NotIn.
        let two = json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-1", "x"]}]}]);
        assert!(!fits(&required(two), &n));
        let exists = json!([{"matchFields": [{"key": "metadata.name", "operator": "Exists"}]}]);
        assert!(!fits(&required(exists), &n));
    }

    #[test]
    fn fields_and_labels_are_anded_in_a_term() {
        let n = labelled("node-1", json!({"zone": "a"}));
        let term = |zone: &str, name: &str| {
            json!([{"matchExpressions": [{"key": "zone", "operator": "In", "values": [zone]}],
                "matchFields": [{"key": "metadata.name", "operator": "In", "values": [name]}]}])
        };
        assert!(fits(&required(term("a", "node-1")), &n));
        assert!(!fits(&required(term("b", "node-1")), &n));
        assert!(!fits(&required(term("a", "node-2")), &n));
    }

    #[test]
    fn node_selector_and_affinity_are_anded() {
        let n = labelled("n", json!({"zone": "a", "disk": "ssd"}));
        let p = with_spec(json!({"nodeSelector": {"disk": "hdd"},
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}}}));
        assert!(!fits(&p, &n));
        let p = with_spec(json!({"nodeSelector": {"disk": "ssd"},
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}}}));
        assert!(fits(&p, &n));
    }

    fn preferring(terms: Value) -> Pod {
        with_spec(json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": terms}}}))
    }

    #[test]
    fn score_sums_matching_preferred_weights() {
        let p = preferring(json!([
            {"weight": 2, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}},
            {"weight": 5, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}},
            {"weight": 0, "preference": {"matchExpressions": [{"key": "zone", "operator": "Exists"}]}},
            {"weight": 7, "preference": {}}
        ]));
        let score = |labels: Value| NodeAffinity.score(&mut state(), &p, &labelled("n", labels));
        assert_eq!(score(json!({"zone": "a", "disk": "ssd"})), 7);
        assert_eq!(score(json!({"zone": "a"})), 2);
        assert_eq!(score(json!({"disk": "ssd"})), 5);
        assert_eq!(score(json!({})), 0);
        assert_eq!(NodeAffinity.score(&mut state(), &with_spec(json!({})), &labelled("n", json!({"zone": "a"}))), 0);
    }

    #[test]
    fn score_normalizes_by_max() {
        let mut scores = [7, 2, 5, 0];
        ScorePlugin::normalize(&NodeAffinity, &mut scores);
        assert_eq!(scores, [100, 28, 71, 0]);
        let mut zeros = [0, 0];
        ScorePlugin::normalize(&NodeAffinity, &mut zeros);
        assert_eq!(zeros, [0, 0]);
    }
}
