//! [`OwnedKeyProvider`]: the owned master key of one database, and where keystores live.

use super::key_file::{FILE_LEN, PROVIDER, encode_key_file, key_id, not_found, read_key_file};
use crate::keys::{DatabaseId, SecretKey};
use crate::private_file::{Replace, create_private_dir, sync_dir, write_private_file_atomically};
use crate::provider::{EncryptionContext, KeyDescriptor, KeyProvider, local_unwrap, local_wrap};
use crate::{Error, KeyState, Result};
use std::fmt;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

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
    pub(super) master: SecretKey,
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
