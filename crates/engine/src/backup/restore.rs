//! Restoring a backup into a new directory, to the backup's own point or (with archived WAL)
//! to a later point in time, under any master key.

use super::catalog::{BackupInfo, WalSegmentInfo, backup_keyring, choose};
use super::directory::list_backups;
use super::files::{copy_file, remove_tree, table_name};
use super::verify::check_backup_segment;
use crate::keylife::target_provider_for;
use crate::manifest::{ManifestState, NUM_LEVELS};
use crate::options::{MasterKey, Options};
use crate::{Error, Result};
use sealdb_crypto::{KeyDescriptor, Keyring, KeysFile};
use sealdb_vfs::SharedFs;
use sealdb_wal::{FrameBatch, Wal, WalOptions, segment_file_name};
use std::collections::BTreeMap;
use std::path::Path;

/// Where a restore should stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestorePoint {
    /// Exactly a backup's state.
    Backup,
    /// Every write with sequence number up to this (point-in-time).
    Sequence(u64),
    /// Every write committed up to this Unix time in milliseconds (point-in-time).
    Time(u64),
}

/// What a restore produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreInfo {
    /// The backup restored from.
    pub backup_id: String,
    /// The sequence number the restored database is at.
    pub sequence: u64,
    /// Tables restored.
    pub tables: u64,
    /// WAL batches replayed past the backup (point-in-time).
    pub replayed_batches: u64,
    /// The master key the restored database uses.
    pub master: KeyDescriptor,
}

