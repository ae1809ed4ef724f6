//! The key-lifecycle API of [`Db`]: master-key switches, data-key rotation, re-encryption,
//! and the key status. The lifecycle machinery (checks, the key thread, rotation by age) is
//! `crate::keylife`.

use super::Db;
use crate::keylife::{
    DataKeyInfo, KeyStatus, ReencryptReport, check_key_now, install_keys, target_provider,
};

use crate::keys::AuditedProvider;
use crate::options::MasterKey;
use crate::{Error, Result};
use sealdb_crypto::{KeyDescriptor, KeyState};
use std::path::PathBuf;

impl Db {
    /// Re-wraps the data keys under another master key and atomically replaces the KEYS file,
    /// online: reads and writes continue, no data file is rewritten, the old key stays usable
    /// until the switch completes. After a crash the database opens under exactly one of the
    /// two keys.
    pub fn switch_master_key(&self, target: MasterKey) -> Result<KeyDescriptor> {
        if self.inner.opts.read_only {
            return Err(Error::ReadOnly);
        }
        let inner = &self.inner;
        let new = AuditedProvider::wrap(target_provider(inner, &target)?, &inner.opts.key_events);
        // Prove the new key is usable before touching anything.
        new.check()?;
        let mut keys = inner.keys.lock();
        keys.switch_master_key(inner.fs.as_ref(), new.as_ref())?;
        *inner.provider.write() = new.clone();
        install_keys(inner, &keys)?;
        *inner.key_block.lock() = None;
        Ok(new.descriptor())
    }

    /// Adds a data-key version and makes it current: new files (tables, WAL segments, the
    /// manifest) use it at once; existing files keep theirs until compaction or
    /// [`reencrypt`](Self::reencrypt) rewrites them. Returns the new version.
    pub fn rotate_data_key(&self) -> Result<u32> {
        if self.inner.opts.read_only {
            return Err(Error::ReadOnly);
        }
        self.check_key()?;
        let inner = &self.inner;
        let provider = inner.provider.read().clone();
        let mut keys = inner.keys.lock();
        let v = keys.add_data_key_version(inner.fs.as_ref(), provider.as_ref())?;
        install_keys(inner, &keys)?;
        drop(keys);
        inner.wal.rotate()?;
        inner.events.signal_compaction();
        Ok(v)
    }

    /// Rewrites every file still sealed under an old data-key version, online, then drops the
    /// old versions from the KEYS file. `progress(done, total)` is called as tables are
    /// rewritten.
    pub fn reencrypt(&self, progress: &mut dyn FnMut(u64, u64)) -> Result<ReencryptReport> {
        if self.inner.opts.read_only {
            return Err(Error::ReadOnly);
        }
        self.check_key()?;
        let inner = &self.inner;
        let current = inner.keyring.read().current_version();
        // New WAL segment under the current key, and every memtable into current-key tables:
        // older WAL segments become obsolete and are deleted.
        inner.wal.rotate()?;
        self.flush()?;
        // Segments holding nothing unflushed (left by sessions that wrote nothing, or already
        // flushed) go too, even when the flush had nothing to write.
        crate::jobs::flush::retire_wal(&inner.job_context())?;
        let mut report = ReencryptReport::default();
        // A compaction or flush seals its outputs under the keyring it took when it started: one
        // that started before the rotation may still be running, and its outputs would be under
        // an old data key while the tables it read are gone from the list below. So wait for any
        // compaction in flight, and list again after each pass until no table is older than
        // `current` (newer ones, from a rotation meanwhile, are not this call's business).
        drop(inner.versions.lock_compactions());
        let mut done = 0u64;
        loop {
            let old: Vec<_> = {
                let v = inner.versions.live();
                let mut out = Vec::new();
                for (ks, levels) in &v.keyspaces {
                    for (l, files) in levels.iter().enumerate() {
                        for t in files {
                            if t.meta.data_key_version < current {
                                out.push((*ks, l, t.clone()));
                            }
                        }
                    }
                }
                out
            };
            if old.is_empty() {
                break;
            }
            let total = done + old.len() as u64;
            progress(done, total);
            for (ks, level, t) in old {
                report.bytes_rewritten += t.meta.size;
                crate::jobs::compaction::rewrite_table(&inner.job_context(), ks, level, t)?;
                report.tables_rewritten += 1;
                done += 1;
                progress(done, total);
            }
        }
        if done == 0 {
            progress(0, 0);
        }
        // The manifest and CURRENT move to the current key too.
        {
            let keyring = inner.keyring.read().clone();
            inner.versions.manifest().roll(&keyring)?;
        }
        // STATS too (it is otherwise rewritten only at close).
        inner.store_lifetime()?;
        // Drop every version no live file uses any more.
        let in_use = self.data_key_versions_in_use()?;
        let provider = inner.provider.read().clone();
        let mut keys = inner.keys.lock();
        for v in keys.keyring().versions() {
            if v != current && !in_use.contains(&v) {
                keys.drop_data_key_version(inner.fs.as_ref(), provider.as_ref(), v)?;
                report.versions_dropped.push(v);
            }
        }
        install_keys(inner, &keys)?;
        drop(keys);
        Ok(report)
    }

