//! What the crypto crate's integration tests share: an in-memory file system holding `/db`, a
//! resolver over the providers a test has, and writing and reading sealed table files.
// Each test binary uses only some of these.
#![allow(dead_code)]

use sealdb_crypto::{
    ArtifactKind, CipherId, Error, Expected, KeyDescriptor, KeyState, Keyring, SealedReader,
    SealedWriter, SharedProvider,
};
use sealdb_vfs::{CrashFs, FileSystem};
use std::path::{Path, PathBuf};

/// An in-memory file system with an empty `/db` directory, made durable so a crash keeps it.
pub fn db_fs() -> CrashFs {
    let fs = CrashFs::new();
    fs.create_dir_all(Path::new("/db")).expect("mkdir");
    fs.sync_dir(Path::new("/")).expect("sync");
    fs
}

/// Resolves a KEYS file's master-key descriptor to the one of `providers` it names, else
/// [`KeyState::NotFound`], as the engine's resolver does.
pub fn resolver(
    providers: Vec<SharedProvider>,
) -> impl FnOnce(&KeyDescriptor) -> sealdb_crypto::Result<SharedProvider> {
    move |desc| {
        providers
            .into_iter()
            .find(|p| p.descriptor() == *desc)
            .ok_or_else(|| Error::KeyUnavailable {
                provider: desc.provider.clone(),
                key_id: desc.key_id.clone(),
                state: KeyState::NotFound,
            })
    }
}

/// What a reader of this database's table files requires (the cipher too, when given).
pub fn table_expected(keyring: &Keyring, cipher: Option<CipherId>) -> Expected {
    Expected {
        kind: ArtifactKind::Table,
        database_id: keyring.database_id(),
        cipher,
    }
}

/// Writes `blocks` as the table file `/db/<name>` (the last block final when `finalize`) and
/// returns its path.
pub fn write_table<B: AsRef<[u8]>>(
    fs: &CrashFs,
    name: &str,
    keyring: &Keyring,
    cipher: CipherId,
    blocks: &[B],
    finalize: bool,
) -> PathBuf {
    let path = PathBuf::from(format!("/db/{name}"));
    let mut w =
        SealedWriter::create(fs, &path, keyring, ArtifactKind::Table, cipher).expect("create");
    for (i, b) in blocks.iter().enumerate() {
        if finalize && i + 1 == blocks.len() {
            w.finish(b.as_ref()).expect("finish");
        } else {
            w.append_block(b.as_ref()).expect("append");
        }
    }
    w.sync().expect("sync");
    path
}

/// Reads every block of a table file in order; `Ok(blocks)` only if the whole file verified.
pub fn read_table(
    fs: &CrashFs,
    path: &Path,
    keyring: &Keyring,
    cipher: Option<CipherId>,
) -> Result<Vec<Vec<u8>>, Error> {
    let r = SealedReader::open(fs, path, keyring, &table_expected(keyring, cipher))?;
    r.blocks().map(|b| b.map(|(_, b)| b.data)).collect()
}
