//! `keys`: the master key and the data keys of a database — status, online master-key
//! switch, data-key rotation and re-encryption.

use super::{Create, Ctx};
use crate::cli::{KeysCommand, KeysSwitchArgs};
use crate::error::{CliError, Result};
use crate::output::{bytes, count, duration};
use crate::time::utc;
use sealdb::{KeyDescriptor, KeyState, KeyStatus};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Runs one `keys` subcommand.
pub fn run(ctx: &mut Ctx, c: &KeysCommand) -> Result<()> {
    match c {
        KeysCommand::Status => status(ctx),
        KeysCommand::Switch(a) => switch(ctx, a),
        KeysCommand::Rotate => rotate(ctx),
        KeysCommand::Reencrypt => reencrypt(ctx),
    }
}

/// A key state for JSON: a short word, with the deletion date or the reason where there is one.
fn state_json(s: &KeyState) -> Value {
    match s {
        KeyState::Enabled => json!("enabled"),
        KeyState::Disabled => json!("disabled"),
        KeyState::PendingDeletion { deletion_at } => {
            json!({"state": "pending-deletion", "deletion_at": deletion_at})
        }
        KeyState::Destroyed => json!("destroyed"),
        KeyState::NotFound => json!("not-found"),
        KeyState::Unreachable(why) => json!({"state": "unreachable", "reason": why}),
        other => json!(other.to_string()),
    }
}

/// A key descriptor for JSON.
pub fn descriptor_json(d: &KeyDescriptor) -> Value {
    json!({"provider": d.provider, "key_id": d.key_id})
}

/// `keys status`. The master key is checked with its provider first, so the state and the
/// last check are current. If the database cannot even be opened because its master key is
/// unusable, what the KEYS file says in clear (key id, data-key versions) is shown before
/// failing with exit 3.
fn status(ctx: &mut Ctx) -> Result<()> {
    let db = match ctx.open(Create::ReadOnly) {
        Ok(db) => db,
        Err(e) if e.exit() == crate::error::Exit::KeyUnavailable => {
            unavailable_status(ctx, &e)?;
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    // An unusable key is reported in the status itself, not as a failure of this command.
    let _ = db.check_master_key();
    let s = db.key_status()?;
    if ctx.out.is_json() {
        return ctx.out.json_line(&status_json(&s));
    }
    for line in status_lines(&s) {
        ctx.out.text(line)?;
    }
    Ok(())
}

fn status_json(s: &KeyStatus) -> Value {
    json!({
        "master": descriptor_json(&s.master),
        "state": state_json(&s.state),
        "unavailable_since": s.unavailable_since,
        "last_check": s.last_check,
        "current_data_key": s.current_data_key,
        "data_keys": s.data_keys.iter().map(|k| json!({
            "version": k.version,
            "created_at": k.created_at,
            "tables": k.tables,
            "current": k.version == s.current_data_key,
        })).collect::<Vec<_>>(),
    })
}

fn status_lines(s: &KeyStatus) -> Vec<String> {
    let mut lines = vec![
        format!("master key     {} ({})", s.master, s.state),
        format!(
            "unavailable    {}",
            s.unavailable_since
                .map_or_else(|| "no".to_string(), |t| format!("since {}", utc(t)))
        ),
        format!("last check     {}", utc(s.last_check)),
        format!(
            "data key       version {} is current; {} version{}",
            s.current_data_key,
            s.data_keys.len(),
            if s.data_keys.len() == 1 { "" } else { "s" }
        ),
    ];
    for k in &s.data_keys {
        lines.push(format!(
            "  version {:<5} created {}  {:>6} table{}{}",
            k.version,
            utc(k.created_at),
            count(k.tables),
            if k.tables == 1 { " " } else { "s" },
            if k.version == s.current_data_key {
                "  (current)"
            } else {
                ""
            }
        ));
    }
    lines
}

/// What can be shown of a database whose master key is unusable: the KEYS file's clear
/// envelope (master key id, data-key versions) and the state from the error.
fn unavailable_status(ctx: &mut Ctx, e: &CliError) -> Result<()> {
    let Ok(summary) = sealdb_crypto::KeysFile::peek(&sealdb_vfs::RealFs, &ctx.db_dir()) else {
        return Ok(());
    };
    if ctx.out.is_json() {
        ctx.out.json_line(&json!({
            "master": descriptor_json(&summary.master),
            "state": "unavailable",
            "error": e.message(),
            "current_data_key": summary.current_version,
            "data_keys": summary.versions.iter().map(|v| json!({"version": v})).collect::<Vec<_>>(),
        }))
    } else {
        ctx.out
            .text(format!("master key     {} (unavailable)", summary.master))?;
        ctx.out.text(format!(
            "data key       version {} is current; versions {:?}",
            summary.current_version, summary.versions
        ))
    }
}

/// `keys switch --to KEY`: online; no data file is rewritten.
fn switch(ctx: &mut Ctx, a: &KeysSwitchArgs) -> Result<()> {
    // Built before opening, so a build without AWS support fails without touching anything.
    let target = crate::master::master_key(&a.to)?;
    let db = ctx.open(Create::Never)?;
    let from = db.master_key();
    let t = Instant::now();
    let to = db.switch_master_key(target)?;
    let elapsed = t.elapsed();
    ctx.out.emit(
        || {
            format!(
                "master key switched from {from} to {to} in {}",
                duration(elapsed)
            )
        },
        || {
            json!({
                "op": "keys-switch",
                "from": descriptor_json(&from),
                "to": descriptor_json(&to),
                "seconds": elapsed.as_secs_f64(),
            })
        },
    )
}

/// `keys rotate`: a new current data-key version.
fn rotate(ctx: &mut Ctx) -> Result<()> {
    let db = ctx.open(Create::Never)?;
    let v = db.rotate_data_key()?;
    ctx.out.emit(
        || {
            format!(
                "data key version {v} is now current: new files use it; older files keep \
                 theirs until compaction or `sealdb keys reencrypt`"
            )
        },
        || json!({"op": "keys-rotate", "current_data_key": v}),
    )
}

/// Sealed files that the engine's re-encryption neither rewrites nor counts as using a
/// data-key version: change-stream segments and consumer positions (`<db>/streams/`) and the
/// point-in-time WAL archive (`<db>/wal-archive/`). Returns those sealed under a version other
/// than `current`, with it.
///
/// `Db::reencrypt` drops every version no table, live WAL segment, MANIFEST or CURRENT uses;
/// a stream segment still under a dropped version then makes the database impossible to open
/// ("a file needs data-key version N, which the KEYS file lacks"), and an archived WAL
/// segment makes point-in-time restores through it fail. Until the engine counts (or
/// rewrites) these files, `keys reencrypt` refuses while any exists.
fn files_reencrypt_would_orphan(db: &Path, current: u32) -> Vec<(PathBuf, u32)> {
    fn walk(dir: &Path, depth: u32, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() && depth > 0 => walk(&e.path(), depth - 1, out),
                Ok(t) if t.is_file() => out.push(e.path()),
                _ => {}
            }
        }
    }
    let mut files = Vec::new();
    walk(&db.join("streams"), 1, &mut files);
    walk(&db.join("wal-archive"), 0, &mut files);
    files.sort();
    files
        .into_iter()
        .filter_map(|p| {
            let h = sealdb_crypto::sealed::read_file_header(&sealdb_vfs::RealFs, &p).ok()?;
            (h.data_key_version != current).then_some((p, h.data_key_version))
        })
        .collect()
}

