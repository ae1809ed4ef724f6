//! The database-wide format version (see [`FormatVersion`]): reading it and the explicit
//! upgrade step. The check at open is in the manifest's decoder, so that a newer manifest is
//! refused before anything past its version edit is interpreted.

use super::Db;
use crate::manifest::FormatVersion;
use crate::{Error, Result};

impl Db {
    /// The format version the database is at (its manifest's, or version 1 when the
    /// manifest records none).
    pub fn format_version(&self) -> FormatVersion {
        self.inner.versions.manifest().format_version()
    }

    /// Raises the database's format version to `to`, durably, before returning (pebble's
    /// `RatchetFormatMajorVersion`). Returns whether it changed: asking for the current
    /// version does nothing.
    ///
    /// This is the only upgrade step: opening never raises a version by itself. Once raised,
    /// builds that only know older versions can no longer open the database, and the version
    /// never goes down (asking for an older one is an `InvalidArgument`), so raise it only
    /// when every build that must read the database knows `to`.
    pub fn ratchet_format(&self, to: FormatVersion) -> Result<bool> {
        self.check_writable_pub()?;
        let mut manifest = self.inner.versions.manifest();
        let current = manifest.format_version();
        // Refused requests are answered here: only a failed write may poison the database.
        if to < current {
            return Err(Error::invalid_argument(format!(
                "the database is at format version {current}; a version never goes down \
                 (asked for {to})"
            )));
        }
        if to == current {
            return Ok(false);
        }
        let keyring = self.inner.keyring.read().clone();
        manifest
            .ratchet(to, &keyring)
            .map_err(|e| self.inner.fail(e))
    }
}
