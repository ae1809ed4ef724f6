//! The command line: global options and one [`Command`] variant per top-level command.
//!
//! This is an interface people script against: names, defaults and exit statuses change only
//! deliberately. New command groups (`keys`, `kms`, `index`, `stream`, `backup`, `restore`)
//! are added as new [`Command`] variants, each with its own argument struct and module.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// The database directory used when `--db` is not given.
pub const DEFAULT_DB_DIR: &str = "./sealdb-data";

const EXIT_STATUS_HELP: &str = "\
Exit status:
  0  success
  1  not found: the key (get), or the keyspace given with --keyspace (or to `keyspace drop`)
  2  integrity or authentication failure of on-disk data (the message names the file and block),
     a data directory rolled back to an older copy of itself (see --allow-rollback), or a
     missing or stale newest backup catalogue
  3  master key unavailable (missing, disabled, destroyed, wrong, or readable by others)
  4  any other error, bad arguments included; also a full disk (\"no space left on the device
     holding <path>\": free space and run the command again; nothing acknowledged is lost)

Errors are printed on standard error as `sealdb: error: <message>`; with --json as one JSON
object on one line: {\"error\": {\"class\": C, \"exit\": N, \"message\": \"...\"}} where C is
not_found, integrity, key_unavailable or other (exit 1, 2, 3, 4), with \"file\" and \"offset\"
(bytes into that file) added when the error names them.

Creating a database:
  Commands that add data or schema create a missing database (taking --cipher and
  --master-key): put, import, load, keyspace create, index create, stream enable. Every other
  command refuses a missing database with exit 4 (\"no database at DIR\"), so a typo in --db
  never leaves an empty database behind.

Environment:
  SEALDB_DB        database directory when --db is not given
  SEALDB_KEYSTORE  keystore directory when --keystore is not given
  SEALDB_KMS       local KMS directory when --kms is not given
  RUST_LOG         diagnostics on standard error (flushes, compactions, recovery, key
                   checks, with durations; sealdb's events never carry key material or
                   data, other crates' events follow their own rules), e.g.
                   RUST_LOG=sealdb=info or RUST_LOG=sealdb=debug";

/// sealdb: an embedded key-value store whose every durable byte is sealed.
#[derive(Debug, Parser)]
#[command(
    name = "sealdb",
    version,
    about = "sealdb: an embedded encrypted key-value store (every durable byte is sealed)",
    long_about = "sealdb: an embedded encrypted key-value store. The write-ahead log, tables, \
                  manifest and KEYS file are sealed block by block with ChaCha20-Poly1305 \
                  (or AES-256-GCM, `--cipher aes256gcm`) \
                  under data keys wrapped by a master key kept outside the data directory.\n\n\
                  Try `sealdb demo` first: it runs a throwaway database end to end.",
    after_help = EXIT_STATUS_HELP,
    propagate_version = true
)]
pub struct Cli {
    /// Options accepted before or after the command.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command accepts, before or after the command name.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Database directory [default: $SEALDB_DB, else ./sealdb-data].
    #[arg(long, global = true, value_name = "DIR", env = "SEALDB_DB")]
    pub db: Option<PathBuf>,
    /// Keystore directory holding owned master keys [default: $SEALDB_KEYSTORE, else the
    /// user's data directory]. Must be outside the database directory.
    #[arg(long, global = true, value_name = "DIR")]
    pub keystore: Option<PathBuf>,
    /// Local KMS directory [default: $SEALDB_KMS, else `kms/` beside the keystore].
    #[arg(long, global = true, value_name = "DIR")]
    pub kms: Option<PathBuf>,
    /// Block cipher of a NEW database (ignored, with a warning, for an existing one)
    /// [default: chacha20poly1305]. `aes256gcm` is cheaper per small block on CPUs with
    /// AES-NI. `none` keeps the framing with a crc32 instead of encryption: for measuring
    /// what sealing costs, never for real data.
    #[arg(long, global = true, value_enum, value_name = "CIPHER")]
    pub cipher: Option<CipherArg>,
    /// Master key of a NEW database (ignored, with a warning, for an existing one; see
    /// `keys switch`) [default: owned]: `owned`, `local-kms:<key name>` or
    /// `aws-kms:<key id or ARN>` (AWS only in builds with the `aws-kms` feature).
    #[arg(long, global = true, value_name = "KEY", value_parser = parse_key_target)]
    pub master_key: Option<KeyTarget>,
    /// Point-in-time recovery: keep WAL segments made obsolete by flushes (in
    /// `<db>/wal-archive/`) for this long (30s, 24h, 7d), so that backups carry them and
    /// `restore --to-seq/--to-time` can stop between backups. Not remembered by the database:
    /// give it to every command that writes, or segments flushed without it are deleted.
    #[arg(long, global = true, value_name = "DURATION", value_parser = crate::time::parse_duration)]
    pub pitr_window: Option<Duration>,
    /// How long to wait for a database another sealdb process has open (such as a
    /// `stream tail` between polls) before giving up; `0` fails at once [default: 5s].
    #[arg(long, global = true, value_name = "DURATION", value_parser = crate::time::parse_duration)]
    pub lock_wait: Option<Duration>,
    /// Open a data directory even though it is older than the state this machine last saw
    /// of it (rollback protection, exit 2 otherwise): for the deliberate case of putting an
    /// older copy back in place. The record then follows the opened copy.
    #[arg(long, global = true)]
    pub allow_rollback: bool,
    /// Machine-readable output: one JSON object per result line on standard output.
    #[arg(long, global = true)]
    pub json: bool,
}

/// A master key named on the command line: `owned`, `local-kms:<id>` or `aws-kms:<id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyTarget {
    /// The engine-owned key in the keystore.
    Owned,
    /// A key of the local KMS, by name.
    LocalKms(String),
    /// An AWS KMS key, by key id, ARN or alias.
    AwsKms(String),
}

impl KeyTarget {
    /// The provider kind as key descriptors spell it.
    pub fn provider(&self) -> &'static str {
        match self {
            Self::Owned => "owned",
            Self::LocalKms(_) => "local-kms",
            Self::AwsKms(_) => "aws-kms",
        }
    }
}

