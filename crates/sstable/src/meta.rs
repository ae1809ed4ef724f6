//! The table's metadata blocks: index, properties and footer (the filter lives in
//! `bloom.rs`). Each has an encoder used by the builder and a decoder that treats its bytes as
//! hostile and reports a reason the caller turns into a typed error.

use crate::coding::internal_cmp;
use crate::{Compression, MAX_KEY_LEN, MAX_SEQ};
use sealdb_base::{PutBytes, Reader, le_u32_at};
use sealdb_crypto::BlockHandle;
use std::cmp::Ordering;

/// The table format version written in the footer (the only one this build reads).
pub const TABLE_FORMAT_VERSION: u32 = 1;
/// The footer's magic number: the bytes `SDBTABLE` read as a little-endian u64.
pub const TABLE_MAGIC: u64 = u64::from_le_bytes(*b"SDBTABLE");
/// Plaintext length of the footer block.
pub(crate) const FOOTER_LEN: usize = 3 * 12 + 4 + 8;

fn put_handle(out: &mut Vec<u8>, h: BlockHandle) {
    out.put_u64(h.offset).put_u32(h.len);
}

fn get_handle(c: &mut Reader<'_>, field: &'static str) -> Result<BlockHandle, String> {
    Ok(BlockHandle {
        offset: c.u64(field)?,
        len: c.u32(field)?,
    })
}

// ---------------------------------------------------------------------------------------------
// Index

/// Accumulates the index block while data blocks are written.
#[derive(Debug, Default)]
pub(crate) struct IndexBuilder {
    buf: Vec<u8>,
    offsets: Vec<u32>,
}

impl IndexBuilder {
    /// Records one data block: its last user key and sequence number, where it is, and how
    /// many entries it holds.
    pub(crate) fn add(
        &mut self,
        last_key: &[u8],
        last_seq: u64,
        handle: BlockHandle,
        entries: u32,
    ) {
        self.offsets
            .push(u32::try_from(self.buf.len()).unwrap_or(u32::MAX));
        self.buf
            .put_varint(last_key.len() as u64)
            .put_raw(last_key)
            .put_u64(last_seq);
        put_handle(&mut self.buf, handle);
        self.buf.put_u32(entries);
    }

    pub(crate) fn estimated_size(&self) -> usize {
        self.buf.len() + 4 * self.offsets.len() + 4
    }

    pub(crate) fn finish(mut self) -> Vec<u8> {
        for o in &self.offsets {
            self.buf.put_u32(*o);
        }
        let n = u32::try_from(self.offsets.len()).unwrap_or(u32::MAX);
        self.buf.put_u32(n);
        self.buf
    }
}

/// One data block as the index describes it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IndexEntry {
    key_start: usize,
    key_end: usize,
    /// Sequence number of the block's last entry.
    pub(crate) last_seq: u64,
    /// Where the block is.
    pub(crate) handle: BlockHandle,
    /// How many entries it holds.
    pub(crate) entries: u32,
    /// Position of its first entry among all the table's entries.
    pub(crate) first_ordinal: u64,
}

/// The decoded index, kept in memory while the table is open.
#[derive(Debug)]
pub(crate) struct IndexBlock {
    data: Vec<u8>,
    entries: Vec<IndexEntry>,
    total_entries: u64,
}

