//! State-machine snapshots from sealdb's backup machinery.
//!
//! Building (on any node): a backup of the state database into `<node>/snapshot-build`, whose
//! `<id>.KEYS` envelope is then re-wrapped from the node's own master key to the cluster's
//! transport key, and every file of the backup packed as it is: sealed. Installing (on a
//! follower): the pack is unpacked into `<node>/snapshot-recv`, verified (every block of every
//! file authenticated, under the transport key), and restored under the follower's own master
//! key, which re-wraps the data keys again. No byte is decrypted on the way, no node needs
//! another node's master key, and nothing of the transport-keyed copy stays after the install
//! but the pack itself (the node's current snapshot, which it may send on).
//!
//! Pack layout: `SDBRPAK1` then a CBOR array of `{path, bytes}`, with `path` one of
//! `<name>` or `<dir>/<name>` as the backup wrote it. Paths are checked when decoding, so a
//! pack cannot write outside the receiving directory.

use crate::store::StoreConfig;
use crate::{Error, Result};
use sealdb::{Db, MasterKey, RestorePoint};
use sealdb_crypto::{KeysFile, OwnedKeyProvider, SharedProvider};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

const PACK_MAGIC: &[u8; 8] = b"SDBRPAK1";
const BUILD_DIR: &str = "snapshot-build";
const RECV_DIR: &str = "snapshot-recv";
const REWRAP_DIR: &str = ".rewrap";

/// One file of a packed backup.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PackedFile {
    path: String,
    #[serde(with = "serde_bytes")]
    bytes: Vec<u8>,
}

/// A backup directory's files, ready to ship.
#[derive(Debug, Clone, Default)]
pub(crate) struct Pack {
    files: Vec<PackedFile>,
}

/// Only names a backup writes: `[A-Za-z0-9._-]`, not starting with a dot, at most one level
/// of subdirectory.
fn valid_pack_path(path: &str) -> bool {
    let parts: Vec<&str> = path.split('/').collect();
    !parts.is_empty()
        && parts.len() <= 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && !p.starts_with('.')
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
        })
}

impl Pack {
    fn read_dir(dir: &Path) -> Result<Self> {
        let mut files = Vec::new();
        let mut stack = vec![(dir.to_path_buf(), String::new())];
        while let Some((d, prefix)) = stack.pop() {
            let entries = std::fs::read_dir(&d)
                .map_err(|e| Error::io(format!("listing {}", d.display()), e))?;
            for entry in entries {
                let entry = entry.map_err(|e| Error::io(format!("listing {}", d.display()), e))?;
                let name = entry.file_name().to_string_lossy().to_string();
                let path = entry.path();
                let rel = if prefix.is_empty() {
                    name.clone()
                } else {
                    format!("{prefix}/{name}")
                };
                if path.is_dir() {
                    stack.push((path, rel));
                } else if valid_pack_path(&rel) {
                    let bytes = std::fs::read(&path)
                        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
                    files.push(PackedFile { path: rel, bytes });
                }
            }
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(Pack { files })
    }

    /// The pack's bytes.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = PACK_MAGIC.to_vec();
        out.extend(crate::codec::encode(&self.files));
        out
    }

    /// Decodes and checks a received pack.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self> {
        let body = bytes
            .strip_prefix(PACK_MAGIC.as_slice())
            .ok_or_else(|| Error::malformed("snapshot pack", "bad magic"))?;
        let files: Vec<PackedFile> = crate::codec::decode(body, "snapshot pack")?;
        if let Some(bad) = files.iter().find(|f| !valid_pack_path(&f.path)) {
            return Err(Error::malformed(
                "snapshot pack",
                format!("file name {:?} is not one a backup writes", bad.path),
            ));
        }
        Ok(Pack { files })
    }
}

/// A received snapshot, unpacked and verified, ready to restore.
pub(crate) struct Received {
    dir: PathBuf,
    id: String,
}

fn remove_if_exists(path: &Path) -> Result<()> {
    if path.exists() {
        std::fs::remove_dir_all(path)
            .map_err(|e| Error::io(format!("removing {}", path.display()), e))?;
    }
    Ok(())
}

/// Removes what an interrupted build or install left behind.
pub(crate) fn remove_scratch(node_dir: &Path) -> Result<()> {
    remove_if_exists(&node_dir.join(BUILD_DIR))?;
    remove_if_exists(&node_dir.join(RECV_DIR))
}

