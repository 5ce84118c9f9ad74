//! The default roles and bindings, as upstream's `bootstrappolicy`: created at every start
//! when missing, and their rules restored when they differ (the objects carry
//! `rbac.authorization.kubernetes.io/autoupdate: "true"`, as upstream's).
//!
//! - `cluster-admin` (everything), bound to the group `system:masters`.
//! - `admin`, `edit`, `view`: aggregated roles (`aggregationRule` over the
//!   `rbac.authorization.k8s.io/aggregate-to-{admin,edit,view}` labels) for RoleBindings in a
//!   namespace; `view ⊂ edit ⊂ admin`, `view` never reads Secrets. Their rules are computed
//!   here from the `system:aggregate-to-*` roles when created, and kept current by the
//!   controller-manager's clusterrole-aggregation controller as other roles join.
//! - `system:basic-user` (self reviews), `system:discovery` (discovery and OpenAPI) for
//!   authenticated users, `system:public-info-viewer` (health, version) for everyone.
//! - The components, by the users their client certificates name: `system:kube-scheduler`,
//!   `system:kube-controller-manager`, `system:kube-proxy` (role `system:node-proxier`),
//!   `system:skiff-dns` (role `skiff:dns`), every node (group `system:nodes`, role
//!   `system:node`), and the apiserver dialing kubelets (`kube-apiserver-kubelet-client`,
//!   role `system:kubelet-api-admin`).
//! - Each controller's own role, `system:controller:<account>`, bound to ServiceAccount
//!   `kube-system/<account>` ([`controller_roles`]); the controller-manager's own role only
//!   covers its Lease and making those accounts' tokens.

use k8s_openapi::api::rbac::v1::ClusterRole;
use serde_json::{json, Value};

use crate::bootstrap::ensure_object;
use crate::error::ApiError;
use crate::registry::{ListQuery, Registry, Target};
use crate::resources;

const AUTOUPDATE: &str = "rbac.authorization.kubernetes.io/autoupdate";
const READ: [&str; 3] = ["get", "list", "watch"];
const WRITE: [&str; 5] = ["create", "delete", "deletecollection", "patch", "update"];

fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> Value {
    json!({"verbs": verbs, "apiGroups": groups, "resources": resources})
}

fn cluster_role(name: &str, labels: Value, rules: Vec<Value>) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": name, "labels": merge(json!({"kubernetes.io/bootstrapping": "rbac-defaults"}), labels),
                     "annotations": {AUTOUPDATE: "true"}},
        "rules": rules})
}

fn aggregated(name: &str, labels: Value, selector: &str) -> Value {
    let mut role = cluster_role(name, labels, vec![]);
    role["aggregationRule"] = json!({"clusterRoleSelectors": [{"matchLabels": {selector: "true"}}]});
    role
}

fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(a), Some(b)) = (a.as_object_mut(), b.as_object()) {
        for (k, v) in b {
            a.insert(k.clone(), v.clone());
        }
    }
    a
}

fn binding(name: &str, role: &str, subjects: Value) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}, "annotations": {AUTOUPDATE: "true"}},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": subjects})
}

fn user(name: &str) -> Value {
    json!({"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": name})
}

fn group(name: &str) -> Value {
    json!({"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": name})
}

