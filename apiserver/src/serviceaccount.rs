//! ServiceAccount tokens, as upstream's bound service account tokens: signed JWTs issued by
//! the TokenRequest API (`POST .../serviceaccounts/{name}/token`, `authentication.k8s.io/v1`
//! TokenRequest) and accepted as bearer tokens.
//!
//! - Signing: ES256 (ECDSA P-256, SHA-256) with ring, the key from
//!   `--service-account-signing-key-file` (PKCS#8 PEM), or generated at start when none is
//!   given (tokens then die with the process: give every apiserver of a cluster the same file).
//! - Claims as upstream's: `iss` (`--service-account-issuer`), `sub`
//!   (`system:serviceaccount:<ns>:<name>`), `aud` (the request's audiences, default
//!   `--api-audiences` = the issuer), `exp`/`iat`/`nbf`, and `kubernetes.io` with the
//!   namespace, the ServiceAccount (name, uid) and the bound pod (name, uid).
//! - Validation: signature, issuer, expiry (a token past `exp` is refused, without
//!   upstream's leeway), an audience the apiserver accepts, and the objects still there:
//!   the ServiceAccount with the same uid and, for a pod-bound token, the pod with the same
//!   uid — a token of a deleted pod is refused. The user is the ServiceAccount's, in groups
//!   `system:serviceaccounts`, `system:serviceaccounts:<ns>` and `system:authenticated`.

use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::authn::UserInfo;
use crate::error::{ApiError, ApiResult};
use crate::object as obj;
use crate::registry::{Registry, Target};
use crate::resources;

/// Upstream's default `--service-account-issuer` for a cluster without one configured.
pub const DEFAULT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// TokenRequest's default `expirationSeconds` (upstream: 1 hour).
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
/// The shortest token upstream issues (`expirationSeconds` below it is invalid).
pub const MIN_EXPIRATION_SECONDS: i64 = 600;
/// The longest (upstream caps at 2^32 seconds).
pub const MAX_EXPIRATION_SECONDS: i64 = 1 << 32;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Why a signing key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("reading {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: not a PKCS#8 ECDSA P-256 private key in PEM ({why})")]
    Invalid { path: String, why: String },
}

/// A name and uid, as the `kubernetes.io` claim carries them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    pub name: String,
    pub uid: String,
}

/// The `kubernetes.io` claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesClaims {
    pub namespace: String,
    pub serviceaccount: ObjectRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<ObjectRef>,
}

/// The kinds a token can be bound to (upstream's): (kind, plural, namespaced).
const BINDABLE: [(&str, &str, bool); 3] =
    [("Pod", "pods", true), ("Secret", "secrets", true), ("Node", "nodes", false)];

impl KubernetesClaims {
    /// The objects the token is bound to: (plural, namespaced, reference).
    fn bound(&self) -> impl Iterator<Item = (&'static str, bool, &ObjectRef)> {
        [&self.pod, &self.secret, &self.node]
            .into_iter()
            .zip(BINDABLE)
            .filter_map(|(r, (_, plural, namespaced))| r.as_ref().map(|r| (plural, namespaced, r)))
    }
}

/// A token's claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: Vec<String>,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: KubernetesClaims,
}

/// Issues and checks tokens; one per apiserver.
pub struct TokenIssuer {
    key: EcdsaKeyPair,
    key_id: String,
    pub issuer: String,
    /// Audiences this apiserver accepts (`--api-audiences`).
    pub audiences: Vec<String>,
    rng: SystemRandom,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer").field("issuer", &self.issuer).field("key_id", &self.key_id).finish()
    }
}

/// A fresh PKCS#8 P-256 private key, in PEM (what `--service-account-signing-key-file` holds).
pub fn generate_key_pem() -> String {
    skiff_api::pki::signing_key().expect("generating a P-256 key")
}

