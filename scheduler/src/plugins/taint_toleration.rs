//! `TaintToleration` (filter and score), as upstream's `tainttoleration` plugin.
//!
//! - Filter: every `NoSchedule` and `NoExecute` taint of the node must be tolerated by the
//!   pod; the first one that is not is named in the reason,
//!   `node(s) had untolerated taint {key: value}` (UnschedulableAndUnresolvable).
//! - Score: the number of `PreferNoSchedule` taints the pod does not tolerate, normalized
//!   reversed (fewest intolerable taints → 100).
//!
//! The toleration helpers here are upstream's `v1helper` ones and are shared with
//! [`super::node_unschedulable`].

use k8s_openapi::api::core::v1::{Pod, Taint, Toleration};

use super::{default_normalize_score, MAX_NODE_SCORE};
use crate::framework::{CycleState, FilterPlugin, NodeInfo, ScorePlugin, Status};

/// Upstream's plugin name.
pub const NAME: &str = "TaintToleration";

/// Filters out nodes with untolerated `NoSchedule`/`NoExecute` taints; prefers nodes with
/// fewer untolerated `PreferNoSchedule` taints.
#[derive(Debug, Clone, Copy, Default)]
pub struct TaintToleration;

/// Upstream's `Toleration.ToleratesTaint`: effects must match unless the toleration's is
/// empty (all effects), keys must match unless the toleration's is empty (only meaningful
/// with `Exists`), and `Equal` (the default operator) compares values while `Exists` does
/// not. Unknown operators tolerate nothing.
pub fn toleration_tolerates_taint(toleration: &Toleration, taint: &Taint) -> bool {
    let effect = toleration.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("") {
        "" | "Equal" => toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        "Exists" => true,
        _ => false,
    }
}

/// Upstream's `TolerationsTolerateTaint`: whether any of `tolerations` tolerates `taint`.
pub fn tolerations_tolerate_taint(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| toleration_tolerates_taint(t, taint))
}

/// Upstream's `FindMatchingUntoleratedTaint`: the first taint that passes `filter` and is
/// not tolerated.
pub fn find_matching_untolerated_taint<'a>(
    taints: &'a [Taint],
    tolerations: &[Toleration],
    filter: impl Fn(&Taint) -> bool,
) -> Option<&'a Taint> {
    taints.iter().filter(|t| filter(t)).find(|t| !tolerations_tolerate_taint(tolerations, t))
}

/// Upstream's `DoNotScheduleTaintsFilterFunc`: `NoSchedule` and `NoExecute` taints.
pub fn is_do_not_schedule_taint(taint: &Taint) -> bool {
    taint.effect == "NoSchedule" || taint.effect == "NoExecute"
}

fn taints(node: &NodeInfo) -> &[Taint] {
    node.node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or(&[])
}

fn tolerations(pod: &Pod) -> &[Toleration] {
    pod.spec.as_ref().and_then(|s| s.tolerations.as_deref()).unwrap_or(&[])
}

impl FilterPlugin for TaintToleration {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filter(&self, _state: &mut CycleState, pod: &Pod, node: &NodeInfo) -> Status {
        match find_matching_untolerated_taint(taints(node), tolerations(pod), is_do_not_schedule_taint) {
            None => Status::Success,
            Some(taint) => Status::UnschedulableAndUnresolvable(format!(
                "node(s) had untolerated taint {{{}: {}}}",
                taint.key,
                taint.value.as_deref().unwrap_or("")
            )),
        }
    }
}

