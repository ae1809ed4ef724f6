//! The merged read path for scans: every source (memtables, then tables) yields internal
//! entries in internal order; [`DbIter`] merges them, keeps for each user key the newest
//! version visible at its snapshot, and hides tombstones.
//!
//! The merge is generic over how keys and values are held ([`Payload`]): [`DbIter`] moves
//! `Vec`s (copied once out of a table block, or handed out by a memtable) and yields them as
//! is; [`SliceIter`] ([`DbIter::slices`]) holds table entries as [`Bytes`] slices of the
//! cached decoded blocks — no allocation or copy per entry, at the price of atomic reference
//! counts. Two monomorphic merges rather than one over an enum: an enum made every entry move
//! wider and cost the owned path about a third of a scan's time. Either way the merge never
//! clones a key: it tracks how far each end got in a reused buffer.

use crate::Result;
use bytes::Bytes;
use sealdb_memtable::{MemtableIter, ValueKind};
use sealdb_sstable::TableIter;
use std::sync::Arc;

/// How a merge holds keys and values.
pub(crate) trait Payload: AsRef<[u8]> + Send + Sized + 'static {
    /// The next entry of a table iterator from one end, in this representation.
    fn next_table(it: &mut TableIter, front: bool) -> Option<sealdb_sstable::Result<Entry<Self>>>;
}

impl Payload for Vec<u8> {
    fn next_table(it: &mut TableIter, front: bool) -> Option<sealdb_sstable::Result<Entry<Self>>> {
        let e = if front { it.next() } else { it.next_back() };
        e.map(|r| {
            r.map(|e| InternalEntry {
                key: e.key,
                seq: e.seq,
                is_put: e.kind == sealdb_sstable::ValueKind::Put,
                value: e.value,
            })
        })
    }
}

impl Payload for Bytes {
    fn next_table(it: &mut TableIter, front: bool) -> Option<sealdb_sstable::Result<Entry<Self>>> {
        let e = if front {
            it.next_shared()
        } else {
            it.next_back_shared()
        };
        e.map(|r| {
            r.map(|e| InternalEntry {
                key: e.key,
                seq: e.seq,
                is_put: e.kind == sealdb_sstable::ValueKind::Put,
                value: e.value,
            })
        })
    }
}

/// One version of one user key, from any source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InternalEntry<P = Vec<u8>> {
    pub key: P,
    pub seq: u64,
    pub is_put: bool,
    pub value: P,
}

/// Shorthand for an entry of a given payload.
pub(crate) type Entry<P> = InternalEntry<P>;

impl InternalEntry<Vec<u8>> {
    fn into_shared(self) -> InternalEntry<Bytes> {
        InternalEntry {
            key: Bytes::from(self.key),
            seq: self.seq,
            is_put: self.is_put,
            value: Bytes::from(self.value),
        }
    }
}

/// A double-ended source of internal entries in internal order (user key ascending, sequence
/// number descending); its two ends never cross.
pub(crate) trait Source<P = Vec<u8>>: Send {
    fn next_front(&mut self) -> Option<Result<InternalEntry<P>>>;
    fn next_back(&mut self) -> Option<Result<InternalEntry<P>>>;
    /// The same source (same position) yielding shared slices where it can.
    fn into_shared(self: Box<Self>) -> Box<dyn Source<Bytes>>;
}

/// A memtable scan restricted to one keyspace: strips the 4-byte keyspace prefix.
pub(crate) struct MemSource {
    pub iter: MemtableIter,
}

fn from_mem(e: sealdb_memtable::Entry) -> InternalEntry {
    let mut key = e.key;
    // Every key of a keyspace scan carries the 4-byte prefix: cut it off in place.
    key.drain(..4.min(key.len()));
    InternalEntry {
        key,
        seq: e.seq,
        is_put: e.kind == ValueKind::Put,
        value: e.value,
    }
}

impl Source for MemSource {
    fn next_front(&mut self) -> Option<Result<InternalEntry>> {
        self.iter.next().map(|e| Ok(from_mem(e)))
    }
    fn next_back(&mut self) -> Option<Result<InternalEntry>> {
        self.iter.next_back().map(|e| Ok(from_mem(e)))
    }
    fn into_shared(self: Box<Self>) -> Box<dyn Source<Bytes>> {
        Box::new(SharedMem(*self))
    }
}

/// A memtable source for a [`SliceIter`]: memtable entries are copied out of the skiplist
/// anyway, so their buffers become `Bytes` as they are.
struct SharedMem(MemSource);

