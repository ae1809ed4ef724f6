//! End-to-end tests of the key-lifecycle, local KMS, index, stream and backup commands of the
//! `sealdb` binary.
//!
//! Every test has its own database, keystore (`--keystore`) and local KMS (`--kms`), so
//! nothing touches the user's real ones and tests run in parallel. They are kept small: each
//! command is a process that opens the database.

mod common;

use common::{Env, finish, json_lines, s};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

impl Env {
    fn kms_state(&self, name: &str) -> String {
        let keys = self.run_nodb(&["kms", "list", "--json"]).ok().json();
        keys.iter()
            .find(|k| k["name"] == name)
            .and_then(|k| k["state"].as_str())
            .unwrap_or("absent")
            .to_string()
    }

    fn data_key_versions(&self) -> usize {
        let st = self.run(&["keys", "status", "--json"]).ok().json();
        st[0]["data_keys"].as_array().expect("data_keys").len()
    }
}

#[test]
fn kms_create_disable_enable_audit_round_trip() {
    let e = Env::with_kms();
    // Only `create` makes a KMS; other commands on a missing one create nothing.
    let r = e.run_nodb(&["kms", "list"]).ok();
    assert!(r.out().contains("no local KMS"), "{}", r.out());
    e.run_nodb(&["kms", "disable", "app-key"]).status(3);
    assert!(!e.path("kms").exists());
    let r = e.run_nodb(&["kms", "create", "app-key"]).ok();
    assert!(r.out().contains("app-key"), "{}", r.out());
    e.run_nodb(&["kms", "create", "other"]).ok();
    // Names are unique.
    e.run_nodb(&["kms", "create", "app-key"]).status(4);
    assert_eq!(e.kms_state("app-key"), "enabled");
    e.run_nodb(&["kms", "disable", "app-key"]).ok();
    assert_eq!(e.kms_state("app-key"), "disabled");
    e.run_nodb(&["kms", "enable", "app-key"]).ok();
    assert_eq!(e.kms_state("app-key"), "enabled");
    let v = e
        .run_nodb(&["kms", "rotate", "app-key", "--json"])
        .ok()
        .json();
    assert_eq!(v[0]["version"], 2);

    let audit = e
        .run_nodb(&["kms", "audit", "app-key", "--json"])
        .ok()
        .json();
    let ops: Vec<&str> = audit
        .iter()
        .filter_map(|a| a["operation"].as_str())
        .collect();
    for op in ["create", "disable", "enable", "rotate"] {
        assert!(ops.contains(&op), "{op} not audited: {ops:?}");
    }
    assert!(audit.iter().all(|a| a["key"] == "app-key"));
    // The refused second create is audited too, and only `audit` without a name shows `other`.
    assert!(audit.iter().any(|a| {
        a["operation"] == "create"
            && a["outcome"]
                .as_str()
                .is_some_and(|o| o.starts_with("refused"))
    }));
    let all = e.run_nodb(&["kms", "audit"]).ok().out();
    assert!(all.contains("other"), "{all}");

    // Deletion: only from a schedule, and before its date only with --now.
    e.run_nodb(&["kms", "destroy", "other"]).status(4);
    e.run_nodb(&["kms", "schedule-deletion", "other", "--days", "1"])
        .ok();
    assert_eq!(e.kms_state("other"), "pending-deletion");
    let r = e.run_nodb(&["kms", "destroy", "other"]).status(4);
    assert!(r.stderr.contains("now"), "{}", r.stderr);
    e.run_nodb(&["kms", "cancel-deletion", "other"]).ok();
    assert_eq!(e.kms_state("other"), "disabled");
    e.run_nodb(&["kms", "schedule-deletion", "other", "--days", "1"])
        .ok();
    e.run_nodb(&["kms", "destroy", "other", "--now"]).ok();
    assert_eq!(e.kms_state("other"), "destroyed");
    e.run_nodb(&["kms", "schedule-deletion", "app-key", "--days", "0"])
        .status(4);
}

