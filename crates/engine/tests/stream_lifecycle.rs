//! Change streams as a whole: a stream directory is bound to its keyspace (and to the enable
//! that created it), and a disabled stream's records never come back — not when its removal
//! fails, not after a crash between the manifest edit and the removal, not when the stream is
//! enabled again.

mod common;

use common::TestDb;
use sealdb::{Db, Options, StreamStart, StreamView, WriteOptions};
use sealdb_vfs::{CrashFs, FaultKind, FileLock, FileSystem, RandomAccessFile, WritableFile};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const DAY: Duration = Duration::from_secs(86400);

fn keys(db: &Db, ks: &str) -> Vec<Vec<u8>> {
    let ks = db.keyspace(ks).expect("ks");
    db.read_stream(&ks, StreamStart::TrimHorizon, 1000, usize::MAX)
        .expect("read")
        .records
        .into_iter()
        .map(|r| r.key)
        .collect()
}

fn streams_dir(db: &Path) -> PathBuf {
    db.join("streams")
}

fn swap(a: &Path, b: &Path) {
    let tmp = a.with_extension("swap");
    std::fs::rename(a, &tmp).expect("rename");
    std::fs::rename(b, a).expect("rename");
    std::fs::rename(&tmp, b).expect("rename");
}

#[test]
fn swapped_stream_directories_are_refused() {
    let t = TestDb::new();
    let (dir_a, dir_b) = {
        let db = t.open();
        let a = db.create_keyspace("a").expect("ks");
        let b = db.create_keyspace("b").expect("ks");
        db.enable_stream(&a, StreamView::NewImage, DAY, 0)
            .expect("enable");
        db.enable_stream(&b, StreamView::NewImage, DAY, 0)
            .expect("enable");
        a.put_opt(b"a-key", b"1", WriteOptions::SYNC).expect("put");
        b.put_opt(b"b-key", b"2", WriteOptions::SYNC).expect("put");
        assert_eq!(keys(&db, "a"), vec![b"a-key".to_vec()]);
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(streams_dir(&t.path()))
            .expect("streams")
            .map(|e| e.expect("entry").path())
            .collect();
        dirs.sort();
        assert_eq!(dirs.len(), 2, "{dirs:?}");
        (dirs[0].clone(), dirs[1].clone())
    };
    // Whole directories swapped: a's stream would serve b's records.
    swap(&dir_a, &dir_b);
    let e = Db::open(t.path(), t.options()).expect_err("swapped stream directories");
    assert!(e.is_integrity(), "{e}");
    assert!(e.to_string().contains("streams"), "{e}");
    swap(&dir_a, &dir_b);
    {
        let db = t.open();
        assert_eq!(keys(&db, "a"), vec![b"a-key".to_vec()]);
        assert_eq!(keys(&db, "b"), vec![b"b-key".to_vec()]);
        let a = db.keyspace("a").expect("ks");
        let b = db.keyspace("b").expect("ks");
        db.commit_stream_position(&a, "reader", 1).expect("commit");
        db.commit_stream_position(&b, "reader", 2).expect("commit");
    }
    // Only the consumer positions swapped.
    swap(&dir_a.join("CONSUMERS"), &dir_b.join("CONSUMERS"));
    let e = Db::open(t.path(), t.options()).expect_err("swapped CONSUMERS");
    assert!(e.is_integrity(), "{e}");
    assert!(e.to_string().contains("CONSUMERS"), "{e}");
    swap(&dir_a.join("CONSUMERS"), &dir_b.join("CONSUMERS"));
    t.open();
}

/// A filesystem whose file removals under `streams/` fail while `fail` is set.
#[derive(Debug, Clone)]
struct NoStreamRemovals {
    inner: CrashFs,
    fail: Arc<AtomicBool>,
}

impl FileSystem for NoStreamRemovals {
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        self.inner.create_new(path)
    }
    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn RandomAccessFile>> {
        self.inner.open_read(path)
    }
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        self.inner.open_append(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let in_streams = path.components().any(|c| c.as_os_str() == "streams");
        if in_streams && self.fail.load(Ordering::SeqCst) {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "injected: removal refused",
            ));
        }
        self.inner.remove_file(path)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_dir(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        self.inner.list_dir(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.inner.sync_dir(path)
    }
    fn sync_file(&self, path: &Path) -> io::Result<()> {
        self.inner.sync_file(path)
    }
    fn exists(&self, path: &Path) -> bool {
        self.inner.exists(path)
    }
    fn file_size(&self, path: &Path) -> io::Result<u64> {
        self.inner.file_size(path)
    }
    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.hard_link(from, to)
    }
    fn lock(&self, path: &Path) -> io::Result<Box<dyn FileLock>> {
        self.inner.lock(path)
    }
}

