//! Shared test setup: a throwaway keystore and database directory.
#![allow(dead_code)]

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
