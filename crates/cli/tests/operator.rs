//! Operator comforts and inspection: shell completions, the manual page, `SEALDB_DB`,
//! `RUST_LOG` diagnostics, and `inspect --entries/--manifest/--wal` (with "not a sealdb
//! file" as exit 4).

mod common;

use common::{Env, finish};
use std::path::{Path, PathBuf};
use std::process::Command;

impl Env {
    /// The binary with the keystore given by `SEALDB_KEYSTORE` (not `--keystore`) and no
    /// inherited `SEALDB_DB` or `RUST_LOG`: what the environment-variable tests start from.
    fn bare(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_sealdb"));
        c.env_remove("SEALDB_DB")
            .env_remove("RUST_LOG")
            .env("SEALDB_KEYSTORE", &self.keystore);
        c
    }
}
#[test]
fn completion_scripts_for_bash_zsh_and_fish() {
    let e = Env::new();
    for (shell, marker) in [
        ("bash", "complete -F _sealdb"),
        ("zsh", "#compdef sealdb"),
        ("fish", "complete -c sealdb"),
    ] {
        let r = e.run(&["completion", shell]).ok();
        assert!(r.out().contains(marker), "{shell}: {}", r.out());
        // Commands and global options are completed.
        assert!(r.out().contains("inspect"), "{shell}");
        assert!(r.out().contains("lock-wait"), "{shell}");
    }
    e.run(&["completion", "tcsh"]).status(4);
}

#[test]
fn man_prints_roff_or_writes_a_page_per_command() {
    let e = Env::new();
    let r = e.run(&["man"]).ok();
    assert!(r.out().contains(".TH sealdb 1"), "{}", r.out());
    assert!(r.out().contains("pitr\\-window"), "{}", r.out());
    assert!(r.out().contains("SEALDB_DB"), "{}", r.out());

    let pages = e.dir.path().join("man");
    e.run(&["man", "--dir", pages.to_str().expect("utf-8")])
        .ok();
    for page in ["sealdb.1", "sealdb-inspect.1", "sealdb-backup-create.1"] {
        let text = std::fs::read_to_string(pages.join(page)).expect(page);
        assert!(text.starts_with(".ie") || text.contains(".TH"), "{page}");
    }
}

#[test]
fn sealdb_db_names_the_database_when_db_is_not_given() {
    let e = Env::new();
    let put = e
        .bare()
        .env("SEALDB_DB", &e.db)
        .args(["put", "k", "from-env"])
        .output()
        .expect("run");
    finish(put).ok();
    assert!(e.db.join("KEYS").exists(), "created where SEALDB_DB points");
    let get = e
        .bare()
        .env("SEALDB_DB", &e.db)
        .args(["get", "k"])
        .output()
        .expect("run");
    assert_eq!(finish(get).ok().out(), "from-env\n");
    // --db wins over the environment.
    let other = e.dir.path().join("other");
    let get = e
        .bare()
        .env("SEALDB_DB", &e.db)
        .arg("--db")
        .arg(&other)
        .args(["get", "k"])
        .output()
        .expect("run");
    let r = finish(get);
    assert_ne!(r.code, Some(0), "{}", r.out());
    assert!(r.stderr.contains("other"), "{}", r.stderr);
}

