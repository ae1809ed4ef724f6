//! Administrative commands: `flush`, `compact`, `stats`, `verify`; and the statistics
//! rendering that `demo` shares.

use super::{Create, Ctx};
use crate::cli::{StatsArgs, UpgradeArgs};
use crate::error::{CliError, Result};
use crate::output::{Output, bytes, count, duration};
use sealdb::{Db, Stats};
use serde_json::{Value, json};
use std::time::Instant;

/// `flush`: memtables to level-0 tables, now.
pub fn flush(ctx: &mut Ctx) -> Result<()> {
    let db = ctx.open(Create::Never)?;
    let t = Instant::now();
    db.flush()?;
    let elapsed = t.elapsed();
    let s = db.stats();
    ctx.out.emit(
        || format!("flushed in {}: {}", duration(elapsed), levels_summary(&s)),
        || json!({"op": "flush", "seconds": elapsed.as_secs_f64(), "levels": levels_json(&s)}),
    )
}

/// `compact`: flush, then compact every keyspace fully.
pub fn compact(ctx: &mut Ctx) -> Result<()> {
    let db = ctx.open(Create::Never)?;
    let pb = crate::progress::busy("compact", ctx.out.is_json());
    let t = Instant::now();
    let done = db.compact();
    pb.finish_and_clear();
    done?;
    let elapsed = t.elapsed();
    let s = db.stats();
    ctx.out.emit(
        || {
            format!(
                "compacted in {} ({} compactions, read {}, wrote {}): {}",
                duration(elapsed),
                s.compactions,
                bytes(s.compaction_read_bytes),
                bytes(s.compaction_write_bytes),
                levels_summary(&s)
            )
        },
        || {
            json!({
                "op": "compact",
                "seconds": elapsed.as_secs_f64(),
                "compactions": s.compactions,
                "compaction_read_bytes": s.compaction_read_bytes,
                "compaction_write_bytes": s.compaction_write_bytes,
                "levels": levels_json(&s),
            })
        },
    )
}

/// `stats [--keyspace NAME]`: the engine's statistics. Counters (cache, stalls, flushes,
/// compactions) count the work of this process since it opened the database; sizes and the
/// per-keyspace estimates describe the database.
pub fn stats(ctx: &mut Ctx, a: &StatsArgs) -> Result<()> {
    let db = ctx.open(Create::ReadOnly)?;
    let s = db.stats();
    let keyspaces = match &a.keyspace {
        Some(name) => vec![super::data::keyspace(
            &db,
            &crate::cli::KeyspaceArg {
                keyspace: Some(name.clone()),
            },
            false,
        )?],
        None => super::keyspace::all(&db)?,
    };
    if ctx.out.is_json() {
        let mut v = stats_json(&db, &s);
        if let Some(obj) = v.as_object_mut() {
            obj.insert(
                "keyspaces".into(),
                keyspaces
                    .iter()
                    .map(super::keyspace::keyspace_json)
                    .collect(),
            );
        }
        ctx.out.json_line(&v)
    } else {
        for line in identity_lines(&db) {
            ctx.out.text(line)?;
        }
        ctx.out.text(super::keyspace::table_header())?;
        for ks in &keyspaces {
            ctx.out.text(super::keyspace::table_row(ks))?;
        }
        ctx.out.text(super::keyspace::ESTIMATE_NOTE)?;
        print_levels(&mut ctx.out, &s, false)?;
        for line in stats_lines(&s) {
            ctx.out.text(line)?;
        }
        for line in cumulative_lines(&s.cumulative) {
            ctx.out.text(line)?;
        }
        ctx.out.text(recovery_line(&db))?;
        ctx.out.text(
            "(the counters above count this process's work since it opened the database; \
             `lifetime` counts every session's, kept in the database's sealed STATS file and \
             updated when a writer closes)",
        )
    }
}

/// The counters over the database's life, as text lines.
pub fn cumulative_lines(c: &sealdb::CumulativeStats) -> Vec<String> {
    vec![
        format!(
            "lifetime       {} batches, {} records ({} of keys and values), {} commit groups, \
             {} WAL syncs",
            count(c.batches),
            count(c.records),
            bytes(c.user_bytes),
            count(c.commit_groups),
            count(c.wal_syncs)
        ),
        format!(
            "               {} flushes ({}), {} compactions (read {}, wrote {}), {} stalls ({})",
            count(c.flushes),
            bytes(c.flush_bytes),
            count(c.compactions),
            bytes(c.compaction_read_bytes),
            bytes(c.compaction_write_bytes),
            count(c.write_stalls),
            duration(c.write_stall_time)
        ),
    ]
}

/// The counters over the database's life as JSON.
pub fn cumulative_json(c: &sealdb::CumulativeStats) -> Value {
    json!({
        "batches": c.batches,
        "records": c.records,
        "user_bytes": c.user_bytes,
        "commit_groups": c.commit_groups,
        "wal_syncs": c.wal_syncs,
        "memtable_rotations": c.memtable_rotations,
        "write_stalls": c.write_stalls,
        "write_stall_seconds": c.write_stall_time.as_secs_f64(),
        "flushes": c.flushes,
        "flush_bytes": c.flush_bytes,
        "compactions": c.compactions,
        "compaction_read_bytes": c.compaction_read_bytes,
        "compaction_write_bytes": c.compaction_write_bytes,
    })
}

