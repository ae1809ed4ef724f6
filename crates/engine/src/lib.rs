//! sealdb: an embedded key-value storage engine whose every durable byte is sealed.
//!
//! A log-structured merge tree in which the write-ahead log, the tables, the manifest and the
//! KEYS file are encrypted and authenticated block by block with ChaCha20-Poly1305, under data
//! keys wrapped by a master key that never enters the data directory: an engine-owned key by
//! default, or a key in a key-management service. Reads decrypt transparently.
//!
//! Start with [`Db::open`]; see the crate's `examples/` and the repository's `docs/`
//! (docs/architecture.md maps the modules of this crate).

mod backup;
mod codec;
mod commit;
mod db;
mod error;
mod events;
// Entry points for the fuzz targets into decoders that are otherwise private: compiled only
// for them (the `fuzzing` feature), so they are no part of the library's API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzz_entry;
mod head;
mod index;
mod inuse;
mod iter;
mod jobs;
mod keylife;
mod keys;
mod keyspaces;
mod lifestats;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod manifest;
#[cfg(not(feature = "fuzzing"))]
mod manifest;
mod open;
mod options;
mod pitr;
mod read;
mod state;
mod stats;
mod streams;
mod tables;
mod version;
mod versions;

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub use backup::decode_catalog_for_fuzz;
pub use backup::{
    BackupInfo, BackupVerifyReport, RestoreInfo, RestorePoint, WalSegmentInfo, delete_backup,
    list_backups, read_backup, restore_backup, verify_backup,
};
pub use db::{Db, Keyspace, Snapshot, WriteBatch};
pub use error::{Error, Result};
pub use head::HeadOrigin;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub use index::decode_index_entry_for_fuzz;
pub use index::{IndexHit, IndexInfo, IndexQuery, QueryPage};
pub use iter::DbIter;
pub use jobs::verify::VerifyReport;
pub use keylife::{DataKeyInfo, KeyStatus, ReencryptReport};
pub use lifestats::CumulativeStats;
pub use manifest::{EditField, FormatVersion, ManifestEdit, read_manifest_edits};
pub use options::{Compression, KeyEventHook, MasterKey, NamedExtractor, Options, WriteOptions};
pub use sealdb_crypto::{CipherId, DatabaseId, KeyDescriptor, KeyEvent, KeyProvider, KeyState};
pub use sealdb_index::{
    ContinuationToken, ExtractFn, Extractor, IndexDefinition, IndexKind, IndexValue, PartitionSpec,
    Projection, Query,
};
pub use sealdb_wal::MAX_BATCH_LEN;
pub use stats::{LevelStats, OpenStats, Stats};
pub use streams::{StreamBatch, StreamEvent, StreamInfo, StreamRecord, StreamStart, StreamView};

/// The repository's README, whose "Using it" example runs as a doctest (so it cannot drift
/// from the API).
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;

/// Wall-clock Unix milliseconds (0 before 1970).
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