impl TokenIssuer {
    /// From a PEM key (`None`: a key generated now).
    pub fn new(pem: Option<&str>, issuer: &str, audiences: Vec<String>) -> Result<Self, String> {
        let pem = match pem {
            Some(p) => p.to_string(),
            None => generate_key_pem(),
        };
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = base64::engine::general_purpose::STANDARD.decode(body.trim()).map_err(|e| e.to_string())?;
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &der, &rng)
            .map_err(|e| e.to_string())?;
        // kid: upstream's is a hash of the public key; any stable id of it serves.
        let digest = ring::digest::digest(&ring::digest::SHA256, key.public_key().as_ref());
        let key_id = B64.encode(&digest.as_ref()[..16]);
        let audiences = if audiences.is_empty() { vec![issuer.to_string()] } else { audiences };
        Ok(Self { key, key_id, issuer: issuer.to_string(), audiences, rng })
    }

    /// From `--service-account-signing-key-file`.
    pub fn from_file(path: &Path, issuer: &str, audiences: Vec<String>) -> Result<Self, KeyError> {
        let shown = path.display().to_string();
        let pem = std::fs::read_to_string(path).map_err(|source| KeyError::Read { path: shown.clone(), source })?;
        Self::new(Some(&pem), issuer, audiences).map_err(|why| KeyError::Invalid { path: shown, why })
    }

    /// The signed JWT of `claims`.
    pub fn sign(&self, claims: &Claims) -> String {
        let header = json!({"alg": "ES256", "kid": self.key_id});
        let signing_input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(serde_json::to_vec(claims).expect("claims serialize"))
        );
        let sig = self.key.sign(&self.rng, signing_input.as_bytes()).expect("signing with a valid key");
        format!("{signing_input}.{}", B64.encode(sig.as_ref()))
    }

    /// The claims of a token this issuer signed that is valid at `now` (unix seconds);
    /// `Err` says why not. Only the token itself: [`authenticate`] also checks the objects.
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, String> {
        self.verify_for(token, now, &self.audiences)
    }

    /// As [`Self::verify`], but the token must name one of `audiences` (a TokenReview's).
    pub fn verify_for(&self, token: &str, now: i64, audiences: &[String]) -> Result<Claims, String> {
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err("not a JWT".into());
        };
        let sig = B64.decode(s).map_err(|_| "bad signature encoding")?;
        let public =
            signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, self.key.public_key().as_ref());
        public.verify(format!("{h}.{c}").as_bytes(), &sig).map_err(|_| "invalid signature")?;
        let claims: Claims =
            serde_json::from_slice(&B64.decode(c).map_err(|_| "bad claims encoding")?).map_err(|e| e.to_string())?;
        if claims.iss != self.issuer {
            return Err(format!("issuer {:?} is not {:?}", claims.iss, self.issuer));
        }
        if now >= claims.exp {
            return Err("token has expired".into());
        }
        if now < claims.nbf {
            return Err("token is not valid yet".into());
        }
        if !claims.aud.iter().any(|a| audiences.contains(a)) {
            return Err("token audiences are not accepted by this apiserver".into());
        }
        Ok(claims)
    }
}

/// Whether a bearer token is shaped as a JWT (three base64url parts), so it is ours to judge.
pub fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3 && token.starts_with("eyJ")
}

/// A core/v1 object of `ns` (cluster-scoped with an empty `ns`), from the watch cache first.
async fn cached_get(reg: &Registry, plural: &str, ns: &str, name: &str) -> Option<Arc<Value>> {
    let namespace = (!ns.is_empty()).then(|| ns.to_string());
    let t = Target { resource: resources::find("", "v1", plural)?, namespace };
    reg.get_cached(&t, name).await.ok()
}

