//! Data keys and per-file keys.
//!
//! A [`Keyring`] holds the unwrapped data-key versions of one database. Each sealed file gets
//! its own key, derived with HKDF-SHA256 from a data key, salted with the file's random id and
//! labelled with the artifact kind and database id; file keys are never stored.
//!
//! A file key becomes a [`FileCipher`]: ChaCha20-Poly1305 through one of two byte-identical
//! implementations ([`SealBackend`]), AES-256-GCM (through ring), or the `none` baseline.

use crate::keys::{DatabaseId, FileId, SecretKey};
use crate::kinds::{ArtifactKind, CipherId};
use crate::{Error, Result};
use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Nonce, Tag};
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
    backend: SealBackend,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("database_id", &self.database_id)
            .field("versions", &self.versions.keys().collect::<Vec<_>>())
            .field("current", &self.current)
            .field("backend", &self.backend)
            .finish()
    }
}

impl Keyring {
    /// A keyring holding `versions`, with `current` as the version for new files. Its
    /// ChaCha20-Poly1305 backend is [`SealBackend::from_env`] (an unknown
    /// `SEALDB_SEAL_BACKEND` value is an error rather than a silent fallback).
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
            backend: SealBackend::from_env()?,
        })
    }

    /// The implementation ChaCha20-Poly1305 files opened or created through this keyring use.
    pub fn seal_backend(&self) -> SealBackend {
        self.backend
    }

    /// Chooses the ChaCha20-Poly1305 implementation for files opened or created from now on
    /// (both write the same bytes, so files sealed by either open with the other).
    pub fn set_seal_backend(&mut self, backend: SealBackend) {
        self.backend = backend;
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
            return Err(Error::invalid_argument(
                "cannot drop the current data-key version".into(),
            ));
        }
        self.versions
            .remove(&version)
            .map(|_| ())
            .ok_or(Error::UnknownDataKeyVersion(version))
    }

    /// The cipher for one file: derives its key from data-key `version` (for the AEAD
    /// ciphers; the `none` cipher needs no key but still requires a known version, so a file
    /// naming a dropped version is refused the same way in every mode).
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
            CipherId::ChaCha20Poly1305 | CipherId::Aes256Gcm => {
                let key = derive_file_key(dek, &self.database_id, file_id, kind, cipher)?;
                FileCipher::new(cipher, self.backend, &key)
            }
        }
    }
}

/// HKDF-SHA256(ikm = data key, salt = file id, info = label ‖ kind ‖ database id [‖ cipher]).
/// The cipher byte is appended for every cipher but ChaCha20-Poly1305 (whose files predate
/// cipher agility and keep their keys), so a header relabelled to another cipher makes the
/// reader derive a different key: one key is never used with two algorithms.
fn derive_file_key(
    dek: &SecretKey,
    database_id: &DatabaseId,
    file_id: &FileId,
    kind: ArtifactKind,
    cipher: CipherId,
) -> Result<SecretKey> {
    let hk = Hkdf::<Sha256>::new(Some(&file_id.0), dek.expose());
    let mut info = Vec::with_capacity(40);
    info.extend_from_slice(b"sealdb file key v1\0");
    info.push(kind as u8);
    info.extend_from_slice(&database_id.0);
    if cipher != CipherId::ChaCha20Poly1305 {
        info.push(cipher as u8);
    }
    let mut okm = [0u8; crate::keys::KEY_LEN];
    hk.expand(&info, &mut okm)
        .map_err(|_| Error::invalid_argument("hkdf output length".into()))?;
    let key = SecretKey::from_bytes(okm);
    zeroize::Zeroize::zeroize(&mut okm);
    Ok(key)
}

/// Which implementation seals and opens ChaCha20-Poly1305 blocks. Both compute RFC 8439
/// ChaCha20-Poly1305 with the same 12-byte nonce and 16-byte tag, so they write the same bytes
/// and open each other's files (`tests/backends.rs` checks this byte for byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SealBackend {
    /// The RustCrypto `chacha20poly1305` crate: pure Rust, its key schedule zeroized on drop.
    /// The reference implementation, and the only one when the `ring` feature is off.
    Reference,
    /// ring's assembly implementation (feature `ring`): several times cheaper per small block
    /// (no per-call SIMD set-up), the default when built in.
    Fast,
}

