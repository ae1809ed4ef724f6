//! Named, durable consumer positions (beyond what DynamoDB Streams offers): where each named
//! consumer should resume reading.
//!
//! They live in one small sealed file (kind `meta`, always ChaCha20-Poly1305 so consumer
//! names are never in clear, even in a `none`-cipher database) under the stream directory,
//! replaced atomically on every commit: a new file with a new file id each time, never an
//! append. Its single final block opens with a tag that no other `meta` file uses, so a
//! `CURRENT` file copied over it is refused; it names the stream it belongs to, so a
//! `CONSUMERS` file moved in from another stream's directory is refused too; and it carries a
//! generation, incremented on every write, that the engine pins outside the data directory, so
//! a deleted file or an older copy put back is refused rather than silently resetting
//! consumers.

use crate::malformed_in;
use crate::{Error, Result, StreamId};
use sealdb_base::{PutBytes, Reader};
use sealdb_crypto::{ArtifactKind, Keyring};
use sealdb_vfs::FileSystem;
use std::collections::BTreeMap;
use std::path::Path;

/// The file name of the consumer positions file in the stream directory.
pub const POSITIONS_FILE: &str = "CONSUMERS";
/// Longest consumer name accepted (bytes of UTF-8).
pub const MAX_CONSUMER_NAME_LEN: usize = 256;

const POSITIONS_TAG: &[u8; 8] = b"SDBSCP02";
/// The first format's tag (no stream, no generation): refused by name.
const UNBOUND_POSITIONS_TAG: &[u8; 8] = b"SDBSCP01";
/// Tag, count, then per entry at least a `u16` length, one name byte and a `u64`.
const MIN_ENTRY_LEN: usize = 2 + 1 + 8;

/// The committed position of every named consumer: the sequence number it should resume at
/// (pass it as `StartAt::At`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerPositions {
    stream: StreamId,
    /// The generation of the file on disk (0: never written).
    generation: u64,
    positions: BTreeMap<String, u64>,
}

impl ConsumerPositions {
    /// Loads the positions of stream `stream` from `dir` (none if the file does not exist
    /// yet). Verifies the file's seal, kind, database, tag and stream ([`Error::WrongStream`]
    /// for a file moved in from another stream's directory). Also removes temporary files a
    /// crashed commit left behind, so call it at open, before any commit.
    ///
    /// `expected_generation` is the generation the caller pinned outside the data directory
    /// (`None`: no check). A missing file when a generation above 0 is expected, or a file of
    /// an older generation (an older copy put back), is [`Error::MissingFile`] naming the
    /// file. A newer generation is fine: the pin may lag the file (it is not updated on every
    /// commit).
    pub fn load(
        fs: &dyn FileSystem,
        dir: &Path,
        keyring: &Keyring,
        stream: StreamId,
        expected_generation: Option<u64>,
    ) -> Result<Self> {
        let path = dir.join(POSITIONS_FILE);
        let behind = |found: u64, expected: u64, what: &str| Error::MissingFile {
            file: path.display().to_string(),
            detail: format!(
                "{what}, but generation {expected} of it was written (consumer positions \
                 would silently go back; found generation {found})"
            ),
        };
        if !fs.exists(&path) {
            if let Some(g) = expected_generation.filter(|g| *g > 0) {
                return Err(behind(0, g, "the file is missing"));
            }
            return Ok(Self {
                stream,
                generation: 0,
                positions: BTreeMap::new(),
            });
        }
        let data =
            sealdb_crypto::sealed::read_small_sealed_file(fs, &path, keyring, ArtifactKind::Meta)?;
        let (found, generation, positions) =
            decode(&data).map_err(|why| malformed_in(&path, None, why))?;
        if found != stream {
            return Err(Error::WrongStream {
                file: path.display().to_string(),
                expected: stream,
                found,
            });
        }
        if let Some(g) = expected_generation.filter(|g| generation < *g) {
            return Err(behind(generation, g, "the file is an older copy"));
        }
        Ok(Self {
            stream,
            generation,
            positions,
        })
    }

