//! Encryption at rest (`--encryption-provider-config`), as upstream's
//! `EncryptionConfiguration` (apiserver.config.k8s.io/v1) with the `aesgcm` and `identity`
//! providers:
//!
//! ```yaml
//! apiVersion: apiserver.config.k8s.io/v1
//! kind: EncryptionConfiguration
//! resources:
//!   - resources: [secrets]
//!     providers:
//!       - aesgcm:
//!           keys:
//!             - name: key2
//!               secret: <base64 of 16 or 32 random bytes>
//!             - name: key1
//!               secret: ...
//!       - identity: {}
//! ```
//!
//! The first provider (and its first key) seals every write: etcd holds
//! `k8s:enc:aesgcm:v1:<key name>:` + a random 12-byte nonce + AES-GCM ciphertext, with the
//! object's key as additional data (a sealed value moved to another key does not open).
//! Every listed key opens what it sealed; `identity` lets plain (not yet encrypted) values be
//! read. Anything not in the current write form is *stale* and rewritten on the next update,
//! so rotating a key is: put the new key first, restart, rewrite every Secret (`kubectl get
//! secrets -A -o json | kubectl replace -f -`), then drop the old key.

use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes128Gcm, Aes256Gcm, Nonce};
use base64::Engine;
use serde::Deserialize;

const PREFIX: &str = "k8s:enc:aesgcm:v1:";
const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum EncryptionConfigError {
    #[error("reading {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigFile {
    api_version: Option<String>,
    kind: Option<String>,
    resources: Vec<ResourceConfig>,
}

#[derive(Deserialize)]
struct ResourceConfig {
    resources: Vec<String>,
    providers: Vec<ProviderConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderConfig {
    aesgcm: Option<AesConfig>,
    identity: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct AesConfig {
    keys: Vec<KeyConfig>,
}

#[derive(Deserialize)]
struct KeyConfig {
    name: String,
    secret: String,
}

enum Cipher {
    A128(Box<Aes128Gcm>),
    A256(Box<Aes256Gcm>),
}

enum Provider {
    AesGcm(Vec<(String, Cipher)>),
    Identity,
}

/// The transformer of one set of resources.
struct Rule {
    /// Key prefixes (`/secrets/`) the rule covers.
    prefixes: Vec<String>,
    providers: Vec<Provider>,
}

/// Seals and opens stored values per [`skiff_store::ValueTransformer`].
pub struct Encryption {
    rules: Vec<Rule>,
}

impl std::fmt::Debug for Encryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys.
        let prefixes: Vec<&String> = self.rules.iter().flat_map(|r| &r.prefixes).collect();
        f.debug_struct("Encryption").field("resources", &prefixes).finish()
    }
}

