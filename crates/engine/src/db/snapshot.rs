//! The methods of [`Snapshot`]: reads at its sequence number, and its release.

use super::keyspace::{owned_bounds, prefix_bounds};
use super::{Keyspace, Snapshot};
use crate::Result;
use crate::iter::DbIter;
use std::ops::RangeBounds;

impl Snapshot {
    /// The sequence number this snapshot reads at.
    pub fn sequence(&self) -> u64 {
        self.seq
    }

    /// Reads `key` from `keyspace` as of the snapshot.
    pub fn get(&self, keyspace: &Keyspace, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>> {
        self.db.inner.get_at(keyspace.id, key.as_ref(), self.seq)
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
        self.db.inner.iter_at(keyspace.id, lower, upper, self.seq)
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
