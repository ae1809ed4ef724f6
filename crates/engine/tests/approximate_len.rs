//! `Keyspace::approximate_len` and `Keyspace::table_stats` (per-keyspace estimates that read
//! no table, in the memtable, after a flush and across a reopen), and
//! `Db::verify_with_progress`.

mod common;

use common::TestDb;

#[test]
fn approximate_len_counts_memtable_and_table_entries_per_keyspace() {
    let t = TestDb::new();
    {
        let db = t.open();
        let users = db.create_keyspace("users").expect("ks");
        let orders = db.create_keyspace("orders").expect("ks");
        for i in 0..50u32 {
            users.put(format!("u{i:03}").as_bytes(), b"x").expect("put");
        }
        for i in 0..7u32 {
            orders.put(format!("o{i}").as_bytes(), b"y").expect("put");
        }
        // Memtable only: exact for distinct inserts, and keyspaces do not mix.
        assert_eq!(users.approximate_len(), 50);
        assert_eq!(orders.approximate_len(), 7);
        assert_eq!(db.default_keyspace().approximate_len(), 0);
        assert_eq!(users.table_stats().files, 0);

        db.flush().expect("flush");
        // After the flush the counts come from the tables' entry counts.
        assert_eq!(users.approximate_len(), 50);
        assert_eq!(orders.approximate_len(), 7);
        assert!(users.table_stats().files >= 1);
        assert!(users.table_stats().bytes > 0);

        // More writes land in the memtable and add up with the tables.
        for i in 50..60u32 {
            users.put(format!("u{i:03}").as_bytes(), b"x").expect("put");
        }
        assert_eq!(users.approximate_len(), 60);
    }
    // Reopened: the WAL's records are back in the memtable, the tables in the manifest.
    let db = t.open();
    assert_eq!(db.keyspace("users").expect("ks").approximate_len(), 60);
    assert_eq!(db.keyspace("orders").expect("ks").approximate_len(), 7);
}

#[test]
fn approximate_len_is_an_over_estimate_with_deletes_until_compaction() {
    let t = TestDb::new();
    let db = t.open();
    let ks = db.default_keyspace();
    for i in 0..20u32 {
        ks.put(format!("k{i:02}").as_bytes(), b"v").expect("put");
    }
    db.flush().expect("flush");
    for i in 0..10u32 {
        ks.delete(format!("k{i:02}").as_bytes()).expect("delete");
    }
    db.flush().expect("flush");
    // 20 puts + 10 tombstones, not yet merged: an estimate, never below the truth.
    assert_eq!(ks.approximate_len(), 30);
    db.compact().expect("compact");
    // A full compaction drops the deleted keys and their tombstones.
    assert_eq!(ks.approximate_len(), 10);
}

#[test]
fn verify_reports_progress_per_table_and_ends_complete() {
    let t = TestDb::new();
    let db = t.open();
    for round in 0..3u32 {
        for i in 0..10u32 {
            db.put(format!("r{round}k{i}").as_bytes(), b"v")
                .expect("put");
        }
        db.flush().expect("flush");
    }
    let mut calls = Vec::new();
    let report = db.verify_with_progress(&mut |done, total| calls.push((done, total)));
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let total = report.tables as u64 + 1;
    assert_eq!(calls.first(), Some(&(0, total)));
    assert_eq!(calls.last(), Some(&(total, total)));
    assert_eq!(calls.len() as u64, total + 1, "{calls:?}");
    assert!(calls.windows(2).all(|w| w[0].0 < w[1].0));
}
