//! The command line: global options and one [`Command`] variant per top-level command.
//!
//! This is an interface people script against: names, defaults and exit statuses change only
//! deliberately. New command groups (`keys`, `kms`, `index`, `stream`, `backup`, `restore`)
//! are added as new [`Command`] variants, each with its own argument struct and module.
//!
//! The argument structs live in one submodule per command group (matching `commands/`) and
//! are re-exported here, so `crate::cli::PutArgs` names them wherever they are defined. The
//! submodules depend only on each other, never on this file, which assembles them.

mod admin;
mod backup;
mod data;
mod index;
mod keys;
mod stream;

pub use admin::{
    CompletionArgs, DemoArgs, InspectArgs, KeyspaceCommand, KeyspaceNameArgs, ManArgs, StatsArgs,
    UpgradeArgs,
};
pub use backup::{BackupCommand, BackupDeleteArgs, BackupDirArgs, BackupVerifyArgs, RestoreArgs};
pub use data::{
    DeleteArgs, ExportArgs, GetArgs, ImportArgs, KeyspaceArg, LoadArgs, PutArgs, ScanArgs,
};
pub use index::{IndexCommand, IndexCondition, IndexCreateArgs, IndexDropArgs, IndexQueryArgs};
pub use keys::{
    KeyTarget, KeysCommand, KeysSwitchArgs, KmsAuditArgs, KmsCommand, KmsDestroyArgs, KmsNameArgs,
    KmsScheduleArgs, parse_key_target,
};
pub use stream::{
    StreamCommand, StreamEnableArgs, StreamInfoArgs, StreamKeyspaceArgs, StreamReadArgs,
    StreamTailArgs,
};

use clap::{Args, Parser, Subcommand, ValueEnum};
use data::TEXT_FORMAT_HELP;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;
use stream::STREAM_FORMAT_HELP;

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
    use super::index::parse_projection;
    use super::stream::parse_stream_start;
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
