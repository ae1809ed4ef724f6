//! Background work: flushing frozen memtables to level-0 tables, leveled compaction, and
//! loading the live tables at open. Each change is made durable in the manifest *before* the
//! new version is installed; replaced tables are deleted only when nothing reads them.

use crate::db::{BgJob, DbInner, SuperVersion};
use crate::manifest::{Edit, FileMeta, ManifestState, NUM_LEVELS};
use crate::version::{TableHandle, Version, overlaps, table_error};
use crate::{Error, Result};
use sealdb_crypto::{ArtifactKind, CipherId, Expected, IntegrityReason, Keyring};
use sealdb_sstable::{BlockCache, Table, TableBuilder, TableIter, TableOptions, ValueKind};
use sealdb_vfs::SharedFs;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The directory of table files inside the data directory.
pub(crate) const TABLES_DIR: &str = "tables";

pub(crate) fn table_path(db: &Path, number: u64) -> PathBuf {
    db.join(TABLES_DIR).join(format!("{number:016}.sst"))
}

fn expected(keyring: &Keyring, cipher: CipherId) -> Expected {
    Expected {
        kind: ArtifactKind::Table,
        database_id: keyring.database_id(),
        cipher: Some(cipher),
    }
}

/// Opens one live table and checks it is exactly the file the manifest recorded.
fn open_table(
    fs: &SharedFs,
    db: &Path,
    meta: &FileMeta,
    keyring: &Keyring,
    cipher: CipherId,
    cache: &Arc<BlockCache>,
) -> Result<Arc<TableHandle>> {
    open_table_at(
        fs,
        &table_path(db, meta.number),
        meta,
        keyring,
        cipher,
        cache,
    )
}

/// Opens the table at `path` and checks it is exactly the file `meta` describes.
pub(crate) fn open_table_at(
    fs: &SharedFs,
    path: &Path,
    meta: &FileMeta,
    keyring: &Keyring,
    cipher: CipherId,
    cache: &Arc<BlockCache>,
) -> Result<Arc<TableHandle>> {
    let path = path.to_path_buf();
    let label = path.display().to_string();
    if !fs.exists(&path) {
        return Err(Error::Integrity {
            file: label,
            block: None,
            reason: IntegrityReason::MissingFile,
        });
    }
    let table = Table::open(
        fs.as_ref(),
        &path,
        keyring,
        &expected(keyring, cipher),
        Some(cache.clone()),
    )
    .map_err(table_error)?;
    let got = table.meta();
    if got.footer_digest != meta.footer_digest
        || got.file_id.0 != meta.file_id
        || got.file_size != meta.size
        || got.data_key_version != meta.data_key_version
    {
        return Err(Error::Integrity {
            file: label,
            block: None,
            reason: IntegrityReason::ReplacedFile,
        });
    }
    Ok(Arc::new(TableHandle::new(
        meta.clone(),
        table,
        path,
        fs.clone(),
    )))
}

/// Opens every table the manifest lists and removes orphans (tables written by a flush or
/// compaction that crashed before its manifest edit).
pub(crate) fn load_version(
    fs: &SharedFs,
    db: &Path,
    state: &ManifestState,
    keyring: &Keyring,
    cipher: CipherId,
    cache: &Arc<BlockCache>,
) -> Result<(Version, Vec<PathBuf>)> {
    let dir = db.join(TABLES_DIR);
    let mut version = Version::default();
    let mut live = std::collections::HashSet::new();
    for (ks, levels) in &state.levels {
        let mut out: Vec<Vec<Arc<TableHandle>>> = vec![Vec::new(); NUM_LEVELS];
        for (n, files) in levels.iter().enumerate() {
            for meta in files.values() {
                live.insert(meta.number);
                if let Some(level) = out.get_mut(n) {
                    level.push(open_table(fs, db, meta, keyring, cipher, cache)?);
                }
            }
        }
        version.keyspaces.insert(*ks, out);
    }
    version.normalize();
    // Files the manifest does not name: outputs of a flush or compaction that crashed before
    // its manifest edit. Returned, not deleted: open removes them once everything verified.
    let mut orphans = Vec::new();
    if fs.exists(&dir) {
        for name in fs.list_dir(&dir).map_err(|e| Error::io(&dir, e))? {
            let number = name
                .strip_suffix(".sst")
                .and_then(|n| n.parse::<u64>().ok());
            if number.is_none_or(|n| !live.contains(&n)) {
                orphans.push(dir.join(&name));
            }
        }
    }
    Ok((version, orphans))
}

/// Creates the tables directory if needed (durably) and removes orphan tables.
pub(crate) fn prepare_tables_dir(fs: &SharedFs, db: &Path, orphans: &[PathBuf]) -> Result<()> {
    let dir = db.join(TABLES_DIR);
    sealdb_vfs::create_dir_all_durable(fs.as_ref(), &dir).map_err(|e| Error::io(&dir, e))?;
    for p in orphans {
        fs.remove_file(p).map_err(|e| Error::io(p, e))?;
    }
    if !orphans.is_empty() {
        fs.sync_dir(&dir).map_err(|e| Error::io(&dir, e))?;
    }
    Ok(())
}

