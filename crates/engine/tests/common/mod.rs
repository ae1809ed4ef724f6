//! Shared test setup: a throwaway keystore and database directory; and, in [`model`], what
//! the model checks share.
#![allow(dead_code)]

pub mod model;

use sealdb::{Db, Options};
use std::path::PathBuf;
use tempfile::TempDir;

/// A database directory plus a keystore outside it, both deleted on drop.
pub struct TestDb {
    pub dir: TempDir,
    pub keystore: TempDir,
}

impl TestDb {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
            keystore: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("db")
    }

    pub fn options(&self) -> Options {
        Options {
            keystore_dir: Some(self.keystore.path().to_path_buf()),
            kms_dir: Some(self.keystore.path().join("kms")),
            ..Options::default()
        }
    }

    pub fn open(&self) -> Db {
        Db::open(self.path(), self.options()).expect("open")
    }
}

/// Collects an iterator of results into key/value pairs.
pub fn collect(it: sealdb::DbIter) -> Vec<(Vec<u8>, Vec<u8>)> {
    it.collect::<sealdb::Result<Vec<_>>>().expect("scan")
}

/// Every file under `dir` (recursively) with its contents.
pub fn tree(dir: &std::path::Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).expect("read"));
            }
        }
    }
    out
}

/// Opens `t`, which must fail, and checks that the failed open changed nothing: not a byte
/// of the data directory, not a byte of the keystore. Returns the error.
#[track_caller]
pub fn failed_open(t: &TestDb, what: &str) -> sealdb::Error {
    let before = tree(&t.path());
    let before_keystore = tree(t.keystore.path());
    let err = match Db::open(t.path(), t.options()) {
        Ok(_) => panic!("{what}: the database opened"),
        Err(e) => e,
    };
    assert!(
        tree(&t.path()) == before,
        "{what}: a failed open changed the data directory"
    );
    assert!(
        tree(t.keystore.path()) == before_keystore,
        "{what}: a failed open changed the keystore"
    );
    err
}
