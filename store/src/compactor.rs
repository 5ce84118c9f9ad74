//! Periodic compaction of etcd history, as upstream's apiserver does.
//!
//! Every `interval` the compactor compacts up to the revision it saw one interval earlier,
//! so at least one interval of history (default 5 minutes) stays available for watches
//! that resume and for the apiserver's watch cache.
//! With several apiservers on one etcd each compacts; compacting to an already-compacted
//! revision is harmless (etcd answers "compacted"), so no coordination key is needed.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{Error, Store};

/// The default interval, as upstream's `--etcd-compaction-interval`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);

/// Runs until `shutdown` is cancelled. An `interval` of zero disables compaction.
pub async fn run(store: Store, interval: Duration, shutdown: CancellationToken) {
    if interval.is_zero() {
        return;
    }
    let mut previous: Option<i64> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let current = match store.current_revision().await {
            Ok(rev) => rev,
            Err(e) => {
                warn!(error = %e, "compactor: reading the current revision failed");
                continue;
            }
        };
        if let Some(target) = previous {
            match store.compact(target).await {
                Ok(()) => info!(revision = target, "compacted etcd history"),
                Err(Error::Compacted { .. }) => {}
                Err(e) => warn!(error = %e, revision = target, "compaction failed"),
            }
        }
        previous = Some(current);
    }
}