#[test]
fn rust_log_shows_engine_events_with_durations_and_no_user_data() {
    let e = Env::new();
    // Without RUST_LOG nothing but errors reaches standard error.
    let quiet = e.run(&["put", "secret-key-q", "secret-value-q"]).ok();
    assert_eq!(quiet.stderr, "");

    let mut c = e.bare();
    c.env("RUST_LOG", "sealdb=debug")
        .arg("--db")
        .arg(&e.db)
        .args(["put", "secret-key-1", "secret-value-1"]);
    finish(c.output().expect("run")).ok();
    let mut c = e.bare();
    c.env("RUST_LOG", "info")
        .arg("--db")
        .arg(&e.db)
        .arg("compact");
    let r = finish(c.output().expect("run")).ok();
    assert!(
        r.stderr.contains("database opened and recovered"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("flush"), "{}", r.stderr);
    assert!(r.stderr.contains("compaction"), "{}", r.stderr);
    assert!(r.stderr.contains("duration_ms="), "{}", r.stderr);
    assert!(r.stderr.contains("wal_records=2"), "{}", r.stderr);
    assert!(
        !r.stderr.contains("secret"),
        "user data logged: {}",
        r.stderr
    );
}

/// The first file in `dir` whose name ends with `suffix`.
fn file_ending(dir: &Path, suffix: &str) -> PathBuf {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    names.sort();
    names.into_iter().next().expect(suffix)
}

/// A database with two puts and a delete in its WAL, then flushed into one table.
fn small_db(e: &Env) {
    e.run(&["put", "alpha", "one"]).ok();
    e.run(&["put", "--hex", "62696e01", "74776f"]).ok();
    e.run(&["delete", "alpha"]).ok();
}

#[test]
fn inspect_entries_dumps_a_tables_entries_with_escaping() {
    let e = Env::new();
    small_db(&e);
    e.run(&["flush"]).ok();
    let table = file_ending(&e.db.join("tables"), ".sst");
    let t = table.to_str().expect("utf-8");
    let r = e.run(&["inspect", "--entries", t]).ok();
    assert!(r.out().contains("3 delete \"alpha\""), "{}", r.out());
    assert!(
        r.out().contains("1 put    \"alpha\" = \"one\""),
        "{}",
        r.out()
    );
    // A key with a control byte is printed escaped, never raw.
    assert!(
        r.out().contains("2 put    0x62696e01 = \"two\""),
        "{}",
        r.out()
    );
    assert!(!r.out().contains("bin\u{1}"), "{}", r.out());
    // The block list is replaced by the dump.
    assert!(!r.out().contains("final  contents"), "{}", r.out());

    let r = e.run(&["--json", "inspect", "--entries", t]).ok();
    let entries: Vec<serde_json::Value> = r
        .out()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("op").is_some())
        .collect();
    assert_eq!(entries.len(), 3, "{}", r.out());
    assert_eq!(entries[0]["op"], "delete");
    assert_eq!(entries[1]["value"], "one");
    assert_eq!(entries[2]["seq"], 2);

    // Without the database's keys there is nothing to decrypt with.
    let bare = e
        .bare()
        .args(["inspect", "--entries", t])
        .output()
        .expect("run");
    let r = finish(bare).status(4);
    assert!(r.stderr.contains("needs --db"), "{}", r.stderr);
}

#[test]
fn inspect_wal_dumps_frames_and_records() {
    let e = Env::new();
    small_db(&e);
    let wal_dir = e.db.join("wal");
    let mut segments: Vec<PathBuf> = std::fs::read_dir(&wal_dir)
        .expect("wal dir")
        .map(|x| x.expect("entry").path())
        .collect();
    segments.sort();
    let mut all = String::new();
    for s in &segments {
        let r = e
            .run(&["inspect", "--wal", s.to_str().expect("utf-8")])
            .ok();
        assert!(r.out().contains("start: segment"), "{}", r.out());
        all.push_str(&r.out());
    }
    assert!(
        all.contains("1 put    keyspace 0 \"alpha\" = \"one\""),
        "{all}"
    );
    assert!(
        all.contains("2 put    keyspace 0 0x62696e01 = \"two\""),
        "{all}"
    );
    assert!(all.contains("3 delete keyspace 0 \"alpha\""), "{all}");
    assert!(all.contains("commit at 20"), "{all}");

    // A dump of the wrong kind of file is refused as bad usage.
    let r = e
        .run(&[
            "inspect",
            "--manifest",
            segments[0].to_str().expect("utf-8"),
        ])
        .status(4);
    assert!(r.stderr.contains("is a wal file"), "{}", r.stderr);
}

