//! The public facade: [`Db`], [`Keyspace`], [`WriteBatch`] and [`Snapshot`]. Their methods
//! check arguments and delegate to the engine's modules (`open`, `commit`, `read`, `jobs`,
//! `keylife`, `backup`…), which work on the shared state, `crate::state::DbInner`; see
//! docs/architecture.md. The submodules here hold the methods by topic and use this module,
//! never the reverse.

mod backup;
mod batch;
mod format;
mod index;
mod keys;
mod keyspace;
mod snapshot;
mod streams;

use crate::iter::DbIter;
use crate::manifest::DEFAULT_KEYSPACE;
use crate::options::{Options, WriteOptions};
use crate::state::{Background, DbInner};
use crate::stats::{LevelStats, OpenStats, Stats};

use crate::{Error, Result};
use sealdb_crypto::{CipherId, KeyDescriptor, SharedProvider};
use sealdb_wal::BatchBuilder;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// An open database. Cheap to clone (clones share one database); `Send + Sync`.
///
/// ```
/// # fn main() -> sealdb::Result<()> {
/// let dir = tempfile::tempdir().map_err(|e| sealdb::Error::invalid_argument(e.to_string()))?;
/// let keystore = tempfile::tempdir().map_err(|e| sealdb::Error::invalid_argument(e.to_string()))?;
/// let opts = sealdb::Options { keystore_dir: Some(keystore.path().to_path_buf()), ..Default::default() };
/// let db = sealdb::Db::open(dir.path().join("db"), opts)?;
/// db.put(b"hello", b"world")?;
/// assert_eq!(db.get(b"hello")?, Some(b"world".to_vec()));
/// let users = db.create_keyspace("users")?;
/// let mut batch = sealdb::WriteBatch::new();
/// batch.put(&users, b"u1", b"ada")?;
/// batch.delete(&db.default_keyspace(), b"hello")?;
/// db.write(batch, sealdb::WriteOptions::SYNC)?;
/// assert_eq!(users.get(b"u1")?, Some(b"ada".to_vec()));
/// assert_eq!(db.get(b"hello")?, None);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Db {
    pub(crate) inner: Arc<DbInner>,
    _bg: Arc<Background>,
}

/// A handle on one keyspace (an independent sorted tree sharing the database's WAL).
///
/// A handle keeps its database open (see [`Db::close`]).
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let opts = sealdb::Options { keystore_dir: Some(dir.path().join("keystore")), ..Default::default() };
/// let db = sealdb::Db::open(dir.path().join("db"), opts)?;
/// let users = db.create_keyspace("users")?;
/// users.put("u1", "ada")?;
/// users.put("u2", "grace")?;
/// assert!(users.contains_key("u1")?);
/// assert_eq!(users.first_key_value()?, Some((b"u1".to_vec(), b"ada".to_vec())));
/// assert_eq!(users.last_key_value()?, Some((b"u2".to_vec(), b"grace".to_vec())));
/// let names: Vec<_> = users.range("u2"..)?.collect::<sealdb::Result<_>>()?;
/// assert_eq!(names, [(b"u2".to_vec(), b"grace".to_vec())]);
/// assert_eq!(users.prefix("u")?.rev().count(), 2);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Keyspace {
    db: Db,
    id: u32,
    name: Arc<str>,
}

/// A set of puts and deletes, possibly across keyspaces, committed atomically (one WAL frame).
///
/// A batch must fit in one sealed block: its encoding (each record takes its key, its value
/// and 9 bytes, 13 for a put) is limited to [`MAX_BATCH_LEN`](crate::MAX_BATCH_LEN) bytes
/// (64 MiB less 29 bytes of framing). A [`put`](Self::put) or [`delete`](Self::delete) that
/// would take it past that fails with [`Error::BatchTooLarge`] and leaves the batch
/// unchanged. The limit
/// also applies after the engine adds the batch's index entries (a `Projection::All` index
/// copies each value, so an indexed batch is limited to about half) and to the change
/// records it makes for a keyspace's stream (with `NewAndOldImages`, old values count too):
/// [`Db::write`] refuses such a batch with `BatchTooLarge`, writing nothing of it. Writes
/// of other writers are never merged past the limit; the database stays writable.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let opts = sealdb::Options { keystore_dir: Some(dir.path().join("keystore")), ..Default::default() };
/// let db = sealdb::Db::open(dir.path().join("db"), opts)?;
/// let (a, b) = (db.create_keyspace("a")?, db.create_keyspace("b")?);
/// let mut batch = sealdb::WriteBatch::new();
/// batch.put(&a, "moved", "here")?;
/// batch.delete(&b, "moved")?;
/// assert_eq!(batch.len(), 2);
/// db.write(batch, sealdb::WriteOptions::SYNC)?; // both or neither, durable on return
/// assert_eq!(a.get("moved")?, Some(b"here".to_vec()));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct WriteBatch {
    builder: BatchBuilder,
    db: Option<usize>,
}

