//! The apiserver's one error type and its one conversion into a Kubernetes `Status`.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::{json, Value};
use skiff_api::validation::FieldError;

use crate::resources::ResourceInfo;

/// An error answered to the client as a `Status` object with the matching HTTP code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request itself is malformed (bad JSON/YAML, bad query, wrong apiVersion).
    #[error("{0}")]
    BadRequest(String),
    /// 404 for a named object.
    #[error("{resource} \"{name}\" not found")]
    NotFound { resource: String, kind: String, name: String },
    /// 404 for a path that serves nothing.
    #[error("the server could not find the requested resource")]
    NoSuchPath,
    /// 405.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 409 AlreadyExists.
    #[error("{resource} \"{name}\" already exists")]
    AlreadyExists { resource: String, kind: String, name: String },
    /// 409 Conflict (stale resourceVersion, failed precondition).
    #[error("{message}")]
    Conflict { resource: String, kind: String, name: String, message: String },
    /// 409 from server-side apply: fields owned by other managers (manager, path).
    #[error("{message}")]
    ApplyConflict { message: String, causes: Vec<(String, String)> },
    /// 410: the requested resourceVersion is gone from history.
    #[error("{0}")]
    Gone(String),
    /// 413.
    #[error("{0}")]
    TooLarge(String),
    /// 415.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422 with field causes.
    #[error("{} \"{name}\" is invalid: {}", qualified_kind(kind, group), join_causes(.causes))]
    Invalid { kind: String, group: String, name: String, causes: Vec<FieldError> },
    /// 401: no valid credentials (see `authn`).
    #[error("Unauthorized")]
    Unauthorized,
    /// 403 (namespace terminating, forbidden operations).
    #[error("{message}")]
    Forbidden { resource: String, kind: String, name: String, message: String },
    /// 429 (eviction blocked).
    #[error("{0}")]
    TooManyRequests(String),
    /// 500.
    #[error("{0}")]
    Internal(String),
    /// 503: etcd unreachable.
    #[error("{0}")]
    Unavailable(String),
    /// 504: etcd timed out, or a resourceVersion too new to wait for.
    #[error("{0}")]
    Timeout(String),
}

/// A cause's message as upstream puts it in `details.causes[].message`: the error type
/// followed by the detail (`Invalid value: "Foo": must be ...`), without the field path.
/// Validation messages from `skiff_api::validation` already start with the type; short ones
/// written elsewhere (`must be non-negative`) get it prefixed.
pub fn cause_message(c: &FieldError) -> String {
    use skiff_api::validation::FieldErrorType as T;
    let kind = match c.kind {
        T::Required => "Required value",
        T::Invalid => "Invalid value",
        T::Duplicate => "Duplicate value",
        T::NotSupported => "Unsupported value",
        T::TooLong => "Too long",
        T::Forbidden => "Forbidden",
    };
    const PREFIXES: [&str; 8] = [
        "Required value",
        "Invalid value",
        "Duplicate value",
        "Unsupported value",
        "Too long",
        "Too many",
        "Forbidden",
        "Not found",
    ];
    if c.message.is_empty() || c.message == kind {
        kind.to_string()
    } else if PREFIXES.iter().any(|p| c.message.starts_with(p)) {
        c.message.clone()
    } else {
        format!("{kind}: {}", c.message)
    }
}

/// Upstream's `GroupKind.String()`: `Pod`, `Deployment.apps`, `Role.rbac.authorization.k8s.io`.
fn qualified_kind(kind: &str, group: &str) -> String {
    if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    }
}

fn join_causes(causes: &[FieldError]) -> String {
    let parts: Vec<String> = causes
        .iter()
        .map(|c| if c.field.is_empty() { cause_message(c) } else { format!("{}: {}", c.field, cause_message(c)) })
        .collect();
    if parts.len() == 1 {
        parts[0].clone()
    } else {
        format!("[{}]", parts.join(", "))
    }
}

