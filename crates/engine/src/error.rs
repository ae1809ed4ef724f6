//! The engine's typed error. One enum for the whole public API: callers (and the `sealdb`
//! program's exit codes) match on its variants.

use sealdb_crypto::{IntegrityReason, KeyState};
use std::path::{Path, PathBuf};

/// Everything that can go wrong in sealdb.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A sealed file or block failed verification: altered, truncated, moved, foreign, or
    /// opened with the wrong data key. `block` is the byte offset of the failing block.
    #[error("integrity error in {file}{}: {reason}", block.map(|b| format!(" at block offset {b}")).unwrap_or_default())]
    Integrity {
        /// The file.
        file: String,
        /// Byte offset of the failing block, if one block is at fault.
        block: Option<u64>,
        /// What failed.
        reason: IntegrityReason,
    },
    /// Contents that authenticated (or a set of files) do not make sense: a broken invariant
    /// on disk, such as a missing WAL segment or a manifest naming an absent file. Names the
    /// file and the byte offset when they are known; `source()` is the lower layer's error.
    #[error("corruption{}: {what}", sealdb_crypto::place(file, at))]
    Corruption {
        /// What does not make sense.
        what: String,
        /// The file at fault, if one is known.
        file: Option<PathBuf>,
        /// The byte offset at fault within that file, if known.
        at: Option<u64>,
        /// The lower layer's error this one comes from (a WAL, table, stream, index or crypto
        /// error), if any.
        #[source]
        source: Option<sealdb_crypto::BoxError>,
    },
    /// The master key cannot be used: disabled, pending deletion, destroyed, missing, or its
    /// provider unreachable.
    #[error("master key {key_id} ({provider}) is unavailable: {state}{}", since.map(|s| format!(" since unix time {s}")).unwrap_or_default())]
    KeyUnavailable {
        /// Provider kind.
        provider: String,
        /// Key id within the provider.
        key_id: String,
        /// Its state.
        state: KeyState,
        /// Since when (Unix seconds), when a running database found it unusable.
        since: Option<u64>,
    },
    /// The master key offered did not wrap this database's data keys.
    #[error("wrong master key: {key_id} ({provider}) did not wrap this database's keys")]
    WrongMasterKey {
        /// Provider kind.
        provider: String,
        /// Key id within the provider.
        key_id: String,
    },
    /// A key file is readable by other users.
    #[error("{path} is accessible by other users (mode {mode:o}); run `chmod 600` on it")]
    InsecurePermissions {
        /// The file.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
    /// No keyspace of that name.
    #[error("keyspace {0:?} does not exist")]
    KeyspaceNotFound(String),
    /// A caller passed something unusable.
    #[error("invalid argument{}: {what}", sealdb_crypto::place(file, at))]
    InvalidArgument {
        /// What is unusable, and why.
        what: String,
        /// The file at fault, if one is known.
        file: Option<PathBuf>,
        /// The byte offset at fault within that file, if known.
        at: Option<u64>,
        /// The lower layer's error this one comes from (a WAL, table, stream, index or crypto
        /// error), if any.
        #[source]
        source: Option<sealdb_crypto::BoxError>,
    },
    /// An I/O error on a named path.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// An earlier write or sync failed, so what reached the disk is unknown: the database
    /// refuses writes until it is reopened (which recovers from what is durable).
    ///
    /// `source()` is the failure itself on the error that poisoned the database; the refusals
    /// after it repeat its description only.
    #[error(
        "database is read-only after an earlier failure{}: {what}",
        sealdb_crypto::place(file, at)
    )]
    Poisoned {
        /// The failure that made the database read-only.
        what: String,
        /// The file at fault, if one is known.
        file: Option<PathBuf>,
        /// The byte offset at fault within that file, if known.
        at: Option<u64>,
        /// The lower layer's error this one comes from (a WAL, table, stream, index or crypto
        /// error), if any.
        #[source]
        source: Option<sealdb_crypto::BoxError>,
    },
    /// The data directory is older than the last state this machine saw (rollback
    /// protection): it was replaced by an older copy of itself.
    #[error(
        "rollback detected: the manifest is at {found:?} but this database was last seen at {expected:?}; open with allow_rollback (sealdb --allow-rollback) to accept a deliberate restore"
    )]
    RolledBack {
        /// The manifest position found (manifest number, edit groups).
        found: (u64, u64),
        /// The position recorded outside the data directory.
        expected: (u64, u64),
    },
    /// The end of a chain is missing or cut short: the newest WAL segment, the manifest's
    /// last edits, the KEYS file, a stream's newest segment or its consumer positions are
    /// older than the head record kept outside the data directory says they must be.
    #[error("{artifact} {file} is missing or cut short: {detail}")]
    ChainEnd {
        /// What kind of chain (`WAL`, `KEYS`, `stream`, `consumer positions`).
        artifact: &'static str,
        /// The file (or directory) at fault.
        file: String,
        /// What was expected and what was found.
        detail: String,
    },
    /// The database was opened read-only: writes, flushes, compactions and key changes are
    /// refused, and nothing on disk changes.
    #[error("the database was opened read-only")]
    ReadOnly,
    /// The index exists but its backfill has not finished.
    #[error("index {0} is still being built")]
    IndexNotReady(String),
    /// A stream read asked for records already trimmed by retention.
    #[error("stream records from {requested} are trimmed; the trim horizon is now {horizon}")]
    Trimmed {
        /// The sequence number asked for.
        requested: u64,
        /// The oldest retained one.
        horizon: u64,
    },
    /// A write batch does not fit in one sealed block (64 MiB, less framing): the batch
    /// itself, the batch with the index entries it implies, or the change records it makes
    /// for a stream. Nothing of it was written; split it into smaller batches.
    #[error(
        "{what} of {size} bytes exceeds the {limit}-byte limit of one sealed block; split the batch"
    )]
    BatchTooLarge {
        /// What was too large (the batch, or the batch with its index entries, or its
        /// change records for a named stream).
        what: String,
        /// Its size in bytes (for a batch that grew while being built, the size it reached).
        size: u64,
        /// The most that fits.
        limit: u64,
    },
    /// The database directory is locked by another process or handle.
    #[error("database {0} is in use by another process")]
    Locked(String),
    /// The database directory is open in this very process: a [`Db`](crate::Db) handle, or
    /// a [`Keyspace`](crate::Keyspace) or [`Snapshot`](crate::Snapshot) taken from one, is
    /// still alive (each keeps the database open; see [`Db::close`](crate::Db::close)).
    #[error(
        "database {0} is in use by this process: a Db, Keyspace or Snapshot handle on it is \
         still alive (each keeps the database open until dropped)"
    )]
    InUseHere(String),
    /// The disk (or the quota) is full. Nothing that failed was acknowledged; the database
    /// stays open: reads work, writes are refused (or fail) until space is freed, and
    /// background work retries by itself. No reopen is needed.
    #[error(
        "no space left on the device holding {path}: free some space; the database resumes by itself"
    )]
    NoSpace {
        /// The file or directory that could not be written.
        path: String,
    },
    /// The database's format version (in its manifest) is newer than this build knows: it
    /// was written or upgraded by a newer sealdb. Nothing was read past the version, and
    /// nothing on disk was changed; open it with a build that knows the version.
    #[error(
        "the database is at format version {found}, written by a newer sealdb; this build reads format versions up to {supported}"
    )]
    FormatTooNew {
        /// The version the manifest records.
        found: u32,
        /// The newest version this build knows.
        supported: u32,
    },
}

