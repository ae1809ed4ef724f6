//! Index entry keys: the tuple (partition, encoded index value, primary key) as one byte string
//! whose bytewise order is the tuple order.
//!
//! The two variable-length leading parts are byte-stuffed: every `00` becomes `00 FF`, and the
//! part ends with the terminator `00 01`. A terminated part is then never a prefix of another,
//! and because the terminator sorts below both a stuffed zero (`00 FF`) and any non-zero byte, a
//! shorter part sorts before every longer part it is a prefix of. The primary key comes last and
//! raw: nothing follows it, so it needs no escaping.

use crate::value::IndexValue;
use crate::{Error, Result};

/// The byte that starts an escape sequence.
pub(crate) const ESC: u8 = 0x00;
/// After [`ESC`]: the escaped byte was a literal `00`.
pub(crate) const ESC_ZERO: u8 = 0xFF;
/// After [`ESC`]: the part ends here.
pub(crate) const ESC_END: u8 = 0x01;

/// An entry key taken apart by [`decode_entry_key`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DecodedEntry {
    /// The partition (empty for a global index).
    pub partition: Vec<u8>,
    /// The index value, in the encoding of [`IndexValue::encode`]; [`DecodedEntry::index_value`]
    /// decodes it.
    pub value: Vec<u8>,
    /// The primary key of the base item.
    pub primary_key: Vec<u8>,
}

impl DecodedEntry {
    /// The index value, decoded.
    pub fn index_value(&self) -> Result<IndexValue> {
        IndexValue::decode(&self.value)
    }
}

/// The entry key of `primary_key` indexed under `value` in `partition` (`b""` for a global
/// index).
///
/// Layout: `stuff(partition) 00 01 stuff(value.encode()) 00 01 primary_key`, where `stuff`
/// replaces each `00` with `00 FF`.
pub fn entry_key(partition: &[u8], value: &IndexValue, primary_key: &[u8]) -> Vec<u8> {
    let encoded = value.encode();
    let mut key = Vec::with_capacity(partition.len() + encoded.len() + primary_key.len() + 6);
    push_terminated(&mut key, partition);
    push_terminated(&mut key, &encoded);
    key.extend_from_slice(primary_key);
    key
}

/// Takes an entry key apart. Total: any byte string either decodes or yields
/// [`Error::Malformed`], never a panic.
///
/// The value must be a canonical [`IndexValue`] encoding, so a key that decodes is exactly the
/// key [`entry_key`] builds from its parts.
pub fn decode_entry_key(key: &[u8]) -> Result<DecodedEntry> {
    let (partition, rest) = take_terminated(key, 0, "partition")?;
    let (value, primary_key) = take_terminated(rest, key.len() - rest.len(), "index value")?;
    IndexValue::decode(&value)?;
    Ok(DecodedEntry {
        partition,
        value,
        primary_key: primary_key.to_vec(),
    })
}

/// Appends `bytes` byte-stuffed, without a terminator (a prefix of some terminated part).
pub(crate) fn push_stuffed(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        out.push(b);
        if b == ESC {
            out.push(ESC_ZERO);
        }
    }
}

/// Appends `bytes` byte-stuffed and terminated.
pub(crate) fn push_terminated(out: &mut Vec<u8>, bytes: &[u8]) {
    push_stuffed(out, bytes);
    out.extend_from_slice(&[ESC, ESC_END]);
}

/// Reads one stuffed, terminated part off the front of `input`; returns it unstuffed and the
/// bytes after its terminator. `base` is where `input` starts in the whole key, so that errors
/// give offsets into the key.
fn take_terminated<'a>(input: &'a [u8], base: usize, what: &str) -> Result<(Vec<u8>, &'a [u8])> {
    let mut out = Vec::new();
    let mut rest = input;
    loop {
        let Some((&b, after)) = rest.split_first() else {
            return Err(Error::malformed(format!(
                "index entry key: {what} has no terminator"
            )));
        };
        if b != ESC {
            out.push(b);
            rest = after;
            continue;
        }
        match after.split_first() {
            Some((&ESC_ZERO, next)) => {
                out.push(ESC);
                rest = next;
            }
            Some((&ESC_END, next)) => return Ok((out, next)),
            Some((&other, _)) => {
                return Err(Error::malformed(format!(
                    "index entry key: {what} has escape 00 {other:02x}"
                ))
                .at((base + input.len() - rest.len()) as u64));
            }
            None => {
                return Err(Error::malformed(format!(
                    "index entry key: {what} ends inside an escape"
                )));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_escape_names_its_offset_in_the_whole_key() {
        // Partition "p" (terminated at bytes 1..3), then the value's bytes with a bad escape
        // 00 07 starting at byte 4.
        let key = [b'p', 0x00, 0x01, 0x04, 0x00, 0x07];
        let e = decode_entry_key(&key).expect_err("bad escape");
        assert!(
            matches!(&e, Error::Malformed { what, at: Some(4) } if what.contains("index value")),
            "{e:?}"
        );
        assert!(e.to_string().ends_with("at byte 4"), "{e}");
    }

    #[test]
    fn layout_is_stuffed_and_terminated() {
        let key = entry_key(b"p\0", &IndexValue::Bytes(vec![0, 7]), b"k\0");
        assert_eq!(
            key,
            [
                b'p', 0x00, 0xFF, 0x00, 0x01, // partition "p\0"
                0x04, 0x00, 0xFF, 0x07, 0x00, 0x01, // bytes [00 07]
                b'k', 0x00, // raw primary key
            ]
        );
    }

    #[test]
    fn global_key_layout() {
        let key = entry_key(b"", &IndexValue::String("ab".into()), b"u1");
        assert_eq!(key, [0x00, 0x01, 0x03, b'a', b'b', 0x00, 0x01, b'u', b'1']);
    }

    #[test]
    fn round_trip() -> Result<()> {
        let v = IndexValue::String("x\0y".into());
        let d = decode_entry_key(&entry_key(b"\0\0", &v, b"\0"))?;
        assert_eq!(d.partition, b"\0\0");
        assert_eq!(d.index_value()?, v);
        assert_eq!(d.primary_key, b"\0");
        Ok(())
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            &[][..],
            &[0x00],
            &[0x00, 0x02],
            b"a",
            &[0x00, 0x01],
            &[0x00, 0x01, 0x03, b'a'],
            &[0x00, 0x01, 0x00, 0x01],             // empty value: no tag
            &[0x00, 0x01, 0x09, 0x00, 0x01],       // unknown tag
            &[0x00, 0x01, 0x01, 0x05, 0x00, 0x01], // bool 5
        ] {
            assert!(decode_entry_key(bad).is_err(), "{bad:02x?}");
        }
    }

    #[test]
    fn prefix_value_sorts_first() {
        let a = entry_key(b"", &IndexValue::String("ab".into()), b"\xFF\xFF");
        let b = entry_key(b"", &IndexValue::String("ab\0".into()), b"");
        let c = entry_key(b"", &IndexValue::String("ab\x01".into()), b"");
        assert!(a < b && b < c);
    }
}
