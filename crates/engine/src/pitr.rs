//! Point-in-time recovery: with `Options::pitr_window` set, WAL segments made obsolete by a
//! flush are archived (kept in `<db>/wal-archive/`) instead of deleted, for the window; backups
//! carry them, and a restore replays them past the backup's sequence number up to exactly the
//! requested point.

use crate::state::DbInner;
use crate::{Error, Result};
use sealdb_crypto::{CipherId, Keyring};
use sealdb_vfs::SharedFs;
use sealdb_wal::{segment_file_name, summarize_segment};
use std::path::{Path, PathBuf};

/// The archive directory inside the data directory.
pub(crate) const ARCHIVE_DIR: &str = "wal-archive";

/// The `.wal` segments of `dir` (none if it does not exist), by number.
pub(crate) fn numbered(fs: &SharedFs, dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    if !fs.exists(dir) {
        return Ok(Vec::new());
    }
    let mut out: Vec<(u64, PathBuf)> = fs
        .list_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .into_iter()
        .filter_map(|n| {
            let num = n.strip_suffix(".wal")?.parse::<u64>().ok()?;
            Some((num, dir.join(n)))
        })
        .collect();
    out.sort();
    Ok(out)
}

/// The closed WAL segments a backup carries (none when point-in-time recovery is off): every
/// archived or live segment numbered below `below`, the segment the backup's own rotation
/// started. Segments below it are closed for good, so their files never change again; the
/// active segment and any later one (a concurrent rollover) are never taken. Each comes with
/// the places it may be: a concurrent flush can move a live segment into the archive.
pub(crate) fn closed_segments_for_backup(
    inner: &DbInner,
    below: u64,
) -> Result<Vec<(u64, [PathBuf; 2])>> {
    if inner.opts.pitr_window.is_none() {
        return Ok(Vec::new());
    }
    let archive = inner.path.join(ARCHIVE_DIR);
    // The live directory first: segments only move from it into the archive, so listing in
    // this order sees each one at least once.
    let mut numbers: Vec<u64> = numbered(&inner.fs, inner.wal.dir())?
        .into_iter()
        .chain(numbered(&inner.fs, &archive)?)
        .map(|(n, _)| n)
        .filter(|n| *n < below)
        .collect();
    numbers.sort_unstable();
    numbers.dedup();
    Ok(numbers
        .into_iter()
        .map(|n| {
            let name = segment_file_name(n);
            (n, [inner.wal.dir().join(&name), archive.join(&name)])
        })
        .collect())
}

/// Deletes archived segments whose newest write is older than the window.
pub(crate) fn trim_archive(
    fs: &SharedFs,
    db: &Path,
    keyring: &Keyring,
    cipher: CipherId,
    window: Option<std::time::Duration>,
) -> Result<()> {
    let Some(window) = window else {
        return Ok(());
    };
    let cutoff =
        crate::now_ms().saturating_sub(u64::try_from(window.as_millis()).unwrap_or(u64::MAX));
    let dir = db.join(ARCHIVE_DIR);
    // Only a prefix may go, so the archive stays one chain.
    for (_, path) in numbered(fs, &dir)? {
        let s = summarize_segment(fs.as_ref(), &path, keyring, cipher)?;
        if s.last_time_ms >= cutoff {
            break;
        }
        fs.remove_file(&path).map_err(|e| Error::io(&path, e))?;
    }
    Ok(())
}
