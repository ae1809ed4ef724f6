//! Reads a table: opens and authenticates the footer, index, filter and properties blocks up
//! front (keeping the index and filter in memory), then loads one data block per lookup,
//! through the block cache when there is one.

use crate::block::DataBlock;
use crate::bloom::BloomFilter;
use crate::cache::BlockCache;
use crate::coding::internal_cmp;
use crate::iter::TableIter;
use crate::meta::{FOOTER_LEN, Footer, IndexBlock, TableProperties};
use crate::{Error, Result, ValueKind};
use sealdb_crypto::sealed::BLOCK_PREFIX_LEN;
use sealdb_crypto::{
    Block, BlockHandle, BlockSealer, Expected, FileId, IntegrityReason, Keyring, SealedReader,
};
use sealdb_vfs::{FileSystem, RandomAccessFile};
use sha2::{Digest, Sha256};
use std::cmp::Ordering;
use std::fmt;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

/// What the engine records about a table in its manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableMeta {
    /// File length in bytes.
    pub file_size: u64,
    /// Entries (every version, tombstones included).
    pub entries: u64,
    /// Tombstones among them.
    pub tombstones: u64,
    /// Smallest user key (empty for an empty table).
    pub smallest: Vec<u8>,
    /// Largest user key (empty for an empty table).
    pub largest: Vec<u8>,
    /// Smallest sequence number (0 for an empty table).
    pub min_seq: u64,
    /// Largest sequence number (0 for an empty table).
    pub max_seq: u64,
    /// Data-key version the file is sealed under (from its sealed header).
    pub data_key_version: u32,
    /// The sealed file's id (from its header).
    pub file_id: FileId,
    /// SHA-256 of the footer block's sealed on-disk bytes (length prefix, ciphertext, tag).
    /// The footer's tag depends on the file's key, header and every metadata handle, so a
    /// file replaced by an older or foreign copy shows a different digest.
    pub footer_digest: [u8; 32],
}

impl TableMeta {
    /// The manifest's view of a table: what its properties block says about its contents,
    /// and the facts only the finished file has (its length, id and footer digest, which the
    /// properties block cannot hold because it is sealed inside the file). The one place
    /// that copies properties into a `TableMeta`, for the builder and for an opened table.
    pub(crate) fn new(
        props: &TableProperties,
        file_size: u64,
        file_id: FileId,
        footer_digest: [u8; 32],
    ) -> Self {
        Self {
            file_size,
            entries: props.entries,
            tombstones: props.tombstones,
            smallest: props.smallest.clone(),
            largest: props.largest.clone(),
            min_seq: props.min_seq,
            max_seq: props.max_seq,
            data_key_version: props.data_key_version,
            file_id,
            footer_digest,
        }
    }
}

/// SHA-256 of a footer block's sealed bytes.
pub(crate) fn footer_digest(sealed: &[u8]) -> [u8; 32] {
    Sha256::digest(sealed).into()
}

/// An open table; share it as `Arc<Table>` between threads.
pub struct Table {
    reader: SealedReader,
    file: Arc<dyn RandomAccessFile>,
    label: String,
    meta: TableMeta,
    props: TableProperties,
    footer: Footer,
    footer_handle: BlockHandle,
    index: IndexBlock,
    filter: BloomFilter,
    cache: Option<Arc<BlockCache>>,
    cache_id: u64,
}

impl fmt::Debug for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Table")
            .field("file", &self.label)
            .field("meta", &self.meta)
            .finish_non_exhaustive()
    }
}

