//! `load`: synthetic bulk load in atomic batches, with a progress bar and throughput.

use super::{Create, Ctx};
use crate::cli::LoadArgs;
use crate::error::Result;
use crate::output::{bytes, count, nanos, per_sec};
use crate::workload::Workload;
use sealdb::{WriteBatch, WriteOptions};
use sealdb_latency::Latency;
use serde_json::json;
use std::time::Instant;

/// `load [--count N] [--key-size B] [--value-size B] [--batch N] [--sync]`.
pub fn load(ctx: &mut Ctx, a: &LoadArgs) -> Result<()> {
    let w = Workload::new(a.count, a.key_size, a.value_size)?;
    let db = ctx.open(Create::IfMissing)?;
    let ks = db.default_keyspace();
    let opts = if a.sync {
        WriteOptions::SYNC
    } else {
        WriteOptions::NO_SYNC
    };
    let pb = crate::progress::bar(a.count, "load", ctx.out.is_json());
    let mut hist = Latency::new();
    let (mut key, mut value) = (Vec::new(), Vec::new());
    let start = Instant::now();
    let mut i = 0u64;
    while i < a.count {
        let end = i.saturating_add(a.batch).min(a.count);
        let mut batch = WriteBatch::new();
        for j in i..end {
            w.key(j, &mut key);
            w.value(j, &mut value);
            batch.put(&ks, &key, &value)?;
        }
        let t = Instant::now();
        db.write(batch, opts)?;
        hist.record(t.elapsed());
        pb.inc(end - i);
        i = end;
    }
    let elapsed = start.elapsed();
    pb.finish_and_clear();
    let total_bytes = a
        .count
        .saturating_mul((w.key_size() + w.value_size()) as u64);
    let lat = hist.nanos_summary();
    let ops = per_sec(a.count, elapsed);
    let mib = per_sec(total_bytes, elapsed) / f64::from(1u32 << 20);
    ctx.out.emit(
        || {
            format!(
                "loaded {} keys ({}) in {:.2} s: {} keys/s, {mib:.1} MiB/s; batch of {} \
                 latency p50 {} p99 {} max {}{}",
                count(a.count),
                bytes(total_bytes),
                elapsed.as_secs_f64(),
                count(ops as u64),
                a.batch,
                nanos(lat.p50),
                nanos(lat.p99),
                nanos(lat.max),
                if a.sync { " (synced)" } else { "" },
            )
        },
        || {
            json!({
                "op": "load",
                "count": a.count,
                "key_size": a.key_size,
                "value_size": a.value_size,
                "batch": a.batch,
                "sync": a.sync,
                "bytes": total_bytes,
                "seconds": elapsed.as_secs_f64(),
                "ops_per_sec": ops,
                "mib_per_sec": mib,
                "batch_latency_ns": lat,
            })
        },
    )
}
