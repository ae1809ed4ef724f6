//! Master keys named on the command line (`--master-key`, `keys switch --to`, `restore --key`)
//! and the providers the engine cannot build by itself.
//!
//! The engine opens owned and local-KMS keys on its own. An AWS KMS key needs a provider built
//! by the application (`Options::providers`, `MasterKey::Provider`), and only builds with the
//! `aws-kms` feature can build one; others fail with a message saying how to rebuild.

use crate::cli::KeyTarget;
use crate::error::{CliError, Result};
use sealdb::MasterKey;
use sealdb_crypto::{KeysFile, SharedProvider};
use std::path::Path;

/// The provider kind of AWS KMS keys in key descriptors.
const AWS_PROVIDER: &str = "aws-kms";

/// The engine's form of a key named on the command line (building the AWS provider if needed).
pub fn master_key(target: &KeyTarget) -> Result<MasterKey> {
    Ok(match target {
        KeyTarget::Owned => MasterKey::Owned,
        KeyTarget::LocalKms(id) => MasterKey::LocalKms(id.clone()),
        KeyTarget::AwsKms(id) => MasterKey::Provider(aws_provider(id)?),
    })
}

/// A provider for AWS KMS key `id`, configured by the standard AWS chain (environment,
/// profile, SSO, instance metadata).
#[cfg(feature = "aws-kms")]
pub fn aws_provider(id: &str) -> Result<SharedProvider> {
    let p = sealdb_crypto::AwsKmsProvider::from_env(id)
        .map_err(|e| CliError::from(e).context(format!("AWS KMS key {id}")))?;
    Ok(std::sync::Arc::new(p))
}

/// Without the `aws-kms` feature there is no AWS provider: a clear error (exit 4).
#[cfg(not(feature = "aws-kms"))]
pub fn aws_provider(id: &str) -> Result<SharedProvider> {
    Err(CliError::other(format!(
        "aws-kms:{id}: this sealdb was built without AWS KMS support; rebuild it with \
         `cargo build --release -p sealdb-cli --features aws-kms`"
    )))
}

/// The extra providers needed to open the database in `db`: the AWS KMS key its KEYS file
/// names, if it names one. Nothing when there is no readable KEYS file (opening reports that).
pub fn providers_for_db(db: &Path) -> Result<Vec<SharedProvider>> {
    match KeysFile::peek(&sealdb_vfs::RealFs, db) {
        Ok(summary) if summary.master.provider == AWS_PROVIDER => {
            Ok(vec![aws_provider(&summary.master.key_id)?])
        }
        _ => Ok(Vec::new()),
    }
}

/// The extra providers needed to read the backups in `dir`: one per AWS KMS key named by a
/// backup's KEYS copy (`<id>.KEYS`). Unreadable copies are skipped (the engine reports them).
pub fn providers_for_backups(dir: &Path) -> Result<Vec<SharedProvider>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut ids: Vec<String> = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().ends_with(".KEYS") {
            continue;
        }
        // `KeysFile::peek` reads `<dir>/KEYS`: peek at a copy under that name.
        let Ok(bytes) = std::fs::read(entry.path()) else {
            continue;
        };
        let Ok(scratch) = tempfile::tempdir() else {
            continue;
        };
        let staged = scratch.path().join(sealdb_crypto::keysfile::KEYS_FILE_NAME);
        if std::fs::write(&staged, &bytes).is_err() {
            continue;
        }
        if let Ok(summary) = KeysFile::peek(&sealdb_vfs::RealFs, scratch.path())
            && summary.master.provider == AWS_PROVIDER
            && !ids.contains(&summary.master.key_id)
        {
            ids.push(summary.master.key_id);
        }
    }
    ids.iter().map(|id| aws_provider(id)).collect()
}

/// Whether a database whose master key is `current` was asked to be created under `wanted`
/// (for the warning that `--master-key` only applies at creation).
pub fn same_key(wanted: &KeyTarget, current: &sealdb::KeyDescriptor) -> bool {
    if wanted.provider() != current.provider {
        return false;
    }
    match wanted {
        KeyTarget::Owned => true,
        KeyTarget::LocalKms(id) | KeyTarget::AwsKms(id) => *id == current.key_id,
    }
}
