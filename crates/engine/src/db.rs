//! The database: open and recovery, keyspaces, the write path (group commit into the WAL,
//! then the memtable), point reads and scans at snapshots.

use crate::iter::{DbIter, MemSource, Source};
use crate::keys::open_or_create_keys;
use crate::manifest::{DEFAULT_KEYSPACE, Edit, Manifest};
use crate::options::{Options, WriteOptions};
use crate::version::Version;
use crate::{Error, Result};
use crossbeam_channel::Sender;
use parking_lot::{Condvar, Mutex, RwLock};
use sealdb_crypto::{CipherId, KeyDescriptor, Keyring, KeysFile, SharedProvider};
use sealdb_memtable::{Memtable, ValueKind};
use sealdb_sstable::BlockCache;
use sealdb_vfs::{FileLock, SharedFs};
use sealdb_wal::{
    BatchBuilder, FrameBatch, GroupCommit, Op, RecordIter, RecoveryStats, Wal, WalOptions,
};
use std::collections::{BTreeMap, HashMap};
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const WAL_DIR: &str = "wal";
const LOCK_FILE: &str = "LOCK";
const KEYSPACE_PREFIX_LEN: usize = 4;
const MAX_KEYSPACE_NAME: usize = 255;
/// WAL segments recovered at open beyond which open flushes what they hold and retires them.
const MAX_RECOVERED_WAL_SEGMENTS: usize = 8;
/// How often a read-only open is tried before its error is reported.
const READ_ONLY_OPEN_ATTEMPTS: u64 = 4;

/// Whether a read-only open may have failed only because a live writer changed the
/// directory under it (a file gone between listing and reading).
pub(crate) fn retry_read_only(e: &Error) -> bool {
    match e {
        Error::Io { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
        Error::Corruption { .. } | Error::Integrity { .. } | Error::ChainEnd { .. } => true,
        _ => false,
    }
}

/// Checks the recovered WAL against the head: the newest segment it names must be there
/// (unless obsolete), nothing it knew durable may be missing, and after a clean close the
/// newest segment must end exactly where the close left it.
fn check_wal_end(
    head: &crate::head::HeadState,
    recovery: &sealdb_wal::WalRecovery,
    wal_dir: &Path,
    last_seq: u64,
) -> Result<()> {
    let file = |n: u64| {
        wal_dir
            .join(sealdb_wal::segment_file_name(n))
            .display()
            .to_string()
    };
    let newest = recovery.newest_segment().unwrap_or(0);
    if head.wal_segment >= recovery.min_segment() && newest < head.wal_segment {
        return Err(Error::ChainEnd {
            artifact: "WAL segment",
            file: file(head.wal_segment),
            detail: format!(
                "the head names segment {} as written, but the newest segment found is {newest}",
                head.wal_segment
            ),
        });
    }
    if last_seq < head.wal_durable_seq {
        return Err(Error::ChainEnd {
            artifact: "WAL segment",
            file: file(newest),
            detail: format!(
                "writes up to sequence {} were durable, but recovery found only up to {last_seq}",
                head.wal_durable_seq
            ),
        });
    }
    if let Some(end) = head.clean_end
        && head.wal_segment >= recovery.min_segment()
    {
        let found = recovery.segment_end(head.wal_segment);
        let torn = recovery
            .stats()
            .torn_tail
            .is_some_and(|t| t.segment == head.wal_segment);
        if found != Some(end) || torn {
            return Err(Error::ChainEnd {
                artifact: "WAL segment",
                file: file(head.wal_segment),
                detail: format!(
                    "the database was closed cleanly with this segment ending at byte {end},                      but it ends at {}",
                    found.map_or_else(|| "(missing)".to_string(), |f| f.to_string())
                ),
            });
        }
    }
    Ok(())
}

/// The memtables readers see, swapped whole on rotation (readers clone the `Arc`).
#[derive(Debug)]
pub(crate) struct SuperVersion {
    pub active: Arc<Memtable>,
    /// Frozen memtables waiting for flush, newest first.
    pub immutables: Vec<Arc<Memtable>>,
    /// The live tables.
    pub version: Arc<Version>,
}

/// What opening found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenStats {
    /// Whether this open created the database.
    pub created: bool,
    /// WAL recovery: segments, batches and records replayed, and any torn tail cut off.
    pub wal: RecoveryStats,
    /// What the chain ends were checked against: a head record, a legacy rollback counter,
    /// or nothing (trusted as found — a new database, or a first open at this path).
    pub head: crate::head::HeadOrigin,
}

/// Counters of the engine's work since open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Write batches committed.
    pub batches: u64,
    /// Records (puts and deletes) committed.
    pub records: u64,
    /// Commit groups (WAL frames) written: `batches / groups` is the group-commit factor.
    pub commit_groups: u64,
    /// Writers queued for commit right now, behind the group being written (a gauge, not a
    /// counter).
    pub commit_queue: u64,
    /// WAL syncs (`fdatasync`) performed.
    pub wal_syncs: u64,
    /// Memtable rotations.
    pub memtable_rotations: u64,
    /// Writes that had to wait for memtable space (back-pressure).
    pub write_stalls: u64,
    /// Total time writers spent stalled.
    pub write_stall_time: Duration,
    /// Bytes in the active memtable.
    pub active_memtable_bytes: u64,
    /// Frozen memtables awaiting flush.
    pub immutable_memtables: u64,
    /// Bytes in frozen memtables.
    pub immutable_memtable_bytes: u64,
    /// The newest visible sequence number.
    pub last_sequence: u64,
    /// The counters over the database's whole life (earlier sessions' from the sealed
    /// `STATS` file, plus this process's), where the fields above count since open.
    pub cumulative: crate::CumulativeStats,
    /// Per level (summed over keyspaces): table count and bytes.
    pub levels: Vec<LevelStats>,
    /// Block cache hits and misses.
    pub cache_hits: u64,
    /// Block cache misses.
    pub cache_misses: u64,
    /// Memtable flushes and the table bytes they wrote.
    pub flushes: u64,
    /// Bytes written by flushes.
    pub flush_bytes: u64,
    /// Compactions run.
    pub compactions: u64,
    /// Bytes compactions read.
    pub compaction_read_bytes: u64,
    /// Bytes compactions wrote.
    pub compaction_write_bytes: u64,
    /// Bytes of records committed by users (keys, values, framing).
    pub user_bytes: u64,
}

/// The tables of one level (or of one keyspace, from [`Keyspace::table_stats`]): count and size.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LevelStats {
    /// Tables.
    pub files: u64,
    /// Bytes.
    pub bytes: u64,
}

impl Stats {
    /// Block cache hit ratio (0 when unused).
    pub fn cache_hit_ratio(&self) -> f64 {
        let total = self.cache_hits + self.cache_misses;
        if total == 0 {
            0.0
        } else {
            self.cache_hits as f64 / total as f64
        }
    }

