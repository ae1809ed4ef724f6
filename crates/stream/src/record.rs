//! Change records and the frames that hold them: pure encoding and decoding, no I/O.
//!
//! Every decoder here treats its input as hostile: it checks each length against both its
//! limit and the bytes that remain before allocating, and returns a reason instead of
//! panicking. Callers attach the file and block to that reason.

use crate::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// Largest key a change record may carry.
pub const MAX_KEY_LEN: usize = 64 << 10;
/// Largest image (old or new value) a change record may carry.
pub const MAX_IMAGE_LEN: usize = 32 << 20;
/// Largest keyspace name a change record may carry (its length is a `u16`).
pub const MAX_KEYSPACE_LEN: usize = u16::MAX as usize;

/// Largest frame payload: a frame is one sealed block.
pub const MAX_FRAME_LEN: usize = sealdb_crypto::sealed::MAX_BLOCK_LEN as usize;
/// Bytes a records frame spends besides its records: frame type, record count.
pub const RECORDS_FRAME_HEADER_LEN: usize = 1 + 4;

/// The encoded length of a record with a keyspace name, key and images of these lengths
/// (an absent image is `None`): what [`ChangeRecord::encoded_len`] computes, for callers that
/// size a frame before building its records.
pub fn record_len(
    keyspace_len: usize,
    key_len: usize,
    new_image_len: Option<usize>,
    old_image_len: Option<usize>,
) -> usize {
    let image = |i: Option<usize>| 1 + i.map_or(0, |len| 4 + len);
    8 + 8 + 1 + 2 + keyspace_len + 4 + key_len + image(new_image_len) + image(old_image_len)
}

pub(crate) const FRAME_START: u8 = 1;
pub(crate) const FRAME_RECORDS: u8 = 2;
pub(crate) const FRAME_END: u8 = 3;

/// The smallest encoding of one record: seq, time, event, empty keyspace, empty key, two
/// absent images. Bounds a claimed record count before allocating.
const MIN_RECORD_LEN: usize = 8 + 8 + 1 + 2 + 4 + 1 + 1;

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
    out.extend_from_slice(&r.seq.to_le_bytes());
    out.extend_from_slice(&r.commit_time_ms.to_le_bytes());
    out.push(r.event.to_u8());
    let ks_len = u16::try_from(r.keyspace.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&ks_len.to_le_bytes());
    out.extend_from_slice(r.keyspace.as_bytes());
    put_bytes32(out, &r.key);
    for image in [&r.new_image, &r.old_image] {
        match image {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                put_bytes32(out, v);
            }
        }
    }
}

fn put_bytes32(out: &mut Vec<u8>, b: &[u8]) {
    let len = u32::try_from(b.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(b);
}

/// A bounds-checked reader over a byte slice. Every method returns `Err(reason)` instead of
/// reading past the end.
pub(crate) struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(b: &'a [u8]) -> Self {
        Self { b, pos: 0 }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.b.len().saturating_sub(self.pos)
    }

    pub(crate) fn take(&mut self, n: usize, what: &str) -> std::result::Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.b.len())
            .ok_or_else(|| format!("{what} runs past the end at byte {}", self.pos))?;
        let s = self
            .b
            .get(self.pos..end)
            .ok_or_else(|| format!("{what} out of bounds"))?;
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &str) -> std::result::Result<[u8; N], String> {
        let s = self.take(N, what)?;
        s.try_into().map_err(|_| format!("{what} out of bounds"))
    }

    pub(crate) fn u8(&mut self, what: &str) -> std::result::Result<u8, String> {
        Ok(u8::from_le_bytes(self.array::<1>(what)?))
    }

    pub(crate) fn u16(&mut self, what: &str) -> std::result::Result<u16, String> {
        Ok(u16::from_le_bytes(self.array::<2>(what)?))
    }

    pub(crate) fn u32(&mut self, what: &str) -> std::result::Result<u32, String> {
        Ok(u32::from_le_bytes(self.array::<4>(what)?))
    }

    pub(crate) fn u64(&mut self, what: &str) -> std::result::Result<u64, String> {
        Ok(u64::from_le_bytes(self.array::<8>(what)?))
    }

    /// A `u32` length (checked against `max` and against the remaining bytes) and its bytes.
    fn bytes32(&mut self, what: &str, max: usize) -> std::result::Result<&'a [u8], String> {
        let len = self.u32(what)? as usize;
        if len > max {
            return Err(format!("{what} length {len} exceeds the {max}-byte limit"));
        }
        self.take(len, what)
    }

    pub(crate) fn finish(&self, what: &str) -> std::result::Result<(), String> {
        if self.remaining() != 0 {
            return Err(format!(
                "{} trailing bytes after the {what}",
                self.remaining()
            ));
        }
        Ok(())
    }
}