impl ScorePlugin for TaintToleration {
    fn name(&self) -> &'static str {
        NAME
    }

    /// Upstream's `countIntolerableTaintsPreferNoSchedule` (only tolerations with an empty or
    /// `PreferNoSchedule` effect can tolerate these taints, which the effect check ensures).
    fn score(&self, _state: &mut CycleState, pod: &Pod, node: &NodeInfo) -> i64 {
        let tolerations = tolerations(pod);
        taints(node)
            .iter()
            .filter(|t| t.effect == "PreferNoSchedule")
            .filter(|t| !tolerations_tolerate_taint(tolerations, t))
            .count() as i64
    }

    fn normalize(&self, scores: &mut [i64]) {
        default_normalize_score(MAX_NODE_SCORE, true, scores);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::plugins::testutil::{info, node, pod, state};

    fn tainted(taints: Value) -> NodeInfo {
        info(node(json!({"metadata": {"name": "n"}, "spec": {"taints": taints}})), vec![])
    }

    fn tolerating(tolerations: Value) -> Pod {
        pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [], "tolerations": tolerations}}))
    }

    fn taint(v: Value) -> Taint {
        serde_json::from_value(v).unwrap()
    }

    fn toleration(v: Value) -> Toleration {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn toleration_matching_rules() {
        let t = taint(json!({"key": "k", "value": "v", "effect": "NoSchedule"}));
        assert!(toleration_tolerates_taint(&toleration(json!({"key": "k", "value": "v", "effect": "NoSchedule"})), &t));
        assert!(toleration_tolerates_taint(&toleration(json!({"key": "k", "operator": "Equal", "value": "v"})), &t));
        assert!(toleration_tolerates_taint(&toleration(json!({"key": "k", "operator": "Exists"})), &t));
        assert!(toleration_tolerates_taint(&toleration(json!({"operator": "Exists"})), &t));
        assert!(!toleration_tolerates_taint(&toleration(json!({"key": "k", "value": "w"})), &t));
        assert!(!toleration_tolerates_taint(&toleration(json!({"key": "k", "value": "v", "effect": "NoExecute"})), &t));
        assert!(!toleration_tolerates_taint(&toleration(json!({"key": "other", "operator": "Exists"})), &t));
        assert!(!toleration_tolerates_taint(&toleration(json!({"key": "k", "operator": "Gt", "value": "v"})), &t));
        // Empty key with Equal compares only values: a taint value "v" is not "".
        assert!(!toleration_tolerates_taint(&toleration(json!({})), &t));
    }

    #[test]
    fn no_taints_passes() {
        assert!(TaintToleration.filter(&mut state(), &tolerating(json!([])), &tainted(json!([]))).is_success());
    }

    #[test]
    fn untolerated_no_schedule_refused_with_upstream_reason() {
        let n = tainted(json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]));
        let s = TaintToleration.filter(&mut state(), &tolerating(json!([])), &n);
        assert_eq!(s, Status::UnschedulableAndUnresolvable("node(s) had untolerated taint {dedicated: gpu}".into()));
    }

    #[test]
    fn untolerated_no_execute_refused_and_empty_value_printed() {
        let n = tainted(json!([{"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}]));
        let s = TaintToleration.filter(&mut state(), &tolerating(json!([])), &n);
        assert_eq!(s.reason(), Some("node(s) had untolerated taint {node.kubernetes.io/not-ready: }"));
    }

    #[test]
    fn prefer_no_schedule_does_not_filter() {
        let n = tainted(json!([{"key": "k", "value": "v", "effect": "PreferNoSchedule"}]));
        assert!(TaintToleration.filter(&mut state(), &tolerating(json!([])), &n).is_success());
    }

    #[test]
    fn tolerated_taints_pass_and_first_untolerated_is_reported() {
        let n = tainted(json!([
            {"key": "a", "value": "1", "effect": "NoSchedule"},
            {"key": "b", "value": "2", "effect": "NoSchedule"},
            {"key": "c", "value": "3", "effect": "NoExecute"}
        ]));
        let p = tolerating(json!([{"key": "a", "operator": "Exists"}]));
        assert_eq!(TaintToleration.filter(&mut state(), &p, &n).reason(), Some("node(s) had untolerated taint {b: 2}"));
        let p = tolerating(
            json!([{"key": "a", "operator": "Exists"}, {"key": "b", "value": "2"}, {"key": "c", "value": "3", "effect": "NoExecute"}]),
        );
        assert!(TaintToleration.filter(&mut state(), &p, &n).is_success());
        assert!(TaintToleration.filter(&mut state(), &tolerating(json!([{"operator": "Exists"}])), &n).is_success());
    }

    #[test]
    fn score_counts_intolerable_prefer_no_schedule() {
        let n = tainted(json!([
            {"key": "a", "value": "1", "effect": "PreferNoSchedule"},
            {"key": "b", "value": "2", "effect": "PreferNoSchedule"},
            {"key": "c", "value": "3", "effect": "NoSchedule"}
        ]));
        assert_eq!(TaintToleration.score(&mut state(), &tolerating(json!([])), &n), 2);
        let p = tolerating(json!([{"key": "a", "operator": "Exists", "effect": "PreferNoSchedule"}]));
        assert_eq!(TaintToleration.score(&mut state(), &p, &n), 1);
        // A toleration for another effect does not count.
        let p = tolerating(json!([{"key": "b", "value": "2", "effect": "NoSchedule"}]));
        assert_eq!(TaintToleration.score(&mut state(), &p, &n), 2);
        let p = tolerating(json!([{"operator": "Exists"}]));
        assert_eq!(TaintToleration.score(&mut state(), &p, &n), 0);
    }

    #[test]
    fn normalize_reverses_so_fewer_is_better() {
        // Upstream's test: raw counts 0, 1, 2 → 100, 50, 0.
        let mut scores = [0, 1, 2];
        ScorePlugin::normalize(&TaintToleration, &mut scores);
        assert_eq!(scores, [100, 50, 0]);
        let mut scores = [0, 0];
        ScorePlugin::normalize(&TaintToleration, &mut scores);
        assert_eq!(scores, [100, 100]);
        let mut scores = [3, 1];
        ScorePlugin::normalize(&TaintToleration, &mut scores);
        assert_eq!(scores, [0, 67]);
    }
}
