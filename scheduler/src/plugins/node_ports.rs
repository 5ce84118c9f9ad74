//! `NodePorts` (filter), as upstream's `nodeports` plugin: a pod's `hostPort`s must be free on
//! the node.
//!
//! Host ports are those of the containers and of sidecar init containers
//! (`restartPolicy: Always`), with `hostPort > 0`. A port is `(hostIP, protocol, hostPort)`
//! with an empty hostIP meaning `0.0.0.0` and an empty protocol `TCP`. A wanted port
//! conflicts with a used one of the same protocol and number when either hostIP is `0.0.0.0`
//! or both are equal (upstream's `HostPortInfo.CheckConflict`). Reason:
//! `node(s) didn't have free ports for the requested pod ports` (Unschedulable).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{ContainerPort, Pod};

use crate::framework::{CycleState, FilterPlugin, NodeInfo, Status};

/// Upstream's plugin name.
pub const NAME: &str = "NodePorts";

/// Upstream's `ErrReason`.
pub const ERR_REASON: &str = "node(s) didn't have free ports for the requested pod ports";

/// Upstream's `DefaultBindAllHostIP`.
pub const DEFAULT_BIND_ALL_HOST_IP: &str = "0.0.0.0";

/// Refuses nodes where one of the pod's host ports is taken.
#[derive(Debug, Clone, Copy, Default)]
pub struct NodePorts;

/// Upstream's `schedutil.GetHostPorts`: the ports with a host port, of the sidecar init
/// containers and the containers.
pub fn host_ports(pod: &Pod) -> Vec<&ContainerPort> {
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    let sidecars = spec.init_containers.iter().flatten().filter(|c| c.restart_policy.as_deref() == Some("Always"));
    sidecars
        .chain(spec.containers.iter())
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.host_port.unwrap_or(0) > 0)
        .collect()
}

/// Upstream's `HostPortInfo`: host IP → used `(protocol, port)` pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostPortInfo(BTreeMap<String, BTreeSet<(String, i32)>>);

fn sanitize(ip: Option<&str>, protocol: Option<&str>) -> (String, String) {
    let ip = ip.filter(|s| !s.is_empty()).unwrap_or(DEFAULT_BIND_ALL_HOST_IP);
    let protocol = protocol.filter(|s| !s.is_empty()).unwrap_or("TCP");
    (ip.to_string(), protocol.to_string())
}

impl HostPortInfo {
    /// The host ports used by `pods`.
    pub fn from_pods<'a>(pods: impl IntoIterator<Item = &'a Pod>) -> Self {
        let mut info = Self::default();
        for pod in pods {
            for p in host_ports(pod) {
                info.add(p.host_ip.as_deref(), p.protocol.as_deref(), p.host_port.unwrap_or(0));
            }
        }
        info
    }

    /// Records a used port (ignored unless `port > 0`).
    pub fn add(&mut self, ip: Option<&str>, protocol: Option<&str>, port: i32) {
        if port <= 0 {
            return;
        }
        let (ip, protocol) = sanitize(ip, protocol);
        self.0.entry(ip).or_default().insert((protocol, port));
    }

    /// Whether `(ip, protocol, port)` conflicts with a used port.
    pub fn check_conflict(&self, ip: Option<&str>, protocol: Option<&str>, port: i32) -> bool {
        if port <= 0 {
            return false;
        }
        let (ip, protocol) = sanitize(ip, protocol);
        let pp = (protocol, port);
        if ip == DEFAULT_BIND_ALL_HOST_IP {
            return self.0.values().any(|used| used.contains(&pp));
        }
        [DEFAULT_BIND_ALL_HOST_IP, ip.as_str()]
            .iter()
            .any(|key| self.0.get(*key).is_some_and(|used| used.contains(&pp)))
    }
}

/// Upstream's `nodeports.Fits`.
pub fn fits(pod: &Pod, node: &NodeInfo) -> bool {
    let wanted = host_ports(pod);
    if wanted.is_empty() {
        return true;
    }
    let used = HostPortInfo::from_pods(&node.pods);
    !wanted.iter().any(|p| used.check_conflict(p.host_ip.as_deref(), p.protocol.as_deref(), p.host_port.unwrap_or(0)))
}

