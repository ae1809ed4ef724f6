//! `CURRENT`: the small sealed file naming the live manifest, replaced atomically.

use crate::codec::{Reader, Writer};
use crate::{Error, Result};
use sealdb_crypto::{ArtifactKind, Keyring};
use std::path::Path;

/// The file naming the live manifest.
pub(crate) const CURRENT_FILE: &str = "CURRENT";

const CURRENT_TAG: &[u8; 8] = b"SDBCURR1";

/// Reads the manifest number `CURRENT` in `dir` names.
pub(crate) fn read_current(
    fs: &dyn sealdb_vfs::FileSystem,
    dir: &Path,
    keyring: &Keyring,
) -> Result<u64> {
    let path = dir.join(CURRENT_FILE);
    let data =
        sealdb_crypto::sealed::read_small_sealed_file(fs, &path, keyring, ArtifactKind::Meta)?;
    let label = path.display().to_string();
    let mut r = Reader::new(&data, &label);
    if r.take(8, "tag")? != CURRENT_TAG {
        return Err(Error::corruption(format!("{label}: bad tag")));
    }
    r.u64("manifest number")
}

/// Points `CURRENT` in `dir` at manifest `number`, replacing it atomically.
pub(crate) fn write_current(
    fs: &dyn sealdb_vfs::FileSystem,
    dir: &Path,
    keyring: &Keyring,
    number: u64,
) -> Result<()> {
    let path = dir.join(CURRENT_FILE);
    let mut payload = Writer::default();
    payload.raw(CURRENT_TAG).u64(number);
    Ok(sealdb_crypto::sealed::write_small_sealed_file(
        fs,
        &path,
        keyring,
        ArtifactKind::Meta,
        &payload.buf,
    )?)
}
