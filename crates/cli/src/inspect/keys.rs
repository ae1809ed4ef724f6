//! The keys `inspect --db` opens blocks with: the database's keyring, loaded read-only from
//! its KEYS file, and the cipher each of its files may be sealed with.

use crate::commands::{Create, Ctx};
use crate::error::{CliError, Result};
use sealdb_crypto::{
    CipherId, KeyDescriptor, KeyState, Keyring, KeysFile, LocalKms, OwnedKeyProvider,
    SharedProvider,
};
use sealdb_vfs::{FileSystem, RealFs};
use std::sync::Arc;

/// The cipher a file of this database may be sealed with: the database's data cipher, or
/// ChaCha20-Poly1305 (KEYS, CURRENT, STATS and CONSUMERS always are). Never taken from the
/// header alone: a header claiming `none` (crc32 only) in an encrypted database is a forgery
/// anyone can write, and must not be shown as authentic.
pub(super) fn accepted_cipher(claimed: CipherId, data: CipherId) -> CipherId {
    if claimed == CipherId::ChaCha20Poly1305 {
        claimed
    } else {
        data
    }
}

/// Loads the data keys of the database named by `--db` without opening it (no lock, no
/// recovery, nothing written), asking the provider its KEYS file names: the database's
/// keyring and data cipher, from its KEYS file.
pub(super) fn load_keyring(ctx: &Ctx) -> Result<(Keyring, CipherId)> {
    let fs = RealFs;
    let dir = ctx.db_dir();
    if !fs.exists(&dir.join(sealdb_crypto::keysfile::KEYS_FILE_NAME)) {
        return Err(CliError::other(format!(
            "no database at {} (no KEYS file) to take keys from",
            dir.display()
        )));
    }
    let opts = ctx.options(Create::Never)?;
    let summary = KeysFile::peek(&fs, &dir)?;
    let (keys, _) = KeysFile::open(&fs, &dir, |desc| {
        resolve_provider(desc, summary.database_id, &opts)
    })?;
    Ok((keys.keyring().clone(), keys.data_cipher()))
}

/// The provider a KEYS file names, from the global options (never creating a key). Mirrors
/// the engine's own resolution, which it does not expose.
fn resolve_provider(
    desc: &KeyDescriptor,
    database_id: sealdb_crypto::DatabaseId,
    opts: &sealdb::Options,
) -> sealdb_crypto::Result<SharedProvider> {
    // An AWS KMS key: the provider built from the KEYS file (builds with `aws-kms`).
    if let Some(p) = opts.providers.iter().find(|p| p.descriptor() == *desc) {
        return Ok(p.clone());
    }
    match desc.provider.as_str() {
        "owned" => Ok(Arc::new(OwnedKeyProvider::open(
            &opts.resolved_keystore_dir(),
            database_id,
        )?)),
        "local-kms" => {
            let kms = LocalKms::open(&opts.resolved_kms_dir())?;
            Ok(Arc::new(kms.provider(&desc.key_id)))
        }
        _ => Err(sealdb_crypto::Error::KeyUnavailable {
            provider: desc.provider.clone(),
            key_id: desc.key_id.clone(),
            state: KeyState::Unreachable(
                "this program reaches owned and local-kms keys, and AWS KMS keys only when \
                 built with the aws-kms feature"
                    .into(),
            ),
        }),
    }
}