/// Retires WAL segments whose records are all in tables, even when no flush had anything to
/// write (segments left by sessions that wrote nothing): records the new minimum segment in
/// the manifest, then deletes (or archives) them.
pub(crate) fn retire_wal(inner: &Arc<DbInner>) -> Result<()> {
    let _g = inner.flush_lock.lock();
    let keyring = inner.keyring.read().clone();
    // Segments go only below what the manifest durably records as the chain's start.
    let min_segment = {
        let mut manifest = inner.manifest.lock();
        let flushed_seq = manifest.state().flushed_seq;
        let first = inner.wal.first_needed_segment(flushed_seq);
        if first > manifest.state().wal_min_segment {
            manifest.apply(vec![Edit::WalMinSegment(first)], &keyring)?;
        }
        manifest.state().wal_min_segment
    };
    if inner.opts.pitr_window.is_some() {
        inner
            .wal
            .archive_obsolete(min_segment, &inner.path.join(crate::pitr::ARCHIVE_DIR))?;
    } else {
        inner.wal.remove_obsolete(min_segment)?;
    }
    Ok(())
}

/// First and longest wait between retries of a background job that failed for lack of space.
const NO_SPACE_RETRY_FIRST: Duration = Duration::from_millis(20);
const NO_SPACE_RETRY_MAX: Duration = Duration::from_secs(1);

/// Runs one background job until it has nothing left to do, on every signal. A failure for
/// lack of space pauses the job (see `NoSpacePause`) and retries it with exponential backoff
/// (the job left nothing behind, so a retry starts clean) until space is freed; any other
/// failure poisons the database.
fn run_job(
    inner: &DbInner,
    job: BgJob,
    signals: &crossbeam_channel::Receiver<()>,
    mut step: impl FnMut() -> Result<bool>,
) {
    let mut backoff: Option<Duration> = None;
    loop {
        let woke = match backoff {
            None => signals.recv().is_ok(),
            // The whole interval, whatever signals come meanwhile: every refused write signals,
            // and retrying on each would turn a write storm into a retry storm.
            Some(d) => {
                let until = Instant::now() + d;
                loop {
                    let left = until.saturating_duration_since(Instant::now());
                    match signals.recv_timeout(left) {
                        Ok(()) if !left.is_zero() => continue,
                        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break false,
                        _ => break true,
                    }
                }
            }
        };
        // Ends when the database's last handle drops the sender.
        if !woke {
            return;
        }
        loop {
            if inner.poisoned.lock().is_some() {
                backoff = None;
                break;
            }
            match step() {
                Ok(true) => continue,
                Ok(false) => {
                    inner.resume_after_space(job);
                    backoff = None;
                    break;
                }
                Err(Error::NoSpace { path }) => {
                    inner.pause_for_space(job, path);
                    backoff = Some(
                        backoff.map_or(NO_SPACE_RETRY_FIRST, |d| (d * 2).min(NO_SPACE_RETRY_MAX)),
                    );
                    break;
                }
                Err(e) => {
                    inner.poison(e);
                    backoff = None;
                    break;
                }
            }
        }
    }
}

/// Starts the flush and compaction threads.
pub(crate) fn start(inner: &Arc<DbInner>) -> Vec<std::thread::JoinHandle<()>> {
    let (ftx, frx) = crossbeam_channel::bounded::<()>(1);
    let (ctx, crx) = crossbeam_channel::bounded::<()>(1);
    *inner.flush_signal.lock() = Some(ftx);
    *inner.compact_signal.lock() = Some(ctx);
    let mut threads = Vec::new();
    let f = inner.clone();
    threads.push(
        std::thread::Builder::new()
            .name("sealdb-flush".into())
            .spawn(move || {
                sealdb_vfs::lower_thread_priority(sealdb_vfs::BACKGROUND_NICE);
                run_job(&f, BgJob::Flush, &frx, || flush_oldest(&f))
            })
            .unwrap_or_else(|_| std::thread::spawn(|| {})),
    );
    let c = inner.clone();
    threads.push(
        std::thread::Builder::new()
            .name("sealdb-compact".into())
            .spawn(move || {
                sealdb_vfs::lower_thread_priority(sealdb_vfs::BACKGROUND_NICE);
                run_job(&c, BgJob::Compaction, &crx, || compact_once(&c))
            })
            .unwrap_or_else(|_| std::thread::spawn(|| {})),
    );
    threads
}

fn table_options(inner: &DbInner) -> TableOptions {
    TableOptions {
        block_size: inner.opts.block_size,
        bloom_bits_per_key: inner.opts.bloom_bits_per_key,
        compression: inner.opts.compression,
        kind: ArtifactKind::Table,
        cipher: inner.cipher,
    }
}

fn to_file_meta(number: u64, m: &sealdb_sstable::TableMeta) -> FileMeta {
    FileMeta {
        number,
        size: m.file_size,
        entries: m.entries,
        smallest: m.smallest.clone(),
        largest: m.largest.clone(),
        min_seq: m.min_seq,
        max_seq: m.max_seq,
        data_key_version: m.data_key_version,
        file_id: m.file_id.0,
        footer_digest: m.footer_digest,
    }
}

/// Allocates a table number. Flush and compaction threads draw from one counter; the
/// manifest records the high-water mark with each edit, and unrecorded numbers left by a crash
/// are orphans, deleted at open before any new allocation.
fn next_file_number(inner: &DbInner, reserved: &mut u64) -> u64 {
    let n = inner.next_file.fetch_add(1, Ordering::Relaxed);
    *reserved = (*reserved).max(n + 1);
    n
}

/// Deletes the table files a failed flush or compaction wrote (best effort: whatever stays
/// is an orphan, removed at the next open). Only for files no manifest edit may have named.
fn discard_outputs(inner: &DbInner, created: &[(u64, PathBuf)]) {
    for (_, path) in created {
        let _ = inner.fs.remove_file(path);
    }
}

