//! Versions: the set of live tables per keyspace and level, immutable once built. Readers
//! clone an `Arc<Version>`; a table file is deleted only when it has left the live version
//! *and* the last version or iterator holding it is gone.

use crate::iter::{InternalEntry, Source};
use crate::manifest::{FileMeta, NUM_LEVELS};
use crate::{Error, Result};
use sealdb_memtable::Memtable;
use sealdb_sstable::{Table, TableIter};
use sealdb_vfs::SharedFs;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// One live table: its manifest record and its open reader.
pub(crate) struct TableHandle {
    pub meta: FileMeta,
    pub table: Arc<Table>,
    path: PathBuf,
    fs: SharedFs,
    /// Set when a compaction removed the table from the live version: the file is deleted
    /// when the last reference (a version or an iterator) goes.
    obsolete: AtomicBool,
}

impl std::fmt::Debug for TableHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableHandle")
            .field("number", &self.meta.number)
            .finish()
    }
}

impl TableHandle {
    pub(crate) fn new(meta: FileMeta, table: Arc<Table>, path: PathBuf, fs: SharedFs) -> Self {
        Self {
            meta,
            table,
            path,
            fs,
            obsolete: AtomicBool::new(false),
        }
    }

    pub(crate) fn mark_obsolete(&self) {
        self.obsolete.store(true, Ordering::Release);
    }
}

impl Drop for TableHandle {
    fn drop(&mut self) {
        if self.obsolete.load(Ordering::Acquire) {
            // Best effort: a file left behind is an orphan, removed at the next open.
            let _ = self.fs.remove_file(&self.path);
        }
    }
}

/// The live tables of every keyspace. Level 0 holds flushed tables, newest first, which may
/// overlap; levels 1.. hold non-overlapping tables sorted by smallest key.
#[derive(Debug, Default, Clone)]
pub(crate) struct Version {
    pub keyspaces: BTreeMap<u32, Vec<Vec<Arc<TableHandle>>>>,
}

impl Version {
    pub(crate) fn levels(&self, keyspace: u32) -> Option<&Vec<Vec<Arc<TableHandle>>>> {
        self.keyspaces.get(&keyspace)
    }

    /// Orders every level by the rules above.
    pub(crate) fn normalize(&mut self) {
        for levels in self.keyspaces.values_mut() {
            levels.resize_with(NUM_LEVELS, Vec::new);
            if let Some(l0) = levels.get_mut(0) {
                l0.sort_by(|a, b| {
                    b.meta
                        .max_seq
                        .cmp(&a.meta.max_seq)
                        .then(b.meta.number.cmp(&a.meta.number))
                });
            }
            for level in levels.iter_mut().skip(1) {
                level.sort_by(|a, b| a.meta.smallest.cmp(&b.meta.smallest));
            }
        }
    }

    /// The newest version of `key` visible at `snapshot` in this keyspace's tables.
    pub(crate) fn get(
        &self,
        keyspace: u32,
        key: &[u8],
        snapshot: u64,
    ) -> Result<Option<(u64, Option<Vec<u8>>)>> {
        let Some(levels) = self.levels(keyspace) else {
            return Ok(None);
        };
        for (n, level) in levels.iter().enumerate() {
            if n == 0 {
                for t in level {
                    if key < t.meta.smallest.as_slice() || key > t.meta.largest.as_slice() {
                        continue;
                    }
                    if let Some(found) = t.table.get(key, snapshot).map_err(table_error)? {
                        return Ok(Some(found));
                    }
                }
            } else {
                // Non-overlapping: at most one table can hold the key.
                let idx = level.partition_point(|t| t.meta.largest.as_slice() < key);
                if let Some(t) = level.get(idx)
                    && key >= t.meta.smallest.as_slice()
                    && let Some(found) = t.table.get(key, snapshot).map_err(table_error)?
                {
                    return Ok(Some(found));
                }
            }
        }
        Ok(None)
    }

