//! [`SealedReader`] and [`BlockIter`]: read a sealed file's header and blocks back.

use super::block::{BLOCK_PREFIX_LEN, Block, BlockHandle, BlockSealer, MAX_BLOCK_LEN};
use super::header::{Expected, FileHeader, HEADER_LEN};
use crate::keyring::Keyring;
use crate::{Error, IntegrityReason, Result};
use sealdb_base::le_u32_at;
use sealdb_vfs::{FileSystem, RandomAccessFile};
use std::path::Path;
use std::sync::Arc;

/// Reads a sealed file: verifies its header against what the caller expects, then opens
/// blocks by handle or in order.
#[derive(Debug, Clone)]
pub struct SealedReader {
    file: Arc<dyn RandomAccessFile>,
    sealer: Arc<BlockSealer>,
    len: u64,
    data_start: u64,
}

impl SealedReader {
    /// Opens `path` through `fs`.
    pub fn open(
        fs: &dyn FileSystem,
        path: &Path,
        keyring: &Keyring,
        expected: &Expected,
    ) -> Result<Self> {
        let file = fs.open_read(path).map_err(|e| Error::io(path, e))?;
        Self::from_file(file, path.display().to_string(), keyring, expected)
    }

    /// Reads the header of an already open file and prepares its cipher.
    pub fn from_file(
        file: Arc<dyn RandomAccessFile>,
        label: String,
        keyring: &Keyring,
        expected: &Expected,
    ) -> Result<Self> {
        let header = read_header(file.as_ref(), &label)?;
        let mismatch =
            |what| Error::integrity(label.clone(), None, IntegrityReason::HeaderMismatch(what));
        if header.kind != expected.kind {
            return Err(mismatch("artifact kind"));
        }
        if header.database_id != expected.database_id {
            return Err(mismatch("database id"));
        }
        if let Some(c) = expected.cipher
            && header.cipher != c
        {
            return Err(mismatch("cipher"));
        }
        let data_start = header.encoded_len();
        let len = file.len();
        let sealer = BlockSealer::for_header(keyring, header, label)?;
        Ok(Self {
            file,
            sealer: Arc::new(sealer),
            len,
            data_start,
        })
    }

    /// The verified header (its checksum held; its blocks authenticate it).
    pub fn header(&self) -> &FileHeader {
        self.sealer.header()
    }

    /// The file's length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the file holds no blocks.
    pub fn is_empty(&self) -> bool {
        self.len <= self.data_start
    }

    /// Offset of the first block.
    pub fn data_start(&self) -> u64 {
        self.data_start
    }

    /// Opens the block at `handle`.
    pub fn read_block(&self, handle: BlockHandle) -> Result<Block> {
        let err =
            |reason| Error::integrity(self.sealer.label().to_owned(), Some(handle.offset), reason);
        let min = (BLOCK_PREFIX_LEN + self.sealer.header().cipher.tag_len()) as u32;
        if handle.offset < self.data_start
            || handle.len < min
            || handle.len > MAX_BLOCK_LEN + min
            || handle.end() > self.len
        {
            return Err(err(IntegrityReason::BadLength));
        }
        let mut raw = vec![0u8; handle.len as usize];
        self.file
            .read_exact_at(&mut raw, handle.offset)
            .map_err(|e| Error::io(self.sealer.label().to_owned(), e))?;
        self.sealer.open(handle.offset, raw)
    }