impl fmt::Display for KeyTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Owned => f.write_str("owned"),
            Self::LocalKms(id) => write!(f, "local-kms:{id}"),
            Self::AwsKms(id) => write!(f, "aws-kms:{id}"),
        }
    }
}

/// Reads `owned`, `local-kms:<id>` or `aws-kms:<id>`.
pub fn parse_key_target(s: &str) -> Result<KeyTarget, String> {
    let id = |rest: &str, kind: &str| {
        if rest.is_empty() {
            Err(format!("{kind}: needs a key id after the colon"))
        } else {
            Ok(rest.to_string())
        }
    };
    if s == "owned" {
        Ok(KeyTarget::Owned)
    } else if let Some(rest) = s.strip_prefix("local-kms:") {
        id(rest, "local-kms").map(KeyTarget::LocalKms)
    } else if let Some(rest) = s.strip_prefix("aws-kms:") {
        id(rest, "aws-kms").map(KeyTarget::AwsKms)
    } else {
        Err(format!(
            "{s:?} is not a master key: expected owned, local-kms:<key name> or \
             aws-kms:<key id or ARN>"
        ))
    }
}

/// The `--cipher` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CipherArg {
    /// ChaCha20-Poly1305 (the default).
    #[value(name = "chacha20poly1305")]
    Chacha20Poly1305,
    /// AES-256-GCM: cheaper per small block on CPUs with AES-NI.
    #[value(name = "aes256gcm", alias = "aes-256-gcm")]
    Aes256Gcm,
    /// No encryption (crc32 only): a benchmark baseline.
    #[value(name = "none")]
    None,
}

impl From<CipherArg> for sealdb::CipherId {
    fn from(c: CipherArg) -> Self {
        match c {
            CipherArg::Chacha20Poly1305 => Self::ChaCha20Poly1305,
            CipherArg::Aes256Gcm => Self::Aes256Gcm,
            CipherArg::None => Self::None,
        }
    }
}

