//! `stream`: change streams — enable, disable, read, tail, info. Records are printed as JSON
//! lines whatever `--json` says (the format is in `STREAM_FORMAT_HELP`, `cli.rs`).
//!
//! `tail` and other processes: an open database is locked, so a process that kept it open
//! while tailing would shut every other writer out (and the engine's `wait_stream` only wakes
//! for appends made in the same process). `tail` therefore opens the database, reads what is
//! new, closes it, and then polls the stream directory's listing (names and sizes, no lock, no
//! key) until something changes there, when it opens the database again. Other processes
//! wait for the lock (`--lock-wait`) in the short windows while `tail` has it.

use super::{Create, Ctx};
use crate::cli::{
    StreamCommand, StreamEnableArgs, StreamInfoArgs, StreamKeyspaceArgs, StreamReadArgs,
    StreamTailArgs,
};
use crate::error::{CliError, Result};
use crate::output::bytes;
use crate::time::format_duration;
use sealdb::{Db, StreamEvent, StreamInfo, StreamRecord, StreamStart};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Records asked for per read.
const READ_RECORDS: usize = 1000;
/// Bytes of records asked for per read (a read returns at least one record, however large).
const READ_BYTES: usize = 4 << 20;

/// Runs one `stream` subcommand.
pub fn run(ctx: &mut Ctx, c: &StreamCommand) -> Result<()> {
    match c {
        StreamCommand::Enable(a) => enable(ctx, a),
        StreamCommand::Disable(a) => disable(ctx, a),
        StreamCommand::Read(a) => read(ctx, a),
        StreamCommand::Tail(a) => tail(ctx, a),
        StreamCommand::Info(a) => info(ctx, a),
    }
}

/// Bytes as JSON by the program's one rule ([`crate::output::json_bytes`]).
pub fn bytes_json(b: &[u8]) -> Value {
    crate::output::json_bytes(b)
}

/// One change record as a JSON object.
pub fn record_json(r: &StreamRecord) -> Value {
    json!({
        "seq": r.seq,
        "time_ms": r.commit_time_ms,
        "event": match r.event {
            StreamEvent::Insert => "insert",
            StreamEvent::Modify => "modify",
            StreamEvent::Remove => "remove",
        },
        "keyspace": r.keyspace,
        "key": bytes_json(&r.key),
        "new_image": r.new_image.as_deref().map(bytes_json),
        "old_image": r.old_image.as_deref().map(bytes_json),
    })
}

/// `stream enable [--keyspace KS] --view V [--retention D] [--max-bytes N]`.
fn enable(ctx: &mut Ctx, a: &StreamEnableArgs) -> Result<()> {
    let db = ctx.open(Create::IfMissing)?;
    let ks = db.keyspace(&a.keyspace)?;
    let view: sealdb::StreamView = a.view.into();
    db.enable_stream(&ks, view, a.retention, a.max_bytes)?;
    ctx.out.emit(
        || {
            format!(
                "stream enabled on keyspace {} (view {view}, retention {}{})",
                a.keyspace,
                format_duration(a.retention),
                if a.max_bytes > 0 {
                    format!(", at most {}", bytes(a.max_bytes))
                } else {
                    String::new()
                }
            )
        },
        || {
            json!({
                "op": "stream-enable",
                "keyspace": a.keyspace,
                "view": view.as_str(),
                "retention_secs": a.retention.as_secs(),
                "max_bytes": a.max_bytes,
            })
        },
    )
}

/// `stream disable [--keyspace KS]`.
fn disable(ctx: &mut Ctx, a: &StreamKeyspaceArgs) -> Result<()> {
    let db = ctx.open(Create::Never)?;
    let ks = db.keyspace(&a.keyspace)?;
    db.disable_stream(&ks)?;
    ctx.out.emit(
        || {
            format!(
                "stream disabled on keyspace {} (its records are deleted)",
                a.keyspace
            )
        },
        || json!({"op": "stream-disable", "keyspace": a.keyspace}),
    )
}

/// Prints records from `start` until the stream has no more (or `limit` are printed);
/// returns where to continue and how many were printed.
fn drain(
    ctx: &mut Ctx,
    db: &Db,
    keyspace: &str,
    mut start: StreamStart,
    limit: Option<u64>,
) -> Result<(StreamStart, u64)> {
    let ks = db.keyspace(keyspace)?;
    let mut printed = 0u64;
    loop {
        let want = match limit {
            Some(l) => match usize::try_from(l - printed) {
                Ok(0) => break,
                Ok(n) => n.min(READ_RECORDS),
                Err(_) => READ_RECORDS,
            },
            None => READ_RECORDS,
        };
        let batch = db.read_stream(&ks, start, want, READ_BYTES)?;
        start = StreamStart::At(batch.next);
        if batch.records.is_empty() {
            break;
        }
        for r in &batch.records {
            ctx.out.json_line(&record_json(r))?;
            printed += 1;
        }
    }
    Ok((start, printed))
}

