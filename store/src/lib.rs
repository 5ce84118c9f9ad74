//! # skiff-store: the versioned key-value layer over etcd
//!
//! The apiserver's only way to persistent state (DESIGN.md section 4, layer 1). Objects are
//! opaque bytes (JSON in practice) under `<prefix><key>`, where the apiserver builds keys as
//! `/<resource>/<namespace>/<name>` and the prefix defaults to `/registry`, as upstream.
//!
//! Start reading at [`Store`]. The invariants it keeps:
//! - A resourceVersion **is** etcd's `mod_revision` of the key; a list's resourceVersion is
//!   the store revision it was read at. Nothing here invents versions.
//! - Every write is a single etcd transaction guarded by a compare: create compares
//!   `create_revision == 0`, update and delete compare `mod_revision`. A lost race is
//!   [`Error::Conflict`], never a silent overwrite.
//! - Every etcd call is bounded by a timeout ([`Config::request_timeout`]); a call that
//!   never reached etcd (connection refused to a dead member) is retried within that budget,
//!   a call that may have reached it is not (the caller sees [`Error::Unavailable`]).
//! - [`Store::watch`] survives etcd restarts and member failures: it resumes from the last
//!   revision it delivered, so no event is lost or repeated. A start revision that etcd has
//!   compacted away ends the stream with [`Error::Compacted`] (the apiserver's 410 Gone).
//!
//! [`compactor`] runs periodic compaction (default every 5 minutes).

pub mod compactor;
mod error;
mod watch;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, KeyValue, KvClient, Txn, TxnOp,
    TxnOpResponse,
};
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

pub use error::Error;
pub use watch::{WatchEvent, WatchStream};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Turns values into what etcd holds and back, for the keys it applies to (the apiserver's
/// encryption at rest: Secrets sealed with AES-GCM). Everything above the store sees plain
/// values; only etcd sees the sealed ones.
pub trait ValueTransformer: Send + Sync + std::fmt::Debug {
    /// Whether values under `key` (relative to the prefix: `/secrets/ns/name`) are transformed.
    fn applies(&self, key: &str) -> bool;
    /// The bytes to store for `plain` under `key`.
    fn transform_to_storage(&self, key: &str, plain: &[u8]) -> Vec<u8>;
    /// The plain value of stored bytes, and whether they are *stale* (not in the form
    /// `transform_to_storage` writes now, e.g. sealed with an older key or not sealed at all): a stale
    /// object is rewritten even by an update that changes nothing, which is how keys rotate.
    fn transform_from_storage(&self, key: &str, stored: &[u8]) -> Result<(Vec<u8>, bool), String>;
}

/// How to reach etcd and how to lay out keys.
#[derive(Debug, Clone)]
pub struct Config {
    /// etcd client URLs, e.g. `http://127.0.0.1:2379`.
    pub endpoints: Vec<String>,
    /// Prepended to every key; `/registry` by default. Two apiservers sharing one etcd in a
    /// test use different prefixes.
    pub prefix: String,
    /// Upper bound for one etcd request, retries included.
    pub request_timeout: Duration,
    /// Applied to every value written and read (None: values are stored as given).
    pub transformer: Option<Arc<dyn ValueTransformer>>,
    /// TLS to etcd (`https://` endpoints): the CA that signs etcd's certificates and the
    /// client pair etcd's `--client-cert-auth` asks for.
    pub tls: Option<Tls>,
}

/// TLS settings for etcd, as PEM (upstream's `--etcd-cafile`, `--etcd-certfile`,
/// `--etcd-keyfile`).
#[derive(Debug, Clone)]
pub struct Tls {
    pub ca: String,
    /// Client certificate and key.
    pub client: Option<(String, String)>,
}

impl Config {
    pub fn new(endpoints: Vec<String>) -> Self {
        Self {
            endpoints,
            prefix: "/registry".into(),
            request_timeout: Duration::from_secs(10),
            transformer: None,
            tls: None,
        }
    }
}

/// One stored object: its key (without the store prefix), value and revisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub key: String,
    pub value: Vec<u8>,
    /// The revision of the last write to this key: the object's resourceVersion.
    pub mod_revision: i64,
    pub create_revision: i64,
    /// Stored in an older form than the transformer writes today (see
    /// [`ValueTransformer::transform_from_storage`]); [`Store::guaranteed_update`] rewrites it.
    pub stale: bool,
}

