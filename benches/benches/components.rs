//! One component at a time, each under both ciphers where a cipher is involved, so the cost of
//! sealing shows per layer: table build (block encode + seal), table point reads through the
//! block cache and without it (read + authenticate + decrypt + decode a block every time),
//! decoding one real data block, the bloom filter, memtable insert and get, and WAL appends.
//! Run: `cargo bench -p sealdb-benches --bench components`.

#![allow(
    missing_docs,
    reason = "criterion's macros generate undocumented items"
)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sealdb_crypto::{ArtifactKind, CipherId, DatabaseId, Expected, Keyring};
use sealdb_memtable::{Memtable, ValueKind as MemKind};
use sealdb_sstable::{BlockCache, Table, TableBuilder, TableOptions, ValueKind};
use sealdb_vfs::{FileSystem, RealFs};
use sealdb_wal::{BatchBuilder, FrameBatch, Wal, WalOptions};
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const CIPHERS: [(&str, CipherId); 2] = [
    ("chacha", CipherId::ChaCha20Poly1305),
    ("none", CipherId::None),
];
/// Entries in the small benchmark table (about 40 data blocks of 4 KiB).
const TABLE_ENTRIES: u64 = 1500;
const VALUE: [u8; 100] = [0x5a; 100];

fn key(i: u64) -> Vec<u8> {
    format!("{:016}", i * 2).into_bytes()
}

fn absent_key(i: u64) -> Vec<u8> {
    format!("{:016}", i * 2 + 1).into_bytes()
}

fn keyring() -> Keyring {
    Keyring::generate(DatabaseId([7; 16])).expect("keyring")
}

fn build_table(fs: &dyn FileSystem, path: &Path, keyring: &Keyring, cipher: CipherId) {
    let opts = TableOptions {
        cipher,
        ..TableOptions::default()
    };
    let mut b = TableBuilder::create(fs, path, keyring, &opts).expect("create table");
    for i in 0..TABLE_ENTRIES {
        b.add(&key(i), 1, ValueKind::Put, &VALUE).expect("add");
    }
    b.finish().expect("finish table");
}

fn open_table(
    fs: &dyn FileSystem,
    path: &Path,
    keyring: &Keyring,
    cipher: CipherId,
    cache: Option<Arc<BlockCache>>,
) -> Arc<Table> {
    let expected = Expected {
        kind: ArtifactKind::Table,
        database_id: keyring.database_id(),
        cipher: Some(cipher),
    };
    Table::open(fs, path, keyring, &expected, cache).expect("open table")
}

fn bench_sstable(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = RealFs;
    let keyring = keyring();
    let mut group = c.benchmark_group("sstable");
    for (name, cipher) in CIPHERS {
        // Build: encode every block, seal it, append it (to the OS cache).
        let mut n = 0u64;
        group.throughput(Throughput::Elements(TABLE_ENTRIES));
        group.bench_function(BenchmarkId::new("build_1500_entries", name), |b| {
            b.iter(|| {
                n += 1;
                let path = dir.path().join(format!("build-{name}-{n}.sst"));
                build_table(&fs, &path, &keyring, cipher);
                fs.remove_file(&path).expect("remove");
            })
        });

        let path = dir.path().join(format!("read-{name}.sst"));
        build_table(&fs, &path, &keyring, cipher);
        group.throughput(Throughput::Elements(1));
        let cached = open_table(
            &fs,
            &path,
            &keyring,
            cipher,
            Some(BlockCache::new(64 << 20)),
        );
        let mut i = 0u64;
        group.bench_function(BenchmarkId::new("get_cached", name), |b| {
            b.iter(|| {
                i = (i + 7) % TABLE_ENTRIES;
                black_box(cached.get(&key(i), u64::MAX).expect("get"));
            })
        });
        // No cache: every get preads, authenticates, decrypts and decodes a 4 KiB block.
        let uncached = open_table(&fs, &path, &keyring, cipher, None);
        group.bench_function(BenchmarkId::new("get_uncached", name), |b| {
            b.iter(|| {
                i = (i + 7) % TABLE_ENTRIES;
                black_box(uncached.get(&key(i), u64::MAX).expect("get"));
            })
        });
    }
    group.finish();
}

