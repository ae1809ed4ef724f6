//! The owned, double-ended cursor over a memtable's entries.
//!
//! A skiplist range borrows the map, and a cursor that the engine can keep in a struct, send to
//! another thread or merge with table iterators must be `'static`. So the cursor owns an
//! `Arc<Memtable>` and reads in batches: each end keeps a small buffer of owned entries and,
//! when it runs dry, opens a fresh range just past the last entry it fetched. That costs one
//! skiplist search per batch, not per entry.
//!
//! Each end also acts as a fence for the other: the front never yields an entry that the back
//! has yielded and vice versa, so the two ends meet in the middle as with std's double-ended
//! iterators. An end's fence is the first entry in its buffer when it has one (the next entry it
//! would yield), and otherwise the position its next fetch starts from.

use std::cmp::Ordering;
use std::collections::VecDeque;
use std::fmt;
use std::ops::Bound;
use std::sync::Arc;

use crate::Memtable;
use crate::key::{Entry, EntryOrder, InternalKey, SeqNo, Slot};

/// The first fetch after creation or a seek is small, because a merging iterator often reads
/// only a few entries from each source before seeking again...
const FIRST_BATCH: usize = 16;
/// ...and later fetches double up to this, because a long scan should pay for a skiplist
/// search rarely but the buffer should stay a few kilobytes, not the whole table.
const MAX_BATCH: usize = 64;

/// An owned cursor over a [`Memtable`]'s entries in internal order (user key ascending, then
/// seq descending), created by [`Memtable::iter`].
///
/// It is an [`Iterator`] and a [`DoubleEndedIterator`]: `next` and `next_back` may be mixed,
/// and the ends meet in the middle without ever yielding an entry twice. [`MemtableIter::seek`]
/// and [`MemtableIter::seek_back`] reposition one end.
///
/// Entries inserted while the cursor is live may or may not be yielded, but whatever is
/// yielded is in order and yielded once.
pub struct MemtableIter {
    table: Arc<Memtable>,
    /// The caller's user-key bounds, kept so that seeks stay within them.
    lower: Bound<Vec<u8>>,
    upper: Bound<Vec<u8>>,
    front: End,
    back: End,
}

/// The state of one end of the cursor.
struct End {
    /// Fetched, not yet yielded, in the order this end yields them.
    buf: VecDeque<Entry>,
    /// Where this end's next fetch starts, in internal keys: a bound from the caller or a seek,
    /// or just past the last entry fetched.
    pos: Bound<InternalKey>,
    /// Whether this end has yielded anything or been repositioned. Until then the other end
    /// cannot repeat any of its entries and its fetches already respect the caller's bound, so
    /// it skips comparing each entry against this end's fence: a plain one-way scan pays no
    /// per-entry comparison.
    moved: bool,
    batch: usize,
}

impl End {
    fn new(pos: Bound<InternalKey>) -> Self {
        Self {
            buf: VecDeque::new(),
            pos,
            moved: false,
            batch: FIRST_BATCH,
        }
    }

    fn reposition(&mut self, pos: Bound<InternalKey>) {
        self.buf.clear();
        self.pos = pos;
        self.moved = true;
        self.batch = FIRST_BATCH;
    }

    /// This end's fence as an internal-key bound for the other end's fetch. Allocates only
    /// when the fence is a buffered entry.
    fn fence(&self) -> FenceBound<'_> {
        match self.buf.front() {
            Some(entry) => FenceBound::Owned(InternalKey::of_entry(entry)),
            None => FenceBound::Pos(self.pos.as_ref()),
        }
    }

    /// Compares `entry` with this end's fence. Which side is allowed depends on which end this
    /// is, so the caller decides (`below_upper` for the back's fence, `above_lower` for the
    /// front's).
    fn cmp_fence(&self, entry: &Entry) -> FenceCmp {
        match self.buf.front() {
            Some(next) => FenceCmp::Included(entry.cmp_entry(next)),
            None => match &self.pos {
                Bound::Included(key) => FenceCmp::Included(entry.cmp_key(key)),
                Bound::Excluded(key) => FenceCmp::Excluded(entry.cmp_key(key)),
                Bound::Unbounded => FenceCmp::Unbounded,
            },
        }
    }
}

enum FenceBound<'a> {
    Owned(InternalKey),
    Pos(Bound<&'a InternalKey>),
}

impl FenceBound<'_> {
    fn as_bound(&self) -> Bound<&InternalKey> {
        match self {
            // A buffered entry has not been yielded by its end yet, so the other end may still
            // take it: the fence includes it.
            FenceBound::Owned(key) => Bound::Included(key),
            FenceBound::Pos(bound) => *bound,
        }
    }
}

