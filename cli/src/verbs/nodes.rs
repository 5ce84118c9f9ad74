//! `skiff cordon`, `uncordon` and `drain` (cordon, then evict the node's pods through the
//! Eviction API so disruption budgets hold, with kubectl's safety checks).

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, EvictParams, ListParams, Patch, PatchParams};
use serde_json::json;

use super::{CliError, Ctx, Result};

pub async fn cordon(ctx: &Ctx, node: &str, unschedulable: bool) -> Result<()> {
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let n = nodes.get(node).await?;
    let verb = if unschedulable { "cordoned" } else { "uncordoned" };
    if n.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false) == unschedulable {
        println!("node/{node} already {verb}");
        return Ok(());
    }
    let value = if unschedulable { json!(true) } else { json!(null) };
    nodes.patch(node, &PatchParams::default(), &Patch::Merge(json!({"spec": {"unschedulable": value}}))).await?;
    println!("node/{node} {verb}");
    Ok(())
}

#[derive(clap::Args, Debug, Clone)]
pub struct DrainArgs {
    pub node: String,
    /// Skip DaemonSet-managed pods (their controller would put them back anyway).
    #[arg(long)]
    pub ignore_daemonsets: bool,
    /// Also delete pods no controller manages (they are gone for good).
    #[arg(long)]
    pub force: bool,
    /// Also delete pods with emptyDir volumes (their data is lost).
    #[arg(long)]
    pub delete_emptydir_data: bool,
    #[arg(long, default_value = "5m")]
    pub timeout: String,
}

/// The pods a drain evicts (namespace, name) and the warnings it prints.
pub type DrainPlan = (Vec<(String, String)>, Vec<String>);

