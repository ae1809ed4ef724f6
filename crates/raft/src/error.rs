//! The errors of sealdb-raft.

use serde::{Deserialize, Serialize};

/// What can go wrong running a node or talking to a cluster.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The storage engine failed (a node's database, backup or restore).
    #[error("sealdb: {0}")]
    Engine(#[from] sealdb::Error),
    /// Key material failed (the transport key, a KEYS envelope).
    #[error("keys: {0}")]
    Keys(#[from] sealdb_crypto::Error),
    /// A file or socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, naming the path or address.
        what: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// Bytes that do not decode: a stored log entry, a frame, a snapshot pack.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What was being decoded.
        what: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// The node asked is not the leader; retry at the leader, when one is known.
    #[error("not the leader (leader: {})", leader_addr.as_deref().unwrap_or("unknown"))]
    NotLeader {
        /// The current leader's node id, when known.
        leader_id: Option<u64>,
        /// The current leader's address, when known.
        leader_addr: Option<String>,
    },
    /// The node could not serve the request now (no quorum answered a leadership check, or it
    /// is shutting down); another try, here or elsewhere, may succeed.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// openraft refused or failed an operation.
    #[error("raft: {0}")]
    Raft(String),
    /// No node of the cluster answered in time.
    #[error("no answer from the cluster within {0:?}")]
    Timeout(std::time::Duration),
    /// A bad argument (a node id or an address).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl Error {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }

    pub(crate) fn malformed(what: &'static str, reason: impl std::fmt::Display) -> Self {
        Error::Malformed {
            what,
            reason: reason.to_string(),
        }
    }
}

/// The result type of sealdb-raft.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The error a node returns to a remote client: [`Error`] flattened to what crosses the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum WireError {
    NotLeader {
        leader_id: Option<u64>,
        leader_addr: Option<String>,
    },
    Unavailable(String),
    Failed(String),
}

impl From<Error> for WireError {
    fn from(e: Error) -> Self {
        match e {
            Error::NotLeader {
                leader_id,
                leader_addr,
            } => WireError::NotLeader {
                leader_id,
                leader_addr,
            },
            Error::Unavailable(s) => WireError::Unavailable(s),
            other => WireError::Failed(other.to_string()),
        }
    }
}

impl From<WireError> for Error {
    fn from(e: WireError) -> Self {
        match e {
            WireError::NotLeader {
                leader_id,
                leader_addr,
            } => Error::NotLeader {
                leader_id,
                leader_addr,
            },
            WireError::Unavailable(s) => Error::Unavailable(s),
            WireError::Failed(s) => Error::Raft(s),
        }
    }
}
