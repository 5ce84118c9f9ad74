//! The Deployment controller: rolls a Deployment's pod template out through ReplicaSets, as
//! upstream's deployment controller does (the ReplicaSet controller then makes the pods).
//!
//! - Each template gets its own ReplicaSet named `<deployment>-<pod-template-hash>`, with the
//!   hash in its labels and selector and the `deployment.kubernetes.io/revision` annotation
//!   (one more than the highest so far), so `kubectl rollout history/undo` work.
//! - `RollingUpdate`: the new ReplicaSet grows while the total stays within
//!   `replicas + maxSurge`, old ones shrink while the available pods stay at or above
//!   `replicas - maxUnavailable` (percentages: surge rounds up, unavailable rounds down).
//! - `Recreate`: old ReplicaSets go to zero first; the new one grows once their pods are gone.
//! - `paused` stops scaling; `revisionHistoryLimit` old, empty ReplicaSets are kept.
//! - `status`: replicas, updated, ready, available, unavailable, observedGeneration, and the
//!   `Available` and `Progressing` conditions; `progressDeadlineSeconds` without progress
//!   sets `Progressing=False` (`ProgressDeadlineExceeded`), as upstream.
//! - Beyond upstream, opt-in with the annotation `deployment.skiff.dev/auto-rollback: "true"`:
//!   a rollout past its deadline goes back to the previous revision's template, with a
//!   `RolledBack` condition and a Warning Event (as ECS's circuit breaker and Nomad's
//!   `auto_revert` do).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::Error;

pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const HASH_LABEL: &str = "pod-template-hash";
/// Opt-in automatic rollback when a rollout exceeds `progressDeadlineSeconds` (not upstream).
pub const AUTO_ROLLBACK: &str = "deployment.skiff.dev/auto-rollback";
/// The condition recording an automatic rollback (not upstream).
pub const ROLLED_BACK: &str = "RolledBack";

struct Ctx {
    client: Client,
}

/// A short, stable hash of a pod template (upstream uses FNV of the printed template; any
/// stable hash works as long as it is the same for the same template).
pub fn template_hash(t: &PodTemplateSpec) -> String {
    let mut t = t.clone();
    if let Some(l) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        l.remove(HASH_LABEL);
    }
    let text = serde_json::to_string(&t).unwrap_or_default();
    // FNV-1a 64: stable across Rust releases (std's DefaultHasher is not), so a template
    // keeps its ReplicaSet after an upgrade.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    // Upstream's alphabet for safe names (no vowels).
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut n = h;
    (0..10)
        .map(|_| {
            let c = ALPHABET[(n % ALPHABET.len() as u64) as usize] as char;
            n /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

/// Resolves maxSurge / maxUnavailable against `replicas` as upstream does.
pub fn surge_and_unavailable(
    surge: Option<&IntOrString>,
    unavailable: Option<&IntOrString>,
    replicas: i32,
) -> (i32, i32) {
    let resolve = |v: Option<&IntOrString>, round_up: bool| -> i32 {
        let pct = match v {
            Some(IntOrString::Int(i)) => return *i,
            Some(IntOrString::String(s)) => s.trim_end_matches('%').parse::<f64>().unwrap_or(25.0),
            None => 25.0, // the default of both is 25%
        };
        let x = pct * f64::from(replicas) / 100.0;
        if round_up {
            x.ceil() as i32
        } else {
            x.floor() as i32
        }
    };
    let surge = resolve(surge, true);
    let mut unavailable = resolve(unavailable, false);
    if surge == 0 && unavailable == 0 {
        unavailable = 1; // upstream: both zero would stall, so one may be unavailable
    }
    (surge, unavailable)
}

/// A ReplicaSet as a rolling update sees it: desired replicas and available pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scale {
    pub replicas: i32,
    pub available: i32,
}

/// What one rolling-update pass does: the new ReplicaSet's target and each old one's
/// (old ones in the order given: oldest first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub new: i32,
    pub old: Vec<i32>,
}

