//! Data blocks: prefix-compressed internal entries with restart points, optionally LZ4
//! compressed, and their decoded in-memory form.
//!
//! A block is decoded once per load (then shared through the block cache) into a compact form
//! with every user key expanded into one buffer, so that iteration in both directions and
//! binary search are plain index arithmetic. Decoding treats the bytes as hostile even though
//! they authenticated: a bug elsewhere, or the `none` cipher, must not turn into a panic, an
//! unbounded allocation or out-of-order entries.

use crate::coding::internal_cmp;
use crate::{MAX_KEY_LEN, MAX_SEQ, ValueKind};
use sealdb_base::{PutBytes, Reader, le_u32_at};
use std::cmp::Ordering;

/// Entries between restart points (the first entry of each interval stores its whole key).
pub(crate) const RESTART_INTERVAL: usize = 16;
/// Largest decompressed data block a reader accepts (the sealed framing's own limit).
pub(crate) const MAX_DECODED_BLOCK: usize = sealdb_crypto::sealed::MAX_BLOCK_LEN as usize;
/// Largest total of expanded user keys one decoded block may hold. Prefix compression lets a
/// few bytes on disk stand for a long key, so without this cap a hostile block could ask for
/// gigabytes; the builder cuts blocks well below it.
pub(crate) const MAX_DECODED_KEY_BYTES: usize = 64 << 20;
/// Compression tag: the block follows as is.
pub(crate) const TAG_NONE: u8 = 0;
/// Compression tag: the block follows as `lz4_flex` block format with its size prepended.
pub(crate) const TAG_LZ4: u8 = 1;
/// Bytes of an entry besides its key and value: the trailer, and at least one byte per varint.
const MIN_ENTRY_OVERHEAD: usize = 8 + 3;

/// Builds the uncompressed bytes of one data block.
#[derive(Debug, Default)]
pub(crate) struct BlockBuilder {
    buf: Vec<u8>,
    restarts: Vec<u32>,
    count: usize,
    last_key: Vec<u8>,
    last_seq: u64,
    key_bytes: usize,
}

impl BlockBuilder {
    /// Appends one entry; the caller has already checked internal order and limits.
    pub(crate) fn add(&mut self, key: &[u8], seq: u64, kind: ValueKind, value: &[u8]) {
        let shared = if self.count.is_multiple_of(RESTART_INTERVAL) {
            // Offsets stay below the 64 MiB block limit the table builder enforces.
            self.restarts
                .push(u32::try_from(self.buf.len()).unwrap_or(u32::MAX));
            0
        } else {
            common_prefix(&self.last_key, key)
        };
        let unshared = key.get(shared..).unwrap_or_default();
        self.buf
            .put_varint(shared as u64)
            .put_varint(unshared.len() as u64)
            .put_varint(value.len() as u64)
            .put_raw(unshared)
            .put_u64((seq << 8) | kind as u64)
            .put_raw(value);
        self.last_key.clear();
        self.last_key.extend_from_slice(key);
        self.last_seq = seq;
        self.count += 1;
        self.key_bytes += key.len();
    }

    /// Size of the block if it were finished now.
    pub(crate) fn estimated_size(&self) -> usize {
        self.buf.len() + 4 * self.restarts.len() + 4
    }