fn crash_options(fs: Arc<dyn FileSystem>, keystore: &Path) -> Options {
    Options {
        fs,
        keystore_dir: Some(keystore.to_path_buf()),
        background_work: false,
        ..Options::default()
    }
}

const DB: &str = "/x/db";

fn new_crash_fs() -> CrashFs {
    let fs = CrashFs::new();
    fs.create_dir_all(Path::new("/x")).expect("mkdir");
    fs.sync_dir(Path::new("/")).expect("sync");
    fs
}

#[test]
fn disabled_stream_records_do_not_come_back() {
    let keystore = tempfile::tempdir().expect("tmp");
    let fs = NoStreamRemovals {
        inner: new_crash_fs(),
        fail: Arc::default(),
    };
    let opts = || crash_options(Arc::new(fs.clone()), keystore.path());
    {
        let db = Db::open(DB, opts()).expect("open");
        let ks = db.create_keyspace("feed").expect("ks");
        db.enable_stream(&ks, StreamView::KeysOnly, DAY, 0)
            .expect("enable");
        ks.put_opt(b"old-1", b"1", WriteOptions::SYNC).expect("put");
        ks.put_opt(b"old-2", b"1", WriteOptions::SYNC).expect("put");

        // Removing the records fails: disabling says so instead of returning Ok.
        fs.fail.store(true, Ordering::SeqCst);
        let e = db.disable_stream(&ks).expect_err("removal failed");
        assert!(e.to_string().contains("streams"), "{e}");
        // The stream is off all the same; enabling it again cannot remove the old files
        // either and fails too, rather than reopening them.
        assert!(db.stream_info(&ks).is_err());
        assert!(db.enable_stream(&ks, StreamView::KeysOnly, DAY, 0).is_err());
        fs.fail.store(false, Ordering::SeqCst);
        ks.put_opt(b"unrecorded", b"1", WriteOptions::SYNC)
            .expect("put");
    }
    // The next open removes the orphaned directory ...
    let db = Db::open(DB, opts()).expect("reopen");
    assert_eq!(
        fs.inner
            .list_dir(&streams_dir(Path::new(DB)))
            .unwrap_or_default(),
        Vec::<String>::new(),
        "orphan stream directory left"
    );
    // ... and a new stream holds only what was written after it was enabled.
    let ks = db.keyspace("feed").expect("ks");
    db.enable_stream(&ks, StreamView::KeysOnly, DAY, 0)
        .expect("enable");
    ks.put_opt(b"new-1", b"1", WriteOptions::SYNC).expect("put");
    assert_eq!(keys(&db, "feed"), vec![b"new-1".to_vec()]);
    // Disable and enable in one session: nothing of the first comes back either.
    db.disable_stream(&ks).expect("disable");
    db.enable_stream(&ks, StreamView::KeysOnly, DAY, 0)
        .expect("enable");
    ks.put_opt(b"new-2", b"1", WriteOptions::SYNC).expect("put");
    assert_eq!(keys(&db, "feed"), vec![b"new-2".to_vec()]);
    drop(ks);
    drop(db);
    let db = Db::open(DB, opts()).expect("reopen");
    assert_eq!(keys(&db, "feed"), vec![b"new-2".to_vec()]);
}

/// A database with a stream holding two synced records.
fn with_stream(fs: &CrashFs, keystore: &Path) -> Db {
    let db = Db::open(DB, crash_options(Arc::new(fs.clone()), keystore)).expect("open");
    let ks = db.create_keyspace("feed").expect("ks");
    db.enable_stream(&ks, StreamView::KeysOnly, DAY, 0)
        .expect("enable");
    ks.put_opt(b"old-1", b"1", WriteOptions::SYNC).expect("put");
    ks.put_opt(b"old-2", b"1", WriteOptions::SYNC).expect("put");
    db
}

