//! The Job controller, as upstream's for NonIndexed Jobs: runs pods until `completions`
//! succeed, at most `parallelism` at a time; fails the Job after more than `backoffLimit`
//! failed pods or after `activeDeadlineSeconds`; `suspend` removes active pods; finished Jobs
//! get the `Complete` or `Failed` condition and, with `ttlSecondsAfterFinished`, are deleted
//! that long after finishing (their pods go with them through the garbage collector).
//!
//! Pods are found through the selector the apiserver generated
//! (`batch.kubernetes.io/controller-uid=<uid>`), counted with a consistent LIST each reconcile.
//! Not here yet: indexed completion mode, pod failure policies, the exponential delay before
//! re-creating failed pods.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use skiff_api::selector::LabelSelector;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::Error;

struct Ctx {
    client: Client,
}

fn phase(p: &Pod) -> &str {
    p.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Pending")
}

fn finished_condition(job: &Job) -> Option<&str> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|c| c.type_.as_str())
}

/// Where a Job stands, from its pods' counts: pure, as upstream's syncJob decides it.
#[derive(Debug, PartialEq, Eq)]
struct Verdict {
    /// Failed: (reason, message) of the `Failed` condition.
    fail_reason: Option<(&'static str, &'static str)>,
    /// `completions` pods succeeded.
    complete: bool,
    /// Finished, failed or suspended: no pod may run.
    stop_all: bool,
    /// Pods that should be running now.
    want_active: usize,
}

/// `succeeded` and `failed` pods so far, `active_for` seconds since the Job started.
fn verdict(spec: &k8s_openapi::api::batch::v1::JobSpec, succeeded: i32, failed: i32, active_for: i64) -> Verdict {
    let completions = spec.completions.unwrap_or(1);
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let fail_reason = if failed > spec.backoff_limit.unwrap_or(6) {
        Some(("BackoffLimitExceeded", "Job has reached the specified backoff limit"))
    } else if spec.active_deadline_seconds.is_some_and(|d| active_for >= d) {
        Some(("DeadlineExceeded", "Job was active longer than specified deadline"))
    } else {
        None
    };
    let complete = succeeded >= completions;
    let stop_all = complete || fail_reason.is_some() || spec.suspend == Some(true);
    let want_active = if stop_all { 0 } else { parallelism.min(completions - succeeded).max(0) as usize };
    Verdict { fail_reason, complete, stop_all, want_active }
}

async fn reconcile(job: Arc<Job>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if job.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let (Some(ns), Some(name)) = (job.namespace(), job.metadata.name.clone()) else {
        return Ok(Action::await_change());
    };
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let spec = job.spec.clone().unwrap_or_default();
    let now = Timestamp::now();
    let now_s = now.as_second();

    // A finished Job only waits for its TTL.
    if let Some(_kind) = finished_condition(&job) {
        if let Some(ttl) = spec.ttl_seconds_after_finished {
            let done_at = job.status.as_ref().and_then(|s| {
                s.completion_time.as_ref().map(|t| t.0.as_second()).or_else(|| {
                    s.conditions
                        .as_ref()?
                        .iter()
                        .find(|c| c.type_ == "Failed")
                        .and_then(|c| c.last_transition_time.as_ref())
                        .map(|t| t.0.as_second())
                })
            });
            let due = done_at.unwrap_or(now_s) + i64::from(ttl);
            if now_s >= due {
                info!(namespace = ns, job = name, "TTL after finish reached: deleting the job");
                crate::delete_if_present(&jobs, &name, job.metadata.uid.as_deref()).await?;
                return Ok(Action::await_change());
            }
            return Ok(Action::requeue(Duration::from_secs((due - now_s).max(1) as u64)));
        }
        return Ok(Action::await_change());
    }

    let Some(selector) =
        spec.selector.as_ref().and_then(|s| LabelSelector::from_meta(s).ok()).filter(|s| !s.is_empty())
    else {
        warn!(namespace = ns, job = name, "job has no selector; doing nothing");
        return Ok(Action::await_change());
    };
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let pods = pods_api.list(&ListParams::default().labels(&selector.to_string())).await?.items;
    let active: Vec<&Pod> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && !matches!(phase(p), "Succeeded" | "Failed"))
        .collect();
    let succeeded = pods.iter().filter(|p| phase(p) == "Succeeded").count() as i32;
    let failed = pods.iter().filter(|p| phase(p) == "Failed").count() as i32;
    let start = job.status.as_ref().and_then(|s| s.start_time.as_ref()).map(|t| t.0.as_second()).unwrap_or(now_s);
    let Verdict { fail_reason, complete, stop_all: remove_all, want_active } =
        verdict(&spec, succeeded, failed, now_s - start);
    let suspended = spec.suspend == Some(true);

    // Remove pods that must not run; start the ones that are missing.
    if active.len() > want_active {
        for p in active.iter().skip(want_active) {
            crate::delete_if_present(&pods_api, &p.name_any(), p.metadata.uid.as_deref()).await?;
        }
    }
    let mut created = 0;
    if active.len() < want_active {
        let template = spec.template.clone();
        let mut oref = job.controller_owner_ref(&()).expect("a stored Job has a name and uid");
        oref.block_owner_deletion = Some(true);
        for _ in active.len()..want_active {
            let pod = crate::pod_from_template(&template, &name, oref.clone());
            pods_api
                .create(&PostParams { field_manager: Some("skiff-job-controller".into()), ..Default::default() }, &pod)
                .await?;
            created += 1;
        }
        info!(namespace = ns, job = name, created, "started job pods");
    }

    // Status.
    let now_str = now.to_string();
    let mut status = json!({
        "active": if remove_all { 0 } else { active.len() + created },
        "succeeded": succeeded,
        "failed": failed,
        "ready": active.iter().filter(|p| p.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))).count(),
        "startTime": job.status.as_ref().and_then(|s| s.start_time.clone()).map(|t| json!(t)).unwrap_or(json!(now_str)),
    });
    let mut conditions = Vec::new();
    if complete {
        status["completionTime"] = json!(now_str);
        conditions.push(
            json!({"type": "Complete", "status": "True", "lastProbeTime": now_str, "lastTransitionTime": now_str}),
        );
        info!(namespace = ns, job = name, "job complete");
    } else if let Some((reason, message)) = fail_reason {
        conditions.push(json!({"type": "Failed", "status": "True", "reason": reason, "message": message, "lastProbeTime": now_str, "lastTransitionTime": now_str}));
        info!(namespace = ns, job = name, reason, "job failed");
    } else if suspended {
        conditions.push(json!({"type": "Suspended", "status": "True", "reason": "JobSuspended", "message": "Job suspended", "lastProbeTime": now_str, "lastTransitionTime": now_str}));
    }
    if !conditions.is_empty() {
        status["conditions"] = json!(conditions);
    }
    let current = job.status.clone().unwrap_or_default();
    let has =
        |t: &str| current.conditions.as_ref().is_some_and(|cs| cs.iter().any(|c| c.type_ == t && c.status == "True"));
    let new_condition = conditions.iter().any(|c| !has(c["type"].as_str().unwrap_or_default()));
    if !new_condition {
        // Keep the existing conditions (and their transition times) as they are.
        status.as_object_mut().map(|m| m.remove("conditions"));
    }
    if suspended != has("Suspended") && !suspended {
        status["conditions"] = json!([]); // resumed: drop the Suspended condition
    }
    let changed = current.active.unwrap_or(0) as usize != status["active"].as_u64().unwrap_or(0) as usize
        || current.succeeded.unwrap_or(0) != succeeded
        || current.failed.unwrap_or(0) != failed
        || current.start_time.is_none()
        || new_condition
        || (has("Suspended") && !suspended)
        || current.ready.unwrap_or(0) as u64 != status["ready"].as_u64().unwrap_or(0);
    if changed {
        jobs.patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({"status": status}))).await?;
    }
    if let Some(d) = spec.active_deadline_seconds {
        if !remove_all {
            return Ok(Action::requeue(Duration::from_secs((start + d - now_s).max(1) as u64)));
        }
    }
    Ok(Action::await_change())
}

