//! The replicated state machine: the data, the applied log id and the snapshots.

use super::config::*;
use crate::codec::encode;
use crate::snapshot::{self, Pack};
use crate::{Error, LogId, NodeId, Request, Response, StorageError, TypeConfig};
use openraft::storage::RaftStateMachine;
use openraft::{
    Entry, EntryPayload, OptionalSend, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageIOError,
    StoredMembership,
};
use parking_lot::Mutex;
use sealdb::{Db, Keyspace, Options, WriteBatch, WriteOptions};
use sealdb_crypto::{KeysFile, OwnedKeyProvider};
use serde::de::DeserializeOwned;
use std::io::Cursor;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The database id of the sealdb database at `dir` (from its KEYS header).
fn state_database_id(dir: &Path) -> crate::Result<sealdb_crypto::DatabaseId> {
    let fs = Options::default().fs;
    Ok(KeysFile::peek(fs.as_ref(), dir)?.database_id)
}

/// The open state database and its keyspaces; replaced whole when a snapshot is installed.
struct StateDb {
    db: Db,
    data: Keyspace,
    applied: Keyspace,
}

impl StateDb {
    fn open(path: &Path, opts: Options) -> crate::Result<Self> {
        let db = Db::open(path, opts)?;
        Ok(StateDb {
            data: db.create_keyspace(DATA_KEYSPACE)?,
            applied: db.create_keyspace(APPLIED_KEYSPACE)?,
            db,
        })
    }

    fn read<T: DeserializeOwned>(
        &self,
        key: &[u8],
        what: &'static str,
    ) -> crate::Result<Option<T>> {
        read_decoded(&self.applied, key, what)
    }

    fn applied_state(
        &self,
    ) -> crate::Result<(Option<LogId>, StoredMembership<NodeId, openraft::BasicNode>)> {
        let applied = self.read::<Option<LogId>>(APPLIED_KEY, "applied log id")?;
        let membership = self.read(MEMBERSHIP_KEY, "membership")?;
        Ok((applied.flatten(), membership.unwrap_or_default()))
    }

    fn close(self) {
        let StateDb { db, data, applied } = self;
        drop(data);
        drop(applied);
        db.close();
    }
}

struct StateInner {
    config: StoreConfig,
    /// `None` only while a snapshot is being installed.
    db: parking_lot::RwLock<Option<StateDb>>,
    /// Held across applying a batch and across taking a backup, so that a snapshot's data and
    /// its applied log id are of the same moment.
    apply_lock: Mutex<()>,
}

/// The replicated key-value state of one node, in its own sealdb database: each log entry is
/// applied as one `WriteBatch` holding its operations and the entry's log id, so a crash
/// between entries never applies one twice nor half of one.
#[derive(Clone)]
pub struct StateMachine {
    inner: Arc<StateInner>,
}

impl StateMachine {
    pub(super) fn open(config: StoreConfig) -> crate::Result<Self> {
        let state = config.dir.join(STATE_DIR);
        let old = config.dir.join(STATE_OLD_DIR);
        // A crash during an install: the restore appears at `state` only when complete, so
        // either it did (drop the old copy) or it did not (put the old copy back).
        if old.exists() {
            if state.exists() {
                std::fs::remove_dir_all(&old)
                    .map_err(|e| Error::io(format!("removing {}", old.display()), e))?;
            } else {
                std::fs::rename(&old, &state)
                    .map_err(|e| Error::io(format!("renaming {}", old.display()), e))?;
            }
        }
        snapshot::remove_scratch(&config.dir)?;
        let db = StateDb::open(&state, config.db_options())?;
        Ok(StateMachine {
            inner: Arc::new(StateInner {
                config,
                db: parking_lot::RwLock::new(Some(db)),
                apply_lock: Mutex::new(()),
            }),
        })
    }

    fn with_db<T>(&self, f: impl FnOnce(&StateDb) -> crate::Result<T>) -> crate::Result<T> {
        let guard = self.inner.db.read();
        match guard.as_ref() {
            Some(db) => f(db),
            None => Err(Error::Raft("the state machine is being replaced".into())),
        }
    }

    /// Reads `key` from the replicated data of this node (as applied here).
    pub fn get(&self, key: &[u8]) -> crate::Result<Option<Vec<u8>>> {
        self.with_db(|db| Ok(db.data.get(key)?))
    }

    /// The keys and values of this node's replicated data in `[start, end)` (`end` `None` =
    /// to the end), at most `limit` of them.
    pub fn scan(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> crate::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.with_db(|db| {
            let upper = match end {
                Some(e) => Bound::Excluded(e.to_vec()),
                None => Bound::Unbounded,
            };
            let mut out = Vec::new();
            for item in db.data.range((Bound::Included(start.to_vec()), upper))? {
                if out.len() >= limit {
                    break;
                }
                out.push(item?);
            }
            Ok(out)
        })
    }

