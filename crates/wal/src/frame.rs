//! The WAL's frames: a start frame is the chain's [`Link`] alone, a batch frame holds one
//! commit group, an end frame is the frame code alone. Pure encoding and decoding, no I/O.

use crate::{Error, Result};
use sealdb_base::{DecodeError, PutBytes, Reader};
use sealdb_log::{FRAME_END, FRAME_PAYLOAD as FRAME_BATCHES, Link};

/// One write batch inside a frame: its records and the sequence number of the first one (the
/// others follow consecutively).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameBatch<'a> {
    /// Sequence number of the batch's first record.
    pub first_seq: u64,
    /// Number of records.
    pub count: u32,
    /// The encoded records (see [`crate::RecordIter`]).
    pub rep: &'a [u8],
    /// Commit time of the frame, Unix milliseconds (all batches of a frame share the first
    /// batch's time; recovery reports the frame's).
    pub commit_time_ms: u64,
}

/// Parses a batch frame's payload into its batches, checking every length.
pub(crate) fn decode_batches(b: &[u8]) -> Option<Vec<FrameBatch<'_>>> {
    read_batches(b).ok()
}

/// Reads a batch frame: frame code, commit time, batch count, then per batch its first
/// sequence number, record count and `u32`-length-prefixed records.
fn read_batches(b: &[u8]) -> Result<Vec<FrameBatch<'_>>, DecodeError> {
    let mut r = Reader::new(b);
    let code = r.u8("frame code")?;
    if code != FRAME_BATCHES {
        return Err(r.invalid("frame code", format!("{code} is not a batch frame")));
    }
    let commit_time_ms = r.u64("commit time")?;
    let count = r.u32("batch count")?;
    // Each batch needs at least 16 header bytes: bound the count before allocating.
    if (count as usize).saturating_mul(16) > b.len() {
        return Err(r.invalid(
            "batch count",
            format!("{count} batches cannot fit in {} bytes", b.len()),
        ));
    }
    let mut out = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let first_seq = r.u64("batch's first sequence number")?;
        let n = r.u32("batch's record count")?;
        let rep = r.bytes_u32(usize::MAX, "batch's records")?;
        out.push(FrameBatch {
            first_seq,
            count: n,
            rep,
            commit_time_ms,
        });
    }
    r.finish("batch frame")?;
    Ok(out)
}

pub(crate) fn encode_batches(batches: &[FrameBatch<'_>], out: &mut Vec<u8>) -> Result<()> {
    out.clear();
    let time = batches.first().map_or(0, |b| b.commit_time_ms);
    let count = u32::try_from(batches.len())
        .map_err(|_| Error::invalid_argument("too many batches in one frame".into()))?;
    out.put_u8(FRAME_BATCHES).put_u64(time).put_u32(count);
    for b in batches {
        let len = u32::try_from(b.rep.len())
            .map_err(|_| Error::invalid_argument("batch too large".into()))?;
        out.put_u64(b.first_seq)
            .put_u32(b.count)
            .put_u32(len)
            .put_raw(b.rep);
    }
    Ok(())
}

/// One decoded WAL frame (the plaintext of one block of a segment), for inspection tools.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Frame<'a> {
    /// The segment's first frame: its number and how its predecessor ended.
    Start {
        /// This segment's number.
        number: u64,
        /// The previous segment's number (0 for the first segment of a WAL).
        prev_number: u64,
        /// Where the previous segment validly ended (its length).
        prev_end: u64,
        /// Whether the previous segment was finished with an end frame.
        prev_finished: bool,
    },
    /// One commit group: its batches (decode their records with [`crate::RecordIter`]).
    Batches(Vec<FrameBatch<'a>>),
    /// The frame that finishes a rolled-over segment.
    End,
}

/// Decodes one frame payload (checking every length; the records are decoded lazily by
/// [`crate::RecordIter`]). Untrusted input is fine: malformed bytes are an error.
pub fn decode_frame(payload: &[u8]) -> Result<Frame<'_>> {
    if let Ok(s) = Link::decode_exact(payload) {
        return Ok(Frame::Start {
            number: s.number,
            prev_number: s.prev_number,
            prev_end: s.prev_end,
            prev_finished: s.prev_finished,
        });
    }
    if payload == [FRAME_END] {
        return Ok(Frame::End);
    }
    decode_batches(payload)
        .map(Frame::Batches)
        .ok_or_else(|| Error::malformed("a frame that is neither start, batches nor end".into()))
}

/// Decodes one frame payload and every record in it; for the fuzz target. Returns the number
/// of records.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub fn decode_frame_for_fuzz(payload: &[u8]) -> Result<u64> {
    if Link::decode_exact(payload).is_ok() || payload == [FRAME_END] {
        return Ok(0);
    }
    let batches = decode_batches(payload).ok_or_else(|| Error::malformed("frame".into()))?;
    let mut n = 0;
    for b in batches {
        for r in crate::batch::RecordIter::new(b.rep) {
            r?;
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod frame_tests {
    use super::*;

    #[test]
    fn frames_decode_by_kind_and_garbage_is_an_error() {
        let start = Link::after(6, 4096, true, 7);
        assert_eq!(
            decode_frame(&start.encode()).ok(),
            Some(Frame::Start {
                number: 7,
                prev_number: 6,
                prev_end: 4096,
                prev_finished: true
            })
        );
        assert_eq!(decode_frame(&[FRAME_END]).ok(), Some(Frame::End));
        let mut b = crate::BatchBuilder::new();
        assert!(b.put(1, b"k", b"v").is_ok());
        let batch = FrameBatch {
            first_seq: 42,
            count: 1,
            rep: b.rep(),
            commit_time_ms: 5,
        };
        let mut payload = Vec::new();
        assert!(encode_batches(&[batch], &mut payload).is_ok());
        // The documented layout: code, commit time, batch count, then per batch first
        // sequence number, record count, records length and records.
        let mut expected = vec![FRAME_BATCHES];
        expected.extend_from_slice(&5u64.to_le_bytes());
        expected.extend_from_slice(&1u32.to_le_bytes());
        expected.extend_from_slice(&42u64.to_le_bytes());
        expected.extend_from_slice(&1u32.to_le_bytes());
        expected.extend_from_slice(&(batch.rep.len() as u32).to_le_bytes());
        expected.extend_from_slice(batch.rep);
        assert_eq!(payload, expected);
        let mut trailing = payload.clone();
        trailing.push(0);
        assert!(decode_frame(&trailing).is_err());
        let mut too_many = payload.clone();
        too_many[9..13].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_frame(&too_many).is_err());
        assert_eq!(
            decode_frame(&payload).ok(),
            Some(Frame::Batches(vec![batch]))
        );
        assert!(decode_frame(&[9, 9, 9]).is_err());
        payload.pop();
        assert!(decode_frame(&payload).is_err());
    }
}
