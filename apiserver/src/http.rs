//! The HTTP layer: routing Kubernetes REST paths to the registry, decoding bodies and query
//! parameters, and streaming watches. Generic over resources: every resource path goes
//! through [`resource_handler`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http::{header, HeaderMap, Method, StatusCode};
use serde_json::{json, Value};
use skiff_api::selector::{FieldSelector, LabelSelector};
use tokio::sync::{broadcast, mpsc};
use tracing::{debug, instrument};

use crate::error::{ApiError, ApiResult};
use crate::fieldvalidation;
use crate::object as obj;
use crate::output::Format;
use crate::registry::{DeleteOptions, Deleted, ListQuery, Registry, Target};
use crate::resources::{self, ResourceInfo};
use crate::subresources;
use crate::watch_cache::{Broadcast, CacheEvent, EventType, RegisterError};

/// Request bodies larger than this are refused with 413 (upstream's limit is 3 MiB).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    pub registry: Registry,
    /// Cancelled at shutdown: ends every open watch so the server can drain.
    pub shutdown: tokio_util::sync::CancellationToken,
    pub ready: tokio::sync::watch::Receiver<bool>,
    /// Who may call (`--token-auth-file`, `--anonymous-auth`); see [`crate::authn`].
    pub authn: Arc<crate::authn::Authenticator>,
    /// What they may do (`--authorization-mode`); see [`crate::authz`].
    pub authz: Arc<crate::authz::Authorizer>,
    /// How many requests may be served at once; see [`crate::flowcontrol`].
    pub inflight: Arc<crate::flowcontrol::InFlight>,
    /// How long a request body may take to arrive (`--request-timeout`).
    pub request_timeout: Duration,
    /// The audit log, if any (`--audit-log-path`); see [`crate::audit`].
    pub audit: Option<crate::audit::Auditor>,
    /// How to dial kubelets (`--kubelet-*` flags); see [`crate::nodeproxy`].
    pub kubelet_tls: Arc<rustls::ClientConfig>,
}

pub fn router(state: AppState) -> Router {
    let authn = state.authn.clone();
    let authz = state.authz.clone();
    let inflight = state.inflight.clone();
    let audit = state.audit.clone();
    Router::new()
        .route("/healthz", get(healthz))
        .route("/livez", get(healthz))
        .route("/readyz", get(readyz))
        .route("/version", get(crate::discovery::version))
        .route("/api", get(crate::discovery::api))
        .route("/apis", get(crate::discovery::apis))
        .route("/api/v1", get(crate::discovery::core_v1))
        .route("/apis/{group}/{version}", get(crate::discovery::group_version))
        .route("/openapi/v2", get(openapi_v2))
        .route("/openapi/v3", get(openapi_root))
        .route("/openapi/v3/{*path}", get(openapi_document))
        .route("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", axum::routing::post(access_review))
        .route("/apis/authorization.k8s.io/v1/subjectaccessreviews", axum::routing::post(access_review))
        .route("/apis/authentication.k8s.io/v1/tokenreviews", axum::routing::post(token_review))
        .route("/apis/authentication.k8s.io/v1/selfsubjectreviews", axum::routing::post(self_subject_review))
        .fallback(resource_handler)
        // Layers run outermost-last: identify (authentication), audit, impersonation, the
        // in-flight limit, authorize (upstream's filter order).
        .layer(axum::middleware::from_fn_with_state(authz.clone(), crate::authz::authorize))
        .layer(axum::middleware::from_fn_with_state(inflight, crate::flowcontrol::limit))
        .layer(axum::middleware::from_fn_with_state(authz, crate::authz::impersonate))
        .layer(axum::middleware::from_fn_with_state(audit, crate::audit::audit))
        .layer(axum::middleware::from_fn_with_state(authn, crate::authn::identify))
        .with_state(state)
}

/// The whole request body, at most [`MAX_BODY_BYTES`] (413 past it) and within `deadline`
/// (a client trickling its body, slowloris-style, gets 504 and frees its slot).
async fn read_body(body: Body, deadline: Duration) -> ApiResult<Bytes> {
    match tokio::time::timeout(deadline, axum::body::to_bytes(body, MAX_BODY_BYTES)).await {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(_)) => {
            Err(ApiError::TooLarge(format!("the request body is larger than the {MAX_BODY_BYTES} byte limit")))
        }
        Err(_) => Err(ApiError::Timeout(format!("the request body did not arrive within {deadline:?}"))),
    }
}

