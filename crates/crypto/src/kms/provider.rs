//! [`LocalKmsProvider`]: the [`KeyProvider`] for one named key of a [`LocalKms`].

use super::state::{PROVIDER, missing_material, usable_key};
use super::store::LocalKms;
use crate::keys::SecretKey;
use crate::provider::{
    EncryptionContext, KeyDescriptor, KeyProvider, local_unwrap, local_wrap,
    local_wrap_master_version,
};
use crate::{Error, KeyState, Result};

/// A [`KeyProvider`] for one named key of a [`LocalKms`]. Cheap; whether the key exists and is
/// usable is decided at each use, under the KMS lock.
#[derive(Debug, Clone)]
pub struct LocalKmsProvider {
    kms: LocalKms,
    name: String,
}

impl LocalKms {
    /// A provider for key `name`. Does not check that the key exists: that is decided, and
    /// audited, at each use.
    pub fn provider(&self, name: &str) -> LocalKmsProvider {
        LocalKmsProvider {
            kms: self.clone(),
            name: name.to_owned(),
        }
    }
}

impl LocalKmsProvider {
    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The KMS holding the key.
    pub fn kms(&self) -> &LocalKms {
        &self.kms
    }
}

impl KeyProvider for LocalKmsProvider {
    fn descriptor(&self) -> KeyDescriptor {
        KeyDescriptor::new(PROVIDER, self.name.clone())
    }

    /// Wraps under the newest version of the key, which must be enabled.
    fn wrap(&self, data_key: &SecretKey, context: &EncryptionContext) -> Result<Vec<u8>> {
        let desc = self.descriptor();
        self.kms.with_lock(|s| {
            let outcome = usable_key(&s.state, &self.name).and_then(|record| {
                let newest = record
                    .materials
                    .last()
                    .ok_or_else(|| missing_material(&self.name))?;
                local_wrap(newest, record.version_count, &desc, data_key, context)
            });
            s.finish(
                &self.name,
                "wrap",
                Some(context.database_id),
                false,
                outcome,
            )
        })
    }

    /// Unwraps with the version the blob names. The key must be enabled; a blob naming a
    /// version the key does not have, or failing authentication, is [`Error::WrongMasterKey`].
    fn unwrap(&self, wrapped: &[u8], context: &EncryptionContext) -> Result<SecretKey> {
        let desc = self.descriptor();
        self.kms.with_lock(|s| {
            let outcome = usable_key(&s.state, &self.name).and_then(|record| {
                let wrong = || Error::WrongMasterKey {
                    provider: PROVIDER.into(),
                    key_id: self.name.clone(),
                };
                let version = local_wrap_master_version(wrapped).ok_or_else(wrong)?;
                let material = usize::try_from(version)
                    .ok()
                    .and_then(|v| v.checked_sub(1))
                    .and_then(|index| record.materials.get(index))
                    .ok_or_else(wrong)?;
                local_unwrap(material, &desc, wrapped, context)
            });
            s.finish(
                &self.name,
                "unwrap",
                Some(context.database_id),
                false,
                outcome,
            )
        })
    }

    fn check(&self) -> Result<KeyState> {
        self.kms.with_lock(|s| {
            let outcome = usable_key(&s.state, &self.name).map(|_| KeyState::Enabled);
            s.finish(&self.name, "check", None, false, outcome)
        })
    }
}