    /// The generation of the file on disk: incremented by every [`commit`](Self::commit) and
    /// [`remove`](Self::remove) that wrote it (0: never written). What the engine pins in its
    /// head record and passes back to [`load`](Self::load).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The stream these positions belong to.
    pub fn stream(&self) -> StreamId {
        self.stream
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
            return Err(Error::invalid_argument(format!(
                "consumer names are 1 to {MAX_CONSUMER_NAME_LEN} bytes"
            )));
        }
        let mut next = self.positions.clone();
        next.insert(name.to_string(), seq);
        self.replace(fs, dir, keyring, next)
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
        self.replace(fs, dir, keyring, next)?;
        Ok(true)
    }

    /// Writes `next` as the next generation; adopts it only once it is durable.
    fn replace(
        &mut self,
        fs: &dyn FileSystem,
        dir: &Path,
        keyring: &Keyring,
        next: BTreeMap<String, u64>,
    ) -> Result<()> {
        let generation = self.generation.checked_add(1).ok_or_else(|| {
            Error::invalid_argument("consumer positions generation overflow".into())
        })?;
        write(fs, dir, keyring, self.stream, generation, &next)?;
        self.positions = next;
        self.generation = generation;
        Ok(())
    }
}

pub(crate) fn encode(
    stream: StreamId,
    generation: u64,
    positions: &BTreeMap<String, u64>,
) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(36 + positions.len() * 32);
    out.put_raw(POSITIONS_TAG);
    stream.encode_into(&mut out);
    let count = u32::try_from(positions.len())
        .map_err(|_| Error::invalid_argument("too many consumers".into()))?;
    out.put_u64(generation).put_u32(count);
    for (name, seq) in positions {
        if name.len() > MAX_CONSUMER_NAME_LEN {
            return Err(Error::invalid_argument("consumer name too long".into()));
        }
        out.put_bytes_u16(name.as_bytes()).put_u64(*seq);
    }
    Ok(out)
}

pub(crate) type Decoded = (StreamId, u64, BTreeMap<String, u64>);

pub(crate) fn decode(b: &[u8]) -> std::result::Result<Decoded, String> {
    let mut c = Reader::new(b);
    let tag = c.take(POSITIONS_TAG.len(), "tag")?;
    if tag == UNBOUND_POSITIONS_TAG {
        return Err(
            "consumer positions file of an earlier format (names no stream and no \
                    generation)"
                .into(),
        );
    }
    if tag != POSITIONS_TAG {
        return Err("not a consumer positions file (bad tag)".into());
    }
    let stream = StreamId::decode(&mut c)?;
    let generation = c.u64("generation")?;
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
    Ok((stream, generation, out))
}

fn write(
    fs: &dyn FileSystem,
    dir: &Path,
    keyring: &Keyring,
    stream: StreamId,
    generation: u64,
    positions: &BTreeMap<String, u64>,
) -> Result<()> {
    let path = dir.join(POSITIONS_FILE);
    let payload = encode(stream, generation, positions)?;
    sealdb_vfs::create_dir_all_durable(fs, dir).map_err(|e| Error::io(dir, e))?;
    Ok(sealdb_crypto::sealed::write_small_sealed_file(
        fs,
        &path,
        keyring,
        ArtifactKind::Meta,
        &payload,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trips_and_refuses_garbage() -> Result<()> {
        let mut m = BTreeMap::new();
        m.insert("a".to_string(), 5);
        m.insert("billing".to_string(), u64::MAX);
        let id = StreamId { owner: 3, epoch: 9 };
        let b = encode(id, 5, &m)?;
        assert_eq!(decode(&b).map_err(Error::malformed)?, (id, 5, m));
        for cut in 0..b.len() {
            assert!(decode(b.get(..cut).unwrap_or_default()).is_err());
        }
        let mut bad = b.clone();
        if let Some(x) = bad.get_mut(8 + 16 + 8) {
            *x = 0xff;
        }
        assert!(decode(&bad).is_err());
        // The first format's tag is refused by name.
        let mut old = b.clone();
        if let Some(t) = old.get_mut(..8) {
            t.copy_from_slice(UNBOUND_POSITIONS_TAG);
        }
        assert!(decode(&old).is_err_and(|e| e.contains("earlier format")));
        Ok(())
    }
}
