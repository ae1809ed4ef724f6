//! The backups of a directory as a whole: listing them (checked against the directory's
//! anchor) and deleting one, with the files no remaining backup names.

use super::anchor::{anchor_path, check_anchor, read_anchor, write_anchor};
use super::catalog::{BackupInfo, catalog_ids, catalog_path, read_backup};
use super::files::{file_digest, table_name, wal_name};
use crate::options::Options;
use crate::{Error, Result};
use std::collections::BTreeSet;
use std::path::Path;

/// Every backup in `dir`, oldest first. Fails (an integrity error naming the catalogue) when
/// this machine recorded a newer backup of `dir` than the newest one present.
pub fn list_backups(dir: &Path, opts: &Options) -> Result<Vec<BackupInfo>> {
    let ids = catalog_ids(&opts.fs, dir)?;
    let backups = ids
        .iter()
        .map(|id| read_backup(dir, id, opts))
        .collect::<Result<Vec<_>>>()?;
    check_anchor(&opts.fs, dir, opts, &ids, &mut |id| {
        backups
            .iter()
            .find(|b| b.id == id)
            .cloned()
            .ok_or_else(|| Error::invalid_argument(format!("no backup {id}")))
    })?;
    Ok(backups)
}

/// Deletes one backup and every file no remaining backup uses.
pub fn delete_backup(dir: &Path, id: &str, opts: &Options) -> Result<()> {
    let fs = &opts.fs;
    let cat = catalog_path(dir, id);
    let anchor = anchor_path(opts, dir)?;
    let anchored = read_anchor(&anchor)?.is_some_and(|(a, _)| a == id);
    // Deleting an anchored catalogue that is already gone is how an operator confirms a
    // deletion made by hand (or cut short by a crash).
    if !fs.exists(&cat) && !anchored {
        return Err(Error::invalid_argument(format!("no backup {id}")));
    }
    if fs.exists(&cat) {
        list_backups(dir, opts)?;
        fs.remove_file(&cat).map_err(|e| Error::io(&cat, e))?;
    }
    let _ = fs.remove_file(&dir.join(format!("{id}.KEYS")));
    fs.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
    if anchored {
        // The newest remaining backup becomes the anchored one.
        let newest = catalog_ids(fs, dir)?.pop();
        match newest {
            Some(n) => write_anchor(
                &anchor,
                Some((&n, file_digest(fs, &catalog_path(dir, &n))?.1)),
            )?,
            None => write_anchor(&anchor, None)?,
        }
    }
    garbage_collect(dir, opts)
}

/// Removes files no catalogue references (left by deletes or by crashed backups).
fn garbage_collect(dir: &Path, opts: &Options) -> Result<()> {
    let fs = &opts.fs;
    let mut keep = BTreeSet::new();
    for b in list_backups(dir, opts)? {
        for (_, _, f) in &b.tables {
            keep.insert(format!("tables/{}", table_name(&f.file_id)));
        }
        for w in &b.wal {
            keep.insert(format!("wal/{}", wal_name(&w.file_id)));
        }
    }
    for sub in ["tables", "wal"] {
        let d = dir.join(sub);
        if !fs.exists(&d) {
            continue;
        }
        for name in fs.list_dir(&d).map_err(|e| Error::io(&d, e))? {
            if !keep.contains(&format!("{sub}/{name}")) {
                let p = d.join(&name);
                fs.remove_file(&p).map_err(|e| Error::io(&p, e))?;
            }
        }
    }
    Ok(())
}