/// Writes `bytes` to `path` durably and atomically (a temporary file, synced, renamed).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let what = |e| Error::io(format!("writing {}", tmp.display()), e);
    let mut f = std::fs::File::create(&tmp).map_err(what)?;
    f.write_all(bytes).map_err(what)?;
    f.sync_all().map_err(what)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| Error::io(format!("renaming {}", tmp.display()), e))?;
    if let Some(parent) = path.parent()
        && let Ok(d) = std::fs::File::open(parent)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

/// A suffix that makes a snapshot id unique within this process's lifetime and across
/// restarts (the wall clock in nanoseconds, then a counter).
pub(crate) fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{nanos}-{}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Re-wraps the data keys of the backup KEYS copy at `keys_path` (under this node's owned
/// master key) under the transport key, in place.
fn rewrap_for_transport(keys_path: &Path, backup_dir: &Path, config: &StoreConfig) -> Result<()> {
    let opts = config.db_options();
    let fs = opts.fs.as_ref();
    // KeysFile works on "<dir>/KEYS": stage the copy under that name.
    let scratch = backup_dir.join(REWRAP_DIR);
    remove_if_exists(&scratch)?;
    std::fs::create_dir_all(&scratch)
        .map_err(|e| Error::io(format!("creating {}", scratch.display()), e))?;
    let staged = scratch.join(sealdb_crypto::keysfile::KEYS_FILE_NAME);
    std::fs::copy(keys_path, &staged)
        .map_err(|e| Error::io(format!("copying {}", keys_path.display()), e))?;
    let summary = KeysFile::peek(fs, &scratch)?;
    let keystore = config.keystore_dir.clone();
    let (mut keys, _) = KeysFile::open(fs, &scratch, |desc| {
        let own = OwnedKeyProvider::open(&keystore, summary.database_id)?;
        if sealdb_crypto::KeyProvider::descriptor(&own) != *desc {
            return Err(sealdb_crypto::Error::KeyUnavailable {
                provider: desc.provider.clone(),
                key_id: desc.key_id.clone(),
                state: sealdb_crypto::KeyState::NotFound,
            });
        }
        Ok(Arc::new(own) as SharedProvider)
    })?;
    let transport = config.transport()?;
    keys.switch_master_key(fs, transport.provider())?;
    std::fs::rename(&staged, keys_path)
        .map_err(|e| Error::io(format!("replacing {}", keys_path.display()), e))?;
    remove_if_exists(&scratch)
}

/// Backs up `db` and packs the backup with its key envelope under the transport key. The
/// caller holds the state machine's apply lock, so the backup is of one applied log id.
pub(crate) fn build(db: &Db, config: &StoreConfig) -> Result<Pack> {
    let dir = config.dir.join(BUILD_DIR);
    remove_if_exists(&dir)?;
    let info = db.backup(&dir, &mut |_, _| {})?;
    let keys_path = dir.join(format!("{}.KEYS", info.id));
    rewrap_for_transport(&keys_path, &dir, config)?;
    let pack = Pack::read_dir(&dir)?;
    remove_if_exists(&dir)?;
    Ok(pack)
}

/// Unpacks `pack` into the node's receiving directory and authenticates every block of it
/// under the transport key; refuses a pack that is not exactly one whole, authentic backup.
pub(crate) fn receive(pack: &Pack, config: &StoreConfig) -> Result<Received> {
    let dir = config.dir.join(RECV_DIR);
    remove_if_exists(&dir)?;
    for f in &pack.files {
        let path = dir.join(&f.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
        }
        std::fs::write(&path, &f.bytes)
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    }
    let opts = config.db_options();
    let backups = sealdb::list_backups(&dir, &opts)?;
    let [backup] = backups.as_slice() else {
        return Err(Error::malformed(
            "snapshot",
            format!("holds {} backups, not one", backups.len()),
        ));
    };
    let report = sealdb::verify_backup(&dir, Some(&backup.id), &opts)?;
    if let Some(first) = report.errors.into_iter().next() {
        return Err(first.into());
    }
    Ok(Received {
        id: backup.id.clone(),
        dir,
    })
}

/// Restores a received snapshot into `dest` (which must not exist) under this node's own
/// master key.
pub(crate) fn restore_into(received: &Received, dest: &Path, config: &StoreConfig) -> Result<()> {
    sealdb::restore_backup(
        &received.dir,
        dest,
        Some(&received.id),
        RestorePoint::Backup,
        Some(MasterKey::Owned),
        &config.db_options(),
        &mut |_, _| {},
    )?;
    Ok(())
}
