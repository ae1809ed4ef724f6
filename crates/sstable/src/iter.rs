//! The table iterator: every version of every key within bounds, in internal order, from
//! either end.
//!
//! Positions are entry ordinals (an entry's index among all the table's entries; the index
//! records each block's count, so ordinals are known without reading blocks). The remaining
//! range is `front..back`: the front yields `front` and moves up, the back yields `back - 1`
//! and moves down, so the two ends can never yield the same entry or cross. Each end is
//! positioned lazily (at its bound) on first use, and holds the one decoded block it is in.

use crate::block::DataBlock;
use crate::table::Table;
use crate::{Entry, Error, Result};
use std::ops::Bound;
use std::sync::Arc;

/// An owned iterator over a table's entries; see [`Table::iter`].
///
/// Yields `Result<Entry>`; after an error it yields nothing more.
pub struct TableIter {
    table: Arc<Table>,
    lower: Bound<Vec<u8>>,
    upper: Bound<Vec<u8>>,
    /// Next ordinal the front yields; `None` until positioned.
    front: Option<u64>,
    /// One past the next ordinal the back yields; `None` until positioned.
    back: Option<u64>,
    front_cur: Option<BlockCursor>,
    back_cur: Option<BlockCursor>,
    /// An error from a seek, handed out by the next call to `next` or `next_back`.
    pending: Option<Error>,
    failed: bool,
}

impl std::fmt::Debug for TableIter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableIter")
            .field("table", &self.table.label())
            .field("front", &self.front)
            .field("back", &self.back)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

/// The block one end of the iterator is in.
struct BlockCursor {
    idx: usize,
    /// Ordinal of the block's first entry.
    start: u64,
    block: Arc<DataBlock>,
    /// Every entry of the block is within this end's far bound (the upper bound for the
    /// front, the lower for the back), so entries need no key comparison.
    in_bounds: bool,
}

impl BlockCursor {
    fn contains(&self, ordinal: u64) -> bool {
        ordinal >= self.start && ordinal - self.start < self.block.len() as u64
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    Front,
    Back,
}

impl TableIter {
    pub(crate) fn new(table: Arc<Table>, lower: Bound<Vec<u8>>, upper: Bound<Vec<u8>>) -> Self {
        Self {
            table,
            lower,
            upper,
            front: None,
            back: None,
            front_cur: None,
            back_cur: None,
            pending: None,
            failed: false,
        }
    }

    /// Moves the front to the first entry whose user key is `>= key` (never before the lower
    /// bound). Entries behind the back are not yielded again.
    pub fn seek(&mut self, key: &[u8]) {
        if self.failed {
            return;
        }
        let below_lower = match &self.lower {
            Bound::Included(l) => l.as_slice() > key,
            Bound::Excluded(l) => l.as_slice() >= key,
            Bound::Unbounded => false,
        };
        let r = if below_lower {
            self.lower_position()
        } else {
            self.first_at_or_after(End::Front, key, true)
        };
        match r {
            Ok(o) => self.front = Some(o),
            Err(e) => self.pending = Some(e),
        }
    }

    /// Moves the back to the last entry whose user key is `<= key` (never past the upper
    /// bound). Entries behind the front are not yielded again.
    pub fn seek_back(&mut self, key: &[u8]) {
        if self.failed {
            return;
        }
        let above_upper = match &self.upper {
            Bound::Included(u) => u.as_slice() < key,
            Bound::Excluded(u) => u.as_slice() <= key,
            Bound::Unbounded => false,
        };
        let r = if above_upper {
            self.upper_position()
        } else {
            self.first_at_or_after(End::Back, key, false)
        };
        match r {
            Ok(o) => self.back = Some(o),
            Err(e) => self.pending = Some(e),
        }
    }

    /// The ordinal of the first entry with user key `>= key` (`inclusive`) or `> key`,
    /// leaving the block it is in as `end`'s cursor.
    fn first_at_or_after(&mut self, end: End, key: &[u8], inclusive: bool) -> Result<u64> {
        let index = self.table.index();
        let i = if inclusive {
            index.lower_bound(key)
        } else {
            index.upper_bound(key)
        };
        let Some(first_ordinal) = index.entry(i).map(|e| e.first_ordinal) else {
            return Ok(index.total_entries());
        };
        let block = self.table.load_block(i)?;
        let e = if inclusive {
            block.lower_bound(key)
        } else {
            block.upper_bound(key)
        };
        self.set_cursor(end, i, first_ordinal, block);
        Ok(first_ordinal + e as u64)
    }

    fn lower_position(&mut self) -> Result<u64> {
        match self.lower.clone() {
            Bound::Unbounded => Ok(0),
            Bound::Included(k) => self.first_at_or_after(End::Front, &k, true),
            Bound::Excluded(k) => self.first_at_or_after(End::Front, &k, false),
        }
    }