/// Creates table `number` for a flush or compaction, remembering it in `created` first so a
/// failure anywhere later deletes it.
fn create_output(
    inner: &DbInner,
    number: u64,
    keyring: &Keyring,
    opts: &TableOptions,
    created: &mut Vec<(u64, PathBuf)>,
) -> Result<TableBuilder> {
    let path = table_path(&inner.path, number);
    created.push((number, path.clone()));
    TableBuilder::create(inner.fs.as_ref(), &path, keyring, opts).map_err(table_error)
}

/// Runs the part of a flush or compaction that only writes its own new files; on failure
/// they are deleted (nothing refers to them), so the job can simply be retried.
fn with_outputs<T>(
    inner: &DbInner,
    created: &mut Vec<(u64, PathBuf)>,
    f: impl FnOnce(&mut Vec<(u64, PathBuf)>) -> Result<T>,
) -> Result<T> {
    let r = f(created);
    if r.is_err() {
        discard_outputs(inner, created);
    }
    r
}

/// Flushes the oldest frozen memtable into one level-0 table per keyspace. Returns whether
/// there was one.
///
/// A failure leaves nothing behind: the memtable stays frozen (and its WAL segments stay),
/// the tables written so far are deleted, and a retry starts over. Only a failed manifest
/// write leaves them, to [`Manifest::doubtful_outputs`](crate::manifest::Manifest).
pub(crate) fn flush_oldest(inner: &Arc<DbInner>) -> Result<bool> {
    let _g = inner.flush_lock.lock();
    let started = Instant::now();
    let sv = inner.version.read().clone();
    let Some(mem) = sv.immutables.last().cloned() else {
        return Ok(false);
    };
    let keyring = inner.keyring.read().clone();
    let live_keyspaces: std::collections::HashSet<u32> =
        inner.keyspaces.read().values().copied().collect();
    let opts = table_options(inner);
    let mut reserved = 0u64;
    let mut created: Vec<(u64, PathBuf)> = Vec::new();
    let (outputs, written, handles) = with_outputs(inner, &mut created, |created| {
        let mut outputs: Vec<(u32, FileMeta)> = Vec::new();
        let mut current: Option<(u32, u64, TableBuilder)> = None;
        let mut written = 0u64;
        let finish = |cur: Option<(u32, u64, TableBuilder)>,
                      outputs: &mut Vec<(u32, FileMeta)>,
                      written: &mut u64|
         -> Result<()> {
            if let Some((ks, number, b)) = cur {
                let meta = b.finish().map_err(table_error)?;
                *written += meta.file_size;
                outputs.push((ks, to_file_meta(number, &meta)));
            }
            Ok(())
        };
        // Borrowed in place: the memtable is frozen, and copying every key and value out
        // (as its owned cursor does) was a large share of a flush's CPU.
        mem.try_for_each(|e| -> Result<()> {
            let Some(ks) = e
                .key
                .get(..4)
                .and_then(|p| p.try_into().ok())
                .map(u32::from_be_bytes)
            else {
                return Ok(());
            };
            if !live_keyspaces.contains(&ks) {
                return Ok(()); // dropped keyspace
            }
            let user = e.key.get(4..).unwrap_or_default();
            if current.as_ref().is_none_or(|(c, _, _)| *c != ks) {
                finish(current.take(), &mut outputs, &mut written)?;
                let number = next_file_number(inner, &mut reserved);
                let b = create_output(inner, number, &keyring, &opts, created)?;
                current = Some((ks, number, b));
            }
            if let Some((_, _, b)) = current.as_mut() {
                let kind = match e.kind {
                    sealdb_memtable::ValueKind::Put => ValueKind::Put,
                    sealdb_memtable::ValueKind::Delete => ValueKind::Delete,
                };
                b.add(user, e.seq, kind, e.value).map_err(table_error)?;
            }
            Ok(())
        })?;
        finish(current.take(), &mut outputs, &mut written)?;
        let dir = inner.path.join(TABLES_DIR);
        inner.fs.sync_dir(&dir).map_err(|e| Error::io(&dir, e))?;
        // Streams durable before the manifest says this data left the WAL.
        crate::streams::sync_all(inner)?;
        let mut handles = Vec::new();
        for (ks, meta) in &outputs {
            handles.push((
                *ks,
                open_table(
                    &inner.fs,
                    &inner.path,
                    meta,
                    &keyring,
                    inner.cipher,
                    &inner.cache,
                )?,
            ));
        }
        Ok((outputs, written, handles))
    })?;

    let flushed_seq = mem.max_seq().unwrap_or(0);
    let mut edits: Vec<Edit> = outputs
        .iter()
        .map(|(ks, meta)| Edit::AddFile {
            keyspace: *ks,
            level: 0,
            file: meta.clone(),
        })
        .collect();
    edits.push(Edit::NextFileNumber(reserved));
    edits.push(Edit::FlushedSeq(flushed_seq));
    edits.push(Edit::WalMinSegment(
        inner.wal.first_needed_segment(flushed_seq),
    ));
    // What the manifest durably says the WAL chain starts at: segments below it may go.
    let wal_min_segment;
    {
        let mut manifest = inner.manifest.lock();
        // Keyspaces dropped while we flushed: skip their files (removed as orphans at open).
        let alive = manifest.state().keyspaces.clone();
        edits.retain(
            |e| !matches!(e, Edit::AddFile { keyspace, .. } if !alive.contains_key(keyspace)),
        );
        if let Err(e) = manifest.apply(edits, &keyring) {
            drop(handles);
            manifest.doubtful_outputs(created);
            return Err(e);
        }
        wal_min_segment = manifest.state().wal_min_segment;
        let mut v = inner.version.write();
        let mut next = (*v.version).clone();
        for (ks, h) in handles {
            if !alive.contains_key(&ks) {
                h.mark_obsolete();
                continue;
            }
            let levels = next
                .keyspaces
                .entry(ks)
                .or_insert_with(|| vec![Vec::new(); NUM_LEVELS]);
            if let Some(l0) = levels.get_mut(0) {
                l0.push(h);
            }
        }
        next.keyspaces.retain(|ks, _| alive.contains_key(ks));
        next.normalize();
        let immutables: Vec<_> = v
            .immutables
            .iter()
            .filter(|m| !Arc::ptr_eq(m, &mem))
            .cloned()
            .collect();
        *v = Arc::new(SuperVersion {
            active: v.active.clone(),
            immutables,
            version: Arc::new(next),
        });
    }
    if inner.opts.pitr_window.is_some() {
        inner
            .wal
            .archive_obsolete(wal_min_segment, &inner.path.join(crate::pitr::ARCHIVE_DIR))?;
        crate::pitr::trim_archive(inner)?;
    } else {
        inner.wal.remove_obsolete(wal_min_segment)?;
    }
    crate::streams::trim_all(inner)?;
    inner.resume_after_space(BgJob::Flush);
    inner.counters.flushes.fetch_add(1, Ordering::Relaxed);
    inner
        .counters
        .flush_bytes
        .fetch_add(written, Ordering::Relaxed);
    inner.notify_room();
    inner.signal_compaction();
    // Freeing a memtable is one deallocation per key, value and node: off this thread, so
    // the flush is done (and the next one may start) without paying for it.
    reclaim_later(mem);
    tracing::info!(
        tables = outputs.len(),
        bytes = written,
        flushed_seq,
        duration_ms = started.elapsed().as_secs_f64() * 1e3,
        "flush"
    );
    Ok(true)
}