    /// The last log id applied here.
    pub fn last_applied(&self) -> crate::Result<Option<LogId>> {
        self.with_db(|db| Ok(db.applied_state()?.0))
    }

    /// Closes the state database (the node is shutting down).
    pub(crate) fn close(&self) {
        if let Some(db) = self.inner.db.write().take() {
            db.close();
        }
    }

    fn apply_entry(&self, db: &StateDb, entry: &Entry<TypeConfig>) -> crate::Result<Response> {
        let mut batch = WriteBatch::new();
        match &entry.payload {
            EntryPayload::Blank => {}
            EntryPayload::Normal(Request { ops }) => {
                for op in ops {
                    match op {
                        crate::Op::Put { key, value } => batch.put(&db.data, key, value)?,
                        crate::Op::Delete { key } => batch.delete(&db.data, key)?,
                    }
                }
            }
            EntryPayload::Membership(m) => {
                let stored = StoredMembership::new(Some(entry.log_id), m.clone());
                batch.put(&db.applied, MEMBERSHIP_KEY, encode(&stored))?;
            }
        }
        batch.put(&db.applied, APPLIED_KEY, encode(&Some(entry.log_id)))?;
        // Not synced: the log holds every committed entry durably, and a snapshot (after which
        // the log may be purged) is a backup, which flushes everything applied to tables first.
        db.db.write(batch, WriteOptions::NO_SYNC)?;
        Ok(Response {
            index: entry.log_id.index,
        })
    }