#[test]
fn database_under_a_local_kms_key_follows_the_key_state() {
    let e = Env::with_kms();
    e.run_nodb(&["kms", "create", "k1"]).ok();
    e.run(&["put", "a", "1", "--master-key", "local-kms:k1"])
        .ok();
    let st = e.run(&["keys", "status", "--json"]).ok().json();
    assert_eq!(st[0]["master"]["provider"], "local-kms");
    assert_eq!(st[0]["master"]["key_id"], "k1");
    assert_eq!(st[0]["state"], "enabled");

    e.run_nodb(&["kms", "disable", "k1"]).ok();
    let r = e.run(&["get", "a"]).status(3);
    assert!(r.stderr.starts_with("sealdb: error: "), "{}", r.stderr);
    assert!(r.stderr.contains("disabled"), "{}", r.stderr);
    // Status still shows what the KEYS file says in clear, and fails the same way.
    let r = e.run(&["keys", "status"]).status(3);
    assert!(r.out().contains("local-kms:k1"), "{}", r.out());

    e.run_nodb(&["kms", "enable", "k1"]).ok();
    assert_eq!(e.run(&["get", "a"]).ok().out(), "1\n");
    // --master-key only applies at creation.
    let r = e.run(&["put", "b", "2", "--master-key", "owned"]).ok();
    assert!(r.stderr.contains("ignored"), "{}", r.stderr);
}

#[test]
fn keys_switch_owned_local_kms_owned_then_verify() {
    let e = Env::with_kms();
    e.load_and_flush(2000, 20);
    e.run_nodb(&["kms", "create", "k"]).ok();
    let r = e.run(&["keys", "switch", "--to", "local-kms:k"]).ok();
    assert!(r.out().contains("local-kms:k"), "{}", r.out());
    let st = e.run(&["keys", "status", "--json"]).ok().json();
    assert_eq!(st[0]["master"]["provider"], "local-kms");
    // A key that does not exist is refused (exit 3) and changes nothing.
    e.run(&["keys", "switch", "--to", "local-kms:missing"])
        .status(3);
    let v = e
        .run(&["keys", "switch", "--to", "owned", "--json"])
        .ok()
        .json();
    assert_eq!(v[0]["to"]["provider"], "owned");
    assert_eq!(v[0]["from"]["provider"], "local-kms");
    let r = e.run(&["verify"]).ok();
    assert!(r.out().contains("every block authenticated"), "{}", r.out());
    // The owned key is back: disabling the KMS key no longer matters.
    e.run_nodb(&["kms", "disable", "k"]).ok();
    e.run(&["verify"]).ok();
    e.run(&["keys", "switch", "--to", "vault:x"]).status(4);
}

#[cfg(not(feature = "aws-kms"))]
#[test]
fn aws_kms_without_the_feature_says_how_to_rebuild() {
    let e = Env::with_kms();
    let r = e
        .run(&["put", "k", "v", "--master-key", "aws-kms:alias/x"])
        .status(4);
    assert!(r.stderr.contains("--features aws-kms"), "{}", r.stderr);
    assert!(!e.db.join("KEYS").exists());
    e.run(&["put", "k", "v"]).ok();
    let r = e
        .run(&["keys", "switch", "--to", "aws-kms:alias/x"])
        .status(4);
    assert!(r.stderr.contains("--features aws-kms"), "{}", r.stderr);
}

#[test]
fn keys_rotate_and_reencrypt_leave_one_data_key() {
    let e = Env::with_kms();
    e.load_and_flush(1500, 20);
    let v = e.run(&["keys", "rotate", "--json"]).ok().json();
    assert_eq!(v[0]["current_data_key"], 2);
    e.run(&["put", "after-rotate", "x"]).ok();
    e.run(&["flush"]).ok();
    assert_eq!(e.data_key_versions(), 2);
    let v = e.run(&["keys", "reencrypt", "--json"]).ok().json();
    assert!(v[0]["tables_rewritten"].as_u64() >= Some(1), "{:?}", v[0]);
    assert_eq!(v[0]["versions_dropped"], serde_json::json!([1]));
    let st = e.run(&["keys", "status", "--json"]).ok().json();
    let keys = st[0]["data_keys"].as_array().expect("data_keys");
    assert_eq!(keys.len(), 1, "{st:?}");
    assert_eq!(keys[0]["version"], 2);
    assert_eq!(keys[0]["current"], true);
    let text = e.run(&["keys", "status"]).ok().out();
    assert!(text.contains("1 version"), "{text}");
    e.run(&["verify"]).ok();
    assert_eq!(e.run(&["get", "after-rotate"]).ok().out(), "x\n");
}

