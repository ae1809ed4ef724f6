//! The head record: where every chain of the database must end.
//!
//! Every WAL segment, stream segment and manifest authenticates block by block and names its
//! predecessor, but nothing inside the data directory can say where a chain must *end*: an
//! attacker who deletes the newest WAL segment, cuts the manifest after a complete block or
//! puts back an older KEYS file leaves only files that authenticate. So one small sealed file
//! outside the data directory — in the keystore, beside the owned master keys — names the end
//! of every chain: the manifest's position, the KEYS generation, the newest WAL segment and
//! the highest sequence number known durable, each stream's newest segment and last sequence,
//! the consumer-positions generation, and whether the database was closed cleanly (then the
//! newest WAL segment's exact end is pinned too).
//!
//! It is rewritten when a segment is created or closed, when the manifest or KEYS changes, and
//! at a clean close — never per write. Every check compares "what is on disk" with "at least
//! what the head names", and the head is written only *after* what it names is durable, so a
//! crash at any point leaves a head that is older than the disk (never a false alarm), and an
//! attacker who removes or cuts the end of a chain leaves a disk older than the head.
//!
//! This module never writes inside the data directory. It replaces the rollback counter of
//! earlier versions (`rollback-<id>-<hash>.ctr`), which it reads once and then removes.

use crate::codec::{Reader, Writer};
use crate::{Error, Result};
use parking_lot::Mutex;
use sealdb_crypto::{ArtifactKind, DatabaseId, Keyring};
use sealdb_vfs::{FileSystem, RealFs};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const HEAD_TAG: &[u8; 8] = b"SDBHEAD1";
const LEGACY_COUNTER_MAGIC: &[u8; 8] = b"SDBRBCK1";
/// Streams a head can name (a bound on a hostile count before allocating).
const MAX_STREAMS: u32 = 1 << 20;

/// The end of one change stream's chain.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct StreamHead {
    /// The newest segment number.
    pub segment: u64,
    /// The highest sequence number known durable in the stream.
    pub last_seq: u64,
    /// The generation of the stream's consumer-positions file (0: never written).
    pub consumers_generation: u64,
}

/// What the head names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct HeadState {
    /// The manifest's position: (manifest number, edit groups written to it).
    pub manifest: (u64, u64),
    /// The KEYS file's generation.
    pub keys_generation: u64,
    /// The newest WAL segment known to exist (durable start frame).
    pub wal_segment: u64,
    /// The highest sequence number known durable in the WAL (or in tables).
    pub wal_durable_seq: u64,
    /// Set by a clean close: the WAL segment `wal_segment` ends exactly at this offset, and
    /// nothing after it was written. Cleared by the next writable open.
    pub clean_end: Option<u64>,
    /// Each stream's chain end, by keyspace id.
    pub streams: BTreeMap<u32, StreamHead>,
}

impl HeadState {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.raw(HEAD_TAG)
            .u64(self.manifest.0)
            .u64(self.manifest.1)
            .u64(self.keys_generation)
            .u64(self.wal_segment)
            .u64(self.wal_durable_seq)
            .u8(u8::from(self.clean_end.is_some()))
            .u64(self.clean_end.unwrap_or(0))
            .u32(self.streams.len() as u32);
        for (ks, s) in &self.streams {
            w.u32(*ks)
                .u64(s.segment)
                .u64(s.last_seq)
                .u64(s.consumers_generation);
        }
        w.buf
    }

    pub(crate) fn decode(bytes: &[u8], label: &str) -> Result<Self> {
        let mut r = Reader::new(bytes, label);
        if r.take(8, "tag")? != HEAD_TAG {
            return Err(Error::corruption(format!("{label}: not a head record")));
        }
        let manifest = (r.u64("manifest number")?, r.u64("manifest edits")?);
        let keys_generation = r.u64("KEYS generation")?;
        let wal_segment = r.u64("WAL segment")?;
        let wal_durable_seq = r.u64("durable sequence")?;
        let clean = r.u8("clean flag")?;
        let end = r.u64("clean end")?;
        let clean_end = match clean {
            0 => None,
            1 => Some(end),
            _ => return Err(Error::corruption(format!("{label}: bad clean flag"))),
        };
        let n = r.u32("stream count")?;
        if n > MAX_STREAMS {
            return Err(Error::corruption(format!("{label}: bad stream count")));
        }
        let mut streams = BTreeMap::new();
        for _ in 0..n {
            let ks = r.u32("stream keyspace")?;
            let s = StreamHead {
                segment: r.u64("stream segment")?,
                last_seq: r.u64("stream sequence")?,
                consumers_generation: r.u64("consumers generation")?,
            };
            if streams.insert(ks, s).is_some() {
                return Err(Error::corruption(format!("{label}: stream {ks} twice")));
            }
        }
        if !r.is_empty() {
            return Err(Error::corruption(format!("{label}: trailing bytes")));
        }
        Ok(Self {
            manifest,
            keys_generation,
            wal_segment,
            wal_durable_seq,
            clean_end,
            streams,
        })
    }
}

