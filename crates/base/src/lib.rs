//! The bottom of sealdb's crate stack: the vocabulary every layer shares, with no sealdb
//! dependency (pebble's `internal/base`).
//!
//! - [`bytes`]: the one byte writer ([`PutBytes`]) and bounds-checked reader ([`Reader`])
//!   behind every on-disk record (WAL batches, tables, manifest, KEYS, KMS state, streams).
//! - [`entry`]: one version of one key ([`Entry`], [`ValueKind`]), as memtables and tables
//!   yield it.

pub mod bytes;
pub mod entry;

pub use bytes::{DecodeError, Problem, PutBytes, Reader, le_u32_at};
pub use entry::{
    Entry, MAX_KEY_LEN, MAX_VALUE_LEN, SeqNo, TooLong, ValueKind, check_entry_lengths,
};