/// `POST .../selfsubjectaccessreviews` and `.../subjectaccessreviews` (`kubectl auth can-i`):
/// the review, answered with the same evaluation every request gets.
async fn access_review(State(s): State<AppState>, req: Request) -> Response {
    let kind = if req.uri().path().ends_with("/selfsubjectaccessreviews") {
        "SelfSubjectAccessReview"
    } else {
        "SubjectAccessReview"
    };
    let user =
        req.extensions().get::<crate::authn::UserInfo>().cloned().unwrap_or_else(crate::authn::UserInfo::anonymous);
    let (parts, body) = req.into_parts();
    let result = async {
        let bytes = read_body(body, s.request_timeout).await?;
        let review = decode_body(&parts.headers, &bytes)?;
        crate::authz::review(&s.authz, &user, kind, review).await
    }
    .await;
    match result {
        Ok(v) => json_response(StatusCode::CREATED, &v),
        Err(e) => e.into_response(),
    }
}

/// `POST /apis/authentication.k8s.io/v1/tokenreviews`: who a bearer token belongs to, as
/// the apiserver itself would authenticate it (a kubelet asks this about the tokens its own
/// API receives). A refused token is a review with `authenticated: false`, not an error.
async fn token_review(State(s): State<AppState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let result = async {
        let bytes = read_body(body, s.request_timeout).await?;
        let mut review = decode_body(&parts.headers, &bytes)?;
        let token = review.pointer("/spec/token").and_then(Value::as_str).unwrap_or_default().to_string();
        if token.is_empty() {
            return Err(ApiError::Invalid {
                kind: "TokenReview".into(),
                group: "authentication.k8s.io".into(),
                name: String::new(),
                causes: vec![skiff_api::validation::FieldError::required("spec.token")],
            });
        }
        let audiences: Vec<String> = review
            .pointer("/spec/audiences")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str().map(String::from))
            .collect();
        let status = match s.authn.review_token(&token, &audiences).await {
            Ok((user, audiences)) => json!({
                "authenticated": true,
                "user": {"username": user.name, "uid": user.uid, "groups": user.groups},
                "audiences": audiences,
            }),
            Err(why) => json!({"authenticated": false, "error": why}),
        };
        review["apiVersion"] = json!("authentication.k8s.io/v1");
        review["kind"] = json!("TokenReview");
        review["status"] = status;
        Ok(review)
    }
    .await;
    match result {
        Ok(v) => json_response(StatusCode::CREATED, &v),
        Err(e) => e.into_response(),
    }
}

/// `POST /apis/authentication.k8s.io/v1/selfsubjectreviews` (`kubectl auth whoami`): the
/// caller's own identity.
async fn self_subject_review(req: Request) -> Response {
    let user =
        req.extensions().get::<crate::authn::UserInfo>().cloned().unwrap_or_else(crate::authn::UserInfo::anonymous);
    let review = json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "SelfSubjectReview",
        "metadata": {"creationTimestamp": null},
        "status": {"userInfo": {"username": user.name, "uid": user.uid, "groups": user.groups}},
    });
    json_response(StatusCode::CREATED, &review)
}

/// `/openapi/v2`: gnostic protobuf when asked for (kubectl 1.27/1.28), JSON otherwise.
async fn openapi_v2(headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    if accept.contains("application/com.github.proto-openapi.spec.v2") {
        let pb = crate::openapi_v2::v2_protobuf().clone();
        return (StatusCode::OK, [(header::CONTENT_TYPE, crate::openapi_v2::PROTOBUF_MEDIA_TYPE)], pb).into_response();
    }
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], crate::openapi_v2::v2_json().clone()).into_response()
}

async fn openapi_root() -> Response {
    json_response(StatusCode::OK, crate::openapi::v3_root())
}

/// `/openapi/v3/api/v1?hash=...`: the `hash` query only makes the URL cacheable.
async fn openapi_document(axum::extract::Path(path): axum::extract::Path<String>) -> Response {
    match crate::openapi::v3_document(&path) {
        Some(doc) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "public, immutable")],
            doc.clone(),
        )
            .into_response(),
        None => ApiError::NoSuchPath.into_response(),
    }
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(s): State<AppState>) -> Response {
    if *s.ready.borrow() {
        "ok".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "watch caches are initialising").into_response()
    }
}

