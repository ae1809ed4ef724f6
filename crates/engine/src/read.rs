//! The read path: point reads and scans at a snapshot, over the SuperVersion's memtables
//! (newest first) and then the live tables, level by level. A read pins a `SuperVersion`
//! (an `Arc`) and holds no lock while it reads, so it never waits for a writer or a job.

use crate::Result;
use crate::iter::{DbIter, MemSource, Source};
use crate::state::{DbInner, keyspace_key};
use std::ops::Bound;
use std::sync::Arc;

impl DbInner {
    pub(crate) fn get_at(
        &self,
        keyspace: u32,
        key: &[u8],
        snapshot: u64,
    ) -> Result<Option<Vec<u8>>> {
        self.check_key()?;
        let version = self.versions.current();
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

    pub(crate) fn iter_at(
        &self,
        keyspace: u32,
        lower: Bound<Vec<u8>>,
        upper: Bound<Vec<u8>>,
        snapshot: u64,
    ) -> Result<DbIter> {
        self.check_key()?;
        let version = self.versions.current();
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
