//! Frame codes and the start frame's link to its predecessor.

use sealdb_base::{DecodeError, PutBytes, Reader};

/// The first byte of a start frame (every segment's first block).
pub const FRAME_START: u8 = 1;
/// The first byte of a payload frame (a commit group, change records).
pub const FRAME_PAYLOAD: u8 = 2;
/// The first byte of an end frame (a rolled-over segment's final block).
pub const FRAME_END: u8 = 3;

/// Bytes of the start frame's link: frame code, number, previous number, previous end,
/// previous-finished flag. A log may add its own fields after it.
pub const LINK_LEN: usize = 1 + 8 + 8 + 8 + 1;

/// What every start frame begins with: the segment's number and how its predecessor ended.
/// Recovery follows these links from the newest segment back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Link {
    /// This segment's number.
    pub number: u64,
    /// The previous segment's number (0 for the first segment of a log).
    pub prev_number: u64,
    /// Where the previous segment validly ended (its length when finished).
    pub prev_end: u64,
    /// Whether the previous segment was finished with an end frame.
    pub prev_finished: bool,
}

impl Link {
    /// The link of segment `number`, whose predecessor is segment `prev_number`, validly
    /// ending at `prev_end` (finished with an end frame or not).
    pub fn after(prev_number: u64, prev_end: u64, prev_finished: bool, number: u64) -> Self {
        Self {
            number,
            prev_number,
            prev_end,
            prev_finished,
        }
    }

    /// Appends the encoded link (starting with [`FRAME_START`]) to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.put_u8(FRAME_START)
            .put_u64(self.number)
            .put_u64(self.prev_number)
            .put_u64(self.prev_end)
            .put_u8(u8::from(self.prev_finished));
    }

    /// The encoded link alone: a whole start frame for a log that adds nothing to it.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(LINK_LEN);
        self.encode_into(&mut out);
        out
    }

    /// Decodes the link at the start of a start frame; returns it and the bytes after it
    /// (the log's own fields). Untrusted input: a reason instead of a panic.
    pub fn decode_prefix(b: &[u8]) -> Result<(Self, &[u8]), String> {
        let mut r = Reader::new(b);
        let link = Self::read(&mut r)?;
        let rest = r.take(r.remaining(), "start frame's own fields")?;
        Ok((link, rest))
    }

    /// Reads the link's fields, naming the one that is short or wrong.
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let frame_type = r.u8("start frame type")?;
        if frame_type != FRAME_START {
            return Err(r.invalid(
                "start frame type",
                format!("frame type {frame_type} is not a start frame"),
            ));
        }
        let number = r.u64("segment number")?;
        let prev_number = r.u64("previous segment number")?;
        let prev_end = r.u64("previous segment end")?;
        let prev_finished = match r.u8("previous finished flag")? {
            0 => false,
            1 => true,
            f => {
                return Err(r.invalid("previous finished flag", format!("{f} is not 0 or 1")));
            }
        };
        Ok(Self {
            number,
            prev_number,
            prev_end,
            prev_finished,
        })
    }

    /// Decodes a start frame that is exactly a link (nothing after it).
    pub fn decode_exact(b: &[u8]) -> Result<Self, String> {
        let mut r = Reader::new(b);
        let link = Self::read(&mut r)?;
        r.finish("start frame")?;
        Ok(link)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_link_has_the_documented_layout() {
        let l = Link::after(6, 4096, true, 7);
        let b = l.encode();
        assert_eq!(b.len(), LINK_LEN);
        assert_eq!(b[0], FRAME_START);
        assert_eq!(&b[1..9], &7u64.to_le_bytes());
        assert_eq!(&b[9..17], &6u64.to_le_bytes());
        assert_eq!(&b[17..25], &4096u64.to_le_bytes());
        assert_eq!(b[25], 1);
        assert_eq!(Link::decode_exact(&b), Ok(l));
    }

    #[test]
    fn bad_start_frames_are_refused_with_a_reason() {
        let mut b = Link::after(1, 2, false, 3).encode();
        assert!(Link::decode_exact(&b[..LINK_LEN - 1]).is_err());
        assert!(Link::decode_exact(&b[..5]).is_err_and(|e| e.contains("segment number")));
        b[LINK_LEN - 1] = 2;
        assert!(Link::decode_exact(&b).is_err_and(|e| e.contains("finished flag")));
        b[LINK_LEN - 1] = 0;
        b[0] = FRAME_END;
        assert!(Link::decode_exact(&b).is_err_and(|e| e.contains("not a start frame")));
        b[0] = FRAME_START;
        b.push(9);
        assert!(Link::decode_exact(&b).is_err());
        let (_, rest) = Link::decode_prefix(&b).expect("prefix");
        assert_eq!(rest, &[9]);
    }

    proptest! {
        #[test]
        fn links_round_trip_and_garbage_never_panics(
            number: u64, prev_number: u64, prev_end: u64, prev_finished: bool,
            garbage in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let l = Link { number, prev_number, prev_end, prev_finished };
            prop_assert_eq!(Link::decode_exact(&l.encode()), Ok(l));
            let _ = Link::decode_prefix(&garbage);
        }
    }
}
