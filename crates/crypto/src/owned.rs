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
//! This module also holds the small private-file helpers shared with [`crate::kms`]
//! (owner-only directories and files, atomic replacement, directory fsync).

use crate::error::IntegrityReason;
use crate::keys::{DatabaseId, SecretKey};
use crate::provider::{EncryptionContext, KeyDescriptor, KeyProvider, local_unwrap, local_wrap};
use crate::{Error, KeyState, Result};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Provider kind string of the owned key, as stored in key descriptors.
const PROVIDER: &str = "owned";
/// Magic bytes opening an owned key file (format version 1).
const MAGIC: &[u8; 8] = b"SDBOWNK1";
/// Length of an owned key file: magic, database id, key, crc32.
const FILE_LEN: usize = 8 + 16 + crate::keys::KEY_LEN + 4;
/// The owned key has a single version; wraps name it so the format matches the local KMS.
const MASTER_VERSION: u32 = 1;

/// Where owned master keys are kept when the caller does not say.
///
/// In order: `$SEALDB_KEYSTORE` if set and non-empty; `$XDG_DATA_HOME/sealdb/keystore` if
/// `XDG_DATA_HOME` is set to an absolute path (the XDG spec says relative values are to be
/// ignored); `$HOME/.local/share/sealdb/keystore` if `HOME` is non-empty; else
/// `./.sealdb-keystore` (relative to the working directory, a last resort for environments
/// without a home directory).
pub fn default_keystore_dir() -> PathBuf {
    let non_empty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = non_empty("SEALDB_KEYSTORE") {
        return PathBuf::from(dir);
    }
    if let Some(xdg) = non_empty("XDG_DATA_HOME").map(PathBuf::from)
        && xdg.is_absolute()
    {
        return xdg.join("sealdb").join("keystore");
    }
    if let Some(home) = non_empty("HOME") {
        return PathBuf::from(home)
            .join(".local")
            .join("share")
            .join("sealdb")
            .join("keystore");
    }
    PathBuf::from(".sealdb-keystore")
}

/// A database's owned master key, loaded from its keystore file.
///
/// `Debug` shows where the key lives, never the key.
pub struct OwnedKeyProvider {
    keystore: PathBuf,
    database_id: DatabaseId,
    path: PathBuf,
    master: SecretKey,
}

impl fmt::Debug for OwnedKeyProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Written out rather than derived so a future field cannot leak into logs by accident.
        f.debug_struct("OwnedKeyProvider")
            .field("keystore", &self.keystore)
            .field("database_id", &self.database_id)
            .field("path", &self.path)
            .field("master", &"<redacted>")
            .finish()
    }
}

impl OwnedKeyProvider {
    /// Generates a new master key for `database_id` and stores it in `keystore` (created with
    /// mode 0700 if missing). Refuses with [`Error::InvalidArgument`] if the database already
    /// has a key there: overwriting it would shred the database.
    pub fn create(keystore: &Path, database_id: DatabaseId) -> Result<Self> {
        let path = Self::key_path(keystore, database_id);
        if path.symlink_metadata().is_ok() {
            return Err(Error::invalid_argument(format!(
                "owned key file {} already exists; refusing to overwrite it",
                path.display()
            )));
        }
        create_private_dir(keystore)?;
        let master = SecretKey::generate()?;
        let bytes = encode_key_file(database_id, &master);
        match write_private_file_atomically(keystore, &path, &bytes, Replace::Never) {
            Ok(()) => {}
            // Another process created it between our check and our link.
            Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::AlreadyExists => {
                return Err(Error::invalid_argument(format!(
                    "owned key file {} already exists; refusing to overwrite it",
                    path.display()
                )));
            }
            Err(e) => return Err(e),
        }
        Ok(Self {
            keystore: keystore.to_path_buf(),
            database_id,
            path,
            master,
        })
    }

