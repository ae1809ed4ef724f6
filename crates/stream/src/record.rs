//! Change records (what a stream stores about each change) and the stream id: pure encoding
//! and decoding, no I/O. The frames that hold records are in `frame`.
//!
//! Every decoder here treats its input as hostile: it checks each length against both its
//! limit and the bytes that remain before allocating, and returns a reason instead of
//! panicking. Callers attach the file and block to that reason.

use crate::{Error, Result};
use sealdb_base::{PutBytes, Reader};
use std::fmt;
use std::str::FromStr;

/// Largest key a change record may carry: the key limit every layer shares.
pub use sealdb_base::MAX_KEY_LEN;
/// Largest image (old or new value) a change record may carry: the value limit.
pub const MAX_IMAGE_LEN: usize = sealdb_base::MAX_VALUE_LEN;
/// Largest keyspace name a change record may carry (its length is a `u16`).
pub const MAX_KEYSPACE_LEN: usize = u16::MAX as usize;

/// The encoded length of a record with a keyspace name, key and images of these lengths
/// (an absent image is `None`): what [`ChangeRecord::encoded_len`] computes, for callers that
/// size a frame before building its records.
pub const fn record_len(
    keyspace_len: usize,
    key_len: usize,
    new_image_len: Option<usize>,
    old_image_len: Option<usize>,
) -> usize {
    // Presence flag, then length and bytes when present.
    const fn image(len: Option<usize>) -> usize {
        match len {
            Some(len) => 1 + 4 + len,
            None => 1,
        }
    }
    8 + 8 + 1 + 2 + keyspace_len + 4 + key_len + image(new_image_len) + image(old_image_len)
}

/// The smallest encoding of one record: seq, time, event, empty keyspace, empty key, two
/// absent images. Bounds a claimed record count before allocating.
pub(crate) const MIN_RECORD_LEN: usize = record_len(0, 0, None, None);

/// What a stream records about each change (DynamoDB's `StreamViewType`). The engine decides
/// which images it puts in each [`ChangeRecord`]; this crate stores whatever it is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ViewType {
    /// Only the key of the changed item.
    KeysOnly,
    /// The key and the item as it is after the change.
    NewImage,
    /// The key and the item as it was before the change.
    OldImage,
    /// The key and both images.
    NewAndOldImages,
}

impl ViewType {
    /// The name used in options and on the command line: `keys`, `new`, `old`, `new-and-old`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::KeysOnly => "keys",
            Self::NewImage => "new",
            Self::OldImage => "old",
            Self::NewAndOldImages => "new-and-old",
        }
    }

    /// Parses a name produced by [`as_str`](Self::as_str).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "keys" => Some(Self::KeysOnly),
            "new" => Some(Self::NewImage),
            "old" => Some(Self::OldImage),
            "new-and-old" => Some(Self::NewAndOldImages),
            _ => None,
        }
    }

    /// Whether records of this view carry the new image.
    pub fn includes_new_image(self) -> bool {
        matches!(self, Self::NewImage | Self::NewAndOldImages)
    }

    /// Whether records of this view carry the old image.
    pub fn includes_old_image(self) -> bool {
        matches!(self, Self::OldImage | Self::NewAndOldImages)
    }
}

impl fmt::Display for ViewType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ViewType {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s).ok_or_else(|| {
            Error::invalid_argument(format!(
                "unknown stream view type {s:?} (expected keys, new, old or new-and-old)"
            ))
        })
    }
}

/// What happened to an item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Event {
    /// The key did not exist before.
    Insert,
    /// The key existed and was overwritten.
    Modify,
    /// The key was deleted.
    Remove,
}

impl Event {
    fn to_u8(self) -> u8 {
        match self {
            Self::Insert => 1,
            Self::Modify => 2,
            Self::Remove => 3,
        }
    }

    fn from_u8(b: u8) -> Option<Self> {
        match b {
            1 => Some(Self::Insert),
            2 => Some(Self::Modify),
            3 => Some(Self::Remove),
            _ => None,
        }
    }
}

