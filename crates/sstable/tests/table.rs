//! Behaviour of tables on hand-picked cases: versions and tombstones at snapshots, bounds and
//! seeks, compression, the bloom filter's false-positive rate, the block cache, the builder's
//! argument checks, and the real filesystem.

mod common;

use common::*;
use sealdb_crypto::{ArtifactKind, CipherId, Expected};
use sealdb_sstable::{
    BlockCache, Compression, Entry, Error, MAX_SEQ, Table, TableBuilder, TableOptions, ValueKind,
};
use sealdb_vfs::{CrashFs, FileSystem, RealFs};
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

fn opts(block_size: usize, compression: Compression) -> TableOptions {
    TableOptions {
        block_size,
        compression,
        ..TableOptions::default()
    }
}

fn keys(entries: impl Iterator<Item = sealdb_sstable::Result<Entry>>) -> Vec<(String, u64)> {
    entries
        .map(|e| {
            let e = e.expect("entry");
            (String::from_utf8(e.key).expect("utf8"), e.seq)
        })
        .collect()
}

fn versions_table() -> Vec<Entry> {
    vec![
        entry(b"apple", 30, ValueKind::Put, b"a30"),
        entry(b"apple", 20, ValueKind::Delete, b""),
        entry(b"apple", 10, ValueKind::Put, b"a10"),
        entry(b"banana", 25, ValueKind::Put, b"b25"),
        entry(b"cherry", 40, ValueKind::Delete, b""),
        entry(b"cherry", 5, ValueKind::Put, b"c5"),
        entry(b"date", 1, ValueKind::Put, b"d1"),
    ]
}

#[test]
fn get_at_snapshots_sees_versions_and_tombstones() {
    for block_size in [1, 4096] {
        let fs = CrashFs::new();
        let kr = keyring(1);
        build(
            &fs,
            &kr,
            &opts(block_size, Compression::None),
            &versions_table(),
        );
        let t = open(&fs, &kr, CipherId::ChaCha20Poly1305, None);
        let put = |seq: u64, v: &[u8]| Some((seq, Some(v.to_vec())));
        assert_eq!(t.get(b"apple", MAX_SEQ).expect("get"), put(30, b"a30"));
        assert_eq!(t.get(b"apple", 30).expect("get"), put(30, b"a30"));
        assert_eq!(t.get(b"apple", 29).expect("get"), Some((20, None)));
        assert_eq!(t.get(b"apple", 20).expect("get"), Some((20, None)));
        assert_eq!(t.get(b"apple", 19).expect("get"), put(10, b"a10"));
        assert_eq!(t.get(b"apple", 9).expect("get"), None);
        assert_eq!(t.get(b"banana", 24).expect("get"), None);
        assert_eq!(t.get(b"banana", 25).expect("get"), put(25, b"b25"));
        assert_eq!(t.get(b"cherry", 100).expect("get"), Some((40, None)));
        assert_eq!(t.get(b"cherry", 39).expect("get"), put(5, b"c5"));
        assert_eq!(t.get(b"date", 0).expect("get"), None);
        assert_eq!(t.get(b"date", 1).expect("get"), put(1, b"d1"));
        assert_eq!(t.get(b"aardvark", MAX_SEQ).expect("get"), None);
        assert_eq!(t.get(b"blueberry", MAX_SEQ).expect("get"), None);
        assert_eq!(t.get(b"zucchini", MAX_SEQ).expect("get"), None);
        assert_eq!(t.meta().tombstones, 2);
        assert_eq!((t.meta().min_seq, t.meta().max_seq), (1, 40));
    }
}

