//! What a background job may touch, as one narrow value: the version set, the table files,
//! the options, the counters and the events to writers, the WAL and the stream set. Flush,
//! compaction and verify take a [`JobContext`] (built by `DbInner::job_context`, in
//! `jobs/mod.rs`) instead of the whole database, so their signatures say what they use; a job
//! that needs more takes it as an explicit argument.

use crate::Result;
use crate::events::JobEvents;
use crate::lifestats::Counters;
use crate::manifest::FileMeta;
use crate::options::Options;
use crate::streams::StreamSet;
use crate::tables::open_table;
use crate::version::TableHandle;
use crate::versions::VersionSet;
use parking_lot::{Mutex, RwLock};
use sealdb_crypto::{CipherId, Keyring};
use sealdb_sstable::{BlockCache, TableOptions};
use sealdb_vfs::SharedFs;
use sealdb_wal::Wal;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// What a job needs to write and open table files.
pub(crate) struct TableContext<'a> {
    pub(super) fs: &'a SharedFs,
    /// The data directory.
    pub(super) path: &'a Path,
    /// Read once per job, after the job's lock is taken: a key rotation may install a new
    /// keyring meanwhile, and the job must seal its outputs under the newest data key.
    pub(super) keyring: &'a RwLock<Keyring>,
    pub(super) cipher: CipherId,
    pub(super) cache: &'a Arc<BlockCache>,
    /// How output tables are built.
    pub(super) options: TableOptions,
}

impl TableContext<'_> {
    /// The current keyring.
    pub(super) fn keyring(&self) -> Keyring {
        self.keyring.read().clone()
    }

    /// Opens the live table `meta` names, checked to be exactly that file.
    pub(super) fn open(&self, meta: &FileMeta, keyring: &Keyring) -> Result<Arc<TableHandle>> {
        open_table(self.fs, self.path, meta, keyring, self.cipher, self.cache)
    }
}

/// The handles a background job works with (see the module comment).
pub(crate) struct JobContext<'a> {
    /// The live table set, the manifest, table numbers and the job locks.
    pub(super) versions: &'a VersionSet,
    pub(super) tables: TableContext<'a>,
    pub(super) opts: &'a Options,
    pub(super) counters: &'a Counters,
    /// Room freed for stalled writers, the disk-full pause, the compaction wake-up.
    pub(super) events: &'a JobEvents,
    /// A flush retires the WAL segments it covered; verify reads the chain.
    pub(super) wal: &'a Wal,
    /// A flush makes the streams durable before its manifest edit and trims them after.
    pub(super) streams: &'a RwLock<Arc<StreamSet>>,
    /// With `snapshots`, what compaction must keep for readers.
    pub(super) visible_seq: &'a AtomicU64,
    pub(super) snapshots: &'a Mutex<BTreeMap<u64, usize>>,
}

impl JobContext<'_> {
    /// The oldest sequence number any reader may still need.
    pub(super) fn smallest_snapshot(&self) -> u64 {
        let visible = self.visible_seq.load(Ordering::Acquire);
        self.snapshots
            .lock()
            .keys()
            .next()
            .copied()
            .map_or(visible, |s| s.min(visible))
    }
}
