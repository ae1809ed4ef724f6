//! The memtable of sealdb: a concurrent sorted map of internal keys held in memory.
//!
//! Every write lands here after the WAL has it, as one version `(user key, seq)` of its key.
//! A [`Memtable`] keeps all versions, ordered by user key ascending and then by sequence number
//! descending (newest first), so a read at a snapshot is a single seek and a flush can stream the
//! table out in exactly the order an SSTable wants.
//!
//! Inserts and reads run concurrently from any number of threads through `&self`, on a lock-free
//! skiplist. Once [`Memtable::freeze`] returns, the table is immutable and ready to flush.
//!
//! This crate owns memory only: it never does I/O and depends on no other sealdb crate. What is
//! in a memtable is plaintext by design — sealing happens when a flush writes it out.

mod iter;
mod key;

use std::fmt;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crossbeam_skiplist::SkipMap;
use parking_lot::RwLock;

pub use iter::MemtableIter;
pub use key::{Entry, SeqNo, ValueKind};
use key::{InternalKey, Slot};

/// Bytes charged to [`Memtable::approximate_bytes`] for each entry on top of its key and value.
///
/// The estimate for a 64-bit target: the skiplist node holds the key (boxed key-and-value
/// bytes, 16, the key's length, 8, and seq, 8), the kind (padded to 8), a reference count and
/// height word (8) and on average two tower pointers (16): 64 bytes. The node and the
/// key-and-value bytes are two heap allocations, and allocator size classes and bookkeeping
/// add roughly 8–16 bytes to each; 112 stays well above the total (it was set when the value
/// was a third allocation). Being a little high is the safe side: it makes memtables flush
/// early rather than overshoot the write buffer budget.
pub const ENTRY_OVERHEAD: usize = 112;

/// The error of an insert into a memtable that has been frozen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("memtable is frozen")]
pub struct Frozen;

/// A concurrent sorted map from internal keys `(user key, seq)` to values and tombstones.
///
/// `Send + Sync`: share it in an [`Arc`]; inserts and reads need only `&self`.
pub struct Memtable {
    id: u64,
    map: SkipMap<InternalKey, Slot>,
    /// Inserts hold the read side for their whole duration and `freeze` takes the write side,
    /// so when `freeze` returns no insert is half done and none can start: a flush that begins
    /// after `freeze` sees every entry the table will ever hold.
    frozen: RwLock<bool>,
    bytes: AtomicUsize,
    min_seq: AtomicU64,
    max_seq: AtomicU64,
    /// Set after the first insert has updated `min_seq`/`max_seq`, so their initial sentinels
    /// are never reported as real sequence numbers.
    has_seq: AtomicBool,
}

impl Memtable {
    /// Creates an empty, writable memtable. `id` is the engine's name for it (it orders
    /// immutable memtables and ties a flush to its WAL position); the memtable only reports it.
    #[must_use]
    pub fn new(id: u64) -> Self {
        Self {
            id,
            map: SkipMap::new(),
            frozen: RwLock::new(false),
            bytes: AtomicUsize::new(0),
            min_seq: AtomicU64::new(SeqNo::MAX),
            max_seq: AtomicU64::new(0),
            has_seq: AtomicBool::new(false),
        }
    }

    /// The id given to [`Memtable::new`].
    #[must_use]
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Records version `seq` of `key`. For [`ValueKind::Delete`] the `value` is ignored and the
    /// entry stores an empty value.
    ///
    /// Sequence numbers are expected to be unique per entry; inserting the same `(key, seq)`
    /// again replaces the earlier entry (its bytes stay counted in [`Memtable::approximate_bytes`],
    /// which is an estimate).
    ///
    /// # Errors
    ///
    /// [`Frozen`] once [`Memtable::freeze`] has been called; nothing is inserted then.
    pub fn insert(
        &self,
        key: &[u8],
        seq: SeqNo,
        kind: ValueKind,
        value: &[u8],
    ) -> Result<(), Frozen> {
        self.insert_prefixed(&[], key, seq, kind, value)
    }

