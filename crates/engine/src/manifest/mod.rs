//! The manifest: the durable record of the database's shape — keyspaces, live table files per
//! level, the oldest WAL segment still needed, and counters.
//!
//! `MANIFEST-<n>` is a sealed file (kind `manifest`) whose blocks are edit groups, each
//! appended and synced before the change it records takes effect. `CURRENT` is a small sealed
//! file (kind `meta`) naming the live manifest; it is replaced atomically. Opening replays the
//! live manifest and then writes a *new* one holding a snapshot of the state, switching
//! `CURRENT` to it: a manifest is never appended to after it was reopened (nonce rule).
//!
//! The module's files: `edit` (the edit records and their encoding), `format` (the format
//! version), `state` (the state a replay of edits builds), `log` (writing and replaying
//! `MANIFEST-<n>`), `current` (the `CURRENT` file) and `inspect` (decoded edits for tools).

mod current;
mod edit;
mod format;
mod inspect;
mod log;
mod state;

pub(crate) use current::CURRENT_FILE;
#[cfg(feature = "fuzzing")]
pub(crate) use current::{read_current, write_current};
pub use edit::FileMeta;
pub(crate) use edit::{Edit, IndexRecord};
pub use format::FormatVersion;
pub(crate) use format::check_cipher;
pub use inspect::{EditField, ManifestEdit, read_manifest_edits};
pub(crate) use log::Manifest;
#[cfg(feature = "fuzzing")]
pub use log::replay_manifest_for_fuzz;
pub(crate) use state::{DEFAULT_KEYSPACE, ManifestState, NUM_LEVELS};