/// Restores a backup into `dest` (a new directory) under `key` (or the backup's own master
/// key). Restoring under another key only re-wraps the data keys. The result appears at
/// `dest` only when complete: it is assembled beside it and renamed into place.
pub fn restore_backup(
    dir: &Path,
    dest: &Path,
    id: Option<&str>,
    point: RestorePoint,
    key: Option<MasterKey>,
    opts: &Options,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<RestoreInfo> {
    let fs = &opts.fs;
    let dest = std::path::absolute(dest).map_err(|e| Error::io(dest, e))?;
    if fs.exists(&dest) {
        return Err(Error::invalid_argument(format!(
            "{} already exists",
            dest.display()
        )));
    }
    let backups = list_backups(dir, opts)?;
    let chosen = match point {
        RestorePoint::Backup => choose(&backups, id)?.clone(),
        RestorePoint::Sequence(n) => backups
            .iter()
            .filter(|b| b.sequence <= n)
            .max_by_key(|b| b.sequence)
            .ok_or_else(|| Error::invalid_argument(format!("no backup at or before sequence {n}")))?
            .clone(),
        RestorePoint::Time(t) => backups
            .iter()
            .filter(|b| b.created_ms <= t)
            .max_by_key(|b| b.created_ms)
            .ok_or_else(|| Error::invalid_argument(format!("no backup at or before time {t}")))?
            .clone(),
    };
    let (keys, keyring) = backup_keyring(fs, dir, &chosen.id, opts)?;
    let staging = dest.with_file_name(format!(
        ".{}.restoring",
        dest.file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default()
    ));
    if fs.exists(&staging) {
        remove_tree(fs, &staging)?;
    }
    fs.create_dir_all(&staging.join(crate::tables::TABLES_DIR))
        .map_err(|e| Error::io(&staging, e))?;
    // KEYS: the backup's, re-wrapped under the target key if one is asked for.
    let keys_bytes = sealdb_vfs::read_file_limited(
        fs.as_ref(),
        &dir.join(format!("{}.KEYS", chosen.id)),
        4 << 20,
    )
    .map_err(|e| Error::io(dir, e))?;
    let staged_keys = staging.join(sealdb_crypto::keysfile::KEYS_FILE_NAME);
    sealdb_vfs::write_file_atomic(fs.as_ref(), &staged_keys, &keys_bytes)
        .map_err(|e| Error::io(&staged_keys, e))?;
    drop(keys);
    let mut master = chosen.master.clone();
    if let Some(target) = key {
        let provider = target_provider_for(opts, keyring.database_id(), &target)?;
        let summary = KeysFile::peek(fs.as_ref(), &staging)?;
        let (mut k, _) = KeysFile::open(fs.as_ref(), &staging, |desc| {
            crate::keys::resolve_provider(desc, summary.database_id, opts)
                .map_err(crate::keys::to_crypto)
        })?;
        k.switch_master_key(fs.as_ref(), provider.as_ref())?;
        master = provider.descriptor();
    }
    // Tables: copies (a restore must not share inodes with the backup it came from).
    let total = chosen.tables.len() as u64;
    let mut state = ManifestState {
        keyspaces: chosen.keyspaces.iter().cloned().collect(),
        levels: chosen
            .keyspaces
            .iter()
            .map(|(id, _)| (*id, vec![BTreeMap::new(); NUM_LEVELS]))
            .collect(),
        next_keyspace_id: chosen
            .keyspaces
            .iter()
            .map(|(i, _)| i + 1)
            .max()
            .unwrap_or(1)
            .max(1),
        indexes: chosen
            .indexes
            .iter()
            .map(|(ks, base, def, ready)| {
                (
                    *ks,
                    crate::manifest::IndexRecord {
                        base: *base,
                        definition: def.clone(),
                        ready: *ready,
                    },
                )
            })
            .collect(),
        ..ManifestState::default()
    };
    progress(0, total);
    let mut max_number = 0;
    for (i, (ks, level, f)) in chosen.tables.iter().enumerate() {
        let from = dir.join("tables").join(table_name(&f.file_id));
        if !fs.exists(&from) {
            return Err(Error::Integrity {
                file: from.display().to_string(),
                block: None,
                reason: sealdb_crypto::IntegrityReason::MissingFile,
            });
        }
        let to = crate::tables::table_path(&staging, f.number);
        copy_file(fs, &from, &to)?;
        if let Some(l) = state
            .levels
            .get_mut(ks)
            .and_then(|l| l.get_mut(usize::from(*level)))
        {
            l.insert(f.number, f.clone());
        }
        max_number = max_number.max(f.number);
        progress(i as u64 + 1, total);
    }
    state.flushed_seq = chosen.sequence;
    state.next_file_number = max_number + 1;
    crate::manifest::Manifest::create_with_state(
        fs.clone(),
        &staging,
        &keyring,
        chosen.cipher,
        state,
    )?;
    // Point-in-time: replay the backup's WAL past its sequence into the new WAL.
    let limit = match point {
        RestorePoint::Backup => None,
        RestorePoint::Sequence(n) => Some((Some(n), None)),
        RestorePoint::Time(t) => Some((None, Some(t))),
    };
    let mut replayed = 0u64;
    let mut restored_seq = chosen.sequence;
    if let Some((max_seq, max_time)) = limit {
        // The log past the chosen backup lives in later backups' WAL lists too.
        let mut wal: BTreeMap<[u8; 16], WalSegmentInfo> = BTreeMap::new();
        for b in backups
            .iter()
            .filter(|b| b.database_id == chosen.database_id)
        {
            for w in &b.wal {
                wal.insert(w.file_id, w.clone());
            }
        }
        let mut with_log = chosen.clone();
        with_log.wal = wal.into_values().collect();
        let (n, s) = replay_backup_wal(fs, dir, &with_log, &keyring, &staging, max_seq, max_time)?;
        replayed = n;
        restored_seq = restored_seq.max(s);
    }
    // Every table opens and matches before the result becomes visible.
    let cache = sealdb_sstable::BlockCache::new(1 << 20);
    for (_, _, f) in &chosen.tables {
        crate::tables::open_table_at(
            fs,
            &crate::tables::table_path(&staging, f.number),
            f,
            &keyring,
            chosen.cipher,
            &cache,
        )?;
    }
    if let Some(parent) = staging.parent() {
        // Every entry durable before the tree becomes visible under its name.
        for sub in [crate::tables::TABLES_DIR, "wal"] {
            let d = staging.join(sub);
            if fs.exists(&d) {
                fs.sync_dir(&d).map_err(|e| Error::io(&d, e))?;
            }
        }
        fs.sync_dir(&staging).map_err(|e| Error::io(&staging, e))?;
        // A restore starts a new history at `dest`: a head left by an earlier database there
        // (the same database restored back into its own path) must not call it a rollback.
        crate::head::forget(&opts.resolved_keystore_dir(), keyring.database_id(), &dest)?;
        fs.rename(&staging, &dest)
            .map_err(|e| Error::io(&dest, e))?;
        fs.sync_dir(parent).map_err(|e| Error::io(parent, e))?;
    }
    Ok(RestoreInfo {
        backup_id: chosen.id.clone(),
        sequence: restored_seq,
        tables: total,
        replayed_batches: replayed,
        master,
    })
}

/// Replays a backup's WAL segments past its sequence number into a fresh WAL in `dest/wal`,
/// keeping only whole batches within the limits. Returns (batches replayed, last sequence).
///
/// Every segment is checked against its catalogue entry first (size, digest, sequence
/// range), and when the log ends before the limit, the replayed end must be the catalogue's
/// last sequence: a cut newest segment is an integrity error, never a silently shorter
/// restore.
fn replay_backup_wal(
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
        check_backup_segment(fs, &from, w, keyring, backup.cipher)?;
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
