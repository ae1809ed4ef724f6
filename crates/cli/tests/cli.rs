//! End-to-end tests of the `sealdb` binary: commands, output formats and exit statuses.
//!
//! Each test uses its own temporary database and keystore (`--keystore`), so nothing touches
//! the user's real keystore and tests run in parallel.

mod common;

use common::{Env, Run, finish, json_lines};
use std::path::PathBuf;
use std::process::{Command, Stdio};

impl Env {
    fn tables(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.db.join("tables"))
            .expect("tables dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "sst"))
            .collect();
        v.sort();
        v
    }
}

#[test]
fn put_get_delete_round_trip() {
    let e = Env::new();
    e.run(&["put", "alpha", "one"]).ok();
    e.run(&["put", "beta", "two words", "--sync"]).ok();
    assert_eq!(e.run(&["get", "alpha"]).ok().out(), "one\n");
    assert_eq!(e.run(&["get", "beta"]).ok().out(), "two words\n");
    // A value starting with a hyphen is a value, not an option.
    e.run(&["put", "neg", "-5"]).ok();
    assert_eq!(e.run(&["get", "neg"]).ok().out(), "-5\n");
    e.run(&["delete", "alpha", "--sync"]).ok();
    let r = e.run(&["get", "alpha"]).status(1);
    assert!(
        r.stderr.contains("sealdb: error: key not found"),
        "{}",
        r.stderr
    );
    assert!(r.stdout.is_empty());
    // JSON and hex forms of the same data.
    let v = json_lines(&e.run(&["--json", "get", "beta"]).ok().out());
    assert_eq!(v[0]["value"], "two words");
    e.run(&["put", "--hex", "00ff", "0a09"]).ok();
    assert_eq!(e.run(&["get", "--hex", "00ff"]).ok().out(), "0a09\n");
}

#[test]
fn get_missing_key_exits_1() {
    let e = Env::new();
    e.run(&["put", "a", "1"]).ok();
    e.run(&["get", "nope"]).status(1);
    let r = e.run(&["get", "nope", "--json"]).status(1);
    assert_eq!(json_lines(&r.out())[0]["found"], false);
}

#[test]
fn scan_prefix_limit_reverse_and_bounds() {
    let e = Env::new();
    let mut input = String::new();
    for k in ["a1", "a2", "a3", "b1", "b2", "c"] {
        input.push_str(&format!("{k}\tv-{k}\n"));
    }
    e.run_with_stdin(&["import", "-"], input.as_bytes()).ok();
    assert_eq!(
        e.run(&["scan", "--prefix", "a"]).ok().out(),
        "a1\tv-a1\na2\tv-a2\na3\tv-a3\n"
    );
    assert_eq!(
        e.run(&["scan", "--prefix", "a", "--limit", "2", "--reverse"])
            .ok()
            .out(),
        "a3\tv-a3\na2\tv-a2\n"
    );
    assert_eq!(
        e.run(&["scan", "--from", "a3", "--to", "b2"]).ok().out(),
        "a3\tv-a3\nb1\tv-b1\n"
    );
    assert_eq!(e.run(&["scan", "--from", "c", "--to", "a"]).ok().out(), "");
    let v = json_lines(&e.run(&["scan", "--json", "--limit", "1"]).ok().out());
    assert_eq!(v.len(), 1);
    assert_eq!(v[0]["key"], "a1");
    assert_eq!(v[0]["value"], "v-a1");
}

#[test]
fn import_export_round_trip_text_and_hex() {
    let e = Env::new();
    // An escaped backslash, a raw carriage return (taken as it is), an empty line (skipped).
    let text = "k1\tplain value\nk2\twith \\\\ backslash\r\n\nk3\t\n";
    let r = e.run_with_stdin(&["import", "-"], text.as_bytes()).ok();
    assert!(r.out().contains("imported 3 pairs"), "{}", r.out());
    assert_eq!(e.run(&["get", "k2"]).ok().out(), "with \\ backslash\r\n");
    let out = e.path("out.tsv");
    e.run(&["export", out.to_str().expect("utf8")]).ok();
    // Export writes the one escaping rule: the carriage return comes back escaped.
    assert_eq!(
        std::fs::read_to_string(&out).expect("read export"),
        "k1\tplain value\nk2\twith \\\\ backslash\\r\nk3\t\n"
    );
    assert_eq!(
        e.run(&["export"]).ok().out(),
        std::fs::read_to_string(&out).expect("read")
    );

    // A value with a TAB and a newline is escaped, no longer refused.
    e.run(&["put", "--hex", "6b34", "61096220630a"]).ok();
    let escaped = e.path("escaped.tsv");
    e.run(&["export", escaped.to_str().expect("utf8")]).ok();
    assert!(
        std::fs::read_to_string(&escaped)
            .expect("read")
            .contains("k4\ta\\tb c\\n\n")
    );

    // Hex export imports into a fresh database identically.
    let hex = e.run(&["export", "--hex"]).ok().stdout;
    let e2 = Env::new();
    e2.run_with_stdin(&["import", "--hex", "-"], &hex).ok();
    assert_eq!(e2.run(&["export", "--hex"]).ok().stdout, hex);
    assert_eq!(
        e2.run(&["get", "--hex", "6b34"]).ok().out(),
        "61096220630a\n"
    );

    // Malformed input is a usage error naming the line.
    let r = e2
        .run_with_stdin(&["import", "-"], b"ok\tfine\nno tab here\n")
        .status(4);
    assert!(r.stderr.contains("line 2"), "{}", r.stderr);
}

