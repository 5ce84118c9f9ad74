//! Overload protection, after upstream's max-in-flight filter with a little of API Priority
//! and Fairness: a cap on requests being served at once (`--max-requests-inflight`, default
//! 400, and `--max-mutating-requests-inflight`, default 200); past it a request gets 429
//! `TooManyRequests` with `Retry-After: 1`, as upstream answers.
//!
//! Fairness, so one noisy client cannot starve the rest:
//! - `system:masters` is exempt (as upstream's `exempt` priority level).
//! - A quarter of each pool is reserved for the nodes (group `system:nodes`): workload
//!   requests can never take the slots node heartbeats (Lease and Node status writes) need.
//! - One user may hold at most half of the rest.
//!
//! Long-running requests (watches, and a pod's `log`, `exec`, `attach`, `portforward`) are
//! not counted, as upstream: they would hold a slot for their whole life.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method};

use crate::authn::UserInfo;
use crate::error::ApiError;

/// The group whose requests get the reserved share.
pub const NODES: &str = "system:nodes";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Non-mutating requests at once (GET, HEAD); 0 = no limit.
    pub max_read: usize,
    /// Mutating requests at once; 0 = no limit.
    pub max_mutating: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_read: 400, max_mutating: 200 }
    }
}

#[derive(Default)]
struct Pool {
    total: usize,
    per_user: HashMap<String, usize>,
}

/// The in-flight counters.
pub struct InFlight {
    limits: Limits,
    pools: Mutex<[Pool; 2]>,
}

/// One admitted request's slot; freed when dropped.
pub struct Slot {
    owner: Arc<InFlight>,
    pool: usize,
    user: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut pools = self.owner.pools.lock().unwrap_or_else(|e| e.into_inner());
        let p = &mut pools[self.pool];
        p.total = p.total.saturating_sub(1);
        if let Some(n) = p.per_user.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                p.per_user.remove(&self.user);
            }
        }
    }
}

/// Whether a request is long-running (not counted): a watch, or a pod stream. Read from the
/// same request attributes authorization uses.
pub fn long_running(method: &Method, path: &str, query: Option<&str>) -> bool {
    let a = crate::authz::attributes(&UserInfo::anonymous(), method, path, query);
    a.verb == "watch" || matches!(a.subresource.as_str(), "log" | "exec" | "attach" | "portforward")
}

impl InFlight {
    pub fn new(limits: Limits) -> Arc<Self> {
        Arc::new(InFlight { limits, pools: Mutex::new([Pool::default(), Pool::default()]) })
    }

    /// A slot for `user`'s request, or None when it must wait (429).
    pub fn admit(self: &Arc<Self>, user: &UserInfo, mutating: bool) -> Option<Slot> {
        let cap = if mutating { self.limits.max_mutating } else { self.limits.max_read };
        let pool = usize::from(mutating);
        let node = user.groups.iter().any(|g| g == NODES);
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        let p = &mut pools[pool];
        if cap > 0 {
            let reserved = (cap / 4).max(1).min(cap.saturating_sub(1));
            let shared = cap - reserved;
            let mine = p.per_user.get(&user.name).copied().unwrap_or(0);
            let allowed = if node { p.total < cap } else { p.total < shared && mine < (shared / 2).max(1) };
            if !allowed {
                tracing::debug!(user = %user.name, total = p.total, mine, shared, "in-flight limit reached");
                return None;
            }
        }
        p.total += 1;
        *p.per_user.entry(user.name.clone()).or_default() += 1;
        Some(Slot { owner: self.clone(), pool, user: user.name.clone() })
    }
}

/// Middleware (after authentication): admits the request or answers 429.
pub async fn limit(State(inflight): State<Arc<InFlight>>, req: Request, next: Next) -> Response {
    let user = req.extensions().get::<UserInfo>().cloned().unwrap_or_else(UserInfo::anonymous);
    if user.groups.iter().any(|g| g == skiff_api::rbac::SYSTEM_MASTERS)
        || long_running(req.method(), req.uri().path(), req.uri().query())
    {
        return next.run(req).await;
    }
    let mutating = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let Some(slot) = inflight.admit(&user, mutating) else {
        tracing::debug!(user = %user.name, mutating, "too many requests in flight");
        let mut resp = ApiError::TooManyRequests("Too many requests, please try again later.".into()).into_response();
        resp.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
        return resp;
    };
    let resp = next.run(req).await;
    drop(slot);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo { name: name.into(), uid: String::new(), groups: groups.iter().map(|g| g.to_string()).collect() }
    }

    #[test]
    fn a_noisy_user_gets_half_the_shared_slots_and_nodes_keep_theirs() {
        let f = InFlight::new(Limits { max_read: 8, max_mutating: 4 });
        let noisy = user("noisy", &["system:authenticated"]);
        // 8 slots: 2 reserved for nodes, 6 shared, at most 3 per user.
        let held: Vec<Slot> = (0..3).map(|_| f.admit(&noisy, false).expect("within its share")).collect();
        assert!(f.admit(&noisy, false).is_none(), "a fourth is refused");
        let quiet = user("quiet", &["system:authenticated"]);
        let q: Vec<Slot> = (0..3).map(|_| f.admit(&quiet, false).expect("others still get in")).collect();
        assert!(f.admit(&user("third", &[]), false).is_none(), "the shared slots are full");
        let node = user("system:node:n1", &[NODES]);
        let n1 = f.admit(&node, false).expect("a node uses its reserve");
        let n2 = f.admit(&node, false).expect("both reserved slots");
        assert!(f.admit(&node, false).is_none(), "the whole pool is full");
        assert!(f.admit(&noisy, true).is_some(), "the mutating pool is separate");
        drop((n1, n2, q));
        drop(held);
        assert!(f.admit(&noisy, false).is_some(), "slots come back when requests end");
    }

    #[test]
    fn long_running_requests_are_not_counted() {
        assert!(long_running(&Method::GET, "/api/v1/namespaces/d/pods", Some("watch=true")));
        assert!(long_running(&Method::GET, "/api/v1/watch/pods", None));
        assert!(long_running(&Method::POST, "/api/v1/namespaces/d/pods/p/exec", Some("command=ls")));
        assert!(long_running(&Method::GET, "/api/v1/namespaces/d/pods/p/log", Some("follow=true")));
        assert!(!long_running(&Method::GET, "/api/v1/namespaces/d/pods", None));
        assert!(!long_running(&Method::POST, "/api/v1/namespaces/d/pods", Some("watch=true")));
    }

    #[test]
    fn zero_means_no_limit() {
        let f = InFlight::new(Limits { max_read: 0, max_mutating: 0 });
        let u = user("u", &[]);
        let slots: Vec<Slot> = (0..1000).filter_map(|_| f.admit(&u, false)).collect();
        assert_eq!(slots.len(), 1000);
    }
}
