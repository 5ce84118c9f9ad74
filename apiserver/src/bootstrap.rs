//! Objects the apiserver keeps in place itself, as upstream's bootstrap controllers do: the
//! `kubernetes` Service in `default` (ClusterIP = the first address of the service range,
//! reserved for it) with Endpoints and an EndpointSlice naming this apiserver, so clients
//! in pods find the API at a stable address; and the built-in PriorityClasses
//! (`system-node-critical`, `system-cluster-critical`).

use serde_json::{json, Value};
use tracing::info;

use crate::error::ApiError;
use crate::registry::{Registry, Target};
use crate::resources;

fn target(plural: &str, group: &str) -> Target {
    Target {
        resource: resources::all().iter().find(|r| r.plural == plural && r.group == group).expect("served"),
        namespace: Some("default".into()),
    }
}

/// Creates the object, or replaces it when it differs in the fields given (top-level
/// fields, as JSON pointers: `/subsets`, `/rules`).
pub(crate) async fn ensure_object(reg: &Registry, t: &Target, body: Value, compare: &[&str]) -> Result<(), ApiError> {
    let name = body.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
    match reg.get(t, &name).await {
        Err(ApiError::NotFound { .. }) => {
            reg.create(t, body, false).await?;
            info!(resource = t.resource.plural, name, "created");
        }
        Ok(current) => {
            if compare.iter().any(|p| current.pointer(p) != body.pointer(p)) {
                reg.update_with(
                    t,
                    &name,
                    None,
                    false,
                    |old| {
                        let mut new = old.clone();
                        for p in compare {
                            let key = p.trim_start_matches('/');
                            if let (Some(v), Some(obj)) = (body.pointer(p), new.as_object_mut()) {
                                obj.insert(key.to_string(), v.clone());
                            }
                        }
                        Ok(new)
                    },
                    None,
                )
                .await?;
                info!(resource = t.resource.plural, name, "updated");
            }
        }
        Err(e) => return Err(e),
    }
    Ok(())
}

/// Ensures the `kubernetes` Service, Endpoints and EndpointSlice point at `ip:port`.
pub async fn ensure_kubernetes_service(reg: &Registry, ip: std::net::IpAddr, port: u16) -> Result<(), ApiError> {
    let cluster_ip = reg.allocator.ranges.kubernetes_service_ip().to_string();
    let svc = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"type": "ClusterIP", "clusterIP": cluster_ip, "sessionAffinity": "None",
                 "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]}});
    ensure_object(reg, &target("services", ""), svc, &[]).await?;
    if ip.is_loopback() || ip.is_unspecified() {
        // Endpoints may not name loopback addresses (upstream validation); pods could not
        // reach them anyway. The lab binds the apiserver to a routable address.
        info!(%ip, "apiserver address is loopback: the kubernetes Service has no endpoints");
        return Ok(());
    }
    let ep = json!({"apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": ip.to_string()}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]});
    ensure_object(reg, &target("endpoints", ""), ep, &["/subsets"]).await?;
    let slice = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "labels": {"kubernetes.io/service-name": "kubernetes", "endpointslice.kubernetes.io/managed-by": "skiff-apiserver"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip.to_string()], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}]});
    ensure_object(reg, &target("endpointslices", "discovery.k8s.io"), slice, &["/endpoints", "/ports"]).await
}

/// Ensures upstream's built-in PriorityClasses exist (left alone if they do: their value is
/// immutable and validation keeps it right).
pub async fn ensure_system_priority_classes(reg: &Registry) -> Result<(), ApiError> {
    let t = Target {
        resource: resources::find("scheduling.k8s.io", "v1", "priorityclasses").expect("served"),
        namespace: None,
    };
    for (name, value) in skiff_api::validation::SYSTEM_PRIORITY_CLASSES {
        let description = if *name == "system-node-critical" {
            "Used for system critical pods that must not be moved from their current node."
        } else {
            "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary."
        };
        let pc = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": name},
            "value": value, "description": description, "preemptionPolicy": "PreemptLowerPriority"});
        ensure_object(reg, &t, pc, &[]).await?;
    }
    Ok(())
}
