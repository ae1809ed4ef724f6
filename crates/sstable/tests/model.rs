//! Model check: a table built from random entries answers every query exactly as a sorted
//! `Vec` (the model) does, under every combination of block size, compression, cipher,
//! filter and cache.

mod common;

use common::*;
use proptest::prelude::*;
use sealdb_crypto::CipherId;
use sealdb_sstable::{BlockCache, Compression, Entry, TableOptions, ValueKind};
use sealdb_vfs::CrashFs;
use std::ops::Bound;

fn key_strategy() -> impl Strategy<Value = Vec<u8>> {
    // A small alphabet and short keys: many shared prefixes, repeated keys and exact hits
    // for bounds and seeks.
    prop::collection::vec(prop::sample::select(vec![b'a', b'b', b'c', b'd']), 0..5)
}

fn entries_strategy() -> impl Strategy<Value = Vec<Entry>> {
    prop::collection::vec(
        (
            key_strategy(),
            0u64..40,
            prop::bool::weighted(0.8),
            prop::collection::vec(any::<u8>(), 0..24),
        ),
        0..160,
    )
    .prop_map(|raw| {
        normalize(
            raw.into_iter()
                .map(|(k, s, put, v)| {
                    let kind = if put {
                        ValueKind::Put
                    } else {
                        ValueKind::Delete
                    };
                    let v = if put { v } else { Vec::new() };
                    entry(&k, s, kind, &v)
                })
                .collect(),
        )
    })
}

fn bound_strategy() -> impl Strategy<Value = Bound<Vec<u8>>> {
    prop_oneof![
        Just(Bound::Unbounded),
        key_strategy().prop_map(Bound::Included),
        key_strategy().prop_map(Bound::Excluded),
    ]
}

#[derive(Debug, Clone)]
enum Op {
    Next,
    NextBack,
    Seek(Vec<u8>),
    SeekBack(Vec<u8>),
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Next),
        4 => Just(Op::NextBack),
        1 => key_strategy().prop_map(Op::Seek),
        1 => key_strategy().prop_map(Op::SeekBack),
    ]
}

#[derive(Debug, Clone)]
struct Config {
    block_size: usize,
    compression: Compression,
    cipher: CipherId,
    bloom_bits_per_key: u32,
    cache: bool,
}

fn config_strategy() -> impl Strategy<Value = Config> {
    (
        prop::sample::select(vec![1usize, 40, 128, 4096]),
        prop::bool::ANY,
        prop::bool::ANY,
        prop::sample::select(vec![0u32, 4, 10]),
        prop::bool::ANY,
    )
        .prop_map(
            |(block_size, lz4, chacha, bloom_bits_per_key, cache)| Config {
                block_size,
                compression: if lz4 {
                    Compression::Lz4
                } else {
                    Compression::None
                },
                cipher: if chacha {
                    CipherId::ChaCha20Poly1305
                } else {
                    CipherId::None
                },
                bloom_bits_per_key,
                cache,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn table_matches_model(
        entries in entries_strategy(),
        config in config_strategy(),
        lower in bound_strategy(),
        upper in bound_strategy(),
        ops in prop::collection::vec(op_strategy(), 0..60),
        probes in prop::collection::vec((key_strategy(), 0u64..45), 0..40),
    ) {
        let fs = CrashFs::new();
        let kr = keyring(1);
        let opts = TableOptions {
            block_size: config.block_size,
            bloom_bits_per_key: config.bloom_bits_per_key,
            compression: config.compression,
            cipher: config.cipher,
            ..TableOptions::default()
        };
        let meta = build(&fs, &kr, &opts, &entries);
        let cache = config.cache.then(|| BlockCache::new(64 << 10));
        let table = open(&fs, &kr, config.cipher, cache);

        // Metadata.
        prop_assert_eq!(table.meta(), &meta);
        prop_assert_eq!(meta.entries, entries.len() as u64);
        prop_assert_eq!(
            meta.tombstones,
            entries.iter().filter(|e| e.kind == ValueKind::Delete).count() as u64
        );
        if let (Some(first), Some(last)) = (entries.first(), entries.last()) {
            prop_assert_eq!(&meta.smallest, &first.key);
            prop_assert_eq!(&meta.largest, &last.key);
            prop_assert_eq!(meta.min_seq, entries.iter().map(|e| e.seq).min().unwrap_or(0));
            prop_assert_eq!(meta.max_seq, entries.iter().map(|e| e.seq).max().unwrap_or(0));
        }
        prop_assert!(table.verify().is_empty());

        // Full scans both ways.
        let all: Vec<Entry> = table
            .iter(Bound::Unbounded, Bound::Unbounded)
            .collect::<Result<_, _>>()
            .expect("scan");
        prop_assert_eq!(&all, &entries);
        let rev: Vec<Entry> = table
            .iter(Bound::Unbounded, Bound::Unbounded)
            .rev()
            .collect::<Result<_, _>>()
            .expect("reverse scan");
        let mut model_rev = entries.clone();
        model_rev.reverse();
        prop_assert_eq!(&rev, &model_rev);

        // Bounded scans.
        let in_range: Vec<Entry> = entries
            .iter()
            .filter(|e| in_bounds(&e.key, &lower, &upper))
            .cloned()
            .collect();
        let fwd: Vec<Entry> = table
            .iter(lower.clone(), upper.clone())
            .collect::<Result<_, _>>()
            .expect("bounded scan");
        prop_assert_eq!(&fwd, &in_range);
        let bwd: Vec<Entry> = table
            .iter(lower.clone(), upper.clone())
            .rev()
            .collect::<Result<_, _>>()
            .expect("bounded reverse scan");
        let mut in_range_rev = in_range.clone();
        in_range_rev.reverse();
        prop_assert_eq!(&bwd, &in_range_rev);

        // Interleaved ends and seeks against a model of the remaining range `f..b`.
        let mut it = table.iter(lower.clone(), upper.clone());
        let (mut f, mut b) = (0usize, in_range.len());
        for op in &ops {
            match op {
                Op::Next => {
                    let got = it.next().transpose().expect("next");
                    let want = (f < b).then(|| in_range[f].clone());
                    if want.is_some() {
                        f += 1;
                    }
                    prop_assert_eq!(got, want, "next after {:?}", op);
                }
                Op::NextBack => {
                    let got = it.next_back().transpose().expect("next_back");
                    let want = (b > f).then(|| in_range[b - 1].clone());
                    if want.is_some() {
                        b -= 1;
                    }
                    prop_assert_eq!(got, want);
                }
                Op::Seek(k) => {
                    it.seek(k);
                    f = in_range.partition_point(|e| e.key.as_slice() < k.as_slice());
                }
                Op::SeekBack(k) => {
                    it.seek_back(k);
                    b = in_range.partition_point(|e| e.key.as_slice() <= k.as_slice());
                }
            }
        }

        // Point lookups at snapshots, present and absent keys alike.
        for e in &entries {
            prop_assert!(table.may_contain(&e.key));
        }
        for (k, snap) in &probes {
            prop_assert_eq!(table.get(k, *snap).expect("get"), model_get(&entries, k, *snap));
        }
        for e in &entries {
            prop_assert_eq!(
                table.get(&e.key, e.seq).expect("get"),
                model_get(&entries, &e.key, e.seq)
            );
        }
    }
}
