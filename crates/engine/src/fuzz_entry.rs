//! Entry points for the fuzz targets in `fuzz/` into decoders that are otherwise private.
//!
//! Not part of the supported API: hidden from the docs and kept in this one module so that it
//! can be put behind a cargo feature without touching the decoders themselves.

use crate::{Error, Result};
use sealdb_crypto::{ArtifactKind, Keyring};
use sealdb_vfs::{CrashFs, FileSystem};
use std::path::{Path, PathBuf};

const DIR: &str = "/db";

/// Puts `bytes` at `/db/<name>` in a fresh in-memory file system.
fn put(name: &str, bytes: &[u8]) -> Result<(CrashFs, PathBuf)> {
    let fs = CrashFs::new();
    let dir = Path::new(DIR);
    let path = dir.join(name);
    fs.create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut f = fs.create_new(&path).map_err(|e| Error::io(&path, e))?;
    f.append(bytes).map_err(|e| Error::io(&path, e))?;
    drop(f);
    Ok((fs, path))
}

/// Reads `bytes` as a database's `CURRENT` file with the real reader: the manifest number it
/// names.
pub fn read_current(bytes: &[u8], keyring: &Keyring) -> Result<u64> {
    let (fs, _) = put(crate::manifest::CURRENT_FILE, bytes)?;
    crate::manifest::read_current(&fs, Path::new(DIR), keyring)
}

/// The bytes of a `CURRENT` file naming manifest `number`, written by the real writer.
pub fn current_file(keyring: &Keyring, number: u64) -> Result<Vec<u8>> {
    let fs = CrashFs::new();
    let dir = Path::new(DIR);
    fs.create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    crate::manifest::write_current(&fs, dir, keyring, number)?;
    let path = dir.join(crate::manifest::CURRENT_FILE);
    fs.contents(&path).map_err(|e| Error::io(&path, e))
}

/// Decodes a head record's plaintext and returns its re-encoding (a canonical record
/// re-encodes to itself).
pub fn decode_head(bytes: &[u8]) -> Result<Vec<u8>> {
    crate::head::HeadState::decode(bytes, "head").map(|h| h.encode())
}

/// Reads `bytes` as a sealed head file with the engine's reader and returns the record
/// re-encoded.
pub fn read_head(bytes: &[u8], keyring: &Keyring) -> Result<Vec<u8>> {
    let (fs, path) = put("head.seal", bytes)?;
    crate::head::read_head_file(&fs, &path, keyring).map(|h| h.encode())
}

/// The bytes of a sealed head file holding `payload`, written by the engine's writer.
pub fn head_file(keyring: &Keyring, payload: &[u8]) -> Result<Vec<u8>> {
    let (fs, path) = put("head.seal", &[])?;
    sealdb_crypto::sealed::write_small_sealed_file(
        &fs,
        &path,
        keyring,
        ArtifactKind::Meta,
        payload,
    )?;
    fs.contents(&path).map_err(|e| Error::io(&path, e))
}

/// Decodes the bytes of a legacy rollback counter (`rollback-<id>-<hash>.ctr`, read once when
/// upgrading to the head record): (manifest number, edit groups written to it).
pub fn decode_legacy_counter(bytes: &[u8]) -> Result<(u64, u64)> {
    crate::head::decode_legacy_counter(bytes, Path::new("rollback.ctr"))
}
