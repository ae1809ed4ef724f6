//! The ends of chains: deleting the newest piece of an artifact, cutting its tail at a block
//! boundary, mid-block and to zero, after a clean close and after a crash. Each case ends in
//! a typed error or in results equal to the truth — never in a silent loss of an
//! acknowledged synced write — except the one residual docs/crypto.md names (the unsynced
//! tail of the newest WAL segment after a crash). Also: a failed open changes nothing on disk,
//! and a read-only open never changes anything.

mod common;

use common::{TestDb, tree};
use sealdb::{Db, Error, Options, WriteOptions};
use sealdb_vfs::{CrashFs, FaultKind, FileSystem, SharedFs};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn wal_segments(db: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(db.join("wal"))
        .expect("wal dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    v.sort();
    v
}

fn manifest_file(db: &Path) -> PathBuf {
    std::fs::read_dir(db)
        .expect("db dir")
        .map(|e| e.expect("entry").path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("MANIFEST-"))
        })
        .expect("a manifest")
}

fn truncate(p: &Path, len: u64) {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(p)
        .expect("open for truncate");
    f.set_len(len).expect("truncate");
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).expect("metadata").len()
}

/// Three sessions, each one synced put and a clean close (three CLI processes, in effect).
fn three_synced_sessions(t: &TestDb) {
    for (k, v) in [(b"a", b"1"), (b"b", b"2"), (b"c", b"3")] {
        let db = t.open();
        db.default_keyspace()
            .put_opt(k, v, WriteOptions::SYNC)
            .expect("put");
    }
}

fn assert_chain_end(r: sealdb::Result<Db>, what: &str) {
    match r {
        Err(e @ Error::ChainEnd { .. }) => assert!(e.is_integrity(), "{e}"),
        Err(e) => panic!("{what}: expected a chain-end error, got {e:?}"),
        Ok(_) => panic!("{what}: the database opened"),
    }
}

#[test]
fn deleting_the_newest_wal_segments_loses_no_synced_write_silently() {
    let t = TestDb::new();
    three_synced_sessions(&t);
    let segs = wal_segments(&t.path());
    assert!(segs.len() >= 3, "{segs:?}");
    let before_ks = tree(t.keystore.path());
    let before = tree(&t.path());
    for s in segs.iter().rev().take(2) {
        std::fs::remove_file(s).expect("rm");
    }
    let after_tamper = tree(&t.path());
    assert_chain_end(
        Db::open(t.path(), t.options()),
        "newest two segments deleted",
    );
    // A failed open changes nothing, inside the directory or in the keystore.
    assert_eq!(tree(&t.path()), after_tamper);
    assert_eq!(tree(t.keystore.path()), before_ks);
    // All of them deleted.
    for s in &segs {
        let _ = std::fs::remove_file(s);
    }
    assert_chain_end(Db::open(t.path(), t.options()), "every segment deleted");
    // Put back, the database is whole again.
    for (p, c) in before {
        std::fs::write(&p, c).expect("restore");
    }
    let db = t.open();
    assert_eq!(db.get(b"b").expect("get"), Some(b"2".to_vec()));
    assert_eq!(db.get(b"c").expect("get"), Some(b"3".to_vec()));
}

#[test]
fn cutting_the_newest_wal_segment_after_a_clean_close_is_refused() {
    let t = TestDb::new();
    let (newest, boundary) = {
        let db = t.open();
        let ks = db.default_keyspace();
        ks.put_opt(b"a", b"1", WriteOptions::SYNC).expect("put");
        let newest = wal_segments(&t.path()).pop().expect("segment");
        let boundary = file_len(&newest);
        ks.put_opt(b"b", b"2", WriteOptions::SYNC).expect("put");
        (newest, boundary)
    };
    let end = file_len(&newest);
    assert!(end > boundary);
    let original = std::fs::read(&newest).expect("read");
    for (cut, what) in [
        (boundary, "at a block boundary"),
        (end - 5, "mid-block"),
        (0, "to zero"),
    ] {
        truncate(&newest, cut);
        let r = Db::open(t.path(), t.options());
        match r {
            Err(e) => assert!(e.is_integrity(), "cut {what}: {e:?}"),
            Ok(_) => panic!("cut {what}: the database opened"),
        }
        std::fs::write(&newest, &original).expect("restore");
    }
    // Bytes appended after a clean close are refused too.
    let mut longer = original.clone();
    longer.extend_from_slice(&[0u8; 7]);
    std::fs::write(&newest, &longer).expect("append");
    assert_chain_end(Db::open(t.path(), t.options()), "bytes appended");
    std::fs::write(&newest, &original).expect("restore");
    let db = t.open();
    assert_eq!(db.get(b"b").expect("get"), Some(b"2".to_vec()));
}