/// A name for the database at `dir` in the keystore: keyed by database id *and* directory, so
/// a restored copy elsewhere (same id) has its own.
fn anchor_file(keystore: &Path, id: DatabaseId, dir: &Path, suffix: &str) -> PathBuf {
    keystore.join(format!("{suffix}-{}-{:016x}", id.to_hex(), path_hash(dir)))
}

/// FNV-1a 64 of an absolute path: a stable, short name component for the records the
/// keystore keeps about a directory (the head, a backup directory's anchor).
pub(crate) fn path_hash(dir: &Path) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in dir.as_os_str().as_encoded_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Creates the keystore directory holding `path` (mode 0700) if it does not exist.
pub(crate) fn ensure_keystore_dir(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| Error::io(dir, e))?;
    }
    Ok(())
}

/// Where the head of the database at `dir` lives.
pub(crate) fn head_path(keystore: &Path, id: DatabaseId, dir: &Path) -> PathBuf {
    let mut p = anchor_file(keystore, id, dir, "head").into_os_string();
    p.push(".seal");
    PathBuf::from(p)
}

/// The rollback counter of earlier versions (read once for an upgrade, then removed).
fn legacy_counter_path(keystore: &Path, id: DatabaseId, dir: &Path) -> PathBuf {
    let mut p = anchor_file(keystore, id, dir, "rollback").into_os_string();
    p.push(".ctr");
    PathBuf::from(p)
}

/// Reads and decodes a head file (written by [`Head::write`]).
pub(crate) fn read_head_file(
    fs: &dyn FileSystem,
    path: &Path,
    keyring: &Keyring,
) -> Result<HeadState> {
    let data =
        sealdb_crypto::sealed::read_small_sealed_file(fs, path, keyring, ArtifactKind::Meta)?;
    HeadState::decode(&data, &path.display().to_string())
}

/// Reads the legacy counter: the manifest position it recorded.
fn read_legacy_counter(path: &Path) -> Result<Option<(u64, u64)>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    decode_legacy_counter(&bytes, path).map(Some)
}

/// Decodes the legacy counter's bytes (`path` names it in errors).
pub(crate) fn decode_legacy_counter(bytes: &[u8], path: &Path) -> Result<(u64, u64)> {
    let bad = || Error::corruption(format!("{}: malformed rollback counter", path.display()));
    if bytes.len() != 28 || bytes.get(..8) != Some(&LEGACY_COUNTER_MAGIC[..]) {
        return Err(bad());
    }
    let label = path.display().to_string();
    let mut r = Reader::new(bytes, &label);
    r.take(8, "magic")?;
    let pos = (r.u64("manifest number")?, r.u64("manifest edits")?);
    let crc = r.u32("checksum")?;
    if crc32fast::hash(bytes.get(..24).unwrap_or_default()) != crc {
        return Err(bad());
    }
    Ok(pos)
}

/// Where the head's values came from at open (reported in `OpenStats::head`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HeadOrigin {
    /// A head record: every chain end is checked.
    Head,
    /// Only the rollback counter of an earlier version: the manifest position is checked.
    LegacyCounter,
    /// Nothing: a new database, one opened at this path for the first time (moved, copied,
    /// or restored by hand), or rollback protection off. Its chain ends are trusted as found,
    /// and anchored from now on.
    #[default]
    None,
}

/// The head of one open database: the last state written, and where.
#[derive(Debug)]
pub(crate) struct Head {
    path: PathBuf,
    legacy: PathBuf,
    inner: Mutex<HeadInner>,
}

#[derive(Debug)]
struct HeadInner {
    state: HeadState,
    keyring: Keyring,
    /// Whether `state` is on disk (false until the first write after a legacy/no-head open).
    written: bool,
}

