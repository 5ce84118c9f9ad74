//! The RBAC API group (`rbac.authorization.k8s.io/v1`) served like every other resource:
//! Roles, ClusterRoles, RoleBindings and ClusterRoleBindings through kube-rs's typed APIs, on
//! the apiserver in-process and a real etcd. Names are this file's own: the apiserver may
//! create default ClusterRoles and bindings at start, so lists are never assumed empty.

mod common;

use common::{cluster, raw};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::Status;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

const RBAC: &str = "rbac.authorization.k8s.io";

fn obj<T: DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("test object must deserialize")
}

/// The `Status` of an API error (or a panic naming what came back instead).
fn status(e: kube::Error) -> Box<Status> {
    match e {
        kube::Error::Api(s) => s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// The `field: message` pairs of a 422's causes.
fn causes(s: &Status) -> Vec<(String, String)> {
    assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"), "{s:?}");
    s.details.as_ref().expect("a 422 has details").causes.iter().map(|c| (c.field.clone(), c.message.clone())).collect()
}

fn names<K: kube::Resource>(items: &[K]) -> Vec<String> {
    items.iter().filter_map(|o| o.meta().name.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_and_cluster_roles_round_trip() {
    let (_etcd, server) = cluster().await;
    let client = server.client();

    // Role: create / get / list / update / delete.
    let roles: Api<Role> = Api::namespaced(client.clone(), "default");
    let role: Role = obj(json!({"metadata": {"name": "rbac-test-reader"},
        "rules": [{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list", "watch"]}]}));
    let created = roles.create(&PostParams::default(), &role).await.unwrap();
    assert!(created.metadata.uid.is_some());
    assert_eq!(created.metadata.namespace.as_deref(), Some("default"));
    let got = roles.get("rbac-test-reader").await.unwrap();
    assert_eq!(got.rules, role.rules);
    assert!(names(&roles.list(&ListParams::default()).await.unwrap().items).contains(&"rbac-test-reader".to_string()));
    let all: Api<Role> = Api::all(client.clone());
    assert!(names(&all.list(&ListParams::default()).await.unwrap().items).contains(&"rbac-test-reader".to_string()));

    let mut more = got.clone();
    more.rules.get_or_insert_with(Vec::new).push(obj(json!({"apiGroups": ["apps"], "resources": ["deployments"],
        "resourceNames": ["web"], "verbs": ["get", "patch"]})));
    let replaced = roles.replace("rbac-test-reader", &PostParams::default(), &more).await.unwrap();
    assert_eq!(replaced.rules.as_ref().map(Vec::len), Some(2));
    assert_eq!(roles.get("rbac-test-reader").await.unwrap().rules, more.rules);

    // A label selector over roles works like everywhere else.
    roles
        .patch(
            "rbac-test-reader",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"team": "a"}}})),
        )
        .await
        .unwrap();
    let labelled = roles.list(&ListParams::default().labels("team=a")).await.unwrap();
    assert_eq!(names(&labelled.items), ["rbac-test-reader"]);

    roles.delete("rbac-test-reader", &DeleteParams::default()).await.unwrap();
    let s = status(roles.get("rbac-test-reader").await.unwrap_err());
    assert_eq!((s.code, s.reason.as_str()), (404, "NotFound"));
    assert_eq!(s.message, "roles.rbac.authorization.k8s.io \"rbac-test-reader\" not found");

    // ClusterRole: cluster-scoped, with non-resource URLs and an aggregationRule that
    // round-trips as stored.
    let cluster_roles: Api<ClusterRole> = Api::all(client.clone());
    let cr: ClusterRole = obj(json!({"metadata": {"name": "rbac-test:monitoring"},
        "aggregationRule": {"clusterRoleSelectors": [
            {"matchLabels": {"rbac.example.com/aggregate-to-monitoring": "true"}},
            {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["ops"]}]}
        ]},
        "rules": [{"nonResourceURLs": ["/metrics", "/healthz/*"], "verbs": ["get"]},
                  {"apiGroups": ["*"], "resources": ["*"], "verbs": ["list"]}]}));
    let created = cluster_roles.create(&PostParams::default(), &cr).await.unwrap();
    assert_eq!(created.metadata.namespace, None);
    let got = cluster_roles.get("rbac-test:monitoring").await.unwrap();
    assert_eq!(got.aggregation_rule, cr.aggregation_rule, "aggregationRule is stored and read back");
    assert_eq!(got.rules, cr.rules);
    let listed = cluster_roles.list(&ListParams::default()).await.unwrap();
    let mine = listed.items.iter().find(|c| c.metadata.name.as_deref() == Some("rbac-test:monitoring")).unwrap();
    assert_eq!(mine.aggregation_rule, cr.aggregation_rule);

    let mut changed = got.clone();
    changed.aggregation_rule.as_mut().unwrap().cluster_role_selectors.as_mut().unwrap().truncate(1);
    let replaced = cluster_roles.replace("rbac-test:monitoring", &PostParams::default(), &changed).await.unwrap();
    assert_eq!(replaced.aggregation_rule.unwrap().cluster_role_selectors.unwrap().len(), 1);
    cluster_roles.delete("rbac-test:monitoring", &DeleteParams::default()).await.unwrap();
    assert_eq!(status(cluster_roles.get("rbac-test:monitoring").await.unwrap_err()).code, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_roles_are_refused_with_field_paths() {
    let (_etcd, server) = cluster().await;
    let client = server.client();
    let roles: Api<Role> = Api::namespaced(client.clone(), "default");

    // A rule without verbs (the key left out entirely, as a person writes it).
    let no_verbs: Role =
        obj(json!({"metadata": {"name": "rbac-test-bad"}, "rules": [{"apiGroups": [""], "resources": ["pods"]}]}));
    let s = status(roles.create(&PostParams::default(), &no_verbs).await.unwrap_err());
    assert_eq!(
        causes(&s),
        [("rules[0].verbs".to_string(), "Required value: verbs must contain at least one value".to_string())]
    );
    assert_eq!(
        s.message,
        "Role.rbac.authorization.k8s.io \"rbac-test-bad\" is invalid: rules[0].verbs: Required value: verbs must contain at least one value"
    );
    let details = s.details.as_ref().unwrap();
    assert_eq!((details.group.as_str(), details.kind.as_str(), details.name.as_str()), (RBAC, "Role", "rbac-test-bad"));
    assert_eq!(status(roles.get("rbac-test-bad").await.unwrap_err()).code, 404, "nothing was written");

    // Raw JSON with no `verbs` key at all is the same 422, not a decoding error.
    let (code, body) = raw(
        server.addr,
        "POST",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles",
        "application/json",
        serde_json::to_vec(&json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "rbac-test-raw"}, "rules": [{"apiGroups": [""], "resources": ["pods"]}]}))
        .unwrap(),
    )
    .await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(body["details"]["causes"][0]["field"], "rules[0].verbs");
    assert_eq!(body["details"]["causes"][0]["reason"], "FieldValueRequired");

    // Non-resource URLs belong in ClusterRoles; resource rules need groups and resources;
    // names are path segments.
    let urls: Role = obj(json!({"metadata": {"name": "rbac-test-urls"},
        "rules": [{"nonResourceURLs": ["/healthz"], "verbs": ["get"]}, {"verbs": ["get"]}]}));
    let c = causes(&status(roles.create(&PostParams::default(), &urls).await.unwrap_err()));
    let fields: Vec<&str> = c.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(fields, ["rules[0].nonResourceURLs", "rules[1].apiGroups", "rules[1].resources"]);
    assert!(c[0].1.ends_with("namespaced rules cannot apply to non-resource URLs"), "{c:?}");
    let slash: Role = obj(json!({"metadata": {"name": "a%b"}}));
    let c = causes(&status(roles.create(&PostParams::default(), &slash).await.unwrap_err()));
    assert_eq!(c, [("metadata.name".to_string(), "Invalid value: \"a%b\": may not contain '%'".to_string())]);

    // An update is validated too.
    let ok: Role = obj(json!({"metadata": {"name": "rbac-test-ok"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}));
    roles.create(&PostParams::default(), &ok).await.unwrap();
    let s = status(
        roles
            .patch(
                "rbac-test-ok",
                &PatchParams::default(),
                &Patch::Merge(json!({"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": []}]})),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(causes(&s)[0].0, "rules[0].verbs");

    // A ClusterRole may use non-resource URLs, but not mixed with resources; an empty
    // aggregationRule is refused.
    let cluster_roles: Api<ClusterRole> = Api::all(client.clone());
    let mixed: ClusterRole = obj(json!({"metadata": {"name": "rbac-test-mixed"},
        "aggregationRule": {"clusterRoleSelectors": []},
        "rules": [{"nonResourceURLs": ["/metrics"], "resources": ["pods"], "verbs": ["get"]}]}));
    let c = causes(&status(cluster_roles.create(&PostParams::default(), &mixed).await.unwrap_err()));
    let fields: Vec<&str> = c.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(fields, ["rules[0].nonResourceURLs", "aggregationRule.clusterRoleSelectors"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bindings_round_trip_and_keep_their_role_ref() {
    let (_etcd, server) = cluster().await;
    let client = server.client();

    // RoleBinding: the apiGroups of roleRef and of User/Group subjects are defaulted.
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), "default");
    let rb: RoleBinding = obj(json!({"metadata": {"name": "rbac-test-readers"},
        "roleRef": {"apiGroup": "", "kind": "Role", "name": "rbac-test-reader"},
        "subjects": [{"kind": "User", "name": "jane"},
                     {"kind": "Group", "apiGroup": RBAC, "name": "devs"},
                     {"kind": "ServiceAccount", "name": "builder"}]}));
    let created = bindings.create(&PostParams::default(), &rb).await.unwrap();
    assert_eq!(created.role_ref.api_group, RBAC, "roleRef.apiGroup defaults to the RBAC group");
    let subjects = created.subjects.clone().unwrap();
    assert_eq!(subjects[0].api_group.as_deref(), Some(RBAC), "User subjects default to the RBAC group");
    assert_eq!(subjects[2].api_group, None, "ServiceAccount subjects stay in the core group");
    assert_eq!(subjects[2].namespace, None, "a RoleBinding's ServiceAccount may leave its namespace out");

    let got = bindings.get("rbac-test-readers").await.unwrap();
    assert_eq!(got.role_ref, created.role_ref);
    assert!(
        names(&bindings.list(&ListParams::default()).await.unwrap().items).contains(&"rbac-test-readers".to_string())
    );

    // Subjects may change...
    let mut more = got.clone();
    more.subjects.as_mut().unwrap().push(obj(json!({"kind": "User", "apiGroup": RBAC, "name": "bob"})));
    let replaced = bindings.replace("rbac-test-readers", &PostParams::default(), &more).await.unwrap();
    assert_eq!(replaced.subjects.unwrap().len(), 4);

    // ... roleRef may not (PUT and PATCH alike).
    let mut other = bindings.get("rbac-test-readers").await.unwrap();
    other.role_ref.kind = "ClusterRole".into();
    other.role_ref.name = "view".into();
    let s = status(bindings.replace("rbac-test-readers", &PostParams::default(), &other).await.unwrap_err());
    assert_eq!(
        causes(&s),
        [(
            "roleRef".to_string(),
            "Invalid value: rbac.RoleRef{APIGroup:\"rbac.authorization.k8s.io\", Kind:\"ClusterRole\", Name:\"view\"}: cannot change roleRef"
                .to_string()
        )]
    );
    let s = status(
        bindings
            .patch(
                "rbac-test-readers",
                &PatchParams::default(),
                &Patch::Merge(json!({"roleRef": {"name": "someone-else"}})),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(causes(&s)[0].0, "roleRef");
    assert_eq!(bindings.get("rbac-test-readers").await.unwrap().role_ref.name, "rbac-test-reader", "unchanged");

    // Bad subjects and role references on create.
    let bad: RoleBinding = obj(json!({"metadata": {"name": "rbac-test-bad"},
        "roleRef": {"apiGroup": "example.com", "kind": "Widget", "name": "x"},
        "subjects": [{"kind": "Robot", "name": "r2"}, {"kind": "ServiceAccount", "name": "Bad_Name"},
                     {"kind": "User", "apiGroup": "example.com", "name": "eve"}]}));
    let c = causes(&status(bindings.create(&PostParams::default(), &bad).await.unwrap_err()));
    let fields: Vec<&str> = c.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        fields,
        ["roleRef.apiGroup", "roleRef.kind", "subjects[0].kind", "subjects[1].name", "subjects[2].apiGroup"]
    );

    bindings.delete("rbac-test-readers", &DeleteParams::default()).await.unwrap();
    assert_eq!(status(bindings.get("rbac-test-readers").await.unwrap_err()).code, 404);

    // ClusterRoleBinding: only ClusterRoles, ServiceAccounts with a namespace.
    let crbs: Api<ClusterRoleBinding> = Api::all(client.clone());
    let crb: ClusterRoleBinding = obj(json!({"metadata": {"name": "rbac-test-admins"},
        "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "Group", "name": "rbac-test:admins"},
                     {"kind": "ServiceAccount", "name": "default", "namespace": "kube-system"}]}));
    let created = crbs.create(&PostParams::default(), &crb).await.unwrap();
    assert_eq!(created.subjects.as_ref().unwrap()[0].api_group.as_deref(), Some(RBAC));
    let got = crbs.get("rbac-test-admins").await.unwrap();
    assert_eq!(got.role_ref.name, "cluster-admin");
    assert!(names(&crbs.list(&ListParams::default()).await.unwrap().items).contains(&"rbac-test-admins".to_string()));
    let mut fewer = got.clone();
    fewer.subjects.as_mut().unwrap().truncate(1);
    let replaced = crbs.replace("rbac-test-admins", &PostParams::default(), &fewer).await.unwrap();
    assert_eq!(replaced.subjects.unwrap().len(), 1);
    let mut renamed = crbs.get("rbac-test-admins").await.unwrap();
    renamed.role_ref.name = "view".into();
    let s = status(crbs.replace("rbac-test-admins", &PostParams::default(), &renamed).await.unwrap_err());
    assert_eq!(causes(&s)[0].0, "roleRef");
    assert!(causes(&s)[0].1.ends_with("cannot change roleRef"));

    let to_role: ClusterRoleBinding = obj(json!({"metadata": {"name": "rbac-test-to-role"},
        "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": "r"},
        "subjects": [{"kind": "ServiceAccount", "name": "default"}]}));
    let c = causes(&status(crbs.create(&PostParams::default(), &to_role).await.unwrap_err()));
    assert_eq!(
        c,
        [
            ("roleRef.kind".to_string(), "Unsupported value: \"Role\": supported values: \"ClusterRole\"".to_string()),
            ("subjects[0].namespace".to_string(), "Required value".to_string()),
        ]
    );

    crbs.delete("rbac-test-admins", &DeleteParams::default()).await.unwrap();
    assert_eq!(status(crbs.get("rbac-test-admins").await.unwrap_err()).code, 404);
}

/// Server-side apply and strategic merge patch over RBAC objects: lists are atomic (upstream's
/// `listType=atomic`), so an applied rule list replaces the old one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_and_patch_replace_rule_lists() {
    let (_etcd, server) = cluster().await;
    let client = server.client();
    let roles: Api<Role> = Api::namespaced(client.clone(), "default");
    let pp = PatchParams::apply("rbac-test").force();
    let v1 = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "rbac-test-applied"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
                  {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]});
    roles.patch("rbac-test-applied", &pp, &Patch::Apply(&v1)).await.unwrap();
    let v2 = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "rbac-test-applied"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}]});
    let out = roles.patch("rbac-test-applied", &pp, &Patch::Apply(&v2)).await.unwrap();
    let rules = serde_json::to_value(out.rules).unwrap();
    assert_eq!(rules, json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}]));
    let mf = out.metadata.managed_fields.unwrap();
    let fields = serde_json::to_value(&mf[0].fields_v1).unwrap();
    assert_eq!(fields["f:rules"], json!({}), "rules are one atomic leaf: {fields}");

    let out = roles
        .patch(
            "rbac-test-applied",
            &PatchParams::default(),
            &Patch::Strategic(
                json!({"rules": [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]}]}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(out.rules.unwrap().len(), 1, "a strategic merge patch replaces the atomic list");
}