impl SealBackend {
    /// The environment variable read by [`from_env`](Self::from_env).
    pub const ENV: &'static str = "SEALDB_SEAL_BACKEND";

    /// The build's default: [`Fast`](Self::Fast) with the `ring` feature, else
    /// [`Reference`](Self::Reference).
    pub fn build_default() -> Self {
        if cfg!(feature = "ring") {
            Self::Fast
        } else {
            Self::Reference
        }
    }

    /// `SEALDB_SEAL_BACKEND` (`reference` or `fast`), or the build default when it is unset
    /// or empty; so the two can be compared on one binary without rebuilding.
    pub fn from_env() -> Result<Self> {
        match std::env::var(Self::ENV) {
            Ok(v) if !v.is_empty() => Self::parse(&v).ok_or_else(|| {
                Error::invalid_argument(format!(
                    "{}={v:?}: expected `reference` or `fast`",
                    Self::ENV
                ))
            }),
            Ok(_) | Err(std::env::VarError::NotPresent) => Ok(Self::build_default()),
            Err(std::env::VarError::NotUnicode(_)) => Err(Error::invalid_argument(format!(
                "{} is not valid UTF-8",
                Self::ENV
            ))),
        }
    }

    /// Parses `reference` or `fast`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "reference" => Some(Self::Reference),
            "fast" => Some(Self::Fast),
            _ => None,
        }
    }

    /// The name used in the environment variable and in messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Reference => "reference",
            Self::Fast => "fast",
        }
    }
}

/// The block cipher of one open file: an AEAD under the file's key, or the `none` cipher
/// (crc32 in place of the tag, applied by the framing) for plaintext baselines.
pub enum FileCipher {
    /// ChaCha20-Poly1305 through the reference crate (the key schedule zeroizes on drop).
    ChaCha(Box<ChaCha20Poly1305>),
    /// ChaCha20-Poly1305 or AES-256-GCM through ring.
    #[cfg(feature = "ring")]
    Ring(Box<RingKey>),
    /// No encryption; a crc32 detects accidental corruption only.
    None,
}

/// A ring AEAD key (ChaCha20-Poly1305 or AES-256-GCM). Opaque so that ring stays out of this
/// crate's public API. ring does not zeroize its key schedules on drop; the derived file key
/// it was built from does (see `docs/crypto.md`, "Cipher backend selection").
#[cfg(feature = "ring")]
pub struct RingKey(ring::aead::LessSafeKey);

pub use crate::kinds::{NONCE_LEN, TAG_LEN};

impl FileCipher {
    /// The cipher `cipher` under `key`; `backend` picks the ChaCha20-Poly1305 implementation
    /// (AES-256-GCM always goes through ring). A cipher or backend this build lacks (the
    /// `ring` feature off) is [`Error::CipherUnavailable`].
    pub fn new(cipher: CipherId, backend: SealBackend, key: &SecretKey) -> Result<Self> {
        match (cipher, backend) {
            (CipherId::None, _) => Ok(Self::None),
            (CipherId::ChaCha20Poly1305, SealBackend::Reference) => Ok(Self::ChaCha(Box::new(
                ChaCha20Poly1305::new(&(*key.expose()).into()),
            ))),
            #[cfg(feature = "ring")]
            (CipherId::ChaCha20Poly1305, SealBackend::Fast) => {
                RingKey::new(&ring::aead::CHACHA20_POLY1305, key).map(|k| Self::Ring(Box::new(k)))
            }
            #[cfg(feature = "ring")]
            (CipherId::Aes256Gcm, _) => {
                RingKey::new(&ring::aead::AES_256_GCM, key).map(|k| Self::Ring(Box::new(k)))
            }
            #[cfg(not(feature = "ring"))]
            (CipherId::ChaCha20Poly1305, SealBackend::Fast) | (CipherId::Aes256Gcm, _) => {
                Err(Error::CipherUnavailable {
                    what: match cipher {
                        CipherId::Aes256Gcm => "aes256gcm",
                        _ => "the fast chacha20poly1305 backend",
                    },
                })
            }
        }
    }