    /// Data-key versions named by any live file: tables, WAL segments, manifest, CURRENT.
    pub fn data_key_versions_in_use(&self) -> Result<std::collections::BTreeSet<u32>> {
        let inner = &self.inner;
        let mut used = std::collections::BTreeSet::new();
        let v = inner.versions.live();
        for levels in v.keyspaces.values() {
            for l in levels {
                for t in l {
                    used.insert(t.meta.data_key_version);
                }
            }
        }
        let mut paths: Vec<PathBuf> = inner
            .wal
            .segment_numbers()
            .into_iter()
            .map(|n| inner.wal.dir().join(sealdb_wal::segment_file_name(n)))
            .collect();
        for name in inner
            .fs
            .list_dir(&inner.path)
            .map_err(|e| Error::io(&inner.path, e))?
        {
            if name.starts_with("MANIFEST-")
                || name == crate::manifest::CURRENT_FILE
                || name == crate::lifestats::STATS_FILE
            {
                paths.push(inner.path.join(name));
            }
        }
        // Retained stream segments, consumer positions and the WAL archive keep their data-key
        // version alive until retention removes them.
        for st in inner.streams.read().values() {
            paths.extend(st.log.segment_paths());
            let consumers = st.dir.join(sealdb_stream::POSITIONS_FILE);
            if inner.fs.exists(&consumers) {
                paths.push(consumers);
            }
        }
        let archive = inner.path.join(crate::pitr::ARCHIVE_DIR);
        if inner.fs.exists(&archive) {
            for name in inner
                .fs
                .list_dir(&archive)
                .map_err(|e| Error::io(&archive, e))?
            {
                paths.push(archive.join(name));
            }
        }
        for p in paths {
            let h = match sealdb_crypto::sealed::read_file_header(inner.fs.as_ref(), &p) {
                Ok(h) => h,
                // A WAL segment retired (deleted or archived) by a flush while this list was
                // taken keeps no data-key version alive: retirement runs outside the WAL's
                // lock, so a listed segment may be gone by the time its header is read.
                Err(_) if !inner.fs.exists(&p) => continue,
                Err(e) => return Err(e.into()),
            };
            used.insert(h.data_key_version);
        }
        Ok(used)
    }

    /// The master key's state and the data keys in use.
    pub fn key_status(&self) -> Result<KeyStatus> {
        let inner = &self.inner;
        let block = inner.key_block.lock().clone();
        let keys = inner.keys.lock();
        let v = inner.versions.live();
        let mut counts = std::collections::BTreeMap::<u32, u64>::new();
        for levels in v.keyspaces.values() {
            for l in levels {
                for t in l {
                    *counts.entry(t.meta.data_key_version).or_default() += 1;
                }
            }
        }
        Ok(KeyStatus {
            master: keys.master().clone(),
            state: block
                .as_ref()
                .map_or(KeyState::Enabled, |b| b.state.clone()),
            unavailable_since: block.map(|b| b.since),
            last_check: *inner.last_key_check.lock(),
            current_data_key: keys.keyring().current_version(),
            data_keys: keys
                .version_created()
                .iter()
                .map(|(v, t)| DataKeyInfo {
                    version: *v,
                    created_at: *t,
                    tables: counts.get(v).copied().unwrap_or(0),
                })
                .collect(),
        })
    }

    /// Asks the provider now whether the master key is usable, updating the service state
    /// (the background check does this every `key_check_interval`).
    pub fn check_master_key(&self) -> Result<()> {
        check_key_now(&self.inner);
        self.check_key()
    }

    /// Fails with `KeyUnavailable` while the master key is unusable.
    pub(crate) fn check_key(&self) -> Result<()> {
        self.inner.check_key()
    }
}