    /// Sum of the full lengths of the keys added (what a reader will expand them to).
    pub(crate) fn key_bytes(&self) -> usize {
        self.key_bytes
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub(crate) fn count(&self) -> usize {
        self.count
    }

    pub(crate) fn last_key(&self) -> &[u8] {
        &self.last_key
    }

    pub(crate) fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Appends the restart array and returns the finished block; call [`reset`](Self::reset)
    /// before adding again.
    pub(crate) fn finish(&mut self) -> &[u8] {
        for r in &self.restarts {
            self.buf.put_u32(*r);
        }
        let n = u32::try_from(self.restarts.len()).unwrap_or(u32::MAX);
        self.buf.put_u32(n);
        &self.buf
    }

    pub(crate) fn reset(&mut self) {
        self.buf.clear();
        self.restarts.clear();
        self.count = 0;
        self.last_key.clear();
        self.last_seq = 0;
        self.key_bytes = 0;
    }
}

fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Produces the sealed plaintext of a data block: the compression tag, then the block, LZ4
/// compressed when `lz4` is set and compression saves at least an eighth (otherwise the cost
/// of decompressing on every read buys too little).
pub(crate) fn encode_block_payload(raw: &[u8], lz4: bool, out: &mut Vec<u8>) {
    out.clear();
    if lz4 {
        let compressed = lz4_flex::block::compress_prepend_size(raw);
        if compressed.len() < raw.len() - raw.len() / 8 {
            out.reserve(1 + compressed.len());
            out.push(TAG_LZ4);
            out.extend_from_slice(&compressed);
            return;
        }
    }
    out.reserve(1 + raw.len());
    out.push(TAG_NONE);
    out.extend_from_slice(raw);
}

/// Undoes [`encode_block_payload`]: strips the tag and decompresses, checking the declared
/// size against [`MAX_DECODED_BLOCK`] and against what LZ4 could possibly expand the input to
/// before allocating.
pub(crate) fn decode_block_payload(mut plain: Vec<u8>) -> Result<Vec<u8>, String> {
    match plain.first().copied() {
        None => Err("empty data block".into()),
        Some(TAG_NONE) => {
            plain.drain(..1);
            Ok(plain)
        }
        Some(TAG_LZ4) => {
            let body = plain.get(1..).unwrap_or_default();
            let declared =
                le_u32_at(body, 0).ok_or("lz4 block shorter than its size prefix")? as usize;
            let compressed_len = body.len().saturating_sub(4);
            // One LZ4 input byte yields at most 255 output bytes (a run-length extension
            // byte), plus a short fixed tail.
            let possible = compressed_len.saturating_mul(255).saturating_add(16);
            if declared > MAX_DECODED_BLOCK || declared > possible {
                return Err(format!(
                    "lz4 block declares {declared} bytes from {compressed_len} compressed bytes"
                ));
            }
            let out = lz4_flex::block::decompress_size_prepended(body)
                .map_err(|e| format!("lz4: {e}"))?;
            if out.len() != declared {
                return Err(format!(
                    "lz4 block decompressed to {} bytes, {declared} declared",
                    out.len()
                ));
            }
            Ok(out)
        }
        Some(t) => Err(format!("unknown compression tag {t}")),
    }
}

#[derive(Debug, Clone, Copy)]
struct EntryMeta {
    /// End of this entry's key in `keys` (it starts where the previous one ended).
    key_end: u32,
    value_off: u32,
    value_len: u32,
    /// `seq << 8 | kind`.
    trailer: u64,
}

/// A decoded data block: the decompressed bytes (values are read from them in place), every
/// user key expanded once, and one fixed-size record per entry.
#[derive(Debug)]
pub(crate) struct DataBlock {
    data: Vec<u8>,
    keys: Vec<u8>,
    metas: Vec<EntryMeta>,
}

impl DataBlock {
    /// Decodes the sealed plaintext of a data block (tag included). Errors are reasons; the
    /// caller adds the file and block offset.
    pub(crate) fn decode(plain: Vec<u8>) -> Result<Self, String> {
        Self::parse(decode_block_payload(plain)?)
    }