/// One variant per top-level command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Set KEY to VALUE (creates the database if missing).
    Put(PutArgs),
    /// Print the value of KEY (exit 1 if there is none).
    Get(GetArgs),
    /// Delete KEY.
    Delete(DeleteArgs),
    /// Print key/value pairs in key order: `key<TAB>value` lines, or JSON objects.
    #[command(after_long_help = TEXT_FORMAT_HELP)]
    Scan(ScanArgs),
    /// Import `key<TAB>value` lines from FILE (or `-` for standard input).
    #[command(after_long_help = TEXT_FORMAT_HELP)]
    Import(ImportArgs),
    /// Export every pair as `key<TAB>value` lines to FILE (default: standard output).
    #[command(after_long_help = TEXT_FORMAT_HELP)]
    Export(ExportArgs),
    /// Synthetic bulk load with a progress bar; prints throughput.
    Load(LoadArgs),
    /// Write every memtable to level-0 tables now.
    Flush,
    /// Flush, then compact every keyspace fully.
    Compact,
    /// Print per-level files and bytes, per-keyspace estimated key counts, cache, stall,
    /// flush and compaction statistics (cumulative over the database's life, and this run's).
    Stats(StatsArgs),
    /// Authenticate every block of every live file; exit 2 if any fails.
    Verify,
    /// Show the header and block layout of any sealed file; with --db, also open its blocks.
    Inspect(InspectArgs),
    /// Run a throwaway database end to end: load, read back, scan, verify, compact, report.
    Demo(DemoArgs),
    /// The master key and data keys: status, switch, rotate, re-encrypt.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Administer the local KMS (named master keys; no database needed).
    #[command(subcommand)]
    Kms(KmsCommand),
    /// Secondary indexes over JSON values: create (with backfill), list, drop, query.
    #[command(subcommand)]
    Index(IndexCommand),
    /// Change streams of a keyspace: enable, disable, read, tail, info.
    #[command(subcommand, after_long_help = STREAM_FORMAT_HELP)]
    Stream(StreamCommand),
    /// Sealed online backups into a directory: create, list, verify, delete.
    #[command(subcommand)]
    Backup(BackupCommand),
    /// Restore a backup (or a point in time) into a new database directory DEST.
    Restore(RestoreArgs),
    /// Keyspaces (independent sorted key spaces of one database): list, create, drop.
    #[command(subcommand)]
    Keyspace(KeyspaceCommand),
    /// Print a shell completion script (install: `sealdb completion bash >
    /// /etc/bash_completion.d/sealdb`, or source it from your shell's startup file).
    Completion(CompletionArgs),
    /// Print the manual page (roff; view with `sealdb man | man -l -`), or with --dir write
    /// one page per command into a directory.
    Man(ManArgs),
    /// Raise the database's on-disk format version (to the newest this build knows, or
    /// --to). One way: older sealdb builds can no longer open it afterwards. --show only
    /// prints the version. See docs/operations.md, "Upgrading the format".
    Upgrade(UpgradeArgs),
}

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

const TEXT_FORMAT_HELP: &str = "\
Line format:
  One pair per line: the key, a TAB, the value, a newline. Without --hex, keys and values are
  escaped text: valid UTF-8 is written as it is except
      \\t  TAB        \\n  newline        \\r  carriage return        \\\\  backslash
      \\xHH  any other control character (each of its bytes) and any byte that is not
            valid UTF-8
  so any bytes can be written, and `import` reads exactly what `export` writes. On import a
  backslash must start one of those escapes (anything else is an error naming the line), a
  second TAB on a line is an error, other bytes (a carriage return included) are taken as
  they are, and empty lines are skipped.

  With --hex, key and value are lower-case hexadecimal (import accepts either case and a
  trailing carriage return).

  With --json, `scan` prints each pair as an object {\"key\": ..., \"value\": ...} where each is
  a JSON string when the bytes are valid UTF-8, else {\"hex\": \"...\"} (with --hex: always a
  hexadecimal string). `get --json`, `index query --json` and `stream read` use the same
  rule. `import` and `export` always use the line format; --json only changes their summary
  line. `get` without --json prints the value's bytes as they are.";

/// How keys and values on the command line and in output are written.
#[derive(Debug, Clone, Copy, Args)]
pub struct EncodingArgs {
    /// Keys and values (arguments, input and output) are hexadecimal: for binary data.
    #[arg(long)]
    pub hex: bool,
}

/// `put`.
#[derive(Debug, Args)]
pub struct PutArgs {
    /// The key.
    #[arg(allow_hyphen_values = true)]
    pub key: String,
    /// The value; `-` reads it from standard input and `@FILE` from FILE, byte for byte (with
    /// --hex, as hexadecimal text). A value that really starts with `@` is written `@@...`
    /// (one `@` is dropped), or give --literal to take VALUE exactly as typed (`-` included).
    #[arg(allow_hyphen_values = true)]
    pub value: String,
    /// Return only once the write is on durable media.
    #[arg(long)]
    pub sync: bool,
    /// Encoding of KEY and VALUE.
    #[command(flatten)]
    pub encoding: EncodingArgs,
    /// The keyspace (created if missing).
    #[command(flatten)]
    pub keyspace: KeyspaceArg,
    /// Take VALUE exactly as typed: no `-` (standard input) or `@FILE` reading.
    #[arg(long)]
    pub literal: bool,
}

/// The keyspace a data command works on.
#[derive(Debug, Clone, Args)]
pub struct KeyspaceArg {
    /// The keyspace [default: the default keyspace, `default`]. Commands that read, and
    /// `delete`, exit 1 ("no keyspace NAME") if it does not exist; `put` and `import` create
    /// it. See `sealdb keyspace`.
    #[arg(long, value_name = "NAME")]
    pub keyspace: Option<String>,
}

/// `get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// The key.
    #[arg(allow_hyphen_values = true)]
    pub key: String,
    /// Encoding of KEY and of the printed value.
    #[command(flatten)]
    pub encoding: EncodingArgs,
    /// The keyspace.
    #[command(flatten)]
    pub keyspace: KeyspaceArg,
}

