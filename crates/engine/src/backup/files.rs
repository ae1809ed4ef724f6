//! The file operations every part of a backup uses: naming, linking or copying sealed
//! files, digests, removal.

use crate::{Error, Result};
use sealdb_vfs::SharedFs;
use std::path::{Path, PathBuf};

pub(super) fn table_name(id: &[u8; 16]) -> String {
    format!("{}.sst", sealdb_crypto::hex::encode(id))
}

pub(super) fn wal_name(id: &[u8; 16]) -> String {
    format!("{}.wal", sealdb_crypto::hex::encode(id))
}

/// Hard-links `from` to `to`, or copies it if linking fails (another filesystem); skips
/// files already present (incremental backups share them).
pub(super) fn link_or_copy(fs: &SharedFs, from: &Path, to: &Path) -> Result<u64> {
    if fs.exists(to) {
        return Ok(0);
    }
    if fs.hard_link(from, to).is_ok() {
        return fs.file_size(to).map_err(|e| Error::io(to, e));
    }
    let tmp = to.with_extension("partial");
    let _ = fs.remove_file(&tmp);
    copy_file(fs, from, &tmp)?;
    fs.rename(&tmp, to).map_err(|e| Error::io(to, e))?;
    fs.file_size(to).map_err(|e| Error::io(to, e))
}

/// Length and SHA-256 of a whole file.
pub(super) fn file_digest(fs: &SharedFs, path: &Path) -> Result<(u64, [u8; 32])> {
    use sha2::{Digest, Sha256};
    let f = fs.open_read(path).map_err(|e| Error::io(path, e))?;
    let len = f.len();
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0u64;
    while off < len {
        let n = usize::try_from((len - off).min(buf.len() as u64)).unwrap_or(buf.len());
        let chunk = buf
            .get_mut(..n)
            .ok_or_else(|| Error::invalid_argument("digest".into()))?;
        f.read_exact_at(chunk, off)
            .map_err(|e| Error::io(path, e))?;
        hasher.update(&*chunk);
        off += n as u64;
    }
    Ok((len, hasher.finalize().into()))
}

pub(super) fn copy_file(fs: &SharedFs, from: &Path, to: &Path) -> Result<()> {
    let src = fs.open_read(from).map_err(|e| Error::io(from, e))?;
    let mut dst = fs.create_new(to).map_err(|e| Error::io(to, e))?;
    let len = src.len();
    let mut off = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    while off < len {
        let n = usize::try_from((len - off).min(buf.len() as u64)).unwrap_or(buf.len());
        let chunk = buf
            .get_mut(..n)
            .ok_or_else(|| Error::invalid_argument("copy".into()))?;
        src.read_exact_at(chunk, off)
            .map_err(|e| Error::io(from, e))?;
        dst.append(chunk).map_err(|e| Error::io(to, e))?;
        off += n as u64;
    }
    dst.sync_data().map_err(|e| Error::io(to, e))
}

pub(super) fn remove_tree(fs: &SharedFs, dir: &Path) -> Result<()> {
    for name in fs.list_dir(dir).map_err(|e| Error::io(dir, e))? {
        let p: PathBuf = dir.join(&name);
        if fs.list_dir(&p).is_ok() {
            remove_tree(fs, &p)?;
        } else {
            fs.remove_file(&p).map_err(|e| Error::io(&p, e))?;
        }
    }
    fs.remove_dir(dir).map_err(|e| Error::io(dir, e))
}
