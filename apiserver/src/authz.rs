//! Authorization: may this user do this? Runs after [`crate::authn::identify`] on every
//! request. `--authorization-mode` picks the authorizers, as upstream:
//! - `AlwaysAllow` (today's default, until TLS lets every component and kubectl present an
//!   identity): everything is allowed.
//! - `RBAC`: [`skiff_api::rbac`] over the Roles, ClusterRoles and bindings in the watch
//!   cache (eventually consistent, as upstream's informer-fed authorizer); `system:masters`
//!   may do everything; anything no rule allows gets 403 with upstream's message.
//! - `Node,RBAC`: the same, plus [`crate::nodeauthz`]: kubelets reach only what their own pods
//!   refer to, and write only their own Node, Lease and pods (NodeRestriction).
//!
//! The request's attributes (verb, API group, resource, subresource, namespace, name, or the
//! path of a non-resource request) are derived as upstream's `RequestInfoFactory` does.
//! `authorization.k8s.io/v1` `SelfSubjectAccessReview` and `SubjectAccessReview` (what
//! `kubectl auth can-i` posts) are answered here with the same evaluation.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::Method;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use skiff_api::rbac::{self, Attributes, Decision};
use tracing::debug;

use crate::authn::UserInfo;
use crate::error::ApiError;
use crate::registry::Registry;
use crate::resources::{self, ResourceInfo};

/// Which authorizers run (`--authorization-mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Mode {
    #[default]
    AlwaysAllow,
    Rbac,
    /// `Node,RBAC`: the Node authorizer and NodeRestriction, then RBAC.
    NodeRbac,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let modes: Vec<&str> = s.split(',').map(str::trim).filter(|m| !m.is_empty()).collect();
        match modes.as_slice() {
            ["AlwaysAllow"] => Ok(Mode::AlwaysAllow),
            ["RBAC"] => Ok(Mode::Rbac),
            ["Node", "RBAC"] | ["RBAC", "Node"] => Ok(Mode::NodeRbac),
            _ => Err(format!("unsupported --authorization-mode {s:?}: use AlwaysAllow, RBAC or Node,RBAC")),
        }
    }
}

/// What the middleware needs: the mode and where the RBAC objects are.
pub struct Authorizer {
    pub mode: Mode,
    pub registry: Registry,
    /// Every ClusterRole and ClusterRoleBinding, decoded once per change of their caches
    /// (every request needs them; decoding them per request would be the hot path's cost).
    cluster: std::sync::Mutex<Option<ClusterPolicy>>,
}

struct ClusterPolicy {
    /// The revisions of the clusterrolebindings and clusterroles caches they were read at.
    revisions: (i64, i64),
    crbs: Arc<Vec<ClusterRoleBinding>>,
    crs: Arc<Vec<ClusterRole>>,
}

