//! Arguments of the `backup` commands and of `restore`.

use super::keys::{KeyTarget, parse_key_target};
use clap::{Args, Subcommand};
use std::path::PathBuf;

/// `backup` subcommands.
#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Take a consistent online backup of the database into DIR (created if needed).
    Create(BackupDirArgs),
    /// List DIR's backups and the earliest and latest points a restore can reach.
    List(BackupDirArgs),
    /// Delete one backup (and every file no other backup uses).
    Delete(BackupDeleteArgs),
    /// Authenticate every block of every file of one backup (or all); exit 2 naming each
    /// bad file.
    Verify(BackupVerifyArgs),
}

/// A backup directory.
#[derive(Debug, Args)]
pub struct BackupDirArgs {
    /// The backup directory.
    pub dir: PathBuf,
}

/// `backup delete`.
#[derive(Debug, Args)]
pub struct BackupDeleteArgs {
    /// The backup directory.
    pub dir: PathBuf,
    /// The backup to delete.
    #[arg(long, value_name = "ID")]
    pub id: String,
}

/// `backup verify`.
#[derive(Debug, Args)]
pub struct BackupVerifyArgs {
    /// The backup directory.
    pub dir: PathBuf,
    /// Only this backup [default: all].
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
}

/// `restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The backup directory.
    pub dir: PathBuf,
    /// The new database directory (must not exist).
    pub dest: PathBuf,
    /// The backup to restore [default: the latest].
    #[arg(long, value_name = "ID", conflicts_with_all = ["to_seq", "to_time"])]
    pub id: Option<String>,
    /// Wrap the restored database's data keys under this master key instead of the backup's:
    /// `owned`, `local-kms:<key name>` or `aws-kms:<key id or ARN>`.
    #[arg(long, value_name = "KEY", value_parser = parse_key_target)]
    pub key: Option<KeyTarget>,
    /// Point in time: every write up to this sequence number (from the latest backup at or
    /// before it plus the archived WAL).
    #[arg(long, value_name = "N", conflicts_with = "to_time")]
    pub to_seq: Option<u64>,
    /// Point in time: every write committed up to T (Unix seconds, or RFC 3339 such as
    /// 2024-05-01T12:00:00Z).
    #[arg(long, value_name = "T", value_parser = crate::time::parse_time_ms)]
    pub to_time: Option<u64>,
}