fn bench_block_decode(c: &mut Criterion) {
    // A real data block: the plaintext of a table's first sealed block (data block 0), read
    // back through the sealed-file reader so the bench does not depend on the block framing.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("plain.sst");
    let keyring = keyring();
    build_table(&RealFs, &path, &keyring, CipherId::ChaCha20Poly1305);
    let expected = Expected {
        kind: ArtifactKind::Table,
        database_id: keyring.database_id(),
        cipher: Some(CipherId::ChaCha20Poly1305),
    };
    let reader = sealdb_crypto::SealedReader::open(&RealFs, &path, &keyring, &expected)
        .expect("open sealed table");
    let (_, first) = reader
        .blocks()
        .next()
        .expect("a first block")
        .expect("first block opens");
    let block = first.data;
    let entries = sealdb_sstable::decode_data_block_for_fuzz(&block).expect("decode real block");
    let mut group = c.benchmark_group("block");
    group.throughput(Throughput::Elements(entries as u64));
    group.bench_function(format!("decode_data_block_{entries}_entries"), |b| {
        b.iter(|| {
            black_box(sealdb_sstable::decode_data_block_for_fuzz(black_box(
                &block,
            )))
        })
    });
    group.finish();
}

fn bench_bloom(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bloom.sst");
    let keyring = keyring();
    build_table(&RealFs, &path, &keyring, CipherId::ChaCha20Poly1305);
    let table = open_table(&RealFs, &path, &keyring, CipherId::ChaCha20Poly1305, None);
    let present: Vec<Vec<u8>> = (0..TABLE_ENTRIES).map(key).collect();
    let absent: Vec<Vec<u8>> = (0..TABLE_ENTRIES).map(absent_key).collect();
    let false_positives = absent.iter().filter(|k| table.may_contain(k)).count();
    eprintln!(
        "bloom: {false_positives} of {TABLE_ENTRIES} absent keys pass the filter ({:.2}%)",
        100.0 * false_positives as f64 / TABLE_ENTRIES as f64
    );
    let mut group = c.benchmark_group("bloom");
    let mut i = 0usize;
    group.bench_function("may_contain_present", |b| {
        b.iter(|| {
            i = (i + 1) % present.len();
            black_box(table.may_contain(&present[i]))
        })
    });
    group.bench_function("may_contain_absent", |b| {
        b.iter(|| {
            i = (i + 1) % absent.len();
            black_box(table.may_contain(&absent[i]))
        })
    });
    group.finish();
}

fn bench_memtable(c: &mut Criterion) {
    const N: u64 = 100_000;
    let keys: Vec<Vec<u8>> = (0..N)
        .map(|i| key(i.wrapping_mul(0x9E37_79B9) % (N * 8)))
        .collect();
    let mut group = c.benchmark_group("memtable");
    group.throughput(Throughput::Elements(1));
    // A fresh memtable every N inserts, so the map stays at a realistic size and memory flat.
    group.bench_function("insert", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut done = 0u64;
            while done < iters {
                let m = Memtable::new(1);
                let batch = (iters - done).min(N);
                let start = Instant::now();
                for (seq, k) in keys.iter().take(batch as usize).enumerate() {
                    m.insert(k, seq as u64 + 1, MemKind::Put, &VALUE)
                        .expect("insert");
                }
                total += start.elapsed();
                done += batch;
            }
            total
        })
    });
    let m = Memtable::new(1);
    for (seq, k) in keys.iter().enumerate() {
        m.insert(k, seq as u64 + 1, MemKind::Put, &VALUE)
            .expect("insert");
    }
    let mut i = 0usize;
    group.bench_function("get_100k", |b| {
        b.iter(|| {
            i = (i + 7919) % keys.len();
            black_box(m.get(&keys[i], u64::MAX))
        })
    });
    group.finish();
}

fn bench_wal(c: &mut Criterion) {
    let mut group = c.benchmark_group("wal");
    group.throughput(Throughput::Elements(1));
    for (name, cipher) in CIPHERS {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = WalOptions {
            cipher,
            ..WalOptions::default()
        };
        let (wal, _) = Wal::open(
            RealFs::shared(),
            dir.path(),
            keyring(),
            opts,
            0,
            &mut |_| Ok(()),
        )
        .expect("open wal");
        let mut seq = 1u64;
        let mut batch = BatchBuilder::new();
        let k = key(1);
        group.bench_function(BenchmarkId::new("append_1_record_nosync", name), |b| {
            b.iter(|| {
                // Encoding the one-record batch is part of every commit; it costs the same
                // under both ciphers.
                batch.clear();
                batch.put(0, &k, &VALUE).expect("record");
                let frame = FrameBatch {
                    first_seq: seq,
                    count: 1,
                    rep: batch.rep(),
                    commit_time_ms: 0,
                };
                wal.append(&[frame], false).expect("append");
                seq += 1;
            })
        });
        // Old segments would pile up in the temporary directory: drop everything appended.
        wal.remove_obsolete(seq).expect("remove obsolete segments");
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_sstable, bench_block_decode, bench_bloom, bench_memtable, bench_wal
}
criterion_main!(benches);