    /// Table bytes written (flush plus compaction) per byte committed: the write
    /// amplification of the tree (the WAL adds about one more).
    pub fn write_amplification(&self) -> f64 {
        if self.user_bytes == 0 {
            0.0
        } else {
            (self.flush_bytes + self.compaction_write_bytes) as f64 / self.user_bytes as f64
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub batches: AtomicU64,
    pub records: AtomicU64,
    pub user_bytes: AtomicU64,
    pub commit_groups: AtomicU64,
    pub wal_syncs: AtomicU64,
    pub rotations: AtomicU64,
    pub stalls: AtomicU64,
    pub stall_nanos: AtomicU64,
    pub flushes: AtomicU64,
    pub flush_bytes: AtomicU64,
    pub compactions: AtomicU64,
    pub compaction_read_bytes: AtomicU64,
    pub compaction_write_bytes: AtomicU64,
}

/// Background jobs waiting for disk space: each holds the path that could not be written.
/// While a flush waits, writes are refused with [`Error::NoSpace`] (memtables cannot drain,
/// and each write would eat into what little space is left); while only compaction waits,
/// writes go on until level 0 fills up. Reads are never affected.
#[derive(Debug, Default)]
pub(crate) struct NoSpacePause {
    pub flush: Option<String>,
    pub compaction: Option<String>,
}

/// Which background job a [`NoSpacePause`] entry belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BgJob {
    Flush,
    Compaction,
}

/// A write waiting in the group-commit queue.
#[derive(Debug)]
struct WriteRequest {
    rep: Vec<u8>,
    /// Records in `rep`; 0 marks a request to rotate the memtable (from `flush`), which the
    /// leader performs in order with the writes and logs nothing for.
    count: u32,
    sync: bool,
}

/// A write the leader accepted, expanded and is about to log.
#[derive(Debug)]
struct Prepared {
    id: u64,
    req: WriteRequest,
    /// The changes its streams record (empty without streams).
    changes: Vec<crate::streams::Change>,
    /// Bytes of change records it makes, per stream keyspace.
    stream_bytes: HashMap<u32, usize>,
    /// The sequence number of its first record (set once its frame is being logged).
    first: u64,
}

/// What a writer waits behind: at most a frame's worth of batches per group.
const GROUP_BUDGET: usize = sealdb_wal::MAX_FRAME_LEN - sealdb_wal::FRAME_HEADER_LEN;

/// A request's weight against [`GROUP_BUDGET`]: what it adds to a frame.
fn frame_weight(req: &WriteRequest) -> usize {
    sealdb_wal::BATCH_HEADER_LEN.saturating_add(req.rep.len())
}

/// The refusal of `check_writable` again, for another writer of the same group.
fn copy_refusal(e: &Error) -> Error {
    match e {
        Error::KeyUnavailable {
            provider,
            key_id,
            state,
            since,
        } => Error::KeyUnavailable {
            provider: provider.clone(),
            key_id: key_id.clone(),
            state: state.clone(),
            since: *since,
        },
        // The cause went with the first refusal; the others repeat what and where.
        Error::Poisoned { what, file, at, .. } => Error::Poisoned {
            what: what.clone(),
            file: file.clone(),
            at: *at,
            source: None,
        },
        Error::ReadOnly => Error::ReadOnly,
        Error::NoSpace { path } => Error::NoSpace { path: path.clone() },
        other => Error::poisoned(other.to_string()),
    }
}

/// The error for a batch that index maintenance grew past what one WAL frame holds.
pub(crate) fn grown_batch_error(e: sealdb_wal::Error) -> Error {
    match e {
        sealdb_wal::Error::BatchTooLarge { size, limit } => Error::BatchTooLarge {
            what: "write batch with its index entries".into(),
            size,
            limit,
        },
        other => other.into(),
    }
}

/// A writer whose commit group's leader panicked outside the application's closures: what
/// reached the log is unknown, so the database is poisoned.
fn leader_failed(inner: &DbInner, e: sealdb_wal::LeaderFailed) -> Error {
    inner.poison(Error::poisoned(e.to_string()))
}

pub(crate) struct DbInner {
    pub(crate) path: PathBuf,
    pub(crate) fs: SharedFs,
    pub(crate) opts: Options,
    pub(crate) keys: Mutex<KeysFile>,
    pub(crate) provider: RwLock<SharedProvider>,
    pub(crate) keyring: RwLock<Keyring>,
    pub(crate) cipher: CipherId,
    pub(crate) wal: Wal,
    group: GroupCommit<WriteRequest, Result<u64>>,
    pub(crate) version: RwLock<Arc<SuperVersion>>,
    pub(crate) manifest: Mutex<Manifest>,
    pub(crate) keyspaces: RwLock<BTreeMap<String, u32>>,
    /// Highest sequence number assigned (written only by the group-commit leader).
    last_seq: AtomicU64,
    /// Highest sequence number readers may see: every batch up to it is in the memtable.
    pub(crate) visible_seq: AtomicU64,
    pub(crate) snapshots: Mutex<BTreeMap<u64, usize>>,
    stall_lock: Mutex<()>,
    stall_cv: Condvar,
    pub(crate) counters: Counters,
    /// The counters of earlier sessions, from `STATS` (see `lifestats`).
    pub(crate) lifetime_base: crate::lifestats::Lifetime,
    pub(crate) poisoned: Mutex<Option<String>>,
    /// Background work paused because the disk is full (retried with backoff).
    pub(crate) no_space: Mutex<NoSpacePause>,
    open_stats: OpenStats,
    next_memtable_id: AtomicU64,
    pub(crate) cache: Arc<BlockCache>,
    /// Serializes flushes (one memtable at a time, oldest first).
    pub(crate) flush_lock: Mutex<()>,
    /// Serializes compactions.
    pub(crate) compaction_lock: Mutex<()>,
    /// Wakes the background threads.
    pub(crate) flush_signal: Mutex<Option<Sender<()>>>,
    pub(crate) compact_signal: Mutex<Option<Sender<()>>>,
    /// Where the last compaction of each (keyspace, level) ended: the next starts after it.
    pub(crate) compact_pointers: Mutex<BTreeMap<(u32, usize), Vec<u8>>>,
    /// The next table number to hand out.
    pub(crate) next_file: AtomicU64,
    /// Set while the master key is unusable: reads and writes fail with its error.
    pub(crate) key_block: Mutex<Option<crate::keylife::KeyBlock>>,
    /// When the master key was last checked with its provider.
    pub(crate) last_key_check: Mutex<u64>,
    /// Stops the key-check thread when dropped.
    pub(crate) key_stop: Mutex<Option<Sender<()>>>,
    /// Held by the group-commit leader for a whole group, and by operations that must not
    /// interleave with commits (index definition, backfill chunks, stream enabling).
    pub(crate) commit_lock: Mutex<()>,
    /// Secondary indexes the write path maintains.
    pub(crate) indexes: RwLock<Arc<crate::index::IndexSet>>,
    /// Change streams by keyspace.
    pub(crate) streams: RwLock<Arc<crate::streams::StreamSet>>,
    /// The record naming every chain's end, outside the data directory (`None` when
    /// rollback protection is off, or the database was opened read-only).
    pub(crate) head: Option<Arc<crate::head::Head>>,
    /// Held by writers; a read-only open takes none.
    _lock: Option<Box<dyn FileLock>>,
}

impl std::fmt::Debug for DbInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("path", &self.path).finish()
    }
}

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