impl Encryption {
    pub fn load(path: &Path) -> Result<Self, EncryptionConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| EncryptionConfigError::Read { path: path.display().to_string(), source })?;
        Self::parse(&text)
            .map_err(|message| EncryptionConfigError::Invalid { path: path.display().to_string(), message })
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let file: ConfigFile =
            serde_yaml::from_str(text).map_err(|e| format!("not an EncryptionConfiguration: {e}"))?;
        if file.kind.as_deref().is_some_and(|k| k != "EncryptionConfiguration") {
            return Err(format!("kind must be EncryptionConfiguration, not {:?}", file.kind.unwrap_or_default()));
        }
        if file.api_version.as_deref().is_some_and(|v| v != "apiserver.config.k8s.io/v1") {
            return Err("apiVersion must be apiserver.config.k8s.io/v1".into());
        }
        let mut rules = vec![];
        for (i, rc) in file.resources.into_iter().enumerate() {
            if rc.providers.is_empty() {
                return Err(format!("resources[{i}].providers: at least one provider is required"));
            }
            let prefixes = rc
                .resources
                .iter()
                .map(|r| {
                    // `secrets` or `secrets.` (core group): the store keys are `/<plural>/...`.
                    let plural = r.trim_end_matches('.');
                    if plural.contains('.') || plural.contains('*') {
                        Err(format!("resources[{i}]: only core resources by plural name are supported, not {r:?}"))
                    } else {
                        Ok(format!("/{plural}/"))
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            let mut providers = vec![];
            for (j, p) in rc.providers.into_iter().enumerate() {
                match (p.aesgcm, p.identity) {
                    (Some(a), None) => {
                        if a.keys.is_empty() {
                            return Err(format!(
                                "resources[{i}].providers[{j}].aesgcm.keys: at least one key is required"
                            ));
                        }
                        let mut keys = vec![];
                        for k in a.keys {
                            if k.name.is_empty() || k.name.contains(':') {
                                return Err(format!("key name {:?} must be non-empty and without ':'", k.name));
                            }
                            let raw = base64::engine::general_purpose::STANDARD
                                .decode(k.secret.trim())
                                .map_err(|e| format!("key {:?}: the secret is not base64: {e}", k.name))?;
                            let cipher = match raw.len() {
                                16 => {
                                    Cipher::A128(Box::new(Aes128Gcm::new_from_slice(&raw).map_err(|e| e.to_string())?))
                                }
                                32 => {
                                    Cipher::A256(Box::new(Aes256Gcm::new_from_slice(&raw).map_err(|e| e.to_string())?))
                                }
                                n => {
                                    return Err(format!("key {:?}: {n} bytes; AES-GCM keys are 16 or 32 bytes", k.name))
                                }
                            };
                            keys.push((k.name, cipher));
                        }
                        providers.push(Provider::AesGcm(keys));
                    }
                    (None, Some(_)) => providers.push(Provider::Identity),
                    _ => return Err(format!("resources[{i}].providers[{j}]: exactly one of aesgcm and identity")),
                }
            }
            rules.push(Rule { prefixes, providers });
        }
        Ok(Encryption { rules })
    }

    fn rule(&self, key: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.prefixes.iter().any(|p| key.starts_with(p.as_str())))
    }
}

fn seal(cipher: &Cipher, key: &str, plain: &[u8]) -> Vec<u8> {
    let nonce_bytes: [u8; NONCE_LEN] = rand::random();
    let nonce = Nonce::from_slice(&nonce_bytes);
    let payload = Payload { msg: plain, aad: key.as_bytes() };
    let sealed = match cipher {
        Cipher::A128(c) => c.encrypt(nonce, payload),
        Cipher::A256(c) => c.encrypt(nonce, payload),
    }
    .expect("AES-GCM encryption of an in-memory buffer cannot fail");
    [&nonce_bytes[..], &sealed].concat()
}

fn open(cipher: &Cipher, key: &str, data: &[u8]) -> Result<Vec<u8>, String> {
    if data.len() < NONCE_LEN {
        return Err("the sealed value is too short".into());
    }
    let (nonce, sealed) = data.split_at(NONCE_LEN);
    let payload = Payload { msg: sealed, aad: key.as_bytes() };
    match cipher {
        Cipher::A128(c) => c.decrypt(Nonce::from_slice(nonce), payload),
        Cipher::A256(c) => c.decrypt(Nonce::from_slice(nonce), payload),
    }
    .map_err(|_| "AES-GCM authentication failed (wrong key, or the value was altered or moved)".into())
}

impl skiff_store::ValueTransformer for Encryption {
    fn applies(&self, key: &str) -> bool {
        self.rule(key).is_some()
    }

    fn transform_to_storage(&self, key: &str, plain: &[u8]) -> Vec<u8> {
        match self.rule(key).and_then(|r| r.providers.first()) {
            Some(Provider::AesGcm(keys)) => {
                let (name, cipher) = &keys[0];
                [format!("{PREFIX}{name}:").as_bytes(), &seal(cipher, key, plain)].concat()
            }
            _ => plain.to_vec(),
        }
    }

