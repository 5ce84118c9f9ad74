//! The ReplicaSet controller: keeps `spec.replicas` pods matching the selector, as
//! upstream's replicaset controller does.
//!
//! Each reconcile reads the ReplicaSet's pods with a consistent LIST (label-selected), so
//! pods it created a moment ago are always counted: that takes the place of upstream's
//! "expectations" and makes a burst of events unable to over-create. kube-runtime runs at
//! most one reconcile per ReplicaSet at a time.
//!
//! - Orphans that match the selector are adopted (a controller ownerReference is added);
//!   owned pods that stop matching are released (the reference is removed).
//! - Missing pods are created in slow-start batches (1, 2, 4, ... as upstream), the creates
//!   of a batch in parallel, stopping after a batch that had a failure.
//! - Surplus pods are deleted (in parallel) least valuable first: unscheduled, then
//!   pending, then not ready, then the most recently created (upstream's ActivePods
//!   ranking, simplified).
//! - `status` (replicas, fullyLabeledReplicas, readyReplicas, availableReplicas,
//!   observedGeneration) is written through the status subresource.

use std::cmp::Reverse;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use skiff_api::selector::LabelSelector;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::Error;

/// Upstream creates at most this many pods per batch.
const MAX_BATCH: usize = 500;
/// Creates in flight at once within a batch (the apiserver's mutating limit is 200, and a
/// few dozen already saturate two cores).
const CREATE_CONCURRENCY: usize = 32;

struct Ctx {
    client: Client,
}

fn is_active(p: &Pod) -> bool {
    let phase = p.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("");
    p.metadata.deletion_timestamp.is_none() && phase != "Succeeded" && phase != "Failed"
}

fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Ready for at least `min_ready` seconds.
fn is_available(p: &Pod, min_ready: i64, now: i64) -> bool {
    if !is_ready(p) {
        return false;
    }
    if min_ready <= 0 {
        return true;
    }
    let since = p
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0.as_second());
    since.is_some_and(|t| now - t >= min_ready)
}

fn controller_uid(p: &Pod) -> Option<&str> {
    p.metadata.owner_references.as_ref()?.iter().find(|r| r.controller == Some(true)).map(|r| r.uid.as_str())
}

/// The order in which surplus pods go: least valuable first.
fn deletion_rank(p: &Pod) -> (bool, u8, bool, Reverse<Option<i64>>) {
    let scheduled = p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some_and(|n| !n.is_empty());
    let phase = match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") | None => 0,
        Some("Unknown") => 1,
        _ => 2,
    };
    (scheduled, phase, is_ready(p), Reverse(p.metadata.creation_timestamp.as_ref().map(|t| t.0.as_second())))
}

/// Removes the pods beyond `want` from `active` (the ReplicaSet's live pods), least valuable
/// first, and returns them: the pods a scale-down deletes.
fn take_surplus(active: &mut Vec<Pod>, want: usize) -> Vec<Pod> {
    active.sort_by_key(deletion_rank);
    let n = active.len().saturating_sub(want);
    active.drain(..n).collect()
}

fn owner_ref(rs: &ReplicaSet) -> Option<OwnerReference> {
    let mut r = rs.controller_owner_ref(&())?;
    r.block_owner_deletion = Some(true);
    Some(r)
}

