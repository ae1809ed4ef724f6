//! Backups: consistent online backups, incremental sharing, verification, restore under the
//! same or another master key, point-in-time restore, deletion, and crashes mid-restore.

mod common;

use common::{TestDb, collect};
use sealdb::{Db, Error, MasterKey, Options, RestorePoint, WriteOptions};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

fn key(i: u64) -> Vec<u8> {
    format!("key{i:08}").into_bytes()
}

fn noop(_: u64, _: u64) {}

#[test]
fn online_backup_restores_exactly_the_state_at_its_sequence() {
    let t = TestDb::new();
    let db = t.open();
    for i in 0..2000 {
        db.put(key(i), i.to_le_bytes()).expect("put");
    }
    // Writers keep inserting (each key once, in order) while the backup runs.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let db = db.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut i = 2000u64;
            while !stop.load(Ordering::Relaxed) {
                db.put(key(i), i.to_le_bytes()).expect("put during backup");
                i += 1;
            }
            i
        })
    };
    let bdir = tempfile::tempdir().expect("tmp");
    let info = db.backup(bdir.path(), &mut noop).expect("backup");
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().expect("writer");
    assert!(written > 2000);
    let dest = t.dir.path().join("restored");
    let r = sealdb::restore_backup(
        bdir.path(),
        &dest,
        None,
        RestorePoint::Backup,
        None,
        &t.options(),
        &mut noop,
    )
    .expect("restore");
    assert_eq!(r.sequence, info.sequence);
    let restored = Db::open(&dest, t.options()).expect("open restored");
    let rows = collect(restored.default_keyspace().iter().expect("iter"));
    // Exactly a prefix of the insertion order, at least everything before the backup began.
    assert!(rows.len() >= 2000);
    for (n, (k, v)) in rows.iter().enumerate() {
        assert_eq!(*k, key(n as u64));
        assert_eq!(*v, (n as u64).to_le_bytes().to_vec());
    }
    assert_eq!(restored.last_sequence(), info.sequence);
    assert!(restored.verify().errors.is_empty());
}

#[test]
fn backups_are_incremental_verifiable_and_deletable() {
    let t = TestDb::new();
    let db = t.open();
    for i in 0..3000 {
        db.put(key(i), b"v1").expect("put");
    }
    let bdir = tempfile::tempdir().expect("tmp");
    let first = db.backup(bdir.path(), &mut noop).expect("backup 1");
    db.put(b"extra", b"x").expect("put");
    let second = db.backup(bdir.path(), &mut noop).expect("backup 2");
    let tables_dir = bdir.path().join("tables");
    let files = std::fs::read_dir(&tables_dir).expect("ls").count();
    assert!(
        files < first.tables.len() + second.tables.len(),
        "no sharing: {files}"
    );
    let list = sealdb::list_backups(bdir.path(), &t.options()).expect("list");
    assert_eq!(list.len(), 2);
    let report = sealdb::verify_backup(bdir.path(), None, &t.options()).expect("verify");
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.backups, 2);
    // Nothing in a backup is in clear.
    for e in walk(bdir.path()) {
        let bytes = std::fs::read(&e).expect("read");
        assert!(
            !bytes.windows(11).any(|w| w == b"key00000042"),
            "{}",
            e.display()
        );
    }
    sealdb::delete_backup(bdir.path(), &first.id, &t.options()).expect("delete");
    assert_eq!(
        sealdb::list_backups(bdir.path(), &t.options())
            .expect("list")
            .len(),
        1
    );
    let report = sealdb::verify_backup(bdir.path(), None, &t.options()).expect("verify");
    assert!(report.errors.is_empty());
}