    fn current_snapshot(&self) -> crate::Result<Option<Snapshot<TypeConfig>>> {
        let meta: Option<SnapshotMeta<NodeId, openraft::BasicNode>> =
            self.with_db(|db| db.read(SNAPSHOT_META_KEY, "snapshot metadata"))?;
        let Some(meta) = meta else {
            return Ok(None);
        };
        let path = self.pack_path(&meta.snapshot_id);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(path.display().to_string(), e)),
        };
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        }))
    }

    fn pack_path(&self, snapshot_id: &str) -> PathBuf {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(snapshot_id.as_bytes());
        let name = sealdb_crypto::hex::encode(digest.get(..16).unwrap_or_default());
        self.inner
            .config
            .dir
            .join(format!("{PACK_PREFIX}{name}{PACK_SUFFIX}"))
    }

    /// Makes `pack` with `meta` the current snapshot: the pack file first, then the metadata
    /// (synced) naming it, then the older packs are removed.
    fn set_current_snapshot(
        &self,
        meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
        pack: &[u8],
    ) -> crate::Result<()> {
        let path = self.pack_path(&meta.snapshot_id);
        snapshot::write_atomic(&path, pack)?;
        self.with_db(|db| {
            db.applied
                .put_opt(SNAPSHOT_META_KEY, encode(meta), WriteOptions::SYNC)?;
            Ok(())
        })?;
        let dir = &self.inner.config.dir;
        let entries = std::fs::read_dir(dir)
            .map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(PACK_PREFIX) && name.ends_with(PACK_SUFFIX) && entry.path() != path
            {
                std::fs::remove_file(entry.path())
                    .map_err(|e| Error::io(format!("removing {name}"), e))?;
            }
        }
        Ok(())
    }

    fn build(&self) -> crate::Result<Snapshot<TypeConfig>> {
        let config = &self.inner.config;
        let (pack, last_log_id, last_membership) = {
            let _applying = self.inner.apply_lock.lock();
            let guard = self.inner.db.read();
            let db = guard
                .as_ref()
                .ok_or_else(|| Error::Raft("the state machine is being replaced".into()))?;
            let (last_log_id, last_membership) = db.applied_state()?;
            let pack = snapshot::build(&db.db, config)?;
            (pack, last_log_id, last_membership)
        };
        let snapshot_id = match &last_log_id {
            Some(l) => format!("{}-{}-{}", l.leader_id, l.index, snapshot::unique_suffix()),
            None => format!("none-{}", snapshot::unique_suffix()),
        };
        let meta = SnapshotMeta {
            last_log_id,
            last_membership,
            snapshot_id,
        };
        let bytes = pack.encode();
        self.set_current_snapshot(&meta, &bytes)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }

    fn install(
        &self,
        meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
        bytes: &[u8],
    ) -> crate::Result<()> {
        let config = &self.inner.config;
        let pack = Pack::decode(bytes)?;
        // Unpacked, verified and restored under this node's own key beside the live state,
        // before anything live changes.
        let received = snapshot::receive(&pack, config)?;
        let state = config.dir.join(STATE_DIR);
        let replaced_id = state_database_id(&state)?;
        let _applying = self.inner.apply_lock.lock();
        let mut guard = self.inner.db.write();
        if let Some(old) = guard.take() {
            old.close();
        }
        let old = config.dir.join(STATE_OLD_DIR);
        let swapped = (|| -> crate::Result<StateDb> {
            std::fs::rename(&state, &old)
                .map_err(|e| Error::io(format!("renaming {}", state.display()), e))?;
            snapshot::restore_into(&received, &state, config)?;
            StateDb::open(&state, config.db_options())
        })();
        let db = match swapped {
            Ok(db) => db,
            Err(e) => {
                // Put the previous state back (dropping a restored copy that did not open)
                // and keep serving it.
                if old.exists() {
                    if state.exists() {
                        let _ = std::fs::remove_dir_all(&state);
                    }
                    let _ = std::fs::rename(&old, &state);
                }
                *guard = Some(StateDb::open(&state, config.db_options())?);
                return Err(e);
            }
        };
        let found = db.applied_state()?;
        if found.0 != meta.last_log_id || found.1 != meta.last_membership {
            // Keep the installed copy out of service and the old one back.
            db.close();
            let _ = std::fs::remove_dir_all(&state);
            let _ = std::fs::rename(&old, &state);
            *guard = Some(StateDb::open(&state, config.db_options())?);
            return Err(Error::malformed(
                "snapshot",
                format!(
                    "its state is at {:?}, its metadata says {:?}",
                    found.0, meta.last_log_id
                ),
            ));
        }
        // A data key of this node's own for everything it writes from now on; the shipped
        // tables keep the sender's data key (wrapped here under this node's master key only)
        // until compaction or `Db::reencrypt` rewrites them.
        db.db.rotate_data_key()?;
        *guard = Some(db);
        drop(guard);
        std::fs::remove_dir_all(&old)
            .map_err(|e| Error::io(format!("removing {}", old.display()), e))?;
        // The replaced database is gone: shred its master key too, unless the new state is of
        // the same database (a later snapshot of the same lineage), which uses that key now.
        if state_database_id(&state)? != replaced_id
            && let Ok(key) = OwnedKeyProvider::open(&config.keystore_dir, replaced_id)
        {
            key.destroy()?;
        }
        snapshot::remove_scratch(&config.dir)?;
        self.set_current_snapshot(meta, bytes)
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        self.build()
            .map_err(|e| StorageIOError::write_snapshot(None, io_err(e)).into())
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership<NodeId, openraft::BasicNode>), StorageError> {
        self.with_db(StateDb::applied_state).map_err(read_sm_err)
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let _applying = self.inner.apply_lock.lock();
        let guard = self.inner.db.read();
        let db = guard.as_ref().ok_or_else(|| {
            write_sm_err(Error::Raft("the state machine is being replaced".into()))
        })?;
        let mut replies = Vec::new();
        for entry in entries {
            replies.push(self.apply_entry(db, &entry).map_err(write_sm_err)?);
        }
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        self.install(meta, snapshot.get_ref())
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), io_err(e)).into())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        self.current_snapshot()
            .map_err(|e| StorageIOError::read_snapshot(None, io_err(e)).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interrupted_install_is_resolved_at_open() {
        let root = tempfile::tempdir().expect("tempdir");
        let kms = root.path().join("kms");
        crate::ensure_transport_key(&kms, "transport").expect("transport key");
        let config = StoreConfig::for_node(root.path(), 1, &kms, "transport");
        std::fs::create_dir_all(&config.dir).expect("mkdir");
        let sm = StateMachine::open(config.clone()).expect("open");
        sm.with_db(|db| Ok(db.data.put(b"k", b"v")?)).expect("put");
        sm.close();
        let state = config.dir.join(STATE_DIR);
        let old = config.dir.join(STATE_OLD_DIR);

        // Crash after the live state was moved aside, before the restore appeared: it is put
        // back.
        std::fs::rename(&state, &old).expect("rename");
        let sm = StateMachine::open(config.clone()).expect("reopen");
        assert_eq!(sm.get(b"k").expect("get"), Some(b"v".to_vec()));
        assert!(!old.exists());
        sm.close();

        // Crash after the restore appeared, before the old state was removed: it is removed.
        std::fs::create_dir_all(&old).expect("mkdir");
        std::fs::write(old.join("leftover"), b"x").expect("write");
        std::fs::create_dir_all(config.dir.join("snapshot-recv")).expect("mkdir");
        let sm = StateMachine::open(config.clone()).expect("reopen");
        assert_eq!(sm.get(b"k").expect("get"), Some(b"v".to_vec()));
        assert!(!old.exists());
        assert!(!config.dir.join("snapshot-recv").exists());
        sm.close();
    }
}