    /// Loads the existing master key of `database_id` from `keystore`. Never creates anything.
    ///
    /// Errors: [`Error::KeyUnavailable`] with [`KeyState::NotFound`] if there is no key file;
    /// [`Error::InsecurePermissions`] if group or others have any access to it;
    /// [`Error::Integrity`] if it is damaged or belongs to another database.
    pub fn open(keystore: &Path, database_id: DatabaseId) -> Result<Self> {
        let path = Self::key_path(keystore, database_id);
        let master = read_key_file(&path, database_id)?;
        Ok(Self {
            keystore: keystore.to_path_buf(),
            database_id,
            path,
            master,
        })
    }

    /// [`open`](Self::open)s the key, or [`create`](Self::create)s it if the database has none.
    pub fn open_or_create(keystore: &Path, database_id: DatabaseId) -> Result<Self> {
        match Self::open(keystore, database_id) {
            Err(Error::KeyUnavailable {
                state: KeyState::NotFound,
                ..
            }) => match Self::create(keystore, database_id) {
                Ok(p) => Ok(p),
                // Lost a race with another process creating the same key: use theirs.
                Err(Error::InvalidArgument { .. }) => Self::open(keystore, database_id),
                Err(e) => Err(e),
            },
            other => other,
        }
    }

    /// The key file of `database_id` in `keystore`.
    pub fn key_path(keystore: &Path, database_id: DatabaseId) -> PathBuf {
        keystore.join(format!("owned-{}.key", database_id.to_hex()))
    }

    /// The key file this provider was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The database this key belongs to.
    pub fn database_id(&self) -> DatabaseId {
        self.database_id
    }

    /// Deletes the key file: crypto-shredding. Every data key wrapped under this master key,
    /// and so all of the database's data, becomes unrecoverable. A file already gone is not
    /// an error.
    ///
    /// The file is overwritten with zeros and synced before it is unlinked. On copy-on-write
    /// filesystems and SSDs that overwrite is best effort only; the guarantee is that no
    /// sealdb-reachable copy remains.
    pub fn destroy(self) -> Result<()> {
        // Best effort: a file the owner made read-only (0400) cannot be overwritten, but
        // unlinking it is what matters and needs only the directory to be writable.
        if let Ok(mut f) = OpenOptions::new().write(true).open(&self.path) {
            let _ = f.write_all(&[0u8; FILE_LEN]).and_then(|()| f.sync_all());
        }
        match std::fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&self.path, e)),
        }
        sync_dir(&self.keystore)
    }

    fn key_id(&self) -> String {
        key_id(self.database_id)
    }
}

impl KeyProvider for OwnedKeyProvider {
    fn descriptor(&self) -> KeyDescriptor {
        KeyDescriptor::new(PROVIDER, self.key_id())
    }

    fn wrap(&self, data_key: &SecretKey, context: &EncryptionContext) -> Result<Vec<u8>> {
        local_wrap(
            &self.master,
            MASTER_VERSION,
            &self.descriptor(),
            data_key,
            context,
        )
    }

    fn unwrap(&self, wrapped: &[u8], context: &EncryptionContext) -> Result<SecretKey> {
        local_unwrap(&self.master, &self.descriptor(), wrapped, context)
    }

    /// Re-reads the key file: `Ok(Enabled)` while it still holds this key. A deleted file, or
    /// one that now holds a different key, is [`KeyState::NotFound`] (the key we hold is no
    /// longer in the keystore, so the database would not open again). A damaged or
    /// over-permissive file is reported as such ([`Error::Integrity`],
    /// [`Error::InsecurePermissions`]) so the operator sees the real problem.
    fn check(&self) -> Result<KeyState> {
        let on_disk = read_key_file(&self.path, self.database_id)?;
        if on_disk == self.master {
            Ok(KeyState::Enabled)
        } else {
            Err(not_found(self.database_id))
        }
    }
}

fn key_id(database_id: DatabaseId) -> String {
    format!("owned/{}", database_id.to_hex())
}

fn not_found(database_id: DatabaseId) -> Error {
    Error::KeyUnavailable {
        provider: PROVIDER.into(),
        key_id: key_id(database_id),
        state: KeyState::NotFound,
    }
}

