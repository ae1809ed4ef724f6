//! Online encrypted backups, verification, restore under any master key, and point-in-time
//! restore from a backup plus the archived WAL.
//!
//! A backup directory holds, for any number of backups of one database:
//!
//! ```text
//! <dir>/<backup id>.catalog       sealed (kind backup-catalog): what the backup is
//! <dir>/<backup id>.KEYS          the database's KEYS file at backup time (wrapped data keys)
//! <dir>/tables/<file id>.sst      table files, shared by every backup that includes them
//! <dir>/wal/<file id>.wal         WAL segments (point-in-time recovery), shared likewise
//! ```
//!
//! Files are hard links of the live sealed files when the backup directory is on the same
//! filesystem, copies otherwise: nothing is decrypted or re-encrypted, so nothing in a backup
//! is in clear and a backup stays readable only with the master key. The catalogue is written
//! last and atomically: a crash during a backup leaves no catalogue, only unreferenced files
//! (removed by the next backup or delete).

use crate::codec::{Reader, Writer};
use crate::db::Db;
use crate::keylife::target_provider_for;
use crate::manifest::{FileMeta, ManifestState, NUM_LEVELS};
use crate::options::{MasterKey, Options};
use crate::{Error, Result};
use sealdb_crypto::{ArtifactKind, CipherId, DatabaseId, KeyDescriptor, Keyring, KeysFile};
use sealdb_vfs::SharedFs;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The catalogue format written now: v1 plus each WAL segment's size and digest and the
/// predecessor link.
const CATALOG_MAGIC: &[u8; 8] = b"SDBCATL2";
/// The first catalogue format, still read (backups are never rewritten).
const CATALOG_MAGIC_V1: &[u8; 8] = b"SDBCATL1";
const ANCHOR_MAGIC: &[u8; 8] = b"SDBBKAN1";
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

