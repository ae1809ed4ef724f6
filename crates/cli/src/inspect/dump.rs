//! The dumps asked for by name, which print user keys and values: `--entries` (a table),
//! `--manifest` (its edits) and `--wal` (a segment's frames and records).

use super::layout::BlockInfo;
use crate::commands::Ctx;
use crate::error::{CliError, Result};
use sealdb_crypto::{CipherId, Keyring, SealedReader};
use sealdb_vfs::RealFs;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;

/// A key or value as the dumps print it in text. The one call site of the CLI's escaping rule
/// in this module (switch it here when the shared rule changes).
fn shown(bytes: &[u8]) -> String {
    crate::output::display_key(bytes)
}

/// A key or value in a dump's JSON: the CLI's one JSON rule ([`crate::output::json_bytes`]).
fn shown_json(bytes: &[u8]) -> Value {
    crate::output::json_bytes(bytes)
}

/// `--entries`: every entry of a table in internal order (newest version of a key first).
pub(super) fn dump_entries(ctx: &mut Ctx, table: &Arc<sealdb_sstable::Table>) -> Result<()> {
    let unbounded = std::ops::Bound::Unbounded;
    for entry in table.iter(unbounded.clone(), unbounded) {
        let e = entry?;
        let put = e.kind == sealdb_sstable::ValueKind::Put;
        ctx.out.emit(
            || {
                if put {
                    format!(
                        "{:>10} put    {} = {}",
                        e.seq,
                        shown(&e.key),
                        shown(&e.value)
                    )
                } else {
                    format!("{:>10} delete {}", e.seq, shown(&e.key))
                }
            },
            || {
                json!({
                    "seq": e.seq,
                    "op": if put { "put" } else { "delete" },
                    "key": shown_json(&e.key),
                    "value": if put { shown_json(&e.value) } else { Value::Null },
                })
            },
        )?;
    }
    Ok(())
}

/// `--manifest`: every edit, group by group, as recorded (not applied).
pub(super) fn dump_manifest(
    ctx: &mut Ctx,
    path: &Path,
    k: &Keyring,
    data_cipher: CipherId,
) -> Result<()> {
    for edit in sealdb::read_manifest_edits(&RealFs, path, k, data_cipher)? {
        ctx.out.emit(
            || {
                let fields: Vec<String> = edit
                    .fields
                    .iter()
                    .map(|(name, f)| match f {
                        sealdb::EditField::Number(n) => format!("{name}={n}"),
                        sealdb::EditField::Text(t) => format!("{name}={t:?}"),
                        sealdb::EditField::Bytes(b) => format!("{name}={}", shown(b)),
                        _ => format!("{name}=?"),
                    })
                    .collect();
                format!(
                    "group {:>4}  {:<17} {}",
                    edit.group,
                    edit.kind,
                    fields.join(" ")
                )
            },
            || {
                let mut obj = serde_json::Map::new();
                obj.insert("group".into(), json!(edit.group));
                obj.insert("edit".into(), json!(edit.kind));
                for (name, f) in &edit.fields {
                    let v = match f {
                        sealdb::EditField::Number(n) => json!(n),
                        sealdb::EditField::Text(t) => json!(t),
                        sealdb::EditField::Bytes(b) => shown_json(b),
                        _ => Value::Null,
                    };
                    obj.insert((*name).into(), v);
                }
                Value::Object(obj)
            },
        )?;
    }
    Ok(())
}

/// `--wal`: every frame of a segment and every record of its batches.
pub(super) fn dump_wal(ctx: &mut Ctx, r: &SealedReader, blocks: &[BlockInfo]) -> Result<()> {
    use sealdb_wal::Frame;
    for (i, b) in blocks.iter().enumerate() {
        let block = r.read_block(b.handle)?;
        let frame = sealdb_wal::decode_frame(&block.data).map_err(|e| {
            CliError::integrity(format!("frame {i} at offset {}: {e}", b.handle.offset))
        })?;
        match frame {
            Frame::Start {
                number,
                prev_number,
                prev_end,
                prev_finished,
            } => ctx.out.emit(
                || {
                    format!(
                        "frame {i:>4}  start: segment {number}; previous segment {prev_number} ended at {prev_end}{}",
                        if prev_finished { " (finished)" } else { " (not finished)" }
                    )
                },
                || {
                    json!({"frame": i, "type": "start", "segment": number,
                           "prev_segment": prev_number, "prev_end": prev_end,
                           "prev_finished": prev_finished})
                },
            )?,
            Frame::End => ctx.out.emit(
                || format!("frame {i:>4}  end"),
                || json!({"frame": i, "type": "end"}),
            )?,
            Frame::Batches(batches) => {
                let time = batches.first().map_or(0, |b| b.commit_time_ms);
                ctx.out.emit(
                    || {
                        format!(
                            "frame {i:>4}  commit at {}: {} batches",
                            crate::time::utc_ms(time),
                            batches.len()
                        )
                    },
                    || json!({"frame": i, "type": "batches", "commit_time_ms": time, "batches": batches.len()}),
                )?;
                for batch in &batches {
                    for (seq, rec) in (batch.first_seq..).zip(sealdb_wal::RecordIter::new(batch.rep)) {
                        let rec = rec.map_err(|e| {
                            CliError::integrity(format!("frame {i} at offset {}: {e}", b.handle.offset))
                        })?;
                        let put = rec.op == sealdb_wal::Op::Put;
                        ctx.out.emit(
                            || {
                                if put {
                                    format!(
                                        "  {seq:>10} put    keyspace {} {} = {}",
                                        rec.keyspace,
                                        shown(rec.key),
                                        shown(rec.value)
                                    )
                                } else {
                                    format!(
                                        "  {seq:>10} delete keyspace {} {}",
                                        rec.keyspace,
                                        shown(rec.key)
                                    )
                                }
                            },
                            || {
                                json!({
                                    "frame": i,
                                    "seq": seq,
                                    "op": if put { "put" } else { "delete" },
                                    "keyspace": rec.keyspace,
                                    "key": shown_json(rec.key),
                                    "value": if put { shown_json(rec.value) } else { Value::Null },
                                })
                            },
                        )?;
                    }
                }
            }
            _ => ctx.out.emit(
                || format!("frame {i:>4}  (unknown frame type)"),
                || json!({"frame": i, "type": "unknown"}),
            )?,
        }
    }
    Ok(())
}