/// The default ClusterRoles (aggregated ones still without rules).
pub fn cluster_roles() -> Vec<Value> {
    let to = |role: &str| json!({format!("rbac.authorization.k8s.io/aggregate-to-{role}"): "true"});
    let view_resources = [
        "pods",
        "pods/log",
        "pods/status",
        "services",
        "services/status",
        "endpoints",
        "configmaps",
        "events",
        "serviceaccounts",
        "namespaces",
        "namespaces/status",
    ];
    let apps = [
        "deployments",
        "deployments/scale",
        "deployments/status",
        "replicasets",
        "replicasets/scale",
        "replicasets/status",
        "daemonsets",
        "daemonsets/status",
    ];
    vec![
        cluster_role(
            "cluster-admin",
            json!({}),
            vec![rule(&["*"], &["*"], &["*"]), json!({"verbs": ["*"], "nonResourceURLs": ["*"]})],
        ),
        aggregated("admin", json!({}), "rbac.authorization.k8s.io/aggregate-to-admin"),
        aggregated("edit", to("admin"), "rbac.authorization.k8s.io/aggregate-to-edit"),
        aggregated("view", merge(to("edit"), to("admin")), "rbac.authorization.k8s.io/aggregate-to-view"),
        cluster_role(
            "system:aggregate-to-view",
            to("view"),
            vec![
                rule(&READ, &[""], &view_resources),
                rule(&READ, &["apps"], &apps),
                rule(&READ, &["batch"], &["jobs", "jobs/status"]),
                rule(&READ, &["discovery.k8s.io"], &["endpointslices"]),
                rule(&READ, &["coordination.k8s.io"], &["leases"]),
            ],
        ),
        cluster_role(
            "system:aggregate-to-edit",
            to("edit"),
            vec![
                rule(
                    &WRITE,
                    &[""],
                    &["pods", "services", "endpoints", "configmaps", "secrets", "serviceaccounts", "events"],
                ),
                rule(&READ, &[""], &["secrets"]),
                rule(&["create", "get"], &[""], &["pods/exec", "pods/attach", "pods/portforward"]),
                rule(&["create"], &[""], &["pods/eviction"]),
                rule(&WRITE, &["apps"], &apps),
                rule(&WRITE, &["batch"], &["jobs"]),
                rule(&WRITE, &["discovery.k8s.io"], &["endpointslices"]),
                rule(&WRITE, &["coordination.k8s.io"], &["leases"]),
            ],
        ),
        cluster_role(
            "system:aggregate-to-admin",
            to("admin"),
            vec![
                rule(&["*"], &["rbac.authorization.k8s.io"], &["roles", "rolebindings"]),
                rule(&["create"], &["authorization.k8s.io"], &["localsubjectaccessreviews"]),
            ],
        ),
        cluster_role(
            "system:basic-user",
            json!({}),
            vec![
                rule(&["create"], &["authorization.k8s.io"], &["selfsubjectaccessreviews", "selfsubjectrulesreviews"]),
                rule(&["create"], &["authentication.k8s.io"], &["selfsubjectreviews"]),
            ],
        ),
        cluster_role(
            "system:discovery",
            json!({}),
            vec![
                json!({"verbs": ["get"], "nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/openapi", "/openapi/*", "/healthz", "/livez", "/readyz", "/version", "/version/"]}),
            ],
        ),
        // The components' own identities (client certificates: CN = user). Upstream splits
        // the controller-manager into one service account per controller; Skiff's runs as one
        // user with the union of what its controllers write.
        cluster_role(
            "system:kube-scheduler",
            json!({}),
            vec![
                rule(
                    &READ,
                    &[""],
                    &[
                        "pods",
                        "nodes",
                        "namespaces",
                        "services",
                        "persistentvolumeclaims",
                        "persistentvolumes",
                        "replicationcontrollers",
                    ],
                ),
                rule(&READ, &["apps"], &["replicasets", "statefulsets"]),
                rule(&READ, &["policy"], &["poddisruptionbudgets"]),
                rule(&READ, &["storage.k8s.io"], &["storageclasses", "csinodes", "csidrivers", "csistoragecapacities"]),
                rule(&READ, &["scheduling.k8s.io"], &["priorityclasses"]),
                rule(&["create"], &[""], &["pods/binding", "bindings"]),
                rule(&["patch", "update"], &[""], &["pods/status"]),
                rule(&["delete"], &[""], &["pods"]),
                rule(&["create", "patch", "update"], &["", "events.k8s.io"], &["events"]),
                rule(&["create", "get", "list", "watch", "update"], &["coordination.k8s.io"], &["leases"]),
            ],
        ),
        cluster_role(
            "system:kube-controller-manager",
            json!({}),
            // Its own work only: leader election, and the controllers' accounts and tokens
            // (each controller acts as its own account, `controller_roles`). A manager run
            // with --use-service-account-credentials=false needs those roles bound to it.
            vec![
                rule(&["create", "get", "update", "patch", "delete"], &["coordination.k8s.io"], &["leases"]),
                rule(&["get", "create"], &[""], &["serviceaccounts"]),
                rule(&["create"], &[""], &["serviceaccounts/token"]),
                rule(&READ, &[""], &["namespaces"]),
                rule(&["create", "patch", "update"], &["", "events.k8s.io"], &["events"]),
            ],
        ),
        cluster_role(
            "system:node",
            json!({}),
            vec![
                // Secrets, ConfigMaps and PersistentVolumeClaims: only those its own pods
                // refer to, through the Node authorizer (`--authorization-mode=Node,RBAC`).
                rule(&READ, &[""], &["nodes", "pods", "services", "endpoints"]),
                rule(&READ, &["discovery.k8s.io"], &["endpointslices"]),
                rule(
                    &["create", "get", "list", "watch", "update", "patch", "delete"],
                    &[""],
                    &["nodes", "nodes/status"],
                ),
                rule(&["create", "delete", "patch", "update"], &[""], &["pods", "pods/status"]),
                rule(&["create"], &[""], &["pods/eviction"]),
                rule(&["create", "patch", "update"], &["", "events.k8s.io"], &["events"]),
                rule(
                    &["create", "get", "list", "watch", "update", "patch", "delete"],
                    &["coordination.k8s.io"],
                    &["leases"],
                ),
                rule(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
                rule(&["create"], &["authorization.k8s.io"], &["subjectaccessreviews"]),
            ],
        ),
        cluster_role(
            "system:node-proxier",
            json!({}),
            vec![
                rule(&READ, &[""], &["services", "endpoints", "nodes"]),
                rule(&READ, &["discovery.k8s.io"], &["endpointslices"]),
                rule(&["create", "patch", "update"], &["", "events.k8s.io"], &["events"]),
            ],
        ),
        cluster_role(
            "skiff:dns",
            json!({}),
            vec![
                rule(&READ, &[""], &["services", "endpoints", "pods", "namespaces"]),
                rule(&READ, &["discovery.k8s.io"], &["endpointslices"]),
                // It registers itself behind kube-system/kube-dns.
                rule(&["create", "get", "update", "patch"], &[""], &["services"]),
                rule(&["create", "get", "update", "patch", "delete"], &["discovery.k8s.io"], &["endpointslices"]),
            ],
        ),
        // Full access to the kubelet API (upstream's role; bound, as kubeadm does, to the
        // user of the apiserver's `--kubelet-client-certificate`).
        cluster_role(
            "system:kubelet-api-admin",
            json!({}),
            vec![
                rule(&READ, &[""], &["nodes"]),
                rule(&["proxy"], &[""], &["nodes"]),
                rule(&["*"], &[""], &["nodes/proxy", "nodes/metrics", "nodes/spec", "nodes/stats", "nodes/log"]),
            ],
        ),
        cluster_role(
            "system:public-info-viewer",
            json!({}),
            vec![
                json!({"verbs": ["get"], "nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"]}),
            ],
        ),
    ]
    .into_iter()
    .chain(controller_roles().into_iter().map(|(name, rules)| cluster_role(&format!("system:controller:{name}"), json!({}), rules)))
    .collect()
}

