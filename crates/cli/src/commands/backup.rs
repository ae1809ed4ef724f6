//! `backup` (create, list, delete, verify) and `restore`: sealed online backups into a
//! directory, and restores of a backup or of a point in time into a new database directory.
//!
//! Only `backup create` opens the database; the others read the backup directory with the
//! keystore and local KMS of the global options (and an AWS KMS provider for backups whose
//! KEYS copy names one, in builds with the `aws-kms` feature).

use super::{Create, Ctx};
use crate::cli::{BackupCommand, BackupDeleteArgs, BackupDirArgs, BackupVerifyArgs, RestoreArgs};
use crate::error::{CliError, Result, warn};
use crate::output::{bytes, count, duration};
use crate::time::utc_ms;
use sealdb::{BackupInfo, Options, RestorePoint};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Instant;

/// Runs one `backup` subcommand.
pub fn run(ctx: &mut Ctx, c: &BackupCommand) -> Result<()> {
    match c {
        BackupCommand::Create(a) => create(ctx, a),
        BackupCommand::List(a) => list(ctx, a),
        BackupCommand::Delete(a) => delete(ctx, a),
        BackupCommand::Verify(a) => verify(ctx, a),
    }
}

/// Options for reading the backups in `dir`.
fn backup_options(ctx: &Ctx, dir: &Path) -> Result<Options> {
    Ok(Options {
        providers: crate::master::providers_for_backups(dir)?,
        ..ctx.base_options()
    })
}

/// A backup directory that must exist (the engine would report a bare I/O error).
fn existing_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        Ok(())
    } else {
        Err(CliError::other(format!(
            "no backup directory at {}",
            dir.display()
        )))
    }
}

fn backup_json(b: &BackupInfo) -> Value {
    let (latest_seq, latest_ms) = b.latest_restorable();
    json!({
        "id": b.id,
        "time_ms": b.created_ms,
        "sequence": b.sequence,
        "bytes": b.bytes,
        "tables": b.tables.len(),
        "wal_segments": b.wal.len(),
        "master": crate::commands::keys::descriptor_json(&b.master),
        "cipher": b.cipher.name(),
        "data_key_versions": b.data_key_versions,
        "latest_restorable": {"sequence": latest_seq, "time_ms": latest_ms},
    })
}

fn backup_line(b: &BackupInfo) -> String {
    format!(
        "{}  {}  sequence {:>10}  {:>10}  {:>5} tables  {:>3} WAL segments  {}",
        b.id,
        utc_ms(b.created_ms),
        b.sequence,
        bytes(b.bytes),
        b.tables.len(),
        b.wal.len(),
        b.master
    )
}

/// `backup create DIR`.
fn create(ctx: &mut Ctx, a: &BackupDirArgs) -> Result<()> {
    let db = ctx.open(Create::Never)?;
    let pb = crate::progress::bar(0, "files", ctx.out.is_json());
    let t = Instant::now();
    let info = db.backup(&a.dir, &mut crate::progress::counter(&pb));
    pb.finish_and_clear();
    let info = info?;
    let elapsed = t.elapsed();
    ctx.out.emit(
        || {
            format!(
                "backup {} of {} in {}: sequence {}, {} tables ({}), {} WAL segments",
                info.id,
                db.path().display(),
                duration(elapsed),
                info.sequence,
                count(info.tables.len() as u64),
                bytes(info.bytes),
                info.wal.len()
            )
        },
        || {
            let mut v = backup_json(&info);
            v["op"] = json!("backup-create");
            v["dir"] = json!(a.dir.display().to_string());
            v["seconds"] = json!(elapsed.as_secs_f64());
            v
        },
    )
}

/// The earliest and latest points (sequence, Unix ms) a restore from these backups reaches.
fn restorable(backups: &[BackupInfo]) -> Option<((u64, u64), (u64, u64))> {
    let earliest = backups.iter().map(|b| (b.sequence, b.created_ms)).min()?;
    let latest = backups.iter().map(BackupInfo::latest_restorable).max()?;
    Some((earliest, latest))
}

/// `backup list DIR`: one line per backup, oldest first, then the restorable range.
fn list(ctx: &mut Ctx, a: &BackupDirArgs) -> Result<()> {
    existing_dir(&a.dir)?;
    let opts = backup_options(ctx, &a.dir)?;
    let backups = sealdb::list_backups(&a.dir, &opts)?;
    for b in &backups {
        ctx.out.emit(|| backup_line(b), || backup_json(b))?;
    }
    match restorable(&backups) {
        None => ctx.out.emit(
            || format!("no backups in {}", a.dir.display()),
            || json!({"backups": 0, "earliest_restorable": null, "latest_restorable": null}),
        ),
        Some(((es, et), (ls, lt))) => ctx.out.emit(
            || {
                format!(
                    "{} backup{}; restorable from sequence {es} ({}) to sequence {ls} ({})",
                    backups.len(),
                    if backups.len() == 1 { "" } else { "s" },
                    utc_ms(et),
                    utc_ms(lt)
                )
            },
            || {
                json!({
                    "backups": backups.len(),
                    "earliest_restorable": {"sequence": es, "time_ms": et},
                    "latest_restorable": {"sequence": ls, "time_ms": lt},
                })
            },
        ),
    }
}

