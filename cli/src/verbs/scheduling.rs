//! `skiff explain-scheduling`: why a pod is (or would be) placed where it is — the
//! scheduler's dry run ([`skiff_scheduler::explain`]) from the CLI: every filter's verdict on
//! every node and every score plugin's raw, normalized and weighted score. For a pod of the
//! cluster (typically a Pending one) or a manifest not created yet. Reads only.

use std::path::Path;

use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use skiff_scheduler::Profile;

use super::{objects, usage, CliError, Ctx, Result};

/// Prints the dry run for pod `name` (in the context's namespace) or the Pod in `file`,
/// with the profiles of `config` (default: upstream's default profile, as
/// `default-scheduler` and `skiff-scheduler`).
pub async fn explain(ctx: &Ctx, name: Option<&str>, file: Option<&str>, config: Option<&Path>) -> Result<()> {
    let pod: Pod = match (name, file) {
        (Some(name), None) => Api::namespaced(ctx.client.clone(), &ctx.namespace).get(name).await?,
        (None, Some(file)) => {
            let docs = objects::read_manifests(&[file.to_string()])?;
            let [doc] = docs.as_slice() else {
                return Err(usage(format!("{file} must hold exactly one Pod (it holds {} documents)", docs.len())));
            };
            if doc.get("kind").and_then(|k| k.as_str()) != Some("Pod") {
                return Err(usage(format!("{file} is not a Pod")));
            }
            let mut pod: Pod = serde_json::from_value(doc.clone())?;
            pod.metadata.namespace.get_or_insert_with(|| ctx.namespace.clone());
            pod
        }
        _ => return Err(usage("give a pod name or -f FILE (one of them)")),
    };
    let profiles = match config {
        Some(path) => skiff_scheduler::config::load(path).map_err(|e| CliError::Client(e.to_string()))?.profiles,
        None => vec![Profile::default_profile("default-scheduler"), Profile::default_profile("skiff-scheduler")],
    };
    let report =
        skiff_scheduler::explain::explain_in_cluster(&ctx.client, &profiles, &pod).await.map_err(|e| match e {
            skiff_scheduler::explain::ExplainError::Kube(k) => CliError::from(k),
            other => CliError::Client(other.to_string()),
        })?;
    print!("{report}");
    Ok(())
}
