//! What a table's authenticated blocks are: each block's role (from the footer), the sizes a
//! decrypted block holds, and the table's properties; never its keys or values.

use super::layout::BlockInfo;
use crate::commands::Ctx;
use crate::error::{CliError, Result};
use crate::output::{bytes, count};
use sealdb_crypto::{ArtifactKind, CipherId, Expected, FileHeader, Keyring, SealedReader};
use sealdb_vfs::RealFs;
use serde_json::json;
use std::path::Path;
use std::sync::Arc;

/// Plaintext length of a table footer and where its magic sits (`docs/format.md`, "SSTable").
const TABLE_FOOTER_LEN: usize = 48;
const TABLE_FOOTER_MAGIC_AT: usize = 40;

/// Offsets of a table's metadata blocks, from its authenticated footer.
#[derive(Debug, Clone, Copy)]
pub(super) struct TableRoles {
    index: u64,
    filter: u64,
    properties: u64,
}

/// Decodes the footer of a table (or index table) to name each block's role.
pub(super) fn table_roles(
    r: &SealedReader,
    h: &FileHeader,
    blocks: &[BlockInfo],
) -> Option<TableRoles> {
    if !matches!(h.kind, ArtifactKind::Table | ArtifactKind::Index) {
        return None;
    }
    let last = blocks.last().filter(|b| b.is_final)?;
    let footer = r.read_block(last.handle).ok()?.data;
    if footer.len() != TABLE_FOOTER_LEN
        || footer.get(TABLE_FOOTER_MAGIC_AT..)? != sealdb_sstable::TABLE_MAGIC.to_le_bytes()
    {
        return None;
    }
    let u64_at = |at: usize| -> Option<u64> {
        Some(u64::from_le_bytes(footer.get(at..at + 8)?.try_into().ok()?))
    };
    Some(TableRoles {
        index: u64_at(0)?,
        filter: u64_at(12)?,
        properties: u64_at(24)?,
    })
}

/// What a decrypted block holds, in sizes only.
pub(super) struct Plaintext {
    pub(super) role: &'static str,
    pub(super) plaintext_len: usize,
    /// A compressed data block's decompressed size.
    pub(super) raw_len: Option<u32>,
    pub(super) text: String,
}

pub(super) fn describe_plaintext(
    h: &FileHeader,
    roles: Option<&TableRoles>,
    b: &BlockInfo,
    data: &[u8],
) -> Plaintext {
    let offset = b.handle.offset;
    let role = match (h.kind, roles) {
        (ArtifactKind::Table | ArtifactKind::Index, Some(r)) => {
            if b.is_final {
                "footer"
            } else if offset == r.index {
                "index"
            } else if offset == r.filter {
                "filter"
            } else if offset == r.properties {
                "properties"
            } else {
                "data"
            }
        }
        (ArtifactKind::Wal, _) => "commit-frame",
        (ArtifactKind::Manifest, _) => "manifest-edits",
        (ArtifactKind::Keys, _) => "keys-payload",
        _ => "block",
    };
    // Data blocks start with a compression tag; LZ4 ones then hold the raw length.
    let raw_len = if role == "data" && data.first() == Some(&1) {
        data.get(1..5)
            .and_then(|s| s.try_into().ok())
            .map(u32::from_le_bytes)
    } else {
        None
    };
    let text = match raw_len {
        Some(raw) => format!("{role}, {} B plaintext (lz4, {} B raw)", data.len(), raw),
        None => format!("{role}, {} B plaintext", data.len()),
    };
    Plaintext {
        role,
        plaintext_len: data.len(),
        raw_len,
        text,
    }
}

pub(super) fn print_table_properties(
    ctx: &mut Ctx,
    path: &Path,
    h: &FileHeader,
    k: &Keyring,
    data_cipher: CipherId,
) -> Result<()> {
    // Counts and sizes only: the smallest and largest keys are user data.
    let table = match open_table(path, h, k, data_cipher) {
        Ok(t) => t,
        Err(e) => {
            let e = CliError::from(e);
            return ctx.out.emit(
                || format!("table          could not be opened: {e}"),
                || json!({"table": {"ok": false, "error": e.to_string()}}),
            );
        }
    };
    let p = table.properties();
    ctx.out.emit(
        || {
            format!(
                "table          {} entries ({} tombstones), seq {}..{}, {} data blocks, \
                 keys {} + values {} raw, compression {}, bloom {} bits/key, created at unix \
                 time {}",
                count(p.entries),
                count(p.tombstones),
                p.min_seq,
                p.max_seq,
                count(p.data_blocks),
                bytes(p.raw_key_bytes),
                bytes(p.raw_value_bytes),
                compression_name(p.compression),
                p.bloom_bits_per_key,
                p.creation_time
            )
        },
        || {
            json!({"table": {
                "ok": true,
                "entries": p.entries,
                "tombstones": p.tombstones,
                "min_seq": p.min_seq,
                "max_seq": p.max_seq,
                "data_blocks": p.data_blocks,
                "raw_key_bytes": p.raw_key_bytes,
                "raw_value_bytes": p.raw_value_bytes,
                "compression": compression_name(p.compression),
                "bloom_bits_per_key": p.bloom_bits_per_key,
                "creation_time": p.creation_time,
            }})
        },
    )
}

/// Opens a table of this database for a dump, authenticated under its data cipher (never the
/// cipher its header claims).
pub(super) fn open_table(
    path: &Path,
    h: &FileHeader,
    k: &Keyring,
    data_cipher: CipherId,
) -> sealdb_sstable::Result<Arc<sealdb_sstable::Table>> {
    let expected = Expected {
        kind: h.kind,
        database_id: k.database_id(),
        cipher: Some(data_cipher),
    };
    sealdb_sstable::Table::open(&RealFs, path, k, &expected, None)
}

fn compression_name(c: sealdb_sstable::Compression) -> &'static str {
    match c {
        sealdb_sstable::Compression::None => "none",
        sealdb_sstable::Compression::Lz4 => "lz4",
    }
}
