//! The sealed-file framing: one implementation for every durable artifact.
//!
//! A sealed file is a plaintext header followed by blocks, each sealed on its own:
//!
//! ```text
//! header   magic "SEALDBSF" | version u16 | kind u8 | cipher u8 | data-key version u32 |
//!          file id [16] | database id [16] | extension length u32 | reserved [8] | crc32 u32
//! ext      extension bytes (only the KEYS file uses it: its key envelope)
//! block*   body length u32 | flags u8 | prefix crc32 u32 | body (ciphertext) | tag [16] (crc32 [4] for `none`)
//! ```
//!
//! Every integer is little-endian. A block's nonce is its byte offset in the file; its
//! associated data binds the header (so the database id, file id, kind, cipher and data-key
//! version), a digest of the extension, the block's offset and its length-and-flags prefix
//! (so the final flag). This module never writes a byte of a block body in clear (except in
//! the explicit `none` cipher mode) and never returns a body that failed verification.
//!
//! The nonce argument (see `docs/crypto.md`): each file has a fresh random 128-bit file id and
//! so its own HKDF-derived key; within a file every block sits at a distinct offset; files are
//! created with `create_new` and only ever appended to by the one [`SealedWriter`] that
//! created them, which refuses to write after the final block. So no (key, nonce) pair repeats.

use crate::keyring::{FileCipher, Keyring, NONCE_LEN, TAG_LEN};
use crate::keys::{DatabaseId, FileId};
use crate::{Error, IntegrityReason, Result};
use sealdb_base::{DecodeError, PutBytes, Reader, le_u32_at};
use sealdb_vfs::{FileSystem, RandomAccessFile, WritableFile};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;

/// Magic bytes opening every sealed file.
pub const MAGIC: [u8; 8] = *b"SEALDBSF";
/// The framing version this build writes (and the only one it reads so far).
pub const FORMAT_VERSION: u16 = 1;
/// Length of the fixed header.
pub const HEADER_LEN: usize = 64;
/// Length of a block's clear prefix: body length, flags, and a crc32 of (offset, length,
/// flags). The crc lets a reader tell a damaged length (corruption) from a block cut short by
/// a crash (a torn tail), which only the end of a file can have.
pub const BLOCK_PREFIX_LEN: usize = 9;
/// Largest block body accepted, checked before any allocation.
pub const MAX_BLOCK_LEN: u32 = 64 << 20;
/// Largest header extension accepted.
pub const MAX_EXTENSION_LEN: u32 = 1 << 20;

const FLAG_FINAL: u8 = 0x01;
const HEADER_CRC_OFFSET: usize = 60;
const AD_LEN: usize = HEADER_CRC_OFFSET + 32 + 8 + BLOCK_PREFIX_LEN;

/// What a sealed file holds. The kind is bound into every block and into the file key, so a
/// block of one kind never opens as another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ArtifactKind {
    /// A write-ahead-log segment.
    Wal = 1,
    /// An SSTable of a primary keyspace.
    Table = 2,
    /// An SSTable of a secondary index.
    Index = 3,
    /// A change-stream segment.
    Stream = 4,
    /// The manifest.
    Manifest = 5,
    /// The KEYS file.
    Keys = 6,
    /// A backup catalogue.
    BackupCatalog = 7,
    /// Small engine metadata (consumer positions, options).
    Meta = 8,
}

impl ArtifactKind {
    /// Decodes a kind byte.
    pub fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::Wal,
            2 => Self::Table,
            3 => Self::Index,
            4 => Self::Stream,
            5 => Self::Manifest,
            6 => Self::Keys,
            7 => Self::BackupCatalog,
            8 => Self::Meta,
            _ => return None,
        })
    }

    /// A short lower-case name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Wal => "wal",
            Self::Table => "table",
            Self::Index => "index",
            Self::Stream => "stream",
            Self::Manifest => "manifest",
            Self::Keys => "keys",
            Self::BackupCatalog => "backup-catalog",
            Self::Meta => "meta",
        }
    }
}