/// Memory waiting for the reclaimer: at most this many items, so what is freed late stays
/// bounded (a memtable already left the write-buffer accounting when it is handed over).
const RECLAIM_QUEUE: usize = 1;

/// Drops `item` on the process's reclaimer thread, which runs at the lowest priority; drops it
/// here instead if the reclaimer is busy or cannot be started.
pub(crate) fn reclaim_later<T: Send + 'static>(item: T) {
    type Reclaim = Box<dyn Send>;
    static RECLAIMER: std::sync::OnceLock<Option<crossbeam_channel::Sender<Reclaim>>> =
        std::sync::OnceLock::new();
    let tx = RECLAIMER.get_or_init(|| {
        let (tx, rx) = crossbeam_channel::bounded::<Reclaim>(RECLAIM_QUEUE);
        std::thread::Builder::new()
            .name("sealdb-reclaim".into())
            .spawn(move || {
                sealdb_vfs::lower_thread_priority(19);
                for item in rx {
                    drop(item);
                }
            })
            .ok()
            .map(|_| tx)
    });
    let item: Reclaim = Box::new(item);
    if let Some(tx) = tx
        && let Err(e) = tx.try_send(item)
    {
        drop(e.into_inner());
    }
}

/// One compaction: input tables of `level` (and the overlapping ones of `level + 1`) merged
/// into new tables of `level + 1`.
struct Job {
    keyspace: u32,
    level: usize,
    inputs: Vec<Arc<TableHandle>>,
    next_inputs: Vec<Arc<TableHandle>>,
    /// Normally `level + 1`; `level` when a table is rewritten in place (re-encryption).
    output_level: usize,
}

fn level_target(inner: &DbInner, level: usize) -> u64 {
    let mut t = inner.opts.level1_bytes.max(1);
    for _ in 1..level {
        t = t.saturating_mul(inner.opts.level_size_ratio.max(2));
    }
    t
}

fn key_range(files: &[Arc<TableHandle>]) -> (Vec<u8>, Vec<u8>) {
    let lo = files
        .iter()
        .map(|f| f.meta.smallest.clone())
        .min()
        .unwrap_or_default();
    let hi = files
        .iter()
        .map(|f| f.meta.largest.clone())
        .max()
        .unwrap_or_default();
    (lo, hi)
}

fn overlapping(level: &[Arc<TableHandle>], lo: &[u8], hi: &[u8]) -> Vec<Arc<TableHandle>> {
    let lo_b = Bound::Included(lo.to_vec());
    let hi_b = Bound::Included(hi.to_vec());
    level
        .iter()
        .filter(|t| overlaps(&t.meta, &lo_b, &hi_b))
        .cloned()
        .collect()
}

