//! A local, file-backed key-management service: named master keys with versions, states and
//! an audit log, shared by any number of databases and processes on one machine.
//!
//! It behaves like a small AWS KMS: a key is created enabled; it can be rotated (a new version
//! is appended; wraps use the newest, unwraps the version named in the wrapped blob), disabled
//! and enabled again, scheduled for deletion 1 to 30 days ahead (cancelling returns it to
//! disabled), and finally destroyed, which erases its key material: everything wrapped under it
//! becomes unrecoverable (crypto-shredding). Every create, rotation, state change, wrap, unwrap
//! and check, and every refusal, is appended to an audit log.
//!
//! # Directory layout
//!
//! - `kms.state`: the keys, in the binary format below; mode 0600. Replaced atomically
//!   (temporary file, fsync, rename, directory fsync). A state file that group or others can
//!   access is refused with [`Error::InsecurePermissions`](crate::Error::InsecurePermissions).
//! - `audit.log`: one JSON [`AuditEntry`] per line, append-only, mode 0600. Never contains key
//!   material.
//! - `kms.lock`: held with an exclusive [`std::fs::File::lock`] around every access, so that
//!   several processes (databases, the CLI) can share one KMS.
//!
//! The directory is created with mode 0700. Every call re-reads `kms.state` under the lock, so
//! a running database sees a key disabled by the CLI at its next check. A key pending deletion
//! whose date has passed is destroyed (and that is audited) by the next access of any kind.
//!
//! # `kms.state` format
//!
//! All integers are little-endian.
//!
//! | size            | field                                                            |
//! |-----------------|------------------------------------------------------------------|
//! | 8               | magic `SDBKMS01`                                                 |
//! | 4               | `u32` key count (at most 10 000)                                 |
//! | *per key*       | (keys in ascending byte order of their names; names are unique)  |
//! | 2               | `u16` name length, 1..=128                                       |
//! | name length     | name, ASCII `[A-Za-z0-9._-]`                                     |
//! | 8               | `u64` created at, Unix seconds                                   |
//! | 1               | `u8` state: 0 enabled, 1 disabled, 2 pending deletion, 3 destroyed |
//! | 8               | `u64` deletion at, Unix seconds; 0 unless the state is 2         |
//! | 4               | `u32` version count (1..=10 000; 0..=10 000 when destroyed)      |
//! | 32 × count      | key material of versions 1, 2, …, count; **absent when destroyed** (the count is kept as a record of how many versions existed) |
//! | 4               | `u32` crc32 (crc32fast) of every preceding byte of the file      |
//!
//! Decoding is total: the magic (`BadMagic`), then the crc (`HeaderChecksum`), then every
//! length against both its limit and the bytes remaining, before anything is allocated; any
//! other inconsistency (bad name, unknown state, deletion date on a key not pending deletion,
//! duplicate name, trailing bytes) is `Malformed`. The file is at most 64 MiB.
//!
//! # Modules
//!
//! - `state`: the in-memory keys, their lifecycle and the rules every operation checks;
//! - `codec`: the `kms.state` byte format above;
//! - `audit`: `audit.log`, its entries and how they are appended;
//! - `session`: one locked access (the state read, the audit entries pending);
//! - `store`: the directory, its lock, reading and atomically replacing `kms.state`;
//! - `admin`: the key-management operations (create, rotate, disable, delete, …);
//! - `provider`: the [`KeyProvider`](crate::KeyProvider) for one named key.

mod admin;
mod audit;
mod codec;
mod provider;
mod session;
mod state;
#[cfg(test)]
mod state_file_tests;
mod store;
#[cfg(test)]
mod tests;

pub use audit::AuditEntry;
#[cfg(feature = "fuzzing")]
pub(crate) use audit::parse_audit_log;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub use codec::decode_state_for_fuzz;
pub use provider::LocalKmsProvider;
pub use state::{
    KmsKeyInfo, MAX_DELETION_DAYS, MAX_KEYS, MAX_NAME_LEN, MAX_VERSIONS, MIN_DELETION_DAYS,
};
pub use store::LocalKms;
