//! Internal keys: a user key paired with the sequence number of one of its versions.

use std::cmp::{Ordering, Reverse};

/// The sequence number, kind and entry types are the ones tables use too (one vocabulary from
/// `sealdb-base`), re-exported here under their old names.
pub use sealdb_base::{Entry, SeqNo, ValueKind};

/// Internal-order comparisons of an [`Entry`] (user key ascending, newest version first).
pub(crate) trait EntryOrder {
    /// Compares this entry's position in internal order with `key`'s.
    fn cmp_key(&self, key: &InternalKey) -> Ordering;
    /// Compares two entries' positions in internal order.
    fn cmp_entry(&self, other: &Entry) -> Ordering;
}

impl EntryOrder for Entry {
    fn cmp_key(&self, key: &InternalKey) -> Ordering {
        self.key
            .as_slice()
            .cmp(key.user_key())
            .then_with(|| key.seq.0.cmp(&self.seq))
    }

    fn cmp_entry(&self, other: &Entry) -> Ordering {
        self.key
            .cmp(&other.key)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

/// The skiplist's key. Its order is the internal order, user key ascending and then newest
/// version first, so a point read at a snapshot is one `lower_bound`.
///
/// A stored entry's value rides in the same allocation, after the user key: one allocation
/// per entry for both (a probe key has no value). Equality and order look at the user key
/// and the sequence number only.
#[derive(Debug, Clone)]
pub(crate) struct InternalKey {
    /// The user key, then the value. Boxed rather than `Vec` to save the capacity word in
    /// every node.
    bytes: Box<[u8]>,
    /// Where the user key ends in `bytes`.
    key_len: usize,
    pub(crate) seq: Reverse<SeqNo>,
}

impl InternalKey {
    /// A key without a value (a probe, or a scan position).
    pub(crate) fn new(user_key: &[u8], seq: SeqNo) -> Self {
        Self {
            bytes: user_key.into(),
            key_len: user_key.len(),
            seq: Reverse(seq),
        }
    }

    /// The key `prefix ++ rest` at `seq` carrying `value`, built in a single allocation (the
    /// engine's keys are a keyspace prefix and a user key held apart).
    pub(crate) fn with_value(prefix: &[u8], rest: &[u8], value: &[u8], seq: SeqNo) -> Self {
        let key_len = prefix.len().saturating_add(rest.len());
        let mut bytes = Vec::with_capacity(key_len.saturating_add(value.len()));
        bytes.extend_from_slice(prefix);
        bytes.extend_from_slice(rest);
        bytes.extend_from_slice(value);
        Self {
            // Capacity equals length, so this keeps the buffer without reallocating.
            bytes: bytes.into_boxed_slice(),
            key_len,
            seq: Reverse(seq),
        }
    }

    /// The user key.
    pub(crate) fn user_key(&self) -> &[u8] {
        self.bytes.get(..self.key_len).unwrap_or_default()
    }

    /// The value stored with the key (empty for a probe and for a tombstone).
    pub(crate) fn value(&self) -> &[u8] {
        self.bytes.get(self.key_len..).unwrap_or_default()
    }

    /// The position of `entry`, for resuming a scan just past it.
    pub(crate) fn of_entry(entry: &Entry) -> Self {
        Self::new(&entry.key, entry.seq)
    }
}

impl PartialEq for InternalKey {
    fn eq(&self, other: &Self) -> bool {
        self.seq == other.seq && self.user_key() == other.user_key()
    }
}

impl Eq for InternalKey {}

impl PartialOrd for InternalKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for InternalKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.user_key()
            .cmp(other.user_key())
            .then_with(|| self.seq.cmp(&other.seq))
    }
}

/// The skiplist's value (the value's bytes live with the key, see [`InternalKey`]).
#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) kind: ValueKind,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_order_is_key_ascending_then_seq_descending() {
        let mut keys = [
            InternalKey::new(b"b", 1),
            InternalKey::new(b"a", 1),
            InternalKey::new(b"a", 7),
            InternalKey::new(b"", 0),
            InternalKey::new(b"ab", u64::MAX),
        ];
        keys.sort();
        let got: Vec<(&[u8], u64)> = keys.iter().map(|k| (k.user_key(), k.seq.0)).collect();
        let want: Vec<(&[u8], u64)> =
            vec![(b"", 0), (b"a", 7), (b"a", 1), (b"ab", u64::MAX), (b"b", 1)];
        assert_eq!(got, want);
    }

    #[test]
    fn entry_comparisons_agree_with_internal_key_order() {
        let entry = |k: &[u8], seq| Entry {
            key: k.to_vec(),
            seq,
            kind: ValueKind::Put,
            value: Vec::new(),
        };
        let samples = [
            entry(b"a", 3),
            entry(b"a", 2),
            entry(b"b", 9),
            entry(b"", 0),
        ];
        for x in &samples {
            for y in &samples {
                let want = InternalKey::of_entry(x).cmp(&InternalKey::of_entry(y));
                assert_eq!(x.cmp_entry(y), want);
                assert_eq!(x.cmp_key(&InternalKey::of_entry(y)), want);
            }
        }
    }
}