impl IndexBlock {
    /// Decodes an index block whose data blocks must sit back to back from `data_start`.
    pub(crate) fn decode(data: Vec<u8>, data_start: u64) -> Result<Self, String> {
        let count_at = data
            .len()
            .checked_sub(4)
            .ok_or("index shorter than its entry count")?;
        let n = le_u32_at(&data, count_at).ok_or("index entry count missing")? as usize;
        let offsets_at = n
            .checked_mul(4)
            .and_then(|b| count_at.checked_sub(b))
            .ok_or_else(|| format!("{n} index offsets do not fit in the block"))?;
        let offsets = data.get(offsets_at..count_at).unwrap_or_default();
        let body = data.get(..offsets_at).unwrap_or_default();
        // Each entry takes at least 25 bytes; refuse a count the body cannot hold before
        // reserving room for it.
        if n > body.len() / 25 {
            return Err(format!("{n} index entries in {} bytes", body.len()));
        }
        let mut entries = Vec::with_capacity(n);
        let mut cur = Reader::new(body);
        let mut next_offset = data_start;
        let mut ordinal = 0u64;
        for i in 0..n {
            if le_u32_at(offsets, 4 * i) != u32::try_from(cur.pos()).ok() {
                return Err(format!("index offset {i} is inconsistent"));
            }
            let key_len = cur.varint_len(MAX_KEY_LEN, "index key length")?;
            let key_start = cur.pos();
            cur.take(key_len, "index key")?;
            let last_seq = cur.u64("index sequence number")?;
            let handle = get_handle(&mut cur, "index block handle")?;
            let count = cur.u32("index entry count")?;
            if last_seq > MAX_SEQ {
                return Err(format!("index entry {i} has sequence number {last_seq}"));
            }
            if handle.offset != next_offset {
                return Err(format!(
                    "data block {i} at offset {} where {next_offset} was expected",
                    handle.offset
                ));
            }
            if count == 0 {
                return Err(format!("data block {i} holds no entries"));
            }
            next_offset = handle
                .offset
                .checked_add(u64::from(handle.len))
                .ok_or("block handle overflows")?;
            let entry = IndexEntry {
                key_start,
                key_end: key_start + key_len,
                last_seq,
                handle,
                entries: count,
                first_ordinal: ordinal,
            };
            ordinal = ordinal
                .checked_add(u64::from(count))
                .ok_or("entry count overflows")?;
            if let Some(prev) = entries.last() {
                let prev: &IndexEntry = prev;
                let pk = data.get(prev.key_start..prev.key_end).unwrap_or_default();
                let k = data.get(entry.key_start..entry.key_end).unwrap_or_default();
                if internal_cmp(pk, prev.last_seq, k, last_seq) != Ordering::Less {
                    return Err(format!("index entry {i} is out of order"));
                }
            }
            entries.push(entry);
        }
        if !cur.is_empty() {
            return Err("bytes after the last index entry".into());
        }
        Ok(Self {
            data,
            entries,
            total_entries: ordinal,
        })
    }

    /// Number of data blocks.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Entries in all data blocks.
    pub(crate) fn total_entries(&self) -> u64 {
        self.total_entries
    }

    /// Where the last data block ends (`None` with no data blocks).
    pub(crate) fn data_end(&self) -> Option<u64> {
        self.entries.last().map(|e| e.handle.end())
    }

    pub(crate) fn entry(&self, i: usize) -> Option<&IndexEntry> {
        self.entries.get(i)
    }

    pub(crate) fn entries(&self) -> &[IndexEntry] {
        &self.entries
    }

    /// The last user key of data block `i`.
    pub(crate) fn last_key(&self, i: usize) -> &[u8] {
        self.entries
            .get(i)
            .and_then(|e| self.data.get(e.key_start..e.key_end))
            .unwrap_or_default()
    }

    /// The first block whose last user key is `>= key` (`len()` if none): the only block
    /// where the first entry with user key `>= key` can be.
    pub(crate) fn lower_bound(&self, key: &[u8]) -> usize {
        self.entries
            .partition_point(|e| self.data.get(e.key_start..e.key_end).unwrap_or_default() < key)
    }

    /// The first block whose last user key is `> key` (`len()` if none).
    pub(crate) fn upper_bound(&self, key: &[u8]) -> usize {
        self.entries
            .partition_point(|e| self.data.get(e.key_start..e.key_end).unwrap_or_default() <= key)
    }

    /// The first block whose last entry is at or after `(key, seq)` in internal order.
    pub(crate) fn seek_internal(&self, key: &[u8], seq: u64) -> usize {
        self.entries.partition_point(|e| {
            let k = self.data.get(e.key_start..e.key_end).unwrap_or_default();
            internal_cmp(k, e.last_seq, key, seq) == Ordering::Less
        })
    }

    /// The block holding entry `ordinal` (`len()` if past the end).
    pub(crate) fn block_of_ordinal(&self, ordinal: u64) -> usize {
        self.entries
            .partition_point(|e| e.first_ordinal + u64::from(e.entries) <= ordinal)
    }

