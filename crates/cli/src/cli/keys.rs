//! Arguments of the key commands: `keys` (the database's master and data keys), `kms` (the
//! local KMS), and the master-key names (`owned`, `local-kms:<id>`, `aws-kms:<id>`) that
//! `--master-key`, `keys switch` and `restore --key` take.

use clap::{Args, Subcommand};
use std::fmt;

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