sealdb_crypto::structured_error_builders!(Error {
    corruption => Corruption,
    invalid_argument => InvalidArgument,
    poisoned => Poisoned,
});

/// The engine's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Self::from_io(path.as_ref().display().to_string(), source)
    }

    /// An I/O error on `path`; a full disk becomes [`Error::NoSpace`].
    pub(crate) fn from_io(path: String, source: std::io::Error) -> Self {
        if sealdb_vfs::is_no_space(&source) {
            Self::NoSpace { path }
        } else {
            Self::Io { path, source }
        }
    }

    /// Whether the disk was full ([`Error::NoSpace`]).
    pub fn is_no_space(&self) -> bool {
        matches!(self, Self::NoSpace { .. })
    }

    /// Whether this is an integrity failure of on-disk data: a file that failed
    /// authentication, contents that make no sense, a chain whose end is missing or cut, or a
    /// data directory rolled back to an older copy of itself (every file genuine, the whole
    /// stale).
    pub fn is_integrity(&self) -> bool {
        matches!(
            self,
            Self::Integrity { .. }
                | Self::Corruption { .. }
                | Self::ChainEnd { .. }
                | Self::RolledBack { .. }
        )
    }

    /// The file and the byte offset within it that the error names, when it names them:
    /// structured errors (corruption, invalid argument, poisoned), integrity failures (the
    /// failing block), I/O errors, a full disk and a cut chain end.
    pub fn location(&self) -> (Option<&Path>, Option<u64>) {
        match self {
            Self::Corruption { file, at, .. }
            | Self::InvalidArgument { file, at, .. }
            | Self::Poisoned { file, at, .. } => (file.as_deref(), *at),
            Self::Integrity { file, block, .. } => (Some(Path::new(file)), *block),
            Self::Io { path, .. } | Self::NoSpace { path } => (Some(Path::new(path)), None),
            Self::ChainEnd { file, .. } => (Some(Path::new(file)), None),
            _ => (None, None),
        }
    }

    /// Whether the master key could not be used (exit code 3 of the `sealdb` program).
    pub fn is_key_unavailable(&self) -> bool {
        matches!(
            self,
            Self::KeyUnavailable { .. }
                | Self::WrongMasterKey { .. }
                | Self::InsecurePermissions { .. }
        )
    }
}

