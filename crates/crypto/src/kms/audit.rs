//! `audit.log`: one JSON [`AuditEntry`] per line, append-only, never holding key material.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

pub(super) const AUDIT_FILE: &str = "audit.log";

/// One line of `audit.log`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When (Unix seconds).
    pub time: u64,
    /// The key concerned (as requested, for refusals of unknown or invalid names; cut to
    /// [`MAX_NAME_LEN`](super::MAX_NAME_LEN) characters).
    pub key: String,
    /// `create`, `rotate`, `disable`, `enable`, `schedule-deletion`, `cancel-deletion`,
    /// `destroy`, `scheduled-destroy` (a deletion date passed), `wrap`, `unwrap` or `check`.
    pub operation: String,
    /// The database on whose behalf (hex), for `wrap` and `unwrap`.
    pub database_id: Option<String>,
    /// `ok`, or `refused: <reason>`. An operation recorded as `ok` whose state change then
    /// could not be saved gets a second entry `refused: state not saved: <error>`.
    pub outcome: String,
}

/// The entries of an audit log's bytes, oldest first; only those about key `name` if given.
/// Lines that do not parse (a write torn by a crash) are skipped.
pub(crate) fn parse_audit_log(bytes: &[u8], name: Option<&str>) -> Vec<AuditEntry> {
    bytes
        .split(|&b| b == b'\n')
        .filter_map(|line| serde_json::from_slice::<AuditEntry>(line).ok())
        .filter(|entry| name.is_none_or(|n| entry.key == n))
        .collect()
}

pub(super) fn open_audit_log(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(path, e))
}

/// Appends `entries` to the audit log at `path` and syncs it.
pub(super) fn append_audit(path: &Path, entries: &[AuditEntry]) -> Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let io_err = |e| Error::io(path, e);
    let file = open_audit_log(path)?;
    let len = file.metadata().map_err(io_err)?.len();
    let mut text = String::new();
    if len > 0 {
        // A crash may have torn the last line; start on a fresh line so that only the torn
        // one is lost, not ours too.
        let mut last = [0u8; 1];
        file.read_exact_at(&mut last, len - 1).map_err(io_err)?;
        if last != *b"\n" {
            text.push('\n');
        }
    }
    for entry in entries {
        let line =
            serde_json::to_string(entry).map_err(|e| Error::io(path, io::Error::other(e)))?;
        text.push_str(&line);
        text.push('\n');
    }
    (&file).write_all(text.as_bytes()).map_err(io_err)?;
    file.sync_data().map_err(io_err)
}
