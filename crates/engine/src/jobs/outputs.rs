//! The tables a flush or compaction writes: creating them (numbers come from the version
//! set), and discarding them when the job fails.

use super::context::TableContext;
use crate::Result;
use crate::manifest::FileMeta;
use crate::tables::table_path;
use crate::version::table_error;
use sealdb_crypto::Keyring;
use sealdb_sstable::TableBuilder;
use std::path::PathBuf;

pub(super) fn to_file_meta(number: u64, m: &sealdb_sstable::TableMeta) -> FileMeta {
    FileMeta {
        number,
        size: m.file_size,
        entries: m.entries,
        smallest: m.smallest.clone(),
        largest: m.largest.clone(),
        min_seq: m.min_seq,
        max_seq: m.max_seq,
        data_key_version: m.data_key_version,
        file_id: m.file_id.0,
        footer_digest: m.footer_digest,
    }
}

/// Deletes the table files a failed flush or compaction wrote (best effort: whatever stays
/// is an orphan, removed at the next open). Only for files no manifest edit may have named.
fn discard_outputs(tables: &TableContext<'_>, created: &[(u64, PathBuf)]) {
    for (_, path) in created {
        let _ = tables.fs.remove_file(path);
    }
}

/// Creates table `number` for a flush or compaction, remembering it in `created` first so a
/// failure anywhere later deletes it.
pub(super) fn create_output(
    tables: &TableContext<'_>,
    number: u64,
    keyring: &Keyring,
    created: &mut Vec<(u64, PathBuf)>,
) -> Result<TableBuilder> {
    let path = table_path(tables.path, number);
    created.push((number, path.clone()));
    TableBuilder::create(tables.fs.as_ref(), &path, keyring, &tables.options).map_err(table_error)
}

/// Runs the part of a flush or compaction that only writes its own new files; on failure
/// they are deleted (nothing refers to them), so the job can simply be retried.
pub(super) fn with_outputs<T>(
    tables: &TableContext<'_>,
    created: &mut Vec<(u64, PathBuf)>,
    f: impl FnOnce(&mut Vec<(u64, PathBuf)>) -> Result<T>,
) -> Result<T> {
    let r = f(created);
    if r.is_err() {
        discard_outputs(tables, created);
    }
    r
}