    /// Bytes held in memory.
    pub(crate) fn memory(&self) -> usize {
        self.data.capacity() + self.entries.capacity() * std::mem::size_of::<IndexEntry>()
    }
}

// ---------------------------------------------------------------------------------------------
// Properties

/// What a table holds, stored sealed in its properties block and read when it is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableProperties {
    /// Entries (every version, tombstones included).
    pub entries: u64,
    /// Entries of kind [`Delete`](crate::ValueKind::Delete).
    pub tombstones: u64,
    /// Smallest user key (empty for an empty table).
    pub smallest: Vec<u8>,
    /// Largest user key (empty for an empty table).
    pub largest: Vec<u8>,
    /// Smallest sequence number (0 for an empty table).
    pub min_seq: u64,
    /// Largest sequence number (0 for an empty table).
    pub max_seq: u64,
    /// Data-key version of the file (the same as its sealed header's).
    pub data_key_version: u32,
    /// Compression the builder was asked for (each data block still says whether it used it).
    pub compression: Compression,
    /// Bloom filter bits per key (0: no filter).
    pub bloom_bits_per_key: u32,
    /// Number of data blocks.
    pub data_blocks: u64,
    /// Sum of the user-key lengths of all entries.
    pub raw_key_bytes: u64,
    /// Sum of the value lengths of all entries.
    pub raw_value_bytes: u64,
    /// When the table was finished (Unix seconds).
    pub creation_time: u64,
}

