//! Authentication: who is making a request. Every request passes through [`identify`], which
//! attaches a [`UserInfo`] to the request's extensions before any handler runs, or answers
//! 401 itself.
//!
//! Three authenticators so far, combined as upstream's kube-apiserver combines them:
//! - x509 client certificates (TLS with `--client-ca-file`, see [`crate::tls`]): CN = user,
//!   O = groups; a verified certificate wins over any token.
//! - static bearer tokens (`--token-auth-file`, upstream's CSV: `token,user,uid,"g1,g2"`):
//!   `Authorization: Bearer <token>` with a listed token is that user, in its groups plus
//!   `system:authenticated`; a bearer token that is *not* listed is refused with 401 (an
//!   invalid credential never falls back to anonymous). The header is removed once it has
//!   been checked, so it is never forwarded (e.g. to a kubelet by `nodeproxy`).
//! - anonymous: a request without credentials is `system:anonymous` in
//!   `system:unauthenticated`, unless `--anonymous-auth=false`, which refuses it with 401,
//!   except on the health and version endpoints ([`ANONYMOUS_PATHS`]) so probes keep working.
//!
//! Without a token file, bearer tokens are not looked at (every request is anonymous), as
//! upstream does without token authenticators. Nothing is *authorized* yet: an
//! authenticated user may do everything an anonymous one may (RBAC and the Node authorizer
//! come with the security issue, after this hook).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::header;
use tracing::warn;

use crate::error::ApiError;

/// Who is making a request, as upstream's `user.Info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
}

impl UserInfo {
    pub fn anonymous() -> Self {
        Self { name: "system:anonymous".into(), uid: String::new(), groups: vec!["system:unauthenticated".into()] }
    }
}

/// Paths an unauthenticated request may reach even with `--anonymous-auth=false`
/// (and their sub-paths, e.g. `/readyz/ping`).
pub const ANONYMOUS_PATHS: [&str; 4] = ["/healthz", "/livez", "/readyz", "/version"];

/// The group every authenticated user is added to.
pub(crate) const AUTHENTICATED: &str = "system:authenticated";

/// Why a token file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("reading the token file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("token file {path}, line {line}: {message}")]
    Parse { path: PathBuf, line: usize, message: String },
}

/// The tokens of a static token file (`--token-auth-file`): token → user.
#[derive(Clone, Default)]
pub struct TokenFile {
    tokens: HashMap<String, UserInfo>,
}

// Never print the tokens themselves (the config is logged and debug-printed).
impl std::fmt::Debug for TokenFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenFile").field("tokens", &self.tokens.len()).finish()
    }
}

impl TokenFile {
    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<Self, TokenFileError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| TokenFileError::Read { path: path.into(), source })?;
        Self::parse(&text).map_err(|(line, message)| TokenFileError::Parse { path: path.into(), line, message })
    }

    /// Parses upstream's format: one CSV record per line, `token,user,uid[,"group1,group2"]`
    /// (further columns ignored), leading spaces of fields trimmed; blank lines and lines
    /// starting with `#` are skipped. Records with an empty token are skipped (upstream warns
    /// and goes on); a repeated token keeps the last record. Errors carry the line number.
    pub fn parse(text: &str) -> Result<Self, (usize, String)> {
        let mut tokens = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let record = csv_record(line).map_err(|m| (n, m))?;
            if record.len() < 3 {
                return Err((
                    n,
                    format!("must have at least 3 columns (token, user name, user uid), found {}", record.len()),
                ));
            }
            if record[0].is_empty() {
                warn!(line = n, "the token file has an empty token; skipping the record");
                continue;
            }
            let mut groups: Vec<String> = record
                .get(3)
                .map(|g| g.split(',').filter(|g| !g.is_empty()).map(String::from).collect())
                .unwrap_or_default();
            if !groups.iter().any(|g| g == AUTHENTICATED) {
                groups.push(AUTHENTICATED.into());
            }
            let user = UserInfo { name: record[1].clone(), uid: record[2].clone(), groups };
            if tokens.insert(record[0].clone(), user).is_some() {
                warn!(line = n, "the token file repeats a token; the later record wins");
            }
        }
        Ok(Self { tokens })
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The user a token belongs to.
    pub fn user(&self, token: &str) -> Option<&UserInfo> {
        self.tokens.get(token)
    }
}

