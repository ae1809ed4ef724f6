//! The version set (pebble's `versionSet`): everything that describes the live table set and
//! its durable record, in one place — the `SuperVersion` readers pin, the manifest, the next
//! table number, the compaction pointers, and the locks that serialise flushes and
//! compactions. Every job that changes the live tables does it through these methods: draw a
//! table number, log its edit and install the version that follows, pick a compaction.

use crate::Result;
use crate::manifest::{Edit, Manifest, NUM_LEVELS};
use crate::options::Options;
use crate::version::{SuperVersion, TableHandle, Version, overlaps};
use parking_lot::{Mutex, MutexGuard, RwLock, RwLockWriteGuard};
use sealdb_crypto::Keyring;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The live table set and its durable record; one per open database.
pub(crate) struct VersionSet {
    /// What readers pin: memtables and the live tables.
    current: RwLock<Arc<SuperVersion>>,
    /// The edit log; versions are installed under its lock, so the live version is always
    /// the one its last edit describes.
    manifest: Mutex<Manifest>,
    /// The next table number to hand out.
    next_file: AtomicU64,
    /// Where the last compaction of each (keyspace, level) ended: the next starts after it.
    compact_pointers: Mutex<BTreeMap<(u32, usize), Vec<u8>>>,
    /// Serialises flushes (one memtable at a time, oldest first).
    flush_lock: Mutex<()>,
    /// Serialises compactions.
    compaction_lock: Mutex<()>,
}

