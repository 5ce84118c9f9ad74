//! Namespace lifecycle inside the apiserver: the built-in namespaces exist, and a namespace
//! being deleted is emptied and then removed.
//!
//! Upstream runs the second part in kube-controller-manager's namespace controller; Skiff
//! runs it here (level-triggered, every second) until the controller-manager exists, so
//! that namespace deletion works with the apiserver alone. It only uses the registry's
//! public verbs, so moving it out later is mechanical.

use std::time::Duration;

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::error::ApiError;
use crate::object as obj;
use crate::registry::{DeleteOptions, ListQuery, Registry, Target};
use crate::resources;

/// Namespaces that always exist, as upstream's bootstrap controller ensures.
pub const SYSTEM_NAMESPACES: [&str; 4] = ["default", "kube-system", "kube-public", "kube-node-lease"];

fn namespaces() -> Target {
    Target { resource: resources::find("", "v1", "namespaces").expect("namespaces are served"), namespace: None }
}

/// Creates the system namespaces that are missing.
pub async fn ensure_system_namespaces(reg: &Registry) -> Result<(), ApiError> {
    for ns in SYSTEM_NAMESPACES {
        let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        match reg.create(&namespaces(), body, false).await {
            Ok(_) => info!(namespace = ns, "created system namespace"),
            Err(ApiError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Runs the namespace finalizer until `shutdown`.
pub async fn run_finalizer(reg: Registry, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let cache = reg.cache(namespaces().resource);
        let (all, _) = cache.snapshot("/namespaces/").await;
        for ns in all.iter().filter(|n| obj::deletion_timestamp(n).is_some()) {
            if let Err(e) = finalize(&reg, ns).await {
                warn!(namespace = obj::name(ns), error = %e, "namespace cleanup failed; will retry");
            }
        }
    }
}

/// One pass over a terminating namespace: delete its content; once nothing is left,
/// drop the `kubernetes` finalizer, which removes the namespace.
async fn finalize(reg: &Registry, ns: &Value) -> Result<(), ApiError> {
    let name = obj::name(ns).to_string();
    let mut remaining = 0;
    for r in resources::all().iter().filter(|r| r.namespaced) {
        let t = Target { resource: r, namespace: Some(name.clone()) };
        let (items, _, _, _) = reg.list(&t, &ListQuery::default()).await?;
        for item in items {
            remaining += 1;
            if obj::deletion_timestamp(&item).is_some() {
                continue; // already going (grace period or finalizers)
            }
            match reg.delete(&t, obj::name(&item), &DeleteOptions::default()).await {
                Ok(_) | Err(ApiError::NotFound { .. }) => debug!(
                    namespace = name,
                    resource = r.plural,
                    object = obj::name(&item),
                    "deleted namespace content"
                ),
                Err(e) => return Err(e),
            }
        }
    }
    if remaining > 0 {
        return Ok(());
    }
    // Empty: remove the `kubernetes` spec finalizer, then the object itself.
    let t = namespaces();
    let has_spec_finalizer = ns.pointer("/spec/finalizers").and_then(Value::as_array).is_some_and(|f| !f.is_empty());
    if has_spec_finalizer {
        let mut body = ns.clone();
        body["spec"]["finalizers"] = json!([]);
        reg.update(&t, &name, body, Some("finalize"), false).await?;
    }
    let current = match reg.get(&t, &name).await {
        Ok(v) => v,
        Err(ApiError::NotFound { .. }) => return Ok(()),
        Err(e) => return Err(e),
    };
    if obj::finalizers(&current).is_empty() {
        let pre = skiff_store::Preconditions {
            uid: obj::meta_str(&current, "uid").map(String::from),
            resource_version: None,
        };
        match reg.store.delete(&t.key(&name), &pre).await {
            Ok(_) | Err(skiff_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        info!(namespace = name, "namespace removed");
    }
    Ok(())
}