/// The controllers' own roles (`system:controller:<account>`), for a controller-manager that
/// runs each controller as ServiceAccount `kube-system/<account>`
/// (`--use-service-account-credentials`), as upstream's `controller_policy.go`: each may do
/// what its loop does, and no more.
pub fn controller_roles() -> Vec<(&'static str, Vec<Value>)> {
    let events = || rule(&["create", "patch", "update"], &["", "events.k8s.io"], &["events"]);
    let owned = |group: &str, plural: &str| {
        vec![
            rule(&["get", "list", "watch", "update", "patch"], &[group], &[plural]),
            rule(&["update", "patch"], &[group], &[&format!("{plural}/status")]),
            rule(&["update"], &[group], &[&format!("{plural}/finalizers")]),
        ]
    };
    let all = ["get", "list", "watch", "create", "update", "patch", "delete"];
    let pods = rule(&all, &[""], &["pods"]);
    vec![
        (
            "generic-garbage-collector",
            vec![rule(&["get", "list", "watch", "patch", "update", "delete"], &["*"], &["*"]), events()],
        ),
        ("replicaset-controller", [owned("apps", "replicasets"), vec![pods.clone(), events()]].concat()),
        (
            "deployment-controller",
            [
                owned("apps", "deployments"),
                vec![
                    rule(&all, &["apps"], &["replicasets"]),
                    rule(&["get", "list", "watch", "update", "patch"], &[""], &["pods"]),
                    events(),
                ],
            ]
            .concat(),
        ),
        (
            "daemon-set-controller",
            [
                owned("apps", "daemonsets"),
                vec![
                    rule(&READ, &[""], &["nodes"]),
                    pods.clone(),
                    rule(&["create"], &[""], &["pods/binding"]),
                    rule(&all, &["apps"], &["controllerrevisions"]),
                    events(),
                ],
            ]
            .concat(),
        ),
        ("job-controller", [owned("batch", "jobs"), vec![pods.clone(), events()]].concat()),
        (
            "endpoint-controller",
            vec![
                rule(&READ, &[""], &["services", "pods", "nodes"]),
                rule(&all, &[""], &["endpoints"]),
                rule(&["create"], &[""], &["endpoints/restricted"]),
                rule(&all, &["discovery.k8s.io"], &["endpointslices"]),
                rule(&["update"], &[""], &["services/finalizers"]),
                events(),
            ],
        ),
        (
            "node-controller",
            vec![
                rule(&["get", "list", "watch", "update", "patch", "delete"], &[""], &["nodes"]),
                rule(&["update", "patch"], &[""], &["nodes/status", "pods/status"]),
                rule(&["get", "list", "watch", "delete", "patch"], &[""], &["pods"]),
                rule(&["create"], &[""], &["pods/eviction"]),
                rule(&READ, &["coordination.k8s.io"], &["leases"]),
                events(),
            ],
        ),
        ("node-ipam-controller", vec![rule(&["get", "list", "watch", "update", "patch"], &[""], &["nodes"]), events()]),
        (
            "service-account-controller",
            vec![
                rule(&["get", "list", "watch", "create"], &[""], &["serviceaccounts"]),
                rule(&READ, &[""], &["namespaces"]),
                events(),
            ],
        ),
        (
            "root-ca-cert-publisher",
            vec![
                rule(&["get", "list", "watch", "create", "update"], &[""], &["configmaps"]),
                rule(&READ, &[""], &["namespaces"]),
                events(),
            ],
        ),
        (
            "clusterrole-aggregation-controller",
            vec![rule(
                &["escalate", "get", "list", "watch", "update", "patch"],
                &["rbac.authorization.k8s.io"],
                &["clusterroles"],
            )],
        ),
    ]
}

