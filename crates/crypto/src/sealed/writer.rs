//! [`SealedWriter`]: appends sealed blocks to a new file.

use super::block::{BlockHandle, BlockSealer};
use super::header::FileHeader;
use crate::keyring::Keyring;
use crate::kinds::{ArtifactKind, CipherId};
use crate::{Error, Result};
use sealdb_vfs::{FileSystem, WritableFile};
use std::path::Path;

/// Writes a sealed file: the header, then blocks, then (optionally) a final block after which
/// it refuses to write. Never reopens or appends to an existing file.
#[derive(Debug)]
pub struct SealedWriter {
    file: Box<dyn WritableFile>,
    sealer: BlockSealer,
    offset: u64,
    finished: bool,
    scratch: Vec<u8>,
}

impl SealedWriter {
    /// Creates `path` (which must not exist) and writes its header.
    pub fn create(
        fs: &dyn FileSystem,
        path: &Path,
        keyring: &Keyring,
        kind: ArtifactKind,
        cipher: CipherId,
    ) -> Result<Self> {
        let label = path.display().to_string();
        let sealer = BlockSealer::for_new_file(keyring, kind, cipher, Vec::new(), label)?;
        let file = fs.create_new(path).map_err(|e| Error::io(path, e))?;
        Self::with_file(file, sealer)
    }

    /// Writes the header of `sealer` into a fresh, empty `file`.
    pub fn with_file(mut file: Box<dyn WritableFile>, sealer: BlockSealer) -> Result<Self> {
        if !file.is_empty() {
            return Err(Error::invalid_argument(format!(
                "{}: sealed files are never appended to after creation",
                sealer.label
            )));
        }
        let header = sealer.header.encode();
        file.append(&header)
            .map_err(|e| Error::io(sealer.label.clone(), e))?;
        Ok(Self {
            file,
            offset: header.len() as u64,
            sealer,
            finished: false,
            scratch: Vec::new(),
        })
    }

    /// The header written.
    pub fn header(&self) -> &FileHeader {
        self.sealer.header()
    }

    /// The sealer (to seal frames outside the writer, e.g. under a group-commit leader).
    pub fn sealer(&self) -> &BlockSealer {
        &self.sealer
    }

    /// Bytes written so far: where the next block will start.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Seals and appends one block.
    pub fn append_block(&mut self, plaintext: &[u8]) -> Result<BlockHandle> {
        self.append(plaintext, false)
    }

    /// Seals and appends the final block; the writer accepts nothing after it.
    pub fn finish(&mut self, plaintext: &[u8]) -> Result<BlockHandle> {
        self.append(plaintext, true)
    }

    /// Whether the final block has been written.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    fn append(&mut self, plaintext: &[u8], is_final: bool) -> Result<BlockHandle> {
        if self.finished {
            return Err(Error::invalid_argument(format!(
                "{}: write after the final block",
                self.sealer.label
            )));
        }
        self.scratch.clear();
        let handle = self
            .sealer
            .seal_into(self.offset, is_final, plaintext, &mut self.scratch)?;
        self.file
            .append(&self.scratch)
            .map_err(|e| Error::io(self.sealer.label.clone(), e))?;
        self.offset = handle.end();
        if is_final {
            self.finished = true;
        }
        if self.scratch.capacity() > 1 << 20 {
            self.scratch = Vec::new();
        }
        Ok(handle)
    }

    /// Appends bytes sealed by [`BlockSealer::seal_into`] at [`offset`](Self::offset) (the
    /// WAL seals frames before taking the file). `handle` is what `seal_into` returned.
    pub fn append_presealed(
        &mut self,
        bytes: &[u8],
        handle: BlockHandle,
        is_final: bool,
    ) -> Result<()> {
        if self.finished || handle.offset != self.offset || bytes.len() != handle.len as usize {
            return Err(Error::invalid_argument(format!(
                "{}: presealed block does not fit at offset {}",
                self.sealer.label, self.offset
            )));
        }
        self.file
            .append(bytes)
            .map_err(|e| Error::io(self.sealer.label.clone(), e))?;
        self.offset = handle.end();
        self.finished = is_final;
        Ok(())
    }

    /// A handle to sync the file from another thread, where the filesystem supports it.
    pub fn background_syncer(&self) -> Option<sealdb_vfs::BackgroundSync> {
        self.file.background_syncer()
    }

    /// Makes everything written durable (`fdatasync`).
    pub fn sync(&mut self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| Error::io(self.sealer.label.clone(), e))
    }
}
