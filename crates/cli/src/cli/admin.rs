//! Arguments of the administrative commands: `stats`, `keyspace`, `completion`, `man`,
//! `upgrade`, `inspect` and `demo`.

use clap::{Args, Subcommand};
use std::path::PathBuf;

/// `stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Only this keyspace's figures [default: the whole database, every keyspace listed].
    #[arg(long, value_name = "NAME")]
    pub keyspace: Option<String>,
}

/// `keyspace` subcommands.
#[derive(Debug, Subcommand)]
pub enum KeyspaceCommand {
    /// List every keyspace with its estimated key count, tables and bytes.
    List,
    /// Create a keyspace (and the database, if missing); creating an existing one succeeds.
    Create(KeyspaceNameArgs),
    /// Drop a keyspace with everything in it (its indexes and stream too). The default
    /// keyspace cannot be dropped; an unknown one exits 1.
    Drop(KeyspaceNameArgs),
}

/// A command on one keyspace.
#[derive(Debug, Args)]
pub struct KeyspaceNameArgs {
    /// The keyspace's name (1 to 255 bytes).
    pub name: String,
}

/// `completion`.
#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write `sealdb.1` and a `sealdb-<command>.1` page for every command into DIR (created
    /// if missing) instead of printing the main page.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// `upgrade`.
#[derive(Debug, Args)]
pub struct UpgradeArgs {
    /// The format version to raise to [default: the newest this build knows]. Asking for an
    /// older version than the database's fails (exit 4): a version never goes down.
    #[arg(long, value_name = "VERSION")]
    pub to: Option<u32>,
    /// Print the database's format version and the newest this build knows; change
    /// nothing (opens read-only).
    #[arg(long, conflicts_with = "to")]
    pub show: bool,
}

/// `inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Any sealed file: a table, WAL segment, manifest or KEYS file.
    pub file: PathBuf,
    /// Dump a table's entries (sequence number, put or delete, key, value) instead of its
    /// block list; needs --db for the keys. Prints user data.
    #[arg(long, conflicts_with_all = ["manifest", "wal"])]
    pub entries: bool,
    /// Dump a manifest's edits (keyspaces, files added and removed, sequence numbers);
    /// needs --db. A table's smallest and largest keys are user data.
    #[arg(long, conflicts_with = "wal")]
    pub manifest: bool,
    /// Dump a WAL segment's frames and every record in them; needs --db. Prints user data.
    #[arg(long)]
    pub wal: bool,
}

impl InspectArgs {
    /// The dump asked for, if any: its flag and the file kind it applies to.
    pub fn dump(&self) -> Option<(&'static str, sealdb_crypto::ArtifactKind)> {
        use sealdb_crypto::ArtifactKind;
        if self.entries {
            Some(("--entries", ArtifactKind::Table))
        } else if self.manifest {
            Some(("--manifest", ArtifactKind::Manifest))
        } else if self.wal {
            Some(("--wal", ArtifactKind::Wal))
        } else {
            None
        }
    }
}

/// `demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keys to load and read back.
    #[arg(long, value_name = "N", default_value_t = 200_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub count: u64,
}