/// The block cipher a file is sealed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum CipherId {
    /// No encryption, crc32 in place of the tag: a baseline for measuring what sealing costs.
    /// Detects accidental corruption only.
    None = 0,
    /// ChaCha20-Poly1305 (RFC 8439) under the per-file key.
    ChaCha20Poly1305 = 1,
    /// AES-256-GCM (NIST SP 800-38D, 96-bit nonce, 128-bit tag) under the per-file key: for
    /// CPUs with AES-NI and carry-less multiply, where it is cheaper per small block. Needs
    /// the `ring` feature.
    Aes256Gcm = 2,
}

impl CipherId {
    /// Decodes a cipher byte.
    pub fn from_u8(b: u8) -> Option<Self> {
        match b {
            0 => Some(Self::None),
            1 => Some(Self::ChaCha20Poly1305),
            2 => Some(Self::Aes256Gcm),
            _ => None,
        }
    }

    /// Bytes appended to each block body: the tag, or the crc32.
    pub fn tag_len(self) -> usize {
        match self {
            Self::None => 4,
            Self::ChaCha20Poly1305 | Self::Aes256Gcm => crate::keyring::TAG_LEN,
        }
    }

    /// The name used in options and messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::ChaCha20Poly1305 => "chacha20poly1305",
            Self::Aes256Gcm => "aes256gcm",
        }
    }

    /// Parses `none`, `chacha20poly1305` or `aes256gcm`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "none" => Some(Self::None),
            "chacha20poly1305" | "chacha20-poly1305" => Some(Self::ChaCha20Poly1305),
            "aes256gcm" | "aes-256-gcm" => Some(Self::Aes256Gcm),
            _ => None,
        }
    }
}

/// The plaintext header of a sealed file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHeader {
    /// Framing version.
    pub version: u16,
    /// What the file holds.
    pub kind: ArtifactKind,
    /// How its blocks are sealed.
    pub cipher: CipherId,
    /// The data-key version its file key derives from.
    pub data_key_version: u32,
    /// The file's unique id (the HKDF salt).
    pub file_id: FileId,
    /// The database the file belongs to.
    pub database_id: DatabaseId,
    /// Header extension (empty except for the KEYS file's key envelope).
    pub extension: Vec<u8>,
}

