//! Finding the master key: creating the KEYS file of a new database under the chosen master
//! key, or opening an existing one with the provider its envelope names.

use crate::options::{MasterKey, Options};
use crate::{Error, Result};
use sealdb_crypto::keysfile::KeysSummary;
use sealdb_crypto::{
    DatabaseId, KeyDescriptor, KeyProvider, KeyState, KeysFile, LocalKms, OwnedKeyProvider,
    SharedProvider,
};
use sealdb_vfs::SharedFs;
use std::path::Path;
use std::sync::Arc;

/// The keystore must not live inside the data directory: copying the directory alone must
/// reveal nothing.
fn check_keystore_outside(db: &Path, keystore: &Path) -> Result<()> {
    let ks = std::path::absolute(keystore).map_err(|e| Error::io(keystore, e))?;
    if ks.starts_with(db) {
        return Err(Error::invalid_argument(format!(
            "the keystore {} is inside the data directory {}; keep master keys elsewhere",
            ks.display(),
            db.display()
        )));
    }
    Ok(())
}

/// Builds the provider a descriptor names, from the options (never creating a key).
pub(crate) fn resolve_provider(
    desc: &KeyDescriptor,
    database_id: DatabaseId,
    opts: &Options,
) -> Result<SharedProvider> {
    if let Some(p) = opts.providers.iter().find(|p| p.descriptor() == *desc) {
        return Ok(p.clone());
    }
    match desc.provider.as_str() {
        "owned" => {
            let p = OwnedKeyProvider::open(&opts.resolved_keystore_dir(), database_id)?;
            if p.descriptor() != *desc {
                return Err(Error::KeyUnavailable {
                    provider: desc.provider.clone(),
                    key_id: desc.key_id.clone(),
                    state: KeyState::NotFound,
                    since: None,
                });
            }
            Ok(Arc::new(p))
        }
        "local-kms" => {
            let kms = LocalKms::open(&opts.resolved_kms_dir())?;
            Ok(Arc::new(kms.provider(&desc.key_id)))
        }
        // The standard AWS configuration chain (environment, profile) says where and how.
        #[cfg(feature = "aws-kms")]
        "aws-kms" => Ok(Arc::new(sealdb_crypto::AwsKmsProvider::from_env(
            &desc.key_id,
        )?)),
        _ => Err(Error::KeyUnavailable {
            provider: desc.provider.clone(),
            key_id: desc.key_id.clone(),
            state: KeyState::Unreachable("no provider of this kind was configured".into()),
            since: None,
        }),
    }
}

/// Opens the KEYS file of an existing database, or creates one for a new database.
pub(crate) fn open_or_create_keys(
    fs: &SharedFs,
    db: &Path,
    opts: &Options,
    exists: bool,
) -> Result<(KeysFile, SharedProvider, bool)> {
    if matches!(opts.master_key, MasterKey::Owned) || opts.keystore_dir.is_some() {
        check_keystore_outside(db, &opts.resolved_keystore_dir())?;
    }
    if exists {
        let summary: KeysSummary = KeysFile::peek(fs.as_ref(), db)?;
        let (keys, provider) = KeysFile::open(fs.as_ref(), db, |desc| {
            resolve_provider(desc, summary.database_id, opts)
                .map(|p| crate::keylife::AuditedProvider::wrap(p, &opts.key_events))
                .map_err(to_crypto)
        })?;
        return Ok((keys, provider, false));
    }
    let database_id = DatabaseId::generate()?;
    let provider: SharedProvider = match &opts.master_key {
        MasterKey::Owned => Arc::new(OwnedKeyProvider::create(
            &opts.resolved_keystore_dir(),
            database_id,
        )?),
        MasterKey::LocalKms(name) => {
            let kms = LocalKms::open(&opts.resolved_kms_dir())?;
            Arc::new(kms.provider(name))
        }
        MasterKey::Provider(p) => p.clone(),
    };
    let provider = crate::keylife::AuditedProvider::wrap(provider, &opts.key_events);
    let keys = KeysFile::create(fs.as_ref(), db, provider.as_ref(), database_id, opts.cipher)?;
    Ok((keys, provider, true))
}

/// Carries an engine error through the crypto layer's resolver callback unchanged in meaning.
pub(crate) fn to_crypto(e: Error) -> sealdb_crypto::Error {
    match e {
        Error::KeyUnavailable {
            provider,
            key_id,
            state,
            ..
        } => sealdb_crypto::Error::KeyUnavailable {
            provider,
            key_id,
            state,
        },
        Error::WrongMasterKey { provider, key_id } => {
            sealdb_crypto::Error::WrongMasterKey { provider, key_id }
        }
        Error::InsecurePermissions { path, mode } => {
            sealdb_crypto::Error::InsecurePermissions { path, mode }
        }
        Error::Integrity {
            file,
            block,
            reason,
        } => sealdb_crypto::Error::Integrity {
            file,
            block,
            reason,
        },
        other => sealdb_crypto::Error::invalid_argument(other.to_string()),
    }
}