/// A database on a crashable filesystem, the head in a real keystore.
struct Crashy {
    fs: CrashFs,
    keystore: tempfile::TempDir,
}

impl Crashy {
    fn new() -> Self {
        let fs = CrashFs::new();
        fs.create_dir_all(Path::new("/data")).expect("mkdir");
        fs.sync_dir(Path::new("/")).expect("sync");
        Self {
            fs,
            keystore: tempfile::tempdir().expect("tmp"),
        }
    }

    fn options(&self) -> Options {
        let shared: SharedFs = Arc::new(self.fs.clone());
        Options {
            keystore_dir: Some(self.keystore.path().to_path_buf()),
            background_work: false,
            fs: shared,
            ..Options::default()
        }
    }

    fn path(&self) -> PathBuf {
        PathBuf::from("/data/db")
    }

    fn open(&self) -> sealdb::Result<Db> {
        Db::open(self.path(), self.options())
    }

    /// The process dies with `db` open: nothing more reaches the disk, no clean close.
    fn crash(&self, db: Db) {
        self.fs.fail_after(0, FaultKind::AnyMutation);
        drop(db);
        self.fs.crash();
    }

    fn newest_segment(&self) -> PathBuf {
        let dir = self.path().join("wal");
        let mut names = self.fs.list_dir(&dir).expect("ls");
        names.sort();
        dir.join(names.pop().expect("a segment"))
    }
}

#[test]
fn after_a_crash_deleting_the_newest_wal_segment_is_refused() {
    let c = Crashy::new();
    drop(c.open().expect("create"));
    let db = c.open().expect("open");
    db.default_keyspace()
        .put_opt(b"k", b"v", WriteOptions::SYNC)
        .expect("put");
    c.crash(db);
    let newest = c.newest_segment();
    c.fs.remove_file(&newest).expect("rm");
    assert_chain_end(c.open(), "newest segment deleted after a crash");
}

#[test]
fn after_a_crash_a_cut_tail_of_the_newest_wal_segment_is_the_documented_residual() {
    // docs/crypto.md: the head is not rewritten per write, so after a crash the tail of the
    // newest segment written since it was created is indistinguishable from a torn write.
    // What the head pins still holds: every write durable when the segment was created.
    let c = Crashy::new();
    {
        let db = c.open().expect("create");
        db.default_keyspace()
            .put_opt(b"before", b"1", WriteOptions::SYNC)
            .expect("put");
    }
    let db = c.open().expect("open");
    db.default_keyspace()
        .put_opt(b"after", b"2", WriteOptions::SYNC)
        .expect("put");
    c.crash(db);
    let newest = c.newest_segment();
    let mut bytes = c.fs.contents(&newest).expect("read");
    bytes.truncate(bytes.len() - 3);
    c.fs.set_contents(&newest, bytes).expect("cut");
    let db = c.open().expect("a torn tail after a crash is forgiven");
    assert!(db.open_stats().wal.torn_tail.is_some());
    assert_eq!(db.get(b"before").expect("get"), Some(b"1".to_vec()));
}

#[test]
fn after_a_crash_every_acknowledged_synced_write_survives_reopen() {
    // No false alarm: crashes at every mutation of a session that writes, rolls segments and
    // flushes never leave a head the disk cannot satisfy.
    let c = Crashy::new();
    drop(c.open().expect("create"));
    for point in (0..260).step_by(13) {
        let Ok(db) = c.open() else {
            panic!("point {point}: reopen failed");
        };
        let base = db.get(b"count").expect("get").map_or(0, |v| v.len());
        c.fs.fail_after(point, FaultKind::AnyMutation);
        let mut acked = base;
        for i in 0..20usize {
            let v = vec![b'x'; base + i + 1];
            if db
                .default_keyspace()
                .put_opt(b"count", &v, WriteOptions::SYNC)
                .is_err()
            {
                break;
            }
            acked = v.len();
            if i == 10 && db.flush().is_err() {
                break;
            }
        }
        c.crash(db);
        let db = c
            .open()
            .unwrap_or_else(|e| panic!("point {point}: reopen after crash failed: {e}"));
        let got = db.get(b"count").expect("get").map_or(0, |v| v.len());
        assert!(
            got >= acked,
            "point {point}: lost a synced write ({got} < {acked})"
        );
    }
}