/// Upstream's request attributes of an HTTP request.
pub fn attributes(user: &UserInfo, method: &Method, path: &str, query: Option<&str>) -> Attributes {
    let q: Vec<(String, String)> = query.and_then(|q| serde_urlencoded::from_str(q).ok()).unwrap_or_default();
    let flag = |k: &str| q.iter().any(|(n, v)| n == k && (v == "true" || v == "1"));
    let base = Attributes { user: user.name.clone(), groups: user.groups.clone(), ..Default::default() };
    let non_resource = || Attributes {
        verb: method.as_str().to_lowercase().replace("head", "get"),
        path: path.to_string(),
        ..base.clone()
    };
    let segs: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let (group, mut rest) = match segs.as_slice() {
        ["api", _v, rest @ ..] if !rest.is_empty() => ("", rest.to_vec()),
        ["apis", g, _v, rest @ ..] if !rest.is_empty() => (*g, rest.to_vec()),
        _ => return non_resource(),
    };
    let legacy_watch = rest.first() == Some(&"watch");
    if legacy_watch {
        rest.remove(0);
    }
    // namespaces/{ns}/{resource}... unless it is the namespace object's own subresource.
    let mut namespace = String::new();
    if rest.len() >= 3 && rest[0] == "namespaces" && !matches!(rest[2], "status" | "finalize") {
        namespace = rest[1].to_string();
        rest.drain(..2);
    } else if rest.len() >= 2 && rest[0] == "namespaces" {
        // /namespaces/{name}[/status]: the Namespace object, in its own namespace (upstream).
        namespace = rest[1].to_string();
    }
    let resource = rest.first().copied().unwrap_or_default().to_string();
    let name = rest.get(1).copied().unwrap_or_default().to_string();
    let subresource = rest.get(2).copied().unwrap_or_default().to_string();
    let verb = match *method {
        Method::GET | Method::HEAD if legacy_watch || flag("watch") => "watch",
        Method::GET | Method::HEAD if name.is_empty() => "list",
        Method::GET | Method::HEAD => "get",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if name.is_empty() => "deletecollection",
        Method::DELETE => "delete",
        _ => "",
    };
    Attributes {
        verb: verb.into(),
        resource_request: true,
        namespace,
        api_group: group.to_string(),
        resource,
        subresource,
        name,
        ..base
    }
}

fn rbac_resource(plural: &str) -> Option<&'static ResourceInfo> {
    resources::find("rbac.authorization.k8s.io", "v1", plural)
}

async fn cached<T: DeserializeOwned>(reg: &Registry, plural: &str, namespace: Option<&str>) -> Vec<T> {
    let Some(r) = rbac_resource(plural) else { return vec![] };
    let t = crate::registry::Target { resource: r, namespace: namespace.map(String::from) };
    let (objects, _) = reg.cache(r).snapshot(&t.prefix()).await;
    objects.iter().filter_map(|o| T::deserialize(o.as_ref()).ok()).collect()
}

impl Authorizer {
    pub fn new(mode: Mode, registry: Registry) -> Self {
        Authorizer { mode, registry, cluster: std::sync::Mutex::new(None) }
    }

    /// The cluster-scoped policy, decoded again only when one of its caches moved.
    async fn cluster_policy(&self) -> (Arc<Vec<ClusterRoleBinding>>, Arc<Vec<ClusterRole>>) {
        let revision = |plural| rbac_resource(plural).map_or(0, |r| self.registry.cache(r).revision());
        // Read before the objects: what is decoded is at least this new, so a change racing
        // the read only causes one more decode later.
        let revisions = (revision("clusterrolebindings"), revision("clusterroles"));
        if let Some(c) = self.cluster.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            if c.revisions == revisions {
                return (c.crbs.clone(), c.crs.clone());
            }
        }
        let crbs = Arc::new(cached(&self.registry, "clusterrolebindings", None).await);
        let crs = Arc::new(cached(&self.registry, "clusterroles", None).await);
        *self.cluster.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(ClusterPolicy { revisions, crbs: crbs.clone(), crs: crs.clone() });
        (crbs, crs)
    }

    /// The RBAC objects of one decision (the namespace's Roles and RoleBindings only).
    async fn objects(&self, namespace: &str) -> rbac::Objects {
        let (crbs, crs) = self.cluster_policy().await;
        let ns = (!namespace.is_empty()).then_some(namespace);
        rbac::Objects {
            crbs,
            crs,
            rbs: match ns {
                Some(ns) => cached(&self.registry, "rolebindings", Some(ns)).await,
                None => vec![],
            },
            roles: match ns {
                Some(ns) => cached(&self.registry, "roles", Some(ns)).await,
                None => vec![],
            },
        }
    }

    /// The decision for `a`.
    pub async fn decide(&self, a: &Attributes) -> Decision {
        match self.mode {
            Mode::AlwaysAllow => Decision::Allow("AlwaysAllow".into()),
            Mode::Rbac => rbac::authorize(&self.objects(&a.namespace).await, a),
            Mode::NodeRbac => match crate::nodeauthz::authorize(&self.registry, a).await {
                Some(reason) => Decision::Allow(reason),
                None => rbac::authorize(&self.objects(&a.namespace).await, a),
            },
        }
    }
}