#[test]
fn verify_clean_database_exits_0() {
    let e = Env::new();
    e.load_and_flush(3000, 50);
    let r = e.run(&["verify"]).ok();
    assert!(r.out().contains("every block authenticated"), "{}", r.out());
    let v = json_lines(&e.run(&["verify", "--json"]).ok().out());
    assert_eq!(v.last().expect("summary")["ok"], true);
}

/// Loads and flushes a database, then flips one bit a third of the way into its first table:
/// inside a data block, which only a full read (verify, scan) reaches. Returns the table and
/// the offset of the flipped byte.
fn tamper_with_a_table(e: &Env) -> (PathBuf, usize) {
    e.load_and_flush(3000, 50);
    let table = e.tables().first().expect("a table after flush").clone();
    let mut bytes = std::fs::read(&table).expect("read table");
    let mid = bytes.len() / 3;
    bytes[mid] ^= 0x40;
    std::fs::write(&table, &bytes).expect("write table");
    (table, mid)
}

#[test]
fn tampered_table_exits_2_naming_the_file_and_block() {
    let e = Env::new();
    let (table, _) = tamper_with_a_table(&e);

    let name = table
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let r = e.run(&["verify"]).status(2);
    let failure = r
        .out()
        .lines()
        .find(|l| l.contains(&name))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no failure names {name}: {}", r.out()));
    assert!(failure.contains("block offset"), "{failure}");
    assert!(r.stderr.starts_with("sealdb: error: "), "{}", r.stderr);
    let r = e.run(&["verify", "--json"]).status(2);
    let v = json_lines(&r.out());
    assert!(
        v.iter()
            .any(|o| o["file"].as_str().is_some_and(|f| f.contains(&name)) && o["block"].is_u64())
    );
    // inspect with the keys pins the same block down.
    e.run(&["inspect", table.to_str().expect("utf8")]).status(2);
}

#[test]
fn json_error_of_a_tampered_table_names_the_file_and_offset() {
    let e = Env::new();
    let (table, mid) = tamper_with_a_table(&e);

    let r = e.run(&["scan", "--json"]).status(2);
    let line = r
        .stderr
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no error on stderr"));
    let v: serde_json::Value = serde_json::from_str(line).expect("one JSON error object");
    let err = &v["error"];
    assert_eq!(err["class"], "integrity", "{line}");
    assert_eq!(err["exit"], 2, "{line}");
    let name = table.file_name().expect("name").to_string_lossy();
    assert!(
        err["file"].as_str().is_some_and(|f| f.ends_with(&*name)),
        "{line}"
    );
    let offset = err["offset"].as_u64().unwrap_or_else(|| panic!("{line}"));
    assert!(offset <= mid as u64, "{line}");
}

#[test]
fn wrong_or_empty_keystore_exits_3() {
    let e = Env::new();
    e.run(&["put", "k", "v"]).ok();
    let empty = e.path("empty-keystore");
    std::fs::create_dir(&empty).expect("mkdir");
    let r = finish(
        Command::new(env!("CARGO_BIN_EXE_sealdb"))
            .args(["get", "k", "--db"])
            .arg(&e.db)
            .arg("--keystore")
            .arg(&empty)
            .env_remove("SEALDB_KEYSTORE")
            .output()
            .expect("run"),
    )
    .status(3);
    assert!(r.stderr.starts_with("sealdb: error: "), "{}", r.stderr);
}

#[test]
fn bad_arguments_exit_4_and_help_exits_0() {
    let e = Env::new();
    let r = e.run(&["frobnicate"]).status(4);
    assert!(r.stderr.starts_with("sealdb: error:"), "{}", r.stderr);
    e.run(&["scan", "--limit", "many"]).status(4);
    e.run(&["put", "only-a-key"]).status(4);
    e.run(&["--cipher", "rot13", "put", "k", "v"]).status(4);
    e.run(&["get", "--hex", "xyz"]).status(4);
    // Commands other than writers never create a database.
    let r = e.run(&["get", "k"]).status(4);
    assert!(!e.db.join("KEYS").exists(), "{}", r.stderr);
    e.run(&["load", "--count", "1000", "--key-size", "2"])
        .status(4);
    let h = e.run(&["--help"]).ok();
    assert!(h.out().contains("Exit status"));
    e.run(&["--version"]).ok();
    e.run(&["scan", "--help"]).ok();
}