    fn parse(data: Vec<u8>) -> Result<Self, String> {
        if data.len() > MAX_DECODED_BLOCK {
            return Err(format!("block of {} bytes over the limit", data.len()));
        }
        let len = data.len();
        let count_at = len
            .checked_sub(4)
            .ok_or("block shorter than its restart count")?;
        let n_restarts = le_u32_at(&data, count_at).ok_or("restart count missing")? as usize;
        let restarts_at = n_restarts
            .checked_mul(4)
            .and_then(|b| count_at.checked_sub(b))
            .ok_or_else(|| format!("{n_restarts} restart points do not fit in the block"))?;
        let restarts = data.get(restarts_at..count_at).unwrap_or_default();
        let entry_bytes = data.get(..restarts_at).unwrap_or_default();
        if n_restarts == 0 || entry_bytes.is_empty() {
            return Err("block holds no entries".into());
        }

        let mut keys: Vec<u8> = Vec::with_capacity(entry_bytes.len().min(MAX_DECODED_KEY_BYTES));
        let mut metas: Vec<EntryMeta> =
            Vec::with_capacity(entry_bytes.len() / MIN_ENTRY_OVERHEAD / 4 + 1);
        let mut cur = Reader::new(entry_bytes);
        let mut prev_start = 0usize;
        let mut prev_seq = 0u64;
        while !cur.is_empty() {
            let i = metas.len();
            let entry_at = cur.pos();
            let shared = cur.varint_len(MAX_KEY_LEN, "shared key length")?;
            let unshared = cur.varint_len(MAX_KEY_LEN, "unshared key length")?;
            let value_len = cur.varint_len(MAX_DECODED_BLOCK, "value length")?;
            if i.is_multiple_of(RESTART_INTERVAL) {
                let expected = le_u32_at(restarts, 4 * (i / RESTART_INTERVAL))
                    .ok_or_else(|| format!("entry {i} needs a restart point the block lacks"))?;
                if expected as usize != entry_at || shared != 0 {
                    return Err(format!(
                        "restart point {} is inconsistent",
                        i / RESTART_INTERVAL
                    ));
                }
            }
            let prev_len = keys.len() - prev_start;
            if shared > prev_len {
                return Err(format!(
                    "entry {i} shares {shared} bytes of a {prev_len}-byte key"
                ));
            }
            let key_len = shared + unshared;
            if key_len > MAX_KEY_LEN {
                return Err(format!("entry {i} has a {key_len}-byte key"));
            }
            if keys.len() + key_len > MAX_DECODED_KEY_BYTES {
                return Err("expanded keys exceed the per-block limit".into());
            }
            let suffix = cur.take(unshared, "key bytes")?;
            let trailer = cur.u64("entry trailer")?;
            let value_off = to_u32(cur.pos())?;
            cur.take(value_len, "value bytes")?;
            let seq = trailer >> 8;
            if ValueKind::from_u8((trailer & 0xff) as u8).is_none() {
                return Err(format!("entry {i} has unknown kind {}", trailer & 0xff));
            }
            if seq > MAX_SEQ {
                return Err(format!(
                    "entry {i} has sequence number {seq} over the limit"
                ));
            }

            let start = keys.len();
            keys.extend_from_within(prev_start..prev_start + shared);
            keys.extend_from_slice(suffix);
            if i > 0 {
                let prev = keys.get(prev_start..start).unwrap_or_default();
                let this = keys.get(start..).unwrap_or_default();
                if internal_cmp(prev, prev_seq, this, seq) != Ordering::Less {
                    return Err(format!("entry {i} is out of order"));
                }
            }
            metas.push(EntryMeta {
                key_end: to_u32(keys.len())?,
                value_off,
                value_len: to_u32(value_len)?,
                trailer,
            });
            prev_start = start;
            prev_seq = seq;
        }
        if metas.len().div_ceil(RESTART_INTERVAL) != n_restarts {
            return Err(format!(
                "{n_restarts} restart points for {} entries",
                metas.len()
            ));
        }
        keys.shrink_to_fit();
        metas.shrink_to_fit();
        Ok(Self { data, keys, metas })
    }

    /// Number of entries (at least one).
    pub(crate) fn len(&self) -> usize {
        self.metas.len()
    }

    /// Bytes this block holds in memory, for the cache's budget.
    pub(crate) fn charge(&self) -> usize {
        self.data.capacity()
            + self.keys.capacity()
            + self.metas.capacity() * std::mem::size_of::<EntryMeta>()
            + std::mem::size_of::<Self>()
    }

    /// The user key of entry `i` (empty if `i` is out of range).
    pub(crate) fn key(&self, i: usize) -> &[u8] {
        let start = match i.checked_sub(1) {
            None => 0,
            Some(p) => self.metas.get(p).map_or(0, |m| m.key_end as usize),
        };
        match self.metas.get(i) {
            Some(m) => self.keys.get(start..m.key_end as usize).unwrap_or_default(),
            None => &[],
        }
    }

    /// The sequence number of entry `i`.
    pub(crate) fn seq(&self, i: usize) -> u64 {
        self.metas.get(i).map_or(0, |m| m.trailer >> 8)
    }

    /// The kind of entry `i` (validated when decoded).
    pub(crate) fn kind(&self, i: usize) -> ValueKind {
        self.metas
            .get(i)
            .and_then(|m| ValueKind::from_u8((m.trailer & 0xff) as u8))
            .unwrap_or(ValueKind::Delete)
    }

    /// The value of entry `i`.
    pub(crate) fn value(&self, i: usize) -> &[u8] {
        match self.metas.get(i) {
            Some(m) => {
                let start = m.value_off as usize;
                self.data
                    .get(start..start + m.value_len as usize)
                    .unwrap_or_default()
            }
            None => &[],
        }
    }

