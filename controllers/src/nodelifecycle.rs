//! Node lifecycle, as upstream's node-lifecycle controller: notices nodes whose kubelet has
//! gone quiet and moves their pods elsewhere.
//!
//! A node's heartbeat is the newest of its Lease's `renewTime` (in `kube-node-lease`), its
//! Ready condition's `lastHeartbeatTime`, and its creation. When the heartbeat is older than
//! `node_monitor_grace_period` (default 50 s) the node becomes `Ready=Unknown` and gets the
//! `node.kubernetes.io/unreachable` taint; a kubelet that reports `Ready=False` gets
//! `node.kubernetes.io/not-ready`; a healthy node loses both. Each comes with both effects,
//! as upstream: `NoSchedule` (taint-nodes-by-condition: no new pods land there, even pods
//! that tolerate the eviction for a while) and `NoExecute` (eviction). Pods on a node
//! with a NoExecute taint they do not tolerate are evicted at once; pods that tolerate it
//! for `tolerationSeconds` (the apiserver adds 300 s by default) are evicted when that time
//! has passed since the taint was added. Evictions are rate limited.
//!
//! Level-triggered: one pass every `period` over all nodes, leases and pods.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::Error;

pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";

/// Timing (`--node-monitor-grace-period`, evictions per second).
#[derive(Debug, Clone)]
pub struct Config {
    pub grace_period: Duration,
    pub period: Duration,
    pub evictions_per_pass: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self { grace_period: Duration::from_secs(50), period: Duration::from_secs(5), evictions_per_pass: 50 }
    }
}

fn ready_condition(node: &Node) -> Option<&k8s_openapi::api::core::v1::NodeCondition> {
    node.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready")
}

/// Seconds since the epoch of the node's newest sign of life.
fn heartbeat(node: &Node, lease: Option<&Lease>) -> i64 {
    let created = node.metadata.creation_timestamp.as_ref().map(|t| t.0.as_second()).unwrap_or(0);
    let cond = ready_condition(node).and_then(|c| c.last_heartbeat_time.as_ref()).map(|t| t.0.as_second()).unwrap_or(0);
    let renewed = lease.and_then(|l| l.spec.as_ref()?.renew_time.as_ref()).map(|t| t.0.as_second()).unwrap_or(0);
    created.max(cond).max(renewed)
}

/// Whether `tol` tolerates `taint` (upstream's ToleratesTaint).
pub fn tolerates(tol: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = tol.effect.as_deref().filter(|e| !e.is_empty()) {
        if effect != taint.effect {
            return false;
        }
    }
    match tol.key.as_deref().filter(|k| !k.is_empty()) {
        None => tol.operator.as_deref() == Some("Exists"), // empty key + Exists matches all
        Some(k) if k != taint.key => false,
        Some(_) => match tol.operator.as_deref().unwrap_or("Equal") {
            "Exists" => true,
            _ => tol.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        },
    }
}

/// When (epoch seconds) a pod must leave a node with these NoExecute taints: `Some(0)` now,
/// `None` never.
pub fn eviction_time(pod: &Pod, taints: &[Taint]) -> Option<i64> {
    let tolerations = pod.spec.as_ref().and_then(|s| s.tolerations.clone()).unwrap_or_default();
    let mut at: Option<i64> = None;
    for taint in taints.iter().filter(|t| t.effect == "NoExecute") {
        let matching: Vec<&Toleration> = tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        if matching.is_empty() {
            return Some(0);
        }
        // The shortest tolerationSeconds among matching ones; any without a limit = forever.
        if matching.iter().any(|t| t.toleration_seconds.is_none()) {
            continue;
        }
        let secs = matching.iter().filter_map(|t| t.toleration_seconds).min().unwrap_or(0).max(0);
        let added = taint.time_added.as_ref().map(|t| t.0.as_second()).unwrap_or(0);
        let when = added + secs;
        at = Some(at.map_or(when, |a: i64| a.min(when)));
    }
    at
}

fn taint_json(key: &str, effect: &str, now: &str) -> serde_json::Value {
    json!({"key": key, "effect": effect, "timeAdded": now})
}

