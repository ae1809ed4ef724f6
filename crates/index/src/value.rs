//! Index values and their order-preserving encoding.
//!
//! The encoding is a type tag byte followed by a payload, chosen so that comparing two encodings
//! bytewise gives the logical order: first by type (bool < number < string < bytes), then by
//! value within the type. The entry-key layer escapes this encoding, so it may contain any byte.

use std::fmt;

use crate::{Error, Result};

/// Tag byte of a boolean. Tags start at 1 so that no encoding begins with the escape byte 0x00.
pub(crate) const TAG_BOOL: u8 = 0x01;
/// Tag byte of a number.
pub(crate) const TAG_NUMBER: u8 = 0x02;
/// Tag byte of a string.
pub(crate) const TAG_STRING: u8 = 0x03;
/// Tag byte of a byte string.
pub(crate) const TAG_BYTES: u8 = 0x04;

/// The sign bit of an IEEE 754 double.
const SIGN: u64 = 1 << 63;
/// The one NaN bit pattern [`IndexValue::encode`] writes (a positive quiet NaN), so that all NaNs
/// encode alike and a decoder can insist on canonical bytes.
const CANONICAL_NAN: u64 = 0x7FF8_0000_0000_0000;

/// One value an item is indexed under.
///
/// There is no null: null, like an absent attribute, is not indexed (indexes are sparse).
#[derive(Debug, Clone, PartialEq)]
pub enum IndexValue {
    /// A JSON boolean.
    Bool(bool),
    /// A JSON number, compared as an `f64` (so integers beyond 2^53 lose precision, as in
    /// JavaScript). `-0.0` is the same value as `0.0`. NaN is never extracted and a query on NaN
    /// matches nothing.
    Number(f64),
    /// A JSON string, ordered by its UTF-8 bytes (which is Unicode code point order).
    String(String),
    /// Raw bytes, from a custom extractor; ordered bytewise.
    Bytes(Vec<u8>),
}

impl IndexValue {
    /// The type tag byte this value's encoding starts with.
    pub(crate) fn tag(&self) -> u8 {
        match self {
            Self::Bool(_) => TAG_BOOL,
            Self::Number(_) => TAG_NUMBER,
            Self::String(_) => TAG_STRING,
            Self::Bytes(_) => TAG_BYTES,
        }
    }

    /// True for a number that is NaN, which has no place in the order and is never indexed.
    pub(crate) fn is_nan(&self) -> bool {
        matches!(self, Self::Number(n) if n.is_nan())
    }