impl FileHeader {
    /// Encodes the header and its extension.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.extension.len());
        let ext_len = u32::try_from(self.extension.len()).unwrap_or(u32::MAX);
        out.put_raw(&MAGIC)
            .put_u16(self.version)
            .put_u8(self.kind as u8)
            .put_u8(self.cipher as u8)
            .put_u32(self.data_key_version)
            .put_raw(&self.file_id.0)
            .put_raw(&self.database_id.0)
            .put_u32(ext_len)
            .put_raw(&[0u8; 8]);
        let mut crc = crc32fast::Hasher::new();
        crc.update(&out);
        crc.update(&self.extension);
        out.put_u32(crc.finalize()).put_raw(&self.extension);
        out
    }

    /// Length of the encoded header including its extension: where the first block starts.
    pub fn encoded_len(&self) -> u64 {
        (HEADER_LEN + self.extension.len()) as u64
    }

    /// Decodes the fixed header from the first [`HEADER_LEN`] bytes; returns the header with
    /// an empty extension and the extension's length (validated against
    /// [`MAX_EXTENSION_LEN`]). `label` names the file in errors.
    pub fn decode_fixed(bytes: &[u8], label: &str) -> Result<(Self, u32)> {
        let bad = |reason| Error::integrity(label, None, reason);
        let fixed = bytes
            .get(..HEADER_LEN)
            .ok_or_else(|| bad(IntegrityReason::Truncated))?;
        // `fixed` holds all HEADER_LEN bytes, so no read below can run short; if one did, it
        // would be a length error, never a panic.
        let mut r = Reader::new(fixed);
        let short = |_: DecodeError| bad(IntegrityReason::BadLength);
        if r.take(MAGIC.len(), "magic").map_err(short)? != MAGIC {
            return Err(bad(IntegrityReason::BadMagic));
        }
        let version = r.u16("version").map_err(short)?;
        if version != FORMAT_VERSION {
            return Err(bad(IntegrityReason::UnsupportedVersion(version)));
        }
        let kind = ArtifactKind::from_u8(r.u8("artifact kind").map_err(short)?)
            .ok_or_else(|| bad(IntegrityReason::UnknownHeaderField("artifact kind")))?;
        let cipher = CipherId::from_u8(r.u8("cipher").map_err(short)?)
            .ok_or_else(|| bad(IntegrityReason::UnknownHeaderField("cipher")))?;
        let data_key_version = r.u32("data-key version").map_err(short)?;
        let file_id = FileId(r.array("file id").map_err(short)?);
        let database_id = DatabaseId(r.array("database id").map_err(short)?);
        let ext_len = r.u32("extension length").map_err(short)?;
        if ext_len > MAX_EXTENSION_LEN {
            return Err(bad(IntegrityReason::BadLength));
        }
        // Only the KEYS file carries an extension: a non-zero length elsewhere is damage
        // (and must not read as a header cut short).
        if ext_len != 0 && kind != ArtifactKind::Keys {
            return Err(bad(IntegrityReason::UnknownHeaderField("extension length")));
        }
        if r.take(8, "reserved bytes").map_err(short)? != [0u8; 8] {
            return Err(bad(IntegrityReason::UnknownHeaderField("reserved bytes")));
        }
        Ok((
            Self {
                version,
                kind,
                cipher,
                data_key_version,
                file_id,
                database_id,
                extension: Vec::new(),
            },
            ext_len,
        ))
    }

    /// Decodes a whole header (fixed part, extension, checksum) from the start of `bytes`.
    pub fn decode(bytes: &[u8], label: &str) -> Result<Self> {
        let (mut header, ext_len) = Self::decode_fixed(bytes, label)?;
        let ext_end = HEADER_LEN + ext_len as usize;
        let ext = bytes
            .get(HEADER_LEN..ext_end)
            .ok_or_else(|| Error::integrity(label, None, IntegrityReason::Truncated))?;
        header.extension = ext.to_vec();
        header.check_crc(bytes, label)?;
        Ok(header)
    }

    fn check_crc(&self, bytes: &[u8], label: &str) -> Result<()> {
        let stored = le_u32_at(bytes, HEADER_CRC_OFFSET)
            .ok_or_else(|| Error::integrity(label, None, IntegrityReason::Truncated))?;
        let mut crc = crc32fast::Hasher::new();
        crc.update(bytes.get(..HEADER_CRC_OFFSET).unwrap_or_default());
        crc.update(&self.extension);
        if crc.finalize() != stored {
            return Err(Error::integrity(
                label,
                None,
                IntegrityReason::HeaderChecksum,
            ));
        }
        Ok(())
    }
}

/// Where a block lives: its byte offset in the file and its length on disk (prefix, body and
/// tag).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct BlockHandle {
    /// Byte offset of the block's prefix.
    pub offset: u64,
    /// Bytes the block occupies on disk.
    pub len: u32,
}

impl BlockHandle {
    /// The offset just past this block.
    pub fn end(&self) -> u64 {
        // Saturating: handles may come from untrusted bytes; an overflowing one then points
        // past any file and is refused by the bounds check rather than wrapping around.
        self.offset.saturating_add(u64::from(self.len))
    }
}

/// A verified, decrypted block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// The plaintext.
    pub data: Vec<u8>,
    /// Whether the block carries the final flag (it is the file's last block).
    pub is_final: bool,
}

/// What a reader requires of a file's header before trusting it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    /// The artifact kind.
    pub kind: ArtifactKind,
    /// The database.
    pub database_id: DatabaseId,
    /// The cipher, when the caller knows it (always, for data files: a header claiming `none`
    /// in an encrypted database must be refused, or an attacker could forge plaintext blocks).
    pub cipher: Option<CipherId>,
}