/// `verify`: authenticates every block of every live file; prints each failure (file and
/// block) and fails with exit 2 if there is any.
pub fn verify(ctx: &mut Ctx) -> Result<()> {
    let db = ctx.open(Create::ReadOnly)?;
    let pb = crate::progress::bar(0, "verify", ctx.out.is_json());
    let t = Instant::now();
    let report = db.verify_with_progress(&mut crate::progress::counter(&pb));
    pb.finish_and_clear();
    let elapsed = t.elapsed();
    for e in &report.errors {
        ctx.out.emit(|| format!("FAILED {e}"), || failure_json(e))?;
    }
    let failures = report.errors.len();
    ctx.out.emit(
        || {
            if failures == 0 {
                format!(
                    "verified {} files ({}) in {}: every block authenticated",
                    report.files_checked,
                    checked_text(&report),
                    duration(elapsed)
                )
            } else {
                format!(
                    "verified {} files ({}) in {}: {failures} failed",
                    report.files_checked,
                    checked_text(&report),
                    duration(elapsed)
                )
            }
        },
        || {
            json!({
                "op": "verify",
                "ok": failures == 0,
                "files_checked": report.files_checked,
                "checked": {
                    "tables": report.tables,
                    "wal_segments": report.wal_segments,
                    "archived_wal_segments": report.archived_wal_segments,
                    "stream_segments": report.stream_segments,
                    "consumer_files": report.consumer_files,
                    "manifest_files": report.manifest_files,
                    "keys_files": report.keys_files,
                    "stats_files": report.stats_files,
                },
                "failures": failures,
                "seconds": elapsed.as_secs_f64(),
            })
        },
    )?;
    match report.errors.first() {
        None => Ok(()),
        Some(first) => Err(CliError::integrity(format!(
            "verify found {failures} integrity failure{} in {} files checked (first: {first})",
            if failures == 1 { "" } else { "s" },
            report.files_checked
        ))),
    }
}