/// One pass of upstream's `rolloutRolling`, pure. First the new ReplicaSet grows within
/// `replicas + surge` (a pass that grows it does nothing else); otherwise old ReplicaSets
/// shrink: their *unavailable* pods first (removing them costs no availability), oldest
/// set first, then available pods while the available total stays at least
/// `replicas - unavailable`. Several old ReplicaSets (a rollout replaced before it
/// finished) are handled alike: the abandoned middle revision's pods go first when they
/// are not available.
pub fn rolling_step(replicas: i32, surge: i32, unavailable: i32, new: Scale, old: &[Scale]) -> Step {
    let mut step = Step { new: new.replicas, old: old.iter().map(|s| s.replicas).collect() };
    let all: i32 = new.replicas + old.iter().map(|s| s.replicas).sum::<i32>();
    // reconcileNewReplicaSet
    if new.replicas > replicas {
        step.new = replicas;
    } else if new.replicas < replicas {
        let room = (replicas + surge - all).max(0);
        let grow = room.min(replicas - new.replicas);
        if grow > 0 {
            step.new = new.replicas + grow;
            return step; // scaled up: the old ones wait for the next pass
        }
    }
    // reconcileOldReplicaSets
    if old.iter().all(|s| s.replicas == 0) {
        return step;
    }
    let min_available = replicas - unavailable;
    let new_unavailable = (step.new - new.available).max(0);
    let max_scaled_down = all - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return step;
    }
    // cleanupUnhealthyReplicas
    let mut cleaned = 0;
    for (target, s) in step.old.iter_mut().zip(old) {
        if cleaned >= max_scaled_down {
            break;
        }
        let unhealthy = (s.replicas - s.available).max(0);
        let n = unhealthy.min(max_scaled_down - cleaned);
        *target -= n;
        cleaned += n;
    }
    // scaleDownOldReplicaSetsForRollingUpdate
    let available: i32 = new.available + old.iter().map(|s| s.available).sum::<i32>();
    let can_remove = available - min_available;
    let mut removed = 0;
    for target in step.old.iter_mut() {
        if removed >= can_remove {
            break;
        }
        let n = (*target).min(can_remove - removed);
        *target -= n;
        removed += n;
    }
    step
}

fn replicas_of(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

fn available_of(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0)
}

fn revision_of(rs: &ReplicaSet) -> i64 {
    rs.annotations().get(REVISION).and_then(|r| r.parse().ok()).unwrap_or(0)
}

