//! Named, durable consumer positions (beyond what DynamoDB Streams offers): where each named
//! consumer should resume reading.
//!
//! They live in one small sealed file (kind `meta`, always ChaCha20-Poly1305 so consumer
//! names are never in clear, even in a `none`-cipher database) under the stream directory,
//! replaced atomically on every commit: a new file with a new file id each time, never an
//! append. Its single final block opens with a tag that no other `meta` file uses, so a
//! `CURRENT` file copied over it is refused.

use crate::record::Cursor;
use crate::{Error, Result};
use sealdb_crypto::{ArtifactKind, BlockSealer, CipherId, Expected, Keyring, SealedReader};
use sealdb_vfs::FileSystem;
use std::collections::BTreeMap;
use std::path::Path;

/// The file name of the consumer positions file in the stream directory.
pub const POSITIONS_FILE: &str = "CONSUMERS";
/// Longest consumer name accepted (bytes of UTF-8).
pub const MAX_CONSUMER_NAME_LEN: usize = 256;

const POSITIONS_TAG: &[u8; 8] = b"SDBSCP01";
/// Tag, count, then per entry at least a `u16` length, one name byte and a `u64`.
const MIN_ENTRY_LEN: usize = 2 + 1 + 8;

/// The committed position of every named consumer: the sequence number it should resume at
/// (pass it as `StartAt::At`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsumerPositions {
    positions: BTreeMap<String, u64>,
}

impl ConsumerPositions {
    /// Loads the positions from `dir` (none if the file does not exist yet). Verifies the
    /// file's seal, kind, database and tag. Also removes temporary files a crashed commit
    /// left behind, so call it at open, before any commit.
    pub fn load(fs: &dyn FileSystem, dir: &Path, keyring: &Keyring) -> Result<Self> {
        if let Ok(names) = fs.list_dir(dir) {
            for name in names {
                if name.starts_with(&format!("{POSITIONS_FILE}.tmp-")) {
                    let p = dir.join(&name);
                    fs.remove_file(&p).map_err(|e| Error::io(&p, e))?;
                }
            }
        }
        let path = dir.join(POSITIONS_FILE);
        if !fs.exists(&path) {
            return Ok(Self::default());
        }
        let exp = Expected {
            kind: ArtifactKind::Meta,
            database_id: keyring.database_id(),
            cipher: Some(CipherId::ChaCha20Poly1305),
        };
        let reader = SealedReader::open(fs, &path, keyring, &exp)?;
        let (handle, block) = reader
            .blocks()
            .next()
            .ok_or_else(|| malformed(&path, None, "no block"))??;
        if !block.is_final {
            return Err(malformed(
                &path,
                Some(handle.offset),
                "expected exactly one (final) block",
            ));
        }
        let positions =
            decode(&block.data).map_err(|why| malformed(&path, Some(handle.offset), why))?;
        Ok(Self { positions })
    }

    /// The committed position of `name`.
    pub fn get(&self, name: &str) -> Option<u64> {
        self.positions.get(name).copied()
    }

    /// Every consumer and its position, by name.
    pub fn list(&self) -> Vec<(String, u64)> {
        self.positions
            .iter()
            .map(|(n, s)| (n.clone(), *s))
            .collect()
    }

    /// Sets `name`'s position to `seq` and replaces the file atomically; returns once the new
    /// file is durable. On failure nothing changes (in memory or on disk).
    pub fn commit(
        &mut self,
        fs: &dyn FileSystem,
        dir: &Path,
        keyring: &Keyring,
        name: &str,
        seq: u64,
    ) -> Result<()> {
        if name.is_empty() || name.len() > MAX_CONSUMER_NAME_LEN {
            return Err(Error::InvalidArgument(format!(
                "consumer names are 1 to {MAX_CONSUMER_NAME_LEN} bytes"
            )));
        }
        let mut next = self.positions.clone();
        next.insert(name.to_string(), seq);
        write(fs, dir, keyring, &next)?;
        self.positions = next;
        Ok(())
    }

