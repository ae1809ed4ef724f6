//! The database-wide format version recorded in the manifest.

use crate::{Error, Result};
use sealdb_crypto::CipherId;

/// The database-wide on-disk format version (like pebble's `FormatMajorVersion`): one number
/// in the manifest that says which format features the database may use, so that a build
/// refuses a database it cannot read instead of misreading it.
///
/// A new database is created at [`FormatVersion::NEWEST`] (or at
/// [`Options::format_version`](crate::Options::format_version)); an existing one keeps its
/// version until [`Db::ratchet_format`](crate::Db::ratchet_format) (`sealdb upgrade`) raises
/// it. A version never goes down. `docs/format.md` ("Format versions") lists what each
/// version means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FormatVersion(u32);

impl FormatVersion {
    /// The format before versions were recorded: a manifest without a format-version edit.
    /// Builds from before the ratchet (commit 60c28ad and earlier) read and write it; only
    /// ChaCha20-Poly1305 (cipher 1) and `none` (cipher 0) files.
    pub const V1: Self = Self(1);
    /// The manifest records the format version (edit tag 13, the first edit of every
    /// snapshot), and AES-256-GCM files (cipher 2) may exist. Builds that only know version 1
    /// report such a manifest as damaged (`unknown edit tag 13`), never misread it.
    pub const V2: Self = Self(2);
    /// The oldest version this build opens.
    pub const OLDEST: Self = Self::V1;
    /// The newest version this build knows: the default for a new database.
    pub const NEWEST: Self = Self::V2;

    /// The version numbered `n`, if this build knows it (`OLDEST..=NEWEST`).
    pub fn new(n: u32) -> Option<Self> {
        (Self::OLDEST.0..=Self::NEWEST.0)
            .contains(&n)
            .then_some(Self(n))
    }

    /// Its number, as the manifest records it.
    pub fn number(self) -> u32 {
        self.0
    }

    /// The lowest version whose readers know `cipher`: a database must be at least at it.
    pub fn required_for(cipher: CipherId) -> Self {
        match cipher {
            CipherId::None | CipherId::ChaCha20Poly1305 => Self::V1,
            // Version 1 builds refuse the cipher byte.
            CipherId::Aes256Gcm => Self::V2,
        }
    }
}

impl std::fmt::Display for FormatVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::str::FromStr for FormatVersion {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let n: u32 = s.trim().parse().map_err(|_| {
            Error::invalid_argument(format!("format version {s:?} is not a number"))
        })?;
        Self::new(n).ok_or_else(|| {
            Error::invalid_argument(format!(
                "format version {n} is unknown to this build (it knows {} to {})",
                Self::OLDEST,
                Self::NEWEST
            ))
        })
    }
}

/// Refuses a format version that cannot hold a database sealed with `cipher`.
pub(crate) fn check_cipher(version: FormatVersion, cipher: CipherId) -> Result<()> {
    let needed = FormatVersion::required_for(cipher);
    if version < needed {
        return Err(Error::invalid_argument(format!(
            "cipher {cipher:?} needs format version {needed} or newer, not {version}"
        )));
    }
    Ok(())
}
