//! Data keys and per-file keys.
//!
//! A [`Keyring`] holds the unwrapped data-key versions of one database. Each sealed file gets
//! its own key, derived with HKDF-SHA256 from a data key, salted with the file's random id and
//! labelled with the artifact kind and database id; file keys are never stored.

use crate::keys::{DatabaseId, FileId, SecretKey};
use crate::sealed::{ArtifactKind, CipherId};
use crate::{Error, Result};
use chacha20poly1305::ChaCha20Poly1305;
use chacha20poly1305::aead::KeyInit;
use hkdf::Hkdf;
use sha2::Sha256;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// The unwrapped data-key versions of one database, and which version new files use.
#[derive(Clone)]
pub struct Keyring {
    database_id: DatabaseId,
    versions: BTreeMap<u32, Arc<SecretKey>>,
    current: u32,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("database_id", &self.database_id)
            .field("versions", &self.versions.keys().collect::<Vec<_>>())
            .field("current", &self.current)
            .finish()
    }
}

impl Keyring {
    /// A keyring holding `versions`, with `current` as the version for new files.
    pub fn new(
        database_id: DatabaseId,
        versions: BTreeMap<u32, SecretKey>,
        current: u32,
    ) -> Result<Self> {
        if !versions.contains_key(&current) {
            return Err(Error::UnknownDataKeyVersion(current));
        }
        Ok(Self {
            database_id,
            versions: versions
                .into_iter()
                .map(|(v, k)| (v, Arc::new(k)))
                .collect(),
            current,
        })
    }

    /// A keyring with one fresh random data key (version 1): for tests and plaintext tools.
    pub fn generate(database_id: DatabaseId) -> Result<Self> {
        let mut versions = BTreeMap::new();
        versions.insert(1, SecretKey::generate()?);
        Self::new(database_id, versions, 1)
    }

    /// The database these keys belong to.
    pub fn database_id(&self) -> DatabaseId {
        self.database_id
    }

    /// The data-key version new files are sealed with.
    pub fn current_version(&self) -> u32 {
        self.current
    }

    /// Every version held, ascending.
    pub fn versions(&self) -> Vec<u32> {
        self.versions.keys().copied().collect()
    }

    /// The key of `version`.
    pub fn data_key(&self, version: u32) -> Result<&SecretKey> {
        self.versions
            .get(&version)
            .map(|k| k.as_ref())
            .ok_or(Error::UnknownDataKeyVersion(version))
    }

    /// Adds a version and makes it current.
    pub fn add_version(&mut self, version: u32, key: SecretKey) {
        self.versions.insert(version, Arc::new(key));
        self.current = version;
    }

    /// Removes a version that is not current.
    pub fn remove_version(&mut self, version: u32) -> Result<()> {
        if version == self.current {
            return Err(Error::InvalidArgument(
                "cannot drop the current data-key version".into(),
            ));
        }
        self.versions
            .remove(&version)
            .map(|_| ())
            .ok_or(Error::UnknownDataKeyVersion(version))
    }

    /// The cipher for one file: derives its key from data-key `version` (for the ChaCha20
    /// cipher; the `none` cipher needs no key but still requires a known version, so a file
    /// naming a dropped version is refused the same way in both modes).
    pub fn file_cipher(
        &self,
        cipher: CipherId,
        version: u32,
        file_id: &FileId,
        kind: ArtifactKind,
    ) -> Result<FileCipher> {
        let dek = self.data_key(version)?;
        match cipher {
            CipherId::None => Ok(FileCipher::None),
            CipherId::ChaCha20Poly1305 => {
                let key = derive_file_key(dek, &self.database_id, file_id, kind)?;
                Ok(FileCipher::ChaCha(Box::new(ChaCha20Poly1305::new(
                    &(*key.expose()).into(),
                ))))
            }
        }
    }
}

/// HKDF-SHA256(ikm = data key, salt = file id, info = label ‖ kind ‖ database id).
fn derive_file_key(
    dek: &SecretKey,
    database_id: &DatabaseId,
    file_id: &FileId,
    kind: ArtifactKind,
) -> Result<SecretKey> {
    let hk = Hkdf::<Sha256>::new(Some(&file_id.0), dek.expose());
    let mut info = Vec::with_capacity(40);
    info.extend_from_slice(b"sealdb file key v1\0");
    info.push(kind as u8);
    info.extend_from_slice(&database_id.0);
    let mut okm = [0u8; crate::keys::KEY_LEN];
    hk.expand(&info, &mut okm)
        .map_err(|_| Error::InvalidArgument("hkdf output length".into()))?;
    let key = SecretKey::from_bytes(okm);
    zeroize::Zeroize::zeroize(&mut okm);
    Ok(key)
}

/// The block cipher of one open file: ChaCha20-Poly1305 under the file's key, or the `none`
/// cipher (crc32 in place of the tag) for plaintext baselines.
pub enum FileCipher {
    /// Authenticated encryption under the derived file key (the key schedule zeroizes on drop).
    ChaCha(Box<ChaCha20Poly1305>),
    /// No encryption; a crc32 detects accidental corruption only.
    None,
}

impl fmt::Debug for FileCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ChaCha(_) => f.write_str("FileCipher::ChaCha20Poly1305(<redacted>)"),
            Self::None => f.write_str("FileCipher::None"),
        }
    }
}
