//! The latency harness: runs db_bench- and YCSB-style workloads against sealdb encrypted,
//! sealdb plaintext (the `none` cipher) and the peer engines compiled in (`--features
//! fjall,rocksdb`), one after another on the same workload in the same run; records every
//! operation in an HDR histogram; prints p50/p90/p99/p99.9/p99.99/max and throughput with the
//! p99 and throughput ratios against sealdb-chacha; optionally writes JSON and SVG plots.
//!
//! ```text
//! cargo run --release -p sealdb-benches --bin sealdb-latency -- put
//! cargo run --release -p sealdb-benches --features fjall --bin sealdb-latency -- all --quick \
//!     --json target/bench.json --plots target/bench-plots
//! ```
//!
//! Method (see `docs/benchmarks.md`): workloads that need an empty database (`put`,
//! `fillseq`, `fillrandom`, `syncwrites`) get a fresh one per engine. The others share one
//! database per engine, loaded with `--keys` keys in random order and fully compacted; the
//! engines stay open side by side and each workload runs on every engine in turn. Before a
//! warm-cache workload the whole key space is scanned once (untimed) so the block cache holds
//! it; after a workload that writes, the engine is flushed and compacted again (untimed) so
//! every workload starts from the same shape of tree and no background work from one engine's
//! run spills into the next engine's.

mod cli;
mod measure;
mod run;

use clap::Parser;
use cli::{Args, Settings, Workload};
use run::Bench;
use sealdb_benches::engine::{EngineConfig, EngineKind};
use sealdb_benches::report::Report;
use sealdb_benches::{KeySpace, Values};
use std::time::{Duration, Instant};

type BoxError = sealdb_benches::engine::BoxError;
type Result<T, E = BoxError> = std::result::Result<T, E>;

fn machine_meta() -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    m.insert("nproc".into(), nproc.into());
    if let Ok(cpu) = std::fs::read_to_string("/proc/cpuinfo")
        && let Some(model) = cpu.lines().find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split(':').nth(1))
        })
    {
        m.insert("cpu".into(), model.trim().into());
    }
    if let Ok(mem) = std::fs::read_to_string("/proc/meminfo")
        && let Some(total) = mem.lines().find(|l| l.starts_with("MemTotal"))
    {
        m.insert(
            "memory".into(),
            total.trim_start_matches("MemTotal:").trim().into(),
        );
    }
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        m.insert("loadavg_at_start".into(), load.trim().into());
    }
    m
}

