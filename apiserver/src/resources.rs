//! The table of served resources: one [`ResourceInfo`] per resource, with everything the
//! generic registry, discovery and the HTTP layer need to know about it.
//!
//! Adding a resource = one entry in [`all`] (plus its validation in `skiff_api::validation`).

use std::sync::OnceLock;

use k8s_openapi::api::{
    apps::v1 as apps, batch::v1 as batch, coordination::v1 as coord, core::v1 as core, discovery::v1 as disc,
    rbac::v1 as rbac, scheduling::v1 as sched,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use skiff_api::validation::{self as v, FieldError};

/// Writes decode into the typed object and back: unknown fields are dropped and types are
/// checked, as upstream's decoding into Go structs does.
/// Decodes `new` into the typed object once, validates it (and, with `old`, validates the
/// update), and encodes it back: unknown fields dropped, type errors as `Err`.
pub type Admit = fn(Value, Option<&Value>) -> Result<(Value, Vec<FieldError>), serde_json::Error>;

/// Everything about one served resource.
pub struct ResourceInfo {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// Plural resource name, as in URLs (`pods`).
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    /// Subresources served (`status`, `scale`, `binding`, `eviction`, `log`, ...).
    pub subresources: &'static [&'static str],
    /// Whether `spec` and `status` are split: the main resource ignores status changes and
    /// the `status` subresource ignores everything else, as upstream.
    pub has_status: bool,
    /// Extra field selectors beyond `metadata.name` / `metadata.namespace`.
    pub field_selectors: &'static [&'static str],
    pub admit: Admit,
    /// Paths of fields the typed object does not have (`spec.containers[0].foo`).
    pub unknown_fields: fn(&Value) -> Vec<String>,
}

impl std::fmt::Debug for ResourceInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.api_version(), self.plural)
    }
}

impl ResourceInfo {
    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `pods` or `deployments.apps`, as upstream names resources in messages.
    pub fn qualified_plural(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// Whether `field` may be used in a field selector on this resource.
    pub fn supports_field(&self, field: &str) -> bool {
        matches!(field, "metadata.name" | "metadata.namespace") || self.field_selectors.contains(&field)
    }
}

/// One decode, the validations, one encode: the hot path of every write.
fn admit<T: DeserializeOwned + Serialize>(
    new: Value,
    old: Option<&Value>,
    validate: fn(&T) -> Vec<FieldError>,
    validate_update: fn(&T, &T) -> Vec<FieldError>,
) -> Result<(Value, Vec<FieldError>), serde_json::Error> {
    let typed: T = serde_json::from_value(new)?;
    let errs = match old {
        // validate_update functions also run the create checks on the new object.
        Some(old) => match T::deserialize(old) {
            Ok(o) => validate_update(&typed, &o),
            Err(e) => vec![FieldError::invalid("", format!("the stored object does not decode: {e}"))],
        },
        None => validate(&typed),
    };
    Ok((serde_json::to_value(typed)?, errs))
}

/// Decodes like [`admit`] but records every field the type ignores, as upstream's strict
/// decoding does (for `fieldValidation`).
fn unknown_fields<T: DeserializeOwned>(v: &Value) -> Vec<String> {
    let mut unknown = Vec::new();
    let _ = serde_ignored::deserialize::<_, _, T>(v, |path| unknown.push(k8s_path(&path)));
    unknown
}

/// A serde_ignored path as upstream prints field paths: `spec.containers[0].foo`.
fn k8s_path(path: &serde_ignored::Path) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", k8s_path(parent)),
        Path::Map { parent, key } => {
            let p = k8s_path(parent);
            if p.is_empty() {
                key.clone()
            } else {
                format!("{p}.{key}")
            }
        }
        Path::Some { parent } | Path::NewtypeStruct { parent } | Path::NewtypeVariant { parent } => k8s_path(parent),
    }
}

macro_rules! resource {
    (
        $ty:ty, $group:expr, $version:expr, $kind:expr, $plural:expr, $singular:expr, namespaced: $ns:expr,
        short: [$($short:expr),*], categories: [$($cat:expr),*], sub: [$($sub:expr),*], status: $status:expr,
        fields: [$($field:expr),*], validate: $val:path, validate_update: $valu:path
    ) => {
        ResourceInfo {
            group: $group,
            version: $version,
            kind: $kind,
            plural: $plural,
            singular: $singular,
            namespaced: $ns,
            short_names: &[$($short),*],
            categories: &[$($cat),*],
            subresources: &[$($sub),*],
            has_status: $status,
            field_selectors: &[$($field),*],
            admit: |n, o| admit::<$ty>(n, o, $val, $valu),
            unknown_fields: unknown_fields::<$ty>,
        }
    };
}

