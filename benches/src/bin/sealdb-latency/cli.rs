//! The command line: workloads, options, and the settings they resolve to.

use crate::measure::Stop;
use clap::{Parser, ValueEnum};
use sealdb_benches::rng::Distribution;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Workload {
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
    pub(crate) const CONCRETE: [Workload; 16] = [
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

    pub(crate) fn name(self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_string())
            .unwrap_or_default()
    }

    /// Runs on a fresh, empty database.
    pub(crate) fn is_fresh(self) -> bool {
        matches!(
            self,
            Self::Put | Self::Fillseq | Self::Fillrandom | Self::Syncwrites
        )
    }

    /// Changes the loaded data set (so the engine is compacted afterwards).
    pub(crate) fn writes(self) -> bool {
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

    pub(crate) fn is_ycsb(self) -> bool {
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
pub(crate) struct Args {
    /// Workloads to run (in a fixed order, whatever order they are given in).
    #[arg(required = true, value_enum)]
    pub(crate) workloads: Vec<Workload>,
    /// Small preset: 100k keys, 2 s per measurement, fewer puts.
    #[arg(long)]
    pub(crate) quick: bool,
    /// Keys loaded for the read workloads (and written by fillseq/fillrandom) [default:
    /// 1000000, 100000 with --quick].
    #[arg(long)]
    pub(crate) keys: Option<u64>,
    /// Key size in bytes (at least 8).
    #[arg(long, default_value_t = 16)]
    pub(crate) key_size: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    pub(crate) value_size: usize,
    /// Thread counts to run each workload with, comma-separated [default: 1; put 1,4; mixed 2].
    #[arg(long, value_delimiter = ',')]
    pub(crate) threads: Option<Vec<usize>>,
    /// Seconds per measurement of the time-bounded workloads [default: 10, 2 with --quick].
    #[arg(long, conflicts_with = "ops")]
    pub(crate) duration: Option<f64>,
    /// Operations per thread instead of a duration.
    #[arg(long)]
    pub(crate) ops: Option<u64>,
    /// Engines, comma-separated: sealdb-chacha,sealdb-aes,sealdb-none,fjall,rocksdb [default:
    /// all compiled in]. `SEALDB_SEAL_BACKEND=reference` runs sealdb-chacha on the reference
    /// ChaCha20-Poly1305 crate instead of ring.
    #[arg(long, value_delimiter = ',')]
    pub(crate) engines: Option<Vec<String>>,
    /// Block cache budget of every engine, MiB.
    #[arg(long, default_value_t = 256)]
    pub(crate) cache_mb: usize,
    /// Block cache of the `readcold` reopen, KiB.
    #[arg(long, default_value_t = 1024)]
    pub(crate) cold_cache_kb: usize,
    /// Entries per `scan`.
    #[arg(long, default_value_t = 100)]
    pub(crate) scan_len: usize,
    /// Key distributions for the YCSB workloads, comma-separated.
    #[arg(long, value_delimiter = ',', default_values = ["uniform", "zipfian"])]
    pub(crate) dist: Vec<DistArg>,
    /// Unsynced puts per thread in `put` [default: 200000, 50000 with --quick].
    #[arg(long)]
    pub(crate) unsynced_ops: Option<u64>,
    /// Synced puts per thread in `put` (also the raw append+fdatasync count) [default: 3000,
    /// 1000 with --quick].
    #[arg(long)]
    pub(crate) synced_ops: Option<u64>,
    /// Write every result (percentiles, curves, per-second throughput) as JSON.
    #[arg(long)]
    pub(crate) json: Option<PathBuf>,
    /// Write SVG plots (latency-percentile curves, throughput over time) into this directory.
    #[arg(long)]
    pub(crate) plots: Option<PathBuf>,
    /// Also write the tables as Markdown to this file.
    #[arg(long)]
    pub(crate) markdown: Option<PathBuf>,
    /// Directory for the databases (a fresh temporary directory by default; it must be on
    /// the disk you mean to measure, not tmpfs).
    #[arg(long)]
    pub(crate) dir: Option<PathBuf>,
    /// Seed for key choice and values.
    #[arg(long, default_value_t = 42)]
    pub(crate) seed: u64,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub(crate) enum DistArg {
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
pub(crate) struct Settings {
    pub(crate) keys: u64,
    pub(crate) duration: Duration,
    pub(crate) ops: Option<u64>,
    pub(crate) unsynced_ops: u64,
    pub(crate) synced_ops: u64,
    pub(crate) threads: Option<Vec<usize>>,
    pub(crate) scan_len: usize,
    pub(crate) dists: Vec<Distribution>,
    pub(crate) seed: u64,
}

impl Settings {
    pub(crate) fn stop(&self) -> Stop {
        match self.ops {
            Some(n) => Stop::Ops(n),
            None => Stop::Time(self.duration),
        }
    }

    pub(crate) fn threads_for(&self, w: Workload) -> Vec<usize> {
        self.threads.clone().unwrap_or_else(|| w.default_threads())
    }
}