/// One change, in commit order. Sequence numbers strictly increase along the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeRecord {
    /// The change's sequence number (≥ 1).
    pub seq: u64,
    /// When the change committed (Unix milliseconds); retention by age uses it.
    pub commit_time_ms: u64,
    /// Insert, modify or remove.
    pub event: Event,
    /// The keyspace the key belongs to.
    pub keyspace: String,
    /// The key (at most [`MAX_KEY_LEN`] bytes).
    pub key: Vec<u8>,
    /// The item after the change, if the view carries it (at most [`MAX_IMAGE_LEN`] bytes).
    pub new_image: Option<Vec<u8>>,
    /// The item before the change, if the view carries it (at most [`MAX_IMAGE_LEN`] bytes).
    pub old_image: Option<Vec<u8>>,
}

impl ChangeRecord {
    /// Checks the record's lengths against the format's limits.
    pub fn validate(&self) -> Result<()> {
        let too_long = |what: &str, len: usize, max: usize| {
            Error::invalid_argument(format!(
                "change record {}: {what} of {len} bytes exceeds the {max}-byte limit",
                self.seq
            ))
        };
        if self.seq == u64::MAX {
            return Err(Error::invalid_argument(
                "change record sequence numbers must be below u64::MAX".into(),
            ));
        }
        if self.keyspace.len() > MAX_KEYSPACE_LEN {
            return Err(too_long(
                "keyspace name",
                self.keyspace.len(),
                MAX_KEYSPACE_LEN,
            ));
        }
        if self.key.len() > MAX_KEY_LEN {
            return Err(too_long("key", self.key.len(), MAX_KEY_LEN));
        }
        for (what, image) in [
            ("new image", &self.new_image),
            ("old image", &self.old_image),
        ] {
            if let Some(img) = image
                && img.len() > MAX_IMAGE_LEN
            {
                return Err(too_long(what, img.len(), MAX_IMAGE_LEN));
            }
        }
        Ok(())
    }

    /// Bytes the record occupies in the format (what `max_bytes` of a read counts).
    pub fn encoded_len(&self) -> usize {
        record_len(
            self.keyspace.len(),
            self.key.len(),
            self.new_image.as_ref().map(Vec::len),
            self.old_image.as_ref().map(Vec::len),
        )
    }
}

/// Appends the encoding of `r` to `out` (layout in `docs/format.md`, "Change streams"). The record
/// must pass [`ChangeRecord::validate`]; one that does not encodes to bytes the decoder
/// refuses (lengths saturate), never to bytes that decode as something else.
pub fn encode_record(r: &ChangeRecord, out: &mut Vec<u8>) {
    out.reserve(r.encoded_len());
    out.put_u64(r.seq)
        .put_u64(r.commit_time_ms)
        .put_u8(r.event.to_u8())
        .put_bytes_u16(r.keyspace.as_bytes())
        .put_bytes_u32(&r.key);
    for image in [&r.new_image, &r.old_image] {
        match image {
            None => out.put_u8(0),
            Some(v) => out.put_u8(1).put_bytes_u32(v),
        };
    }
}

/// Decodes one record at the reader's position (the inverse of [`encode_record`]).
pub(crate) fn decode_record(c: &mut Reader<'_>) -> std::result::Result<ChangeRecord, String> {
    let seq = c.u64("sequence number")?;
    let commit_time_ms = c.u64("commit time")?;
    let ev = c.u8("event")?;
    let event = Event::from_u8(ev).ok_or_else(|| format!("record {seq}: unknown event {ev}"))?;
    let ks_len = c.u16("keyspace length")? as usize;
    let ks = c.take(ks_len, "keyspace")?;
    let keyspace = std::str::from_utf8(ks)
        .map_err(|_| format!("record {seq}: keyspace name is not UTF-8"))?
        .to_string();
    let key = c.bytes_u32(MAX_KEY_LEN, "key")?.to_vec();
    let mut image = |what: &'static str| -> std::result::Result<Option<Vec<u8>>, String> {
        match c.u8(what)? {
            0 => Ok(None),
            1 => Ok(Some(c.bytes_u32(MAX_IMAGE_LEN, what)?.to_vec())),
            f => Err(format!("record {seq}: {what} flag {f} is not 0 or 1")),
        }
    };
    let new_image = image("new image")?;
    let old_image = image("old image")?;
    Ok(ChangeRecord {
        seq,
        commit_time_ms,
        event,
        keyspace,
        key,
        new_image,
        old_image,
    })
}

