//! End-to-end tests of `backup`, `restore`, `verify` and rollback handling of the `sealdb`
//! binary: each command is its own process, as an operator runs them.
//!
//! Every test has its own database, keystore (`--keystore`) and local KMS (`--kms`).

mod common;

use common::{Env, Run, copy_dir, s};
use std::path::PathBuf;

/// Runs `sealdb --db <db> --pitr-window 1h ARGS`: a session that archives the WAL segments its
/// flushes retire, so that backups carry them (the window is not remembered: every writing
/// session needs it).
fn run_pitr(e: &Env, args: &[&str]) -> Run {
    e.run(&[&["--pitr-window", "1h"], args].concat())
}

/// A database under point-in-time recovery holding `a = 1` (sequence 1, synced), and a
/// backup directory `B` holding one backup of it.
fn pitr_db_with_a_first_backup() -> (Env, PathBuf) {
    let e = Env::with_kms();
    let dir = e.path("B");
    run_pitr(&e, &["put", "a", "1", "--sync"]).ok();
    run_pitr(&e, &["backup", "create", s(&dir)]).ok();
    (e, dir)
}

#[test]
fn restoring_into_the_original_path_is_not_refused_as_a_rollback() {
    let e = Env::with_kms();
    e.run(&["put", "a", "1", "--sync"]).ok();
    let dir = e.path("backups");
    e.run(&["backup", "create", s(&dir)]).ok();
    // Later writes and flushes move this path's rollback counter past the backup.
    e.run(&["load", "--count", "300", "--value-size", "10"])
        .ok();
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
    let e = Env::with_kms();
    e.run(&["put", "a", "1", "--sync"]).ok();
    let old = e.path("old");
    copy_dir(&e.db, &old);
    e.run(&["load", "--count", "300", "--value-size", "10"])
        .ok();
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

#[test]
fn backup_verify_accepts_wal_segments_closed_by_recovery() {
    // Each command is a process: every session's WAL segment is closed by the next session's
    // recovery, without an end frame. Those segments are healthy and so is the backup.
    let (e, dir) = pitr_db_with_a_first_backup();
    run_pitr(&e, &["put", "b", "2", "--sync"]).ok();
    let v = run_pitr(&e, &["backup", "create", s(&dir), "--json"])
        .ok()
        .json();
    assert!(v[0]["wal_segments"].as_u64() >= Some(2), "{v:?}");
    let r = e.run_nodb(&["backup", "verify", s(&dir)]).ok();
    assert!(r.out().contains("every block authenticated"), "{}", r.out());
    // The log those backups carry restores to the last write.
    let dest = e.path("restored");
    e.run_nodb(&["restore", s(&dir), s(&dest), "--to-seq", "2"])
        .ok();
    assert_eq!(e.run_on(&dest, &["get", "b"]).ok().out(), "2\n");
}

#[test]
fn point_in_time_restore_from_a_cut_segment_exits_2() {
    let (e, dir) = pitr_db_with_a_first_backup();
    for k in ["b", "c", "d"] {
        run_pitr(&e, &["put", k, "x", "--sync"]).ok();
    }
    run_pitr(&e, &["backup", "create", s(&dir)]).ok();
    // Cut the newest segment holding a write (the one that holds "d", sequence 4): the
    // largest file is the session that wrote it.
    let list = e
        .run_nodb(&["backup", "list", s(&dir), "--json"])
        .ok()
        .json();
    assert_eq!(list[2]["latest_restorable"]["sequence"], 4, "{list:?}");
    let mut newest: Option<(std::time::SystemTime, PathBuf)> = None;
    for entry in std::fs::read_dir(dir.join("wal")).expect("wal dir") {
        let p = entry.expect("entry").path();
        let bytes = std::fs::read(&p).expect("read");
        // Only segments holding a batch frame are worth cutting (start frames are small).
        if bytes.len() > 130 {
            let m = std::fs::metadata(&p)
                .expect("meta")
                .modified()
                .expect("mtime");
            if newest.as_ref().is_none_or(|(t, _)| m > *t) {
                newest = Some((m, p));
            }
        }
    }
    let (_, seg) = newest.expect("a segment with writes");
    let bytes = std::fs::read(&seg).expect("read");
    std::fs::remove_file(&seg).expect("unlink");
    std::fs::write(&seg, &bytes[..bytes.len() - 5]).expect("cut");
    let dest = e.path("restored");
    let r = e
        .run_nodb(&["restore", s(&dir), s(&dest), "--to-seq", "4"])
        .status(2);
    assert!(r.stderr.contains("integrity"), "{}", r.stderr);
    assert!(!dest.exists());
    e.run_nodb(&["backup", "verify", s(&dir)]).status(2);
}

#[test]
fn verify_reports_how_many_files_of_each_kind_it_checked() {
    let e = Env::with_kms();
    run_pitr(&e, &["load", "--count", "500", "--value-size", "20"]).ok();
    e.run(&["stream", "enable", "--view", "keys"]).ok();
    run_pitr(&e, &["put", "a", "1", "--sync"]).ok();
    run_pitr(&e, &["flush"]).ok();
    let v = run_pitr(&e, &["verify", "--json"]).ok().json();
    let summary = v.last().expect("summary");
    let checked = &summary["checked"];
    for kind in [
        "tables",
        "wal_segments",
        "archived_wal_segments",
        "stream_segments",
        "manifest_files",
        "keys_files",
    ] {
        assert!(checked[kind].as_u64() >= Some(1), "{kind}: {summary}");
    }
    assert!(checked["consumer_files"].is_u64(), "{summary}");
    let text = e.run(&["verify"]).ok().out();
    for kind in [
        "table",
        "WAL segment",
        "archived WAL segment",
        "stream segment",
        "KEYS file",
    ] {
        assert!(text.contains(kind), "{kind}: {text}");
    }
}

#[test]
fn deleting_the_newest_backup_catalogue_exits_2_naming_it() {
    let e = Env::with_kms();
    let dir = e.path("B");
    e.run(&["put", "a", "1"]).ok();
    e.run(&["backup", "create", s(&dir)]).ok();
    e.run(&["put", "b", "2"]).ok();
    let v = e.run(&["backup", "create", s(&dir), "--json"]).ok().json();
    let newest = dir.join(format!("{}.catalog", v[0]["id"].as_str().expect("id")));
    std::fs::remove_file(&newest).expect("delete the newest catalogue");
    let name = newest
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    for args in [
        vec!["backup", "list", s(&dir)],
        vec!["backup", "verify", s(&dir)],
        vec!["restore", s(&dir), s(&e.path("restored"))],
    ] {
        let r = e.run_nodb(&args).status(2);
        assert!(r.stderr.contains(&name), "{args:?}: {}", r.stderr);
    }
    let r = e.run(&["backup", "create", s(&dir)]).status(2);
    assert!(r.stderr.contains(&name), "{}", r.stderr);
    assert!(!e.path("restored").exists());
}
