//! Keyspaces: creating and dropping them (the manifest edit, the live name map, the tables
//! leaving the live version). The facade (`Db::create_keyspace`, `Db::drop_keyspace`)
//! checks what callers may name and drops a keyspace's indexes and stream first, then
//! delegates here.

use crate::manifest::{DEFAULT_KEYSPACE, Edit};
use crate::state::DbInner;
use crate::{Error, Result};

/// The longest keyspace name, in bytes.
const MAX_KEYSPACE_NAME: usize = 255;

impl DbInner {
    /// The id of the live keyspace `name` (internal ones included).
    pub(crate) fn keyspace_id(&self, name: &str) -> Result<u32> {
        self.keyspaces
            .read()
            .get(name)
            .copied()
            .ok_or_else(|| Error::KeyspaceNotFound(name.to_string()))
    }

    /// Creates the keyspace `name` durably, or returns its id if it exists.
    pub(crate) fn create_keyspace(&self, name: &str) -> Result<u32> {
        if name.is_empty() || name.len() > MAX_KEYSPACE_NAME {
            return Err(Error::invalid_argument(format!(
                "keyspace names are 1 to {MAX_KEYSPACE_NAME} bytes"
            )));
        }
        self.check_writable()?;
        // Under the manifest lock: two creators of one name get one id.
        let mut manifest = self.versions.manifest();
        if let Ok(id) = self.keyspace_id(name) {
            return Ok(id);
        }
        let id = manifest.state().next_keyspace_id;
        let keyring = self.keyring.read().clone();
        manifest
            .apply(
                vec![Edit::CreateKeyspace {
                    id,
                    name: name.to_string(),
                }],
                &keyring,
            )
            .map_err(|e| self.fail(e))?;
        self.keyspaces.write().insert(name.to_string(), id);
        Ok(id)
    }

    /// Drops the keyspace `name` durably. Its tables leave the live version now; each file is
    /// deleted once the last reader holding it (an iterator, an older version) is gone.
    pub(crate) fn drop_keyspace(&self, name: &str) -> Result<()> {
        let id = self.keyspace_id(name)?;
        if id == DEFAULT_KEYSPACE {
            return Err(Error::invalid_argument(
                "the default keyspace cannot be dropped".into(),
            ));
        }
        self.check_writable()?;
        let mut manifest = self.versions.manifest();
        let keyring = self.keyring.read().clone();
        self.versions
            .log_and_apply(
                &mut manifest,
                vec![Edit::DropKeyspace { id }],
                &keyring,
                Vec::new(),
                |v| {
                    let mut next = (*v.version).clone();
                    if let Some(levels) = next.keyspaces.remove(&id) {
                        for t in levels.iter().flatten() {
                            t.mark_obsolete();
                        }
                    }
                    v.with_version(next)
                },
            )
            .map_err(|e| self.fail(e))?;
        self.keyspaces.write().remove(name);
        Ok(())
    }
}