/// Which stream a segment or `CONSUMERS` file belongs to: its *role*. Bound into every
/// segment's (authenticated) start frame and into `CONSUMERS`, so a file moved or copied from
/// another stream's directory — or from an earlier incarnation of the same stream — is refused
/// ([`Error::WrongStream`]) instead of served. The engine uses the keyspace id as the owner and
/// the sequence number at which the stream was enabled as the epoch, so disabling and
/// re-enabling a stream makes a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct StreamId {
    /// What the stream belongs to (the engine: its keyspace id).
    pub owner: u64,
    /// Which incarnation of the owner's stream (the engine: the last sequence number when the
    /// stream was enabled).
    pub epoch: u64,
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.epoch)
    }
}

impl StreamId {
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        out.put_u64(self.owner).put_u64(self.epoch);
    }

    pub(crate) fn decode(c: &mut Reader<'_>) -> std::result::Result<Self, String> {
        Ok(Self {
            owner: c.u64("stream owner")?,
            epoch: c.u64("stream epoch")?,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small record with sequence number `seq`, for this crate's tests.
    pub(crate) fn sample(seq: u64) -> ChangeRecord {
        ChangeRecord {
            seq,
            commit_time_ms: 1_700_000_000_000 + seq,
            event: Event::Modify,
            keyspace: "users".into(),
            key: format!("k{seq}").into_bytes(),
            new_image: Some(b"new".to_vec()),
            old_image: None,
        }
    }

    #[test]
    fn view_type_names_round_trip() {
        for v in [
            ViewType::KeysOnly,
            ViewType::NewImage,
            ViewType::OldImage,
            ViewType::NewAndOldImages,
        ] {
            assert_eq!(ViewType::parse(v.as_str()), Some(v));
            assert_eq!(v.as_str().parse::<ViewType>().ok(), Some(v));
        }
        assert!(ViewType::parse("both").is_none());
        assert!("both".parse::<ViewType>().is_err());
    }

    #[test]
    fn a_record_is_encoded_byte_for_byte_as_documented() {
        let r = ChangeRecord {
            seq: 0x0102,
            commit_time_ms: 7,
            event: Event::Modify,
            keyspace: "ks".into(),
            key: b"k".to_vec(),
            new_image: None,
            old_image: Some(b"old".to_vec()),
        };
        let mut out = Vec::new();
        encode_record(&r, &mut out);
        let mut want = vec![2u8, 1, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 2];
        want.extend_from_slice(&[2, 0, b'k', b's', 1, 0, 0, 0, b'k']);
        want.extend_from_slice(&[0, 1, 3, 0, 0, 0, b'o', b'l', b'd']);
        assert_eq!(out, want);
    }

    #[test]
    fn encoded_len_matches_encoding() {
        let r = sample(7);
        let mut out = Vec::new();
        encode_record(&r, &mut out);
        assert_eq!(out.len(), r.encoded_len());
    }

    #[test]
    fn oversized_record_fails_validation() {
        let mut r = sample(1);
        r.key = vec![0; MAX_KEY_LEN + 1];
        assert!(matches!(r.validate(), Err(Error::InvalidArgument { .. })));
    }

    #[test]
    fn the_smallest_record_is_min_record_len_bytes() -> std::result::Result<(), String> {
        let r = ChangeRecord {
            seq: 1,
            commit_time_ms: 0,
            event: Event::Insert,
            keyspace: String::new(),
            key: Vec::new(),
            new_image: None,
            old_image: None,
        };
        let mut out = Vec::new();
        encode_record(&r, &mut out);
        assert_eq!(out.len(), MIN_RECORD_LEN);
        let mut c = Reader::new(&out);
        assert_eq!(decode_record(&mut c)?, r);
        assert!(c.is_empty());
        Ok(())
    }
}
