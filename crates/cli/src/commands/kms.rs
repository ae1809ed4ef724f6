//! `kms`: administration of the local KMS (named master keys shared by databases on this
//! machine). No database is opened; the KMS directory is `--kms`, else `$SEALDB_KMS`, else
//! `kms/` beside the keystore (the engine's own resolution).

use super::Ctx;
use crate::cli::{KmsAuditArgs, KmsCommand, KmsDestroyArgs, KmsNameArgs, KmsScheduleArgs};
use crate::error::{CliError, Result};
use crate::time::utc;
use sealdb::KeyState;
use sealdb_crypto::{AuditEntry, KmsKeyInfo, LocalKms};
use serde_json::{Value, json};

/// Runs one `kms` subcommand.
pub fn run(ctx: &mut Ctx, c: &KmsCommand) -> Result<()> {
    let dir = ctx.base_options().resolved_kms_dir();
    // Only `create` makes a KMS: a mistyped --kms never leaves an empty one behind.
    if !matches!(c, KmsCommand::Create(_)) && !dir.join("kms.state").exists() {
        return missing_kms(ctx, c, &dir);
    }
    let kms = LocalKms::open(&dir)
        .map_err(|e| CliError::from(e).context(format!("local KMS at {}", dir.display())))?;
    match c {
        KmsCommand::Create(a) => create(ctx, &kms, a),
        KmsCommand::List => list(ctx, &kms),
        KmsCommand::Rotate(a) => rotate(ctx, &kms, a),
        KmsCommand::Disable(a) => disable(ctx, &kms, a),
        KmsCommand::Enable(a) => enable(ctx, &kms, a),
        KmsCommand::ScheduleDeletion(a) => schedule_deletion(ctx, &kms, a),
        KmsCommand::CancelDeletion(a) => cancel_deletion(ctx, &kms, a),
        KmsCommand::Destroy(a) => destroy(ctx, &kms, a),
        KmsCommand::Audit(a) => audit(ctx, &kms, a),
    }
}

/// A command on a KMS that does not exist: `list` and `audit` have nothing to show, and every
/// key is missing (exit 3, as for a missing key of an existing KMS).
fn missing_kms(ctx: &mut Ctx, c: &KmsCommand, dir: &std::path::Path) -> Result<()> {
    let name = match c {
        KmsCommand::List | KmsCommand::Audit(_) => {
            return ctx.out.text(format!(
                "no local KMS at {} (`sealdb kms create NAME` makes one)",
                dir.display()
            ));
        }
        KmsCommand::Create(a)
        | KmsCommand::Rotate(a)
        | KmsCommand::Disable(a)
        | KmsCommand::Enable(a)
        | KmsCommand::CancelDeletion(a) => &a.name,
        KmsCommand::ScheduleDeletion(a) => &a.name,
        KmsCommand::Destroy(a) => &a.name,
    };
    Err(CliError::new(
        crate::error::Exit::KeyUnavailable,
        format!(
            "no local KMS at {} (so no key {name:?}); give --kms or $SEALDB_KMS, or create a \
             key with `sealdb kms create NAME`",
            dir.display()
        ),
    ))
}

/// A key's state as one word for text and JSON (`pending-deletion` with its date apart).
fn state_word(s: &KeyState) -> &'static str {
    match s {
        KeyState::Enabled => "enabled",
        KeyState::Disabled => "disabled",
        KeyState::PendingDeletion { .. } => "pending-deletion",
        KeyState::Destroyed => "destroyed",
        KeyState::NotFound => "not-found",
        KeyState::Unreachable(_) => "unreachable",
        _ => "unknown",
    }
}

fn deletion_at(s: &KeyState) -> Option<u64> {
    match s {
        KeyState::PendingDeletion { deletion_at } => Some(*deletion_at),
        _ => None,
    }
}

fn info_json(k: &KmsKeyInfo) -> Value {
    json!({
        "name": k.name,
        "state": state_word(&k.state),
        "deletion_at": deletion_at(&k.state),
        "versions": k.versions,
        "created_at": k.created_at,
    })
}

/// One key as a text line: name, state, versions, creation time.
fn info_line(k: &KmsKeyInfo) -> String {
    let state = match deletion_at(&k.state) {
        Some(t) => format!("pending-deletion (destroyed after {})", utc(t)),
        None => state_word(&k.state).to_string(),
    };
    format!(
        "{:<24} {:<16} {:>3} version{}  created {}",
        k.name,
        state,
        k.versions,
        if k.versions == 1 { " " } else { "s" },
        utc(k.created_at)
    )
}