/// A parsed resource path.
#[derive(Debug)]
struct PathInfo {
    resource: &'static ResourceInfo,
    namespace: Option<String>,
    name: Option<String>,
    sub: Option<String>,
    legacy_watch: bool,
}

fn parse_path(path: &str) -> ApiResult<PathInfo> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, mut rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest.to_vec()),
        ["apis", g, v, rest @ ..] => (*g, *v, rest.to_vec()),
        _ => return Err(ApiError::NoSuchPath),
    };
    let legacy_watch = rest.first() == Some(&"watch");
    if legacy_watch {
        rest.remove(0);
    }
    let lookup = |plural: &str| resources::find(group, version, plural).ok_or(ApiError::NoSuchPath);
    // /namespaces/{ns}/{resource}[/{name}[/{sub}]] unless the third segment is a subresource
    // of the namespace object itself (status, finalize).
    if rest.len() >= 3 && rest[0] == "namespaces" {
        if let Some(r) = resources::find(group, version, rest[2]).filter(|r| r.namespaced) {
            if rest.len() > 5 {
                return Err(ApiError::NoSuchPath);
            }
            return Ok(PathInfo {
                resource: r,
                namespace: Some(rest[1].to_string()),
                name: rest.get(3).map(|s| s.to_string()),
                sub: rest.get(4).map(|s| s.to_string()),
                legacy_watch,
            });
        }
    }
    match rest.as_slice() {
        [plural] => Ok(PathInfo { resource: lookup(plural)?, namespace: None, name: None, sub: None, legacy_watch }),
        [plural, name] => Ok(PathInfo {
            resource: lookup(plural)?,
            namespace: None,
            name: Some(name.to_string()),
            sub: None,
            legacy_watch,
        }),
        [plural, name, sub] => Ok(PathInfo {
            resource: lookup(plural)?,
            namespace: None,
            name: Some(name.to_string()),
            sub: Some(sub.to_string()),
            legacy_watch,
        }),
        _ => Err(ApiError::NoSuchPath),
    }
}

type Params = HashMap<String, Vec<String>>;

fn parse_query(q: Option<&str>) -> ApiResult<Params> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(q.unwrap_or(""))
        .map_err(|e| ApiError::BadRequest(format!("invalid query string: {e}")))?;
    let mut out: Params = HashMap::new();
    for (k, v) in pairs {
        out.entry(k).or_default().push(v);
    }
    Ok(out)
}

fn param<'a>(p: &'a Params, k: &str) -> Option<&'a str> {
    p.get(k).and_then(|v| v.first()).map(String::as_str)
}

fn flag(p: &Params, k: &str) -> bool {
    // Go's strconv.ParseBool, as upstream parses query booleans (the Python client sends "True").
    matches!(param(p, k), Some("1" | "t" | "T" | "true" | "TRUE" | "True" | ""))
}

fn list_query(r: &ResourceInfo, p: &Params) -> ApiResult<ListQuery> {
    let label_selector = match param(p, "labelSelector").filter(|s| !s.is_empty()) {
        Some(s) => Some(
            LabelSelector::parse(s).map_err(|e| ApiError::BadRequest(format!("unable to parse labelSelector: {e}")))?,
        ),
        None => None,
    };
    let field_selector = match param(p, "fieldSelector").filter(|s| !s.is_empty()) {
        Some(s) => {
            let fs = FieldSelector::parse(s)
                .map_err(|e| ApiError::BadRequest(format!("unable to parse fieldSelector: {e}")))?;
            for req in fs.requirements() {
                if !r.supports_field(&req.field) {
                    return Err(ApiError::BadRequest(format!(
                        "field label not supported: {} (supported for {}: metadata.name, metadata.namespace{})",
                        req.field,
                        r.plural,
                        r.field_selectors.iter().map(|f| format!(", {f}")).collect::<String>()
                    )));
                }
            }
            Some(fs)
        }
        None => None,
    };
    let limit = match param(p, "limit").filter(|s| !s.is_empty()) {
        Some(s) => Some(s.parse::<i64>().map_err(|_| ApiError::BadRequest(format!("invalid limit \"{s}\"")))?),
        None => None,
    };
    Ok(ListQuery {
        label_selector,
        field_selector,
        resource_version: param(p, "resourceVersion").map(String::from),
        resource_version_match: param(p, "resourceVersionMatch").filter(|s| !s.is_empty()).map(String::from),
        limit,
        continue_token: param(p, "continue").filter(|s| !s.is_empty()).map(String::from),
    })
}