/// The 403 of a refused request, worded as upstream's.
pub fn forbidden(a: &Attributes) -> ApiError {
    let why = a.forbidden_message();
    if !a.resource_request {
        return ApiError::Forbidden {
            resource: String::new(),
            kind: String::new(),
            name: String::new(),
            message: format!("forbidden: {why}"),
        };
    }
    refused(a, &why)
}

/// The 403 of a resource request, `<resource> "<name>" is forbidden: <why>`, as upstream
/// words both authorization and admission (NodeRestriction) denials.
fn refused(a: &Attributes, why: &str) -> ApiError {
    let qualified = if a.api_group.is_empty() { a.resource.clone() } else { format!("{}.{}", a.resource, a.api_group) };
    let message = if a.name.is_empty() {
        format!("{qualified} is forbidden: {why}")
    } else {
        format!("{qualified} \"{}\" is forbidden: {why}", a.name)
    };
    ApiError::Forbidden { resource: qualified, kind: a.resource.clone(), name: a.name.clone(), message }
}

/// Middleware: lets the request through or answers 403.
pub async fn authorize(State(z): State<Arc<Authorizer>>, req: Request, next: Next) -> Response {
    if z.mode == Mode::AlwaysAllow {
        return next.run(req).await;
    }
    let user = req.extensions().get::<UserInfo>().cloned().unwrap_or_else(UserInfo::anonymous);
    let a = attributes(&user, req.method(), req.uri().path(), req.uri().query());
    let mut req = req;
    if z.mode == Mode::NodeRbac && crate::nodeauthz::node_of(&a).is_some() {
        if let Err(why) = crate::nodeauthz::restrict(&z.registry, &a).await {
            return refused(&a, &why).into_response();
        }
        if crate::nodeauthz::needs_body_check(&a) {
            // The body decides (which node, which pod): read it once, then hand it on.
            let (parts, body) = req.into_parts();
            let bytes = match axum::body::to_bytes(body, crate::http::MAX_BODY_BYTES).await {
                Ok(b) => b,
                Err(_) => {
                    return ApiError::TooLarge(format!(
                        "the request body is larger than the {} byte limit",
                        crate::http::MAX_BODY_BYTES
                    ))
                    .into_response()
                }
            };
            let checked = crate::http::decode_body(&parts.headers, &bytes)
                .and_then(|v| crate::nodeauthz::check_create(&a, &v).map_err(|why| refused(&a, &why)));
            if let Err(e) = checked {
                return e.into_response();
            }
            req = Request::from_parts(parts, axum::body::Body::from(bytes));
        }
    }
    match z.decide(&a).await {
        Decision::Allow(reason) => {
            debug!(user = %a.user, verb = %a.verb, resource = %a.resource, path = %a.path, %reason, "allowed");
            match crate::nodeauthz::node_of(&a).filter(|_| z.mode == Mode::NodeRbac) {
                // NodeRestriction also judges the object as stored (the Node's labels).
                Some(node) => crate::nodeauthz::RESTRICTED_NODE.scope(node.to_string(), next.run(req)).await,
                None => next.run(req).await,
            }
        }
        Decision::NoOpinion => {
            debug!(user = %a.user, verb = %a.verb, resource = %a.resource, path = %a.path, "forbidden");
            forbidden(&a).into_response()
        }
    }
}