fn encode_catalog(b: &BackupInfo) -> Vec<u8> {
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
        w.u64(f.number)
            .u64(f.size)
            .u64(f.entries)
            .bytes(&f.smallest)
            .bytes(&f.largest)
            .u64(f.min_seq)
            .u64(f.max_seq)
            .u32(f.data_key_version)
            .raw(&f.file_id)
            .raw(&f.footer_digest);
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
    let count = |r: &mut Reader<'_>, what: &str| -> Result<usize> {
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
        let f = FileMeta {
            number: r.u64("number")?,
            size: r.u64("size")?,
            entries: r.u64("entries")?,
            smallest: r.bytes(64 << 10, "smallest")?.to_vec(),
            largest: r.bytes(64 << 10, "largest")?.to_vec(),
            min_seq: r.u64("min seq")?,
            max_seq: r.u64("max seq")?,
            data_key_version: r.u32("data-key version")?,
            file_id: r.array("file id")?,
            footer_digest: r.array("digest")?,
        };
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

fn table_name(id: &[u8; 16]) -> String {
    format!("{}.sst", sealdb_crypto::hex::encode(id))
}

fn wal_name(id: &[u8; 16]) -> String {
    format!("{}.wal", sealdb_crypto::hex::encode(id))
}

/// Hard-links `from` to `to`, or copies it if linking fails (another filesystem); skips
/// files already present (incremental backups share them).
fn link_or_copy(fs: &SharedFs, from: &Path, to: &Path) -> Result<u64> {
    if fs.exists(to) {
        return Ok(0);
    }
    if fs.hard_link(from, to).is_ok() {
        return fs.file_size(to).map_err(|e| Error::io(to, e));
    }
    let tmp = to.with_extension("partial");
    let _ = fs.remove_file(&tmp);
    copy_file(fs, from, &tmp)?;
    fs.rename(&tmp, to).map_err(|e| Error::io(to, e))?;
    fs.file_size(to).map_err(|e| Error::io(to, e))
}

impl Db {
    /// Takes a consistent online backup into `dir` (created if needed): the live tables at
    /// the last flush's sequence number (memtables are flushed first), the WAL segments that
    /// point-in-time recovery needs, the KEYS file, and a sealed catalogue. Reads and writes
    /// continue meanwhile. `progress(done, total)` counts files.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let opts = sealdb::Options { keystore_dir: Some(dir.path().join("keystore")), ..Default::default() };
    /// let db = sealdb::Db::open(dir.path().join("db"), opts.clone())?;
    /// db.put("k", "v")?;
    /// let backups = dir.path().join("backups");
    /// let info = db.backup(&backups, &mut |_done, _total| {})?;
    /// assert_eq!(sealdb::list_backups(&backups, &opts)?.len(), 1);
    /// let restored = dir.path().join("restored");
    /// sealdb::restore_backup(
    ///     &backups, &restored, Some(info.id.as_str()), sealdb::RestorePoint::Backup, None, &opts,
    ///     &mut |_, _| {},
    /// )?;
    /// drop(db);
    /// assert_eq!(sealdb::Db::open(&restored, opts)?.get("k")?, Some(b"v".to_vec()));
    /// # Ok(()) }
    /// ```
    pub fn backup(&self, dir: &Path, progress: &mut dyn FnMut(u64, u64)) -> Result<BackupInfo> {
        self.check_key()?;
        let inner = &self.inner;
        let fs = &inner.fs;
        self.flush()?;
        // Everything up to S is in tables; closed WAL segments cover what follows. Segments
        // numbered below `below` are closed for good: only those are taken.
        let below = inner.wal.rotate()?;
        // Refuse before copying anything if the directory's newest backup went missing; the
        // new catalogue names the newest one as its predecessor.
        let predecessor = newest_anchored(fs, dir, &inner.opts)?;
        let keyring = inner.keyring.read().clone();
        // Capture the manifest state and pin the matching tables under the manifest lock:
        // flush and compaction install versions while holding it.
        let (state, version): (ManifestState, _) = {
            let m = inner.manifest.lock();
            (m.state().clone(), inner.version.read().version.clone())
        };
        // Durably: the catalog entry written at the end must not outlive the directories.
        sealdb_vfs::create_dir_all_durable(fs.as_ref(), &dir.join("tables"))
            .map_err(|e| Error::io(dir, e))?;
        sealdb_vfs::create_dir_all_durable(fs.as_ref(), &dir.join("wal"))
            .map_err(|e| Error::io(dir, e))?;
        let mut tables = Vec::new();
        for (ks, levels) in &state.levels {
            for (level, files) in levels.iter().enumerate() {
                for f in files.values() {
                    tables.push((*ks, level as u8, f.clone()));
                }
            }
        }
        let wal_segments = crate::pitr::closed_segments_for_backup(inner, below)?;
        let total = (tables.len() + wal_segments.len()) as u64;
        let mut done = 0u64;
        progress(0, total);
        for (_, _, f) in &tables {
            let from = crate::bg::table_path(&inner.path, f.number);
            link_or_copy(fs, &from, &dir.join("tables").join(table_name(&f.file_id)))?;
            done += 1;
            progress(done, total);
        }
        let mut wal = Vec::with_capacity(wal_segments.len());
        for (number, places) in &wal_segments {
            if let Some(info) = keep_wal_segment(fs, dir, *number, places, &keyring, inner.cipher)?
            {
                wal.push(info);
            } else if !wal.is_empty() {
                // Only the oldest archived segments may go meanwhile (archive trimming).
                return Err(Error::corruption(format!(
                    "WAL segment {number} vanished while being backed up"
                )));
            }
            done += 1;
            progress(done, total);
        }
        drop(version);
        fs.sync_dir(&dir.join("tables"))
            .map_err(|e| Error::io(dir, e))?;
        fs.sync_dir(&dir.join("wal"))
            .map_err(|e| Error::io(dir, e))?;

        let mut id_bytes = [0u8; 8];
        sealdb_crypto::keys::fill_random(&mut id_bytes)?;
        let created_ms = crate::now_ms();
        let id = format!("{created_ms:013}-{}", sealdb_crypto::hex::encode(&id_bytes));
        let keys_copy = dir.join(format!("{id}.KEYS"));
        let keys_bytes = sealdb_vfs::read_file_limited(
            fs.as_ref(),
            &inner.path.join(sealdb_crypto::keysfile::KEYS_FILE_NAME),
            4 << 20,
        )
        .map_err(|e| Error::io(&inner.path, e))?;
        sealdb_vfs::write_file_atomic(fs.as_ref(), &keys_copy, &keys_bytes)
            .map_err(|e| Error::io(&keys_copy, e))?;
        let versions: BTreeSet<u32> = tables.iter().map(|(_, _, f)| f.data_key_version).collect();
        let info = BackupInfo {
            id: id.clone(),
            database_id: keyring.database_id(),
            created_ms,
            sequence: state.flushed_seq,
            cipher: inner.cipher,
            master: self.master_key(),
            data_key_versions: versions.into_iter().collect(),
            keyspaces: state
                .keyspaces
                .iter()
                .map(|(i, n)| (*i, n.clone()))
                .collect(),
            bytes: tables.iter().map(|(_, _, f)| f.size).sum(),
            tables,
            wal,
            predecessor,
            indexes: state
                .indexes
                .iter()
                .map(|(ks, i)| (*ks, i.base, i.definition.clone(), i.ready))
                .collect(),
        };
        // The catalogue last: until it exists, the backup does not.
        let catalog = catalog_path(dir, &id);
        sealdb_crypto::sealed::write_small_sealed_file(
            fs.as_ref(),
            &catalog,
            &keyring,
            ArtifactKind::BackupCatalog,
            &encode_catalog(&info),
        )?;
        // Then the anchor: a crash in between leaves a newest catalogue whose predecessor is
        // the anchored one, which is accepted.
        let (_, digest) = file_digest(fs, &catalog)?;
        write_anchor(&anchor_path(&inner.opts, dir)?, Some((&id, digest)))?;
        Ok(info)
    }
}

/// Hard-links (or copies) closed WAL segment `number` into the backup from wherever it is
/// now, then summarizes the backup's copy: the catalogue describes exactly the bytes kept.
/// `None` if the segment is gone from every place (trimmed from the archive meanwhile).
fn keep_wal_segment(
    fs: &SharedFs,
    dir: &Path,
    number: u64,
    places: &[PathBuf],
    keyring: &Keyring,
    cipher: CipherId,
) -> Result<Option<WalSegmentInfo>> {
    for from in places {
        if !fs.exists(from) {
            continue;
        }
        // The name in the backup is the file id, so read it before linking; the size and
        // digest recorded are the live (closed, immutable) file's.
        let read = sealdb_wal::summarize_segment(fs.as_ref(), from, keyring, cipher)
            .map_err(Error::from)
            .and_then(|s| Ok((s, file_digest(fs, from)?)));
        let (s, (size, digest)) = match read {
            Ok(x) => x,
            Err(_) if !fs.exists(from) => continue, // moved into the archive meanwhile
            Err(e) => return Err(e),
        };
        if s.number != number {
            return Err(Error::corruption(format!(
                "{}: start frame names segment {}",
                from.display(),
                s.number
            )));
        }
        let to = dir.join("wal").join(wal_name(&s.file_id));
        let shared = fs.exists(&to);
        match link_or_copy(fs, from, &to) {
            Ok(_) => {}
            Err(_) if !fs.exists(from) && !fs.exists(&to) => continue,
            Err(e) => return Err(e),
        }
        // A copy an earlier backup already holds must still be that file, or the new backup
        // would depend on a damaged one.
        if shared && file_digest(fs, &to)? != (size, digest) {
            return Err(Error::Integrity {
                file: to.display().to_string(),
                block: None,
                reason: sealdb_crypto::IntegrityReason::ReplacedFile,
            });
        }
        return Ok(Some(WalSegmentInfo {
            file_id: s.file_id,
            number: s.number,
            first_seq: s.first_seq,
            last_seq: s.last_seq,
            first_time_ms: s.first_time_ms,
            last_time_ms: s.last_time_ms,
            size: Some(size),
            digest: Some(digest),
        }));
    }
    Ok(None)
}

/// Length and SHA-256 of a whole file.
fn file_digest(fs: &SharedFs, path: &Path) -> Result<(u64, [u8; 32])> {
    use sha2::{Digest, Sha256};
    let f = fs.open_read(path).map_err(|e| Error::io(path, e))?;
    let len = f.len();
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0u64;
    while off < len {
        let n = usize::try_from((len - off).min(buf.len() as u64)).unwrap_or(buf.len());
        let chunk = buf
            .get_mut(..n)
            .ok_or_else(|| Error::invalid_argument("digest".into()))?;
        f.read_exact_at(chunk, off)
            .map_err(|e| Error::io(path, e))?;
        hasher.update(&*chunk);
        off += n as u64;
    }
    Ok((len, hasher.finalize().into()))
}

/// Checks a backup's WAL segment against its catalogue entry: present, the same file, every
/// complete frame authentic, the recorded sequence range, and (format 2) exactly the recorded
/// bytes. A segment closed by a recovery legitimately ends without its final block (its
/// successor records where it validly ends), so an unfinished end is not itself an error:
/// the recorded size and digest are what pin its end.
pub(crate) fn check_backup_segment(
    fs: &SharedFs,
    path: &Path,
    w: &WalSegmentInfo,
    keyring: &Keyring,
    cipher: CipherId,
) -> Result<()> {
    let integrity = |reason| Error::Integrity {
        file: path.display().to_string(),
        block: None,
        reason,
    };
    if !fs.exists(path) {
        return Err(integrity(sealdb_crypto::IntegrityReason::MissingFile));
    }
    if let Some(size) = w.size {
        let len = fs.file_size(path).map_err(|e| Error::io(path, e))?;
        if len < size {
            return Err(integrity(sealdb_crypto::IntegrityReason::Truncated));
        }
        if len > size {
            return Err(integrity(sealdb_crypto::IntegrityReason::TrailingData));
        }
    }
    let s = sealdb_wal::summarize_segment(fs.as_ref(), path, keyring, cipher)?;
    if s.file_id != w.file_id {
        return Err(integrity(sealdb_crypto::IntegrityReason::ReplacedFile));
    }
    if let Some(digest) = w.digest
        && file_digest(fs, path)?.1 != digest
    {
        return Err(integrity(sealdb_crypto::IntegrityReason::ReplacedFile));
    }
    if (s.number, s.first_seq, s.last_seq) != (w.number, w.first_seq, w.last_seq) {
        return Err(Error::corruption(format!(
            "{}: holds WAL segment {} with sequences {}..={}, but the catalogue records \
             segment {} with sequences {}..={}",
            path.display(),
            s.number,
            s.first_seq,
            s.last_seq,
            w.number,
            w.first_seq,
            w.last_seq
        )));
    }
    Ok(())
}

fn catalog_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}{CATALOG_SUFFIX}"))
}

