//! Where a node keeps its stores, the names inside them, and the storage-error helpers both
//! stores use.

use crate::StorageError;
use crate::codec::decode;
use crate::keys::TransportKey;
use openraft::{AnyError, StorageIOError};
use sealdb::{Keyspace, MasterKey, Options};
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::path::{Path, PathBuf};

pub(super) const LOG_DIR: &str = "log";
pub(super) const STATE_DIR: &str = "state";
pub(super) const STATE_OLD_DIR: &str = "state.old";
/// The current snapshot's pack is `snapshot-<digest of its id>.pack`: the metadata names its
/// pack, so a crash between writing one and the other never pairs a pack with another
/// snapshot's metadata (a missing pack reads as "no snapshot", and openraft builds one).
pub(super) const PACK_PREFIX: &str = "snapshot-";
pub(super) const PACK_SUFFIX: &str = ".pack";

pub(super) const LOG_KEYSPACE: &str = "raft_log";
pub(super) const LOG_META_KEYSPACE: &str = "raft_meta";
/// The user's replicated keys.
pub(crate) const DATA_KEYSPACE: &str = "kv";
pub(super) const APPLIED_KEYSPACE: &str = "raft_applied";

pub(super) const VOTE_KEY: &[u8] = b"vote";
pub(super) const COMMITTED_KEY: &[u8] = b"committed";
pub(super) const PURGED_KEY: &[u8] = b"last_purged";
pub(super) const APPLIED_KEY: &[u8] = b"applied";
pub(super) const MEMBERSHIP_KEY: &[u8] = b"membership";
pub(super) const SNAPSHOT_META_KEY: &[u8] = b"snapshot_meta";

/// Where one node keeps its data and which keys it uses.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The node's directory (created if missing).
    pub dir: PathBuf,
    /// The node's keystore: its owned master keys live there, outside `dir`.
    pub keystore_dir: PathBuf,
    /// The local KMS directory that holds the cluster's transport key.
    pub transport_kms_dir: PathBuf,
    /// The transport key's name in that KMS.
    pub transport_key: String,
}

impl StoreConfig {
    /// The layout of the examples, the tests and a single-machine trial: node `id` keeps its
    /// data in `<root>/node<id>` and its keys in `<root>/keystore<id>`, beside the shared
    /// transport KMS directory `transport_kms_dir` (key `transport_key`).
    pub fn for_node(
        root: &Path,
        id: crate::NodeId,
        transport_kms_dir: &Path,
        transport_key: &str,
    ) -> Self {
        StoreConfig {
            dir: root.join(format!("node{id}")),
            keystore_dir: root.join(format!("keystore{id}")),
            transport_kms_dir: transport_kms_dir.to_path_buf(),
            transport_key: transport_key.to_string(),
        }
    }

    /// sealdb options for this node's databases: the node's own owned key, and the transport
    /// KMS so that a received snapshot's key envelope resolves.
    pub(crate) fn db_options(&self) -> Options {
        Options {
            master_key: MasterKey::Owned,
            keystore_dir: Some(self.keystore_dir.clone()),
            kms_dir: Some(self.transport_kms_dir.clone()),
            ..Options::default()
        }
    }
}

impl StoreConfig {
    /// The cluster's transport key, as a key provider (wrapping goes through the KMS; the key
    /// never leaves it).
    pub(crate) fn transport(&self) -> crate::Result<TransportKey> {
        TransportKey::local_kms(&self.transport_kms_dir, &self.transport_key)
    }
}

/// The value at `key` in `keyspace`, decoded (`what` names it in errors).
pub(super) fn read_decoded<T: DeserializeOwned>(
    keyspace: &Keyspace,
    key: &[u8],
    what: &'static str,
) -> crate::Result<Option<T>> {
    match keyspace.get(key)? {
        Some(bytes) => Ok(Some(decode(&bytes, what)?)),
        None => Ok(None),
    }
}

pub(super) fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

pub(super) fn io_err(e: impl std::error::Error + 'static) -> AnyError {
    AnyError::new(&e)
}

pub(super) fn read_logs_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_logs(io_err(e)).into()
}

pub(super) fn write_logs_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_logs(io_err(e)).into()
}

pub(super) fn read_sm_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_state_machine(io_err(e)).into()
}

pub(super) fn write_sm_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_state_machine(io_err(e)).into()
}
