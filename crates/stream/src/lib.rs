//! sealdb-stream: the change stream (modelled on DynamoDB Streams).
//!
//! A stream is a directory of numbered segments, each a sealed file of kind `stream`, kept
//! apart from the WAL so that its retention (by age and size) is independent of flushes. The
//! engine computes [`ChangeRecord`]s in commit order and appends each commit group with
//! [`StreamLog::append`]; this crate stores, trims and serves them. Every block of a segment
//! is one *frame*: a start frame (naming the segment, how its predecessor ended and the
//! stream's last sequence number so far), records frames (one commit group each), and, when
//! the segment is rolled over, an end frame carrying the final flag. Layout:
//! `docs/format.md` ("Change streams").
//!
//! What this crate guarantees:
//! - A commit group is in exactly one sealed block, so it is recovered wholly or not at all
//!   (a block may hold several groups deferred with [`StreamLog::append_deferred`]).
//! - A record is durable once [`StreamLog::append`] returns with `sync = true` (and every
//!   record appended before it with it).
//! - Recovery never appends to a recovered segment: it starts a new segment (new file id),
//!   whose start frame records where the recovered one validly ended, so no (key, nonce) pair
//!   is ever used twice. Only a partial block at the very end of the last segment (a torn
//!   write) is dropped silently, and it is reported in [`StreamRecovery`].
//! - [`StreamLog::open`] with [`RecoveryPlan::truncating`] also cuts every record above a
//!   sequence number (the WAL's recovered last one) the same way, whole commit groups only,
//!   so records of commit groups the WAL lost in a crash are never served; the cut takes
//!   effect atomically.
//! - Nothing but the sealed-file header is ever written in clear (except in the explicit
//!   `none` cipher mode): not keys, not images, not keyspace names, not sequence numbers.
//! - Trimming removes only whole closed segments, oldest first; a read below the trim
//!   horizon fails with [`Error::Trimmed`] rather than silently skipping records.
//! - Every segment's start frame and the `CONSUMERS` file name their stream ([`StreamId`]):
//!   files moved in from another stream's directory are refused ([`Error::WrongStream`]).
//! - The ends of the chain can be pinned outside the directory: [`StreamLog::anchor`] and the
//!   roll observer hand out [`StreamAnchor`]s, opening with one refuses deleted newest
//!   segments or records cut off the end, and [`ConsumerPositions::generation`] pins
//!   `CONSUMERS` the same way ([`Error::MissingFile`] names the missing file).
//!
//! Readers see a record as soon as it is appended (or deferred), before it is synced; a crash
//! may take unsynced or deferred records away again (as it takes them from the WAL).
//!
//! [`ConsumerPositions`] keeps named, durable consumer positions in a small sealed file.
//!
//! The chain itself — segment naming, the start frame's link, recovery's rules (torn tail,
//! superseded segments, recorded ends), segment creation and oldest-first removal — is
//! sealdb-log's, shared with the WAL; this crate adds the stream's start-frame fields, the
//! records and end frames, the index, reads, retention, truncation and the anchor check.

mod frame;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzz_entry;
mod log;
mod positions;
mod record;

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub use frame::decode_records_for_fuzz;
pub use frame::{MAX_FRAME_LEN, RECORDS_FRAME_HEADER_LEN};
pub use log::{
    DEFER_BLOCK_LEN, ReadBatch, RecoveryPlan, RollObserver, SEGMENT_SUFFIX, StartAt, StreamAnchor,
    StreamLog, StreamOptions, StreamRecovery, TrimReport, segment_file_name,
};
pub use positions::{ConsumerPositions, MAX_CONSUMER_NAME_LEN, POSITIONS_FILE};
pub use record::{
    ChangeRecord, Event, MAX_IMAGE_LEN, MAX_KEY_LEN, MAX_KEYSPACE_LEN, StreamId, ViewType,
    encode_record, record_len,
};
/// The torn tail cut off the last segment during recovery (the chained log's).
pub use sealdb_log::TornTail;

