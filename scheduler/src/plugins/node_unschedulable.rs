//! `NodeUnschedulable` (filter), as upstream's `nodeunschedulable` plugin: a node with
//! `spec.unschedulable: true` (cordoned) takes no new pods, unless the pod tolerates the
//! `node.kubernetes.io/unschedulable:NoSchedule` taint.

use k8s_openapi::api::core::v1::{Pod, Taint};

use super::taint_toleration::tolerations_tolerate_taint;
use crate::framework::{CycleState, FilterPlugin, NodeInfo, Status};

/// Upstream's plugin name.
pub const NAME: &str = "NodeUnschedulable";

/// Upstream's `ErrReasonUnschedulable`.
pub const ERR_REASON_UNSCHEDULABLE: &str = "node(s) were unschedulable";

/// Upstream's `v1.TaintNodeUnschedulable`.
pub const TAINT_NODE_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

/// Refuses cordoned nodes to pods that do not tolerate `node.kubernetes.io/unschedulable`.
#[derive(Debug, Clone, Copy, Default)]
pub struct NodeUnschedulable;

impl FilterPlugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filter(&self, _state: &mut CycleState, pod: &Pod, node: &NodeInfo) -> Status {
        let unschedulable = node.node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false);
        if !unschedulable {
            return Status::Success;
        }
        // A pod that tolerates the unschedulable taint also tolerates `spec.unschedulable`.
        let taint =
            Taint { key: TAINT_NODE_UNSCHEDULABLE.to_string(), effect: "NoSchedule".to_string(), ..Default::default() };
        let tolerations = pod.spec.as_ref().and_then(|s| s.tolerations.as_deref()).unwrap_or(&[]);
        if tolerations_tolerate_taint(tolerations, &taint) {
            Status::Success
        } else {
            Status::UnschedulableAndUnresolvable(ERR_REASON_UNSCHEDULABLE.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::plugins::testutil::{info, node, pod, state};

    fn run(node_json: serde_json::Value, tolerations: serde_json::Value) -> Status {
        let p = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [], "tolerations": tolerations}}));
        NodeUnschedulable.filter(&mut state(), &p, &info(node(node_json), vec![]))
    }

    #[test]
    fn schedulable_node_passes() {
        assert_eq!(run(json!({"metadata": {"name": "n"}}), json!([])), Status::Success);
        assert_eq!(
            run(json!({"metadata": {"name": "n"}, "spec": {"unschedulable": false}}), json!([])),
            Status::Success
        );
    }

    #[test]
    fn cordoned_node_refused() {
        let s = run(json!({"metadata": {"name": "n"}, "spec": {"unschedulable": true}}), json!([]));
        assert_eq!(s, Status::UnschedulableAndUnresolvable("node(s) were unschedulable".into()));
    }

    #[test]
    fn toleration_of_unschedulable_taint_admits() {
        let cordoned = json!({"metadata": {"name": "n"}, "spec": {"unschedulable": true}});
        let exact = json!([{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]);
        assert_eq!(run(cordoned.clone(), exact), Status::Success);
        // Empty effect tolerates every effect; empty key with Exists tolerates every taint.
        let any_effect = json!([{"key": "node.kubernetes.io/unschedulable", "operator": "Exists"}]);
        assert_eq!(run(cordoned.clone(), any_effect), Status::Success);
        assert_eq!(run(cordoned.clone(), json!([{"operator": "Exists"}])), Status::Success);
    }

    #[test]
    fn wrong_toleration_does_not_admit() {
        let cordoned = json!({"metadata": {"name": "n"}, "spec": {"unschedulable": true}});
        let other_effect =
            json!([{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoExecute"}]);
        assert!(!run(cordoned.clone(), other_effect).is_success());
        let other_key = json!([{"key": "node.kubernetes.io/not-ready", "operator": "Exists"}]);
        assert!(!run(cordoned.clone(), other_key).is_success());
        // Equal with a value does not match the taint's empty value.
        let with_value = json!([{"key": "node.kubernetes.io/unschedulable", "value": "x", "effect": "NoSchedule"}]);
        assert!(!run(cordoned, with_value).is_success());
    }

    #[test]
    fn name() {
        assert_eq!(NodeUnschedulable.name(), "NodeUnschedulable");
    }
}
