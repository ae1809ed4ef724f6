//! `inspect FILE`: the plaintext header of any sealed file and its block layout, read from
//! the block prefixes (the only other bytes a sealed file holds in clear). With `--db`, the
//! database's data keys are loaded read-only (the database is not opened, so inspecting works
//! while another process uses it) and every block is also authenticated and decrypted; only
//! sizes and structure are printed, never key material and never user keys or values.
//!
//! The dumps (`--entries` for a table, `--manifest`, `--wal` for a WAL segment), like
//! RocksDB's `sst_dump` and `ldb`, do print user keys and values: they are asked for by name.
//! A file that does not start with the sealed-file magic is "not a sealdb file" (exit 4):
//! integrity failures (exit 2) are for sealdb files that fail authentication.

mod dump;
mod keys;
mod layout;
mod table;

use crate::cli::InspectArgs;
use crate::commands::Ctx;
use crate::error::{CliError, Result};
use crate::output::{bytes, count};
use dump::{dump_entries, dump_manifest, dump_wal};
use keys::{accepted_cipher, load_keyring};
use layout::{check_magic, walk};
use sealdb_crypto::sealed::read_file_header;
use sealdb_crypto::{ArtifactKind, Expected, FileHeader, KeysFile, SealedReader};
use sealdb_vfs::{FileSystem, RealFs};
use serde_json::{Value, json};
use std::path::Path;
use table::{describe_plaintext, open_table, print_table_properties, table_roles};

/// `inspect FILE`.
pub fn inspect(ctx: &mut Ctx, a: &InspectArgs) -> Result<()> {
    let fs = RealFs;
    let path = a.file.as_path();
    let file = fs
        .open_read(path)
        .map_err(|e| CliError::io(format!("opening {}", path.display()), e))?;
    check_magic(file.as_ref(), path)?;
    let header = read_file_header(&fs, path)?;
    let dump = a.dump();
    if let Some((flag, kind)) = dump {
        let fits = header.kind == kind
            || (kind == ArtifactKind::Table && header.kind == ArtifactKind::Index);
        if !fits {
            return Err(CliError::other(format!(
                "{flag} dumps a {} file; {} is a {} file",
                kind.name(),
                path.display(),
                header.kind.name()
            )));
        }
        if ctx.global.db.is_none() {
            return Err(CliError::other(format!(
                "{flag} needs --db: the file is decrypted with that database's keys"
            )));
        }
    }
    let (blocks, tail) = walk(file.as_ref(), header.encoded_len(), header.cipher.tag_len())?;
    print_header(ctx, path, &header, file.len())?;

    // Keys only when a database was named: inspecting needs none, decrypting does.
    let db_keys = match &ctx.global.db {
        Some(_) => Some(load_keyring(ctx)?),
        None => None,
    };
    let data_cipher = db_keys.as_ref().map(|(_, c)| *c);
    let keyring = db_keys.map(|(k, _)| k);
    let mut failures: Vec<String> = Vec::new();
    let reader = match &keyring {
        Some(k) => {
            let expected = Expected {
                kind: header.kind,
                database_id: k.database_id(),
                cipher: data_cipher.map(|d| accepted_cipher(header.cipher, d)),
            };
            if header.database_id != k.database_id() {
                return Err(CliError::integrity(format!(
                    "{} belongs to database {}, not to the database at {} ({})",
                    path.display(),
                    header.database_id,
                    ctx.db_dir().display(),
                    k.database_id()
                )));
            }
            Some(SealedReader::from_file(
                file.clone(),
                path.display().to_string(),
                k,
                &expected,
            )?)
        }
        None => None,
    };

    let roles = reader
        .as_ref()
        .and_then(|r| table_roles(r, &header, &blocks));
    if !ctx.out.is_json() && dump.is_none() {
        ctx.out.text(format!(
            "{:>6} {:>12} {:>10} {:>10}  final{}",
            "block",
            "offset",
            "length",
            "body",
            if reader.is_some() { "  contents" } else { "" }
        ))?;
    }
    for (i, b) in blocks.iter().enumerate() {
        let opened = reader.as_ref().map(|r| {
            r.read_block(b.handle)
                .map(|blk| describe_plaintext(&header, roles.as_ref(), b, &blk.data))
        });
        if let Some(Err(e)) = &opened {
            failures.push(e.to_string());
        }
        if dump.is_some() {
            // The dump replaces the block list; the blocks are still authenticated above.
            continue;
        }
        let text_contents = match &opened {
            None => String::new(),
            Some(Ok(d)) => format!("  {}", d.text),
            Some(Err(e)) => format!("  FAILED: {e}"),
        };
        ctx.out.emit(
            || {
                format!(
                    "{i:>6} {:>12} {:>10} {:>10}  {:<5}{text_contents}",
                    b.handle.offset,
                    b.handle.len,
                    b.body_len,
                    if b.is_final { "yes" } else { "no" },
                )
                .trim_end()
                .to_string()
            },
            || {
                let mut v = json!({
                    "block": i,
                    "offset": b.handle.offset,
                    "length": b.handle.len,
                    "body_length": b.body_len,
                    "final": b.is_final,
                });
                if let (Some(opened), Some(obj)) = (&opened, v.as_object_mut()) {
                    match opened {
                        Ok(d) => {
                            obj.insert("ok".into(), Value::Bool(true));
                            obj.insert("role".into(), Value::String(d.role.into()));
                            obj.insert("plaintext_length".into(), json!(d.plaintext_len));
                            if let Some(raw) = d.raw_len {
                                obj.insert("raw_length".into(), json!(raw));
                            }
                        }
                        Err(e) => {
                            obj.insert("ok".into(), Value::Bool(false));
                            obj.insert("error".into(), Value::String(e.to_string()));
                        }
                    }
                }
                v
            },
        )?;
    }

    if let (Some(k), Some(r), true) = (&keyring, &reader, failures.is_empty()) {
        if a.entries {
            let table = open_table(path, &header, k, data_cipher.unwrap_or(header.cipher))?;
            dump_entries(ctx, &table)?;
        } else if a.manifest {
            dump_manifest(ctx, path, k, data_cipher.unwrap_or(header.cipher))?;
        } else if a.wal {
            dump_wal(ctx, r, &blocks)?;
        }
    }
    if let (Some(k), true) = (
        &keyring,
        matches!(header.kind, ArtifactKind::Table | ArtifactKind::Index),
    ) {
        print_table_properties(ctx, path, &header, k, data_cipher.unwrap_or(header.cipher))?;
    }
    let sound = tail.is_sound(header.kind);
    let body_total: u64 = blocks.iter().map(|b| u64::from(b.body_len)).sum();
    ctx.out.emit(
        || {
            format!(
                "{} blocks, {} of sealed bodies; layout {}{}",
                count(blocks.len() as u64),
                bytes(body_total),
                tail.describe(),
                match (&reader, failures.len()) {
                    (None, _) => "; blocks not authenticated (give --db to open them)".to_string(),
                    (Some(_), 0) => "; every block authenticated".to_string(),
                    (Some(_), n) => format!("; {n} blocks FAILED authentication"),
                }
            )
        },
        || {
            json!({
                "blocks": blocks.len(),
                "body_bytes": body_total,
                "layout": tail.name(),
                "layout_ok": sound,
                "authenticated": reader.is_some(),
                "failures": failures.len(),
            })
        },
    )?;
    if let Some(first) = failures.first() {
        return Err(CliError::integrity(format!(
            "{} blocks of {} failed authentication (first: {first})",
            failures.len(),
            path.display()
        )));
    }
    if !sound {
        return Err(CliError::integrity(format!(
            "{}: {}",
            path.display(),
            tail.describe()
        )));
    }
    Ok(())
}

