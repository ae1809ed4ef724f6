//! `Db::verify` covers every live artifact and counts each kind it checked.

mod common;

use common::TestDb;
use sealdb::{Db, Options, StreamView};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn files_in(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.expect("entry").path())
                .filter(|p| p.to_string_lossy().ends_with(suffix))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Flips one byte in place (open handles see it), returning the original to undo it.
fn flip(path: &Path, at: u64) -> u8 {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open");
    let mut b = [0u8];
    f.seek(SeekFrom::Start(at)).expect("seek");
    f.read_exact(&mut b).expect("read");
    f.seek(SeekFrom::Start(at)).expect("seek");
    f.write_all(&[b[0] ^ 0x40]).expect("write");
    f.sync_all().expect("sync");
    b[0]
}

fn unflip(path: &Path, at: u64, original: u8) {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open");
    f.seek(SeekFrom::Start(at)).expect("seek");
    f.write_all(&[original]).expect("write");
    f.sync_all().expect("sync");
}

#[test]
fn verify_covers_every_live_artifact_and_counts_each_kind() {
    let t = TestDb::new();
    let opts = Options {
        pitr_window: Some(Duration::from_secs(3600)),
        wal_segment_size: 4 << 10,
        ..t.options()
    };
    let db = Db::open(t.path(), opts).expect("open");
    let ks = db.default_keyspace();
    db.enable_stream(&ks, StreamView::NewImage, Duration::from_secs(3600), 0)
        .expect("stream");
    for round in 0..3u64 {
        for i in 0..50u64 {
            db.put(format!("k{round}-{i}").as_bytes(), [7u8; 100])
                .expect("put");
        }
        db.flush().expect("flush");
    }
    db.put(b"tail", b"in the active segment").expect("put");
    db.sync_wal().expect("sync");
    db.commit_stream_position(&ks, "reader", 10)
        .expect("consumer");

    let report = db.verify();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(report.tables >= 3, "{report:?}");
    assert!(report.wal_segments >= 1, "{report:?}");
    assert!(report.archived_wal_segments >= 1, "{report:?}");
    assert!(report.stream_segments >= 1, "{report:?}");
    assert_eq!(report.consumer_files, 1, "{report:?}");
    assert_eq!(report.manifest_files, 2, "{report:?}");
    assert_eq!(report.keys_files, 1, "{report:?}");
    assert_eq!(
        report.files_checked,
        report.tables
            + report.wal_segments
            + report.archived_wal_segments
            + report.stream_segments
            + report.consumer_files
            + report.manifest_files
            + report.keys_files
            + report.stats_files
    );

    let db_dir = t.path();
    // Archive trimming removes the oldest archived segments: the chain left is still whole.
    let archived = files_in(&db_dir.join("wal-archive"), ".wal");
    assert!(archived.len() >= 2, "{archived:?}");
    std::fs::remove_file(&archived[0]).expect("trim the oldest");
    let report = db.verify();
    assert!(
        report.errors.is_empty(),
        "after a trim: {:?}",
        report.errors
    );

    let stream_dir = std::fs::read_dir(db_dir.join("streams"))
        .expect("streams")
        .next()
        .expect("a stream directory")
        .expect("entry")
        .path();
    let manifest = files_in(&db_dir, "")
        .into_iter()
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("MANIFEST-"))
        })
        .expect("manifest");
    let kinds: Vec<(&str, PathBuf)> = vec![
        ("table", files_in(&db_dir.join("tables"), ".sst")[0].clone()),
        (
            "WAL segment",
            files_in(&db_dir.join("wal"), ".wal")[0].clone(),
        ),
        (
            "archived WAL segment",
            files_in(&db_dir.join("wal-archive"), ".wal")
                .pop()
                .expect("archived"),
        ),
        (
            "stream segment",
            files_in(&stream_dir, ".stream")[0].clone(),
        ),
        ("CONSUMERS", stream_dir.join("CONSUMERS")),
        ("manifest", manifest),
        ("CURRENT", db_dir.join("CURRENT")),
        ("KEYS", db_dir.join("KEYS")),
    ];
    for (what, path) in kinds {
        let len = std::fs::metadata(&path).expect("meta").len();
        // Inside the first block's body for every kind (past KEYS' envelope too): the middle
        // of small files, well past the header of large ones.
        let at = (len / 2).max(80).min(len - 1);
        let original = flip(&path, at);
        let report = db.verify();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        assert!(
            report
                .errors
                .iter()
                .any(|e| e.is_integrity() && e.to_string().contains(&name)),
            "{what}: a flipped byte at {at} of {} went unnoticed: {:?}",
            path.display(),
            report.errors
        );
        unflip(&path, at, original);
        let report = db.verify();
        assert!(
            report.errors.is_empty(),
            "{what} restored: {:?}",
            report.errors
        );
    }
}

#[test]
fn a_read_only_verify_beside_a_busy_writer_finds_nothing_wrong() {
    let t = TestDb::new();
    let opts = Options {
        pitr_window: Some(Duration::from_secs(3600)),
        wal_segment_size: 4 << 10,
        ..t.options()
    };
    let db = Db::open(t.path(), opts.clone()).expect("open");
    let ks = db.default_keyspace();
    db.enable_stream(&ks, StreamView::KeysOnly, Duration::from_secs(3600), 0)
        .expect("stream");
    for i in 0..200u64 {
        db.put(format!("k{i}").as_bytes(), [1u8; 64]).expect("put");
    }
    db.flush().expect("flush");
    db.commit_stream_position(&ks, "r", 5).expect("consumer");
    let reader = Db::open(
        t.path(),
        Options {
            read_only: true,
            ..opts
        },
    )
    .expect("read-only open beside the writer");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let db = db.clone();
        let ks = ks.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                db.put(format!("w{i}").as_bytes(), [2u8; 64]).expect("put");
                if i.is_multiple_of(40) {
                    db.flush().expect("flush");
                    db.commit_stream_position(&ks, "r", i).expect("consumer");
                }
                i += 1;
            }
        })
    };
    for _ in 0..5 {
        let report = reader.verify();
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        assert!(report.tables >= 1 && report.keys_files == 1, "{report:?}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().expect("writer");
}