/// Middleware between authentication and authorization: `Impersonate-User`,
/// `Impersonate-Group` and `Impersonate-Uid` (what `kubectl --as/--as-group` send) make the
/// request act as that user, when the real user may `impersonate` each of them (`users`,
/// `groups`, `uids` in the core group, as upstream); otherwise 403. The impersonated user is
/// in `system:authenticated` (unless it is `system:anonymous`).
pub async fn impersonate(State(z): State<Arc<Authorizer>>, mut req: Request, next: Next) -> Response {
    // (Scoped: a borrow of the request must not live across the awaits below.)
    let (users, groups, uids) = {
        let headers = req.headers();
        let values = |name: &str| -> Vec<String> {
            headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).map(String::from).collect()
        };
        (values("impersonate-user"), values("impersonate-group"), values("impersonate-uid"))
    };
    if users.is_empty() && groups.is_empty() && uids.is_empty() {
        return next.run(req).await;
    }
    let Some(user_name) = users.first().cloned() else {
        return ApiError::BadRequest("requested impersonation of groups or a uid without impersonating a user".into())
            .into_response();
    };
    let real = req.extensions().get::<UserInfo>().cloned().unwrap_or_else(UserInfo::anonymous);
    let mut wanted = vec![("users", user_name.clone())];
    wanted.extend(groups.iter().map(|g| ("groups", g.clone())));
    wanted.extend(uids.iter().map(|u| ("uids", u.clone())));
    for (resource, name) in wanted {
        let a = Attributes {
            user: real.name.clone(),
            groups: real.groups.clone(),
            verb: "impersonate".into(),
            resource_request: true,
            resource: resource.into(),
            name,
            ..Default::default()
        };
        if let Decision::NoOpinion = z.decide(&a).await {
            debug!(user = %real.name, impersonating = %a.name, resource, "impersonation refused");
            return forbidden(&a).into_response();
        }
    }
    let mut groups = groups;
    if user_name != "system:anonymous" && !groups.iter().any(|g| g == "system:authenticated") {
        groups.push("system:authenticated".into());
    }
    let uid = uids.first().cloned().unwrap_or_default();
    for h in ["impersonate-user", "impersonate-group", "impersonate-uid"] {
        req.headers_mut().remove(h);
    }
    req.extensions_mut().insert(UserInfo { name: user_name, uid, groups });
    next.run(req).await
}

