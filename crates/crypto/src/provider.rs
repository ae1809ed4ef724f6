//! Master keys and the providers that hold them.
//!
//! A [`KeyProvider`] wraps and unwraps data keys under a master key (key-encryption key) that
//! never enters the data directory. sealdb ships the owned key ([`crate::OwnedKeyProvider`],
//! the zero-configuration default) and a local file-backed KMS ([`crate::LocalKms`]); the AWS
//! KMS provider lives behind a cargo feature of the engine.

use crate::keys::{DatabaseId, SecretKey};
use crate::{Error, KeyState, Result};
use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use std::fmt;
use std::sync::Arc;

/// Names a master key: which provider holds it and its id there. Stored (in clear, as part of
/// the KEYS file's header) so that opening knows whom to ask; it is an identifier, not a secret.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyDescriptor {
    /// Provider kind: `owned`, `local-kms` or `aws-kms`.
    pub provider: String,
    /// The key's id within the provider (a local-KMS key name, an AWS key id or ARN, or
    /// `owned/<database id>`).
    pub key_id: String,
}

impl KeyDescriptor {
    /// A descriptor from its two parts.
    pub fn new(provider: impl Into<String>, key_id: impl Into<String>) -> Self {
        Self {
            provider: provider.into(),
            key_id: key_id.into(),
        }
    }
}

impl fmt::Display for KeyDescriptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.provider, self.key_id)
    }
}

/// What a wrap is bound to: unwrapping succeeds only with the same context, so wrapped data
/// keys cannot be moved to another database (the KMS "encryption context").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncryptionContext {
    /// The database whose data keys are wrapped.
    pub database_id: DatabaseId,
}

/// One use of a master key, reported to audit hooks. Never carries key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyEvent {
    /// The master key used.
    pub key: KeyDescriptor,
    /// What was attempted: `wrap`, `unwrap`, `check`.
    pub operation: &'static str,
    /// The database on whose behalf, if any.
    pub database_id: Option<DatabaseId>,
    /// `Ok(())` or the reason it was refused.
    pub outcome: Result<(), String>,
}

/// Holds a master key and wraps/unwraps data keys with it.
///
/// Implementations must bind the [`EncryptionContext`] into every wrap, must never return a
/// data key whose unwrap did not authenticate, and must report unusable keys as
/// [`Error::KeyUnavailable`] with their [`KeyState`] and a wrong key as
/// [`Error::WrongMasterKey`].
pub trait KeyProvider: Send + Sync + fmt::Debug {
    /// Which key this is.
    fn descriptor(&self) -> KeyDescriptor;

    /// Encrypts `data_key` under the master key, bound to `context`.
    fn wrap(&self, data_key: &SecretKey, context: &EncryptionContext) -> Result<Vec<u8>>;

    /// Decrypts a data key wrapped by [`wrap`](Self::wrap) with the same context.
    fn unwrap(&self, wrapped: &[u8], context: &EncryptionContext) -> Result<SecretKey>;

    /// Asks the provider whether the key is still usable: `Ok(KeyState::Enabled)` or
    /// `Err(Error::KeyUnavailable { .. })`.
    fn check(&self) -> Result<KeyState>;

    /// A fresh data key and its wrapped form. KMS-backed providers may generate it remotely
    /// (GenerateDataKey); the default draws it locally and wraps it.
    fn generate_data_key(&self, context: &EncryptionContext) -> Result<(SecretKey, Vec<u8>)> {
        let key = SecretKey::generate()?;
        let wrapped = self.wrap(&key, context)?;
        Ok((key, wrapped))
    }
}

/// A provider shared between the engine's threads.
pub type SharedProvider = Arc<dyn KeyProvider>;

/// Format tag of locally wrapped keys (owned key and local KMS).
const LOCAL_WRAP_VERSION: u8 = 1;
const XNONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// Length of a locally wrapped data key: version, master-key version, nonce, key, tag.
pub const LOCAL_WRAPPED_LEN: usize = 1 + 4 + XNONCE_LEN + crate::keys::KEY_LEN + TAG_LEN;

