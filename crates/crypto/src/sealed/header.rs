//! The fixed header of a sealed file, and the artifact kinds and ciphers it names.

use crate::keys::{DatabaseId, FileId};
use crate::kinds::{ArtifactKind, CipherId};
use crate::{Error, IntegrityReason, Result};
use sealdb_base::{DecodeError, PutBytes, Reader, le_u32_at};

/// Magic bytes opening every sealed file.
pub const MAGIC: [u8; 8] = *b"SEALDBSF";
/// The framing version this build writes (and the only one it reads so far).
pub const FORMAT_VERSION: u16 = 1;
/// Length of the fixed header.
pub const HEADER_LEN: usize = 64;
/// Largest header extension accepted.
pub const MAX_EXTENSION_LEN: u32 = 1 << 20;

pub(super) const HEADER_CRC_OFFSET: usize = 60;

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