/// `delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The key.
    #[arg(allow_hyphen_values = true)]
    pub key: String,
    /// Return only once the delete is on durable media.
    #[arg(long)]
    pub sync: bool,
    /// Encoding of KEY.
    #[command(flatten)]
    pub encoding: EncodingArgs,
    /// The keyspace.
    #[command(flatten)]
    pub keyspace: KeyspaceArg,
}

/// `scan`.
#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Only keys starting with P.
    #[arg(long, value_name = "P", allow_hyphen_values = true)]
    pub prefix: Option<String>,
    /// Start at K (inclusive).
    #[arg(long, value_name = "K", allow_hyphen_values = true)]
    pub from: Option<String>,
    /// Stop before K (exclusive).
    #[arg(long, value_name = "K", allow_hyphen_values = true)]
    pub to: Option<String>,
    /// Print at most N pairs.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// Descending key order (the limit then takes the largest keys).
    #[arg(long)]
    pub reverse: bool,
    /// Encoding of the bounds and the output.
    #[command(flatten)]
    pub encoding: EncodingArgs,
    /// The keyspace.
    #[command(flatten)]
    pub keyspace: KeyspaceArg,
}

/// `import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The file to read, or `-` for standard input.
    #[arg(value_name = "FILE|-")]
    pub file: PathBuf,
    /// Records per atomic write batch. The import is synced once at the end; if it fails,
    /// the batches committed before the failure are kept.
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch: u64,
    /// Encoding of the lines.
    #[command(flatten)]
    pub encoding: EncodingArgs,
    /// The keyspace.
    #[command(flatten)]
    pub keyspace: KeyspaceArg,
}

/// `export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The file to write (replaced atomically, only once the export succeeded), or `-` for
    /// standard output [default: -].
    #[arg(value_name = "FILE|-")]
    pub file: Option<PathBuf>,
    /// Encoding of the lines.
    #[command(flatten)]
    pub encoding: EncodingArgs,
    /// The keyspace.
    #[command(flatten)]
    pub keyspace: KeyspaceArg,
}

/// `load`.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Keys to write (decimal, zero-padded to --key-size: 0000…0, 0000…1, …).
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    pub count: u64,
    /// Bytes per key.
    #[arg(long, value_name = "BYTES", default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=65536))]
    pub key_size: u64,
    /// Bytes per value (printable pseudo-random characters).
    #[arg(long, value_name = "BYTES", default_value_t = 100, value_parser = clap::value_parser!(u64).range(0..=(32 << 20)))]
    pub value_size: u64,
    /// Keys per atomic write batch.
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch: u64,
    /// Sync every batch to durable media.
    #[arg(long)]
    pub sync: bool,
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

// ---- keys ----

/// `keys` subcommands.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Master key (provider, id, state, when it became unavailable, last check), the current
    /// data key, and every data-key version with its creation time and table count.
    Status,
    /// Re-wrap the data keys under another master key, online (no data file is rewritten).
    Switch(KeysSwitchArgs),
    /// Add a data-key version and make it current (new files use it; see `keys reencrypt`).
    Rotate,
    /// Rewrite every file sealed under an old data-key version, then drop those versions.
    Reencrypt,
}

/// `keys switch`.
#[derive(Debug, Args)]
pub struct KeysSwitchArgs {
    /// The new master key: `owned`, `local-kms:<key name>` or `aws-kms:<key id or ARN>`.
    #[arg(long, value_name = "KEY", value_parser = parse_key_target)]
    pub to: KeyTarget,
}

// ---- kms ----

