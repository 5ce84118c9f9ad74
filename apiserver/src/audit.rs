//! The audit log (`--audit-log-path`, `--audit-policy-file`), as upstream's: one JSON line
//! per request (`audit.k8s.io/v1` `Event`, stage `ResponseComplete`) with who asked
//! (user, groups, source IP, user agent, impersonated user), what (verb, request URI,
//! object reference) and the outcome (response code), at the level the first matching rule
//! of the policy gives:
//! - `None`: not logged;
//! - `Metadata`: the above;
//! - `Request` / `RequestResponse`: also the request body (`requestObject`; responses are not
//!   recorded, so `RequestResponse` logs as `Request`).
//!
//! Policy rules match as upstream's: `users`, `userGroups`, `verbs`, `resources` (`group`,
//! `resources` incl. `pod/log` style subresources), `namespaces`, `nonResourceURLs`
//! (`/healthz*` prefix form). Without a policy file everything is logged at `Metadata`.
//! Lines are written by one background task, so a slow disk never slows a request.

use std::net::SocketAddr;
use std::path::Path;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::authn::UserInfo;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub enum Level {
    None,
    Metadata,
    Request,
    RequestResponse,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GroupResources {
    #[serde(default)]
    group: String,
    #[serde(default)]
    resources: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Rule {
    level: Level,
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    user_groups: Vec<String>,
    #[serde(default)]
    verbs: Vec<String>,
    #[serde(default)]
    resources: Vec<GroupResources>,
    #[serde(default)]
    namespaces: Vec<String>,
    #[serde(default, rename = "nonResourceURLs")]
    non_resource_urls: Vec<String>,
    /// Accepted for upstream compatibility; only ResponseComplete is emitted anyway.
    #[serde(default)]
    #[allow(dead_code)]
    omit_stages: Vec<String>,
}

/// An audit policy (`audit.k8s.io/v1` `Policy`).
#[derive(Debug, Clone, Deserialize)]
pub struct Policy {
    rules: Vec<Rule>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("reading the audit policy {path}: {message}")]
    Policy { path: String, message: String },
    #[error("opening the audit log {path}: {source}")]
    Log { path: String, source: std::io::Error },
}

impl Policy {
    /// Everything at `Metadata` (no policy file).
    pub fn metadata() -> Policy {
        Policy { rules: vec![serde_json::from_value(json!({"level": "Metadata"})).expect("valid rule")] }
    }

    pub fn load(path: &Path) -> Result<Policy, AuditError> {
        let err = |message: String| AuditError::Policy { path: path.display().to_string(), message };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        Self::parse(&text).map_err(err)
    }

    pub fn parse(text: &str) -> Result<Policy, String> {
        let v: Value = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        if v["kind"].as_str().is_some_and(|k| k != "Policy") {
            return Err("kind must be Policy".into());
        }
        serde_json::from_value(v).map_err(|e| e.to_string())
    }

    /// The level of a request: the first matching rule's, else `None`.
    pub fn level(&self, a: &skiff_api::rbac::Attributes) -> Level {
        let listed = |list: &[String], v: &str| list.is_empty() || list.iter().any(|x| x == v);
        for r in &self.rules {
            if !listed(&r.users, &a.user) {
                continue;
            }
            if !r.user_groups.is_empty() && !a.groups.iter().any(|g| r.user_groups.contains(g)) {
                continue;
            }
            if !listed(&r.verbs, &a.verb) {
                continue;
            }
            if a.resource_request {
                if !r.non_resource_urls.is_empty() {
                    continue;
                }
                let full = if a.subresource.is_empty() {
                    a.resource.clone()
                } else {
                    format!("{}/{}", a.resource, a.subresource)
                };
                let resource_ok = r.resources.is_empty()
                    || r.resources.iter().any(|g| {
                        g.group == a.api_group
                            && (g.resources.is_empty()
                                || g.resources
                                    .iter()
                                    .any(|x| *x == full || *x == a.resource || *x == format!("*/{}", a.subresource)))
                    });
                if !resource_ok || !listed(&r.namespaces, &a.namespace) {
                    continue;
                }
            } else {
                if !r.resources.is_empty() || !r.namespaces.is_empty() {
                    continue;
                }
                let url_ok = r.non_resource_urls.is_empty()
                    || r.non_resource_urls
                        .iter()
                        .any(|u| u == &a.path || (u.ends_with('*') && a.path.starts_with(u.trim_end_matches('*'))));
                if !url_ok {
                    continue;
                }
            }
            return r.level;
        }
        Level::None
    }
}

/// The audit sink: the policy and the writer task's queue.
#[derive(Clone)]
pub struct Auditor {
    policy: std::sync::Arc<Policy>,
    lines: mpsc::UnboundedSender<Vec<u8>>,
}

impl Auditor {
    /// Opens (appends to) `path` and starts the writer task.
    pub async fn open(path: &Path, policy: Policy) -> Result<Auditor, AuditError> {
        // A fresh machine has no /var/log/skiff yet: make the directory (private, as the log).
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|source| AuditError::Log { path: dir.display().to_string(), source })?;
        }
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await
            .map_err(|source| AuditError::Log { path: path.display().to_string(), source })?;
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
        tokio::spawn(async move {
            while let Some(line) = rx.recv().await {
                if let Err(e) = file.write_all(&line).await {
                    tracing::warn!(error = %e, "writing the audit log failed");
                }
                // Flush when the queue is drained, not per line.
                if rx.is_empty() {
                    let _ = file.flush().await;
                }
            }
        });
        Ok(Auditor { policy: std::sync::Arc::new(policy), lines: tx })
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Middleware (after authentication, before impersonation): logs each request once it is
/// answered.
pub async fn audit(State(auditor): State<Option<Auditor>>, req: Request, next: Next) -> Response {
    let Some(auditor) = auditor else { return next.run(req).await };
    let received = now();
    let user = req.extensions().get::<UserInfo>().cloned().unwrap_or_else(UserInfo::anonymous);
    let a = crate::authz::attributes(&user, req.method(), req.uri().path(), req.uri().query());
    let level = auditor.policy.level(&a);
    if level == Level::None {
        return next.run(req).await;
    }
    // (Scoped: no borrow of the request may live across the awaits below.)
    let (impersonated, user_agent) = {
        let headers = req.headers();
        let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(String::from);
        (header("impersonate-user"), header("user-agent"))
    };
    let source = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string());
    let uri = req.uri().to_string();
    // Request level: keep the body (bounded as the handlers bound it) and hand it on.
    let upgrade = req.headers().contains_key(http::header::UPGRADE);
    let (req, request_object) =
        if level >= Level::Request && !upgrade && !matches!(*req.method(), http::Method::GET | http::Method::HEAD) {
            let (parts, body) = req.into_parts();
            match axum::body::to_bytes(body, crate::http::MAX_BODY_BYTES).await {
                Ok(bytes) => {
                    let object: Option<Value> = serde_json::from_slice(&bytes).ok();
                    (Request::from_parts(parts, Body::from(Bytes::clone(&bytes))), object)
                }
                Err(_) => {
                    return crate::error::ApiError::TooLarge(format!(
                        "the request body is larger than the {} byte limit",
                        crate::http::MAX_BODY_BYTES
                    ))
                    .into_response()
                }
            }
        } else {
            (req, None)
        };
    let resp = next.run(req).await;
    let mut event = json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1",
        "level": format!("{level:?}").replace("RequestResponse", "Request"),
        "auditID": uuid::Uuid::new_v4().to_string(),
        "stage": "ResponseComplete",
        "requestURI": uri,
        "verb": a.verb,
        "user": {"username": user.name, "uid": user.uid, "groups": user.groups},
        "sourceIPs": source.into_iter().collect::<Vec<_>>(),
        "responseStatus": {"metadata": {}, "code": resp.status().as_u16()},
        "requestReceivedTimestamp": received,
        "stageTimestamp": now(),
    });
    if let Some(ua) = user_agent {
        event["userAgent"] = json!(ua);
    }
    if let Some(i) = impersonated {
        event["impersonatedUser"] = json!({"username": i});
    }
    if a.resource_request {
        let mut r = json!({"resource": a.resource, "apiGroup": a.api_group});
        // A create names its object in the body (upstream fills it in the same way).
        if let Some(name) =
            request_object.as_ref().and_then(|o| o["metadata"]["name"].as_str()).filter(|_| a.name.is_empty())
        {
            r["name"] = json!(name);
        }
        for (k, v) in [("namespace", &a.namespace), ("name", &a.name), ("subresource", &a.subresource)] {
            if !v.is_empty() {
                r[k] = json!(v);
            }
        }
        event["objectRef"] = r;
    }
    if let Some(o) = request_object {
        event["requestObject"] = o;
    }
    let mut line = serde_json::to_vec(&event).unwrap_or_default();
    line.push(b'\n');
    let _ = auditor.lines.send(line);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::rbac::Attributes;

    fn res(user: &str, verb: &str, group: &str, resource: &str, ns: &str) -> Attributes {
        Attributes {
            user: user.into(),
            groups: vec!["system:authenticated".into()],
            verb: verb.into(),
            resource_request: true,
            namespace: ns.into(),
            api_group: group.into(),
            resource: resource.into(),
            ..Default::default()
        }
    }

    #[test]
    fn the_first_matching_rule_decides() {
        let p = Policy::parse(
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n\
             - level: None\n  users: [system:kube-proxy]\n\
             - level: None\n  nonResourceURLs: ['/healthz*', /version]\n\
             - level: Metadata\n  resources: [{group: '', resources: [secrets]}]\n\
             - level: Request\n  verbs: [create, update, patch]\n  resources: [{group: ''}, {group: apps, resources: [deployments]}]\n\
             - level: Metadata\n",
        )
        .unwrap();
        assert_eq!(p.level(&res("system:kube-proxy", "list", "", "pods", "d")), Level::None);
        assert_eq!(p.level(&res("alice", "create", "", "secrets", "d")), Level::Metadata, "never a Secret's body");
        assert_eq!(p.level(&res("alice", "create", "", "configmaps", "d")), Level::Request);
        assert_eq!(p.level(&res("alice", "patch", "apps", "deployments", "d")), Level::Request);
        assert_eq!(p.level(&res("alice", "create", "apps", "replicasets", "d")), Level::Metadata);
        assert_eq!(p.level(&res("alice", "get", "", "configmaps", "d")), Level::Metadata);
        let path = |p: &str| Attributes { user: "x".into(), verb: "get".into(), path: p.into(), ..Default::default() };
        assert_eq!(p.level(&path("/healthz/ready")), Level::None);
        assert_eq!(p.level(&path("/api")), Level::Metadata);
        assert_eq!(Policy::metadata().level(&res("a", "get", "", "pods", "")), Level::Metadata);
        assert!(Policy::parse("kind: Other\nrules: []\n").is_err());
        assert!(Policy::parse("rules:\n- level: Everything\n").is_err());
        assert!(
            Policy::parse("rules:\n- level: None\n  nonResourceUrls: [/x]\n").is_err(),
            "a misspelt field is named"
        );
    }
}