fn main() -> Result<()> {
    let args = Args::parse();
    let keys_n = args
        .keys
        .unwrap_or(if args.quick { 100_000 } else { 1_000_000 });
    let settings = Settings {
        keys: keys_n,
        duration: Duration::from_secs_f64(args.duration.unwrap_or(if args.quick {
            2.0
        } else {
            10.0
        })),
        ops: args.ops,
        unsynced_ops: args
            .unsynced_ops
            .unwrap_or(if args.quick { 50_000 } else { 200_000 }),
        synced_ops: args
            .synced_ops
            .unwrap_or(if args.quick { 1_000 } else { 3_000 }),
        threads: args.threads.clone(),
        scan_len: args.scan_len,
        dists: args.dist.iter().map(|d| (*d).into()).collect(),
        seed: args.seed,
    };
    if settings.threads.as_ref().is_some_and(|t| t.contains(&0)) {
        return Err("--threads must be at least 1".into());
    }
    let keys = KeySpace::new(args.key_size)?;
    if !keys.can_hold(keys_n * 2) {
        return Err(format!(
            "--key-size {} is too short for {keys_n} keys",
            args.key_size
        )
        .into());
    }
    // Random-key writes draw from the widest range the key's digits hold.
    let digits = args.key_size.min(18) as u32;
    let random_key_limit = 10u64.pow(digits) / 2 - 1;

    let engines: Vec<EngineKind> = match &args.engines {
        Some(names) => names
            .iter()
            .map(|n| {
                let kind =
                    EngineKind::from_name(n).ok_or_else(|| format!("unknown engine {n:?}"))?;
                if !kind.compiled_in() {
                    return Err(format!(
                        "engine {n} is not compiled in: build with --features {}",
                        kind.feature().unwrap_or("?")
                    ));
                }
                Ok(kind)
            })
            .collect::<std::result::Result<_, String>>()?,
        None => EngineKind::ALL
            .into_iter()
            .filter(|k| k.compiled_in())
            .collect(),
    };

    let mut workloads: Vec<Workload> = Vec::new();
    for w in &args.workloads {
        match w {
            Workload::All => workloads.extend(Workload::CONCRETE),
            Workload::Ycsb => workloads.extend([
                Workload::YcsbA,
                Workload::YcsbB,
                Workload::YcsbC,
                Workload::YcsbD,
                Workload::YcsbE,
                Workload::YcsbF,
            ]),
            w => workloads.push(*w),
        }
    }
    workloads.sort_by_key(|w| Workload::CONCRETE.iter().position(|c| c == w));
    workloads.dedup();

    let tmp = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            tempfile::tempdir_in(d)?
        }
        None => tempfile::tempdir()?,
    };
    let keystore = tempfile::tempdir()?;
    let cfg = EngineConfig {
        cache_bytes: args.cache_mb << 20,
        keystore: keystore.path().to_path_buf(),
    };
    let cold_cfg = EngineConfig {
        cache_bytes: args.cold_cache_kb << 10,
        ..cfg.clone()
    };
    let mut report = Report::default();
    let mut meta = machine_meta();
    meta.insert(
        "command".into(),
        std::env::args().collect::<Vec<_>>().join(" ").into(),
    );
    meta.insert(
        "engines".into(),
        engines.iter().map(|e| e.name()).collect::<Vec<_>>().into(),
    );
    meta.insert("keys".into(), keys_n.into());
    meta.insert("key_size".into(), args.key_size.into());
    meta.insert("value_size".into(), args.value_size.into());
    meta.insert("cache_mb".into(), args.cache_mb.into());
    meta.insert("duration_s".into(), settings.duration.as_secs_f64().into());
    meta.insert(
        "started_unix".into(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            .into(),
    );
    report.meta = meta.into_iter().collect();

    let mut bench = Bench {
        settings,
        keys,
        values: Values::new(args.value_size, args.seed),
        engines: engines.clone(),
        root: tmp.path().to_path_buf(),
        cfg,
        cold_cfg,
        report,
        random_key_limit,
    };
    eprintln!(
        "engines: {}; workloads: {}; data in {}",
        engines
            .iter()
            .map(|e| e.name())
            .collect::<Vec<_>>()
            .join(","),
        workloads
            .iter()
            .map(|w| w.name())
            .collect::<Vec<_>>()
            .join(","),
        bench.root.display()
    );
    let run_started = Instant::now();

    for &w in workloads.iter().filter(|w| w.is_fresh()) {
        bench.run_fresh(w)?;
    }
    let loaded: Vec<Workload> = workloads
        .iter()
        .copied()
        .filter(|w| !w.is_fresh())
        .collect();
    if !loaded.is_empty() {
        let mut slots = Vec::new();
        for kind in engines.clone() {
            slots.push(bench.load(kind)?);
        }
        for w in loaded {
            bench.run_loaded(w, &mut slots)?;
        }
        for slot in slots {
            drop(slot.engine);
        }
    }

    let mut report = bench.report;
    report.meta.insert(
        "run_seconds".into(),
        run_started.elapsed().as_secs_f64().into(),
    );
    println!("{}", report.latency_table());
    println!("{}", report.space_table());
    if let Some(path) = &args.json {
        report.write_json(path)?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(path) = &args.markdown {
        let md = format!(
            "{}\n\nSpace and write amplification:\n\n```text\n{}```\n",
            report.latency_markdown(),
            report.space_table()
        );
        std::fs::write(path, md)?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(dir) = &args.plots {
        let files = report.write_plots(dir).map_err(|e| format!("plots: {e}"))?;
        eprintln!("wrote {} plots into {}", files.len(), dir.display());
    }
    Ok(())
}
