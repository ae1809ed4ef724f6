//! The backup catalogue: what one backup holds ([`BackupInfo`]), its sealed encoding, and
//! the operations on a backup directory's catalogues (read, list, choose, delete, collect).

use crate::codec::{Reader, Writer};
use crate::manifest::FileMeta;
use crate::options::Options;
use crate::{Error, Result};
use sealdb_crypto::{ArtifactKind, CipherId, DatabaseId, KeyDescriptor, Keyring, KeysFile};
use sealdb_vfs::SharedFs;
use std::path::{Path, PathBuf};

/// The catalogue format written now: v1 plus each WAL segment's size and digest and the
/// predecessor link.
const CATALOG_MAGIC: &[u8; 8] = b"SDBCATL2";

/// The first catalogue format, still read (backups are never rewritten).
const CATALOG_MAGIC_V1: &[u8; 8] = b"SDBCATL1";

const CATALOG_SUFFIX: &str = ".catalog";

const MAX_ITEMS: usize = 1 << 20;

/// One WAL segment kept for point-in-time recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalSegmentInfo {
    /// File id (its name in the backup's `wal/`).
    pub file_id: [u8; 16],
    /// Segment number (its order in the chain).
    pub number: u64,
    /// First and last sequence numbers it holds (0, 0 if none).
    pub first_seq: u64,
    /// Last sequence number.
    pub last_seq: u64,
    /// Commit time of its first and last frames (Unix ms).
    pub first_time_ms: u64,
    /// Commit time of its last frame.
    pub last_time_ms: u64,
    /// Its length in bytes as the backup keeps it (`None` in catalogues of format 1).
    pub size: Option<u64>,
    /// SHA-256 of the whole file as the backup keeps it (`None` in catalogues of format 1):
    /// a closed segment never changes, so any cut or changed byte shows.
    pub digest: Option<[u8; 32]>,
}

/// What a backup is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupInfo {
    /// The backup's id (hex).
    pub id: String,
    /// The database.
    pub database_id: DatabaseId,
    /// When it was taken (Unix ms).
    pub created_ms: u64,
    /// The sequence number it is consistent at: it holds exactly the writes up to it.
    pub sequence: u64,
    /// The data cipher.
    pub cipher: CipherId,
    /// The master key its data keys are wrapped under.
    pub master: KeyDescriptor,
    /// Data-key versions its files use.
    pub data_key_versions: Vec<u32>,
    /// Keyspaces (id, name).
    pub keyspaces: Vec<(u32, String)>,
    /// Tables per (keyspace, level).
    pub tables: Vec<(u32, u8, FileMeta)>,
    /// WAL segments after the backup's sequence, for point-in-time restore.
    pub wal: Vec<WalSegmentInfo>,
    /// Total bytes of its tables.
    pub bytes: u64,
    /// Secondary indexes: (index keyspace, base keyspace, persisted definition, ready).
    pub indexes: Vec<(u32, u32, Vec<u8>, bool)>,
    /// The newest backup of the directory when this one was taken: its id and the SHA-256 of
    /// its catalogue file (`None` for the first backup, and in catalogues of format 1).
    pub predecessor: Option<(String, [u8; 32])>,
}

impl BackupInfo {
    /// The latest point a restore from this backup directory can reach through this backup
    /// and its WAL: (sequence, Unix ms).
    pub fn latest_restorable(&self) -> (u64, u64) {
        self.wal
            .iter()
            .map(|w| (w.last_seq, w.last_time_ms))
            .max()
            .map_or((self.sequence, self.created_ms), |(s, t)| {
                (s.max(self.sequence), t.max(self.created_ms))
            })
    }
}

pub(super) fn encode_catalog(b: &BackupInfo) -> Vec<u8> {
    let mut w = Writer::default();
    w.raw(CATALOG_MAGIC);
    w.bytes(b.id.as_bytes());
    w.raw(&b.database_id.0);
    w.u64(b.created_ms).u64(b.sequence).u8(b.cipher as u8);
    w.bytes(b.master.provider.as_bytes())
        .bytes(b.master.key_id.as_bytes());
    w.u32(b.data_key_versions.len() as u32);
    for v in &b.data_key_versions {
        w.u32(*v);
    }
    w.u32(b.keyspaces.len() as u32);
    for (id, name) in &b.keyspaces {
        w.u32(*id).bytes(name.as_bytes());
    }
    w.u32(b.tables.len() as u32);
    for (ks, level, f) in &b.tables {
        w.u32(*ks).u8(*level);
        f.encode(&mut w);
    }
    w.u32(b.wal.len() as u32);
    for s in &b.wal {
        w.raw(&s.file_id)
            .u64(s.number)
            .u64(s.first_seq)
            .u64(s.last_seq)
            .u64(s.first_time_ms)
            .u64(s.last_time_ms)
            .u64(s.size.unwrap_or(0))
            .raw(&s.digest.unwrap_or([0; 32]));
    }
    w.u32(b.indexes.len() as u32);
    for (ks, base, def, ready) in &b.indexes {
        w.u32(*ks).u32(*base).bytes(def).u8(u8::from(*ready));
    }
    match &b.predecessor {
        None => {
            w.u8(0);
        }
        Some((id, digest)) => {
            w.u8(1).bytes(id.as_bytes()).raw(digest);
        }
    }
    w.buf
}

