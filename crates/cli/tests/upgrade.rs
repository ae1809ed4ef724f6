//! `sealdb upgrade`: the operator's format ratchet, on the engine's format-version-1 fixture
//! (a database written by commit 60c28ad, before versions were recorded).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../engine/tests/fixtures/format-v1"
);

/// A copy of the fixture: its data directory and its keystore (test key material).
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn fixture() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        copy_dir(&Path::new(FIXTURE).join("db"), &dir.path().join("db"));
        copy_dir(
            &Path::new(FIXTURE).join("keystore"),
            &dir.path().join("keystore"),
        );
        for e in std::fs::read_dir(dir.path().join("keystore")).expect("keystore") {
            use std::os::unix::fs::PermissionsExt;
            let p = e.expect("entry").path();
            // Git does not keep modes; the owned key must be private.
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        }
        Self { dir }
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("db")
    }

    /// Runs the binary on the copy: (exit code, stdout, stderr).
    fn run(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let o = Command::new(env!("CARGO_BIN_EXE_sealdb"))
            .arg("--db")
            .arg(self.db())
            .arg("--keystore")
            .arg(self.dir.path().join("keystore"))
            .arg("--kms")
            .arg(self.dir.path().join("kms"))
            .args(args)
            .env_remove("SEALDB_KEYSTORE")
            .env_remove("SEALDB_KMS")
            .env_remove("SEALDB_DB")
            .stdin(Stdio::null())
            .output()
            .expect("run sealdb");
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(code, Some(0), "{args:?}: stdout {out} stderr {err}");
        out
    }

    /// The format version `upgrade --show --json` reports.
    fn version(&self) -> u64 {
        let out = self.ok(&["upgrade", "--show", "--json"]);
        let v: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
        assert_eq!(v["newest"], 2, "{v}");
        v["format_version"].as_u64().expect("format_version")
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read fixture") {
        let e = e.expect("entry");
        if e.path().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
        }
    }
}

#[test]
fn upgrade_ratchets_an_old_database_once_and_only_up() {
    let env = Env::fixture();
    assert_eq!(env.version(), 1);
    // Reading and writing do not upgrade.
    assert_eq!(env.ok(&["get", "key-050"]).trim_end(), "value-50-v1");
    env.ok(&["put", "k", "v"]);
    assert_eq!(env.version(), 1);

    // An unknown version is refused (exit 4) and changes nothing.
    let (code, _, err) = env.run(&["upgrade", "--to", "3"]);
    assert_eq!(code, Some(4), "{err}");
    assert!(err.contains("format version 3"), "{err}");
    assert_eq!(env.version(), 1);

    let out = env.ok(&["upgrade"]);
    assert!(out.contains("format version 1 -> 2"), "{out}");
    assert_eq!(env.version(), 2);
    let out = env.ok(&["upgrade", "--json"]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(v["changed"], false, "{v}");

    // Down: refused with exit 4.
    let (code, _, err) = env.run(&["upgrade", "--to", "1"]);
    assert_eq!(code, Some(4), "{err}");
    assert!(err.contains("never goes down"), "{err}");
    assert_eq!(env.version(), 2);
    assert_eq!(env.ok(&["get", "key-005"]).trim_end(), "value-5-v2");
    assert_eq!(env.ok(&["get", "k"]).trim_end(), "v");
    // A deleted key is still deleted: exit 1.
    assert_eq!(env.run(&["get", "key-012"]).0, Some(1));
}

#[test]
fn a_database_created_by_the_cli_is_at_the_newest_version() {
    let env = Env::fixture();
    std::fs::remove_dir_all(env.db()).expect("rm");
    env.ok(&["put", "k", "v"]);
    assert_eq!(env.version(), 2);
    let out = env.ok(&["upgrade"]);
    assert!(out.contains("already there"), "{out}");
}