#[test]
fn a_manifest_cut_at_a_block_boundary_is_refused() {
    let t = TestDb::new();
    let (manifest, boundary) = {
        let db = t.open();
        db.put(b"a", b"1").expect("put");
        db.flush().expect("flush");
        let m = manifest_file(&t.path());
        let boundary = file_len(&m);
        db.put(b"b", b"2").expect("put");
        db.flush().expect("flush");
        (m, boundary)
    };
    let end = file_len(&manifest);
    assert!(end > boundary, "the second flush appended an edit");
    let original = std::fs::read(&manifest).expect("read");
    for (cut, what) in [
        (boundary, "at a block boundary"),
        (end - 3, "mid-block"),
        (0, "to zero"),
    ] {
        truncate(&manifest, cut);
        let before = tree(&t.path());
        match Db::open(t.path(), t.options()) {
            Err(e) => assert!(
                e.is_integrity() || matches!(e, Error::RolledBack { .. }),
                "cut {what}: {e:?}"
            ),
            Ok(_) => panic!("manifest cut {what}: the database opened"),
        }
        assert_eq!(
            tree(&t.path()),
            before,
            "a failed open changed the directory"
        );
        std::fs::write(&manifest, &original).expect("restore");
    }
    std::fs::remove_file(&manifest).expect("rm");
    assert!(Db::open(t.path(), t.options()).is_err(), "manifest deleted");
    std::fs::write(&manifest, &original).expect("restore");
    let db = t.open();
    assert_eq!(db.get(b"b").expect("get"), Some(b"2".to_vec()));
}

#[test]
fn a_stale_keys_file_put_back_after_a_switch_is_refused() {
    let t = TestDb::new();
    let kms = sealdb_crypto::LocalKms::open(&t.keystore.path().join("kms")).expect("kms");
    kms.create_key("new").expect("create key");
    let keys = t.path().join("KEYS");
    let stale = {
        let db = t.open();
        db.put(b"a", b"1").expect("put");
        let stale = std::fs::read(&keys).expect("read KEYS");
        db.switch_master_key(sealdb::MasterKey::LocalKms("new".into()))
            .expect("switch");
        stale
    };
    // The new key disabled: the old KEYS (wrapped by the owned key) would open the database.
    kms.disable("new").expect("disable");
    std::fs::write(&keys, &stale).expect("put back");
    assert_chain_end(Db::open(t.path(), t.options()), "stale KEYS after a switch");
    kms.enable("new").expect("enable");
    assert_chain_end(
        Db::open(t.path(), t.options()),
        "stale KEYS, new key enabled",
    );
}

#[test]
fn a_stale_keys_file_put_back_after_a_rotation_is_refused() {
    let t = TestDb::new();
    let keys = t.path().join("KEYS");
    let stale = {
        let db = t.open();
        db.put(b"a", b"1").expect("put");
        let stale = std::fs::read(&keys).expect("read KEYS");
        db.rotate_data_key().expect("rotate");
        stale
    };
    let fresh = std::fs::read(&keys).expect("read KEYS");
    std::fs::write(&keys, &stale).expect("put back");
    assert!(Db::open(t.path(), t.options()).is_err());
    std::fs::write(&keys, &fresh).expect("restore");
    t.open();
}

#[test]
fn a_failed_open_changes_nothing_on_disk() {
    // A table flipped: open fails verifying it, after reading the manifest and before the WAL.
    let t = TestDb::new();
    {
        let db = t.open();
        for i in 0..50u32 {
            db.put(i.to_be_bytes(), b"value").expect("put");
        }
        db.flush().expect("flush");
        db.put(b"unflushed", b"1").expect("put");
    }
    let table = std::fs::read_dir(t.path().join("tables"))
        .expect("tables")
        .map(|e| e.expect("entry").path())
        .next()
        .expect("a table");
    let mut bytes = std::fs::read(&table).expect("read");
    // In the footer, which open authenticates (data blocks are checked when read).
    let mid = bytes.len() - 5;
    bytes[mid] ^= 1;
    std::fs::write(&table, &bytes).expect("flip");
    // And an orphan table and an obsolete-looking file that a successful open would delete.
    std::fs::write(t.path().join("tables").join("999999.sst"), b"orphan").expect("orphan");
    let before = tree(&t.path());
    let before_ks = tree(t.keystore.path());
    assert!(Db::open(t.path(), t.options()).is_err());
    assert_eq!(
        tree(&t.path()),
        before,
        "a failed open changed the directory"
    );
    assert_eq!(
        tree(t.keystore.path()),
        before_ks,
        "a failed open changed the keystore"
    );
}

