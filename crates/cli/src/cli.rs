//! The command line: global options and one [`Command`] variant per top-level command.
//!
//! This is an interface people script against: names, defaults and exit statuses change only
//! deliberately. New command groups (`keys`, `kms`, `index`, `stream`, `backup`, `restore`)
//! are added as new [`Command`] variants, each with its own argument struct and module.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// The database directory used when `--db` is not given.
pub const DEFAULT_DB_DIR: &str = "./sealdb-data";

const EXIT_STATUS_HELP: &str = "\
Exit status:
  0  success
  1  key not found (get)
  2  integrity or authentication failure of on-disk data (the message names the file and block)
  3  master key unavailable (missing, disabled, destroyed, wrong, or readable by others)
  4  any other error, bad arguments included

Errors are printed on standard error as `sealdb: error: <message>`.";

/// sealdb: an embedded key-value store whose every durable byte is sealed.
#[derive(Debug, Parser)]
#[command(
    name = "sealdb",
    version,
    about = "sealdb: an embedded encrypted key-value store (every durable byte is sealed)",
    long_about = "sealdb: an embedded encrypted key-value store. The write-ahead log, tables, \
                  manifest and KEYS file are sealed block by block with ChaCha20-Poly1305 \
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
    /// Database directory [default: ./sealdb-data].
    #[arg(long, global = true, value_name = "DIR")]
    pub db: Option<PathBuf>,
    /// Keystore directory holding owned master keys [default: $SEALDB_KEYSTORE, else the
    /// user's data directory]. Must be outside the database directory.
    #[arg(long, global = true, value_name = "DIR")]
    pub keystore: Option<PathBuf>,
    /// Local KMS directory [default: $SEALDB_KMS, else `kms/` beside the keystore].
    #[arg(long, global = true, value_name = "DIR")]
    pub kms: Option<PathBuf>,
    /// Block cipher of a NEW database (ignored, with a warning, for an existing one)
    /// [default: chacha20poly1305]. `none` keeps the framing with a crc32 instead of
    /// encryption: for measuring what sealing costs, never for real data.
    #[arg(long, global = true, value_enum, value_name = "CIPHER")]
    pub cipher: Option<CipherArg>,
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
    /// No encryption (crc32 only): a benchmark baseline.
    #[value(name = "none")]
    None,
}

impl From<CipherArg> for sealdb::CipherId {
    fn from(c: CipherArg) -> Self {
        match c {
            CipherArg::Chacha20Poly1305 => Self::ChaCha20Poly1305,
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
    /// Print per-level files and bytes, cache, stall, flush and compaction statistics.
    Stats,
    /// Authenticate every block of every live file; exit 2 if any fails.
    Verify,
    /// Show the header and block layout of any sealed file; with --db, also open its blocks.
    Inspect(InspectArgs),
    /// Run a throwaway database end to end: load, read back, scan, verify, compact, report.
    Demo(DemoArgs),
}

const TEXT_FORMAT_HELP: &str = "\
Line format:
  One pair per line: the key, a TAB, the value, a newline (`\\n`). Without --hex the bytes are
  written and read as they are, so a key or value containing a TAB or a newline cannot be
  represented: `scan` and `export` refuse it (exit 4) and suggest --hex, and `import` reads
  everything after the first TAB up to the newline as the value (a second TAB is an error).
  No escaping is done, so backslashes and carriage returns are ordinary bytes. Empty lines are
  skipped on import.

  With --hex, key and value are lower-case hexadecimal (import accepts either case and a
  trailing carriage return): any bytes round-trip.

  With --json, `scan` prints each pair as an object {\"key\": ..., \"value\": ...}; without
  --hex both must be valid UTF-8 (otherwise it fails with exit 4 and suggests --hex).
  `import` and `export` always use the line format; --json only changes their summary line.";

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
    /// The value.
    #[arg(allow_hyphen_values = true)]
    pub value: String,
    /// Return only once the write is on durable media.
    #[arg(long)]
    pub sync: bool,
    /// Encoding of KEY and VALUE.
    #[command(flatten)]
    pub encoding: EncodingArgs,
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
}

/// `demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keys to load and read back.
    #[arg(long, value_name = "N", default_value_t = 200_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub count: u64,
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

    #[test]
    fn values_may_start_with_a_hyphen() {
        let c = Cli::try_parse_from(["sealdb", "put", "k", "-5"]);
        assert!(matches!(c.map(|c| c.command), Ok(Command::Put(p)) if p.value == "-5"));
    }
}