    /// Forgets `name` and replaces the file atomically; returns whether it was known.
    pub fn remove(
        &mut self,
        fs: &dyn FileSystem,
        dir: &Path,
        keyring: &Keyring,
        name: &str,
    ) -> Result<bool> {
        if !self.positions.contains_key(name) {
            return Ok(false);
        }
        let mut next = self.positions.clone();
        next.remove(name);
        write(fs, dir, keyring, &next)?;
        self.positions = next;
        Ok(true)
    }
}

fn malformed(path: &Path, offset: Option<u64>, why: impl std::fmt::Display) -> Error {
    match offset {
        Some(o) => Error::Malformed(format!("{}: block at offset {o}: {why}", path.display())),
        None => Error::Malformed(format!("{}: {why}", path.display())),
    }
}

pub(crate) fn encode(positions: &BTreeMap<String, u64>) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(12 + positions.len() * 32);
    out.extend_from_slice(POSITIONS_TAG);
    let count = u32::try_from(positions.len())
        .map_err(|_| Error::InvalidArgument("too many consumers".into()))?;
    out.extend_from_slice(&count.to_le_bytes());
    for (name, seq) in positions {
        let len = u16::try_from(name.len())
            .ok()
            .filter(|l| usize::from(*l) <= MAX_CONSUMER_NAME_LEN)
            .ok_or_else(|| Error::InvalidArgument("consumer name too long".into()))?;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&seq.to_le_bytes());
    }
    Ok(out)
}

pub(crate) fn decode(b: &[u8]) -> std::result::Result<BTreeMap<String, u64>, String> {
    let mut c = Cursor::new(b);
    if c.take(POSITIONS_TAG.len(), "tag")? != POSITIONS_TAG {
        return Err("not a consumer positions file (bad tag)".into());
    }
    let count = c.u32("consumer count")? as usize;
    if count
        .checked_mul(MIN_ENTRY_LEN)
        .is_none_or(|need| need > c.remaining())
    {
        return Err(format!("consumer count {count} cannot fit"));
    }
    let mut out = BTreeMap::new();
    let mut prev: Option<String> = None;
    for _ in 0..count {
        let len = usize::from(c.u16("name length")?);
        if len == 0 || len > MAX_CONSUMER_NAME_LEN {
            return Err(format!("consumer name length {len} out of bounds"));
        }
        let name = std::str::from_utf8(c.take(len, "name")?)
            .map_err(|_| "consumer name is not UTF-8".to_string())?
            .to_string();
        let seq = c.u64("position")?;
        if prev.as_ref().is_some_and(|p| *p >= name) {
            return Err("consumer names are not strictly ascending".into());
        }
        prev = Some(name.clone());
        out.insert(name, seq);
    }
    c.finish("consumer positions")?;
    Ok(out)
}

fn write(
    fs: &dyn FileSystem,
    dir: &Path,
    keyring: &Keyring,
    positions: &BTreeMap<String, u64>,
) -> Result<()> {
    let path = dir.join(POSITIONS_FILE);
    let payload = encode(positions)?;
    let sealer = BlockSealer::for_new_file(
        keyring,
        ArtifactKind::Meta,
        CipherId::ChaCha20Poly1305,
        Vec::new(),
        path.display().to_string(),
    )?;
    let mut bytes = sealer.header().encode();
    let offset = bytes.len() as u64;
    sealer.seal_into(offset, true, &payload, &mut bytes)?;
    fs.create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    sealdb_vfs::write_file_atomic(fs, &path, &bytes).map_err(|e| Error::io(&path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trips_and_refuses_garbage() -> Result<()> {
        let mut m = BTreeMap::new();
        m.insert("a".to_string(), 5);
        m.insert("billing".to_string(), u64::MAX);
        let b = encode(&m)?;
        assert_eq!(decode(&b).map_err(Error::Malformed)?, m);
        for cut in 0..b.len() {
            assert!(decode(b.get(..cut).unwrap_or_default()).is_err());
        }
        let mut bad = b.clone();
        if let Some(x) = bad.get_mut(8) {
            *x = 0xff;
        }
        assert!(decode(&bad).is_err());
        Ok(())
    }
}