#[test]
fn tampered_missing_or_foreign_backup_files_are_named() {
    let t = TestDb::new();
    let db = t.open();
    for i in 0..2000 {
        db.put(key(i), b"value").expect("put");
    }
    let bdir = tempfile::tempdir().expect("tmp");
    db.backup(bdir.path(), &mut noop).expect("backup");
    let tables: Vec<_> = walk(&bdir.path().join("tables"));
    let victim = tables.first().expect("a table").clone();
    let mut bytes = std::fs::read(&victim).expect("read");
    bytes[200] ^= 0x10;
    std::fs::write(&victim, &bytes).expect("write");
    let report = sealdb::verify_backup(bdir.path(), None, &t.options()).expect("verify");
    let name = victim.file_name().expect("n").to_string_lossy().to_string();
    assert!(
        report.errors.iter().any(|e| e.to_string().contains(&name)),
        "{:?}",
        report.errors
    );
    // Restore refuses it too, and leaves nothing behind.
    let dest = t.dir.path().join("r1");
    let err = sealdb::restore_backup(
        bdir.path(),
        &dest,
        None,
        RestorePoint::Backup,
        None,
        &t.options(),
        &mut noop,
    );
    // Opening a table reads only its metadata blocks; the damage may be in a data block, so
    // restore may succeed — but then verify of the restored copy reports it.
    if err.is_ok() {
        let r = Db::open(&dest, t.options()).expect("open");
        assert!(!r.verify().errors.is_empty());
    } else {
        assert!(!dest.exists());
    }
    std::fs::remove_file(&victim).expect("rm");
    let report = sealdb::verify_backup(bdir.path(), None, &t.options()).expect("verify");
    assert!(
        report.errors.iter().any(|e| e.to_string().contains(&name)),
        "{:?}",
        report.errors
    );
}

#[test]
fn a_backup_restores_under_another_master_key_and_not_without_its_own() {
    let t = TestDb::new();
    let kms = sealdb_crypto::LocalKms::open(&t.keystore.path().join("kms")).expect("kms");
    kms.create_key("restore-key").expect("create");
    let db = t.open();
    db.put(b"a", b"1").expect("put");
    let bdir = tempfile::tempdir().expect("tmp");
    db.backup(bdir.path(), &mut noop).expect("backup");
    drop(db);
    let dest = t.dir.path().join("under-kms");
    let r = sealdb::restore_backup(
        bdir.path(),
        &dest,
        None,
        RestorePoint::Backup,
        Some(MasterKey::LocalKms("restore-key".into())),
        &t.options(),
        &mut noop,
    )
    .expect("restore under kms key");
    assert_eq!(r.master.provider, "local-kms");
    let restored = Db::open(&dest, t.options()).expect("open");
    assert_eq!(restored.master_key().key_id, "restore-key");
    assert_eq!(restored.get(b"a").expect("get"), Some(b"1".to_vec()));
    // Without the backup's own master key (another keystore), restore is refused.
    let other = tempfile::tempdir().expect("tmp");
    let opts = Options {
        keystore_dir: Some(other.path().to_path_buf()),
        ..t.options()
    };
    let err = sealdb::restore_backup(
        bdir.path(),
        &t.dir.path().join("nokey"),
        None,
        RestorePoint::Backup,
        None,
        &opts,
        &mut noop,
    )
    .expect_err("key unavailable");
    assert!(matches!(err, Error::KeyUnavailable { .. }), "{err:?}");
    assert!(!t.dir.path().join("nokey").exists());
}

