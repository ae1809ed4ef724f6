//! Owner-only files and directories holding key material: creation with private modes, the
//! ssh-like permission check before reading, bounded wiping reads, and atomic replacement with
//! directory fsync. Shared by the owned keystore and the local KMS.

use crate::{Error, Result};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use zeroize::Zeroizing;

/// Creates `dir` (and missing parents) with mode 0700. An existing directory is left as is:
/// its owner may have chosen its mode deliberately.
pub(crate) fn create_private_dir(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io(dir, e))
}

/// Refuses a secret-holding file that group or others can access in any way, as ssh does for
/// private keys: such a key may already have been copied.
pub(crate) fn check_private_mode(file: &File, path: &Path) -> Result<()> {
    // fstat on the open handle, so the file checked is the file read.
    let mode = file
        .metadata()
        .map_err(|e| Error::io(path, e))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(Error::InsecurePermissions {
            path: path.to_path_buf(),
            mode: mode & 0o7777,
        });
    }
    Ok(())
}

/// Reads at most `limit` bytes into a buffer that is wiped when dropped (it holds key
/// material).
pub(crate) fn read_limited(file: File, path: &Path, limit: u64) -> Result<Zeroizing<Vec<u8>>> {
    let hint = file.metadata().map(|m| m.len().min(limit)).unwrap_or(0);
    // Exact capacity up front: a reallocation would leave an unwiped copy behind.
    let mut buf = Zeroizing::new(Vec::with_capacity(
        usize::try_from(hint).unwrap_or(0).saturating_add(1),
    ));
    file.take(limit)
        .read_to_end(&mut buf)
        .map_err(|e| Error::io(path, e))?;
    Ok(buf)
}

/// Whether an atomic write may replace an existing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Replace {
    /// Fail with `AlreadyExists` if the target exists (new owned keys).
    Never,
    /// Replace the target atomically (the KMS state, under its lock).
    Allowed,
}

/// Writes `bytes` to `path` (in `dir`) so that a crash leaves either the old file or the
/// complete new one: a temporary file created with mode 0600 (never briefly readable by
/// others), written, synced, moved into place, then the directory synced so the move is
/// durable.
pub(crate) fn write_private_file_atomically(
    dir: &Path,
    path: &Path,
    bytes: &[u8],
    replace: Replace,
) -> Result<()> {
    let mut suffix = [0u8; 8];
    crate::keys::fill_random(&mut suffix)?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // A unique name, so concurrent writers (and a stale file left by a crash) never collide.
    let tmp = dir.join(format!(
        ".{file_name}.tmp-{}-{}",
        std::process::id(),
        crate::hex::encode(&suffix)
    ));
    let result = write_tmp_and_publish(&tmp, path, bytes, replace);
    if result.is_err() {
        // Best effort: the temporary file may hold key material.
        let _ = std::fs::remove_file(&tmp);
        return result;
    }
    sync_dir(dir)
}

fn write_tmp_and_publish(tmp: &Path, path: &Path, bytes: &[u8], replace: Replace) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)
        .map_err(|e| Error::io(tmp, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io(tmp, e))?;
    drop(f);
    match replace {
        Replace::Allowed => std::fs::rename(tmp, path).map_err(|e| Error::io(path, e)),
        Replace::Never => {
            // link(2) fails if the target exists, which makes "create only if absent" atomic
            // even against another process; rename(2) would silently replace.
            std::fs::hard_link(tmp, path).map_err(|e| Error::io(path, e))?;
            std::fs::remove_file(tmp).map_err(|e| Error::io(tmp, e))
        }
    }
}

/// fsyncs a directory so that entries created, renamed or removed in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}