pub fn json_response<T: serde::Serialize + ?Sized>(code: StatusCode, v: &T) -> Response {
    let body = serde_json::to_vec(v).unwrap_or_default();
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Decodes a JSON or YAML request body.
pub(crate) fn decode_body(headers: &HeaderMap, body: &[u8]) -> ApiResult<Value> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/json");
    if body.is_empty() {
        return Err(ApiError::BadRequest("the request body is empty; send the object as JSON or YAML".into()));
    }
    if crate::protobuf::is_protobuf(ct) {
        // kubectl's generators (`create configmap|deployment|secret ...`) send protobuf.
        crate::protobuf::decode(body)
            .map_err(|e| ApiError::BadRequest(format!("the protobuf body could not be decoded: {e}")))
    } else if ct.contains("yaml") {
        // Bounded: aliases may not expand the document past the body limit (no billion laughs).
        crate::object::decode_yaml(body).map_err(|e| ApiError::BadRequest(format!("the body is not valid YAML: {e}")))
    } else if ct.contains("json") || ct.is_empty() {
        serde_json::from_slice::<Value>(body)
            .map_err(|e| ApiError::BadRequest(format!("the body is not valid JSON: {e}")))
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "the body's Content-Type {ct} is not supported; use application/json, application/yaml or application/vnd.kubernetes.protobuf"
        )))
    }
}

/// Decodes a create/update body and applies `fieldValidation` to it (unknown and duplicate
/// fields); returns the body and the warnings to send.
fn decode_checked(
    r: &ResourceInfo,
    headers: &HeaderMap,
    bytes: &[u8],
    params: &Params,
) -> ApiResult<(Value, Vec<String>)> {
    let directive = fieldvalidation::Directive::parse(param(params, "fieldValidation"))?;
    let mut body = decode_body(headers, bytes)?;
    crate::strategy::check_type_meta(r, &mut body)?;
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    // Duplicate keys can only be found in raw JSON (YAML parsing refuses them itself).
    let is_json = !ct.contains("yaml") && !crate::protobuf::is_protobuf(ct);
    let problems = fieldvalidation::problems(r, &body, is_json.then_some(bytes));
    let warnings = fieldvalidation::enforce(directive, r, problems)?;
    Ok((body, warnings))
}