// ---- the anchor: which catalogue is the newest of a backup directory ----
//
// Every file of a backup authenticates on its own, so deleting the newest catalogue would
// silently make an older backup the latest. The keystore (outside the backup directory, like
// the rollback counter) keeps a small record per backup directory naming its newest backup
// and the SHA-256 of that catalogue file; each catalogue names its predecessor the same way,
// so a newer catalogue written just before a crash (anchor not yet updated) still chains to
// the anchored one. A machine without the record (a restore elsewhere) cannot tell: the
// directory is then unanchored, as docs/crypto.md says.

/// Where this machine records the newest backup of `dir`.
fn anchor_path(opts: &Options, dir: &Path) -> Result<PathBuf> {
    let abs = std::path::absolute(dir).map_err(|e| Error::io(dir, e))?;
    Ok(opts.resolved_keystore_dir().join(format!(
        "backup-{:016x}.anchor",
        crate::head::path_hash(&abs)
    )))
}

fn read_anchor(path: &Path) -> Result<Option<(String, [u8; 32])>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    let label = path.display().to_string();
    let bad = || Error::corruption(format!("{label}: malformed backup anchor"));
    let (body, crc) = bytes
        .split_at_checked(bytes.len().saturating_sub(4))
        .ok_or_else(bad)?;
    let crc: [u8; 4] = crc.try_into().map_err(|_| bad())?;
    if crc32fast::hash(body) != u32::from_le_bytes(crc) {
        return Err(bad());
    }
    let mut r = Reader::new(body, &label);
    if r.take(8, "magic")? != ANCHOR_MAGIC {
        return Err(bad());
    }
    let id = r.string(64, "backup id")?;
    let digest = r.array("catalogue digest")?;
    if !r.is_empty() {
        return Err(bad());
    }
    Ok(Some((id, digest)))
}

