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

use clap::{Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sealdb_benches::engine::{Engine, EngineConfig, EngineKind, dir_size, process_write_bytes};
use sealdb_benches::report::{Report, RunRecord, SpaceRecord};
use sealdb_benches::rng::{Distribution, KeyChooser, Rng};
use sealdb_benches::{KeySpace, Latency, Timeline, Values};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Barrier, OnceLock};
use std::time::{Duration, Instant};

type BoxError = sealdb_benches::engine::BoxError;
type Result<T, E = BoxError> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Workload {
    /// Puts, unsynced and synced, 1 and 4 writer threads, plus a raw 4 KiB
    /// append+fdatasync baseline on the same disk.
    Put,
    /// Unsynced puts of `--keys` keys in key order into an empty database.
    Fillseq,
    /// Unsynced puts of `--keys` keys in random order into an empty database.
    Fillrandom,
    /// Synced puts (fdatasync of the WAL per write) into an empty database.
    Syncwrites,
    /// Point reads of present keys, block cache warm.
    Readrandom,
    /// Point reads of absent keys (inside the key range: bloom filters must answer).
    Readmissing,
    /// Point reads of present keys, block cache cold (reopened with a tiny cache), OS cache
    /// warm.
    Readcold,
    /// Seek to a random present key and read the next `--scan-len` entries.
    Scan,
    /// Readers (`--threads`) reading present keys while one writer overwrites keys unsynced
    /// as fast as it can.
    Readwhilewriting,
    /// 50% reads and 50% unsynced overwrites of present keys, `--threads` threads (default 2).
    Mixed,
    /// YCSB A: 50% reads, 50% updates.
    YcsbA,
    /// YCSB B: 95% reads, 5% updates.
    YcsbB,
    /// YCSB C: 100% reads.
    YcsbC,
    /// YCSB D: 95% reads (skewed to the latest inserts), 5% inserts.
    YcsbD,
    /// YCSB E: 95% short scans (1–100 entries), 5% inserts.
    YcsbE,
    /// YCSB F: 50% reads, 50% read-modify-writes.
    YcsbF,
    /// YCSB A to F.
    Ycsb,
    /// Every workload above.
    All,
}

impl Workload {
    const CONCRETE: [Workload; 16] = [
        Workload::Put,
        Workload::Fillseq,
        Workload::Fillrandom,
        Workload::Syncwrites,
        Workload::Readrandom,
        Workload::Readmissing,
        Workload::Scan,
        Workload::YcsbC,
        Workload::Readcold,
        Workload::Readwhilewriting,
        Workload::Mixed,
        Workload::YcsbA,
        Workload::YcsbB,
        Workload::YcsbD,
        Workload::YcsbE,
        Workload::YcsbF,
    ];

    fn name(self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_string())
            .unwrap_or_default()
    }

    /// Runs on a fresh, empty database.
    fn is_fresh(self) -> bool {
        matches!(
            self,
            Self::Put | Self::Fillseq | Self::Fillrandom | Self::Syncwrites
        )
    }

    /// Changes the loaded data set (so the engine is compacted afterwards).
    fn writes(self) -> bool {
        matches!(
            self,
            Self::Readwhilewriting
                | Self::Mixed
                | Self::YcsbA
                | Self::YcsbB
                | Self::YcsbD
                | Self::YcsbE
                | Self::YcsbF
        )
    }

    fn is_ycsb(self) -> bool {
        matches!(
            self,
            Self::YcsbA | Self::YcsbB | Self::YcsbC | Self::YcsbD | Self::YcsbE | Self::YcsbF
        )
    }

    fn default_threads(self) -> Vec<usize> {
        match self {
            Self::Put => vec![1, 4],
            Self::Mixed => vec![2],
            _ => vec![1],
        }
    }
}

