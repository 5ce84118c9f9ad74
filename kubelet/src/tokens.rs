//! The kubelet's ServiceAccount token manager (upstream's `pkg/kubelet/token`): the tokens of
//! projected `serviceAccountToken` volume sources, requested from the TokenRequest API bound
//! to the pod, cached, and refreshed before they expire.
//!
//! A cached token is renewed once 80% of its lifetime has passed, or once it is 24 hours
//! old, as upstream (without upstream's jitter: one kubelet's few pods do not stampede).
//! The pod worker asks on every sync (every 10 s at most), so a mounted token file is always
//! a live token. Entries go when the pod's worker ends ([`TokenManager::forget`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount, ServiceAccountTokenProjection};
use kube::api::{Api, PostParams};

/// Upstream's cap on how long a kubelet keeps one token (`maxTTL`).
const MAX_TTL: Duration = Duration::from_secs(24 * 3600);
/// The lifetime asked for when the source names none (upstream: 1 hour).
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;

/// What one token is for: the pod (uid), its account, the audience and the lifetime.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    pod_uid: String,
    namespace: String,
    account: String,
    audience: String,
    expiration_seconds: i64,
}

struct Cached {
    token: String,
    issued: SystemTime,
    expires: SystemTime,
}

impl Cached {
    /// Whether the token must be renewed at `now`.
    fn stale(&self, now: SystemTime) -> bool {
        let ttl = self.expires.duration_since(self.issued).unwrap_or_default();
        let age = now.duration_since(self.issued).unwrap_or_default();
        age >= ttl.mul_f64(0.8) || age >= MAX_TTL
    }
}

#[derive(Debug, thiserror::Error)]
#[error("requesting a token for service account {namespace}/{account}: {source}")]
pub struct TokenError {
    namespace: String,
    account: String,
    source: kube::Error,
}

/// The error for an answer without a token (a server bug; never expected).
fn no_token() -> kube::Error {
    kube::Error::Service(std::io::Error::other("the TokenRequest answer carries no token").into())
}

#[derive(Default)]
pub struct TokenManager {
    cache: Mutex<HashMap<Key, Cached>>,
}

impl TokenManager {
    /// The token for one `serviceAccountToken` source of `pod`, from the cache while it is
    /// fresh, else a new one from the API (bound to the pod by name and uid).
    pub async fn token(
        &self,
        client: &kube::Client,
        pod: &Pod,
        source: &ServiceAccountTokenProjection,
    ) -> Result<String, TokenError> {
        let spec = pod.spec.clone().unwrap_or_default();
        let key = Key {
            pod_uid: pod.metadata.uid.clone().unwrap_or_default(),
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            account: spec.service_account_name.filter(|s| !s.is_empty()).unwrap_or_else(|| "default".into()),
            audience: source.audience.clone().unwrap_or_default(),
            expiration_seconds: source.expiration_seconds.unwrap_or(DEFAULT_EXPIRATION_SECONDS),
        };
        let now = SystemTime::now();
        if let Some(c) = self.cache.lock().expect("token cache").get(&key).filter(|c| !c.stale(now)) {
            return Ok(c.token.clone());
        }
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: if key.audience.is_empty() { vec![] } else { vec![key.audience.clone()] },
                expiration_seconds: Some(key.expiration_seconds),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: pod.metadata.name.clone(),
                    uid: pod.metadata.uid.clone(),
                }),
            },
            ..Default::default()
        };
        let api: Api<ServiceAccount> = Api::namespaced(client.clone(), &key.namespace);
        let err = |source| TokenError { namespace: key.namespace.clone(), account: key.account.clone(), source };
        let answer = api.create_token_request(&key.account, &PostParams::default(), &request).await.map_err(err)?;
        let Some(status) = answer.status.filter(|s| !s.token.is_empty()) else {
            return Err(TokenError { namespace: key.namespace, account: key.account, source: no_token() });
        };
        // The server may shorten the lifetime; its expirationTimestamp is the truth.
        let expires =
            SystemTime::UNIX_EPOCH + Duration::from_secs(status.expiration_timestamp.0.as_second().max(0) as u64);
        let token = status.token;
        self.cache.lock().expect("token cache").insert(key, Cached { token: token.clone(), issued: now, expires });
        Ok(token)
    }

    /// Drops the tokens of a pod that is gone from the node.
    pub fn forget(&self, pod_uid: &str) {
        self.cache.lock().expect("token cache").retain(|k, _| k.pod_uid != pod_uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_renewed_after_80_percent_of_its_life_or_a_day() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let hour = Cached { token: "t".into(), issued: t0, expires: t0 + Duration::from_secs(3600) };
        assert!(!hour.stale(t0));
        assert!(!hour.stale(t0 + Duration::from_secs(2879)));
        assert!(hour.stale(t0 + Duration::from_secs(2880)));
        let year = Cached { token: "t".into(), issued: t0, expires: t0 + Duration::from_secs(365 * 86400) };
        assert!(!year.stale(t0 + Duration::from_secs(86399)));
        assert!(year.stale(t0 + MAX_TTL));
    }
}
