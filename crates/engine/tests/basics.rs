//! The public API end to end: puts, gets, deletes, batches across keyspaces, snapshots,
//! range/prefix scans in both directions, reopen and recovery.

mod common;

use common::{TestDb, collect};
use sealdb::{Db, Error, WriteBatch, WriteOptions};
use std::ops::Bound;

fn kv(k: &str, v: &str) -> (Vec<u8>, Vec<u8>) {
    (k.as_bytes().to_vec(), v.as_bytes().to_vec())
}

#[test]
fn put_get_delete() {
    let t = TestDb::new();
    let db = t.open();
    assert!(db.open_stats().created);
    assert_eq!(db.get(b"a").expect("get"), None);
    db.put(b"a", b"1").expect("put");
    assert_eq!(db.get(b"a").expect("get"), Some(b"1".to_vec()));
    db.put(b"a", b"2").expect("put");
    assert_eq!(db.get(b"a").expect("get"), Some(b"2".to_vec()));
    db.delete(b"a").expect("delete");
    assert_eq!(db.get(b"a").expect("get"), None);
}

#[test]
fn batches_span_keyspaces_and_survive_reopen() {
    let t = TestDb::new();
    {
        let db = t.open();
        let users = db.create_keyspace("users").expect("ks");
        let orders = db.create_keyspace("orders").expect("ks");
        let mut b = WriteBatch::new();
        b.put(&users, b"u1", b"ada").expect("put");
        b.put(&orders, b"o1", b"u1:book").expect("put");
        b.put(&db.default_keyspace(), b"meta", b"x").expect("put");
        db.write(b, WriteOptions::SYNC).expect("write");
        // Same key in two keyspaces stays separate.
        users.put(b"shared", b"users").expect("put");
        orders.put(b"shared", b"orders").expect("put");
    }
    let db = t.open();
    assert!(!db.open_stats().created);
    assert_eq!(db.open_stats().wal.batches, 3);
    let users = db.keyspace("users").expect("ks");
    let orders = db.keyspace("orders").expect("ks");
    assert_eq!(users.get(b"u1").expect("get"), Some(b"ada".to_vec()));
    assert_eq!(orders.get(b"o1").expect("get"), Some(b"u1:book".to_vec()));
    assert_eq!(users.get(b"shared").expect("get"), Some(b"users".to_vec()));
    assert_eq!(
        orders.get(b"shared").expect("get"),
        Some(b"orders".to_vec())
    );
    assert_eq!(db.get(b"meta").expect("get"), Some(b"x".to_vec()));
    assert_eq!(collect(users.iter().expect("iter")).len(), 2);
    assert_eq!(db.keyspace_names(), vec!["default", "orders", "users"]);
    assert!(matches!(
        db.keyspace("nope"),
        Err(Error::KeyspaceNotFound(_))
    ));
}

#[test]
fn dropped_keyspace_does_not_come_back() {
    let t = TestDb::new();
    {
        let db = t.open();
        let ks = db.create_keyspace("tmp").expect("ks");
        ks.put(b"k", b"v").expect("put");
        db.drop_keyspace("tmp").expect("drop");
        // A new keyspace never inherits the dropped one's id or data.
        let again = db.create_keyspace("tmp").expect("ks");
        assert_eq!(again.get(b"k").expect("get"), None);
    }
    let db = t.open();
    assert_eq!(
        db.keyspace("tmp").expect("ks").get(b"k").expect("get"),
        None
    );
}

#[test]
fn scans_forward_reverse_prefix_and_mixed() {
    let t = TestDb::new();
    let db = t.open();
    for k in ["a", "ab", "abc", "b", "ba", "c"] {
        db.put(k.as_bytes(), format!("v-{k}").as_bytes())
            .expect("put");
    }
    db.delete(b"b").expect("del");
    let ks = db.default_keyspace();
    let all: Vec<_> = collect(ks.iter().expect("iter"));
    let keys: Vec<&[u8]> = all.iter().map(|(k, _)| k.as_slice()).collect();
    assert_eq!(keys, vec![&b"a"[..], b"ab", b"abc", b"ba", b"c"]);
    let rev: Vec<_> = ks
        .iter()
        .expect("iter")
        .rev()
        .collect::<sealdb::Result<_>>()
        .expect("rev");
    let mut expect_rev = all.clone();
    expect_rev.reverse();
    assert_eq!(rev, expect_rev);
    assert_eq!(
        collect(ks.prefix(b"ab").expect("prefix")),
        vec![kv("ab", "v-ab"), kv("abc", "v-abc")]
    );
    let r = collect(
        ks.range((
            Bound::Excluded(b"a".to_vec()),
            Bound::Included(b"ba".to_vec()),
        ))
        .expect("range"),
    );
    assert_eq!(
        r,
        vec![kv("ab", "v-ab"), kv("abc", "v-abc"), kv("ba", "v-ba")]
    );
    // Mixed ends meet in the middle without repeating.
    let mut it = ks.iter().expect("iter");
    let mut seen = Vec::new();
    while let Some(x) = it.next() {
        seen.push(x.expect("item").0);
        match it.next_back() {
            Some(x) => seen.push(x.expect("item").0),
            None => break,
        }
    }
    seen.sort();
    assert_eq!(seen, keys.iter().map(|k| k.to_vec()).collect::<Vec<_>>());
}