/// Seals and opens the blocks of one file. Holds the header, its digest and the file's
/// cipher; the WAL uses it directly to seal a commit frame before appending it.
#[derive(Debug)]
pub struct BlockSealer {
    header: FileHeader,
    ad_base: [u8; HEADER_CRC_OFFSET + 32],
    cipher: FileCipher,
    label: String,
}

impl BlockSealer {
    /// A sealer for a new file: fresh file id, the keyring's current data-key version.
    pub fn for_new_file(
        keyring: &Keyring,
        kind: ArtifactKind,
        cipher: CipherId,
        extension: Vec<u8>,
        label: impl Into<String>,
    ) -> Result<Self> {
        if !extension.is_empty() && kind != ArtifactKind::Keys {
            return Err(Error::invalid_argument(
                "only the KEYS file carries a header extension".into(),
            ));
        }
        let header = FileHeader {
            version: FORMAT_VERSION,
            kind,
            cipher,
            data_key_version: keyring.current_version(),
            file_id: FileId::generate()?,
            database_id: keyring.database_id(),
            extension,
        };
        Self::for_header(keyring, header, label)
    }

    /// A sealer for an existing header (to open its blocks).
    pub fn for_header(
        keyring: &Keyring,
        header: FileHeader,
        label: impl Into<String>,
    ) -> Result<Self> {
        if header.database_id != keyring.database_id() {
            return Err(Error::integrity(
                label,
                None,
                IntegrityReason::HeaderMismatch("database id"),
            ));
        }
        let cipher = keyring.file_cipher(
            header.cipher,
            header.data_key_version,
            &header.file_id,
            header.kind,
        )?;
        let encoded = header.encode();
        let mut ad_base = [0u8; HEADER_CRC_OFFSET + 32];
        if let (Some(dst), Some(src)) = (
            ad_base.get_mut(..HEADER_CRC_OFFSET),
            encoded.get(..HEADER_CRC_OFFSET),
        ) {
            dst.copy_from_slice(src);
        }
        let digest = Sha256::digest(&header.extension);
        if let Some(dst) = ad_base.get_mut(HEADER_CRC_OFFSET..) {
            dst.copy_from_slice(digest.as_slice());
        }
        Ok(Self {
            header,
            ad_base,
            cipher,
            label: label.into(),
        })
    }

    /// The header this sealer binds.
    pub fn header(&self) -> &FileHeader {
        &self.header
    }

    /// The label used in errors (normally the file's path).
    pub fn label(&self) -> &str {
        &self.label
    }

    fn prefix_crc(offset: u64, len_and_flags: &[u8]) -> u32 {
        let mut h = crc32fast::Hasher::new();
        h.update(&offset.to_le_bytes());
        h.update(len_and_flags);
        h.finalize()
    }

    fn associated_data(&self, offset: u64, prefix: &[u8; BLOCK_PREFIX_LEN]) -> [u8; AD_LEN] {
        let mut ad = [0u8; AD_LEN];
        let (base, rest) = ad.split_at_mut(HEADER_CRC_OFFSET + 32);
        base.copy_from_slice(&self.ad_base);
        let (off, pre) = rest.split_at_mut(8);
        off.copy_from_slice(&offset.to_le_bytes());
        pre.copy_from_slice(prefix);
        ad
    }

    /// The block's nonce, the same for every AEAD: its offset (u64 LE), then four zero bytes.
    fn nonce(offset: u64) -> [u8; NONCE_LEN] {
        let mut n = [0u8; NONCE_LEN];
        if let Some(dst) = n.get_mut(..8) {
            dst.copy_from_slice(&offset.to_le_bytes());
        }
        n
    }

