//! An owned key file: its 60-byte format (see the [module documentation](super)), encoded,
//! and read back with the permission check first.

use crate::error::IntegrityReason;
use crate::keys::{DatabaseId, SecretKey};
use crate::private_file::{check_private_mode, read_limited};
use crate::{Error, KeyState, Result};
use std::fs::File;
use std::io;
use std::path::Path;
use zeroize::Zeroizing;

/// Provider kind string of the owned key, as stored in key descriptors.
pub(super) const PROVIDER: &str = "owned";
/// Magic bytes opening an owned key file (format version 1).
const MAGIC: &[u8; 8] = b"SDBOWNK1";
/// Length of an owned key file: magic, database id, key, crc32.
pub(super) const FILE_LEN: usize = 8 + 16 + crate::keys::KEY_LEN + 4;

pub(super) fn key_id(database_id: DatabaseId) -> String {
    format!("owned/{}", database_id.to_hex())
}

pub(super) fn not_found(database_id: DatabaseId) -> Error {
    Error::KeyUnavailable {
        provider: PROVIDER.into(),
        key_id: key_id(database_id),
        state: KeyState::NotFound,
    }
}

pub(crate) fn encode_key_file(database_id: DatabaseId, master: &SecretKey) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(FILE_LEN));
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&database_id.0);
    out.extend_from_slice(master.expose());
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Reads and verifies a key file (permissions first, like ssh, then length, magic, crc and
/// database id).
pub(super) fn read_key_file(path: &Path, database_id: DatabaseId) -> Result<SecretKey> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(not_found(database_id)),
        Err(e) => return Err(Error::io(path, e)),
    };
    check_private_mode(&file, path)?;
    // One byte more than a valid file so that an over-long file is detected without reading
    // an arbitrarily large one.
    let bytes = read_limited(file, path, FILE_LEN as u64 + 1)?;
    decode_key_file(&bytes, path, database_id)
}

pub(crate) fn decode_key_file(
    bytes: &[u8],
    path: &Path,
    database_id: DatabaseId,
) -> Result<SecretKey> {
    let file = path.display().to_string();
    let bad = |reason| Error::integrity(file.clone(), None, reason);
    if bytes.len() != FILE_LEN {
        return Err(bad(IntegrityReason::Malformed(format!(
            "owned key file is {} bytes, expected {FILE_LEN}",
            bytes.len()
        ))));
    }
    if bytes.get(..8) != Some(MAGIC.as_slice()) {
        return Err(bad(IntegrityReason::BadMagic));
    }
    let (body, crc) = bytes.split_at(FILE_LEN - 4);
    let crc: [u8; 4] = crc
        .try_into()
        .map_err(|_| bad(IntegrityReason::BadLength))?;
    if crc32fast::hash(body) != u32::from_le_bytes(crc) {
        return Err(bad(IntegrityReason::HeaderChecksum));
    }
    let stored_id = body
        .get(8..24)
        .and_then(|s| <[u8; 16]>::try_from(s).ok())
        .map(DatabaseId)
        .ok_or_else(|| bad(IntegrityReason::BadLength))?;
    if stored_id != database_id {
        return Err(bad(IntegrityReason::Malformed(format!(
            "owned key file belongs to database {stored_id}, not {database_id}"
        ))));
    }
    let key = body
        .get(24..24 + crate::keys::KEY_LEN)
        .ok_or_else(|| bad(IntegrityReason::BadLength))?;
    SecretKey::from_slice(key)
}
