//! Key lifecycle: online master-key switches, data-key rotation and re-encryption, periodic
//! re-verification of the master key (refusing service while it is unusable), the audit hook,
//! and rollback protection.

use crate::Result;
use crate::keys::KeyBlock;
use crate::options::MasterKey;
use crate::state::DbInner;
use sealdb_crypto::{KeyDescriptor, KeyState, LocalKms, OwnedKeyProvider, SharedProvider};
use std::sync::Arc;
use std::time::Duration;

/// The master key and data keys as `sealdb keys status` shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyStatus {
    /// The master key wrapping the data keys.
    pub master: KeyDescriptor,
    /// Its state at the last check (`Enabled` while usable).
    pub state: KeyState,
    /// When it became unusable (Unix seconds), if it is.
    pub unavailable_since: Option<u64>,
    /// When it was last checked with its provider (Unix seconds).
    pub last_check: u64,
    /// The data-key version new files use.
    pub current_data_key: u32,
    /// Every data-key version: number, creation time, and how many live tables use it.
    pub data_keys: Vec<DataKeyInfo>,
}

/// One data-key version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataKeyInfo {
    /// Version number.
    pub version: u32,
    /// Created at (Unix seconds).
    pub created_at: u64,
    /// Live tables sealed under it.
    pub tables: u64,
}

/// What `reencrypt` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReencryptReport {
    /// Tables rewritten under the current data key.
    pub tables_rewritten: u64,
    /// Bytes of tables rewritten.
    pub bytes_rewritten: u64,
    /// Data-key versions dropped from the KEYS file.
    pub versions_dropped: Vec<u32>,
}

/// Builds the provider for a switch target (creating an owned key if the database has none).
pub(crate) fn target_provider(inner: &DbInner, target: &MasterKey) -> Result<SharedProvider> {
    let id = inner.keyring.read().database_id();
    target_provider_for(&inner.opts, id, target)
}

/// [`target_provider`] from options and a database id (restore uses it before a database
/// exists).
pub(crate) fn target_provider_for(
    opts: &crate::options::Options,
    id: sealdb_crypto::DatabaseId,
    target: &MasterKey,
) -> Result<SharedProvider> {
    Ok(match target {
        MasterKey::Owned => Arc::new(OwnedKeyProvider::open_or_create(
            &opts.resolved_keystore_dir(),
            id,
        )?),
        MasterKey::LocalKms(name) => {
            Arc::new(LocalKms::open(&opts.resolved_kms_dir())?.provider(name))
        }
        MasterKey::Provider(p) => p.clone(),
    })
}

/// One check of the master key with its provider; blocks or unblocks service.
pub(crate) fn check_key_now(inner: &DbInner) {
    let provider = inner.provider.read().clone();
    let desc = provider.descriptor();
    let started = std::time::Instant::now();
    let result = provider.check();
    // The provider kind and key name identify the key; nothing of the key itself is logged.
    match &result {
        Ok(_) => tracing::debug!(
            provider = %desc.provider,
            key_id = %desc.key_id,
            duration_ms = started.elapsed().as_secs_f64() * 1e3,
            "master key check: available"
        ),
        Err(e) => tracing::warn!(
            provider = %desc.provider,
            key_id = %desc.key_id,
            duration_ms = started.elapsed().as_secs_f64() * 1e3,
            error = %e,
            "master key check: unavailable"
        ),
    }
    *inner.last_key_check.lock() = sealdb_crypto::unix_now();
    let mut block = inner.key_block.lock();
    match result {
        Ok(_) => *block = None,
        Err(e) => {
            let state = match e {
                sealdb_crypto::Error::KeyUnavailable { state, .. } => state,
                sealdb_crypto::Error::WrongMasterKey { .. } => KeyState::NotFound,
                other => KeyState::Unreachable(other.to_string()),
            };
            let since = match block.as_ref() {
                Some(b) if b.state == state => b.since,
                _ => sealdb_crypto::unix_now(),
            };
            *block = Some(KeyBlock {
                provider: desc.provider,
                key_id: desc.key_id,
                state,
                since,
            });
        }
    }
}

/// The key-check thread: re-verifies the master key every interval (and rotates the data key
/// by age, if configured) until the database closes.
pub(crate) fn start_key_thread(
    inner: &Arc<DbInner>,
    stop: crossbeam_channel::Receiver<()>,
) -> Option<std::thread::JoinHandle<()>> {
    let interval = inner.opts.key_check_interval;
    let inner = inner.clone();
    std::thread::Builder::new()
        .name("sealdb-keycheck".into())
        .spawn(move || {
            while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                stop.recv_timeout(interval)
            {
                check_key_now(&inner);
                maybe_rotate_by_age(&inner);
            }
        })
        .ok()
}

/// Rotates the data key when the current version is older than `data_key_max_age`.
/// Puts the keys of a just-replaced KEYS file in force: new files seal under its current
/// data-key version, and the head is rewritten under it naming the new KEYS generation (so a
/// stale KEYS file put back is refused, and old versions can be dropped).
pub(crate) fn install_keys(inner: &DbInner, keys: &sealdb_crypto::KeysFile) -> Result<()> {
    let keyring = keys.keyring().clone();
    *inner.keyring.write() = keyring.clone();
    inner.wal.set_keyring(keyring.clone());
    for st in inner.streams.read().values() {
        st.log.set_keyring(keyring.clone());
    }
    if let Some(h) = &inner.head {
        h.set_keyring(keyring, keys.generation())?;
    }
    Ok(())
}

pub(crate) fn maybe_rotate_by_age(inner: &Arc<DbInner>) {
    let Some(max_age) = inner.opts.data_key_max_age else {
        return;
    };
    if inner.key_block.lock().is_some() {
        return;
    }
    let created = {
        let keys = inner.keys.lock();
        let current = keys.keyring().current_version();
        keys.version_created().get(&current).copied().unwrap_or(0)
    };
    let age = Duration::from_secs(sealdb_crypto::unix_now().saturating_sub(created));
    if age >= max_age {
        let provider = inner.provider.read().clone();
        let mut keys = inner.keys.lock();
        if keys
            .add_data_key_version(inner.fs.as_ref(), provider.as_ref())
            .is_ok()
        {
            let _ = install_keys(inner, &keys);
            drop(keys);
            let _ = inner.wal.rotate();
        }
    }
}

impl DbInner {
    /// Fails with the master key's error while it is unusable (see [`KeyBlock`]).
    pub(crate) fn check_key(&self) -> Result<()> {
        match self.key_block.lock().as_ref() {
            Some(b) => Err(b.error()),
            None => Ok(()),
        }
    }
}