    /// Seals `plaintext` as the block at file offset `offset`, appending its on-disk bytes to
    /// `out`. The caller guarantees the offset is where the bytes will land and that nothing
    /// was ever sealed at that offset in this file before.
    pub fn seal_into(
        &self,
        offset: u64,
        is_final: bool,
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<BlockHandle> {
        let body_len = u32::try_from(plaintext.len())
            .ok()
            .filter(|l| *l <= MAX_BLOCK_LEN)
            .ok_or_else(|| {
                Error::invalid_argument(format!(
                    "block of {} bytes exceeds the {MAX_BLOCK_LEN}-byte limit",
                    plaintext.len()
                ))
            })?;
        let tag_len = self.header.cipher.tag_len();
        let mut prefix = [0u8; BLOCK_PREFIX_LEN];
        prefix[..4].copy_from_slice(&body_len.to_le_bytes());
        prefix[4] = if is_final { FLAG_FINAL } else { 0 };
        let crc = Self::prefix_crc(offset, &prefix[..5]);
        prefix[5..9].copy_from_slice(&crc.to_le_bytes());
        let ad = self.associated_data(offset, &prefix);
        let start = out.len();
        out.reserve(BLOCK_PREFIX_LEN + plaintext.len() + tag_len);
        out.extend_from_slice(&prefix);
        out.extend_from_slice(plaintext);
        let body_start = start + BLOCK_PREFIX_LEN;
        if let FileCipher::None = &self.cipher {
            let mut crc = crc32fast::Hasher::new();
            crc.update(&ad);
            crc.update(plaintext);
            out.extend_from_slice(&crc.finalize().to_le_bytes());
        } else {
            let body = out
                .get_mut(body_start..)
                .ok_or_else(|| Error::invalid_argument("seal buffer".into()))?;
            let tag = self.cipher.seal_in_place(&Self::nonce(offset), &ad, body)?;
            out.extend_from_slice(&tag);
        }
        Ok(BlockHandle {
            offset,
            len: (BLOCK_PREFIX_LEN + plaintext.len() + tag_len) as u32,
        })
    }

    /// Verifies and decrypts one block whose on-disk bytes are `raw`, read from `offset`.
    /// Returns the plaintext only if it authenticated.
    pub fn open(&self, offset: u64, mut raw: Vec<u8>) -> Result<Block> {
        let err = |reason| Error::integrity(self.label.clone(), Some(offset), reason);
        let tag_len = self.header.cipher.tag_len();
        let prefix: [u8; BLOCK_PREFIX_LEN] = raw
            .get(..BLOCK_PREFIX_LEN)
            .and_then(|p| p.try_into().ok())
            .ok_or_else(|| err(IntegrityReason::Truncated))?;
        let body_len = le_u32_at(&prefix, 0).ok_or_else(|| err(IntegrityReason::BadLength))?;
        if body_len > MAX_BLOCK_LEN {
            return Err(err(IntegrityReason::BadLength));
        }
        let flags = prefix[4];
        if flags & !FLAG_FINAL != 0 {
            return Err(err(IntegrityReason::AuthenticationFailed));
        }
        let stored_crc = le_u32_at(&prefix, 5).ok_or_else(|| err(IntegrityReason::BadLength))?;
        if Self::prefix_crc(offset, prefix.get(..5).unwrap_or_default()) != stored_crc {
            return Err(err(IntegrityReason::PrefixChecksum));
        }
        let body_end = BLOCK_PREFIX_LEN + body_len as usize;
        if raw.len() != body_end + tag_len {
            return Err(err(if raw.len() < body_end + tag_len {
                IntegrityReason::Truncated
            } else {
                IntegrityReason::BadLength
            }));
        }
        let ad = self.associated_data(offset, &prefix);
        let (head, tag_bytes) = raw.split_at_mut(body_end);
        let body = head
            .get_mut(BLOCK_PREFIX_LEN..)
            .ok_or_else(|| err(IntegrityReason::Truncated))?;
        if let FileCipher::None = &self.cipher {
            let stored = le_u32_at(tag_bytes, 0).ok_or_else(|| err(IntegrityReason::BadLength))?;
            let mut crc = crc32fast::Hasher::new();
            crc.update(&ad);
            crc.update(body);
            if crc.finalize() != stored {
                return Err(err(IntegrityReason::AuthenticationFailed));
            }
        } else {
            let tag: [u8; TAG_LEN] = (&*tag_bytes)
                .try_into()
                .map_err(|_| err(IntegrityReason::BadLength))?;
            // On failure `raw` (possibly part-decrypted by ring) is dropped unreturned.
            self.cipher
                .open_in_place(&Self::nonce(offset), &ad, body, &tag)
                .map_err(|_| err(IntegrityReason::AuthenticationFailed))?;
        }
        raw.truncate(body_end);
        raw.drain(..BLOCK_PREFIX_LEN);
        Ok(Block {
            data: raw,
            is_final: flags & FLAG_FINAL != 0,
        })
    }
}

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
        let err = |reason| Error::integrity(self.sealer.label.clone(), Some(handle.offset), reason);
        let min = (BLOCK_PREFIX_LEN + self.sealer.header.cipher.tag_len()) as u32;
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
            .map_err(|e| Error::io(self.sealer.label.clone(), e))?;
        self.sealer.open(handle.offset, raw)
    }

    /// Reads the handle of the block at `offset` from its clear length prefix (the prefix is
    /// authenticated when the block is opened).
    pub fn handle_at(&self, offset: u64) -> Result<BlockHandle> {
        let err = |reason| Error::integrity(self.sealer.label.clone(), Some(offset), reason);
        if offset.saturating_add(BLOCK_PREFIX_LEN as u64) > self.len {
            return Err(err(IntegrityReason::Truncated));
        }
        let mut prefix = [0u8; BLOCK_PREFIX_LEN];
        self.file
            .read_exact_at(&mut prefix, offset)
            .map_err(|e| Error::io(self.sealer.label.clone(), e))?;
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
        let len = BLOCK_PREFIX_LEN as u32 + body_len + self.sealer.header.cipher.tag_len() as u32;
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

/// Writes `payload` as a small sealed file of one final block, replacing `path` atomically
/// (temporary file, data sync, rename, directory sync). Always ChaCha20-Poly1305, whatever the
/// database's data cipher: these files (CURRENT, the head record) are roots of trust, so even
/// a plaintext-mode database authenticates them.
pub fn write_small_sealed_file(
    fs: &dyn FileSystem,
    path: &Path,
    keyring: &Keyring,
    kind: ArtifactKind,
    payload: &[u8],
) -> Result<()> {
    let sealer = BlockSealer::for_new_file(
        keyring,
        kind,
        CipherId::ChaCha20Poly1305,
        Vec::new(),
        path.display().to_string(),
    )?;
    let mut bytes = sealer.header().encode();
    let offset = bytes.len() as u64;
    sealer.seal_into(offset, true, payload, &mut bytes)?;
    sealdb_vfs::write_file_atomic(fs, path, &bytes).map_err(|e| Error::io(path, e))
}

/// Reads a file written by [`write_small_sealed_file`]: exactly one final block, sealed with
/// ChaCha20-Poly1305 under this database's keys. Anything else is an integrity error naming
/// the file.
pub fn read_small_sealed_file(
    fs: &dyn FileSystem,
    path: &Path,
    keyring: &Keyring,
    kind: ArtifactKind,
) -> Result<Vec<u8>> {
    let expected = Expected {
        kind,
        database_id: keyring.database_id(),
        cipher: Some(CipherId::ChaCha20Poly1305),
    };
    let reader = SealedReader::open(fs, path, keyring, &expected)?;
    let mut blocks = reader.blocks();
    let label = path.display().to_string();
    let (_, block) = blocks
        .next()
        .ok_or_else(|| Error::integrity(label.clone(), None, IntegrityReason::Truncated))??;
    if !block.is_final {
        return Err(Error::integrity(label, None, IntegrityReason::Truncated));
    }
    Ok(block.data)
}
