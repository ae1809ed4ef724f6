//! End-to-end tests of `backup`, `restore`, `verify` and rollback handling of the `sealdb`
//! binary: each command is its own process, as an operator runs them.
//!
//! Every test has its own database, keystore (`--keystore`) and local KMS (`--kms`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

struct Env {
    dir: tempfile::TempDir,
    db: PathBuf,
}

struct Run {
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: String,
}

impl Run {
    fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    #[track_caller]
    fn ok(self) -> Self {
        self.status(0)
    }

    #[track_caller]
    fn status(self, code: i32) -> Self {
        assert_eq!(
            self.code,
            Some(code),
            "expected exit {code}; stdout: {} stderr: {}",
            self.out(),
            self.stderr
        );
        self
    }

    fn json(&self) -> Vec<serde_json::Value> {
        self.out()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
            .collect()
    }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

impl Env {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("db");
        Self { dir, db }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn cmd_on(&self, db: Option<&Path>, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_sealdb"));
        if let Some(db) = db {
            c.arg("--db").arg(db);
        }
        c.arg("--keystore")
            .arg(self.path("keystore"))
            .arg("--kms")
            .arg(self.path("kms"))
            .args(args)
            .env_remove("SEALDB_KEYSTORE")
            .env_remove("SEALDB_KMS")
            .stdin(Stdio::null());
        c
    }

    fn finish(o: Output) -> Run {
        Run {
            code: o.status.code(),
            stdout: o.stdout,
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    fn run(&self, args: &[&str]) -> Run {
        Self::finish(self.cmd_on(Some(&self.db), args).output().expect("run"))
    }

    fn run_nodb(&self, args: &[&str]) -> Run {
        Self::finish(self.cmd_on(None, args).output().expect("run"))
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        let target = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &target);
        } else if e.file_name() != "LOCK" {
            std::fs::copy(e.path(), &target).expect("copy");
        }
    }
}

#[test]
fn restoring_into_the_original_path_is_not_refused_as_a_rollback() {
    let e = Env::new();
    e.run(&["put", "a", "1", "--sync"]).ok();
    let dir = e.path("backups");
    e.run(&["backup", "create", s(&dir)]).ok();
    // Later writes and flushes move this path's rollback counter past the backup.
    e.run(&["load", "--count", "300", "--value-size", "10"]).ok();
    e.run(&["backup", "create", s(&e.path("other"))]).ok();
    std::fs::remove_dir_all(&e.db).expect("rm db");
    let v = e
        .run_nodb(&["restore", s(&dir), s(&e.db), "--json"])
        .ok()
        .json();
    assert!(v[0]["sequence"].is_u64(), "{v:?}");
    assert_eq!(e.run(&["get", "a"]).ok().out(), "1\n");
    e.run(&["put", "c", "3"]).ok();
    e.run(&["verify"]).ok();
}

#[test]
fn a_rolled_back_directory_exits_2_and_allow_rollback_opens_it() {
    let e = Env::new();
    e.run(&["put", "a", "1", "--sync"]).ok();
    let old = e.path("old");
    copy_dir(&e.db, &old);
    e.run(&["load", "--count", "300", "--value-size", "10"]).ok();
    e.run(&["put", "b", "2", "--sync"]).ok();
    std::fs::remove_dir_all(&e.db).expect("rm db");
    copy_dir(&old, &e.db);
    let r = e.run(&["get", "a"]).status(2);
    assert!(r.stderr.contains("rollback"), "{}", r.stderr);
    assert!(r.stderr.contains("--allow-rollback"), "{}", r.stderr);
    assert_eq!(e.run(&["--allow-rollback", "get", "a"]).ok().out(), "1\n");
    // The record followed the deliberately restored copy.
    e.run(&["get", "b"]).status(1);
}
