//! Entry points for the fuzz targets in `fuzz/` into decoders that are otherwise private.
//!
//! Not part of the supported API: hidden from the docs and kept in this one module so that it
//! can be put behind a cargo feature without touching the decoders themselves.

use crate::Result;
use crate::keys::{DatabaseId, SecretKey};
use crate::kms::AuditEntry;
use std::path::Path;
use zeroize::Zeroizing;

/// Decodes an owned key file's bytes as the key file of `database_id`.
pub fn decode_owned_key_file(bytes: &[u8], database_id: DatabaseId) -> Result<SecretKey> {
    crate::owned::decode_key_file(bytes, Path::new("owned.key"), database_id)
}

/// Encodes an owned key file, exactly as [`crate::OwnedKeyProvider::create`] writes it.
pub fn encode_owned_key_file(database_id: DatabaseId, master: &SecretKey) -> Zeroizing<Vec<u8>> {
    crate::owned::encode_key_file(database_id, master)
}

/// Parses the bytes of a local KMS `audit.log` as [`crate::LocalKms::audit`] does.
pub fn parse_audit_log(bytes: &[u8]) -> Vec<AuditEntry> {
    crate::kms::parse_audit_log(bytes, None)
}