/// Records (or, with `None`, forgets) the newest backup of a directory.
fn write_anchor(path: &Path, newest: Option<(&str, [u8; 32])>) -> Result<()> {
    let Some((id, digest)) = newest else {
        return match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(path, e)),
            _ => Ok(()),
        };
    };
    let mut w = Writer::default();
    w.raw(ANCHOR_MAGIC).bytes(id.as_bytes()).raw(&digest);
    let crc = crc32fast::hash(&w.buf);
    w.raw(&crc.to_le_bytes());
    crate::head::ensure_keystore_dir(path)?;
    sealdb_vfs::write_file_atomic(&sealdb_vfs::RealFs, path, &w.buf).map_err(|e| Error::io(path, e))
}

/// Checks `ids` (the directory's catalogues, sorted) against this machine's anchor: the
/// anchored catalogue is present and unchanged, and the newest one is it or descends from it
/// through predecessor links. `read` decodes a catalogue (only needed for that walk).
fn check_anchor(
    fs: &SharedFs,
    dir: &Path,
    opts: &Options,
    ids: &[String],
    read: &mut dyn FnMut(&str) -> Result<BackupInfo>,
) -> Result<()> {
    let path = anchor_path(opts, dir)?;
    let Some((anchored, digest)) = read_anchor(&path)? else {
        return Ok(());
    };
    let cat = catalog_path(dir, &anchored);
    if !ids.contains(&anchored) {
        return Err(Error::corruption(format!(
            "backup catalogue {} is missing: this machine recorded it as the newest backup of \
             {} ({}), so an older backup would silently become the latest; if it was deleted \
             on purpose, run `backup delete {} --id {anchored}`",
            cat.display(),
            dir.display(),
            path.display(),
            dir.display()
        )));
    }
    if file_digest(fs, &cat)?.1 != digest {
        return Err(Error::corruption(format!(
            "backup catalogue {} is not the one this machine recorded in {} (its digest \
             differs)",
            cat.display(),
            path.display()
        )));
    }
    let mut cur = ids.last().cloned().unwrap_or_default();
    while cur != anchored {
        let info = read(&cur)?;
        match info.predecessor {
            Some((p, d)) if p == anchored && d == digest => break,
            Some((p, _)) if p < cur && p > anchored && ids.contains(&p) => cur = p,
            _ => {
                return Err(Error::corruption(format!(
                    "backup {cur} in {} does not descend from {anchored}, the newest backup \
                     this machine recorded ({})",
                    dir.display(),
                    path.display()
                )));
            }
        }
    }
    Ok(())
}