#[derive(Debug, Parser)]
#[command(
    about = "sealdb latency harness: HDR-histogram percentiles of sealdb (encrypted and plaintext) and peer engines, side by side in one run",
    after_help = "Peers: build with `--features fjall` and/or `--features rocksdb` (run scripts/setup-rocksdb.sh first). scripts/bench.sh runs the documented comparison."
)]
struct Args {
    /// Workloads to run (in a fixed order, whatever order they are given in).
    #[arg(required = true, value_enum)]
    workloads: Vec<Workload>,
    /// Small preset: 100k keys, 2 s per measurement, fewer puts.
    #[arg(long)]
    quick: bool,
    /// Keys loaded for the read workloads (and written by fillseq/fillrandom) [default:
    /// 1000000, 100000 with --quick].
    #[arg(long)]
    keys: Option<u64>,
    /// Key size in bytes (at least 8).
    #[arg(long, default_value_t = 16)]
    key_size: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Thread counts to run each workload with, comma-separated [default: 1; put 1,4; mixed 2].
    #[arg(long, value_delimiter = ',')]
    threads: Option<Vec<usize>>,
    /// Seconds per measurement of the time-bounded workloads [default: 10, 2 with --quick].
    #[arg(long, conflicts_with = "ops")]
    duration: Option<f64>,
    /// Operations per thread instead of a duration.
    #[arg(long)]
    ops: Option<u64>,
    /// Engines, comma-separated: sealdb-chacha,sealdb-aes,sealdb-none,fjall,rocksdb [default:
    /// all compiled in]. `SEALDB_SEAL_BACKEND=reference` runs sealdb-chacha on the reference
    /// ChaCha20-Poly1305 crate instead of ring.
    #[arg(long, value_delimiter = ',')]
    engines: Option<Vec<String>>,
    /// Block cache budget of every engine, MiB.
    #[arg(long, default_value_t = 256)]
    cache_mb: usize,
    /// Block cache of the `readcold` reopen, KiB.
    #[arg(long, default_value_t = 1024)]
    cold_cache_kb: usize,
    /// Entries per `scan`.
    #[arg(long, default_value_t = 100)]
    scan_len: usize,
    /// Key distributions for the YCSB workloads, comma-separated.
    #[arg(long, value_delimiter = ',', default_values = ["uniform", "zipfian"])]
    dist: Vec<DistArg>,
    /// Unsynced puts per thread in `put` [default: 200000, 50000 with --quick].
    #[arg(long)]
    unsynced_ops: Option<u64>,
    /// Synced puts per thread in `put` (also the raw append+fdatasync count) [default: 3000,
    /// 1000 with --quick].
    #[arg(long)]
    synced_ops: Option<u64>,
    /// Write every result (percentiles, curves, per-second throughput) as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write SVG plots (latency-percentile curves, throughput over time) into this directory.
    #[arg(long)]
    plots: Option<PathBuf>,
    /// Also write the tables as Markdown to this file.
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Directory for the databases (a fresh temporary directory by default; it must be on
    /// the disk you mean to measure, not tmpfs).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Seed for key choice and values.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum DistArg {
    Uniform,
    Zipfian,
}

impl From<DistArg> for Distribution {
    fn from(d: DistArg) -> Self {
        match d {
            DistArg::Uniform => Distribution::Uniform,
            DistArg::Zipfian => Distribution::Zipfian,
        }
    }
}

/// Options after presets and defaults.
struct Settings {
    keys: u64,
    duration: Duration,
    ops: Option<u64>,
    unsynced_ops: u64,
    synced_ops: u64,
    threads: Option<Vec<usize>>,
    scan_len: usize,
    dists: Vec<Distribution>,
    seed: u64,
}

impl Settings {
    fn stop(&self) -> Stop {
        match self.ops {
            Some(n) => Stop::Ops(n),
            None => Stop::Time(self.duration),
        }
    }

    fn threads_for(&self, w: Workload) -> Vec<usize> {
        self.threads.clone().unwrap_or_else(|| w.default_threads())
    }
}

// ---------------------------------------------------------------------------------------------
// Measurement: threads, histograms, timelines

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Read,
    Miss,
    Write,
    Scan,
    Insert,
    Rmw,
}

const OPS: [Op; 6] = [Op::Read, Op::Miss, Op::Write, Op::Scan, Op::Insert, Op::Rmw];

impl Op {
    fn index(self) -> usize {
        self as usize
    }