fn create(ctx: &mut Ctx, kms: &LocalKms, a: &KmsNameArgs) -> Result<()> {
    let k = kms.create_key(&a.name)?;
    ctx.out.emit(
        || {
            format!(
                "created local KMS key {} (use it with --master-key local-kms:{})",
                k.name, k.name
            )
        },
        || {
            let mut v = info_json(&k);
            v["op"] = json!("kms-create");
            v
        },
    )
}

fn list(ctx: &mut Ctx, kms: &LocalKms) -> Result<()> {
    let keys = kms.list()?;
    if !ctx.out.is_json() && keys.is_empty() {
        return ctx.out.text(format!(
            "no keys in the local KMS at {}",
            kms.dir().display()
        ));
    }
    for k in &keys {
        ctx.out.emit(|| info_line(k), || info_json(k))?;
    }
    Ok(())
}

fn rotate(ctx: &mut Ctx, kms: &LocalKms, a: &KmsNameArgs) -> Result<()> {
    let v = kms.rotate(&a.name)?;
    ctx.out.emit(
        || {
            format!(
                "rotated local KMS key {}: version {v} wraps from now on; older versions \
                 still unwrap",
                a.name
            )
        },
        || json!({"op": "kms-rotate", "name": a.name, "version": v}),
    )
}

fn disable(ctx: &mut Ctx, kms: &LocalKms, a: &KmsNameArgs) -> Result<()> {
    kms.disable(&a.name)?;
    ctx.out.emit(
        || {
            format!(
                "disabled local KMS key {}: databases under it refuse service (exit 3) until \
                 it is enabled",
                a.name
            )
        },
        || json!({"op": "kms-disable", "name": a.name, "state": "disabled"}),
    )
}

fn enable(ctx: &mut Ctx, kms: &LocalKms, a: &KmsNameArgs) -> Result<()> {
    kms.enable(&a.name)?;
    ctx.out.emit(
        || format!("enabled local KMS key {}", a.name),
        || json!({"op": "kms-enable", "name": a.name, "state": "enabled"}),
    )
}

fn schedule_deletion(ctx: &mut Ctx, kms: &LocalKms, a: &KmsScheduleArgs) -> Result<()> {
    let at = kms.schedule_deletion(&a.name, a.days)?;
    ctx.out.emit(
        || {
            format!(
                "local KMS key {} is unusable and will be destroyed after {} (cancel with \
                 `sealdb kms cancel-deletion {}`)",
                a.name,
                utc(at),
                a.name
            )
        },
        || {
            json!({
                "op": "kms-schedule-deletion",
                "name": a.name,
                "state": "pending-deletion",
                "deletion_at": at,
            })
        },
    )
}

fn cancel_deletion(ctx: &mut Ctx, kms: &LocalKms, a: &KmsNameArgs) -> Result<()> {
    kms.cancel_deletion(&a.name)?;
    ctx.out.emit(
        || {
            format!(
                "deletion of local KMS key {} cancelled; it is disabled (enable it with \
                 `sealdb kms enable {}`)",
                a.name, a.name
            )
        },
        || json!({"op": "kms-cancel-deletion", "name": a.name, "state": "disabled"}),
    )
}

fn destroy(ctx: &mut Ctx, kms: &LocalKms, a: &KmsDestroyArgs) -> Result<()> {
    kms.destroy(&a.name, a.now)?;
    ctx.out.emit(
        || {
            format!(
                "destroyed local KMS key {}: everything wrapped under it is unrecoverable",
                a.name
            )
        },
        || json!({"op": "kms-destroy", "name": a.name, "state": "destroyed"}),
    )
}

fn audit_line(e: &AuditEntry) -> String {
    format!(
        "{}  {:<20} {:<18} {}{}",
        utc(e.time),
        e.key,
        e.operation,
        e.outcome,
        e.database_id
            .as_deref()
            .map(|d| format!("  database {d}"))
            .unwrap_or_default()
    )
}

fn audit(ctx: &mut Ctx, kms: &LocalKms, a: &KmsAuditArgs) -> Result<()> {
    for e in kms.audit(a.name.as_deref())? {
        ctx.out.emit(
            || audit_line(&e),
            || serde_json::to_value(&e).unwrap_or_else(|_| json!({"key": e.key})),
        )?;
    }
    Ok(())
}