/// Picks the most urgent compaction, if any level is over its target.
fn pick(inner: &DbInner, version: &Version) -> Option<Job> {
    let current_dk = inner.keyring.read().current_version();
    let mut best: Option<(f64, Job)> = None;
    for (ks, levels) in &version.keyspaces {
        for level in 0..NUM_LEVELS - 1 {
            let files = levels.get(level)?;
            if files.is_empty() {
                continue;
            }
            let score = if level == 0 {
                files.len() as f64 / inner.opts.l0_compaction_trigger.max(1) as f64
            } else {
                files.iter().map(|f| f.meta.size).sum::<u64>() as f64
                    / level_target(inner, level) as f64
            };
            if score < 1.0 || best.as_ref().is_some_and(|(b, _)| *b >= score) {
                continue;
            }
            let inputs: Vec<Arc<TableHandle>> = if level == 0 {
                files.clone()
            } else {
                // Prefer tables sealed under an old data key (rotation), else round-robin.
                let old = files.iter().find(|f| f.meta.data_key_version != current_dk);
                let chosen = old.cloned().or_else(|| {
                    let ptr = inner.compact_pointers.lock().get(&(*ks, level)).cloned();
                    files
                        .iter()
                        .find(|f| ptr.as_ref().is_none_or(|p| f.meta.smallest > *p))
                        .or_else(|| files.first())
                        .cloned()
                });
                chosen.into_iter().collect()
            };
            let (lo, hi) = key_range(&inputs);
            let next_inputs = levels
                .get(level + 1)
                .map(|l| overlapping(l, &lo, &hi))
                .unwrap_or_default();
            best = Some((
                score,
                Job {
                    keyspace: *ks,
                    level,
                    inputs,
                    next_inputs,
                    output_level: level + 1,
                },
            ));
        }
    }
    best.map(|(_, j)| j)
}

/// Runs the most urgent compaction; returns whether there was one.
pub(crate) fn compact_once(inner: &Arc<DbInner>) -> Result<bool> {
    let _g = inner.compaction_lock.lock();
    let version = inner.version.read().version.clone();
    let Some(job) = pick(inner, &version) else {
        return Ok(false);
    };
    run(inner, job)?;
    Ok(true)
}

/// Compacts every keyspace into its last level in one pass (each byte rewritten once),
/// dropping tombstones and shadowed versions no snapshot needs.
pub(crate) fn compact_all(inner: &Arc<DbInner>) -> Result<()> {
    let _g = inner.compaction_lock.lock();
    let version = inner.version.read().version.clone();
    for (ks, levels) in &version.keyspaces {
        let upper: Vec<Arc<TableHandle>> = levels
            .iter()
            .take(NUM_LEVELS - 1)
            .flatten()
            .cloned()
            .collect();
        let bottom: Vec<Arc<TableHandle>> = levels.get(NUM_LEVELS - 1).cloned().unwrap_or_default();
        if upper.is_empty() && bottom.len() <= 1 {
            continue;
        }
        run(
            inner,
            Job {
                keyspace: *ks,
                level: 0,
                inputs: upper,
                next_inputs: bottom,
                output_level: NUM_LEVELS - 1,
            },
        )?;
    }
    Ok(())
}

/// Rewrites one table under the current data key, in place in its level (re-encryption).
/// A no-op if a compaction already replaced it.
pub(crate) fn rewrite_table(
    inner: &Arc<DbInner>,
    keyspace: u32,
    level: usize,
    table: Arc<TableHandle>,
) -> Result<()> {
    let _g = inner.compaction_lock.lock();
    let live = inner
        .version
        .read()
        .version
        .levels(keyspace)
        .and_then(|l| l.get(level))
        .is_some_and(|l| l.iter().any(|t| t.meta.number == table.meta.number));
    if !live {
        return Ok(());
    }
    run(
        inner,
        Job {
            keyspace,
            level,
            inputs: vec![table],
            next_inputs: Vec::new(),
            output_level: level,
        },
    )
}

/// Whether any table below `level` overlaps `[lo, hi]`: if none, tombstones in the output
/// shadow nothing and may be dropped.
fn is_bottommost(version: &Version, keyspace: u32, level: usize, lo: &[u8], hi: &[u8]) -> bool {
    let Some(levels) = version.levels(keyspace) else {
        return true;
    };
    levels
        .iter()
        .skip(level + 1)
        .all(|l| overlapping(l, lo, hi).is_empty())
}

/// Merges the job's inputs in internal order.
struct Merge {
    iters: Vec<TableIter>,
    heads: Vec<Option<sealdb_sstable::Entry>>,
}

impl Merge {
    fn new(tables: &[Arc<TableHandle>]) -> Result<Self> {
        let mut iters: Vec<TableIter> = tables
            .iter()
            .map(|t| t.table.iter(Bound::Unbounded, Bound::Unbounded))
            .collect();
        let mut heads = Vec::with_capacity(iters.len());
        for it in iters.iter_mut() {
            heads.push(it.next().transpose().map_err(table_error)?);
        }
        Ok(Self { iters, heads })
    }

    fn next(&mut self) -> Result<Option<sealdb_sstable::Entry>> {
        let mut best: Option<usize> = None;
        for (i, h) in self.heads.iter().enumerate() {
            let Some(e) = h else { continue };
            let better = match best
                .and_then(|b| self.heads.get(b))
                .and_then(Option::as_ref)
            {
                None => true,
                Some(b) => {
                    (e.key.as_slice(), std::cmp::Reverse(e.seq))
                        < (b.key.as_slice(), std::cmp::Reverse(b.seq))
                }
            };
            if better {
                best = Some(i);
            }
        }
        let Some(i) = best else { return Ok(None) };
        let next = match self.iters.get_mut(i) {
            Some(it) => it.next().transpose().map_err(table_error)?,
            None => None,
        };
        Ok(self
            .heads
            .get_mut(i)
            .and_then(|slot| std::mem::replace(slot, next)))
    }
}