/// Which pods a drain evicts, the warnings it prints, or why it refuses (kubectl's checks).
pub fn drain_plan(pods: &[Pod], args: &DrainArgs) -> Result<DrainPlan> {
    let (mut evict, mut warnings) = (vec![], vec![]);
    let (mut ds, mut unmanaged, mut local) = (vec![], vec![], vec![]);
    for p in pods {
        let ns = p.metadata.namespace.clone().unwrap_or_default();
        let name = p.metadata.name.clone().unwrap_or_default();
        let id = format!("{ns}/{name}");
        if p.metadata.annotations.as_ref().is_some_and(|a| a.contains_key("kubernetes.io/config.mirror")) {
            continue; // Mirror pods belong to the kubelet's static manifests.
        }
        let terminal = matches!(p.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"));
        let controller = p.metadata.owner_references.iter().flatten().find(|o| o.controller == Some(true));
        if !terminal {
            if controller.is_some_and(|c| c.kind == "DaemonSet") {
                ds.push(id);
                continue;
            }
            if controller.is_none() {
                unmanaged.push(id.clone());
            }
            if p.spec.as_ref().is_some_and(|s| s.volumes.iter().flatten().any(|v| v.empty_dir.is_some())) {
                local.push(id.clone());
            }
        }
        evict.push((ns, name));
    }
    let mut errors = vec![];
    if !ds.is_empty() {
        if args.ignore_daemonsets {
            warnings.push(format!("Warning: ignoring DaemonSet-managed Pods: {}", ds.join(", ")));
        } else {
            errors.push(format!(
                "cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): {}",
                ds.join(", ")
            ));
        }
    }
    if !unmanaged.is_empty() {
        if args.force {
            warnings.push(format!("Warning: deleting Pods that declare no controller: {}", unmanaged.join(", ")));
        } else {
            errors.push(format!(
                "cannot delete Pods that declare no controller (use --force to override): {}",
                unmanaged.join(", ")
            ));
        }
    }
    if !local.is_empty() && !args.delete_emptydir_data {
        errors.push(format!(
            "cannot delete Pods with local storage (use --delete-emptydir-data to override): {}",
            local.join(", ")
        ));
    }
    if !errors.is_empty() {
        return Err(CliError::Client(format!(
            "unable to drain node {:?} due to error(s):\n  {}",
            args.node,
            errors.join("\n  ")
        )));
    }
    Ok((evict, warnings))
}

pub async fn drain(ctx: &Ctx, args: &DrainArgs) -> Result<()> {
    cordon(ctx, &args.node, true).await?;
    let all: Api<Pod> = Api::all(ctx.client.clone());
    let pods = all.list(&ListParams::default().fields(&format!("spec.nodeName={}", args.node))).await?.items;
    let (evict, warnings) = drain_plan(&pods, args)?;
    for w in warnings {
        eprintln!("{w}");
    }
    let deadline = Instant::now() + super::parse_duration(&args.timeout)?;
    for (ns, name) in &evict {
        println!("evicting pod {ns}/{name}");
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
        loop {
            match api.evict(name, &EvictParams::default()).await {
                Ok(_) => break,
                Err(kube::Error::Api(s)) if s.code == 404 => break,
                // 429: a PodDisruptionBudget holds it for now; kubectl retries every 5 s.
                Err(kube::Error::Api(s)) if s.code == 429 && Instant::now() < deadline => {
                    eprintln!("error when evicting pods/{name:?} -n {ns:?} (will retry after 5s): {}", s.message);
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    let pb = super::spinner(format!("waiting for {} pod(s) to go", evict.len()));
    for (ns, name) in &evict {
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
        while api.get_opt(name).await?.is_some() {
            if Instant::now() > deadline {
                pb.finish_and_clear();
                return Err(CliError::Timeout(format!("pod/{name}")));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        super::say(&pb, format!("pod/{name} evicted"));
    }
    pb.finish_and_clear();
    println!("node/{} drained", args.node);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, owner: Option<&str>, empty_dir: bool, mirror: bool) -> Pod {
        let mut v = json!({"metadata": {"name": name, "namespace": "default"}, "spec": {"containers": []}});
        if let Some(kind) = owner {
            v["metadata"]["ownerReferences"] =
                json!([{"apiVersion": "apps/v1", "kind": kind, "name": "o", "uid": "u", "controller": true}]);
        }
        if empty_dir {
            v["spec"]["volumes"] = json!([{"name": "scratch", "emptyDir": {}}]);
        }
        if mirror {
            v["metadata"]["annotations"] = json!({"kubernetes.io/config.mirror": "x"});
        }
        serde_json::from_value(v).unwrap()
    }

    fn args() -> DrainArgs {
        DrainArgs {
            node: "n1".into(),
            ignore_daemonsets: false,
            force: false,
            delete_emptydir_data: false,
            timeout: "1m".into(),
        }
    }

    #[test]
    fn drain_refuses_what_kubectl_refuses() {
        let pods = [pod("rs-pod", Some("ReplicaSet"), false, false), pod("agent", Some("DaemonSet"), false, false)];
        let e = drain_plan(&pods, &args()).unwrap_err().to_string();
        assert!(e.contains("--ignore-daemonsets") && e.contains("default/agent"), "{e}");
        let (evict, warn) = drain_plan(&pods, &DrainArgs { ignore_daemonsets: true, ..args() }).unwrap();
        assert_eq!(evict, [("default".to_string(), "rs-pod".to_string())]);
        assert!(warn[0].contains("ignoring DaemonSet-managed Pods: default/agent"));

        let bare = [pod("bare", None, false, false)];
        assert!(drain_plan(&bare, &args()).unwrap_err().to_string().contains("--force"));
        assert_eq!(drain_plan(&bare, &DrainArgs { force: true, ..args() }).unwrap().0.len(), 1);

        let scratch = [pod("cache", Some("ReplicaSet"), true, false)];
        assert!(drain_plan(&scratch, &args()).unwrap_err().to_string().contains("--delete-emptydir-data"));

        let mirror = [pod("static", None, false, true)];
        assert_eq!(drain_plan(&mirror, &args()).unwrap(), (vec![], vec![]), "mirror pods stay");
    }
}
