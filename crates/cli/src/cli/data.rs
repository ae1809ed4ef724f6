//! Arguments of the data commands: `put`, `get`, `delete`, `scan`, `import`, `export`, and
//! the synthetic `load`; with the key/value encoding and keyspace options they share.

use clap::Args;
use std::path::PathBuf;

/// The long help of `scan`, `import` and `export`: how pairs are written as text.
pub(super) const TEXT_FORMAT_HELP: &str = "\
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
