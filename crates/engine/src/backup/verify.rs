//! Verifying a backup without restoring it: every file it names authenticates and matches
//! its catalogue entry.

use super::anchor::check_anchor;
use super::catalog::{WalSegmentInfo, backup_keyring, catalog_ids, read_backup};
use super::files::{file_digest, table_name, wal_name};
use crate::options::Options;
use crate::{Error, Result};
use sealdb_crypto::{CipherId, Keyring};
use sealdb_vfs::SharedFs;
use std::collections::BTreeSet;
use std::path::Path;

/// Checks a backup's WAL segment against its catalogue entry: present, the same file, every
/// complete frame authentic, the recorded sequence range, and (format 2) exactly the recorded
/// bytes. A segment closed by a recovery legitimately ends without its final block (its
/// successor records where it validly ends), so an unfinished end is not itself an error:
/// the recorded size and digest are what pin its end.
pub(super) fn check_backup_segment(
    fs: &SharedFs,
    path: &Path,
    w: &WalSegmentInfo,
    keyring: &Keyring,
    cipher: CipherId,
) -> Result<()> {
    let integrity = |reason| Error::Integrity {
        file: path.display().to_string(),
        block: None,
        reason,
    };
    if !fs.exists(path) {
        return Err(integrity(sealdb_crypto::IntegrityReason::MissingFile));
    }
    if let Some(size) = w.size {
        let len = fs.file_size(path).map_err(|e| Error::io(path, e))?;
        if len < size {
            return Err(integrity(sealdb_crypto::IntegrityReason::Truncated));
        }
        if len > size {
            return Err(integrity(sealdb_crypto::IntegrityReason::TrailingData));
        }
    }
    let s = sealdb_wal::summarize_segment(fs.as_ref(), path, keyring, cipher)?;
    if s.file_id != w.file_id {
        return Err(integrity(sealdb_crypto::IntegrityReason::ReplacedFile));
    }
    if let Some(digest) = w.digest
        && file_digest(fs, path)?.1 != digest
    {
        return Err(integrity(sealdb_crypto::IntegrityReason::ReplacedFile));
    }
    if (s.number, s.first_seq, s.last_seq) != (w.number, w.first_seq, w.last_seq) {
        return Err(Error::corruption(format!(
            "{}: holds WAL segment {} with sequences {}..={}, but the catalogue records \
             segment {} with sequences {}..={}",
            path.display(),
            s.number,
            s.first_seq,
            s.last_seq,
            w.number,
            w.first_seq,
            w.last_seq
        )));
    }
    Ok(())
}

/// What verifying a backup found.
#[derive(Debug)]
pub struct BackupVerifyReport {
    /// Backups checked.
    pub backups: usize,
    /// Files checked.
    pub files_checked: usize,
    /// Every failure, each naming its file.
    pub errors: Vec<Error>,
}

/// Authenticates every block of every file of one backup (or all), without restoring.
pub fn verify_backup(dir: &Path, id: Option<&str>, opts: &Options) -> Result<BackupVerifyReport> {
    let fs = &opts.fs;
    let all = catalog_ids(fs, dir)?;
    let ids = match id {
        Some(i) => vec![i.to_string()],
        None => all.clone(),
    };
    let mut report = BackupVerifyReport {
        backups: 0,
        files_checked: 0,
        errors: Vec::new(),
    };
    if let Err(e) = check_anchor(fs, dir, opts, &all, &mut |i| read_backup(dir, i, opts)) {
        report.errors.push(e);
    }
    // Backups share files: each is checked once.
    let mut seen = BTreeSet::new();
    for id in ids {
        let info = match read_backup(dir, &id, opts) {
            Ok(i) => i,
            Err(e) => {
                report.errors.push(e);
                continue;
            }
        };
        report.backups += 1;
        let (_, keyring) = backup_keyring(fs, dir, &id, opts)?;
        let cache = sealdb_sstable::BlockCache::new(1 << 20);
        for (_, _, f) in &info.tables {
            let path = dir.join("tables").join(table_name(&f.file_id));
            if !seen.insert(path.clone()) {
                continue;
            }
            report.files_checked += 1;
            match crate::tables::open_table_at(fs, &path, f, &keyring, info.cipher, &cache) {
                Ok(t) => report.errors.extend(
                    t.table
                        .verify()
                        .into_iter()
                        .map(crate::version::table_error),
                ),
                Err(e) => report.errors.push(e),
            }
        }
        for w in &info.wal {
            let path = dir.join("wal").join(wal_name(&w.file_id));
            if !seen.insert(path.clone()) {
                continue;
            }
            report.files_checked += 1;
            if let Err(e) = check_backup_segment(fs, &path, w, &keyring, info.cipher) {
                report.errors.push(e);
            }
        }
    }
    Ok(report)
}