async fn scale(api: &Api<ReplicaSet>, rs: &ReplicaSet, to: i32, deploy_replicas: i32) -> Result<(), Error> {
    if replicas_of(rs) == to {
        return Ok(());
    }
    let patch = json!({"metadata": {"annotations": {"deployment.kubernetes.io/desired-replicas": deploy_replicas.to_string()}},
                       "spec": {"replicas": to}});
    api.patch(&rs.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await?;
    info!(replicaset = rs.name_any(), from = replicas_of(rs), to, "scaled replicaset");
    Ok(())
}

async fn reconcile(d: Arc<Deployment>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if d.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let (Some(ns), Some(name), Some(uid)) = (d.namespace(), d.metadata.name.clone(), d.metadata.uid.clone()) else {
        return Ok(Action::await_change());
    };
    let spec = d.spec.clone().unwrap_or_default();
    let replicas = spec.replicas.unwrap_or(1);
    let rs_api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);
    let mut owned: Vec<ReplicaSet> = rs_api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|rs| rs.owner_references().iter().any(|r| r.uid == uid && r.controller == Some(true)))
        .collect();

    // The ReplicaSet of the current template, created if missing.
    let hash = template_hash(&spec.template);
    let new_name = format!("{name}-{hash}");
    let max_revision = owned.iter().map(revision_of).max().unwrap_or(0);
    let new_idx = match owned.iter().position(|rs| rs.name_any() == new_name) {
        Some(i) => {
            // A rollback to an older template: it becomes the newest revision again.
            if revision_of(&owned[i]) < max_revision {
                let patch = json!({"metadata": {"annotations": {REVISION: (max_revision + 1).to_string()}}});
                owned[i] = rs_api.patch(&new_name, &PatchParams::default(), &Patch::Merge(patch)).await?;
            }
            i
        }
        None => {
            let mut template = spec.template.clone();
            let meta = template.metadata.get_or_insert_with(Default::default);
            meta.labels.get_or_insert_with(BTreeMap::new).insert(HASH_LABEL.into(), hash.clone());
            let mut selector = spec.selector.clone();
            selector.match_labels.get_or_insert_with(BTreeMap::new).insert(HASH_LABEL.into(), hash.clone());
            let mut labels = meta.labels.clone().unwrap_or_default();
            labels.insert(HASH_LABEL.into(), hash.clone());
            let mut oref = d.controller_owner_ref(&()).expect("a stored Deployment has a name and uid");
            oref.block_owner_deletion = Some(true);
            let first_size = if matches!(spec.strategy.as_ref().and_then(|s| s.type_.as_deref()), Some("Recreate"))
                || owned.is_empty()
            {
                if owned.is_empty() {
                    replicas
                } else {
                    0
                }
            } else {
                0
            };
            let rs = ReplicaSet {
                metadata: kube::api::ObjectMeta {
                    name: Some(new_name.clone()),
                    namespace: Some(ns.clone()),
                    labels: Some(labels),
                    annotations: Some(BTreeMap::from([
                        (REVISION.to_string(), (max_revision + 1).to_string()),
                        ("deployment.kubernetes.io/desired-replicas".to_string(), replicas.to_string()),
                    ])),
                    owner_references: Some(vec![oref]),
                    ..Default::default()
                },
                spec: Some(k8s_openapi::api::apps::v1::ReplicaSetSpec {
                    replicas: Some(if spec.paused == Some(true) { 0 } else { first_size }),
                    min_ready_seconds: spec.min_ready_seconds,
                    selector,
                    template: Some(template),
                }),
                status: None,
            };
            let created = match rs_api.create(&PostParams::default(), &rs).await {
                Ok(rs) => rs,
                Err(kube::Error::Api(s)) if s.code == 409 => rs_api.get(&new_name).await?,
                Err(e) => return Err(e.into()),
            };
            info!(namespace = ns, deployment = name, replicaset = new_name, "created replicaset for the new template");
            owned.push(created);
            owned.len() - 1
        }
    };
    let new_rs = owned[new_idx].clone();
    // The Deployment carries its current revision, as upstream (`kubectl rollout history`
    // and `undo` read the ReplicaSets' copies; tools read this one).
    let revision = revision_of(&new_rs).to_string();
    if d.annotations().get(REVISION) != Some(&revision) {
        let patch = json!({"metadata": {"annotations": {REVISION: revision}}});
        let deploys: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
        deploys.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await?;
        // The write wakes this controller again with the fresh object; going on with the
        // stale one here could overwrite newer status conditions.
        return Ok(Action::await_change());
    }
    let old: Vec<ReplicaSet> =
        owned.iter().enumerate().filter(|(i, _)| *i != new_idx).map(|(_, rs)| rs.clone()).collect();

    if spec.paused != Some(true) {
        let recreate = matches!(spec.strategy.as_ref().and_then(|s| s.type_.as_deref()), Some("Recreate"));
        if recreate {
            for rs in &old {
                scale(&rs_api, rs, 0, replicas).await?;
            }
            let old_pods: i32 = old.iter().map(|rs| rs.status.as_ref().map(|s| s.replicas).unwrap_or(0)).sum();
            if old_pods == 0 {
                scale(&rs_api, &new_rs, replicas, replicas).await?;
            }
        } else {
            let ru = spec.strategy.as_ref().and_then(|s| s.rolling_update.as_ref());
            let (surge, unavailable) = surge_and_unavailable(
                ru.and_then(|r| r.max_surge.as_ref()),
                ru.and_then(|r| r.max_unavailable.as_ref()),
                replicas,
            );
            // Old sets oldest first, as upstream orders them (by creation).
            let mut old_sorted = old.clone();
            old_sorted.sort_by_key(|rs| (rs.metadata.creation_timestamp.as_ref().map(|t| t.0), rs.name_any()));
            let scale_of = |rs: &ReplicaSet| Scale { replicas: replicas_of(rs), available: available_of(rs) };
            let old_scales: Vec<Scale> = old_sorted.iter().map(scale_of).collect();
            let step = rolling_step(replicas, surge, unavailable, scale_of(&new_rs), &old_scales);
            scale(&rs_api, &new_rs, step.new, replicas).await?;
            for (rs, target) in old_sorted.iter().zip(step.old) {
                scale(&rs_api, rs, target, replicas).await?;
            }
        }
        // Keep revisionHistoryLimit empty old ReplicaSets, oldest removed first.
        let limit = spec.revision_history_limit.unwrap_or(10).max(0) as usize;
        let mut empty: Vec<&ReplicaSet> = old
            .iter()
            .filter(|rs| replicas_of(rs) == 0 && rs.status.as_ref().map(|s| s.replicas).unwrap_or(0) == 0)
            .collect();
        if empty.len() > limit {
            empty.sort_by_key(|rs| revision_of(rs));
            for rs in &empty[..empty.len() - limit] {
                crate::delete_if_present(&rs_api, &rs.name_any(), rs.metadata.uid.as_deref()).await?;
            }
        }
    }

    // Status from the ReplicaSets.
    let sum = |f: fn(&ReplicaSet) -> i32| owned.iter().map(f).sum::<i32>();
    let status_replicas = sum(|rs| rs.status.as_ref().map(|s| s.replicas).unwrap_or(0));
    let ready = sum(|rs| rs.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0));
    let available = sum(available_of);
    let updated = new_rs.status.as_ref().map(|s| s.replicas).unwrap_or(0);
    let (_, unavailable_allowed) = {
        let ru = spec.strategy.as_ref().and_then(|s| s.rolling_update.as_ref());
        surge_and_unavailable(
            ru.and_then(|r| r.max_surge.as_ref()),
            ru.and_then(|r| r.max_unavailable.as_ref()),
            replicas,
        )
    };
    let now_ts = k8s_openapi::jiff::Timestamp::now();
    let now = now_ts.to_string();
    let is_available = available >= replicas - unavailable_allowed;
    let complete = updated == replicas && status_replicas == replicas && available == replicas;
    let current = d.status.clone().unwrap_or_default();
    let old_cond = |t: &str| current.conditions.as_ref().and_then(|cs| cs.iter().find(|c| c.type_ == t).cloned());
    // Progress = the counts moved, or a new template; its time is what the deadline measures.
    let progressed = current.updated_replicas != Some(updated)
        || current.available_replicas != Some(available)
        || current.replicas != Some(status_replicas)
        || current.observed_generation != d.metadata.generation;
    let old_progressing = old_cond("Progressing");
    let last_progress = match (&old_progressing, progressed) {
        (Some(c), false) => c.last_update_time.as_ref().map(|t| t.0).unwrap_or(now_ts),
        _ => now_ts,
    };
    let deadline = spec.progress_deadline_seconds.unwrap_or(600);
    let stalled =
        !complete && spec.paused != Some(true) && now_ts.as_second() - last_progress.as_second() > i64::from(deadline);
    let (p_status, p_reason, p_message) = if complete {
        ("True", "NewReplicaSetAvailable", format!("ReplicaSet \"{new_name}\" has successfully progressed."))
    } else if stalled {
        ("False", "ProgressDeadlineExceeded", format!("ReplicaSet \"{new_name}\" has timed out progressing."))
    } else {
        ("True", "ReplicaSetUpdated", format!("ReplicaSet \"{new_name}\" is progressing."))
    };
    let transition = |t: &str, status: &str| -> String {
        match old_cond(t) {
            Some(c) if c.status == status => {
                c.last_transition_time.map(|t| t.0.to_string()).unwrap_or_else(|| now.clone())
            }
            _ => now.clone(),
        }
    };
    let a_status = if is_available { "True" } else { "False" };
    let mut conditions = vec![
        json!({"type": "Available", "status": a_status,
         "reason": if is_available { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" },
         "message": if is_available { "Deployment has minimum availability." } else { "Deployment does not have minimum availability." },
         "lastUpdateTime": now, "lastTransitionTime": transition("Available", a_status)}),
        json!({"type": "Progressing", "status": p_status, "reason": p_reason, "message": p_message,
         "lastUpdateTime": last_progress.to_string(), "lastTransitionTime": transition("Progressing", p_status)}),
    ];
    if let Some(rb) = old_cond(ROLLED_BACK) {
        conditions.push(serde_json::to_value(rb).unwrap_or_default());
    }

    // Beyond upstream (opt-in, like ECS's circuit breaker and Nomad's auto_revert): a rollout
    // that exceeds its deadline goes back to the previous revision's template.
    let deploys: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
    // The status below is computed from this version of the Deployment; writing it only if
    // the Deployment is still at that version keeps a pass over a stale cache from
    // overwriting newer conditions (e.g. a RolledBack just written).
    let mut resource_version = d.metadata.resource_version.clone();
    let auto = d.annotations().get(AUTO_ROLLBACK).map(String::as_str) == Some("true");
    if stalled && auto {
        let current_rev = revision_of(&new_rs);
        if let Some(prev) = old.iter().filter(|rs| revision_of(rs) < current_rev).max_by_key(|rs| revision_of(rs)) {
            let mut template = prev.spec.as_ref().and_then(|s| s.template.clone()).unwrap_or_default();
            if let Some(l) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
                l.remove(HASH_LABEL);
            }
            let message = format!(
                "Rolled back to revision {} after revision {current_rev} exceeded its progress deadline of {deadline}s",
                revision_of(prev)
            );
            let rolled = deploys
                .patch(&name, &PatchParams::default(), &Patch::Merge(json!({"spec": {"template": template}})))
                .await?;
            resource_version = rolled.metadata.resource_version;
            conditions.push(
                json!({"type": ROLLED_BACK, "status": "True", "reason": "ProgressDeadlineExceeded", "message": message,
                "lastUpdateTime": now, "lastTransitionTime": now}),
            );
            conditions.retain(|c| c["type"] != ROLLED_BACK || c["lastUpdateTime"] == json!(now));
            record_event(&ctx.client, &d, "DeploymentRollback", &message).await;
            warn!(namespace = ns, deployment = name, "{message}");
        }
    }
    let key = |c: &serde_json::Value| {
        (
            c["type"].as_str().unwrap_or("").to_string(),
            c["status"].as_str().unwrap_or("").to_string(),
            c["reason"].as_str().map(String::from),
        )
    };
    let changed = progressed
        || current.ready_replicas != Some(ready)
        || current
            .conditions
            .as_ref()
            .map(|c| c.iter().map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone())).collect::<Vec<_>>())
            != Some(conditions.iter().map(key).collect());
    if changed {
        let status = json!({"metadata": {"resourceVersion": resource_version}, "status": {
            "replicas": status_replicas, "updatedReplicas": updated, "readyReplicas": ready,
            "availableReplicas": available, "unavailableReplicas": (replicas - available).max(0),
            "observedGeneration": d.metadata.generation, "conditions": conditions,
        }});
        match deploys.patch_status(&name, &PatchParams::default(), &Patch::Merge(status)).await {
            Ok(_) => {}
            // Stale: a newer version is on its way through the watch; decide again on it.
            Err(kube::Error::Api(e)) if e.code == 409 => return Ok(Action::requeue(Duration::from_millis(200))),
            Err(e) => return Err(e.into()),
        }
    }
    if !complete && !stalled && spec.paused != Some(true) {
        // Nothing may happen before the deadline passes: look again then.
        let left = i64::from(deadline) - (now_ts.as_second() - last_progress.as_second()) + 1;
        return Ok(Action::requeue(Duration::from_secs(left.max(1) as u64)));
    }
    Ok(Action::await_change())
}