/// A consistent read view at one sequence number. Writes after it was taken are invisible to
/// it. Holding one keeps the versions it needs alive (and the database open).
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let opts = sealdb::Options { keystore_dir: Some(dir.path().join("keystore")), ..Default::default() };
/// let db = sealdb::Db::open(dir.path().join("db"), opts)?;
/// let ks = db.default_keyspace();
/// ks.put("k", "old")?;
/// let snap = db.snapshot();
/// ks.put("k", "new")?;
/// ks.put("later", "x")?;
/// assert_eq!(snap.get(&ks, "k")?, Some(b"old".to_vec()));
/// assert!(!snap.contains_key(&ks, "later")?);
/// assert_eq!(snap.last_key_value(&ks)?, Some((b"k".to_vec(), b"old".to_vec())));
/// assert_eq!(ks.get("k")?, Some(b"new".to_vec()));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Snapshot {
    db: Db,
    seq: u64,
}

impl Db {
    /// Opens the database at `path`, creating it (with the owned key by default) if it does
    /// not exist, and recovers everything the WAL holds.
    ///
    /// Opening reads and verifies everything first — KEYS, the head record, the manifest,
    /// every live table, the whole WAL chain — and only then writes or deletes anything, so a
    /// failed open leaves the directory as it found it. With [`Options::read_only`] it writes
    /// nothing at all.
    pub fn open(path: impl AsRef<Path>, opts: Options) -> Result<Self> {
        let (inner, bg) = crate::open::open(path.as_ref(), opts)?;
        Ok(Self { inner, _bg: bg })
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The database id (bound into every sealed block).
    pub fn database_id(&self) -> sealdb_crypto::DatabaseId {
        self.inner.keyring.read().database_id()
    }

    /// The block cipher of the database's files.
    pub fn cipher(&self) -> CipherId {
        self.inner.cipher
    }

    /// The master key wrapping the data keys.
    pub fn master_key(&self) -> KeyDescriptor {
        self.inner.keys.lock().master().clone()
    }

    /// The provider holding the master key.
    pub fn key_provider(&self) -> SharedProvider {
        self.inner.provider.read().clone()
    }

    /// What opening found (creation, WAL replay, torn tail).
    pub fn open_stats(&self) -> &OpenStats {
        &self.inner.open_stats
    }

    /// The default keyspace.
    pub fn default_keyspace(&self) -> Keyspace {
        Keyspace {
            db: self.clone(),
            id: DEFAULT_KEYSPACE,
            name: Arc::from("default"),
        }
    }

    /// Opens an existing keyspace by name.
    pub fn keyspace(&self, name: &str) -> Result<Keyspace> {
        if name.starts_with(crate::index::INTERNAL_PREFIX) {
            return Err(Error::KeyspaceNotFound(name.to_string()));
        }
        self.keyspace_any(name)
    }

    fn keyspace_any(&self, name: &str) -> Result<Keyspace> {
        let id = self.inner.keyspace_id(name)?;
        Ok(Keyspace {
            db: self.clone(),
            id,
            name: Arc::from(name),
        })
    }

    /// Opens the keyspace `name`, creating it (durably) if it does not exist.
    pub fn create_keyspace(&self, name: &str) -> Result<Keyspace> {
        if name.starts_with(crate::index::INTERNAL_PREFIX) {
            return Err(Error::invalid_argument(format!(
                "keyspace names starting with {} are reserved",
                crate::index::INTERNAL_PREFIX
            )));
        }
        self.create_keyspace_internal(name)
    }

    /// Creates (or opens) a keyspace by any name, internal ones included.
    pub(crate) fn create_keyspace_internal(&self, name: &str) -> Result<Keyspace> {
        let id = self.inner.create_keyspace(name)?;
        Ok(Keyspace {
            db: self.clone(),
            id,
            name: Arc::from(name),
        })
    }

    /// Drops a keyspace and everything in it.
    pub fn drop_keyspace(&self, name: &str) -> Result<()> {
        let ks = self.keyspace(name)?;
        // Its indexes and stream go with it.
        let idx: Vec<String> = self
            .inner
            .indexes
            .read()
            .by_base
            .get(&ks.id)
            .map(|v| v.iter().map(|i| i.name.clone()).collect())
            .unwrap_or_default();
        for i in idx {
            self.drop_index(&i)?;
        }
        if self.inner.streams.read().contains_key(&ks.id) {
            self.disable_stream(&ks)?;
        }
        self.drop_keyspace_internal(name)
    }

    /// Drops a keyspace by any name, internal ones included.
    pub(crate) fn drop_keyspace_internal(&self, name: &str) -> Result<()> {
        self.inner.drop_keyspace(name)
    }

    /// Names of every keyspace, sorted.
    pub fn keyspace_names(&self) -> Vec<String> {
        self.inner
            .keyspaces
            .read()
            .keys()
            .filter(|n| !n.starts_with(crate::index::INTERNAL_PREFIX))
            .cloned()
            .collect()
    }

    /// `check_writable` for sibling modules.
    pub(crate) fn check_writable_pub(&self) -> Result<()> {
        self.inner.check_writable()
    }

    /// A point read by keyspace id at a snapshot (for sibling modules).
    pub(crate) fn get_internal(
        &self,
        keyspace: u32,
        key: &[u8],
        snapshot: u64,
    ) -> Result<Option<Vec<u8>>> {
        self.inner.get_at(keyspace, key, snapshot)
    }

    /// A scan by keyspace id at a snapshot (for sibling modules).
    pub(crate) fn iter_internal(
        &self,
        keyspace: u32,
        lower: Bound<Vec<u8>>,
        upper: Bound<Vec<u8>>,
        snapshot: u64,
    ) -> Result<DbIter> {
        self.inner.iter_at(keyspace, lower, upper, snapshot)
    }

    /// Sets `key` to `value` in the default keyspace (not synced).
    pub fn put(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<()> {
        self.default_keyspace().put(key, value)
    }

    /// Reads `key` from the default keyspace.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>> {
        self.default_keyspace().get(key)
    }

    /// Deletes `key` from the default keyspace (not synced).
    pub fn delete(&self, key: impl AsRef<[u8]>) -> Result<()> {
        self.default_keyspace().delete(key)
    }

    /// Scans the default keyspace over `range` at the latest snapshot (see
    /// [`Keyspace::range`]).
    pub fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(&self, range: R) -> Result<DbIter> {
        self.default_keyspace().range(range)
    }

    /// Closes this handle. The database itself closes (background threads joined, files and
    /// lock released) when the last handle on it goes: every clone of the `Db` and every
    /// [`Keyspace`] and [`Snapshot`] taken from it, since each keeps the database open.
    ///
    /// Returns whether this was the last handle, i.e. whether the directory may be opened
    /// again now; `false` names the case where a reopen in this process would fail with
    /// [`Error::InUseHere`] until the other handles are dropped.
    pub fn close(self) -> bool {
        let last = Arc::strong_count(&self._bg) == 1;
        drop(self);
        last
    }

    /// Takes a snapshot of the current state.
    pub fn snapshot(&self) -> Snapshot {
        let mut snaps = self.inner.snapshots.lock();
        let seq = self.inner.visible_seq.load(Ordering::Acquire);
        *snaps.entry(seq).or_insert(0) += 1;
        Snapshot {
            db: self.clone(),
            seq,
        }
    }

    /// The oldest sequence number a live snapshot reads at (compaction keeps what it needs).
    pub fn oldest_snapshot(&self) -> Option<u64> {
        self.inner.snapshots.lock().keys().next().copied()
    }

    /// The newest visible sequence number.
    pub fn last_sequence(&self) -> u64 {
        self.inner.visible_seq.load(Ordering::Acquire)
    }

    /// Commits `batch` atomically; returns the sequence number of its last record.
    ///
    /// Fails with `BatchTooLarge` (writing nothing) if the batch with its index entries, or
    /// its change records for a stream, would not fit one sealed block (see [`WriteBatch`]),
    /// and with `KeyUnavailable` while the master key is unusable.
    pub fn write(&self, batch: WriteBatch, opts: WriteOptions) -> Result<u64> {
        if batch.builder.is_empty() {
            return Ok(self.last_sequence());
        }
        if let Some(owner) = batch.db
            && owner != Arc::as_ptr(&self.inner) as usize
        {
            return Err(Error::invalid_argument(
                "write batch holds keyspaces of another database".into(),
            ));
        }
        self.inner.write(batch.builder, opts.sync)
    }

    /// Runs `f` with the commit path held (see [`DbInner::run_exclusive`]).
    pub(crate) fn run_exclusive<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        self.inner.run_exclusive(f)
    }