impl Head {
    /// Reads the head of the database at `dir` (absolute), sealed under `keyring`'s keys.
    /// A head that exists but does not authenticate is an integrity error: it is never
    /// silently replaced.
    pub(crate) fn load(
        keystore: &Path,
        keyring: &Keyring,
        dir: &Path,
    ) -> Result<(Self, HeadOrigin)> {
        let id = keyring.database_id();
        let path = head_path(keystore, id, dir);
        let legacy = legacy_counter_path(keystore, id, dir);
        let fs = RealFs;
        let (state, origin) = if fs.exists(&path) {
            (read_head_file(&fs, &path, keyring)?, HeadOrigin::Head)
        } else if let Some(pos) = read_legacy_counter(&legacy)? {
            (
                HeadState {
                    manifest: pos,
                    ..HeadState::default()
                },
                HeadOrigin::LegacyCounter,
            )
        } else {
            (HeadState::default(), HeadOrigin::None)
        };
        Ok((
            Self {
                path,
                legacy,
                inner: Mutex::new(HeadInner {
                    state,
                    keyring: keyring.clone(),
                    written: origin == HeadOrigin::Head,
                }),
            },
            origin,
        ))
    }

    /// What the head names now.
    pub(crate) fn state(&self) -> HeadState {
        self.inner.lock().state.clone()
    }

    /// Replaces the keys the head is sealed under (after a rotation or a master-key switch)
    /// and rewrites it under them, so an old data-key version can be dropped.
    pub(crate) fn set_keyring(&self, keyring: Keyring, keys_generation: u64) -> Result<()> {
        let mut inner = self.inner.lock();
        inner.keyring = keyring;
        inner.state.keys_generation = inner.state.keys_generation.max(keys_generation);
        Self::write(&self.path, &self.legacy, &mut inner)
    }

    /// Applies `change` and writes the head if anything changed (or it was never written).
    /// Callers only ever advance values, after what they name is durable.
    pub(crate) fn update(&self, change: impl FnOnce(&mut HeadState)) -> Result<()> {
        let mut inner = self.inner.lock();
        let before = inner.state.clone();
        change(&mut inner.state);
        if inner.state == before && inner.written {
            return Ok(());
        }
        let r = Self::write(&self.path, &self.legacy, &mut inner);
        if r.is_err() {
            // Keep memory in step with disk: the next update retries the whole state.
            inner.written = false;
        }
        r
    }

    /// Replaces the head whole (after checks at open accepted what was found).
    pub(crate) fn reset(&self, state: HeadState) -> Result<()> {
        let mut inner = self.inner.lock();
        inner.state = state;
        Self::write(&self.path, &self.legacy, &mut inner)
    }

    fn write(path: &Path, legacy: &Path, inner: &mut HeadInner) -> Result<()> {
        ensure_keystore_dir(path)?;
        sealdb_crypto::sealed::write_small_sealed_file(
            &RealFs,
            path,
            &inner.keyring,
            ArtifactKind::Meta,
            &inner.state.encode(),
        )?;
        if !inner.written {
            inner.written = true;
            // The head now carries what the legacy counter did.
            match std::fs::remove_file(legacy) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(legacy, e)),
            }
        }
        Ok(())
    }
}

/// Forgets the head (and legacy counter) of the database `id` at `dir`: a restore into `dir`
/// starts a new history there, which the next open anchors afresh.
pub(crate) fn forget(keystore: &Path, id: DatabaseId, dir: &Path) -> Result<()> {
    for p in [
        head_path(keystore, id, dir),
        legacy_counter_path(keystore, id, dir),
    ] {
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&p, e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_round_trips_and_refuses_garbage() -> Result<()> {
        let mut s = HeadState {
            manifest: (3, 7),
            keys_generation: 2,
            wal_segment: 9,
            wal_durable_seq: 100,
            clean_end: Some(4096),
            streams: BTreeMap::new(),
        };
        s.streams.insert(
            4,
            StreamHead {
                segment: 2,
                last_seq: 90,
                consumers_generation: 5,
            },
        );
        let bytes = s.encode();
        assert_eq!(HeadState::decode(&bytes, "t")?, s);
        for cut in 0..bytes.len() {
            assert!(
                HeadState::decode(&bytes[..cut], "t").is_err(),
                "cut at {cut}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(HeadState::decode(&longer, "t").is_err());
        Ok(())
    }
}
