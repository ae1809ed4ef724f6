//! `keyspace list/create/drop`: the keyspaces of the database (the README's
//! `db.create_keyspace("users")` made visible to the command line).

use super::{Create, Ctx};
use crate::cli::{KeyspaceCommand, KeyspaceNameArgs};
use crate::error::{CliError, Result};
use crate::output::{bytes, count};
use sealdb::{Db, Keyspace};
use serde_json::{Value, json};

/// Runs a `keyspace` subcommand.
pub fn run(ctx: &mut Ctx, c: &KeyspaceCommand) -> Result<()> {
    match c {
        KeyspaceCommand::List => list(ctx),
        KeyspaceCommand::Create(a) => create(ctx, a),
        KeyspaceCommand::Drop(a) => drop_keyspace(ctx, a),
    }
}

/// One keyspace's figures as JSON: name, estimated keys, tables and their bytes.
pub fn keyspace_json(ks: &Keyspace) -> Value {
    let t = ks.table_stats();
    json!({
        "name": ks.name(),
        "estimated_keys": ks.approximate_len(),
        "tables": t.files,
        "bytes": t.bytes,
    })
}

/// The header of the per-keyspace table printed by `keyspace list` and `stats`.
pub fn table_header() -> String {
    format!(
        "{:<24}{:>16}{:>8}{:>14}",
        "keyspace", "est. keys", "tables", "bytes"
    )
}

/// One row of that table.
pub fn table_row(ks: &Keyspace) -> String {
    let t = ks.table_stats();
    format!(
        "{:<24}{:>16}{:>8}{:>14}",
        crate::output::escape(ks.name().as_bytes()),
        count(ks.approximate_len()),
        t.files,
        bytes(t.bytes)
    )
}

/// What "est. keys" means, printed under the table.
pub const ESTIMATE_NOTE: &str = "(est. keys: entries of the tables plus the memtables; \
                                 overwritten and deleted keys count until compaction)";

/// Every keyspace of `db`, in name order.
pub fn all(db: &Db) -> Result<Vec<Keyspace>> {
    db.keyspace_names()
        .iter()
        .map(|n| db.keyspace(n).map_err(CliError::from))
        .collect()
}

fn list(ctx: &mut Ctx) -> Result<()> {
    let db = ctx.open(Create::ReadOnly)?;
    let keyspaces = all(&db)?;
    if ctx.out.is_json() {
        for ks in &keyspaces {
            ctx.out.json_line(&keyspace_json(ks))?;
        }
        return Ok(());
    }
    ctx.out.text(table_header())?;
    for ks in &keyspaces {
        ctx.out.text(table_row(ks))?;
    }
    ctx.out.text(ESTIMATE_NOTE)
}

fn create(ctx: &mut Ctx, a: &KeyspaceNameArgs) -> Result<()> {
    let db = ctx.open(Create::IfMissing)?;
    let existed = db.keyspace(&a.name).is_ok();
    db.create_keyspace(&a.name)?;
    ctx.out.emit(
        || {
            if existed {
                format!("keyspace {:?} already exists", a.name)
            } else {
                format!("created keyspace {:?}", a.name)
            }
        },
        || json!({"op": "keyspace create", "name": a.name, "created": !existed}),
    )
}

fn drop_keyspace(ctx: &mut Ctx, a: &KeyspaceNameArgs) -> Result<()> {
    let db = ctx.open(Create::Never)?;
    match db.drop_keyspace(&a.name) {
        Ok(()) => {}
        Err(sealdb::Error::KeyspaceNotFound(_)) => {
            return Err(CliError::not_found(format!("no keyspace {:?}", a.name)));
        }
        Err(e) => return Err(e.into()),
    }
    ctx.out.emit(
        || format!("dropped keyspace {:?}", a.name),
        || json!({"op": "keyspace drop", "name": a.name}),
    )
}
