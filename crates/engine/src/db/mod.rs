//! The database: open and recovery, keyspaces, the write path (group commit into the WAL,
//! then the memtable), point reads and scans at snapshots.

mod batch;
mod format;
mod index;
mod keys;
mod keyspace;
mod snapshot;
mod streams;

use crate::iter::DbIter;
use crate::keys::open_or_create_keys;
use crate::lifestats::Counters;
use crate::manifest::{DEFAULT_KEYSPACE, Edit, Manifest};
use crate::options::{Options, WriteOptions};
use crate::state::{Background, DbInner, NoSpacePause, keyspace_key, retry_read_only};
use crate::stats::{LevelStats, OpenStats, Stats};
use crate::version::SuperVersion;
use crate::{Error, Result};
use parking_lot::{Condvar, Mutex, RwLock};
use sealdb_crypto::{CipherId, KeyDescriptor, SharedProvider};
use sealdb_memtable::{Memtable, ValueKind};
use sealdb_sstable::BlockCache;
use sealdb_wal::{BatchBuilder, FrameBatch, GroupCommit, Op, RecordIter, Wal, WalOptions};
use std::collections::BTreeMap;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const WAL_DIR: &str = "wal";

const LOCK_FILE: &str = "LOCK";

const MAX_KEYSPACE_NAME: usize = 255;

/// WAL segments recovered at open beyond which open flushes what they hold and retires them.
const MAX_RECOVERED_WAL_SEGMENTS: usize = 8;

/// How often a read-only open is tried before its error is reported.
const READ_ONLY_OPEN_ATTEMPTS: u64 = 4;

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

/// An open database. Cheap to clone (clones share one database); `Send + Sync`.
///
/// ```
/// # fn main() -> sealdb::Result<()> {
/// let dir = tempfile::tempdir().map_err(|e| sealdb::Error::InvalidArgument(e.to_string()))?;
/// let keystore = tempfile::tempdir().map_err(|e| sealdb::Error::InvalidArgument(e.to_string()))?;
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
            return Err(Error::InvalidArgument(format!(
                "no database at {} (a read-only open creates nothing)",
                path.display()
            )));
        }
        if !exists && !opts.create_if_missing {
            return Err(Error::InvalidArgument(format!(
                "no database at {} (create_if_missing is off)",
                path.display()
            )));
        }
        if exists && opts.error_if_exists {
            return Err(Error::InvalidArgument(format!(
                "a database already exists at {}",
                path.display()
            )));
        }
        if !exists && fs.exists(&path) {
            let entries = fs.list_dir(&path).map_err(|e| Error::io(&path, e))?;
            if entries.iter().any(|n| n != LOCK_FILE) {
                return Err(Error::InvalidArgument(format!(
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
                return Err(Error::Corruption(format!(
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
            crate::tables::load_version(&fs, &path, &state, &keyring, cipher, &cache)?;
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
                            Some(Error::Corruption("replay into a frozen memtable".into()));
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
                return Err(Error::Corruption(format!(
                    "{} is missing (a database whose creation never finished cannot be opened \
                     read-only)",
                    current.display()
                )));
            }
            (false, m) => {
                // Temporary files of an atomic replace (CURRENT, KEYS) a crashed process left.
                sealdb_vfs::remove_stale_temp_files(fs.as_ref(), &path)
                    .map_err(|e| Error::io(&path, e))?;
                crate::tables::prepare_tables_dir(&fs, &path, &orphan_tables)?;
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
                    s.log.sync().map_err(|e| Error::Corruption(e.to_string()))?;
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
            group: GroupCommit::with_budget(crate::commit::GROUP_BUDGET),
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
            crate::jobs::start(&inner)
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
                crate::jobs::flush::retire_wal(&db.inner)?;
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
            return Err(Error::InvalidArgument(format!(
                "keyspace names starting with {} are reserved",
                crate::index::INTERNAL_PREFIX
            )));
        }
        self.create_keyspace_internal(name)
    }

    /// Creates (or opens) a keyspace by any name, internal ones included.
    pub(crate) fn create_keyspace_internal(&self, name: &str) -> Result<Keyspace> {
        if name.is_empty() || name.len() > MAX_KEYSPACE_NAME {
            return Err(Error::InvalidArgument(format!(
                "keyspace names are 1 to {MAX_KEYSPACE_NAME} bytes"
            )));
        }
        self.inner.check_writable()?;
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
            return Err(Error::InvalidArgument(
                "the default keyspace cannot be dropped".into(),
            ));
        }
        self.inner.check_writable()?;
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
            return Err(Error::InvalidArgument(
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
        crate::jobs::compaction::compact_all(&self.inner).map_err(|e| self.inner.fail(e))
    }

    /// Authenticates every live artifact (tables, WAL and archived WAL, stream segments and
    /// `CONSUMERS`, manifest and `CURRENT`, `KEYS`, `STATS`); reports how many of each kind it
    /// checked and each failure (each names its file and block).
    pub fn verify(&self) -> crate::VerifyReport {
        crate::jobs::verify::verify(&self.inner, &mut |_, _| {})
    }

    /// [`Db::verify`], calling `progress(done, total)` as tables (the bulk of the work) are
    /// checked, and once more with `done == total` when everything is.
    pub fn verify_with_progress(&self, progress: &mut dyn FnMut(u64, u64)) -> crate::VerifyReport {
        crate::jobs::verify::verify(&self.inner, progress)
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
}
