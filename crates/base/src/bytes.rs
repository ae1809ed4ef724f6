//! The one byte writer and reader of sealdb's on-disk records.
//!
//! Every multi-byte integer is little-endian; varints are unsigned LEB128; a length-prefixed
//! byte string is a `u16` or `u32` length followed by that many bytes.
//!
//! The reader treats its input as hostile: every read is bounds-checked and names the field
//! it wanted, no length is trusted before it is checked against a limit and against the bytes
//! that remain, and a failure is a [`DecodeError`] saying what was read where — never a
//! panic. Callers whose errors are still strings map it at their boundary (`?` converts it
//! into a `String`).
//!
//! Hand-written rather than built on `bytes::Buf`: `Buf`'s getters panic on short input (its
//! `try_get_*` carry no field name or position) and it has no varints or length limits; the
//! varint decoder must refuse an encoding that overflows 64 bits, which a generic varint
//! crate would have to be checked for. What is left is a few lines per read.

use std::fmt;

/// Appends encoded values to a byte buffer. Implemented for `Vec<u8>` (and so, through
/// `DerefMut`, for wrappers such as `Zeroizing<Vec<u8>>`); every method returns the buffer, so
/// writes chain.
pub trait PutBytes {
    /// Appends one byte.
    fn put_u8(&mut self, v: u8) -> &mut Self;
    /// Appends a little-endian `u16`.
    fn put_u16(&mut self, v: u16) -> &mut Self;
    /// Appends a little-endian `u32`.
    fn put_u32(&mut self, v: u32) -> &mut Self;
    /// Appends a little-endian `u64`.
    fn put_u64(&mut self, v: u64) -> &mut Self;
    /// Appends `v` as an unsigned LEB128 varint (1 to 10 bytes).
    fn put_varint(&mut self, v: u64) -> &mut Self;
    /// Appends bytes as they are, without a length.
    fn put_raw(&mut self, v: &[u8]) -> &mut Self;
    /// Appends a `u16` length and the bytes. A string longer than `u16::MAX` records a
    /// saturated length that no reader accepts, so callers check their limits first.
    fn put_bytes_u16(&mut self, v: &[u8]) -> &mut Self;
    /// Appends a `u32` length and the bytes; saturates like [`put_bytes_u16`](Self::put_bytes_u16).
    fn put_bytes_u32(&mut self, v: &[u8]) -> &mut Self;
}

impl PutBytes for Vec<u8> {
    #[inline]
    fn put_u8(&mut self, v: u8) -> &mut Self {
        self.push(v);
        self
    }
    #[inline]
    fn put_u16(&mut self, v: u16) -> &mut Self {
        self.extend_from_slice(&v.to_le_bytes());
        self
    }
    #[inline]
    fn put_u32(&mut self, v: u32) -> &mut Self {
        self.extend_from_slice(&v.to_le_bytes());
        self
    }
    #[inline]
    fn put_u64(&mut self, v: u64) -> &mut Self {
        self.extend_from_slice(&v.to_le_bytes());
        self
    }
    #[inline]
    fn put_varint(&mut self, mut v: u64) -> &mut Self {
        while v >= 0x80 {
            self.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.push(v as u8);
        self
    }
    #[inline]
    fn put_raw(&mut self, v: &[u8]) -> &mut Self {
        self.extend_from_slice(v);
        self
    }
    #[inline]
    fn put_bytes_u16(&mut self, v: &[u8]) -> &mut Self {
        self.put_u16(u16::try_from(v.len()).unwrap_or(u16::MAX))
            .put_raw(v)
    }
    #[inline]
    fn put_bytes_u32(&mut self, v: &[u8]) -> &mut Self {
        self.put_u32(u32::try_from(v.len()).unwrap_or(u32::MAX))
            .put_raw(v)
    }
}

/// What went wrong in a [`DecodeError`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The field runs past the end of the input.
    Truncated {
        /// Bytes the field needs.
        needed: usize,
        /// Bytes that remained.
        left: usize,
    },
    /// A length or count exceeds the limit the format allows.
    TooLong {
        /// The length read.
        len: u64,
        /// The largest length allowed.
        max: u64,
    },
    /// A varint does not fit in 64 bits (or is longer than 10 bytes).
    VarintOverflow,
    /// A string field is not UTF-8.
    NotUtf8,
    /// Bytes remain after the last field of a record that must end there.
    TrailingBytes {
        /// How many bytes remain.
        left: usize,
    },
    /// The field was read but its value is not one the format allows.
    Invalid(String),
}

