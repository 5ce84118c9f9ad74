//! Who may use the kubelet API, decided as upstream's kubelet does
//! (`pkg/kubelet/server/auth.go`), through the apiserver:
//!
//! - Authentication: a client certificate verified against `--client-ca-file` (CN = user,
//!   O = groups); else a bearer token, checked with a `TokenReview`
//!   (`--authentication-token-webhook`); else `system:anonymous` if `--anonymous-auth`,
//!   otherwise 401.
//! - Authorization (`--authorization-mode=Webhook`): a `SubjectAccessReview` for the user
//!   on `nodes/<subresource>` named after this node, the verb from the HTTP method (GET →
//!   get, POST → create, ...) and the subresource from the path (`/stats` → stats,
//!   `/metrics` → metrics, `/logs` → log, `/spec` → spec, everything else, including exec,
//!   attach, port-forward and container logs, → proxy). 403 otherwise, with upstream's
//!   message. `AlwaysAllow` lets every authenticated request through.
//!
//! Answers are cached as upstream's defaults: token reviews 2 minutes, allowed reviews 5
//! minutes, denials 30 seconds. `/healthz` is open to all, as the apiserver's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use kube::api::{Api, PostParams};
use tracing::{debug, warn};

const TOKEN_TTL: Duration = Duration::from_secs(120);
const ALLOWED_TTL: Duration = Duration::from_secs(300);
const DENIED_TTL: Duration = Duration::from_secs(30);

/// The kubelet API's authentication and authorization settings (flags as upstream's).
#[derive(Clone, Debug)]
pub struct ApiAuth {
    /// `--anonymous-auth`: requests without credentials are `system:anonymous`.
    pub anonymous: bool,
    /// `--authentication-token-webhook`: bearer tokens are checked with TokenReview.
    pub token_webhook: bool,
    /// `--authorization-mode=Webhook` (true) or `AlwaysAllow` (false).
    pub authorization_webhook: bool,
}

impl Default for ApiAuth {
    /// Upstream's flag defaults (anonymous, AlwaysAllow); `skiff-kubelet` itself starts with
    /// the secure settings.
    fn default() -> Self {
        Self { anonymous: true, token_webhook: false, authorization_webhook: false }
    }
}

impl ApiAuth {
    /// The CIS settings: no anonymous access, tokens and access checked by the apiserver.
    pub fn secure() -> Self {
        Self { anonymous: false, token_webhook: true, authorization_webhook: true }
    }
}

/// A user as the kubelet sees one.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct User {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
}

/// The verified client certificate of a connection (set by the server for each request).
#[derive(Clone, Debug)]
pub struct CertUser(pub String, pub Vec<String>);

/// What an authorization answer is about: the user, the verb and the nodes subresource.
type Decision = (User, String, String);

/// The running authenticator/authorizer: settings, this node's name, the apiserver client
/// and the review caches.
pub struct Auth {
    pub settings: ApiAuth,
    node: String,
    client: kube::Client,
    tokens: Mutex<HashMap<String, (Option<User>, Instant)>>,
    decisions: Mutex<HashMap<Decision, (bool, Instant)>>,
}

impl Auth {
    pub fn new(settings: ApiAuth, node: &str, client: kube::Client) -> Arc<Self> {
        Arc::new(Self {
            settings,
            node: node.into(),
            client,
            tokens: Default::default(),
            decisions: Default::default(),
        })
    }

