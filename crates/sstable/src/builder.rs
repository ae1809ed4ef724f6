//! Writes a table: entries in internal order become sealed data blocks, then the index,
//! filter, properties and footer blocks. Nothing reaches the file except through
//! [`SealedWriter`], so nothing but the sealed header is ever in clear.

use crate::block::{BlockBuilder, MAX_DECODED_KEY_BYTES, encode_block_payload};
use crate::bloom;
use crate::coding::internal_cmp;
use crate::meta::{Footer, IndexBuilder, TableProperties};
use crate::table::{TableMeta, footer_digest};
use crate::{Compression, Error, MAX_BLOCK_SIZE, MAX_SEQ, Result, TableOptions, ValueKind};
use sealdb_crypto::{ArtifactKind, Keyring, SealedWriter};
use sealdb_vfs::FileSystem;
use std::cmp::Ordering;
use std::fmt;
use std::path::Path;

/// Builds one table file. Create it, [`add`](Self::add) entries in internal order, then
/// [`finish`](Self::finish) (or [`abandon`](Self::abandon) and delete the file).
pub struct TableBuilder {
    writer: SealedWriter,
    label: String,
    opts: TableOptions,
    block: BlockBuilder,
    index: IndexBuilder,
    /// Hashes of the distinct user keys, for the filter built at the end.
    hashes: Vec<u64>,
    /// Scratch for a block's sealed plaintext (tag plus possibly compressed block).
    payload: Vec<u8>,
    /// Cut a block once its expanded keys reach this, so a reader's decoded block stays far
    /// below [`MAX_DECODED_KEY_BYTES`] even with long shared key prefixes.
    key_bytes_limit: usize,
    last_key: Vec<u8>,
    last_seq: u64,
    smallest: Vec<u8>,
    entries: u64,
    tombstones: u64,
    min_seq: u64,
    max_seq: u64,
    raw_key_bytes: u64,
    raw_value_bytes: u64,
    data_blocks: u64,
    failed: bool,
}

impl fmt::Debug for TableBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TableBuilder")
            .field("file", &self.label)
            .field("entries", &self.entries)
            .field("data_blocks", &self.data_blocks)
            .finish_non_exhaustive()
    }
}

impl TableBuilder {
    /// Creates `path` (which must not exist) as a sealed table file of `opts.kind` under the
    /// keyring's current data key.
    pub fn create(
        fs: &dyn FileSystem,
        path: &Path,
        keyring: &Keyring,
        opts: &TableOptions,
    ) -> Result<Self> {
        if opts.block_size == 0 || opts.block_size > MAX_BLOCK_SIZE {
            return Err(Error::invalid_argument(format!(
                "block size {} is not in 1..={MAX_BLOCK_SIZE}",
                opts.block_size
            )));
        }
        if opts.bloom_bits_per_key > bloom::MAX_BITS_PER_KEY {
            return Err(Error::invalid_argument(format!(
                "{} bloom bits per key is over the limit of {}",
                opts.bloom_bits_per_key,
                bloom::MAX_BITS_PER_KEY
            )));
        }
        if !matches!(opts.kind, ArtifactKind::Table | ArtifactKind::Index) {
            return Err(Error::invalid_argument(format!(
                "a table cannot be a sealed file of kind {}",
                opts.kind.name()
            )));
        }
        let writer = SealedWriter::create(fs, path, keyring, opts.kind, opts.cipher)?;
        Ok(Self {
            writer,
            label: path.display().to_string(),
            opts: opts.clone(),
            block: BlockBuilder::default(),
            index: IndexBuilder::default(),
            hashes: Vec::new(),
            payload: Vec::new(),
            key_bytes_limit: opts.block_size.saturating_mul(16).clamp(1 << 20, 32 << 20),
            last_key: Vec::new(),
            last_seq: 0,
            smallest: Vec::new(),
            entries: 0,
            tombstones: 0,
            min_seq: u64::MAX,
            max_seq: 0,
            raw_key_bytes: 0,
            raw_value_bytes: 0,
            data_blocks: 0,
            failed: false,
        })
    }