/// A core/v1 Event about the Deployment (what `kubectl describe` shows).
async fn record_event(client: &Client, d: &Deployment, reason: &str, message: &str) {
    let ns = d.namespace().unwrap_or_default();
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let ev = json!({"apiVersion": "v1", "kind": "Event",
        // Named as upstream's event recorder names events: `<object>.<hex nanoseconds>`.
        "metadata": {"name": format!("{}.{:x}", d.name_any(), k8s_openapi::jiff::Timestamp::now().as_nanosecond())},
        "involvedObject": {"apiVersion": "apps/v1", "kind": "Deployment", "name": d.name_any(), "namespace": ns, "uid": d.metadata.uid},
        "reason": reason, "message": message, "type": "Warning", "source": {"component": "deployment-controller"},
        "firstTimestamp": now, "lastTimestamp": now, "count": 1});
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), &ns);
    match serde_json::from_value(ev) {
        Ok(ev) => {
            if let Err(e) = events.create(&PostParams::default(), &ev).await {
                warn!(error = %e, "recording an event failed");
            }
        }
        Err(e) => warn!(error = %e, "building an event failed"),
    }
}

fn error_policy(_d: Arc<Deployment>, error: &Error, _ctx: Arc<Ctx>) -> Action {
    warn!(%error, "deployment reconcile failed; retrying");
    Action::requeue(Duration::from_secs(1))
}

