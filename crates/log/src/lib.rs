//! sealdb-log: the chained-segment log that the WAL and the change stream are built on.
//!
//! A log is a directory of numbered segments, each a sealed file (one artifact kind per log,
//! so a segment of one log never authenticates as another's). Every block of a segment is one
//! *frame*, its first byte the frame code ([`FRAME_START`], [`FRAME_PAYLOAD`], [`FRAME_END`]):
//!
//! - the **start frame** ([`Link`] and whatever the log adds after it) names the segment, its
//!   predecessor, where the predecessor validly ended and whether it was finished;
//! - **payload frames** carry what the log stores (commit groups, change records);
//! - the **end frame**, carrying the sealed file's final flag, finishes a rolled-over segment.
//!
//! This crate owns what both logs share, once: segment naming ([`ChainConfig`]), the start
//! frame's link, recovery's scan rules ([`scan`]: a torn tail only at the end of the last
//! segment, a last segment without a durable start frame, superseded segments, a missing
//! segment in the middle or at the front, a segment cut short of what its successor
//! recorded), the creation of segments (durably, or ahead of need in the background:
//! [`SpareSlot`]) and the retirement of a prefix of the chain. What differs between the logs
//! — the file suffix and artifact kind, what a start frame adds, what payload and end frames
//! hold, when to sync — stays with them. Layout: `docs/format.md`; rules:
//! `docs/recovery.md`.

mod frame;
pub mod scan;
mod segment;

pub use frame::{FRAME_END, FRAME_PAYLOAD, FRAME_START, LINK_LEN, Link};
pub use scan::{
    Chain, ChainRules, FrameVisitor, Scanned, StartDecoder, TornTail, Walked, scan_chain,
    walk_segment,
};
pub use segment::{
    BackgroundSyncer, Spare, SpareSlot, StartFailed, create_segment, remove_oldest_first,
    retire_prefix, start_next,
};

use sealdb_crypto::{ArtifactKind, CipherId, Expected, Keyring};
use std::path::{Path, PathBuf};

/// Errors of the chained log. The WAL and the stream turn them into their own error types.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A sealing, key or integrity error from the crypto layer (names the file and block).
    #[error(transparent)]
    Crypto(#[from] sealdb_crypto::Error),
    /// A frame authenticated but does not fit the chain.
    #[error("malformed log segment: {}", malformed_detail(file, *offset, what))]
    Malformed {
        /// The segment file.
        file: String,
        /// The byte offset of the offending block, when one block is at fault.
        offset: Option<u64>,
        /// What is wrong.
        what: String,
    },
    /// A segment the chain needs is missing, or segments do not link up.
    #[error("segment chain broken: {0}")]
    MissingSegment(String),
    /// An I/O error.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// The chained log's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn malformed_detail(file: &str, offset: Option<u64>, what: &str) -> String {
    match offset {
        Some(o) => format!("{file}: block at offset {o}: {what}"),
        None => format!("{file}: {what}"),
    }
}

impl Error {
    /// A [`Error::Malformed`] naming `path` and, when known, the block's offset.
    pub fn malformed(path: &Path, offset: Option<u64>, what: impl std::fmt::Display) -> Self {
        Self::Malformed {
            file: path.display().to_string(),
            offset,
            what: what.to_string(),
        }
    }

    /// An [`Error::Io`] on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            source,
        }
    }

    /// Turns this error into a log's own error type, which has a variant for each kind (the
    /// WAL's and the stream's: `Crypto`, `MissingSegment`, `Io`, and `Malformed`, which is
    /// given what is wrong, the segment file and the block's offset).
    pub fn convert<E>(
        self,
        crypto: impl FnOnce(sealdb_crypto::Error) -> E,
        missing_segment: impl FnOnce(String) -> E,
        io: impl FnOnce(String, std::io::Error) -> E,
        malformed: impl FnOnce(String, String, Option<u64>) -> E,
    ) -> E {
        match self {
            Self::Crypto(e) => crypto(e),
            Self::MissingSegment(m) => missing_segment(m),
            Self::Io { path, source } => io(path, source),
            Self::Malformed { file, offset, what } => malformed(what, file, offset),
        }
    }

    /// For [`Error::Malformed`]: the file, the block and what is wrong, as one line (the
    /// error's `Display` without its prefix).
    pub fn malformed_message(&self) -> Option<String> {
        match self {
            Self::Malformed { file, offset, what } => Some(malformed_detail(file, *offset, what)),
            _ => None,
        }
    }
}

/// Whether `e` is the crypto layer's report of a block (or header) cut short: the only
/// failure recovery forgives, and only at the very end of the chain.
pub fn is_truncated(e: &sealdb_crypto::Error) -> bool {
    matches!(
        e,
        sealdb_crypto::Error::Integrity {
            reason: sealdb_crypto::IntegrityReason::Truncated,
            ..
        }
    )
}

/// What tells one chained log from another: how its segments are named and sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainConfig {
    /// The sealed-file kind of every segment (part of each block's authenticated data).
    pub kind: ArtifactKind,
    /// The file-name suffix, with its dot (`.wal`, `.stream`).
    pub suffix: &'static str,
    /// The block cipher (the database's data cipher).
    pub cipher: CipherId,
}

impl ChainConfig {
    /// The file name of segment `number`: 16 decimal digits and the suffix.
    pub fn file_name(&self, number: u64) -> String {
        format!("{number:016}{}", self.suffix)
    }

    /// The path of segment `number` in `dir`.
    pub fn path(&self, dir: &Path, number: u64) -> PathBuf {
        dir.join(self.file_name(number))
    }

    /// The segment number a file name denotes, if it is a segment of this log.
    pub fn parse_name(&self, name: &str) -> Option<u64> {
        let digits = name.strip_suffix(self.suffix)?;
        if digits.len() != 16 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    }

    /// What a segment's sealed header must say to be read.
    pub fn expected(&self, keyring: &Keyring) -> Expected {
        Expected {
            kind: self.kind,
            database_id: keyring.database_id(),
            cipher: Some(self.cipher),
        }
    }

    /// The numbers of the segments in `dir`, ascending (none if it does not exist).
    pub fn list(&self, fs: &dyn sealdb_vfs::FileSystem, dir: &Path) -> Result<Vec<u64>> {
        if !fs.exists(dir) {
            return Ok(Vec::new());
        }
        let mut numbers: Vec<u64> = fs
            .list_dir(dir)
            .map_err(|e| Error::io(dir, e))?
            .iter()
            .filter_map(|n| self.parse_name(n))
            .collect();
        numbers.sort_unstable();
        Ok(numbers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip_and_other_logs_names_are_not_segments() {
        let wal = ChainConfig {
            kind: ArtifactKind::Wal,
            suffix: ".wal",
            cipher: CipherId::ChaCha20Poly1305,
        };
        assert_eq!(wal.file_name(42), "0000000000000042.wal");
        assert_eq!(wal.parse_name("0000000000000042.wal"), Some(42));
        assert_eq!(wal.parse_name("42.wal"), None);
        assert_eq!(wal.parse_name("000000000000004x.wal"), None);
        assert_eq!(wal.parse_name("0000000000000042.stream"), None);
    }
}
