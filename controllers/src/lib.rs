//! # skiff-controllers: the controller-manager's control loops
//!
//! Every loop here talks to the cluster only through the Kubernetes API with kube-rs, like
//! any other client (DESIGN.md section 5). Loops are level-triggered: they look at the whole
//! current state (reflector caches) and act to make it right, so missing an event or
//! restarting never leaves work undone.
//!
//! Start reading at [`ControllerManager::run`]. Present today:
//! - [`gc`]: the garbage collector (cascading deletion through ownerReferences:
//!   Background, Foreground, Orphan).
//!
//! The workload, endpoint, node-lifecycle and service-account controllers of issue 6 join
//! here, one file each.

pub mod gc;

use kube::Client;
use tokio_util::sync::CancellationToken;
use tracing::info;

/// Why a controller stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

/// Runs every controller until shutdown.
pub struct ControllerManager {
    client: Client,
}

impl ControllerManager {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// Runs the controllers until `shutdown` is cancelled, then waits for them to stop.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Error> {
        info!("controller-manager starting");
        let gc = gc::GarbageCollector::new(self.client.clone());
        gc.run(shutdown).await
    }
}
