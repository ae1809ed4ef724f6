//! The data commands as a new user meets them (issue 15, points 1-7): keyspaces, binary-safe
//! output, values from standard input or files, one rule for creating a database, lifetime
//! statistics, progress, and JSON errors. Each test runs the real binary on its own temporary
//! database and keystore.

mod common;

use common::{Env, Run, json_lines, s};
use std::io::Write;
use std::process::{Command, Stdio};

impl Env {
    /// The library, as the README's snippet uses it, on the same database.
    fn open_lib(&self) -> sealdb::Db {
        sealdb::Db::open(
            &self.db,
            sealdb::Options {
                keystore_dir: Some(self.keystore.clone()),
                ..sealdb::Options::default()
            },
        )
        .expect("open with the library")
    }
}

// ---- 1. keyspaces ----

#[test]
fn keyspaces_made_by_the_library_are_reachable_from_every_data_command() {
    let e = Env::new();
    {
        let db = e.open_lib();
        let users = db.create_keyspace("users").expect("keyspace");
        users.put(b"alice", b"admin").expect("put");
        users.put(b"bob", b"user").expect("put");
    }
    // The issue as reported: the default keyspace is empty, and now the command says where
    // the data is.
    let r = e.run(&["export", s(&e.path("x.tsv"))]).ok();
    assert!(r.out().contains("exported 0 pairs"), "{}", r.out());
    assert!(r.stderr.contains("other keyspaces: users"), "{}", r.stderr);
    e.open_lib().put(b"in-default", b"x").expect("put");
    let out = e.path("users.tsv");
    let r = e.run(&["export", "--keyspace", "users", s(&out)]).ok();
    assert!(r.out().contains("exported 2 pairs"), "{}", r.out());
    assert_eq!(
        std::fs::read_to_string(&out).expect("read"),
        "alice\tadmin\nbob\tuser\n"
    );
    assert_eq!(
        e.run(&["scan", "--keyspace", "users"]).ok().out(),
        "alice\tadmin\nbob\tuser\n"
    );
    // The default keyspace is still what commands use without the option.
    assert_eq!(e.run(&["scan"]).ok().out(), "in-default\tx\n");
    assert_eq!(
        e.run(&["get", "--keyspace", "users", "bob"]).ok().out(),
        "user\n"
    );
    e.run(&["delete", "--keyspace", "users", "bob"]).ok();
    e.run(&["get", "--keyspace", "users", "bob"]).status(1);

    // Reads (and delete) of a keyspace that does not exist: exit 1, naming it.
    for args in [
        &["get", "--keyspace", "nope", "k"][..],
        &["scan", "--keyspace", "nope"],
        &["export", "--keyspace", "nope"],
        &["delete", "--keyspace", "nope", "k"],
        &["stats", "--keyspace", "nope"],
    ] {
        let r = e.run(args).status(1);
        assert!(
            r.stderr.contains("no keyspace \"nope\""),
            "{args:?}: {}",
            r.stderr
        );
    }
    // Writers create it.
    e.run(&["put", "--keyspace", "orders", "o1", "book"]).ok();
    e.run_with_stdin(&["import", "--keyspace", "orders", "-"], b"o2\tpen\n")
        .ok();
    assert_eq!(
        e.run(&["scan", "--keyspace", "orders"]).ok().out(),
        "o1\tbook\no2\tpen\n"
    );

    // keyspace list / create / drop.
    e.run(&["keyspace", "create", "empty"]).ok();
    let list = json_lines(&e.run(&["--json", "keyspace", "list"]).ok().out());
    let names: Vec<&str> = list.iter().filter_map(|v| v["name"].as_str()).collect();
    assert_eq!(names, ["default", "empty", "orders", "users"]);
    let users = list.iter().find(|v| v["name"] == "users").expect("users");
    assert_eq!(
        users["estimated_keys"], 3,
        "2 puts + 1 tombstone, an estimate"
    );
    let text = e.run(&["keyspace", "list"]).ok().out();
    assert!(
        text.contains("orders") && text.contains("est. keys"),
        "{text}"
    );
    e.run(&["keyspace", "drop", "orders"]).ok();
    e.run(&["scan", "--keyspace", "orders"]).status(1);
    e.run(&["keyspace", "drop", "orders"]).status(1);
    e.run(&["keyspace", "drop", "default"]).status(4);

    // stats shows per-keyspace figures.
    let v = json_lines(&e.run(&["--json", "stats"]).ok().out());
    let ks = v[0]["keyspaces"].as_array().expect("keyspaces");
    assert_eq!(ks.len(), 3);
    assert!(
        ks.iter()
            .any(|k| k["name"] == "default" && k["estimated_keys"] == 1)
    );
    let text = e.run(&["stats", "--keyspace", "users"]).ok().out();
    assert!(text.contains("users") && !text.contains("empty "), "{text}");
}