/// The engine's re-encryption drops data-key versions that stream segments still use (the
/// database then cannot be opened); `keys reencrypt` refuses instead, until the stream is
/// disabled or its old segments are trimmed.
#[test]
fn reencrypt_refuses_while_a_stream_segment_uses_an_old_data_key() {
    let e = Env::with_kms();
    e.run(&["put", "seed", "0"]).ok();
    e.run(&["stream", "enable", "--view", "keys"]).ok();
    e.run(&["put", "a", "1"]).ok();
    e.run(&["keys", "rotate"]).ok();
    let r = e.run(&["keys", "reencrypt"]).status(4);
    assert!(r.stderr.contains("stream disable"), "{}", r.stderr);
    // Nothing was dropped: the database opens and the stream reads.
    assert_eq!(e.data_key_versions(), 2);
    let recs = e.run(&["stream", "read"]).ok().json();
    assert!(recs.iter().any(|r| r["key"] == "a"), "{recs:?}");
    e.run(&["stream", "disable"]).ok();
    e.run(&["keys", "reencrypt"]).ok();
    assert_eq!(e.data_key_versions(), 1);
    assert_eq!(e.run(&["get", "a"]).ok().out(), "1\n");
}

#[test]
fn index_create_query_page_and_drop() {
    let e = Env::with_kms();
    let mut input = String::new();
    for (k, name, age) in [
        ("u1", "alice", 31),
        ("u2", "bob", 25),
        ("u3", "carol", 42),
        ("u4", "alfred", 25),
        ("u5", "dave", 37),
    ] {
        input.push_str(&format!("{k}\t{{\"name\":\"{name}\",\"age\":{age}}}\n"));
    }
    input.push_str("u6\tnot json\n");
    let mut child = e
        .cmd_on(Some(&e.db), &["import", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), input.as_bytes())
        .expect("write");
    finish(child.wait_with_output().expect("wait")).ok();

    // The spelling `--json POINTER` (the global --json flag still works beside it).
    let v = e
        .run(&["index", "create", "by-age", "--json", "/age", "--json"])
        .ok()
        .json();
    assert_eq!(v[0]["op"], "index-create");
    e.run(&[
        "index",
        "create",
        "by-name",
        "--json-pointer",
        "/name",
        "--projection",
        "keys",
    ])
    .ok();
    let list = e.run(&["index", "list", "--json"]).ok().json();
    assert_eq!(list.len(), 2);
    assert!(
        list.iter()
            .all(|i| i["ready"] == true && i["kind"] == "global")
    );

    // eq: both 25-year-olds, in primary-key order; the line is `pk<TAB>item`.
    let out = e
        .run(&["index", "query", "by-age", "--eq", "25"])
        .ok()
        .out();
    assert_eq!(
        out,
        "u2\t{\"name\":\"bob\",\"age\":25}\nu4\t{\"name\":\"alfred\",\"age\":25}\n"
    );
    // range (inclusive), as JSON with the index value.
    let v = e
        .run(&["index", "query", "by-age", "--range", "30", "40", "--json"])
        .ok()
        .json();
    let pks: Vec<&str> = v.iter().filter_map(|h| h["primary_key"].as_str()).collect();
    assert_eq!(pks, ["u1", "u5"]);
    assert_eq!(v[0]["value"], 31);
    // begins-with on a keys-only index, fetching the items.
    let out = e
        .run(&[
            "index",
            "query",
            "by-name",
            "--begins-with",
            "al",
            "--fetch",
        ])
        .ok()
        .out();
    assert_eq!(
        out,
        "u4\t{\"name\":\"alfred\",\"age\":25}\nu1\t{\"name\":\"alice\",\"age\":31}\n"
    );

    // Paging: --limit 2 prints `next: TOKEN` on stderr; --after continues.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..5 {
        let mut args = vec!["index", "query", "by-age", "--ge", "0", "--limit", "2"];
        if let Some(t) = &after {
            args.extend(["--after", t.as_str()]);
        }
        let r = e.run(&args).ok();
        seen.extend(
            r.out()
                .lines()
                .map(|l| l.split('\t').next().unwrap_or_default().to_string()),
        );
        after = r
            .stderr
            .lines()
            .find_map(|l| l.strip_prefix("next: "))
            .map(str::to_string);
        if after.is_none() {
            break;
        }
    }
    assert_eq!(seen, ["u2", "u4", "u1", "u5", "u3"]);
    // JSON paging ends with {"next": token} only while there is more.
    let v = e
        .run(&[
            "index", "query", "by-age", "--ge", "0", "--limit", "4", "--json",
        ])
        .ok()
        .json();
    assert_eq!(v.len(), 5);
    assert!(v[4]["next"].is_string());
    let v = e
        .run(&[
            "index", "query", "by-age", "--ge", "0", "--limit", "5", "--json",
        ])
        .ok()
        .json();
    assert_eq!(v.len(), 5);
    assert!(v.iter().all(|h| h.get("next").is_none()));

    e.run(&["index", "query", "by-age", "--ge", "0", "--after", "xyz"])
        .status(4);
    e.run(&["index", "query", "by-age"]).status(4);
    e.run(&["index", "drop", "by-age"]).ok();
    e.run(&["index", "query", "by-age", "--eq", "25"]).status(4);
    let list = e.run(&["index", "list", "--json"]).ok().json();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["name"], "by-name");
}