impl From<sealdb_crypto::Error> for Error {
    fn from(e: sealdb_crypto::Error) -> Self {
        use sealdb_crypto::Error as C;
        match e {
            C::Integrity {
                file,
                block,
                reason,
            } => Self::Integrity {
                file,
                block,
                reason,
            },
            C::KeyUnavailable {
                provider,
                key_id,
                state,
            } => Self::KeyUnavailable {
                provider,
                key_id,
                state,
                since: None,
            },
            C::WrongMasterKey { provider, key_id } => Self::WrongMasterKey { provider, key_id },
            C::InsecurePermissions { path, mode } => Self::InsecurePermissions { path, mode },
            C::Io { path, source } => Self::from_io(path.display().to_string(), source),
            // The same kind of error one layer up: its description, place and cause carry over.
            C::InvalidArgument {
                what,
                file,
                at,
                source,
            } => Self::InvalidArgument {
                what,
                file,
                at,
                source,
            },
            e @ C::UnknownDataKeyVersion(_) => Self::corruption(e.to_string()).caused_by(e),
            other => Self::corruption(other.to_string()).caused_by(other),
        }
    }
}

impl From<sealdb_wal::Error> for Error {
    fn from(e: sealdb_wal::Error) -> Self {
        use sealdb_wal::Error as W;
        match e {
            W::Crypto(c) => c.into(),
            W::Malformed {
                ref what,
                ref file,
                at,
                ..
            } => lower_corruption(format!("WAL: {what}"), file.clone(), at, e),
            W::MissingSegment(ref s) => Self::corruption(format!("WAL: {s}")).caused_by(e),
            W::Io { path, source } => Self::from_io(path, source),
            W::InvalidArgument {
                what,
                file,
                at,
                source,
            } => Self::InvalidArgument {
                what,
                file,
                at,
                source,
            },
            W::BatchTooLarge { size, limit } => Self::BatchTooLarge {
                what: "write batch".into(),
                size,
                limit,
            },
            W::Poisoned {
                what,
                file,
                at,
                source,
            } => Self::Poisoned {
                what,
                file,
                at,
                source,
            },
            W::ReadOnly => Self::ReadOnly,
            other => Self::corruption(other.to_string()).caused_by(other),
        }
    }
}

impl From<sealdb_sstable::Error> for Error {
    fn from(e: sealdb_sstable::Error) -> Self {
        use sealdb_sstable::Error as T;
        match e {
            T::Crypto(c) => c.into(),
            T::Corruption {
                ref file,
                block,
                ref reason,
            } => lower_corruption(
                format!("table: {reason}"),
                Some(PathBuf::from(file)),
                block,
                e,
            ),
            T::Io { path, source } => Self::from_io(path, source),
            T::InvalidArgument {
                what,
                file,
                at,
                source,
            } => Self::InvalidArgument {
                what,
                file,
                at,
                source,
            },
            other => Self::corruption(other.to_string()).caused_by(other),
        }
    }
}

impl From<sealdb_stream::Error> for Error {
    fn from(e: sealdb_stream::Error) -> Self {
        use sealdb_stream::Error as S;
        match e {
            S::Crypto(c) => c.into(),
            S::Trimmed { requested, horizon } => Self::Trimmed { requested, horizon },
            S::Io { path, source } => Self::from_io(path, source),
            S::InvalidArgument {
                what,
                file,
                at,
                source,
            } => Self::InvalidArgument {
                what,
                file,
                at,
                source,
            },
            S::MissingFile { file, detail } => Self::ChainEnd {
                artifact: if file.ends_with(sealdb_stream::POSITIONS_FILE) {
                    "consumer positions"
                } else {
                    "stream"
                },
                file,
                detail,
            },
            // The stream refusing writes after an I/O failure is the engine's poison, not
            // damage to data (exit 4, not 2).
            S::Poisoned {
                what,
                file,
                at,
                source,
            } => Self::Poisoned {
                what,
                file,
                at,
                source,
            },
            S::Malformed {
                ref what,
                ref file,
                at,
                ..
            } => lower_corruption(format!("change stream: {what}"), file.clone(), at, e),
            other => Self::corruption(other.to_string()).caused_by(other),
        }
    }
}

