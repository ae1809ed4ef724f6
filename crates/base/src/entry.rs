//! One version of one key: the entry memtables and tables store and yield.

/// Longest user key any layer accepts (64 KiB): the WAL refuses a longer one, so no memtable,
/// table or change record ever holds one.
pub const MAX_KEY_LEN: usize = 64 << 10;
/// Longest value any layer accepts (32 MiB).
pub const MAX_VALUE_LEN: usize = 32 << 20;

/// A key or value longer than its limit ([`MAX_KEY_LEN`], [`MAX_VALUE_LEN`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TooLong {
    /// The key's length.
    #[error("key of {0} bytes exceeds the {MAX_KEY_LEN}-byte limit")]
    Key(usize),
    /// The value's length.
    #[error("value of {0} bytes exceeds the {MAX_VALUE_LEN}-byte limit")]
    Value(usize),
}

/// Checks a key and value against the limits every layer shares.
pub fn check_entry_lengths(key: &[u8], value: &[u8]) -> Result<(), TooLong> {
    if key.len() > MAX_KEY_LEN {
        return Err(TooLong::Key(key.len()));
    }
    if value.len() > MAX_VALUE_LEN {
        return Err(TooLong::Value(value.len()));
    }
    Ok(())
}

/// Sequence number of a write. The engine assigns each entry its own, increasing with commit
/// order, so `(user key, seq)` identifies one version of one key.
pub type SeqNo = u64;

/// What an entry records about its key at its sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum ValueKind {
    /// The key was deleted: a tombstone that hides every older version.
    Delete = 0,
    /// The key was set to the entry's value.
    Put = 1,
}

impl ValueKind {
    /// The kind's one-byte code, as stored in WAL frames and tables.
    #[must_use]
    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    /// Decodes a kind's one-byte code; `None` for a code no kind uses, so decoders of untrusted
    /// bytes can turn it into a corruption error instead of guessing.
    #[must_use]
    pub const fn from_u8(code: u8) -> Option<Self> {
        match code {
            0 => Some(Self::Delete),
            1 => Some(Self::Put),
            _ => None,
        }
    }
}

/// One version of one key, owned, as memtable and table iterators yield it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The user key.
    pub key: Vec<u8>,
    /// The sequence number this version was written at.
    pub seq: SeqNo,
    /// Whether this version is a value or a tombstone.
    pub kind: ValueKind,
    /// The value; always empty for [`ValueKind::Delete`].
    pub value: Vec<u8>,
}

impl Entry {
    /// Whether this version sets a value (rather than deleting the key).
    #[must_use]
    pub fn is_put(&self) -> bool {
        self.kind == ValueKind::Put
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_kind_codes_round_trip_and_reject_unknown() {
        for kind in [ValueKind::Delete, ValueKind::Put] {
            assert_eq!(ValueKind::from_u8(kind.as_u8()), Some(kind));
        }
        assert_eq!(ValueKind::Delete.as_u8(), 0);
        assert_eq!(ValueKind::Put.as_u8(), 1);
        for code in 2..=u8::MAX {
            assert_eq!(ValueKind::from_u8(code), None);
        }
    }

    #[test]
    fn lengths_up_to_the_limits_are_accepted_and_one_more_byte_is_refused() {
        let key = vec![0u8; MAX_KEY_LEN];
        let value = vec![0u8; MAX_VALUE_LEN];
        assert_eq!(check_entry_lengths(&key, &value), Ok(()));
        let long_key = vec![0u8; MAX_KEY_LEN + 1];
        assert_eq!(
            check_entry_lengths(&long_key, b""),
            Err(TooLong::Key(MAX_KEY_LEN + 1))
        );
        let long_value = vec![0u8; MAX_VALUE_LEN + 1];
        let e = check_entry_lengths(b"k", &long_value);
        assert_eq!(e, Err(TooLong::Value(MAX_VALUE_LEN + 1)));
        assert_eq!(
            e.map_err(|e| e.to_string()),
            Err(format!(
                "value of {} bytes exceeds the 33554432-byte limit",
                MAX_VALUE_LEN + 1
            ))
        );
    }

    #[test]
    fn only_a_put_is_a_put() {
        let mut e = Entry {
            key: b"k".to_vec(),
            seq: 7,
            kind: ValueKind::Put,
            value: b"v".to_vec(),
        };
        assert!(e.is_put());
        e.kind = ValueKind::Delete;
        assert!(!e.is_put());
    }
}
