//! Finding the master key: creating the KEYS file of a new database under the chosen master
//! key, or opening an existing one with the provider its envelope names; the audit wrapper
//! every provider is used through, and the refusal a running database gives while its master
//! key is unusable.

use crate::options::{KeyEventHook, MasterKey, Options};
use crate::{Error, Result};
use sealdb_crypto::keysfile::KeysSummary;
use sealdb_crypto::{
    DatabaseId, EncryptionContext, KeyDescriptor, KeyEvent, KeyProvider, KeyState, KeysFile,
    LocalKms, OwnedKeyProvider, SecretKey, SharedProvider,
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
                .map(|p| AuditedProvider::wrap(p, &opts.key_events))
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
    let provider = AuditedProvider::wrap(provider, &opts.key_events);
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

/// Wraps a provider so every use is reported to the hook.
#[derive(Debug)]
pub(crate) struct AuditedProvider {
    pub inner: SharedProvider,
    pub hook: Option<KeyEventHook>,
}

impl AuditedProvider {
    pub(crate) fn wrap(inner: SharedProvider, hook: &Option<KeyEventHook>) -> SharedProvider {
        match hook {
            None => inner,
            Some(h) => Arc::new(AuditedProvider {
                inner,
                hook: Some(h.clone()),
            }),
        }
    }

    fn report<T>(
        &self,
        op: &'static str,
        db: Option<sealdb_crypto::DatabaseId>,
        r: &sealdb_crypto::Result<T>,
    ) {
        if let Some(h) = &self.hook {
            (h.0)(&KeyEvent {
                key: self.inner.descriptor(),
                operation: op,
                database_id: db,
                outcome: match r {
                    Ok(_) => Ok(()),
                    Err(e) => Err(e.to_string()),
                },
            });
        }
    }
}

impl KeyProvider for AuditedProvider {
    fn descriptor(&self) -> KeyDescriptor {
        self.inner.descriptor()
    }
    fn wrap(
        &self,
        data_key: &SecretKey,
        context: &EncryptionContext,
    ) -> sealdb_crypto::Result<Vec<u8>> {
        let r = self.inner.wrap(data_key, context);
        self.report("wrap", Some(context.database_id), &r);
        r
    }
    fn unwrap(
        &self,
        wrapped: &[u8],
        context: &EncryptionContext,
    ) -> sealdb_crypto::Result<SecretKey> {
        let r = self.inner.unwrap(wrapped, context);
        self.report("unwrap", Some(context.database_id), &r);
        r
    }
    fn check(&self) -> sealdb_crypto::Result<KeyState> {
        let r = self.inner.check();
        self.report("check", None, &r);
        r
    }
    fn generate_data_key(
        &self,
        context: &EncryptionContext,
    ) -> sealdb_crypto::Result<(SecretKey, Vec<u8>)> {
        let r = self.inner.generate_data_key(context);
        self.report("generate-data-key", Some(context.database_id), &r);
        r
    }
}

/// Why the database currently refuses service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyBlock {
    pub provider: String,
    pub key_id: String,
    pub state: KeyState,
    pub since: u64,
}

impl KeyBlock {
    pub(crate) fn error(&self) -> Error {
        Error::KeyUnavailable {
            provider: self.provider.clone(),
            key_id: self.key_id.clone(),
            state: self.state.clone(),
            since: Some(self.since),
        }
    }
}