#[test]
fn inspect_a_table_file_with_and_without_keys() {
    let e = Env::new();
    e.run(&["load", "--count", "500"]).ok();
    e.run(&["flush"]).ok();
    let table = e.tables().into_iter().next().expect("a table");
    let t = table.to_str().expect("utf8");

    // Header and layout need no key (and no --db).
    let r = finish(
        Command::new(env!("CARGO_BIN_EXE_sealdb"))
            .args(["inspect", t])
            .output()
            .expect("run"),
    )
    .ok();
    let out = r.out();
    assert!(out.contains("kind table"), "{out}");
    assert!(out.contains("cipher chacha20poly1305"), "{out}");
    assert!(out.contains("layout complete"), "{out}");

    // With the database's keys every block opens and gets a role.
    let out = e.run(&["inspect", t]).ok().out();
    assert!(out.contains("footer"), "{out}");
    assert!(out.contains("every block authenticated"), "{out}");
    assert!(out.contains("500 entries"), "{out}");
    let v = json_lines(&e.run(&["inspect", t, "--json"]).ok().out());
    assert_eq!(v[0]["kind"], "table");
    assert!(
        v.iter()
            .any(|o| o["role"] == "footer" && o["final"] == true)
    );

    // Not a sealed file at all: "not a sealdb file", exit 4 (2 is for sealdb files that fail
    // authentication).
    let junk = e.path("junk");
    std::fs::write(
        &junk,
        b"definitely not sealed, but long enough to hold a header..........",
    )
    .expect("write");
    e.run(&["inspect", junk.to_str().expect("utf8")]).status(4);
    e.run(&["inspect", e.path("missing").to_str().expect("utf8")])
        .status(4);
}

#[test]
fn stats_json_parses() {
    let e = Env::new();
    e.run(&["load", "--count", "2000", "--json"]).ok();
    e.run(&["compact", "--json"]).ok();
    let r = e.run(&["stats", "--json"]).ok();
    let v = json_lines(&r.out());
    assert_eq!(v.len(), 1);
    let levels = v[0]["levels"].as_array().expect("levels");
    let files: u64 = levels
        .iter()
        .map(|l| l["files"].as_u64().expect("files"))
        .sum();
    assert!(files >= 1, "{}", r.out());
    assert!(v[0]["cache_hit_ratio"].is_number());
    assert!(v[0]["write_amplification"].is_number());
    e.run(&["stats"]).ok();
}

#[test]
fn demo_runs_end_to_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = finish(
        Command::new(env!("CARGO_BIN_EXE_sealdb"))
            .args(["demo", "--count", "2000"])
            .current_dir(dir.path())
            .env_remove("SEALDB_KEYSTORE")
            .output()
            .expect("run"),
    )
    .ok();
    let out = r.out();
    assert!(out.lines().count() < 40, "{out}");
    assert!(out.contains("every value verified"), "{out}");
    assert!(out.contains("p99.9"), "{out}");
    // Throwaway: nothing left in the working directory.
    assert_eq!(std::fs::read_dir(dir.path()).expect("read").count(), 0);

    let v = json_lines(
        &finish(
            Command::new(env!("CARGO_BIN_EXE_sealdb"))
                .args(["demo", "--count", "300", "--json"])
                .env_remove("SEALDB_KEYSTORE")
                .output()
                .expect("run"),
        )
        .ok()
        .out(),
    );
    assert_eq!(v.last().expect("done")["ok"], true);
}

#[test]
fn demo_refuses_an_existing_database() {
    let e = Env::new();
    e.run(&["put", "k", "v"]).ok();
    e.run(&["demo", "--count", "10"]).status(4);
    assert_eq!(e.run(&["get", "k"]).ok().out(), "v\n");
}