/// Options of [`Store::list`].
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// Read at this store revision; `None` reads the latest.
    pub revision: Option<i64>,
    /// At most this many objects; `None` or 0 means all.
    pub limit: Option<i64>,
    /// A token from a previous page's [`ListResult::continue_token`]; it pins the revision.
    pub continue_token: Option<String>,
}

/// One page of a list.
#[derive(Debug, Clone)]
pub struct ListResult {
    pub items: Vec<Object>,
    /// The store revision the list was read at (the list's resourceVersion).
    pub revision: i64,
    /// Set when more objects follow; pass it back in [`ListOptions::continue_token`].
    pub continue_token: Option<String>,
    /// How many objects follow this page, when known.
    pub remaining: Option<i64>,
}

/// Preconditions of [`Store::delete`], as upstream's `metav1.Preconditions`.
#[derive(Debug, Clone, Default)]
pub struct Preconditions {
    /// The object's `metadata.uid` must equal this.
    pub uid: Option<String>,
    /// The object's mod_revision must equal this.
    pub resource_version: Option<i64>,
}

/// The continue token, encoded as upstream does: base64 of `{"v":"meta.k8s.io/v1","rv":..,"start":..}`
/// where `start` is the key (relative to the listed prefix) to resume at.
#[derive(Serialize, Deserialize)]
struct ContinueToken {
    v: String,
    rv: i64,
    start: String,
}

/// Keys per etcd range request of [`Store::list`] (halved while a chunk is too large).
const LIST_CHUNK: i64 = 500;
/// gRPC decoding limit for list responses (etcd-client's default is 4 MiB).
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// Lost races after which [`Store::guaranteed_update`] starts to back off briefly.
const CONTENTION_BACKOFF_AFTER: u32 = 4;

/// A handle on the store; cheap to clone (all clones share one etcd connection).
#[derive(Clone)]
pub struct Store {
    /// Shared: a `Client` holds a dozen gRPC service clients, and every request of the
    /// apiserver clones the Store.
    client: Arc<Client>,
    /// KV service clients reused across calls (a KvClient is needed per call in flight,
    /// and cloning one per call showed up as ~8 % of the apiserver's CPU).
    kv: Arc<KvPool>,
    prefix: String,
    timeout: Duration,
    transformer: Option<Arc<dyn ValueTransformer>>,
}

/// Idle KV clients; one is taken per call and given back when the call's future drops it.
struct KvPool {
    template: KvClient,
    idle: std::sync::Mutex<Vec<KvClient>>,
}

/// Idle clients kept at most (more calls in flight clone the template, as before).
const KV_POOL_MAX: usize = 64;

impl KvPool {
    fn take(self: &Arc<Self>) -> PooledKv {
        let kv = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop().unwrap_or_else(|| self.template.clone());
        PooledKv { kv: Some(kv), pool: self.clone() }
    }
}

/// A KV client on loan from the pool (derefs to [`KvClient`]).
pub(crate) struct PooledKv {
    kv: Option<KvClient>,
    pool: Arc<KvPool>,
}

impl std::ops::Deref for PooledKv {
    type Target = KvClient;
    fn deref(&self) -> &KvClient {
        self.kv.as_ref().expect("present until dropped")
    }
}

impl std::ops::DerefMut for PooledKv {
    fn deref_mut(&mut self) -> &mut KvClient {
        self.kv.as_mut().expect("present until dropped")
    }
}