/// Answers a `SelfSubjectAccessReview` (about `user`) or a `SubjectAccessReview` (about
/// the user in its spec): the review with `status.allowed` / `status.reason` filled in.
pub async fn review(z: &Authorizer, user: &UserInfo, kind: &str, body: Value) -> Result<Value, ApiError> {
    let spec = &body["spec"];
    let (name, groups) = if kind == "SelfSubjectAccessReview" {
        (user.name.clone(), user.groups.clone())
    } else {
        let name = spec["user"].as_str().unwrap_or_default().to_string();
        let groups: Vec<String> =
            spec["groups"].as_array().into_iter().flatten().filter_map(|g| g.as_str().map(String::from)).collect();
        if name.is_empty() && groups.is_empty() {
            return Err(ApiError::BadRequest("spec.user or spec.groups is required".into()));
        }
        (name, groups)
    };
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let a = if let Some(ra) = spec["resourceAttributes"].as_object().map(|_| &spec["resourceAttributes"]) {
        Attributes {
            user: name,
            groups,
            verb: s(&ra["verb"]),
            resource_request: true,
            namespace: s(&ra["namespace"]),
            api_group: s(&ra["group"]),
            resource: s(&ra["resource"]),
            subresource: s(&ra["subresource"]),
            name: s(&ra["name"]),
            path: String::new(),
        }
    } else if let Some(nra) = spec["nonResourceAttributes"].as_object().map(|_| &spec["nonResourceAttributes"]) {
        Attributes { user: name, groups, verb: s(&nra["verb"]), path: s(&nra["path"]), ..Default::default() }
    } else {
        return Err(ApiError::BadRequest(
            "exactly one of spec.resourceAttributes and spec.nonResourceAttributes must be set".into(),
        ));
    };
    let (allowed, reason) = match z.decide(&a).await {
        Decision::Allow(r) => (true, r),
        Decision::NoOpinion => (false, String::new()),
    };
    let mut out = body.clone();
    out["apiVersion"] = json!("authorization.k8s.io/v1");
    out["kind"] = json!(kind);
    if out["metadata"].is_null() {
        out["metadata"] = json!({});
    }
    out["status"] = json!({"allowed": allowed, "reason": reason});
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> UserInfo {
        UserInfo { name: "alice".into(), uid: String::new(), groups: vec!["system:authenticated".into()] }
    }

    fn attrs(method: Method, path: &str, query: Option<&str>) -> (String, String, String, String, String, String) {
        let a = attributes(&alice(), &method, path, query);
        (a.verb, a.api_group, a.resource, a.subresource, a.namespace, a.name)
    }

    #[test]
    fn requests_map_to_upstream_attributes() {
        let t = |v: &str, g: &str, r: &str, s: &str, ns: &str, n: &str| {
            (v.to_string(), g.to_string(), r.to_string(), s.to_string(), ns.to_string(), n.to_string())
        };
        assert_eq!(attrs(Method::GET, "/api/v1/namespaces/d/pods", None), t("list", "", "pods", "", "d", ""));
        assert_eq!(
            attrs(Method::GET, "/api/v1/namespaces/d/pods", Some("watch=true")),
            t("watch", "", "pods", "", "d", "")
        );
        assert_eq!(attrs(Method::GET, "/api/v1/watch/namespaces/d/pods/p", None), t("watch", "", "pods", "", "d", "p"));
        assert_eq!(attrs(Method::GET, "/api/v1/pods", None), t("list", "", "pods", "", "", ""));
        assert_eq!(
            attrs(Method::POST, "/api/v1/namespaces/d/pods/p/exec", Some("command=ls")),
            t("create", "", "pods", "exec", "d", "p")
        );
        assert_eq!(
            attrs(Method::PATCH, "/apis/apps/v1/namespaces/d/deployments/web/scale", None),
            t("patch", "apps", "deployments", "scale", "d", "web")
        );
        assert_eq!(
            attrs(Method::DELETE, "/api/v1/namespaces/d/configmaps", None),
            t("deletecollection", "", "configmaps", "", "d", "")
        );
        assert_eq!(attrs(Method::PUT, "/api/v1/nodes/n1/status", None), t("update", "", "nodes", "status", "", "n1"));
        assert_eq!(attrs(Method::GET, "/api/v1/namespaces/d", None), t("get", "", "namespaces", "", "d", "d"));
        assert_eq!(
            attrs(Method::PUT, "/api/v1/namespaces/d/finalize", None),
            t("update", "", "namespaces", "finalize", "d", "d")
        );
        let a = attributes(&alice(), &Method::GET, "/apis/apps/v1", None);
        assert!(!a.resource_request && a.path == "/apis/apps/v1" && a.verb == "get", "discovery is a path");
        let a = attributes(&alice(), &Method::GET, "/healthz", None);
        assert!(!a.resource_request && a.path == "/healthz");
    }

    #[test]
    fn refusals_read_as_upstream() {
        let a = attributes(&alice(), &Method::GET, "/api/v1/namespaces/default/pods", None);
        assert_eq!(
            forbidden(&a).to_string(),
            r#"pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "default""#
        );
        let a = attributes(&alice(), &Method::DELETE, "/apis/apps/v1/namespaces/d/deployments/web", None);
        assert_eq!(
            forbidden(&a).to_string(),
            r#"deployments.apps "web" is forbidden: User "alice" cannot delete resource "deployments" in API group "apps" in the namespace "d""#
        );
        assert_eq!("RBAC".parse::<Mode>(), Ok(Mode::Rbac));
        assert_eq!("Node,RBAC".parse::<Mode>(), Ok(Mode::NodeRbac));
        assert_eq!("RBAC,Node".parse::<Mode>(), Ok(Mode::NodeRbac));
        assert!("Node".parse::<Mode>().is_err(), "the Node authorizer alone would refuse everything else");
        assert!("ABAC".parse::<Mode>().is_err());
    }
}