#[test]
fn point_in_time_restore_stops_exactly_at_the_requested_sequence() {
    let t = TestDb::new();
    let opts = Options {
        pitr_window: Some(std::time::Duration::from_secs(7 * 24 * 3600)),
        memtable_size: 64 << 10,
        ..t.options()
    };
    let db = Db::open(t.path(), opts.clone()).expect("open");
    let mut seqs = Vec::new();
    for i in 0..500 {
        let s = db
            .write(
                {
                    let mut b = sealdb::WriteBatch::new();
                    b.put(&db.default_keyspace(), key(i), i.to_le_bytes())
                        .expect("put");
                    b
                },
                WriteOptions::default(),
            )
            .expect("write");
        seqs.push(s);
    }
    let bdir = tempfile::tempdir().expect("tmp");
    db.backup(bdir.path(), &mut noop).expect("backup 1");
    for i in 500..3000 {
        db.put(key(i), i.to_le_bytes()).expect("put");
        if i % 700 == 0 {
            db.flush().expect("flush");
        }
    }
    let info = db.backup(bdir.path(), &mut noop).expect("backup 2");
    let list = sealdb::list_backups(bdir.path(), &opts).expect("list");
    assert_eq!(list.len(), 2);
    // With point-in-time recovery on, the later backup carries the log past the first one.
    assert!(
        list[1].wal.iter().any(|w| w.last_seq > list[0].sequence),
        "{:?}",
        list[1].wal
    );
    let (latest, _) = info.latest_restorable();
    assert!(latest >= info.sequence);
    // Restore to a point between the backups: batch i has sequence i + 1.
    let target = 1234u64;
    let dest = t.dir.path().join("pitr");
    let r = sealdb::restore_backup(
        bdir.path(),
        &dest,
        None,
        RestorePoint::Sequence(target),
        None,
        &opts,
        &mut noop,
    )
    .expect("pitr");
    assert_eq!(r.sequence, target);
    let restored = Db::open(&dest, t.options()).expect("open");
    let rows = collect(restored.default_keyspace().iter().expect("iter"));
    assert_eq!(rows.len() as u64, target, "writes 1..={target}");
    assert_eq!(rows.last().map(|(k, _)| k.clone()), Some(key(target - 1)));
}

#[test]
fn a_crash_during_restore_leaves_no_result_that_looks_complete() {
    let keystore = tempfile::tempdir().expect("tmp");
    let fs = sealdb_vfs::CrashFs::new();
    sealdb_vfs::FileSystem::create_dir_all(&fs, Path::new("/d")).expect("mkdir");
    sealdb_vfs::FileSystem::sync_dir(&fs, Path::new("/")).expect("sync");
    let opts = Options {
        fs: Arc::new(fs.clone()),
        keystore_dir: Some(keystore.path().to_path_buf()),
        background_work: false,
        ..Options::default()
    };
    {
        let db = Db::open("/d/db", opts.clone()).expect("open");
        for i in 0..300 {
            db.put(key(i), b"v").expect("put");
        }
        db.backup(Path::new("/d/backups"), &mut noop)
            .expect("backup");
    }
    sealdb_vfs::FileSystem::sync_dir(&fs, Path::new("/d")).expect("sync");
    let mut completed = 0;
    for point in 0..2000u64 {
        fs.fail_after(point, sealdb_vfs::FaultKind::AnyMutation);
        let dest = format!("/d/restore-{point}");
        let r = sealdb::restore_backup(
            Path::new("/d/backups"),
            Path::new(&dest),
            None,
            RestorePoint::Backup,
            None,
            &opts,
            &mut noop,
        );
        let fired = fs.fault_fired();
        fs.crash();
        if sealdb_vfs::FileSystem::exists(&fs, Path::new(&dest)) {
            // Whatever is visible under the name is a complete, openable database.
            let db = Db::open(&dest, opts.clone())
                .unwrap_or_else(|e| panic!("point {point}: visible but broken restore: {e}"));
            assert_eq!(
                collect(db.default_keyspace().iter().expect("iter")).len(),
                300
            );
            completed += 1;
        } else {
            assert!(
                r.is_err(),
                "point {point}: restore reported success but left nothing"
            );
        }
        if !fired {
            assert!(r.is_ok(), "restore without a fault failed: {r:?}");
            break; // the restore ran to the end before the fault: every point was covered
        }
    }
    assert!(completed > 0);
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("readdir") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

#[test]
fn indexes_survive_backup_and_restore() {
    let t = TestDb::new();
    let db = t.open();
    let ks = db.create_keyspace("users").expect("ks");
    db.create_index(
        sealdb::IndexDefinition {
            name: "by_city".into(),
            keyspace: "users".into(),
            kind: sealdb::IndexKind::Global,
            extractor: sealdb::Extractor::JsonPointer("/city".into()),
            projection: sealdb::Projection::KeysOnly,
        },
        &mut |_| {},
    )
    .expect("index");
    ks.put(b"u1", br#"{"city":"Oslo"}"#).expect("put");
    ks.put(b"u2", br#"{"city":"Lima"}"#).expect("put");
    let bdir = tempfile::tempdir().expect("tmp");
    db.backup(bdir.path(), &mut noop).expect("backup");
    let dest = t.dir.path().join("restored");
    sealdb::restore_backup(
        bdir.path(),
        &dest,
        None,
        RestorePoint::Backup,
        None,
        &t.options(),
        &mut noop,
    )
    .expect("restore");
    let r = Db::open(&dest, t.options()).expect("open");
    let q = sealdb::IndexQuery::new(sealdb::Query::Eq(sealdb::IndexValue::String("Oslo".into())));
    let hits = r.query_index("by_city", &q).expect("query").hits;
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].primary_key, b"u1".to_vec());
}

/// Offsets of every block of a sealed file (64-byte header, no extension, ChaCha20-Poly1305).
fn block_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut off = 64usize;
    while off + 4 <= bytes.len() {
        out.push(off);
        let len = u32::from_le_bytes(bytes[off..off + 4].try_into().expect("4 bytes")) as usize;
        off += 9 + len + 16;
    }
    out
}

