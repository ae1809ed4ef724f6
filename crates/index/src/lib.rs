//! sealdb-index: secondary indexes as pure functions of a base write.
//!
//! An index is defined by an [`IndexDefinition`]: which base keyspace it covers, whether it is
//! global or local to a partition of the primary key ([`IndexKind`]), how index values are
//! pulled out of an item ([`Extractor`]: a JSON pointer or an application closure) and what the
//! index stores beside each entry ([`Projection`]). The model is DynamoDB's global and local
//! secondary indexes, and indexes are sparse: an item the extractor finds nothing in has no
//! entries.
//!
//! What this crate owns:
//! - the persisted form of a definition ([`IndexDefinition::encode`] / [`IndexDefinition::decode`]),
//!   which the engine keeps in its sealed manifest;
//! - the byte layout of index entry keys ([`entry_key`] / [`decode_entry_key`]): the tuple
//!   (partition, index value, primary key), escaped so that bytewise order of the keys is exactly
//!   the tuple order ([`IndexValue::encode`] is order-preserving across and within types);
//! - maintenance: the entries to delete and put for one base write ([`IndexDefinition::plan`]),
//!   which the engine applies in the same atomic batch as the base write;
//! - queries: the entry-key range that holds exactly the matches of a [`Query`]
//!   ([`query_bounds`]), an exact re-check ([`matches()`]), and resumable pagination
//!   ([`ContinuationToken`]).
//!
//! What it must never do: any I/O, or depend on another sealdb crate (the engine depends on this
//! crate, not the reverse); panic on bytes that came from storage or a user (every decoder here
//! is total and returns a typed [`Error`]).

#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

mod definition;
mod key;
mod persist;
mod query;
mod value;

pub use definition::{
    ExtractFn, Extractor, IndexDefinition, IndexKind, PartitionSpec, Plan, Projection,
};
pub use key::{DecodedEntry, decode_entry_key, entry_key};
pub use persist::{DEFINITION_FORMAT, DEFINITION_VERSION, PersistedDefinition, PersistedExtractor};
pub use query::{ContinuationToken, Query, matches, query_bounds};
pub use value::IndexValue;

/// Longest index name, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// Longest base keyspace name, in bytes (the engine's own limit on keyspace names).
pub const MAX_KEYSPACE_NAME_LEN: usize = 255;

/// Everything that can go wrong in this crate: a definition that is not acceptable, bytes that do
/// not decode, or a custom extractor the application did not supply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The definition breaks a rule (name, pointer syntax, projection, partition spec, or an
    /// extractor that does not fit the persisted definition); the message says which.
    #[error("invalid index definition: {0}")]
    InvalidDefinition(String),
    /// Stored or user-supplied bytes (an entry key, an encoded value, a persisted definition, a
    /// continuation token) do not decode; the message says what and where.
    /// `at` is the byte offset of the fault within those bytes when it is known. (This crate
    /// reads no files: the engine names the file when it reports the error.)
    #[error("malformed {what}{}", at.map(|a| format!(" at byte {a}")).unwrap_or_default())]
    Malformed {
        /// What is wrong, starting with what was being decoded.
        what: String,
        /// The byte offset of the fault within the decoded bytes, if known.
        at: Option<u64>,
    },
    /// The persisted definition of the named index uses a custom extractor, and none was supplied:
    /// the application must register the closure again every time it opens the database.
    #[error("index {0:?} uses a custom extractor and none was registered")]
    MissingExtractor(String),
    /// A persisted definition written by a newer format version than this build reads.
    #[error("index definition format version {0} is not supported (this build reads version 1)")]
    UnsupportedVersion(u64),
}

impl Error {
    /// A [`Malformed`](Self::Malformed) error saying `what` is wrong.
    pub fn malformed(what: String) -> Self {
        Self::Malformed { what, at: None }
    }

    /// Names the byte offset of the fault, for [`Malformed`](Self::Malformed) errors.
    pub fn at(mut self, offset: u64) -> Self {
        if let Self::Malformed { at, .. } = &mut self {
            *at = Some(offset);
        }
        self
    }
}

/// The result type of this crate.
pub type Result<T> = std::result::Result<T, Error>;
