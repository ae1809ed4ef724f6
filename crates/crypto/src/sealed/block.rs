//! Block handles, and the [`BlockSealer`] that seals and opens one block of a file.

use super::header::{FORMAT_VERSION, FileHeader, HEADER_CRC_OFFSET};
use crate::keyring::{FileCipher, Keyring, NONCE_LEN, TAG_LEN};
use crate::keys::FileId;
use crate::kinds::{ArtifactKind, CipherId};
use crate::{Error, IntegrityReason, Result};
use sealdb_base::le_u32_at;
use sha2::{Digest, Sha256};

/// Length of a block's clear prefix: body length, flags, and a crc32 of (offset, length,
/// flags). The crc lets a reader tell a damaged length (corruption) from a block cut short by
/// a crash (a torn tail), which only the end of a file can have.
pub const BLOCK_PREFIX_LEN: usize = 9;
/// Largest block body accepted, checked before any allocation.
pub const MAX_BLOCK_LEN: u32 = 64 << 20;

const FLAG_FINAL: u8 = 0x01;
const AD_LEN: usize = HEADER_CRC_OFFSET + 32 + 8 + BLOCK_PREFIX_LEN;

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

/// Seals and opens the blocks of one file. Holds the header, its digest and the file's
/// cipher; the WAL uses it directly to seal a commit frame before appending it.
#[derive(Debug)]
pub struct BlockSealer {
    pub(super) header: FileHeader,
    pub(super) ad_base: [u8; HEADER_CRC_OFFSET + 32],
    pub(super) cipher: FileCipher,
    pub(super) label: String,
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

    pub(super) fn prefix_crc(offset: u64, len_and_flags: &[u8]) -> u32 {
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
