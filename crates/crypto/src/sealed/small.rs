//! Small sealed files of one final block, replaced atomically: the roots of trust (CURRENT,
//! the head record) that even a plaintext-mode database authenticates.

use super::block::BlockSealer;
use super::header::Expected;
use super::reader::SealedReader;
use crate::keyring::Keyring;
use crate::kinds::{ArtifactKind, CipherId};
use crate::{Error, IntegrityReason, Result};
use sealdb_vfs::FileSystem;
use std::path::Path;

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