    /// Encrypts `buf` in place under `nonce` and `ad`; returns the tag. Refused for the
    /// `none` cipher, which has no key (the framing computes its crc32 itself).
    pub fn seal_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        ad: &[u8],
        buf: &mut [u8],
    ) -> Result<[u8; TAG_LEN]> {
        let too_long = || Error::invalid_argument("block too long for the cipher".into());
        match self {
            Self::ChaCha(aead) => {
                let tag = aead
                    .encrypt_inout_detached(&Nonce::from(*nonce), ad, buf.into())
                    .map_err(|_| too_long())?;
                Ok(tag.into())
            }
            #[cfg(feature = "ring")]
            Self::Ring(k) => {
                let tag =
                    k.0.seal_in_place_separate_tag(
                        ring::aead::Nonce::assume_unique_for_key(*nonce),
                        ring::aead::Aad::from(ad),
                        buf,
                    )
                    .map_err(|_| too_long())?;
                tag.as_ref().try_into().map_err(|_| too_long())
            }
            Self::None => Err(Error::invalid_argument(
                "the none cipher has no AEAD to seal with".into(),
            )),
        }
    }

    /// Verifies `tag` over `ad` and the ciphertext in `buf`, then decrypts `buf` in place.
    /// On failure `buf` must be discarded (ring may have decrypted part of it) and the error
    /// is [`IntegrityReason::AuthenticationFailed`](crate::IntegrityReason) under the label
    /// `"aead"`; callers re-label it with their file and block.
    pub fn open_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        ad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<()> {
        let failed =
            || Error::integrity("aead", None, crate::IntegrityReason::AuthenticationFailed);
        match self {
            Self::ChaCha(aead) => aead
                .decrypt_inout_detached(&Nonce::from(*nonce), ad, buf.into(), &Tag::from(*tag))
                .map_err(|_| failed()),
            #[cfg(feature = "ring")]
            Self::Ring(k) => {
                let tag = ring::aead::Tag::try_from(&tag[..]).map_err(|_| failed())?;
                k.0.open_in_place_separate_tag(
                    ring::aead::Nonce::assume_unique_for_key(*nonce),
                    ring::aead::Aad::from(ad),
                    tag,
                    buf,
                    0..,
                )
                .map(|_| ())
                .map_err(|_| failed())
            }
            Self::None => Err(failed()),
        }
    }
}

#[cfg(feature = "ring")]
impl RingKey {
    fn new(alg: &'static ring::aead::Algorithm, key: &SecretKey) -> Result<Self> {
        let unbound = ring::aead::UnboundKey::new(alg, key.expose())
            .map_err(|_| Error::invalid_argument("AEAD key length".into()))?;
        Ok(Self(ring::aead::LessSafeKey::new(unbound)))
    }
}

impl fmt::Debug for FileCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ChaCha(_) => f.write_str("FileCipher::ChaCha20Poly1305(reference, <redacted>)"),
            #[cfg(feature = "ring")]
            Self::Ring(k) => {
                write!(f, "FileCipher::Ring({:?}, <redacted>)", k.0.algorithm())
            }
            Self::None => f.write_str("FileCipher::None"),
        }
    }
}

#[cfg(all(test, not(feature = "ring")))]
mod tests {
    use super::*;

    /// Without ring, AES-256-GCM and the fast backend are typed errors, not panics or a
    /// silent fallback to another cipher.
    #[test]
    fn ciphers_missing_from_the_build_are_typed_errors() {
        let key = SecretKey::from_bytes([1; crate::keys::KEY_LEN]);
        for (cipher, backend) in [
            (CipherId::Aes256Gcm, SealBackend::Reference),
            (CipherId::ChaCha20Poly1305, SealBackend::Fast),
        ] {
            assert!(matches!(
                FileCipher::new(cipher, backend, &key),
                Err(Error::CipherUnavailable { .. })
            ));
        }
        assert_eq!(SealBackend::build_default(), SealBackend::Reference);
    }
}