#[test]
fn bounds_and_seeks_from_both_ends() {
    let fs = CrashFs::new();
    let kr = keyring(1);
    build(&fs, &kr, &opts(1, Compression::None), &versions_table());
    let t = open(&fs, &kr, CipherId::ChaCha20Poly1305, None);
    let s = |k: &str| k.as_bytes().to_vec();

    let it = t.iter(Bound::Included(s("apple")), Bound::Excluded(s("cherry")));
    assert_eq!(
        keys(it),
        [("apple", 30), ("apple", 20), ("apple", 10), ("banana", 25)].map(|(k, q)| (k.into(), q))
    );
    let it = t.iter(Bound::Excluded(s("apple")), Bound::Included(s("cherry")));
    assert_eq!(
        keys(it.rev()),
        [("cherry", 5), ("cherry", 40), ("banana", 25)].map(|(k, q)| (k.into(), q))
    );

    let mut it = t.iter(Bound::Unbounded, Bound::Unbounded);
    it.seek(b"b");
    assert_eq!(keys(it.by_ref().take(1)), [("banana".into(), 25)]);
    it.seek_back(b"cherry");
    assert_eq!(keys(it.by_ref().rev().take(1)), [("cherry".into(), 5)]);
    // The ends meet at cherry@40 and never cross.
    assert_eq!(keys(it.by_ref().take(5)), [("cherry".into(), 40)]);
    assert!(it.next_back().is_none());
    // Seeking the front back before the back end opens the range again.
    it.seek(b"apple");
    assert_eq!(keys(it.by_ref().take(1)), [("apple".into(), 30)]);

    // Seeks never leave the bounds.
    let mut it = t.iter(Bound::Included(s("banana")), Bound::Included(s("cherry")));
    it.seek(b"a");
    assert_eq!(keys(it.by_ref().take(1)), [("banana".into(), 25)]);
    it.seek_back(b"zzz");
    assert_eq!(keys(it.by_ref().rev().take(1)), [("cherry".into(), 5)]);
    it.seek(b"cherry\0");
    assert!(it.next().is_none());

    // Empty and inverted ranges.
    assert_eq!(
        t.iter(Bound::Included(s("c")), Bound::Excluded(s("c")))
            .count(),
        0
    );
    assert_eq!(
        t.iter(Bound::Included(s("d")), Bound::Included(s("a")))
            .count(),
        0
    );
    assert_eq!(
        t.iter(Bound::Included(s("d")), Bound::Included(s("a")))
            .rev()
            .count(),
        0
    );
}

#[test]
fn lz4_on_and_off_give_the_same_table_and_lz4_is_smaller() {
    let entries: Vec<Entry> = (0..2000u32)
        .map(|i| {
            let v = format!("value {i:06} {}", "lorem ipsum dolor sit amet ".repeat(3));
            entry(
                format!("key/{i:08}").as_bytes(),
                7,
                ValueKind::Put,
                v.as_bytes(),
            )
        })
        .collect();
    let mut sizes = Vec::new();
    for compression in [Compression::None, Compression::Lz4] {
        let fs = CrashFs::new();
        let kr = keyring(1);
        let meta = build(&fs, &kr, &opts(4096, compression), &entries);
        sizes.push(meta.file_size);
        for cache in [None, Some(BlockCache::new(1 << 20))] {
            let t = open(&fs, &kr, CipherId::ChaCha20Poly1305, cache);
            assert_eq!(t.properties().compression, compression);
            let all: Vec<Entry> = t
                .iter(Bound::Unbounded, Bound::Unbounded)
                .collect::<Result<_, _>>()
                .expect("scan");
            assert_eq!(all, entries);
            assert_eq!(
                t.get(b"key/00001234", 7).expect("get").and_then(|(_, v)| v),
                Some(entries[1234].value.clone())
            );
            assert!(t.verify().is_empty());
        }
    }
    assert!(
        sizes[1] * 2 < sizes[0],
        "lz4 {} vs none {}",
        sizes[1],
        sizes[0]
    );
}

#[test]
fn bloom_false_positive_rate_is_low_at_ten_bits_per_key() {
    let fs = CrashFs::new();
    let kr = keyring(1);
    let entries: Vec<Entry> = (0..10_000u32)
        .map(|i| entry(format!("present-{i:08}").as_bytes(), 1, ValueKind::Put, b""))
        .collect();
    build(&fs, &kr, &TableOptions::default(), &entries);
    let t = open(&fs, &kr, CipherId::ChaCha20Poly1305, None);
    assert!(entries.iter().all(|e| t.may_contain(&e.key)));
    let fp = (0..10_000u32)
        .filter(|i| t.may_contain(format!("absent-{i:08}").as_bytes()))
        .count();
    assert!(fp < 300, "{fp} false positives in 10000 absent keys");
}

