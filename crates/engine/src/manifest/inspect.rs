//! Decoded manifest edits for inspection tools (`sealdb inspect --manifest`).

use super::edit::{Edit, decode_group};
use crate::Result;
use sealdb_crypto::{ArtifactKind, CipherId, Expected, IntegrityReason, Keyring, SealedReader};
use std::path::Path;

/// One field of a manifest edit, as [`read_manifest_edits`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EditField {
    /// A number (ids, file numbers, sequence numbers, sizes).
    Number(u64),
    /// Text the manifest holds (keyspace names).
    Text(String),
    /// Bytes: user keys (a table's smallest and largest), digests and encoded definitions.
    Bytes(Vec<u8>),
}

/// One decoded manifest edit, for inspection tools (`sealdb inspect --manifest`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ManifestEdit {
    /// The edit group (one sealed block, applied atomically) it belongs to, from 0.
    pub group: u64,
    /// What it does: `create-keyspace`, `add-file`, `flushed-seq`, ...
    pub kind: &'static str,
    /// Its fields, by name, in encoding order.
    pub fields: Vec<(&'static str, EditField)>,
}

impl Edit {
    fn inspected(&self, group: u64) -> ManifestEdit {
        use EditField::{Bytes, Number, Text};
        let n = Number;
        let (kind, fields): (&'static str, Vec<(&'static str, EditField)>) = match self {
            Self::CreateKeyspace { id, name } => (
                "create-keyspace",
                vec![("id", n((*id).into())), ("name", Text(name.clone()))],
            ),
            Self::DropKeyspace { id } => ("drop-keyspace", vec![("id", n((*id).into()))]),
            Self::WalMinSegment(s) => ("wal-min-segment", vec![("segment", n(*s))]),
            Self::FlushedSeq(s) => ("flushed-seq", vec![("seq", n(*s))]),
            Self::NextFileNumber(f) => ("next-file-number", vec![("number", n(*f))]),
            Self::AddFile {
                keyspace,
                level,
                file,
            } => (
                "add-file",
                vec![
                    ("keyspace", n((*keyspace).into())),
                    ("level", n((*level).into())),
                    ("number", n(file.number)),
                    ("size", n(file.size)),
                    ("entries", n(file.entries)),
                    ("smallest", Bytes(file.smallest.clone())),
                    ("largest", Bytes(file.largest.clone())),
                    ("min_seq", n(file.min_seq)),
                    ("max_seq", n(file.max_seq)),
                    ("data_key_version", n(file.data_key_version.into())),
                ],
            ),
            Self::RemoveFile {
                keyspace,
                level,
                number,
            } => (
                "remove-file",
                vec![
                    ("keyspace", n((*keyspace).into())),
                    ("level", n((*level).into())),
                    ("number", n(*number)),
                ],
            ),
            Self::NextKeyspaceId(id) => ("next-keyspace-id", vec![("id", n((*id).into()))]),
            Self::CreateIndex {
                keyspace,
                base,
                definition,
            } => (
                "create-index",
                vec![
                    ("keyspace", n((*keyspace).into())),
                    ("base", n((*base).into())),
                    ("definition", Bytes(definition.clone())),
                ],
            ),
            Self::IndexReady { keyspace } => {
                ("index-ready", vec![("keyspace", n((*keyspace).into()))])
            }
            Self::SetStream {
                keyspace,
                view,
                retention_secs,
                max_bytes,
                start_seq,
            } => (
                "set-stream",
                vec![
                    ("keyspace", n((*keyspace).into())),
                    ("view", n((*view).into())),
                    ("retention_secs", n(*retention_secs)),
                    ("max_bytes", n(*max_bytes)),
                    ("start_seq", n(*start_seq)),
                ],
            ),
            Self::ClearStream { keyspace } => {
                ("clear-stream", vec![("keyspace", n((*keyspace).into()))])
            }
            Self::FormatVersion(v) => ("format-version", vec![("version", n((*v).into()))]),
        };
        ManifestEdit {
            group,
            kind,
            fields,
        }
    }
}

/// Decodes every edit of the manifest file at `path`, authenticating each block under
/// `keyring` (the database's data keys) and `cipher` (the database's data cipher, from its
/// KEYS file), without applying them: for inspection tools. The cipher is required, not read
/// from the file's header: a header claiming `none` (crc32 only) in an encrypted database is
/// a forgery anyone can write, and is refused here as the engine refuses it.
///
/// An edit group cut short by a crash ends the list, as it ends recovery; any other block
/// that fails authentication or does not decode is an error naming the file.
pub fn read_manifest_edits(
    fs: &dyn sealdb_vfs::FileSystem,
    path: &Path,
    keyring: &Keyring,
    cipher: CipherId,
) -> Result<Vec<ManifestEdit>> {
    let expected = Expected {
        kind: ArtifactKind::Manifest,
        database_id: keyring.database_id(),
        cipher: Some(cipher),
    };
    let reader = SealedReader::open(fs, path, keyring, &expected)?;
    let mut out = Vec::new();
    for (group, item) in (0u64..).zip(reader.blocks_unfinished_ok()) {
        match item {
            Ok((handle, block)) => {
                out.extend(
                    decode_group(&block.data, "edit group")
                        .map_err(|e| e.in_file(path).at(handle.offset))?
                        .iter()
                        .map(|e| e.inspected(group)),
                );
            }
            Err(sealdb_crypto::Error::Integrity {
                reason: IntegrityReason::Truncated,
                ..
            }) => break,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}
