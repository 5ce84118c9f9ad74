//! RBAC evaluation as upstream's `plugin/pkg/auth/authorizer/rbac`: pure functions over
//! request attributes and the Role/ClusterRole/RoleBinding/ClusterRoleBinding objects, so
//! the apiserver's authorizer, `SubjectAccessReview`s and tests share one implementation.
//!
//! A request is allowed when any rule reachable from the user is allowed: rules of every
//! ClusterRoleBinding whose subjects match the user (cluster-wide), then rules of every
//! RoleBinding in the request's namespace whose subjects match (that namespace only).
//! Members of `system:masters` are always allowed (upstream's privileged-group authorizer).

use std::sync::Arc;

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// The group whose members may do everything.
pub const SYSTEM_MASTERS: &str = "system:masters";

/// Who asks and what they ask for (upstream's `authorizer.Attributes`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attributes {
    pub user: String,
    pub groups: Vec<String>,
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`,
    /// or for other verbs the ones RBAC names (`impersonate`, `bind`, `escalate`, `use`).
    pub verb: String,
    /// Whether this is a request for an API resource (else a non-resource path).
    pub resource_request: bool,
    pub namespace: String,
    pub api_group: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
    /// The URL path of a non-resource request (`/healthz`, `/api`).
    pub path: String,
}

impl Attributes {
    /// Upstream's forbidden message, e.g. `User "alice" cannot list resource "pods" in API
    /// group "" in the namespace "default"`.
    pub fn forbidden_message(&self) -> String {
        if !self.resource_request {
            return format!("User {:?} cannot {} path {:?}", self.user, self.verb, self.path);
        }
        let mut resource = self.resource.clone();
        if !self.subresource.is_empty() {
            resource = format!("{resource}/{}", self.subresource);
        }
        if self.namespace.is_empty() {
            format!(
                "User {:?} cannot {} resource {resource:?} in API group {:?} at the cluster scope",
                self.user, self.verb, self.api_group
            )
        } else {
            format!(
                "User {:?} cannot {} resource {resource:?} in API group {:?} in the namespace {:?}",
                self.user, self.verb, self.api_group, self.namespace
            )
        }
    }
}

fn has(list: &[String], want: &str) -> bool {
    list.iter().any(|v| v == want)
}

/// Whether one rule allows the request (upstream's `RuleAllows`).
pub fn rule_allows(rule: &PolicyRule, a: &Attributes) -> bool {
    let verb = rule.verbs.iter().any(|v| v == "*" || *v == a.verb);
    if !verb {
        return false;
    }
    if !a.resource_request {
        return rule
            .non_resource_urls
            .iter()
            .flatten()
            .any(|u| u == "*" || *u == a.path || (u.ends_with('*') && a.path.starts_with(u.trim_end_matches('*'))));
    }
    let groups = rule.api_groups.iter().flatten().any(|g| g == "*" || *g == a.api_group);
    let combined =
        if a.subresource.is_empty() { a.resource.clone() } else { format!("{}/{}", a.resource, a.subresource) };
    let resources = rule.resources.iter().flatten().any(|r| {
        r == "*"
            || *r == combined
            || (!a.subresource.is_empty() && r.strip_prefix("*/").is_some_and(|s| s == a.subresource))
    });
    let names = match &rule.resource_names {
        None => true,
        Some(n) if n.is_empty() => true,
        Some(n) => has(n, &a.name),
    };
    groups && resources && names
}