/// One CSV record (RFC 4180 quoting: `"a,b"`, `""` for a quote inside quotes; leading spaces
/// of a field trimmed, as Go's `csv.Reader{TrimLeadingSpace: true}`).
fn csv_record(line: &str) -> Result<Vec<String>, String> {
    let mut fields = vec![];
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ' ' || *c == '\t') {
            chars.next();
        }
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => return Err("a quoted field is not closed".into()),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => fields.push(field),
                Some(c) => return Err(format!("unexpected {c:?} after a quoted field")),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some('"') => return Err("a bare \" in a non-quoted field".into()),
                    Some(c) => field.push(c),
                }
            }
            fields.push(field);
        }
    }
}

/// The authentication settings (`--token-auth-file`, `--anonymous-auth`).
#[derive(Clone)]
pub struct Authenticator {
    /// Static tokens; `None`: bearer tokens are not checked at all.
    pub tokens: Option<TokenFile>,
    /// Whether requests without credentials are served as `system:anonymous`.
    pub anonymous: bool,
    /// Where ServiceAccount tokens are checked (the registry holds the issuer and the
    /// ServiceAccounts and pods a token must still match); set by the apiserver.
    pub service_accounts: Option<crate::registry::Registry>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("tokens", &self.tokens)
            .field("anonymous", &self.anonymous)
            .field("service_accounts", &self.service_accounts.is_some())
            .finish()
    }
}

impl Default for Authenticator {
    /// Everyone is anonymous (no token file, anonymous allowed).
    fn default() -> Self {
        Self { tokens: None, anonymous: true, service_accounts: None }
    }
}

/// The outcome of authenticating one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Served as this user; `strip_authorization`: the header carried a checked credential.
    User { user: UserInfo, strip_authorization: bool },
    /// 401.
    Unauthorized,
}

impl Authenticator {
    /// Decides who sent a request with this `Authorization` header value to `path`.
    pub fn authenticate(&self, authorization: Option<&str>, path: &str) -> Outcome {
        if let (Some(tokens), Some(token)) = (&self.tokens, authorization.and_then(bearer_token)) {
            return match tokens.user(token) {
                Some(user) => Outcome::User { user: user.clone(), strip_authorization: true },
                None => Outcome::Unauthorized,
            };
        }
        if self.anonymous || anonymous_path(path) {
            Outcome::User { user: UserInfo::anonymous(), strip_authorization: false }
        } else {
            Outcome::Unauthorized
        }
    }
}

impl Authenticator {
    /// A ServiceAccount token's user (and the audiences it is good for: one of `audiences`,
    /// default the apiserver's), or why it is refused; `None` when the token is not ours to
    /// judge (not a JWT, or this apiserver issues none).
    async fn service_account_token(
        &self,
        token: &str,
        audiences: &[String],
    ) -> Option<Result<(UserInfo, Vec<String>), String>> {
        let reg = self.service_accounts.as_ref().filter(|_| crate::serviceaccount::looks_like_jwt(token))?;
        let issuer = reg.token_issuer.clone()?;
        let wanted = if audiences.is_empty() { issuer.audiences.clone() } else { audiences.to_vec() };
        Some(crate::serviceaccount::authenticate(reg, &issuer, token, &wanted).await.map(|user| (user, wanted)))
    }