impl Table {
    /// Opens `path`, checks its sealed header against `expected` (kind, database, cipher)
    /// and authenticates and decodes the footer, index, filter and properties blocks.
    /// Data blocks are read on demand.
    pub fn open(
        fs: &dyn FileSystem,
        path: &Path,
        keyring: &Keyring,
        expected: &Expected,
        cache: Option<Arc<BlockCache>>,
    ) -> Result<Arc<Table>> {
        let label = path.display().to_string();
        let file = fs.open_read(path).map_err(|source| Error::Io {
            path: label.clone(),
            source,
        })?;
        let reader = SealedReader::from_file(file.clone(), label.clone(), keyring, expected)?;
        let header = reader.header().clone();
        let integrity = |block, reason| {
            Error::Crypto(sealdb_crypto::Error::integrity(
                label.clone(),
                block,
                reason,
            ))
        };
        let corrupt = |block, reason: String| Error::corrupt(&label, block, reason);

        // The footer has a fixed size, so it is found from the end without trusting any
        // length stored in the file.
        let footer_len = (BLOCK_PREFIX_LEN + FOOTER_LEN + header.cipher.tag_len()) as u64;
        let footer_offset = reader
            .len()
            .checked_sub(footer_len)
            .filter(|o| *o >= reader.data_start())
            .ok_or_else(|| integrity(None, IntegrityReason::Truncated))?;
        let footer_handle = BlockHandle {
            offset: footer_offset,
            len: footer_len as u32,
        };
        let mut raw = vec![0u8; footer_len as usize];
        file.read_exact_at(&mut raw, footer_offset)
            .map_err(|source| Error::Io {
                path: label.clone(),
                source,
            })?;
        let digest = footer_digest(&raw);
        // The reader's sealer is private to it; a second one over the same verified header
        // opens exactly the bytes just digested (no second read to race with).
        let sealer = BlockSealer::for_header(keyring, header.clone(), label.clone())?;
        let block = sealer.open(footer_offset, raw)?;
        drop(sealer);
        if !block.is_final {
            // The last bytes happen to form a valid non-final block: the file was cut short
            // at a block boundary.
            return Err(integrity(Some(footer_offset), IntegrityReason::Truncated));
        }
        let footer = Footer::decode(&block.data).map_err(|r| corrupt(Some(footer_offset), r))?;

        // The metadata blocks follow the data blocks back to back, in this order, and the
        // footer follows them: checked exactly (with overflow-checked ends, since the
        // handles are only as trustworthy as the cipher), so `verify` knows every block.
        let end = |h: BlockHandle| h.offset.checked_add(u64::from(h.len));
        if end(footer.index) != Some(footer.filter.offset)
            || end(footer.filter) != Some(footer.properties.offset)
            || end(footer.properties) != Some(footer_offset)
            || footer.index.offset < reader.data_start()
        {
            return Err(corrupt(
                Some(footer_offset),
                "metadata block handles are not contiguous".into(),
            ));
        }
        let read_meta = |h: BlockHandle| -> Result<Block> {
            let b = reader.read_block(h)?;
            if b.is_final {
                return Err(corrupt(
                    Some(h.offset),
                    "final flag on a metadata block".into(),
                ));
            }
            Ok(b)
        };
        let props_block = read_meta(footer.properties)?;
        let props = TableProperties::decode(&props_block.data)
            .map_err(|r| corrupt(Some(footer.properties.offset), r))?;
        let index_block = read_meta(footer.index)?;
        let index = IndexBlock::decode(index_block.data, reader.data_start())
            .map_err(|r| corrupt(Some(footer.index.offset), r))?;
        let filter_block = read_meta(footer.filter)?;
        let filter = BloomFilter::decode(&filter_block.data)
            .map_err(|r| corrupt(Some(footer.filter.offset), r))?;

        let idx_at = Some(footer.index.offset);
        if index.data_end().unwrap_or(reader.data_start()) != footer.index.offset {
            return Err(corrupt(
                idx_at,
                "data blocks do not end where the index starts".into(),
            ));
        }
        if index.len() as u64 != props.data_blocks || index.total_entries() != props.entries {
            return Err(corrupt(
                idx_at,
                "index disagrees with the properties' counts".into(),
            ));
        }
        if props.data_key_version != header.data_key_version {
            return Err(corrupt(
                Some(footer.properties.offset),
                "properties name another data-key version than the header".into(),
            ));
        }
        if let Some(last) = index.len().checked_sub(1)
            && (index.last_key(last) != props.largest.as_slice()
                || index.last_key(0) < props.smallest.as_slice())
        {
            return Err(corrupt(idx_at, "index disagrees with the key range".into()));
        }

        // The properties' data-key version was checked against the header's above.
        let meta = TableMeta::new(&props, reader.len(), header.file_id, digest);
        let cache_id = cache.as_ref().map_or(0, |c| c.new_id());
        Ok(Arc::new(Table {
            reader,
            file,
            label,
            meta,
            props,
            footer,
            footer_handle,
            index,
            filter,
            cache,
            cache_id,
        }))
    }

