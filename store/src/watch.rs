//! Resumable prefix watches.
//!
//! One background task per [`WatchStream`] owns an etcd watch and feeds a bounded channel.
//! When etcd goes away (restart, member killed, network error) the task re-opens the watch
//! from the revision after the last one it delivered, so consumers see every event exactly
//! once. If that revision has been compacted meanwhile the stream ends with
//! [`Error::Compacted`]: the consumer must re-list.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use etcd_client::{EventType, WatchOptions};
use futures::Stream;
use tokio::sync::{mpsc, Notify};
use tracing::{debug, info, warn};

use crate::{prefix_end, Error, Object, Result, Store};

/// One change under the watched prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// A create (`object.create_revision == object.mod_revision`) or an update.
    Put { object: Object, prev: Option<Object> },
    /// A delete at `revision`; `prev` is the object as it was before.
    Delete { key: String, prev: Option<Object>, revision: i64 },
    /// Nothing changed under the prefix up to `revision` (etcd progress notification).
    Progress { revision: i64 },
}

impl WatchEvent {
    /// The store revision of the event.
    pub fn revision(&self) -> i64 {
        match self {
            WatchEvent::Put { object, .. } => object.mod_revision,
            WatchEvent::Delete { revision, .. } | WatchEvent::Progress { revision } => *revision,
        }
    }
}

/// A stream of [`WatchEvent`]s; dropping it cancels the etcd watch.
pub struct WatchStream {
    rx: mpsc::Receiver<Result<WatchEvent>>,
    /// The first revision this stream delivers.
    pub start_revision: i64,
    progress: Arc<Notify>,
}

impl Stream for WatchStream {
    type Item = Result<WatchEvent>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

impl WatchStream {
    /// The next event, or `None` once the stream has ended.
    pub async fn recv(&mut self) -> Option<Result<WatchEvent>> {
        self.rx.recv().await
    }

    /// A handle that asks etcd for a progress notification now (etcd 3.4's
    /// `WatchProgressRequest`): a [`WatchEvent::Progress`] with the revision etcd has sent
    /// everything up to follows. A cache on a quiet prefix uses it to catch up with a newer
    /// revision a client asks for, instead of waiting for etcd's periodic notification
    /// (10 minutes unless `--experimental-watch-progress-notify-interval` says otherwise).
    /// Requests made while one is pending are merged.
    pub fn progress_requester(&self) -> Arc<Notify> {
        self.progress.clone()
    }
}

pub(crate) async fn start(store: Store, prefix: String, from_revision: i64) -> Result<WatchStream> {
    let start_revision = if from_revision > 0 { from_revision } else { store.current_revision().await? + 1 };
    let (tx, rx) = mpsc::channel(1024);
    let progress = Arc::new(Notify::new());
    tokio::spawn(run(store, prefix, start_revision, tx, progress.clone()));
    Ok(WatchStream { rx, start_revision, progress })
}

/// Outcome of one etcd watch session.
enum Session {
    /// The consumer dropped the stream.
    Closed,
    /// The etcd stream broke; open a new one from the stored next revision.
    Reconnect,
}

async fn run(store: Store, prefix: String, mut next: i64, tx: mpsc::Sender<Result<WatchEvent>>, progress: Arc<Notify>) {
    let full_prefix = format!("{}{}", store.prefix(), prefix);
    let mut backoff = Duration::from_millis(50);
    loop {
        match session(&store, &full_prefix, &mut next, &tx, &progress).await {
            Ok(Session::Closed) => return,
            Ok(Session::Reconnect) => backoff = Duration::from_millis(50),
            Err(Error::Compacted { compacted, .. }) => {
                warn!(prefix, requested = next, compacted, "watch start revision compacted");
                let _ = tx.send(Err(Error::Compacted { requested: next, compacted })).await;
                return;
            }
            Err(e) => {
                debug!(prefix, error = %e, "watch could not (re)connect; retrying");
            }
        }
        tokio::select! {
            _ = tx.closed() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

async fn session(
    store: &Store,
    full_prefix: &str,
    next: &mut i64,
    tx: &mpsc::Sender<Result<WatchEvent>>,
    progress: &Notify,
) -> Result<Session> {
    let opts = WatchOptions::new()
        .with_range(prefix_end(full_prefix.as_bytes()))
        .with_start_revision(*next)
        .with_prev_key()
        .with_progress_notify();
    let mut client = store.raw_client();
    let mut stream = tokio::time::timeout(Duration::from_secs(5), client.watch(full_prefix, Some(opts)))
        .await
        .map_err(|_| Error::Timeout { op: "watch", after: Duration::from_secs(5) })?
        .map_err(|e| Error::from_etcd("watch", e))?;
    loop {
        let msg = tokio::select! {
            _ = tx.closed() => return Ok(Session::Closed),
            _ = progress.notified() => {
                if let Err(e) = stream.request_progress().await {
                    debug!(prefix = full_prefix, error = %e, "progress request failed");
                }
                continue;
            }
            m = stream.message() => m,
        };
        let resp = match msg {
            Ok(Some(resp)) => resp,
            Ok(None) => {
                info!(prefix = full_prefix, next = *next, "etcd watch stream ended; resuming");
                return Ok(Session::Reconnect);
            }
            Err(e) => {
                info!(prefix = full_prefix, next = *next, error = %e, "etcd watch stream failed; resuming");
                return Ok(Session::Reconnect);
            }
        };
        if resp.canceled() {
            if resp.compact_revision() > 0 {
                return Err(Error::Compacted { requested: *next, compacted: resp.compact_revision() });
            }
            info!(prefix = full_prefix, reason = resp.cancel_reason(), "etcd cancelled the watch; resuming");
            return Ok(Session::Reconnect);
        }
        if resp.events().is_empty() {
            if !resp.created() {
                if let Some(rev) = resp.header().map(|h| h.revision()) {
                    if rev >= *next {
                        *next = rev + 1;
                        if tx.send(Ok(WatchEvent::Progress { revision: rev })).await.is_err() {
                            return Ok(Session::Closed);
                        }
                    }
                }
            }
            continue;
        }
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            let revision = kv.mod_revision();
            if revision < *next {
                continue; // already delivered before a reconnect
            }
            let prev = ev.prev_kv().map(|p| store.object_from_kv(p));
            let event = match ev.event_type() {
                EventType::Put => WatchEvent::Put { object: store.object_from_kv(kv), prev },
                EventType::Delete => {
                    let key = store.object_from_kv(kv).key;
                    WatchEvent::Delete { key, prev, revision }
                }
            };
            if tx.send(Ok(event)).await.is_err() {
                return Ok(Session::Closed);
            }
        }
        // Events of one revision (one txn) arrive in one response, so after a response is
        // fully sent `next` moves one past its last revision without skipping anything.
        if let Some(last) = resp.events().iter().filter_map(|e| e.kv()).map(|kv| kv.mod_revision()).max() {
            *next = last + 1;
        }
    }
}