/// The username of a ServiceAccount: `system:serviceaccount:<ns>:<name>`.
pub fn service_account_user(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// Whether a binding subject is this user (`binding_ns`: the RoleBinding's namespace, the
/// default for ServiceAccount subjects without one; empty for ClusterRoleBindings).
pub fn subject_matches(s: &Subject, user: &str, groups: &[String], binding_ns: &str) -> bool {
    match s.kind.as_str() {
        "User" => s.name == user,
        "Group" => has(groups, &s.name),
        "ServiceAccount" => {
            let ns = s.namespace.as_deref().filter(|n| !n.is_empty()).unwrap_or(binding_ns);
            !ns.is_empty() && user == service_account_user(ns, &s.name)
        }
        _ => false,
    }
}

/// The RBAC objects one decision looks at: every ClusterRoleBinding and ClusterRole (shared:
/// the apiserver decodes them once per change, not per request) and the request namespace's
/// RoleBindings and Roles.
#[derive(Debug, Default, Clone)]
pub struct Objects {
    pub crbs: Arc<Vec<ClusterRoleBinding>>,
    pub crs: Arc<Vec<ClusterRole>>,
    pub rbs: Vec<RoleBinding>,
    pub roles: Vec<Role>,
}

impl Objects {
    fn cluster_role(&self, name: &str) -> Option<&ClusterRole> {
        self.crs.iter().find(|c| c.metadata.name.as_deref() == Some(name))
    }

    fn role(&self, ns: &str, name: &str) -> Option<&Role> {
        self.roles
            .iter()
            .find(|r| r.metadata.namespace.as_deref() == Some(ns) && r.metadata.name.as_deref() == Some(name))
    }

    /// The rules a role reference grants (a Role is looked up in the binding's namespace).
    pub fn role_ref_rules(&self, r: &RoleRef, namespace: &str) -> &[PolicyRule] {
        let rules = match r.kind.as_str() {
            "ClusterRole" => self.cluster_role(&r.name).and_then(|c| c.rules.as_ref()),
            "Role" if !namespace.is_empty() => self.role(namespace, &r.name).and_then(|c| c.rules.as_ref()),
            _ => None,
        };
        rules.map_or(&[], Vec::as_slice)
    }
}

/// The decision and, when allowed, which binding allowed it (upstream's reason string).
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Allow(String),
    /// No rule allows it (RBAC never denies explicitly; the next authorizer may allow).
    NoOpinion,
}

/// Upstream's `RBACAuthorizer.Authorize` (plus the `system:masters` short-circuit).
pub fn authorize(src: &Objects, a: &Attributes) -> Decision {
    if has(&a.groups, SYSTEM_MASTERS) {
        return Decision::Allow(format!("the user is in {SYSTEM_MASTERS}"));
    }
    for b in src.crbs.iter() {
        if !b.subjects.iter().flatten().any(|s| subject_matches(s, &a.user, &a.groups, "")) {
            continue;
        }
        if src.role_ref_rules(&b.role_ref, "").iter().any(|r| rule_allows(r, a)) {
            return Decision::Allow(format!(
                "RBAC: allowed by ClusterRoleBinding {:?} of ClusterRole {:?}",
                b.metadata.name.as_deref().unwrap_or_default(),
                b.role_ref.name
            ));
        }
    }
    if !a.namespace.is_empty() {
        for b in src.rbs.iter().filter(|b| b.metadata.namespace.as_deref() == Some(a.namespace.as_str())) {
            if !b.subjects.iter().flatten().any(|s| subject_matches(s, &a.user, &a.groups, &a.namespace)) {
                continue;
            }
            if src.role_ref_rules(&b.role_ref, &a.namespace).iter().any(|r| rule_allows(r, a)) {
                return Decision::Allow(format!(
                    "RBAC: allowed by RoleBinding {:?} of {} {:?} to the namespace {:?}",
                    b.metadata.name.as_deref().unwrap_or_default(),
                    b.role_ref.kind,
                    b.role_ref.name,
                    a.namespace
                ));
            }
        }
    }
    Decision::NoOpinion
}

