//! The encoding of a write batch's records, as carried inside WAL frames.
//!
//! ```text
//! record  op u8 (0 delete, 1 put) | keyspace u32 | key length u32 | key | [value length u32 | value]
//! ```
//!
//! Every decoder here treats its input as hostile: lengths are checked against limits and
//! against the bytes present before anything is allocated.

use crate::{Error, Result};
use sealdb_base::{DecodeError, PutBytes, Reader};

/// Longest user key and value accepted: the limits every layer shares.
pub use sealdb_base::{MAX_KEY_LEN, MAX_VALUE_LEN};

/// Bytes a batch frame spends besides its batches: frame type, commit time, batch count.
pub const FRAME_HEADER_LEN: usize = 1 + 8 + 4;
/// Bytes a batch frame spends on each batch besides its records: first sequence number,
/// record count, length.
pub const BATCH_HEADER_LEN: usize = 8 + 4 + 4;
/// Largest frame payload: a frame is one sealed block.
pub const MAX_FRAME_LEN: usize = sealdb_crypto::sealed::MAX_BLOCK_LEN as usize;
/// Largest encoded batch: one that fills a frame on its own. [`BatchBuilder`] refuses to grow
/// past it, so every batch it builds can be logged; the group-commit leader packs batches
/// into frames of at most [`MAX_FRAME_LEN`].
pub const MAX_BATCH_LEN: usize = MAX_FRAME_LEN - FRAME_HEADER_LEN - BATCH_HEADER_LEN;

/// The payload length of a batch frame holding batches of these encoded lengths.
pub fn frame_len(batch_lens: impl IntoIterator<Item = usize>) -> usize {
    batch_lens.into_iter().fold(FRAME_HEADER_LEN, |acc, len| {
        acc.saturating_add(BATCH_HEADER_LEN).saturating_add(len)
    })
}

/// What a record does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// Removes the key.
    Delete,
    /// Sets the key's value.
    Put,
}

/// One decoded record, borrowing from the batch's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// Put or delete.
    pub op: Op,
    /// The keyspace the record belongs to.
    pub keyspace: u32,
    /// The user key.
    pub key: &'a [u8],
    /// The value (empty for a delete).
    pub value: &'a [u8],
}

/// An encoded batch of records under construction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchBuilder {
    rep: Vec<u8>,
    count: u32,
}

impl BatchBuilder {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a put. Fails if the key or value exceeds its limit, or if the batch would grow
    /// past [`MAX_BATCH_LEN`] (then the batch is unchanged).
    pub fn put(&mut self, keyspace: u32, key: &[u8], value: &[u8]) -> Result<()> {
        check_lengths(key, value)?;
        let len = Self::put_len(key.len(), value.len());
        self.check_room(len)?;
        // One allocation for the record instead of a growth step per field.
        self.rep.reserve(len);
        // Lengths fit in u32: check_lengths bounded them.
        self.rep
            .put_u8(1)
            .put_u32(keyspace)
            .put_bytes_u32(key)
            .put_bytes_u32(value);
        self.count += 1;
        Ok(())
    }

    /// Adds a delete. Fails like [`put`](Self::put).
    pub fn delete(&mut self, keyspace: u32, key: &[u8]) -> Result<()> {
        check_lengths(key, b"")?;
        let len = Self::delete_len(key.len());
        self.check_room(len)?;
        self.rep.reserve(len);
        self.rep.put_u8(0).put_u32(keyspace).put_bytes_u32(key);
        self.count += 1;
        Ok(())
    }

    /// The encoded length of a put record with a key and value of these lengths.
    pub const fn put_len(key_len: usize, value_len: usize) -> usize {
        Self::delete_len(key_len)
            .saturating_add(4)
            .saturating_add(value_len)
    }

    /// The encoded length of a delete record with a key of this length.
    pub const fn delete_len(key_len: usize) -> usize {
        (1 + 4 + 4usize).saturating_add(key_len)
    }

    fn check_room(&self, record_len: usize) -> Result<()> {
        let size = self.rep.len().saturating_add(record_len);
        if size > MAX_BATCH_LEN {
            return Err(Error::BatchTooLarge {
                size: size as u64,
                limit: MAX_BATCH_LEN as u64,
            });
        }
        Ok(())
    }

    /// Number of records.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Whether the batch holds no records.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The encoded records.
    pub fn rep(&self) -> &[u8] {
        &self.rep
    }

    /// The encoded records, moved out (no copy for a caller that consumes the batch).
    pub fn into_rep(self) -> Vec<u8> {
        self.rep
    }

    /// Removes every record.
    pub fn clear(&mut self) {
        self.rep.clear();
        self.count = 0;
    }
}

fn check_lengths(key: &[u8], value: &[u8]) -> Result<()> {
    sealdb_base::check_entry_lengths(key, value).map_err(|e| Error::invalid_argument(e.to_string()))
}

/// Decodes the records of an encoded batch in order; yields an error (and stops) at the first
/// malformed record.
#[derive(Debug, Clone)]
pub struct RecordIter<'a> {
    reader: Reader<'a>,
    failed: bool,
}