    /// The first index in `0..len` for which `pred` is false, given that `pred` is true for a
    /// prefix of the entries (they are sorted).
    fn partition(&self, pred: impl Fn(usize) -> bool) -> usize {
        let (mut lo, mut hi) = (0usize, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if pred(mid) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// First entry whose user key is `>= key` (`len()` if none).
    pub(crate) fn lower_bound(&self, key: &[u8]) -> usize {
        self.partition(|i| self.key(i) < key)
    }

    /// First entry whose user key is `> key` (`len()` if none).
    pub(crate) fn upper_bound(&self, key: &[u8]) -> usize {
        self.partition(|i| self.key(i) <= key)
    }

    /// First entry at or after `(key, seq)` in internal order (`len()` if none).
    pub(crate) fn seek_internal(&self, key: &[u8], seq: u64) -> usize {
        self.partition(|i| internal_cmp(self.key(i), self.seq(i), key, seq) == Ordering::Less)
    }
}

fn to_u32(v: usize) -> Result<u32, String> {
    u32::try_from(v).map_err(|_| "offset does not fit in 32 bits".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(entries: &[(&[u8], u64, ValueKind, &[u8])], lz4: bool) -> Vec<u8> {
        let mut b = BlockBuilder::default();
        for (k, s, kind, v) in entries {
            b.add(k, *s, *kind, v);
        }
        let mut out = Vec::new();
        encode_block_payload(b.finish(), lz4, &mut out);
        out
    }

    #[test]
    fn round_trip_with_restarts_and_lz4() {
        let keys: Vec<Vec<u8>> = (0..100)
            .map(|i| format!("user/{:05}/name", i / 2).into_bytes())
            .collect();
        let entries: Vec<(&[u8], u64, ValueKind, &[u8])> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let seq = if i % 2 == 0 { 10 } else { 5 };
                let kind = if i % 3 == 0 {
                    ValueKind::Delete
                } else {
                    ValueKind::Put
                };
                (k.as_slice(), seq, kind, &b"value-value-value"[..])
            })
            .collect();
        for lz4 in [false, true] {
            let plain = build(&entries, lz4);
            assert_eq!(
                plain.first().copied(),
                Some(if lz4 { TAG_LZ4 } else { TAG_NONE })
            );
            let block = DataBlock::decode(plain).expect("decodes");
            assert_eq!(block.len(), entries.len());
            for (i, (k, s, kind, v)) in entries.iter().enumerate() {
                assert_eq!(block.key(i), *k);
                assert_eq!(block.seq(i), *s);
                assert_eq!(block.kind(i), *kind);
                assert_eq!(block.value(i), *v);
            }
            assert_eq!(block.lower_bound(b"user/00003/name"), 6);
            assert_eq!(block.upper_bound(b"user/00003/name"), 8);
            assert_eq!(block.seek_internal(b"user/00003/name", 7), 7);
            assert_eq!(block.seek_internal(b"user/00003/name", 4), 8);
            assert_eq!(block.lower_bound(b"zzz"), 100);
        }
    }

    #[test]
    fn incompressible_block_is_stored_plain_even_with_lz4() {
        let v: Vec<u8> = (0..255u8).collect();
        let plain = build(&[(b"k", 1, ValueKind::Put, &v)], true);
        assert_eq!(plain.first().copied(), Some(TAG_NONE));
    }

    #[test]
    fn hostile_blocks_are_errors() {
        let good = build(
            &[
                (b"aaaa", 3, ValueKind::Put, b"x"),
                (b"aaab", 2, ValueKind::Put, b"y"),
            ],
            false,
        );
        for cut in 0..good.len() {
            let _ = DataBlock::decode(good.get(..cut).unwrap_or_default().to_vec());
        }
        for i in 0..good.len() {
            for bit in 0..8 {
                let mut bad = good.clone();
                if let Some(b) = bad.get_mut(i) {
                    *b ^= 1 << bit;
                }
                let _ = DataBlock::decode(bad);
            }
        }
        // Huge declared LZ4 size from a tiny input.
        let mut lz = vec![TAG_LZ4];
        lz.extend_from_slice(&(60u32 << 20).to_le_bytes());
        lz.extend_from_slice(&[0u8; 4]);
        assert!(DataBlock::decode(lz).is_err());
        // Out-of-order entries.
        let mut b = BlockBuilder::default();
        b.add(b"b", 1, ValueKind::Put, b"");
        b.add(b"a", 1, ValueKind::Put, b"");
        let mut out = Vec::new();
        encode_block_payload(b.finish(), false, &mut out);
        assert!(DataBlock::decode(out).is_err());
        // Same key, same seq.
        let mut b = BlockBuilder::default();
        b.add(b"a", 1, ValueKind::Put, b"");
        b.add(b"a", 1, ValueKind::Put, b"");
        let mut out = Vec::new();
        encode_block_payload(b.finish(), false, &mut out);
        assert!(DataBlock::decode(out).is_err());
        assert!(DataBlock::decode(Vec::new()).is_err());
        assert!(DataBlock::decode(vec![TAG_NONE, 0, 0, 0, 0]).is_err());
    }
}