    /// Like [`Memtable::insert`] for the key `prefix ++ key`, without the caller first
    /// concatenating the two (the stored key is built directly, in one allocation).
    ///
    /// # Errors
    ///
    /// [`Frozen`] once [`Memtable::freeze`] has been called; nothing is inserted then.
    pub fn insert_prefixed(
        &self,
        prefix: &[u8],
        key: &[u8],
        seq: SeqNo,
        kind: ValueKind,
        value: &[u8],
    ) -> Result<(), Frozen> {
        let frozen = self.frozen.read();
        if *frozen {
            return Err(Frozen);
        }
        let value = match kind {
            ValueKind::Put => value,
            ValueKind::Delete => &[],
        };
        self.bytes.fetch_add(
            prefix.len() + key.len() + value.len() + ENTRY_OVERHEAD,
            Ordering::Relaxed,
        );
        // Each thread updates the bounds before it publishes `has_seq`, so a reader that sees
        // the flag also sees real bounds, never the sentinels.
        self.min_seq.fetch_min(seq, Ordering::Relaxed);
        self.max_seq.fetch_max(seq, Ordering::Relaxed);
        self.has_seq.store(true, Ordering::Release);
        self.map.insert(
            InternalKey::with_value(prefix, key, value, seq),
            Slot { kind },
        );
        drop(frozen);
        Ok(())
    }

    /// The newest version of `key` with a sequence number at most `snapshot`.
    ///
    /// `None`: no such version is here (older tables may still have one). `Some((seq, None))`:
    /// a tombstone, so the key is deleted at `snapshot` and older tables must not be consulted.
    /// `Some((seq, Some(value)))`: the value.
    #[must_use]
    pub fn get(&self, key: &[u8], snapshot: SeqNo) -> Option<(SeqNo, Option<Vec<u8>>)> {
        // Versions of a key are ordered newest first, so the first entry at or after
        // `(key, snapshot)` is the newest version visible at the snapshot, if it is still `key`.
        let probe = InternalKey::new(key, snapshot);
        let found = self.map.lower_bound(Bound::Included(&probe))?;
        if found.key().user_key() != key {
            return None;
        }
        let slot = found.value();
        let value = match slot.kind {
            ValueKind::Put => Some(found.key().value().to_vec()),
            ValueKind::Delete => None,
        };
        Some((found.key().seq.0, value))
    }

    /// Makes the memtable immutable: every later [`Memtable::insert`] fails with [`Frozen`].
    /// Waits for inserts already under way, so once this returns the contents are final.
    /// Reads and iterators keep working. Freezing twice is harmless.
    pub fn freeze(&self) {
        *self.frozen.write() = true;
    }

    /// Whether [`Memtable::freeze`] has been called.
    #[must_use]
    pub fn is_frozen(&self) -> bool {
        *self.frozen.read()
    }

    /// Estimated memory held by the entries: for each insert, key and value length plus
    /// [`ENTRY_OVERHEAD`]. Maintained atomically, so it is cheap to poll on the write path.
    #[must_use]
    pub fn approximate_bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Number of entries (versions, not distinct user keys).
    #[must_use]
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the memtable holds no entries.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The smallest sequence number inserted, or `None` while empty.
    ///
    /// While inserts are under way it may run slightly ahead of what [`Memtable::get`] can see;
    /// after [`Memtable::freeze`] it is exact.
    #[must_use]
    pub fn min_seq(&self) -> Option<SeqNo> {
        self.has_seq
            .load(Ordering::Acquire)
            .then(|| self.min_seq.load(Ordering::Relaxed))
    }

    /// The largest sequence number inserted, or `None` while empty; same caveat as
    /// [`Memtable::min_seq`].
    #[must_use]
    pub fn max_seq(&self) -> Option<SeqNo> {
        self.has_seq
            .load(Ordering::Acquire)
            .then(|| self.max_seq.load(Ordering::Relaxed))
    }

    /// An owned cursor over every entry (all versions, tombstones included) whose user key is
    /// within `lower..upper`, in internal order: user key ascending, then seq descending.
    /// Iterating from the back yields the exact reverse; see [`MemtableIter`].
    ///
    /// The cursor keeps the memtable alive and never blocks writers. Entries inserted while it
    /// runs may or may not be yielded; the engine filters by snapshot, so that does not matter.
    #[must_use]
    pub fn iter(self: &Arc<Self>, lower: Bound<Vec<u8>>, upper: Bound<Vec<u8>>) -> MemtableIter {
        MemtableIter::new(Arc::clone(self), lower, upper)
    }