#[test]
fn the_back_takes_the_last_key_the_front_only_peeked() {
    // The front's merge step peeks the next entry of each source; when that is a source's
    // last entry, the back must still yield it (the source's own back end never will).
    let t = TestDb::new();
    let db = t.open();
    db.put(b"k0", b"v0").expect("put");
    db.put(b"k1", b"v1").expect("put");
    let ks = db.default_keyspace();
    let mut it = ks.iter().expect("iter");
    assert_eq!(it.next().expect("item").expect("ok"), kv("k0", "v0"));
    assert_eq!(it.next_back().expect("item").expect("ok"), kv("k1", "v1"));
    assert!(it.next().is_none());
    // And the mirror.
    let mut it = ks.iter().expect("iter");
    assert_eq!(it.next_back().expect("item").expect("ok"), kv("k1", "v1"));
    assert_eq!(it.next().expect("item").expect("ok"), kv("k0", "v0"));
    assert!(it.next_back().is_none());
}

#[test]
fn reverse_scan_sees_the_newest_version_when_the_front_holds_an_older_one() {
    let t = TestDb::new();
    let db = t.open();
    db.put(b"k", b"old").expect("put");
    db.put(b"k", b"new").expect("put");
    let mut it = db.default_keyspace().iter().expect("iter");
    assert_eq!(it.next_back().expect("item").expect("ok"), kv("k", "new"));
    assert!(it.next().is_none());
}

#[test]
fn snapshots_and_iterators_are_stable_under_writes() {
    let t = TestDb::new();
    let db = t.open();
    let ks = db.default_keyspace();
    for i in 0..100u32 {
        db.put(format!("k{i:03}").as_bytes(), b"v1").expect("put");
    }
    let snap = db.snapshot();
    let it = ks.iter().expect("iter");
    for i in 0..100u32 {
        if i % 2 == 0 {
            db.delete(format!("k{i:03}").as_bytes()).expect("del");
        } else {
            db.put(format!("k{i:03}").as_bytes(), b"v2").expect("put");
        }
    }
    db.put(b"new", b"x").expect("put");
    let seen = collect(it);
    assert_eq!(seen.len(), 100);
    assert!(seen.iter().all(|(_, v)| v == b"v1"));
    assert_eq!(snap.get(&ks, b"k000").expect("get"), Some(b"v1".to_vec()));
    assert_eq!(snap.get(&ks, b"new").expect("get"), None);
    assert_eq!(collect(snap.prefix(&ks, b"k").expect("scan")).len(), 100);
    assert_eq!(db.get(b"k000").expect("get"), None);
    assert_eq!(collect(ks.iter().expect("iter")).len(), 51);
    assert_eq!(db.oldest_snapshot(), Some(snap.sequence()));
    drop(snap);
    assert_eq!(db.oldest_snapshot(), None);
}

#[test]
fn memtable_rotation_keeps_everything_readable() {
    let t = TestDb::new();
    let opts = sealdb::Options {
        memtable_size: 16 << 10,
        max_immutable_memtables: 1000,
        ..t.options()
    };
    {
        let db = Db::open(t.path(), opts.clone()).expect("open");
        for i in 0..2000u32 {
            db.put(format!("key{i:05}").as_bytes(), [b'x'; 50])
                .expect("put");
        }
        let s = db.stats();
        assert!(s.memtable_rotations > 3, "{s:?}");
        assert_eq!(db.get(b"key00000").expect("get"), Some(vec![b'x'; 50]));
        assert_eq!(
            collect(db.default_keyspace().iter().expect("iter")).len(),
            2000
        );
    }
    let db = Db::open(t.path(), opts).expect("reopen");
    assert_eq!(
        collect(db.default_keyspace().iter().expect("iter")).len(),
        2000
    );
    // Recovered memtables over the budget are on their way to tables.
    db.flush().expect("flush");
    let s = db.stats();
    assert!(s.levels.iter().map(|l| l.files).sum::<u64>() > 0, "{s:?}");
    assert_eq!(s.immutable_memtables, 0);
    assert_eq!(
        collect(db.default_keyspace().iter().expect("iter")).len(),
        2000
    );
}