/// An entry compared with a fence, together with whether the fence itself may be taken.
enum FenceCmp {
    Included(Ordering),
    Excluded(Ordering),
    Unbounded,
}

impl FenceCmp {
    /// Whether the entry is on or below an upper fence.
    fn below_upper(self) -> bool {
        match self {
            FenceCmp::Included(ord) => ord != Ordering::Greater,
            FenceCmp::Excluded(ord) => ord == Ordering::Less,
            FenceCmp::Unbounded => true,
        }
    }

    /// Whether the entry is on or above a lower fence.
    fn above_lower(self) -> bool {
        match self {
            FenceCmp::Included(ord) => ord != Ordering::Less,
            FenceCmp::Excluded(ord) => ord == Ordering::Greater,
            FenceCmp::Unbounded => true,
        }
    }
}

/// Translates a lower bound on user keys into internal keys: versions of a key run from
/// `SeqNo::MAX` down to 0, so including a key starts at its `MAX` and excluding it starts past
/// its 0.
fn lower_to_internal(bound: &Bound<Vec<u8>>) -> Bound<InternalKey> {
    match bound {
        Bound::Included(key) => Bound::Included(InternalKey::new(key, SeqNo::MAX)),
        Bound::Excluded(key) => Bound::Excluded(InternalKey::new(key, 0)),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// Translates an upper bound on user keys into internal keys; the mirror of
/// [`lower_to_internal`].
fn upper_to_internal(bound: &Bound<Vec<u8>>) -> Bound<InternalKey> {
    match bound {
        Bound::Included(key) => Bound::Included(InternalKey::new(key, 0)),
        Bound::Excluded(key) => Bound::Excluded(InternalKey::new(key, SeqNo::MAX)),
        Bound::Unbounded => Bound::Unbounded,
    }
}

fn to_entry(found: &crossbeam_skiplist::map::Entry<'_, InternalKey, Slot>) -> Entry {
    let (key, slot) = (found.key(), found.value());
    Entry {
        key: key.user_key().to_vec(),
        seq: key.seq.0,
        kind: slot.kind,
        value: key.value().to_vec(),
    }
}

impl MemtableIter {
    pub(crate) fn new(table: Arc<Memtable>, lower: Bound<Vec<u8>>, upper: Bound<Vec<u8>>) -> Self {
        let front = End::new(lower_to_internal(&lower));
        let back = End::new(upper_to_internal(&upper));
        Self {
            table,
            lower,
            upper,
            front,
            back,
        }
    }

    /// Repositions the front: the next [`Iterator::next`] yields the first entry (its newest
    /// version) whose user key is `>= key`, within the cursor's bounds.
    ///
    /// The front may move backwards as well as forwards, so entries it yielded before can be
    /// yielded again; entries the back end has already yielded stay excluded.
    pub fn seek(&mut self, key: &[u8]) {
        let target = match &self.lower {
            Bound::Included(lower) if key < lower.as_slice() => lower_to_internal(&self.lower),
            Bound::Excluded(lower) if key <= lower.as_slice() => lower_to_internal(&self.lower),
            _ => Bound::Included(InternalKey::new(key, SeqNo::MAX)),
        };
        self.front.reposition(target);
    }

    /// Repositions the back: the next [`DoubleEndedIterator::next_back`] yields the last entry
    /// (the oldest version) whose user key is `<= key`, within the cursor's bounds.
    ///
    /// The mirror of [`MemtableIter::seek`]: entries the front has yielded stay excluded.
    pub fn seek_back(&mut self, key: &[u8]) {
        let target = match &self.upper {
            Bound::Included(upper) if key > upper.as_slice() => upper_to_internal(&self.upper),
            Bound::Excluded(upper) if key >= upper.as_slice() => upper_to_internal(&self.upper),
            _ => Bound::Included(InternalKey::new(key, 0)),
        };
        self.back.reposition(target);
    }

    fn refill_front(&mut self) {
        let fence = self.back.fence();
        let range = self
            .table
            .map
            .range::<InternalKey, _>((self.front.pos.as_ref(), fence.as_bound()));
        self.front
            .buf
            .extend(range.take(self.front.batch).map(|found| to_entry(&found)));
        // Only called with an empty buffer, so its last entry is the last one fetched.
        if let Some(last) = self.front.buf.back() {
            self.front.pos = Bound::Excluded(InternalKey::of_entry(last));
        }
        self.front.batch = (self.front.batch * 2).min(MAX_BATCH);
    }

    fn refill_back(&mut self) {
        let fence = self.front.fence();
        let range = self
            .table
            .map
            .range::<InternalKey, _>((fence.as_bound(), self.back.pos.as_ref()));
        self.back.buf.extend(
            range
                .rev()
                .take(self.back.batch)
                .map(|found| to_entry(&found)),
        );
        if let Some(last) = self.back.buf.back() {
            self.back.pos = Bound::Excluded(InternalKey::of_entry(last));
        }
        self.back.batch = (self.back.batch * 2).min(MAX_BATCH);
    }
}

impl Iterator for MemtableIter {
    type Item = Entry;

    fn next(&mut self) -> Option<Entry> {
        if self.front.buf.is_empty() {
            self.refill_front();
        }
        let next = self.front.buf.front()?;
        // The buffer may predate the back end's latest moves; an entry at or past the back's
        // fence is the back's to yield (or already yielded), so the ends have met.
        if self.back.moved && !self.back.cmp_fence(next).below_upper() {
            return None;
        }
        self.front.moved = true;
        self.front.buf.pop_front()
    }
}

impl DoubleEndedIterator for MemtableIter {
    fn next_back(&mut self) -> Option<Entry> {
        if self.back.buf.is_empty() {
            self.refill_back();
        }
        let next = self.back.buf.front()?;
        if self.front.moved && !self.front.cmp_fence(next).above_lower() {
            return None;
        }
        self.back.moved = true;
        self.back.buf.pop_front()
    }
}

impl fmt::Debug for MemtableIter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Bounds and buffered entries are user data in clear: show only their shape.
        f.debug_struct("MemtableIter")
            .field("memtable", &self.table.id())
            .field("front_buffered", &self.front.buf.len())
            .field("back_buffered", &self.back.buf.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Frozen, ValueKind};

    fn entry(key: &[u8], seq: SeqNo) -> Entry {
        Entry {
            key: key.to_vec(),
            seq,
            kind: ValueKind::Put,
            value: format!("{}@{seq}", String::from_utf8_lossy(key)).into_bytes(),
        }
    }

    /// Keys `k00..k{keys}` with versions 1..=versions each, seqs unique.
    fn table(keys: u64, versions: u64) -> Result<(Arc<Memtable>, Vec<Entry>), Frozen> {
        let table = Arc::new(Memtable::new(1));
        let mut all = Vec::new();
        for k in 0..keys {
            let key = format!("k{k:02}").into_bytes();
            for v in (1..=versions).rev() {
                let e = entry(&key, k * 100 + v);
                table.insert(&e.key, e.seq, e.kind, &e.value)?;
                all.push(e);
            }
        }
        Ok((table, all))
    }

    fn keys_of(entries: &[Entry]) -> Vec<(String, SeqNo)> {
        entries
            .iter()
            .map(|e| (String::from_utf8_lossy(&e.key).into_owned(), e.seq))
            .collect()
    }

    #[test]
    fn forward_scan_crosses_many_batches_in_internal_order() -> Result<(), Frozen> {
        let (table, all) = table(100, 3)?;
        let got: Vec<Entry> = table.iter(Bound::Unbounded, Bound::Unbounded).collect();
        assert_eq!(got, all);
        let mut reversed: Vec<Entry> = table
            .iter(Bound::Unbounded, Bound::Unbounded)
            .rev()
            .collect();
        reversed.reverse();
        assert_eq!(reversed, all);
        Ok(())
    }

    #[test]
    fn user_key_bounds_cover_all_versions_of_included_keys() -> Result<(), Frozen> {
        let (table, all) = table(5, 3)?;
        let between = |lo: &[u8], hi: &[u8]| -> Vec<Entry> {
            all.iter()
                .filter(|e| e.key.as_slice() >= lo && e.key.as_slice() <= hi)
                .cloned()
                .collect()
        };
        let k = |s: &str| s.as_bytes().to_vec();
        let cases = [
            (
                Bound::Included(k("k01")),
                Bound::Included(k("k03")),
                between(b"k01", b"k03"),
            ),
            (
                Bound::Excluded(k("k01")),
                Bound::Included(k("k03")),
                between(b"k02", b"k03"),
            ),
            (
                Bound::Included(k("k01")),
                Bound::Excluded(k("k03")),
                between(b"k01", b"k02"),
            ),
            (
                Bound::Excluded(k("k01")),
                Bound::Excluded(k("k03")),
                between(b"k02", b"k02"),
            ),
            (
                Bound::Excluded(k("k02")),
                Bound::Excluded(k("k02")),
                Vec::new(),
            ),
            (
                Bound::Included(k("k03")),
                Bound::Included(k("k01")),
                Vec::new(),
            ),
            (
                Bound::Included(k("k015")),
                Bound::Unbounded,
                between(b"k02", b"k99"),
            ),
            (
                Bound::Unbounded,
                Bound::Excluded(k("k015")),
                between(b"", b"k01"),
            ),
        ];
        for (lower, upper, want) in cases {
            let desc = format!("{lower:?}..{upper:?}");
            let got: Vec<Entry> = table.iter(lower.clone(), upper.clone()).collect();
            assert_eq!(keys_of(&got), keys_of(&want), "forward {desc}");
            let mut got: Vec<Entry> = table.iter(lower, upper).rev().collect();
            got.reverse();
            assert_eq!(keys_of(&got), keys_of(&want), "reverse {desc}");
        }
        Ok(())
    }

    #[test]
    fn ends_meet_in_the_middle_without_repeats() -> Result<(), Frozen> {
        let (table, all) = table(40, 2)?;
        for split in [0, 1, 7, 40, 79, 80] {
            let mut iter = table.iter(Bound::Unbounded, Bound::Unbounded);
            let mut front: Vec<Entry> = iter.by_ref().take(split).collect();
            let mut back: Vec<Entry> = iter.by_ref().rev().collect();
            assert_eq!(iter.next(), None);
            assert_eq!(iter.next_back(), None);
            back.reverse();
            front.extend(back);
            assert_eq!(front, all, "split {split}");
        }
        // Alternating single steps exercise the fences on both buffered heads.
        let mut iter = table.iter(Bound::Unbounded, Bound::Unbounded);
        let (mut front, mut back) = (Vec::new(), Vec::new());
        loop {
            match (iter.next(), iter.next_back()) {
                (Some(f), Some(b)) => {
                    front.push(f);
                    back.push(b);
                }
                (Some(f), None) => front.push(f),
                (None, Some(b)) => back.push(b),
                (None, None) => break,
            }
        }
        back.reverse();
        front.extend(back);
        assert_eq!(front, all);
        Ok(())
    }

    #[test]
    fn seek_positions_at_newest_version_and_respects_bounds() -> Result<(), Frozen> {
        let (table, all) = table(10, 3)?;
        let mut iter = table.iter(
            Bound::Included(b"k02".to_vec()),
            Bound::Excluded(b"k08".to_vec()),
        );
        iter.seek(b"k05");
        assert_eq!(
            iter.next().map(|e| (e.key, e.seq)),
            Some((b"k05".to_vec(), 503))
        );
        iter.seek(b"k045");
        assert_eq!(
            iter.next().map(|e| (e.key, e.seq)),
            Some((b"k05".to_vec(), 503))
        );
        // Seeking before the lower bound clamps to it; seeking backwards re-yields.
        iter.seek(b"a");
        assert_eq!(
            iter.next().map(|e| (e.key, e.seq)),
            Some((b"k02".to_vec(), 203))
        );
        iter.seek(b"k08");
        assert_eq!(iter.next(), None);

        // The front now sits past everything, so the back has nothing left to yield...
        iter.seek_back(b"k03");
        assert_eq!(iter.next_back(), None);
        // ...until the front moves back.
        iter.seek(b"k00");
        iter.seek_back(b"k03");
        assert_eq!(
            iter.next_back().map(|e| (e.key, e.seq)),
            Some((b"k03".to_vec(), 301))
        );
        iter.seek_back(b"zzz");
        assert_eq!(
            iter.next_back().map(|e| (e.key, e.seq)),
            Some((b"k07".to_vec(), 701))
        );
        iter.seek_back(b"k01");
        assert_eq!(iter.next_back(), None);

        // A front seek never brings back what the back end already took.
        let mut iter = table.iter(Bound::Unbounded, Bound::Unbounded);
        let taken_back: Vec<Entry> = iter.by_ref().rev().take(2).collect();
        assert_eq!(
            keys_of(&taken_back),
            [("k09".to_owned(), 901), ("k09".to_owned(), 902)]
        );
        iter.seek(b"k09");
        let rest: Vec<Entry> = iter.by_ref().collect();
        assert_eq!(keys_of(&rest), [("k09".to_owned(), 903)]);
        iter.seek(b"k00");
        assert_eq!(iter.count(), all.len() - 2);
        Ok(())
    }

    #[test]
    fn iterator_outlives_callers_handle_to_the_table() -> Result<(), Frozen> {
        let (table, all) = table(3, 1)?;
        let iter = table.iter(Bound::Unbounded, Bound::Unbounded);
        drop(table);
        let moved = std::thread::spawn(move || iter.collect::<Vec<Entry>>())
            .join()
            .expect("collecting thread panicked");
        assert_eq!(moved, all);
        Ok(())
    }
}