pub(crate) fn encode_key_file(database_id: DatabaseId, master: &SecretKey) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(FILE_LEN));
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&database_id.0);
    out.extend_from_slice(master.expose());
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Reads and verifies a key file (permissions first, like ssh, then length, magic, crc and
/// database id).
fn read_key_file(path: &Path, database_id: DatabaseId) -> Result<SecretKey> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(not_found(database_id)),
        Err(e) => return Err(Error::io(path, e)),
    };
    check_private_mode(&file, path)?;
    // One byte more than a valid file so that an over-long file is detected without reading
    // an arbitrarily large one.
    let bytes = read_limited(file, path, FILE_LEN as u64 + 1)?;
    decode_key_file(&bytes, path, database_id)
}

pub(crate) fn decode_key_file(
    bytes: &[u8],
    path: &Path,
    database_id: DatabaseId,
) -> Result<SecretKey> {
    let file = path.display().to_string();
    let bad = |reason| Error::integrity(file.clone(), None, reason);
    if bytes.len() != FILE_LEN {
        return Err(bad(IntegrityReason::Malformed(format!(
            "owned key file is {} bytes, expected {FILE_LEN}",
            bytes.len()
        ))));
    }
    if bytes.get(..8) != Some(MAGIC.as_slice()) {
        return Err(bad(IntegrityReason::BadMagic));
    }
    let (body, crc) = bytes.split_at(FILE_LEN - 4);
    let crc: [u8; 4] = crc
        .try_into()
        .map_err(|_| bad(IntegrityReason::BadLength))?;
    if crc32fast::hash(body) != u32::from_le_bytes(crc) {
        return Err(bad(IntegrityReason::HeaderChecksum));
    }
    let stored_id = body
        .get(8..24)
        .and_then(|s| <[u8; 16]>::try_from(s).ok())
        .map(DatabaseId)
        .ok_or_else(|| bad(IntegrityReason::BadLength))?;
    if stored_id != database_id {
        return Err(bad(IntegrityReason::Malformed(format!(
            "owned key file belongs to database {stored_id}, not {database_id}"
        ))));
    }
    let key = body
        .get(24..24 + crate::keys::KEY_LEN)
        .ok_or_else(|| bad(IntegrityReason::BadLength))?;
    SecretKey::from_slice(key)
}

// ---- private-file helpers, shared with kms.rs ----

/// Creates `dir` (and missing parents) with mode 0700. An existing directory is left as is:
/// its owner may have chosen its mode deliberately.
pub(crate) fn create_private_dir(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io(dir, e))
}

/// Refuses a secret-holding file that group or others can access in any way, as ssh does for
/// private keys: such a key may already have been copied.
pub(crate) fn check_private_mode(file: &File, path: &Path) -> Result<()> {
    // fstat on the open handle, so the file checked is the file read.
    let mode = file
        .metadata()
        .map_err(|e| Error::io(path, e))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(Error::InsecurePermissions {
            path: path.to_path_buf(),
            mode: mode & 0o7777,
        });
    }
    Ok(())
}

/// Reads at most `limit` bytes into a buffer that is wiped when dropped (it holds key
/// material).
pub(crate) fn read_limited(file: File, path: &Path, limit: u64) -> Result<Zeroizing<Vec<u8>>> {
    let hint = file.metadata().map(|m| m.len().min(limit)).unwrap_or(0);
    // Exact capacity up front: a reallocation would leave an unwiped copy behind.
    let mut buf = Zeroizing::new(Vec::with_capacity(
        usize::try_from(hint).unwrap_or(0).saturating_add(1),
    ));
    file.take(limit)
        .read_to_end(&mut buf)
        .map_err(|e| Error::io(path, e))?;
    Ok(buf)
}

/// Whether an atomic write may replace an existing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Replace {
    /// Fail with `AlreadyExists` if the target exists (new owned keys).
    Never,
    /// Replace the target atomically (the KMS state, under its lock).
    Allowed,
}