fn local_wrap_ad(desc: &KeyDescriptor, master_version: u32, ctx: &EncryptionContext) -> Vec<u8> {
    let mut ad = Vec::with_capacity(64 + desc.provider.len() + desc.key_id.len());
    ad.extend_from_slice(b"sealdb-wrap-v1\0");
    ad.extend_from_slice(desc.provider.as_bytes());
    ad.push(0);
    ad.extend_from_slice(desc.key_id.as_bytes());
    ad.push(0);
    ad.extend_from_slice(&master_version.to_le_bytes());
    ad.extend_from_slice(&ctx.database_id.0);
    ad
}

/// Wraps `data_key` under a locally held master key with XChaCha20-Poly1305 (random 192-bit
/// nonce, so random nonces never collide in practice). Used by the owned key and the local KMS.
pub fn local_wrap(
    master: &SecretKey,
    master_version: u32,
    desc: &KeyDescriptor,
    data_key: &SecretKey,
    ctx: &EncryptionContext,
) -> Result<Vec<u8>> {
    let cipher = XChaCha20Poly1305::new(&(*master.expose()).into());
    let mut nonce = [0u8; XNONCE_LEN];
    crate::keys::fill_random(&mut nonce)?;
    let mut out = Vec::with_capacity(LOCAL_WRAPPED_LEN);
    out.push(LOCAL_WRAP_VERSION);
    out.extend_from_slice(&master_version.to_le_bytes());
    out.extend_from_slice(&nonce);
    let body_start = out.len();
    out.extend_from_slice(data_key.expose());
    let ad = local_wrap_ad(desc, master_version, ctx);
    let body = out
        .get_mut(body_start..)
        .ok_or_else(|| Error::invalid_argument("wrap buffer".into()))?;
    let tag = cipher
        .encrypt_inout_detached(&XNonce::from(nonce), &ad, body.into())
        .map_err(|_| Error::invalid_argument("wrap failed".into()))?;
    out.extend_from_slice(tag.as_slice());
    Ok(out)
}

/// The master-key version a locally wrapped key names (to pick the right version to unwrap
/// with), or `None` if `wrapped` is not a well-formed local wrap.
pub fn local_wrap_master_version(wrapped: &[u8]) -> Option<u32> {
    if wrapped.len() != LOCAL_WRAPPED_LEN || wrapped.first() != Some(&LOCAL_WRAP_VERSION) {
        return None;
    }
    let v: [u8; 4] = wrapped.get(1..5)?.try_into().ok()?;
    Some(u32::from_le_bytes(v))
}

/// Unwraps a key made by [`local_wrap`]. Authentication failure is
/// [`Error::WrongMasterKey`]: the master key, the descriptor or the context differ.
pub fn local_unwrap(
    master: &SecretKey,
    desc: &KeyDescriptor,
    wrapped: &[u8],
    ctx: &EncryptionContext,
) -> Result<SecretKey> {
    let wrong = || Error::WrongMasterKey {
        provider: desc.provider.clone(),
        key_id: desc.key_id.clone(),
    };
    let master_version = local_wrap_master_version(wrapped).ok_or_else(wrong)?;
    let nonce: [u8; XNONCE_LEN] = wrapped
        .get(5..5 + XNONCE_LEN)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(wrong)?;
    let body_end = 5 + XNONCE_LEN + crate::keys::KEY_LEN;
    let mut body: [u8; crate::keys::KEY_LEN] = wrapped
        .get(5 + XNONCE_LEN..body_end)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(wrong)?;
    let tag: [u8; TAG_LEN] = wrapped
        .get(body_end..)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(wrong)?;
    let cipher = XChaCha20Poly1305::new(&(*master.expose()).into());
    let ad = local_wrap_ad(desc, master_version, ctx);
    let result = cipher.decrypt_inout_detached(
        &XNonce::from(nonce),
        &ad,
        body.as_mut_slice().into(),
        &tag.into(),
    );
    let key = match result {
        Ok(()) => Ok(SecretKey::from_bytes(body)),
        Err(_) => Err(wrong()),
    };
    zeroize::Zeroize::zeroize(&mut body);
    key
}