impl Source<Bytes> for SharedMem {
    fn next_front(&mut self) -> Option<Result<InternalEntry<Bytes>>> {
        self.0
            .next_front()
            .map(|r| r.map(InternalEntry::into_shared))
    }
    fn next_back(&mut self) -> Option<Result<InternalEntry<Bytes>>> {
        self.0
            .next_back()
            .map(|r| r.map(InternalEntry::into_shared))
    }
    fn into_shared(self: Box<Self>) -> Box<dyn Source<Bytes>> {
        self
    }
}

/// An ordered, snapshot-consistent iterator over one keyspace's key/value pairs.
///
/// It owns what it reads (the memtables and table versions it was created over stay alive
/// while it lives), so it is `'static` and can be sent between threads. Writes made after it
/// was created are never seen. Use it from either end (`next`, `next_back`); the ends meet in
/// the middle without repeating a key.
pub struct DbIter {
    inner: Merge<Vec<u8>>,
}

/// A [`DbIter`] yielding `(key, value)` as [`Bytes`] without copying them out of the cached
/// table blocks; see [`DbIter::slices`]. Same order, snapshot and double-ended behaviour.
pub struct SliceIter {
    inner: Merge<Bytes>,
}

/// The merge behind both iterators.
struct Merge<P: Payload> {
    sources: Vec<Box<dyn Source<P>>>,
    fronts: Vec<Option<InternalEntry<P>>>,
    backs: Vec<Option<InternalEntry<P>>>,
    front_primed: bool,
    back_primed: bool,
    snapshot: u64,
    /// The last user key the front (back) passed, in a buffer reused from key to key (the
    /// merge copies each key into it instead of allocating a clone).
    last_front: Option<Vec<u8>>,
    last_back: Option<Vec<u8>>,
    done: bool,
    _pins: Vec<Arc<dyn std::any::Any + Send + Sync>>,
}

impl std::fmt::Debug for DbIter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbIter")
            .field("sources", &self.inner.sources.len())
            .field("snapshot", &self.inner.snapshot)
            .finish()
    }
}

impl std::fmt::Debug for SliceIter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SliceIter")
            .field("sources", &self.inner.sources.len())
            .field("snapshot", &self.inner.snapshot)
            .finish()
    }
}

impl DbIter {
    pub(crate) fn new(
        sources: Vec<Box<dyn Source>>,
        snapshot: u64,
        pins: Vec<Arc<dyn std::any::Any + Send + Sync>>,
    ) -> Self {
        let n = sources.len();
        Self {
            inner: Merge {
                sources,
                fronts: (0..n).map(|_| None).collect(),
                backs: (0..n).map(|_| None).collect(),
                front_primed: false,
                back_primed: false,
                snapshot,
                last_front: None,
                last_back: None,
                done: false,
                _pins: pins,
            },
        }
    }

    /// This iterator yielding keys and values as [`Bytes`]: slices of the decoded table
    /// blocks it reads, not copies (a pair from a table costs no allocation). A `Bytes`
    /// derefs to `[u8]`; holding one keeps its block in memory. It goes on from where this
    /// iterator is.
    pub fn slices(self) -> SliceIter {
        let m = self.inner;
        SliceIter {
            inner: Merge {
                sources: m.sources.into_iter().map(|s| s.into_shared()).collect(),
                fronts: m
                    .fronts
                    .into_iter()
                    .map(|e| e.map(InternalEntry::into_shared))
                    .collect(),
                backs: m
                    .backs
                    .into_iter()
                    .map(|e| e.map(InternalEntry::into_shared))
                    .collect(),
                front_primed: m.front_primed,
                back_primed: m.back_primed,
                snapshot: m.snapshot,
                last_front: m.last_front,
                last_back: m.last_back,
                done: m.done,
                _pins: m._pins,
            },
        }
    }
}

impl<P: Payload> Merge<P> {
    fn prime_front(&mut self) -> Result<()> {
        if !self.front_primed {
            for i in 0..self.sources.len() {
                self.refill_front(i)?;
            }
            self.front_primed = true;
        }
        Ok(())
    }

    fn prime_back(&mut self) -> Result<()> {
        if !self.back_primed {
            for i in 0..self.sources.len() {
                self.refill_back(i)?;
            }
            self.back_primed = true;
        }
        Ok(())
    }

    fn refill_front(&mut self, i: usize) -> Result<()> {
        let next = match self.sources.get_mut(i) {
            Some(s) => s.next_front().transpose()?,
            None => None,
        };
        if let Some(slot) = self.fronts.get_mut(i) {
            *slot = next;
        }
        Ok(())
    }

