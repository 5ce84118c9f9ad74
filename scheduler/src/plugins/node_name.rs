//! `NodeName` (filter), as upstream's `nodename` plugin: a pod that already names a node in
//! `spec.nodeName` fits only that node.

use k8s_openapi::api::core::v1::Pod;

use crate::framework::{CycleState, FilterPlugin, NodeInfo, Status};

/// Upstream's plugin name.
pub const NAME: &str = "NodeName";

/// Upstream's `ErrReason`.
pub const ERR_REASON: &str = "node(s) didn't match the requested node name";

/// Keeps only the node named by `spec.nodeName`, when set.
#[derive(Debug, Clone, Copy, Default)]
pub struct NodeName;

/// Upstream's `nodename.Fits`: an empty `spec.nodeName` fits every node.
pub fn fits(pod: &Pod, node: &NodeInfo) -> bool {
    match pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
        None | Some("") => true,
        Some(wanted) => node.node.metadata.name.as_deref() == Some(wanted),
    }
}

impl FilterPlugin for NodeName {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filter(&self, _state: &mut CycleState, pod: &Pod, node: &NodeInfo) -> Status {
        if fits(pod, node) {
            Status::Success
        } else {
            Status::UnschedulableAndUnresolvable(ERR_REASON.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::plugins::testutil::{bare, pod, state};

    fn with_node_name(n: Option<&str>) -> Pod {
        pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [], "nodeName": n}}))
    }

    #[test]
    fn no_node_name_fits_everywhere() {
        assert!(NodeName.filter(&mut state(), &with_node_name(None), &bare("a")).is_success());
        assert!(NodeName.filter(&mut state(), &with_node_name(Some("")), &bare("a")).is_success());
    }

    #[test]
    fn matching_node_fits() {
        assert!(NodeName.filter(&mut state(), &with_node_name(Some("a")), &bare("a")).is_success());
    }

    #[test]
    fn other_node_refused_with_upstream_reason() {
        let s = NodeName.filter(&mut state(), &with_node_name(Some("a")), &bare("b"));
        assert_eq!(s, Status::UnschedulableAndUnresolvable("node(s) didn't match the requested node name".into()));
    }

    #[test]
    fn pod_without_spec_fits() {
        let p = pod(json!({"metadata": {"name": "p"}}));
        assert!(fits(&p, &bare("a")));
    }
}