#[test]
fn point_in_time_restore_from_a_cut_newest_segment_is_an_integrity_error() {
    let t = TestDb::new();
    let opts = Options {
        pitr_window: Some(std::time::Duration::from_secs(7 * 24 * 3600)),
        memtable_size: 64 << 10,
        ..t.options()
    };
    let db = Db::open(t.path(), opts.clone()).expect("open");
    for i in 0..200 {
        db.put(key(i), i.to_le_bytes()).expect("put");
    }
    let bdir = tempfile::tempdir().expect("tmp");
    db.backup(bdir.path(), &mut noop).expect("backup 1");
    for i in 200..400 {
        db.put(key(i), i.to_le_bytes()).expect("put");
    }
    db.backup(bdir.path(), &mut noop).expect("backup 2");
    drop(db);
    let list = sealdb::list_backups(bdir.path(), &opts).expect("list");
    let newest = list
        .iter()
        .flat_map(|b| b.wal.iter())
        .max_by_key(|w| w.last_seq)
        .expect("a WAL segment")
        .clone();
    let (target, _) = list[1].latest_restorable();
    assert!(target > list[0].sequence, "the log goes past backup 1");
    let seg = bdir.path().join("wal").join(format!(
        "{}.wal",
        newest
            .file_id
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    ));
    let original = std::fs::read(&seg).expect("read segment");
    let blocks = block_offsets(&original);
    assert!(blocks.len() >= 3, "{blocks:?}");
    let cuts = [
        ("at a block boundary", blocks[blocks.len() - 1]),
        ("mid-block", original.len() - 7),
        ("to zero", 0),
    ];
    for (n, (what, cut)) in cuts.iter().enumerate() {
        // Replace rather than write through the hard link shared with the live archive.
        std::fs::remove_file(&seg).expect("unlink");
        std::fs::write(&seg, &original[..*cut]).expect("write");
        let dest = t.dir.path().join(format!("pitr-{n}"));
        let err = sealdb::restore_backup(
            bdir.path(),
            &dest,
            None,
            RestorePoint::Sequence(target),
            None,
            &opts,
            &mut noop,
        )
        .expect_err(what);
        assert!(err.is_integrity(), "{what}: {err}");
        assert!(
            !dest.exists(),
            "{what}: a short restore appeared at {}",
            dest.display()
        );
        let report = sealdb::verify_backup(bdir.path(), None, &opts).expect("verify");
        assert!(
            report
                .errors
                .iter()
                .any(|e| e.is_integrity() && e.to_string().contains(&seg.display().to_string())),
            "{what}: verify missed the cut: {:?}",
            report.errors
        );
    }
    std::fs::remove_file(&seg).expect("unlink");
    std::fs::write(&seg, &original).expect("restore bytes");
    let dest = t.dir.path().join("pitr-ok");
    let r = sealdb::restore_backup(
        bdir.path(),
        &dest,
        None,
        RestorePoint::Sequence(target),
        None,
        &opts,
        &mut noop,
    )
    .expect("intact restore");
    assert_eq!(r.sequence, target);
}

