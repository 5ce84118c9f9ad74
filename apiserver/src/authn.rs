//! The request-identity hook. Every request passes through [`identify`], which attaches a
//! [`UserInfo`] to the request's extensions before any handler runs. Today every request is
//! `system:anonymous` in `system:unauthenticated` (plain HTTP, no authentication); the
//! security issue replaces the body of [`identify`] with x509 / token authentication and
//! adds authorization after it, without touching the handlers.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;

/// Who is making a request, as upstream's `user.Info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub groups: Vec<String>,
}

impl UserInfo {
    pub fn anonymous() -> Self {
        Self { name: "system:anonymous".into(), groups: vec!["system:unauthenticated".into()] }
    }
}

/// Middleware: authenticates the request and records the identity.
pub async fn identify(mut req: Request, next: Next) -> Response {
    req.extensions_mut().insert(UserInfo::anonymous());
    next.run(req).await
}
