//! The state a replay of manifest edits builds: keyspaces, live tables per level, counters.

use super::edit::{Edit, FileMeta, IndexRecord, StreamRecord};
use super::format::FormatVersion;
use crate::{Error, Result};
use std::collections::BTreeMap;

/// Keyspace id of the default keyspace.
pub(crate) const DEFAULT_KEYSPACE: u32 = 0;

/// Number of levels of every keyspace's tree.
pub(crate) const NUM_LEVELS: usize = 7;

/// The state the manifest describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ManifestState {
    pub keyspaces: BTreeMap<u32, String>,
    pub wal_min_segment: u64,
    pub flushed_seq: u64,
    pub next_file_number: u64,
    /// Keyspace ids are never reused, so WAL records of a dropped keyspace never reach a new one.
    pub next_keyspace_id: u32,
    /// Secondary indexes by their keyspace.
    pub indexes: BTreeMap<u32, IndexRecord>,
    /// Change streams by keyspace.
    pub streams: BTreeMap<u32, StreamRecord>,
    /// Per keyspace, per level, live files by number.
    pub levels: BTreeMap<u32, Vec<BTreeMap<u64, FileMeta>>>,
    /// The database's format version.
    pub format_version: FormatVersion,
}

impl Default for ManifestState {
    fn default() -> Self {
        let mut keyspaces = BTreeMap::new();
        keyspaces.insert(DEFAULT_KEYSPACE, "default".to_string());
        let mut levels = BTreeMap::new();
        levels.insert(DEFAULT_KEYSPACE, vec![BTreeMap::new(); NUM_LEVELS]);
        Self {
            keyspaces,
            wal_min_segment: 0,
            flushed_seq: 0,
            next_file_number: 1,
            next_keyspace_id: 1,
            indexes: BTreeMap::new(),
            streams: BTreeMap::new(),
            levels,
            // What this build writes: a new database (or a restored one) is at the newest.
            format_version: FormatVersion::NEWEST,
        }
    }
}

impl ManifestState {
    pub(super) fn apply(&mut self, edit: &Edit) -> Result<()> {
        match edit {
            Edit::CreateKeyspace { id, name } => {
                self.keyspaces.insert(*id, name.clone());
                self.next_keyspace_id = self.next_keyspace_id.max(id.saturating_add(1));
                self.levels
                    .entry(*id)
                    .or_insert_with(|| vec![BTreeMap::new(); NUM_LEVELS]);
            }
            Edit::DropKeyspace { id } => {
                self.keyspaces.remove(id);
                self.levels.remove(id);
                self.indexes.remove(id);
                self.streams.remove(id);
                // Dropping a base keyspace drops its indexes' records (their keyspaces are
                // dropped by their own edits).
            }
            Edit::CreateIndex {
                keyspace,
                base,
                definition,
            } => {
                self.indexes.insert(
                    *keyspace,
                    IndexRecord {
                        base: *base,
                        definition: definition.clone(),
                        ready: false,
                    },
                );
            }
            Edit::IndexReady { keyspace } => {
                if let Some(i) = self.indexes.get_mut(keyspace) {
                    i.ready = true;
                }
            }
            Edit::SetStream {
                keyspace,
                view,
                retention_secs,
                max_bytes,
                start_seq,
            } => {
                self.streams.insert(
                    *keyspace,
                    StreamRecord {
                        view: *view,
                        retention_secs: *retention_secs,
                        max_bytes: *max_bytes,
                        start_seq: *start_seq,
                    },
                );
            }
            Edit::ClearStream { keyspace } => {
                self.streams.remove(keyspace);
            }
            Edit::FormatVersion(v) => {
                // Decoding refused unknown numbers; a version never goes down.
                let v = FormatVersion::new(*v).ok_or_else(|| {
                    Error::corruption(format!("manifest: unknown format version {v}"))
                })?;
                self.format_version = self.format_version.max(v);
            }
            Edit::WalMinSegment(n) => self.wal_min_segment = self.wal_min_segment.max(*n),
            Edit::FlushedSeq(s) => self.flushed_seq = self.flushed_seq.max(*s),
            Edit::NextKeyspaceId(n) => self.next_keyspace_id = self.next_keyspace_id.max(*n),
            Edit::NextFileNumber(n) => self.next_file_number = self.next_file_number.max(*n),
            Edit::AddFile {
                keyspace,
                level,
                file,
            } => {
                let lvl = self
                    .levels
                    .get_mut(keyspace)
                    .and_then(|l| l.get_mut(usize::from(*level)))
                    .ok_or_else(|| {
                        Error::corruption(format!(
                            "manifest adds a file to keyspace {keyspace} level {level}, which does not exist"
                        ))
                    })?;
                lvl.insert(file.number, file.clone());
                self.next_file_number = self.next_file_number.max(file.number + 1);
            }
            Edit::RemoveFile {
                keyspace,
                level,
                number,
            } => {
                let removed = self
                    .levels
                    .get_mut(keyspace)
                    .and_then(|l| l.get_mut(usize::from(*level)))
                    .and_then(|l| l.remove(number));
                if removed.is_none() {
                    return Err(Error::corruption(format!(
                        "manifest removes file {number} from keyspace {keyspace} level {level}, where it is not"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Edits that rebuild this state from nothing.
    pub(super) fn snapshot_edits(&self) -> Vec<Edit> {
        let mut edits = Vec::new();
        // Version 1 has no such edit: writing one would lock out the builds that only know
        // version 1, which an unratcheted database must stay readable by.
        if self.format_version > FormatVersion::V1 {
            edits.push(Edit::FormatVersion(self.format_version.number()));
        }
        for (id, name) in &self.keyspaces {
            edits.push(Edit::CreateKeyspace {
                id: *id,
                name: name.clone(),
            });
        }
        edits.push(Edit::WalMinSegment(self.wal_min_segment));
        edits.push(Edit::FlushedSeq(self.flushed_seq));
        edits.push(Edit::NextFileNumber(self.next_file_number));
        edits.push(Edit::NextKeyspaceId(self.next_keyspace_id));
        for (ks, i) in &self.indexes {
            edits.push(Edit::CreateIndex {
                keyspace: *ks,
                base: i.base,
                definition: i.definition.clone(),
            });
            if i.ready {
                edits.push(Edit::IndexReady { keyspace: *ks });
            }
        }
        for (ks, s) in &self.streams {
            edits.push(Edit::SetStream {
                keyspace: *ks,
                view: s.view,
                retention_secs: s.retention_secs,
                max_bytes: s.max_bytes,
                start_seq: s.start_seq,
            });
        }
        for (ks, levels) in &self.levels {
            for (level, files) in levels.iter().enumerate() {
                for file in files.values() {
                    edits.push(Edit::AddFile {
                        keyspace: *ks,
                        level: level as u8,
                        file: file.clone(),
                    });
                }
            }
        }
        edits
    }
}