    fn name(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Miss => "miss",
            Op::Write => "write",
            Op::Scan => "scan",
            Op::Insert => "insert",
            Op::Rmw => "rmw",
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Stop {
    Time(Duration),
    Ops(u64),
}

#[derive(Default)]
struct Measured {
    lat: [Latency; 6],
    tl: [Timeline; 6],
    elapsed: Duration,
    /// Ops by background threads are in `lat` too but must not be merged into "all".
    has_background: bool,
}

impl Measured {
    fn merge(&mut self, other: &Measured) {
        for i in 0..OPS.len() {
            self.lat[i].merge(&other.lat[i]);
            self.tl[i].merge(&other.tl[i]);
        }
        self.elapsed = self.elapsed.max(other.elapsed);
    }

    /// One record per operation kind seen, plus `all` when a workload mixes kinds.
    fn records(&self, engine: &str, workload: &str, threads: usize) -> Vec<RunRecord> {
        let secs = self.elapsed.as_secs_f64();
        let mut out = Vec::new();
        let kinds: Vec<Op> = OPS
            .into_iter()
            .filter(|o| self.lat[o.index()].count() > 0)
            .collect();
        for o in &kinds {
            out.push(RunRecord::new(
                engine,
                workload,
                o.name(),
                threads,
                &self.lat[o.index()],
                &self.tl[o.index()],
                secs,
            ));
        }
        if kinds.len() > 1 && !self.has_background {
            let mut lat = Latency::new();
            let mut tl = Timeline::default();
            for o in &kinds {
                lat.merge(&self.lat[o.index()]);
                tl.merge(&self.tl[o.index()]);
            }
            out.push(RunRecord::new(
                engine, workload, "all", threads, &lat, &tl, secs,
            ));
        }
        out
    }

    fn count(&self, op: Op) -> u64 {
        self.lat[op.index()].count()
    }
}

/// One thread's work: performs one operation and says which kind, or `None` when it has
/// nothing left to do.
type Worker<'a> = Box<dyn FnMut() -> Result<Option<Op>> + Send + 'a>;

/// Runs `counted` workers until `stop` (per thread) and `background` workers until every
/// counted one has finished. Each operation is timed on its own; the clock starts when every
/// thread is ready.
fn run_threads<'a>(
    counted: usize,
    background: usize,
    stop: Stop,
    make: &(dyn Fn(usize) -> Worker<'a> + Sync),
) -> Result<Measured> {
    let barrier = Barrier::new(counted + background);
    let start: OnceLock<Instant> = OnceLock::new();
    let remaining = AtomicUsize::new(counted);
    let results: Vec<Result<Measured>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..counted + background)
            .map(|t| {
                let mut work = make(t);
                let (barrier, start, remaining) = (&barrier, &start, &remaining);
                s.spawn(move || -> Result<Measured> {
                    let is_counted = t < counted;
                    let mut m = Measured::default();
                    barrier.wait();
                    let start = *start.get_or_init(Instant::now);
                    let mut done = 0u64;
                    let outcome = loop {
                        if !is_counted && remaining.load(Ordering::Acquire) == 0 {
                            break Ok(());
                        }
                        let t0 = Instant::now();
                        let op = match work() {
                            Ok(Some(op)) => op,
                            Ok(None) => break Ok(()),
                            Err(e) => break Err(e),
                        };
                        let t1 = Instant::now();
                        m.lat[op.index()].record(t1 - t0);
                        m.tl[op.index()].tick(t1 - start);
                        done += 1;
                        if is_counted {
                            m.elapsed = t1 - start;
                            let finished = match stop {
                                Stop::Time(d) => t1 - start >= d,
                                Stop::Ops(n) => done >= n,
                            };
                            if finished {
                                break Ok(());
                            }
                        }
                    };
                    if is_counted {
                        remaining.fetch_sub(1, Ordering::AcqRel);
                    }
                    outcome.map(|()| m)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("worker thread panicked".into()))
            })
            .collect()
    });
    let mut all = Measured {
        has_background: background > 0,
        ..Measured::default()
    };
    for r in results {
        all.merge(&r?);
    }
    Ok(all)
}

// ---------------------------------------------------------------------------------------------
// The run

struct Bench {
    settings: Settings,
    keys: KeySpace,
    values: Values,
    engines: Vec<EngineKind>,
    root: PathBuf,
    cfg: EngineConfig,
    cold_cfg: EngineConfig,
    report: Report,
    /// Largest key index a random-key write may use (inside the key space's digits).
    random_key_limit: u64,
}

/// A loaded engine kept open across the loaded workloads.
struct Slot {
    kind: EngineKind,
    dir: PathBuf,
    engine: Option<Box<dyn Engine>>,
    /// Present keys `0..count` (grows with YCSB inserts).
    count: AtomicU64,
    warm: bool,
}

