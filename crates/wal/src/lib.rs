//! sealdb-wal: the write-ahead log.
//!
//! A WAL is a directory of numbered segments, each a sealed file of kind `wal`. Every block of
//! a segment is one *frame*: a start frame (which names the segment and how its predecessor
//! ended), then batch frames (each holding one commit group: one or more write batches with
//! their first sequence numbers), and, when the segment is rolled over, an end frame carrying
//! the final flag. See `docs/format.md` ("WAL") and `docs/recovery.md`.
//!
//! What this crate guarantees:
//! - A batch is in exactly one frame, so it is recovered wholly or not at all.
//! - A frame is durable once [`Wal::append`] returns with `sync = true`.
//! - Recovery never appends to a recovered segment: it starts a new segment (new file id) whose
//!   start frame records where the recovered one validly ended, so no nonce is ever reused.
//! - Only a partial block at the very end of the last segment (a torn write) is dropped
//!   silently; it is reported in [`RecoveryStats`]. Anything else that fails to verify is an
//!   integrity error.
//!
//! Rollover stays cheap on the committing thread: the next segment is created (header, file
//! and directory sync) in the background once the active one is half full, so a rollover
//! only writes the end and start frames and syncs them; retiring obsolete segments does its
//! file I/O without the lock appends take. A segment created ahead but never started (a
//! crash) is a last segment without a start frame, deleted at open.
//!
//! [`GroupCommit`] coalesces concurrent writers into one frame and one `fdatasync`.
//!
//! The chain itself — segment naming, the start frame (a `sealdb_log::Link` alone),
//! recovery's rules, segment creation ahead of need, retirement — is sealdb-log's, shared with
//! the change stream; this crate adds the batch frames, the write path (including a full
//! disk) and group commit.

mod batch;
mod frame;
mod group;
mod log;
mod recovery;

pub use batch::{
    BATCH_HEADER_LEN, BatchBuilder, FRAME_HEADER_LEN, MAX_BATCH_LEN, MAX_FRAME_LEN, MAX_KEY_LEN,
    MAX_VALUE_LEN, Op, RecordIter, RecordRef, frame_len,
};
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub use frame::decode_frame_for_fuzz;
pub use frame::{Frame, FrameBatch, decode_frame};
pub use group::{GATHER_WINDOW, GroupCommit, LeaderFailed, panic_message};
pub use log::{RollObserver, Wal, WalOptions, segment_file_name};
pub use recovery::{RecoveryStats, SegmentSummary, WalRecovery, summarize_segment};
/// The torn tail cut off the last segment during recovery (the chained log's).
pub use sealdb_log::TornTail;

/// Errors of the WAL.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A sealing, key or integrity error from the crypto layer (names the file and block).
    #[error(transparent)]
    Crypto(#[from] sealdb_crypto::Error),
    /// A frame authenticated but its contents do not parse (names the segment and offset when
    /// known).
    #[error("malformed WAL contents{}: {what}", sealdb_crypto::place(file, at))]
    Malformed {
        /// What is wrong.
        what: String,
        /// The segment, if known.
        file: Option<std::path::PathBuf>,
        /// The byte offset of the frame within the segment, if known.
        at: Option<u64>,
        /// The lower-level error this comes from, if any.
        #[source]
        source: Option<sealdb_crypto::BoxError>,
    },
    /// A segment the log needs is missing, or segments are out of order.
    #[error("WAL segment sequence broken: {0}")]
    MissingSegment(String),
    /// An I/O error.
    #[error("WAL I/O error on {path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A caller passed something unusable.
    #[error("invalid argument{}: {what}", sealdb_crypto::place(file, at))]
    InvalidArgument {
        /// What is wrong.
        what: String,
        /// The file concerned, if known.
        file: Option<std::path::PathBuf>,
        /// The byte offset within it, if known.
        at: Option<u64>,
        /// The lower-level error this comes from, if any.
        #[source]
        source: Option<sealdb_crypto::BoxError>,
    },
    /// A batch (or a frame) would be larger than one sealed block can hold. Nothing was
    /// written.
    #[error("write batch of {size} bytes exceeds the {limit}-byte limit of one WAL frame")]
    BatchTooLarge {
        /// The size it would have had.
        size: u64,
        /// The most that fits.
        limit: u64,
    },
    /// An earlier write or sync failed; the log refuses further writes until reopened, since
    /// what reached the disk is unknown.
    #[error(
        "the WAL is read-only after an earlier I/O failure{}: {what}",
        sealdb_crypto::place(file, at)
    )]
    Poisoned {
        /// What failed.
        what: String,
        /// The segment whose write or sync failed, if known.
        file: Option<std::path::PathBuf>,
        /// Where in it, if known.
        at: Option<u64>,
        /// The failure itself (only on the error that poisoned the log).
        #[source]
        source: Option<sealdb_crypto::BoxError>,
    },
    /// The WAL was opened read-only (recovered for reading, never written).
    #[error("the WAL was opened read-only")]
    ReadOnly,
}

impl From<sealdb_log::Error> for Error {
    /// The chained log's errors, as the WAL reports them.
    fn from(e: sealdb_log::Error) -> Self {
        let io = |path, source| Self::Io { path, source };
        let malformed = |what, file: String, at: Option<u64>| {
            let e = Self::malformed(what).in_file(file);
            match at {
                Some(offset) => e.at(offset),
                None => e,
            }
        };
        e.convert(Self::Crypto, Self::MissingSegment, io, malformed)
    }
}

sealdb_crypto::structured_error_builders!(Error {
    malformed => Malformed,
    invalid_argument => InvalidArgument,
    poisoned => Poisoned,
});

/// The WAL's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether the disk was full (`ENOSPC`). A failed append for this reason leaves the log
    /// writable: the next append starts a new segment (see [`Wal::append`]).
    pub fn is_no_space(&self) -> bool {
        let io = match self {
            Self::Io { source, .. } => Some(source),
            Self::Crypto(sealdb_crypto::Error::Io { source, .. }) => Some(source),
            _ => None,
        };
        io.is_some_and(sealdb_vfs::is_no_space)
    }
}