    fn upper_position(&mut self) -> Result<u64> {
        match self.upper.clone() {
            Bound::Unbounded => Ok(self.table.index().total_entries()),
            Bound::Included(k) => self.first_at_or_after(End::Back, &k, false),
            Bound::Excluded(k) => self.first_at_or_after(End::Back, &k, true),
        }
    }

    fn set_cursor(&mut self, end: End, idx: usize, start: u64, block: Arc<DataBlock>) {
        let in_bounds = match end {
            End::Front => within_upper(&self.upper, self.table.index().last_key(idx)),
            End::Back => within_lower(&self.lower, block.key(0)),
        };
        let cur = Some(BlockCursor {
            idx,
            start,
            block,
            in_bounds,
        });
        match end {
            End::Front => self.front_cur = cur,
            End::Back => self.back_cur = cur,
        }
    }

    /// Makes `end`'s cursor hold the block with entry `ordinal`, reusing the other end's block
    /// when both ends are in the same one.
    fn ensure_cursor(&mut self, end: End, ordinal: u64) -> Result<()> {
        let (mine, other) = match end {
            End::Front => (&self.front_cur, &self.back_cur),
            End::Back => (&self.back_cur, &self.front_cur),
        };
        if mine.as_ref().is_some_and(|c| c.contains(ordinal)) {
            return Ok(());
        }
        let (idx, start, block) = match other.as_ref().filter(|c| c.contains(ordinal)) {
            Some(c) => (c.idx, c.start, Arc::clone(&c.block)),
            None => {
                let index = self.table.index();
                let idx = index.block_of_ordinal(ordinal);
                let start = index.entry(idx).map_or(0, |e| e.first_ordinal);
                (idx, start, self.table.load_block(idx)?)
            }
        };
        self.set_cursor(end, idx, start, block);
        Ok(())
    }

    fn fail(&mut self, e: Error) -> Option<Result<Entry>> {
        self.failed = true;
        Some(Err(e))
    }

    fn entry_at(cur: &BlockCursor, ordinal: u64) -> (usize, &[u8]) {
        let e = (ordinal - cur.start) as usize;
        (e, cur.block.key(e))
    }
}

fn within_upper(upper: &Bound<Vec<u8>>, key: &[u8]) -> bool {
    match upper {
        Bound::Unbounded => true,
        Bound::Included(u) => key <= u.as_slice(),
        Bound::Excluded(u) => key < u.as_slice(),
    }
}

fn within_lower(lower: &Bound<Vec<u8>>, key: &[u8]) -> bool {
    match lower {
        Bound::Unbounded => true,
        Bound::Included(l) => key >= l.as_slice(),
        Bound::Excluded(l) => key > l.as_slice(),
    }
}

fn make_entry(block: &DataBlock, e: usize) -> Entry {
    Entry {
        key: block.key(e).to_vec(),
        seq: block.seq(e),
        kind: block.kind(e),
        value: block.value(e).to_vec(),
    }
}

impl Iterator for TableIter {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if let Some(e) = self.pending.take() {
            return self.fail(e);
        }
        let ordinal = match self.front {
            Some(o) => o,
            None => match self.lower_position() {
                Ok(o) => o,
                Err(e) => return self.fail(e),
            },
        };
        self.front = Some(ordinal);
        if self.back.is_some_and(|b| ordinal >= b) || ordinal >= self.table.index().total_entries()
        {
            return None;
        }
        if let Err(e) = self.ensure_cursor(End::Front, ordinal) {
            return self.fail(e);
        }
        let cur = self.front_cur.as_ref()?;
        let (e, key) = Self::entry_at(cur, ordinal);
        if !cur.in_bounds && !within_upper(&self.upper, key) {
            return None;
        }
        let entry = make_entry(&cur.block, e);
        self.front = Some(ordinal + 1);
        Some(Ok(entry))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let total = self.table.index().total_entries();
        let lo = self.front.unwrap_or(0);
        let hi = self.back.unwrap_or(total);
        (0, usize::try_from(hi.saturating_sub(lo)).ok())
    }
}

impl DoubleEndedIterator for TableIter {
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if let Some(e) = self.pending.take() {
            return self.fail(e);
        }
        let end = match self.back {
            Some(o) => o,
            None => match self.upper_position() {
                Ok(o) => o,
                Err(e) => return self.fail(e),
            },
        };
        self.back = Some(end);
        let ordinal = end.checked_sub(1)?;
        if self.front.is_some_and(|f| ordinal < f) {
            return None;
        }
        if let Err(e) = self.ensure_cursor(End::Back, ordinal) {
            return self.fail(e);
        }
        let cur = self.back_cur.as_ref()?;
        let (e, key) = Self::entry_at(cur, ordinal);
        if !cur.in_bounds && !within_lower(&self.lower, key) {
            return None;
        }
        let entry = make_entry(&cur.block, e);
        self.back = Some(ordinal);
        Some(Ok(entry))
    }
}