fn run(inner: &Arc<DbInner>, job: Job) -> Result<()> {
    let started = Instant::now();
    let keyring = inner.keyring.read().clone();
    let version = inner.version.read().version.clone();
    let mut all = job.inputs.clone();
    all.extend(job.next_inputs.iter().cloned());
    let (lo, hi) = key_range(&all);
    let out_level = job.output_level;
    // An in-place rewrite of one level-0 table must keep its tombstones: older level-0
    // tables beside it may hold what they delete.
    let in_place_l0 = job.level == 0 && out_level == 0;
    let bottommost = !in_place_l0 && is_bottommost(&version, job.keyspace, out_level, &lo, &hi);
    let smallest_snapshot = inner.smallest_snapshot();
    let opts = table_options(inner);
    let read_bytes: u64 = all.iter().map(|t| t.meta.size).sum();

    let mut reserved = 0u64;
    let mut created: Vec<(u64, PathBuf)> = Vec::new();
    let (outputs, written, handles) = with_outputs(inner, &mut created, |created| {
        let mut merge = Merge::new(&all)?;
        let mut outputs: Vec<FileMeta> = Vec::new();
        let mut builder: Option<(u64, TableBuilder)> = None;
        let mut last_key: Option<Vec<u8>> = None;
        let mut last_seq_for_key = u64::MAX;
        let mut written = 0u64;
        let rate = inner.opts.compaction_rate_bytes_per_sec;
        let mut paced_bytes = 0u64;
        while let Some(e) = merge.next()? {
            let new_key = last_key.as_deref() != Some(e.key.as_slice());
            if new_key {
                // Cut output files only between user keys, so a level never splits one key.
                if builder
                    .as_ref()
                    .is_some_and(|(_, b)| b.estimated_size() >= inner.opts.target_file_size)
                    && let Some((n, b)) = builder.take()
                {
                    let meta = b.finish().map_err(table_error)?;
                    written += meta.file_size;
                    outputs.push(to_file_meta(n, &meta));
                }
                last_key = Some(e.key.clone());
                last_seq_for_key = u64::MAX;
            }
            // A newer version of this key is visible to every reader: this one is shadowed.
            let drop = if last_seq_for_key <= smallest_snapshot {
                true
            } else {
                e.kind == ValueKind::Delete && bottommost && e.seq <= smallest_snapshot
            };
            last_seq_for_key = e.seq;
            if drop {
                continue;
            }
            if builder.is_none() {
                let number = next_file_number(inner, &mut reserved);
                let b = create_output(inner, number, &keyring, &opts, created)?;
                builder = Some((number, b));
            }
            if let Some((_, b)) = builder.as_mut() {
                b.add(&e.key, e.seq, e.kind, &e.value)
                    .map_err(table_error)?;
            }
            // Pacing: hold the write rate under the limit so foreground work keeps the CPU.
            if rate > 0 {
                paced_bytes += (e.key.len() + e.value.len()) as u64;
                let due = Duration::from_secs_f64(paced_bytes as f64 / rate as f64);
                let spent = started.elapsed();
                if due > spent {
                    std::thread::sleep(due - spent);
                }
            }
        }
        if let Some((n, b)) = builder.take() {
            let meta = b.finish().map_err(table_error)?;
            written += meta.file_size;
            outputs.push(to_file_meta(n, &meta));
        }
        let dir = inner.path.join(TABLES_DIR);
        inner.fs.sync_dir(&dir).map_err(|e| Error::io(&dir, e))?;
        let mut handles = Vec::new();
        for meta in &outputs {
            handles.push(open_table(
                &inner.fs,
                &inner.path,
                meta,
                &keyring,
                inner.cipher,
                &inner.cache,
            )?);
        }
        Ok((outputs, written, handles))
    })?;

    let mut edits = Vec::new();
    // Each input leaves the level it is in now (a full compaction takes several levels).
    let level_of = |number: u64| -> u8 {
        version
            .levels(job.keyspace)
            .and_then(|ls| {
                ls.iter()
                    .position(|l| l.iter().any(|t| t.meta.number == number))
            })
            .unwrap_or(job.level) as u8
    };
    for t in job.inputs.iter().chain(&job.next_inputs) {
        edits.push(Edit::RemoveFile {
            keyspace: job.keyspace,
            level: level_of(t.meta.number),
            number: t.meta.number,
        });
    }
    for meta in &outputs {
        edits.push(Edit::AddFile {
            keyspace: job.keyspace,
            level: out_level as u8,
            file: meta.clone(),
        });
    }
    edits.push(Edit::NextFileNumber(reserved));
    {
        let mut manifest = inner.manifest.lock();
        if !manifest.state().keyspaces.contains_key(&job.keyspace) {
            for h in &handles {
                h.mark_obsolete();
            }
            return Ok(());
        }
        if let Err(e) = manifest.apply(edits, &keyring) {
            drop(handles);
            manifest.doubtful_outputs(created);
            return Err(e);
        }
        let mut v = inner.version.write();
        let mut next = (*v.version).clone();
        if let Some(levels) = next.keyspaces.get_mut(&job.keyspace) {
            let gone: std::collections::HashSet<u64> = all.iter().map(|t| t.meta.number).collect();
            for level in levels.iter_mut() {
                level.retain(|t| !gone.contains(&t.meta.number));
            }
            if let Some(l) = levels.get_mut(out_level) {
                l.extend(handles);
            }
        }
        next.normalize();
        *v = Arc::new(SuperVersion {
            active: v.active.clone(),
            immutables: v.immutables.clone(),
            version: Arc::new(next),
        });
    }
    for t in &all {
        t.mark_obsolete();
    }
    inner
        .compact_pointers
        .lock()
        .insert((job.keyspace, job.level), hi);
    inner.resume_after_space(BgJob::Compaction);
    inner.counters.compactions.fetch_add(1, Ordering::Relaxed);
    inner
        .counters
        .compaction_read_bytes
        .fetch_add(read_bytes, Ordering::Relaxed);
    inner
        .counters
        .compaction_write_bytes
        .fetch_add(written, Ordering::Relaxed);
    inner.notify_room();
    tracing::info!(
        keyspace = job.keyspace,
        level = job.level,
        output_level = out_level,
        inputs = all.len(),
        read_bytes,
        written_bytes = written,
        duration_ms = started.elapsed().as_secs_f64() * 1e3,
        "compaction"
    );
    Ok(())
}