// ---- 2. binary-safe everywhere ----

/// A small deterministic generator (xorshift), so the test needs no extra dependency and a
/// failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Bytes biased towards the troublesome ones: separators, backslashes, `x`, control
    /// bytes, bytes of broken and valid multi-byte UTF-8.
    fn bytes(&mut self, max: u64) -> Vec<u8> {
        const NASTY: &[u8] = b"\t\n\r\\x\x00\x7f\x80\xc3\xa9\xe2\xff ";
        let n = self.next() % (max + 1);
        (0..n)
            .map(|_| {
                let r = self.next();
                if r.is_multiple_of(2) {
                    NASTY[(r / 2 % NASTY.len() as u64) as usize]
                } else {
                    (r >> 8) as u8
                }
            })
            .collect()
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn random_binary_keys_and_values_round_trip_through_export_and_import() {
    let e = Env::new();
    let mut rng = Rng(0x5eed_0015);
    let mut pairs = std::collections::BTreeMap::new();
    while pairs.len() < 300 {
        let k = rng.bytes(12);
        if !k.is_empty() {
            pairs.insert(k, rng.bytes(40));
        }
    }
    // Loaded through the hexadecimal form, which is independent of the escaping under test.
    let mut input = String::new();
    for (k, v) in &pairs {
        input.push_str(&format!("{}\t{}\n", hex(k), hex(v)));
    }
    e.run_with_stdin(&["import", "--hex", "-"], input.as_bytes())
        .ok();

    // Plain export and scan write every pair, one line each, without refusing any.
    let file = e.path("all.tsv");
    e.run(&["export", s(&file)]).ok();
    let exported = std::fs::read(&file).expect("read");
    assert_eq!(
        exported.iter().filter(|b| **b == b'\n').count(),
        pairs.len()
    );
    assert_eq!(e.run(&["scan"]).ok().stdout, exported);

    // Import reads back exactly what export wrote: byte for byte.
    let e2 = Env::new();
    e2.run(&["import", s(&file)]).ok();
    assert_eq!(
        e2.run(&["export", "--hex"]).ok().stdout,
        e.run(&["export", "--hex"]).ok().stdout
    );
    let file2 = e2.path("again.tsv");
    e2.run(&["export", s(&file2)]).ok();
    assert_eq!(std::fs::read(&file2).expect("read"), exported);

    // JSON: a string when UTF-8, else {"hex": ...}; either way the bytes come back.
    let lines = json_lines(&e.run(&["--json", "scan"]).ok().out());
    assert_eq!(lines.len(), pairs.len());
    let decode = |v: &serde_json::Value| -> Vec<u8> {
        match v {
            serde_json::Value::String(s) => s.as_bytes().to_vec(),
            other => {
                let h = other["hex"].as_str().expect("hex object");
                (0..h.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&h[i..i + 2], 16).expect("hex"))
                    .collect()
            }
        }
    };
    let mut saw_hex = false;
    for (line, (k, v)) in lines.iter().zip(&pairs) {
        saw_hex |= line["key"].is_object() || line["value"].is_object();
        assert_eq!(&decode(&line["key"]), k);
        assert_eq!(&decode(&line["value"]), v);
    }
    assert!(saw_hex, "the generator makes non-UTF-8 bytes");

    // get --json follows the same rule.
    // (Longer than any generated key, so certainly missing.)
    let missing = "00".repeat(20);
    let v = json_lines(&e.run(&["--json", "get", "--hex", &missing]).status(1).out());
    assert_eq!(v[0]["found"], false);
    e.run(&["put", "--hex", "6b", "ff0a"]).ok();
    let v = json_lines(&e.run(&["--json", "get", "k"]).ok().out());
    assert_eq!(v[0]["value"]["hex"], "ff0a");
}