#[test]
fn a_read_only_open_changes_nothing_and_runs_beside_a_writer() {
    let t = TestDb::new();
    {
        let db = t.open();
        db.put(b"flushed", b"1").expect("put");
        db.flush().expect("flush");
        db.default_keyspace()
            .put_opt(b"in-wal", b"2", WriteOptions::SYNC)
            .expect("put");
    }
    let ro = || {
        Db::open(
            t.path(),
            Options {
                read_only: true,
                ..t.options()
            },
        )
    };
    let before = tree(&t.path());
    let before_ks = tree(t.keystore.path());
    {
        let db = ro().expect("read-only open");
        assert_eq!(db.get(b"flushed").expect("get"), Some(b"1".to_vec()));
        assert_eq!(db.get(b"in-wal").expect("get"), Some(b"2".to_vec()));
        assert!(matches!(db.put(b"x", b"y"), Err(Error::ReadOnly)));
        assert!(matches!(db.flush(), Err(Error::ReadOnly)));
        assert!(matches!(db.rotate_data_key(), Err(Error::ReadOnly)));
        assert!(db.create_keyspace("new").is_err());
        let report = db.verify();
        assert!(report.errors.is_empty(), "{:?}", report.errors);
    }
    assert_eq!(
        tree(&t.path()),
        before,
        "a read-only open changed the directory"
    );
    assert_eq!(
        tree(t.keystore.path()),
        before_ks,
        "a read-only open changed the keystore"
    );

    // Beside a live writer: two read-only openers see what the writer made durable.
    let writer = t.open();
    writer
        .default_keyspace()
        .put_opt(b"live", b"3", WriteOptions::SYNC)
        .expect("put");
    let r1 = ro().expect("read-only beside a writer");
    let r2 = ro().expect("a second read-only opener");
    assert_eq!(r1.get(b"live").expect("get"), Some(b"3".to_vec()));
    assert_eq!(r2.get(b"in-wal").expect("get"), Some(b"2".to_vec()));
    drop((r1, r2));
    writer.put(b"after", b"4").expect("the writer goes on");

    // A read-only open of a missing database creates nothing.
    let missing = t.dir.path().join("missing");
    assert!(
        Db::open(
            &missing,
            Options {
                read_only: true,
                ..t.options()
            }
        )
        .is_err()
    );
    assert!(!missing.exists());
}

#[test]
fn many_short_sessions_keep_the_wal_bounded() {
    let t = TestDb::new();
    for i in 0..60u32 {
        let db = t.open();
        db.default_keyspace()
            .put_opt(i.to_be_bytes(), b"v", WriteOptions::SYNC)
            .expect("put");
    }
    let segments = wal_segments(&t.path()).len();
    assert!(segments <= 10, "{segments} WAL segments after 60 sessions");
    let db = t.open();
    for i in 0..60u32 {
        assert_eq!(db.get(i.to_be_bytes()).expect("get"), Some(b"v".to_vec()));
    }
}

#[test]
fn reencrypt_leaves_no_wal_segment_under_the_old_data_key() {
    // `import; flush; keys rotate; keys reencrypt` as separate sessions: idle WAL segments of
    // earlier sessions used version 1 and kept it alive ("dropped versions none").
    let t = TestDb::new();
    {
        let db = t.open();
        db.put(b"a", b"1").expect("put");
        db.flush().expect("flush");
    }
    drop(t.open());
    {
        let db = t.open();
        db.rotate_data_key().expect("rotate");
    }
    let db = t.open();
    let report = db.reencrypt(&mut |_, _| {}).expect("reencrypt");
    assert_eq!(report.versions_dropped, vec![1]);
    assert_eq!(db.get(b"a").expect("get"), Some(b"1".to_vec()));
}

fn stream_segments(db: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for d in std::fs::read_dir(db.join("streams")).expect("streams") {
        for e in std::fs::read_dir(d.expect("dir").path()).expect("stream dir") {
            let p = e.expect("entry").path();
            if p.extension().is_some_and(|x| x == "stream") {
                v.push(p);
            }
        }
    }
    v.sort();
    v
}