/// Before a new backup: the directory's anchor holds, and its newest catalogue (id and
/// digest) becomes the new one's predecessor.
fn newest_anchored(
    fs: &SharedFs,
    dir: &Path,
    opts: &Options,
) -> Result<Option<(String, [u8; 32])>> {
    let ids = if fs.exists(dir) {
        catalog_ids(fs, dir)?
    } else {
        Vec::new()
    };
    // A directory without any catalogue (new, or emptied on purpose) starts a new chain:
    // there is no older backup a missing newest one could promote. (`backup list`/`verify`
    // still report the anchored catalogue missing until then.)
    if ids.is_empty() {
        return Ok(None);
    }
    check_anchor(fs, dir, opts, &ids, &mut |id| read_backup(dir, id, opts))?;
    ids.last()
        .map(|id| Ok((id.clone(), file_digest(fs, &catalog_path(dir, id))?.1)))
        .transpose()
}

/// Opens a backup's KEYS copy with the master key it names (resolved from `opts`).
fn backup_keyring(
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

fn catalog_ids(fs: &SharedFs, dir: &Path) -> Result<Vec<String>> {
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

/// Every backup in `dir`, oldest first. Fails (an integrity error naming the catalogue) when
/// this machine recorded a newer backup of `dir` than the newest one present.
pub fn list_backups(dir: &Path, opts: &Options) -> Result<Vec<BackupInfo>> {
    let ids = catalog_ids(&opts.fs, dir)?;
    let backups = ids
        .iter()
        .map(|id| read_backup(dir, id, opts))
        .collect::<Result<Vec<_>>>()?;
    check_anchor(&opts.fs, dir, opts, &ids, &mut |id| {
        backups
            .iter()
            .find(|b| b.id == id)
            .cloned()
            .ok_or_else(|| Error::invalid_argument(format!("no backup {id}")))
    })?;
    Ok(backups)
}

fn choose<'a>(backups: &'a [BackupInfo], id: Option<&str>) -> Result<&'a BackupInfo> {
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

/// What verifying a backup found.
#[derive(Debug)]
pub struct BackupVerifyReport {
    /// Backups checked.
    pub backups: usize,
    /// Files checked.
    pub files_checked: usize,
    /// Every failure, each naming its file.
    pub errors: Vec<Error>,
}

/// Authenticates every block of every file of one backup (or all), without restoring.
pub fn verify_backup(dir: &Path, id: Option<&str>, opts: &Options) -> Result<BackupVerifyReport> {
    let fs = &opts.fs;
    let all = catalog_ids(fs, dir)?;
    let ids = match id {
        Some(i) => vec![i.to_string()],
        None => all.clone(),
    };
    let mut report = BackupVerifyReport {
        backups: 0,
        files_checked: 0,
        errors: Vec::new(),
    };
    if let Err(e) = check_anchor(fs, dir, opts, &all, &mut |i| read_backup(dir, i, opts)) {
        report.errors.push(e);
    }
    // Backups share files: each is checked once.
    let mut seen = BTreeSet::new();
    for id in ids {
        let info = match read_backup(dir, &id, opts) {
            Ok(i) => i,
            Err(e) => {
                report.errors.push(e);
                continue;
            }
        };
        report.backups += 1;
        let (_, keyring) = backup_keyring(fs, dir, &id, opts)?;
        let cache = sealdb_sstable::BlockCache::new(1 << 20);
        for (_, _, f) in &info.tables {
            let path = dir.join("tables").join(table_name(&f.file_id));
            if !seen.insert(path.clone()) {
                continue;
            }
            report.files_checked += 1;
            match crate::bg::open_table_at(fs, &path, f, &keyring, info.cipher, &cache) {
                Ok(t) => report.errors.extend(
                    t.table
                        .verify()
                        .into_iter()
                        .map(crate::version::table_error),
                ),
                Err(e) => report.errors.push(e),
            }
        }
        for w in &info.wal {
            let path = dir.join("wal").join(wal_name(&w.file_id));
            if !seen.insert(path.clone()) {
                continue;
            }
            report.files_checked += 1;
            if let Err(e) = check_backup_segment(fs, &path, w, &keyring, info.cipher) {
                report.errors.push(e);
            }
        }
    }
    Ok(report)
}

/// Deletes one backup and every file no remaining backup uses.
pub fn delete_backup(dir: &Path, id: &str, opts: &Options) -> Result<()> {
    let fs = &opts.fs;
    let cat = catalog_path(dir, id);
    let anchor = anchor_path(opts, dir)?;
    let anchored = read_anchor(&anchor)?.is_some_and(|(a, _)| a == id);
    // Deleting an anchored catalogue that is already gone is how an operator confirms a
    // deletion made by hand (or cut short by a crash).
    if !fs.exists(&cat) && !anchored {
        return Err(Error::invalid_argument(format!("no backup {id}")));
    }
    if fs.exists(&cat) {
        list_backups(dir, opts)?;
        fs.remove_file(&cat).map_err(|e| Error::io(&cat, e))?;
    }
    let _ = fs.remove_file(&dir.join(format!("{id}.KEYS")));
    fs.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
    if anchored {
        // The newest remaining backup becomes the anchored one.
        let newest = catalog_ids(fs, dir)?.pop();
        match newest {
            Some(n) => write_anchor(
                &anchor,
                Some((&n, file_digest(fs, &catalog_path(dir, &n))?.1)),
            )?,
            None => write_anchor(&anchor, None)?,
        }
    }
    garbage_collect(dir, opts)
}

/// Removes files no catalogue references (left by deletes or by crashed backups).
fn garbage_collect(dir: &Path, opts: &Options) -> Result<()> {
    let fs = &opts.fs;
    let mut keep = BTreeSet::new();
    for b in list_backups(dir, opts)? {
        for (_, _, f) in &b.tables {
            keep.insert(format!("tables/{}", table_name(&f.file_id)));
        }
        for w in &b.wal {
            keep.insert(format!("wal/{}", wal_name(&w.file_id)));
        }
    }
    for sub in ["tables", "wal"] {
        let d = dir.join(sub);
        if !fs.exists(&d) {
            continue;
        }
        for name in fs.list_dir(&d).map_err(|e| Error::io(&d, e))? {
            if !keep.contains(&format!("{sub}/{name}")) {
                let p = d.join(&name);
                fs.remove_file(&p).map_err(|e| Error::io(&p, e))?;
            }
        }
    }
    Ok(())
}

/// Where a restore should stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestorePoint {
    /// Exactly a backup's state.
    Backup,
    /// Every write with sequence number up to this (point-in-time).
    Sequence(u64),
    /// Every write committed up to this Unix time in milliseconds (point-in-time).
    Time(u64),
}

