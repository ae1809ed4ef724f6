//! The merged read path for scans: every source (memtables, then tables) yields internal
//! entries in internal order; [`DbIter`] merges them, keeps for each user key the newest
//! version visible at its snapshot, and hides tombstones.

use crate::Result;
use sealdb_memtable::MemtableIter;
use std::sync::Arc;

/// One version of one user key, from any source: memtables and tables yield the same type.
pub(crate) use sealdb_base::Entry as InternalEntry;

/// A double-ended source of internal entries in internal order (user key ascending, sequence
/// number descending); its two ends never cross.
pub(crate) trait Source: Send {
    fn next_front(&mut self) -> Option<Result<InternalEntry>>;
    fn next_back(&mut self) -> Option<Result<InternalEntry>>;
}

/// A memtable scan restricted to one keyspace: strips the 4-byte keyspace prefix.
pub(crate) struct MemSource {
    pub iter: MemtableIter,
}

fn from_mem(mut e: InternalEntry) -> InternalEntry {
    // Every key of a keyspace scan carries the 4-byte prefix: cut it off in place rather
    // than copying the rest into a new allocation.
    e.key.drain(..4.min(e.key.len()));
    e
}

impl Source for MemSource {
    fn next_front(&mut self) -> Option<Result<InternalEntry>> {
        self.iter.next().map(|e| Ok(from_mem(e)))
    }
    fn next_back(&mut self) -> Option<Result<InternalEntry>> {
        self.iter.next_back().map(|e| Ok(from_mem(e)))
    }
}

/// An ordered, snapshot-consistent iterator over one keyspace's key/value pairs.
///
/// It owns what it reads (the memtables and table versions it was created over stay alive
/// while it lives), so it is `'static` and can be sent between threads. Writes made after it
/// was created are never seen. Use it from either end (`next`, `next_back`); the ends meet in
/// the middle without repeating a key.
pub struct DbIter {
    sources: Vec<Box<dyn Source>>,
    fronts: Vec<Option<InternalEntry>>,
    backs: Vec<Option<InternalEntry>>,
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
            .field("sources", &self.sources.len())
            .field("snapshot", &self.snapshot)
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
            sources,
            fronts: vec![None; n],
            backs: vec![None; n],
            front_primed: false,
            back_primed: false,
            snapshot,
            last_front: None,
            last_back: None,
            done: false,
            _pins: pins,
        }
    }

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
    fn take_versions(&mut self, key: &[u8]) -> Result<Option<InternalEntry>> {
        let mut best: Option<InternalEntry> = None;
        let snapshot = self.snapshot;
        let mut consider = |e: InternalEntry| {
            if e.seq <= snapshot && best.as_ref().is_none_or(|b| e.seq > b.seq) {
                best = Some(e);
            }
        };
        for i in 0..self.sources.len() {
            while self
                .fronts
                .get(i)
                .and_then(|f| f.as_ref())
                .is_some_and(|e| e.key == key)
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
                .is_some_and(|e| e.key == key)
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

    fn step_front(&mut self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
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
                let Some(min) = peeked.flatten().map(|e| e.key.as_slice()).min() else {
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
                && e.is_put()
            {
                return Ok(Some((e.key, e.value)));
            }
        }
    }

    /// The mirror of [`step_front`](Self::step_front): an entry the front peeked is the last
    /// one of a source whose back is exhausted (the source's two ends never cross).
    fn step_back(&mut self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        self.prime_back()?;
        loop {
            let key = {
                let peeked = self
                    .backs
                    .iter()
                    .zip(&self.fronts)
                    .map(|(b, f)| b.as_ref().or(f.as_ref()));
                let Some(max) = peeked.flatten().map(|e| e.key.as_slice()).max() else {
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
                && e.is_put()
            {
                return Ok(Some((e.key, e.value)));
            }
        }
    }
}

impl Iterator for DbIter {
    type Item = Result<(Vec<u8>, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.step_front() {
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

impl DoubleEndedIterator for DbIter {
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.step_back() {
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