/// The user of a ServiceAccount token that must name one of `audiences`, or why it is
/// refused (401).
pub async fn authenticate(
    reg: &Registry,
    issuer: &TokenIssuer,
    token: &str,
    audiences: &[String],
) -> Result<UserInfo, String> {
    let now = chrono::Utc::now().timestamp();
    let claims = issuer.verify_for(token, now, audiences)?;
    let k = &claims.kubernetes;
    let sa = cached_get(reg, "serviceaccounts", &k.namespace, &k.serviceaccount.name)
        .await
        .ok_or("the service account no longer exists")?;
    if obj::meta_str(&sa, "uid") != Some(k.serviceaccount.uid.as_str()) {
        return Err("the service account was deleted and re-created".into());
    }
    // A bound token lives only as long as its object (the same object: same uid).
    for (plural, namespaced, bound) in k.bound() {
        let ns = if namespaced { k.namespace.as_str() } else { "" };
        let what = plural.trim_end_matches('s');
        let live = cached_get(reg, plural, ns, &bound.name)
            .await
            .ok_or_else(|| format!("the {what} it is bound to no longer exists"))?;
        if obj::meta_str(&live, "uid") != Some(bound.uid.as_str()) {
            return Err(format!("the {what} it is bound to was deleted"));
        }
    }
    Ok(UserInfo {
        name: claims.sub.clone(),
        uid: k.serviceaccount.uid.clone(),
        groups: vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{}", k.namespace),
            crate::authn::AUTHENTICATED.into(),
        ],
    })
}

/// `POST .../serviceaccounts/{name}/token`: a TokenRequest in, the same with `status.token`
/// and `status.expirationTimestamp` out.
pub async fn token_request(reg: &Registry, t: &Target, name: &str, body: &Value) -> ApiResult<Value> {
    let issuer = reg.token_issuer.clone().ok_or_else(|| {
        ApiError::Unavailable("this apiserver issues no service account tokens (no signing key)".into())
    })?;
    let ns = t.namespace.clone().unwrap_or_default();
    let sa = reg.get(t, name).await?;
    let spec = body.get("spec").cloned().unwrap_or_else(|| json!({}));
    let expiration = spec.get("expirationSeconds").and_then(Value::as_i64).unwrap_or(DEFAULT_EXPIRATION_SECONDS);
    let invalid = |field: &str, value: String, detail: &str| {
        let r = resources::find("authentication.k8s.io", "v1", "tokenrequests").unwrap_or(t.resource);
        ApiError::invalid(
            r,
            name,
            vec![skiff_api::validation::FieldError::invalid(field, format!("{value}: {detail}"))],
        )
    };
    if expiration < MIN_EXPIRATION_SECONDS {
        return Err(invalid(
            "spec.expirationSeconds",
            expiration.to_string(),
            "may not specify a duration less than 10 minutes",
        ));
    }
    if expiration > MAX_EXPIRATION_SECONDS {
        return Err(invalid(
            "spec.expirationSeconds",
            expiration.to_string(),
            "may not specify a duration larger than 2^32 seconds",
        ));
    }
    let audiences: Vec<String> = spec
        .get("audiences")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(String::from).collect())
        .filter(|a: &Vec<String>| !a.is_empty())
        .unwrap_or_else(|| issuer.audiences.clone());
    // Bound to a Pod, a Secret (of the account's namespace) or a Node: the object must exist
    // (404), with the uid given if one is (409).
    let mut bound: [Option<ObjectRef>; 3] = [None, None, None];
    if let Some(r) = spec.get("boundObjectRef").filter(|r| !r.is_null()) {
        let kind = r.get("kind").and_then(Value::as_str).unwrap_or("");
        let Some(i) = BINDABLE.iter().position(|(k, ..)| *k == kind) else {
            return Err(invalid(
                "spec.boundObjectRef.kind",
                format!("{kind:?}"),
                "supported values: \"Pod\", \"Secret\", \"Node\"",
            ));
        };
        let (_, plural, namespaced) = BINDABLE[i];
        let object = r.get("name").and_then(Value::as_str).unwrap_or("");
        let live = cached_get(reg, plural, if namespaced { &ns } else { "" }, object)
            .await
            .ok_or_else(|| ApiError::not_found(resources::find("", "v1", plural).expect("served"), object))?;
        let uid = obj::meta_str(&live, "uid").unwrap_or("").to_string();
        if let Some(want) = r.get("uid").and_then(Value::as_str).filter(|u| !u.is_empty()) {
            if want != uid {
                let kind = kind.to_lowercase();
                return Err(ApiError::conflict(
                    t.resource,
                    name,
                    &format!("the UID in the bound object reference ({want}) does not match the {kind}'s ({uid})"),
                ));
            }
        }
        bound[i] = Some(ObjectRef { name: object.to_string(), uid });
    }
    let [pod, secret, node] = bound;
    let now = chrono::Utc::now().timestamp();
    let claims = Claims {
        iss: issuer.issuer.clone(),
        sub: format!("system:serviceaccount:{ns}:{name}"),
        aud: audiences.clone(),
        exp: now + expiration,
        iat: now,
        nbf: now,
        kubernetes: KubernetesClaims {
            namespace: ns.clone(),
            serviceaccount: ObjectRef {
                name: name.to_string(),
                uid: obj::meta_str(&sa, "uid").unwrap_or("").to_string(),
            },
            pod,
            secret,
            node,
        },
    };
    let token = issuer.sign(&claims);
    let expires = chrono::DateTime::from_timestamp(claims.exp, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default();
    let mut spec = spec;
    spec["audiences"] = json!(audiences);
    spec["expirationSeconds"] = json!(expiration);
    Ok(json!({"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": null},
        "spec": spec, "status": {"token": token, "expirationTimestamp": expires}}))
}