/// `stream read [--keyspace KS] [--from POS] [--limit N]`.
fn read(ctx: &mut Ctx, a: &StreamReadArgs) -> Result<()> {
    let db = ctx.open(Create::ReadOnly)?;
    drain(ctx, &db, &a.keyspace, a.from, a.limit)?;
    Ok(())
}

/// What the stream directories hold: every file's name, size and modification time. Any
/// append, new segment or trim changes it. (The layout `<db>/streams/<keyspace>/<segment>` is
/// the engine's; only "something changed" is inferred from it, never what.)
type Listing = Vec<(String, u64, Option<SystemTime>)>;

/// Adds the files of `dir` to `out` (names prefixed with `prefix`); returns its subdirectories.
fn list_files(dir: &Path, prefix: &str, out: &mut Listing) -> Vec<(String, PathBuf)> {
    let mut subdirs = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = format!("{prefix}{}", e.file_name().to_string_lossy());
            match e.metadata() {
                Ok(m) if m.is_dir() => subdirs.push((name, e.path())),
                Ok(m) => out.push((name, m.len(), m.modified().ok())),
                Err(_) => out.push((name, u64::MAX, None)),
            }
        }
    }
    subdirs
}

/// Every file under `streams` (two levels: one directory per keyspace), sorted.
fn listing(streams: &Path) -> Listing {
    let mut out = Listing::new();
    for (name, path) in list_files(streams, "", &mut out) {
        let _ = list_files(&path, &format!("{name}/"), &mut out);
    }
    out.sort();
    out
}

/// `stream tail [--keyspace KS] [--from POS] [--poll D]`: follows until interrupted (or until
/// standard output is closed), flushing after every batch. The database is open only while
/// reading; see the module documentation.
fn tail(ctx: &mut Ctx, a: &StreamTailArgs) -> Result<()> {
    let opts = ctx.options(Create::Never)?;
    let streams = ctx.db_dir().join("streams");
    let mut start = a.from;
    loop {
        // Wait for as long as it takes: other processes come and go.
        let db = ctx.open_waiting(&opts, None)?;
        let (next, _) = drain(ctx, &db, &a.keyspace, start, None)?;
        start = next;
        // Taken while the lock is held: no other process can have changed anything since
        // the last read, so any later change shows as a difference.
        let seen = listing(&streams);
        drop(db);
        ctx.out.flush()?;
        loop {
            std::thread::sleep(a.poll);
            if listing(&streams) != seen {
                break;
            }
        }
    }
}

fn info_json(i: &StreamInfo) -> Value {
    json!({
        "keyspace": i.keyspace,
        "view": i.view.as_str(),
        "retention_secs": i.retention.as_secs(),
        "max_bytes": i.max_bytes,
        "horizon": i.horizon,
        "last_seq": i.last_seq,
        "bytes": i.bytes,
    })
}

fn info_line(i: &StreamInfo) -> String {
    format!(
        "stream of keyspace {}: view {}, retention {}{}; records from {} (trim horizon) to {}; {}",
        i.keyspace,
        i.view,
        format_duration(i.retention),
        if i.max_bytes > 0 {
            format!(" or {}", bytes(i.max_bytes))
        } else {
            String::new()
        },
        i.horizon,
        i.last_seq,
        bytes(i.bytes)
    )
}

/// `stream info [--keyspace KS]`: one keyspace's stream, or every keyspace's that has one.
fn info(ctx: &mut Ctx, a: &StreamInfoArgs) -> Result<()> {
    let db = ctx.open(Create::ReadOnly)?;
    let infos = match &a.keyspace {
        Some(name) => vec![db.stream_info(&db.keyspace(name)?)?],
        None => {
            let mut v = Vec::new();
            for name in db.keyspace_names() {
                match db.stream_info(&db.keyspace(&name)?) {
                    Ok(i) => v.push(i),
                    // No stream on this keyspace.
                    Err(sealdb::Error::InvalidArgument { .. }) => {}
                    Err(e) => return Err(CliError::from(e)),
                }
            }
            v
        }
    };
    if infos.is_empty() && !ctx.out.is_json() {
        return ctx.out.text("no keyspace has a stream");
    }
    for i in &infos {
        ctx.out.emit(|| info_line(i), || info_json(i))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_binary_safe_json() {
        let r = StreamRecord {
            seq: 7,
            commit_time_ms: 1000,
            event: StreamEvent::Modify,
            keyspace: "default".into(),
            key: vec![0xff, 0x00],
            new_image: Some(b"new".to_vec()),
            old_image: None,
        };
        let v = record_json(&r);
        assert_eq!(v["key"]["hex"], "ff00");
        assert_eq!(v["new_image"], "new");
        assert!(v["old_image"].is_null());
        assert_eq!(v["event"], "modify");
    }
}
