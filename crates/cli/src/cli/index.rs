//! Arguments of the `index` commands: create, list, drop, query.

use super::data::EncodingArgs;
use clap::{Args, Subcommand};

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
