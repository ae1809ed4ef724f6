//! A byte-budgeted cache of decrypted, decompressed and decoded data blocks.
//!
//! It lives in memory only: caching plaintext is the point (encryption protects durable media,
//! like an in-memory cache tier). Keys are `(cache id, block offset)`, where every open
//! [`Table`](crate::Table) draws a fresh cache id from its cache, so two tables never share an
//! entry even if their files were to collide on id or offset.
//!
//! The policy is `quick_cache`'s S3-FIFO: a hit takes its shard's lock for reading and sets a
//! reference bit, instead of relinking an LRU list under an exclusive lock, so concurrent
//! scans and point reads of hot blocks do not serialize on the cache. Keys hash with foldhash
//! (two integers need no DoS-resistant SipHash: ids and offsets are not attacker-chosen).

use crate::block::DataBlock;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

type Key = (u64, u64);

/// Rough decoded size of a block, only to size the cache's tables up front.
const TYPICAL_BLOCK_CHARGE: usize = 8 << 10;

/// Weighs an entry by the bytes its decoded block holds, so the budget is in bytes.
#[derive(Debug, Clone, Copy)]
struct ByCharge;

impl quick_cache::Weighter<Key, Arc<DataBlock>> for ByCharge {
    fn weight(&self, _key: &Key, block: &Arc<DataBlock>) -> u64 {
        // At least 1: a zero-weight entry would never be evicted.
        (block.charge() as u64).max(1)
    }
}

type Inner = quick_cache::sync::Cache<
    Key,
    Arc<DataBlock>,
    ByCharge,
    foldhash::fast::RandomState,
    quick_cache::sync::DefaultLifecycle<Key, Arc<DataBlock>>,
>;

/// A byte-budgeted block cache shared by any number of tables.
pub struct BlockCache {
    /// `None` for a zero budget: nothing is ever cached.
    inner: Option<Inner>,
    capacity: usize,
    hits: AtomicU64,
    misses: AtomicU64,
    next_id: AtomicU64,
}

impl fmt::Debug for BlockCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockCache")
            .field("capacity", &self.capacity)
            .field("usage", &self.usage_bytes())
            .field("hits", &self.hits())
            .field("misses", &self.misses())
            .finish()
    }
}

impl BlockCache {
    /// A cache holding at most about `capacity_bytes` of decoded blocks (split across its
    /// shards; a block larger than what one shard admits is never cached).
    pub fn new(capacity_bytes: usize) -> Arc<Self> {
        let items = (capacity_bytes / TYPICAL_BLOCK_CHARGE).max(1);
        let inner = quick_cache::OptionsBuilder::new()
            .estimated_items_capacity(items)
            .weight_capacity(capacity_bytes as u64)
            .build()
            .ok()
            .filter(|_| capacity_bytes > 0)
            .map(|opts| {
                Inner::with_options(
                    opts,
                    ByCharge,
                    foldhash::fast::RandomState::default(),
                    quick_cache::sync::DefaultLifecycle::default(),
                )
            });
        Arc::new(Self {
            inner,
            capacity: capacity_bytes,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            next_id: AtomicU64::new(1),
        })
    }

    /// Lookups that found their block.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Lookups that had to read and decrypt their block.
    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    /// Bytes of blocks held now.
    pub fn usage_bytes(&self) -> usize {
        self.inner
            .as_ref()
            .map_or(0, |c| usize::try_from(c.weight()).unwrap_or(usize::MAX))
    }

    /// The byte budget.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Drops every cached block (counters are kept).
    pub fn clear(&self) {
        if let Some(c) = &self.inner {
            c.clear();
        }
    }

    /// A fresh id for a table's entries.
    pub(crate) fn new_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn get(&self, id: u64, offset: u64) -> Option<Arc<DataBlock>> {
        let found = self.inner.as_ref().and_then(|c| c.get(&(id, offset)));
        match found {
            Some(_) => self.hits.fetch_add(1, Ordering::Relaxed),
            None => self.misses.fetch_add(1, Ordering::Relaxed),
        };
        found
    }

