//! The anchor of a backup directory: the record, outside it, naming its newest catalogue.
//!
//! Every file of a backup authenticates on its own, so deleting the newest catalogue would
//! silently make an older backup the latest. The keystore (outside the backup directory, like
//! the rollback counter) keeps a small record per backup directory naming its newest backup
//! and the SHA-256 of that catalogue file; each catalogue names its predecessor the same way,
//! so a newer catalogue written just before a crash (anchor not yet updated) still chains to
//! the anchored one. A machine without the record (a restore elsewhere) cannot tell: the
//! directory is then unanchored, as docs/crypto.md says.

use super::catalog::{BackupInfo, catalog_ids, catalog_path, read_backup};
use super::files::file_digest;
use crate::codec::{Reader, Writer};
use crate::options::Options;
use crate::{Error, Result};
use sealdb_vfs::SharedFs;
use std::path::{Path, PathBuf};

const ANCHOR_MAGIC: &[u8; 8] = b"SDBBKAN1";

/// Where this machine records the newest backup of `dir`.
pub(super) fn anchor_path(opts: &Options, dir: &Path) -> Result<PathBuf> {
    let abs = std::path::absolute(dir).map_err(|e| Error::io(dir, e))?;
    Ok(opts.resolved_keystore_dir().join(format!(
        "backup-{:016x}.anchor",
        crate::head::path_hash(&abs)
    )))
}

pub(super) fn read_anchor(path: &Path) -> Result<Option<(String, [u8; 32])>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    let label = path.display().to_string();
    let bad = || Error::corruption(format!("{label}: malformed backup anchor"));
    let (body, crc) = bytes
        .split_at_checked(bytes.len().saturating_sub(4))
        .ok_or_else(bad)?;
    let crc: [u8; 4] = crc.try_into().map_err(|_| bad())?;
    if crc32fast::hash(body) != u32::from_le_bytes(crc) {
        return Err(bad());
    }
    let mut r = Reader::new(body, &label);
    if r.take(8, "magic")? != ANCHOR_MAGIC {
        return Err(bad());
    }
    let id = r.string(64, "backup id")?;
    let digest = r.array("catalogue digest")?;
    if !r.is_empty() {
        return Err(bad());
    }
    Ok(Some((id, digest)))
}

/// Records (or, with `None`, forgets) the newest backup of a directory.
pub(super) fn write_anchor(path: &Path, newest: Option<(&str, [u8; 32])>) -> Result<()> {
    let Some((id, digest)) = newest else {
        return match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(path, e)),
            _ => Ok(()),
        };
    };
    let mut w = Writer::default();
    w.raw(ANCHOR_MAGIC).bytes(id.as_bytes()).raw(&digest);
    let crc = crc32fast::hash(&w.buf);
    w.raw(&crc.to_le_bytes());
    crate::head::ensure_keystore_dir(path)?;
    sealdb_vfs::write_file_atomic(&sealdb_vfs::RealFs, path, &w.buf).map_err(|e| Error::io(path, e))
}

/// Checks `ids` (the directory's catalogues, sorted) against this machine's anchor: the
/// anchored catalogue is present and unchanged, and the newest one is it or descends from it
/// through predecessor links. `read` decodes a catalogue (only needed for that walk).
pub(super) fn check_anchor(
    fs: &SharedFs,
    dir: &Path,
    opts: &Options,
    ids: &[String],
    read: &mut dyn FnMut(&str) -> Result<BackupInfo>,
) -> Result<()> {
    let path = anchor_path(opts, dir)?;
    let Some((anchored, digest)) = read_anchor(&path)? else {
        return Ok(());
    };
    let cat = catalog_path(dir, &anchored);
    if !ids.contains(&anchored) {
        return Err(Error::corruption(format!(
            "backup catalogue {} is missing: this machine recorded it as the newest backup of \
             {} ({}), so an older backup would silently become the latest; if it was deleted \
             on purpose, run `backup delete {} --id {anchored}`",
            cat.display(),
            dir.display(),
            path.display(),
            dir.display()
        )));
    }
    if file_digest(fs, &cat)?.1 != digest {
        return Err(Error::corruption(format!(
            "backup catalogue {} is not the one this machine recorded in {} (its digest \
             differs)",
            cat.display(),
            path.display()
        )));
    }
    let mut cur = ids.last().cloned().unwrap_or_default();
    while cur != anchored {
        let info = read(&cur)?;
        match info.predecessor {
            Some((p, d)) if p == anchored && d == digest => break,
            Some((p, _)) if p < cur && p > anchored && ids.contains(&p) => cur = p,
            _ => {
                return Err(Error::corruption(format!(
                    "backup {cur} in {} does not descend from {anchored}, the newest backup \
                     this machine recorded ({})",
                    dir.display(),
                    path.display()
                )));
            }
        }
    }
    Ok(())
}

/// Before a new backup: the directory's anchor holds, and its newest catalogue (id and
/// digest) becomes the new one's predecessor.
pub(super) fn newest_anchored(
    fs: &SharedFs,
    dir: &Path,
    opts: &Options,
) -> Result<Option<(String, [u8; 32])>> {
    let ids = if fs.exists(dir) {
        catalog_ids(fs, dir)?
    } else {
        Vec::new()
    };
    // A directory without any catalogue (new, or emptied on purpose) starts a new chain:
    // there is no older backup a missing newest one could promote. (`backup list`/`verify`
    // still report the anchored catalogue missing until then.)
    if ids.is_empty() {
        return Ok(None);
    }
    check_anchor(fs, dir, opts, &ids, &mut |id| read_backup(dir, id, opts))?;
    ids.last()
        .map(|id| Ok((id.clone(), file_digest(fs, &catalog_path(dir, id))?.1)))
        .transpose()
}
