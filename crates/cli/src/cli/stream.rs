//! Arguments of the `stream` commands: enable, disable, read, tail, info.

use clap::{Args, Subcommand, ValueEnum};
use std::time::Duration;

/// The long help of `stream`: the record format and how `tail` shares the database.
pub(super) const STREAM_FORMAT_HELP: &str = "\
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
