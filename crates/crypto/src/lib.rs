//! sealdb-crypto: the sealed-file framing and the key hierarchy.
//!
//! This crate owns every byte sealdb writes durably *about* its data: how a file is sealed
//! block by block ([`SealedWriter`], [`SealedReader`]), how per-file keys are derived from
//! versioned data keys ([`Keyring`]), how data keys are wrapped under a master key held by a
//! [`KeyProvider`] (the owned key, the local KMS), and the database's KEYS file
//! ([`KeysFile`]).
//!
//! It must never write key material unwrapped, never format key bytes, and never return bytes
//! that failed authentication. See `docs/crypto.md` for the threat model and the nonce
//! argument, and `docs/format.md` for the byte layouts.

pub mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzz_entry;
pub mod hex;
pub mod keyring;
pub mod keys;
pub mod keysfile;
mod kinds;
pub mod provider;
pub mod sealed;
// -- key providers (owned keystore, local KMS) --
#[cfg(feature = "aws-kms")]
pub mod aws;
pub mod kms;
pub mod owned;
mod private_file;

#[cfg(feature = "aws-kms")]
pub use aws::AwsKmsProvider;
pub use error::{BoxError, Error, IntegrityReason, KeyState, Result, place};
pub use keyring::{FileCipher, Keyring, SealBackend};
pub use keys::{DatabaseId, FileId, KEY_LEN, SecretKey};
pub use keysfile::KeysFile;
pub use kms::{AuditEntry, KmsKeyInfo, LocalKms, LocalKmsProvider};
pub use owned::{OwnedKeyProvider, default_keystore_dir};
pub use provider::{EncryptionContext, KeyDescriptor, KeyEvent, KeyProvider, SharedProvider};
pub use sealed::{
    ArtifactKind, Block, BlockHandle, BlockIter, BlockSealer, CipherId, Expected, FileHeader,
    SealedReader, SealedWriter,
};

/// Current seconds since the Unix epoch (0 if the clock is before 1970).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
