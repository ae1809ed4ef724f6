//! The methods of [`Keyspace`]: reads and writes on one keyspace, delegating to [`Db`].

use super::{Db, Keyspace, WriteBatch};
use crate::Result;
use crate::iter::DbIter;
use crate::options::WriteOptions;
use crate::state::keyspace_key;
use crate::stats::LevelStats;
use std::ops::{Bound, RangeBounds};

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
            .inner
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
            .inner
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
        let sv = self.db.inner.versions.current();
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
        let sv = self.db.inner.versions.current();
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
pub(super) fn owned_bounds<K: AsRef<[u8]>, R: RangeBounds<K>>(
    range: &R,
) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let own = |b: Bound<&K>| b.map(|k| k.as_ref().to_vec());
    (own(range.start_bound()), own(range.end_bound()))
}

/// The bounds covering exactly the keys that start with `prefix`.
pub(super) fn prefix_bounds(prefix: &[u8]) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
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
