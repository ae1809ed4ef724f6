//! Taking a backup of an open database: hard links (or copies) of the live sealed files,
//! then the catalogue, written last and atomically.

use super::anchor::{anchor_path, newest_anchored, write_anchor};
use super::catalog::{BackupInfo, WalSegmentInfo, catalog_path, encode_catalog};
use super::files::{file_digest, link_or_copy, table_name, wal_name};
use crate::manifest::ManifestState;
use crate::state::DbInner;
use crate::{Error, Result};
use sealdb_crypto::{ArtifactKind, CipherId, Keyring};
use sealdb_vfs::SharedFs;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Takes an online backup of the database whose state is `inner` into `dir`: what
/// [`crate::Db::backup`] does.
pub(crate) fn backup(
    inner: &Arc<DbInner>,
    dir: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<BackupInfo> {
    inner.check_key()?;
    let fs = &inner.fs;
    inner.flush()?;
    // Everything up to S is in tables; closed WAL segments cover what follows. Segments
    // numbered below `below` are closed for good: only those are taken.
    let below = inner.wal.rotate()?;
    // Refuse before copying anything if the directory's newest backup went missing; the
    // new catalogue names the newest one as its predecessor.
    let predecessor = newest_anchored(fs, dir, &inner.opts)?;
    let keyring = inner.keyring.read().clone();
    // Capture the manifest state and pin the matching tables under the manifest lock:
    // flush and compaction install versions while holding it.
    let (state, version): (ManifestState, _) = {
        let m = inner.versions.manifest();
        (m.state().clone(), inner.versions.live())
    };
    // Durably: the catalog entry written at the end must not outlive the directories.
    sealdb_vfs::create_dir_all_durable(fs.as_ref(), &dir.join("tables"))
        .map_err(|e| Error::io(dir, e))?;
    sealdb_vfs::create_dir_all_durable(fs.as_ref(), &dir.join("wal"))
        .map_err(|e| Error::io(dir, e))?;
    let mut tables = Vec::new();
    for (ks, levels) in &state.levels {
        for (level, files) in levels.iter().enumerate() {
            for f in files.values() {
                tables.push((*ks, level as u8, f.clone()));
            }
        }
    }
    let wal_segments = crate::pitr::closed_segments_for_backup(inner, below)?;
    let total = (tables.len() + wal_segments.len()) as u64;
    let mut done = 0u64;
    progress(0, total);
    for (_, _, f) in &tables {
        let from = crate::tables::table_path(&inner.path, f.number);
        link_or_copy(fs, &from, &dir.join("tables").join(table_name(&f.file_id)))?;
        done += 1;
        progress(done, total);
    }
    let mut wal = Vec::with_capacity(wal_segments.len());
    for (number, places) in &wal_segments {
        if let Some(info) = keep_wal_segment(fs, dir, *number, places, &keyring, inner.cipher)? {
            wal.push(info);
        } else if !wal.is_empty() {
            // Only the oldest archived segments may go meanwhile (archive trimming).
            return Err(Error::corruption(format!(
                "WAL segment {number} vanished while being backed up"
            )));
        }
        done += 1;
        progress(done, total);
    }
    drop(version);
    fs.sync_dir(&dir.join("tables"))
        .map_err(|e| Error::io(dir, e))?;
    fs.sync_dir(&dir.join("wal"))
        .map_err(|e| Error::io(dir, e))?;

    let mut id_bytes = [0u8; 8];
    sealdb_crypto::keys::fill_random(&mut id_bytes)?;
    let created_ms = crate::now_ms();
    let id = format!("{created_ms:013}-{}", sealdb_crypto::hex::encode(&id_bytes));
    let keys_copy = dir.join(format!("{id}.KEYS"));
    let keys_bytes = sealdb_vfs::read_file_limited(
        fs.as_ref(),
        &inner.path.join(sealdb_crypto::keysfile::KEYS_FILE_NAME),
        4 << 20,
    )
    .map_err(|e| Error::io(&inner.path, e))?;
    sealdb_vfs::write_file_atomic(fs.as_ref(), &keys_copy, &keys_bytes)
        .map_err(|e| Error::io(&keys_copy, e))?;
    let versions: BTreeSet<u32> = tables.iter().map(|(_, _, f)| f.data_key_version).collect();
    let info = BackupInfo {
        id: id.clone(),
        database_id: keyring.database_id(),
        created_ms,
        sequence: state.flushed_seq,
        cipher: inner.cipher,
        master: inner.keys.lock().master().clone(),
        data_key_versions: versions.into_iter().collect(),
        keyspaces: state
            .keyspaces
            .iter()
            .map(|(i, n)| (*i, n.clone()))
            .collect(),
        bytes: tables.iter().map(|(_, _, f)| f.size).sum(),
        tables,
        wal,
        predecessor,
        indexes: state
            .indexes
            .iter()
            .map(|(ks, i)| (*ks, i.base, i.definition.clone(), i.ready))
            .collect(),
    };
    // The catalogue last: until it exists, the backup does not.
    let catalog = catalog_path(dir, &id);
    sealdb_crypto::sealed::write_small_sealed_file(
        fs.as_ref(),
        &catalog,
        &keyring,
        ArtifactKind::BackupCatalog,
        &encode_catalog(&info),
    )?;
    // Then the anchor: a crash in between leaves a newest catalogue whose predecessor is
    // the anchored one, which is accepted.
    let (_, digest) = file_digest(fs, &catalog)?;
    write_anchor(&anchor_path(&inner.opts, dir)?, Some((&id, digest)))?;
    Ok(info)
}

/// Hard-links (or copies) closed WAL segment `number` into the backup from wherever it is
/// now, then summarizes the backup's copy: the catalogue describes exactly the bytes kept.
/// `None` if the segment is gone from every place (trimmed from the archive meanwhile).
fn keep_wal_segment(
    fs: &SharedFs,
    dir: &Path,
    number: u64,
    places: &[PathBuf],
    keyring: &Keyring,
    cipher: CipherId,
) -> Result<Option<WalSegmentInfo>> {
    for from in places {
        if !fs.exists(from) {
            continue;
        }
        // The name in the backup is the file id, so read it before linking; the size and
        // digest recorded are the live (closed, immutable) file's.
        let read = sealdb_wal::summarize_segment(fs.as_ref(), from, keyring, cipher)
            .map_err(Error::from)
            .and_then(|s| Ok((s, file_digest(fs, from)?)));
        let (s, (size, digest)) = match read {
            Ok(x) => x,
            Err(_) if !fs.exists(from) => continue, // moved into the archive meanwhile
            Err(e) => return Err(e),
        };
        if s.number != number {
            return Err(Error::corruption(format!(
                "{}: start frame names segment {}",
                from.display(),
                s.number
            )));
        }
        let to = dir.join("wal").join(wal_name(&s.file_id));
        let shared = fs.exists(&to);
        match link_or_copy(fs, from, &to) {
            Ok(_) => {}
            Err(_) if !fs.exists(from) && !fs.exists(&to) => continue,
            Err(e) => return Err(e),
        }
        // A copy an earlier backup already holds must still be that file, or the new backup
        // would depend on a damaged one.
        if shared && file_digest(fs, &to)? != (size, digest) {
            return Err(Error::Integrity {
                file: to.display().to_string(),
                block: None,
                reason: sealdb_crypto::IntegrityReason::ReplacedFile,
            });
        }
        return Ok(Some(WalSegmentInfo {
            file_id: s.file_id,
            number: s.number,
            first_seq: s.first_seq,
            last_seq: s.last_seq,
            first_time_ms: s.first_time_ms,
            last_time_ms: s.last_time_ms,
            size: Some(size),
            digest: Some(digest),
        }));
    }
    Ok(None)
}
