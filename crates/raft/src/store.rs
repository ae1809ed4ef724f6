//! openraft's storage traits on sealdb: the log store and the state machine.
//!
//! A node directory holds two databases under the node's own master key:
//!
//! ```text
//! <node>/log        the Raft log (keyspace `raft_log`, key = index, big-endian) and the
//!                   vote, committed id and last purged id (keyspace `raft_meta`)
//! <node>/state      the replicated data (keyspace `kv`) and, in the same database, the last
//!                   applied log id, the last membership and the current snapshot's metadata
//!                   (keyspace `raft_applied`)
//! <node>/snapshot-<digest>.pack   the current snapshot: a packed backup of `state` (see
//!                   `snapshot`), named by a digest of its snapshot id
//! ```
//!
//! The log is a database of its own rather than a keyspace of `state` because installing a
//! snapshot replaces the whole state database (a restore), which must not touch the log or
//! the vote.

use crate::codec::{decode, encode};
use crate::keys::TransportKey;
use crate::snapshot::{self, Pack};
use crate::{Error, LogId, NodeId, Request, Response, StorageError, TypeConfig};
use openraft::storage::{LogFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{
    AnyError, Entry, EntryPayload, LogState, OptionalSend, RaftLogReader, RaftSnapshotBuilder,
    Snapshot, SnapshotMeta, StorageIOError, StoredMembership, Vote,
};
use parking_lot::Mutex;
use sealdb::{Db, Keyspace, MasterKey, Options, WriteBatch, WriteOptions};
use sealdb_crypto::{KeysFile, OwnedKeyProvider};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::io::Cursor;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const LOG_DIR: &str = "log";
const STATE_DIR: &str = "state";
const STATE_OLD_DIR: &str = "state.old";
/// The current snapshot's pack is `snapshot-<digest of its id>.pack`: the metadata names its
/// pack, so a crash between writing one and the other never pairs a pack with another
/// snapshot's metadata (a missing pack reads as "no snapshot", and openraft builds one).
const PACK_PREFIX: &str = "snapshot-";
const PACK_SUFFIX: &str = ".pack";

const LOG_KEYSPACE: &str = "raft_log";
const LOG_META_KEYSPACE: &str = "raft_meta";
/// The user's replicated keys.
pub(crate) const DATA_KEYSPACE: &str = "kv";
const APPLIED_KEYSPACE: &str = "raft_applied";

const VOTE_KEY: &[u8] = b"vote";
const COMMITTED_KEY: &[u8] = b"committed";
const PURGED_KEY: &[u8] = b"last_purged";
const APPLIED_KEY: &[u8] = b"applied";
const MEMBERSHIP_KEY: &[u8] = b"membership";
const SNAPSHOT_META_KEY: &[u8] = b"snapshot_meta";

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
fn read_decoded<T: DeserializeOwned>(
    keyspace: &Keyspace,
    key: &[u8],
    what: &'static str,
) -> crate::Result<Option<T>> {
    match keyspace.get(key)? {
        Some(bytes) => Ok(Some(decode(&bytes, what)?)),
        None => Ok(None),
    }
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn io_err(e: impl std::error::Error + 'static) -> AnyError {
    AnyError::new(&e)
}

fn read_logs_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_logs(io_err(e)).into()
}

fn write_logs_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_logs(io_err(e)).into()
}

fn read_sm_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_state_machine(io_err(e)).into()
}

fn write_sm_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_state_machine(io_err(e)).into()
}

/// Opens (creating if needed) the log store and the state machine of the node at `config`.
pub fn open_stores(config: &StoreConfig) -> crate::Result<(LogStore, StateMachine)> {
    std::fs::create_dir_all(&config.dir)
        .map_err(|e| Error::io(format!("creating {}", config.dir.display()), e))?;
    let log = LogStore::open(&config.dir.join(LOG_DIR), config.db_options())?;
    let sm = StateMachine::open(config.clone())?;
    Ok((log, sm))
}

/// The Raft log and vote of one node, in its own sealdb database. Nothing is reported durable
/// before it is: the vote, truncations and purges are synced writes, and appended entries are
/// reported flushed only after a WAL sync that followed them (one sync shared by every append
/// queued meanwhile).
#[derive(Clone)]
pub struct LogStore {
    log: Keyspace,
    meta: Keyspace,
    syncer: std::sync::mpsc::Sender<LogFlushed<TypeConfig>>,
    /// Held by every handle on the log database and dropped after it (fields drop in order),
    /// so that a node stopping can wait until the database is closed.
    open: Arc<()>,
}

/// Group commit of appends: each `append` writes its entries at once (in log order, unsynced)
/// and queues its callback here; this thread takes every callback queued, makes every write so
/// far durable with one WAL sync, and only then reports them flushed. While a sync runs, the
/// appends of other client writes queue up and share the next one. It ends when the log store
/// and its readers are gone.
fn log_syncer(db: Db, queue: std::sync::mpsc::Receiver<LogFlushed<TypeConfig>>, open: Arc<()>) {
    while let Ok(first) = queue.recv() {
        let mut waiting = vec![first];
        waiting.extend(queue.try_iter());
        let result = db.sync_wal();
        for callback in waiting {
            callback.log_io_completed(match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(std::io::Error::other(e.to_string())),
            });
        }
    }
    drop(db);
    drop(open);
}