async fn reconcile(rs: Arc<ReplicaSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if rs.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let (Some(ns), Some(name), Some(uid)) = (rs.namespace(), rs.metadata.name.clone(), rs.metadata.uid.clone()) else {
        return Ok(Action::await_change());
    };
    let spec = rs.spec.clone().unwrap_or_default();
    let selector = match LabelSelector::from_meta(&spec.selector) {
        Ok(s) if !s.is_empty() => s,
        _ => {
            warn!(namespace = ns, name, "ReplicaSet has an invalid or empty selector; doing nothing");
            return Ok(Action::await_change());
        }
    };
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let rs_api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);
    let oref = owner_ref(&rs).expect("a stored ReplicaSet has a name and uid");
    let params = PatchParams::default();

    // Release owned pods that no longer match; adopt matching orphans.
    let owned_all = pods_api.list(&ListParams::default()).await?;
    for p in owned_all.items.iter().filter(|p| controller_uid(p) == Some(uid.as_str()) && !selector.matches(p.labels()))
    {
        let refs: Vec<_> = p.owner_references().iter().filter(|r| r.uid != uid).cloned().collect();
        let patch = json!({"metadata": {"ownerReferences": refs, "resourceVersion": p.resource_version()}});
        pods_api.patch(&p.name_any(), &params, &Patch::Merge(patch)).await?;
        info!(namespace = ns, replicaset = name, pod = p.name_any(), "released pod that stopped matching");
    }
    let selected = pods_api.list(&ListParams::default().labels(&selector.to_string())).await?;
    let mut mine: Vec<Pod> = Vec::new();
    for p in selected.items.into_iter().filter(is_active) {
        match controller_uid(&p) {
            Some(u) if u == uid => mine.push(p),
            Some(_) => {} // controlled by someone else
            None => {
                let mut refs = p.owner_references().to_vec();
                refs.push(oref.clone());
                let patch = json!({"metadata": {"ownerReferences": refs, "resourceVersion": p.resource_version()}});
                match pods_api.patch(&p.name_any(), &params, &Patch::Merge(patch)).await {
                    Ok(adopted) => {
                        info!(namespace = ns, replicaset = name, pod = p.name_any(), "adopted orphan pod");
                        mine.push(adopted);
                    }
                    Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }

    let want = spec.replicas.unwrap_or(1).max(0) as usize;
    let mut create_error = None;
    if mine.len() < want {
        let pod = crate::pod_from_template(&spec.template.clone().unwrap_or_default(), &name, oref.clone());
        let post = PostParams { field_manager: Some("skiff-replicaset-controller".into()), ..Default::default() };
        let mut missing = want - mine.len();
        info!(namespace = ns, replicaset = name, have = mine.len(), want, "too few replicas: creating {missing}");
        let mut batch = 1usize;
        // Slow start, as upstream: batches of 1, 2, 4, ... pods, each batch's creates in
        // parallel (at most CREATE_CONCURRENCY in flight), stopping after a batch with a
        // failure so a broken template costs one error, not a thousand.
        while missing > 0 && create_error.is_none() {
            let n = batch.min(missing).min(MAX_BATCH);
            let results: Vec<kube::Result<Pod>> = futures::stream::iter((0..n).map(|_| pods_api.create(&post, &pod)))
                .buffer_unordered(CREATE_CONCURRENCY)
                .collect()
                .await;
            for r in results {
                match r {
                    Ok(p) => mine.push(p),
                    Err(e) => {
                        warn!(namespace = ns, replicaset = name, error = %e, "creating a pod failed; stopping after this batch");
                        create_error = Some(e);
                    }
                }
            }
            missing -= n;
            batch *= 2;
        }
        info!(namespace = ns, replicaset = name, have = mine.len(), want, "scaled up");
    } else if mine.len() > want {
        let surplus = take_surplus(&mut mine, want);
        // In parallel, as upstream; the first failure is reported after all were tried.
        let targets: Vec<(String, Option<String>)> =
            surplus.iter().map(|p| (p.name_any(), p.metadata.uid.clone())).collect();
        let api = &pods_api;
        let results: Vec<kube::Result<()>> = futures::stream::iter(
            targets.into_iter().map(|(n, uid)| async move { crate::delete_if_present(api, &n, uid.as_deref()).await }),
        )
        .buffer_unordered(CREATE_CONCURRENCY)
        .collect()
        .await;
        results.into_iter().collect::<kube::Result<Vec<()>>>()?;
        info!(namespace = ns, replicaset = name, deleted = surplus.len(), want, "scaled down");
    }

    // Status.
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    let min_ready = i64::from(spec.min_ready_seconds.unwrap_or(0));
    let template_labels =
        spec.template.as_ref().and_then(|t| t.metadata.as_ref()).and_then(|m| m.labels.clone()).unwrap_or_default();
    let fully_labeled =
        mine.iter().filter(|p| template_labels.iter().all(|(k, v)| p.labels().get(k) == Some(v))).count();
    let ready = mine.iter().filter(|p| is_ready(p)).count();
    let available = mine.iter().filter(|p| is_available(p, min_ready, now)).count();
    let status = json!({"status": {
        "replicas": mine.len(),
        "fullyLabeledReplicas": fully_labeled,
        "readyReplicas": ready,
        "availableReplicas": available,
        "observedGeneration": rs.metadata.generation,
    }});
    let current = rs.status.clone().unwrap_or_default();
    let changed = current.replicas as usize != mine.len()
        || current.fully_labeled_replicas.unwrap_or(0) as usize != fully_labeled
        || current.ready_replicas.unwrap_or(0) as usize != ready
        || current.available_replicas.unwrap_or(0) as usize != available
        || current.observed_generation != rs.metadata.generation;
    if changed {
        rs_api.patch_status(&name, &params, &Patch::Merge(status)).await?;
    }
    if let Some(e) = create_error {
        return Err(e.into());
    }
    if ready > available {
        // Pods become available after minReadySeconds without any event: look again then.
        return Ok(Action::requeue(Duration::from_secs(min_ready.max(1) as u64)));
    }
    Ok(Action::await_change())
}

fn error_policy(_rs: Arc<ReplicaSet>, error: &Error, _ctx: Arc<Ctx>) -> Action {
    warn!(%error, "replicaset reconcile failed; retrying");
    Action::requeue(Duration::from_secs(1))
}

/// Runs the controller until `shutdown`.
pub async fn run(client: Client, shutdown: CancellationToken) -> Result<(), Error> {
    let rss: Api<ReplicaSet> = Api::all(client.clone());
    let pods: Api<Pod> = Api::all(client.clone());
    let controller = Controller::new(rss, watcher::Config::default()).owns(pods, watcher::Config::default());
    crate::drive(controller, reconcile, error_policy, Arc::new(Ctx { client }), shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(node: Option<&str>, phase: &str, ready: bool, created_secs: i64) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": format!("p{created_secs}"), "creationTimestamp": k8s_openapi::jiff::Timestamp::from_second(created_secs).unwrap().to_string()},
            "spec": {"containers": [], "nodeName": node},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
        }))
        .unwrap()
    }

    #[test]
    fn least_valuable_pods_go_first() {
        let mut pods = [
            pod(Some("n1"), "Running", true, 100),
            pod(None, "Pending", false, 50),
            pod(Some("n1"), "Pending", false, 60),
            pod(Some("n1"), "Running", false, 70),
            pod(Some("n1"), "Running", true, 200),
        ];
        pods.sort_by_key(deletion_rank);
        let order: Vec<String> = pods.iter().map(|p| p.name_any()).collect();
        // unscheduled, pending, not ready, then the newest of the ready ones
        assert_eq!(order, ["p50", "p60", "p70", "p200", "p100"]);
    }

    #[test]
    fn scaled_down_while_its_pods_are_still_being_created() {
        // 3 ready pods, 2 created a moment ago (not scheduled yet), 1 already terminating;
        // the ReplicaSet is scaled from 5 to 2.
        let mut terminating = pod(Some("n1"), "Running", true, 90);
        terminating.metadata.deletion_timestamp = terminating.metadata.creation_timestamp.clone();
        let listed = vec![
            pod(Some("n1"), "Running", true, 100),
            pod(Some("n1"), "Running", true, 110),
            pod(Some("n1"), "Running", true, 120),
            pod(None, "Pending", false, 200),
            pod(None, "Pending", false, 201),
            terminating,
        ];
        let mut active: Vec<Pod> = listed.into_iter().filter(is_active).collect();
        assert_eq!(active.len(), 5, "a terminating pod no longer counts");
        let gone: Vec<String> = take_surplus(&mut active, 2).iter().map(|p| p.name_any()).collect();
        assert_eq!(
            gone,
            ["p201", "p200", "p120"],
            "the fresh unscheduled pods first (newest first), then the newest ready one"
        );
        let kept: Vec<String> = active.iter().map(|p| p.name_any()).collect();
        assert_eq!(kept, ["p110", "p100"]);
        assert!(take_surplus(&mut active, 2).is_empty(), "at the target: nothing more");
    }

    #[test]
    fn availability_honours_min_ready_seconds() {
        let now = 1_000_000;
        let mut p = pod(Some("n"), "Running", true, 0);
        p.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].last_transition_time =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::from_second(now - 5).unwrap(),
            ));
        assert!(is_available(&p, 0, now));
        assert!(is_available(&p, 5, now));
        assert!(!is_available(&p, 10, now));
        assert!(!is_available(&pod(Some("n"), "Running", false, 0), 0, now));
    }
}
