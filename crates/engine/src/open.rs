//! Opening a database: finding its keys, checking its chain ends against the head record,
//! loading the manifest and the live tables, replaying the WAL into memtables (and the
//! streams that lagged it), then starting the background threads. Everything is read and
//! verified before anything is written or deleted, so a failed open leaves the directory as
//! it found it.

use crate::events::JobEvents;
use crate::keys::open_or_create_keys;
use crate::lifestats::Counters;
use crate::manifest::Manifest;
use crate::options::Options;
use crate::state::{Background, DbInner, keyspace_key, retry_read_only};
use crate::stats::OpenStats;
use crate::version::SuperVersion;
use crate::versions::VersionSet;
use crate::{Error, Result};
use parking_lot::{Mutex, RwLock};
use sealdb_memtable::{Memtable, ValueKind};
use sealdb_sstable::BlockCache;
use sealdb_wal::{FrameBatch, GroupCommit, Op, RecordIter, Wal, WalOptions};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

const WAL_DIR: &str = "wal";

const LOCK_FILE: &str = "LOCK";

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

/// Opens (and recovers) the database at `path`: what [`crate::Db::open`] does, returning the
/// shared state and the handle on its background threads.
pub(crate) fn open(path: &Path, opts: Options) -> Result<(Arc<DbInner>, Arc<Background>)> {
    if !opts.read_only {
        return open_once(path, opts);
    }
    // A read-only opener races a live writer, which may switch manifests, delete a
    // compacted table or retire a WAL segment between two of our reads: try again a few
    // times before reporting what failed.
    let mut attempt = 0;
    loop {
        match open_once(path, opts.clone()) {
            Err(e) if attempt < READ_ONLY_OPEN_ATTEMPTS && retry_read_only(&e) => {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(10 * attempt));
            }
            other => return other,
        }
    }
}

fn open_once(path: &Path, opts: Options) -> Result<(Arc<DbInner>, Arc<Background>)> {
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
        sealdb_vfs::create_dir_all_durable(fs.as_ref(), &path).map_err(|e| Error::io(&path, e))?;
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
        let (h, origin) = crate::head::Head::load(&opts.resolved_keystore_dir(), &keyring, &path)?;
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
                    replay_err = Some(Error::corruption("replay into a frozen memtable".into()));
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
                crate::streams::append_to(&streams, std::slice::from_ref(changes), *time, false)?;
            }
        }
        if lagging {
            for s in streams.values() {
                s.log.sync()?;
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
        versions: VersionSet::new(
            SuperVersion {
                active,
                immutables: memtables,
                version: Arc::new(version),
            },
            manifest,
            state.next_file_number,
        ),
        keyspaces: RwLock::new(keyspaces),
        last_seq: AtomicU64::new(last_seq),
        visible_seq: AtomicU64::new(last_seq),
        snapshots: Mutex::new(BTreeMap::new()),
        events: JobEvents::default(),
        counters: Counters::default(),
        poisoned: Mutex::new(None),
        open_stats: OpenStats {
            created,
            wal: wal_stats,
            head: head_origin,
        },
        next_memtable_id: AtomicU64::new(next_id + 1),
        cache,
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
    if !read_only {
        if recovered_segments > MAX_RECOVERED_WAL_SEGMENTS {
            // Every session leaves a segment behind; past a few, move what they hold to
            // tables so the WAL (and the next open's work) stays bounded.
            inner.flush()?;
            crate::jobs::flush::retire_wal(&inner.job_context())?;
        }
        // Memtables recovered beyond the budget go to tables now.
        inner.events.signal_flush();
        inner.events.signal_compaction();
    }
    let wal = &inner.open_stats.wal;
    tracing::info!(
        path = %inner.path.display(),
        created = inner.open_stats.created,
        read_only,
        wal_segments = wal.segments,
        wal_batches = wal.batches,
        wal_records = wal.records,
        last_seq = wal.last_seq,
        torn_tail = wal.torn_tail.is_some(),
        duration_ms = started.elapsed().as_secs_f64() * 1e3,
        "database opened and recovered"
    );
    Ok((inner, bg))
}