fn decode_record(c: &mut Cursor<'_>) -> std::result::Result<ChangeRecord, String> {
    let seq = c.u64("sequence number")?;
    let commit_time_ms = c.u64("commit time")?;
    let ev = c.u8("event")?;
    let event = Event::from_u8(ev).ok_or_else(|| format!("record {seq}: unknown event {ev}"))?;
    let ks_len = c.u16("keyspace length")? as usize;
    let ks = c.take(ks_len, "keyspace")?;
    let keyspace = std::str::from_utf8(ks)
        .map_err(|_| format!("record {seq}: keyspace name is not UTF-8"))?
        .to_string();
    let key = c.bytes32("key", MAX_KEY_LEN)?.to_vec();
    let mut image = |what: &str| -> std::result::Result<Option<Vec<u8>>, String> {
        match c.u8(what)? {
            0 => Ok(None),
            1 => Ok(Some(c.bytes32(what, MAX_IMAGE_LEN)?.to_vec())),
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

/// Encodes a records frame holding `records` into `out` (cleared first).
pub(crate) fn encode_records_frame(records: &[ChangeRecord], out: &mut Vec<u8>) -> Result<()> {
    out.clear();
    out.push(FRAME_RECORDS);
    let count = u32::try_from(records.len())
        .map_err(|_| Error::invalid_argument("too many change records in one append".into()))?;
    out.extend_from_slice(&count.to_le_bytes());
    for r in records {
        encode_record(r, out);
    }
    Ok(())
}

/// Decodes a records frame's plaintext (including its type byte). Checks that the frame holds
/// at least one record and that sequence numbers strictly increase within it.
pub(crate) fn decode_records_frame(b: &[u8]) -> std::result::Result<Vec<ChangeRecord>, String> {
    let mut c = Cursor::new(b);
    let t = c.u8("frame type")?;
    if t != FRAME_RECORDS {
        return Err(format!("frame type {t} is not a records frame"));
    }
    let count = c.u32("record count")? as usize;
    if count == 0 {
        return Err("records frame holds no records".into());
    }
    if count
        .checked_mul(MIN_RECORD_LEN)
        .is_none_or(|need| need > c.remaining())
    {
        return Err(format!(
            "record count {count} cannot fit in {} bytes",
            c.remaining()
        ));
    }
    let mut out: Vec<ChangeRecord> = Vec::with_capacity(count);
    for _ in 0..count {
        let r = decode_record(&mut c)?;
        if let Some(prev) = out.last()
            && r.seq <= prev.seq
        {
            return Err(format!(
                "sequence {} does not follow {} within the frame",
                r.seq, prev.seq
            ));
        }
        out.push(r);
    }
    c.finish("records frame")?;
    Ok(out)
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
        out.extend_from_slice(&self.owner.to_le_bytes());
        out.extend_from_slice(&self.epoch.to_le_bytes());
    }

    pub(crate) fn decode(c: &mut Cursor<'_>) -> std::result::Result<Self, String> {
        Ok(Self {
            owner: c.u64("stream owner")?,
            epoch: c.u64("stream epoch")?,
        })
    }
}

/// The first block of every segment: names the segment, the stream it belongs to, how its
/// predecessor ended, and the stream's last sequence number when it was created (every record
/// in it is greater).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StartFrame {
    pub(crate) number: u64,
    pub(crate) prev_number: u64,
    pub(crate) prev_end: u64,
    pub(crate) prev_finished: bool,
    pub(crate) base_seq: u64,
    pub(crate) stream: StreamId,
}

pub(crate) const START_FRAME_LEN: usize = 1 + 8 + 8 + 8 + 1 + 8 + 16;
/// The start frame of the first format, which did not bind the stream: refused by name.
const UNBOUND_START_FRAME_LEN: usize = 1 + 8 + 8 + 8 + 1 + 8;

impl StartFrame {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(START_FRAME_LEN);
        out.push(FRAME_START);
        out.extend_from_slice(&self.number.to_le_bytes());
        out.extend_from_slice(&self.prev_number.to_le_bytes());
        out.extend_from_slice(&self.prev_end.to_le_bytes());
        out.push(u8::from(self.prev_finished));
        out.extend_from_slice(&self.base_seq.to_le_bytes());
        self.stream.encode_into(&mut out);
        out
    }

    pub(crate) fn decode(b: &[u8]) -> std::result::Result<Self, String> {
        if b.len() == UNBOUND_START_FRAME_LEN && b.first() == Some(&FRAME_START) {
            return Err(
                "start frame does not name its stream (an earlier format, which \
                        could not tell one stream's segments from another's)"
                    .into(),
            );
        }
        let mut c = Cursor::new(b);
        let t = c.u8("frame type")?;
        if t != FRAME_START {
            return Err(format!("frame type {t} is not a start frame"));
        }
        let number = c.u64("segment number")?;
        let prev_number = c.u64("previous segment number")?;
        let prev_end = c.u64("previous segment end")?;
        let prev_finished = match c.u8("previous finished flag")? {
            0 => false,
            1 => true,
            f => return Err(format!("previous finished flag {f} is not 0 or 1")),
        };
        let base_seq = c.u64("base sequence number")?;
        let stream = StreamId::decode(&mut c)?;
        c.finish("start frame")?;
        Ok(Self {
            number,
            prev_number,
            prev_end,
            prev_finished,
            base_seq,
            stream,
        })
    }
}