fn decode_catalog(bytes: &[u8], label: &str) -> Result<BackupInfo> {
    let mut r = Reader::new(bytes, label);
    let v2 = match r.take(8, "magic")? {
        m if m == CATALOG_MAGIC => true,
        m if m == CATALOG_MAGIC_V1 => false,
        _ => {
            return Err(Error::corruption(format!(
                "{label}: not a backup catalogue"
            )));
        }
    };
    let id = r.string(64, "backup id")?;
    let database_id = DatabaseId(r.array("database id")?);
    let created_ms = r.u64("time")?;
    let sequence = r.u64("sequence")?;
    let cipher = CipherId::from_u8(r.u8("cipher")?)
        .ok_or_else(|| Error::corruption(format!("{label}: unknown cipher")))?;
    let master = KeyDescriptor::new(r.string(2048, "provider")?, r.string(2048, "key id")?);
    let count = |r: &mut Reader<'_>, what: &'static str| -> Result<usize> {
        let n = r.u32(what)? as usize;
        if n > MAX_ITEMS {
            return Err(Error::corruption(format!("{label}: too many {what}")));
        }
        Ok(n)
    };
    let mut data_key_versions = Vec::new();
    for _ in 0..count(&mut r, "versions")? {
        data_key_versions.push(r.u32("version")?);
    }
    let mut keyspaces = Vec::new();
    for _ in 0..count(&mut r, "keyspaces")? {
        keyspaces.push((r.u32("keyspace id")?, r.string(1024, "keyspace name")?));
    }
    let mut tables = Vec::new();
    let mut bytes_total = 0u64;
    for _ in 0..count(&mut r, "tables")? {
        let ks = r.u32("keyspace")?;
        let level = r.u8("level")?;
        let f = FileMeta::decode(&mut r)?;
        bytes_total = bytes_total.saturating_add(f.size);
        tables.push((ks, level, f));
    }
    let mut wal = Vec::new();
    for _ in 0..count(&mut r, "wal segments")? {
        wal.push(WalSegmentInfo {
            file_id: r.array("file id")?,
            number: r.u64("number")?,
            first_seq: r.u64("first seq")?,
            last_seq: r.u64("last seq")?,
            first_time_ms: r.u64("first time")?,
            last_time_ms: r.u64("last time")?,
            size: None,
            digest: None,
        });
        if v2 && let Some(w) = wal.last_mut() {
            w.size = Some(r.u64("segment size")?);
            w.digest = Some(r.array("segment digest")?);
        }
    }
    let mut indexes = Vec::new();
    for _ in 0..count(&mut r, "indexes")? {
        let ks = r.u32("index keyspace")?;
        let base = r.u32("base keyspace")?;
        let def = r.bytes(1 << 20, "index definition")?.to_vec();
        let ready = r.u8("ready")? != 0;
        indexes.push((ks, base, def, ready));
    }
    let predecessor = match (v2, if v2 { r.u8("predecessor flag")? } else { 0 }) {
        (_, 0) => None,
        (_, 1) => Some((
            r.string(64, "predecessor id")?,
            r.array("predecessor digest")?,
        )),
        _ => {
            return Err(Error::corruption(format!("{label}: bad predecessor flag")));
        }
    };
    if !r.is_empty() {
        return Err(Error::corruption(format!("{label}: trailing bytes")));
    }
    Ok(BackupInfo {
        indexes,
        predecessor,
        id,
        database_id,
        created_ms,
        sequence,
        cipher,
        master,
        data_key_versions,
        keyspaces,
        tables,
        wal,
        bytes: bytes_total,
    })
}

/// Decodes a catalogue's plaintext; for the fuzz target.
#[cfg(feature = "fuzzing")]
pub fn decode_catalog_for_fuzz(bytes: &[u8]) -> Result<usize> {
    decode_catalog(bytes, "fuzz").map(|b| b.tables.len())
}

pub(super) fn catalog_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}{CATALOG_SUFFIX}"))
}

