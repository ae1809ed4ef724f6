//! The frames of a stream segment: pure encoding and decoding, no I/O.
//!
//! A segment is a start frame (the chained log's [`Link`], then the stream's own fields), records
//! frames (the chained log's payload frames, each holding whole commit groups) and, on rollover,
//! an end frame. The frame codes and the link are sealdb-log's, shared with the WAL; what follows
//! them is the stream's. Decoders treat their input as hostile and return a reason instead of
//! panicking; callers attach the file and block to it.

use crate::record::{MIN_RECORD_LEN, decode_record};
use crate::{ChangeRecord, Error, Result, StreamId, encode_record};
use sealdb_base::{PutBytes, Reader};
use sealdb_log::{FRAME_END, FRAME_PAYLOAD as FRAME_RECORDS, FRAME_START, LINK_LEN, Link};

/// Largest frame payload: a frame is one sealed block.
pub const MAX_FRAME_LEN: usize = sealdb_crypto::sealed::MAX_BLOCK_LEN as usize;
/// Bytes a records frame spends besides its records: frame type, record count.
pub const RECORDS_FRAME_HEADER_LEN: usize = 1 + 4;

/// Encodes a records frame holding `records` into `out` (cleared first).
pub(crate) fn encode_records_frame(records: &[ChangeRecord], out: &mut Vec<u8>) -> Result<()> {
    out.clear();
    let count = u32::try_from(records.len())
        .map_err(|_| Error::invalid_argument("too many change records in one append".into()))?;
    out.put_u8(FRAME_RECORDS).put_u32(count);
    for r in records {
        encode_record(r, out);
    }
    Ok(())
}

/// Decodes a records frame's plaintext (including its type byte). Checks that the frame holds
/// at least one record and that sequence numbers strictly increase within it.
pub(crate) fn decode_records_frame(b: &[u8]) -> std::result::Result<Vec<ChangeRecord>, String> {
    let mut c = Reader::new(b);
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

/// The first block of every segment: the chain's link (the segment's number and how its
/// predecessor ended), then the stream's last sequence number when the segment was created
/// (every record in it is greater) and the stream it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StartFrame {
    pub(crate) link: Link,
    pub(crate) base_seq: u64,
    pub(crate) stream: StreamId,
}

/// A start frame's length: the link, then base sequence, stream owner and stream epoch.
pub(crate) const START_FRAME_LEN: usize = LINK_LEN + 8 + 16;
/// The start frame of the first format, which did not bind the stream: refused by name.
const UNBOUND_START_FRAME_LEN: usize = LINK_LEN + 8;

impl StartFrame {
    /// The frame's plaintext: the link, then the stream's fields.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(START_FRAME_LEN);
        self.link.encode_into(&mut out);
        out.put_u64(self.base_seq);
        self.stream.encode_into(&mut out);
        out
    }

    /// Decodes a start frame's plaintext; a reason if it is not exactly one.
    pub(crate) fn decode(b: &[u8]) -> std::result::Result<Self, String> {
        if b.len() == UNBOUND_START_FRAME_LEN && b.first() == Some(&FRAME_START) {
            return Err(
                "start frame does not name its stream (an earlier format, which \
                        could not tell one stream's segments from another's)"
                    .into(),
            );
        }
        let (link, rest) = Link::decode_prefix(b)?;
        let mut c = Reader::new(rest);
        let base_seq = c.u64("base sequence number")?;
        let stream = StreamId::decode(&mut c)?;
        c.finish("start frame")?;
        Ok(Self {
            link,
            base_seq,
            stream,
        })
    }
}

/// The final block of a segment closed by rollover: the last sequence number the stream held
/// when it was closed.
pub(crate) fn encode_end_frame(last_seq: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(9);
    out.put_u8(FRAME_END).put_u64(last_seq);
    out
}

/// Decodes an end frame's plaintext: the last sequence number it records.
pub(crate) fn decode_end_frame(b: &[u8]) -> std::result::Result<u64, String> {
    let mut c = Reader::new(b);
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
    use crate::Event;
    use crate::record::tests::sample;
    use proptest::prelude::*;

    fn sample_start() -> StartFrame {
        StartFrame {
            link: Link::after(2, 999, true, 3),
            base_seq: 41,
            stream: StreamId {
                owner: 7,
                epoch: 99,
            },
        }
    }

    #[test]
    fn frames_round_trip() -> std::result::Result<(), String> {
        let s = sample_start();
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
    fn a_start_frame_is_the_shared_link_then_the_streams_fields() {
        // Spelled out, not built from `Link::encode`: the bytes on disk must not move.
        let mut want = vec![FRAME_START];
        for field in [3u64, 2, 999] {
            want.extend_from_slice(&field.to_le_bytes());
        }
        want.push(1);
        for field in [41u64, 7, 99] {
            want.extend_from_slice(&field.to_le_bytes());
        }
        assert_eq!(sample_start().encode(), want);
        // One byte short or long of the stream's fields is refused, not misread.
        let mut long = want.clone();
        long.push(0);
        assert!(StartFrame::decode(&long).is_err());
        assert!(StartFrame::decode(want.get(..START_FRAME_LEN - 1).unwrap_or_default()).is_err());
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
