//! Point-in-time recovery: with `Options::pitr_window` set, WAL segments made obsolete by a
//! flush are archived (kept in `<db>/wal-archive/`) instead of deleted, for the window; backups
//! carry them, and a restore replays them past the backup's sequence number up to exactly the
//! requested point.

use crate::backup::BackupInfo;
use crate::db::DbInner;
use crate::{Error, Result};
use sealdb_crypto::Keyring;
use sealdb_vfs::SharedFs;
use sealdb_wal::{FrameBatch, Wal, WalOptions, segment_file_name, summarize_segment};
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
pub(crate) fn trim_archive(inner: &DbInner) -> Result<()> {
    let Some(window) = inner.opts.pitr_window else {
        return Ok(());
    };
    let cutoff =
        crate::now_ms().saturating_sub(u64::try_from(window.as_millis()).unwrap_or(u64::MAX));
    let keyring = inner.keyring.read().clone();
    let dir = inner.path.join(ARCHIVE_DIR);
    // Only a prefix may go, so the archive stays one chain.
    for (_, path) in numbered(&inner.fs, &dir)? {
        let s = summarize_segment(inner.fs.as_ref(), &path, &keyring, inner.cipher)?;
        if s.last_time_ms >= cutoff {
            break;
        }
        inner
            .fs
            .remove_file(&path)
            .map_err(|e| Error::io(&path, e))?;
    }
    Ok(())
}

/// Replays a backup's WAL segments past its sequence number into a fresh WAL in `dest/wal`,
/// keeping only whole batches within the limits. Returns (batches replayed, last sequence).
///
/// Every segment is checked against its catalogue entry first (size, digest, sequence
/// range), and when the log ends before the limit, the replayed end must be the catalogue's
/// last sequence: a cut newest segment is an integrity error, never a silently shorter
/// restore.
pub(crate) fn replay_backup_wal(
    fs: &SharedFs,
    dir: &Path,
    backup: &BackupInfo,
    keyring: &Keyring,
    dest: &Path,
    max_seq: Option<u64>,
    max_time: Option<u64>,
) -> Result<(u64, u64)> {
    if backup.wal.is_empty() {
        return Ok((0, backup.sequence));
    }
    // Lay the segments out under their chain names so the reader can check the chain.
    let scratch = dest.join(".pitr");
    fs.create_dir_all(&scratch)
        .map_err(|e| Error::io(&scratch, e))?;
    let mut segs = backup.wal.clone();
    segs.sort_by_key(|w| w.number);
    for w in &segs {
        let from = dir
            .join("wal")
            .join(format!("{}.wal", sealdb_crypto::hex::encode(&w.file_id)));
        crate::backup::check_backup_segment(fs, &from, w, keyring, backup.cipher)?;
        fs.hard_link(&from, &scratch.join(segment_file_name(w.number)))
            .map_err(|e| Error::io(&from, e))?;
    }
    let opts = WalOptions {
        segment_size: 64 << 20,
        cipher: backup.cipher,
    };
    let (wal, _) = Wal::open(
        fs.clone(),
        &dest.join("wal"),
        keyring.clone(),
        opts,
        0,
        &mut |_| Ok(()),
    )?;
    let mut count = 0u64;
    let mut last = backup.sequence;
    let mut failure: Option<Error> = None;
    // Batches are atomic and ordered: once one lies past the point, so does everything after.
    let mut stopped = false;
    let first = segs.first().map_or(0, |w| w.number);
    Wal::replay_read_only(fs, &scratch, keyring, opts, first, &mut |b: FrameBatch<
        '_,
    >| {
        let end = b.first_seq + u64::from(b.count) - 1;
        let within =
            max_seq.is_none_or(|m| end <= m) && max_time.is_none_or(|t| b.commit_time_ms <= t);
        if b.first_seq > backup.sequence && !within {
            stopped = true;
        }
        if b.first_seq > backup.sequence && within && !stopped && failure.is_none() {
            if let Err(e) = wal.append(&[b], true) {
                failure = Some(e.into());
            } else {
                count += 1;
                last = end;
            }
        }
        Ok(())
    })?;
    if let Some(e) = failure {
        return Err(e);
    }
    drop(wal);
    if !stopped
        && let Some(w) = segs
            .iter()
            .filter(|w| w.last_seq > last)
            .max_by_key(|w| w.last_seq)
    {
        // The log ended before the point asked for, yet the catalogue says it goes on.
        return Err(Error::corruption(format!(
            "point-in-time restore reached sequence {last}, but the backup catalogue records \
             WAL segment {} ({}) as holding sequences up to {}: its records are missing",
            w.number,
            dir.join("wal")
                .join(format!("{}.wal", sealdb_crypto::hex::encode(&w.file_id)))
                .display(),
            w.last_seq
        )));
    }
    for name in fs.list_dir(&scratch).map_err(|e| Error::io(&scratch, e))? {
        let p = scratch.join(name);
        fs.remove_file(&p).map_err(|e| Error::io(&p, e))?;
    }
    fs.remove_dir(&scratch)
        .map_err(|e| Error::io(&scratch, e))?;
    Ok((count, last))
}
