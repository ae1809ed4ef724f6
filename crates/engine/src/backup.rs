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
use sealdb_crypto::{
    ArtifactKind, BlockSealer, CipherId, DatabaseId, Expected, KeyDescriptor, Keyring, KeysFile,
    SealedReader,
};
use sealdb_vfs::SharedFs;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const CATALOG_MAGIC: &[u8; 8] = b"SDBCATL1";
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
            .u64(s.last_time_ms);
    }
    w.u32(b.indexes.len() as u32);
    for (ks, base, def, ready) in &b.indexes {
        w.u32(*ks).u32(*base).bytes(def).u8(u8::from(*ready));
    }
    w.buf
}

fn decode_catalog(bytes: &[u8], label: &str) -> Result<BackupInfo> {
    let mut r = Reader::new(bytes, label);
    if r.take(8, "magic")? != CATALOG_MAGIC {
        return Err(Error::Corruption(format!(
            "{label}: not a backup catalogue"
        )));
    }
    let id = r.string(64, "backup id")?;
    let database_id = DatabaseId(r.array("database id")?);
    let created_ms = r.u64("time")?;
    let sequence = r.u64("sequence")?;
    let cipher = CipherId::from_u8(r.u8("cipher")?)
        .ok_or_else(|| Error::Corruption(format!("{label}: unknown cipher")))?;
    let master = KeyDescriptor::new(r.string(2048, "provider")?, r.string(2048, "key id")?);
    let count = |r: &mut Reader<'_>, what: &str| -> Result<usize> {
        let n = r.u32(what)? as usize;
        if n > MAX_ITEMS {
            return Err(Error::Corruption(format!("{label}: too many {what}")));
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
        });
    }
    let mut indexes = Vec::new();
    for _ in 0..count(&mut r, "indexes")? {
        let ks = r.u32("index keyspace")?;
        let base = r.u32("base keyspace")?;
        let def = r.bytes(1 << 20, "index definition")?.to_vec();
        let ready = r.u8("ready")? != 0;
        indexes.push((ks, base, def, ready));
    }
    if !r.is_empty() {
        return Err(Error::Corruption(format!("{label}: trailing bytes")));
    }
    Ok(BackupInfo {
        indexes,
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

/// Writes a small sealed file atomically (catalogue).
fn write_sealed_atomic(
    fs: &SharedFs,
    path: &Path,
    keyring: &Keyring,
    kind: ArtifactKind,
    payload: &[u8],
) -> Result<()> {
    let sealer = BlockSealer::for_new_file(
        keyring,
        kind,
        CipherId::ChaCha20Poly1305,
        Vec::new(),
        path.display().to_string(),
    )?;
    let mut bytes = sealer.header().encode();
    let off = bytes.len() as u64;
    sealer.seal_into(off, true, payload, &mut bytes)?;
    sealdb_vfs::write_file_atomic(fs.as_ref(), path, &bytes).map_err(|e| Error::io(path, e))
}

fn read_sealed(
    fs: &SharedFs,
    path: &Path,
    keyring: &Keyring,
    kind: ArtifactKind,
) -> Result<Vec<u8>> {
    let exp = Expected {
        kind,
        database_id: keyring.database_id(),
        cipher: Some(CipherId::ChaCha20Poly1305),
    };
    let r = SealedReader::open(fs.as_ref(), path, keyring, &exp)?;
    let mut blocks = r.blocks();
    let (_, b) = blocks
        .next()
        .ok_or_else(|| Error::Corruption(format!("{} is empty", path.display())))??;
    if !b.is_final {
        return Err(Error::Corruption(format!(
            "{} has extra blocks",
            path.display()
        )));
    }
    Ok(b.data)
}

impl Db {
    /// Takes a consistent online backup into `dir` (created if needed): the live tables at
    /// the last flush's sequence number (memtables are flushed first), the WAL segments that
    /// point-in-time recovery needs, the KEYS file, and a sealed catalogue. Reads and writes
    /// continue meanwhile. `progress(done, total)` counts files.
    pub fn backup(&self, dir: &Path, progress: &mut dyn FnMut(u64, u64)) -> Result<BackupInfo> {
        self.check_key()?;
        let inner = &self.inner;
        let fs = &inner.fs;
        self.flush()?;
        // Everything up to S is in tables; closed WAL segments cover what follows.
        inner.wal.rotate()?;
        let keyring = inner.keyring.read().clone();
        // Capture the manifest state and pin the matching tables under the manifest lock:
        // flush and compaction install versions while holding it.
        let (state, version): (ManifestState, _) = {
            let m = inner.manifest.lock();
            (m.state().clone(), inner.version.read().version.clone())
        };
        fs.create_dir_all(&dir.join("tables"))
            .map_err(|e| Error::io(dir, e))?;
        fs.create_dir_all(&dir.join("wal"))
            .map_err(|e| Error::io(dir, e))?;
        let mut tables = Vec::new();
        for (ks, levels) in &state.levels {
            for (level, files) in levels.iter().enumerate() {
                for f in files.values() {
                    tables.push((*ks, level as u8, f.clone()));
                }
            }
        }
        let wal_segments = crate::pitr::wal_segments_for_backup(inner)?;
        let total = (tables.len() + wal_segments.len()) as u64;
        let mut done = 0u64;
        progress(0, total);
        for (_, _, f) in &tables {
            let from = crate::bg::table_path(&inner.path, f.number);
            link_or_copy(fs, &from, &dir.join("tables").join(table_name(&f.file_id)))?;
            done += 1;
            progress(done, total);
        }
        for (path, info) in &wal_segments {
            link_or_copy(fs, path, &dir.join("wal").join(wal_name(&info.file_id)))?;
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
            wal: wal_segments.into_iter().map(|(_, w)| w).collect(),
            indexes: state
                .indexes
                .iter()
                .map(|(ks, i)| (*ks, i.base, i.definition.clone(), i.ready))
                .collect(),
        };
        // The catalogue last: until it exists, the backup does not.
        write_sealed_atomic(
            fs,
            &dir.join(format!("{id}{CATALOG_SUFFIX}")),
            &keyring,
            ArtifactKind::BackupCatalog,
            &encode_catalog(&info),
        )?;
        Ok(info)
    }
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
    let bytes = read_sealed(fs, &path, &keyring, ArtifactKind::BackupCatalog)?;
    let info = decode_catalog(&bytes, &path.display().to_string())?;
    if info.id != id {
        return Err(Error::Corruption(format!(
            "{}: names backup {}",
            path.display(),
            info.id
        )));
    }
    Ok(info)
}

/// Every backup in `dir`, oldest first.
pub fn list_backups(dir: &Path, opts: &Options) -> Result<Vec<BackupInfo>> {
    catalog_ids(&opts.fs, dir)?
        .iter()
        .map(|id| read_backup(dir, id, opts))
        .collect()
}

fn choose<'a>(backups: &'a [BackupInfo], id: Option<&str>) -> Result<&'a BackupInfo> {
    match id {
        Some(id) => backups
            .iter()
            .find(|b| b.id == id)
            .ok_or_else(|| Error::InvalidArgument(format!("no backup {id}"))),
        None => backups
            .last()
            .ok_or_else(|| Error::InvalidArgument("the directory holds no backup".into())),
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
    let ids = match id {
        Some(i) => vec![i.to_string()],
        None => catalog_ids(fs, dir)?,
    };
    let mut report = BackupVerifyReport {
        backups: 0,
        files_checked: 0,
        errors: Vec::new(),
    };
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
            report.files_checked += 1;
            let path = dir.join("tables").join(table_name(&f.file_id));
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
            report.files_checked += 1;
            let path = dir.join("wal").join(wal_name(&w.file_id));
            let exp = Expected {
                kind: ArtifactKind::Wal,
                database_id: keyring.database_id(),
                cipher: Some(info.cipher),
            };
            match SealedReader::open(fs.as_ref(), &path, &keyring, &exp) {
                Ok(r) => {
                    if r.header().file_id.0 != w.file_id {
                        report.errors.push(Error::Integrity {
                            file: path.display().to_string(),
                            block: None,
                            reason: sealdb_crypto::IntegrityReason::ReplacedFile,
                        });
                        continue;
                    }
                    for b in r.blocks() {
                        if let Err(e) = b {
                            report.errors.push(e.into());
                            break;
                        }
                    }
                }
                Err(e) => report.errors.push(e.into()),
            }
        }
    }
    Ok(report)
}

/// Deletes one backup and every file no remaining backup uses.
pub fn delete_backup(dir: &Path, id: &str, opts: &Options) -> Result<()> {
    let fs = &opts.fs;
    let cat = dir.join(format!("{id}{CATALOG_SUFFIX}"));
    if !fs.exists(&cat) {
        return Err(Error::InvalidArgument(format!("no backup {id}")));
    }
    fs.remove_file(&cat).map_err(|e| Error::io(&cat, e))?;
    let _ = fs.remove_file(&dir.join(format!("{id}.KEYS")));
    fs.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
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
        return Err(Error::InvalidArgument(format!(
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
            .ok_or_else(|| Error::InvalidArgument(format!("no backup at or before sequence {n}")))?
            .clone(),
        RestorePoint::Time(t) => backups
            .iter()
            .filter(|b| b.created_ms <= t)
            .max_by_key(|b| b.created_ms)
            .ok_or_else(|| Error::InvalidArgument(format!("no backup at or before time {t}")))?
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
            .ok_or_else(|| Error::InvalidArgument("copy".into()))?;
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