/// Where upstream mounts a pod's API credentials (token, ca.crt, namespace).
pub const API_ACCESS_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The prefix of the injected volume's name (`kube-api-access-xxxxx`).
pub const API_ACCESS_VOLUME_PREFIX: &str = "kube-api-access-";
/// The injected token's lifetime: upstream asks for 3607 s, one it recognises as "a legacy
/// token source" (the kubelet refreshes it long before it expires).
pub const API_ACCESS_EXPIRATION_SECONDS: i64 = 3607;

/// Upstream's ServiceAccount admission on pod create: the pod runs as `default` unless it
/// names an account; the account must exist (403 otherwise, as upstream); and unless the pod
/// or the account opt out (`automountServiceAccountToken: false`), every container that does
/// not already mount something there gets the projected `kube-api-access-*` volume at
/// [`API_ACCESS_MOUNT_PATH`]: a pod-bound token the kubelet requests and refreshes, the
/// cluster CA (`kube-root-ca.crt`) and the namespace. Mirror pods are left alone: the
/// kubelet, not the API, owns their spec.
pub async fn admit_pod(reg: &Registry, ns: &str, pod: &mut Value) -> ApiResult<()> {
    if pod.pointer("/metadata/annotations/kubernetes.io~1config.mirror").is_some() {
        return Ok(());
    }
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else { return Ok(()) };
    let account = match spec.get("serviceAccountName").and_then(Value::as_str).filter(|s| !s.is_empty()) {
        Some(a) => a.to_string(),
        None => {
            spec.insert("serviceAccountName".into(), json!("default"));
            spec.insert("serviceAccount".into(), json!("default"));
            "default".to_string()
        }
    };
    let Some(sa) = cached_get(reg, "serviceaccounts", ns, &account).await else {
        let r = resources::find("", "v1", "pods").expect("served");
        let name = pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
        return Err(ApiError::forbidden(
            r,
            &name,
            format!("error looking up service account {ns}/{account}: serviceaccount \"{account}\" not found"),
        ));
    };
    let automount = spec
        .get("automountServiceAccountToken")
        .or_else(|| sa.get("automountServiceAccountToken"))
        .and_then(Value::as_bool)
        .unwrap_or(true);
    if automount {
        mount_api_access(spec);
    }
    Ok(())
}