    pub(crate) fn insert(&self, id: u64, offset: u64, block: Arc<DataBlock>) {
        if let Some(c) = &self.inner {
            // Another reader may have loaded the same block concurrently: either copy is the
            // same plaintext, and the cache keeps one.
            c.insert((id, offset), block);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ValueKind;
    use crate::block::{BlockBuilder, encode_block_payload};

    fn block(n: usize) -> Arc<DataBlock> {
        let mut b = BlockBuilder::default();
        for i in 0..n {
            b.add(format!("{i:08}").as_bytes(), 1, ValueKind::Put, b"v");
        }
        let mut out = Vec::new();
        encode_block_payload(b.finish(), false, &mut out);
        Arc::new(DataBlock::decode(out).expect("decodes"))
    }

    /// A block whose first key names `tag`, so a lookup can tell which block it got.
    fn tagged(tag: u64, n: usize) -> Arc<DataBlock> {
        let mut b = BlockBuilder::default();
        for i in 0..n {
            b.add(
                format!("{tag:016}/{i:08}").as_bytes(),
                1,
                ValueKind::Put,
                b"v",
            );
        }
        let mut out = Vec::new();
        encode_block_payload(b.finish(), false, &mut out);
        Arc::new(DataBlock::decode(out).expect("decodes"))
    }

    #[test]
    fn evicts_by_bytes_within_budget() {
        let charge = tagged(0, 10).charge();
        let budget = charge * 4;
        let cache = BlockCache::new(budget);
        for k in 0..200u64 {
            cache.insert(1, k, tagged(k, 10));
            assert!(
                cache.usage_bytes() <= budget,
                "usage {} over budget {budget} after {k} inserts",
                cache.usage_bytes()
            );
        }
        assert!(cache.usage_bytes() >= charge, "recent blocks are kept");
        let present = (0..200u64).filter(|k| cache.get(1, *k).is_some()).count();
        assert!((1..=4).contains(&present), "{present} blocks held");
        // A block over the whole budget is refused; what was held stays within budget.
        let big = tagged(999, 2000);
        assert!(big.charge() > budget);
        cache.insert(2, 0, big);
        assert!(cache.get(2, 0).is_none());
        assert!(cache.usage_bytes() <= budget);
    }

    #[test]
    fn a_hit_after_insert_returns_that_block() {
        let cache = BlockCache::new(1 << 20);
        let (a, b) = (cache.new_id(), cache.new_id());
        assert_ne!(a, b);
        let block = tagged(7, 10);
        cache.insert(a, 4096, Arc::clone(&block));
        let got = cache.get(a, 4096).expect("hit");
        assert!(Arc::ptr_eq(&got, &block));
        assert!(cache.get(b, 4096).is_none(), "another table's id misses");
        assert!(cache.get(a, 0).is_none(), "another offset misses");
        assert_eq!((cache.hits(), cache.misses()), (1, 2));
        assert_eq!(cache.usage_bytes(), block.charge());
        assert!(BlockCache::new(0).get(a, 4096).is_none());
    }

    #[test]
    fn concurrent_readers_and_writers_get_the_right_blocks() {
        let charge = tagged(0, 10).charge();
        let budget = charge * 64;
        let cache = BlockCache::new(budget);
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let cache = &cache;
                s.spawn(move || {
                    for round in 0..2000u64 {
                        let k = (round * 7 + t * 13) % 128;
                        match cache.get(1, k) {
                            Some(b) => assert_eq!(b.key(0), format!("{k:016}/{:08}", 0).as_bytes()),
                            None => cache.insert(1, k, tagged(k, 10)),
                        }
                    }
                });
            }
        });
        assert!(cache.usage_bytes() <= budget);
        assert_eq!(cache.hits() + cache.misses(), 8000);
        assert!(cache.hits() > 0);
    }

    #[test]
    fn counts_hits_and_misses_and_refuses_oversized_blocks() {
        let cache = BlockCache::new(1 << 20);
        let id = cache.new_id();
        assert!(cache.get(id, 0).is_none());
        cache.insert(id, 0, block(5));
        assert!(cache.get(id, 0).is_some());
        assert_eq!((cache.hits(), cache.misses()), (1, 1));
        assert!(cache.usage_bytes() > 0);
        let tiny = BlockCache::new(16);
        tiny.insert(1, 0, block(5));
        assert_eq!(tiny.usage_bytes(), 0);
        cache.clear();
        assert_eq!(cache.usage_bytes(), 0);
    }
}