/// `kms` subcommands. The local KMS lives in `--kms DIR`, else `$SEALDB_KMS`, else `kms/`
/// beside the keystore.
#[derive(Debug, Subcommand)]
pub enum KmsCommand {
    /// Create an enabled key with one fresh version.
    Create(KmsNameArgs),
    /// List every key: name, state, versions, creation time.
    List,
    /// Add a version to a key (new wraps use it; older wraps still unwrap).
    Rotate(KmsNameArgs),
    /// Disable a key: every database under it refuses service until it is enabled.
    Disable(KmsNameArgs),
    /// Enable a disabled key.
    Enable(KmsNameArgs),
    /// Schedule a key's destruction N days ahead (it is unusable meanwhile).
    ScheduleDeletion(KmsScheduleArgs),
    /// Cancel a scheduled deletion (the key becomes disabled; enable it to use it).
    CancelDeletion(KmsNameArgs),
    /// Destroy a key pending deletion, erasing its material: data under it is unrecoverable.
    /// Only once its waiting period is over, or at once with --now.
    Destroy(KmsDestroyArgs),
    /// Print the audit log (every use, change and refusal), optionally of one key only.
    Audit(KmsAuditArgs),
}

/// A command on one local KMS key.
#[derive(Debug, Args)]
pub struct KmsNameArgs {
    /// The key's name (1 to 128 characters of A-Z a-z 0-9 . _ -).
    pub name: String,
}

/// `kms schedule-deletion`.
#[derive(Debug, Args)]
pub struct KmsScheduleArgs {
    /// The key's name.
    pub name: String,
    /// Waiting period in days (1 to 30).
    #[arg(long, value_name = "N")]
    pub days: u32,
}

/// `kms destroy`.
#[derive(Debug, Args)]
pub struct KmsDestroyArgs {
    /// The key's name.
    pub name: String,
    /// Destroy now, before the end of the waiting period (irreversible).
    #[arg(long)]
    pub now: bool,
}

/// `kms audit`.
#[derive(Debug, Args)]
pub struct KmsAuditArgs {
    /// Only entries about this key.
    pub name: Option<String>,
}

// ---- index ----

/// `index` subcommands.
#[derive(Debug, Subcommand)]
pub enum IndexCommand {
    /// Create an index on a JSON pointer of a keyspace's values and backfill it.
    Create(IndexCreateArgs),
    /// List every index.
    List,
    /// Drop an index and its entries.
    Drop(IndexDropArgs),
    /// Query an index: `primary_key<TAB>item` lines (JSON: with the index value). When there
    /// are more results, `next: <token>` goes to standard error (JSON: a final {"next": ...}).
    Query(IndexQueryArgs),
}

/// `index create`.
#[derive(Debug, Args)]
pub struct IndexCreateArgs {
    /// The index's name (1 to 128 characters of A-Z a-z 0-9 . _ -).
    pub name: String,
    /// The keyspace it indexes.
    #[arg(long, value_name = "KS", default_value = "default")]
    pub keyspace: String,
    /// The RFC 6901 JSON pointer to index (`/user/email`; `""` is the whole value). Also
    /// accepted as `--json POINTER`.
    #[arg(
        long = "json-pointer",
        value_name = "POINTER",
        allow_hyphen_values = true
    )]
    pub pointer: String,
    /// One index over the whole keyspace (the default).
    #[arg(long, conflicts_with_all = ["local", "partition_prefix", "partition_delimiter"])]
    pub global: bool,
    /// One index per partition of the primary key (with --partition-prefix or
    /// --partition-delimiter).
    #[arg(long)]
    pub local: bool,
    /// Local index: the partition is the first N bytes of the primary key.
    #[arg(long, value_name = "N", conflicts_with = "partition_delimiter")]
    pub partition_prefix: Option<usize>,
    /// Local index: the partition is the primary key up to the first C (one character, or
    /// `0xNN` for any byte).
    #[arg(long, value_name = "C")]
    pub partition_delimiter: Option<String>,
    /// What each entry stores: `keys` (nothing: query with --fetch for the items), `all`
    /// (the whole item) or `include:F1,F2` (a JSON object of those top-level fields).
    #[arg(long, value_name = "P", default_value = "all", value_parser = parse_projection)]
    pub projection: sealdb::Projection,
}

/// Reads `keys`, `all` or `include:F1,F2,...`.
pub fn parse_projection(s: &str) -> Result<sealdb::Projection, String> {
    match s {
        "keys" => Ok(sealdb::Projection::KeysOnly),
        "all" => Ok(sealdb::Projection::All),
        _ => match s.strip_prefix("include:") {
            Some(fields) if !fields.is_empty() => Ok(sealdb::Projection::Include(
                fields.split(',').map(str::to_string).collect(),
            )),
            _ => Err(format!(
                "{s:?} is not a projection: expected keys, all or include:FIELD1,FIELD2"
            )),
        },
    }
}