impl TableProperties {
    /// Layout (all little-endian): entries u64, tombstones u64, min seq u64, max seq u64,
    /// data-key version u32, compression u8, bloom bits per key u32, data blocks u64, raw key
    /// bytes u64, raw value bytes u64, creation time u64, smallest length u32, smallest,
    /// largest length u32, largest.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(81 + self.smallest.len() + self.largest.len());
        out.put_u64(self.entries)
            .put_u64(self.tombstones)
            .put_u64(self.min_seq)
            .put_u64(self.max_seq)
            .put_u32(self.data_key_version)
            .put_u8(self.compression.tag())
            .put_u32(self.bloom_bits_per_key)
            .put_u64(self.data_blocks)
            .put_u64(self.raw_key_bytes)
            .put_u64(self.raw_value_bytes)
            .put_u64(self.creation_time)
            .put_bytes_u32(&self.smallest)
            .put_bytes_u32(&self.largest);
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, String> {
        let mut c = Reader::new(bytes);
        let entries = c.u64("entries")?;
        let tombstones = c.u64("tombstones")?;
        let min_seq = c.u64("min seq")?;
        let max_seq = c.u64("max seq")?;
        let data_key_version = c.u32("data-key version")?;
        let compression = Compression::from_tag(c.u8("compression")?)
            .ok_or("unknown compression in properties")?;
        let bloom_bits_per_key = c.u32("bloom bits per key")?;
        let data_blocks = c.u64("data blocks")?;
        let raw_key_bytes = c.u64("raw key bytes")?;
        let raw_value_bytes = c.u64("raw value bytes")?;
        let creation_time = c.u64("creation time")?;
        let mut key = |field| -> Result<Vec<u8>, String> {
            let len = c.u32(field)? as usize;
            if len > MAX_KEY_LEN {
                return Err(format!("{field}: {len}-byte key"));
            }
            Ok(c.take(len, field)?.to_vec())
        };
        let smallest = key("smallest key")?;
        let largest = key("largest key")?;
        if !c.is_empty() {
            return Err("bytes after the properties".into());
        }
        if tombstones > entries || min_seq > max_seq || max_seq > MAX_SEQ {
            return Err("inconsistent counts or sequence range".into());
        }
        if entries == 0 && (data_blocks != 0 || !smallest.is_empty() || !largest.is_empty()) {
            return Err("an empty table with a key range".into());
        }
        if entries != 0 && (data_blocks == 0 || smallest > largest) {
            return Err("inconsistent key range".into());
        }
        Ok(Self {
            entries,
            tombstones,
            smallest,
            largest,
            min_seq,
            max_seq,
            data_key_version,
            compression,
            bloom_bits_per_key,
            data_blocks,
            raw_key_bytes,
            raw_value_bytes,
            creation_time,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Footer

/// The final block: where the metadata blocks are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Footer {
    pub(crate) index: BlockHandle,
    pub(crate) filter: BlockHandle,
    pub(crate) properties: BlockHandle,
}

impl Footer {
    /// Layout: index handle, filter handle, properties handle (each offset u64 + length u32),
    /// format version u32, magic u64; all little-endian, [`FOOTER_LEN`] bytes.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(FOOTER_LEN);
        put_handle(&mut out, self.index);
        put_handle(&mut out, self.filter);
        put_handle(&mut out, self.properties);
        out.put_u32(TABLE_FORMAT_VERSION).put_u64(TABLE_MAGIC);
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() != FOOTER_LEN {
            return Err(format!("footer of {} bytes", bytes.len()));
        }
        let mut c = Reader::new(bytes);
        let index = get_handle(&mut c, "index handle")?;
        let filter = get_handle(&mut c, "filter handle")?;
        let properties = get_handle(&mut c, "properties handle")?;
        let version = c.u32("format version")?;
        let magic = c.u64("magic")?;
        if magic != TABLE_MAGIC {
            return Err("bad table magic".into());
        }
        if version != TABLE_FORMAT_VERSION {
            return Err(format!("unsupported table format version {version}"));
        }
        Ok(Self {
            index,
            filter,
            properties,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_round_trip_and_searches() {
        let mut b = IndexBuilder::default();
        let h = |o, l| BlockHandle { offset: o, len: l };
        b.add(b"b", 5, h(64, 100), 3);
        b.add(b"b", 2, h(164, 50), 2);
        b.add(b"d", 9, h(214, 70), 4);
        let idx = IndexBlock::decode(b.finish(), 64).expect("decodes");
        assert_eq!(idx.len(), 3);
        assert_eq!(idx.total_entries(), 9);
        assert_eq!(idx.data_end(), Some(284));
        assert_eq!(idx.lower_bound(b"a"), 0);
        assert_eq!(idx.lower_bound(b"c"), 2);
        assert_eq!(idx.upper_bound(b"b"), 2);
        assert_eq!(idx.seek_internal(b"b", 3), 1);
        assert_eq!(idx.seek_internal(b"b", 1), 2);
        assert_eq!(idx.block_of_ordinal(4), 1);
        assert_eq!(idx.block_of_ordinal(9), 3);
        assert!(IndexBlock::decode(IndexBuilder::default().finish(), 64).is_ok());
    }

    #[test]
    fn index_rejects_gaps_and_disorder() {
        let h = |o, l| BlockHandle { offset: o, len: l };
        let mut b = IndexBuilder::default();
        b.add(b"b", 5, h(64, 100), 3);
        b.add(b"a", 5, h(164, 100), 3);
        assert!(IndexBlock::decode(b.finish(), 64).is_err());
        let mut b = IndexBuilder::default();
        b.add(b"a", 5, h(64, 100), 3);
        b.add(b"b", 5, h(165, 100), 3);
        assert!(IndexBlock::decode(b.finish(), 64).is_err());
        assert!(IndexBlock::decode(vec![0xff, 0xff, 0xff, 0x7f], 64).is_err());
    }

    #[test]
    fn footer_and_properties_round_trip() {
        let f = Footer {
            index: BlockHandle { offset: 1, len: 2 },
            filter: BlockHandle { offset: 3, len: 4 },
            properties: BlockHandle { offset: 5, len: 6 },
        };
        assert_eq!(Footer::decode(&f.encode()), Ok(f));
        let p = TableProperties {
            entries: 10,
            tombstones: 2,
            smallest: b"a".to_vec(),
            largest: b"z".to_vec(),
            min_seq: 1,
            max_seq: 20,
            data_key_version: 3,
            compression: Compression::Lz4,
            bloom_bits_per_key: 10,
            data_blocks: 2,
            raw_key_bytes: 10,
            raw_value_bytes: 100,
            creation_time: 1_700_000_000,
        };
        let enc = p.encode();
        assert_eq!(TableProperties::decode(&enc), Ok(p));
        for cut in 0..enc.len() {
            assert!(TableProperties::decode(enc.get(..cut).unwrap_or_default()).is_err());
        }
    }
}