#[test]
fn deleting_the_newest_backup_catalogue_is_refused_not_silently_older() {
    let t = TestDb::new();
    let db = t.open();
    let bdir = tempfile::tempdir().expect("tmp");
    db.put(b"a", b"1").expect("put");
    let b1 = db.backup(bdir.path(), &mut noop).expect("backup 1");
    db.put(b"b", b"2").expect("put");
    let b2 = db.backup(bdir.path(), &mut noop).expect("backup 2");
    assert_eq!(
        b2.predecessor.as_ref().map(|p| p.0.as_str()),
        Some(b1.id.as_str())
    );
    let opts = t.options();
    let cat2 = bdir.path().join(format!("{}.catalog", b2.id));
    let saved = std::fs::read(&cat2).expect("read catalogue");
    std::fs::remove_file(&cat2).expect("delete the newest catalogue");

    let named = |e: &Error| e.is_integrity() && e.to_string().contains(&cat2.display().to_string());
    let err = sealdb::list_backups(bdir.path(), &opts).expect_err("list");
    assert!(named(&err), "{err}");
    let report = sealdb::verify_backup(bdir.path(), None, &opts).expect("verify runs");
    assert!(report.errors.iter().any(named), "{:?}", report.errors);
    let dest = t.dir.path().join("restored");
    let err = sealdb::restore_backup(
        bdir.path(),
        &dest,
        None,
        RestorePoint::Backup,
        None,
        &opts,
        &mut noop,
    )
    .expect_err("restore");
    assert!(named(&err), "{err}");
    assert!(!dest.exists());
    let err = db.backup(bdir.path(), &mut noop).expect_err("backup 3");
    assert!(named(&err), "{err}");

    // A catalogue written just before a crash, before the anchor moved, still chains to it.
    std::fs::write(&cat2, &saved).expect("put it back");
    let anchor = std::fs::read_dir(t.keystore.path())
        .expect("keystore")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|x| x == "anchor"))
        .expect("an anchor in the keystore");
    let anchored_b2 = std::fs::read(&anchor).expect("anchor");
    db.put(b"c", b"3").expect("put");
    let b3 = db.backup(bdir.path(), &mut noop).expect("backup 3");
    std::fs::write(&anchor, &anchored_b2).expect("roll the anchor back to b2");
    let list = sealdb::list_backups(bdir.path(), &opts).expect("b3 descends from b2");
    assert_eq!(list.last().map(|b| b.id.clone()), Some(b3.id.clone()));

    // On purpose: `delete_backup` moves the anchor to the newest remaining backup.
    sealdb::delete_backup(bdir.path(), &b3.id, &opts).expect("delete newest");
    let list = sealdb::list_backups(bdir.path(), &opts).expect("list after delete");
    assert_eq!(list.last().map(|b| b.id.clone()), Some(b2.id.clone()));
    // A deletion by hand is confirmed the same way.
    std::fs::remove_file(&cat2).expect("delete by hand");
    sealdb::list_backups(bdir.path(), &opts).expect_err("unconfirmed");
    sealdb::delete_backup(bdir.path(), &b2.id, &opts).expect("confirm");
    let list = sealdb::list_backups(bdir.path(), &opts).expect("list");
    assert_eq!(list.last().map(|b| b.id.clone()), Some(b1.id.clone()));
    drop(db);

    // Another machine (a keystore with the key but no anchor) cannot tell: unanchored.
    let other = tempfile::tempdir().expect("tmp");
    for e in std::fs::read_dir(t.keystore.path()).expect("keystore") {
        let p = e.expect("entry").path();
        if p.extension().is_some_and(|x| x == "key") {
            std::fs::copy(&p, other.path().join(p.file_name().expect("name"))).expect("copy");
        }
    }
    let elsewhere = Options {
        keystore_dir: Some(other.path().to_path_buf()),
        ..t.options()
    };
    let cat1 = bdir.path().join(format!("{}.catalog", b1.id));
    std::fs::remove_file(&cat1).expect("delete");
    sealdb::list_backups(bdir.path(), &elsewhere).expect("unanchored elsewhere");
}