    /// The order-preserving encoding: bytewise order of encodings is the logical order.
    ///
    /// | type | bytes |
    /// |---|---|
    /// | bool | `01`, then `00` (false) or `01` (true) |
    /// | number | `02`, then 8 bytes big-endian: the IEEE 754 bits with the sign bit set for a positive number and all bits inverted for a negative one (`-0.0` is written as `0.0`, every NaN as `0x7FF8000000000000`) |
    /// | string | `03`, then the UTF-8 bytes |
    /// | bytes | `04`, then the bytes |
    ///
    /// The payload is not length-prefixed: [`crate::entry_key`] escapes and terminates it.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + self.payload_len());
        out.push(self.tag());
        match self {
            Self::Bool(b) => out.push(u8::from(*b)),
            Self::Number(n) => out.extend_from_slice(&order_bits(*n).to_be_bytes()),
            Self::String(s) => out.extend_from_slice(s.as_bytes()),
            Self::Bytes(b) => out.extend_from_slice(b),
        }
        out
    }

    fn payload_len(&self) -> usize {
        match self {
            Self::Bool(_) => 1,
            Self::Number(_) => 8,
            Self::String(s) => s.len(),
            Self::Bytes(b) => b.len(),
        }
    }

    /// Decodes an encoding made by [`IndexValue::encode`].
    ///
    /// Only canonical encodings are accepted (a bool payload of 0 or 1, no `-0.0`, only the
    /// canonical NaN, valid UTF-8), so `decode(b)?.encode() == b` whenever decoding succeeds.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let Some((&tag, payload)) = bytes.split_first() else {
            return Err(Error::malformed("index value: empty".into()));
        };
        match tag {
            TAG_BOOL => match payload {
                [0] => Ok(Self::Bool(false)),
                [1] => Ok(Self::Bool(true)),
                _ => Err(Error::malformed(format!(
                    "index value: bool payload {payload:02x?} is not [00] or [01]"
                ))),
            },
            TAG_NUMBER => {
                let raw: [u8; 8] = payload.try_into().map_err(|_| {
                    Error::malformed(format!(
                        "index value: number payload is {} bytes, not 8",
                        payload.len()
                    ))
                })?;
                let ordered = u64::from_be_bytes(raw);
                let n = f64::from_bits(if ordered & SIGN != 0 {
                    ordered & !SIGN
                } else {
                    !ordered
                });
                // Reject the encodings `encode` never writes, so that a decoded key re-encodes to
                // the same bytes (the engine may compare keys it rebuilt with keys it read).
                if order_bits(n) != ordered {
                    return Err(Error::malformed(
                        "index value: non-canonical number encoding (-0.0 or a non-canonical NaN)"
                            .into(),
                    ));
                }
                Ok(Self::Number(n))
            }
            TAG_STRING => match std::str::from_utf8(payload) {
                Ok(s) => Ok(Self::String(s.to_owned())),
                Err(e) => Err(Error::malformed(format!(
                    "index value: string is not UTF-8: {e}"
                ))),
            },
            TAG_BYTES => Ok(Self::Bytes(payload.to_vec())),
            other => Err(Error::malformed(format!(
                "index value: unknown type tag {other:#04x}"
            ))),
        }
    }

    /// Reads a value typed on a command line: a JSON number, boolean or string literal if the
    /// text is one (`42`, `-1.5e3`, `true`, `"42"`), otherwise the raw text as a string (`alice`,
    /// `null`, `[1]`). Quoting is how to ask for a string that looks like a number.
    pub fn parse_cli(s: &str) -> Self {
        match serde_json::from_str::<serde_json::Value>(s) {
            Ok(serde_json::Value::Bool(b)) => Self::Bool(b),
            Ok(serde_json::Value::String(t)) => Self::String(t),
            Ok(serde_json::Value::Number(n)) => match n.as_f64() {
                Some(f) if f.is_finite() => Self::Number(normalize_zero(f)),
                _ => Self::String(s.to_owned()),
            },
            _ => Self::String(s.to_owned()),
        }
    }
}

/// Shows a value the way [`IndexValue::parse_cli`] reads it back where it can: JSON literals for
/// bools, numbers and strings; bytes as `0x` followed by lowercase hex (which `parse_cli` reads as
/// a string, since a CLI has no byte literal).
impl fmt::Display for IndexValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bool(b) => write!(f, "{b}"),
            Self::Number(n) => match serde_json::Number::from_f64(*n) {
                Some(num) => write!(f, "{num}"),
                None => write!(f, "{n}"),
            },
            Self::String(s) => match serde_json::to_string(s) {
                Ok(quoted) => f.write_str(&quoted),
                Err(_) => write!(f, "{s:?}"),
            },
            Self::Bytes(b) => {
                f.write_str("0x")?;
                b.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
            }
        }
    }
}

/// `-0.0` and `0.0` are one value; writing them alike keeps `Eq` queries and deduplication exact.
pub(crate) fn normalize_zero(n: f64) -> f64 {
    if n == 0.0 { 0.0 } else { n }
}