impl FilterPlugin for NodePorts {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filter(&self, _state: &mut CycleState, pod: &Pod, node: &NodeInfo) -> Status {
        if fits(pod, node) {
            Status::Success
        } else {
            Status::Unschedulable(ERR_REASON.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::plugins::testutil::{info, node, pod, state};

    fn with_ports(name: &str, ports: Value) -> Pod {
        pod(json!({"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "x", "ports": ports}]}}))
    }

    fn on_node(pods: Vec<Pod>) -> NodeInfo {
        info(node(json!({"metadata": {"name": "n"}})), pods)
    }

    fn free(wanted: Value, used: Value) -> bool {
        let n = on_node(vec![with_ports("old", used)]);
        let s = NodePorts.filter(&mut state(), &with_ports("new", wanted), &n);
        if let Some(r) = s.reason() {
            assert_eq!(s, Status::Unschedulable(r.into()));
            assert_eq!(r, "node(s) didn't have free ports for the requested pod ports");
        }
        s.is_success()
    }

    #[test]
    fn no_host_ports_always_fit() {
        assert!(free(json!([{"containerPort": 80}]), json!([{"containerPort": 80, "hostPort": 80}])));
        assert!(free(json!([]), json!([{"containerPort": 80, "hostPort": 80}])));
        assert!(free(json!([{"containerPort": 80, "hostPort": 0}]), json!([{"containerPort": 80, "hostPort": 80}])));
    }

    #[test]
    fn same_port_conflicts_with_defaults() {
        assert!(!free(
            json!([{"containerPort": 80, "hostPort": 8080}]),
            json!([{"containerPort": 1, "hostPort": 8080}])
        ));
        assert!(free(
            json!([{"containerPort": 80, "hostPort": 8080}]),
            json!([{"containerPort": 1, "hostPort": 8081}])
        ));
        // Empty protocol is TCP.
        assert!(!free(
            json!([{"containerPort": 80, "hostPort": 8080, "protocol": "TCP"}]),
            json!([{"containerPort": 1, "hostPort": 8080}])
        ));
    }

    #[test]
    fn different_protocols_do_not_conflict() {
        assert!(free(
            json!([{"containerPort": 53, "hostPort": 53, "protocol": "UDP"}]),
            json!([{"containerPort": 53, "hostPort": 53, "protocol": "TCP"}])
        ));
    }

    #[test]
    fn host_ip_rules() {
        let port = |ip: &str| json!([{"containerPort": 1, "hostPort": 9000, "hostIP": ip}]);
        // Different specific IPs: free.
        assert!(free(port("127.0.0.1"), port("127.0.0.2")));
        // Same IP: conflict.
        assert!(!free(port("127.0.0.1"), port("127.0.0.1")));
        // Wildcard wanted vs any used: conflict; specific wanted vs wildcard used: conflict.
        assert!(!free(port("0.0.0.0"), port("127.0.0.1")));
        assert!(!free(port("127.0.0.1"), port("0.0.0.0")));
        assert!(!free(port("127.0.0.1"), json!([{"containerPort": 1, "hostPort": 9000}])));
        assert!(!free(json!([{"containerPort": 1, "hostPort": 9000}]), port("10.0.0.1")));
    }

    #[test]
    fn sidecar_ports_count_but_plain_init_ports_do_not() {
        let used = pod(json!({"metadata": {"name": "old"}, "spec": {
            "initContainers": [
                {"name": "side", "image": "x", "restartPolicy": "Always", "ports": [{"containerPort": 1, "hostPort": 7000}]},
                {"name": "init", "image": "x", "ports": [{"containerPort": 1, "hostPort": 7001}]}
            ],
            "containers": []}}));
        let n = on_node(vec![used]);
        let wants = |p: i32| with_ports("new", json!([{"containerPort": 1, "hostPort": p}]));
        assert!(!NodePorts.filter(&mut state(), &wants(7000), &n).is_success());
        assert!(NodePorts.filter(&mut state(), &wants(7001), &n).is_success());
    }

    #[test]
    fn any_of_several_ports_conflicting_refuses() {
        let n =
            on_node(vec![with_ports("a", json!([{"containerPort": 1, "hostPort": 81}])), with_ports("b", json!([]))]);
        let p = with_ports("new", json!([{"containerPort": 1, "hostPort": 80}, {"containerPort": 2, "hostPort": 81}]));
        assert!(!fits(&p, &n));
        assert!(fits(&p, &on_node(vec![])));
    }

    #[test]
    fn host_port_info_ignores_non_positive_ports() {
        let mut h = HostPortInfo::default();
        h.add(None, None, 0);
        assert_eq!(h, HostPortInfo::default());
        h.add(None, Some("UDP"), 53);
        assert!(h.check_conflict(Some(""), Some("UDP"), 53));
        assert!(!h.check_conflict(None, Some("UDP"), 0));
    }
}