/// Writes `bytes` to `path` (in `dir`) so that a crash leaves either the old file or the
/// complete new one: a temporary file created with mode 0600 (never briefly readable by
/// others), written, synced, moved into place, then the directory synced so the move is
/// durable.
pub(crate) fn write_private_file_atomically(
    dir: &Path,
    path: &Path,
    bytes: &[u8],
    replace: Replace,
) -> Result<()> {
    let mut suffix = [0u8; 8];
    crate::keys::fill_random(&mut suffix)?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // A unique name, so concurrent writers (and a stale file left by a crash) never collide.
    let tmp = dir.join(format!(
        ".{file_name}.tmp-{}-{}",
        std::process::id(),
        crate::hex::encode(&suffix)
    ));
    let result = write_tmp_and_publish(&tmp, path, bytes, replace);
    if result.is_err() {
        // Best effort: the temporary file may hold key material.
        let _ = std::fs::remove_file(&tmp);
        return result;
    }
    sync_dir(dir)
}

fn write_tmp_and_publish(tmp: &Path, path: &Path, bytes: &[u8], replace: Replace) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)
        .map_err(|e| Error::io(tmp, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io(tmp, e))?;
    drop(f);
    match replace {
        Replace::Allowed => std::fs::rename(tmp, path).map_err(|e| Error::io(path, e)),
        Replace::Never => {
            // link(2) fails if the target exists, which makes "create only if absent" atomic
            // even against another process; rename(2) would silently replace.
            std::fs::hard_link(tmp, path).map_err(|e| Error::io(path, e))?;
            std::fs::remove_file(tmp).map_err(|e| Error::io(tmp, e))
        }
    }
}