/// The IEEE 754 bits of `n` rearranged so that unsigned order is numeric order: positives get the
/// sign bit set (they sort above all negatives), negatives get every bit flipped (a larger
/// magnitude then sorts lower).
fn order_bits(n: f64) -> u64 {
    let bits = if n.is_nan() {
        CANONICAL_NAN
    } else {
        normalize_zero(n).to_bits()
    };
    if bits & SIGN != 0 { !bits } else { bits | SIGN }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_encode_in_numeric_order() {
        let ordered = [
            f64::NEG_INFINITY,
            -1e300,
            -2.5,
            -1.0,
            -f64::MIN_POSITIVE,
            0.0,
            f64::MIN_POSITIVE,
            1.0,
            2.5,
            1e300,
            f64::INFINITY,
        ];
        for pair in ordered.windows(2) {
            if let [a, b] = pair {
                assert!(
                    IndexValue::Number(*a).encode() < IndexValue::Number(*b).encode(),
                    "{a} < {b}"
                );
            }
        }
    }

    #[test]
    fn negative_zero_is_zero() {
        assert_eq!(
            IndexValue::Number(-0.0).encode(),
            IndexValue::Number(0.0).encode()
        );
        let neg_zero = [&[TAG_NUMBER][..], &0x7FFF_FFFF_FFFF_FFFFu64.to_be_bytes()].concat();
        assert!(IndexValue::decode(&neg_zero).is_err());
    }

    #[test]
    fn types_order_bool_number_string_bytes() {
        let v = [
            IndexValue::Bool(true),
            IndexValue::Number(f64::NEG_INFINITY),
            IndexValue::String(String::new()),
            IndexValue::Bytes(Vec::new()),
        ];
        for pair in v.windows(2) {
            if let [a, b] = pair {
                assert!(a.encode() < b.encode());
            }
        }
        assert!(IndexValue::Bool(false).encode() < IndexValue::Bool(true).encode());
    }

    #[test]
    fn decode_round_trips_and_rejects_junk() -> Result<()> {
        for v in [
            IndexValue::Bool(false),
            IndexValue::Number(-3.25),
            IndexValue::String("é\0x".into()),
            IndexValue::Bytes(vec![0, 255, 0]),
        ] {
            assert_eq!(IndexValue::decode(&v.encode())?, v);
        }
        for junk in [
            &[][..],
            &[0],
            &[5, 1],
            &[TAG_BOOL, 2],
            &[TAG_NUMBER, 1, 2],
            &[TAG_STRING, 0xFF],
        ] {
            assert!(IndexValue::decode(junk).is_err(), "{junk:?}");
        }
        Ok(())
    }

    #[test]
    fn nan_encodes_canonically() -> Result<()> {
        let weird_nan = f64::from_bits(0xFFF0_0000_0000_0001);
        assert_eq!(
            IndexValue::Number(weird_nan).encode(),
            IndexValue::Number(f64::NAN).encode()
        );
        let back = IndexValue::decode(&IndexValue::Number(weird_nan).encode())?;
        assert!(back.is_nan());
        Ok(())
    }

    #[test]
    fn parse_cli_reads_json_literals_or_raw_text() {
        assert_eq!(IndexValue::parse_cli("42"), IndexValue::Number(42.0));
        assert_eq!(
            IndexValue::parse_cli(" -1.5e3 "),
            IndexValue::Number(-1500.0)
        );
        assert_eq!(IndexValue::parse_cli("true"), IndexValue::Bool(true));
        assert_eq!(
            IndexValue::parse_cli("\"42\""),
            IndexValue::String("42".into())
        );
        assert_eq!(
            IndexValue::parse_cli("alice"),
            IndexValue::String("alice".into())
        );
        assert_eq!(
            IndexValue::parse_cli("null"),
            IndexValue::String("null".into())
        );
        assert_eq!(
            IndexValue::parse_cli("[1]"),
            IndexValue::String("[1]".into())
        );
        assert_eq!(
            IndexValue::parse_cli("1e999"),
            IndexValue::String("1e999".into())
        );
        assert_eq!(IndexValue::parse_cli(""), IndexValue::String(String::new()));
    }

    #[test]
    fn display_is_json_like() {
        assert_eq!(IndexValue::Number(5.0).to_string(), "5.0");
        assert_eq!(IndexValue::String("a\"b".into()).to_string(), "\"a\\\"b\"");
        assert_eq!(IndexValue::Bytes(vec![0, 0xAB]).to_string(), "0x00ab");
        assert_eq!(IndexValue::Bool(false).to_string(), "false");
    }
}
