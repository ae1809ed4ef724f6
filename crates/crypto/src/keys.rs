//! Key material and identifiers: master-key-independent types shared by every module.
//!
//! Key bytes live only in [`SecretKey`], which zeroizes on drop and redacts itself in
//! `Debug`; nothing in this crate formats key bytes anywhere.

use crate::{Error, Result};
use std::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Length of every symmetric key sealdb uses (ChaCha20-Poly1305, XChaCha20-Poly1305).
pub const KEY_LEN: usize = 32;

/// 256 bits of key material, wiped from memory when dropped and never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct SecretKey([u8; KEY_LEN]);

impl SecretKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Result<Self> {
        let mut bytes = [0u8; KEY_LEN];
        fill_random(&mut bytes)?;
        let key = Self(bytes);
        bytes.zeroize();
        Ok(key)
    }

    /// Takes ownership of `bytes` as key material (the caller's copy should be zeroized).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// Copies key material from a slice of exactly [`KEY_LEN`] bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        let arr: [u8; KEY_LEN] = bytes
            .try_into()
            .map_err(|_| Error::invalid_argument(format!("key must be {KEY_LEN} bytes")))?;
        Ok(Self(arr))
    }

    /// The raw key bytes, for handing to a cipher. Never log or persist them unwrapped.
    pub fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

impl fmt::Display for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Fills `buf` from the operating system's random source.
pub fn fill_random(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf).map_err(|e| Error::io("getrandom", std::io::Error::other(e.to_string())))
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; 16]);

        impl $name {
            /// A fresh random id (128 bits: collisions are not a practical concern).
            pub fn generate() -> Result<Self> {
                let mut b = [0u8; 16];
                fill_random(&mut b)?;
                Ok(Self(b))
            }

            /// Lower-case hexadecimal form (32 characters).
            pub fn to_hex(&self) -> String {
                crate::hex::encode(&self.0)
            }

            /// Parses the 32-character hexadecimal form.
            pub fn from_hex(s: &str) -> Result<Self> {
                let v = crate::hex::decode(s)
                    .ok_or_else(|| Error::invalid_argument(format!("bad hex id {s:?}")))?;
                let arr: [u8; 16] = v
                    .try_into()
                    .map_err(|_| Error::invalid_argument(format!("id {s:?} is not 16 bytes")))?;
                Ok(Self(arr))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.to_hex())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }
    };
}

id_type!(
    /// Identifies a database for its whole life; bound into every block it seals, so files
    /// cannot be moved between databases.
    DatabaseId
);
id_type!(
    /// Identifies one sealed file; never reused, which is what makes block nonces unique.
    FileId
);