/// One pass: update node conditions and taints, evict pods that must go.
pub async fn pass(client: &Client, cfg: &Config) -> Result<(), Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let lease_by_node: HashMap<String, Lease> =
        leases.list(&ListParams::default()).await?.items.into_iter().map(|l| (l.name_any(), l)).collect();
    let now = Timestamp::now();
    let now_s = now.as_second();
    let now_str = now.to_string();
    let mut tainted: HashMap<String, Vec<Taint>> = HashMap::new();
    for node in nodes.list(&ListParams::default()).await?.items {
        let name = node.name_any();
        let beat = heartbeat(&node, lease_by_node.get(&name));
        let stale = now_s - beat > cfg.grace_period.as_secs() as i64;
        let ready = ready_condition(&node).map(|c| c.status.as_str());
        let want = if stale {
            Some(UNREACHABLE)
        } else if ready == Some("False") {
            Some(NOT_READY)
        } else {
            None
        };
        let taints = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
        let mut new_taints: Vec<serde_json::Value> = taints
            .iter()
            .filter(|t| !((t.key == UNREACHABLE || t.key == NOT_READY) && Some(t.key.as_str()) != want))
            .map(|t| serde_json::to_value(t).unwrap_or_default())
            .collect();
        if let Some(w) = want {
            for effect in ["NoSchedule", "NoExecute"] {
                if !taints.iter().any(|t| t.key == w && t.effect == effect) {
                    new_taints.push(taint_json(w, effect, &now_str));
                    info!(node = name, taint = w, effect, "tainting node");
                }
            }
        }
        let old_taints: Vec<serde_json::Value> =
            taints.iter().map(|t| serde_json::to_value(t).unwrap_or_default()).collect();
        if new_taints != old_taints {
            nodes.patch(&name, &PatchParams::default(), &Patch::Merge(json!({"spec": {"taints": new_taints}}))).await?;
        }
        if stale && ready != Some("Unknown") {
            let cond = json!({"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown",
                "message": "Kubelet stopped posting node status.", "lastHeartbeatTime": ready_condition(&node).and_then(|c| c.last_heartbeat_time.clone()),
                "lastTransitionTime": now_str});
            let mut conds: Vec<serde_json::Value> = node
                .status
                .as_ref()
                .and_then(|s| s.conditions.clone())
                .unwrap_or_default()
                .into_iter()
                .filter(|c| c.type_ != "Ready")
                .map(|c| serde_json::to_value(c).unwrap_or_default())
                .collect();
            conds.push(cond);
            nodes
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({"status": {"conditions": conds}})))
                .await?;
            info!(node = name, "node stopped posting status: Ready=Unknown");
        }
        let effective: Vec<Taint> = serde_json::from_value(serde_json::Value::Array(new_taints)).unwrap_or_default();
        if effective.iter().any(|t| t.effect == "NoExecute") {
            tainted.insert(name, effective);
        }
    }
    if tainted.is_empty() {
        return Ok(());
    }
    let pods: Api<Pod> = Api::all(client.clone());
    let mut evicted = 0;
    for pod in pods.list(&ListParams::default()).await?.items {
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else { continue };
        let Some(taints) = tainted.get(&node) else { continue };
        if pod.metadata.deletion_timestamp.is_some() || evicted >= cfg.evictions_per_pass {
            continue;
        }
        if eviction_time(&pod, taints).is_some_and(|at| at <= now_s) {
            let ns = pod.namespace().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
            info!(namespace = ns, pod = pod.name_any(), node, "evicting pod from a tainted node");
            match api.delete(&pod.name_any(), &DeleteParams::default()).await {
                Ok(_) => evicted += 1,
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => warn!(error = %e, "eviction failed"),
            }
        }
    }
    Ok(())
}

/// Runs passes until `shutdown`.
pub async fn run(client: Client, cfg: Config, shutdown: CancellationToken) -> Result<(), Error> {
    loop {
        if let Err(e) = pass(&client, &cfg).await {
            warn!(error = %e, "node lifecycle pass failed");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(cfg.period) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str, added: i64) -> Taint {
        Taint {
            key: key.into(),
            effect: "NoExecute".into(),
            time_added: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                Timestamp::from_second(added).unwrap(),
            )),
            value: None,
        }
    }

    fn pod(tolerations: serde_json::Value) -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": "p"}, "spec": {"containers": [], "tolerations": tolerations}}),
        )
        .unwrap()
    }

    #[test]
    fn eviction_times_follow_tolerations() {
        let t = [taint(UNREACHABLE, 1000)];
        assert_eq!(eviction_time(&pod(json!([])), &t), Some(0));
        assert_eq!(
            eviction_time(
                &pod(
                    json!([{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}])
                ),
                &t
            ),
            Some(1300)
        );
        assert_eq!(
            eviction_time(&pod(json!([{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}])), &t),
            None
        );
        assert_eq!(eviction_time(&pod(json!([{"operator": "Exists"}])), &t), None, "tolerate everything");
        assert_eq!(
            eviction_time(&pod(json!([{"key": NOT_READY, "operator": "Exists"}])), &t),
            Some(0),
            "a toleration of another taint"
        );
    }

    #[test]
    fn toleration_matching() {
        let t = Taint { key: "k".into(), value: Some("v".into()), effect: "NoSchedule".into(), time_added: None };
        let tol = |v: serde_json::Value| -> Toleration { serde_json::from_value(v).unwrap() };
        assert!(tolerates(&tol(json!({"key": "k", "value": "v"})), &t));
        assert!(!tolerates(&tol(json!({"key": "k", "value": "w"})), &t));
        assert!(tolerates(&tol(json!({"key": "k", "operator": "Exists"})), &t));
        assert!(!tolerates(&tol(json!({"key": "k", "operator": "Exists", "effect": "NoExecute"})), &t));
    }
}
