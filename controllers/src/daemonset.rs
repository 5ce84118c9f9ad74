//! The DaemonSet controller: one pod per eligible node, as upstream's.
//!
//! A node is eligible when the template's `nodeSelector` matches its labels and the pod
//! (with the tolerations upstream adds to every DaemonSet pod) tolerates its NoSchedule and
//! NoExecute taints. Pods are pinned to their node with required node affinity on
//! `metadata.name` (the scheduler binds them, as upstream since 1.12). Pods on nodes that are
//! gone or no longer eligible are deleted, as are duplicates.
//!
//! Rolling update: pods carry `controller-revision-hash` (a hash of the template); outdated
//! ones are replaced while no more than `maxUnavailable` (default 1) pods are unavailable.
//! Upstream keeps ControllerRevision objects for history; Skiff does not serve that resource yet.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use skiff_api::selector::LabelSelector;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::nodelifecycle::tolerates;
use crate::Error;

pub const REVISION_LABEL: &str = "controller-revision-hash";

struct Ctx {
    client: Client,
}

/// The tolerations upstream adds to every DaemonSet pod.
pub fn daemon_tolerations(host_network: bool) -> Vec<Toleration> {
    let t = |key: &str, effect: &str| Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Default::default()
    };
    let mut v = vec![
        t("node.kubernetes.io/not-ready", "NoExecute"),
        t("node.kubernetes.io/unreachable", "NoExecute"),
        t("node.kubernetes.io/disk-pressure", "NoSchedule"),
        t("node.kubernetes.io/memory-pressure", "NoSchedule"),
        t("node.kubernetes.io/pid-pressure", "NoSchedule"),
        t("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if host_network {
        v.push(t("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    v
}

/// Whether a DaemonSet pod with these tolerations and node selector belongs on `node`.
pub fn eligible(node: &Node, node_selector: &BTreeMap<String, String>, tolerations: &[Toleration]) -> bool {
    let labels = node.labels();
    if !node_selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
        return false;
    }
    let taints: Vec<Taint> = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
    taints
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .all(|t| tolerations.iter().any(|tol| tolerates(tol, t)))
}

/// The node a DaemonSet pod is pinned to (affinity on metadata.name, or spec.nodeName).
fn pinned_node(p: &Pod) -> Option<String> {
    let spec = p.spec.as_ref()?;
    if let Some(n) = spec.node_name.clone().filter(|n| !n.is_empty()) {
        return Some(n);
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|f| f.key == "metadata.name")
        .and_then(|f| f.values.as_ref()?.first().cloned())
}

fn is_available(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

async fn reconcile(ds: Arc<DaemonSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if ds.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let (Some(ns), Some(name), Some(uid)) = (ds.namespace(), ds.metadata.name.clone(), ds.metadata.uid.clone()) else {
        return Ok(Action::await_change());
    };
    let spec = ds.spec.clone().unwrap_or_default();
    let Some(selector) = LabelSelector::from_meta(&spec.selector).ok().filter(|s| !s.is_empty()) else {
        return Ok(Action::await_change());
    };
    let template = spec.template.clone();
    let pod_spec = template.spec.clone().unwrap_or_default();
    let host_network = pod_spec.host_network.unwrap_or(false);
    let mut tolerations = pod_spec.tolerations.clone().unwrap_or_default();
    for t in daemon_tolerations(host_network) {
        if !tolerations.iter().any(|x| x.key == t.key && x.effect == t.effect) {
            tolerations.push(t);
        }
    }
    let node_selector = pod_spec.node_selector.clone().unwrap_or_default();
    let hash = crate::deployment::template_hash(&template);

    let nodes: Vec<Node> = Api::<Node>::all(ctx.client.clone()).list(&ListParams::default()).await?.items;
    let eligible_nodes: Vec<String> =
        nodes.iter().filter(|n| eligible(n, &node_selector, &tolerations)).map(|n| n.name_any()).collect();
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let pods: Vec<Pod> = pods_api
        .list(&ListParams::default().labels(&selector.to_string()))
        .await?
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.owner_references().iter().any(|r| r.uid == uid && r.controller == Some(true)))
        .collect();
    let mut by_node: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
    let mut misscheduled = 0;
    let mut to_delete: Vec<&Pod> = Vec::new();
    for p in &pods {
        match pinned_node(p) {
            Some(n) if eligible_nodes.contains(&n) => by_node.entry(n).or_default().push(p),
            _ => {
                misscheduled += 1;
                to_delete.push(p);
            }
        }
    }
    for list in by_node.values_mut() {
        // Keep the oldest pod per node; duplicates go.
        list.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0.as_second()));
        to_delete.extend(list.drain(1..));
    }
    // Rolling update: replace outdated pods while unavailability allows.
    let max_unavailable = match spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref())
        .and_then(|r| r.max_unavailable.clone())
    {
        Some(IntOrString::Int(n)) => n.max(1) as usize,
        Some(IntOrString::String(p)) => {
            ((p.trim_end_matches('%').parse::<f64>().unwrap_or(0.0) * eligible_nodes.len() as f64 / 100.0).floor()
                as usize)
                .max(1)
        }
        None => 1,
    };
    let on_delete = spec.update_strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("OnDelete");
    let mut unavailable = eligible_nodes
        .iter()
        .filter(|n| by_node.get(*n).and_then(|l| l.first()).is_none_or(|p| !is_available(p)))
        .count();
    if !on_delete {
        for list in by_node.values() {
            let Some(p) = list.first() else { continue };
            if p.labels().get(REVISION_LABEL) != Some(&hash) {
                if !is_available(p) {
                    // Already unavailable: replacing it costs nothing.
                    to_delete.push(p);
                } else if unavailable < max_unavailable {
                    unavailable += 1;
                    to_delete.push(p);
                }
            }
        }
    }
    for p in &to_delete {
        crate::delete_if_present(&pods_api, &p.name_any(), p.metadata.uid.as_deref()).await?;
    }
    let deleted: Vec<String> = to_delete.iter().map(|p| p.name_any()).collect();
    let mut oref = ds.controller_owner_ref(&()).expect("a stored DaemonSet has a name and uid");
    oref.block_owner_deletion = Some(true);
    let mut created = 0;
    for node in &eligible_nodes {
        let has = by_node.get(node).is_some_and(|l| l.iter().any(|p| !deleted.contains(&p.name_any())));
        if has {
            continue;
        }
        let mut labels = template.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
        labels.insert(REVISION_LABEL.into(), hash.clone());
        let mut pspec = pod_spec.clone();
        pspec.tolerations = Some(tolerations.clone());
        let affinity = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]}}});
        pspec.affinity = serde_json::from_value(affinity).ok();
        let mut pod = crate::pod_from_template(&template, &name, oref.clone());
        pod.metadata.labels = Some(labels);
        pod.spec = Some(pspec);
        pods_api
            .create(
                &PostParams { field_manager: Some("skiff-daemonset-controller".into()), ..Default::default() },
                &pod,
            )
            .await?;
        created += 1;
    }
    if created > 0 || !to_delete.is_empty() {
        info!(
            namespace = ns,
            daemonset = name,
            created,
            deleted = to_delete.len(),
            nodes = eligible_nodes.len(),
            "synced daemon pods"
        );
    }
    let current: Vec<&Pod> =
        by_node.values().filter_map(|l| l.first().copied()).filter(|p| !deleted.contains(&p.name_any())).collect();
    let status = json!({"status": {
        "desiredNumberScheduled": eligible_nodes.len(),
        "currentNumberScheduled": current.len() + created,
        "numberMisscheduled": misscheduled,
        "numberReady": current.iter().filter(|p| is_available(p)).count(),
        "numberAvailable": current.iter().filter(|p| is_available(p)).count(),
        "numberUnavailable": eligible_nodes.len().saturating_sub(current.iter().filter(|p| is_available(p)).count()),
        "updatedNumberScheduled": current.iter().filter(|p| p.labels().get(REVISION_LABEL) == Some(&hash)).count() + created,
        "observedGeneration": ds.metadata.generation,
    }});
    let old = serde_json::to_value(ds.status.clone().unwrap_or_default()).unwrap_or_default();
    if status["status"].as_object().is_some_and(|m| m.iter().any(|(k, v)| old.get(k).unwrap_or(&json!(0)) != v)) {
        Api::<DaemonSet>::namespaced(ctx.client.clone(), &ns)
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
            .await?;
    }
    Ok(Action::await_change())
}

