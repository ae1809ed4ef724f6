//! Tamper tests at the engine level: a live table that is altered, truncated, missing,
//! replaced by an older copy of itself or copied from another database is reported as an
//! integrity error naming it — never wrong data, never a panic.

mod common;

use common::TestDb;
use sealdb::{Db, Error};
use std::path::{Path, PathBuf};

fn tables(db: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(db.join("tables"))
        .expect("tables dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "sst"))
        .collect();
    v.sort();
    v
}

fn load(db: &Db, tag: &str) {
    for i in 0..500u32 {
        db.put(
            format!("key{i:05}").as_bytes(),
            format!("{tag}-{i}").as_bytes(),
        )
        .expect("put");
    }
    db.flush().expect("flush");
}

fn expect_integrity_naming(err: Error, file: &Path) {
    match &err {
        Error::Integrity { file: f, .. } => {
            assert!(
                f.contains(
                    &file
                        .file_name()
                        .expect("name")
                        .to_string_lossy()
                        .to_string()
                ),
                "{err}"
            )
        }
        other => panic!(
            "expected an integrity error naming {}, got {other:?}",
            file.display()
        ),
    }
}

#[test]
fn flipped_byte_in_a_table_is_caught_by_open_or_verify() {
    let t = TestDb::new();
    load(&t.open(), "v");
    let table = tables(&t.path()).pop().expect("a table");
    let mut bytes = std::fs::read(&table).expect("read");
    let len = bytes.len();
    // A byte inside the first data block: open succeeds (only metadata is read up front).
    bytes[100] ^= 0x20;
    std::fs::write(&table, &bytes).expect("write");
    let db = t.open();
    let report = db.verify();
    assert!(!report.errors.is_empty());
    expect_integrity_naming(report.errors.into_iter().next().expect("error"), &table);
    // Reads that touch the block fail with an integrity error rather than returning data.
    let mut failed = false;
    for i in 0..500u32 {
        match db.get(format!("key{i:05}").as_bytes()) {
            Ok(Some(v)) => assert_eq!(v, format!("v-{i}").into_bytes()),
            Ok(None) => panic!("key{i:05} vanished"),
            Err(e) => {
                assert!(e.is_integrity(), "{e:?}");
                failed = true;
            }
        }
    }
    assert!(failed, "no read touched the damaged block (len {len})");
}

#[test]
fn truncated_table_is_refused_at_open() {
    let t = TestDb::new();
    load(&t.open(), "v");
    let table = tables(&t.path()).pop().expect("a table");
    let bytes = std::fs::read(&table).expect("read");
    std::fs::write(&table, &bytes[..bytes.len() - 10]).expect("write");
    let err = common::failed_open(&t, "truncated");
    expect_integrity_naming(err, &table);
}

#[test]
fn missing_table_is_refused_at_open() {
    let t = TestDb::new();
    load(&t.open(), "v");
    let table = tables(&t.path()).pop().expect("a table");
    std::fs::remove_file(&table).expect("rm");
    let err = common::failed_open(&t, "missing");
    assert!(
        matches!(
            &err,
            Error::Integrity {
                reason: sealdb_crypto::IntegrityReason::MissingFile,
                ..
            }
        ),
        "{err:?}"
    );
    expect_integrity_naming(err, &table);
}

#[test]
fn table_replaced_by_an_older_copy_is_refused() {
    let t = TestDb::new();
    let old_copy;
    let victim;
    {
        let db = t.open();
        load(&db, "old");
        victim = tables(&t.path()).pop().expect("table");
        old_copy = std::fs::read(&victim).expect("read");
        // Rewrite everything: compaction replaces the table with new ones.
        load(&db, "new");
        db.compact().expect("compact");
    }
    // Put the old table back under the name of a live one.
    let live = tables(&t.path()).pop().expect("live table");
    std::fs::write(&live, &old_copy).expect("write");
    let err = common::failed_open(&t, "rolled back table");
    assert!(
        matches!(
            &err,
            Error::Integrity {
                reason: sealdb_crypto::IntegrityReason::ReplacedFile,
                ..
            }
        ),
        "{err:?}"
    );
    expect_integrity_naming(err, &live);
    let _ = victim;
}

#[test]
fn table_from_another_database_is_refused() {
    let a = TestDb::new();
    let b = TestDb::new();
    load(&a.open(), "a");
    load(&b.open(), "b");
    let ta = tables(&a.path()).pop().expect("table a");
    let tb = tables(&b.path()).pop().expect("table b");
    std::fs::copy(&ta, &tb).expect("copy");
    let err = common::failed_open(&b, "foreign table");
    expect_integrity_naming(err, &tb);
}

#[test]
fn tampered_wal_is_an_integrity_error_and_never_wrong_data() {
    let t = TestDb::new();
    {
        let db = t.open();
        for i in 0..200u32 {
            db.default_keyspace()
                .put_opt(
                    format!("k{i}").as_bytes(),
                    b"value",
                    sealdb::WriteOptions::SYNC,
                )
                .expect("put");
        }
    }
    let wal_dir = t.path().join("wal");
    let seg = std::fs::read_dir(&wal_dir)
        .expect("wal")
        .map(|e| e.expect("e").path())
        .min()
        .expect("segment");
    let mut bytes = std::fs::read(&seg).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&seg, &bytes).expect("write");
    let err = common::failed_open(&t, "tampered wal");
    assert!(err.is_integrity(), "{err:?}");
}

#[test]
fn index_and_data_tables_swapped_are_refused() {
    // Index tables share the data tables' artifact kind; their role (which keyspace) is bound
    // by the manifest record of each file (file id, footer digest), so a swap is refused.
    let t = TestDb::new();
    {
        let db = t.open();
        let items = db.create_keyspace("items").expect("keyspace");
        for i in 0..50u32 {
            items
                .put(
                    format!("k{i:03}").as_bytes(),
                    format!(r#"{{"color":"c{}"}}"#, i % 5).as_bytes(),
                )
                .expect("put");
        }
        db.create_index(
            sealdb::IndexDefinition {
                name: "by_color".into(),
                keyspace: "items".into(),
                kind: sealdb::IndexKind::Global,
                extractor: sealdb::Extractor::JsonPointer("/color".into()),
                projection: sealdb::Projection::KeysOnly,
            },
            &mut |_| {},
        )
        .expect("index");
        db.flush().expect("flush");
    }
    let files = tables(&t.path());
    assert!(files.len() >= 2, "{files:?}");
    let (a, b) = (&files[0], &files[files.len() - 1]);
    let tmp = t.path().join("tables").join("swap.tmp");
    std::fs::rename(a, &tmp).expect("swap");
    std::fs::rename(b, a).expect("swap");
    std::fs::rename(&tmp, b).expect("swap");
    let err = common::failed_open(&t, "swapped tables");
    assert!(err.is_integrity(), "{err:?}");
}
