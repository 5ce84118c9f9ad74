//! Builders shared by the plugins' unit tests: objects from JSON, node infos as the
//! scheduling loop builds them.

use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{json, Value};

use crate::framework::{CycleState, NodeInfo};

pub fn pod(v: Value) -> Pod {
    serde_json::from_value(v).expect("valid Pod JSON")
}

pub fn node(v: Value) -> Node {
    serde_json::from_value(v).expect("valid Node JSON")
}

/// A pod `name` with one container requesting `cpu`/`memory` (omitted when `None`).
pub fn pod_with_requests(name: &str, cpu: Option<&str>, memory: Option<&str>) -> Pod {
    let mut requests = serde_json::Map::new();
    if let Some(c) = cpu {
        requests.insert("cpu".into(), json!(c));
    }
    if let Some(m) = memory {
        requests.insert("memory".into(), json!(m));
    }
    pod(json!({"metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
        "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {"requests": requests}}]}}))
}

/// A node `name` with `allocatable` (`{"cpu": "4", ...}`).
pub fn node_with_allocatable(name: &str, allocatable: Value) -> Node {
    node(json!({"metadata": {"name": name}, "status": {"allocatable": allocatable}}))
}

/// What the scheduling loop hands the plugins: the node, its pods and their summed requests.
pub fn info(node: Node, pods: Vec<Pod>) -> NodeInfo {
    NodeInfo::with_pods(node, pods)
}

/// A bare node called `name` with no pods.
pub fn bare(name: &str) -> NodeInfo {
    info(node(json!({"metadata": {"name": name}})), vec![])
}

pub fn state() -> CycleState {
    CycleState::default()
}
