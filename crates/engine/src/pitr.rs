//! Point-in-time recovery: with `Options::pitr_window` set, WAL segments made obsolete by a
//! flush are archived (kept in `<db>/wal-archive/`) instead of deleted, for the window; backups
//! carry them, and a restore replays them past the backup's sequence number up to exactly the
//! requested point.

use crate::backup::{BackupInfo, WalSegmentInfo};
use crate::db::DbInner;
use crate::{Error, Result};
use sealdb_crypto::Keyring;
use sealdb_vfs::SharedFs;
use sealdb_wal::{FrameBatch, Wal, WalOptions, segment_file_name, summarize_segment};
use std::path::{Path, PathBuf};

/// The archive directory inside the data directory.
pub(crate) const ARCHIVE_DIR: &str = "wal-archive";

fn numbered(fs: &SharedFs, dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
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

/// Archived and closed live WAL segments (with summaries) for a backup; empty when
/// point-in-time recovery is off.
pub(crate) fn wal_segments_for_backup(inner: &DbInner) -> Result<Vec<(PathBuf, WalSegmentInfo)>> {
    if inner.opts.pitr_window.is_none() {
        return Ok(Vec::new());
    }
    let keyring = inner.keyring.read().clone();
    let active = inner.wal.active_segment();
    let mut out = Vec::new();
    let mut files = numbered(&inner.fs, &inner.path.join(ARCHIVE_DIR))?;
    files.extend(
        numbered(&inner.fs, inner.wal.dir())?
            .into_iter()
            .filter(|(n, _)| *n != active),
    );
    files.sort();
    for (_, path) in files {
        let s = summarize_segment(inner.fs.as_ref(), &path, &keyring, inner.cipher)?;
        out.push((
            path,
            WalSegmentInfo {
                file_id: s.file_id,
                number: s.number,
                first_seq: s.first_seq,
                last_seq: s.last_seq,
                first_time_ms: s.first_time_ms,
                last_time_ms: s.last_time_ms,
            },
        ));
    }
    Ok(out)
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
        if !fs.exists(&from) {
            return Err(Error::Integrity {
                file: from.display().to_string(),
                block: None,
                reason: sealdb_crypto::IntegrityReason::MissingFile,
            });
        }
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
    for name in fs.list_dir(&scratch).map_err(|e| Error::io(&scratch, e))? {
        let p = scratch.join(name);
        fs.remove_file(&p).map_err(|e| Error::io(&p, e))?;
    }
    fs.remove_dir(&scratch)
        .map_err(|e| Error::io(&scratch, e))?;
    Ok((count, last))
}
