//! Byte-level helpers shared by every encoder and decoder of this crate.
//!
//! The decoding side is a bounds-checked cursor: every read names the field it wanted, so a
//! decoder reports *what* was missing instead of panicking, and no length is trusted before it
//! is checked against the bytes that remain.

use std::cmp::Ordering;

/// Appends `v` as an unsigned LEB128 varint.
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Compares two internal entries: user key ascending, then sequence number descending, so the
/// newest version of a key comes first.
#[inline]
pub(crate) fn internal_cmp(a_key: &[u8], a_seq: u64, b_key: &[u8], b_seq: u64) -> Ordering {
    a_key.cmp(b_key).then_with(|| b_seq.cmp(&a_seq))
}

/// A forward-only cursor over untrusted bytes. Every read either returns the requested value
/// or `Err(field)`, naming the field that ran past the end or overflowed.
pub(crate) struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    pub(crate) fn bytes(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or_else(|| format!("{field}: length overflows"))?;
        let out = self
            .bytes
            .get(self.pos..end)
            .ok_or_else(|| format!("{field}: {n} bytes needed, {} left", self.remaining()))?;
        self.pos = end;
        Ok(out)
    }

    pub(crate) fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], String> {
        let b = self.bytes(N, field)?;
        b.try_into().map_err(|_| format!("{field}: short read"))
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, String> {
        Ok(u8::from_le_bytes(self.array::<1>(field)?))
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.array::<4>(field)?))
    }

    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.array::<8>(field)?))
    }

    /// Reads a LEB128 varint whose value fits in `u64` (at most 10 bytes).
    pub(crate) fn varint(&mut self, field: &'static str) -> Result<u64, String> {
        let mut v: u64 = 0;
        for i in 0..10u32 {
            let b = self.u8(field)?;
            let low = u64::from(b & 0x7f);
            // The tenth byte may only carry the top bit of a u64.
            if i == 9 && low > 1 {
                return Err(format!("{field}: varint overflows 64 bits"));
            }
            v |= low << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(format!("{field}: varint longer than 10 bytes"))
    }

    /// Reads a varint and checks it against `limit` before anyone allocates from it.
    pub(crate) fn varint_len(
        &mut self,
        limit: usize,
        field: &'static str,
    ) -> Result<usize, String> {
        let v = self.varint(field)?;
        usize::try_from(v)
            .ok()
            .filter(|n| *n <= limit)
            .ok_or_else(|| format!("{field}: {v} exceeds the limit of {limit}"))
    }
}

/// Reads a little-endian u32 at `at`, if the bytes are there.
pub(crate) fn le_u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let end = at.checked_add(4)?;
    Some(u32::from_le_bytes(bytes.get(at..end)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_round_trips_and_rejects_overflow() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            let mut c = Cursor::new(&out);
            assert_eq!(c.varint("v").ok(), Some(v));
            assert!(c.is_empty());
        }
        let too_big = [0xffu8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert!(Cursor::new(&too_big).varint("v").is_err());
        let too_long = [0x80u8; 11];
        assert!(Cursor::new(&too_long).varint("v").is_err());
        assert!(Cursor::new(&[0x80]).varint("v").is_err());
    }

    #[test]
    fn internal_order_is_key_ascending_then_seq_descending() {
        assert_eq!(internal_cmp(b"a", 1, b"b", 9), Ordering::Less);
        assert_eq!(internal_cmp(b"a", 9, b"a", 1), Ordering::Less);
        assert_eq!(internal_cmp(b"a", 1, b"a", 1), Ordering::Equal);
    }
}