/// The background threads; stopped and joined when the last `Db` handle goes, so that a
/// dropped database has released its files and lock when `drop` returns.
#[derive(Debug)]
struct Background {
    inner: Arc<DbInner>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl Drop for Background {
    fn drop(&mut self) {
        self.inner.flush_signal.lock().take();
        self.inner.compact_signal.lock().take();
        self.inner.key_stop.lock().take();
        for t in self.threads.lock().drain(..) {
            let _ = t.join();
        }
        self.inner.close_clean();
    }
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

pub(crate) fn keyspace_key(id: u32, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(KEYSPACE_PREFIX_LEN + key.len());
    k.extend_from_slice(&id.to_be_bytes());
    k.extend_from_slice(key);
    k
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
        if !opts.read_only {
            return Self::open_once(path.as_ref(), opts);
        }
        // A read-only opener races a live writer, which may switch manifests, delete a
        // compacted table or retire a WAL segment between two of our reads: try again a few
        // times before reporting what failed.
        let mut attempt = 0;
        loop {
            match Self::open_once(path.as_ref(), opts.clone()) {
                Err(e) if attempt < READ_ONLY_OPEN_ATTEMPTS && retry_read_only(&e) => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(10 * attempt));
                }
                other => return other,
            }
        }
    }

    fn open_once(path: &Path, opts: Options) -> Result<Self> {
        let started = Instant::now();
        let path = std::path::absolute(path).map_err(|e| Error::io(path, e))?;
        let fs = opts.fs.clone();
        let read_only = opts.read_only;
        let exists = fs.exists(&path.join(sealdb_crypto::keysfile::KEYS_FILE_NAME));
        if !exists && read_only {
            return Err(Error::invalid_argument(format!(
                "no database at {} (a read-only open creates nothing)",
                path.display()
            )));
        }
        if !exists && !opts.create_if_missing {
            return Err(Error::invalid_argument(format!(
                "no database at {} (create_if_missing is off)",
                path.display()
            )));
        }
        if exists && opts.error_if_exists {
            return Err(Error::invalid_argument(format!(
                "a database already exists at {}",
                path.display()
            )));
        }
        if !exists && fs.exists(&path) {
            let entries = fs.list_dir(&path).map_err(|e| Error::io(&path, e))?;
            if entries.iter().any(|n| n != LOCK_FILE) {
                return Err(Error::invalid_argument(format!(
                    "{} is not empty and holds no sealdb database",
                    path.display()
                )));
            }
        }
        if !exists {
            // Before anything is created: a version that cannot hold the cipher is refused.
            crate::manifest::check_cipher(opts.new_format_version(), opts.cipher)?;
            sealdb_vfs::create_dir_all_durable(fs.as_ref(), &path)
                .map_err(|e| Error::io(&path, e))?;
        }
        // Writers hold the lock; a read-only opener takes none (it changes nothing, and may
        // run beside the writer).
        let lock = if read_only {
            None
        } else {
            Some(fs.lock(&path.join(LOCK_FILE)).map_err(|e| {
                if e.kind() == std::io::ErrorKind::WouldBlock {
                    if crate::inuse::held_here(&path) {
                        Error::InUseHere(path.display().to_string())
                    } else {
                        Error::Locked(path.display().to_string())
                    }
                } else {
                    Error::io(&path, e)
                }
            })?)
            .map(|l| crate::inuse::HeldHere::wrap(l, &path))
        };

        // ---- Read and verify: nothing below changes the disk until "Decided". ----
        let (keys, provider, created) = open_or_create_keys(&fs, &path, &opts, exists)?;
        let keyring = keys.keyring().clone();
        let cipher = keys.data_cipher();
        let head = if opts.rollback_protection {
            let (h, origin) =
                crate::head::Head::load(&opts.resolved_keystore_dir(), &keyring, &path)?;
            Some((Arc::new(h), origin))
        } else {
            None
        };
        let anchor = head
            .as_ref()
            .filter(|_| !opts.allow_rollback)
            .map(|(h, _)| h.state());
        if let Some(a) = &anchor
            && keys.generation() < a.keys_generation
        {
            return Err(Error::ChainEnd {
                artifact: "KEYS",
                file: path
                    .join(sealdb_crypto::keysfile::KEYS_FILE_NAME)
                    .display()
                    .to_string(),
                detail: format!(
                    "generation {} is older than generation {} named by the head (a stale KEYS \
                     file was put back)",
                    keys.generation(),
                    a.keys_generation
                ),
            });
        }
        let current = path.join(crate::manifest::CURRENT_FILE);
        let read_manifest = if fs.exists(&current) {
            Some(Manifest::read(fs.as_ref(), &path, &keyring, cipher)?)
        } else {
            // A crash between writing KEYS and the first manifest leaves an empty database.
            let wal_dir = path.join(WAL_DIR);
            if fs.exists(&wal_dir)
                && !fs
                    .list_dir(&wal_dir)
                    .map_err(|e| Error::io(&wal_dir, e))?
                    .is_empty()
            {
                return Err(Error::corruption(format!(
                    "{} is missing but the WAL holds segments",
                    current.display()
                )));
            }
            None
        };
        let found_position = read_manifest
            .as_ref()
            .map_or((0, 0), |m| (m.number, m.groups));
        if let Some(a) = &anchor
            && found_position < a.manifest
        {
            return Err(Error::RolledBack {
                found: found_position,
                expected: a.manifest,
            });
        }
        let state = read_manifest
            .as_ref()
            .map(|m| m.state.clone())
            .unwrap_or_default();

        let cache = BlockCache::new(opts.block_cache_bytes);
        let (version, orphan_tables) =
            crate::bg::load_version(&fs, &path, &state, &keyring, cipher, &cache)?;
        let indexes = crate::index::IndexSet::from_manifest(&state, &opts.custom_extractors)?;

        // Recovery: replay the WAL into memtables, rotating as they fill. Records of streamed
        // keyspaces are kept as change records: a stream that lags the WAL (a crash between
        // the two) gets its missing records from them once the streams are open.
        let mut memtables: Vec<Arc<Memtable>> = vec![Arc::new(Memtable::new(1))];
        let mut next_id = 2u64;
        let mut replay_err: Option<Error> = None;
        let wal_opts = WalOptions {
            segment_size: opts.wal_segment_size,
            cipher,
        };
        let memtable_size = opts.memtable_size;
        let flushed_seq = state.flushed_seq;
        let mut regenerated: Vec<(Vec<crate::streams::Change>, u64)> = Vec::new();
        let wal_dir = path.join(WAL_DIR);
        let recovery = Wal::recover(
            &fs,
            &wal_dir,
            &keyring,
            wal_opts,
            state.wal_min_segment,
            &mut |batch: FrameBatch<'_>| {
                if batch.first_seq + u64::from(batch.count) - 1 <= flushed_seq {
                    return Ok(()); // already in tables
                }
                let Some(mem) = memtables.last().cloned() else {
                    return Ok(());
                };
                let mut changes = Vec::new();
                for (pos, (seq, rec)) in (batch.first_seq..)
                    .zip(RecordIter::new(batch.rep))
                    .enumerate()
                {
                    let rec = rec?;
                    if let Some(s) = state.streams.get(&rec.keyspace)
                        && seq > s.start_seq
                    {
                        let ikey = keyspace_key(rec.keyspace, rec.key);
                        let mut old = None;
                        let mut found = false;
                        for m in memtables.iter().rev() {
                            if let Some((_, v)) = m.get(&ikey, u64::MAX) {
                                old = v;
                                found = true;
                                break;
                            }
                        }
                        if !found {
                            old = version
                                .get(rec.keyspace, rec.key, u64::MAX)
                                .ok()
                                .flatten()
                                .and_then(|(_, v)| v);
                        }
                        changes.push(crate::streams::Change {
                            keyspace: rec.keyspace,
                            key: rec.key.to_vec(),
                            old,
                            new: matches!(rec.op, Op::Put).then(|| rec.value.to_vec()),
                            position: pos as u32,
                            first_seq: batch.first_seq,
                        });
                    }
                    // Records of a keyspace dropped since go in too, as they would have stayed
                    // had the database not been reopened: nothing can read them (keyspace ids
                    // are never reused) and flushes skip them, but they carry the memtable's
                    // sequence range. Left out, the memtable ended below the WAL, its flush
                    // never covered the segment holding them, and that segment (with its old
                    // data-key version, which `reencrypt` then could not drop) stayed, and a
                    // backup's sequence number stayed below the database's. (Found by the
                    // metamorphic model check.)
                    let kind = match rec.op {
                        Op::Put => ValueKind::Put,
                        Op::Delete => ValueKind::Delete,
                    };
                    if mem
                        .insert_prefixed(&rec.keyspace.to_be_bytes(), rec.key, seq, kind, rec.value)
                        .is_err()
                        && replay_err.is_none()
                    {
                        replay_err =
                            Some(Error::corruption("replay into a frozen memtable".into()));
                    }
                }
                if !changes.is_empty() {
                    regenerated.push((changes, batch.commit_time_ms));
                }
                if mem.approximate_bytes() >= memtable_size {
                    mem.freeze();
                    memtables.push(Arc::new(Memtable::new(next_id)));
                    next_id += 1;
                }
                Ok(())
            },
        )?;
        if let Some(e) = replay_err {
            return Err(e);
        }
        let wal_stats = recovery.stats().clone();
        let last_seq = wal_stats.last_seq.max(state.flushed_seq);
        if let Some(a) = &anchor {
            check_wal_end(a, &recovery, &wal_dir, last_seq)?;
        }
        if !read_only && !state.streams.is_empty() {
            // Streams are verified (against the head too) before anything changes: a writable
            // stream open starts a new segment, so it comes after the decision below. This
            // reads each retained stream segment twice at open.
            crate::streams::open_streams(
                &fs,
                &path,
                &state,
                &keyring,
                cipher,
                last_seq,
                anchor.as_ref().map(|a| &a.streams),
                true,
            )?;
        }

        // ---- Decided: everything verified. From here on, a writable open changes the disk:
        // deletions first (on a full disk they make the room the writes need). ----
        let mut manifest = match (read_only, read_manifest) {
            (true, Some(m)) => Manifest::read_only(fs.clone(), &path, cipher, m),
            (true, None) => {
                return Err(Error::corruption(format!(
                    "{} is missing (a database whose creation never finished cannot be opened \
                     read-only)",
                    current.display()
                )));
            }
            (false, m) => {
                // Temporary files of an atomic replace (CURRENT, KEYS) a crashed process left.
                sealdb_vfs::remove_stale_temp_files(fs.as_ref(), &path)
                    .map_err(|e| Error::io(&path, e))?;
                crate::bg::prepare_tables_dir(&fs, &path, &orphan_tables)?;
                match m {
                    Some(m) => Manifest::start_after(fs.clone(), &path, &keyring, cipher, m)?,
                    None => Manifest::create(
                        fs.clone(),
                        &path,
                        &keyring,
                        cipher,
                        opts.new_format_version(),
                    )?,
                }
            }
        };
        let wal = if read_only {
            Wal::read_only(fs.clone(), keyring.clone(), wal_opts, recovery)
        } else {
            Wal::start(fs.clone(), keyring.clone(), wal_opts, recovery)?
        };
        let streams = crate::streams::open_streams(
            &fs,
            &path,
            &state,
            &keyring,
            cipher,
            last_seq,
            anchor.as_ref().map(|a| &a.streams),
            read_only,
        )?;
        let streams = if read_only {
            streams
        } else {
            let mut lagging = false;
            for (changes, time) in &mut regenerated {
                changes.retain(|c| {
                    streams.get(&c.keyspace).is_some_and(|s| {
                        c.first_seq + u64::from(c.position) > s.log.last_seq().max(s.start_seq)
                    })
                });
                if !changes.is_empty() {
                    lagging = true;
                    crate::streams::append_to(
                        &streams,
                        std::slice::from_ref(changes),
                        *time,
                        false,
                    )?;
                }
            }
            if lagging {
                for s in streams.values() {
                    s.log.sync().map_err(|e| Error::corruption(e.to_string()))?;
                }
            }
            streams
        };
        let streams = Arc::new(streams);
        let head_origin = head.as_ref().map_or_else(Default::default, |(_, o)| *o);
        let head = head.map(|(h, _)| h);
        if let (Some(h), false) = (&head, read_only) {
            // The new chain ends, now durable: the manifest just written, the new WAL
            // segment, and not clean until a clean close says so.
            h.reset(crate::head::HeadState {
                manifest: manifest.position(),
                keys_generation: keys.generation(),
                wal_segment: wal.active_segment(),
                wal_durable_seq: last_seq,
                clean_end: None,
                streams: streams
                    .iter()
                    .map(|(ks, s)| (*ks, crate::streams::stream_head(s)))
                    .collect(),
            })?;
            for (ks, s) in streams.iter() {
                crate::streams::observe_stream_head(h, *ks, s);
            }
            manifest.set_head(h.clone());
            let observer = h.clone();
            wal.set_roll_observer(Box::new(move |segment, durable| {
                // A head that cannot be written lags: it then names older ends, which weakens
                // detection but never refuses a healthy database.
                let _ = observer.update(|s| {
                    s.wal_segment = s.wal_segment.max(segment);
                    s.wal_durable_seq = s.wal_durable_seq.max(durable);
                });
            }));
        }
        let active = memtables
            .pop()
            .unwrap_or_else(|| Arc::new(Memtable::new(next_id)));
        memtables.reverse();
        let keyspaces = state
            .keyspaces
            .iter()
            .map(|(id, name)| (name.clone(), *id))
            .collect();
        let recovered_segments = wal_stats.segments;

        let lifetime_base = crate::lifestats::load(fs.as_ref(), &path, &keyring);
        let inner = DbInner {
            lifetime_base,
            path,
            fs,
            opts,
            keys: Mutex::new(keys),
            provider: RwLock::new(provider),
            keyring: RwLock::new(keyring),
            cipher,
            wal,
            group: GroupCommit::with_budget(GROUP_BUDGET),
            version: RwLock::new(Arc::new(SuperVersion {
                active,
                immutables: memtables,
                version: Arc::new(version),
            })),
            manifest: Mutex::new(manifest),
            keyspaces: RwLock::new(keyspaces),
            last_seq: AtomicU64::new(last_seq),
            visible_seq: AtomicU64::new(last_seq),
            snapshots: Mutex::new(BTreeMap::new()),
            stall_lock: Mutex::new(()),
            stall_cv: Condvar::new(),
            counters: Counters::default(),
            poisoned: Mutex::new(None),
            no_space: Mutex::new(NoSpacePause::default()),
            open_stats: OpenStats {
                created,
                wal: wal_stats,
                head: head_origin,
            },
            next_memtable_id: AtomicU64::new(next_id + 1),
            cache,
            flush_lock: Mutex::new(()),
            compaction_lock: Mutex::new(()),
            flush_signal: Mutex::new(None),
            compact_signal: Mutex::new(None),
            compact_pointers: Mutex::new(BTreeMap::new()),
            next_file: AtomicU64::new(state.next_file_number),
            key_block: Mutex::new(None),
            last_key_check: Mutex::new(sealdb_crypto::unix_now()),
            key_stop: Mutex::new(None),
            commit_lock: Mutex::new(()),
            indexes: RwLock::new(Arc::new(indexes)),
            streams: RwLock::new(streams),
            head,
            _lock: lock,
        };
        let inner = Arc::new(inner);
        let mut threads = if inner.opts.background_work && !read_only {
            crate::bg::start(&inner)
        } else {
            Vec::new()
        };
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        *inner.key_stop.lock() = Some(stop_tx);
        threads.extend(crate::keylife::start_key_thread(&inner, stop_rx));
        if !read_only {
            crate::keylife::maybe_rotate_by_age(&inner);
        }
        let bg = Arc::new(Background {
            inner: inner.clone(),
            threads: Mutex::new(threads),
        });
        let db = Self { inner, _bg: bg };
        if !read_only {
            if recovered_segments > MAX_RECOVERED_WAL_SEGMENTS {
                // Every session leaves a segment behind; past a few, move what they hold to
                // tables so the WAL (and the next open's work) stays bounded.
                db.flush()?;
                crate::bg::retire_wal(&db.inner)?;
            }
            // Memtables recovered beyond the budget go to tables now.
            db.inner.signal_flush();
            db.inner.signal_compaction();
        }
        let wal = &db.inner.open_stats.wal;
        tracing::info!(
            path = %db.inner.path.display(),
            created = db.inner.open_stats.created,
            read_only,
            wal_segments = wal.segments,
            wal_batches = wal.batches,
            wal_records = wal.records,
            last_seq = wal.last_seq,
            torn_tail = wal.torn_tail.is_some(),
            duration_ms = started.elapsed().as_secs_f64() * 1e3,
            "database opened and recovered"
        );
        Ok(db)
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
        let id = self
            .inner
            .keyspaces
            .read()
            .get(name)
            .copied()
            .ok_or_else(|| Error::KeyspaceNotFound(name.to_string()))?;
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
        if name.is_empty() || name.len() > MAX_KEYSPACE_NAME {
            return Err(Error::invalid_argument(format!(
                "keyspace names are 1 to {MAX_KEYSPACE_NAME} bytes"
            )));
        }
        self.check_writable()?;
        let mut manifest = self.inner.manifest.lock();
        if let Ok(ks) = self.keyspace_any(name) {
            return Ok(ks);
        }
        let id = manifest.state().next_keyspace_id;
        let keyring = self.inner.keyring.read().clone();
        manifest
            .apply(
                vec![Edit::CreateKeyspace {
                    id,
                    name: name.to_string(),
                }],
                &keyring,
            )
            .map_err(|e| self.inner.fail(e))?;
        self.inner.keyspaces.write().insert(name.to_string(), id);
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
        let ks = self.keyspace_any(name)?;
        if ks.id == DEFAULT_KEYSPACE {
            return Err(Error::invalid_argument(
                "the default keyspace cannot be dropped".into(),
            ));
        }
        self.check_writable()?;
        let mut manifest = self.inner.manifest.lock();
        let keyring = self.inner.keyring.read().clone();
        manifest
            .apply(vec![Edit::DropKeyspace { id: ks.id }], &keyring)
            .map_err(|e| self.inner.fail(e))?;
        self.inner.keyspaces.write().remove(name);
        // Its tables leave the live version now; each file is deleted once the last reader
        // holding it (an iterator, an older version) is gone.
        let mut v = self.inner.version.write();
        let mut next = (*v.version).clone();
        if let Some(levels) = next.keyspaces.remove(&ks.id) {
            for t in levels.iter().flatten() {
                t.mark_obsolete();
            }
        }
        *v = Arc::new(SuperVersion {
            active: v.active.clone(),
            immutables: v.immutables.clone(),
            version: Arc::new(next),
        });
        Ok(())
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
        self.check_writable()
    }

    /// A point read by keyspace id at a snapshot (for sibling modules).
    pub(crate) fn get_internal(
        &self,
        keyspace: u32,
        key: &[u8],
        snapshot: u64,
    ) -> Result<Option<Vec<u8>>> {
        self.get_at(keyspace, key, snapshot)
    }

    /// A scan by keyspace id at a snapshot (for sibling modules).
    pub(crate) fn iter_internal(
        &self,
        keyspace: u32,
        lower: Bound<Vec<u8>>,
        upper: Bound<Vec<u8>>,
        snapshot: u64,
    ) -> Result<DbIter> {
        self.iter_at(keyspace, lower, upper, snapshot)
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
        self.check_writable()?;
        self.wait_for_room()?;
        let req = WriteRequest {
            count: batch.builder.count(),
            rep: batch.builder.into_rep(),
            sync: opts.sync,
        };
        let inner = &self.inner;
        let weight = frame_weight(&req);
        // A synced write's leader waits briefly for the other writers to join its group: the
        // `fdatasync` they share costs far more than the wait.
        let gather = req.sync;
        inner
            .group
            .submit_gathering(req, weight, gather, |group| self.commit_group(group))
            .unwrap_or_else(|e| Err(leader_failed(inner, e)))
    }

    /// Runs on the group-commit leader: assigns sequence numbers, writes one WAL frame (more
    /// only if the group outgrew one sealed block; a sync per frame if any of its writers
    /// asked for it), applies the batches to the memtable, then publishes.
    fn commit_group(&self, group: Vec<(u64, WriteRequest)>) -> Vec<(u64, Result<u64>)> {
        let _exclusive = self.inner.commit_lock.lock();
        self.commit_locked(group)
    }

    /// Runs `f` with the commit path held: no write commits meanwhile, and `f` may commit
    /// through [`commit_internal`](Self::commit_internal).
    pub(crate) fn run_exclusive<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let _exclusive = self.inner.commit_lock.lock();
        f()
    }

    /// Commits a batch from inside [`run_exclusive`](Self::run_exclusive).
    pub(crate) fn commit_internal(&self, batch: BatchBuilder) -> Result<u64> {
        let req = WriteRequest {
            count: batch.count(),
            rep: batch.into_rep(),
            sync: false,
        };
        self.commit_locked(vec![(0, req)])
            .into_iter()
            .next()
            .map_or_else(|| Err(Error::corruption("empty commit".into())), |(_, r)| r)
    }

    /// Adds the records that keep secondary indexes in step (same batch, so atomic) and
    /// collects the changes streams record. Reads each touched item's current value: only for
    /// keyspaces that have an index or a stream. Returns the bytes of change records the batch
    /// makes per stream keyspace.
    ///
    /// Fails with `BatchTooLarge` when the batch with its index entries, or its change
    /// records for one stream, would not fit in one sealed block; the group's `overlay` then
    /// holds nothing of this batch, so the batches after it are maintained as if it had never
    /// been submitted.
    fn expand(
        &self,
        req: &mut WriteRequest,
        overlay: &mut HashMap<Vec<u8>, Option<Vec<u8>>>,
        snapshot: u64,
        indexes: &crate::index::IndexSet,
        streams: &crate::streams::StreamSet,
        changes: &mut Vec<crate::streams::Change>,
    ) -> Result<HashMap<u32, usize>> {
        let touched = RecordIter::new(&req.rep).any(|r| {
            r.is_ok_and(|r| {
                indexes.by_base.contains_key(&r.keyspace) || streams.contains_key(&r.keyspace)
            })
        });
        if !touched {
            return Ok(HashMap::new());
        }
        // This batch's own writes, merged into the group's overlay only once it is accepted.
        let mut mine: HashMap<Vec<u8>, Option<Vec<u8>>> = HashMap::new();
        let mut extra = BatchBuilder::new();
        for (pos, rec) in RecordIter::new(&req.rep).enumerate() {
            let rec = rec.map_err(|e| Error::invalid_argument(e.to_string()))?;
            let idx = indexes.by_base.get(&rec.keyspace);
            let stream = streams.get(&rec.keyspace);
            if idx.is_none() && stream.is_none() {
                continue;
            }
            let ikey = keyspace_key(rec.keyspace, rec.key);
            let old = match mine.get(&ikey) {
                Some(v) => v.clone(),
                None => crate::index::leader_read(
                    &self.inner,
                    self,
                    overlay,
                    rec.keyspace,
                    rec.key,
                    snapshot,
                )?,
            };
            let new = match rec.op {
                Op::Put => Some(rec.value.to_vec()),
                Op::Delete => None,
            };
            if let Some(idx) = idx {
                crate::index::maintain(idx, rec.key, old.as_deref(), new.as_deref(), &mut extra)?;
            }
            if stream.is_some() {
                changes.push(crate::streams::Change {
                    keyspace: rec.keyspace,
                    key: rec.key.to_vec(),
                    old: old.clone(),
                    new: new.clone(),
                    position: pos as u32,
                    first_seq: 0,
                });
            }
            mine.insert(ikey, new);
        }
        // The batch is rebuilt only when index maintenance added records to it (a stream
        // alone leaves it as submitted).
        let grown = if extra.count() > 0 {
            let mut all = BatchBuilder::new();
            for rec in RecordIter::new(&req.rep).chain(RecordIter::new(extra.rep())) {
                let rec = rec.map_err(|e| Error::invalid_argument(e.to_string()))?;
                match rec.op {
                    Op::Put => all.put(rec.keyspace, rec.key, rec.value),
                    Op::Delete => all.delete(rec.keyspace, rec.key),
                }
                .map_err(grown_batch_error)?;
            }
            Some(all)
        } else {
            None
        };
        let stream_bytes = crate::streams::record_bytes(streams, changes);
        for (ks, bytes) in &stream_bytes {
            let size = sealdb_stream::RECORDS_FRAME_HEADER_LEN.saturating_add(*bytes);
            if size > sealdb_stream::MAX_FRAME_LEN {
                let name = streams
                    .get(ks)
                    .map_or_else(String::new, |s| s.keyspace_name.clone());
                return Err(Error::BatchTooLarge {
                    what: format!(
                        "the change records of a write batch for the stream of keyspace {name:?}"
                    ),
                    size: size as u64,
                    limit: sealdb_stream::MAX_FRAME_LEN as u64,
                });
            }
        }
        overlay.extend(mine);
        if let Some(all) = grown {
            req.count = all.count();
            req.rep = all.rep().to_vec();
        }
        Ok(stream_bytes)
    }

    fn commit_locked(&self, group: Vec<(u64, WriteRequest)>) -> Vec<(u64, Result<u64>)> {
        let inner = &self.inner;
        if let Err(e) = self.check_writable() {
            // Each writer gets the refusal itself, in its own class: a master key that became
            // unusable while the writer waited is `KeyUnavailable`, not a poisoned database.
            return group
                .into_iter()
                .map(|(id, _)| (id, Err(copy_refusal(&e))))
                .collect();
        }
        let force_rotate = group.iter().any(|(_, r)| r.count == 0);
        // Rotation requests are rare: a group without one is used as it is, not re-collected.
        let (rotations, group): (Vec<_>, Vec<_>) = if force_rotate {
            group.into_iter().partition(|(_, r)| r.count == 0)
        } else {
            (Vec::new(), group)
        };
        if let Err(e) = self.maybe_rotate(force_rotate) {
            self.poison(e);
            return group
                .into_iter()
                .chain(rotations)
                .map(|(id, _)| (id, Err(self.poisoned_error())))
                .collect();
        }
        let snapshot = inner.last_seq.load(Ordering::Acquire);
        let mut results: Vec<(u64, Result<u64>)> =
            Vec::with_capacity(rotations.len() + group.len());
        results.extend(rotations.into_iter().map(|(id, _)| (id, Ok(snapshot))));
        // Index maintenance and stream capture, when any keyspace has them.
        let indexes = inner.indexes.read().clone();
        let streams = inner.streams.read().clone();
        let mut prepared = Vec::with_capacity(group.len());
        let mut overlay = HashMap::new();
        for (id, mut req) in group {
            let mut changes = Vec::new();
            if indexes.is_empty() && streams.is_empty() {
                prepared.push(Prepared {
                    id,
                    req,
                    changes,
                    stream_bytes: HashMap::new(),
                    first: 0,
                });
                continue;
            }
            match self.expand(
                &mut req,
                &mut overlay,
                snapshot,
                &indexes,
                &streams,
                &mut changes,
            ) {
                Ok(stream_bytes) => prepared.push(Prepared {
                    id,
                    req,
                    changes,
                    stream_bytes,
                    first: 0,
                }),
                Err(e) => results.push((id, Err(e))),
            }
        }
        // Pack the batches, in order, into frames that each fit one sealed block (and whose
        // change records fit one stream block per stream): a group merged from many writers,
        // or grown by index entries, becomes several frames rather than an oversized one.
        let mut seq = snapshot;
        // The usual group (no streams, within one block) is one frame as it stands.
        if prepared.iter().all(|p| p.stream_bytes.is_empty())
            && sealdb_wal::frame_len(prepared.iter().map(|p| p.req.rep.len()))
                <= sealdb_wal::MAX_FRAME_LEN
        {
            if !prepared.is_empty() {
                self.commit_frame(prepared, &mut seq, &mut results);
            }
            return results;
        }
        let mut frame: Vec<Prepared> = Vec::with_capacity(prepared.len());
        let mut wal_len = sealdb_wal::FRAME_HEADER_LEN;
        let mut stream_len: HashMap<u32, usize> = HashMap::new();
        for p in prepared {
            let batch_len = sealdb_wal::BATCH_HEADER_LEN.saturating_add(p.req.rep.len());
            let fits = wal_len.saturating_add(batch_len) <= sealdb_wal::MAX_FRAME_LEN
                && p.stream_bytes.iter().all(|(ks, bytes)| {
                    stream_len
                        .get(ks)
                        .copied()
                        .unwrap_or(sealdb_stream::RECORDS_FRAME_HEADER_LEN)
                        .saturating_add(*bytes)
                        <= sealdb_stream::MAX_FRAME_LEN
                });
            if !fits && !frame.is_empty() {
                self.commit_frame(std::mem::take(&mut frame), &mut seq, &mut results);
                wal_len = sealdb_wal::FRAME_HEADER_LEN;
                stream_len.clear();
            }
            wal_len = wal_len.saturating_add(batch_len);
            for (ks, bytes) in &p.stream_bytes {
                let l = stream_len
                    .entry(*ks)
                    .or_insert(sealdb_stream::RECORDS_FRAME_HEADER_LEN);
                *l = l.saturating_add(*bytes);
            }
            frame.push(p);
        }
        if !frame.is_empty() {
            self.commit_frame(frame, &mut seq, &mut results);
        }
        results
    }

    /// Logs `frame`'s batches as one WAL frame (and their change records as one block per
    /// stream), applies them to the memtable and publishes them; `seq` is the last sequence
    /// number assigned so far and advances past the frame once it is logged.
    fn commit_frame(
        &self,
        mut frame: Vec<Prepared>,
        seq: &mut u64,
        results: &mut Vec<(u64, Result<u64>)>,
    ) {
        let inner = &self.inner;
        // An earlier frame of this group failed: nothing more is logged.
        if inner.poisoned.lock().is_some() {
            results.extend(
                frame
                    .into_iter()
                    .map(|p| (p.id, Err(self.poisoned_error()))),
            );
            return;
        }
        let mut next = *seq;
        let mut sync = false;
        for p in &mut frame {
            p.first = next + 1;
            next += u64::from(p.req.count);
            sync |= p.req.sync;
        }
        let now_ms = crate::now_ms();
        fn frame_batch(p: &Prepared, commit_time_ms: u64) -> FrameBatch<'_> {
            FrameBatch {
                first_seq: p.first,
                count: p.req.count,
                rep: &p.req.rep,
                commit_time_ms,
            }
        }
        // A frame of one batch (a lone writer's every commit) needs no list on the heap.
        let one: [FrameBatch<'_>; 1];
        let many: Vec<FrameBatch<'_>>;
        let batches: &[FrameBatch<'_>] = if let [p] = frame.as_slice() {
            one = [frame_batch(p, now_ms)];
            &one
        } else {
            many = frame.iter().map(|p| frame_batch(p, now_ms)).collect();
            &many
        };
        match inner.wal.append(batches, sync) {
            Ok(()) => {}
            Err(sealdb_wal::Error::BatchTooLarge { size, limit }) => {
                // Refused before anything was written (packing makes this unreachable): the
                // database stays writable.
                results.extend(frame.into_iter().map(|p| {
                    let e = Error::BatchTooLarge {
                        what: "WAL frame".into(),
                        size,
                        limit,
                    };
                    (p.id, Err(e))
                }));
                return;
            }
            Err(e) if e.is_no_space() && !inner.wal.is_poisoned() => {
                // A full disk: nothing was acknowledged, and the WAL goes on in a new segment
                // at the next write; every writer of the frame gets the typed error.
                let e = Error::from(e);
                results.extend(frame.into_iter().map(|p| (p.id, Err(copy_refusal(&e)))));
                return;
            }
            Err(e) => {
                self.poison(e.into());
                results.extend(
                    frame
                        .into_iter()
                        .map(|p| (p.id, Err(self.poisoned_error()))),
                );
                return;
            }
        }
        *seq = next;
        // Change records go to the streams after the WAL and before the memtable: a flush
        // (which may delete WAL segments) never sees data whose records are not appended.
        if frame.iter().any(|p| !p.changes.is_empty()) {
            let mut changes: Vec<Vec<crate::streams::Change>> = Vec::with_capacity(frame.len());
            let mut rest = Vec::with_capacity(frame.len());
            for mut p in frame {
                let mut c = std::mem::take(&mut p.changes);
                for ch in &mut c {
                    ch.first_seq = p.first;
                }
                changes.push(c);
                rest.push(p);
            }
            if let Err(e) = crate::streams::append_changes(inner, changes, now_ms, sync) {
                self.poison(e);
                results.extend(rest.into_iter().map(|p| (p.id, Err(self.poisoned_error()))));
                return;
            }
            self.apply_frame(rest, sync, results);
        } else {
            self.apply_frame(frame, sync, results);
        }
        inner.last_seq.store(*seq, Ordering::Release);
        inner.visible_seq.store(*seq, Ordering::Release);
    }

    /// Inserts a logged frame's batches into the active memtable.
    fn apply_frame(&self, frame: Vec<Prepared>, sync: bool, results: &mut Vec<(u64, Result<u64>)>) {
        let inner = &self.inner;
        inner.counters.commit_groups.fetch_add(1, Ordering::Relaxed);
        if sync {
            inner.counters.wal_syncs.fetch_add(1, Ordering::Relaxed);
        }
        let active = inner.version.read().active.clone();
        for p in frame {
            let first = p.first;
            let req = p.req;
            let mut ok = true;
            for (s, rec) in (first..).zip(RecordIter::new(&req.rep)) {
                let Ok(rec) = rec else {
                    ok = false;
                    break;
                };
                let kind = match rec.op {
                    Op::Put => ValueKind::Put,
                    Op::Delete => ValueKind::Delete,
                };
                if active
                    .insert_prefixed(&rec.keyspace.to_be_bytes(), rec.key, s, kind, rec.value)
                    .is_err()
                {
                    ok = false;
                    break;
                }
            }
            inner.counters.batches.fetch_add(1, Ordering::Relaxed);
            inner
                .counters
                .records
                .fetch_add(u64::from(req.count), Ordering::Relaxed);
            inner
                .counters
                .user_bytes
                .fetch_add(req.rep.len() as u64, Ordering::Relaxed);
            if ok {
                results.push((p.id, Ok(first + u64::from(req.count) - 1)));
            } else {
                let e = self.poison(Error::corruption("memtable insert failed".into()));
                results.push((p.id, Err(e)));
            }
        }
    }

    /// The error a writer gets once the database is poisoned: the first failure, named once.
    fn poisoned_error(&self) -> Error {
        Error::poisoned(
            self.inner
                .poisoned
                .lock()
                .clone()
                .unwrap_or_else(|| "an earlier failure".into()),
        )
    }

    /// Freezes the active memtable once it is over budget (called by the commit leader, the
    /// only mutator of the memtable set).
    fn maybe_rotate(&self, force: bool) -> Result<()> {
        let inner = &self.inner;
        let current = inner.version.read().clone();
        if !force && current.active.approximate_bytes() < inner.opts.memtable_size {
            return Ok(());
        }
        self.rotate_memtable()
    }

    /// Freezes the active memtable and starts a new one (and a new WAL segment).
    pub(crate) fn rotate_memtable(&self) -> Result<()> {
        let inner = &self.inner;
        let mut version = inner.version.write();
        if version.active.is_empty() {
            return Ok(());
        }
        // The WAL is not rolled here: segments roll by size, and a flush deletes a segment
        // once every record in it is in tables (the memtable rotation stays cheap).
        version.active.freeze();
        let id = inner.next_memtable_id.fetch_add(1, Ordering::Relaxed);
        let mut immutables = vec![version.active.clone()];
        immutables.extend(version.immutables.iter().cloned());
        *version = Arc::new(SuperVersion {
            active: Arc::new(Memtable::new(id)),
            immutables,
            version: version.version.clone(),
        });
        inner.counters.rotations.fetch_add(1, Ordering::Relaxed);
        drop(version);
        inner.signal_flush();
        Ok(())
    }

    /// Back-pressure: while too many frozen memtables wait for flush, writers wait (counted in
    /// [`Stats::write_stalls`]).
    fn wait_for_room(&self) -> Result<()> {
        let inner = &self.inner;
        let limit = inner.opts.max_immutable_memtables.max(1);
        let l0_limit = inner.opts.l0_stop_writes.max(1);
        let over = || {
            let v = inner.version.read();
            v.immutables.len() >= limit
                || v.version
                    .keyspaces
                    .values()
                    .any(|l| l.first().is_some_and(|l0| l0.len() >= l0_limit))
        };
        if !over() {
            return Ok(());
        }
        let start = Instant::now();
        inner.counters.stalls.fetch_add(1, Ordering::Relaxed);
        inner.signal_flush();
        inner.signal_compaction();
        let mut guard = inner.stall_lock.lock();
        let mut result = Ok(());
        while over() {
            if let Err(e) = self.check_writable() {
                result = Err(e);
                break;
            }
            // Compaction cannot make room until space is freed: say so rather than hang.
            if let Some(path) = inner.no_space.lock().compaction.clone() {
                result = Err(Error::NoSpace { path });
                break;
            }
            inner
                .stall_cv
                .wait_for(&mut guard, Duration::from_millis(50));
        }
        let nanos = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        inner
            .counters
            .stall_nanos
            .fetch_add(nanos, Ordering::Relaxed);
        result
    }

    fn check_writable(&self) -> Result<()> {
        self.check_not_poisoned()?;
        if let Some(path) = self.inner.no_space.lock().flush.clone() {
            return Err(Error::NoSpace { path });
        }
        Ok(())
    }

    /// [`check_writable`](Self::check_writable) without the disk-full pause: for `flush`,
    /// which is how a caller without background threads retries.
    fn check_not_poisoned(&self) -> Result<()> {
        if self.inner.opts.read_only {
            return Err(Error::ReadOnly);
        }
        if let Some(why) = self.inner.poisoned.lock().as_ref() {
            return Err(Error::poisoned(why.clone()));
        }
        self.check_key()
    }

    /// Records a failure that leaves durable state unknown; returns the error for the caller.
    fn poison(&self, e: Error) -> Error {
        self.inner.poison(e)
    }

    /// Writes every memtable to level-0 tables now (and waits for it).
    pub fn flush(&self) -> Result<()> {
        self.check_not_poisoned()?;
        // Rotation is the commit leader's job: go through the queue with an empty request.
        let inner = &self.inner;
        let req = WriteRequest {
            rep: Vec::new(),
            count: 0,
            sync: false,
        };
        let weight = frame_weight(&req);
        inner
            .group
            .submit(req, weight, |group| self.commit_group(group))
            .unwrap_or_else(|e| Err(leader_failed(inner, e)))?;
        while crate::bg::flush_oldest(inner).map_err(|e| inner.fail(e))? {}
        Ok(())
    }

    /// Flushes, then compacts every keyspace fully into its last level (dropping deleted and
    /// overwritten data no snapshot needs).
    pub fn compact(&self) -> Result<()> {
        self.flush()?;
        crate::bg::compact_all(&self.inner).map_err(|e| self.inner.fail(e))
    }

    /// Authenticates every live artifact (tables, WAL and archived WAL, stream segments and
    /// `CONSUMERS`, manifest and `CURRENT`, `KEYS`, `STATS`); reports how many of each kind it
    /// checked and each failure (each names its file and block).
    pub fn verify(&self) -> crate::VerifyReport {
        crate::bg::verify(&self.inner, &mut |_, _| {})
    }

    /// [`Db::verify`], calling `progress(done, total)` as tables (the bulk of the work) are
    /// checked, and once more with `done == total` when everything is.
    pub fn verify_with_progress(&self, progress: &mut dyn FnMut(u64, u64)) -> crate::VerifyReport {
        crate::bg::verify(&self.inner, progress)
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
        let v = self.inner.version.read().clone();
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

    fn get_at(&self, keyspace: u32, key: &[u8], snapshot: u64) -> Result<Option<Vec<u8>>> {
        self.check_key()?;
        let version = self.inner.version.read().clone();
        let ikey = keyspace_key(keyspace, key);
        if let Some((_, v)) = version.active.get(&ikey, snapshot) {
            return Ok(v);
        }
        for m in &version.immutables {
            if let Some((_, v)) = m.get(&ikey, snapshot) {
                return Ok(v);
            }
        }
        Ok(version
            .version
            .get(keyspace, key, snapshot)?
            .and_then(|(_, v)| v))
    }

    fn iter_at(
        &self,
        keyspace: u32,
        lower: Bound<Vec<u8>>,
        upper: Bound<Vec<u8>>,
        snapshot: u64,
    ) -> Result<DbIter> {
        self.check_key()?;
        let version = self.inner.version.read().clone();
        let (user_lower, user_upper) = (lower.clone(), upper.clone());
        let map_bound = |b: Bound<Vec<u8>>| match b {
            Bound::Included(k) => Bound::Included(keyspace_key(keyspace, &k)),
            Bound::Excluded(k) => Bound::Excluded(keyspace_key(keyspace, &k)),
            Bound::Unbounded => Bound::Unbounded,
        };
        let lo = match lower {
            Bound::Unbounded => Bound::Included(keyspace_key(keyspace, b"")),
            b => map_bound(b),
        };
        let hi = match upper {
            Bound::Unbounded => match keyspace.checked_add(1) {
                Some(next) => Bound::Excluded(next.to_be_bytes().to_vec()),
                None => Bound::Unbounded,
            },
            b => map_bound(b),
        };
        let mut sources: Vec<Box<dyn Source>> = Vec::new();
        sources.push(Box::new(MemSource {
            iter: version.active.iter(lo.clone(), hi.clone()),
        }));
        for m in &version.immutables {
            sources.push(Box::new(MemSource {
                iter: m.iter(lo.clone(), hi.clone()),
            }));
        }
        sources.extend(version.version.sources(keyspace, &user_lower, &user_upper));
        let pin: Arc<dyn std::any::Any + Send + Sync> = version;
        Ok(DbIter::new(sources, snapshot, vec![pin]))
    }
}

