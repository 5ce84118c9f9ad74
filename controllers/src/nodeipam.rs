//! Node IPAM: every Node gets a `spec.podCIDR` (a /24 out of the cluster CIDR, default
//! 10.244.0.0/16), as upstream's node-ipam controller (range allocator) does. The kubelet
//! writes its CNI configuration from it (DESIGN.md section 6).
//!
//! Allocations are derived from the Nodes themselves (the lowest /24 no Node holds), so they
//! are stable across restarts and need no state of their own; one reconcile at a time picks,
//! so two new Nodes never get the same range.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::Client;
use serde_json::json;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::Error;

/// The cluster CIDR and the size of each node's share (`--cluster-cidr`,
/// `--node-cidr-mask-size`).
#[derive(Debug, Clone, Copy)]
pub struct ClusterCidr {
    pub network: Ipv4Addr,
    pub prefix_len: u8,
    pub node_prefix_len: u8,
}

impl Default for ClusterCidr {
    fn default() -> Self {
        Self { network: Ipv4Addr::new(10, 244, 0, 0), prefix_len: 16, node_prefix_len: 24 }
    }
}

impl ClusterCidr {
    /// Parses `10.244.0.0/16` with a node mask size.
    pub fn parse(cidr: &str, node_prefix_len: u8) -> Result<Self, String> {
        let (ip, len) = cidr.split_once('/').ok_or_else(|| format!("cluster CIDR {cidr:?} is not ADDRESS/PREFIX"))?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| format!("cluster CIDR {cidr:?}: invalid IPv4 address"))?;
        let len: u8 = len.parse().map_err(|_| format!("cluster CIDR {cidr:?}: invalid prefix"))?;
        if !(8..=30).contains(&len) || node_prefix_len <= len || node_prefix_len > 30 {
            return Err(format!(
                "node CIDR mask /{node_prefix_len} must be longer than the cluster CIDR /{len} and at most /30"
            ));
        }
        let mask = u32::MAX << (32 - len);
        Ok(Self { network: Ipv4Addr::from(u32::from(ip) & mask), prefix_len: len, node_prefix_len })
    }

    /// How many node ranges the cluster CIDR holds.
    pub fn capacity(&self) -> u32 {
        1 << (self.node_prefix_len - self.prefix_len)
    }

    /// The `i`-th node range, as `a.b.c.d/n`.
    pub fn range(&self, i: u32) -> String {
        let base = u32::from(self.network) + (i << (32 - self.node_prefix_len));
        format!("{}/{}", Ipv4Addr::from(base), self.node_prefix_len)
    }

    /// The lowest range not in `used`.
    pub fn first_free(&self, used: &BTreeSet<String>) -> Option<String> {
        (0..self.capacity()).map(|i| self.range(i)).find(|r| !used.contains(r))
    }
}

struct Ctx {
    client: Client,
    nodes: Store<Node>,
    cidr: ClusterCidr,
    /// Ranges handed out by this process whose Node update the cache may not show yet.
    pending: Mutex<BTreeSet<String>>,
}

async fn reconcile(node: Arc<Node>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let Some(name) = node.metadata.name.clone() else { return Ok(Action::await_change()) };
    if node.spec.as_ref().and_then(|s| s.pod_cidr.as_ref()).is_some_and(|c| !c.is_empty()) {
        return Ok(Action::await_change());
    }
    let mut pending = ctx.pending.lock().await;
    let mut used: BTreeSet<String> =
        ctx.nodes.state().iter().filter_map(|n| n.spec.as_ref()?.pod_cidr.clone()).collect();
    // Pending ranges the cache now shows are no longer pending (so a deleted node's range
    // becomes free again).
    pending.retain(|r| !used.contains(r));
    used.extend(pending.iter().cloned());
    let Some(range) = ctx.cidr.first_free(&used) else {
        warn!(node = name, "the cluster CIDR is exhausted; no pod range for this node");
        return Ok(Action::requeue(Duration::from_secs(30)));
    };
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let patch = json!({"spec": {"podCIDR": range, "podCIDRs": [range]}});
    nodes
        .patch(
            &name,
            &PatchParams::apply("skiff-node-ipam").force(),
            &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "spec": patch["spec"],
            })),
        )
        .await?;
    info!(node = name, pod_cidr = range, "allocated the node's pod range");
    pending.insert(range);
    Ok(Action::await_change())
}

fn error_policy(_node: Arc<Node>, error: &Error, _ctx: Arc<Ctx>) -> Action {
    warn!(%error, "node IPAM reconcile failed; retrying");
    Action::requeue(Duration::from_secs(2))
}

/// Runs the controller until `shutdown`.
pub async fn run(client: Client, cidr: ClusterCidr, shutdown: CancellationToken) -> Result<(), Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let controller = Controller::new(nodes, watcher::Config::default());
    let ctx = Arc::new(Ctx { client, nodes: controller.store(), cidr, pending: Mutex::new(BTreeSet::new()) });
    crate::drive(controller, reconcile, error_policy, ctx, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_handed_out_lowest_first() {
        let c = ClusterCidr::default();
        assert_eq!(c.capacity(), 256);
        assert_eq!(c.range(0), "10.244.0.0/24");
        assert_eq!(c.range(255), "10.244.255.0/24");
        let used: BTreeSet<String> = ["10.244.0.0/24".to_string(), "10.244.2.0/24".to_string()].into();
        assert_eq!(c.first_free(&used).as_deref(), Some("10.244.1.0/24"));
        let all: BTreeSet<String> = (0..256).map(|i| c.range(i)).collect();
        assert_eq!(c.first_free(&all), None);
        assert!(ClusterCidr::parse("10.0.0.0/16", 16).is_err());
        assert_eq!(ClusterCidr::parse("10.1.2.3/16", 20).unwrap().range(1), "10.1.16.0/20");
    }
}