/// Opens a backup's KEYS copy with the master key it names (resolved from `opts`).
pub(super) fn backup_keyring(
    fs: &SharedFs,
    dir: &Path,
    id: &str,
    opts: &Options,
) -> Result<(KeysFile, Keyring)> {
    // KeysFile reads "<dir>/KEYS": stage the copy under that name in a scratch directory of
    // the same filesystem.
    let bytes =
        sealdb_vfs::read_file_limited(fs.as_ref(), &dir.join(format!("{id}.KEYS")), 4 << 20)
            .map_err(|e| Error::io(dir, e))?;
    let scratch = dir.join(format!(".keys-{id}"));
    let _ = fs.create_dir_all(&scratch);
    let staged = scratch.join(sealdb_crypto::keysfile::KEYS_FILE_NAME);
    let _ = fs.remove_file(&staged);
    let mut f = fs.create_new(&staged).map_err(|e| Error::io(&staged, e))?;
    f.append(&bytes).map_err(|e| Error::io(&staged, e))?;
    drop(f);
    let summary = KeysFile::peek(fs.as_ref(), &scratch);
    let result = summary.and_then(|s| {
        KeysFile::open(fs.as_ref(), &scratch, |desc| {
            crate::keys::resolve_provider(desc, s.database_id, opts).map_err(crate::keys::to_crypto)
        })
    });
    let _ = fs.remove_file(&staged);
    let _ = fs.remove_dir(&scratch);
    let (keys, _) = result?;
    let keyring = keys.keyring().clone();
    Ok((keys, keyring))
}

pub(super) fn catalog_ids(fs: &SharedFs, dir: &Path) -> Result<Vec<String>> {
    let mut ids: Vec<String> = fs
        .list_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .into_iter()
        .filter_map(|n| n.strip_suffix(CATALOG_SUFFIX).map(str::to_string))
        .collect();
    ids.sort();
    Ok(ids)
}

/// Reads one backup's catalogue (authenticated with its data keys).
pub fn read_backup(dir: &Path, id: &str, opts: &Options) -> Result<BackupInfo> {
    let fs = &opts.fs;
    let (_, keyring) = backup_keyring(fs, dir, id, opts)?;
    let path = dir.join(format!("{id}{CATALOG_SUFFIX}"));
    let bytes = sealdb_crypto::sealed::read_small_sealed_file(
        fs.as_ref(),
        &path,
        &keyring,
        ArtifactKind::BackupCatalog,
    )?;
    let info = decode_catalog(&bytes, &path.display().to_string())?;
    if info.id != id {
        return Err(Error::corruption(format!(
            "{}: names backup {}",
            path.display(),
            info.id
        )));
    }
    Ok(info)
}

pub(super) fn choose<'a>(backups: &'a [BackupInfo], id: Option<&str>) -> Result<&'a BackupInfo> {
    match id {
        Some(id) => backups
            .iter()
            .find(|b| b.id == id)
            .ok_or_else(|| Error::invalid_argument(format!("no backup {id}"))),
        None => backups
            .last()
            .ok_or_else(|| Error::invalid_argument("the directory holds no backup".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(wal: Vec<WalSegmentInfo>, predecessor: Option<(String, [u8; 32])>) -> BackupInfo {
        BackupInfo {
            id: "0000000000001-00".into(),
            database_id: DatabaseId([7; 16]),
            created_ms: 1,
            sequence: 5,
            cipher: CipherId::ChaCha20Poly1305,
            master: KeyDescriptor::new("owned", "k"),
            data_key_versions: vec![1],
            keyspaces: vec![(0, "default".into())],
            tables: Vec::new(),
            wal,
            bytes: 0,
            indexes: Vec::new(),
            predecessor,
        }
    }

    #[test]
    fn catalogues_of_format_1_are_still_read() -> Result<()> {
        // Format 1 is format 2 without the predecessor flag (and, per segment, without size
        // and digest): a catalogue with no WAL segment differs only in magic and last byte.
        let mut v1 = encode_catalog(&sample(Vec::new(), None));
        v1.splice(..8, CATALOG_MAGIC_V1.iter().copied());
        v1.pop();
        let b = decode_catalog(&v1, "v1")?;
        assert_eq!(b, sample(Vec::new(), None));
        Ok(())
    }

    #[test]
    fn catalogues_round_trip_and_refuse_every_cut() -> Result<()> {
        let w = WalSegmentInfo {
            file_id: [3; 16],
            number: 9,
            first_seq: 6,
            last_seq: 8,
            first_time_ms: 2,
            last_time_ms: 3,
            size: Some(4096),
            digest: Some([5; 32]),
        };
        let b = sample(vec![w], Some(("0000000000000-01".into(), [9; 32])));
        let bytes = encode_catalog(&b);
        assert_eq!(decode_catalog(&bytes, "v2")?, b);
        for cut in 0..bytes.len() {
            assert!(
                decode_catalog(&bytes[..cut], "cut").is_err(),
                "cut at {cut}"
            );
        }
        Ok(())
    }
}