    /// Reads the handle of the block at `offset` from its clear length prefix (the prefix is
    /// authenticated when the block is opened).
    pub fn handle_at(&self, offset: u64) -> Result<BlockHandle> {
        let err = |reason| Error::integrity(self.sealer.label().to_owned(), Some(offset), reason);
        if offset.saturating_add(BLOCK_PREFIX_LEN as u64) > self.len {
            return Err(err(IntegrityReason::Truncated));
        }
        let mut prefix = [0u8; BLOCK_PREFIX_LEN];
        self.file
            .read_exact_at(&mut prefix, offset)
            .map_err(|e| Error::io(self.sealer.label().to_owned(), e))?;
        let body_len = le_u32_at(&prefix, 0).ok_or_else(|| err(IntegrityReason::BadLength))?;
        let stored_crc = le_u32_at(&prefix, 5).ok_or_else(|| err(IntegrityReason::BadLength))?;
        // A prefix that does not check out is damage, not a torn write: a torn tail keeps
        // the bytes it wrote, so a complete prefix is always intact.
        if BlockSealer::prefix_crc(offset, prefix.get(..5).unwrap_or_default()) != stored_crc {
            return Err(err(IntegrityReason::PrefixChecksum));
        }
        if body_len > MAX_BLOCK_LEN {
            return Err(err(IntegrityReason::BadLength));
        }
        let len = BLOCK_PREFIX_LEN as u32 + body_len + self.sealer.header().cipher.tag_len() as u32;
        let handle = BlockHandle { offset, len };
        if handle.end() > self.len {
            return Err(err(IntegrityReason::Truncated));
        }
        Ok(handle)
    }

    /// Iterates the blocks in order, requiring the file to end exactly after a final block
    /// (a finalized artifact: table, manifest, catalogue).
    pub fn blocks(&self) -> BlockIter {
        BlockIter {
            reader: self.clone(),
            offset: self.data_start,
            require_final: true,
            done: false,
        }
    }

    /// Iterates the blocks in order; a file that ends cleanly on a block boundary without a
    /// final block is accepted (an active WAL or stream segment). A partial block at the end
    /// is reported as [`IntegrityReason::Truncated`] so the caller can decide whether it is
    /// a torn tail.
    pub fn blocks_unfinished_ok(&self) -> BlockIter {
        BlockIter {
            reader: self.clone(),
            offset: self.data_start,
            require_final: false,
            done: false,
        }
    }
}

fn read_header(file: &dyn RandomAccessFile, label: &str) -> Result<FileHeader> {
    let len = file.len();
    if len < HEADER_LEN as u64 {
        return Err(Error::integrity(label, None, IntegrityReason::Truncated));
    }
    let mut fixed = [0u8; HEADER_LEN];
    file.read_exact_at(&mut fixed, 0)
        .map_err(|e| Error::io(label, e))?;
    let (_, ext_len) = FileHeader::decode_fixed(&fixed, label)?;
    let total = HEADER_LEN as u64 + u64::from(ext_len);
    if total > len {
        return Err(Error::integrity(label, None, IntegrityReason::Truncated));
    }
    let mut all = vec![0u8; total as usize];
    file.read_exact_at(&mut all, 0)
        .map_err(|e| Error::io(label, e))?;
    FileHeader::decode(&all, label)
}

/// Reads just the header of a file (for `inspect` and for choosing keys before opening).
pub fn read_file_header(fs: &dyn FileSystem, path: &Path) -> Result<FileHeader> {
    let file = fs.open_read(path).map_err(|e| Error::io(path, e))?;
    read_header(file.as_ref(), &path.display().to_string())
}

/// Iterator over a sealed file's blocks in order; stops after the first error.
#[derive(Debug)]
pub struct BlockIter {
    reader: SealedReader,
    offset: u64,
    require_final: bool,
    done: bool,
}

impl BlockIter {
    /// The offset the next block would start at (after an error: where the bad block starts).
    pub fn offset(&self) -> u64 {
        self.offset
    }
}

impl Iterator for BlockIter {
    type Item = Result<(BlockHandle, Block)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if self.offset >= self.reader.len {
            self.done = true;
            if self.require_final {
                return Some(Err(Error::integrity(
                    self.reader.sealer.label.clone(),
                    Some(self.offset),
                    IntegrityReason::Truncated,
                )));
            }
            return None;
        }
        let result = self
            .reader
            .handle_at(self.offset)
            .and_then(|h| self.reader.read_block(h).map(|b| (h, b)));
        match result {
            Ok((handle, block)) => {
                self.offset = handle.end();
                if block.is_final {
                    self.done = true;
                    if self.offset != self.reader.len {
                        return Some(Err(Error::integrity(
                            self.reader.sealer.label.clone(),
                            Some(self.offset),
                            IntegrityReason::TrailingData,
                        )));
                    }
                }
                Some(Ok((handle, block)))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}