impl DbInner {
    /// Every session's counters: `STATS`'s plus this process's.
    pub(crate) fn lifetime(&self) -> crate::lifestats::Lifetime {
        self.lifetime_base
            .plus(crate::lifestats::Lifetime::of(&self.counters))
    }

    /// Rewrites `STATS` with [`DbInner::lifetime`], under the current data key.
    pub(crate) fn store_lifetime(&self) -> Result<()> {
        let keyring = self.keyring.read().clone();
        crate::lifestats::store(self.fs.as_ref(), &self.path, &keyring, self.lifetime())
    }

    /// A clean close: makes the WAL durable and pins its exact end in the head, so that a
    /// newest segment cut short after a clean close is an error rather than a "torn tail".
    /// Skipped (the head then stays "not clean", which is always safe) when the database is
    /// poisoned or read-only, or anything fails.
    fn close_clean(&self) {
        let Some(head) = &self.head else { return };
        if self.poisoned.lock().is_some() {
            return;
        }
        let Ok((segment, end, durable)) = self.wal.sync_for_close() else {
            return;
        };
        // Best effort: counters are statistics, and a close must not fail over them.
        let _ = self.store_lifetime();
        let last_seq = self.last_seq.load(Ordering::Acquire);
        let mut stream_ends = Vec::new();
        for (ks, s) in self.streams.read().iter() {
            if s.log.sync().is_err() {
                return;
            }
            stream_ends.push((*ks, crate::streams::stream_head(s)));
        }
        let _ = head.update(|s| {
            s.wal_segment = s.wal_segment.max(segment);
            s.wal_durable_seq = s.wal_durable_seq.max(durable.max(last_seq));
            s.clean_end = (s.wal_segment == segment).then_some(end);
            for (ks, e) in stream_ends {
                s.streams.insert(ks, e);
            }
        });
    }