/// A [`Error::Corruption`] for a lower layer's decode failure: its description, file and
/// offset shown at this level, the lower error itself kept as the `source()`.
fn lower_corruption(
    what: String,
    file: Option<PathBuf>,
    at: Option<u64>,
    lower: impl Into<sealdb_crypto::BoxError>,
) -> Error {
    Error::Corruption {
        what,
        file,
        at,
        source: Some(lower.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    /// The lower error `e` keeps as its source, as type `T`.
    fn lower<T: std::error::Error + 'static>(e: &Error) -> &T {
        e.source()
            .and_then(|s| s.downcast_ref::<T>())
            .unwrap_or_else(|| panic!("source of {e:?} is not a {}", std::any::type_name::<T>()))
    }

    #[test]
    fn a_wal_decode_error_becomes_corruption_naming_segment_and_offset() {
        let wal = sealdb_wal::Error::malformed("bad batch frame".into())
            .in_file("/db/wal/0000000000000007.wal")
            .at(4160);
        let e = Error::from(wal);
        assert!(e.is_integrity());
        assert_eq!(
            e.to_string(),
            "corruption in /db/wal/0000000000000007.wal at offset 4160: WAL: bad batch frame"
        );
        assert_eq!(
            e.location(),
            (Some(Path::new("/db/wal/0000000000000007.wal")), Some(4160))
        );
        assert!(matches!(
            lower::<sealdb_wal::Error>(&e),
            sealdb_wal::Error::Malformed { at: Some(4160), .. }
        ));
    }

    #[test]
    fn a_table_decode_error_becomes_corruption_naming_table_and_block() {
        let table = sealdb_sstable::Error::Corruption {
            file: "/db/000012.sst".into(),
            block: Some(8192),
            reason: "bad restart array".into(),
        };
        let e = Error::from(table);
        assert!(e.is_integrity());
        let text = e.to_string();
        assert!(
            text.contains("/db/000012.sst at offset 8192") && text.contains("bad restart array"),
            "{text}"
        );
        assert_eq!(
            lower::<sealdb_sstable::Error>(&e).block_offset(),
            Some(8192)
        );
    }

    #[test]
    fn a_stream_decode_error_becomes_corruption_naming_segment_and_offset() {
        let stream = sealdb_stream::Error::malformed("records frame holds no records".into())
            .in_file("/db/streams/1/0000000000000001.seg")
            .at(64);
        let e = Error::from(stream);
        assert!(e.is_integrity());
        assert_eq!(e.location().1, Some(64));
        assert!(matches!(
            lower::<sealdb_stream::Error>(&e),
            sealdb_stream::Error::Malformed { .. }
        ));
    }

    #[test]
    fn an_unknown_data_key_version_keeps_the_crypto_error_as_source() {
        let e = Error::from(sealdb_crypto::Error::UnknownDataKeyVersion(9));
        assert!(matches!(e, Error::Corruption { .. }));
        assert!(e.to_string().contains("data-key version 9"), "{e}");
        assert!(matches!(
            lower::<sealdb_crypto::Error>(&e),
            sealdb_crypto::Error::UnknownDataKeyVersion(9)
        ));
    }

    #[test]
    fn invalid_arguments_carry_their_place_and_cause_up_unchanged() {
        let crypto = sealdb_crypto::Error::invalid_argument("name too long".into())
            .in_file("/db/KEYS")
            .caused_by(std::io::Error::other("cause"));
        let e = Error::from(crypto);
        assert!(!e.is_integrity());
        assert_eq!(e.to_string(), "invalid argument in /db/KEYS: name too long");
        assert_eq!(lower::<std::io::Error>(&e).to_string(), "cause");
    }

    #[test]
    fn a_poisoned_stream_is_a_poisoned_database_not_corruption() {
        let stream = sealdb_stream::Error::poisoned("segment write failed".into())
            .in_file("/db/streams/1/0000000000000002.seg")
            .caused_by(std::io::Error::other("disk full"));
        let e = Error::from(stream);
        assert!(!e.is_integrity(), "{e:?}");
        assert!(matches!(e, Error::Poisoned { .. }), "{e:?}");
        assert_eq!(
            e.location().0,
            Some(Path::new("/db/streams/1/0000000000000002.seg"))
        );
        assert_eq!(lower::<std::io::Error>(&e).to_string(), "disk full");
    }
}
