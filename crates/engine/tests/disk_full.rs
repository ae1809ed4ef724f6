//! A full disk (ENOSPC) and a failing disk (EIO) under flush, compaction, WAL rollover and
//! manifest writes: no panic, no acknowledged write lost, reads work while the disk is full,
//! failed jobs leave no partial files, and the database comes back once space is freed, both
//! without reopening and across a reopen.

use sealdb::{Db, Error, Options, WriteOptions};
use sealdb_vfs::{CrashFs, Fault, FileSystem, Op};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

const DB: &str = "/data/db";

fn new_fs() -> CrashFs {
    let fs = CrashFs::new();
    fs.create_dir_all(Path::new("/data")).expect("mkdir");
    fs.sync_dir(Path::new("/")).expect("sync");
    fs
}

fn options(fs: &CrashFs, keystore: &Path, background: bool) -> Options {
    Options {
        fs: Arc::new(fs.clone()),
        keystore_dir: Some(keystore.to_path_buf()),
        memtable_size: 4 << 10,
        // Without background threads nothing drains frozen memtables but explicit flushes.
        max_immutable_memtables: if background { 4 } else { 1000 },
        wal_segment_size: 2 << 10,
        l0_compaction_trigger: 2,
        background_work: background,
        ..Options::default()
    }
}

fn key(i: u32) -> Vec<u8> {
    format!("key-{i:05}").into_bytes()
}

fn value(i: u32) -> Vec<u8> {
    format!("value-{i:05}-{}", "x".repeat(40)).into_bytes()
}

fn is_sst(p: &Path) -> bool {
    p.extension().is_some_and(|e| e == "sst")
}

fn is_manifest(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("MANIFEST-"))
}

fn is_wal(p: &Path) -> bool {
    p.extension().is_some_and(|e| e == "wal")
}

fn tables(fs: &CrashFs) -> Vec<String> {
    fs.list_dir(&PathBuf::from(DB).join("tables"))
        .expect("list tables")
}

/// Writes keys `range` one synced batch each; returns the acknowledged ones and the first
/// error, which must be a typed disk-full error (never a panic, never a poisoning).
fn write_range(
    db: &Db,
    range: std::ops::Range<u32>,
    acked: &mut BTreeMap<u32, Vec<u8>>,
) -> Option<Error> {
    for i in range {
        match db
            .default_keyspace()
            .put_opt(key(i), value(i), WriteOptions::SYNC)
        {
            Ok(()) => {
                acked.insert(i, value(i));
            }
            Err(e) => return Some(e),
        }
    }
    None
}

fn check_all(db: &Db, acked: &BTreeMap<u32, Vec<u8>>, context: &str) {
    for (i, v) in acked {
        assert_eq!(
            db.get(key(*i))
                .unwrap_or_else(|e| panic!("{context}: get failed: {e}")),
            Some(v.clone()),
            "{context}: acknowledged key {i} lost"
        );
    }
}

/// The table files on disk are exactly the live ones plus nothing partial: every file opens.
fn assert_no_partial_tables(fs: &CrashFs, db: &Db, context: &str) {
    let report = db.verify();
    assert!(report.errors.is_empty(), "{context}: {:?}", report.errors);
    let live_files: usize = db.stats().levels.iter().map(|l| l.files as usize).sum();
    assert_eq!(
        tables(fs).len(),
        live_files,
        "{context}: table files on disk {:?} beyond the {live_files} live ones",
        tables(fs)
    );
}

/// [`assert_no_partial_tables`] once background work has settled (a compaction in flight
/// has outputs not yet live, and replaced tables go when their last reader does).
fn assert_no_partial_tables_eventually(fs: &CrashFs, db: &Db, context: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let live: usize = db.stats().levels.iter().map(|l| l.files as usize).sum();
        if tables(fs).len() == live || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_no_partial_tables(fs, db, context);
}