/// `backup delete DIR --id ID`.
fn delete(ctx: &mut Ctx, a: &BackupDeleteArgs) -> Result<()> {
    existing_dir(&a.dir)?;
    let opts = backup_options(ctx, &a.dir)?;
    sealdb::delete_backup(&a.dir, &a.id, &opts)?;
    ctx.out.emit(
        || format!("deleted backup {} from {}", a.id, a.dir.display()),
        || json!({"op": "backup-delete", "id": a.id, "dir": a.dir.display().to_string()}),
    )
}

/// `backup verify DIR [--id ID]`: prints every failure (each names its file); exit 2 if any is
/// an integrity failure.
fn verify(ctx: &mut Ctx, a: &BackupVerifyArgs) -> Result<()> {
    existing_dir(&a.dir)?;
    let opts = backup_options(ctx, &a.dir)?;
    let pb = crate::progress::busy("verify", ctx.out.is_json());
    let t = Instant::now();
    let report = sealdb::verify_backup(&a.dir, a.id.as_deref(), &opts);
    pb.finish_and_clear();
    let report = report?;
    let elapsed = t.elapsed();
    for e in &report.errors {
        ctx.out
            .emit(|| format!("FAILED {e}"), || super::admin::failure_json(e))?;
    }
    let failures = report.errors.len();
    ctx.out.emit(
        || {
            format!(
                "verified {} backup{} ({} files) in {}: {}",
                report.backups,
                if report.backups == 1 { "" } else { "s" },
                report.files_checked,
                duration(elapsed),
                if failures == 0 {
                    "every block authenticated".to_string()
                } else {
                    format!("{failures} failed")
                }
            )
        },
        || {
            json!({
                "op": "backup-verify",
                "ok": failures == 0,
                "backups": report.backups,
                "files_checked": report.files_checked,
                "failures": failures,
                "seconds": elapsed.as_secs_f64(),
            })
        },
    )?;
    let Some(first) = report.errors.first() else {
        return Ok(());
    };
    let summary = format!(
        "backup verify found {failures} failure{} in {} files checked (first: {first})",
        if failures == 1 { "" } else { "s" },
        report.files_checked
    );
    // An integrity failure anywhere is exit 2; otherwise the first failure decides.
    if report.errors.iter().any(sealdb::Error::is_integrity) {
        Err(CliError::integrity(summary))
    } else {
        Err(CliError::new(classify(first), summary))
    }
}

/// The exit status the engine's classification gives an error.
fn classify(e: &sealdb::Error) -> crate::error::Exit {
    if e.is_integrity() {
        crate::error::Exit::Integrity
    } else if e.is_key_unavailable() {
        crate::error::Exit::KeyUnavailable
    } else {
        crate::error::Exit::Other
    }
}

/// `restore DIR DEST [--id ID] [--key KEY] [--to-seq N | --to-time T]`.
pub fn restore(ctx: &mut Ctx, a: &RestoreArgs) -> Result<()> {
    existing_dir(&a.dir)?;
    let key = a.key.as_ref().map(crate::master::master_key).transpose()?;
    let opts = backup_options(ctx, &a.dir)?;
    let point = match (a.to_seq, a.to_time) {
        (Some(n), _) => RestorePoint::Sequence(n),
        (None, Some(t)) => RestorePoint::Time(t),
        (None, None) => RestorePoint::Backup,
    };
    let pb = crate::progress::bar(0, "tables", ctx.out.is_json());
    let t = Instant::now();
    let info = sealdb::restore_backup(
        &a.dir,
        &a.dest,
        a.id.as_deref(),
        point,
        key,
        &opts,
        &mut crate::progress::counter(&pb),
    );
    pb.finish_and_clear();
    let info = info?;
    let elapsed = t.elapsed();
    if let Some(n) = a.to_seq
        && info.sequence < n
    {
        warn(format!(
            "restored up to sequence {} only: the backups (and the WAL they carry) end there; \
             see `sealdb backup list` and --pitr-window",
            info.sequence
        ));
    }
    ctx.out.emit(
        || {
            format!(
                "restored backup {} into {} in {}: sequence {}, {} tables, {} WAL batches \
                 replayed; master key {}",
                info.backup_id,
                a.dest.display(),
                duration(elapsed),
                info.sequence,
                count(info.tables),
                count(info.replayed_batches),
                info.master
            )
        },
        || {
            json!({
                "op": "restore",
                "backup_id": info.backup_id,
                "dest": a.dest.display().to_string(),
                "sequence": info.sequence,
                "tables": info.tables,
                "replayed_batches": info.replayed_batches,
                "master": crate::commands::keys::descriptor_json(&info.master),
                "seconds": elapsed.as_secs_f64(),
            })
        },
    )
}