    fn transform_from_storage(&self, key: &str, stored: &[u8]) -> Result<(Vec<u8>, bool), String> {
        let Some(rule) = self.rule(key) else { return Ok((stored.to_vec(), false)) };
        let (write_provider, write_key) = match rule.providers.first() {
            Some(Provider::AesGcm(keys)) => ("aesgcm", keys.first().map(|k| k.0.as_str())),
            _ => ("identity", None),
        };
        if let Some(rest) = stored.strip_prefix(PREFIX.as_bytes()) {
            let colon = rest.iter().position(|b| *b == b':').ok_or("a sealed value without a key name")?;
            let name = String::from_utf8_lossy(&rest[..colon]).into_owned();
            for p in &rule.providers {
                if let Provider::AesGcm(keys) = p {
                    if let Some((_, cipher)) = keys.iter().find(|(n, _)| *n == name) {
                        let plain = open(cipher, key, &rest[colon + 1..])?;
                        return Ok((plain, write_key != Some(name.as_str())));
                    }
                }
            }
            return Err(format!("sealed with key {name:?}, which the encryption configuration no longer lists"));
        }
        if rule.providers.iter().any(|p| matches!(p, Provider::Identity)) {
            return Ok((stored.to_vec(), write_provider != "identity"));
        }
        Err("a plain value, but the identity provider is not configured to read it".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_store::ValueTransformer;

    fn config(keys: &[(&str, &str)], identity: bool) -> Encryption {
        let mut text = String::from("apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - aesgcm:\n      keys:\n");
        for (name, secret) in keys {
            text.push_str(&format!("      - name: {name}\n        secret: {secret}\n"));
        }
        if identity {
            text.push_str("  - identity: {}\n");
        }
        Encryption::parse(&text).unwrap()
    }

    const K1: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // 32 bytes
    const K2: &str = "ZmVkY2JhOTg3NjU0MzIxMA=="; // 16 bytes

    #[test]
    fn secrets_are_sealed_and_open_again() {
        let e = config(&[("key1", K1)], true);
        let key = "/secrets/default/db";
        assert!(e.applies(key) && !e.applies("/configmaps/default/db"));
        let stored = e.transform_to_storage(key, b"{\"data\":{\"password\":\"hunter2\"}}");
        assert!(stored.starts_with(b"k8s:enc:aesgcm:v1:key1:"));
        assert!(!String::from_utf8_lossy(&stored).contains("hunter2"));
        assert_ne!(
            stored,
            e.transform_to_storage(key, b"{\"data\":{\"password\":\"hunter2\"}}"),
            "a fresh nonce each time"
        );
        let (plain, stale) = e.transform_from_storage(key, &stored).unwrap();
        assert_eq!((plain.as_slice(), stale), (&b"{\"data\":{\"password\":\"hunter2\"}}"[..], false));
        assert!(e.transform_from_storage("/secrets/default/other", &stored).is_err(), "bound to its key");
        let (plain, stale) = e.transform_from_storage(key, b"{\"plain\":true}").unwrap();
        assert_eq!((plain.as_slice(), stale), (&b"{\"plain\":true}"[..], true), "plain values are read, and stale");
    }

    #[test]
    fn keys_rotate() {
        let old = config(&[("key1", K1)], false);
        let key = "/secrets/ns/s";
        let sealed_by_old = old.transform_to_storage(key, b"v");
        let rotating = config(&[("key2", K2), ("key1", K1)], false);
        assert_eq!(
            rotating.transform_from_storage(key, &sealed_by_old).unwrap(),
            (b"v".to_vec(), true),
            "old key reads, stale"
        );
        let resealed = rotating.transform_to_storage(key, b"v");
        assert!(resealed.starts_with(b"k8s:enc:aesgcm:v1:key2:"));
        let new_only = config(&[("key2", K2)], false);
        assert_eq!(new_only.transform_from_storage(key, &resealed).unwrap(), (b"v".to_vec(), false));
        let e = new_only.transform_from_storage(key, &sealed_by_old).unwrap_err();
        assert!(e.contains("no longer lists"), "{e}");
        assert!(new_only.transform_from_storage(key, b"plain").is_err(), "no identity provider: plain is refused");
    }

    #[test]
    fn bad_configurations_are_named() {
        let bad = |t: &str| Encryption::parse(t).err().unwrap_or_default();
        assert!(bad("resources:\n- resources: [secrets]\n  providers: []\n").contains("at least one provider"));
        assert!(bad("resources:\n- resources: [secrets]\n  providers:\n  - aesgcm:\n      keys:\n      - {name: k, secret: c2hvcnQ=}\n").contains("16 or 32 bytes"));
        assert!(bad("resources:\n- resources: [secrets]\n  providers:\n  - aescbc: {}\n").contains("unknown field"));
        assert!(bad("kind: Other\nresources: []\n").contains("EncryptionConfiguration"));
    }
}