    fn refill_back(&mut self, i: usize) -> Result<()> {
        let next = match self.sources.get_mut(i) {
            Some(s) => s.next_back().transpose()?,
            None => None,
        };
        if let Some(slot) = self.backs.get_mut(i) {
            *slot = next;
        }
        Ok(())
    }

    /// Removes every peeked version of `key` from both ends of every source (an end may hold
    /// a version the other end has not seen) and returns the newest one visible at the
    /// snapshot.
    fn take_versions(&mut self, key: &[u8]) -> Result<Option<InternalEntry<P>>> {
        let mut best: Option<InternalEntry<P>> = None;
        let snapshot = self.snapshot;
        let mut consider = |e: InternalEntry<P>| {
            if e.seq <= snapshot && best.as_ref().is_none_or(|b| e.seq > b.seq) {
                best = Some(e);
            }
        };
        for i in 0..self.sources.len() {
            while self
                .fronts
                .get(i)
                .and_then(|f| f.as_ref())
                .is_some_and(|e| e.key.as_ref() == key)
            {
                if let Some(e) = self.fronts.get_mut(i).and_then(Option::take) {
                    consider(e);
                }
                self.refill_front(i)?;
            }
            while self
                .backs
                .get(i)
                .and_then(|f| f.as_ref())
                .is_some_and(|e| e.key.as_ref() == key)
            {
                if let Some(e) = self.backs.get_mut(i).and_then(Option::take) {
                    consider(e);
                }
                if self.back_primed {
                    self.refill_back(i)?;
                }
            }
        }
        Ok(best)
    }

    fn step_front(&mut self) -> Result<Option<(P, P)>> {
        self.prime_front()?;
        loop {
            // The smallest user key at any source's front, copied into the reused buffer
            // (the sources' entries are about to be taken). A source whose front is exhausted
            // may still hold one entry peeked by the back that the back has not consumed: it
            // is the source's last entry.
            let key = {
                let peeked = self
                    .fronts
                    .iter()
                    .zip(&self.backs)
                    .map(|(f, b)| f.as_ref().or(b.as_ref()));
                let Some(min) = peeked.flatten().map(|e| e.key.as_ref()).min() else {
                    return Ok(None);
                };
                if self.last_back.as_ref().is_some_and(|b| min >= b.as_slice()) {
                    return Ok(None);
                }
                let mut key = self.last_front.take().unwrap_or_default();
                key.clear();
                key.extend_from_slice(min);
                key
            };
            let best = self.take_versions(&key);
            self.last_front = Some(key);
            if let Some(e) = best?
                && e.is_put
            {
                return Ok(Some((e.key, e.value)));
            }
        }
    }

    /// The mirror of [`step_front`](Self::step_front): an entry the front peeked is the last
    /// one of a source whose back is exhausted (the source's two ends never cross).
    fn step_back(&mut self) -> Result<Option<(P, P)>> {
        self.prime_back()?;
        loop {
            let key = {
                let peeked = self
                    .backs
                    .iter()
                    .zip(&self.fronts)
                    .map(|(b, f)| b.as_ref().or(f.as_ref()));
                let Some(max) = peeked.flatten().map(|e| e.key.as_ref()).max() else {
                    return Ok(None);
                };
                if self
                    .last_front
                    .as_ref()
                    .is_some_and(|f| max <= f.as_slice())
                {
                    return Ok(None);
                }
                let mut key = self.last_back.take().unwrap_or_default();
                key.clear();
                key.extend_from_slice(max);
                key
            };
            let best = self.take_versions(&key);
            self.last_back = Some(key);
            if let Some(e) = best?
                && e.is_put
            {
                return Ok(Some((e.key, e.value)));
            }
        }
    }
}

impl<P: Payload> Merge<P> {
    /// One step from either end, ending the iterator on exhaustion or an error.
    fn step(&mut self, front: bool) -> Option<Result<(P, P)>> {
        if self.done {
            return None;
        }
        let r = if front {
            self.step_front()
        } else {
            self.step_back()
        };
        match r {
            Ok(Some(kv)) => Some(Ok(kv)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

impl Iterator for DbIter {
    type Item = Result<(Vec<u8>, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        self.inner.step(true)
    }
}

impl DoubleEndedIterator for DbIter {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.inner.step(false)
    }
}

impl Iterator for SliceIter {
    type Item = Result<(Bytes, Bytes)>;

    fn next(&mut self) -> Option<Self::Item> {
        self.inner.step(true)
    }
}

impl DoubleEndedIterator for SliceIter {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.inner.step(false)
    }
}
