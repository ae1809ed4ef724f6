//! The latency harness: runs workloads against sealdb encrypted and sealdb plaintext (the
//! `none` cipher) in the same run, records every operation in an HDR histogram, and prints
//! p50/p99/p99.9/max and throughput with the encrypted/plaintext ratio.
//!
//! `cargo run --release -p sealdb-benches --bin sealdb-latency -- put`

use clap::{Parser, ValueEnum};
use sealdb::{CipherId, Db, Options, WriteOptions};
use sealdb_benches::Latency;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Workload {
    /// Puts, unsynced and synced, 1 and 4 writer threads, plus raw append+fdatasync.
    Put,
}

#[derive(Debug, Parser)]
#[command(about = "sealdb latency harness (HDR histograms, side-by-side engines)")]
struct Args {
    /// What to run.
    workload: Workload,
    /// Unsynced puts per thread.
    #[arg(long, default_value_t = 200_000)]
    unsynced_ops: u64,
    /// Synced puts per thread.
    #[arg(long, default_value_t = 3_000)]
    synced_ops: u64,
    /// Key size in bytes.
    #[arg(long, default_value_t = 16)]
    key_size: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Directory for the databases (a fresh temporary directory by default).
    #[arg(long)]
    dir: Option<PathBuf>,
}

struct Row {
    engine: &'static str,
    test: String,
    lat: Latency,
    elapsed: Duration,
}

fn key(i: u64, size: usize) -> Vec<u8> {
    // A scrambled counter: random-looking insertion order without a generator.
    let x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17);
    let mut k = format!("{x:016x}").into_bytes();
    k.resize(size, b'k');
    k
}

fn open(dir: &Path, keystore: &Path, cipher: CipherId) -> Db {
    let opts = Options {
        cipher,
        keystore_dir: Some(keystore.to_path_buf()),
        max_immutable_memtables: usize::MAX,
        ..Options::default()
    };
    Db::open(dir, opts).expect("open database")
}

fn run_puts(db: &Db, threads: u64, ops: u64, sync: bool, args: &Args, base: u64) -> (Latency, Duration) {
    let value = vec![0x5au8; args.value_size];
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let db = db.clone();
            let value = value.clone();
            let key_size = args.key_size;
            std::thread::spawn(move || {
                let ks = db.default_keyspace();
                let mut lat = Latency::new();
                for i in 0..ops {
                    let k = key(base + t * ops + i, key_size);
                    let t0 = Instant::now();
                    ks.put_opt(&k, &value, WriteOptions { sync }).expect("put");
                    lat.record(t0.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut all = Latency::new();
    for h in handles {
        all.merge(&h.join().expect("writer thread"));
    }
    (all, start.elapsed())
}

fn raw_append_fdatasync(dir: &Path, ops: u64) -> (Latency, Duration) {
    let path = dir.join("raw-append.bin");
    let mut f = std::fs::File::create(&path).expect("create raw file");
    let block = vec![0xa5u8; 4096];
    let mut lat = Latency::new();
    let start = Instant::now();
    for _ in 0..ops {
        let t0 = Instant::now();
        f.write_all(&block).expect("write");
        f.sync_data().expect("fdatasync");
        lat.record(t0.elapsed());
    }
    let elapsed = start.elapsed();
    let _ = std::fs::remove_file(&path);
    (lat, elapsed)
}

fn main() {
    let args = Args::parse();
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = args.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&root).expect("create bench directory");
    let keystore = tempfile::tempdir().expect("keystore");
    let mut rows: Vec<Row> = Vec::new();
    match args.workload {
        Workload::Put => {
            let (lat, elapsed) = raw_append_fdatasync(&root, args.synced_ops);
            rows.push(Row { engine: "raw", test: "4KiB append+fdatasync".into(), lat, elapsed });
            for (name, cipher) in [("sealdb-chacha", CipherId::ChaCha20Poly1305), ("sealdb-none", CipherId::None)] {
                let dir = root.join(name);
                let db = open(&dir, keystore.path(), cipher);
                let mut base = 0;
                for threads in [1u64, 4] {
                    for sync in [false, true] {
                        let ops = if sync { args.synced_ops } else { args.unsynced_ops };
                        let (lat, elapsed) = run_puts(&db, threads, ops, sync, &args, base);
                        base += threads * ops;
                        rows.push(Row {
                            engine: name,
                            test: format!("put {} x{threads}", if sync { "sync" } else { "nosync" }),
                            lat,
                            elapsed,
                        });
                    }
                }
                eprintln!("{name}: {:?}", db.stats());
            }
        }
    }
    print_table(&rows);
}

fn print_table(rows: &[Row]) {
    println!(
        "{:<14} {:<24} {:>9} {:>9} {:>9} {:>10} {:>12} {:>10}",
        "engine", "test", "p50 us", "p99 us", "p99.9 us", "max us", "ops/s", "p99 ratio"
    );
    for r in rows {
        let ops_per_sec = r.lat.count() as f64 / r.elapsed.as_secs_f64().max(1e-9);
        // Ratio of this row's p99 to the encrypted engine's p99 on the same test.
        let reference = rows
            .iter()
            .find(|x| x.engine == "sealdb-chacha" && x.test == r.test)
            .map(|x| x.lat.quantile_us(0.99));
        let ratio = reference
            .filter(|p| *p > 0.0)
            .map(|p| format!("{:.2}", r.lat.quantile_us(0.99) / p))
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<14} {:<24} {} {:>12.0} {:>10}",
            r.engine,
            r.test,
            r.lat.summary(),
            ops_per_sec,
            ratio
        );
    }
}