impl Drop for PooledKv {
    fn drop(&mut self) {
        if let Some(kv) = self.kv.take() {
            let mut idle = self.pool.idle.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < KV_POOL_MAX {
                idle.push(kv);
            }
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

impl Store {
    /// Connects to etcd. The connection is lazy per endpoint: this succeeds as long as one
    /// endpoint answers within the timeout.
    pub async fn connect(config: Config) -> Result<Self> {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(attempt_timeout(config.request_timeout))
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(5))
            .with_keep_alive_while_idle(true);
        if let Some(tls) = &config.tls {
            let mut t = etcd_client::TlsOptions::new().ca_certificate(etcd_client::Certificate::from_pem(&tls.ca));
            if let Some((cert, key)) = &tls.client {
                t = t.identity(etcd_client::Identity::from_pem(cert, key));
            }
            options = options.with_tls(t);
        }
        let client = tokio::time::timeout(config.request_timeout, Client::connect(&config.endpoints, Some(options)))
            .await
            .map_err(|_| Error::Timeout { op: "connect", after: config.request_timeout })?
            .map_err(|source| Error::from_etcd("connect", source))?;
        let kv = Arc::new(KvPool {
            template: client.kv_client().max_decoding_message_size(MAX_RESPONSE_BYTES),
            idle: std::sync::Mutex::new(Vec::new()),
        });
        Ok(Self {
            client: Arc::new(client),
            kv,
            prefix: config.prefix,
            timeout: config.request_timeout,
            transformer: config.transformer,
        })
    }

    /// The configured key prefix (e.g. `/registry`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn full_key(&self, key: &str) -> String {
        format!("{}{}", self.prefix, key)
    }

    fn to_object(&self, kv: &KeyValue) -> Object {
        let key = String::from_utf8_lossy(kv.key());
        let key = key.strip_prefix(self.prefix.as_str()).unwrap_or(&key).to_string();
        let (value, stale) = self.open(&key, kv.value());
        Object { key, value, mod_revision: kv.mod_revision(), create_revision: kv.create_revision(), stale }
    }

    /// What to put in etcd for `value` under `key`.
    fn seal(&self, key: &str, value: &[u8]) -> Vec<u8> {
        match &self.transformer {
            Some(t) if t.applies(key) => t.transform_to_storage(key, value),
            _ => value.to_vec(),
        }
    }

    /// The plain value of what etcd holds under `key`. A value that cannot be opened (a key
    /// no longer configured, corruption) is returned as stored, so the caller's decoding
    /// fails and reports it; the reason is logged here.
    fn open(&self, key: &str, stored: &[u8]) -> (Vec<u8>, bool) {
        match &self.transformer {
            Some(t) if t.applies(key) => match t.transform_from_storage(key, stored) {
                Ok(v) => v,
                Err(e) => {
                    warn!(key, error = %e, "a stored value cannot be decrypted");
                    (stored.to_vec(), false)
                }
            },
            _ => (stored.to_vec(), false),
        }
    }

    /// Runs one etcd call within the request timeout, retrying errors that prove the request
    /// never reached a server (connection refused to a dead member), as DESIGN.md section
    /// 10 recommends. `idempotent` calls are also retried after ambiguous failures (a broken
    /// connection, an attempt that timed out): reads always are; writes are, because each is
    /// a compare-guarded transaction whose caller checks, after an ambiguous retry, whether
    /// the first attempt had in fact applied (see [`Store::create`]).
    async fn call<T, F, Fut>(&self, op: &'static str, idempotent: bool, f: F) -> Result<T>
    where
        F: FnMut(PooledKv) -> Fut,
        Fut: Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        self.call_tracked(op, idempotent, f).await.map(|(v, _)| v)
    }

    /// [`Self::call`], also saying whether an ambiguous attempt preceded the answer.
    async fn call_tracked<T, F, Fut>(&self, op: &'static str, idempotent: bool, mut f: F) -> Result<(T, bool)>
    where
        F: FnMut(PooledKv) -> Fut,
        Fut: Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let per_attempt = attempt_timeout(self.timeout);
        let mut backoff = Duration::from_millis(20);
        let mut ambiguous = false;
        loop {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            let attempt = tokio::time::timeout(remaining.min(per_attempt), f(self.kv.take())).await;
            let err = match attempt {
                Ok(Ok(v)) => return Ok((v, ambiguous)),
                Ok(Err(e)) => Error::from_etcd(op, e),
                Err(_) => Error::Timeout { op, after: remaining.min(per_attempt) },
            };
            let retry = match &err {
                Error::Unavailable { never_sent: true, .. } => true,
                Error::Unavailable { .. } | Error::Timeout { .. } => idempotent,
                _ => false,
            };
            if !retry || tokio::time::Instant::now() + backoff >= deadline {
                return Err(match err {
                    Error::Timeout { op, .. } => Error::Timeout { op, after: self.timeout },
                    e => e,
                });
            }
            if !matches!(err, Error::Unavailable { never_sent: true, .. }) {
                ambiguous = true;
            }
            debug!(op, error = %err, "retrying etcd call");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(500));
        }
    }

    /// The current store revision.
    pub async fn current_revision(&self) -> Result<i64> {
        // A get of a key that never exists still carries the header revision.
        let key = self.full_key("/\u{0}revision-probe");
        let resp = self
            .call("get", true, |mut c| {
                let key = key.clone();
                async move { c.get(key, Some(GetOptions::new().with_count_only())).await }
            })
            .await?;
        Ok(resp.header().map(|h| h.revision()).unwrap_or_default())
    }