#[test]
fn a_key_with_a_tab_newline_or_invalid_utf8_is_escaped_not_refused() {
    let e = Env::new();
    e.run(&["put", "--hex", "610962", "0a"]).ok(); // "a\tb" -> "\n"
    e.run(&["put", "--hex", "ff5c", "6f6b"]).ok(); // 0xff '\\' -> "ok"
    assert_eq!(e.run(&["scan"]).ok().out(), "a\\tb\t\\n\n\\xff\\\\\tok\n");
    // A backslash that starts no escape is refused on import, naming the line.
    let r = e
        .run_with_stdin(&["import", "-"], b"good\tline\nbad\tC:\\dir\n")
        .status(4);
    assert!(r.stderr.contains("line 2"), "{}", r.stderr);
}

// ---- 3. values from standard input or a file ----

#[test]
fn put_reads_the_value_from_stdin_or_a_file_and_literal_escapes_it() {
    let e = Env::new();
    let binary = [0u8, 0xff, b'\n', b'@'];
    e.run_with_stdin(&["put", "from-stdin", "-"], &binary).ok();
    assert_eq!(
        e.run(&["get", "--hex", &hex(b"from-stdin")]).ok().out(),
        format!("{}\n", hex(&binary))
    );
    let file = e.path("value.bin");
    std::fs::write(&file, b"file \xc3\xa9 contents\n").expect("write");
    let at = format!("@{}", s(&file));
    e.run(&["put", "from-file", &at]).ok();
    assert_eq!(
        e.run(&["get", "from-file"]).ok().stdout,
        b"file \xc3\xa9 contents\n\n"
    );
    // With --hex, what is read is hexadecimal text.
    let hexfile = e.path("value.hex");
    std::fs::write(&hexfile, "00ff\n").expect("write");
    e.run(&["put", "--hex", "6878", &format!("@{}", s(&hexfile))])
        .ok();
    assert_eq!(e.run(&["get", "--hex", "6878"]).ok().out(), "00ff\n");

    // Values that really are "-" or start with '@'.
    e.run(&["put", "dash", "-", "--literal"]).ok();
    assert_eq!(e.run(&["get", "dash"]).ok().out(), "-\n");
    e.run(&["put", "handle", "@@alice"]).ok();
    assert_eq!(e.run(&["get", "handle"]).ok().out(), "@alice\n");
    e.run(&["put", "mail", "@bob", "--literal"]).ok();
    assert_eq!(e.run(&["get", "mail"]).ok().out(), "@bob\n");

    // A missing file is an error, and nothing is stored.
    let r = e.run(&["put", "nope", "@/no/such/file"]).status(4);
    assert!(r.stderr.contains("/no/such/file"), "{}", r.stderr);
    e.run(&["get", "nope"]).status(1);
    let help = e.run(&["put", "--help"]).ok().out();
    assert!(help.contains("@@") && help.contains("--literal"), "{help}");
}

// ---- 4. one rule for creating a database ----

#[test]
fn commands_that_add_create_the_database_and_the_others_refuse() {
    // Each creator, on its own missing path.
    for args in [
        &["index", "create", "by-name", "--json", "/name"][..],
        &["stream", "enable", "--view", "keys"],
        &["keyspace", "create", "users"],
        &["put", "k", "v"],
    ] {
        let e = Env::new();
        e.run(args).ok();
        assert!(e.db.join("KEYS").exists(), "{args:?} did not create");
    }
    // Everything else refuses, says why, and leaves nothing behind.
    let e = Env::new();
    for args in [
        &["get", "k"][..],
        &["scan"],
        &["export"],
        &["delete", "k"],
        &["stats"],
        &["verify"],
        &["flush"],
        &["compact"],
        &["keyspace", "list"],
        &["keyspace", "drop", "x"],
        &["index", "list"],
        &["stream", "info"],
        &["keys", "status"],
    ] {
        let r = e.run(args).status(4);
        assert!(
            r.stderr.contains("no database at") && r.stderr.contains("create one"),
            "{args:?}: {}",
            r.stderr
        );
        assert!(!e.db.exists(), "{args:?} left a directory behind");
    }
    let help = e.run(&["--help"]).ok().out();
    assert!(help.contains("Creating a database"), "{help}");
}

// ---- 5. statistics that persist ----