    /// Scan sources over `[lower, upper]` for one keyspace: one per L0 table, one per deeper
    /// level.
    pub(crate) fn sources(
        &self,
        keyspace: u32,
        lower: &Bound<Vec<u8>>,
        upper: &Bound<Vec<u8>>,
    ) -> Vec<Box<dyn Source>> {
        let mut out: Vec<Box<dyn Source>> = Vec::new();
        let Some(levels) = self.levels(keyspace) else {
            return out;
        };
        for (n, level) in levels.iter().enumerate() {
            let files: Vec<Arc<TableHandle>> = level
                .iter()
                .filter(|t| overlaps(&t.meta, lower, upper))
                .cloned()
                .collect();
            if files.is_empty() {
                continue;
            }
            if n == 0 {
                for f in files {
                    out.push(Box::new(LevelSource::new(
                        vec![f],
                        lower.clone(),
                        upper.clone(),
                    )));
                }
            } else {
                out.push(Box::new(LevelSource::new(
                    files,
                    lower.clone(),
                    upper.clone(),
                )));
            }
        }
        out
    }
}

/// Whether a table's key range meets the bounds.
pub(crate) fn overlaps(meta: &FileMeta, lower: &Bound<Vec<u8>>, upper: &Bound<Vec<u8>>) -> bool {
    let above_lower = match lower {
        Bound::Included(l) => meta.largest >= *l,
        Bound::Excluded(l) => meta.largest > *l,
        Bound::Unbounded => true,
    };
    let below_upper = match upper {
        Bound::Included(u) => meta.smallest <= *u,
        Bound::Excluded(u) => meta.smallest < *u,
        Bound::Unbounded => true,
    };
    above_lower && below_upper
}

pub(crate) fn table_error(e: sealdb_sstable::Error) -> Error {
    e.into()
}

/// A level's tables in key order, read lazily from either end. When both ends reach the same
/// table they share its iterator, whose ends never cross.
pub(crate) struct LevelSource {
    files: Vec<Arc<TableHandle>>,
    iters: Vec<Option<TableIter>>,
    front: usize,
    /// One past the back file (so an empty range is `front == back`).
    back: usize,
    lower: Bound<Vec<u8>>,
    upper: Bound<Vec<u8>>,
}

impl LevelSource {
    pub(crate) fn new(
        files: Vec<Arc<TableHandle>>,
        lower: Bound<Vec<u8>>,
        upper: Bound<Vec<u8>>,
    ) -> Self {
        let n = files.len();
        Self {
            iters: (0..n).map(|_| None).collect(),
            files,
            front: 0,
            back: n,
            lower,
            upper,
        }
    }

    fn iter_at(&mut self, i: usize) -> Option<&mut TableIter> {
        if self.iters.get(i).is_some_and(Option::is_none) {
            let file = self.files.get(i)?;
            let it = file.table.iter(self.lower.clone(), self.upper.clone());
            if let Some(slot) = self.iters.get_mut(i) {
                *slot = Some(it);
            }
        }
        self.iters.get_mut(i).and_then(Option::as_mut)
    }
}

impl Source for LevelSource {
    fn next_front(&mut self) -> Option<Result<InternalEntry>> {
        while self.front < self.back {
            let i = self.front;
            match self.iter_at(i)?.next() {
                Some(r) => return Some(r.map_err(table_error)),
                None => {
                    if i + 1 < self.back
                        && let Some(slot) = self.iters.get_mut(i)
                    {
                        *slot = None;
                    }
                    self.front += 1;
                }
            }
        }
        None
    }

    fn next_back(&mut self) -> Option<Result<InternalEntry>> {
        while self.back > self.front {
            let i = self.back - 1;
            match self.iter_at(i)?.next_back() {
                Some(r) => return Some(r.map_err(table_error)),
                None => {
                    if i > self.front
                        && let Some(slot) = self.iters.get_mut(i)
                    {
                        *slot = None;
                    }
                    self.back -= 1;
                }
            }
        }
        None
    }
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

impl SuperVersion {
    /// The same memtables over the live tables `version`.
    pub(crate) fn with_version(&self, version: Version) -> SuperVersion {
        SuperVersion {
            active: self.active.clone(),
            immutables: self.immutables.clone(),
            version: Arc::new(version),
        }
    }
}