    /// Appends one entry. Entries must come in internal order: user key ascending, then
    /// sequence number descending, each `(key, seq)` once; anything else is
    /// [`Error::InvalidArgument`]. A tombstone's value is stored as given (normally empty).
    pub fn add(&mut self, key: &[u8], seq: u64, kind: ValueKind, value: &[u8]) -> Result<()> {
        self.check_usable()?;
        sealdb_base::check_entry_lengths(key, value)
            .map_err(|e| Error::invalid_argument(e.to_string()))?;
        if seq > MAX_SEQ {
            return Err(Error::invalid_argument(format!(
                "sequence number {seq} exceeds {MAX_SEQ}"
            )));
        }
        let new_key = if self.entries == 0 {
            self.smallest = key.to_vec();
            true
        } else {
            match internal_cmp(&self.last_key, self.last_seq, key, seq) {
                Ordering::Less => key != self.last_key.as_slice(),
                _ => {
                    return Err(Error::invalid_argument(format!(
                        "{}: entry (seq {seq}) is not after the previous entry (seq {}) in \
                         internal order",
                        self.label, self.last_seq
                    )));
                }
            }
        };
        if new_key {
            self.hashes.push(bloom::key_hash(key));
            self.last_key.clear();
            self.last_key.extend_from_slice(key);
        }
        self.last_seq = seq;
        self.block.add(key, seq, kind, value);
        self.entries += 1;
        if kind == ValueKind::Delete {
            self.tombstones += 1;
        }
        self.min_seq = self.min_seq.min(seq);
        self.max_seq = self.max_seq.max(seq);
        self.raw_key_bytes += key.len() as u64;
        self.raw_value_bytes += value.len() as u64;
        if self.block.estimated_size() >= self.opts.block_size
            || self.block.key_bytes() >= self.key_bytes_limit
        {
            self.guarded(Self::flush_block)?;
        }
        Ok(())
    }

    /// Bytes the file would have if finished now (approximately: the filter and properties
    /// are estimated).
    pub fn estimated_size(&self) -> u64 {
        let filter = self.hashes.len() as u64 * u64::from(self.opts.bloom_bits_per_key) / 8;
        self.writer.offset()
            + self.block.estimated_size() as u64
            + self.index.estimated_size() as u64
            + filter
            + 2 * self.last_key.len() as u64
            + 256
    }

    /// Entries added so far.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Writes the last data block, the index, filter and properties blocks and the footer
    /// (the final block), then makes the file durable with `fdatasync`. The caller still
    /// has to sync the directory for the file's name to survive a crash.
    pub fn finish(mut self) -> Result<TableMeta> {
        self.check_usable()?;
        self.guarded(Self::finish_inner)
    }

    /// Drops the builder without finishing the file; the caller deletes it.
    pub fn abandon(self) {
        drop(self);
    }

    fn check_usable(&self) -> Result<()> {
        if self.failed {
            return Err(Error::invalid_argument(format!(
                "{}: an earlier write failed; abandon this builder",
                self.label
            )));
        }
        Ok(())
    }

    /// Runs a step that writes, remembering a failure: after a failed write the file's tail
    /// is unknown, so the builder refuses to go on.
    fn guarded<T>(&mut self, step: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        let r = step(self);
        if r.is_err() {
            self.failed = true;
        }
        r
    }

    fn flush_block(&mut self) -> Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        let count = u32::try_from(self.block.count())
            .map_err(|_| Error::invalid_argument("too many entries in one block".into()))?;
        encode_block_payload(
            self.block.finish(),
            self.opts.compression == Compression::Lz4,
            &mut self.payload,
        );
        let handle = self.writer.append_block(&self.payload)?;
        self.index
            .add(self.block.last_key(), self.block.last_seq(), handle, count);
        self.block.reset();
        self.data_blocks += 1;
        if self.payload.capacity() > 4 * self.opts.block_size.max(1 << 16) {
            self.payload = Vec::new();
        }
        Ok(())
    }

    fn finish_inner(&mut self) -> Result<TableMeta> {
        self.flush_block()?;
        let index = std::mem::take(&mut self.index).finish();
        let index_handle = self.writer.append_block(&index)?;
        drop(index);
        let filter = bloom::build(&self.hashes, self.opts.bloom_bits_per_key);
        let filter_handle = self.writer.append_block(&filter)?;
        drop(filter);
        let data_key_version = self.writer.header().data_key_version;
        let empty = self.entries == 0;
        let props = TableProperties {
            entries: self.entries,
            tombstones: self.tombstones,
            smallest: self.smallest.clone(),
            largest: if empty {
                Vec::new()
            } else {
                self.last_key.clone()
            },
            min_seq: if empty { 0 } else { self.min_seq },
            max_seq: self.max_seq,
            data_key_version,
            compression: self.opts.compression,
            bloom_bits_per_key: self.opts.bloom_bits_per_key,
            data_blocks: self.data_blocks,
            raw_key_bytes: self.raw_key_bytes,
            raw_value_bytes: self.raw_value_bytes,
            creation_time: sealdb_crypto::unix_now(),
        };
        let props_handle = self.writer.append_block(&props.encode())?;
        let footer = Footer {
            index: index_handle,
            filter: filter_handle,
            properties: props_handle,
        }
        .encode();
        // Sealed outside the writer so the footer's on-disk bytes can be digested for the
        // manifest without reading them back.
        let mut sealed = Vec::new();
        let offset = self.writer.offset();
        let handle = self
            .writer
            .sealer()
            .seal_into(offset, true, &footer, &mut sealed)?;
        self.writer.append_presealed(&sealed, handle, true)?;
        self.writer.sync()?;
        Ok(TableMeta::new(
            &props,
            self.writer.offset(),
            self.writer.header().file_id,
            footer_digest(&sealed),
        ))
    }
}

// The builder must stay well inside what the reader accepts.
const _: () = assert!(32 << 20 < MAX_DECODED_KEY_BYTES);