/// How many files of each kind `verify` checked, for its summary line.
fn checked_text(r: &sealdb::VerifyReport) -> String {
    let kinds = [
        (r.tables, "table", "tables"),
        (r.wal_segments, "WAL segment", "WAL segments"),
        (
            r.archived_wal_segments,
            "archived WAL segment",
            "archived WAL segments",
        ),
        (r.stream_segments, "stream segment", "stream segments"),
        (r.consumer_files, "CONSUMERS file", "CONSUMERS files"),
        (
            r.manifest_files,
            "manifest file",
            "manifest files (MANIFEST, CURRENT)",
        ),
        (r.keys_files, "KEYS file", "KEYS files"),
        (r.stats_files, "STATS file", "STATS files"),
    ];
    kinds
        .iter()
        .map(|(n, one, many)| format!("{n} {}", if *n == 1 { one } else { many }))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One verification failure as JSON, with its file and block when the error names them.
pub fn failure_json(e: &sealdb::Error) -> Value {
    match e {
        sealdb::Error::Integrity {
            file,
            block,
            reason,
        } => json!({
            "ok": false,
            "file": file,
            "block": block,
            "reason": reason.to_string(),
            "error": e.to_string(),
        }),
        _ => json!({"ok": false, "error": e.to_string()}),
    }
}

/// Database id, cipher and master key (an identifier, never key material).
pub fn identity_lines(db: &Db) -> Vec<String> {
    vec![
        format!("database {}", db.path().display()),
        format!(
            "  id {}, cipher {}, master key {}",
            db.database_id(),
            db.cipher().name(),
            db.master_key()
        ),
    ]
}

/// `L0 2 files 1.2 MiB, L1 ...` over the non-empty levels.
pub fn levels_summary(s: &Stats) -> String {
    let parts: Vec<String> = s
        .levels
        .iter()
        .enumerate()
        .filter(|(_, l)| l.files > 0)
        .map(|(i, l)| format!("L{i} {} files {}", l.files, bytes(l.bytes)))
        .collect();
    if parts.is_empty() {
        "no tables".to_string()
    } else {
        parts.join(", ")
    }
}

/// Prints the per-level table (every level, or only the non-empty ones).
pub fn print_levels(out: &mut Output, s: &Stats, skip_empty: bool) -> Result<()> {
    out.text(format!("{:<7}{:>8}{:>14}", "level", "files", "bytes"))?;
    for (i, l) in s.levels.iter().enumerate() {
        if skip_empty && l.files == 0 {
            continue;
        }
        out.text(format!(
            "{:<7}{:>8}{:>14}",
            format!("L{i}"),
            l.files,
            bytes(l.bytes)
        ))?;
    }
    Ok(())
}

/// The non-level statistics as a few text lines.
pub fn stats_lines(s: &Stats) -> Vec<String> {
    vec![
        format!(
            "memtables      active {}, {} immutable ({}); last sequence {}",
            bytes(s.active_memtable_bytes),
            s.immutable_memtables,
            bytes(s.immutable_memtable_bytes),
            count(s.last_sequence)
        ),
        format!(
            "block cache    hit ratio {:.1}% ({} hits, {} misses)",
            s.cache_hit_ratio() * 100.0,
            count(s.cache_hits),
            count(s.cache_misses)
        ),
        format!(
            "write stalls   {} ({} stalled)",
            count(s.write_stalls),
            duration(s.write_stall_time)
        ),
        format!(
            "write amp      {:.2} (user {}, flushed {}, compaction wrote {})",
            s.write_amplification(),
            bytes(s.user_bytes),
            bytes(s.flush_bytes),
            bytes(s.compaction_write_bytes)
        ),
        format!(
            "background     {} flushes, {} compactions (read {}), {} memtable rotations",
            count(s.flushes),
            count(s.compactions),
            bytes(s.compaction_read_bytes),
            count(s.memtable_rotations)
        ),
        format!(
            "writes         {} batches, {} records, {} commit groups, {} WAL syncs",
            count(s.batches),
            count(s.records),
            count(s.commit_groups),
            count(s.wal_syncs)
        ),
    ]
}

/// What WAL recovery did when this process opened the database.
pub fn recovery_line(db: &Db) -> String {
    let w = &db.open_stats().wal;
    let torn = match &w.torn_tail {
        Some(t) => format!(
            "; torn tail cut from segment {} at offset {} ({} bytes dropped)",
            t.segment, t.offset, t.dropped_bytes
        ),
        None => String::new(),
    };
    format!(
        "recovery       {} WAL segments, {} batches, {} records replayed{torn}",
        w.segments,
        count(w.batches),
        count(w.records)
    )
}

/// Per-level files and bytes as JSON.
pub fn levels_json(s: &Stats) -> Value {
    Value::Array(
        s.levels
            .iter()
            .enumerate()
            .map(|(i, l)| json!({"level": i, "files": l.files, "bytes": l.bytes}))
            .collect(),
    )
}

/// Every statistic as one JSON object.
pub fn stats_json(db: &Db, s: &Stats) -> Value {
    let w = &db.open_stats().wal;
    json!({
        "database": db.path().display().to_string(),
        "database_id": db.database_id().to_string(),
        "cipher": db.cipher().name(),
        "master_key": db.master_key().to_string(),
        "levels": levels_json(s),
        "cache_hits": s.cache_hits,
        "cache_misses": s.cache_misses,
        "cache_hit_ratio": s.cache_hit_ratio(),
        "write_stalls": s.write_stalls,
        "write_stall_seconds": s.write_stall_time.as_secs_f64(),
        "write_amplification": s.write_amplification(),
        "user_bytes": s.user_bytes,
        "flushes": s.flushes,
        "flush_bytes": s.flush_bytes,
        "compactions": s.compactions,
        "compaction_read_bytes": s.compaction_read_bytes,
        "compaction_write_bytes": s.compaction_write_bytes,
        "memtable_rotations": s.memtable_rotations,
        "batches": s.batches,
        "records": s.records,
        "commit_groups": s.commit_groups,
        "wal_syncs": s.wal_syncs,
        "active_memtable_bytes": s.active_memtable_bytes,
        "immutable_memtables": s.immutable_memtables,
        "immutable_memtable_bytes": s.immutable_memtable_bytes,
        "last_sequence": s.last_sequence,
        "cumulative": cumulative_json(&s.cumulative),
        "recovery": {
            "created": db.open_stats().created,
            "wal_segments": w.segments,
            "batches": w.batches,
            "records": w.records,
            "torn_tail_bytes": w.torn_tail.as_ref().map(|t| t.dropped_bytes),
        },
    })
}

/// `upgrade`: the explicit format ratchet (`Db::ratchet_format`). Opening never upgrades, so
/// a database stays readable by the builds that wrote it until an operator runs this.
pub fn upgrade(ctx: &mut Ctx, a: &UpgradeArgs) -> Result<()> {
    let newest = sealdb::FormatVersion::NEWEST;
    if a.show {
        let db = ctx.open(Create::ReadOnly)?;
        let v = db.format_version();
        return ctx.out.emit(
            || format!("format version {v} (this build knows up to {newest})"),
            || json!({"op": "upgrade", "format_version": v.number(), "newest": newest.number()}),
        );
    }
    let to = match a.to {
        None => newest,
        Some(n) => n.to_string().parse::<sealdb::FormatVersion>()?,
    };
    let db = ctx.open(Create::Never)?;
    let from = db.format_version();
    let changed = db.ratchet_format(to)?;
    ctx.out.emit(
        || {
            if changed {
                format!("format version {from} -> {to}")
            } else {
                format!("format version {to}: already there, nothing changed")
            }
        },
        || {
            json!({"op": "upgrade", "from": from.number(), "format_version": to.number(),
                   "changed": changed})
        },
    )
}