fn progress(len: u64, prefix: String) -> ProgressBar {
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let pb = ProgressBar::with_draw_target(Some(len), target);
    if let Ok(style) = ProgressStyle::with_template(
        "{prefix:>14} {msg:<10} [{bar:40}] {human_pos}/{human_len} {per_sec} eta {eta}",
    ) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_prefix(prefix);
    pb
}

impl Bench {
    fn record(&mut self, m: &Measured, engine: &str, workload: &str, threads: usize) {
        self.report
            .runs
            .extend(m.records(engine, workload, threads));
    }

    /// Records space and write amplification; `written` = key-value pairs the workload
    /// wrote, `live` = pairs in the data set, `io_before` = the process's write bytes when
    /// the workload began.
    fn space(
        &mut self,
        engine: &dyn Engine,
        kind: EngineKind,
        workload: &str,
        dir: &Path,
        (written, live): (u64, u64),
        io_before: Option<u64>,
    ) {
        let user_bytes = written * self.pair_bytes();
        let live_keys = live;
        let io = match (io_before, process_write_bytes()) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            _ => None,
        };
        let dir_bytes = dir_size(dir);
        let live_bytes = live_keys * (self.keys.key_size() + self.values.size()) as u64;
        self.report.space.push(SpaceRecord {
            engine: kind.name().to_string(),
            workload: workload.to_string(),
            user_bytes,
            io_write_bytes: io,
            write_amp_io: io.map(|b| b as f64 / user_bytes.max(1) as f64),
            write_amp_engine: engine.engine_write_amp(),
            dir_bytes,
            live_bytes,
            space_amp: dir_bytes as f64 / live_bytes.max(1) as f64,
        });
    }

    fn pair_bytes(&self) -> u64 {
        (self.keys.key_size() + self.values.size()) as u64
    }

    fn fresh_dir(&self, kind: EngineKind, workload: &str) -> Result<PathBuf> {
        let dir = self.root.join(format!("{}-{workload}", kind.name()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        Ok(dir)
    }

    // ---- workloads on a fresh database ------------------------------------------------

    fn run_fresh(&mut self, w: Workload) -> Result<()> {
        match w {
            Workload::Put => self.put_workload(),
            Workload::Fillseq | Workload::Fillrandom => {
                let threads = if w == Workload::Fillseq {
                    vec![1]
                } else {
                    self.settings.threads_for(w)
                };
                for t in threads {
                    for kind in self.engines.clone() {
                        self.fill(kind, w, t)?;
                    }
                }
                Ok(())
            }
            Workload::Syncwrites => {
                for t in self.settings.threads_for(w) {
                    for kind in self.engines.clone() {
                        self.syncwrites(kind, t)?;
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn put_workload(&mut self) -> Result<()> {
        let (lat, tl, elapsed) = raw_append_fdatasync(&self.root, self.settings.synced_ops)?;
        let m = Measured {
            lat: {
                let mut l: [Latency; 6] = Default::default();
                l[Op::Write.index()] = lat;
                l
            },
            tl: {
                let mut t: [Timeline; 6] = Default::default();
                t[Op::Write.index()] = tl;
                t
            },
            elapsed,
            has_background: false,
        };
        self.record(&m, "raw-4k-fdatasync", "put sync", 1);
        let threads = self.settings.threads_for(Workload::Put);
        for kind in self.engines.clone() {
            let dir = self.fresh_dir(kind, "put")?;
            let io0 = process_write_bytes();
            let engine = kind.open(&dir, &self.cfg)?;
            let mut total = 0u64;
            for &t in &threads {
                for sync in [false, true] {
                    let ops = if sync {
                        self.settings.synced_ops
                    } else {
                        self.settings.unsynced_ops
                    };
                    eprintln!(
                        "put {} x{t}: {} ({ops} per thread)",
                        if sync { "sync" } else { "nosync" },
                        kind.name()
                    );
                    let m = self.random_puts(engine.as_ref(), t, Stop::Ops(ops), sync)?;
                    total += m.count(Op::Write);
                    let label = if sync { "put sync" } else { "put nosync" };
                    self.record(&m, kind.name(), label, t);
                }
            }
            engine.flush()?;
            eprintln!("  {}: {}", kind.name(), engine.describe());
            self.space(engine.as_ref(), kind, "put", &dir, (total, total), io0);
            drop(engine);
            std::fs::remove_dir_all(&dir)?;
        }
        Ok(())
    }

    /// Unsynced or synced puts of random, practically unique keys.
    fn random_puts(
        &self,
        engine: &dyn Engine,
        threads: usize,
        stop: Stop,
        sync: bool,
    ) -> Result<Measured> {
        let seed = self.settings.seed ^ u64::from(sync);
        let (keys, values, limit) = (self.keys, &self.values, self.random_key_limit);
        run_threads(threads, 0, stop, &|t| {
            let mut rng = Rng::new(seed.wrapping_add(1000 * t as u64 + 1));
            let mut k = Vec::new();
            Box::new(move || {
                keys.present(rng.below(limit), &mut k);
                engine.put(&k, values.get(rng.next_u64()), sync)?;
                Ok(Some(Op::Write))
            })
        })
    }

    fn fill(&mut self, kind: EngineKind, w: Workload, threads: usize) -> Result<()> {
        let n = self.settings.keys;
        let name = w.name();
        eprintln!("{name} x{threads}: {} ({n} keys)", kind.name());
        let dir = self.fresh_dir(kind, &name)?;
        let io0 = process_write_bytes();
        let engine = kind.open(&dir, &self.cfg)?;
        let order: Vec<u64> = if w == Workload::Fillseq {
            (0..n).collect()
        } else {
            let mut v: Vec<u64> = (0..n).collect();
            Rng::new(self.settings.seed).shuffle(&mut v);
            v
        };
        let per = n.div_ceil(threads as u64);
        let (keys, values, order, e) = (self.keys, &self.values, &order, engine.as_ref());
        let m = run_threads(threads, 0, Stop::Ops(u64::MAX), &|t| {
            let mut i = t as u64 * per;
            let end = ((t as u64 + 1) * per).min(n);
            let mut k = Vec::new();
            Box::new(move || {
                if i >= end {
                    return Ok(None);
                }
                let idx = order[i as usize];
                keys.present(idx, &mut k);
                e.put(&k, values.get(idx), false)?;
                i += 1;
                Ok(Some(Op::Write))
            })
        })?;
        self.record(&m, kind.name(), &name, threads);
        engine.flush()?;
        eprintln!("  {}: {}", kind.name(), engine.describe());
        self.space(engine.as_ref(), kind, &name, &dir, (n, n), io0);
        drop(engine);
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }

    fn syncwrites(&mut self, kind: EngineKind, threads: usize) -> Result<()> {
        eprintln!("syncwrites x{threads}: {}", kind.name());
        let dir = self.fresh_dir(kind, "syncwrites")?;
        let io0 = process_write_bytes();
        let engine = kind.open(&dir, &self.cfg)?;
        let m = self.random_puts(engine.as_ref(), threads, self.settings.stop(), true)?;
        self.record(&m, kind.name(), "syncwrites", threads);
        let n = m.count(Op::Write);
        engine.flush()?;
        self.space(engine.as_ref(), kind, "syncwrites", &dir, (n, n), io0);
        drop(engine);
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }

    // ---- workloads on the loaded database -----------------------------------------------

    fn load(&mut self, kind: EngineKind) -> Result<Slot> {
        let n = self.settings.keys;
        let dir = self.fresh_dir(kind, "loaded")?;
        let io0 = process_write_bytes();
        let engine = kind.open(&dir, &self.cfg)?;
        let mut order: Vec<u64> = (0..n).collect();
        Rng::new(self.settings.seed ^ 0x10ad).shuffle(&mut order);
        let pb = progress(n, kind.name().to_string());
        pb.set_message("load");
        let started = Instant::now();
        let mut batch = Vec::with_capacity(1000);
        for chunk in order.chunks(1000) {
            batch.clear();
            for &i in chunk {
                let mut k = Vec::new();
                self.keys.present(i, &mut k);
                batch.push((k, self.values.get(i).to_vec()));
            }
            engine.put_batch(&batch)?;
            pb.inc(chunk.len() as u64);
        }
        pb.set_message("compact");
        engine.compact()?;
        pb.finish_and_clear();
        eprintln!(
            "load: {} {n} keys in {:.1} s (with compaction); {}",
            kind.name(),
            started.elapsed().as_secs_f64(),
            engine.describe()
        );
        self.space(engine.as_ref(), kind, "load+compact", &dir, (n, n), io0);
        Ok(Slot {
            kind,
            dir,
            engine: Some(engine),
            count: AtomicU64::new(n),
            warm: false,
        })
    }

    fn warm(&self, slot: &mut Slot) -> Result<()> {
        if slot.warm {
            return Ok(());
        }
        let engine = slot.engine.as_deref().ok_or("engine is closed")?;
        let seen = engine.scan(b"", usize::MAX)? as u64;
        let expected = slot.count.load(Ordering::Relaxed);
        if seen != expected {
            eprintln!(
                "warning: {} holds {seen} keys where {expected} were written",
                slot.kind.name()
            );
        }
        slot.warm = true;
        Ok(())
    }

    fn run_loaded(&mut self, w: Workload, slots: &mut [Slot]) -> Result<()> {
        let dists: Vec<Option<Distribution>> = if w.is_ycsb() {
            self.settings.dists.iter().copied().map(Some).collect()
        } else {
            vec![None]
        };
        for t in self.settings.threads_for(w) {
            for &dist in &dists {
                let label = match dist {
                    Some(d) => format!("{}/{}", w.name(), d.label()),
                    None => w.name(),
                };
                for slot in slots.iter_mut() {
                    let extra = if w == Workload::Readwhilewriting {
                        " + 1 writer"
                    } else {
                        ""
                    };
                    eprintln!("{label} x{t}{extra}: {}", slot.kind.name());
                    if w == Workload::Readcold {
                        // Close, reopen with a tiny cache, read, close, reopen as before.
                        slot.engine = None;
                        let cold = slot.kind.open(&slot.dir, &self.cold_cfg)?;
                        let m = self.loaded_workload(w, cold.as_ref(), slot, t, dist)?;
                        self.record(&m, slot.kind.name(), &label, t);
                        drop(cold);
                        slot.engine = Some(slot.kind.open(&slot.dir, &self.cfg)?);
                        slot.warm = false;
                        continue;
                    }
                    self.warm(slot)?;
                    let engine = slot.engine.as_deref().ok_or("engine is closed")?;
                    let io0 = process_write_bytes();
                    let m = self.loaded_workload(w, engine, slot, t, dist)?;
                    self.record(&m, slot.kind.name(), &label, t);
                    if w.writes() {
                        let written = m.count(Op::Write) + m.count(Op::Insert) + m.count(Op::Rmw);
                        let live = slot.count.load(Ordering::Relaxed);
                        self.space(engine, slot.kind, &label, &slot.dir, (written, live), io0);
                        eprintln!("  {}: {}", slot.kind.name(), engine.describe());
                        engine.compact()?;
                        slot.warm = false;
                    }
                }
            }
        }
        Ok(())
    }

    fn loaded_workload(
        &self,
        w: Workload,
        engine: &dyn Engine,
        slot: &Slot,
        threads: usize,
        dist: Option<Distribution>,
    ) -> Result<Measured> {
        let stop = self.settings.stop();
        let seed = self.settings.seed ^ ((w as u64) << 8);
        let (keys, values, count) = (self.keys, &self.values, &slot.count);
        let scan_len = self.settings.scan_len;
        let rng_for = |t: usize| Rng::new(seed.wrapping_add(7919 * t as u64 + 1));
        match w {
            Workload::Readrandom | Workload::Readcold => run_threads(threads, 0, stop, &|t| {
                let mut rng = rng_for(t);
                let mut k = Vec::new();
                Box::new(move || {
                    keys.present(rng.below(count.load(Ordering::Relaxed)), &mut k);
                    engine.get(&k)?.ok_or("a present key was not found")?;
                    Ok(Some(Op::Read))
                })
            }),
            Workload::Readmissing => run_threads(threads, 0, stop, &|t| {
                let mut rng = rng_for(t);
                let mut k = Vec::new();
                Box::new(move || {
                    keys.absent(rng.below(count.load(Ordering::Relaxed)), &mut k);
                    if engine.get(&k)?.is_some() {
                        return Err("an absent key was found".into());
                    }
                    Ok(Some(Op::Miss))
                })
            }),
            Workload::Scan => run_threads(threads, 0, stop, &|t| {
                let mut rng = rng_for(t);
                let mut k = Vec::new();
                Box::new(move || {
                    keys.present(rng.below(count.load(Ordering::Relaxed)), &mut k);
                    engine.scan(&k, scan_len)?;
                    Ok(Some(Op::Scan))
                })
            }),
            Workload::Readwhilewriting => run_threads(threads, 1, stop, &|t| {
                let mut rng = rng_for(t);
                let mut k = Vec::new();
                let writer = t == threads;
                Box::new(move || {
                    let i = rng.below(count.load(Ordering::Relaxed));
                    keys.present(i, &mut k);
                    if writer {
                        engine.put(&k, values.get(rng.next_u64()), false)?;
                        Ok(Some(Op::Write))
                    } else {
                        engine.get(&k)?.ok_or("a present key was not found")?;
                        Ok(Some(Op::Read))
                    }
                })
            }),
            Workload::Mixed => run_threads(threads, 0, stop, &|t| {
                let mut rng = rng_for(t);
                let mut k = Vec::new();
                Box::new(move || {
                    keys.present(rng.below(count.load(Ordering::Relaxed)), &mut k);
                    if rng.below(2) == 0 {
                        engine.get(&k)?.ok_or("a present key was not found")?;
                        Ok(Some(Op::Read))
                    } else {
                        engine.put(&k, values.get(rng.next_u64()), false)?;
                        Ok(Some(Op::Write))
                    }
                })
            }),
            _ if w.is_ycsb() => {
                let dist = dist.unwrap_or(Distribution::Uniform);
                let mix = YcsbMix::of(w);
                let items = count.load(Ordering::Relaxed);
                let chooser = KeyChooser::new(dist, w == Workload::YcsbD, items);
                run_threads(threads, 0, stop, &|t| {
                    let mut rng = rng_for(t);
                    let mut chooser = chooser.clone();
                    let mut k = Vec::new();
                    Box::new(move || {
                        let r = rng.next_f64();
                        let present = count.load(Ordering::Relaxed);
                        if r < mix.insert {
                            // New keys extend the key space; readers see them once acked.
                            let i = count.fetch_add(1, Ordering::AcqRel);
                            keys.present(i, &mut k);
                            engine.put(&k, values.get(i), false)?;
                            return Ok(Some(Op::Insert));
                        }
                        keys.present(chooser.next(&mut rng, present), &mut k);
                        let r = r - mix.insert;
                        if r < mix.read {
                            engine.get(&k)?;
                            Ok(Some(Op::Read))
                        } else if r < mix.read + mix.update {
                            engine.put(&k, values.get(rng.next_u64()), false)?;
                            Ok(Some(Op::Write))
                        } else if r < mix.read + mix.update + mix.scan {
                            engine.scan(&k, rng.range_inclusive(1, 100) as usize)?;
                            Ok(Some(Op::Scan))
                        } else {
                            std::hint::black_box(engine.get(&k)?);
                            engine.put(&k, values.get(rng.next_u64()), false)?;
                            Ok(Some(Op::Rmw))
                        }
                    })
                })
            }
            _ => Err(format!("{} is not a loaded workload", w.name()).into()),
        }
    }
}

/// YCSB core workload proportions (insert, read, update, scan; read-modify-write is the rest).
#[derive(Debug, Clone, Copy)]
struct YcsbMix {
    insert: f64,
    read: f64,
    update: f64,
    scan: f64,
}

impl YcsbMix {
    fn of(w: Workload) -> Self {
        let (insert, read, update, scan) = match w {
            Workload::YcsbA => (0.0, 0.5, 0.5, 0.0),
            Workload::YcsbB => (0.0, 0.95, 0.05, 0.0),
            Workload::YcsbC => (0.0, 1.0, 0.0, 0.0),
            Workload::YcsbD => (0.05, 0.95, 0.0, 0.0),
            Workload::YcsbE => (0.05, 0.0, 0.0, 0.95),
            // F: 50% reads, 50% read-modify-writes.
            _ => (0.0, 0.5, 0.0, 0.0),
        };
        Self {
            insert,
            read,
            update,
            scan,
        }
    }
}

fn raw_append_fdatasync(dir: &Path, ops: u64) -> Result<(Latency, Timeline, Duration)> {
    let path = dir.join("raw-append.bin");
    let mut f = std::fs::File::create(&path)?;
    let block = vec![0xa5u8; 4096];
    let mut lat = Latency::new();
    let mut tl = Timeline::default();
    let start = Instant::now();
    for _ in 0..ops {
        let t0 = Instant::now();
        f.write_all(&block)?;
        f.sync_data()?;
        let t1 = Instant::now();
        lat.record(t1 - t0);
        tl.tick(t1 - start);
    }
    let elapsed = start.elapsed();
    drop(f);
    std::fs::remove_file(&path)?;
    Ok((lat, tl, elapsed))
}

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