/// `index drop`.
#[derive(Debug, Args)]
pub struct IndexDropArgs {
    /// The index's name.
    pub name: String,
}

/// `index query`.
#[derive(Debug, Args)]
pub struct IndexQueryArgs {
    /// The index's name.
    pub name: String,
    /// The condition on the index value.
    #[command(flatten)]
    pub condition: IndexCondition,
    /// The partition (required for a local index).
    #[arg(long, value_name = "PK", allow_hyphen_values = true)]
    pub partition: Option<String>,
    /// Return at most N results (then print a token for the next page).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    /// Descending order of (index value, primary key).
    #[arg(long)]
    pub reverse: bool,
    /// Continue after this token (printed by the previous page).
    #[arg(long, value_name = "TOKEN")]
    pub after: Option<String>,
    /// Print each item's full value from the keyspace (for keys-only and include indexes).
    #[arg(long)]
    pub fetch: bool,
    /// Encoding of --partition, primary keys and items.
    #[command(flatten)]
    pub encoding: EncodingArgs,
}

/// Exactly one condition on the index value. Values are JSON literals when they parse as one
/// (`42`, `true`, `"42"`), else text (`alice`).
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct IndexCondition {
    /// Equal to V.
    #[arg(long, value_name = "V", allow_hyphen_values = true)]
    pub eq: Option<String>,
    /// Between A and B, both inclusive (of one type).
    #[arg(long, num_args = 2, value_names = ["A", "B"], allow_hyphen_values = true)]
    pub range: Option<Vec<String>>,
    /// A string starting with P.
    #[arg(long, value_name = "P", allow_hyphen_values = true)]
    pub begins_with: Option<String>,
    /// Less than V (of the same type).
    #[arg(long, value_name = "V", allow_hyphen_values = true)]
    pub lt: Option<String>,
    /// Less than or equal to V.
    #[arg(long, value_name = "V", allow_hyphen_values = true)]
    pub le: Option<String>,
    /// Greater than V.
    #[arg(long, value_name = "V", allow_hyphen_values = true)]
    pub gt: Option<String>,
    /// Greater than or equal to V.
    #[arg(long, value_name = "V", allow_hyphen_values = true)]
    pub ge: Option<String>,
}

// ---- stream ----

const STREAM_FORMAT_HELP: &str = "\
Record format (read and tail; always JSON lines, whatever --json says):
  {\"seq\": 12, \"time_ms\": 1714566896123, \"event\": \"insert\"|\"modify\"|\"remove\",
   \"keyspace\": \"default\", \"key\": ..., \"new_image\": ..., \"old_image\": ...}
  Keys and images are JSON strings when they are valid UTF-8, else {\"hex\": \"...\"}; an image
  the stream's view does not record (or that does not exist) is null.

Tail and other processes:
  `stream tail` opens the database, reads, and closes it again between polls, so other sealdb
  processes (which wait up to --lock-wait for it) can write meanwhile.";

/// `stream` subcommands.
#[derive(Debug, Subcommand)]
pub enum StreamCommand {
    /// Start recording the keyspace's changes.
    Enable(StreamEnableArgs),
    /// Stop recording and delete the stream's records.
    Disable(StreamKeyspaceArgs),
    /// Print records as JSON lines, up to the newest (or --limit).
    Read(StreamReadArgs),
    /// Print records as JSON lines as they arrive, until interrupted.
    Tail(StreamTailArgs),
    /// Show the stream's view, retention, horizon, last sequence number and size.
    Info(StreamInfoArgs),
}

/// The keyspace of a stream command.
#[derive(Debug, Args)]
pub struct StreamKeyspaceArgs {
    /// The keyspace.
    #[arg(long, value_name = "KS", default_value = "default")]
    pub keyspace: String,
}

/// `stream enable`.
#[derive(Debug, Args)]
pub struct StreamEnableArgs {
    /// The keyspace.
    #[arg(long, value_name = "KS", default_value = "default")]
    pub keyspace: String,
    /// What each record holds besides the key.
    #[arg(long, value_enum)]
    pub view: ViewArg,
    /// Keep records this long (30s, 15m, 24h, 7d).
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = crate::time::parse_duration)]
    pub retention: Duration,
    /// Also keep at most about this many bytes of records (0: no size limit).
    #[arg(long, value_name = "BYTES", default_value_t = 0)]
    pub max_bytes: u64,
}