fn print_header(ctx: &mut Ctx, path: &Path, h: &FileHeader, len: u64) -> Result<()> {
    // The KEYS file's extension is its key envelope: the master key's name (an identifier)
    // is shown; the wrapped data keys are not.
    let keys_summary = (h.kind == ArtifactKind::Keys)
        .then(|| path.parent())
        .flatten()
        .filter(|_| {
            path.file_name()
                .is_some_and(|n| n == sealdb_crypto::keysfile::KEYS_FILE_NAME)
        })
        .and_then(|dir| KeysFile::peek(&RealFs, dir).ok());
    ctx.out.emit(
        || {
            let mut lines = vec![
                format!("file           {} ({} bytes)", path.display(), count(len)),
                format!(
                    "format         sealed file v{}, kind {}, cipher {}",
                    h.version,
                    h.kind.name(),
                    h.cipher.name()
                ),
                format!("data key       version {}", h.data_key_version),
                format!("file id        {}", h.file_id),
                format!("database id    {}", h.database_id),
                format!(
                    "header         {} bytes (extension {} bytes); blocks from offset {}",
                    h.encoded_len(),
                    h.extension.len(),
                    h.encoded_len()
                ),
            ];
            if let Some(s) = &keys_summary {
                lines.push(format!(
                    "master key     {} (data-key versions {:?}, current {})",
                    s.master, s.versions, s.current_version
                ));
            }
            lines.join("\n")
        },
        || {
            json!({
                "file": path.display().to_string(),
                "size": len,
                "format_version": h.version,
                "kind": h.kind.name(),
                "cipher": h.cipher.name(),
                "data_key_version": h.data_key_version,
                "file_id": h.file_id.to_string(),
                "database_id": h.database_id.to_string(),
                "header_length": h.encoded_len(),
                "extension_length": h.extension.len(),
                "master_key": keys_summary.as_ref().map(|s| s.master.to_string()),
            })
        },
    )
}