#[test]
fn cache_counts_hits_and_misses() {
    let fs = CrashFs::new();
    let kr = keyring(1);
    let entries: Vec<Entry> = (0..500u32)
        .map(|i| entry(format!("k{i:05}").as_bytes(), 1, ValueKind::Put, &[7u8; 40]))
        .collect();
    let meta = build(&fs, &kr, &opts(1024, Compression::None), &entries);
    let cache = BlockCache::new(1 << 20);
    let t = open(
        &fs,
        &kr,
        CipherId::ChaCha20Poly1305,
        Some(Arc::clone(&cache)),
    );
    assert_eq!((cache.hits(), cache.misses()), (0, 0));
    assert!(t.get(b"k00010", 1).expect("get").is_some());
    assert_eq!((cache.hits(), cache.misses()), (0, 1));
    assert!(t.get(b"k00011", 1).expect("get").is_some());
    assert_eq!((cache.hits(), cache.misses()), (1, 1));
    let blocks = t.properties().data_blocks;
    assert!(blocks > 10);
    assert_eq!(t.iter(Bound::Unbounded, Bound::Unbounded).count(), 500);
    assert_eq!(cache.misses(), blocks, "every block missed once");
    assert_eq!(cache.hits(), 2, "only the first block was cached already");
    assert!(cache.usage_bytes() > 0 && cache.usage_bytes() <= cache.capacity());
    assert_eq!(t.iter(Bound::Unbounded, Bound::Unbounded).count(), 500);
    assert_eq!(cache.misses(), blocks);
    assert!(meta.file_size > 0);

    // A second table on the same cache never sees the first one's blocks.
    let t2 = open(
        &fs,
        &kr,
        CipherId::ChaCha20Poly1305,
        Some(Arc::clone(&cache)),
    );
    let before = cache.misses();
    assert!(t2.get(b"k00010", 1).expect("get").is_some());
    assert_eq!(cache.misses(), before + 1);

    // A tiny cache stays within budget.
    let small = BlockCache::new(16 << 10);
    let t3 = open(
        &fs,
        &kr,
        CipherId::ChaCha20Poly1305,
        Some(Arc::clone(&small)),
    );
    assert_eq!(t3.iter(Bound::Unbounded, Bound::Unbounded).count(), 500);
    assert!(small.usage_bytes() <= small.capacity());
}

#[test]
fn builder_refuses_bad_arguments() {
    let fs = CrashFs::new();
    let kr = keyring(1);
    let mut b =
        TableBuilder::create(&fs, Path::new(PATH), &kr, &TableOptions::default()).expect("create");
    b.add(b"b", 5, ValueKind::Put, b"").expect("add");
    let invalid = |r: sealdb_sstable::Result<()>| matches!(r, Err(Error::InvalidArgument { .. }));
    assert!(invalid(b.add(b"a", 9, ValueKind::Put, b"")), "smaller key");
    assert!(
        invalid(b.add(b"b", 5, ValueKind::Put, b"")),
        "same key and seq"
    );
    assert!(
        invalid(b.add(b"b", 6, ValueKind::Put, b"")),
        "newer version after older"
    );
    assert!(
        invalid(b.add(&vec![b'z'; 70_000], 1, ValueKind::Put, b"")),
        "long key"
    );
    assert!(
        invalid(b.add(b"c", MAX_SEQ + 1, ValueKind::Put, b"")),
        "seq too large"
    );
    b.add(b"b", 4, ValueKind::Delete, b"")
        .expect("older version");
    b.add(b"c", 9, ValueKind::Put, b"x").expect("next key");
    assert_eq!(b.entries(), 3);
    assert!(b.estimated_size() > 0);
    b.finish().expect("finish after refused adds");

    for bad in [
        TableOptions {
            block_size: 0,
            ..TableOptions::default()
        },
        TableOptions {
            bloom_bits_per_key: 1000,
            ..TableOptions::default()
        },
        TableOptions {
            kind: ArtifactKind::Wal,
            ..TableOptions::default()
        },
    ] {
        let r = TableBuilder::create(&fs, Path::new("/other.sst"), &kr, &bad);
        assert!(matches!(r, Err(Error::InvalidArgument { .. })));
    }
    // A table file is never overwritten.
    assert!(TableBuilder::create(&fs, Path::new(PATH), &kr, &TableOptions::default()).is_err());
}

#[test]
fn empty_table_round_trips() {
    let fs = CrashFs::new();
    let kr = keyring(1);
    let meta = build(&fs, &kr, &TableOptions::default(), &[]);
    assert_eq!((meta.entries, meta.min_seq, meta.max_seq), (0, 0, 0));
    let t = open(&fs, &kr, CipherId::ChaCha20Poly1305, None);
    assert_eq!(t.meta(), &meta);
    assert_eq!(t.iter(Bound::Unbounded, Bound::Unbounded).count(), 0);
    assert_eq!(t.iter(Bound::Unbounded, Bound::Unbounded).rev().count(), 0);
    assert_eq!(t.get(b"x", MAX_SEQ).expect("get"), None);
    assert!(!t.may_contain(b"x"));
    assert!(t.verify().is_empty());
}