    /// Commits a batch from inside [`run_exclusive`](Self::run_exclusive).
    pub(crate) fn commit_internal(&self, batch: BatchBuilder) -> Result<u64> {
        self.inner.commit_internal(batch)
    }

    /// Writes every memtable to level-0 tables now (and waits for it).
    pub fn flush(&self) -> Result<()> {
        self.inner.flush()
    }

    /// Flushes, then compacts every keyspace fully into its last level (dropping deleted and
    /// overwritten data no snapshot needs).
    pub fn compact(&self) -> Result<()> {
        self.flush()?;
        crate::jobs::compaction::compact_all(&self.inner.job_context())
            .map_err(|e| self.inner.fail(e))
    }

    /// Authenticates every live artifact (tables, WAL and archived WAL, stream segments and
    /// `CONSUMERS`, manifest and `CURRENT`, `KEYS`, `STATS`); reports how many of each kind it
    /// checked and each failure (each names its file and block).
    pub fn verify(&self) -> crate::VerifyReport {
        crate::jobs::verify::verify(&self.inner.job_context(), &self.inner.keys, &mut |_, _| {})
    }

    /// [`Db::verify`], calling `progress(done, total)` as tables (the bulk of the work) are
    /// checked, and once more with `done == total` when everything is.
    pub fn verify_with_progress(&self, progress: &mut dyn FnMut(u64, u64)) -> crate::VerifyReport {
        crate::jobs::verify::verify(&self.inner.job_context(), &self.inner.keys, progress)
    }

