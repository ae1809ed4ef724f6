//! The table files of the live set: where they live, opening one with its cipher and data key
//! checked, loading the version the manifest names, and preparing the tables directory. No
//! table is opened here without its kind, database id and cipher checked, nor used unless it
//! is the very file the manifest recorded (its footer digest).

use crate::manifest::{FileMeta, ManifestState, NUM_LEVELS};
use crate::version::{TableHandle, Version, table_error};
use crate::{Error, Result};
use sealdb_crypto::{ArtifactKind, CipherId, Expected, IntegrityReason, Keyring};
use sealdb_sstable::{BlockCache, Table};
use sealdb_vfs::SharedFs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The directory of table files inside the data directory.
pub(crate) const TABLES_DIR: &str = "tables";

pub(crate) fn table_path(db: &Path, number: u64) -> PathBuf {
    db.join(TABLES_DIR).join(format!("{number:016}.sst"))
}

fn expected(keyring: &Keyring, cipher: CipherId) -> Expected {
    Expected {
        kind: ArtifactKind::Table,
        database_id: keyring.database_id(),
        cipher: Some(cipher),
    }
}

/// Opens one live table and checks it is exactly the file the manifest recorded.
pub(crate) fn open_table(
    fs: &SharedFs,
    db: &Path,
    meta: &FileMeta,
    keyring: &Keyring,
    cipher: CipherId,
    cache: &Arc<BlockCache>,
) -> Result<Arc<TableHandle>> {
    open_table_at(
        fs,
        &table_path(db, meta.number),
        meta,
        keyring,
        cipher,
        cache,
    )
}

/// Opens the table at `path` and checks it is exactly the file `meta` describes.
pub(crate) fn open_table_at(
    fs: &SharedFs,
    path: &Path,
    meta: &FileMeta,
    keyring: &Keyring,
    cipher: CipherId,
    cache: &Arc<BlockCache>,
) -> Result<Arc<TableHandle>> {
    let path = path.to_path_buf();
    let label = path.display().to_string();
    if !fs.exists(&path) {
        return Err(Error::Integrity {
            file: label,
            block: None,
            reason: IntegrityReason::MissingFile,
        });
    }
    let table = Table::open(
        fs.as_ref(),
        &path,
        keyring,
        &expected(keyring, cipher),
        Some(cache.clone()),
    )
    .map_err(table_error)?;
    let got = table.meta();
    if got.footer_digest != meta.footer_digest
        || got.file_id.0 != meta.file_id
        || got.file_size != meta.size
        || got.data_key_version != meta.data_key_version
    {
        return Err(Error::Integrity {
            file: label,
            block: None,
            reason: IntegrityReason::ReplacedFile,
        });
    }
    Ok(Arc::new(TableHandle::new(
        meta.clone(),
        table,
        path,
        fs.clone(),
    )))
}

/// Opens every table the manifest lists and removes orphans (tables written by a flush or
/// compaction that crashed before its manifest edit).
pub(crate) fn load_version(
    fs: &SharedFs,
    db: &Path,
    state: &ManifestState,
    keyring: &Keyring,
    cipher: CipherId,
    cache: &Arc<BlockCache>,
) -> Result<(Version, Vec<PathBuf>)> {
    let dir = db.join(TABLES_DIR);
    let mut version = Version::default();
    let mut live = std::collections::HashSet::new();
    for (ks, levels) in &state.levels {
        let mut out: Vec<Vec<Arc<TableHandle>>> = vec![Vec::new(); NUM_LEVELS];
        for (n, files) in levels.iter().enumerate() {
            for meta in files.values() {
                live.insert(meta.number);
                if let Some(level) = out.get_mut(n) {
                    level.push(open_table(fs, db, meta, keyring, cipher, cache)?);
                }
            }
        }
        version.keyspaces.insert(*ks, out);
    }
    version.normalize();
    // Files the manifest does not name: outputs of a flush or compaction that crashed before
    // its manifest edit. Returned, not deleted: open removes them once everything verified.
    let mut orphans = Vec::new();
    if fs.exists(&dir) {
        for name in fs.list_dir(&dir).map_err(|e| Error::io(&dir, e))? {
            let number = name
                .strip_suffix(".sst")
                .and_then(|n| n.parse::<u64>().ok());
            if number.is_none_or(|n| !live.contains(&n)) {
                orphans.push(dir.join(&name));
            }
        }
    }
    Ok((version, orphans))
}

/// Creates the tables directory if needed (durably) and removes orphan tables.
pub(crate) fn prepare_tables_dir(fs: &SharedFs, db: &Path, orphans: &[PathBuf]) -> Result<()> {
    let dir = db.join(TABLES_DIR);
    sealdb_vfs::create_dir_all_durable(fs.as_ref(), &dir).map_err(|e| Error::io(&dir, e))?;
    for p in orphans {
        fs.remove_file(p).map_err(|e| Error::io(p, e))?;
    }
    if !orphans.is_empty() {
        fs.sync_dir(&dir).map_err(|e| Error::io(&dir, e))?;
    }
    Ok(())
}
