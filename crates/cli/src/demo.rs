//! `demo`: the README's first command. A throwaway database, end to end: load N keys, read
//! them all back and check every value, scan a prefix, authenticate every durable block,
//! flush and compact, then print put/get latency percentiles and the engine's statistics.
//!
//! The database lives in a temporary directory and its owned master key in a temporary
//! keystore, both removed at the end, unless `--db` (which must name a new database: the demo
//! never writes into existing data) or `--keystore` is given. With `--db` and no
//! `--keystore`, the key goes to the default keystore, because the database outlives the demo
//! and would be unreadable without it.

use crate::cli::DemoArgs;
use crate::commands::Ctx;
use crate::commands::admin;
use crate::error::{CliError, Result};
use crate::output::{bytes, count, display_key, duration, nanos, per_sec};
use crate::workload::Workload;
use sealdb::{Db, Options};
use sealdb_latency::Latency;
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;

const KEY_PREFIX: &str = "demo:";
const KEY_SIZE: u64 = 16;
const VALUE_SIZE: u64 = 100;
/// A small memtable, so that even a modest demo flushes and compacts in the background and
/// reads go through sealed tables and the block cache, not only the memtable.
const DEMO_MEMTABLE_BYTES: usize = 4 << 20;
/// Keys per scanned prefix (the last two digits vary).
const SCAN_SPAN: u64 = 100;

fn tempdir(what: &str) -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(&format!("sealdb-demo-{what}-"))
        .tempdir()
        .map_err(|e| CliError::io(format!("creating a temporary {what} directory"), e))
}

