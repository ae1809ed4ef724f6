//! The local KMS audit log (`audit.log`, one JSON `AuditEntry` per line): the parser
//! `LocalKms::audit` uses, over raw bytes (every entry it returns must serialize to a single
//! line, or the log's line framing could be forged). In structure-aware mode (first byte
//! 0xA5) it writes input-chosen entries the way the KMS appends them, tears the last line of
//! the first session at an input-chosen point (a crash mid-append), appends a second session
//! (which starts on a fresh line, as `append_audit` does) and checks that exactly the entries
//! written, less the torn one, are read back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealdb_crypto::fuzz_entry::parse_audit_log;
use sealdb_crypto::AuditEntry;
use sealdb_fuzz::{Input, MODE_STRUCTURED};

fuzz_target!(|data: &[u8]| {
    if let Some((&MODE_STRUCTURED, rest)) = data.split_first() {
        structured(rest);
        return;
    }
    for entry in parse_audit_log(data) {
        let line = serde_json::to_string(&entry).expect("serialize");
        assert!(
            !line.contains('\n'),
            "entry serializes over several lines: {line:?}"
        );
    }
});

fn text(inp: &mut Input<'_>) -> String {
    let n = usize::from(inp.u8() % 24);
    String::from_utf8_lossy(inp.bytes(n)).into_owned()
}

fn entry(inp: &mut Input<'_>) -> AuditEntry {
    let time = inp.u64();
    let key = text(inp);
    let operation = text(inp);
    let database_id = if inp.u8() & 1 == 1 {
        Some(text(inp))
    } else {
        None
    };
    let outcome = text(inp);
    AuditEntry {
        time,
        key,
        operation,
        database_id,
        outcome,
    }
}

/// Appends `entries` as `append_audit` in crates/crypto/src/kms/audit.rs does.
fn append(log: &mut Vec<u8>, entries: &[AuditEntry]) {
    if log.last().is_some_and(|b| *b != b'\n') {
        log.push(b'\n');
    }
    for e in entries {
        log.extend_from_slice(serde_json::to_string(e).expect("serialize").as_bytes());
        log.push(b'\n');
    }
}

fn structured(data: &[u8]) {
    let mut inp = Input::new(data);
    let first = usize::from(inp.u8() % 5);
    let second = usize::from(inp.u8() % 4);
    let cut = inp.u16();
    let first: Vec<AuditEntry> = (0..first).map(|_| entry(&mut inp)).collect();
    let second: Vec<AuditEntry> = (0..second).map(|_| entry(&mut inp)).collect();

    let mut log = Vec::new();
    append(&mut log, &first);
    let mut want = first.clone();
    // Tear the first session's last line (keep at least nothing of it, at most all but its
    // newline): that entry was never durably audited.
    if let Some(last) = first.last() {
        let line_len = serde_json::to_string(last).expect("serialize").len();
        let keep = usize::from(cut) % (line_len + 1);
        log.truncate(log.len() - 1 - line_len + keep);
        if keep < line_len {
            want.pop();
        }
    }
    append(&mut log, &second);
    want.extend(second);
    assert_eq!(
        parse_audit_log(&log),
        want,
        "audit log read back differently"
    );
}