fn error_policy(_job: Arc<Job>, error: &Error, _ctx: Arc<Ctx>) -> Action {
    warn!(%error, "job reconcile failed; retrying");
    Action::requeue(Duration::from_secs(1))
}

/// Runs the controller until `shutdown`.
pub async fn run(client: Client, shutdown: CancellationToken) -> Result<(), Error> {
    let jobs: Api<Job> = Api::all(client.clone());
    let pods: Api<Pod> = Api::all(client.clone());
    let controller = Controller::new(jobs, watcher::Config::default()).owns(pods, watcher::Config::default());
    crate::drive(controller, reconcile, error_policy, Arc::new(Ctx { client }), shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(v: serde_json::Value) -> k8s_openapi::api::batch::v1::JobSpec {
        let mut v = v;
        v["template"] = serde_json::json!({});
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn parallelism_is_capped_by_what_is_left_to_complete() {
        let s = spec(serde_json::json!({"completions": 5, "parallelism": 2}));
        assert_eq!(verdict(&s, 0, 0, 0).want_active, 2);
        assert_eq!(verdict(&s, 4, 0, 0).want_active, 1, "one completion left: one pod");
        let done = verdict(&s, 5, 0, 0);
        assert!(done.complete);
        assert_eq!(done.want_active, 0);
    }

    #[test]
    fn backoff_limit_and_deadline_fail_the_job_and_stop_its_pods() {
        let s = spec(serde_json::json!({"completions": 3, "backoffLimit": 2, "activeDeadlineSeconds": 60}));
        assert_eq!(verdict(&s, 0, 2, 10).fail_reason, None, "failures up to the limit are retried");
        let v = verdict(&s, 0, 3, 10);
        assert_eq!(v.fail_reason.map(|r| r.0), Some("BackoffLimitExceeded"));
        assert_eq!(v.want_active, 0);
        assert_eq!(verdict(&s, 1, 0, 60).fail_reason.map(|r| r.0), Some("DeadlineExceeded"));
        assert_eq!(verdict(&spec(serde_json::json!({})), 0, 6, 0).fail_reason, None, "default backoffLimit 6");
    }

    #[test]
    fn a_suspended_job_runs_nothing() {
        let s = spec(serde_json::json!({"completions": 3, "parallelism": 3, "suspend": true}));
        assert_eq!(
            verdict(&s, 0, 0, 0),
            Verdict { fail_reason: None, complete: false, stop_all: true, want_active: 0 }
        );
    }
}
