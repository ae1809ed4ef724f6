//! Online encrypted backups, verification, restore under any master key, and point-in-time
//! restore from a backup plus the archived WAL.
//!
//! A backup directory holds, for any number of backups of one database:
//!
//! ```text
//! <dir>/<backup id>.catalog       sealed (kind backup-catalog): what the backup is
//! <dir>/<backup id>.KEYS          the database's KEYS file at backup time (wrapped data keys)
//! <dir>/tables/<file id>.sst      table files, shared by every backup that includes them
//! <dir>/wal/<file id>.wal         WAL segments (point-in-time recovery), shared likewise
//! ```
//!
//! Files are hard links of the live sealed files when the backup directory is on the same
//! filesystem, copies otherwise: nothing is decrypted or re-encrypted, so nothing in a backup
//! is in clear and a backup stays readable only with the master key. The catalogue is written
//! last and atomically: a crash during a backup leaves no catalogue, only unreferenced files
//! (removed by the next backup or delete).

mod anchor;
mod catalog;
pub(crate) mod create;
mod directory;
mod files;
mod restore;
mod verify;

#[cfg(feature = "fuzzing")]
pub use catalog::decode_catalog_for_fuzz;
pub use catalog::{BackupInfo, WalSegmentInfo, read_backup};
pub use directory::{delete_backup, list_backups};
pub use restore::{RestoreInfo, RestorePoint, restore_backup};
pub use verify::{BackupVerifyReport, verify_backup};