impl<'a> RecordIter<'a> {
    /// Iterates the records of `rep`.
    pub fn new(rep: &'a [u8]) -> Self {
        Self {
            reader: Reader::new(rep),
            failed: false,
        }
    }

    fn decode_one(&mut self) -> std::result::Result<RecordRef<'a>, DecodeError> {
        let r = &mut self.reader;
        let op = match r.u8("op")? {
            0 => Op::Delete,
            1 => Op::Put,
            other => return Err(r.invalid("op", format!("{other} is not 0 or 1"))),
        };
        let keyspace = r.u32("keyspace")?;
        let key = r.bytes_u32(MAX_KEY_LEN, "key")?;
        let value = match op {
            Op::Put => r.bytes_u32(MAX_VALUE_LEN, "value")?,
            Op::Delete => &[],
        };
        Ok(RecordRef {
            op,
            keyspace,
            key,
            value,
        })
    }
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<RecordRef<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.reader.is_empty() {
            return None;
        }
        let start = self.reader.pos();
        match self.decode_one() {
            Ok(r) => Some(Ok(r)),
            Err(e) => {
                self.failed = true;
                Some(Err(Error::malformed(format!(
                    "bad record at byte {start} of a batch: {e}"
                ))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn into_rep_hands_over_the_encoded_records() -> Result<()> {
        let mut b = BatchBuilder::new();
        for i in 0..50u32 {
            b.put(i % 3, &i.to_be_bytes(), &[i as u8; 100])?;
            b.delete(9, &i.to_le_bytes())?;
        }
        let expected = b.rep().to_vec();
        let rep = b.clone().into_rep();
        assert_eq!(rep, expected);
        let decoded: Vec<RecordRef<'_>> = RecordIter::new(&rep).collect::<Result<_>>()?;
        assert_eq!(decoded.len(), 100);
        assert_eq!(decoded[2].keyspace, 1);
        assert_eq!(decoded[2].key, 1u32.to_be_bytes());
        assert_eq!(decoded[2].value, [1u8; 100]);
        assert_eq!(decoded[3].op, Op::Delete);
        assert_eq!(
            rep.len(),
            50 * (BatchBuilder::put_len(4, 100) + BatchBuilder::delete_len(4))
        );
        Ok(())
    }

    #[test]
    fn records_are_encoded_byte_for_byte_as_documented() -> Result<()> {
        let mut b = BatchBuilder::new();
        b.put(0x0102_0304, b"ab", b"xyz")?;
        b.delete(5, b"k")?;
        let put = [
            1u8, 4, 3, 2, 1, 2, 0, 0, 0, b'a', b'b', 3, 0, 0, 0, b'x', b'y', b'z',
        ];
        let delete = [0u8, 5, 0, 0, 0, 1, 0, 0, 0, b'k'];
        assert_eq!(b.rep(), [&put[..], &delete[..]].concat());
        Ok(())
    }

    #[test]
    fn round_trip() -> Result<()> {
        let mut b = BatchBuilder::new();
        b.put(0, b"k1", b"v1")?;
        b.delete(3, b"k2")?;
        b.put(7, b"", b"")?;
        let recs: Vec<_> = RecordIter::new(b.rep()).collect::<Result<_>>()?;
        assert_eq!(recs.len(), 3);
        assert_eq!(
            recs[0],
            RecordRef {
                op: Op::Put,
                keyspace: 0,
                key: b"k1",
                value: b"v1"
            }
        );
        assert_eq!(
            recs[1],
            RecordRef {
                op: Op::Delete,
                keyspace: 3,
                key: b"k2",
                value: b""
            }
        );
        assert_eq!(recs[2].keyspace, 7);
        Ok(())
    }

    #[test]
    fn a_batch_cannot_grow_past_one_frame() -> Result<()> {
        let value = vec![0u8; MAX_VALUE_LEN];
        let mut b = BatchBuilder::new();
        b.put(1, b"a", &value)?;
        let before = b.clone();
        match b.put(1, b"b", &value) {
            Err(Error::BatchTooLarge { size, limit }) => {
                assert_eq!(limit, MAX_BATCH_LEN as u64);
                assert_eq!(size as usize, 2 * (14 + MAX_VALUE_LEN));
            }
            other => panic!("expected BatchTooLarge, got {other:?}"),
        }
        assert_eq!(b, before, "a refused put leaves the batch unchanged");
        // What the builder accepts always fits in a frame alone.
        assert!(frame_len([MAX_BATCH_LEN]) <= MAX_FRAME_LEN);
        Ok(())
    }

    #[test]
    fn truncated_batch_is_an_error() -> Result<()> {
        let mut b = BatchBuilder::new();
        b.put(0, b"key", b"value")?;
        for cut in 0..b.rep().len() {
            let r: Vec<_> = RecordIter::new(&b.rep()[..cut]).collect();
            if cut > 0 {
                assert!(r.last().is_some_and(|x| x.is_err()), "cut {cut}");
            }
        }
        Ok(())
    }
}