    /// Records a failure that leaves durable state unknown; returns the error for the caller.
    pub(crate) fn poison(&self, e: Error) -> Error {
        let mut p = self.poisoned.lock();
        if p.is_none() {
            // The reason alone: `Error::Poisoned` adds the "read-only" prefix when shown.
            *p = Some(match &e {
                Error::Poisoned { what: why, .. } => why.clone(),
                other => other.to_string(),
            });
        }
        drop(p);
        self.notify_room();
        e
    }

    /// Handles a failure of an operation that leaves nothing unknown behind when the cause is
    /// a full disk (the manifest rolls, the WAL starts a new segment, a flush or compaction
    /// deletes its outputs): [`Error::NoSpace`] is returned as is, anything else poisons.
    pub(crate) fn fail(&self, e: Error) -> Error {
        if e.is_no_space() { e } else { self.poison(e) }
    }

    /// Marks a background job as waiting for disk space (see [`NoSpacePause`]).
    pub(crate) fn pause_for_space(&self, job: BgJob, path: String) {
        let mut p = self.no_space.lock();
        match job {
            BgJob::Flush => p.flush = Some(path),
            BgJob::Compaction => p.compaction = Some(path),
        }
        drop(p);
        self.notify_room();
    }

    /// A background job succeeded: it no longer waits for space.
    pub(crate) fn resume_after_space(&self, job: BgJob) {
        let mut p = self.no_space.lock();
        let slot = match job {
            BgJob::Flush => &mut p.flush,
            BgJob::Compaction => &mut p.compaction,
        };
        if slot.take().is_some() {
            drop(p);
            self.notify_room();
        }
    }

