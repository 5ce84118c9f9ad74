//! The watch cache: **one** etcd watch per resource, fanned out to every client watch.
//!
//! Upstream's `cacher` in miniature. A feeder task lists the resource's prefix at revision
//! R, then watches etcd from R+1 and applies each event to:
//! - `objects`: the current state (serves `list?resourceVersion=0` and the initial ADDED
//!   events of a watch without a resourceVersion);
//! - `history`: the last [`HISTORY`] events (serves watches that resume from a recent
//!   resourceVersion);
//! - a broadcast channel that live client watches subscribe to.
//!
//! Invariant: the feeder updates all three under the write lock, and a client registers
//! (copies history after its resourceVersion + subscribes) under the read lock, so a client
//! sees every event after its resourceVersion exactly once, with no gap between replay and
//! live events. A client that falls too far behind the broadcast is cut off (its stream
//! ends) and re-watches from the last resourceVersion it saw, as upstream does.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use skiff_store::{ListOptions, Store, WatchEvent};
use tokio::sync::{broadcast, watch, RwLock};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::object::decode_stored;
use crate::resources::ResourceInfo;

/// How many recent events each resource's cache keeps for resuming watches.
pub const HISTORY: usize = 10_000;
/// How many events a live client may fall behind before it is cut off.
const BROADCAST_CAPACITY: usize = 8_192;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, with the object before it (for selector transitions).
#[derive(Debug)]
pub struct CacheEvent {
    pub kind: EventType,
    pub revision: i64,
    /// The new object; for a delete, the last state with `resourceVersion` = the delete's revision.
    pub object: Arc<Value>,
    pub prev: Option<Arc<Value>>,
    /// The serialized watch line per event type (ADDED/MODIFIED/DELETED), made once and
    /// shared by every watcher that sends it.
    lines: [std::sync::OnceLock<bytes::Bytes>; 3],
}

impl CacheEvent {
    pub fn new(kind: EventType, revision: i64, object: Arc<Value>, prev: Option<Arc<Value>>) -> Self {
        Self { kind, revision, object, prev, lines: Default::default() }
    }

    /// This event's object as one newline-terminated watch line of type `kind`.
    pub fn line(&self, kind: EventType) -> bytes::Bytes {
        let slot = match kind {
            EventType::Added => 0,
            EventType::Modified => 1,
            EventType::Deleted => 2,
        };
        self.lines[slot].get_or_init(|| crate::http::event_line(kind.as_str(), &self.object)).clone()
    }
}

/// What live subscribers receive.
#[derive(Debug, Clone)]
pub enum Broadcast {
    Event(Arc<CacheEvent>),
    /// Everything up to this revision has been delivered (for bookmarks).
    Progress(i64),
}

struct Inner {
    objects: BTreeMap<String, Arc<Value>>,
    /// The revision the state reflects.
    revision: i64,
    history: VecDeque<Arc<CacheEvent>>,
    /// Watches may start from any revision >= `oldest` (history covers `(oldest, revision]`).
    oldest: i64,
    tx: broadcast::Sender<Broadcast>,
    ready: bool,
}