/// The `--view` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ViewArg {
    /// Only the key.
    Keys,
    /// The key and the new value.
    New,
    /// The key and the old value.
    Old,
    /// The key and both values.
    NewAndOld,
}

impl From<ViewArg> for sealdb::StreamView {
    fn from(v: ViewArg) -> Self {
        match v {
            ViewArg::Keys => Self::KeysOnly,
            ViewArg::New => Self::NewImage,
            ViewArg::Old => Self::OldImage,
            ViewArg::NewAndOld => Self::NewAndOldImages,
        }
    }
}

/// Reads `trim-horizon`, `latest`, `at:N` or `after:N`.
pub fn parse_stream_start(s: &str) -> Result<sealdb::StreamStart, String> {
    let n = |rest: &str| {
        rest.parse::<u64>()
            .map_err(|_| format!("{s:?}: expected a sequence number after the colon"))
    };
    match s {
        "trim-horizon" => Ok(sealdb::StreamStart::TrimHorizon),
        "latest" => Ok(sealdb::StreamStart::Latest),
        _ => {
            if let Some(rest) = s.strip_prefix("at:") {
                n(rest).map(sealdb::StreamStart::At)
            } else if let Some(rest) = s.strip_prefix("after:") {
                n(rest).map(sealdb::StreamStart::After)
            } else {
                Err(format!(
                    "{s:?} is not a stream position: expected trim-horizon, latest, at:N or after:N"
                ))
            }
        }
    }
}

/// `stream read`.
#[derive(Debug, Args)]
pub struct StreamReadArgs {
    /// The keyspace.
    #[arg(long, value_name = "KS", default_value = "default")]
    pub keyspace: String,
    /// Where to start: trim-horizon (the oldest record kept), latest, at:N or after:N.
    #[arg(long, value_name = "POS", default_value = "trim-horizon", value_parser = parse_stream_start)]
    pub from: sealdb::StreamStart,
    /// Print at most N records.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
}

/// `stream tail`.
#[derive(Debug, Args)]
pub struct StreamTailArgs {
    /// The keyspace.
    #[arg(long, value_name = "KS", default_value = "default")]
    pub keyspace: String,
    /// Where to start: latest (only new records), trim-horizon, at:N or after:N.
    #[arg(long, value_name = "POS", default_value = "latest", value_parser = parse_stream_start)]
    pub from: sealdb::StreamStart,
    /// Time between polls; the database is closed meanwhile so that other processes can
    /// write.
    #[arg(long, value_name = "DURATION", default_value = "100ms", value_parser = crate::time::parse_duration)]
    pub poll: Duration,
}

/// `stream info`.
#[derive(Debug, Args)]
pub struct StreamInfoArgs {
    /// Only this keyspace's stream [default: every keyspace that has one].
    #[arg(long, value_name = "KS")]
    pub keyspace: Option<String>,
}

// ---- backup and restore ----

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

