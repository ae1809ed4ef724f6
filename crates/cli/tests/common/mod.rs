//! What every CLI test file shares: a throwaway database, keystore and (optionally) local KMS,
//! a way to run the real `sealdb` binary against them, and what a run produced.
//!
//! Every command this builds names its keystore (and KMS) explicitly and drops the environment
//! variables that could point at the user's real ones, so tests never touch them and run in
//! parallel.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A temporary directory holding `db`, `keystore` and, for [`Env::with_kms`], `kms`.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub db: PathBuf,
    pub keystore: PathBuf,
    kms: Option<PathBuf>,
}

/// What a run produced.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Run {
    /// Standard output, lossily decoded.
    pub fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Asserts exit 0 (showing both streams otherwise).
    #[track_caller]
    pub fn ok(self) -> Self {
        self.status(0)
    }

    /// Asserts the exit status (showing both streams otherwise).
    #[track_caller]
    pub fn status(self, code: i32) -> Self {
        assert_eq!(
            self.code,
            Some(code),
            "expected exit {code}; stdout: {} stderr: {}",
            self.out(),
            self.stderr
        );
        self
    }

    /// Standard output as JSON lines.
    pub fn json(&self) -> Vec<serde_json::Value> {
        json_lines(&self.out())
    }
}

/// Collects a finished process.
pub fn finish(o: Output) -> Run {
    Run {
        code: o.status.code(),
        stdout: o.stdout,
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// Parses every line as JSON, failing the test on one that is not.
pub fn json_lines(s: &str) -> Vec<serde_json::Value> {
    s.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect()
}

/// A path as a command-line argument.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Copies a directory tree, leaving out `LOCK` files (a copy is a different database's
/// directory, not the same one held open).
pub fn copy_dir(from: &Path, to: &Path) {
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

impl Env {
    /// A database and keystore; commands get no `--kms`.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("db");
        let keystore = dir.path().join("keystore");
        Self {
            dir,
            db,
            keystore,
            kms: None,
        }
    }

    /// A database, keystore and local KMS directory (`--kms`).
    pub fn with_kms() -> Self {
        let mut e = Self::new();
        e.kms = Some(e.path("kms"));
        e
    }

    /// A path beside the database, inside the temporary directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The binary with this environment's keystore (and KMS), and `--db` unless `db` is `None`.
    pub fn cmd_on(&self, db: Option<&Path>, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_sealdb"));
        if let Some(db) = db {
            c.arg("--db").arg(db);
        }
        c.arg("--keystore").arg(&self.keystore);
        if let Some(kms) = &self.kms {
            c.arg("--kms").arg(kms);
        }
        c.args(args)
            // Never fall back to the user's real keystore, KMS or database.
            .env_remove("SEALDB_KEYSTORE")
            .env_remove("SEALDB_KMS")
            .env_remove("SEALDB_DB")
            // Diagnostics on stderr only when a test asks for them.
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        c
    }

    /// `sealdb --db <db> ARGS` as a command, to adjust before running.
    pub fn cmd(&self, args: &[&str]) -> Command {
        self.cmd_on(Some(&self.db), args)
    }

    /// Runs `sealdb --db <db> ARGS`.
    pub fn run(&self, args: &[&str]) -> Run {
        finish(self.cmd(args).output().expect("run sealdb"))
    }

    /// Loads `count` keys with `value_size`-byte values and flushes them, so that the data is
    /// in tables and not only in the WAL.
    pub fn load_and_flush(&self, count: u64, value_size: usize) {
        let (count, value_size) = (count.to_string(), value_size.to_string());
        self.run(&["load", "--count", &count, "--value-size", &value_size])
            .ok();
        self.run(&["flush"]).ok();
    }

    /// Runs the binary on another database directory.
    pub fn run_on(&self, db: &Path, args: &[&str]) -> Run {
        finish(self.cmd_on(Some(db), args).output().expect("run sealdb"))
    }

    /// Runs without `--db` (KMS administration and backup directories need none).
    pub fn run_nodb(&self, args: &[&str]) -> Run {
        finish(self.cmd_on(None, args).output().expect("run sealdb"))
    }

    /// Runs `sealdb --db <db> ARGS` with `input` on standard input.
    pub fn run_with_stdin(&self, args: &[&str], input: &[u8]) -> Run {
        let mut child = self
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sealdb");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input)
            .expect("write stdin");
        finish(child.wait_with_output().expect("wait"))
    }
}