/// A stream with records over several sessions (each session's records in its own segment),
/// its WAL flushed away, and a committed consumer position.
fn streamed(t: &TestDb) {
    {
        let db = t.open();
        let ks = db.create_keyspace("orders").expect("keyspace");
        db.enable_stream(
            &ks,
            sealdb::StreamView::NewImage,
            std::time::Duration::from_secs(86400),
            0,
        )
        .expect("enable");
    }
    for i in 0..3u32 {
        let db = t.open();
        let ks = db.keyspace("orders").expect("keyspace");
        ks.put_opt(i.to_be_bytes(), b"v", WriteOptions::SYNC)
            .expect("put");
        db.commit_stream_position(&ks, "billing", u64::from(i) + 1)
            .expect("commit position");
        db.flush().expect("flush");
    }
}

#[test]
fn deleting_the_newest_stream_segments_is_refused() {
    let t = TestDb::new();
    streamed(&t);
    let segs = stream_segments(&t.path());
    assert!(segs.len() >= 3, "{segs:?}");
    for s in segs.iter().rev().take(2) {
        std::fs::remove_file(s).expect("rm");
    }
    let err = common::failed_open(&t, "newest two stream segments deleted");
    assert!(matches!(err, Error::ChainEnd { .. }), "{err:?}");
}

#[test]
fn deleting_the_consumer_positions_is_refused() {
    let t = TestDb::new();
    streamed(&t);
    let consumers: Vec<PathBuf> = std::fs::read_dir(t.path().join("streams"))
        .expect("streams")
        .map(|d| d.expect("dir").path().join("CONSUMERS"))
        .filter(|p| p.exists())
        .collect();
    assert_eq!(consumers.len(), 1);
    let old = std::fs::read(&consumers[0]).expect("read");
    std::fs::remove_file(&consumers[0]).expect("rm");
    let err = common::failed_open(&t, "CONSUMERS deleted");
    assert!(matches!(err, Error::ChainEnd { .. }), "{err:?}");
    // An older copy (generation behind the head) is refused too.
    {
        std::fs::write(&consumers[0], &old).expect("restore");
        let db = t.open();
        let ks = db.keyspace("orders").expect("keyspace");
        db.commit_stream_position(&ks, "billing", 3)
            .expect("commit");
    }
    std::fs::write(&consumers[0], &old).expect("put back an older copy");
    let err = common::failed_open(&t, "older CONSUMERS");
    assert!(err.is_integrity(), "{err:?}");
}

#[test]
fn a_read_only_open_serves_streams_and_verifies_them() {
    let t = TestDb::new();
    streamed(&t);
    // A CONSUMERS replace a crashed process left half done: reading must leave it alone.
    let stream_dir = std::fs::read_dir(t.path().join("streams"))
        .expect("streams")
        .map(|d| d.expect("dir").path())
        .next()
        .expect("a stream directory");
    let stale = stream_dir.join("CONSUMERS.tmp-0123456789abcdef0123456789abcdef");
    std::fs::write(&stale, b"half").expect("stale");
    let before = tree(&t.path());
    let db = Db::open(
        t.path(),
        Options {
            read_only: true,
            ..t.options()
        },
    )
    .expect("read-only");
    let ks = db.keyspace("orders").expect("keyspace");
    let got = db
        .read_stream(&ks, sealdb::StreamStart::TrimHorizon, 100, usize::MAX)
        .expect("read");
    assert_eq!(got.records.len(), 3);
    assert_eq!(db.stream_position(&ks, "billing").expect("pos"), Some(3));
    let report = db.verify();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(report.stream_segments >= 3);
    assert!(db.commit_stream_position(&ks, "billing", 4).is_err());
    drop(db);
    assert_eq!(tree(&t.path()), before);
    // A writable open clears it.
    drop(t.open());
    assert!(!stale.exists());
}

#[test]
fn cutting_the_newest_stream_segment_after_a_clean_close_is_refused() {
    let t = TestDb::new();
    streamed(&t);
    let newest = stream_segments(&t.path())
        .into_iter()
        .rfind(|p| file_len(p) > 200)
        .expect("a stream segment holding records");
    let original = std::fs::read(&newest).expect("read");
    for (cut, what) in [(original.len() as u64 - 3, "mid-block"), (0, "to zero")] {
        truncate(&newest, cut);
        let err = common::failed_open(&t, what);
        assert!(err.is_integrity(), "stream segment cut {what}: {err:?}");
        std::fs::write(&newest, &original).expect("restore");
    }
    t.open();
}