/// A failed read of untrusted bytes: which field, at which byte offset, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// The field being read (for [`Problem::TrailingBytes`]: the record that should have ended).
    pub what: &'static str,
    /// Offset of the field's first byte in the reader's input.
    pub at: usize,
    /// What was wrong with it.
    pub problem: Problem,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, at) = (self.what, self.at);
        match &self.problem {
            Problem::Truncated { needed, left } => {
                write!(f, "{what}: {needed} bytes needed at byte {at}, {left} left")
            }
            Problem::TooLong { len, max } => write!(
                f,
                "{what}: length {len} at byte {at} exceeds the limit of {max}"
            ),
            Problem::VarintOverflow => write!(f, "{what}: varint at byte {at} overflows 64 bits"),
            Problem::NotUtf8 => write!(f, "{what} at byte {at} is not UTF-8"),
            Problem::TrailingBytes { left } => {
                write!(f, "{left} trailing bytes after the {what} (at byte {at})")
            }
            Problem::Invalid(why) => write!(f, "{what} at byte {at}: {why}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Decoders whose errors are still strings take a `DecodeError` with `?`.
impl From<DecodeError> for String {
    fn from(e: DecodeError) -> Self {
        e.to_string()
    }
}

/// The little-endian `u32` at byte `at` of `bytes`, if all four bytes are there: for layouts
/// read at computed offsets (a block's restart array, a sealed block's prefix) rather than in
/// sequence.
#[inline]
#[must_use]
pub fn le_u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let end = at.checked_add(4)?;
    Some(u32::from_le_bytes(bytes.get(at..end)?.try_into().ok()?))
}

/// A forward-only, bounds-checked reader over untrusted bytes.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `bytes`.
    #[must_use]
    #[inline]
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    /// Offset of the next byte to read.
    #[must_use]
    #[inline]
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Bytes not yet read.
    #[must_use]
    #[inline]
    pub fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    /// Whether every byte has been read.
    #[must_use]
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// An error about the field `what` at the current position; for decoders refusing a value
    /// they read.
    #[must_use]
    #[inline]
    pub fn invalid(&self, what: &'static str, why: impl Into<String>) -> DecodeError {
        self.error_at(self.pos, what, Problem::Invalid(why.into()))
    }

    #[inline]
    fn error_at(&self, at: usize, what: &'static str, problem: Problem) -> DecodeError {
        DecodeError { what, at, problem }
    }

    /// The next `n` bytes.
    #[inline]
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let out = self
            .pos
            .checked_add(n)
            .and_then(|end| self.bytes.get(self.pos..end))
            .ok_or_else(|| {
                self.error_at(
                    self.pos,
                    what,
                    Problem::Truncated {
                        needed: n,
                        left: self.remaining(),
                    },
                )
            })?;
        self.pos += n;
        Ok(out)
    }

    /// The next `N` bytes, as an array.
    #[inline]
    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let at = self.pos;
        let b = self.take(N, what)?;
        b.try_into().map_err(|_| {
            self.error_at(
                at,
                what,
                Problem::Truncated {
                    needed: N,
                    left: b.len(),
                },
            )
        })
    }

    /// One byte.
    #[inline]
    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(u8::from_le_bytes(self.array(what)?))
    }

    /// A little-endian `u16`.
    #[inline]
    pub fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    /// A little-endian `u32`.
    #[inline]
    pub fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    /// A little-endian `u64`.
    #[inline]
    pub fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// An unsigned LEB128 varint whose value fits in `u64` (at most 10 bytes).
    #[inline]
    pub fn varint(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let at = self.pos;
        let mut v: u64 = 0;
        for i in 0..10u32 {
            let b = self.u8(what).map_err(|mut e| {
                e.at = at;
                e
            })?;
            let low = u64::from(b & 0x7f);
            // The tenth byte may only carry the top bit of a u64.
            if i == 9 && low > 1 {
                return Err(self.error_at(at, what, Problem::VarintOverflow));
            }
            v |= low << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.error_at(at, what, Problem::VarintOverflow))
    }

    /// A varint checked against `limit` before anyone allocates from it.
    #[inline]
    pub fn varint_len(&mut self, limit: usize, what: &'static str) -> Result<usize, DecodeError> {
        let at = self.pos;
        let v = self.varint(what)?;
        self.check_len(at, v, limit, what)
    }

    #[inline]
    fn check_len(
        &self,
        at: usize,
        len: u64,
        max: usize,
        what: &'static str,
    ) -> Result<usize, DecodeError> {
        usize::try_from(len)
            .ok()
            .filter(|n| *n <= max)
            .ok_or_else(|| {
                self.error_at(
                    at,
                    what,
                    Problem::TooLong {
                        len,
                        max: max as u64,
                    },
                )
            })
    }

    /// A `u16` length of at most `max` and that many bytes.
    #[inline]
    pub fn bytes_u16(&mut self, max: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let at = self.pos;
        let len = self.u16(what)?;
        let len = self.check_len(at, u64::from(len), max, what)?;
        self.take(len, what)
    }

    /// A `u32` length of at most `max` and that many bytes.
    #[inline]
    pub fn bytes_u32(&mut self, max: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let at = self.pos;
        let len = self.u32(what)?;
        let len = self.check_len(at, u64::from(len), max, what)?;
        self.take(len, what)
    }

    /// Checks that `bytes` are UTF-8; `at` is where the string started, for the error.
    #[inline]
    fn utf8(&self, at: usize, bytes: &'a [u8], what: &'static str) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(bytes).map_err(|_| self.error_at(at, what, Problem::NotUtf8))
    }

    /// A UTF-8 string with a `u16` length of at most `max` bytes.
    #[inline]
    pub fn str_u16(&mut self, max: usize, what: &'static str) -> Result<&'a str, DecodeError> {
        let at = self.pos;
        let b = self.bytes_u16(max, what)?;
        self.utf8(at, b, what)
    }

    /// A UTF-8 string with a `u32` length of at most `max` bytes.
    #[inline]
    pub fn str_u32(&mut self, max: usize, what: &'static str) -> Result<&'a str, DecodeError> {
        let at = self.pos;
        let b = self.bytes_u32(max, what)?;
        self.utf8(at, b, what)
    }

    /// Checks that every byte was read: `what` names the record that should end here.
    #[inline]
    pub fn finish(&self, what: &'static str) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            left => Err(self.error_at(self.pos, what, Problem::TrailingBytes { left })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fixed_width_values_are_little_endian() -> Result<(), DecodeError> {
        let mut out = Vec::new();
        out.put_u8(1)
            .put_u16(0x0302)
            .put_u32(0x0706_0504)
            .put_u64(0x0f0e_0d0c_0b0a_0908);
        assert_eq!(out, (1u8..16).collect::<Vec<_>>());
        let mut r = Reader::new(&out);
        assert_eq!(r.u8("a")?, 1);
        assert_eq!(r.u16("b")?, 0x0302);
        assert_eq!(r.u32("c")?, 0x0706_0504);
        assert_eq!(r.u64("d")?, 0x0f0e_0d0c_0b0a_0908);
        r.finish("record")
    }

    #[test]
    fn a_u32_at_an_offset_is_read_only_if_all_its_bytes_are_there() {
        let b = [9u8, 1, 0, 0, 0, 2];
        assert_eq!(le_u32_at(&b, 1), Some(1));
        assert_eq!(le_u32_at(&b, 2), Some(2 << 24));
        assert_eq!(le_u32_at(&b, 3), None);
        assert_eq!(le_u32_at(&b, usize::MAX), None);
    }

    #[test]
    fn varint_round_trips_and_rejects_overflow() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut out = Vec::new();
            out.put_varint(v);
            let mut r = Reader::new(&out);
            assert_eq!(r.varint("v").ok(), Some(v));
            assert!(r.is_empty());
        }
        let too_big = [0xffu8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        let err = Reader::new(&too_big).varint("v").err();
        assert_eq!(err.map(|e| e.problem), Some(Problem::VarintOverflow));
        let too_long = [0x80u8; 11];
        assert!(Reader::new(&too_long).varint("v").is_err());
        let cut = Reader::new(&[0x80]).varint("v").err();
        assert!(matches!(
            cut.map(|e| e.problem),
            Some(Problem::Truncated { .. })
        ));
    }

    #[test]
    fn errors_name_the_field_and_its_offset() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert!(r.u8("tag").is_ok());
        let e = r.u32("length").err();
        assert_eq!(
            e,
            Some(DecodeError {
                what: "length",
                at: 1,
                problem: Problem::Truncated { needed: 4, left: 2 }
            })
        );
        assert_eq!(
            e.map(|e| e.to_string()).unwrap_or_default(),
            "length: 4 bytes needed at byte 1, 2 left"
        );
        // A failed read consumes nothing.
        assert_eq!(r.pos(), 1);
        assert_eq!(
            r.finish("record").map_err(|e| e.problem),
            Err(Problem::TrailingBytes { left: 2 })
        );
    }

    #[test]
    fn length_prefixed_strings_are_checked_against_their_limit() -> Result<(), DecodeError> {
        let mut out = Vec::new();
        out.put_bytes_u16(b"name").put_bytes_u32("ключ".as_bytes());
        let mut r = Reader::new(&out);
        assert_eq!(r.str_u16(4, "name")?, "name");
        assert_eq!(r.str_u32(8, "key")?, "ключ");
        r.finish("record")?;

        let e = Reader::new(&out).bytes_u16(3, "name").err();
        assert_eq!(
            e.map(|e| e.problem),
            Some(Problem::TooLong { len: 4, max: 3 })
        );
        let mut bad = Vec::new();
        bad.put_bytes_u16(&[0xff, 0xfe]);
        let e = Reader::new(&bad).str_u16(8, "name").err();
        assert_eq!(e.map(|e| e.problem), Some(Problem::NotUtf8));
        // A huge claimed length is refused by the limit, before anything is read.
        let mut huge = Vec::new();
        huge.put_u32(u32::MAX);
        assert!(Reader::new(&huge).bytes_u32(usize::MAX, "v").is_err());
        Ok(())
    }

    proptest! {
        #[test]
        fn reading_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64), ops in proptest::collection::vec(0u8..8, 0..16)) {
            let mut r = Reader::new(&bytes);
            for op in ops {
                let _ = match op {
                    0 => r.u8("f").map(drop),
                    1 => r.u16("f").map(drop),
                    2 => r.u32("f").map(drop),
                    3 => r.u64("f").map(drop),
                    4 => r.varint("f").map(drop),
                    5 => r.bytes_u16(16, "f").map(drop),
                    6 => r.str_u32(16, "f").map(drop),
                    _ => r.varint_len(8, "f").map(drop),
                };
                prop_assert!(r.pos() <= bytes.len());
            }
        }

        #[test]
        fn varints_round_trip(v in any::<u64>()) {
            let mut out = Vec::new();
            out.put_varint(v);
            let mut r = Reader::new(&out);
            prop_assert_eq!(r.varint("v").ok(), Some(v));
            prop_assert!(r.is_empty());
        }
    }
}