/// Regression: a flush that failed midway (disk full, or EIO) left its partial tables on
/// disk, eating the space that had to be freed for the retry.
#[test]
fn failed_flush_leaves_no_partial_tables() {
    for fault in [Fault::no_space(), Fault::eio()] {
        let keystore = tempfile::tempdir().expect("tmp");
        let fs = new_fs();
        let db = Db::open(DB, options(&fs, keystore.path(), false)).expect("open");
        let other = db.create_keyspace("other").expect("keyspace");
        let mut acked = BTreeMap::new();
        assert!(write_range(&db, 0..40, &mut acked).is_none());
        for i in 0..40 {
            other.put(key(i), value(i)).expect("put");
        }
        // The second table of the flush fails on its third write.
        fs.inject(
            fault
                .clone()
                .on(&[Op::Write])
                .when_path(is_sst)
                .after(5)
                .times(1),
        );
        let err = db.flush().expect_err("flush must fail");
        assert!(
            tables(&fs).is_empty(),
            "partial tables left: {:?}",
            tables(&fs)
        );
        check_all(&db, &acked, "after failed flush");
        if err.is_no_space() {
            db.flush().expect("retry");
            assert_no_partial_tables(&fs, &db, "after retried flush");
        } else {
            assert!(
                matches!(db.put(b"k", b"v"), Err(Error::Poisoned { .. })),
                "{err}"
            );
            drop(other);
            drop(db);
            let db = Db::open(DB, options(&fs, keystore.path(), false)).expect("reopen");
            check_all(&db, &acked, "reopen after EIO");
        }
    }
}

/// Regression: a compaction that failed midway left its partial outputs.
#[test]
fn failed_compaction_leaves_no_partial_tables() {
    for fault in [Fault::no_space(), Fault::eio()] {
        let keystore = tempfile::tempdir().expect("tmp");
        let fs = new_fs();
        let db = Db::open(DB, options(&fs, keystore.path(), false)).expect("open");
        let mut acked = BTreeMap::new();
        for round in 0..3 {
            assert!(write_range(&db, round * 30..round * 30 + 30, &mut acked).is_none());
            db.flush().expect("flush");
        }
        let before = tables(&fs);
        fs.inject(
            fault
                .clone()
                .on(&[Op::Write])
                .when_path(is_sst)
                .after(3)
                .times(1),
        );
        let err = db.compact().expect_err("compaction must fail");
        assert_eq!(tables(&fs), before, "partial compaction outputs left");
        check_all(&db, &acked, "after failed compaction");
        if err.is_no_space() {
            db.compact().expect("retry");
            assert_no_partial_tables(&fs, &db, "after retried compaction");
            check_all(&db, &acked, "after retried compaction");
        } else {
            drop(db);
            let db = Db::open(DB, options(&fs, keystore.path(), false)).expect("reopen");
            check_all(&db, &acked, "reopen after EIO");
            db.compact().expect("compact after reopen");
            check_all(&db, &acked, "compacted after reopen");
        }
    }
}

/// A manifest write that fails mid-block leaves its tail unknown: the retry goes to a new
/// manifest (never appended after the failure), and the outputs the failed edit named are
/// cleaned up once that new manifest replaced the old one.
#[test]
fn manifest_write_out_of_space_rolls_to_a_new_manifest() {
    let keystore = tempfile::tempdir().expect("tmp");
    let fs = new_fs();
    let db = Db::open(DB, options(&fs, keystore.path(), false)).expect("open");
    let mut acked = BTreeMap::new();
    assert!(write_range(&db, 0..40, &mut acked).is_none());
    let manifests = |fs: &CrashFs| -> Vec<String> {
        fs.list_dir(Path::new(DB))
            .expect("list")
            .into_iter()
            .filter(|n| n.starts_with("MANIFEST-"))
            .collect()
    };
    let before = manifests(&fs);
    fs.inject(
        Fault::no_space()
            .on(&[Op::Write])
            .when_path(is_manifest)
            .times(1),
    );
    let err = db.flush().expect_err("manifest write fails");
    assert!(err.is_no_space(), "{err}");
    // The write path is still open: nothing is poisoned.
    assert!(write_range(&db, 40..50, &mut acked).is_none());
    // Keyspace creation (a manifest edit) works and goes to a new manifest.
    db.create_keyspace("after").expect("keyspace after failure");
    let after = manifests(&fs);
    assert_eq!(after.len(), 1);
    assert_ne!(after, before, "the failed manifest was appended to again");
    db.flush().expect("flush");
    assert_no_partial_tables(&fs, &db, "after manifest roll");
    check_all(&db, &acked, "after manifest roll");
    drop(db);
    fs.crash();
    let db = Db::open(DB, options(&fs, keystore.path(), false)).expect("reopen");
    check_all(&db, &acked, "after crash");
    db.keyspace("after").expect("keyspace survived");
}