/// The final block of a segment closed by rollover: the last sequence number the stream held
/// when it was closed.
pub(crate) fn encode_end_frame(last_seq: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(9);
    out.push(FRAME_END);
    out.extend_from_slice(&last_seq.to_le_bytes());
    out
}

pub(crate) fn decode_end_frame(b: &[u8]) -> std::result::Result<u64, String> {
    let mut c = Cursor::new(b);
    let t = c.u8("frame type")?;
    if t != FRAME_END {
        return Err(format!("frame type {t} is not an end frame"));
    }
    let last = c.u64("last sequence number")?;
    c.finish("end frame")?;
    Ok(last)
}

/// Decodes one block plaintext of a stream segment (any frame type) and every record in it;
/// for the fuzz target. Returns the number of records decoded.
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub fn decode_records_for_fuzz(bytes: &[u8]) -> Result<usize> {
    let malformed = |why: String| Error::malformed(format!("<fuzz input>: {why}"));
    match bytes.first() {
        Some(&FRAME_START) => StartFrame::decode(bytes).map(|_| 0).map_err(malformed),
        Some(&FRAME_END) => decode_end_frame(bytes).map(|_| 0).map_err(malformed),
        _ => decode_records_frame(bytes)
            .map(|r| r.len())
            .map_err(malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(seq: u64) -> ChangeRecord {
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
    fn encoded_len_matches_encoding() {
        let r = sample(7);
        let mut out = Vec::new();
        encode_record(&r, &mut out);
        assert_eq!(out.len(), r.encoded_len());
    }

    #[test]
    fn frames_round_trip() -> std::result::Result<(), String> {
        let s = StartFrame {
            number: 3,
            prev_number: 2,
            prev_end: 999,
            prev_finished: true,
            base_seq: 41,
            stream: StreamId {
                owner: 7,
                epoch: 99,
            },
        };
        assert_eq!(s.encode().len(), START_FRAME_LEN);
        assert_eq!(StartFrame::decode(&s.encode())?, s);
        // A start frame of the first format (no stream named) is refused, not misread.
        let old = s
            .encode()
            .get(..UNBOUND_START_FRAME_LEN)
            .unwrap_or_default()
            .to_vec();
        assert!(StartFrame::decode(&old).is_err_and(|e| e.contains("does not name its stream")));
        assert_eq!(decode_end_frame(&encode_end_frame(77))?, 77);
        Ok(())
    }

    #[test]
    fn out_of_order_records_in_a_frame_are_refused() -> Result<()> {
        let mut out = Vec::new();
        encode_records_frame(&[sample(5), sample(5)], &mut out)?;
        assert!(decode_records_frame(&out).is_err());
        Ok(())
    }

    #[test]
    fn huge_claimed_count_is_refused_before_allocating() {
        let mut b = vec![FRAME_RECORDS];
        b.extend_from_slice(&u32::MAX.to_le_bytes());
        b.extend_from_slice(&[0u8; 40]);
        assert!(decode_records_frame(&b).is_err());
    }

    #[test]
    fn oversized_record_fails_validation() {
        let mut r = sample(1);
        r.key = vec![0; MAX_KEY_LEN + 1];
        assert!(matches!(r.validate(), Err(Error::InvalidArgument { .. })));
    }

    fn arb_record() -> impl Strategy<Value = ChangeRecord> {
        (
            any::<u64>(),
            any::<u64>(),
            0u8..3,
            "[a-z]{0,8}",
            proptest::collection::vec(any::<u8>(), 0..40),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..60)),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..60)),
        )
            .prop_map(|(seq, t, e, ks, key, n, o)| ChangeRecord {
                seq,
                commit_time_ms: t,
                event: [Event::Insert, Event::Modify, Event::Remove][usize::from(e)],
                keyspace: ks,
                key,
                new_image: n,
                old_image: o,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn records_frame_round_trips(mut records in proptest::collection::vec(arb_record(), 1..8)) {
            records.sort_by_key(|r| r.seq);
            records.dedup_by_key(|r| r.seq);
            let mut out = Vec::new();
            encode_records_frame(&records, &mut out).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let back = decode_records_frame(&out).map_err(TestCaseError::fail)?;
            prop_assert_eq!(back, records);
        }

        #[test]
        fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_records_for_fuzz(&bytes);
        }

        #[test]
        fn decoder_never_panics_on_mutated_frames(
            records in proptest::collection::vec(arb_record(), 1..4),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut out = Vec::new();
            encode_records_frame(&records, &mut out).map_err(|e| TestCaseError::fail(e.to_string()))?;
            for (i, x) in flips {
                let at = i.index(out.len());
                if let Some(b) = out.get_mut(at) { *b ^= x; }
            }
            out.truncate(cut.index(out.len() + 1));
            let _ = decode_records_for_fuzz(&out);
        }
    }
}