    /// Wakes stalled writers (after a flush or compaction freed room, or on failure).
    pub(crate) fn notify_room(&self) {
        let _g = self.stall_lock.lock();
        self.stall_cv.notify_all();
    }

    pub(crate) fn signal_flush(&self) {
        if let Some(tx) = self.flush_signal.lock().as_ref() {
            let _ = tx.try_send(());
        }
    }

    pub(crate) fn signal_compaction(&self) {
        if let Some(tx) = self.compact_signal.lock().as_ref() {
            let _ = tx.try_send(());
        }
    }

    /// The oldest sequence number any reader may still need.
    pub(crate) fn smallest_snapshot(&self) -> u64 {
        let visible = self.visible_seq.load(Ordering::Acquire);
        self.snapshots
            .lock()
            .keys()
            .next()
            .copied()
            .map_or(visible, |s| s.min(visible))
    }
}

impl Keyspace {
    /// The keyspace's numeric id (stable for its life; never reused).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The keyspace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The database it belongs to.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Sets `key` to `value` (not synced).
    pub fn put(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<()> {
        self.put_opt(key, value, WriteOptions::default())
    }

    /// Sets `key` to `value` with the given durability.
    pub fn put_opt(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        opts: WriteOptions,
    ) -> Result<()> {
        let mut b = WriteBatch::new();
        b.put(self, key, value)?;
        self.db.write(b, opts).map(|_| ())
    }

    /// Deletes `key` (not synced).
    pub fn delete(&self, key: impl AsRef<[u8]>) -> Result<()> {
        self.delete_opt(key, WriteOptions::default())
    }

    /// Deletes `key` with the given durability.
    pub fn delete_opt(&self, key: impl AsRef<[u8]>, opts: WriteOptions) -> Result<()> {
        let mut b = WriteBatch::new();
        b.delete(self, key)?;
        self.db.write(b, opts).map(|_| ())
    }

    /// Reads the newest value of `key`.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>> {
        self.db
            .get_at(self.id, key.as_ref(), self.db.last_sequence())
    }