    /// Makes every write so far durable (one WAL sync).
    pub fn sync_wal(&self) -> Result<()> {
        self.inner.wal.sync()?;
        self.inner
            .counters
            .wal_syncs
            .fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Counters since open and the memtable state.
    pub fn stats(&self) -> Stats {
        let c = &self.inner.counters;
        let v = self.inner.versions.current();
        Stats {
            batches: c.batches.load(Ordering::Relaxed),
            records: c.records.load(Ordering::Relaxed),
            commit_groups: c.commit_groups.load(Ordering::Relaxed),
            commit_queue: self.inner.group.queued() as u64,
            wal_syncs: c.wal_syncs.load(Ordering::Relaxed),
            memtable_rotations: c.rotations.load(Ordering::Relaxed),
            write_stalls: c.stalls.load(Ordering::Relaxed),
            write_stall_time: Duration::from_nanos(c.stall_nanos.load(Ordering::Relaxed)),
            active_memtable_bytes: v.active.approximate_bytes() as u64,
            immutable_memtables: v.immutables.len() as u64,
            levels: {
                let mut levels = vec![LevelStats::default(); crate::manifest::NUM_LEVELS];
                for ks in v.version.keyspaces.values() {
                    for (i, l) in ks.iter().enumerate() {
                        if let Some(s) = levels.get_mut(i) {
                            s.files += l.len() as u64;
                            s.bytes += l.iter().map(|t| t.meta.size).sum::<u64>();
                        }
                    }
                }
                levels
            },
            cache_hits: self.inner.cache.hits(),
            cache_misses: self.inner.cache.misses(),
            flushes: c.flushes.load(Ordering::Relaxed),
            flush_bytes: c.flush_bytes.load(Ordering::Relaxed),
            compactions: c.compactions.load(Ordering::Relaxed),
            compaction_read_bytes: c.compaction_read_bytes.load(Ordering::Relaxed),
            compaction_write_bytes: c.compaction_write_bytes.load(Ordering::Relaxed),
            user_bytes: c.user_bytes.load(Ordering::Relaxed),
            immutable_memtable_bytes: v
                .immutables
                .iter()
                .map(|m| m.approximate_bytes() as u64)
                .sum(),
            last_sequence: self.last_sequence(),
            cumulative: self.inner.lifetime().to_stats(),
        }
    }
}