/// Every resource path (`/api/v1/...`, `/apis/{group}/{version}/...`).
#[instrument(skip_all, fields(method = %req.method(), path = %req.uri().path()))]
async fn resource_handler(State(s): State<AppState>, req: Request) -> Response {
    match handle(s, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn handle(s: AppState, req: Request) -> ApiResult<Response> {
    // The field manager of this request, for managedFields: `fieldManager`, else the
    // User-Agent's program name (as upstream), else "unknown".
    let manager = req
        .uri()
        .query()
        .and_then(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).ok())
        .and_then(|q| q.into_iter().find(|(k, _)| k == "fieldManager").map(|(_, v)| v))
        .filter(|m| !m.is_empty())
        .or_else(|| {
            let ua = req.headers().get(header::USER_AGENT)?.to_str().ok()?;
            ua.split('/').next().map(str::trim).filter(|s| !s.is_empty()).map(String::from)
        })
        .unwrap_or_else(|| "unknown".into());
    let manager: String = manager.chars().take(128).collect();
    crate::registry::WRITE.scope(crate::registry::WriteContext { manager, apply: false }, handle_request(s, req)).await
}

async fn handle_request(s: AppState, req: Request) -> ApiResult<Response> {
    let path = parse_path(req.uri().path())?;
    let params = parse_query(req.uri().query())?;
    // Node-served subresources keep the whole request: exec and friends upgrade it.
    if let (Some(name), Some(sub)) = (path.name.as_deref(), path.sub.as_deref()) {
        if matches!(sub, "log" | "exec" | "attach" | "portforward") && path.resource.subresources.contains(&sub) {
            let t = Target { resource: path.resource, namespace: path.namespace.clone() };
            return crate::nodeproxy::handle(&s.registry, &s.kubelet_tls, &t, name, sub, &params, req).await;
        }
    }
    let (parts, body) = req.into_parts();
    let bytes = read_body(body, s.request_timeout).await?;
    let r = path.resource;
    if r.namespaced && path.namespace.is_none() && path.name.is_some() {
        return Err(ApiError::NoSuchPath);
    }
    let t = Target { resource: r, namespace: path.namespace.clone() };
    let dry_run = params.get("dryRun").is_some_and(|v| v.iter().any(|x| x == "All"));
    let reg = &s.registry;
    let m = parts.method.clone();
    let fmt = Format::negotiate(&parts.headers, param(&params, "includeObject"));
    debug!(resource = r.plural, ns = ?t.namespace, name = ?path.name, sub = ?path.sub, "request");

    match (path.name.as_deref(), path.sub.as_deref()) {
        (None, None) => match m {
            Method::GET if path.legacy_watch || flag(&params, "watch") => {
                watch(reg, &t, &params, &s.shutdown, fmt).await
            }
            Method::GET => {
                let q = list_query(r, &params)?;
                let (items, rv, cont, remaining) = reg.list(&t, &q).await?;
                Ok(crate::output::list(fmt, r, &items, rv, cont, remaining))
            }
            Method::POST => {
                let (body, warnings) = decode_checked(r, &parts.headers, &bytes, &params)?;
                let created = reg.create(&t, body, dry_run).await?;
                Ok(fieldvalidation::with_warnings(json_response(StatusCode::CREATED, &created), &warnings))
            }
            Method::DELETE => {
                let q = list_query(r, &params)?;
                let opts = delete_options(&parts.headers, &bytes, &params)?;
                let (items, rv, _, _) =
                    reg.list(&t, &ListQuery { limit: None, continue_token: None, resource_version: None, ..q }).await?;
                let mut deleted = Vec::new();
                for item in items {
                    let it = Target { resource: r, namespace: obj::namespace(&item).map(String::from) };
                    match reg.delete(&it, obj::name(&item), &opts).await {
                        Ok(Deleted::Gone(v) | Deleted::Marked(v)) => deleted.push(v),
                        Err(ApiError::NotFound { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(json_response(StatusCode::OK, &list_object(r, &deleted, rv, None, None)))
            }
            _ => Err(ApiError::MethodNotAllowed(format!("{m} is not supported on a collection of {}", r.plural))),
        },
        (Some(name), None) => match m {
            Method::GET if path.legacy_watch => {
                let mut p = params.clone();
                p.insert("fieldSelector".into(), vec![format!("metadata.name={name}")]);
                watch(reg, &t, &p, &s.shutdown, fmt).await
            }
            Method::GET => Ok(crate::output::one(fmt, r, StatusCode::OK, &reg.get(&t, name).await?)),
            Method::PUT => {
                let (body, warnings) = decode_checked(r, &parts.headers, &bytes, &params)?;
                let updated = reg.update(&t, name, body, None, dry_run).await?;
                Ok(fieldvalidation::with_warnings(json_response(StatusCode::OK, &updated), &warnings))
            }
            Method::PATCH => crate::patch::patch(reg, &t, name, None, &parts.headers, &bytes, &params, dry_run).await,
            Method::DELETE => {
                let opts = delete_options(&parts.headers, &bytes, &params)?;
                match reg.delete(&t, name, &opts).await? {
                    Deleted::Gone(v) => Ok(json_response(StatusCode::OK, &v)),
                    Deleted::Marked(v) => Ok(json_response(StatusCode::ACCEPTED, &v)),
                }
            }
            _ => Err(ApiError::MethodNotAllowed(format!("{m} is not supported on {}", r.plural))),
        },
        (Some(name), Some(sub)) => {
            if !r.subresources.contains(&sub) {
                return Err(ApiError::NoSuchPath);
            }
            subresources::handle(reg, &t, name, sub, &m, &parts.headers, &bytes, &params, dry_run).await
        }
        (None, Some(_)) => Err(ApiError::NoSuchPath),
    }
}

/// `{kind: PodList, apiVersion: v1, metadata: {resourceVersion, continue}, items}`,
/// serialized straight from the (shared) items.
#[derive(serde::Serialize)]
pub struct ListBody<'a, T: serde::Serialize> {
    kind: String,
    #[serde(rename = "apiVersion")]
    api_version: String,
    metadata: Value,
    items: &'a [T],
}

pub fn list_object<'a, T: serde::Serialize>(
    r: &ResourceInfo,
    items: &'a [T],
    rv: i64,
    cont: Option<String>,
    remaining: Option<i64>,
) -> ListBody<'a, T> {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if let Some(c) = cont {
        meta["continue"] = json!(c);
    }
    if let Some(n) = remaining {
        meta["remainingItemCount"] = json!(n);
    }
    ListBody { kind: r.list_kind(), api_version: r.api_version(), metadata: meta, items }
}

/// DeleteOptions from the body (JSON; a protobuf body from kubectl drain is ignored) and
/// the query (`gracePeriodSeconds`, `propagationPolicy`, `dryRun`).
pub fn delete_options(headers: &HeaderMap, body: &[u8], p: &Params) -> ApiResult<DeleteOptions> {
    let mut opts = DeleteOptions::default();
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !body.is_empty() {
        // JSON, or protobuf from kubectl drain's fallback DELETE.
        let v: Value = if crate::protobuf::is_protobuf(ct) {
            crate::protobuf::decode(body)
                .map_err(|e| ApiError::BadRequest(format!("the DeleteOptions body could not be decoded: {e}")))?
        } else {
            serde_json::from_slice(body)
                .map_err(|e| ApiError::BadRequest(format!("the DeleteOptions body is not valid JSON: {e}")))?
        };
        apply_delete_options(&mut opts, &v)?;
    }
    if let Some(g) = param(p, "gracePeriodSeconds") {
        opts.grace_period_seconds =
            Some(g.parse().map_err(|_| ApiError::BadRequest(format!("invalid gracePeriodSeconds \"{g}\"")))?);
    }
    if let Some(pp) = param(p, "propagationPolicy") {
        opts.propagation_policy = Some(pp.to_string());
    }
    if p.get("dryRun").is_some_and(|v| v.iter().any(|x| x == "All")) {
        opts.dry_run = true;
    }
    if let Some(pp) = &opts.propagation_policy {
        if !matches!(pp.as_str(), "Orphan" | "Background" | "Foreground") {
            return Err(ApiError::BadRequest(format!(
                "propagationPolicy \"{pp}\" is not supported: use Orphan, Background or Foreground"
            )));
        }
    }
    Ok(opts)
}

pub fn apply_delete_options(opts: &mut DeleteOptions, v: &Value) -> ApiResult<()> {
    if let Some(g) = v.get("gracePeriodSeconds").and_then(Value::as_i64) {
        opts.grace_period_seconds = Some(g);
    }
    if let Some(pp) = v.get("propagationPolicy").and_then(Value::as_str) {
        opts.propagation_policy = Some(pp.to_string());
    }
    if v.get("orphanDependents").and_then(Value::as_bool) == Some(true) && opts.propagation_policy.is_none() {
        opts.propagation_policy = Some("Orphan".into());
    }
    if let Some(uid) = v.pointer("/preconditions/uid").and_then(Value::as_str) {
        opts.preconditions.uid = Some(uid.to_string());
    }
    if let Some(rv) = v.pointer("/preconditions/resourceVersion").and_then(Value::as_str) {
        opts.preconditions.resource_version = Some(crate::registry::parse_rv(rv)?);
    }
    if v.get("dryRun").and_then(Value::as_array).is_some_and(|a| a.iter().any(|x| x == "All")) {
        opts.dry_run = true;
    }
    Ok(())
}

// ------------------------------------------------------------------------- watch

/// What one watcher sees of a cache event, after namespace and selector filtering
/// (objects moving into or out of the selection become ADDED / DELETED, as upstream).
fn visible(ev: &CacheEvent, ns: Option<&str>, q: &ListQuery) -> Option<EventType> {
    let sees = |v: &Value| ns.is_none_or(|ns| obj::namespace(v) == Some(ns)) && q.matches(v);
    let now = sees(&ev.object);
    let before = ev.prev.as_ref().is_some_and(|p| sees(p));
    match ev.kind {
        EventType::Added if now => Some(EventType::Added),
        EventType::Modified if now && before => Some(EventType::Modified),
        EventType::Modified if now => Some(EventType::Added),
        EventType::Modified if before => Some(EventType::Deleted),
        EventType::Deleted if before => Some(EventType::Deleted),
        _ => None,
    }
}

/// The line a watcher sends for `ev` as `kind`: shared pre-serialized bytes for plain JSON.
fn line_for(fmt: Format, r: &ResourceInfo, ev: &CacheEvent, kind: EventType) -> Bytes {
    match fmt {
        Format::Json => ev.line(kind),
        _ => crate::output::watch_line(fmt, r, kind.as_str(), &ev.object),
    }
}

/// One watch event as a newline-terminated JSON line, serialized without copying the object.
pub fn event_line(kind: &str, object: &Value) -> Bytes {
    #[derive(serde::Serialize)]
    struct Line<'a> {
        #[serde(rename = "type")]
        kind: &'a str,
        object: &'a Value,
    }
    let mut line = serde_json::to_vec(&Line { kind, object }).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

fn bookmark(r: &ResourceInfo, rv: i64, initial_end: bool) -> Value {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    json!({"kind": r.kind, "apiVersion": r.api_version(), "metadata": meta})
}

async fn watch(
    reg: &Registry,
    t: &Target,
    p: &Params,
    shutdown: &tokio_util::sync::CancellationToken,
    fmt: Format,
) -> ApiResult<Response> {
    let r = t.resource;
    let q = list_query(r, p)?;
    let bookmarks = flag(p, "allowWatchBookmarks");
    let send_initial = flag(p, "sendInitialEvents");
    let timeout = match param(p, "timeoutSeconds").filter(|s| !s.is_empty()) {
        Some(s) => {
            Duration::from_secs(s.parse().map_err(|_| ApiError::BadRequest(format!("invalid timeoutSeconds \"{s}\"")))?)
        }
        // Upstream picks a random duration between 30 and 60 minutes.
        None => Duration::from_secs(1800 + rand::random_range(0..1800)),
    };
    let cache = reg.cache(r).clone();
    if !cache.wait_for(0, Duration::from_secs(5)).await || !cache.is_ready().await {
        return Err(ApiError::Unavailable("the watch cache is not initialised yet; retry shortly".into()));
    }
    let rv = q.resource_version.clone().unwrap_or_default();
    let from_state = rv.is_empty() || rv == "0" || send_initial;
    let (initial, registration) = if from_state {
        let (objs, reg) = cache
            .register_with_state(&t.prefix())
            .await
            .map_err(|_| ApiError::Unavailable("watch cache not ready".into()))?;
        (objs, Ok(reg))
    } else {
        let after = crate::registry::parse_rv(&rv)?;
        if !cache.wait_for(after, Duration::from_secs(3)).await {
            return Err(ApiError::Timeout(format!("Too large resource version: {after}")));
        }
        (Vec::new(), cache.register(after).await)
    };

    let (tx, rx) = mpsc::channel::<Result<Bytes, std::convert::Infallible>>(256);
    let ns = t.namespace.clone();
    let store = reg.store.clone();
    let prefix = t.prefix();
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        let mut reg = match registration {
            Ok(reg) => reg,
            Err(RegisterError::TooOld { oldest }) => {
                // Older than the cache's history (e.g. just after an apiserver restart): serve
                // this watcher straight from etcd's history, which is 410 Gone only if compacted.
                debug!(rv, oldest, "watch older than the cache; serving from etcd history");
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = watch_from_etcd(store, r, prefix, rv.parse().unwrap_or(0), ns, q, bookmarks, timeout, tx, fmt) => {}
                }
                return;
            }
            Err(RegisterError::NotReady) => {
                let status = ApiError::Unavailable("the watch cache is not initialised yet".into()).to_status();
                let _ = tx.send(Ok(event_line("ERROR", &status))).await;
                return;
            }
        };
        let mut last_rv = reg.revision.max(rv.parse().unwrap_or(0));
        for o in initial.iter().filter(|o| q.matches(o)) {
            if tx.send(Ok(crate::output::watch_line(fmt, r, "ADDED", o))).await.is_err() {
                return;
            }
        }
        if send_initial
            && bookmarks
            && tx.send(Ok(event_line("BOOKMARK", &bookmark(r, reg.revision, true)))).await.is_err()
        {
            return;
        }
        for ev in std::mem::take(&mut reg.replay) {
            last_rv = ev.revision;
            if let Some(kind) = visible(&ev, ns.as_deref(), &q) {
                if tx.send(Ok(line_for(fmt, r, &ev, kind))).await.is_err() {
                    return;
                }
            }
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(Duration::from_secs(15));
        tick.tick().await;
        loop {
            let msg = tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = &mut deadline => return,
                _ = tx.closed() => return,
                _ = tick.tick() => {
                    if bookmarks && last_rv > 0 && tx.send(Ok(event_line("BOOKMARK", &bookmark(r, last_rv, false)))).await.is_err() {
                        return;
                    }
                    continue;
                }
                m = reg.live.recv() => m,
            };
            match msg {
                Ok(Broadcast::Event(ev)) => {
                    if ev.revision <= last_rv {
                        continue;
                    }
                    last_rv = ev.revision;
                    if let Some(kind) = visible(&ev, ns.as_deref(), &q) {
                        if tx.send(Ok(line_for(fmt, r, &ev, kind))).await.is_err() {
                            return;
                        }
                    }
                }
                Ok(Broadcast::Progress(rev)) => last_rv = last_rv.max(rev),
                // Too slow: end the stream; the client re-watches from its last resourceVersion.
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    debug!(skipped = n, "watcher fell behind; closing its stream");
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-cache, private")
        .body(Body::from_stream(stream))
        .expect("static response parts are valid"))
}

type Tx = mpsc::Sender<Result<Bytes, std::convert::Infallible>>;

/// Serves one watch from an etcd watch starting after `after` (see the cache's TooOld case).
#[allow(clippy::too_many_arguments)]
async fn watch_from_etcd(
    store: skiff_store::Store,
    r: &'static ResourceInfo,
    prefix: String,
    after: i64,
    ns: Option<String>,
    q: ListQuery,
    bookmarks: bool,
    timeout: Duration,
    tx: Tx,
    fmt: Format,
) {
    let mut stream = match store.watch(&prefix, after + 1).await {
        Ok(s) => s,
        Err(e) => {
            let _ = tx.send(Ok(event_line("ERROR", &ApiError::from(e).to_status()))).await;
            return;
        }
    };
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    loop {
        let item = tokio::select! {
            _ = &mut deadline => return,
            _ = tx.closed() => return,
            i = stream.recv() => i,
        };
        let ev = match item {
            None => return,
            Some(Err(e)) => {
                let status = match e {
                    skiff_store::Error::Compacted { .. } => {
                        ApiError::Gone(format!("too old resource version: {after}")).to_status()
                    }
                    e => ApiError::from(e).to_status(),
                };
                let _ = tx.send(Ok(event_line("ERROR", &status))).await;
                return;
            }
            Some(Ok(skiff_store::WatchEvent::Progress { revision })) => {
                if bookmarks && tx.send(Ok(event_line("BOOKMARK", &bookmark(r, revision, false)))).await.is_err() {
                    return;
                }
                continue;
            }
            Some(Ok(skiff_store::WatchEvent::Put { object, prev })) => {
                let Ok(v) = obj::decode_stored(&object.value, object.mod_revision) else { continue };
                let prev = prev.and_then(|p| obj::decode_stored(&p.value, p.mod_revision).ok()).map(Arc::new);
                let kind = if prev.is_some() { EventType::Modified } else { EventType::Added };
                CacheEvent::new(kind, object.mod_revision, Arc::new(v), prev)
            }
            Some(Ok(skiff_store::WatchEvent::Delete { prev, revision, .. })) => {
                let Some(p) = prev.and_then(|p| obj::decode_stored(&p.value, p.mod_revision).ok()) else { continue };
                let mut last = p.clone();
                obj::set_resource_version(&mut last, revision);
                CacheEvent::new(EventType::Deleted, revision, Arc::new(last), Some(Arc::new(p)))
            }
        };
        if let Some(kind) = visible(&ev, ns.as_deref(), &q) {
            if tx.send(Ok(line_for(fmt, r, &ev, kind))).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_into_resources() {
        let p = parse_path("/api/v1/namespaces/default/pods/web/status").unwrap();
        assert_eq!(
            (p.resource.plural, p.namespace.as_deref(), p.name.as_deref(), p.sub.as_deref()),
            ("pods", Some("default"), Some("web"), Some("status"))
        );
        let p = parse_path("/api/v1/namespaces/default").unwrap();
        assert_eq!((p.resource.plural, p.name.as_deref()), ("namespaces", Some("default")));
        let p = parse_path("/api/v1/namespaces/kube-system/finalize").unwrap();
        assert_eq!(
            (p.resource.plural, p.name.as_deref(), p.sub.as_deref()),
            ("namespaces", Some("kube-system"), Some("finalize"))
        );
        let p = parse_path("/apis/apps/v1/namespaces/x/deployments").unwrap();
        assert_eq!((p.resource.plural, p.namespace.as_deref(), p.name), ("deployments", Some("x"), None));
        let p = parse_path("/api/v1/pods").unwrap();
        assert_eq!((p.resource.plural, p.namespace), ("pods", None));
        let p = parse_path("/api/v1/watch/namespaces/a/pods").unwrap();
        assert!(p.legacy_watch);
        assert!(parse_path("/api/v1/widgets").is_err());
        assert!(parse_path("/apis/apps/v2/deployments").is_err());
    }
}