impl std::fmt::Debug for VersionSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VersionSet")
            .field("next_file", &self.next_file.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// One compaction: input tables of `level` (and the overlapping ones of `level + 1`) merged
/// into new tables of `output_level`.
pub(crate) struct Compaction {
    pub keyspace: u32,
    pub level: usize,
    pub inputs: Vec<Arc<TableHandle>>,
    pub next_inputs: Vec<Arc<TableHandle>>,
    /// Normally `level + 1`; `level` when a table is rewritten in place (re-encryption).
    pub output_level: usize,
}

impl VersionSet {
    /// The version set of a database just opened: `current` as recovered, `manifest` as
    /// replayed, table numbers from `next_file` on.
    pub(crate) fn new(current: SuperVersion, manifest: Manifest, next_file: u64) -> Self {
        Self {
            current: RwLock::new(Arc::new(current)),
            manifest: Mutex::new(manifest),
            next_file: AtomicU64::new(next_file),
            compact_pointers: Mutex::new(BTreeMap::new()),
            flush_lock: Mutex::new(()),
            compaction_lock: Mutex::new(()),
        }
    }

    /// The current memtables and tables, pinned (no lock is held while the caller reads).
    pub(crate) fn current(&self) -> Arc<SuperVersion> {
        self.current.read().clone()
    }

    /// The live tables, pinned.
    pub(crate) fn live(&self) -> Arc<Version> {
        self.current.read().version.clone()
    }

    /// The current `SuperVersion`, locked for replacement. Only the commit leader uses it, to
    /// rotate memtables; changes to the tables go through [`Self::log_and_apply`].
    pub(crate) fn lock_current(&self) -> RwLockWriteGuard<'_, Arc<SuperVersion>> {
        self.current.write()
    }

    /// The manifest, locked. Hold it from reading the state an edit depends on until the edit
    /// is installed with [`Self::log_and_apply`].
    pub(crate) fn manifest(&self) -> MutexGuard<'_, Manifest> {
        self.manifest.lock()
    }

    /// Held by a flush (and whatever must not interleave with one) for its whole run.
    pub(crate) fn lock_flushes(&self) -> MutexGuard<'_, ()> {
        self.flush_lock.lock()
    }

    /// Held by a compaction (or a table rewrite) for its whole run.
    pub(crate) fn lock_compactions(&self) -> MutexGuard<'_, ()> {
        self.compaction_lock.lock()
    }

    /// Allocates a table number. Flush and compaction threads draw from one counter; the
    /// manifest records the high-water mark (`reserved`, raised here) with each edit, and
    /// unrecorded numbers left by a crash are orphans, deleted at open before any new
    /// allocation.
    pub(crate) fn next_file_number(&self, reserved: &mut u64) -> u64 {
        let n = self.next_file.fetch_add(1, Ordering::Relaxed);
        *reserved = (*reserved).max(n + 1);
        n
    }

    /// Durably logs `edits` in `manifest` (locked by the caller, from [`Self::manifest`]) and
    /// installs the `SuperVersion` that `next` derives from the current one. If the log
    /// write fails nothing is installed, and the job's `outputs` are handed to the manifest
    /// as possibly named by a durable edit ([`Manifest::doubtful_outputs`]).
    pub(crate) fn log_and_apply(
        &self,
        manifest: &mut Manifest,
        edits: Vec<Edit>,
        keyring: &Keyring,
        outputs: Vec<(u64, PathBuf)>,
        next: impl FnOnce(&SuperVersion) -> SuperVersion,
    ) -> Result<()> {
        if let Err(e) = manifest.apply(edits, keyring) {
            // The job's open handles go before their files are remembered as doubtful.
            drop(next);
            manifest.doubtful_outputs(outputs);
            return Err(e);
        }
        let mut current = self.current.write();
        *current = Arc::new(next(&current));
        Ok(())
    }

    /// Records where the last compaction of (`keyspace`, `level`) ended.
    pub(crate) fn set_compact_pointer(&self, keyspace: u32, level: usize, end: Vec<u8>) {
        self.compact_pointers.lock().insert((keyspace, level), end);
    }

    /// Picks the most urgent compaction of `version`, if any level is over its target:
    /// level 0 by table count, deeper levels by size. Within a level, a table sealed under an
    /// older data key than `current_data_key` goes first (rotation), else the tables are
    /// taken round-robin from the compaction pointer.
    pub(crate) fn pick_compaction(
        &self,
        version: &Version,
        opts: &Options,
        current_data_key: u32,
    ) -> Option<Compaction> {
        let mut best: Option<(f64, Compaction)> = None;
        for (ks, levels) in &version.keyspaces {
            for level in 0..NUM_LEVELS - 1 {
                let files = levels.get(level)?;
                if files.is_empty() {
                    continue;
                }
                let score = if level == 0 {
                    files.len() as f64 / opts.l0_compaction_trigger.max(1) as f64
                } else {
                    files.iter().map(|f| f.meta.size).sum::<u64>() as f64
                        / level_target(opts, level) as f64
                };
                if score < 1.0 || best.as_ref().is_some_and(|(b, _)| *b >= score) {
                    continue;
                }
                let inputs: Vec<Arc<TableHandle>> = if level == 0 {
                    files.clone()
                } else {
                    let old = files
                        .iter()
                        .find(|f| f.meta.data_key_version != current_data_key);
                    let chosen = old.cloned().or_else(|| {
                        let ptr = self.compact_pointers.lock().get(&(*ks, level)).cloned();
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
                    Compaction {
                        keyspace: *ks,
                        level,
                        inputs,
                        next_inputs,
                        output_level: level + 1,
                    },
                ));
            }
        }
        best.map(|(_, c)| c)
    }
}

/// The size level `level` (1..) may grow to before it is compacted.
fn level_target(opts: &Options, level: usize) -> u64 {
    let mut t = opts.level1_bytes.max(1);
    for _ in 1..level {
        t = t.saturating_mul(opts.level_size_ratio.max(2));
    }
    t
}

/// The smallest and largest key of `files`.
pub(crate) fn key_range(files: &[Arc<TableHandle>]) -> (Vec<u8>, Vec<u8>) {
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

/// The tables of `level` whose key range meets `[lo, hi]`.
pub(crate) fn overlapping(
    level: &[Arc<TableHandle>],
    lo: &[u8],
    hi: &[u8],
) -> Vec<Arc<TableHandle>> {
    let lo_b = Bound::Included(lo.to_vec());
    let hi_b = Bound::Included(hi.to_vec());
    level
        .iter()
        .filter(|t| overlaps(&t.meta, &lo_b, &hi_b))
        .cloned()
        .collect()
}