#[test]
fn stats_counts_writes_of_earlier_commands() {
    let e = Env::new();
    e.run(&["put", "a", "1"]).ok();
    e.run(&["put", "b", "2"]).ok();
    e.run_with_stdin(&["import", "--batch", "2", "-"], b"c\t3\nd\t4\ne\t5\n")
        .ok();
    let v = json_lines(&e.run(&["--json", "stats"]).ok().out());
    // Two puts and the import's two batches, each from its own process.
    assert_eq!(v[0]["cumulative"]["batches"], 4);
    assert_eq!(v[0]["cumulative"]["records"], 5);
    assert_eq!(v[0]["batches"], 0, "this process wrote nothing");
    let text = e.run(&["stats"]).ok().out();
    assert!(
        text.contains("lifetime       4 batches, 5 records"),
        "{text}"
    );
    assert!(
        !std::fs::read(e.db.join("STATS"))
            .expect("STATS")
            .windows(8)
            .any(|w| w == b"SDBSTATS"),
        "nothing in clear"
    );
}

// ---- 6. progress ----

/// Runs `sealdb args` with standard error on a pseudo-terminal (`script`), returning what the
/// terminal showed; `None` where `script` is unavailable.
fn on_a_terminal(e: &Env, args: &[&str]) -> Option<String> {
    let mut line = format!(
        "{} --db {} --keystore {}",
        env!("CARGO_BIN_EXE_sealdb"),
        s(&e.db),
        s(&e.keystore)
    );
    for a in args {
        line.push(' ');
        line.push_str(a);
    }
    // Standard output to a file: only standard error stays on the terminal.
    line.push_str(" > /dev/null");
    let o = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env_remove("SEALDB_KEYSTORE")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    Some(String::from_utf8_lossy(&o.stdout).into_owned())
}

#[test]
fn long_commands_show_progress_on_a_terminal_only() {
    let e = Env::new();
    let file = e.path("in.tsv");
    let mut data = Vec::new();
    for i in 0..20_000 {
        writeln!(data, "key{i:06}\tvalue {i}").expect("write");
    }
    std::fs::write(&file, &data).expect("write");
    // Not a terminal: nothing on standard error.
    let r = e.run(&["import", s(&file)]).ok();
    assert_eq!(r.stderr, "");
    let r = e.run(&["export"]).ok();
    assert_eq!(r.stderr, "");
    let Some(shown) = on_a_terminal(&e, &["import", s(&file)]) else {
        eprintln!("`script` is not available: the terminal half is skipped");
        return;
    };
    assert!(shown.contains("import"), "{shown:?}");
    for cmd in ["export", "verify", "compact"] {
        let shown = on_a_terminal(&e, &[cmd]).expect("script ran before");
        assert!(shown.contains(cmd), "{cmd}: {shown:?}");
    }
}

// ---- 7. JSON errors ----

#[test]
fn json_errors_are_objects_with_class_and_exit() {
    let e = Env::new();
    e.run(&["put", "k", "v"]).ok();
    let err = |r: &Run| -> serde_json::Value {
        serde_json::from_str(r.stderr.trim())
            .unwrap_or_else(|x| panic!("stderr is not one JSON object: {:?}: {x}", r.stderr))
    };
    let r = e.run(&["--json", "get", "missing"]).status(1);
    let v = err(&r);
    assert_eq!(v["error"]["class"], "not_found");
    assert_eq!(v["error"]["exit"], 1);
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("missing"))
    );

    let r = e.run(&["get", "k", "--json", "--keystore", s(&e.path("empty"))]);
    // (--keystore given twice: the last one, an empty keystore, wins.)
    let v = err(&r.status(3));
    assert_eq!(v["error"]["class"], "key_unavailable");

    let r = e.run(&["--json", "scan", "--limit", "many"]).status(4);
    assert_eq!(err(&r)["error"]["class"], "other");

    // A tampered table: integrity, exit 2.
    e.load_and_flush(3000, 50);
    let table = std::fs::read_dir(e.db.join("tables"))
        .expect("tables")
        .map(|d| d.expect("entry").path())
        .find(|p| p.extension().is_some_and(|x| x == "sst"))
        .expect("a table");
    let mut bytes = std::fs::read(&table).expect("read");
    let mid = bytes.len() / 3;
    bytes[mid] ^= 0x40;
    std::fs::write(&table, &bytes).expect("write");
    let r = e.run(&["--json", "verify"]).status(2);
    let v = err(&r);
    assert_eq!(v["error"]["class"], "integrity");
    assert_eq!(v["error"]["exit"], 2);

    // Without --json the text form is unchanged.
    let r = e.run(&["get", "missing"]).status(1);
    assert!(r.stderr.starts_with("sealdb: error: "), "{}", r.stderr);
}
