//! The manifest's edit records and their encoding (layout in `docs/format.md`, "Manifest").

use super::format::FormatVersion;
use crate::codec::{Reader, Writer};
use crate::{Error, Result};

const MAX_NAME: usize = 1024;
const MAX_KEY: usize = 64 << 10;

/// One live table file, as the manifest records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    /// File number (the file is `<number>.sst` in the tables directory).
    pub number: u64,
    /// Size in bytes.
    pub size: u64,
    /// Entries (every version and tombstone).
    pub entries: u64,
    /// Smallest user key.
    pub smallest: Vec<u8>,
    /// Largest user key.
    pub largest: Vec<u8>,
    /// Lowest sequence number held.
    pub min_seq: u64,
    /// Highest sequence number held.
    pub max_seq: u64,
    /// The data-key version the file is sealed under.
    pub data_key_version: u32,
    /// The sealed file's id (from its header).
    pub file_id: [u8; 16],
    /// SHA-256 of the file's sealed footer block: detects a file replaced by another copy.
    pub footer_digest: [u8; 32],
}

impl FileMeta {
    /// Appends the file's record: the layout of an `AddFile` edit after its level, and of a
    /// backup catalogue's table entry (`docs/format.md`).
    pub(crate) fn encode(&self, w: &mut Writer) {
        w.u64(self.number)
            .u64(self.size)
            .u64(self.entries)
            .bytes(&self.smallest)
            .bytes(&self.largest)
            .u64(self.min_seq)
            .u64(self.max_seq)
            .u32(self.data_key_version)
            .raw(&self.file_id)
            .raw(&self.footer_digest);
    }

    /// Reads a record written by [`encode`](Self::encode).
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self> {
        Ok(Self {
            number: r.u64("file number")?,
            size: r.u64("file size")?,
            entries: r.u64("entries")?,
            smallest: r.bytes(MAX_KEY, "smallest key")?.to_vec(),
            largest: r.bytes(MAX_KEY, "largest key")?.to_vec(),
            min_seq: r.u64("min seq")?,
            max_seq: r.u64("max seq")?,
            data_key_version: r.u32("data-key version")?,
            file_id: r.array("file id")?,
            footer_digest: r.array("footer digest")?,
        })
    }
}

/// A change to the manifest state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Edit {
    CreateKeyspace {
        id: u32,
        name: String,
    },
    DropKeyspace {
        id: u32,
    },
    WalMinSegment(u64),
    FlushedSeq(u64),
    NextFileNumber(u64),
    AddFile {
        keyspace: u32,
        level: u8,
        file: FileMeta,
    },
    RemoveFile {
        keyspace: u32,
        level: u8,
        number: u64,
    },
    NextKeyspaceId(u32),
    /// A secondary index: its keyspace, its base keyspace and its persisted definition.
    CreateIndex {
        keyspace: u32,
        base: u32,
        definition: Vec<u8>,
    },
    /// The index's backfill finished: queries may use it.
    IndexReady {
        keyspace: u32,
    },
    /// Change stream settings of a keyspace (view type code, retention in seconds, size cap).
    SetStream {
        keyspace: u32,
        view: u8,
        retention_secs: u64,
        max_bytes: u64,
        start_seq: u64,
    },
    /// The keyspace's change stream is off.
    ClearStream {
        keyspace: u32,
    },
    /// The database's format version (absent = version 1). Written first in every snapshot,
    /// and appended by a ratchet, so that a reader meets it before anything that needs it.
    FormatVersion(u32),
}

/// A secondary index as the manifest records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IndexRecord {
    pub base: u32,
    pub definition: Vec<u8>,
    pub ready: bool,
}

/// A change stream's settings as the manifest records them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StreamRecord {
    pub view: u8,
    pub retention_secs: u64,
    pub max_bytes: u64,
    /// The last sequence number when the stream was enabled: earlier writes are not its.
    pub start_seq: u64,
}