/// The real filesystem, with a hook run once, when armed, as the WAL directory is listed:
/// lets a test put a WAL rollover exactly between a backup's rotation and its listing.
#[derive(Debug, Default)]
struct ListHookFs {
    armed: AtomicBool,
    hook: hookcell::Hook,
}

mod hookcell {
    use std::sync::Mutex;

    /// A closure behind a mutex (Debug for the FileSystem bound).
    #[derive(Default)]
    pub struct Hook(pub Mutex<Option<Box<dyn FnMut() + Send>>>);

    impl std::fmt::Debug for Hook {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("Hook")
        }
    }
}

impl sealdb_vfs::FileSystem for ListHookFs {
    fn create_new(&self, p: &Path) -> std::io::Result<Box<dyn sealdb_vfs::WritableFile>> {
        sealdb_vfs::RealFs.create_new(p)
    }
    fn open_read(&self, p: &Path) -> std::io::Result<Arc<dyn sealdb_vfs::RandomAccessFile>> {
        sealdb_vfs::RealFs.open_read(p)
    }
    fn open_append(&self, p: &Path) -> std::io::Result<Box<dyn sealdb_vfs::WritableFile>> {
        sealdb_vfs::RealFs.open_append(p)
    }
    fn rename(&self, a: &Path, b: &Path) -> std::io::Result<()> {
        sealdb_vfs::RealFs.rename(a, b)
    }
    fn remove_file(&self, p: &Path) -> std::io::Result<()> {
        sealdb_vfs::RealFs.remove_file(p)
    }
    fn create_dir_all(&self, p: &Path) -> std::io::Result<()> {
        sealdb_vfs::RealFs.create_dir_all(p)
    }
    fn remove_dir(&self, p: &Path) -> std::io::Result<()> {
        sealdb_vfs::RealFs.remove_dir(p)
    }
    fn list_dir(&self, p: &Path) -> std::io::Result<Vec<String>> {
        if p.ends_with("wal") && self.armed.swap(false, Ordering::SeqCst) {
            let mut hook = self.hook.0.lock().expect("hook");
            if let Some(h) = hook.as_mut() {
                h();
            }
        }
        sealdb_vfs::RealFs.list_dir(p)
    }
    fn sync_dir(&self, p: &Path) -> std::io::Result<()> {
        sealdb_vfs::RealFs.sync_dir(p)
    }
    fn sync_file(&self, p: &Path) -> std::io::Result<()> {
        sealdb_vfs::RealFs.sync_file(p)
    }
    fn exists(&self, p: &Path) -> bool {
        sealdb_vfs::RealFs.exists(p)
    }
    fn file_size(&self, p: &Path) -> std::io::Result<u64> {
        sealdb_vfs::RealFs.file_size(p)
    }
    fn hard_link(&self, a: &Path, b: &Path) -> std::io::Result<()> {
        sealdb_vfs::RealFs.hard_link(a, b)
    }
    fn lock(&self, p: &Path) -> std::io::Result<Box<dyn sealdb_vfs::FileLock>> {
        sealdb_vfs::RealFs.lock(p)
    }
}

