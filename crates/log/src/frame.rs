//! Frame codes and the start frame's link to its predecessor.

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
        out.push(FRAME_START);
        out.extend_from_slice(&self.number.to_le_bytes());
        out.extend_from_slice(&self.prev_number.to_le_bytes());
        out.extend_from_slice(&self.prev_end.to_le_bytes());
        out.push(u8::from(self.prev_finished));
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
        let Some((head, rest)) = b.split_at_checked(LINK_LEN) else {
            return Err(format!(
                "start frame of {} bytes is shorter than its {LINK_LEN}-byte link",
                b.len()
            ));
        };
        let [t, number @ .., finished] = head else {
            return Err("start frame is empty".into());
        };
        if *t != FRAME_START {
            return Err(format!("frame type {t} is not a start frame"));
        }
        let u = |at: usize| -> u64 {
            let mut x = [0u8; 8];
            x.copy_from_slice(&number[at..at + 8]);
            u64::from_le_bytes(x)
        };
        let prev_finished = match finished {
            0 => false,
            1 => true,
            f => return Err(format!("previous finished flag {f} is not 0 or 1")),
        };
        Ok((
            Self {
                number: u(0),
                prev_number: u(8),
                prev_end: u(16),
                prev_finished,
            },
            rest,
        ))
    }

    /// Decodes a start frame that is exactly a link (nothing after it).
    pub fn decode_exact(b: &[u8]) -> Result<Self, String> {
        match Self::decode_prefix(b)? {
            (link, []) => Ok(link),
            (_, rest) => Err(format!(
                "{} unexpected bytes after the start frame",
                rest.len()
            )),
        }
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
