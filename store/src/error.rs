//! The store's one error type. The apiserver maps each variant to exactly one HTTP status.

use std::time::Duration;

/// What went wrong in a store operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("key {key} not found")]
    NotFound { key: String },

    #[error("key {key} already exists")]
    AlreadyExists { key: String },

    /// A compare-and-swap lost: the key changed since it was read.
    #[error("key {key} was modified concurrently (now at revision {current_revision})")]
    Conflict { key: String, current_revision: i64 },

    #[error("{message}")]
    PreconditionFailed { key: String, message: String },

    /// The requested revision is older than etcd's compacted history (HTTP 410 Gone).
    #[error("required revision {requested} has been compacted (compacted up to {compacted})")]
    Compacted { requested: i64, compacted: i64 },

    #[error("invalid continue token: {0}")]
    InvalidContinue(String),

    /// etcd could not be reached. `never_sent` says the request provably never reached a
    /// server (connection refused), so retrying it cannot apply a write twice.
    #[error("etcd unavailable during {op}: {source}")]
    Unavailable {
        op: &'static str,
        never_sent: bool,
        #[source]
        source: etcd_client::Error,
    },

    #[error("etcd {op} timed out after {after:?}")]
    Timeout { op: &'static str, after: Duration },

    #[error("etcd {op} failed: {source}")]
    Etcd {
        op: &'static str,
        #[source]
        source: etcd_client::Error,
    },
}

impl Error {
    /// Classifies an etcd-client error.
    pub(crate) fn from_etcd(op: &'static str, source: etcd_client::Error) -> Self {
        use tonic::Code;
        match &source {
            etcd_client::Error::GRpcStatus(status) => {
                let msg = status.message();
                match status.code() {
                    Code::OutOfRange if msg.contains("compacted") => Error::Compacted { requested: 0, compacted: 0 },
                    Code::Unavailable | Code::DeadlineExceeded | Code::Unknown if is_connect_error(msg) => {
                        Error::Unavailable { op, never_sent: true, source }
                    }
                    Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown
                        if !matches!(status.code(), Code::Unknown) || msg.contains("transport error") =>
                    {
                        Error::Unavailable { op, never_sent: false, source }
                    }
                    // "etcdserver: leader changed" / "no leader": the proposal was not applied.
                    Code::Unknown if msg.contains("leader") => Error::Unavailable { op, never_sent: true, source },
                    _ => Error::Etcd { op, source },
                }
            }
            etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => {
                Error::Unavailable { op, never_sent: true, source }
            }
            _ => Error::Etcd { op, source },
        }
    }

    /// Fills in the revision a compacted read asked for.
    pub(crate) fn with_requested_revision(self, rev: i64) -> Self {
        match self {
            Error::Compacted { compacted, .. } => Error::Compacted { requested: rev, compacted },
            e => e,
        }
    }

    /// True when etcd's answer exceeded the gRPC message limit (read in smaller chunks).
    pub(crate) fn is_message_too_large(&self) -> bool {
        matches!(self, Error::Etcd { source, .. } if source.to_string().contains("message length too large"))
    }

    /// True for errors that mean "etcd is not reachable right now" (HTTP 503 / 504).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Error::Unavailable { .. } | Error::Timeout { .. })
    }
}

fn is_connect_error(msg: &str) -> bool {
    msg.contains("connect error") || msg.contains("Connection refused") || msg.contains("connection refused")
}