    /// What the manifest records; `footer_digest` was computed from the footer's bytes on
    /// disk when the table was opened, for the engine to compare with its manifest.
    pub fn meta(&self) -> &TableMeta {
        &self.meta
    }

    /// The decoded properties block.
    pub fn properties(&self) -> &TableProperties {
        &self.props
    }

    /// The file's path as given to [`open`](Self::open) (used in errors).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Bytes held in memory for the table's lifetime (index and filter).
    pub fn memory_bytes(&self) -> usize {
        self.index.memory() + self.filter.memory()
    }

    /// Whether the bloom filter admits `key` (`false`: certainly absent).
    pub fn may_contain(&self, key: &[u8]) -> bool {
        self.filter.may_contain(key)
    }

    /// The newest version of `key` with sequence number `<= snapshot`: `(seq, Some(value))`
    /// for a put, `(seq, None)` for a tombstone, `None` if the table has no such version.
    /// Reads at most one data block.
    pub fn get(&self, key: &[u8], snapshot: u64) -> Result<Option<(u64, Option<Vec<u8>>)>> {
        if !self.filter.may_contain(key) {
            return Ok(None);
        }
        let i = self.index.seek_internal(key, snapshot);
        if i >= self.index.len() {
            return Ok(None);
        }
        let block = self.load_block(i)?;
        let e = block.seek_internal(key, snapshot);
        if e >= block.len() || block.key(e) != key {
            return Ok(None);
        }
        let seq = block.seq(e);
        Ok(Some(match block.kind(e) {
            ValueKind::Put => (seq, Some(block.value(e).to_vec())),
            ValueKind::Delete => (seq, None),
        }))
    }

    /// An iterator over every entry (all versions, internal order) with user keys within
    /// `lower..upper`, usable from both ends. It owns a reference to the table.
    pub fn iter(self: &Arc<Self>, lower: Bound<Vec<u8>>, upper: Bound<Vec<u8>>) -> TableIter {
        TableIter::new(Arc::clone(self), lower, upper)
    }

    /// Reads and authenticates every block of the file and checks each data block against
    /// the index. Returns every failure found (empty: the file is intact). Integrity errors
    /// name the file and the byte offset of the block.
    pub fn verify(&self) -> Vec<Error> {
        let mut errors = Vec::new();
        let mut expected: Vec<(BlockHandle, Role)> = self
            .index
            .entries()
            .iter()
            .enumerate()
            .map(|(i, e)| (e.handle, Role::Data(i)))
            .collect();
        expected.push((self.footer.index, Role::Meta));
        expected.push((self.footer.filter, Role::Meta));
        expected.push((self.footer.properties, Role::Meta));
        expected.push((self.footer_handle, Role::Footer));

        // One pass in file order; `blocks()` stops at the first failure, after which the
        // remaining blocks are opened by their handles so each failure is reported.
        let mut next = 0usize;
        let mut walk = self.reader.blocks();
        for item in walk.by_ref() {
            match item {
                Ok((handle, block)) => match expected.get(next) {
                    Some((h, role)) if *h == handle => {
                        if let Err(e) = self.check_block(*role, handle, block) {
                            errors.push(e);
                        }
                        next += 1;
                    }
                    _ => {
                        errors.push(Error::corrupt(
                            &self.label,
                            Some(handle.offset),
                            "a block the index and footer do not list",
                        ));
                        break;
                    }
                },
                Err(e) => {
                    let at = expected.get(next).map(|(h, _)| h.offset);
                    if at.is_some() && crypto_block(&e) == at {
                        next += 1;
                    }
                    errors.push(e.into());
                    break;
                }
            }
        }
        for (handle, role) in expected.iter().skip(next) {
            match self.reader.read_block(*handle) {
                Ok(block) => {
                    if let Err(e) = self.check_block(*role, *handle, block) {
                        errors.push(e);
                    }
                }
                Err(e) => errors.push(e.into()),
            }
        }
        // The footer as it is on disk now must still be the one this table was opened with.
        let mut raw = vec![0u8; self.footer_handle.len as usize];
        match self.file.read_exact_at(&mut raw, self.footer_handle.offset) {
            Ok(()) if footer_digest(&raw) == self.meta.footer_digest => {}
            Ok(()) => errors.push(Error::corrupt(
                &self.label,
                Some(self.footer_handle.offset),
                "footer changed since the table was opened",
            )),
            Err(source) => errors.push(Error::Io {
                path: self.label.clone(),
                source,
            }),
        }
        errors
    }