impl LogStore {
    fn open(path: &Path, opts: Options) -> crate::Result<Self> {
        let db = Db::open(path, opts)?;
        let (syncer, queue) = std::sync::mpsc::channel();
        let open = Arc::new(());
        let syncer_db = db.clone();
        let syncer_open = open.clone();
        std::thread::Builder::new()
            .name("sealdb-raft-log-sync".into())
            .spawn(move || log_syncer(syncer_db, queue, syncer_open))
            .map_err(|e| Error::io("starting the log sync thread", e))?;
        Ok(LogStore {
            log: db.create_keyspace(LOG_KEYSPACE)?,
            meta: db.create_keyspace(LOG_META_KEYSPACE)?,
            syncer,
            open,
        })
    }

    /// Gone (`upgrade` is `None`) once every handle on the log database has been dropped and
    /// the database is closed.
    pub(crate) fn open_signal(&self) -> std::sync::Weak<()> {
        Arc::downgrade(&self.open)
    }

    fn read_meta<T: DeserializeOwned>(
        &self,
        key: &[u8],
        what: &'static str,
    ) -> crate::Result<Option<T>> {
        read_decoded(&self.meta, key, what)
    }

    fn write_meta<T: Serialize>(
        &self,
        key: &[u8],
        value: &T,
        durability: WriteOptions,
    ) -> crate::Result<()> {
        self.meta.put_opt(key, encode(value), durability)?;
        Ok(())
    }

    fn entries(&self, start: Bound<u64>, end: Bound<u64>) -> crate::Result<Vec<Entry<TypeConfig>>> {
        let bound = |b: Bound<u64>| match b {
            Bound::Included(i) => Bound::Included(index_key(i).to_vec()),
            Bound::Excluded(i) => Bound::Excluded(index_key(i).to_vec()),
            Bound::Unbounded => Bound::Unbounded,
        };
        let mut out = Vec::new();
        for item in self.log.range((bound(start), bound(end)))? {
            let (_, value) = item?;
            out.push(decode(&value, "log entry")?);
        }
        Ok(out)
    }

    /// Deletes the entries in `range` (and writes `extra` in the same synced batch).
    fn delete_entries(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
        extra: Option<(&[u8], Vec<u8>)>,
    ) -> crate::Result<()> {
        let doomed: Vec<u64> = self
            .entries(start, end)?
            .iter()
            .map(|e| e.log_id.index)
            .collect();
        let mut batch = WriteBatch::new();
        for index in doomed {
            batch.delete(&self.log, index_key(index))?;
        }
        if let Some((key, value)) = extra {
            batch.put(&self.meta, key, value)?;
        }
        self.log.db().write(batch, WriteOptions::SYNC)?;
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError> {
        self.entries(range.start_bound().cloned(), range.end_bound().cloned())
            .map_err(read_logs_err)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> = self
            .read_meta(PURGED_KEY, "last purged log id")
            .map_err(read_logs_err)?;
        let last = self.log.last_key_value().map_err(read_logs_err)?;
        let last_log_id = match last {
            Some((_, value)) => {
                let entry: Entry<TypeConfig> =
                    decode(&value, "log entry").map_err(read_logs_err)?;
                Some(entry.log_id)
            }
            None => last_purged_log_id,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        self.write_meta(VOTE_KEY, vote, WriteOptions::SYNC)
            .map_err(|e| StorageIOError::write_vote(io_err(e)).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.read_meta(VOTE_KEY, "vote")
            .map_err(|e| StorageIOError::read_vote(io_err(e)).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not synced (it is a hint: after a restart openraft re-applies up to it at once
        // instead of waiting for the leader): the next append's WAL sync makes it durable, and
        // a committed id lost to a power cut only means a later catch-up, never a wrong read
        // (linearizable reads wait for the leader's commit in its term).
        self.write_meta(COMMITTED_KEY, &committed, WriteOptions::NO_SYNC)
            .map_err(write_logs_err)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self
            .read_meta::<Option<LogId>>(COMMITTED_KEY, "committed log id")
            .map_err(read_logs_err)?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        // All entries of one append in one batch, written now and in order (a batch past
        // sealdb's limit is written as several, in order, so a crash keeps a prefix, which
        // Raft tolerates); durable once the syncer's next WAL sync returns.
        let mut batch = WriteBatch::new();
        for entry in entries {
            let key = index_key(entry.log_id.index);
            let value = encode(&entry);
            if batch.put(&self.log, key, &value).is_err() && !batch.is_empty() {
                let full = std::mem::take(&mut batch);
                self.log
                    .db()
                    .write(full, WriteOptions::NO_SYNC)
                    .map_err(write_logs_err)?;
                batch.put(&self.log, key, &value).map_err(write_logs_err)?;
            }
        }
        self.log
            .db()
            .write(batch, WriteOptions::NO_SYNC)
            .map_err(write_logs_err)?;
        if let Err(std::sync::mpsc::SendError(callback)) = self.syncer.send(callback) {
            // The syncer is gone (only at shutdown): sync here instead.
            let result = self.log.db().sync_wal();
            callback.log_io_completed(match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(std::io::Error::other(e.to_string())),
            });
            result.map_err(write_logs_err)?;
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.delete_entries(Bound::Included(log_id.index), Bound::Unbounded, None)
            .map_err(write_logs_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // The purged id and the deletions in one synced batch: the log state never claims a
        // purge that did not happen, nor the reverse.
        let marker = encode(&Some(log_id));
        self.delete_entries(
            Bound::Unbounded,
            Bound::Included(log_id.index),
            Some((PURGED_KEY, marker)),
        )
        .map_err(write_logs_err)
    }
}

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
    fn open(config: StoreConfig) -> crate::Result<Self> {
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
