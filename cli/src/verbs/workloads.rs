//! `skiff scale` and `skiff rollout status|history|undo|restart|pause|resume`, with
//! kubectl's messages (its rollout status logic is reproduced in [`rollout_message`]).

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{json, Value};

use super::{parse_targets, usage, CliError, Ctx, Result};

/// One `TYPE NAME` / `TYPE/NAME` target.
fn one_target(args: &[String]) -> Result<(String, String)> {
    match parse_targets(args)?.as_slice() {
        [(t, Some(n))] => Ok((t.clone(), n.clone())),
        _ => Err(usage("expected one resource: TYPE NAME or TYPE/NAME")),
    }
}

pub async fn scale(ctx: &Ctx, targets: &[String], replicas: i32) -> Result<()> {
    let (t, name) = one_target(targets)?;
    let r = ctx.catalog().await?.find(&t)?;
    let api = ctx.api(r, Some(&ctx.namespace));
    api.patch_scale(&name, &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": replicas}}))).await?;
    println!("{}/{name} scaled", r.type_name());
    Ok(())
}

/// kubectl's rollout status for a Deployment or DaemonSet: (message, done); an error when
/// the Deployment exceeded its progress deadline.
pub fn rollout_message(kind: &str, obj: &Value) -> Result<(String, bool)> {
    let name = obj["metadata"]["name"].as_str().unwrap_or("");
    let int = |v: &Value| v.as_i64().unwrap_or(0);
    let (spec, status) = (&obj["spec"], &obj["status"]);
    if int(&obj["metadata"]["generation"]) > int(&status["observedGeneration"]) {
        return Ok(("Waiting for rollout spec update to be observed...".into(), false));
    }
    match kind {
        "Deployment" => {
            let progressing =
                status["conditions"].as_array().into_iter().flatten().find(|c| c["type"] == "Progressing");
            if progressing.is_some_and(|c| c["reason"] == "ProgressDeadlineExceeded") {
                return Err(CliError::Client(format!("deployment {name:?} exceeded its progress deadline")));
            }
            let want = spec["replicas"].as_i64().unwrap_or(1);
            let (updated, total, available) =
                (int(&status["updatedReplicas"]), int(&status["replicas"]), int(&status["availableReplicas"]));
            let wait = |m: String| Ok((format!("Waiting for deployment {name:?} rollout to finish: {m}..."), false));
            if updated < want {
                return wait(format!("{updated} out of {want} new replicas have been updated"));
            }
            if total > updated {
                return wait(format!("{} old replicas are pending termination", total - updated));
            }
            if available < updated {
                return wait(format!("{available} of {updated} updated replicas are available"));
            }
            Ok((format!("deployment {name:?} successfully rolled out"), true))
        }
        "DaemonSet" => {
            let desired = int(&status["desiredNumberScheduled"]);
            let (updated, available) = (int(&status["updatedNumberScheduled"]), int(&status["numberAvailable"]));
            let wait = |m: String| Ok((format!("Waiting for daemon set {name:?} rollout to finish: {m}..."), false));
            if updated < desired {
                return wait(format!("{updated} out of {desired} new pods have been updated"));
            }
            if available < desired {
                return wait(format!("{available} of {desired} updated pods are available"));
            }
            Ok((format!("daemon set {name:?} successfully rolled out"), true))
        }
        other => Err(usage(format!("no status viewer has been implemented for {other}"))),
    }
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum RolloutCommand {
    /// Wait for a rollout to finish, printing its progress.
    Status {
        targets: Vec<String>,
        #[arg(long, default_value = "10m")]
        timeout: String,
        /// Print the current status once instead of waiting.
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        watch: bool,
    },
    /// The revisions of a Deployment (from its ReplicaSets).
    History {
        targets: Vec<String>,
        /// Show one revision's pod template.
        #[arg(long)]
        revision: Option<i64>,
    },
    /// Roll a Deployment back to the previous (or a given) revision.
    Undo {
        targets: Vec<String>,
        #[arg(long, default_value_t = 0)]
        to_revision: i64,
    },
    /// Replace every pod (a new template annotation: kubectl.kubernetes.io/restartedAt).
    Restart { targets: Vec<String> },
    /// Stop the controller from acting on template changes.
    Pause { targets: Vec<String> },
    /// Undo `pause`.
    Resume { targets: Vec<String> },
}

pub async fn rollout(ctx: &Ctx, cmd: &RolloutCommand) -> Result<()> {
    match cmd {
        RolloutCommand::Status { targets, timeout, watch } => {
            let (t, name) = one_target(targets)?;
            let r = ctx.catalog().await?.find(&t)?;
            let api = ctx.api(r, Some(&ctx.namespace));
            let deadline = Instant::now() + super::parse_duration(timeout)?;
            let mut last = String::new();
            loop {
                let obj = serde_json::to_value(api.get(&name).await?)?;
                let (msg, done) = rollout_message(&r.ar.kind, &obj)?;
                if msg != last {
                    println!("{msg}");
                    last = msg;
                }
                if done || !watch {
                    return Ok(());
                }
                if Instant::now() > deadline {
                    return Err(CliError::Client("timed out waiting for the condition".into()));
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
        RolloutCommand::History { targets, revision } => {
            let (deploy, rses) = deployment_and_replicasets(ctx, targets).await?;
            let name = deploy.metadata.name.clone().unwrap_or_default();
            if let Some(want) = revision {
                let rs = rses
                    .iter()
                    .find(|(rev, _)| rev == want)
                    .ok_or_else(|| CliError::Client(format!("unable to find the specified revision {want}")))?;
                println!("deployment.apps/{name} with revision #{want}");
                let tmpl = serde_json::to_value(rs.1.spec.as_ref().and_then(|s| s.template.clone()))?;
                print!("{}", serde_yaml::to_string(&tmpl).map_err(|e| CliError::Client(e.to_string()))?);
                return Ok(());
            }
            println!("deployment.apps/{name}");
            println!("REVISION  CHANGE-CAUSE");
            for (rev, rs) in &rses {
                let cause = rs
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get("kubernetes.io/change-cause").cloned())
                    .unwrap_or_else(|| "<none>".into());
                println!("{rev:<9} {cause}");
            }
            println!();
            Ok(())
        }
        RolloutCommand::Undo { targets, to_revision } => {
            let (deploy, rses) = deployment_and_replicasets(ctx, targets).await?;
            let name = deploy.metadata.name.clone().unwrap_or_default();
            if deploy.spec.as_ref().and_then(|s| s.paused) == Some(true) {
                return Err(CliError::Client(format!(
                    "you cannot rollback a paused deployment; resume it first with 'skiff rollout resume deployment/{name}' and try again"
                )));
            }
            let target = if *to_revision == 0 {
                // The previous revision: the second highest.
                rses.iter()
                    .rev()
                    .nth(1)
                    .ok_or_else(|| CliError::Client("no rollout history found for deployment".into()))?
            } else {
                rses.iter().find(|(rev, _)| rev == to_revision).ok_or_else(|| {
                    CliError::Client(format!("unable to find specified revision {to_revision} in history"))
                })?
            };
            let mut tmpl = serde_json::to_value(target.1.spec.as_ref().and_then(|s| s.template.clone()))?;
            if let Some(l) = tmpl["metadata"]["labels"].as_object_mut() {
                l.remove("pod-template-hash");
            }
            let current = serde_json::to_value(deploy.spec.as_ref().map(|s| &s.template))?;
            if current == tmpl {
                println!(
                    "deployment.apps/{name} skipped rollback (current template already matches revision {})",
                    target.0
                );
                return Ok(());
            }
            let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
            let patch = json_patch_replace("/spec/template", tmpl)?;
            api.patch(&name, &PatchParams::default(), &Patch::<()>::Json(patch)).await?;
            println!("deployment.apps/{name} rolled back");
            Ok(())
        }
        RolloutCommand::Restart { targets } => {
            let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            patch_each(ctx, targets, json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": now}}}}}), "restarted").await
        }
        RolloutCommand::Pause { targets } => {
            patch_each(ctx, targets, json!({"spec": {"paused": true}}), "paused").await
        }
        RolloutCommand::Resume { targets } => {
            patch_each(ctx, targets, json!({"spec": {"paused": null}}), "resumed").await
        }
    }
}

fn json_patch_replace(path: &str, value: Value) -> Result<json_patch::Patch> {
    Ok(serde_json::from_value(json!([{"op": "replace", "path": path, "value": value}]))?)
}

async fn patch_each(ctx: &Ctx, targets: &[String], patch: Value, done: &str) -> Result<()> {
    let catalog = ctx.catalog().await?;
    for (t, name) in parse_targets(targets)? {
        let name = name.ok_or_else(|| usage("expected TYPE NAME or TYPE/NAME"))?;
        let r = catalog.find(&t)?;
        ctx.api(r, Some(&ctx.namespace)).patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        println!("{}/{name} {done}", r.type_name());
    }
    Ok(())
}

/// A Deployment and its ReplicaSets by revision, oldest first.
async fn deployment_and_replicasets(ctx: &Ctx, targets: &[String]) -> Result<(Deployment, Vec<(i64, ReplicaSet)>)> {
    let (t, name) = one_target(targets)?;
    if ctx.catalog().await?.find(&t)?.ar.kind != "Deployment" {
        return Err(usage("rollout history and undo work on deployments"));
    }
    let deploys: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let d = deploys.get(&name).await?;
    let uid = d.metadata.uid.clone();
    let rs_api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let mut out: Vec<(i64, ReplicaSet)> = rs_api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|rs| rs.metadata.owner_references.iter().flatten().any(|o| Some(&o.uid) == uid.as_ref()))
        .filter_map(|rs| {
            let rev = rs.metadata.annotations.as_ref()?.get("deployment.kubernetes.io/revision")?.parse().ok()?;
            Some((rev, rs))
        })
        .collect();
    out.sort_by_key(|(rev, _)| *rev);
    Ok((d, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deploy(gen_: i64, observed: i64, replicas: i64, updated: i64, total: i64, available: i64) -> Value {
        json!({"metadata": {"name": "web", "generation": gen_}, "spec": {"replicas": replicas},
            "status": {"observedGeneration": observed, "updatedReplicas": updated, "replicas": total, "availableReplicas": available}})
    }

    #[test]
    fn rollout_status_reads_as_kubectl() {
        let m = |v: Value| rollout_message("Deployment", &v).unwrap();
        assert_eq!(m(deploy(2, 1, 3, 3, 3, 3)), ("Waiting for rollout spec update to be observed...".into(), false));
        assert_eq!(
            m(deploy(2, 2, 3, 1, 4, 3)).0,
            "Waiting for deployment \"web\" rollout to finish: 1 out of 3 new replicas have been updated..."
        );
        assert_eq!(
            m(deploy(2, 2, 3, 3, 4, 3)).0,
            "Waiting for deployment \"web\" rollout to finish: 1 old replicas are pending termination..."
        );
        assert_eq!(
            m(deploy(2, 2, 3, 3, 3, 2)).0,
            "Waiting for deployment \"web\" rollout to finish: 2 of 3 updated replicas are available..."
        );
        assert_eq!(m(deploy(2, 2, 3, 3, 3, 3)), ("deployment \"web\" successfully rolled out".into(), true));
        let mut stuck = deploy(2, 2, 3, 1, 3, 1);
        stuck["status"]["conditions"] =
            json!([{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]);
        assert!(rollout_message("Deployment", &stuck)
            .unwrap_err()
            .to_string()
            .contains("exceeded its progress deadline"));
        let ds = json!({"metadata": {"name": "agent", "generation": 1}, "status": {"observedGeneration": 1,
            "desiredNumberScheduled": 3, "updatedNumberScheduled": 3, "numberAvailable": 2}});
        assert_eq!(
            rollout_message("DaemonSet", &ds).unwrap().0,
            "Waiting for daemon set \"agent\" rollout to finish: 2 of 3 updated pods are available..."
        );
        assert!(rollout_message("Pod", &ds).is_err());
    }
}