/// The user the apiserver's kubelet client certificate names (kubeadm's CN), bound to
/// `system:kubelet-api-admin`.
pub const KUBELET_CLIENT_USER: &str = "kube-apiserver-kubelet-client";

/// The default ClusterRoleBindings.
pub fn cluster_role_bindings() -> Vec<Value> {
    let controllers = controller_roles().into_iter().map(|(name, _)| {
        let role = format!("system:controller:{name}");
        binding(&role, &role, json!([{"kind": "ServiceAccount", "name": name, "namespace": "kube-system"}]))
    });
    vec![
        binding("cluster-admin", "cluster-admin", json!([group("system:masters")])),
        binding("system:basic-user", "system:basic-user", json!([group("system:authenticated")])),
        binding("system:discovery", "system:discovery", json!([group("system:authenticated")])),
        binding("system:kube-scheduler", "system:kube-scheduler", json!([user("system:kube-scheduler")])),
        binding(
            "system:kube-controller-manager",
            "system:kube-controller-manager",
            json!([user("system:kube-controller-manager")]),
        ),
        binding("system:node", "system:node", json!([group("system:nodes")])),
        binding("system:node-proxier", "system:node-proxier", json!([user("system:kube-proxy")])),
        binding("skiff:dns", "skiff:dns", json!([user("system:skiff-dns")])),
        binding("kube-apiserver-kubelet-client", "system:kubelet-api-admin", json!([user(KUBELET_CLIENT_USER)])),
        binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            json!([group("system:authenticated"), group("system:unauthenticated")]),
        ),
    ]
    .into_iter()
    .chain(controllers)
    .collect()
}