/// Errors of the change stream.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A sealing, key or integrity error from the crypto layer (names the file and block).
    #[error(transparent)]
    Crypto(#[from] sealdb_crypto::Error),
    /// A block authenticated but its contents do not parse or do not fit the stream (the
    /// message names the segment file and the block's byte offset).
    #[error(
        "malformed change stream contents{}: {what}",
        sealdb_crypto::place(file, at)
    )]
    Malformed {
        /// What is wrong.
        what: String,
        /// The segment or `CONSUMERS` file, if known.
        file: Option<std::path::PathBuf>,
        /// The byte offset of the block within it, if known.
        at: Option<u64>,
        /// The lower-level error this comes from, if any.
        #[source]
        source: Option<sealdb_crypto::BoxError>,
    },
    /// A read asked for records that retention has already removed.
    #[error("change stream sequence {requested} has been trimmed; the trim horizon is {horizon}")]
    Trimmed {
        /// The first sequence number the read needed.
        requested: u64,
        /// The lowest sequence number still retained (read from here instead).
        horizon: u64,
    },
    /// An append's sequence numbers do not strictly increase.
    #[error("change record sequence {got} does not follow {last}")]
    OutOfOrder {
        /// The highest sequence number already in the stream (or earlier in the same append).
        last: u64,
        /// The offending sequence number.
        got: u64,
    },
    /// A segment in the middle of the chain is missing, or segments do not link up.
    #[error("change stream segment chain broken: {0}")]
    MissingSegment(String),
    /// A file that authenticated belongs to another stream (or to an earlier incarnation of
    /// this one): it was moved or copied from another stream's directory.
    #[error("{file} belongs to change stream {found}, not to stream {expected}")]
    WrongStream {
        /// The segment or `CONSUMERS` file.
        file: String,
        /// The stream being opened.
        expected: StreamId,
        /// The stream the file names.
        found: StreamId,
    },
    /// The stream's end is short of what the caller's anchor (the engine's head record,
    /// kept outside the data directory) says was durable: the newest segments, records at the
    /// end of the chain, or the `CONSUMERS` file were deleted, cut, or replaced by an older
    /// copy. Names the file that is missing or behind.
    #[error("change stream file {file} is missing or older than its anchor: {detail}")]
    MissingFile {
        /// The missing (or stale) file.
        file: String,
        /// What the anchor required and what was found.
        detail: String,
    },
    /// The stream was opened read-only (a database opened read-only): appends are refused.
    #[error("the change stream was opened read-only")]
    ReadOnly,
    /// An I/O error.
    #[error("change stream I/O error on {path}: {source}")]
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
    /// An earlier write or sync failed; the stream refuses further appends until reopened,
    /// since what reached the disk is unknown. Reads keep working.
    #[error(
        "the change stream is read-only after an earlier I/O failure{}: {what}",
        sealdb_crypto::place(file, at)
    )]
    Poisoned {
        /// What failed.
        what: String,
        /// The file whose write or sync failed, if known.
        file: Option<std::path::PathBuf>,
        /// Where in it, if known.
        at: Option<u64>,
        /// The failure itself (only on the error that poisoned the stream).
        #[source]
        source: Option<sealdb_crypto::BoxError>,
    },
}

sealdb_crypto::structured_error_builders!(Error {
    malformed => Malformed,
    invalid_argument => InvalidArgument,
    poisoned => Poisoned,
});

/// A [`Error::Malformed`] for the file at `path`, naming the byte offset of the block at fault
/// when one is.
pub(crate) fn malformed_in(
    path: &std::path::Path,
    offset: Option<u64>,
    why: impl std::fmt::Display,
) -> Error {
    let e = Error::malformed(why.to_string()).in_file(path);
    match offset {
        Some(o) => e.at(o),
        None => e,
    }
}

impl Error {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

impl From<sealdb_log::Error> for Error {
    /// The chained log's errors, as the stream reports them.
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

/// The change stream's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