/// What `verify` checked, per kind of artifact, and every failure it found.
#[derive(Debug, Default)]
pub struct VerifyReport {
    /// Files checked, all kinds together.
    pub files_checked: usize,
    /// Live tables (data and index keyspaces).
    pub tables: usize,
    /// Live WAL segments (`wal/`).
    pub wal_segments: usize,
    /// Archived WAL segments kept for point-in-time recovery (`wal-archive/`).
    pub archived_wal_segments: usize,
    /// Stream segments (`streams/<keyspace>/`).
    pub stream_segments: usize,
    /// Stream consumer-position files (`CONSUMERS`).
    pub consumer_files: usize,
    /// The live manifest and `CURRENT`.
    pub manifest_files: usize,
    /// The `KEYS` file.
    pub keys_files: usize,
    /// The lifetime statistics file (`STATS`), when there is one.
    pub stats_files: usize,
    /// Every failure found (each names its file and block).
    pub errors: Vec<Error>,
}

/// Authenticates every live artifact: every block of every table, the WAL and archived WAL
/// chains, every retained stream record and each `CONSUMERS` file, the manifest and
/// `CURRENT`, and `KEYS`; and checks that what is on disk is what this process wrote (the
/// manifest's edit count, `KEYS`' generation, the consumer positions).
pub(crate) fn verify(inner: &Arc<DbInner>, progress: &mut dyn FnMut(u64, u64)) -> VerifyReport {
    let mut report = VerifyReport::default();
    let version = inner.version.read().version.clone();
    // One step per table, and a last one for everything else.
    let total = version
        .keyspaces
        .values()
        .flatten()
        .map(|level| level.len() as u64)
        .sum::<u64>()
        + 1;
    progress(0, total);
    for levels in version.keyspaces.values() {
        for level in levels {
            for t in level {
                report.tables += 1;
                report
                    .errors
                    .extend(t.table.verify().into_iter().map(table_error));
                progress(report.tables as u64, total);
            }
        }
    }
    let keyring = inner.keyring.read().clone();
    {
        // Flushes move segments from the WAL into the archive and trim the archive: hold
        // them off while the chains are read. (A read-only handle cannot hold off another
        // process's writer: it retries instead.)
        let _flush = inner.flush_lock.lock();
        // Below the oldest segment this process knows of, a segment's absence is expected.
        let oldest = (!inner.opts.read_only)
            .then(|| inner.wal.segment_numbers().first().copied())
            .flatten();
        match with_retries(inner, || {
            verify_wal_chain(inner, inner.wal.dir(), &keyring, oldest)
        }) {
            Ok(n) => report.wal_segments += n,
            Err(e) => report.errors.push(e),
        }
        let archive = inner.path.join(crate::pitr::ARCHIVE_DIR);
        if inner.fs.exists(&archive) {
            // Archive trimming removes its oldest segments: the chain starts at the oldest left.
            match with_retries(inner, || verify_wal_chain(inner, &archive, &keyring, None)) {
                Ok(n) => report.archived_wal_segments += n,
                Err(e) => report.errors.push(e),
            }
        }
    }
    let streams = inner.streams.read().clone();
    for s in streams.values() {
        report.stream_segments += s.log.segment_paths().len();
        // Every retained record, read the way consumers read them.
        let mut at = sealdb_stream::StartAt::TrimHorizon;
        let mut restarts = 0;
        loop {
            match s.log.read(at, 4096, 4 << 20) {
                Ok(b) if b.records.is_empty() => break,
                Ok(b) => at = sealdb_stream::StartAt::At(b.next),
                // Retention trimmed the records being read: the rest is still checked.
                Err(sealdb_stream::Error::Trimmed { .. }) if restarts < 3 => {
                    restarts += 1;
                    at = sealdb_stream::StartAt::TrimHorizon;
                }
                Err(e) => {
                    report.errors.push(crate::streams::stream_err(e));
                    break;
                }
            }
        }
        let path = s.dir.join(sealdb_stream::POSITIONS_FILE);
        if inner.fs.exists(&path) {
            report.consumer_files += 1;
            if let Err(e) = with_retries(inner, || verify_consumers(inner, s, &keyring)) {
                report.errors.push(e);
            }
        }
    }
    report.manifest_files += 2;
    if let Err(e) = with_retries(inner, || inner.manifest.lock().verify_on_disk(&keyring)) {
        report.errors.push(e);
    }
    report.keys_files += 1;
    if let Err(e) = with_retries(inner, || {
        // Key operations rewrite KEYS under this lock.
        let keys = inner.keys.lock();
        verify_keys_file(inner, &keyring, keys.generation())
    }) {
        report.errors.push(e);
    }
    // Opening tolerates a bad STATS (it is only counters); verify still names it.
    if inner
        .fs
        .exists(&inner.path.join(crate::lifestats::STATS_FILE))
    {
        report.stats_files += 1;
        if let Err(e) = with_retries(inner, || {
            crate::lifestats::verify(inner.fs.as_ref(), &inner.path, &keyring)
        }) {
            report.errors.push(e);
        }
    }
    report.files_checked = report.tables
        + report.wal_segments
        + report.archived_wal_segments
        + report.stream_segments
        + report.consumer_files
        + report.manifest_files
        + report.keys_files
        + report.stats_files;
    progress(total, total);
    report
}