/// Keyspace creation (a foreground manifest edit) on a full disk: a typed error, then success
/// once space is back; nothing poisoned.
#[test]
fn manifest_edit_on_a_full_disk_is_a_typed_error_and_retried() {
    let keystore = tempfile::tempdir().expect("tmp");
    let fs = new_fs();
    let db = Db::open(DB, options(&fs, keystore.path(), false)).expect("open");
    fs.set_space_limit(Some(fs.used_bytes() + 5));
    let err = db.create_keyspace("ks").expect_err("disk full");
    assert!(matches!(err, Error::NoSpace { .. }), "{err}");
    assert!(err.to_string().contains("no space left"), "{err}");
    let err = db.create_keyspace("ks").expect_err("still full");
    assert!(err.is_no_space(), "{err}");
    fs.set_space_limit(None);
    db.create_keyspace("ks").expect("space freed");
    drop(db);
    fs.crash();
    let db = Db::open(DB, options(&fs, keystore.path(), false)).expect("reopen");
    db.keyspace("ks").expect("keyspace survived");
}

/// WAL rollover (end frame, new segment) on a full disk, then space freed.
#[test]
fn wal_rollover_out_of_space_is_retried_without_reopen() {
    for (name, fault) in [
        (
            "create",
            Fault::no_space()
                .on(&[Op::Create])
                .when_path(is_wal)
                .times(2),
        ),
        (
            "write",
            Fault::no_space()
                .on(&[Op::Write])
                .when_path(is_wal)
                .after(30)
                .times(3),
        ),
    ] {
        let keystore = tempfile::tempdir().expect("tmp");
        let fs = new_fs();
        let db = Db::open(DB, options(&fs, keystore.path(), false)).expect("open");
        let mut acked = BTreeMap::new();
        fs.inject(fault);
        let mut failures = 0;
        let mut i = 0;
        while i < 120 {
            if let Some(e) = write_range(&db, i..i + 1, &mut acked) {
                assert!(matches!(e, Error::NoSpace { .. }), "{name}: {e}");
                failures += 1;
            }
            i += 1;
        }
        assert!(failures > 0, "{name}: the fault never fired");
        assert_eq!(acked.len() + failures, 120, "{name}");
        check_all(&db, &acked, name);
        drop(db);
        fs.crash();
        let db = Db::open(DB, options(&fs, keystore.path(), false)).expect("reopen");
        check_all(&db, &acked, name);
        // Failed writes were never acknowledged, and none is resurrected.
        for i in 0..120 {
            if !acked.contains_key(&i) {
                assert_eq!(db.get(key(i)).expect("get"), None, "{name}: key {i}");
            }
        }
    }
}

/// EIO under a WAL rollover poisons (what reached the disk is unknown); a reopen recovers
/// every acknowledged write.
#[test]
fn wal_rollover_eio_poisons_and_reopen_recovers() {
    let keystore = tempfile::tempdir().expect("tmp");
    let fs = new_fs();
    let db = Db::open(DB, options(&fs, keystore.path(), false)).expect("open");
    let mut acked = BTreeMap::new();
    fs.inject(Fault::eio().on(&[Op::Create]).when_path(is_wal).times(1));
    let err = write_range(&db, 0..200, &mut acked).expect("the fault fires");
    assert!(matches!(err, Error::Poisoned { .. }), "{err}");
    check_all(&db, &acked, "poisoned");
    drop(db);
    let db = Db::open(DB, options(&fs, keystore.path(), false)).expect("reopen");
    check_all(&db, &acked, "reopened");
    assert!(write_range(&db, 1000..1010, &mut acked).is_none());
}