/// `keys reencrypt`: every file under an old data-key version rewritten, old versions dropped.
fn reencrypt(ctx: &mut Ctx) -> Result<()> {
    let db = ctx.open(Create::Never)?;
    let current = db.key_status()?.current_data_key;
    let orphans = files_reencrypt_would_orphan(db.path(), current);
    if let Some((first, version)) = orphans.first() {
        let mut versions: Vec<u32> = orphans.iter().map(|(_, v)| *v).collect();
        versions.sort_unstable();
        versions.dedup();
        return Err(CliError::other(format!(
            "refusing to re-encrypt: {} stream or WAL-archive file{} (first: {}, data-key \
             version {version}) still use data-key version{} {versions:?}, which \
             re-encryption would drop without rewriting them, leaving the database unable to \
             open. Disable the change streams (`sealdb stream disable --keyspace KS`) or wait \
             until retention trims their old segments (and the --pitr-window archive expires), \
             then run it again",
            orphans.len(),
            if orphans.len() == 1 { "" } else { "s" },
            first.display(),
            if versions.len() == 1 { "" } else { "s" },
        )));
    }
    let pb = crate::progress::bar(0, "tables", ctx.out.is_json());
    let t = Instant::now();
    let report = db.reencrypt(&mut crate::progress::counter(&pb));
    pb.finish_and_clear();
    let report = report?;
    let elapsed = t.elapsed();
    let current = db.key_status()?.current_data_key;
    ctx.out.emit(
        || {
            format!(
                "re-encrypted {} tables ({}) in {} under data key version {current}; dropped \
                 versions {}",
                count(report.tables_rewritten),
                bytes(report.bytes_rewritten),
                duration(elapsed),
                if report.versions_dropped.is_empty() {
                    "none".to_string()
                } else {
                    format!("{:?}", report.versions_dropped)
                }
            )
        },
        || {
            json!({
                "op": "keys-reencrypt",
                "tables_rewritten": report.tables_rewritten,
                "bytes_rewritten": report.bytes_rewritten,
                "versions_dropped": report.versions_dropped,
                "current_data_key": current,
                "seconds": elapsed.as_secs_f64(),
            })
        },
    )
}