impl Inner {
    fn objects_under(&self, key_prefix: &str) -> Vec<Arc<Value>> {
        self.objects
            .range(key_prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(key_prefix))
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// A registered client watch: the events to replay, then the live receiver.
pub struct Registration {
    pub replay: Vec<Arc<CacheEvent>>,
    pub live: broadcast::Receiver<Broadcast>,
    pub revision: i64,
}

/// Why a watch could not be served from the cache.
pub enum RegisterError {
    /// The resourceVersion is older than the cache's history.
    TooOld { oldest: i64 },
    /// The cache is not initialised yet or lags beyond the wait.
    NotReady,
}

/// The cache of one resource.
pub struct WatchCache {
    pub resource: &'static ResourceInfo,
    inner: RwLock<Inner>,
    /// Publishes the current revision so readers can wait for "at least revision N".
    revision_tx: watch::Sender<i64>,
    /// Asks the current etcd watch for a progress notification (see `wait_for`).
    progress: std::sync::Mutex<Option<Arc<tokio::sync::Notify>>>,
}

impl WatchCache {
    pub fn new(resource: &'static ResourceInfo) -> Arc<Self> {
        let (tx, _) = broadcast::channel(BROADCAST_CAPACITY);
        let (revision_tx, _) = watch::channel(0);
        Arc::new(Self {
            resource,
            inner: RwLock::new(Inner {
                objects: BTreeMap::new(),
                revision: 0,
                history: VecDeque::new(),
                oldest: 0,
                tx,
                ready: false,
            }),
            revision_tx,
            progress: Default::default(),
        })
    }

    /// Waits until the cache reflects at least `revision` (at most `within`). A revision the
    /// cache has not reached yet may simply be a write to another resource: etcd is asked
    /// for a progress notification, which moves a quiet resource's cache to the current
    /// revision at once (upstream's watch cache does the same since 1.27).
    pub async fn wait_for(&self, revision: i64, within: Duration) -> bool {
        let mut rx = self.revision_tx.subscribe();
        if *rx.borrow() < revision {
            if let Some(p) = self.progress.lock().expect("progress lock").as_ref() {
                p.notify_one();
            }
        }
        let ok = matches!(tokio::time::timeout(within, rx.wait_for(|r| *r >= revision)).await, Ok(Ok(_)));
        ok
    }

    /// The revision the cache reflects now.
    pub fn revision(&self) -> i64 {
        *self.revision_tx.borrow()
    }

    pub async fn is_ready(&self) -> bool {
        self.inner.read().await.ready
    }

    /// The current state: objects (optionally only under `key_prefix`) and the revision.
    pub async fn snapshot(&self, key_prefix: &str) -> (Vec<Arc<Value>>, i64) {
        let inner = self.inner.read().await;
        (inner.objects_under(key_prefix), inner.revision)
    }

    /// One object by key, as the cache currently sees it.
    pub async fn get(&self, key: &str) -> Option<Arc<Value>> {
        self.inner.read().await.objects.get(key).cloned()
    }

    /// Registers a client watch starting after `revision` (None: from the current state,
    /// with the current objects to be sent as ADDED by the caller from `snapshot`).
    pub async fn register(&self, after: i64) -> Result<Registration, RegisterError> {
        let inner = self.inner.read().await;
        if !inner.ready {
            return Err(RegisterError::NotReady);
        }
        if after < inner.oldest {
            return Err(RegisterError::TooOld { oldest: inner.oldest });
        }
        let replay = inner.history.iter().filter(|e| e.revision > after).cloned().collect();
        Ok(Registration { replay, live: inner.tx.subscribe(), revision: inner.revision })
    }

    /// Registers a client watch that begins with the current state (sent by the caller as
    /// ADDED events) and continues live, atomically.
    pub async fn register_with_state(
        &self,
        key_prefix: &str,
    ) -> Result<(Vec<Arc<Value>>, Registration), RegisterError> {
        let inner = self.inner.read().await;
        if !inner.ready {
            return Err(RegisterError::NotReady);
        }
        let objects = inner.objects_under(key_prefix);
        Ok((objects, Registration { replay: vec![], live: inner.tx.subscribe(), revision: inner.revision }))
    }

    /// Number of live subscribers (for tests and metrics).
    pub async fn subscribers(&self) -> usize {
        self.inner.read().await.tx.receiver_count()
    }

    /// The feeder: list + watch etcd until `shutdown`, re-initialising after errors.
    pub async fn run(self: Arc<Self>, store: Store, shutdown: CancellationToken) {
        let prefix = format!("/{}/", self.resource.plural);
        let mut backoff = Duration::from_millis(100);
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            match self.clone().feed(&store, &prefix, &shutdown).await {
                Ok(()) => return,
                Err(e) => {
                    warn!(resource = self.resource.plural, error = %e, "watch cache feeder restarting");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn feed(
        self: Arc<Self>,
        store: &Store,
        prefix: &str,
        shutdown: &CancellationToken,
    ) -> Result<(), skiff_store::Error> {
        // (Re)initialise from a consistent list. If the cache was already serving, existing
        // subscribers would miss the gap, so they are cut off by replacing the channel.
        let list = store.list(prefix, ListOptions::default()).await?;
        let mut stream = store.watch(prefix, list.revision + 1).await?;
        *self.progress.lock().expect("progress lock") = Some(stream.progress_requester());
        {
            let mut inner = self.inner.write().await;
            let was_ready = inner.ready;
            inner.objects.clear();
            for item in &list.items {
                match decode_stored(&item.value, item.mod_revision) {
                    Ok(v) => {
                        inner.objects.insert(item.key.clone(), Arc::new(v));
                    }
                    Err(e) => warn!(key = item.key, error = %e, "skipping undecodable stored object"),
                }
            }
            inner.revision = list.revision;
            if was_ready {
                let (tx, _) = broadcast::channel(BROADCAST_CAPACITY);
                inner.tx = tx;
                inner.history.clear();
            }
            inner.oldest = list.revision;
            inner.ready = true;
        }
        self.revision_tx.send_replace(list.revision);
        info!(
            resource = self.resource.plural,
            revision = list.revision,
            objects = list.items.len(),
            "watch cache ready"
        );
        loop {
            let ev = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                ev = stream.recv() => ev,
            };
            let ev = match ev {
                Some(Ok(ev)) => ev,
                Some(Err(e)) => return Err(e),
                None => return Err(skiff_store::Error::Timeout { op: "watch ended", after: Duration::ZERO }),
            };
            self.apply(ev).await;
        }
    }

    async fn apply(&self, ev: WatchEvent) {
        let mut inner = self.inner.write().await;
        let event = match ev {
            WatchEvent::Progress { revision } => {
                inner.revision = inner.revision.max(revision);
                let _ = inner.tx.send(Broadcast::Progress(revision));
                drop(inner);
                self.revision_tx.send_replace(revision);
                return;
            }
            WatchEvent::Put { object, .. } => {
                let value = match decode_stored(&object.value, object.mod_revision) {
                    Ok(v) => Arc::new(v),
                    Err(e) => {
                        warn!(key = object.key, error = %e, "ignoring undecodable stored object");
                        return;
                    }
                };
                let prev = inner.objects.insert(object.key.clone(), value.clone());
                let kind = if prev.is_some() { EventType::Modified } else { EventType::Added };
                CacheEvent::new(kind, object.mod_revision, value, prev)
            }
            WatchEvent::Delete { key, revision, .. } => {
                let Some(prev) = inner.objects.remove(&key) else { return };
                let mut last = (*prev).clone();
                crate::object::set_resource_version(&mut last, revision);
                CacheEvent::new(EventType::Deleted, revision, Arc::new(last), Some(prev))
            }
        };
        let revision = event.revision;
        let event = Arc::new(event);
        inner.revision = revision;
        inner.history.push_back(event.clone());
        while inner.history.len() > HISTORY {
            if let Some(old) = inner.history.pop_front() {
                inner.oldest = old.revision;
            }
        }
        let _ = inner.tx.send(Broadcast::Event(event));
        drop(inner);
        self.revision_tx.send_replace(revision);
    }
}
