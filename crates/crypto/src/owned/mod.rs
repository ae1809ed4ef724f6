//! The owned master key: sealdb's zero-configuration default.
//!
//! On first open the engine generates a random 256-bit master key for the database and keeps
//! it in a keystore directory *outside* the data directory, so that a copy of the data
//! directory alone reveals nothing. One key file per database:
//! `<keystore>/owned-<database id hex>.key`, mode 0600 in a 0700 directory.
//!
//! Key file format (60 bytes, integers little-endian):
//!
//! | offset | len | field                                              |
//! |-------:|----:|----------------------------------------------------|
//! |      0 |   8 | magic `SDBOWNK1`                                   |
//! |      8 |  16 | database id                                        |
//! |     24 |  32 | master key                                         |
//! |     56 |   4 | crc32 (crc32fast) of bytes 0..56, u32 little-endian |
//!
//! The crc only catches accidental damage (a truncated copy, a flipped bit); the key is not
//! authenticated by anything else here, because whoever can write this file can already
//! replace the key. Deleting the file is crypto-shredding: data wrapped under it is gone.
//!
//! The module is split in `key_file` (the format above, read and written) and `provider`
//! ([`OwnedKeyProvider`] and where the keystore is); the owner-only file helpers it shares
//! with [`crate::kms`] are in `crate::private_file`.

mod key_file;
mod provider;
#[cfg(test)]
mod tests;

#[cfg(feature = "fuzzing")]
pub(crate) use key_file::{decode_key_file, encode_key_file};
pub use provider::{OwnedKeyProvider, default_keystore_dir};