#[test]
fn open_stats_say_what_the_chain_ends_were_checked_against() {
    let t = TestDb::new();
    assert_eq!(t.open().open_stats().head, sealdb::HeadOrigin::None);
    assert_eq!(t.open().open_stats().head, sealdb::HeadOrigin::Head);
    // Moved to another path: no head there yet; trusted as found, then anchored.
    let moved = t.dir.path().join("moved");
    std::fs::rename(t.path(), &moved).expect("move");
    let open_moved = || Db::open(&moved, t.options()).expect("open moved");
    assert_eq!(open_moved().open_stats().head, sealdb::HeadOrigin::None);
    assert_eq!(open_moved().open_stats().head, sealdb::HeadOrigin::Head);
}

#[test]
fn stale_temporary_files_are_removed_by_a_writable_open_only() {
    let t = TestDb::new();
    drop(t.open());
    let stale = t
        .path()
        .join("CURRENT.tmp-0123456789abcdef0123456789abcdef");
    let legacy = t.path().join("KEYS.tmp-1-0");
    std::fs::write(&stale, b"half-written").expect("stale");
    std::fs::write(&legacy, b"half-written").expect("legacy");
    drop(
        Db::open(
            t.path(),
            Options {
                read_only: true,
                ..t.options()
            },
        )
        .expect("read-only"),
    );
    assert!(
        stale.exists() && legacy.exists(),
        "a read-only open removed files"
    );
    drop(t.open());
    assert!(!stale.exists() && !legacy.exists());
}

/// Opens `c` with small WAL segments, writes synced puts until the next segment has been
/// created ahead (a spare: a sealed header, no frame), and crashes. Returns the keys
/// acknowledged, the size of a started segment holding nothing yet, and the WAL files left.
fn crash_with_a_spare_segment(c: &Crashy) -> (Vec<Vec<u8>>, u64, Vec<(PathBuf, u64)>) {
    let opts = || Options {
        wal_segment_size: 4 << 10,
        ..c.options()
    };
    drop(Db::open(c.path(), opts()).expect("create"));
    let db = Db::open(c.path(), opts()).expect("open");
    let dir = c.path().join("wal");
    let sizes = || -> Vec<(PathBuf, u64)> {
        let mut names = c.fs.list_dir(&dir).expect("ls");
        names.sort();
        names
            .into_iter()
            .map(|n| {
                let p = dir.join(n);
                let len = c.fs.file_size(&p).expect("size");
                (p, len)
            })
            .collect()
    };
    // The segment this open started: header and start frame, nothing else.
    let started = sizes().last().expect("a segment").1;
    let mut acked = Vec::new();
    for i in 0..2000u32 {
        let key = format!("k{i:05}").into_bytes();
        db.default_keyspace()
            .put_opt(&key, [7u8; 100], WriteOptions::SYNC)
            .expect("put");
        acked.push(key);
        let files = sizes();
        if files.len() >= 2 && files.last().is_some_and(|(_, len)| *len < started) {
            break;
        }
    }
    let files = sizes();
    assert!(
        files.last().is_some_and(|(_, len)| *len < started),
        "no spare segment was created: {files:?}"
    );
    c.crash(db);
    (acked, started, sizes())
}

#[test]
fn after_a_crash_a_spare_wal_segment_is_removed_and_every_synced_write_survives() {
    let c = Crashy::new();
    let (acked, started, _) = crash_with_a_spare_segment(&c);
    let db = Db::open(
        c.path(),
        Options {
            wal_segment_size: 4 << 10,
            ..c.options()
        },
    )
    .expect("a spare segment left by a crash is not damage");
    for k in &acked {
        assert_eq!(db.get(k).expect("get"), Some(vec![7u8; 100]), "{k:?}");
    }
    // No file that holds nothing is left in the WAL directory.
    let dir = c.path().join("wal");
    for n in c.fs.list_dir(&dir).expect("ls") {
        let len = c.fs.file_size(&dir.join(&n)).expect("size");
        assert!(len >= started, "{n} ({len} bytes) was left behind");
    }
}

#[test]
fn after_a_crash_a_spare_wal_segment_does_not_stand_in_for_a_deleted_newest_segment() {
    let c = Crashy::new();
    let (_, started, files) = crash_with_a_spare_segment(&c);
    // The newest segment that holds a start frame: the one before a surviving spare.
    let newest_real = files
        .iter()
        .rev()
        .find(|(_, len)| *len >= started)
        .map(|(p, _)| p.clone())
        .expect("a started segment");
    c.fs.remove_file(&newest_real).expect("rm");
    assert_chain_end(c.open(), "newest started segment deleted, spare left");
}