#[test]
fn a_crash_while_disabling_a_stream_never_brings_its_records_back() {
    let keystore = tempfile::tempdir().expect("tmp");
    let total = {
        let fs = new_crash_fs();
        let db = with_stream(&fs, keystore.path());
        let base = fs.mutation_count();
        let ks = db.keyspace("feed").expect("ks");
        db.disable_stream(&ks).expect("disable");
        fs.mutation_count() - base
    };
    assert!(total > 0, "disable made no mutation");
    for n in 0..=total {
        let keystore = tempfile::tempdir().expect("tmp");
        let fs = new_crash_fs();
        let db = with_stream(&fs, keystore.path());
        let ks = db.keyspace("feed").expect("ks");
        fs.fail_after(n, FaultKind::AnyMutation);
        let disabled = db.disable_stream(&ks);
        drop(ks);
        drop(db);
        fs.crash();
        let db = Db::open(DB, crash_options(Arc::new(fs.clone()), keystore.path()))
            .unwrap_or_else(|e| panic!("fault {n}: reopen: {e}"));
        let ks = db.keyspace("feed").expect("ks");
        if db.stream_info(&ks).is_ok() {
            // The manifest edit did not survive: the stream is on, with all its records.
            assert_eq!(
                keys(&db, "feed"),
                vec![b"old-1".to_vec(), b"old-2".to_vec()],
                "fault {n}"
            );
            db.disable_stream(&ks).expect("disable");
        } else {
            assert!(
                !fs.exists(&streams_dir(Path::new(DB)).join("00000001"))
                    && fs
                        .list_dir(&streams_dir(Path::new(DB)))
                        .unwrap_or_default()
                        .is_empty(),
                "fault {n}: orphan stream directory left after open"
            );
        }
        db.enable_stream(&ks, StreamView::KeysOnly, DAY, 0)
            .expect("enable");
        ks.put_opt(b"new", b"1", WriteOptions::SYNC).expect("put");
        assert_eq!(keys(&db, "feed"), vec![b"new".to_vec()], "fault {n}");
        // And the interrupted disable said it failed.
        assert_eq!(disabled.is_err(), n < total, "fault {n}: {disabled:?}");
    }
}

#[test]
fn a_crash_while_enabling_a_stream_again_never_brings_old_records_back() {
    // Old records on disk, the stream disabled, then enabled again with a crash at every
    // mutation: after reopening, the stream is off (and its directory gone) or on and empty.
    let setup = |keystore: &Path| {
        let fs = new_crash_fs();
        let db = with_stream(&fs, keystore);
        let ks = db.keyspace("feed").expect("ks");
        db.disable_stream(&ks).expect("disable");
        (fs, db)
    };
    let total = {
        let keystore = tempfile::tempdir().expect("tmp");
        let (fs, db) = setup(keystore.path());
        let base = fs.mutation_count();
        let ks = db.keyspace("feed").expect("ks");
        db.enable_stream(&ks, StreamView::KeysOnly, DAY, 0)
            .expect("enable");
        fs.mutation_count() - base
    };
    assert!(total > 0);
    for n in 0..=total {
        let keystore = tempfile::tempdir().expect("tmp");
        let (fs, db) = setup(keystore.path());
        let ks = db.keyspace("feed").expect("ks");
        fs.fail_after(n, FaultKind::AnyMutation);
        let enabled = db.enable_stream(&ks, StreamView::KeysOnly, DAY, 0);
        assert_eq!(enabled.is_err(), n < total, "fault {n}: {enabled:?}");
        drop(ks);
        drop(db);
        fs.crash();
        let db = Db::open(DB, crash_options(Arc::new(fs.clone()), keystore.path()))
            .unwrap_or_else(|e| panic!("fault {n}: reopen: {e}"));
        let ks = db.keyspace("feed").expect("ks");
        if db.stream_info(&ks).is_ok() {
            assert!(keys(&db, "feed").is_empty(), "fault {n}");
        } else {
            assert!(
                fs.list_dir(&streams_dir(Path::new(DB)))
                    .unwrap_or_default()
                    .is_empty(),
                "fault {n}: orphan stream directory left after open"
            );
            db.enable_stream(&ks, StreamView::KeysOnly, DAY, 0)
                .expect("enable");
        }
        ks.put_opt(b"new", b"1", WriteOptions::SYNC).expect("put");
        assert_eq!(keys(&db, "feed"), vec![b"new".to_vec()], "fault {n}");
    }
}