/// Rewrites the spelling `index create ... --json POINTER` into `--json-pointer POINTER`.
///
/// `--json` is also the global output flag, and clap cannot give one name two meanings; but
/// the flag never takes a value, and a JSON pointer is empty or starts with `/`, so `--json`
/// followed by such an argument, after `index create`, can only be the pointer.
pub fn rewrite_json_pointer(args: Vec<OsString>) -> Vec<OsString> {
    // Global options that take a value in the next argument.
    const VALUED: [&str; 7] = [
        "--db",
        "--keystore",
        "--kms",
        "--cipher",
        "--master-key",
        "--pitr-window",
        "--lock-wait",
    ];
    let mut positionals = 0usize;
    let mut in_index_create = false;
    let mut out = Vec::with_capacity(args.len());
    let mut iter = args.into_iter().peekable();
    // The program name.
    if let Some(a) = iter.next() {
        out.push(a);
    }
    let mut after_dashdash = false;
    while let Some(arg) = iter.next() {
        let s = arg.to_str().unwrap_or_default().to_string();
        if after_dashdash {
            out.push(arg);
            continue;
        }
        if s == "--" {
            after_dashdash = true;
            out.push(arg);
            continue;
        }
        if in_index_create {
            if s == "--json" {
                let pointer_next = iter
                    .peek()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.is_empty() || n.starts_with('/'));
                if pointer_next {
                    out.push(OsString::from("--json-pointer"));
                    continue;
                }
            } else if let Some(v) = s.strip_prefix("--json=") {
                out.push(OsString::from(format!("--json-pointer={v}")));
                continue;
            }
            out.push(arg);
            continue;
        }
        if VALUED.contains(&s.as_str()) {
            out.push(arg);
            if let Some(v) = iter.next() {
                out.push(v);
            }
            continue;
        }
        if !s.starts_with('-') || s == "-" {
            positionals += 1;
            match positionals {
                1 if s != "index" => {
                    // Not an index command: nothing to rewrite.
                    out.push(arg);
                    out.extend(iter);
                    return out;
                }
                2 => in_index_create = s == "create",
                _ => {}
            }
        }
        out.push(arg);
        if positionals >= 2 && !in_index_create {
            out.extend(iter);
            return out;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_options_go_before_or_after_the_command() {
        let a = Cli::try_parse_from(["sealdb", "--json", "get", "k"]);
        let b = Cli::try_parse_from(["sealdb", "get", "k", "--json", "--db", "/x"]);
        assert!(a.is_ok_and(|c| c.global.json));
        assert!(b.is_ok_and(|c| c.global.json && c.global.db.is_some()));
    }

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn json_pointer_spelling_is_rewritten_only_in_index_create() {
        let r = rewrite_json_pointer(os(&[
            "sealdb", "--db", "index", "index", "create", "by-email", "--json", "/email", "--json",
        ]));
        assert_eq!(
            r,
            os(&[
                "sealdb",
                "--db",
                "index",
                "index",
                "create",
                "by-email",
                "--json-pointer",
                "/email",
                "--json",
            ])
        );
        let r = rewrite_json_pointer(os(&["sealdb", "index", "create", "x", "--json=/a"]));
        assert_eq!(
            r,
            os(&["sealdb", "index", "create", "x", "--json-pointer=/a"])
        );
        let r = rewrite_json_pointer(os(&["sealdb", "index", "create", "x", "--json", ""]));
        assert_eq!(
            r,
            os(&["sealdb", "index", "create", "x", "--json-pointer", ""])
        );
        // A key that looks like a pointer after the global flag stays a key.
        let same = os(&["sealdb", "get", "--json", "/k"]);
        assert_eq!(rewrite_json_pointer(same.clone()), same);
        let same = os(&["sealdb", "index", "query", "x", "--json", "--eq", "/a"]);
        assert_eq!(rewrite_json_pointer(same.clone()), same);
        let c = Cli::try_parse_from(rewrite_json_pointer(os(&[
            "sealdb", "index", "create", "i", "--json", "/a/b", "--json",
        ])));
        assert!(matches!(
            c,
            Ok(Cli { global, command: Command::Index(IndexCommand::Create(a)) })
                if a.pointer == "/a/b" && global.json
        ));
    }

    #[test]
    fn key_targets_and_positions_parse() {
        assert_eq!(parse_key_target("owned"), Ok(KeyTarget::Owned));
        assert_eq!(
            parse_key_target("local-kms:k1"),
            Ok(KeyTarget::LocalKms("k1".into()))
        );
        assert_eq!(
            parse_key_target("aws-kms:arn:aws:kms:eu-west-1:1:key/x"),
            Ok(KeyTarget::AwsKms("arn:aws:kms:eu-west-1:1:key/x".into()))
        );
        assert!(parse_key_target("local-kms:").is_err());
        assert!(parse_key_target("vault:x").is_err());
        assert_eq!(
            parse_stream_start("after:7"),
            Ok(sealdb::StreamStart::After(7))
        );
        assert!(parse_stream_start("at:x").is_err());
        assert!(matches!(
            parse_projection("include:a,b"),
            Ok(sealdb::Projection::Include(f)) if f == ["a", "b"]
        ));
        assert!(parse_projection("include:").is_err());
    }

    #[test]
    fn index_query_needs_exactly_one_condition() {
        let ok = Cli::try_parse_from(["sealdb", "index", "query", "i", "--range", "1", "5"]);
        assert!(matches!(
            ok.map(|c| c.command),
            Ok(Command::Index(IndexCommand::Query(q))) if q.condition.range == Some(vec!["1".into(), "5".into()])
        ));
        assert!(Cli::try_parse_from(["sealdb", "index", "query", "i"]).is_err());
        assert!(
            Cli::try_parse_from(["sealdb", "index", "query", "i", "--eq", "1", "--lt", "2"])
                .is_err()
        );
    }

    #[test]
    fn values_may_start_with_a_hyphen() {
        let c = Cli::try_parse_from(["sealdb", "put", "k", "-5"]);
        assert!(matches!(c.map(|c| c.command), Ok(Command::Put(p)) if p.value == "-5"));
    }
}