    /// Whether `key` has a value.
    pub fn contains_key(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        self.get(key).map(|v| v.is_some())
    }

    /// Iterates the keys in `range` at the latest snapshot, in key order (reverse it with
    /// `.rev()`). Any range of byte-like keys works: `b"a".as_slice()..b"m".as_slice()`,
    /// `"a".."m"`, `(Bound::Excluded(k), Bound::Unbounded)`; for every key use [`iter`](Self::iter).
    pub fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(&self, range: R) -> Result<DbIter> {
        let (lower, upper) = owned_bounds(&range);
        self.db
            .iter_at(self.id, lower, upper, self.db.last_sequence())
    }

    /// Iterates every key.
    pub fn iter(&self) -> Result<DbIter> {
        self.range::<&[u8], _>(..)
    }

    /// Iterates the keys starting with `prefix`.
    pub fn prefix(&self, prefix: impl AsRef<[u8]>) -> Result<DbIter> {
        self.range(prefix_bounds(prefix.as_ref()))
    }

    /// An estimate of how many keys the keyspace holds, without reading any table: the entry
    /// counts of its live tables (from the manifest) plus the entries of the memtables.
    ///
    /// Like RocksDB's `rocksdb.estimate-num-keys` it counts entries, not live keys: an
    /// overwritten key counts once per version not yet compacted away, and a delete counts as
    /// an entry too. So it is exact for a keyspace that was only ever inserted into with
    /// distinct keys, and an over-estimate otherwise (never below the true count once
    /// compaction has run). It costs a walk over the memtables' entries of this keyspace.
    pub fn approximate_len(&self) -> u64 {
        let sv = self.db.inner.version.read().clone();
        let (lo, hi) = keyspace_bounds(self.id);
        let memtables: u64 = std::iter::once(&sv.active)
            .chain(sv.immutables.iter())
            .map(|m| m.iter(lo.clone(), hi.clone()).count() as u64)
            .sum();
        let tables: u64 = sv
            .version
            .levels(self.id)
            .map(|levels| levels.iter().flatten().map(|t| t.meta.entries).sum())
            .unwrap_or(0);
        memtables + tables
    }