/// Adds the `kube-api-access-*` volume and its mount (upstream's mountServiceAccountToken):
/// an existing volume of that prefix is reused, and a container that already mounts
/// something at the path keeps its own.
fn mount_api_access(spec: &mut serde_json::Map<String, Value>) {
    let existing = spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.get("name").and_then(Value::as_str))
        .find(|n| n.starts_with(API_ACCESS_VOLUME_PREFIX))
        .map(String::from);
    let volume =
        existing.clone().unwrap_or_else(|| format!("{API_ACCESS_VOLUME_PREFIX}{}", crate::strategy::random_suffix()));
    let mount = json!({"name": volume, "readOnly": true, "mountPath": API_ACCESS_MOUNT_PATH});
    let mut needed = false;
    for list in ["initContainers", "containers"] {
        for c in spec.get_mut(list).and_then(Value::as_array_mut).into_iter().flatten() {
            let Some(c) = c.as_object_mut() else { continue };
            let mounts = c.entry("volumeMounts").or_insert_with(|| json!([]));
            let Some(mounts) = mounts.as_array_mut() else { continue };
            if mounts.iter().any(|m| m.get("mountPath").and_then(Value::as_str) == Some(API_ACCESS_MOUNT_PATH)) {
                continue;
            }
            mounts.push(mount.clone());
            needed = true;
        }
    }
    if needed && existing.is_none() {
        let v = json!({
            "name": volume,
            "projected": {
                "defaultMode": 0o644,
                "sources": [
                    {"serviceAccountToken": {"expirationSeconds": API_ACCESS_EXPIRATION_SECONDS, "path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {"downwardAPI": {"items": [{"path": "namespace",
                        "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
                ],
            },
        });
        match spec.get_mut("volumes").and_then(Value::as_array_mut) {
            Some(vs) => vs.push(v),
            None => {
                spec.insert("volumes".into(), json!([v]));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(issuer: &TokenIssuer, exp: i64) -> Claims {
        Claims {
            iss: issuer.issuer.clone(),
            sub: "system:serviceaccount:default:builder".into(),
            aud: issuer.audiences.clone(),
            exp,
            iat: 1000,
            nbf: 1000,
            kubernetes: KubernetesClaims {
                namespace: "default".into(),
                serviceaccount: ObjectRef { name: "builder".into(), uid: "sa-uid".into() },
                pod: Some(ObjectRef { name: "web".into(), uid: "pod-uid".into() }),
                secret: None,
                node: None,
            },
        }
    }

    #[test]
    fn tokens_verify_only_as_signed_unexpired_and_for_us() {
        let issuer = TokenIssuer::new(None, DEFAULT_ISSUER, vec![]).unwrap();
        let c = claims(&issuer, 5000);
        let token = issuer.sign(&c);
        assert!(looks_like_jwt(&token));
        assert_eq!(issuer.verify(&token, 2000).unwrap(), c);
        assert_eq!(issuer.verify(&token, 5000).unwrap_err(), "token has expired");
        assert_eq!(issuer.verify(&token, 999).unwrap_err(), "token is not valid yet");
        // Another key, a tampered payload, a foreign audience: refused.
        let other = TokenIssuer::new(None, DEFAULT_ISSUER, vec![]).unwrap();
        assert_eq!(other.verify(&token, 2000).unwrap_err(), "invalid signature");
        let mut parts: Vec<String> = token.split('.').map(String::from).collect();
        let mut forged = c.clone();
        forged.kubernetes.serviceaccount.name = "admin".into();
        parts[1] = B64.encode(serde_json::to_vec(&forged).unwrap());
        assert_eq!(issuer.verify(&parts.join("."), 2000).unwrap_err(), "invalid signature");
        let mut foreign = c.clone();
        foreign.aud = vec!["vault".into()];
        assert!(issuer.verify(&issuer.sign(&foreign), 2000).unwrap_err().contains("audiences"));
        // The key survives a round trip through its PEM file format.
        let pem = generate_key_pem();
        let a = TokenIssuer::new(Some(&pem), DEFAULT_ISSUER, vec![]).unwrap();
        let b = TokenIssuer::new(Some(&pem), DEFAULT_ISSUER, vec![]).unwrap();
        assert!(b.verify(&a.sign(&claims(&a, 5000)), 2000).is_ok());
        assert!(TokenIssuer::new(
            Some("-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n"),
            DEFAULT_ISSUER,
            vec![]
        )
        .is_err());
    }
}