impl ApiError {
    pub fn not_found(r: &ResourceInfo, name: &str) -> Self {
        ApiError::NotFound { resource: r.qualified_plural(), kind: r.plural.into(), name: name.into() }
    }
    pub fn already_exists(r: &ResourceInfo, name: &str) -> Self {
        ApiError::AlreadyExists { resource: r.qualified_plural(), kind: r.plural.into(), name: name.into() }
    }
    pub fn conflict(r: &ResourceInfo, name: &str, why: &str) -> Self {
        ApiError::Conflict {
            resource: r.qualified_plural(),
            kind: r.plural.into(),
            name: name.into(),
            message: format!("Operation cannot be fulfilled on {} \"{name}\": {why}", r.qualified_plural()),
        }
    }
    pub fn stale(r: &ResourceInfo, name: &str) -> Self {
        Self::conflict(
            r,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }
    pub fn invalid(r: &ResourceInfo, name: &str, causes: Vec<FieldError>) -> Self {
        ApiError::Invalid { kind: r.kind.into(), group: r.group.into(), name: name.into(), causes }
    }
    pub fn forbidden(r: &ResourceInfo, name: &str, why: String) -> Self {
        ApiError::Forbidden {
            resource: r.qualified_plural(),
            kind: r.plural.into(),
            name: name.into(),
            message: format!("{} \"{name}\" is forbidden: {why}", r.qualified_plural()),
        }
    }

    pub fn code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound { .. } | ApiError::NoSuchPath => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::AlreadyExists { .. } | ApiError::Conflict { .. } | ApiError::ApplyConflict { .. } => {
                StatusCode::CONFLICT
            }
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::NotFound { .. } | ApiError::NoSuchPath => "NotFound",
            ApiError::MethodNotAllowed(_) => "MethodNotAllowed",
            ApiError::AlreadyExists { .. } => "AlreadyExists",
            ApiError::Conflict { .. } | ApiError::ApplyConflict { .. } => "Conflict",
            ApiError::Gone(_) => "Expired",
            ApiError::TooLarge(_) => "RequestEntityTooLarge",
            ApiError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            ApiError::Invalid { .. } => "Invalid",
            ApiError::Unauthorized => "Unauthorized",
            ApiError::Forbidden { .. } => "Forbidden",
            ApiError::TooManyRequests(_) => "TooManyRequests",
            ApiError::Internal(_) => "InternalError",
            ApiError::Unavailable(_) => "ServiceUnavailable",
            ApiError::Timeout(_) => "Timeout",
        }
    }

    /// The `Status` object (`kind: Status`, `status: Failure`).
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.code().as_u16(),
        });
        let details = match self {
            ApiError::NotFound { kind, name, resource } | ApiError::AlreadyExists { kind, name, resource } => {
                Some(json!({"name": name, "group": group_of(resource), "kind": kind}))
            }
            ApiError::Conflict { kind, name, resource, .. } | ApiError::Forbidden { kind, name, resource, .. } => {
                Some(json!({"name": name, "group": group_of(resource), "kind": kind}))
            }
            ApiError::Invalid { kind, group, name, causes } => Some(json!({
                "name": name,
                "group": group,
                "kind": kind,
                "causes": causes.iter().map(|c| json!({"reason": c.kind, "message": cause_message(c), "field": c.field})).collect::<Vec<_>>(),
            })),
            ApiError::ApplyConflict { causes, .. } => Some(json!({
                "causes": causes
                    .iter()
                    .map(|(m, f)| json!({"reason": "FieldManagerConflict", "message": format!("conflict with \"{m}\""), "field": f}))
                    .collect::<Vec<_>>(),
            })),
            ApiError::Timeout(_) | ApiError::Unavailable(_) | ApiError::TooManyRequests(_) => {
                Some(json!({"retryAfterSeconds": 1}))
            }
            _ => None,
        };
        if let Some(d) = details {
            status["details"] = d;
        }
        status
    }
}

fn group_of(qualified: &str) -> &str {
    qualified.split_once('.').map(|(_, g)| g).unwrap_or("")
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.code().is_server_error() {
            tracing::warn!(code = self.code().as_u16(), error = %self, "request failed");
        }
        let body = serde_json::to_vec(&self.to_status()).unwrap_or_default();
        (self.code(), [(http::header::CONTENT_TYPE, "application/json")], body).into_response()
    }
}

impl From<skiff_store::Error> for ApiError {
    fn from(e: skiff_store::Error) -> Self {
        use skiff_store::Error as E;
        match e {
            E::Compacted { requested, compacted } => ApiError::Gone(format!(
                "The resourceVersion for the provided list is too old (requested {requested}, oldest available {compacted})."
            )),
            E::InvalidContinue(m) => ApiError::BadRequest(format!("invalid continue token: {m}")),
            E::Timeout { .. } => ApiError::Timeout(format!("storage timed out: {e}")),
            E::Unavailable { .. } => ApiError::Unavailable(format!("storage is unavailable: {e}")),
            // NotFound/AlreadyExists/Conflict need the resource to be phrased as upstream; the
            // registry maps them itself. Reaching here means a logic error, reported as such.
            other => ApiError::Internal(format!("storage error: {other}")),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