    /// Calls `f` with every entry (all versions, tombstones included) in internal order,
    /// lending the key and value in place instead of copying them: for a flush, which reads a
    /// frozen table once front to back and writes each entry straight into a table builder,
    /// the copies [`Memtable::iter`] makes are most of its cost. Stops at the first error `f`
    /// returns and passes it on.
    ///
    /// Entries inserted while it runs may or may not be seen (after [`Memtable::freeze`],
    /// none are).
    pub fn try_for_each<E>(
        &self,
        mut f: impl FnMut(EntryRef<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        for e in self.map.iter() {
            let (k, slot) = (e.key(), e.value());
            f(EntryRef {
                key: k.user_key(),
                seq: k.seq.0,
                kind: slot.kind,
                value: k.value(),
            })?;
        }
        Ok(())
    }
}

/// One entry lent by [`Memtable::try_for_each`]: the key and value stay in the memtable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryRef<'a> {
    /// The user key.
    pub key: &'a [u8],
    /// The sequence number this version was written at.
    pub seq: SeqNo,
    /// Whether this version is a value or a tombstone.
    pub kind: ValueKind,
    /// The value; always empty for [`ValueKind::Delete`].
    pub value: &'a [u8],
}

impl fmt::Debug for Memtable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the contents: they are user keys and values in clear.
        f.debug_struct("Memtable")
            .field("id", &self.id)
            .field("len", &self.len())
            .field("approximate_bytes", &self.approximate_bytes())
            .field("min_seq", &self.min_seq())
            .field("max_seq", &self.max_seq())
            .field("frozen", &self.is_frozen())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync + 'static>() {}

    #[test]
    fn a_value_stored_with_its_key_reads_back_and_a_reinsert_replaces_it() {
        let m = Arc::new(Memtable::new(1));
        m.insert(b"k", 3, ValueKind::Put, b"first").expect("insert");
        m.insert(b"k", 4, ValueKind::Delete, b"dropped")
            .expect("insert");
        m.insert(b"kk", 5, ValueKind::Put, b"").expect("insert");
        assert_eq!(m.get(b"k", 3), Some((3, Some(b"first".to_vec()))));
        assert_eq!(m.get(b"k", 9), Some((4, None)));
        assert_eq!(m.get(b"kk", 9), Some((5, Some(Vec::new()))));
        // The same version again replaces the entry, value included.
        m.insert(b"k", 3, ValueKind::Put, b"second")
            .expect("insert");
        assert_eq!(m.get(b"k", 3), Some((3, Some(b"second".to_vec()))));
        let all: Vec<Entry> = m.iter(Bound::Unbounded, Bound::Unbounded).collect();
        let seen: Vec<(&[u8], u64, &[u8])> = all
            .iter()
            .map(|e| (e.key.as_slice(), e.seq, e.value.as_slice()))
            .collect();
        assert_eq!(
            seen,
            vec![
                (b"k".as_slice(), 4, b"".as_slice()),
                (b"k", 3, b"second"),
                (b"kk", 5, b""),
            ]
        );
        // A key that is a prefix of another key plus its value is still its own key.
        assert_eq!(m.get(b"kkfirst", 9), None);
    }

    #[test]
    fn insert_prefixed_stores_the_joined_key_like_insert_does() {
        let joined = Arc::new(Memtable::new(1));
        let split = Arc::new(Memtable::new(2));
        joined
            .insert(b"\0\0\0\x07user", 5, ValueKind::Put, b"v")
            .expect("insert");
        joined
            .insert(b"\0\0\0\x07gone", 6, ValueKind::Delete, b"ignored")
            .expect("insert");
        split
            .insert_prefixed(&7u32.to_be_bytes(), b"user", 5, ValueKind::Put, b"v")
            .expect("insert");
        split
            .insert_prefixed(
                &7u32.to_be_bytes(),
                b"gone",
                6,
                ValueKind::Delete,
                b"ignored",
            )
            .expect("insert");
        let a: Vec<Entry> = joined.iter(Bound::Unbounded, Bound::Unbounded).collect();
        let b: Vec<Entry> = split.iter(Bound::Unbounded, Bound::Unbounded).collect();
        assert_eq!(a, b);
        assert_eq!(
            split.get(b"\0\0\0\x07user", 9),
            Some((5, Some(b"v".to_vec())))
        );
        assert_eq!(split.get(b"\0\0\0\x07gone", 9), Some((6, None)));
        // The prefix is part of the key's size, as it is when the caller joins the two.
        assert_eq!(joined.approximate_bytes(), split.approximate_bytes());
        split.freeze();
        assert_eq!(
            split.insert_prefixed(b"p", b"k", 7, ValueKind::Put, b"v"),
            Err(Frozen)
        );
    }

    #[test]
    fn try_for_each_lends_every_entry_in_the_order_iter_yields() {
        let m = Arc::new(Memtable::new(1));
        for (i, k) in [b"b".as_slice(), b"a", b"c", b"a", b"b"].iter().enumerate() {
            let seq = i as u64 + 1;
            let kind = if seq == 4 {
                ValueKind::Delete
            } else {
                ValueKind::Put
            };
            m.insert(k, seq, kind, format!("v{seq}").as_bytes())
                .expect("insert");
        }
        let mut lent = Vec::new();
        m.try_for_each(|e| {
            lent.push(Entry {
                key: e.key.to_vec(),
                seq: e.seq,
                kind: e.kind,
                value: e.value.to_vec(),
            });
            Ok::<(), ()>(())
        })
        .expect("no error");
        let owned: Vec<Entry> = m.iter(Bound::Unbounded, Bound::Unbounded).collect();
        assert_eq!(lent, owned);
        assert_eq!(lent.len(), 5);
        assert_eq!((lent[0].key.as_slice(), lent[0].seq), (b"a".as_slice(), 4));
        assert_eq!(lent[0].kind, ValueKind::Delete);
        assert!(lent[0].value.is_empty());

        // The first error stops the walk and comes back.
        let mut seen = 0;
        let r = m.try_for_each(|e| {
            seen += 1;
            if e.key == b"b" { Err(e.seq) } else { Ok(()) }
        });
        assert_eq!(r, Err(5));
        assert_eq!(seen, 3);
    }

    #[test]
    fn memtable_and_iterator_are_send_sync_and_static() {
        assert_send_sync::<Memtable>();
        assert_send_sync::<MemtableIter>();
    }

    #[test]
    fn get_returns_newest_version_at_or_below_snapshot() -> Result<(), Frozen> {
        let table = Memtable::new(7);
        assert_eq!(table.id(), 7);
        table.insert(b"k", 10, ValueKind::Put, b"v10")?;
        table.insert(b"k", 20, ValueKind::Delete, b"")?;
        table.insert(b"k", 30, ValueKind::Put, b"v30")?;
        table.insert(b"j", 15, ValueKind::Put, b"j15")?;
        table.insert(b"ka", 5, ValueKind::Put, b"ka5")?;

        assert_eq!(table.get(b"k", 9), None);
        assert_eq!(table.get(b"k", 10), Some((10, Some(b"v10".to_vec()))));
        assert_eq!(table.get(b"k", 19), Some((10, Some(b"v10".to_vec()))));
        assert_eq!(table.get(b"k", 20), Some((20, None)));
        assert_eq!(table.get(b"k", 29), Some((20, None)));
        assert_eq!(
            table.get(b"k", SeqNo::MAX),
            Some((30, Some(b"v30".to_vec())))
        );
        // Neighbouring keys must not leak into each other's lookups.
        assert_eq!(table.get(b"ka", 4), None);
        assert_eq!(table.get(b"j", 14), None);
        assert_eq!(table.get(b"", SeqNo::MAX), None);
        assert_eq!(table.get(b"kb", SeqNo::MAX), None);
        Ok(())
    }

    #[test]
    fn extreme_sequence_numbers_are_ordinary_versions() -> Result<(), Frozen> {
        let table = Memtable::new(0);
        table.insert(b"k", 0, ValueKind::Put, b"zero")?;
        table.insert(b"k", SeqNo::MAX, ValueKind::Put, b"max")?;
        assert_eq!(table.get(b"k", 0), Some((0, Some(b"zero".to_vec()))));
        assert_eq!(
            table.get(b"k", SeqNo::MAX - 1),
            Some((0, Some(b"zero".to_vec())))
        );
        assert_eq!(
            table.get(b"k", SeqNo::MAX),
            Some((SeqNo::MAX, Some(b"max".to_vec())))
        );
        assert_eq!(table.min_seq(), Some(0));
        assert_eq!(table.max_seq(), Some(SeqNo::MAX));
        Ok(())
    }

    #[test]
    fn delete_stores_no_value() -> Result<(), Frozen> {
        let table = Arc::new(Memtable::new(0));
        table.insert(b"k", 1, ValueKind::Delete, b"ignored")?;
        assert_eq!(table.get(b"k", 1), Some((1, None)));
        assert_eq!(table.approximate_bytes(), 1 + ENTRY_OVERHEAD);
        let all: Vec<Entry> = table.iter(Bound::Unbounded, Bound::Unbounded).collect();
        assert_eq!(
            all,
            vec![Entry {
                key: b"k".to_vec(),
                seq: 1,
                kind: ValueKind::Delete,
                value: Vec::new(),
            }]
        );
        Ok(())
    }

    #[test]
    fn reinserting_the_same_version_replaces_it() -> Result<(), Frozen> {
        let table = Memtable::new(0);
        table.insert(b"k", 1, ValueKind::Put, b"first")?;
        table.insert(b"k", 1, ValueKind::Put, b"second")?;
        assert_eq!(table.len(), 1);
        assert_eq!(table.get(b"k", 1), Some((1, Some(b"second".to_vec()))));
        Ok(())
    }

    #[test]
    fn counters_track_inserts() -> Result<(), Frozen> {
        let table = Memtable::new(0);
        assert!(table.is_empty());
        assert_eq!(table.len(), 0);
        assert_eq!(table.approximate_bytes(), 0);
        assert_eq!(table.min_seq(), None);
        assert_eq!(table.max_seq(), None);

        table.insert(b"abc", 42, ValueKind::Put, b"12345")?;
        table.insert(b"x", 7, ValueKind::Put, b"")?;
        table.insert(b"yy", 99, ValueKind::Delete, b"")?;
        assert!(!table.is_empty());
        assert_eq!(table.len(), 3);
        assert_eq!(
            table.approximate_bytes(),
            3 + 5 + 1 + 2 + 3 * ENTRY_OVERHEAD
        );
        assert_eq!(table.min_seq(), Some(7));
        assert_eq!(table.max_seq(), Some(99));
        Ok(())
    }

    #[test]
    fn frozen_memtable_rejects_inserts_but_serves_reads() -> Result<(), Frozen> {
        let table = Arc::new(Memtable::new(3));
        table.insert(b"a", 1, ValueKind::Put, b"1")?;
        assert!(!table.is_frozen());
        table.freeze();
        assert!(table.is_frozen());

        assert_eq!(table.insert(b"b", 2, ValueKind::Put, b"2"), Err(Frozen));
        assert_eq!(Frozen.to_string(), "memtable is frozen");
        assert_eq!(table.len(), 1);
        assert_eq!(table.max_seq(), Some(1));
        assert_eq!(table.approximate_bytes(), 2 + ENTRY_OVERHEAD);
        assert_eq!(table.get(b"a", 1), Some((1, Some(b"1".to_vec()))));
        assert_eq!(table.get(b"b", 2), None);
        assert_eq!(table.iter(Bound::Unbounded, Bound::Unbounded).count(), 1);

        table.freeze();
        assert!(table.is_frozen());
        Ok(())
    }

    #[test]
    fn debug_output_never_shows_contents() -> Result<(), Frozen> {
        let table = Arc::new(Memtable::new(1));
        table.insert(b"secret-key", 1, ValueKind::Put, b"secret-value")?;
        let shown = format!(
            "{table:?} {:?}",
            table.iter(Bound::Unbounded, Bound::Unbounded)
        );
        assert!(!shown.contains("secret"), "{shown}");
        Ok(())
    }
}