    /// Creates `key`; fails with [`Error::AlreadyExists`] if it exists. Returns the new object.
    pub async fn create(&self, key: &str, value: Vec<u8>) -> Result<Object> {
        let full = self.full_key(key);
        let stored = self.seal(key, &value);
        let (resp, ambiguous) = self
            .call_tracked("create", true, |mut c| {
                let txn = Txn::new()
                    .when([Compare::create_revision(full.clone(), CompareOp::Equal, 0)])
                    .and_then([TxnOp::put(full.clone(), stored.clone(), None)])
                    .or_else([TxnOp::get(full.clone(), None)]);
                async move { c.txn(txn).await }
            })
            .await?;
        if !resp.succeeded() {
            // After an ambiguous attempt, "exists" may be our own first attempt: the stored
            // value (which carries the object's uid) tells.
            if ambiguous {
                if let Some(kv) = first_get(resp.op_responses()).and_then(|kvs| kvs.into_iter().next()) {
                    if kv.value() == stored.as_slice() {
                        return Ok(self.to_object(&kv));
                    }
                }
            }
            return Err(Error::AlreadyExists { key: key.to_string() });
        }
        let rev = resp.header().map(|h| h.revision()).unwrap_or_default();
        Ok(Object { key: key.to_string(), value, mod_revision: rev, create_revision: rev, stale: false })
    }

    /// Reads `key` at the latest revision.
    pub async fn get(&self, key: &str) -> Result<Option<Object>> {
        let full = self.full_key(key);
        let resp = self
            .call("get", true, |mut c| {
                let full = full.clone();
                async move { c.get(full, None).await }
            })
            .await?;
        Ok(resp.kvs().first().map(|kv| self.to_object(kv)))
    }

    /// Lists the objects whose key starts with `prefix` (for example `/pods/default/`), in key
    /// order, at one revision, optionally paged.
    pub async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult> {
        let full_prefix = self.full_key(prefix);
        let (mut revision, mut start) = (opts.revision.unwrap_or(0), full_prefix.clone());
        if let Some(token) = opts.continue_token.as_deref().filter(|t| !t.is_empty()) {
            let t = decode_continue(token)?;
            if t.start.contains("..") || t.start.starts_with('/') {
                return Err(Error::InvalidContinue("the continue token names an invalid key".into()));
            }
            revision = t.rv;
            start = format!("{full_prefix}{}", t.start);
        }
        let range_end = prefix_end(full_prefix.as_bytes());
        let limit = opts.limit.unwrap_or(0).max(0);
        let want = if limit > 0 { limit } else { i64::MAX };
        // etcd answers are read in chunks at one pinned revision, so a list of any size
        // never hits gRPC's message limit and stays one consistent snapshot.
        let mut chunk = LIST_CHUNK;
        let mut items: Vec<Object> = Vec::new();
        let mut total_in_range: Option<i64> = None;
        let mut more;
        loop {
            let n = chunk.min(want - items.len() as i64);
            let result = self
                .call("list", true, |c| {
                    let mut o = GetOptions::new().with_range(range_end.clone()).with_limit(n);
                    if revision > 0 {
                        o = o.with_revision(revision);
                    }
                    let start = start.clone();
                    let mut c = c;
                    async move { c.get(start, Some(o)).await }
                })
                .await;
            let resp = match result {
                Ok(r) => r,
                Err(e) if e.is_message_too_large() && chunk > 1 => {
                    chunk = (chunk / 2).max(1);
                    continue;
                }
                Err(e) => return Err(e.with_requested_revision(revision)),
            };
            if revision == 0 {
                revision = resp.header().map(|h| h.revision()).unwrap_or_default();
            }
            total_in_range.get_or_insert(resp.count());
            items.extend(resp.kvs().iter().map(|kv| self.to_object(kv)));
            more = resp.more();
            match resp.kvs().last() {
                Some(last) if more && (items.len() as i64) < want => {
                    let mut next = last.key().to_vec();
                    next.push(0); // the smallest key after the last one read
                    start = String::from_utf8_lossy(&next).into_owned();
                }
                _ => break,
            }
        }
        let mut continue_token = None;
        let mut remaining = None;
        if more {
            if let Some(last) = items.last() {
                let rel = last.key.strip_prefix(prefix).unwrap_or(&last.key);
                // Resume just after the last key: appending \0 is the smallest greater key.
                continue_token = Some(encode_continue(revision, &format!("{rel}\u{0}")));
                remaining = total_in_range.map(|t| t - items.len() as i64);
            }
        }
        Ok(ListResult { items, revision, continue_token, remaining })
    }

