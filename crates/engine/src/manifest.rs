//! The manifest: the durable record of the database's shape — keyspaces, live table files per
//! level, the oldest WAL segment still needed, and counters.
//!
//! `MANIFEST-<n>` is a sealed file (kind `manifest`) whose blocks are edit groups, each
//! appended and synced before the change it records takes effect. `CURRENT` is a small sealed
//! file (kind `meta`) naming the live manifest; it is replaced atomically. Opening replays the
//! live manifest and then writes a *new* one holding a snapshot of the state, switching
//! `CURRENT` to it: a manifest is never appended to after it was reopened (nonce rule).

use crate::codec::{Reader, Writer};
use crate::{Error, Result};
use sealdb_crypto::{
    ArtifactKind, CipherId, Expected, IntegrityReason, Keyring, SealedReader, SealedWriter,
};
use sealdb_vfs::SharedFs;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub(crate) const CURRENT_FILE: &str = "CURRENT";
const MANIFEST_PREFIX: &str = "MANIFEST-";
const CURRENT_TAG: &[u8; 8] = b"SDBCURR1";
const MAX_NAME: usize = 1024;
const MAX_KEY: usize = 64 << 10;
/// Roll to a new manifest (a snapshot) once the live one grows past this.
const MANIFEST_ROLL_BYTES: u64 = 4 << 20;