/// `demo [--count N]`.
pub fn demo(ctx: &mut Ctx, a: &DemoArgs) -> Result<()> {
    let n = a.count;
    let w = Workload::with_prefix(KEY_PREFIX, n, KEY_SIZE, VALUE_SIZE)
        .map_err(|e| e.context("demo --count"))?;

    // Temporary directories are declared before the database so they are removed after it
    // is closed (locals drop in reverse order), on success and on every error path.
    let db_tmp;
    let ks_tmp;
    let (db_dir, db_throwaway) = match &ctx.global.db {
        Some(d) => (d.clone(), false),
        None => {
            db_tmp = tempdir("db")?;
            (db_tmp.path().join("db"), true)
        }
    };
    let (keystore, ks_label): (Option<PathBuf>, String) =
        match (&ctx.global.keystore, &ctx.global.db) {
            (Some(k), _) => (Some(k.clone()), k.display().to_string()),
            (None, Some(_)) => (None, "default keystore".to_string()),
            (None, None) => {
                ks_tmp = tempdir("keystore")?;
                (Some(ks_tmp.path().to_path_buf()), "throwaway".to_string())
            }
        };
    let opts = Options {
        create_if_missing: true,
        error_if_exists: true,
        keystore_dir: keystore,
        kms_dir: ctx.global.kms.clone(),
        cipher: ctx
            .global
            .cipher
            .map_or_else(|| Options::default().cipher, Into::into),
        memtable_size: DEMO_MEMTABLE_BYTES,
        ..Options::default()
    };
    let db = Db::open(&db_dir, opts).map_err(|e| {
        CliError::from(e).context("demo needs a new database (give --db a new directory)")
    })?;
    let json = ctx.out.is_json();

    ctx.out.emit(
        || {
            format!(
                "sealdb demo: {} keys ({KEY_SIZE} B keys, {VALUE_SIZE} B values) in {}{}\n  \
                 cipher {}, master key {} (keystore: {ks_label})",
                count(n),
                db_dir.display(),
                if db_throwaway { " (throwaway)" } else { "" },
                db.cipher().name(),
                db.master_key(),
            )
        },
        || {
            json!({
                "step": "open",
                "count": n,
                "database": db_dir.display().to_string(),
                "throwaway": db_throwaway,
                "cipher": db.cipher().name(),
                "master_key": db.master_key().to_string(),
                "keystore": ks_label,
            })
        },
    )?;

    // 1. Load, one unsynced put at a time so each put's latency is measured.
    let mut put_hist = Latency::new();
    let (mut key, mut value) = (Vec::new(), Vec::new());
    let pb = crate::progress::bar(n, "put", json);
    let t = Instant::now();
    for i in 0..n {
        w.key(i, &mut key);
        w.value(i, &mut value);
        let t = Instant::now();
        db.put(&key, &value)?;
        put_hist.record(t.elapsed());
        pb.inc(1);
    }
    let load_time = t.elapsed();
    pb.finish_and_clear();
    let user_bytes = n.saturating_mul(KEY_SIZE + VALUE_SIZE);
    ctx.out.emit(
        || {
            format!(
                "put      {} keys ({}) in {}: {} puts/s",
                count(n),
                bytes(user_bytes),
                duration(load_time),
                count(per_sec(n, load_time) as u64)
            )
        },
        || json!({"step": "put", "keys": n, "bytes": user_bytes, "seconds": load_time.as_secs_f64()}),
    )?;

    // 2. Read everything back and check every value.
    let mut get_hist = Latency::new();
    let mut expected = Vec::new();
    let pb = crate::progress::bar(n, "get", json);
    let t = Instant::now();
    for i in 0..n {
        w.key(i, &mut key);
        w.value(i, &mut expected);
        let t = Instant::now();
        let got = db.get(&key)?;
        get_hist.record(t.elapsed());
        if got.as_deref() != Some(expected.as_slice()) {
            return Err(CliError::other(format!(
                "demo: key {} read back {}",
                display_key(&key),
                if got.is_some() {
                    "a wrong value"
                } else {
                    "nothing"
                }
            )));
        }
        pb.inc(1);
    }
    let read_time = t.elapsed();
    pb.finish_and_clear();
    ctx.out.emit(
        || {
            format!(
                "get      {} keys in {}: {} gets/s, every value verified",
                count(n),
                duration(read_time),
                count(per_sec(n, read_time) as u64)
            )
        },
        || json!({"step": "get", "keys": n, "verified": n, "seconds": read_time.as_secs_f64()}),
    )?;

    // 3. Scan the prefix shared by a run of SCAN_SPAN keys around the middle.
    let base = (n / 2) / SCAN_SPAN * SCAN_SPAN;
    w.key(base, &mut key);
    let prefix = key
        .get(..key.len().saturating_sub(2))
        .unwrap_or_default()
        .to_vec();
    let want = n.min(base + SCAN_SPAN) - base;
    let t = Instant::now();
    let mut seen = 0u64;
    for item in db.default_keyspace().prefix(&prefix)? {
        let (k, v) = item?;
        w.key(base + seen, &mut key);
        w.value(base + seen, &mut expected);
        if k != key || v != expected {
            return Err(CliError::other(format!(
                "demo: scan of prefix {} returned key {} out of order or with a wrong value",
                display_key(&prefix),
                display_key(&k)
            )));
        }
        seen += 1;
    }
    let scan_time = t.elapsed();
    if seen != want {
        return Err(CliError::other(format!(
            "demo: scan of prefix {} returned {seen} keys, expected {want}",
            display_key(&prefix)
        )));
    }
    let prefix_text = String::from_utf8_lossy(&prefix).into_owned();
    ctx.out.emit(
        || {
            format!(
                "scan     prefix {prefix_text:?}: {seen} keys in {}, in order, values verified",
                duration(scan_time)
            )
        },
        || json!({"step": "scan", "prefix": prefix_text, "keys": seen, "seconds": scan_time.as_secs_f64()}),
    )?;

    // 4. Authenticate every block of every durable file.
    let t = Instant::now();
    let report = db.verify();
    let verify_time = t.elapsed();
    for e in &report.errors {
        ctx.out
            .emit(|| format!("FAILED   {e}"), || admin::failure_json(e))?;
    }
    ctx.out.emit(
        || {
            format!(
                "verify   {} files in {}: {}",
                report.files_checked,
                duration(verify_time),
                if report.errors.is_empty() {
                    "every block authenticated".to_string()
                } else {
                    format!("{} FAILED", report.errors.len())
                }
            )
        },
        || {
            json!({"step": "verify", "files_checked": report.files_checked,
                   "failures": report.errors.len(), "seconds": verify_time.as_secs_f64()})
        },
    )?;
    if let Some(first) = report.errors.first() {
        return Err(CliError::integrity(format!("demo: verify failed: {first}")));
    }

    // 5. Flush and compact everything.
    let t = Instant::now();
    db.compact()?;
    let compact_time = t.elapsed();
    let stats = db.stats();
    ctx.out.emit(
        || {
            format!(
                "compact  flush + full compaction in {}: {}",
                duration(compact_time),
                admin::levels_summary(&stats)
            )
        },
        || json!({"step": "compact", "seconds": compact_time.as_secs_f64(), "levels": admin::levels_json(&stats)}),
    )?;

    // 6. Latency and statistics.
    print_latency(ctx, &put_hist, &get_hist)?;
    if json {
        let mut v = admin::stats_json(&db, &stats);
        if let Some(o) = v.as_object_mut() {
            o.insert("step".into(), json!("stats"));
        }
        ctx.out.json_line(&v)?;
    } else {
        admin::print_levels(&mut ctx.out, &stats, true)?;
        for line in admin::stats_lines(&stats) {
            ctx.out.text(line)?;
        }
    }
    drop(db);
    ctx.out.emit(
        || {
            if db_throwaway {
                "ok: the throwaway database and its keys are removed".to_string()
            } else {
                format!("ok: the database is kept at {}", db_dir.display())
            }
        },
        || json!({"step": "done", "ok": true, "kept": !db_throwaway}),
    )
}

fn print_latency(ctx: &mut Ctx, put: &Latency, get: &Latency) -> Result<()> {
    let (p, g) = (put.nanos_summary(), get.nanos_summary());
    if ctx.out.is_json() {
        return ctx
            .out
            .json_line(&json!({"step": "latency", "unit": "ns", "put": p, "get": g}));
    }
    ctx.out.text(format!(
        "latency  {:>10}{:>10}{:>10}{:>10}",
        "p50", "p99", "p99.9", "max"
    ))?;
    for (name, l) in [("put", p), ("get", g)] {
        ctx.out.text(format!(
            "  {name:<7}{:>10}{:>10}{:>10}{:>10}",
            nanos(l.p50),
            nanos(l.p99),
            nanos(l.p999),
            nanos(l.max)
        ))?;
    }
    Ok(())
}
