//! `Stats::cumulative`: counters kept across sessions in the sealed `STATS` file.

mod common;

use common::TestDb;
use sealdb::{Db, Options};

#[test]
fn counters_add_up_across_sessions_and_stay_sealed() {
    let t = TestDb::new();
    {
        let db = t.open();
        for i in 0..3u8 {
            db.put([i], b"first session").expect("put");
        }
        assert_eq!(db.stats().cumulative.batches, 3);
    }
    let stats = t.path().join("STATS");
    let bytes = std::fs::read(&stats).expect("STATS written at close");
    assert!(
        !bytes.windows(8).any(|w| w == b"SDBSTATS"),
        "the counters are sealed, not in clear"
    );
    {
        let db = t.open();
        // This session's counters start at zero; the cumulative ones carry on.
        assert_eq!(db.stats().batches, 0);
        assert_eq!(db.stats().cumulative.batches, 3);
        db.put(b"k", b"second session").expect("put");
        db.put(b"k2", b"second session").expect("put");
        db.flush().expect("flush");
        let s = db.stats();
        assert_eq!(s.batches, 2);
        assert_eq!(s.cumulative.batches, 5);
        assert_eq!(s.cumulative.records, 5);
        assert_eq!(s.cumulative.flushes, s.flushes);
    }
    // A read-only open sees them and writes nothing.
    let before = std::fs::read(&stats).expect("read");
    {
        let db = Db::open(
            t.path(),
            Options {
                read_only: true,
                ..t.options()
            },
        )
        .expect("open read-only");
        assert_eq!(db.stats().cumulative.batches, 5);
        assert!(db.stats().cumulative.flushes >= 1);
    }
    assert_eq!(std::fs::read(&stats).expect("read"), before);
}

#[test]
fn a_damaged_or_missing_stats_file_counts_from_zero() {
    let t = TestDb::new();
    {
        let db = t.open();
        db.put(b"a", b"1").expect("put");
    }
    let stats = t.path().join("STATS");
    let mut bytes = std::fs::read(&stats).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&stats, &bytes).expect("write");
    {
        // verify names it: opening tolerates it, but it is a damaged sealed file.
        let db = Db::open(
            t.path(),
            Options {
                read_only: true,
                ..t.options()
            },
        )
        .expect("open read-only");
        let report = db.verify();
        assert_eq!(report.stats_files, 1);
        assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
        assert!(
            report.errors[0].to_string().contains("STATS"),
            "{:?}",
            report.errors
        );
        assert!(report.errors[0].is_integrity());
    }
    {
        let db = t.open();
        // The database opens and reads; the counters restart.
        assert_eq!(db.get(b"a").expect("get"), Some(b"1".to_vec()));
        assert_eq!(db.stats().cumulative.batches, 0);
        db.put(b"b", b"2").expect("put");
    }
    std::fs::remove_file(&stats).expect("remove");
    let db = t.open();
    assert_eq!(db.stats().cumulative.batches, 0);
    let report = db.verify();
    assert_eq!(report.stats_files, 0);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
}

#[test]
fn reencrypt_keeps_the_counters_readable() {
    let t = TestDb::new();
    {
        let db = t.open();
        db.put(b"a", b"1").expect("put");
    }
    {
        let db = t.open();
        db.rotate_data_key().expect("rotate");
        db.put(b"b", b"2").expect("put");
        let report = db.reencrypt(&mut |_, _| {}).expect("reencrypt");
        assert!(!report.versions_dropped.is_empty(), "{report:?}");
    }
    // The first session's STATS was sealed under the dropped version; it was rewritten.
    let db = t.open();
    assert_eq!(db.stats().cumulative.batches, 2);
}