/// Keyspace id of the default keyspace.
pub(crate) const DEFAULT_KEYSPACE: u32 = 0;

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
    fn encode(&self, w: &mut Writer) {
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
                w.u64(file.number)
                    .u64(file.size)
                    .u64(file.entries)
                    .bytes(&file.smallest)
                    .bytes(&file.largest)
                    .u64(file.min_seq)
                    .u64(file.max_seq)
                    .u32(file.data_key_version)
                    .raw(&file.file_id)
                    .raw(&file.footer_digest);
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

    fn decode(r: &mut Reader<'_>) -> Result<Self> {
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
                file: FileMeta {
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
                },
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

/// The database-wide on-disk format version (like pebble's `FormatMajorVersion`): one number
/// in the manifest that says which format features the database may use, so that a build
/// refuses a database it cannot read instead of misreading it.
///
/// A new database is created at [`FormatVersion::NEWEST`] (or at
/// [`Options::format_version`](crate::Options::format_version)); an existing one keeps its
/// version until [`Db::ratchet_format`](crate::Db::ratchet_format) (`sealdb upgrade`) raises
/// it. A version never goes down. `docs/format.md` ("Format versions") lists what each
/// version means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FormatVersion(u32);

impl FormatVersion {
    /// The format before versions were recorded: a manifest without a format-version edit.
    /// Builds from before the ratchet (commit 60c28ad and earlier) read and write it; only
    /// ChaCha20-Poly1305 (cipher 1) and `none` (cipher 0) files.
    pub const V1: Self = Self(1);
    /// The manifest records the format version (edit tag 13, the first edit of every
    /// snapshot), and AES-256-GCM files (cipher 2) may exist. Builds that only know version 1
    /// report such a manifest as damaged (`unknown edit tag 13`), never misread it.
    pub const V2: Self = Self(2);
    /// The oldest version this build opens.
    pub const OLDEST: Self = Self::V1;
    /// The newest version this build knows: the default for a new database.
    pub const NEWEST: Self = Self::V2;

    /// The version numbered `n`, if this build knows it (`OLDEST..=NEWEST`).
    pub fn new(n: u32) -> Option<Self> {
        (Self::OLDEST.0..=Self::NEWEST.0)
            .contains(&n)
            .then_some(Self(n))
    }

    /// Its number, as the manifest records it.
    pub fn number(self) -> u32 {
        self.0
    }

    /// The lowest version whose readers know `cipher`: a database must be at least at it.
    pub fn required_for(cipher: CipherId) -> Self {
        match cipher {
            CipherId::None | CipherId::ChaCha20Poly1305 => Self::V1,
            // Version 1 builds refuse the cipher byte.
            CipherId::Aes256Gcm => Self::V2,
        }
    }
}

impl std::fmt::Display for FormatVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::str::FromStr for FormatVersion {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let n: u32 = s.trim().parse().map_err(|_| {
            Error::invalid_argument(format!("format version {s:?} is not a number"))
        })?;
        Self::new(n).ok_or_else(|| {
            Error::invalid_argument(format!(
                "format version {n} is unknown to this build (it knows {} to {})",
                Self::OLDEST,
                Self::NEWEST
            ))
        })
    }
}

/// Refuses a format version that cannot hold a database sealed with `cipher`.
pub(crate) fn check_cipher(version: FormatVersion, cipher: CipherId) -> Result<()> {
    let needed = FormatVersion::required_for(cipher);
    if version < needed {
        return Err(Error::invalid_argument(format!(
            "cipher {cipher:?} needs format version {needed} or newer, not {version}"
        )));
    }
    Ok(())
}

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
    fn apply(&mut self, edit: &Edit) -> Result<()> {
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
    fn snapshot_edits(&self) -> Vec<Edit> {
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

fn encode_group(edits: &[Edit]) -> Vec<u8> {
    let mut w = Writer::default();
    w.u32(edits.len() as u32);
    for e in edits {
        e.encode(&mut w);
    }
    w.buf
}

fn decode_group(bytes: &[u8], context: &str) -> Result<Vec<Edit>> {
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

/// Replays manifest bytes (a whole `MANIFEST-<n>` file) with a fixed keyring; for the fuzz
/// target. Never panics.
#[cfg(feature = "fuzzing")]
pub fn replay_manifest_for_fuzz(
    bytes: &[u8],
    keyring: &Keyring,
    cipher: CipherId,
) -> Result<usize> {
    let fs = sealdb_vfs::CrashFs::new();
    let dir = Path::new("/m");
    let _ = sealdb_vfs::FileSystem::create_dir_all(&fs, dir);
    let path = dir.join("MANIFEST-0000000000000001");
    let mut f = sealdb_vfs::FileSystem::create_new(&fs, &path).map_err(|e| Error::io(&path, e))?;
    f.append(bytes).map_err(|e| Error::io(&path, e))?;
    drop(f);
    let state = read_manifest(&fs, &path, keyring, cipher)?;
    Ok(state.keyspaces.len())
}

fn manifest_name(number: u64) -> String {
    format!("{MANIFEST_PREFIX}{number:016}")
}

#[cfg(feature = "fuzzing")]
fn read_manifest(
    fs: &dyn sealdb_vfs::FileSystem,
    path: &Path,
    keyring: &Keyring,
    cipher: CipherId,
) -> Result<ManifestState> {
    read_manifest_counted(fs, path, keyring, cipher).map(|(s, _)| s)
}

/// Replays a manifest; also returns how many edit groups it held.
fn read_manifest_counted(
    fs: &dyn sealdb_vfs::FileSystem,
    path: &Path,
    keyring: &Keyring,
    cipher: CipherId,
) -> Result<(ManifestState, u64)> {
    let mut groups = 0u64;
    let expected = Expected {
        kind: ArtifactKind::Manifest,
        database_id: keyring.database_id(),
        cipher: Some(cipher),
    };
    let reader = SealedReader::open(fs, path, keyring, &expected)?;
    let mut state = ManifestState {
        keyspaces: BTreeMap::new(),
        levels: BTreeMap::new(),
        // A manifest without a format-version edit is version 1.
        format_version: FormatVersion::OLDEST,
        ..ManifestState::default()
    };
    for item in reader.blocks_unfinished_ok() {
        match item {
            Ok((handle, block)) => {
                // Decode and apply errors name the manifest and the edit group's offset.
                let at_group = |e: Error| e.in_file(path).at(handle.offset);
                for edit in decode_group(&block.data, "edit group").map_err(at_group)? {
                    state.apply(&edit).map_err(at_group)?;
                }
                groups += 1;
            }
            // An edit group whose write was cut by a crash was never acknowledged.
            Err(sealdb_crypto::Error::Integrity {
                reason: IntegrityReason::Truncated,
                ..
            }) => break,
            Err(e) => return Err(e.into()),
        }
    }
    if !state.keyspaces.contains_key(&DEFAULT_KEYSPACE) {
        return Err(Error::corruption("no default keyspace".into()).in_file(path));
    }
    Ok((state, groups))
}

/// The live manifest.
#[derive(Debug)]
pub(crate) struct Manifest {
    fs: SharedFs,
    dir: PathBuf,
    cipher: CipherId,
    number: u64,
    /// `None` in a read-only database: nothing is ever written.
    writer: Option<SealedWriter>,
    state: ManifestState,
    /// Edit groups written to the live manifest (its first is the snapshot).
    groups: u64,
    /// Told of every new position (the head record pins the manifest's end).
    head: Option<std::sync::Arc<crate::head::Head>>,
    /// Set when a write to the live manifest failed: its tail is unknown (a partial or even a
    /// whole edit group may be on disk), so it is never appended to again; the next edit
    /// starts a new manifest instead.
    needs_roll: bool,
    /// Table files (number, path) an edit that failed may have named: the unknown tail could
    /// make them live on reopen, so they are deleted only once a new manifest replaced that
    /// tail, and only if the state does not hold them.
    doubtful: Vec<(u64, PathBuf)>,
}

/// A manifest as read at open, before anything is written.
#[derive(Debug)]
pub(crate) struct ReadManifest {
    /// The manifest number `CURRENT` names.
    pub number: u64,
    /// The state its edits build.
    pub state: ManifestState,
    /// Edit groups it holds.
    pub groups: u64,
}

impl Manifest {
    /// Writes the manifest of a restored database, holding `state`.
    pub(crate) fn create_with_state(
        fs: SharedFs,
        dir: &Path,
        keyring: &Keyring,
        cipher: CipherId,
        state: ManifestState,
    ) -> Result<Self> {
        Self::write_new(fs, dir, keyring, cipher, 1, state)
    }

    /// Writes the manifest of a new database at format `version`.
    pub(crate) fn create(
        fs: SharedFs,
        dir: &Path,
        keyring: &Keyring,
        cipher: CipherId,
        version: FormatVersion,
    ) -> Result<Self> {
        check_cipher(version, cipher)?;
        let state = ManifestState {
            format_version: version,
            ..ManifestState::default()
        };
        Self::write_new(fs, dir, keyring, cipher, 1, state)
    }

    /// The database's format version.
    pub(crate) fn format_version(&self) -> FormatVersion {
        self.state.format_version
    }

    /// Raises the format version to `to` (durably, before returning). Raising to the current
    /// version does nothing; lowering is refused, since files of the newer format may exist.
    pub(crate) fn ratchet(&mut self, to: FormatVersion, keyring: &Keyring) -> Result<bool> {
        let current = self.state.format_version;
        if to < current {
            return Err(Error::invalid_argument(format!(
                "the database is at format version {current}; a version never goes down (asked for {to})"
            )));
        }
        if to == current {
            return Ok(false);
        }
        self.apply(vec![Edit::FormatVersion(to.number())], keyring)?;
        Ok(true)
    }

    /// Reads the manifest `CURRENT` names and replays it, changing nothing on disk.
    pub(crate) fn read(
        fs: &dyn sealdb_vfs::FileSystem,
        dir: &Path,
        keyring: &Keyring,
        cipher: CipherId,
    ) -> Result<ReadManifest> {
        let number = read_current(fs, dir, keyring)?;
        let path = dir.join(manifest_name(number));
        if !fs.exists(&path) {
            return Err(Error::corruption(format!(
                "CURRENT names {}, which is missing",
                path.display()
            )));
        }
        let (state, groups) = read_manifest_counted(fs, &path, keyring, cipher)?;
        Ok(ReadManifest {
            number,
            state,
            groups,
        })
    }

    /// Continues after a manifest read at open: writes a fresh manifest holding its state
    /// (the replayed one is never appended to) and switches `CURRENT` to it.
    pub(crate) fn start_after(
        fs: SharedFs,
        dir: &Path,
        keyring: &Keyring,
        cipher: CipherId,
        read: ReadManifest,
    ) -> Result<Self> {
        Self::write_new(fs, dir, keyring, cipher, read.number + 1, read.state)
    }

    /// A manifest that is only read: edits are refused.
    pub(crate) fn read_only(
        fs: SharedFs,
        dir: &Path,
        cipher: CipherId,
        read: ReadManifest,
    ) -> Self {
        Self {
            fs,
            dir: dir.to_path_buf(),
            cipher,
            number: read.number,
            writer: None,
            state: read.state,
            groups: read.groups,
            head: None,
            needs_roll: false,
            doubtful: Vec::new(),
        }
    }

    fn write_new(
        fs: SharedFs,
        dir: &Path,
        keyring: &Keyring,
        cipher: CipherId,
        number: u64,
        state: ManifestState,
    ) -> Result<Self> {
        let path = dir.join(manifest_name(number));
        if fs.exists(&path) {
            // Left by a crash before CURRENT was switched to it: never reuse, never append.
            fs.remove_file(&path).map_err(|e| Error::io(&path, e))?;
        }
        let mut writer =
            SealedWriter::create(fs.as_ref(), &path, keyring, ArtifactKind::Manifest, cipher)?;
        writer.append_block(&encode_group(&state.snapshot_edits()))?;
        writer.sync()?;
        fs.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
        write_current(fs.as_ref(), dir, keyring, number)?;
        // Older manifests (and orphans of crashed switches) are now garbage. Best effort: the
        // switch is done, so a failure here must not make the caller retry it (a retry would
        // remove the manifest CURRENT now names); leftovers go at the next switch.
        if let Ok(names) = fs.list_dir(dir) {
            for name in names {
                if let Some(n) = name
                    .strip_prefix(MANIFEST_PREFIX)
                    .and_then(|d| d.parse::<u64>().ok())
                    && n != number
                {
                    let _ = fs.remove_file(&dir.join(&name));
                }
            }
            let _ = fs.sync_dir(dir);
        }
        Ok(Self {
            fs,
            dir: dir.to_path_buf(),
            cipher,
            number,
            writer: Some(writer),
            state,
            groups: 1,
            head: None,
            needs_roll: false,
            doubtful: Vec::new(),
        })
    }

    /// The live manifest's position: (manifest number, edit groups written).
    pub(crate) fn position(&self) -> (u64, u64) {
        (self.number, self.groups)
    }

    /// Re-reads `CURRENT` and the manifest it names from disk (for `verify`): `CURRENT` must
    /// name this manifest, and the file must authenticate and hold every edit group written to
    /// it (a cut at a block boundary authenticates, so the count is what shows it). Call with
    /// the manifest lock held, so that no edit is appended meanwhile. A read-only handle
    /// accepts a newer manifest or more edit groups (another process's writer moved on).
    pub(crate) fn verify_on_disk(&self, keyring: &Keyring) -> Result<()> {
        let read_only = self.writer.is_none();
        let named = read_current(self.fs.as_ref(), &self.dir, keyring)?;
        if named < self.number || (named > self.number && !read_only) {
            return Err(Error::corruption(format!(
                "{} names manifest {named}, but the live manifest is {}",
                self.dir.join(CURRENT_FILE).display(),
                self.number
            )));
        }
        let path = self.dir.join(manifest_name(named));
        let (_, groups) = read_manifest_counted(self.fs.as_ref(), &path, keyring, self.cipher)?;
        let short = named == self.number && groups < self.groups;
        if short || (!read_only && groups != self.groups) {
            return Err(Error::corruption(format!(
                "{} holds {groups} edit groups, but {} were written to it",
                path.display(),
                self.groups
            )));
        }
        Ok(())
    }

    /// Reports every new position to the head from now on.
    pub(crate) fn set_head(&mut self, head: std::sync::Arc<crate::head::Head>) {
        self.head = Some(head);
    }

    /// Tells the head the new position. Runs after the edit is durable and applied, so a
    /// head that cannot be written for lack of space is not an error of the edit: reporting
    /// one would make the caller redo a change that already happened (a flush would write its
    /// tables twice). A lagging head only checks less (it still names an older, smaller
    /// position) and catches up at the next edit.
    fn record_position(&self) -> Result<()> {
        if let Some(h) = &self.head {
            let pos = self.position();
            match h.update(|s| s.manifest = s.manifest.max(pos)) {
                Err(e) if !e.is_no_space() => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// Starts a new manifest holding a snapshot of the state (sealed under the keyring's
    /// current data key) and switches `CURRENT` to it.
    pub(crate) fn roll(&mut self, keyring: &Keyring) -> Result<()> {
        self.roll_to(keyring, self.state.clone())
    }

    /// Starts a new manifest holding `state` and switches to it. On failure nothing changes
    /// (the half-written new manifest is replaced by the next attempt).
    fn roll_to(&mut self, keyring: &Keyring, state: ManifestState) -> Result<()> {
        if self.writer.is_none() {
            return Err(Error::ReadOnly);
        }
        let mut rolled = Self::write_new(
            self.fs.clone(),
            &self.dir,
            keyring,
            self.cipher,
            self.number + 1,
            state,
        )?;
        rolled.head = self.head.take();
        let doubtful = std::mem::take(&mut self.doubtful);
        *self = rolled;
        // The unknown tail is gone with the old manifest: files only it may have named are
        // orphans now.
        for (number, path) in doubtful {
            if !self.holds_table(number) {
                let _ = self.fs.remove_file(&path);
            }
        }
        self.record_position()
    }

    fn holds_table(&self, number: u64) -> bool {
        self.state
            .levels
            .values()
            .flatten()
            .any(|files| files.contains_key(&number))
    }

    pub(crate) fn state(&self) -> &ManifestState {
        &self.state
    }

    /// Notes table files a failed edit named (see [`apply`](Self::apply)): they are deleted
    /// when it is safe, or else found as orphans at the next open.
    pub(crate) fn doubtful_outputs(&mut self, files: impl IntoIterator<Item = (u64, PathBuf)>) {
        self.doubtful.extend(files);
    }

    /// Durably records `edits`, then applies them. On failure nothing is applied, and the
    /// live manifest is not written again: the next edit goes to a new manifest. A failure
    /// for lack of space ([`Error::NoSpace`]) is therefore safe to retry; the caller must
    /// still treat the edit as possibly durable until then (see
    /// [`doubtful_outputs`](Self::doubtful_outputs)).
    pub(crate) fn apply(&mut self, edits: Vec<Edit>, keyring: &Keyring) -> Result<()> {
        let Some(writer) = self.writer.as_mut() else {
            return Err(Error::ReadOnly);
        };
        let mut next = self.state.clone();
        for e in &edits {
            next.apply(e)?;
        }
        if self.needs_roll || writer.offset() > MANIFEST_ROLL_BYTES {
            return self.roll_to(keyring, next);
        }
        let written = writer
            .append_block(&encode_group(&edits))
            .and_then(|_| writer.sync());
        if let Err(e) = written {
            self.needs_roll = true;
            return Err(e.into());
        }
        self.state = next;
        self.groups += 1;
        self.record_position()
    }
}

pub(crate) fn read_current(
    fs: &dyn sealdb_vfs::FileSystem,
    dir: &Path,
    keyring: &Keyring,
) -> Result<u64> {
    let path = dir.join(CURRENT_FILE);
    let data =
        sealdb_crypto::sealed::read_small_sealed_file(fs, &path, keyring, ArtifactKind::Meta)?;
    let label = path.display().to_string();
    let mut r = Reader::new(&data, &label);
    if r.take(8, "tag")? != CURRENT_TAG {
        return Err(Error::corruption(format!("{label}: bad tag")));
    }
    r.u64("manifest number")
}

pub(crate) fn write_current(
    fs: &dyn sealdb_vfs::FileSystem,
    dir: &Path,
    keyring: &Keyring,
    number: u64,
) -> Result<()> {
    let path = dir.join(CURRENT_FILE);
    let mut payload = Vec::with_capacity(16);
    payload.extend_from_slice(CURRENT_TAG);
    payload.extend_from_slice(&number.to_le_bytes());
    Ok(sealdb_crypto::sealed::write_small_sealed_file(
        fs,
        &path,
        keyring,
        ArtifactKind::Meta,
        &payload,
    )?)
}

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