#[test]
fn large_values_span_their_own_blocks() {
    let fs = CrashFs::new();
    let kr = keyring(1);
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let entries = vec![
        entry(b"a", 3, ValueKind::Put, b"small"),
        entry(b"b", 2, ValueKind::Put, &big),
        entry(b"c", 1, ValueKind::Put, b"small"),
    ];
    for compression in [Compression::None, Compression::Lz4] {
        let fs2 = CrashFs::new();
        build(&fs2, &kr, &opts(4096, compression), &entries);
        let t = open(
            &fs2,
            &kr,
            CipherId::ChaCha20Poly1305,
            Some(BlockCache::new(1 << 20)),
        );
        assert_eq!(t.get(b"b", 9).expect("get"), Some((2, Some(big.clone()))));
        assert!(t.verify().is_empty());
    }
    drop(fs);
}

#[test]
fn index_tables_are_their_own_artifact_kind() {
    let fs = CrashFs::new();
    let kr = keyring(1);
    let o = TableOptions {
        kind: ArtifactKind::Index,
        ..TableOptions::default()
    };
    build(&fs, &kr, &o, &versions_table());
    let as_table = Table::open(&fs, Path::new(PATH), &kr, &expected(&kr, o.cipher), None);
    assert!(matches!(as_table, Err(e) if e.is_integrity()));
    let exp = Expected {
        kind: ArtifactKind::Index,
        ..expected(&kr, o.cipher)
    };
    let t = Table::open(&fs, Path::new(PATH), &kr, &exp, None).expect("open as index");
    assert_eq!(t.iter(Bound::Unbounded, Bound::Unbounded).count(), 7);
}

#[test]
fn works_on_the_real_filesystem_and_across_threads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("000001.sst");
    let fs = RealFs;
    let kr = keyring(3);
    let entries: Vec<Entry> = (0..3000u32)
        .map(|i| {
            entry(
                format!("{i:06}").as_bytes(),
                u64::from(i),
                ValueKind::Put,
                b"v",
            )
        })
        .collect();
    let mut b = TableBuilder::create(&fs, &path, &kr, &TableOptions::default()).expect("create");
    for e in &entries {
        b.add(&e.key, e.seq, e.kind, &e.value).expect("add");
    }
    let meta = b.finish().expect("finish");
    assert_eq!(fs.file_size(&path).expect("size"), meta.file_size);
    let t = Table::open(
        &fs,
        &path,
        &kr,
        &expected(&kr, CipherId::ChaCha20Poly1305),
        Some(BlockCache::new(1 << 20)),
    )
    .expect("open");
    assert_eq!(t.meta(), &meta);
    let handles: Vec<_> = (0..2)
        .map(|n| {
            let t = Arc::clone(&t);
            std::thread::spawn(move || {
                for i in (n..3000u32).step_by(2) {
                    let got = t.get(format!("{i:06}").as_bytes(), MAX_SEQ).expect("get");
                    assert_eq!(got, Some((u64::from(i), Some(b"v".to_vec()))));
                }
                t.iter(Bound::Unbounded, Bound::Unbounded).count()
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().expect("thread"), 3000);
    }
}

#[test]
fn abandoned_builder_leaves_a_file_that_does_not_open() {
    let fs = CrashFs::new();
    let kr = keyring(1);
    let mut b = TableBuilder::create(&fs, Path::new(PATH), &kr, &opts(64, Compression::None))
        .expect("create");
    for i in 0..100u32 {
        b.add(format!("{i:04}").as_bytes(), 1, ValueKind::Put, b"v")
            .expect("add");
    }
    b.abandon();
    assert!(fs.exists(Path::new(PATH)));
    let r = Table::open(
        &fs,
        Path::new(PATH),
        &kr,
        &expected(&kr, CipherId::ChaCha20Poly1305),
        None,
    );
    assert!(matches!(r, Err(e) if e.is_integrity()));
}

#[test]
fn table_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Table>();
    assert_send_sync::<BlockCache>();
    fn assert_send<T: Send + 'static>() {}
    assert_send::<sealdb_sstable::TableIter>();
}