#[test]
fn inspect_manifest_dumps_the_edits_of_the_live_manifest() {
    let e = Env::new();
    small_db(&e);
    e.run(&["flush"]).ok();
    let manifest = file_ending(&e.db, "");
    let manifest = std::fs::read_dir(&e.db)
        .expect("db dir")
        .map(|x| x.expect("entry").path())
        .filter(|p| p.to_string_lossy().contains("MANIFEST-"))
        .max()
        .unwrap_or(manifest);
    let m = manifest.to_str().expect("utf-8");
    // The live manifest has no final block yet: that is its normal state, not damage.
    let r = e.run(&["inspect", "--manifest", m]).ok();
    assert!(
        r.out().contains("create-keyspace   id=0 name=\"default\""),
        "{}",
        r.out()
    );
    assert!(r.out().contains("add-file"), "{}", r.out());
    assert!(
        r.out().contains("smallest=\"alpha\" largest=0x62696e01"),
        "{}",
        r.out()
    );
    assert!(r.out().contains("flushed-seq       seq=3"), "{}", r.out());
    let r = e.run(&["--json", "inspect", "--manifest", m]).ok();
    assert!(
        r.out()
            .lines()
            .any(|l| l.contains("\"edit\":\"add-file\"") && l.contains("\"smallest\":\"alpha\"")),
        "{}",
        r.out()
    );
}

#[test]
fn inspecting_a_file_that_is_not_a_sealdb_file_exits_4_not_2() {
    let e = Env::new();
    small_db(&e);
    let plain = e.dir.path().join("notes.txt");
    std::fs::write(
        &plain,
        "just some text, longer than a sealed-file header would be .....",
    )
    .expect("write");
    let empty = e.dir.path().join("empty");
    std::fs::write(&empty, "").expect("write");
    for f in [&plain, &empty] {
        let r = e.run(&["inspect", f.to_str().expect("utf-8")]).status(4);
        assert!(r.stderr.contains("not a sealdb file"), "{}", r.stderr);
    }
    // A sealdb file that fails authentication is still an integrity failure.
    let wal = file_ending(&e.db.join("wal"), ".wal");
    let mut bytes = std::fs::read(&wal).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&wal, bytes).expect("write");
    let w = wal.to_str().expect("utf-8");
    e.run(&["inspect", w]).status(2);
    e.run(&["inspect", "--wal", w]).status(2);
    // Without keys only the layout is read, and that is intact.
    finish(e.bare().args(["inspect", w]).output().expect("run")).ok();
}

#[test]
fn the_readme_lists_every_global_option() {
    let e = Env::new();
    let help = e.run(&["--help"]).ok().out();
    let options = help
        .split("Options:")
        .nth(1)
        .expect("an Options section")
        .split("Exit status:")
        .next()
        .unwrap_or_default();
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .expect("README.md");
    let mut checked = 0;
    for line in options.lines() {
        let Some(flag) = line.trim_start().strip_prefix("--") else {
            continue;
        };
        let name: String = flag
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        if name == "help" || name == "version" {
            continue;
        }
        checked += 1;
        assert!(
            readme.contains(&format!("`--{name}")),
            "README.md does not document --{name}"
        );
    }
    assert!(
        checked >= 9,
        "only {checked} global options found in: {options}"
    );
}

/// Point 10: times go through a maintained calendar crate (jiff). The hand-written parser it
/// replaced took 2024-02-30 (a day February never has) as a point in time; now it is a bad
/// argument (exit 4) that names what was wrong, while real dates still parse.
#[test]
fn an_impossible_calendar_date_is_a_bad_argument() {
    let e = Env::new();
    let backups = e.dir.path().join("backups");
    let dest = e.dir.path().join("restored");
    let (b, d) = (
        backups.to_str().expect("utf-8"),
        dest.to_str().expect("utf-8"),
    );
    let r = e
        .run(&["restore", b, d, "--to-time", "2024-02-30T00:00:00Z"])
        .status(4);
    assert!(
        r.stderr.contains("2024-02-30") && r.stderr.contains("RFC 3339"),
        "{}",
        r.stderr
    );
    // A real date gets past argument parsing: the failure is now the missing backup directory,
    // not the time.
    let r = finish(
        e.bare()
            .args(["--db", e.db.to_str().expect("utf-8")])
            .args(["restore", b, d, "--to-time", "2024-02-29T00:00:00Z"])
            .output()
            .expect("run"),
    );
    assert_ne!(r.code, Some(0), "{}", r.out());
    assert!(!r.stderr.contains("RFC 3339"), "{}", r.stderr);
}