impl Edit {
    pub(super) fn encode(&self, w: &mut Writer) {
        match self {
            Self::CreateKeyspace { id, name } => {
                w.u8(1).u32(*id).bytes(name.as_bytes());
            }
            Self::DropKeyspace { id } => {
                w.u8(2).u32(*id);
            }
            Self::WalMinSegment(n) => {
                w.u8(3).u64(*n);
            }
            Self::FlushedSeq(s) => {
                w.u8(4).u64(*s);
            }
            Self::NextFileNumber(n) => {
                w.u8(5).u64(*n);
            }
            Self::AddFile {
                keyspace,
                level,
                file,
            } => {
                w.u8(6).u32(*keyspace).u8(*level);
                file.encode(w);
            }
            Self::RemoveFile {
                keyspace,
                level,
                number,
            } => {
                w.u8(7).u32(*keyspace).u8(*level).u64(*number);
            }
            Self::NextKeyspaceId(id) => {
                w.u8(8).u32(*id);
            }
            Self::CreateIndex {
                keyspace,
                base,
                definition,
            } => {
                w.u8(9).u32(*keyspace).u32(*base).bytes(definition);
            }
            Self::IndexReady { keyspace } => {
                w.u8(10).u32(*keyspace);
            }
            Self::SetStream {
                keyspace,
                view,
                retention_secs,
                max_bytes,
                start_seq,
            } => {
                w.u8(11)
                    .u32(*keyspace)
                    .u8(*view)
                    .u64(*retention_secs)
                    .u64(*max_bytes)
                    .u64(*start_seq);
            }
            Self::ClearStream { keyspace } => {
                w.u8(12).u32(*keyspace);
            }
            Self::FormatVersion(v) => {
                w.u8(13).u32(*v);
            }
        }
    }

    pub(super) fn decode(r: &mut Reader<'_>) -> Result<Self> {
        Ok(match r.u8("edit tag")? {
            1 => Self::CreateKeyspace {
                id: r.u32("keyspace id")?,
                name: r.string(MAX_NAME, "keyspace name")?,
            },
            2 => Self::DropKeyspace {
                id: r.u32("keyspace id")?,
            },
            3 => Self::WalMinSegment(r.u64("wal segment")?),
            4 => Self::FlushedSeq(r.u64("flushed seq")?),
            5 => Self::NextFileNumber(r.u64("file number")?),
            6 => Self::AddFile {
                keyspace: r.u32("keyspace id")?,
                level: r.u8("level")?,
                file: FileMeta::decode(r)?,
            },
            7 => Self::RemoveFile {
                keyspace: r.u32("keyspace id")?,
                level: r.u8("level")?,
                number: r.u64("file number")?,
            },
            8 => Self::NextKeyspaceId(r.u32("next keyspace id")?),
            9 => Self::CreateIndex {
                keyspace: r.u32("index keyspace")?,
                base: r.u32("base keyspace")?,
                definition: r.bytes(1 << 20, "index definition")?.to_vec(),
            },
            10 => Self::IndexReady {
                keyspace: r.u32("index keyspace")?,
            },
            11 => Self::SetStream {
                keyspace: r.u32("keyspace")?,
                view: r.u8("view type")?,
                retention_secs: r.u64("retention")?,
                max_bytes: r.u64("size cap")?,
                start_seq: r.u64("start sequence")?,
            },
            12 => Self::ClearStream {
                keyspace: r.u32("keyspace")?,
            },
            13 => {
                // Checked as soon as it is decoded: the edits after it in a newer format may
                // not decode at all, and must be reported as newer, not as damage.
                let v = r.u32("format version")?;
                if v > FormatVersion::NEWEST.number() {
                    return Err(Error::FormatTooNew {
                        found: v,
                        supported: FormatVersion::NEWEST.number(),
                    });
                }
                if v < FormatVersion::OLDEST.number() {
                    return Err(Error::corruption(format!(
                        "manifest: format version {v} does not exist"
                    )));
                }
                Self::FormatVersion(v)
            }
            t => return Err(Error::corruption(format!("manifest: unknown edit tag {t}"))),
        })
    }
}

/// Encodes one edit group: the plaintext of one manifest block.
pub(super) fn encode_group(edits: &[Edit]) -> Vec<u8> {
    let mut w = Writer::default();
    w.u32(edits.len() as u32);
    for e in edits {
        e.encode(&mut w);
    }
    w.buf
}

/// Decodes one manifest block's edit group; `context` names the file for errors.
pub(super) fn decode_group(bytes: &[u8], context: &str) -> Result<Vec<Edit>> {
    let mut r = Reader::new(bytes, context);
    let count = r.u32("edit count")? as usize;
    if count > bytes.len() {
        return Err(Error::corruption(format!(
            "{context}: edit count {count} too large"
        )));
    }
    let mut edits = Vec::with_capacity(count);
    for _ in 0..count {
        edits.push(Edit::decode(&mut r)?);
    }
    if !r.is_empty() {
        return Err(Error::corruption(format!(
            "{context}: trailing bytes after edits"
        )));
    }
    Ok(edits)
}