#[test]
fn concurrent_writers_share_commit_groups() {
    let t = TestDb::new();
    let db = t.open();
    let threads: Vec<_> = (0..4)
        .map(|n| {
            let db = db.clone();
            std::thread::spawn(move || {
                for i in 0..250u32 {
                    db.default_keyspace()
                        .put_opt(format!("t{n}-{i}").as_bytes(), b"v", WriteOptions::SYNC)
                        .expect("put");
                }
            })
        })
        .collect();
    for th in threads {
        th.join().expect("join");
    }
    let s = db.stats();
    assert_eq!(s.batches, 1000);
    assert!(s.commit_groups <= 1000);
    assert_eq!(
        collect(db.default_keyspace().iter().expect("iter")).len(),
        1000
    );
    drop(db);
    let db = t.open();
    assert_eq!(db.open_stats().wal.records, 1000);
}

#[test]
fn the_directory_is_locked_while_open() {
    let t = TestDb::new();
    let db = t.open();
    let err = Db::open(t.path(), t.options()).expect_err("second open");
    assert!(matches!(err, Error::InUseHere(_)), "{err:?}");
    drop(db);
    t.open();
}

#[test]
fn nothing_is_written_in_clear() {
    let secret_key = b"distinctive-user-key-4242";
    let secret_val = b"distinctive-value-9191";
    for cipher in [sealdb::CipherId::ChaCha20Poly1305, sealdb::CipherId::None] {
        let t = TestDb::new();
        {
            let db = Db::open(
                t.path(),
                sealdb::Options {
                    cipher,
                    ..t.options()
                },
            )
            .expect("open");
            let ks = db.create_keyspace("secret-keyspace-name").expect("ks");
            ks.put_opt(secret_key, secret_val, WriteOptions::SYNC)
                .expect("put");
            for i in 0..2000u32 {
                ks.put(format!("filler-{i}").as_bytes(), [b'f'; 64])
                    .expect("put");
            }
            // The secret now sits in the WAL, in level-0 tables, then in compacted tables.
            db.flush().expect("flush");
            ks.put_opt(secret_key, secret_val, WriteOptions::SYNC)
                .expect("put again");
            db.compact().expect("compact");
            assert!(db.stats().levels.iter().any(|l| l.files > 0));
        }
        let mut found = false;
        for entry in walk(&t.path()) {
            let bytes = std::fs::read(&entry).expect("read");
            found |= contains(&bytes, secret_key) || contains(&bytes, secret_val);
            if cipher == sealdb::CipherId::ChaCha20Poly1305 {
                assert!(
                    !contains(&bytes, b"secret-keyspace-name"),
                    "{}",
                    entry.display()
                );
            }
        }
        assert_eq!(found, cipher == sealdb::CipherId::None, "cipher {cipher:?}");
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("readdir") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn wrong_or_missing_master_key_refuses_to_open_and_creates_nothing() {
    let t = TestDb::new();
    drop(t.open());
    let other_keystore = tempfile::tempdir().expect("tmp");
    let opts = sealdb::Options {
        keystore_dir: Some(other_keystore.path().to_path_buf()),
        ..t.options()
    };
    let err = Db::open(t.path(), opts).expect_err("no key");
    assert!(err.is_key_unavailable(), "{err:?}");
    assert!(
        std::fs::read_dir(other_keystore.path())
            .map(|d| d.count())
            .unwrap_or(0)
            == 0
    );
    // The right keystore still opens it.
    t.open();
}

#[test]
fn keystore_inside_the_data_directory_is_refused() {
    let t = TestDb::new();
    let opts = sealdb::Options {
        keystore_dir: Some(t.path().join("keys")),
        ..t.options()
    };
    assert!(matches!(
        Db::open(t.path(), opts),
        Err(Error::InvalidArgument { .. })
    ));
}