    /// Who a bearer token belongs to, for a TokenReview: a ServiceAccount JWT (which must
    /// name one of `audiences`, default the apiserver's) or a static token. Returns the user
    /// and the audiences the token is good for, or why it is refused.
    pub async fn review_token(&self, token: &str, audiences: &[String]) -> Result<(UserInfo, Vec<String>), String> {
        if let Some(judged) = self.service_account_token(token, audiences).await {
            return judged;
        }
        // Static tokens are not audience-scoped: good for whatever was asked (upstream's
        // "audience-agnostic" authenticators answer with the requested audiences).
        match self.tokens.as_ref().and_then(|t| t.user(token)) {
            Some(user) => Ok((user.clone(), audiences.to_vec())),
            None => Err("invalid bearer token".into()),
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header, as upstream's bearer-token
/// authenticator reads it (case-insensitive scheme, one space; an empty token is no token).
fn bearer_token(header: &str) -> Option<&str> {
    let mut parts = header.trim().splitn(3, ' ');
    let scheme = parts.next()?;
    let token = parts.next()?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn anonymous_path(path: &str) -> bool {
    ANONYMOUS_PATHS.iter().any(|p| path == *p || path.strip_prefix(p).is_some_and(|rest| rest.starts_with('/')))
}

/// Middleware: authenticates the request and records the identity, or answers 401.
pub async fn identify(State(auth): State<Arc<Authenticator>>, mut req: Request, next: Next) -> Response {
    // A verified client certificate comes first, as upstream's union of authenticators
    // (x509, then tokens, then anonymous).
    if let Some(crate::tls::PeerIdentity(user)) = req.extensions().get::<crate::tls::PeerIdentity>().cloned() {
        req.extensions_mut().insert(user);
        return next.run(req).await;
    }
    let authorization = req.headers().get(header::AUTHORIZATION).map(|v| v.to_str().unwrap_or(""));
    // A JWT is a ServiceAccount token: checked against the issuer and the live objects.
    let sa_token = match authorization.and_then(bearer_token) {
        Some(token) => auth.service_account_token(token, &[]).await,
        None => None,
    };
    let outcome = match sa_token {
        Some(Ok((user, _))) => Outcome::User { user, strip_authorization: true },
        Some(Err(why)) => {
            warn!(path = req.uri().path(), %why, "service account token refused");
            Outcome::Unauthorized
        }
        None => auth.authenticate(authorization, req.uri().path()),
    };
    match outcome {
        Outcome::User { user, strip_authorization } => {
            if strip_authorization {
                req.headers_mut().remove(header::AUTHORIZATION);
            }
            req.extensions_mut().insert(user);
            next.run(req).await
        }
        Outcome::Unauthorized => {
            let peer = req
                .extensions()
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.to_string())
                .unwrap_or_default();
            warn!(method = %req.method(), path = req.uri().path(), peer, "unable to authenticate the request");
            ApiError::Unauthorized.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    fn user(name: &str, uid: &str, groups: &[&str]) -> UserInfo {
        UserInfo { name: name.into(), uid: uid.into(), groups: groups.iter().map(|g| g.to_string()).collect() }
    }

    #[test]
    fn token_file_parses_upstreams_csv() {
        let f = TokenFile::parse(
            "# comment\n\
             \n\
             t1,kubelet,uid-1,\"system:nodes,skiff:joined\"\n\
             t2, admin, 2, system:masters\n\
             t3,bob,3\r\n\
             t4,\"a \"\"quoted\"\" name\",4,\"\",extra,columns\n\
             ,nobody,5\n\
             t5,first,6\n\
             t5,second,7\n",
        )
        .unwrap();
        assert_eq!(f.len(), 5);
        assert_eq!(f.user("t1").unwrap(), &user("kubelet", "uid-1", &["system:nodes", "skiff:joined", AUTHENTICATED]));
        assert_eq!(f.user("t2").unwrap(), &user("admin", "2", &["system:masters", AUTHENTICATED]));
        assert_eq!(f.user("t3").unwrap(), &user("bob", "3", &[AUTHENTICATED]));
        assert_eq!(f.user("t4").unwrap(), &user("a \"quoted\" name", "4", &[AUTHENTICATED]));
        assert_eq!(f.user("t5").unwrap().name, "second");
        assert!(f.user("").is_none());
        assert!(!format!("{f:?}").contains("t1"), "Debug never shows tokens");
    }

    #[test]
    fn token_file_errors_name_the_line() {
        assert_eq!(TokenFile::parse("# x\nt1,only-two\n").unwrap_err().0, 2);
        assert!(TokenFile::parse("t1,u,1,\"unclosed\n").unwrap_err().1.contains("not closed"));
        assert!(TokenFile::parse("t1,u\"x,1\n").is_err());
        assert!(TokenFile::parse("t1,\"u\"x,1\n").is_err());
        let missing = TokenFile::load(Path::new("/nonexistent/tokens.csv")).unwrap_err();
        assert!(missing.to_string().contains("/nonexistent/tokens.csv"), "{missing}");
    }

    #[test]
    fn bearer_tokens_are_read_as_upstream() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("  bearer abc  "), Some("abc"));
        assert_eq!(bearer_token("Bearer abc def"), Some("abc"));
        assert_eq!(bearer_token("Bearer  abc"), None, "a space before the token is no token");
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token("Basic dXNlcjpwdw=="), None);
    }

    #[test]
    fn tokens_identify_bad_tokens_are_refused_and_anonymous_is_optional() {
        let tokens = TokenFile::parse("good,kubelet,1,system:nodes\n").unwrap();
        let open = Authenticator { tokens: Some(tokens.clone()), anonymous: true, service_accounts: None };
        let closed = Authenticator { tokens: Some(tokens), anonymous: false, service_accounts: None };
        let kubelet =
            Outcome::User { user: user("kubelet", "1", &["system:nodes", AUTHENTICATED]), strip_authorization: true };
        let anonymous = Outcome::User { user: UserInfo::anonymous(), strip_authorization: false };
        for a in [&open, &closed] {
            assert_eq!(a.authenticate(Some("Bearer good"), "/api/v1/nodes"), kubelet);
            // An invalid credential is refused, never downgraded to anonymous.
            assert_eq!(a.authenticate(Some("Bearer bad"), "/api/v1/nodes"), Outcome::Unauthorized);
            assert_eq!(a.authenticate(Some("Bearer bad"), "/healthz"), Outcome::Unauthorized);
        }
        assert_eq!(open.authenticate(None, "/api/v1/nodes"), anonymous);
        assert_eq!(open.authenticate(Some("Basic x"), "/api"), anonymous);
        assert_eq!(closed.authenticate(None, "/api/v1/nodes"), Outcome::Unauthorized);
        assert_eq!(closed.authenticate(Some("Basic x"), "/api"), Outcome::Unauthorized);
        for p in ["/healthz", "/livez", "/readyz", "/version", "/readyz/ping"] {
            assert_eq!(closed.authenticate(None, p), anonymous, "{p}");
        }
        assert_eq!(closed.authenticate(None, "/healthzfoo"), Outcome::Unauthorized);
        // No token file: bearer tokens are not looked at.
        assert_eq!(Authenticator::default().authenticate(Some("Bearer anything"), "/api"), anonymous);
    }

    #[tokio::test]
    async fn the_middleware_records_the_user_and_strips_the_credential() {
        use tower::ServiceExt;
        let auth = Authenticator {
            tokens: Some(TokenFile::parse("good,kubelet,1\n").unwrap()),
            anonymous: false,
            service_accounts: None,
        };
        let app = axum::Router::new()
            .route(
                "/whoami",
                axum::routing::get(|req: Request| async move {
                    let u = req.extensions().get::<UserInfo>().cloned().unwrap();
                    format!("{} {:?} {}", u.name, u.groups, req.headers().contains_key(header::AUTHORIZATION))
                }),
            )
            .layer(axum::middleware::from_fn_with_state(Arc::new(auth), identify));
        let call = |auth: Option<&str>| {
            let mut req = http::Request::get("/whoami");
            if let Some(a) = auth {
                req = req.header(header::AUTHORIZATION, a);
            }
            app.clone().oneshot(req.body(axum::body::Body::empty()).unwrap())
        };
        let ok = call(Some("Bearer good")).await.unwrap();
        assert_eq!(ok.status(), StatusCode::OK);
        let body = axum::body::to_bytes(ok.into_body(), 1 << 16).await.unwrap();
        assert_eq!(&body[..], b"kubelet [\"system:authenticated\"] false");
        for a in [Some("Bearer bad"), None] {
            let refused = call(a).await.unwrap();
            assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
            let body = axum::body::to_bytes(refused.into_body(), 1 << 16).await.unwrap();
            let status: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(status["reason"], "Unauthorized");
            assert_eq!(status["code"], 401);
        }
    }
}