/// Each file's name, length and a hash of its bytes (short enough for a failure message).
fn file_contents(dir: &Path) -> Vec<(std::path::PathBuf, usize, u64)> {
    use std::hash::{Hash, Hasher};
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .expect("dir")
        .map(|e| {
            let p = e.expect("entry").path();
            let bytes = std::fs::read(&p).expect("read");
            let mut h = std::collections::hash_map::DefaultHasher::new();
            bytes.hash(&mut h);
            (p, bytes.len(), h.finish())
        })
        .collect();
    out.sort();
    out
}

#[test]
fn a_backup_never_takes_the_live_wal_segment_during_a_rollover() {
    let t = TestDb::new();
    let fs = Arc::new(ListHookFs::default());
    let opts = Options {
        fs: fs.clone(),
        pitr_window: Some(std::time::Duration::from_secs(3600)),
        wal_segment_size: 4 << 10,
        ..t.options()
    };
    let db = Db::open(t.path(), opts.clone()).expect("open");
    for i in 0..20 {
        db.put(key(i), b"v").expect("put");
    }
    // Between the backup's rotation and its listing of the WAL, another writer fills the
    // segment the rotation started, so the log rolls over to a newer (live) segment.
    let writer = db.clone();
    *fs.hook.0.lock().expect("hook") = Some(Box::new(move || {
        for i in 0..3u64 {
            writer
                .put(key(1000 + i), vec![7u8; 6 << 10])
                .expect("put during backup");
        }
    }));
    fs.armed.store(true, Ordering::SeqCst);
    let bdir = tempfile::tempdir().expect("tmp");
    let info = db.backup(bdir.path(), &mut noop).expect("backup");
    assert!(!fs.armed.load(Ordering::SeqCst), "the hook ran");
    let kept = file_contents(&bdir.path().join("wal"));
    assert_eq!(kept.len(), info.wal.len());
    // Writes after the backup land in the live segment; the backup must not change.
    for i in 0..50 {
        db.put(key(2000 + i), b"later").expect("put");
    }
    db.sync_wal().expect("sync");
    assert_eq!(
        file_contents(&bdir.path().join("wal")),
        kept,
        "a file of the backup changed after the backup completed"
    );
    drop(db);
    let report = sealdb::verify_backup(bdir.path(), None, &opts).expect("verify");
    assert!(report.errors.is_empty(), "{:?}", report.errors);
}

#[test]
fn a_backup_does_not_build_on_a_damaged_shared_wal_copy() {
    let t = TestDb::new();
    let opts = Options {
        pitr_window: Some(std::time::Duration::from_secs(3600)),
        ..t.options()
    };
    let db = Db::open(t.path(), opts).expect("open");
    db.put(b"a", b"1").expect("put");
    let bdir = tempfile::tempdir().expect("tmp");
    let b1 = db.backup(bdir.path(), &mut noop).expect("backup 1");
    let w = b1.wal.first().expect("a WAL segment in backup 1");
    let seg = bdir.path().join("wal").join(format!(
        "{}.wal",
        w.file_id
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    ));
    // Replace (not write through the link shared with the live archive) with a cut copy.
    let bytes = std::fs::read(&seg).expect("read");
    std::fs::remove_file(&seg).expect("unlink");
    std::fs::write(&seg, &bytes[..bytes.len() - 3]).expect("write");
    db.put(b"b", b"2").expect("put");
    let err = db.backup(bdir.path(), &mut noop).expect_err("backup 2");
    assert!(
        err.is_integrity() && err.to_string().contains(&seg.display().to_string()),
        "{err}"
    );
}