/// The whole story with background threads: the disk fills, the background flush pauses,
/// writes get a typed error, reads keep working; space is freed and writes resume by
/// themselves, without a reopen. Then the same across a reopen.
#[test]
fn full_disk_pauses_background_work_and_resumes_when_space_is_freed() {
    let keystore = tempfile::tempdir().expect("tmp");
    let fs = new_fs();
    let db = Db::open(DB, options(&fs, keystore.path(), true)).expect("open");
    let mut acked = BTreeMap::new();
    assert!(write_range(&db, 0..100, &mut acked).is_none());
    fs.set_space_limit(Some(fs.used_bytes() + (16 << 10)));
    let mut next = 100;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut err = None;
    while err.is_none() {
        assert!(Instant::now() < deadline, "the disk never filled");
        err = write_range(&db, next..next + 1, &mut acked);
        next += 1;
    }
    let err = err.expect("error");
    assert!(matches!(err, Error::NoSpace { .. }), "{err}");
    // Reads keep working while the disk is full, and the error stays typed.
    check_all(&db, &acked, "while full");
    assert_eq!(
        db.default_keyspace().iter().expect("scan").count(),
        acked.len()
    );
    for _ in 0..5 {
        let e = write_range(&db, next..next + 1, &mut acked);
        next += 1;
        if let Some(e) = e {
            assert!(e.is_no_space(), "{e}");
        }
    }
    // Free the space: writes resume without reopening.
    fs.set_space_limit(None);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match write_range(&db, next..next + 1, &mut acked) {
            None => break,
            Some(e) => {
                assert!(e.is_no_space(), "{e}");
                assert!(Instant::now() < deadline, "writes never resumed: {e}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        next += 1;
    }
    next += 1;
    // A flush that failed just before the space came back may pause writes once more, for
    // one backoff interval at most.
    for i in next..next + 200 {
        let deadline = Instant::now() + Duration::from_secs(5);
        while let Some(e) = write_range(&db, i..i + 1, &mut acked) {
            assert!(
                e.is_no_space() && Instant::now() < deadline,
                "after recovery: {e}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    next += 200;
    db.flush().expect("flush after recovery");
    check_all(&db, &acked, "after recovery");
    assert_no_partial_tables_eventually(&fs, &db, "after recovery");

    // Full again, then a reopen while full and a reopen once space is freed.
    fs.set_space_limit(Some(fs.used_bytes() + (8 << 10)));
    let deadline = Instant::now() + Duration::from_secs(20);
    while write_range(&db, next..next + 1, &mut acked).is_none() {
        assert!(Instant::now() < deadline, "the disk never filled");
        next += 1;
    }
    drop(db);
    fs.set_space_limit(None);
    let db = Db::open(DB, options(&fs, keystore.path(), true)).unwrap_or_else(|e| {
        panic!(
            "reopen: {e}; wal {:?}; db {:?}",
            fs.list_dir(&PathBuf::from(DB).join("wal")),
            fs.list_dir(Path::new(DB))
        )
    });
    check_all(&db, &acked, "after reopen");
    assert!(write_range(&db, 100_000..100_050, &mut acked).is_none());
    drop(db);
    fs.crash();
    let db = Db::open(DB, options(&fs, keystore.path(), true)).expect("reopen after crash");
    check_all(&db, &acked, "after crash");
}

/// Reopening a database whose disk is full because of orphans (tables of a flush cut by a
/// crash) must remove the orphans before writing anything (a new manifest, a WAL segment).
#[test]
fn reopen_on_a_full_disk_removes_orphans_before_writing() {
    let keystore = tempfile::tempdir().expect("tmp");
    let fs = new_fs();
    let mut acked = BTreeMap::new();
    {
        let db = Db::open(DB, options(&fs, keystore.path(), false)).expect("open");
        assert!(write_range(&db, 0..60, &mut acked).is_none());
        db.flush().expect("flush");
    }
    // An orphan as big as everything else, durable; then the disk is full.
    let orphan = PathBuf::from(DB)
        .join("tables")
        .join("0000000000009999.sst");
    let mut f = fs.create_new(&orphan).expect("orphan");
    f.append(&vec![0u8; 64 << 10]).expect("fill");
    f.sync_data().expect("sync");
    fs.sync_dir(&PathBuf::from(DB).join("tables"))
        .expect("sync dir");
    fs.set_space_limit(Some(fs.used_bytes()));
    let db = Db::open(DB, options(&fs, keystore.path(), false))
        .unwrap_or_else(|e| panic!("reopen on a full disk with an orphan failed: {e}"));
    assert!(!fs.exists(&orphan));
    check_all(&db, &acked, "after reopen");
    assert!(write_range(&db, 100..110, &mut acked).is_none());
}
