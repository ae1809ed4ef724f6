//! The state every part of the engine shares: [`DbInner`], the one struct an open database
//! is, and the small types its fields need. It sits low in the module map (see
//! docs/architecture.md): it names only the types of lower modules, and the operations on the
//! whole database (open, commit, jobs, key lifecycle, backup) live in modules above it.

use crate::events::JobEvents;
use crate::lifestats::Counters;
use crate::options::Options;
use crate::stats::OpenStats;
use crate::versions::VersionSet;
use crate::{Error, Result};
use crossbeam_channel::Sender;
use parking_lot::{Mutex, RwLock};
use sealdb_crypto::{CipherId, Keyring, KeysFile, SharedProvider};
use sealdb_sstable::BlockCache;
use sealdb_vfs::{FileLock, SharedFs};
use sealdb_wal::{GroupCommit, Wal};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes of the keyspace id that prefixes every internal key.
pub(crate) const KEYSPACE_PREFIX_LEN: usize = 4;

/// Whether a read-only open may have failed only because a live writer changed the
/// directory under it (a file gone between listing and reading).
pub(crate) fn retry_read_only(e: &Error) -> bool {
    match e {
        Error::Io { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
        Error::Corruption { .. } | Error::Integrity { .. } | Error::ChainEnd { .. } => true,
        _ => false,
    }
}

/// A write waiting in the group-commit queue.
#[derive(Debug)]
pub(crate) struct WriteRequest {
    pub(crate) rep: Vec<u8>,
    /// Records in `rep`; 0 marks a request to rotate the memtable (from `flush`), which the
    /// leader performs in order with the writes and logs nothing for.
    pub(crate) count: u32,
    pub(crate) sync: bool,
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
    pub(crate) group: GroupCommit<WriteRequest, Result<u64>>,
    /// The live table set, the manifest and what serialises the jobs that change them.
    pub(crate) versions: VersionSet,
    pub(crate) keyspaces: RwLock<BTreeMap<String, u32>>,
    /// Highest sequence number assigned (written only by the group-commit leader).
    pub(crate) last_seq: AtomicU64,
    /// Highest sequence number readers may see: every batch up to it is in the memtable.
    pub(crate) visible_seq: AtomicU64,
    pub(crate) snapshots: Mutex<BTreeMap<u64, usize>>,
    /// Wake-ups, the disk-full pause and stalled writers, between jobs and writers.
    pub(crate) events: JobEvents,
    pub(crate) counters: Counters,
    /// The counters of earlier sessions, from `STATS` (see `lifestats`).
    pub(crate) lifetime_base: crate::lifestats::Lifetime,
    pub(crate) poisoned: Mutex<Option<Poison>>,
    pub(crate) open_stats: OpenStats,
    pub(crate) next_memtable_id: AtomicU64,
    pub(crate) cache: Arc<BlockCache>,
    /// Set while the master key is unusable: reads and writes fail with its error.
    pub(crate) key_block: Mutex<Option<crate::keys::KeyBlock>>,
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
    pub(crate) _lock: Option<Box<dyn FileLock>>,
}

impl std::fmt::Debug for DbInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("path", &self.path).finish()
    }
}

/// The background threads; stopped and joined when the last `Db` handle goes, so that a
/// dropped database has released its files and lock when `drop` returns.
#[derive(Debug)]
pub(crate) struct Background {
    pub(crate) inner: Arc<DbInner>,
    pub(crate) threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl Drop for Background {
    fn drop(&mut self) {
        self.inner.events.close();
        self.inner.key_stop.lock().take();
        for t in self.threads.lock().drain(..) {
            let _ = t.join();
        }
        self.inner.close_clean();
    }
}

pub(crate) fn keyspace_key(id: u32, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(KEYSPACE_PREFIX_LEN + key.len());
    k.extend_from_slice(&id.to_be_bytes());
    k.extend_from_slice(key);
    k
}

/// Why the database refuses writes until it is reopened, and where the failure happened: every
/// later refusal repeats both (the first refusal also carried the cause).
#[derive(Debug, Clone)]
pub(crate) struct Poison {
    what: String,
    file: Option<PathBuf>,
    at: Option<u64>,
}

impl Poison {
    fn of(e: &Error) -> Self {
        let (file, at) = e.location();
        Self {
            // The reason alone: `Error::Poisoned` adds the "read-only" prefix when shown.
            what: match e {
                Error::Poisoned { what, .. } => what.clone(),
                other => other.to_string(),
            },
            file: file.map(std::path::Path::to_path_buf),
            at,
        }
    }

    /// The refusal a write meets while the database is poisoned.
    pub(crate) fn error(&self) -> Error {
        Error::Poisoned {
            what: self.what.clone(),
            file: self.file.clone(),
            at: self.at,
            source: None,
        }
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
    pub(crate) fn close_clean(&self) {
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
            *p = Some(Poison::of(&e));
        }
        drop(p);
        self.events.notify_room();
        e
    }

    /// Handles a failure of an operation that leaves nothing unknown behind when the cause is
    /// a full disk (the manifest rolls, the WAL starts a new segment, a flush or compaction
    /// deletes its outputs): [`Error::NoSpace`] is returned as is, anything else poisons.
    pub(crate) fn fail(&self, e: Error) -> Error {
        if e.is_no_space() { e } else { self.poison(e) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn a_poison_repeats_what_and_where_the_first_failure_was() {
        let first = Error::corruption("bad block".into())
            .in_file("/db/wal/0000000000000003.wal")
            .at(4096);
        let refusal = Poison::of(&first).error();
        assert!(matches!(refusal, Error::Poisoned { .. }), "{refusal:?}");
        assert_eq!(
            refusal.location(),
            (Some(Path::new("/db/wal/0000000000000003.wal")), Some(4096))
        );
        assert!(refusal.to_string().contains("bad block"), "{refusal}");
        // A poisoned error's own reason is kept as it is, not wrapped in its Display.
        let again = Poison::of(&refusal).error();
        assert_eq!(again.to_string(), refusal.to_string());
    }
}
