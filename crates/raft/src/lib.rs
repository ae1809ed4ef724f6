//! sealdb replicated by Raft: [openraft](https://docs.rs/openraft) is the consensus engine,
//! sealdb is its storage.
//!
//! Each node keeps two sealdb databases in its directory, both under the node's own master key:
//! the Raft log with the vote ([`LogStore`]) and the replicated key-value state ([`StateMachine`]).
//! A state-machine snapshot is a sealdb backup whose key envelope is re-wrapped under a cluster
//! *transport key*; a follower verifies it and restores it under its own master key. Nothing is
//! ever written or sent in clear: see `docs/replication.md`.
//!
//! [`RaftNode`] runs one node with the sealed loopback TCP transport of [`network`];
//! [`Client`] talks to a cluster and follows leader redirects.

mod client;
mod codec;
mod error;
mod keys;
pub mod network;
mod node;
mod snapshot;
mod store;

use serde::{Deserialize, Serialize};
use std::io::Cursor;

pub use client::Client;
pub use error::{Error, Result};
pub use keys::TransportKey;
pub use node::{NodeConfig, RaftNode, default_raft_config};
pub use store::{LogStore, StateMachine, StoreConfig, open_stores};

/// A Raft node id.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// The openraft type configuration of sealdb-raft: [`Request`] entries, [`Response`]
    /// replies, `u64` node ids, [`openraft::BasicNode`] (the node's `host:port`), snapshots as
    /// in-memory byte buffers (a packed, sealed backup), the tokio runtime.
    pub TypeConfig:
        D = Request,
        R = Response,
);

/// One operation of a replicated write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Sets `key` to `value`.
    Put {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// The value.
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    /// Removes `key`.
    Delete {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
}

/// A replicated write: its operations are applied atomically, in one sealdb `WriteBatch` with
/// the entry's log id.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Request {
    /// The operations, applied in order.
    pub ops: Vec<Op>,
}

/// What applying one log entry returned.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Response {
    /// The log index the entry was applied at.
    pub index: u64,
}

/// One node's Raft state, as it sees it (from openraft's metrics).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The node's id.
    pub id: NodeId,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    /// Its current term.
    pub term: u64,
    /// The index of the last entry in its log.
    pub last_log_index: Option<u64>,
    /// The index of the last entry it applied.
    pub last_applied: Option<u64>,
    /// The index up to which it purged its log.
    pub purged: Option<u64>,
    /// The last index its current snapshot covers (built here or installed).
    pub snapshot: Option<u64>,
}

/// The log id type of this configuration.
pub type LogId = openraft::LogId<NodeId>;
/// The Raft handle of this configuration.
pub type Raft = openraft::Raft<TypeConfig>;
/// The storage error type of this configuration.
pub type StorageError = openraft::StorageError<NodeId>;

/// Creates the cluster's transport key `name` in the local KMS at `kms_dir` unless it is
/// there already. Every node must be able to read that directory: it stands in for a key in a
/// cloud KMS that all nodes are allowed to use (see `docs/replication.md`).
pub fn ensure_transport_key(kms_dir: &std::path::Path, name: &str) -> Result<()> {
    let kms = sealdb_crypto::LocalKms::open(kms_dir)?;
    if kms.describe(name).is_err()
        && let Err(e) = kms.create_key(name)
        // Another node may have created it meanwhile.
        && kms.describe(name).is_err()
    {
        return Err(e.into());
    }
    Ok(())
}