/// Every served resource, in discovery order.
pub fn all() -> &'static [ResourceInfo] {
    static ALL: OnceLock<Vec<ResourceInfo>> = OnceLock::new();
    ALL.get_or_init(|| {
        vec![
            resource!(core::Namespace, "", "v1", "Namespace", "namespaces", "namespace", namespaced: false,
                short: ["ns"], categories: [], sub: ["status", "finalize"], status: true,
                fields: ["status.phase"], validate: v::validate_namespace, validate_update: v::validate_namespace_update),
            resource!(core::Pod, "", "v1", "Pod", "pods", "pod", namespaced: true,
                short: ["po"], categories: ["all"], sub: ["status", "binding", "eviction", "log", "exec", "attach", "portforward"], status: true,
                fields: ["spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName", "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName"],
                validate: v::validate_pod, validate_update: v::validate_pod_update),
            resource!(core::Node, "", "v1", "Node", "nodes", "node", namespaced: false,
                short: ["no"], categories: [], sub: ["status"], status: true,
                fields: ["spec.unschedulable"], validate: v::validate_node, validate_update: v::validate_node_update),
            resource!(core::Service, "", "v1", "Service", "services", "service", namespaced: true,
                short: ["svc"], categories: ["all"], sub: ["status"], status: true,
                fields: ["spec.clusterIP", "spec.type"], validate: v::validate_service, validate_update: v::validate_service_update),
            resource!(core::Endpoints, "", "v1", "Endpoints", "endpoints", "endpoints", namespaced: true,
                short: ["ep"], categories: [], sub: [], status: false,
                fields: [], validate: v::validate_endpoints, validate_update: v::validate_endpoints_update),
            resource!(core::ConfigMap, "", "v1", "ConfigMap", "configmaps", "configmap", namespaced: true,
                short: ["cm"], categories: [], sub: [], status: false,
                fields: [], validate: v::validate_config_map, validate_update: v::validate_config_map_update),
            resource!(core::Secret, "", "v1", "Secret", "secrets", "secret", namespaced: true,
                short: [], categories: [], sub: [], status: false,
                fields: ["type"], validate: v::validate_secret, validate_update: v::validate_secret_update),
            resource!(core::Event, "", "v1", "Event", "events", "event", namespaced: true,
                short: ["ev"], categories: [], sub: [], status: false,
                fields: ["involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
                         "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath",
                         "reason", "reportingComponent", "source", "type"],
                validate: v::validate_event, validate_update: v::validate_event_update),
            resource!(core::ServiceAccount, "", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount", namespaced: true,
                short: ["sa"], categories: [], sub: ["token"], status: false,
                fields: [], validate: v::validate_service_account, validate_update: v::validate_service_account_update),
            resource!(apps::Deployment, "apps", "v1", "Deployment", "deployments", "deployment", namespaced: true,
                short: ["deploy"], categories: ["all"], sub: ["status", "scale"], status: true,
                fields: [], validate: v::validate_deployment, validate_update: v::validate_deployment_update),
            resource!(apps::ReplicaSet, "apps", "v1", "ReplicaSet", "replicasets", "replicaset", namespaced: true,
                short: ["rs"], categories: ["all"], sub: ["status", "scale"], status: true,
                fields: ["status.replicas"], validate: v::validate_replica_set, validate_update: v::validate_replica_set_update),
            resource!(apps::DaemonSet, "apps", "v1", "DaemonSet", "daemonsets", "daemonset", namespaced: true,
                short: ["ds"], categories: ["all"], sub: ["status"], status: true,
                fields: [], validate: v::validate_daemon_set, validate_update: v::validate_daemon_set_update),
            resource!(batch::Job, "batch", "v1", "Job", "jobs", "job", namespaced: true,
                short: [], categories: ["all"], sub: ["status"], status: true,
                fields: ["status.successful"], validate: v::validate_job, validate_update: v::validate_job_update),
            resource!(coord::Lease, "coordination.k8s.io", "v1", "Lease", "leases", "lease", namespaced: true,
                short: [], categories: [], sub: [], status: false,
                fields: [], validate: v::validate_lease, validate_update: v::validate_lease_update),
            resource!(disc::EndpointSlice, "discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", "endpointslice", namespaced: true,
                short: [], categories: [], sub: [], status: false,
                fields: [], validate: v::validate_endpoint_slice, validate_update: v::validate_endpoint_slice_update),
            resource!(sched::PriorityClass, "scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", "priorityclass", namespaced: false,
                short: ["pc"], categories: [], sub: [], status: false,
                fields: [], validate: v::validate_priority_class, validate_update: v::validate_priority_class_update),
            resource!(rbac::Role, "rbac.authorization.k8s.io", "v1", "Role", "roles", "role", namespaced: true,
                short: [], categories: [], sub: [], status: false,
                fields: [], validate: v::validate_role, validate_update: v::validate_role_update),
            resource!(rbac::ClusterRole, "rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", "clusterrole", namespaced: false,
                short: [], categories: [], sub: [], status: false,
                fields: [], validate: v::validate_cluster_role, validate_update: v::validate_cluster_role_update),
            resource!(rbac::RoleBinding, "rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", "rolebinding", namespaced: true,
                short: [], categories: [], sub: [], status: false,
                fields: [], validate: v::validate_role_binding, validate_update: v::validate_role_binding_update),
            resource!(rbac::ClusterRoleBinding, "rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", "clusterrolebinding", namespaced: false,
                short: [], categories: [], sub: [], status: false,
                fields: [], validate: v::validate_cluster_role_binding, validate_update: v::validate_cluster_role_binding_update),
        ]
    })
}

/// Looks a resource up by group, version and plural name.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    all().iter().find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// Looks a resource up by kind (for ownerReference and event checks).
pub fn by_kind(kind: &str) -> Option<&'static ResourceInfo> {
    all().iter().find(|r| r.kind == kind)
}

/// The group-versions served, core first.
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in all() {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_found_with_upstream_paths() {
        let pods = find("", "v1", "pods").unwrap();
        let v = serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "bogus": 1},
            "spec": {"containers": [{"name": "c", "image": "x", "imagePullPolcy": "Always"}]}});
        let mut u = (pods.unknown_fields)(&v);
        u.sort();
        assert_eq!(u, vec!["metadata.bogus", "spec.containers[0].imagePullPolcy"]);
        let ok = serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": []}});
        assert!((pods.unknown_fields)(&ok).is_empty());
    }
}