    fn check_block(&self, role: Role, handle: BlockHandle, block: Block) -> Result<()> {
        let want_final = role == Role::Footer;
        if block.is_final != want_final {
            return Err(Error::corrupt(
                &self.label,
                Some(handle.offset),
                "final flag on the wrong block",
            ));
        }
        match role {
            Role::Data(i) => {
                let decoded = DataBlock::decode(block.data)
                    .map_err(|r| Error::corrupt(&self.label, Some(handle.offset), r))?;
                self.check_against_index(i, &decoded)
            }
            // Decoded and cross-checked at open; authenticating them again is the point here.
            Role::Meta | Role::Footer => Ok(()),
        }
    }

    /// A decoded data block must be exactly what the index says: its entry count, its last
    /// entry, and a first entry after the previous block's last. With these checks the
    /// searches of `get` and the iterator may rely on the index.
    fn check_against_index(&self, i: usize, block: &DataBlock) -> Result<()> {
        let entry = self.index.entry(i);
        let at = entry.map(|e| e.handle.offset);
        let bad = |why: &str| Err(Error::corrupt(&self.label, at, why));
        let Some(entry) = entry else {
            return bad("no index entry for the block");
        };
        let n = block.len();
        if n != entry.entries as usize {
            return bad("entry count differs from the index");
        }
        let last = n.saturating_sub(1);
        if block.key(last) != self.index.last_key(i) || block.seq(last) != entry.last_seq {
            return bad("last entry differs from the index");
        }
        match i.checked_sub(1) {
            Some(p) => {
                let prev_seq = self.index.entry(p).map_or(0, |e| e.last_seq);
                if internal_cmp(self.index.last_key(p), prev_seq, block.key(0), block.seq(0))
                    != Ordering::Less
                {
                    return bad("first entry is not after the previous block");
                }
            }
            None => {
                if block.key(0) != self.props.smallest.as_slice() {
                    return bad("first entry differs from the smallest key");
                }
            }
        }
        Ok(())
    }

    /// The decoded data block `i`, from the cache or read, authenticated, decoded and checked.
    pub(crate) fn load_block(&self, i: usize) -> Result<Arc<DataBlock>> {
        let Some(entry) = self.index.entry(i) else {
            return Err(Error::corrupt(
                &self.label,
                None,
                format!("no data block {i}"),
            ));
        };
        let offset = entry.handle.offset;
        if let Some(cache) = &self.cache
            && let Some(b) = cache.get(self.cache_id, offset)
        {
            return Ok(b);
        }
        let block = self.reader.read_block(entry.handle)?;
        if block.is_final {
            return Err(Error::corrupt(
                &self.label,
                Some(offset),
                "final flag on a data block",
            ));
        }
        let decoded = DataBlock::decode(block.data)
            .map_err(|r| Error::corrupt(&self.label, Some(offset), r))?;
        self.check_against_index(i, &decoded)?;
        let decoded = Arc::new(decoded);
        if let Some(cache) = &self.cache {
            cache.insert(self.cache_id, offset, Arc::clone(&decoded));
        }
        Ok(decoded)
    }

    pub(crate) fn index(&self) -> &IndexBlock {
        &self.index
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Data(usize),
    Meta,
    Footer,
}

fn crypto_block(e: &sealdb_crypto::Error) -> Option<u64> {
    match e {
        sealdb_crypto::Error::Integrity { block, .. } => *block,
        _ => None,
    }
}