/// Every file under `dir` with its contents.
fn tree(dir: &std::path::Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
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

#[test]
fn read_commands_change_nothing_and_run_beside_a_writer() {
    let env = Env::new();
    env.run(&["put", "a", "1"]).ok();
    env.run(&["flush"]).ok();
    env.run(&["put", "b", "2", "--sync"]).ok();
    let export = env.path("export.tsv");
    let export_arg = export.to_string_lossy().into_owned();
    let reads: Vec<Vec<&str>> = vec![
        vec!["get", "a"],
        vec!["get", "b"],
        vec!["scan"],
        vec!["export", &export_arg],
        vec!["stats"],
        vec!["verify"],
        vec!["index", "list"],
        vec!["keys", "status"],
    ];
    let before = tree(&env.db);
    let before_keystore = tree(&env.keystore);
    for args in &reads {
        env.run(args).ok();
        assert_eq!(
            tree(&env.db),
            before,
            "`{}` changed the database directory",
            args.join(" ")
        );
        assert_eq!(
            tree(&env.keystore),
            before_keystore,
            "`{}` changed the keystore",
            args.join(" ")
        );
    }
    // Beside a writer holding the database open (this test process), with no lock wait.
    let writer = sealdb::Db::open(
        &env.db,
        sealdb::Options {
            keystore_dir: Some(env.keystore.clone()),
            ..sealdb::Options::default()
        },
    )
    .expect("writer");
    writer
        .default_keyspace()
        .put_opt(b"c", b"3", sealdb::WriteOptions::SYNC)
        .expect("put");
    let got = env.run(&["--lock-wait", "0", "get", "c"]).ok();
    assert_eq!(got.out().trim(), "3");
    env.run(&["--lock-wait", "0", "verify"]).ok();
    env.run(&["--lock-wait", "0", "scan"]).ok();
    // Writers still wait for (and here are refused by) the writer's lock.
    env.run(&["--lock-wait", "0", "put", "d", "4"]).status(4);
}

#[test]
fn many_one_put_sessions_under_a_small_descriptor_limit() {
    // Every session leaves a WAL segment; recovery must stay bounded in segments and in open
    // descriptors (it once opened every segment at once: EMFILE after ~1,000 `put`s).
    // scripts/many-sessions.sh runs the 5,000 sessions under `ulimit -n 256`.
    let env = Env::new();
    let limited = |args: &[&str], limit: u32| -> Run {
        let mut c = env.cmd(args);
        let program = c.get_program().to_owned();
        let argv: Vec<std::ffi::OsString> = c.get_args().map(|a| a.to_owned()).collect();
        let mut sh = Command::new("sh");
        sh.arg("-c")
            .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
            .arg(program)
            .args(argv)
            .env_remove("SEALDB_KEYSTORE")
            .env_remove("SEALDB_KMS")
            .stdin(Stdio::null());
        c = sh;
        finish(c.output().expect("run sealdb under ulimit"))
    };
    for i in 0..40 {
        limited(&["put", &format!("k{i}"), &format!("v{i}"), "--sync"], 64).ok();
    }
    let segments = std::fs::read_dir(env.db.join("wal"))
        .expect("wal")
        .filter(|e| {
            e.as_ref()
                .expect("entry")
                .path()
                .extension()
                .is_some_and(|x| x == "wal")
        })
        .count();
    assert!(segments <= 10, "{segments} WAL segments after 40 sessions");
    assert_eq!(limited(&["get", "k0"], 32).ok().out().trim(), "v0");
    assert_eq!(limited(&["get", "k39"], 32).ok().out().trim(), "v39");
    limited(&["verify"], 32).ok();
}

#[test]
fn cipher_aes256gcm_creates_a_gcm_database_and_the_seal_backend_is_a_run_time_choice() {
    let e = Env::new();
    e.run(&["--cipher", "aes256gcm", "put", "alpha", "one"])
        .ok();
    assert_eq!(e.run(&["get", "alpha"]).ok().out(), "one\n");
    e.run(&["flush"]).ok();
    let table = e.tables().into_iter().next().expect("a table");
    let out = e
        .run(&["inspect", table.to_str().expect("utf8")])
        .ok()
        .out();
    assert!(out.contains("cipher aes256gcm"), "{out}");
    assert!(out.contains("every block authenticated"), "{out}");
    // Reopened without --cipher: still GCM, still readable.
    e.run(&["put", "beta", "two"]).ok();
    assert_eq!(e.run(&["get", "beta"]).ok().out(), "two\n");

    // A ChaCha20-Poly1305 database written by the default (fast) backend reads back on the
    // reference one, and an unknown backend name is refused (exit 4), never ignored.
    let c = Env::new();
    c.run(&["put", "gamma", "three"]).ok();
    c.run(&["flush"]).ok();
    c.run(&["put", "delta", "four"]).ok();
    for (key, value) in [("gamma", "three\n"), ("delta", "four\n")] {
        let r = finish(
            c.cmd(&["get", key])
                .env("SEALDB_SEAL_BACKEND", "reference")
                .output()
                .expect("run"),
        )
        .ok();
        assert_eq!(r.out(), value);
    }
    let r = finish(
        c.cmd(&["get", "gamma"])
            .env("SEALDB_SEAL_BACKEND", "turbo")
            .output()
            .expect("run"),
    )
    .status(4);
    assert!(r.stderr.contains("SEALDB_SEAL_BACKEND"), "{}", r.stderr);
}