    /// The keyspace's live tables: how many, and their total size in bytes (the memtables
    /// are not counted; see [`Db::stats`]).
    pub fn table_stats(&self) -> LevelStats {
        let sv = self.db.inner.version.read().clone();
        let mut s = LevelStats::default();
        for t in sv.version.levels(self.id).into_iter().flatten().flatten() {
            s.files += 1;
            s.bytes += t.meta.size;
        }
        s
    }
    /// The smallest key and its value, if the keyspace holds any.
    pub fn first_key_value(&self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        self.iter()?.next().transpose()
    }

    /// The largest key and its value, if the keyspace holds any.
    pub fn last_key_value(&self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        self.iter()?.next_back().transpose()
    }
}

/// The internal-key range holding exactly the keyspace `id`'s keys.
fn keyspace_bounds(id: u32) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let lo = Bound::Included(keyspace_key(id, b""));
    let hi = match id.checked_add(1) {
        Some(next) => Bound::Excluded(next.to_be_bytes().to_vec()),
        None => Bound::Unbounded,
    };
    (lo, hi)
}

/// Owned copies of a range's bounds, the form the merging iterator takes.
fn owned_bounds<K: AsRef<[u8]>, R: RangeBounds<K>>(range: &R) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let own = |b: Bound<&K>| b.map(|k| k.as_ref().to_vec());
    (own(range.start_bound()), own(range.end_bound()))
}

/// The bounds covering exactly the keys that start with `prefix`.
pub(crate) fn prefix_bounds(prefix: &[u8]) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let lo = Bound::Included(prefix.to_vec());
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return (lo, Bound::Excluded(end));
        }
    }
    (lo, Bound::Unbounded)
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    fn bind(&mut self, ks: &Keyspace) -> Result<()> {
        let id = Arc::as_ptr(&ks.db.inner) as usize;
        match self.db {
            None => {
                self.db = Some(id);
                Ok(())
            }
            Some(d) if d == id => Ok(()),
            Some(_) => Err(Error::invalid_argument(
                "a write batch cannot span databases".into(),
            )),
        }
    }

    /// Adds a put to `keyspace`.
    pub fn put(
        &mut self,
        keyspace: &Keyspace,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<()> {
        self.bind(keyspace)?;
        Ok(self
            .builder
            .put(keyspace.id, key.as_ref(), value.as_ref())?)
    }

    /// Adds a delete to `keyspace`.
    pub fn delete(&mut self, keyspace: &Keyspace, key: impl AsRef<[u8]>) -> Result<()> {
        self.bind(keyspace)?;
        Ok(self.builder.delete(keyspace.id, key.as_ref())?)
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        self.builder.count() as usize
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.builder.is_empty()
    }
}

impl Snapshot {
    /// The sequence number this snapshot reads at.
    pub fn sequence(&self) -> u64 {
        self.seq
    }

    /// Reads `key` from `keyspace` as of the snapshot.
    pub fn get(&self, keyspace: &Keyspace, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>> {
        self.db.get_at(keyspace.id, key.as_ref(), self.seq)
    }

    /// Whether `key` had a value in `keyspace` as of the snapshot.
    pub fn contains_key(&self, keyspace: &Keyspace, key: impl AsRef<[u8]>) -> Result<bool> {
        self.get(keyspace, key).map(|v| v.is_some())
    }

    /// Iterates the keys of `keyspace` in `range` as of the snapshot (see
    /// [`Keyspace::range`]).
    pub fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(
        &self,
        keyspace: &Keyspace,
        range: R,
    ) -> Result<DbIter> {
        let (lower, upper) = owned_bounds(&range);
        self.db.iter_at(keyspace.id, lower, upper, self.seq)
    }

    /// Iterates every key of `keyspace` as of the snapshot.
    pub fn iter(&self, keyspace: &Keyspace) -> Result<DbIter> {
        self.range::<&[u8], _>(keyspace, ..)
    }

    /// The smallest key of `keyspace` and its value as of the snapshot.
    pub fn first_key_value(&self, keyspace: &Keyspace) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        self.iter(keyspace)?.next().transpose()
    }

    /// The largest key of `keyspace` and its value as of the snapshot.
    pub fn last_key_value(&self, keyspace: &Keyspace) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        self.iter(keyspace)?.next_back().transpose()
    }

    /// Queries a secondary index as of the snapshot (consistent with the base data read
    /// through the same snapshot).
    pub fn query_index(&self, name: &str, q: &crate::IndexQuery) -> Result<crate::QueryPage> {
        self.db.query_index_at(name, q, self.seq)
    }

    /// Iterates the keys of `keyspace` starting with `prefix`, as of the snapshot.
    pub fn prefix(&self, keyspace: &Keyspace, prefix: impl AsRef<[u8]>) -> Result<DbIter> {
        self.range(keyspace, prefix_bounds(prefix.as_ref()))
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        let mut snaps = self.db.inner.snapshots.lock();
        if let Some(n) = snaps.get_mut(&self.seq) {
            *n -= 1;
            if *n == 0 {
                snaps.remove(&self.seq);
            }
        }
    }
}