/// What a restore produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreInfo {
    /// The backup restored from.
    pub backup_id: String,
    /// The sequence number the restored database is at.
    pub sequence: u64,
    /// Tables restored.
    pub tables: u64,
    /// WAL batches replayed past the backup (point-in-time).
    pub replayed_batches: u64,
    /// The master key the restored database uses.
    pub master: KeyDescriptor,
}

/// Restores a backup into `dest` (a new directory) under `key` (or the backup's own master
/// key). Restoring under another key only re-wraps the data keys. The result appears at
/// `dest` only when complete: it is assembled beside it and renamed into place.
pub fn restore_backup(
    dir: &Path,
    dest: &Path,
    id: Option<&str>,
    point: RestorePoint,
    key: Option<MasterKey>,
    opts: &Options,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<RestoreInfo> {
    let fs = &opts.fs;
    let dest = std::path::absolute(dest).map_err(|e| Error::io(dest, e))?;
    if fs.exists(&dest) {
        return Err(Error::invalid_argument(format!(
            "{} already exists",
            dest.display()
        )));
    }
    let backups = list_backups(dir, opts)?;
    let chosen = match point {
        RestorePoint::Backup => choose(&backups, id)?.clone(),
        RestorePoint::Sequence(n) => backups
            .iter()
            .filter(|b| b.sequence <= n)
            .max_by_key(|b| b.sequence)
            .ok_or_else(|| Error::invalid_argument(format!("no backup at or before sequence {n}")))?
            .clone(),
        RestorePoint::Time(t) => backups
            .iter()
            .filter(|b| b.created_ms <= t)
            .max_by_key(|b| b.created_ms)
            .ok_or_else(|| Error::invalid_argument(format!("no backup at or before time {t}")))?
            .clone(),
    };
    let (keys, keyring) = backup_keyring(fs, dir, &chosen.id, opts)?;
    let staging = dest.with_file_name(format!(
        ".{}.restoring",
        dest.file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default()
    ));
    if fs.exists(&staging) {
        remove_tree(fs, &staging)?;
    }
    fs.create_dir_all(&staging.join(crate::bg::TABLES_DIR))
        .map_err(|e| Error::io(&staging, e))?;
    // KEYS: the backup's, re-wrapped under the target key if one is asked for.
    let keys_bytes = sealdb_vfs::read_file_limited(
        fs.as_ref(),
        &dir.join(format!("{}.KEYS", chosen.id)),
        4 << 20,
    )
    .map_err(|e| Error::io(dir, e))?;
    let staged_keys = staging.join(sealdb_crypto::keysfile::KEYS_FILE_NAME);
    sealdb_vfs::write_file_atomic(fs.as_ref(), &staged_keys, &keys_bytes)
        .map_err(|e| Error::io(&staged_keys, e))?;
    drop(keys);
    let mut master = chosen.master.clone();
    if let Some(target) = key {
        let provider = target_provider_for(opts, keyring.database_id(), &target)?;
        let summary = KeysFile::peek(fs.as_ref(), &staging)?;
        let (mut k, _) = KeysFile::open(fs.as_ref(), &staging, |desc| {
            crate::keys::resolve_provider(desc, summary.database_id, opts)
                .map_err(crate::keys::to_crypto)
        })?;
        k.switch_master_key(fs.as_ref(), provider.as_ref())?;
        master = provider.descriptor();
    }
    // Tables: copies (a restore must not share inodes with the backup it came from).
    let total = chosen.tables.len() as u64;
    let mut state = ManifestState {
        keyspaces: chosen.keyspaces.iter().cloned().collect(),
        levels: chosen
            .keyspaces
            .iter()
            .map(|(id, _)| (*id, vec![BTreeMap::new(); NUM_LEVELS]))
            .collect(),
        next_keyspace_id: chosen
            .keyspaces
            .iter()
            .map(|(i, _)| i + 1)
            .max()
            .unwrap_or(1)
            .max(1),
        indexes: chosen
            .indexes
            .iter()
            .map(|(ks, base, def, ready)| {
                (
                    *ks,
                    crate::manifest::IndexRecord {
                        base: *base,
                        definition: def.clone(),
                        ready: *ready,
                    },
                )
            })
            .collect(),
        ..ManifestState::default()
    };
    progress(0, total);
    let mut max_number = 0;
    for (i, (ks, level, f)) in chosen.tables.iter().enumerate() {
        let from = dir.join("tables").join(table_name(&f.file_id));
        if !fs.exists(&from) {
            return Err(Error::Integrity {
                file: from.display().to_string(),
                block: None,
                reason: sealdb_crypto::IntegrityReason::MissingFile,
            });
        }
        let to = crate::bg::table_path(&staging, f.number);
        copy_file(fs, &from, &to)?;
        if let Some(l) = state
            .levels
            .get_mut(ks)
            .and_then(|l| l.get_mut(usize::from(*level)))
        {
            l.insert(f.number, f.clone());
        }
        max_number = max_number.max(f.number);
        progress(i as u64 + 1, total);
    }
    state.flushed_seq = chosen.sequence;
    state.next_file_number = max_number + 1;
    crate::manifest::Manifest::create_with_state(
        fs.clone(),
        &staging,
        &keyring,
        chosen.cipher,
        state,
    )?;
    // Point-in-time: replay the backup's WAL past its sequence into the new WAL.
    let limit = match point {
        RestorePoint::Backup => None,
        RestorePoint::Sequence(n) => Some((Some(n), None)),
        RestorePoint::Time(t) => Some((None, Some(t))),
    };
    let mut replayed = 0u64;
    let mut restored_seq = chosen.sequence;
    if let Some((max_seq, max_time)) = limit {
        // The log past the chosen backup lives in later backups' WAL lists too.
        let mut wal: BTreeMap<[u8; 16], WalSegmentInfo> = BTreeMap::new();
        for b in backups
            .iter()
            .filter(|b| b.database_id == chosen.database_id)
        {
            for w in &b.wal {
                wal.insert(w.file_id, w.clone());
            }
        }
        let mut with_log = chosen.clone();
        with_log.wal = wal.into_values().collect();
        let (n, s) = crate::pitr::replay_backup_wal(
            fs, dir, &with_log, &keyring, &staging, max_seq, max_time,
        )?;
        replayed = n;
        restored_seq = restored_seq.max(s);
    }
    // Every table opens and matches before the result becomes visible.
    let cache = sealdb_sstable::BlockCache::new(1 << 20);
    for (_, _, f) in &chosen.tables {
        crate::bg::open_table_at(
            fs,
            &crate::bg::table_path(&staging, f.number),
            f,
            &keyring,
            chosen.cipher,
            &cache,
        )?;
    }
    if let Some(parent) = staging.parent() {
        // Every entry durable before the tree becomes visible under its name.
        for sub in [crate::bg::TABLES_DIR, "wal"] {
            let d = staging.join(sub);
            if fs.exists(&d) {
                fs.sync_dir(&d).map_err(|e| Error::io(&d, e))?;
            }
        }
        fs.sync_dir(&staging).map_err(|e| Error::io(&staging, e))?;
        // A restore starts a new history at `dest`: a head left by an earlier database there
        // (the same database restored back into its own path) must not call it a rollback.
        crate::head::forget(&opts.resolved_keystore_dir(), keyring.database_id(), &dest)?;
        fs.rename(&staging, &dest)
            .map_err(|e| Error::io(&dest, e))?;
        fs.sync_dir(parent).map_err(|e| Error::io(parent, e))?;
    }
    Ok(RestoreInfo {
        backup_id: chosen.id.clone(),
        sequence: restored_seq,
        tables: total,
        replayed_batches: replayed,
        master,
    })
}

fn copy_file(fs: &SharedFs, from: &Path, to: &Path) -> Result<()> {
    let src = fs.open_read(from).map_err(|e| Error::io(from, e))?;
    let mut dst = fs.create_new(to).map_err(|e| Error::io(to, e))?;
    let len = src.len();
    let mut off = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    while off < len {
        let n = usize::try_from((len - off).min(buf.len() as u64)).unwrap_or(buf.len());
        let chunk = buf
            .get_mut(..n)
            .ok_or_else(|| Error::invalid_argument("copy".into()))?;
        src.read_exact_at(chunk, off)
            .map_err(|e| Error::io(from, e))?;
        dst.append(chunk).map_err(|e| Error::io(to, e))?;
        off += n as u64;
    }
    dst.sync_data().map_err(|e| Error::io(to, e))
}

fn remove_tree(fs: &SharedFs, dir: &Path) -> Result<()> {
    for name in fs.list_dir(dir).map_err(|e| Error::io(dir, e))? {
        let p: PathBuf = dir.join(&name);
        if fs.list_dir(&p).is_ok() {
            remove_tree(fs, &p)?;
        } else {
            fs.remove_file(&p).map_err(|e| Error::io(&p, e))?;
        }
    }
    fs.remove_dir(dir).map_err(|e| Error::io(dir, e))
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