    /// Replaces `key` if its mod_revision still equals `expected_revision`; otherwise
    /// [`Error::Conflict`] (or [`Error::NotFound`] if it is gone).
    pub async fn update(&self, key: &str, value: Vec<u8>, expected_revision: i64) -> Result<Object> {
        let full = self.full_key(key);
        let stored = self.seal(key, &value);
        let (resp, ambiguous) = self
            .call_tracked("update", true, |mut c| {
                let txn = Txn::new()
                    .when([Compare::mod_revision(full.clone(), CompareOp::Equal, expected_revision)])
                    .and_then([TxnOp::put(full.clone(), stored.clone(), None)])
                    .or_else([TxnOp::get(full.clone(), None)]);
                async move { c.txn(txn).await }
            })
            .await?;
        if resp.succeeded() {
            let rev = resp.header().map(|h| h.revision()).unwrap_or_default();
            // create_revision is unknown here without another read; callers use mod_revision.
            return Ok(Object { key: key.to_string(), value, mod_revision: rev, create_revision: 0, stale: false });
        }
        match first_get(resp.op_responses()).and_then(|kvs| kvs.into_iter().next()) {
            // Our own first attempt applied before an ambiguous failure.
            Some(kv) if ambiguous && kv.value() == stored.as_slice() && kv.mod_revision() > expected_revision => {
                Ok(self.to_object(&kv))
            }
            Some(kv) => Err(Error::Conflict { key: key.to_string(), current_revision: kv.mod_revision() }),
            None => Err(Error::NotFound { key: key.to_string() }),
        }
    }