    /// `cert`: the connection's verified certificate; `authorization`: the header's value.
    async fn authenticate(&self, cert: Option<CertUser>, authorization: Option<String>) -> Option<User> {
        if let Some(CertUser(name, mut groups)) = cert {
            groups.push("system:authenticated".into());
            return Some(User { name, uid: String::new(), groups });
        }
        let bearer = authorization
            .as_deref()
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty());
        match bearer {
            Some(token) if self.settings.token_webhook => self.review_token(token).await,
            // A token nobody checks proves nothing: refused, never anonymous.
            Some(_) => None,
            None if self.settings.anonymous => Some(User {
                name: "system:anonymous".into(),
                uid: String::new(),
                groups: vec!["system:unauthenticated".into()],
            }),
            None => None,
        }
    }

    async fn review_token(&self, token: &str) -> Option<User> {
        if let Some((user, at)) = self.tokens.lock().expect("token cache").get(token) {
            if at.elapsed() < TOKEN_TTL {
                return user.clone();
            }
        }
        let review =
            TokenReview { spec: TokenReviewSpec { token: Some(token.into()), audiences: None }, ..Default::default() };
        let answer = match Api::<TokenReview>::all(self.client.clone()).create(&PostParams::default(), &review).await {
            Ok(a) => a,
            Err(e) => {
                // Not cached: the apiserver being away is not the token's fault.
                warn!(error = %e, "TokenReview failed");
                return None;
            }
        };
        let status = answer.status.unwrap_or_default();
        let user = (status.authenticated == Some(true)).then(|| {
            let u = status.user.unwrap_or_default();
            User {
                name: u.username.unwrap_or_default(),
                uid: u.uid.unwrap_or_default(),
                groups: u.groups.unwrap_or_default(),
            }
        });
        let mut cache = self.tokens.lock().expect("token cache");
        cache.retain(|_, (_, at)| at.elapsed() < TOKEN_TTL);
        cache.insert(token.into(), (user.clone(), Instant::now()));
        user
    }

    async fn authorize(&self, user: &User, verb: &str, subresource: &str) -> bool {
        if !self.settings.authorization_webhook {
            return true;
        }
        let key = (user.clone(), verb.to_string(), subresource.to_string());
        if let Some((allowed, at)) = self.decisions.lock().expect("decision cache").get(&key) {
            if at.elapsed() < if *allowed { ALLOWED_TTL } else { DENIED_TTL } {
                return *allowed;
            }
        }
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(user.name.clone()),
                uid: Some(user.uid.clone()).filter(|u| !u.is_empty()),
                groups: Some(user.groups.clone()),
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(verb.into()),
                    group: Some(String::new()),
                    version: Some("v1".into()),
                    resource: Some("nodes".into()),
                    subresource: Some(subresource.into()),
                    name: Some(self.node.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let api = Api::<SubjectAccessReview>::all(self.client.clone());
        let allowed = match api.create(&PostParams::default(), &review).await {
            Ok(a) => a.status.is_some_and(|s| s.allowed),
            Err(e) => {
                warn!(error = %e, "SubjectAccessReview failed");
                return false;
            }
        };
        let mut cache = self.decisions.lock().expect("decision cache");
        cache.retain(|_, (ok, at)| at.elapsed() < if *ok { ALLOWED_TTL } else { DENIED_TTL });
        cache.insert(key, (allowed, Instant::now()));
        allowed
    }
}

/// The request's attributes as upstream's kubelet names them: (verb, nodes subresource).
pub fn attributes(method: &Method, path: &str) -> (&'static str, &'static str) {
    let verb = match *method {
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "get",
    };
    let under = |prefix: &str| path == prefix || path.starts_with(&format!("{prefix}/"));
    let sub = if under("/stats") {
        "stats"
    } else if under("/metrics") {
        "metrics"
    } else if under("/logs") {
        "log"
    } else if under("/spec") {
        "spec"
    } else {
        "proxy"
    };
    (verb, sub)
}

/// Middleware: 401 for who cannot be identified, 403 for who may not, else the handler.
pub async fn filter(State(auth): State<Arc<Auth>>, req: Request, next: Next) -> Response {
    if req.uri().path() == "/healthz" {
        return next.run(req).await;
    }
    let cert = req.extensions().get::<CertUser>().cloned();
    let authorization = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(String::from);
    let Some(user) = auth.authenticate(cert, authorization).await else {
        debug!(path = req.uri().path(), "unauthenticated kubelet API request");
        return (StatusCode::UNAUTHORIZED, "Unauthorized").into_response();
    };
    let (verb, sub) = attributes(req.method(), req.uri().path());
    if !auth.authorize(&user, verb, sub).await {
        let why = format!("Forbidden (user={}, verb={verb}, resource=nodes, subresource={sub})", user.name);
        debug!(path = req.uri().path(), %why, "kubelet API request refused");
        return (StatusCode::FORBIDDEN, why).into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_as_upstreams_kubelet() {
        assert_eq!(attributes(&Method::GET, "/containerLogs/ns/p/c"), ("get", "proxy"));
        assert_eq!(attributes(&Method::POST, "/exec/ns/p/c"), ("create", "proxy"));
        assert_eq!(attributes(&Method::GET, "/portForward/ns/p"), ("get", "proxy"));
        assert_eq!(attributes(&Method::GET, "/pods"), ("get", "proxy"));
        assert_eq!(attributes(&Method::GET, "/stats/summary"), ("get", "stats"));
        assert_eq!(attributes(&Method::GET, "/metrics"), ("get", "metrics"));
        assert_eq!(attributes(&Method::GET, "/metrics/cadvisor"), ("get", "metrics"));
        assert_eq!(attributes(&Method::GET, "/logs/syslog"), ("get", "log"));
        assert_eq!(attributes(&Method::GET, "/spec/"), ("get", "spec"));
        assert_eq!(attributes(&Method::GET, "/statsfoo"), ("get", "proxy"));
        assert_eq!(attributes(&Method::DELETE, "/x"), ("delete", "proxy"));
    }
}