/// Runs a check of files a writer may be changing: once for a writable handle (this process
/// is the writer and holds it off), a few times for a read-only one, whose view can be
/// overtaken by another process's writer between listing and reading.
fn with_retries<T>(inner: &DbInner, mut check: impl FnMut() -> Result<T>) -> Result<T> {
    let attempts = if inner.opts.read_only { 4 } else { 1 };
    let mut attempt = 1;
    loop {
        match check() {
            Err(e) if attempt < attempts && crate::db::retry_read_only(&e) => {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            other => return other,
        }
    }
}

/// Reads the WAL chain in `dir` the way recovery does, from segment `oldest` (or the oldest
/// present): every frame authenticates, each segment ends where its successor says it does
/// (a segment closed by a recovery may end without an end frame), and only the newest may
/// end in a partial block. Returns how many segments it read.
fn verify_wal_chain(
    inner: &DbInner,
    dir: &Path,
    keyring: &sealdb_crypto::Keyring,
    oldest: Option<u64>,
) -> Result<usize> {
    let oldest = match oldest {
        Some(n) => n,
        None => crate::pitr::numbered(&inner.fs, dir)?
            .first()
            .map_or(0, |(n, _)| *n),
    };
    let opts = sealdb_wal::WalOptions {
        segment_size: inner.opts.wal_segment_size,
        cipher: inner.cipher,
    };
    let stats =
        sealdb_wal::Wal::replay_read_only(&inner.fs, dir, keyring, opts, oldest, &mut |_| Ok(()))?;
    Ok(stats.segments)
}

/// A stream's `CONSUMERS` file authenticates; for a writable handle it must also hold the
/// positions last committed (no commit runs while they are locked).
fn verify_consumers(
    inner: &DbInner,
    s: &crate::streams::LiveStream,
    keyring: &sealdb_crypto::Keyring,
) -> Result<()> {
    let path = s.dir.join(sealdb_stream::POSITIONS_FILE);
    if inner.opts.read_only {
        // Loading would also remove a writer's in-flight temporary file: only authenticate.
        sealdb_crypto::sealed::read_small_sealed_file(
            inner.fs.as_ref(),
            &path,
            keyring,
            ArtifactKind::Meta,
        )?;
        return Ok(());
    }
    let positions = s.positions.lock();
    let on_disk = sealdb_stream::ConsumerPositions::load(
        inner.fs.as_ref(),
        &s.dir,
        keyring,
        positions.stream(),
        Some(positions.generation()),
    )
    .map_err(crate::streams::stream_err)?;
    if on_disk != *positions {
        return Err(Error::corruption(format!(
            "{} does not hold the consumer positions last committed",
            path.display()
        )));
    }
    Ok(())
}

/// `KEYS` authenticates under the data key it names and is the generation this handle wrote
/// or read (not an older copy put back; a read-only handle accepts a newer one, written by
/// the writer since).
fn verify_keys_file(
    inner: &DbInner,
    keyring: &sealdb_crypto::Keyring,
    generation: u64,
) -> Result<()> {
    let path = inner.path.join(sealdb_crypto::keysfile::KEYS_FILE_NAME);
    let payload = sealdb_crypto::sealed::read_small_sealed_file(
        inner.fs.as_ref(),
        &path,
        keyring,
        ArtifactKind::Keys,
    )?;
    let found = sealdb_crypto::KeysFile::decode_payload_untrusted(&payload)?;
    if found < generation || (found > generation && !inner.opts.read_only) {
        return Err(Error::corruption(format!(
            "{} is at generation {found}, but this database wrote generation {generation}",
            path.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reports the thread it is dropped on.
    struct Tell(std::sync::mpsc::Sender<Option<String>>);

    impl Drop for Tell {
        fn drop(&mut self) {
            let _ = self
                .0
                .send(std::thread::current().name().map(str::to_string));
        }
    }

    #[test]
    fn reclaimed_items_are_dropped_on_the_reclaimer_or_at_once() {
        let (tx, rx) = std::sync::mpsc::channel();
        let here = std::thread::current().name().map(str::to_string);
        for _ in 0..8 {
            reclaim_later(Tell(tx.clone()));
        }
        drop(tx);
        let threads: Vec<Option<String>> = rx.iter().collect();
        // Every item is dropped exactly once, by the reclaimer or (queue full) right here.
        assert_eq!(threads.len(), 8);
        assert!(
            threads
                .iter()
                .all(|t| t.as_deref() == Some("sealdb-reclaim") || *t == here),
            "{threads:?}"
        );
        assert!(
            threads
                .iter()
                .any(|t| t.as_deref() == Some("sealdb-reclaim")),
            "{threads:?}"
        );
    }
}