/// Runs the controller until `shutdown`.
pub async fn run(client: Client, shutdown: CancellationToken) -> Result<(), Error> {
    let deploys: Api<Deployment> = Api::all(client.clone());
    let rss: Api<ReplicaSet> = Api::all(client.clone());
    let controller = Controller::new(deploys, watcher::Config::default()).owns(rss, watcher::Config::default());
    crate::drive(controller, reconcile, error_policy, Arc::new(Ctx { client }), shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn surge_and_unavailable_round_as_upstream() {
        let p = |s: &str| IntOrString::String(s.into());
        assert_eq!(surge_and_unavailable(None, None, 4), (1, 1));
        assert_eq!(surge_and_unavailable(None, None, 10), (3, 2));
        assert_eq!(surge_and_unavailable(Some(&IntOrString::Int(0)), Some(&IntOrString::Int(0)), 3), (0, 1));
        assert_eq!(surge_and_unavailable(Some(&p("50%")), Some(&p("0%")), 3), (2, 0));
    }

    const fn sc(replicas: i32, available: i32) -> Scale {
        Scale { replicas, available }
    }

    #[test]
    fn a_rollout_surges_then_shrinks_the_old_set() {
        // 3 replicas, maxSurge 1, maxUnavailable 0.
        let step = rolling_step(3, 1, 0, sc(0, 0), &[sc(3, 3)]);
        assert_eq!(step, Step { new: 1, old: vec![3] }, "grow first, and nothing else in that pass");
        let step = rolling_step(3, 1, 0, sc(1, 0), &[sc(3, 3)]);
        assert_eq!(step, Step { new: 1, old: vec![3] }, "the new pod is not available: nothing may go");
        let step = rolling_step(3, 1, 0, sc(1, 1), &[sc(3, 3)]);
        assert_eq!(step, Step { new: 1, old: vec![2] }, "one available more: one old pod goes");
        let step = rolling_step(3, 1, 0, sc(3, 3), &[sc(1, 1)]);
        assert_eq!(step, Step { new: 3, old: vec![0] });
    }

    #[test]
    fn rollouts_converge() {
        for (replicas, surge, unavailable) in [(2, 1, 0), (3, 0, 1), (10, 3, 2), (1, 1, 0), (5, 2, 5)] {
            let (mut new, mut old) = (sc(0, 0), vec![sc(replicas, replicas)]);
            let mut passes = 0;
            while !(new.replicas == replicas && new.available == replicas && old[0].replicas == 0) {
                let step = rolling_step(replicas, surge, unavailable, new, &old);
                // Every pod the targets ask for becomes available before the next pass.
                new = sc(step.new, step.new);
                old = vec![sc(step.old[0], step.old[0])];
                let available = new.available + old[0].available;
                assert!(available >= replicas - unavailable, "{replicas}/{surge}/{unavailable}: {available} available");
                assert!(new.replicas + old[0].replicas <= replicas + surge);
                passes += 1;
                assert!(passes < 50, "{replicas}/{surge}/{unavailable} does not converge: {new:?} {old:?}");
            }
        }
    }

    #[test]
    fn a_rollout_replaced_before_it_finished_drops_the_abandoned_pods_first() {
        // Revision 2 was rolling out (1 pod, not available yet) when revision 3 arrived.
        // maxUnavailable 0: nothing available may go, but revision 2's pod may.
        let step = rolling_step(3, 1, 0, sc(0, 0), &[sc(3, 3), sc(1, 0)]);
        assert_eq!(step, Step { new: 0, old: vec![3, 0] }, "no room to grow; the unavailable middle pod goes");
        let step = rolling_step(3, 1, 0, sc(0, 0), &[sc(3, 3), sc(0, 0)]);
        assert_eq!(step.new, 1, "then the newest revision grows");
        // With both old sets fully available, the oldest shrinks first.
        let step = rolling_step(4, 0, 2, sc(4, 0), &[sc(2, 2), sc(2, 2)]);
        assert_eq!(step, Step { new: 4, old: vec![0, 2] });
    }

    #[test]
    fn scaling_down_mid_rollout_never_goes_below_the_minimum() {
        // The Deployment went from 5 to 2 replicas during a rollout.
        let step = rolling_step(2, 1, 0, sc(3, 1), &[sc(4, 4)]);
        assert_eq!(step.new, 2, "the new set is capped at the new size");
        // available 5, min 2: old pods go while at least 2 stay available.
        assert_eq!(step.old, vec![1]);
        let available_after = 1 + step.old[0].min(4);
        assert!(available_after >= 2);
    }

    #[test]
    fn a_rollback_reuses_the_old_template_s_replicaset() {
        // `kubectl rollout undo` copies revision 1's template (hash label included) back
        // into the Deployment: it hashes to revision 1's ReplicaSet, which is reused.
        let v1: PodTemplateSpec = serde_json::from_value(
            json!({"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "v1"}]}}),
        )
        .unwrap();
        let mut rs_template = v1.clone();
        let hash = template_hash(&v1);
        rs_template.metadata.as_mut().unwrap().labels.as_mut().unwrap().insert(HASH_LABEL.into(), hash.clone());
        assert_eq!(template_hash(&rs_template), hash);
        // ... and scaling it back up is an ordinary rollout from revision 2's set.
        let step = rolling_step(3, 1, 0, sc(0, 0), &[sc(3, 3)]);
        assert_eq!(step.new, 1);
    }

    #[test]
    fn template_hash_is_stable_and_ignores_its_own_label() {
        let t: PodTemplateSpec = serde_json::from_value(
            json!({"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "a"}]}}),
        )
        .unwrap();
        let mut labelled = t.clone();
        labelled.metadata.as_mut().unwrap().labels.as_mut().unwrap().insert(HASH_LABEL.into(), "zzz".into());
        assert_eq!(template_hash(&t), template_hash(&labelled));
        let mut other = t.clone();
        other.spec.as_mut().unwrap().containers[0].image = Some("b".into());
        assert_ne!(template_hash(&t), template_hash(&other));
        assert_eq!(template_hash(&t).len(), 10);
    }
}