fn error_policy(_ds: Arc<DaemonSet>, error: &Error, _ctx: Arc<Ctx>) -> Action {
    warn!(%error, "daemonset reconcile failed; retrying");
    Action::requeue(Duration::from_secs(1))
}

/// Runs the controller until `shutdown`.
pub async fn run(client: Client, shutdown: CancellationToken) -> Result<(), Error> {
    let dss: Api<DaemonSet> = Api::all(client.clone());
    let controller = Controller::new(dss, watcher::Config::default());
    let store = controller.store();
    let controller = controller
        .owns(Api::<Pod>::all(client.clone()), watcher::Config::default())
        // Any node change may change where every DaemonSet belongs.
        .watches(Api::<Node>::all(client.clone()), watcher::Config::default(), move |_node| {
            store.state().into_iter().map(|d| ObjectRef::from_obj(&*d)).collect::<Vec<_>>()
        });
    crate::drive(controller, reconcile, error_policy, Arc::new(Ctx { client }), shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(labels: serde_json::Value, taints: serde_json::Value) -> Node {
        serde_json::from_value(json!({"metadata": {"name": "n", "labels": labels}, "spec": {"taints": taints}}))
            .unwrap()
    }

    #[test]
    fn eligibility_follows_selector_and_taints() {
        let sel: BTreeMap<String, String> = [("disk".to_string(), "ssd".to_string())].into();
        let tol = daemon_tolerations(false);
        assert!(eligible(&node(json!({"disk": "ssd"}), json!([])), &sel, &tol));
        assert!(!eligible(&node(json!({"disk": "hdd"}), json!([])), &sel, &tol));
        // cordoned and not-ready nodes still get daemons (the default tolerations)
        assert!(eligible(
            &node(json!({}), json!([{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}])),
            &BTreeMap::new(),
            &tol
        ));
        assert!(!eligible(
            &node(json!({}), json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}])),
            &BTreeMap::new(),
            &tol
        ));
        assert!(eligible(
            &node(json!({}), json!([{"key": "dedicated", "effect": "PreferNoSchedule"}])),
            &BTreeMap::new(),
            &tol
        ));
    }
}