    /// Read-modify-write with retries: reads `key`, calls `try_update` with the current
    /// object (`None` if absent), and writes the result with compare-and-swap; on a lost
    /// race it re-reads and calls `try_update` again. `try_update` decides what an absent
    /// key means (return [`Error::NotFound`] to refuse, or a value to create it).
    pub async fn guaranteed_update<E, F>(&self, key: &str, mut try_update: F) -> Result<Object, E>
    where
        F: FnMut(Option<&Object>) -> Result<Vec<u8>, E>,
        E: From<Error>,
    {
        let mut current = self.get(key).await?;
        // Retry lost races for as long as one request may take (upstream retries without a
        // bound); under heavy contention back off a little, with jitter, so writers spread out.
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut attempt = 0u32;
        loop {
            let value = try_update(current.as_ref())?;
            let result = match &current {
                Some(cur) => {
                    if cur.value == value && !cur.stale {
                        // No change: no write, no new revision (as upstream); a stale object
                        // (sealed with an older key) is rewritten, which rotates it.
                        return Ok(cur.clone());
                    }
                    self.update(key, value, cur.mod_revision).await
                }
                None => self.create(key, value).await,
            };
            match result {
                Ok(obj) => return Ok(obj),
                Err(Error::Conflict { .. } | Error::AlreadyExists { .. } | Error::NotFound { .. }) => {
                    attempt += 1;
                    debug!(key, attempt, "guaranteed_update lost a race; re-reading");
                    if tokio::time::Instant::now() >= deadline {
                        warn!(key, attempt, "guaranteed_update gave up: the key kept changing for {:?}", self.timeout);
                        return Err(Error::Conflict {
                            key: key.to_string(),
                            current_revision: current.map(|c| c.mod_revision).unwrap_or(0),
                        }
                        .into());
                    }
                    if attempt > CONTENTION_BACKOFF_AFTER {
                        let jitter = rand::random_range(1..20u64);
                        tokio::time::sleep(Duration::from_millis(jitter)).await;
                    }
                    current = self.get(key).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Deletes `key` if the preconditions hold; returns the object as it was.
    pub async fn delete(&self, key: &str, pre: &Preconditions) -> Result<Object> {
        let mut deleted_ambiguously: Option<Object> = None;
        loop {
            let current = match self.get(key).await? {
                Some(c) => c,
                // An ambiguous attempt removed it after all.
                None => return deleted_ambiguously.ok_or_else(|| Error::NotFound { key: key.to_string() }),
            };
            if let Some(rv) = pre.resource_version {
                if rv != current.mod_revision {
                    return Err(Error::PreconditionFailed {
                        key: key.to_string(),
                        message: format!(
                            "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                            current.mod_revision
                        ),
                    });
                }
            }
            if let Some(uid) = &pre.uid {
                let actual = object_uid(&current.value);
                if actual.as_deref() != Some(uid.as_str()) {
                    return Err(Error::PreconditionFailed {
                        key: key.to_string(),
                        message: format!(
                            "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                            actual.unwrap_or_default()
                        ),
                    });
                }
            }
            let full = self.full_key(key);
            let (resp, ambiguous) = self
                .call_tracked("delete", true, |mut c| {
                    let txn = Txn::new()
                        .when([Compare::mod_revision(full.clone(), CompareOp::Equal, current.mod_revision)])
                        .and_then([TxnOp::delete(full.clone(), Some(DeleteOptions::new()))]);
                    async move { c.txn(txn).await }
                })
                .await?;
            if resp.succeeded() {
                return Ok(current);
            }
            if ambiguous {
                deleted_ambiguously = Some(current.clone());
            }
            // Changed under us: the preconditions are re-checked against the new value.
            debug!(key, "delete raced with a write; re-checking preconditions");
        }
    }

    /// Watches every key under `prefix`, delivering events with revision >= `from_revision`
    /// (0 = from now). See [`WatchStream`] for the restart and compaction behaviour.
    pub async fn watch(&self, prefix: &str, from_revision: i64) -> Result<WatchStream> {
        watch::start(self.clone(), prefix.to_string(), from_revision).await
    }

    /// Compacts history before `revision` (physically), as upstream's compactor does.
    pub async fn compact(&self, revision: i64) -> Result<()> {
        self.call("compact", true, |mut c| async move {
            c.compact(revision, Some(etcd_client::CompactionOptions::new().with_physical())).await
        })
        .await
        .map(|_| ())
    }

    pub(crate) fn raw_client(&self) -> Client {
        (*self.client).clone()
    }

    pub(crate) fn object_from_kv(&self, kv: &KeyValue) -> Object {
        self.to_object(kv)
    }
}

/// One attempt's share of a request's timeout budget: half of it, at least a second, so a
/// request stuck on a failing member leaves time for a retry on another.
fn attempt_timeout(total: Duration) -> Duration {
    (total / 2).max(Duration::from_secs(1)).min(total)
}

fn first_get(responses: Vec<TxnOpResponse>) -> Option<Vec<KeyValue>> {
    responses.into_iter().find_map(|r| match r {
        TxnOpResponse::Get(g) => Some(g.kvs().to_vec()),
        _ => None,
    })
}

/// `metadata.uid` of a JSON object, if any.
fn object_uid(value: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Meta {
        uid: Option<String>,
    }
    #[derive(Deserialize)]
    struct Obj {
        metadata: Option<Meta>,
    }
    serde_json::from_slice::<Obj>(value).ok()?.metadata?.uid
}

/// The smallest key greater than every key starting with `prefix`.
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn encode_continue(rv: i64, start: &str) -> String {
    let t = ContinueToken { v: "meta.k8s.io/v1".into(), rv, start: start.into() };
    base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&t).unwrap_or_default())
}

fn decode_continue(token: &str) -> Result<ContinueToken> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(token)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(token))
        .map_err(|_| Error::InvalidContinue("the continue token is not valid base64".into()))?;
    let t: ContinueToken = serde_json::from_slice(&bytes)
        .map_err(|_| Error::InvalidContinue("the continue token is not a Skiff continue token".into()))?;
    if t.v != "meta.k8s.io/v1" || t.rv <= 0 {
        return Err(Error::InvalidContinue("the continue token has an unknown version".into()));
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_last_byte() {
        assert_eq!(prefix_end(b"/registry/pods/"), b"/registry/pods0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
    }

    #[test]
    fn continue_token_round_trips_and_rejects_garbage() {
        let t = encode_continue(42, "default/web\u{0}");
        let d = decode_continue(&t).unwrap();
        assert_eq!((d.rv, d.start.as_str()), (42, "default/web\u{0}"));
        assert!(matches!(decode_continue("!!"), Err(Error::InvalidContinue(_))));
        let other = base64::engine::general_purpose::STANDARD.encode(b"{\"x\":1}");
        assert!(matches!(decode_continue(&other), Err(Error::InvalidContinue(_))));
    }

    #[test]
    fn uid_is_read_from_metadata() {
        assert_eq!(object_uid(br#"{"metadata":{"uid":"u1"}}"#).as_deref(), Some("u1"));
        assert_eq!(object_uid(br#"{"metadata":{}}"#), None);
        assert_eq!(object_uid(b"not json"), None);
    }
}
