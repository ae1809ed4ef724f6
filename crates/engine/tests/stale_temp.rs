//! Temporary files a crashed process left behind must not stop the next open. Its own test
//! binary: the old names were `<name>.tmp-<pid>-<counter>` with a per-process counter, so the
//! collision is only reproducible in a process whose counter starts where a crashed one's did.

use sealdb::{Db, Options};
use sealdb_vfs::{CrashFs, FileSystem};
use std::path::Path;
use std::sync::Arc;

/// Regression: a stale `CURRENT.tmp-<pid>-<n>` from a crashed process with the same pid (PID 1
/// in every container) made `Db::open` fail with `AlreadyExists` when it rewrote `CURRENT`.
#[test]
fn stale_temp_file_with_same_pid_does_not_block_open() {
    let keystore = tempfile::tempdir().expect("tmp");
    let fs = CrashFs::new();
    fs.create_dir_all(Path::new("/data")).expect("mkdir");
    fs.sync_dir(Path::new("/")).expect("sync");
    let options = || Options {
        fs: Arc::new(fs.clone()),
        keystore_dir: Some(keystore.path().to_path_buf()),
        ..Options::default()
    };
    {
        let db = Db::open("/data/db", options()).expect("create");
        db.put(b"k", b"v").expect("put");
        db.sync_wal().expect("sync");
    }
    // What a crashed earlier process with our pid could have left, for every counter value
    // this process can have reached by now.
    let dir = Path::new("/data/db");
    for name in ["CURRENT", "KEYS"] {
        for n in 0..500 {
            let stale = dir.join(format!("{name}.tmp-{}-{n}", std::process::id()));
            fs.create_new(&stale)
                .expect("stale file")
                .append(b"stale")
                .expect("write");
        }
    }
    fs.sync_dir(dir).expect("sync");
    let db = Db::open("/data/db", options()).expect("open with stale temporary files");
    assert_eq!(db.get(b"k").expect("get"), Some(b"v".to_vec()));
    drop(db);
    // The open removed them (they never hold the only copy of anything).
    assert_eq!(
        sealdb_vfs::remove_stale_temp_files(&fs, dir).expect("remove"),
        0
    );
    let db = Db::open("/data/db", options()).expect("open");
    assert_eq!(db.get(b"k").expect("get"), Some(b"v".to_vec()));
}