/// Fills the aggregated roles' rules from the others, innermost first (view feeds edit
/// feeds admin), as the aggregation controller would converge to.
pub fn with_aggregated_rules(mut roles: Vec<Value>) -> Vec<Value> {
    for _ in 0..3 {
        let typed: Vec<ClusterRole> = roles.iter().filter_map(|r| serde_json::from_value(r.clone()).ok()).collect();
        for (i, role) in typed.iter().enumerate() {
            if let Some(rules) = skiff_api::rbac::aggregated_rules(role, &typed) {
                roles[i]["rules"] = serde_json::to_value(rules).unwrap_or_default();
            }
        }
    }
    roles
}

fn target(plural: &str) -> Target {
    Target {
        resource: resources::find("rbac.authorization.k8s.io", "v1", plural).expect("the RBAC group is served"),
        namespace: None,
    }
}

/// Creates the default roles and bindings that are missing; restores changed ones.
pub async fn ensure(reg: &Registry) -> Result<(), ApiError> {
    for role in with_aggregated_rules(cluster_roles()) {
        // Aggregated roles' rules belong to the aggregation controller once they exist.
        let compare: &[&str] = if role["aggregationRule"].is_object() { &["/aggregationRule"] } else { &["/rules"] };
        ensure_object(reg, &target("clusterroles"), role, compare).await?;
    }
    for b in cluster_role_bindings() {
        ensure_object(reg, &target("clusterrolebindings"), b, &["/subjects"]).await?;
    }
    // The authorizer reads the watch caches: wait until they hold what was just written,
    // so the first request after "ready" sees the default policy.
    for plural in ["clusterroles", "clusterrolebindings"] {
        let t = target(plural);
        let (items, _, _, _) = reg.list(&t, &ListQuery::default()).await?;
        let newest = items
            .iter()
            .filter_map(|o| o.pointer("/metadata/resourceVersion").and_then(Value::as_str)?.parse::<i64>().ok())
            .max()
            .unwrap_or(0);
        if !reg.cache(t.resource).wait_for(newest, std::time::Duration::from_secs(10)).await {
            return Err(ApiError::Timeout(format!("the {plural} watch cache did not reach revision {newest}")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::rbac::{rule_allows, Attributes};

    fn allows(role: &Value, verb: &str, group: &str, resource: &str) -> bool {
        let typed: ClusterRole = serde_json::from_value(role.clone()).unwrap();
        let a = Attributes {
            verb: verb.into(),
            resource_request: true,
            api_group: group.into(),
            resource: resource.split('/').next().unwrap().into(),
            subresource: resource.split('/').nth(1).unwrap_or("").into(),
            namespace: "d".into(),
            ..Default::default()
        };
        typed.rules.iter().flatten().any(|r| rule_allows(r, &a))
    }

    #[test]
    fn view_edit_admin_nest_and_view_never_reads_secrets() {
        let roles = with_aggregated_rules(cluster_roles());
        let by = |n: &str| roles.iter().find(|r| r["metadata"]["name"] == n).unwrap().clone();
        let (view, edit, admin) = (by("view"), by("edit"), by("admin"));
        assert!(allows(&view, "list", "", "pods") && allows(&view, "get", "apps", "deployments"));
        assert!(!allows(&view, "get", "", "secrets"), "view does not read secrets");
        assert!(!allows(&view, "create", "", "pods"));
        assert!(allows(&edit, "create", "", "pods") && allows(&edit, "list", "", "pods"), "edit includes view");
        assert!(allows(&edit, "get", "", "secrets") && allows(&edit, "create", "", "pods/exec"));
        assert!(!allows(&edit, "create", "rbac.authorization.k8s.io", "rolebindings"));
        assert!(allows(&admin, "create", "rbac.authorization.k8s.io", "rolebindings"), "admin manages access");
        assert!(allows(&admin, "delete", "apps", "deployments"), "admin includes edit");
        for r in &roles {
            let typed: Result<ClusterRole, _> = serde_json::from_value(r.clone());
            assert!(typed.is_ok(), "{r}");
        }
    }
}
