//! `sealdb upgrade`: the operator's format ratchet, on the engine's format-version-1 fixture
//! (a database written by commit 60c28ad, before versions were recorded).

mod common;

use common::{Env, copy_dir};
use std::path::Path;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../engine/tests/fixtures/format-v1"
);

/// A copy of the fixture: its data directory and its keystore (test key material).
fn fixture() -> Env {
    let env = Env::with_kms();
    copy_dir(&Path::new(FIXTURE).join("db"), &env.db);
    copy_dir(&Path::new(FIXTURE).join("keystore"), &env.keystore);
    for e in std::fs::read_dir(&env.keystore).expect("keystore") {
        use std::os::unix::fs::PermissionsExt;
        let p = e.expect("entry").path();
        // Git does not keep modes; the owned key must be private.
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    env
}

impl Env {
    /// The format version `upgrade --show --json` reports.
    fn version(&self) -> u64 {
        let out = self.run(&["upgrade", "--show", "--json"]).ok().out();
        let v: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
        assert_eq!(v["newest"], 2, "{v}");
        v["format_version"].as_u64().expect("format_version")
    }
}

#[test]
fn upgrade_ratchets_an_old_database_once_and_only_up() {
    let env = fixture();
    assert_eq!(env.version(), 1);
    // Reading and writing do not upgrade.
    assert_eq!(
        env.run(&["get", "key-050"]).ok().out().trim_end(),
        "value-50-v1"
    );
    env.run(&["put", "k", "v"]).ok().out();
    assert_eq!(env.version(), 1);

    // An unknown version is refused (exit 4) and changes nothing.
    let err = env.run(&["upgrade", "--to", "3"]).status(4).stderr;
    assert!(err.contains("format version 3"), "{err}");
    assert_eq!(env.version(), 1);

    let out = env.run(&["upgrade"]).ok().out();
    assert!(out.contains("format version 1 -> 2"), "{out}");
    assert_eq!(env.version(), 2);
    let out = env.run(&["upgrade", "--json"]).ok().out();
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(v["changed"], false, "{v}");

    // Down: refused with exit 4.
    let err = env.run(&["upgrade", "--to", "1"]).status(4).stderr;
    assert!(err.contains("never goes down"), "{err}");
    assert_eq!(env.version(), 2);
    assert_eq!(
        env.run(&["get", "key-005"]).ok().out().trim_end(),
        "value-5-v2"
    );
    assert_eq!(env.run(&["get", "k"]).ok().out().trim_end(), "v");
    // A deleted key is still deleted: exit 1.
    env.run(&["get", "key-012"]).status(1);
}

#[test]
fn a_database_created_by_the_cli_is_at_the_newest_version() {
    let env = fixture();
    std::fs::remove_dir_all(&env.db).expect("rm");
    env.run(&["put", "k", "v"]).ok().out();
    assert_eq!(env.version(), 2);
    let out = env.run(&["upgrade"]).ok().out();
    assert!(out.contains("already there"), "{out}");
}