#[test]
fn stream_enable_put_read_json_lines() {
    let e = Env::with_kms();
    e.run(&["put", "seed", "0"]).ok();
    // Flushed, so the seed's WAL record is gone before the stream starts.
    e.run(&["flush"]).ok();
    e.run(&[
        "stream",
        "enable",
        "--view",
        "new-and-old",
        "--retention",
        "24h",
    ])
    .ok();
    e.run(&["put", "k", "v1"]).ok();
    e.run(&["put", "k", "v2"]).ok();
    e.run(&["delete", "k"]).ok();
    e.run(&["put", "--hex", "ff00", "00ff"]).ok();
    // JSON lines whatever --json says.
    let recs = e.run(&["stream", "read"]).ok().json();
    let events: Vec<&str> = recs.iter().filter_map(|r| r["event"].as_str()).collect();
    assert_eq!(events, ["insert", "modify", "remove", "insert"], "{recs:?}");
    assert_eq!(recs[0]["key"], "k");
    assert_eq!(recs[0]["keyspace"], "default");
    assert_eq!(recs[0]["new_image"], "v1");
    assert!(recs[0]["old_image"].is_null());
    assert_eq!(recs[1]["old_image"], "v1");
    assert!(recs[2]["new_image"].is_null());
    assert_eq!(recs[3]["key"]["hex"], "ff00");
    assert_eq!(recs[3]["new_image"]["hex"], "00ff");
    assert!(
        recs.iter()
            .all(|r| r["seq"].is_u64() && r["time_ms"].is_u64())
    );
    let seqs: Vec<u64> = recs.iter().filter_map(|r| r["seq"].as_u64()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");

    let after = format!("after:{}", seqs[1]);
    let tail = e
        .run(&["stream", "read", "--from", &after, "--limit", "1"])
        .ok()
        .json();
    assert_eq!(tail.len(), 1);
    assert_eq!(tail[0]["event"], "remove");
    let info = e.run(&["stream", "info", "--json"]).ok().json();
    assert_eq!(info[0]["view"], "new-and-old");
    assert_eq!(info[0]["last_seq"], seqs[3]);
    e.run(&["stream", "read", "--from", "sometime"]).status(4);
    e.run(&["stream", "disable"]).ok();
    e.run(&["stream", "read"]).status(4);
}

#[test]
fn stream_tail_sees_writes_of_another_process() {
    let e = Env::with_kms();
    e.run(&["put", "seed", "0"]).ok();
    e.run(&["flush"]).ok();
    e.run(&["stream", "enable", "--view", "new"]).ok();
    // From the start of the stream: `latest` would be resolved only at tail's first open,
    // which may come after the first put.
    let mut tail = e
        .cmd_on(
            Some(&e.db),
            &["stream", "tail", "--from", "trim-horizon", "--poll", "20ms"],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn tail");
    let stdout = tail.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Two writers while the tail runs: each waits for the lock if tail holds it.
    e.run(&["put", "from-another", "process"]).ok();
    e.run(&["put", "and-one", "more"]).ok();
    let mut got = Vec::new();
    while got.len() < 2 {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => got.push(line),
            Err(_) => break,
        }
    }
    let _ = tail.kill();
    let _ = tail.wait();
    let recs = json_lines(&got.join("\n"));
    let keys: Vec<&str> = recs.iter().filter_map(|r| r["key"].as_str()).collect();
    assert_eq!(keys, ["from-another", "and-one"], "{got:?}");
    assert_eq!(recs[0]["new_image"], "process");
}

#[test]
fn backup_list_verify_restore_then_get() {
    let e = Env::with_kms();
    e.run(&["load", "--count", "1000", "--value-size", "20"])
        .ok();
    e.run(&["put", "hello", "world"]).ok();
    let dir = e.path("backups");
    let v = e.run(&["backup", "create", s(&dir), "--json"]).ok().json();
    let id = v[0]["id"].as_str().expect("id").to_string();
    assert!(v[0]["tables"].as_u64() >= Some(1), "{:?}", v[0]);
    e.run(&["put", "later", "x"]).ok();
    e.run(&["backup", "create", s(&dir)]).ok();

    let list = e
        .run_nodb(&["backup", "list", s(&dir), "--json"])
        .ok()
        .json();
    assert_eq!(list.len(), 3, "{list:?}");
    assert_eq!(list[0]["id"], id.as_str());
    for b in &list[..2] {
        for field in ["time_ms", "sequence", "bytes", "tables"] {
            assert!(b[field].is_u64(), "{field} in {b:?}");
        }
    }
    let summary = &list[2];
    assert_eq!(summary["backups"], 2);
    assert_eq!(
        summary["earliest_restorable"]["sequence"],
        list[0]["sequence"]
    );
    assert_eq!(
        summary["latest_restorable"]["sequence"],
        list[1]["sequence"]
    );
    let text = e.run_nodb(&["backup", "list", s(&dir)]).ok().out();
    assert!(text.contains("restorable from sequence"), "{text}");

    let r = e.run_nodb(&["backup", "verify", s(&dir)]).ok();
    assert!(r.out().contains("every block authenticated"), "{}", r.out());

    // The first backup, into a new directory, under a local KMS key.
    e.run_nodb(&["kms", "create", "restore-key"]).ok();
    let dest = e.path("restored");
    let v = e
        .run_nodb(&[
            "restore",
            s(&dir),
            s(&dest),
            "--id",
            &id,
            "--key",
            "local-kms:restore-key",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(v[0]["backup_id"], id.as_str());
    assert_eq!(v[0]["master"]["key_id"], "restore-key");
    assert_eq!(e.run_on(&dest, &["get", "hello"]).ok().out(), "world\n");
    e.run_on(&dest, &["get", "later"]).status(1);
    e.run_on(&dest, &["verify"]).ok();
    // The latest backup by default; a destination that exists is refused.
    let dest2 = e.path("restored2");
    e.run_nodb(&["restore", s(&dir), s(&dest2)]).ok();
    assert_eq!(e.run_on(&dest2, &["get", "later"]).ok().out(), "x\n");
    e.run_nodb(&["restore", s(&dir), s(&dest2)]).status(4);

    e.run_nodb(&["backup", "delete", s(&dir), "--id", &id]).ok();
    let list = e
        .run_nodb(&["backup", "list", s(&dir), "--json"])
        .ok()
        .json();
    assert_eq!(list.len(), 2);
    e.run_nodb(&["backup", "delete", s(&dir), "--id", &id])
        .status(4);
    e.run_nodb(&["backup", "list", s(&e.path("nowhere"))])
        .status(4);
}

#[test]
fn tampered_backup_file_fails_verify_with_exit_2_naming_it() {
    let e = Env::with_kms();
    e.run(&["load", "--count", "2000", "--value-size", "50"])
        .ok();
    let dir = e.path("backups");
    e.run(&["backup", "create", s(&dir)]).ok();
    let table = std::fs::read_dir(dir.join("tables"))
        .expect("tables dir")
        .map(|d| d.expect("entry").path())
        .find(|p| p.extension().is_some_and(|x| x == "sst"))
        .expect("a backed-up table");
    // Backups hard-link the live tables: replace the file rather than writing through the
    // link, so only the backup's copy changes.
    let mut bytes = std::fs::read(&table).expect("read");
    let mid = bytes.len() / 3;
    bytes[mid] ^= 0x20;
    std::fs::remove_file(&table).expect("unlink");
    std::fs::write(&table, &bytes).expect("write");

    let name = table
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let r = e.run_nodb(&["backup", "verify", s(&dir)]).status(2);
    assert!(
        r.out()
            .lines()
            .any(|l| l.starts_with("FAILED") && l.contains(&name)),
        "no failure names {name}: {}",
        r.out()
    );
    assert!(r.stderr.starts_with("sealdb: error: "), "{}", r.stderr);
    let v = e
        .run_nodb(&["backup", "verify", s(&dir), "--json"])
        .status(2)
        .json();
    assert!(
        v.iter()
            .any(|o| o["file"].as_str().is_some_and(|f| f.contains(&name)))
    );
    // The live database was not touched.
    e.run(&["verify"]).ok();
}
