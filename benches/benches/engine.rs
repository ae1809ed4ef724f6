//! Point reads, scans and unsynced puts through the public API (`sealdb::Db`), encrypted and
//! plaintext, on a database of 100k keys (16 B keys, 100 B values) flushed and compacted to
//! tables, with the block cache warm. Means and confidence intervals only: tails are the
//! latency harness's job (`sealdb-latency`).
//! Run: `cargo bench -p sealdb-benches --bench engine`.

#![allow(
    missing_docs,
    reason = "criterion's macros generate undocumented items"
)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sealdb::{CipherId, Db, Options, WriteOptions};
use std::hint::black_box;
use std::ops::Bound;
use std::time::Duration;

const KEYS: u64 = 100_000;
const VALUE: [u8; 100] = [0x5a; 100];

fn key(i: u64) -> Vec<u8> {
    format!("{:016}", i * 2).into_bytes()
}

/// A step through the key space that visits keys in a scattered order.
fn next(i: u64) -> u64 {
    (i + 7919) % KEYS
}

fn bench_engine(c: &mut Criterion) {
    let keystore = tempfile::tempdir().expect("keystore");
    let mut group = c.benchmark_group("engine");
    for (name, cipher) in [
        ("chacha", CipherId::ChaCha20Poly1305),
        ("none", CipherId::None),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = Options {
            cipher,
            keystore_dir: Some(keystore.path().to_path_buf()),
            block_cache_bytes: 256 << 20,
            ..Options::default()
        };
        let db = Db::open(dir.path().join("db"), opts).expect("open");
        let ks = db.default_keyspace();
        for chunk in (0..KEYS).collect::<Vec<_>>().chunks(1000) {
            let mut batch = sealdb::WriteBatch::new();
            for &i in chunk {
                batch.put(&ks, &key(i), &VALUE).expect("batch put");
            }
            db.write(batch, WriteOptions::NO_SYNC).expect("write");
        }
        db.compact().expect("compact");
        // Warm the block cache with one full scan.
        let n = ks.iter().expect("iter").count() as u64;
        assert_eq!(n, KEYS);

        group.throughput(Throughput::Elements(1));
        let mut i = 0u64;
        group.bench_function(BenchmarkId::new("get_present", name), |b| {
            b.iter(|| {
                i = next(i);
                black_box(ks.get(&key(i)).expect("get"))
            })
        });
        group.bench_function(BenchmarkId::new("get_absent", name), |b| {
            b.iter(|| {
                i = next(i);
                // Odd numbers are never written: the bloom filter turns them away.
                let absent = format!("{:016}", i * 2 + 1).into_bytes();
                black_box(ks.get(&absent).expect("get"))
            })
        });
        group.throughput(Throughput::Elements(100));
        group.bench_function(BenchmarkId::new("scan_100", name), |b| {
            b.iter(|| {
                i = next(i);
                let it = ks
                    .range(Bound::Included(key(i)), Bound::Unbounded)
                    .expect("range");
                let mut n = 0;
                for kv in it.take(100) {
                    black_box(kv.expect("entry"));
                    n += 1;
                }
                n
            })
        });
        group.throughput(Throughput::Elements(1));
        let mut w = 0u64;
        group.bench_function(BenchmarkId::new("put_nosync", name), |b| {
            b.iter(|| {
                w = next(w);
                ks.put_opt(&key(w), &VALUE, WriteOptions::NO_SYNC)
                    .expect("put")
            })
        });
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_engine
}
criterion_main!(benches);