/// The rules of an aggregated ClusterRole: the union (without repeats, in order) of the
/// rules of every other ClusterRole matching any of its `clusterRoleSelectors`, as
/// upstream's clusterrole-aggregation controller computes them.
pub fn aggregated_rules(role: &ClusterRole, all: &[ClusterRole]) -> Option<Vec<PolicyRule>> {
    let selectors: &Vec<LabelSelector> = role.aggregation_rule.as_ref()?.cluster_role_selectors.as_ref()?;
    let own = role.metadata.name.as_deref();
    let mut sources: Vec<&ClusterRole> = all
        .iter()
        .filter(|c| c.metadata.name.as_deref() != own)
        .filter(|c| {
            let labels = c.metadata.labels.clone().unwrap_or_default();
            selectors.iter().any(|s| crate::selector::LabelSelector::from_meta(s).is_ok_and(|sel| sel.matches(&labels)))
        })
        .collect();
    sources.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut rules: Vec<PolicyRule> = vec![];
    for c in sources {
        for r in c.rules.iter().flatten() {
            if !rules.contains(r) {
                rules.push(r.clone());
            }
        }
    }
    Some(rules)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(v: serde_json::Value) -> PolicyRule {
        serde_json::from_value(v).unwrap()
    }

    fn res(verb: &str, ns: &str, group: &str, resource: &str, sub: &str, name: &str) -> Attributes {
        Attributes {
            user: "alice".into(),
            groups: vec!["system:authenticated".into()],
            verb: verb.into(),
            resource_request: true,
            namespace: ns.into(),
            api_group: group.into(),
            resource: resource.into(),
            subresource: sub.into(),
            name: name.into(),
            path: String::new(),
        }
    }

    #[test]
    fn rules_match_as_upstream() {
        let pods = rule(json!({"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}));
        assert!(rule_allows(&pods, &res("get", "d", "", "pods", "", "x")));
        assert!(!rule_allows(&pods, &res("delete", "d", "", "pods", "", "x")));
        assert!(!rule_allows(&pods, &res("get", "d", "apps", "pods", "", "x")), "group must match");
        assert!(!rule_allows(&pods, &res("get", "d", "", "pods", "log", "x")), "subresources are separate");
        let logs = rule(json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods/log"]}));
        assert!(rule_allows(&logs, &res("get", "d", "", "pods", "log", "x")));
        let any_status = rule(json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*/status"]}));
        assert!(rule_allows(&any_status, &res("patch", "d", "apps", "deployments", "status", "x")));
        assert!(!rule_allows(&any_status, &res("patch", "d", "apps", "deployments", "", "x")));
        let named =
            rule(json!({"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["cfg"]}));
        assert!(rule_allows(&named, &res("get", "d", "", "configmaps", "", "cfg")));
        assert!(!rule_allows(&named, &res("get", "d", "", "configmaps", "", "other")));
        assert!(!rule_allows(&named, &res("list", "d", "", "configmaps", "", "")), "a named rule never allows list");
        let urls = rule(json!({"verbs": ["get"], "nonResourceURLs": ["/healthz", "/apis/*"]}));
        let path = |p: &str| Attributes { verb: "get".into(), path: p.into(), ..Default::default() };
        assert!(rule_allows(&urls, &path("/healthz")));
        assert!(rule_allows(&urls, &path("/apis/apps/v1")));
        assert!(!rule_allows(&urls, &path("/api")));
        assert!(!rule_allows(&urls, &res("get", "", "", "pods", "", "")), "URL rules grant no resources");
    }

    #[test]
    fn subjects_match_users_groups_and_service_accounts() {
        let s = |v: serde_json::Value| -> Subject { serde_json::from_value(v).unwrap() };
        let groups = vec!["dev".to_string()];
        assert!(subject_matches(&s(json!({"kind": "User", "name": "alice"})), "alice", &groups, ""));
        assert!(subject_matches(&s(json!({"kind": "Group", "name": "dev"})), "bob", &groups, ""));
        let sa = s(json!({"kind": "ServiceAccount", "name": "builder"}));
        assert!(
            subject_matches(&sa, "system:serviceaccount:ci:builder", &[], "ci"),
            "defaults to the binding's namespace"
        );
        assert!(!subject_matches(&sa, "system:serviceaccount:ci:builder", &[], ""), "no namespace, no match");
        let qualified = s(json!({"kind": "ServiceAccount", "name": "builder", "namespace": "ci"}));
        assert!(subject_matches(&qualified, "system:serviceaccount:ci:builder", &[], "other"));
    }

    fn v<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
        serde_json::from_value(v).unwrap()
    }

    fn objects() -> Objects {
        Objects {
            crs: Arc::new(vec![
                v(
                    json!({"metadata": {"name": "view"}, "rules": [{"verbs": ["get", "list", "watch"], "apiGroups": ["", "apps"], "resources": ["pods", "deployments"]}]}),
                ),
                v(
                    json!({"metadata": {"name": "node-reader"}, "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["nodes"]}]}),
                ),
            ]),
            roles: vec![v(
                json!({"metadata": {"name": "cm-editor", "namespace": "team-b"}, "rules": [{"verbs": ["*"], "apiGroups": [""], "resources": ["configmaps"]}]}),
            )],
            rbs: vec![
                v(json!({"metadata": {"name": "alice-view", "namespace": "team-a"},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
                    "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "alice"}]})),
                v(json!({"metadata": {"name": "dev-cm", "namespace": "team-b"},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cm-editor"},
                    "subjects": [{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "dev"}]})),
            ],
            crbs: Arc::new(vec![v(json!({"metadata": {"name": "nodes"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "node-reader"},
                "subjects": [{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "system:authenticated"}]}))]),
        }
    }

    #[test]
    fn bindings_grant_in_their_scope_only() {
        let o = objects();
        assert!(matches!(authorize(&o, &res("list", "team-a", "", "pods", "", "")), Decision::Allow(_)));
        assert_eq!(authorize(&o, &res("list", "default", "", "pods", "", "")), Decision::NoOpinion);
        assert_eq!(authorize(&o, &res("list", "", "", "pods", "", "")), Decision::NoOpinion, "not cluster-wide");
        assert_eq!(authorize(&o, &res("create", "team-a", "", "pods", "", "")), Decision::NoOpinion);
        assert!(matches!(authorize(&o, &res("get", "", "", "nodes", "", "n1")), Decision::Allow(_)));
        let mut dev = res("delete", "team-b", "", "configmaps", "", "c");
        assert_eq!(authorize(&o, &dev), Decision::NoOpinion);
        dev.groups.push("dev".into());
        assert!(matches!(authorize(&o, &dev), Decision::Allow(_)));
        dev.namespace = "team-a".into();
        assert_eq!(authorize(&o, &dev), Decision::NoOpinion, "a Role binds in its own namespace");
        let mut root = res("delete", "", "", "nodes", "", "n1");
        root.groups = vec![SYSTEM_MASTERS.into()];
        assert!(matches!(authorize(&o, &root), Decision::Allow(_)));
    }

    #[test]
    fn forbidden_messages_read_as_upstream() {
        assert_eq!(
            res("list", "default", "", "pods", "", "").forbidden_message(),
            r#"User "alice" cannot list resource "pods" in API group "" in the namespace "default""#
        );
        assert_eq!(
            res("get", "", "", "nodes", "status", "n").forbidden_message(),
            r#"User "alice" cannot get resource "nodes/status" in API group "" at the cluster scope"#
        );
        let p = Attributes {
            user: "system:anonymous".into(),
            verb: "get".into(),
            path: "/api".into(),
            ..Default::default()
        };
        assert_eq!(p.forbidden_message(), r#"User "system:anonymous" cannot get path "/api""#);
    }

    #[test]
    fn aggregation_unions_the_selected_roles() {
        let v = |v: serde_json::Value| -> ClusterRole { serde_json::from_value(v).unwrap() };
        let admin = v(json!({"metadata": {"name": "admin"},
            "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"rbac.authorization.k8s.io/aggregate-to-admin": "true"}}]}}));
        let all = vec![
            admin.clone(),
            v(
                json!({"metadata": {"name": "b-extra", "labels": {"rbac.authorization.k8s.io/aggregate-to-admin": "true"}},
                "rules": [{"verbs": ["get"], "apiGroups": ["x"], "resources": ["widgets"]}]}),
            ),
            v(
                json!({"metadata": {"name": "a-base", "labels": {"rbac.authorization.k8s.io/aggregate-to-admin": "true"}},
                "rules": [{"verbs": ["*"], "apiGroups": [""], "resources": ["pods"]}, {"verbs": ["get"], "apiGroups": ["x"], "resources": ["widgets"]}]}),
            ),
            v(
                json!({"metadata": {"name": "other"}, "rules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}]}),
            ),
        ];
        let rules = aggregated_rules(&admin, &all).unwrap();
        assert_eq!(rules.len(), 2, "repeats collapse: {rules:?}");
        assert_eq!(rules[0].resources.as_deref(), Some(&["pods".to_string()][..]));
        assert!(aggregated_rules(&all[3], &all).is_none(), "not an aggregated role");
    }
}
