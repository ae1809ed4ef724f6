//! A sharded LRU cache of decrypted, decompressed and decoded data blocks.
//!
//! It lives in memory only: caching plaintext is the point (encryption protects durable media,
//! like an in-memory cache tier). Keys are `(cache id, block offset)`, where every open
//! [`Table`](crate::Table) draws a fresh cache id from its cache, so two tables never share an
//! entry even if their files were to collide on id or offset.

use crate::block::DataBlock;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

const SHARDS: usize = 16;
const NIL: usize = usize::MAX;

type Key = (u64, u64);

/// A byte-budgeted block cache shared by any number of tables.
pub struct BlockCache {
    shards: [Mutex<Shard>; SHARDS],
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
    /// A cache holding at most about `capacity_bytes` of decoded blocks (split evenly across
    /// its shards; a block larger than one shard's share is never cached).
    pub fn new(capacity_bytes: usize) -> Arc<Self> {
        let per_shard = capacity_bytes / SHARDS;
        Arc::new(Self {
            shards: std::array::from_fn(|_| Mutex::new(Shard::new(per_shard))),
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
        self.shards.iter().map(|s| s.lock().usage).sum()
    }

    /// The byte budget.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Drops every cached block (counters are kept).
    pub fn clear(&self) {
        for s in &self.shards {
            let mut shard = s.lock();
            let cap = shard.capacity;
            *shard = Shard::new(cap);
        }
    }

    /// A fresh id for a table's entries.
    pub(crate) fn new_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn shard(&self, key: Key) -> &Mutex<Shard> {
        // Offsets of neighbouring blocks differ in their low bits only after the block size,
        // so mix before picking a shard.
        let h = mix(key.0 ^ key.1.rotate_left(29));
        let i = (h as usize) % SHARDS;
        self.shards.get(i).unwrap_or(&self.shards[0])
    }

    pub(crate) fn get(&self, id: u64, offset: u64) -> Option<Arc<DataBlock>> {
        let found = self.shard((id, offset)).lock().get((id, offset));
        match found {
            Some(_) => self.hits.fetch_add(1, Ordering::Relaxed),
            None => self.misses.fetch_add(1, Ordering::Relaxed),
        };
        found
    }

    pub(crate) fn insert(&self, id: u64, offset: u64, block: Arc<DataBlock>) {
        let charge = block.charge();
        self.shard((id, offset))
            .lock()
            .insert((id, offset), block, charge);
    }
}

fn mix(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k
}

struct Node {
    key: Key,
    value: Option<Arc<DataBlock>>,
    charge: usize,
    prev: usize,
    next: usize,
}

/// One LRU list: nodes in a vector linked by index (most recent at `head`), so no unsafe
/// pointer juggling is needed.
struct Shard {
    map: HashMap<Key, usize>,
    nodes: Vec<Node>,
    free: Vec<usize>,
    head: usize,
    tail: usize,
    usage: usize,
    capacity: usize,
}

impl Shard {
    fn new(capacity: usize) -> Self {
        Self {
            map: HashMap::new(),
            nodes: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            usage: 0,
            capacity,
        }
    }

    fn unlink(&mut self, i: usize) {
        let (prev, next) = match self.nodes.get(i) {
            Some(n) => (n.prev, n.next),
            None => return,
        };
        match self.nodes.get_mut(prev) {
            Some(p) => p.next = next,
            None => self.head = next,
        }
        match self.nodes.get_mut(next) {
            Some(n) => n.prev = prev,
            None => self.tail = prev,
        }
    }

    fn push_front(&mut self, i: usize) {
        let old = self.head;
        if let Some(n) = self.nodes.get_mut(i) {
            n.prev = NIL;
            n.next = old;
        }
        match self.nodes.get_mut(old) {
            Some(h) => h.prev = i,
            None => self.tail = i,
        }
        self.head = i;
    }

    fn get(&mut self, key: Key) -> Option<Arc<DataBlock>> {
        let i = *self.map.get(&key)?;
        if self.head != i {
            self.unlink(i);
            self.push_front(i);
        }
        self.nodes.get(i).and_then(|n| n.value.clone())
    }

    fn insert(&mut self, key: Key, value: Arc<DataBlock>, charge: usize) {
        if charge > self.capacity {
            return;
        }
        if let Some(&i) = self.map.get(&key) {
            // Another reader loaded the same block concurrently; keep one copy.
            if self.head != i {
                self.unlink(i);
                self.push_front(i);
            }
            return;
        }
        let node = Node {
            key,
            value: Some(value),
            charge,
            prev: NIL,
            next: NIL,
        };
        let i = match self.free.pop() {
            Some(i) => {
                if let Some(slot) = self.nodes.get_mut(i) {
                    *slot = node;
                }
                i
            }
            None => {
                self.nodes.push(node);
                self.nodes.len() - 1
            }
        };
        self.map.insert(key, i);
        self.push_front(i);
        self.usage += charge;
        while self.usage > self.capacity && self.tail != NIL {
            self.evict(self.tail);
        }
    }

    fn evict(&mut self, i: usize) {
        self.unlink(i);
        if let Some(n) = self.nodes.get_mut(i) {
            self.usage -= n.charge;
            n.value = None;
            n.charge = 0;
            self.map.remove(&n.key);
            self.free.push(i);
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

    #[test]
    fn evicts_least_recently_used_within_budget() {
        let b = block(10);
        let charge = b.charge();
        let mut s = Shard::new(charge * 3);
        for k in 0..3u64 {
            s.insert((1, k), b.clone(), charge);
        }
        assert!(s.get((1, 0)).is_some());
        s.insert((1, 3), b.clone(), charge);
        assert!(s.get((1, 1)).is_none(), "least recently used is evicted");
        assert!(s.get((1, 0)).is_some());
        assert!(s.get((1, 2)).is_some());
        assert!(s.get((1, 3)).is_some());
        assert_eq!(s.usage, charge * 3);
        for k in 4..100u64 {
            s.insert((1, k), b.clone(), charge);
        }
        assert_eq!(s.usage, charge * 3);
        assert!(s.nodes.len() <= 4, "slots are reused");
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