/// fsyncs a directory so that entries created, renamed or removed in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tempfile::TempDir;

    fn ctx(id: DatabaseId) -> EncryptionContext {
        EncryptionContext { database_id: id }
    }

    fn db() -> DatabaseId {
        DatabaseId::generate().expect("random id")
    }

    #[test]
    fn create_then_open_round_trip() -> Result<()> {
        let dir = TempDir::new().map_err(|e| Error::io("tempdir", e))?;
        let ks = dir.path().join("ks");
        let id = db();
        let created = OwnedKeyProvider::create(&ks, id)?;
        assert_eq!(
            created.path(),
            ks.join(format!("owned-{}.key", id.to_hex()))
        );
        let meta = std::fs::metadata(created.path()).map_err(|e| Error::io("meta", e))?;
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(meta.len(), FILE_LEN as u64);
        let ks_mode = std::fs::metadata(&ks)
            .map_err(|e| Error::io("meta", e))?
            .permissions()
            .mode();
        assert_eq!(ks_mode & 0o777, 0o700);

        let opened = OwnedKeyProvider::open(&ks, id)?;
        assert_eq!(opened.master, created.master);
        assert_eq!(
            opened.descriptor(),
            KeyDescriptor::new("owned", format!("owned/{}", id.to_hex()))
        );
        assert_eq!(opened.check()?, KeyState::Enabled);

        // A second create must not overwrite (that would shred the database).
        assert!(matches!(
            OwnedKeyProvider::create(&ks, id),
            Err(Error::InvalidArgument { .. })
        ));
        let again = OwnedKeyProvider::open_or_create(&ks, id)?;
        assert_eq!(again.master, created.master);
        Ok(())
    }

    #[test]
    fn open_or_create_creates_once() -> Result<()> {
        let dir = TempDir::new().map_err(|e| Error::io("tempdir", e))?;
        let id = db();
        let a = OwnedKeyProvider::open_or_create(dir.path(), id)?;
        let b = OwnedKeyProvider::open_or_create(dir.path(), id)?;
        assert_eq!(a.master, b.master);
        Ok(())
    }

    #[test]
    fn wrap_unwrap_and_context_binding() -> Result<()> {
        let dir = TempDir::new().map_err(|e| Error::io("tempdir", e))?;
        let id = db();
        let p = OwnedKeyProvider::create(dir.path(), id)?;
        let dk = SecretKey::generate()?;
        let wrapped = p.wrap(&dk, &ctx(id))?;
        assert_eq!(p.unwrap(&wrapped, &ctx(id))?, dk);
        let reopened = OwnedKeyProvider::open(dir.path(), id)?;
        assert_eq!(reopened.unwrap(&wrapped, &ctx(id))?, dk);

        let (gen_key, gen_wrapped) = p.generate_data_key(&ctx(id))?;
        assert_eq!(p.unwrap(&gen_wrapped, &ctx(id))?, gen_key);

        // Another database's context.
        assert!(matches!(
            p.unwrap(&wrapped, &ctx(db())),
            Err(Error::WrongMasterKey { ref provider, .. }) if provider == "owned"
        ));
        // Another database's owned key.
        let other_id = db();
        let other = OwnedKeyProvider::create(dir.path(), other_id)?;
        assert!(matches!(
            other.unwrap(&wrapped, &ctx(id)),
            Err(Error::WrongMasterKey { .. })
        ));
        // Garbage.
        assert!(matches!(
            p.unwrap(&[1, 2, 3], &ctx(id)),
            Err(Error::WrongMasterKey { .. })
        ));
        Ok(())
    }

    #[test]
    fn open_missing_is_not_found_and_creates_nothing() -> Result<()> {
        let dir = TempDir::new().map_err(|e| Error::io("tempdir", e))?;
        let ks = dir.path().join("never-created");
        let id = db();
        match OwnedKeyProvider::open(&ks, id) {
            Err(Error::KeyUnavailable {
                provider,
                key_id,
                state: KeyState::NotFound,
            }) => {
                assert_eq!(provider, "owned");
                assert_eq!(key_id, format!("owned/{}", id.to_hex()));
            }
            other => panic!("expected NotFound, got {other:?}"),
        }
        assert!(!ks.exists());
        // Existing keystore, missing key: still nothing created.
        match OwnedKeyProvider::open(dir.path(), id) {
            Err(Error::KeyUnavailable {
                state: KeyState::NotFound,
                ..
            }) => {}
            other => panic!("expected NotFound, got {other:?}"),
        }
        let entries = std::fs::read_dir(dir.path())
            .map_err(|e| Error::io("readdir", e))?
            .count();
        assert_eq!(entries, 0);
        Ok(())
    }

    #[test]
    fn insecure_permissions_refused() -> Result<()> {
        let dir = TempDir::new().map_err(|e| Error::io("tempdir", e))?;
        let id = db();
        let p = OwnedKeyProvider::create(dir.path(), id)?;
        for mode in [0o644, 0o640, 0o604, 0o660] {
            std::fs::set_permissions(p.path(), std::fs::Permissions::from_mode(mode))
                .map_err(|e| Error::io("chmod", e))?;
            match OwnedKeyProvider::open(dir.path(), id) {
                Err(Error::InsecurePermissions { path, mode: got }) => {
                    assert_eq!(path, p.path());
                    assert_eq!(got & 0o777, mode);
                }
                other => panic!("expected InsecurePermissions, got {other:?}"),
            }
        }
        std::fs::set_permissions(p.path(), std::fs::Permissions::from_mode(0o400))
            .map_err(|e| Error::io("chmod", e))?;
        OwnedKeyProvider::open(dir.path(), id)?;
        Ok(())
    }

    #[test]
    fn corrupted_file_is_integrity_error() -> Result<()> {
        let dir = TempDir::new().map_err(|e| Error::io("tempdir", e))?;
        let id = db();
        let p = OwnedKeyProvider::create(dir.path(), id)?;
        let good = std::fs::read(p.path()).map_err(|e| Error::io("read", e))?;
        for pos in 0..good.len() {
            let mut bad = good.clone();
            if let Some(b) = bad.get_mut(pos) {
                *b ^= 0x01;
            }
            std::fs::write(p.path(), &bad).map_err(|e| Error::io("write", e))?;
            match OwnedKeyProvider::open(dir.path(), id) {
                Err(Error::Integrity {
                    file, block: None, ..
                }) => {
                    assert_eq!(file, p.path().display().to_string());
                }
                other => panic!("byte {pos}: expected Integrity, got {other:?}"),
            }
            // check() on the running provider reports the damage too.
            assert!(matches!(p.check(), Err(Error::Integrity { .. })));
        }
        for len in [0, 1, 8, FILE_LEN - 1, FILE_LEN + 1, 4096] {
            let mut bad = good.clone();
            bad.resize(len, 0);
            std::fs::write(p.path(), &bad).map_err(|e| Error::io("write", e))?;
            assert!(
                matches!(
                    OwnedKeyProvider::open(dir.path(), id),
                    Err(Error::Integrity { .. })
                ),
                "length {len}"
            );
        }
        Ok(())
    }

    #[test]
    fn key_file_of_another_database_is_refused() -> Result<()> {
        let dir = TempDir::new().map_err(|e| Error::io("tempdir", e))?;
        let (a, b) = (db(), db());
        let pa = OwnedKeyProvider::create(dir.path(), a)?;
        // Copy a's (valid, crc-correct) key file under b's name.
        let target = OwnedKeyProvider::key_path(dir.path(), b);
        std::fs::copy(pa.path(), &target).map_err(|e| Error::io("copy", e))?;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| Error::io("chmod", e))?;
        assert!(matches!(
            OwnedKeyProvider::open(dir.path(), b),
            Err(Error::Integrity {
                reason: IntegrityReason::Malformed(_),
                ..
            })
        ));
        Ok(())
    }

    #[test]
    fn destroy_shreds_and_check_notices() -> Result<()> {
        let dir = TempDir::new().map_err(|e| Error::io("tempdir", e))?;
        let id = db();
        let p = OwnedKeyProvider::create(dir.path(), id)?;
        let running = OwnedKeyProvider::open(dir.path(), id)?;
        let dk = SecretKey::generate()?;
        let wrapped = p.wrap(&dk, &ctx(id))?;
        p.destroy()?;
        assert!(matches!(
            running.check(),
            Err(Error::KeyUnavailable {
                state: KeyState::NotFound,
                ..
            })
        ));
        assert!(matches!(
            OwnedKeyProvider::open(dir.path(), id),
            Err(Error::KeyUnavailable {
                state: KeyState::NotFound,
                ..
            })
        ));
        // A new key for the same database cannot unwrap the old data keys.
        let fresh = OwnedKeyProvider::create(dir.path(), id)?;
        assert!(matches!(
            fresh.unwrap(&wrapped, &ctx(id)),
            Err(Error::WrongMasterKey { .. })
        ));
        // And the running provider sees that its key was replaced.
        assert!(matches!(
            running.check(),
            Err(Error::KeyUnavailable {
                state: KeyState::NotFound,
                ..
            })
        ));
        Ok(())
    }

    #[test]
    fn debug_shows_no_key_bytes() -> Result<()> {
        let dir = TempDir::new().map_err(|e| Error::io("tempdir", e))?;
        let p = OwnedKeyProvider::create(dir.path(), db())?;
        let shown = format!("{p:?} {p:#?}");
        let key_hex = crate::hex::encode(p.master.expose());
        assert!(!shown.contains(&key_hex));
        assert!(!shown.contains(&key_hex.to_uppercase()));
        // Nor as a Rust byte-array listing.
        assert!(!shown.contains(&format!("{:?}", p.master.expose())));
        assert!(shown.contains("redacted"));
        Ok(())
    }

    #[test]
    fn no_temporary_files_left_behind() -> Result<()> {
        let dir = TempDir::new().map_err(|e| Error::io("tempdir", e))?;
        OwnedKeyProvider::create(dir.path(), db())?;
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .map_err(|e| Error::io("readdir", e))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(
            names
                .iter()
                .all(|n| n.starts_with("owned-") && n.ends_with(".key"))
        );
        Ok(())
    }

    #[test]
    fn default_keystore_dir_is_nonempty() {
        // Only a smoke test: mutating the process environment from a multi-threaded test
        // binary is unsound, so the precedence rules are not exercised here.
        assert!(!default_keystore_dir().as_os_str().is_empty());
    }
}
