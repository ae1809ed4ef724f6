//! Standard output (text or one JSON object per line), the encodings of keys and values, and
//! human-readable numbers.
//!
//! Nothing here uses `println!`: it panics when standard output is closed, and this program
//! must never panic. Every write goes through [`Output`] and its errors become exit statuses.

use crate::error::{CliError, Result};
use serde_json::Value;
use std::io::{self, BufWriter, Stdout, Write};
use std::time::Duration;

/// Buffered standard output that knows whether `--json` is in force.
#[derive(Debug)]
pub struct Output {
    json: bool,
    out: BufWriter<Stdout>,
}

impl Output {
    /// Standard output in text or JSON mode.
    pub fn new(json: bool) -> Self {
        Self {
            json,
            out: BufWriter::new(io::stdout()),
        }
    }

    /// Whether `--json` is in force.
    pub fn is_json(&self) -> bool {
        self.json
    }

    /// Emits one result: the text line in text mode, the JSON object in JSON mode. Both are
    /// built lazily so that only the one printed is computed.
    pub fn emit(
        &mut self,
        text: impl FnOnce() -> String,
        json: impl FnOnce() -> Value,
    ) -> Result<()> {
        if self.json {
            let v = json();
            writeln!(self.out, "{v}").map_err(CliError::stdout)
        } else {
            let t = text();
            writeln!(self.out, "{t}").map_err(CliError::stdout)
        }
    }

    /// Emits a text-only line (nothing in JSON mode).
    pub fn text(&mut self, line: impl std::fmt::Display) -> Result<()> {
        if self.json {
            return Ok(());
        }
        writeln!(self.out, "{line}").map_err(CliError::stdout)
    }

    /// Emits a JSON object (in either mode: for commands whose results are only JSON-shaped).
    pub fn json_line(&mut self, v: &Value) -> Result<()> {
        writeln!(self.out, "{v}").map_err(CliError::stdout)
    }

    /// Writes bytes as they are (values printed by `get`, tab-separated lines).
    pub fn raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.out.write_all(bytes).map_err(CliError::stdout)
    }

    /// Flushes what is buffered.
    pub fn flush(&mut self) -> Result<()> {
        self.out.flush().map_err(CliError::stdout)
    }
}

/// How keys and values are written on the command line, in files and in output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// The bytes as they are (UTF-8 text for command-line arguments and JSON).
    Text,
    /// Hexadecimal.
    Hex,
}

impl Encoding {
    /// `Hex` when `--hex` was given.
    pub fn from_flag(hex: bool) -> Self {
        if hex { Self::Hex } else { Self::Text }
    }

    /// Decodes a command-line argument (`what` names it in errors).
    pub fn decode_arg(self, s: &str, what: &str) -> Result<Vec<u8>> {
        match self {
            Self::Text => Ok(s.as_bytes().to_vec()),
            Self::Hex => sealdb_crypto::hex::decode(s.trim()).ok_or_else(|| {
                CliError::other(format!(
                    "{what} {s:?} is not hexadecimal (an even number of 0-9a-f digits)"
                ))
            }),
        }
    }

    /// Decodes one field of an imported line (`None`: not in the encoding's syntax).
    pub fn decode_field(self, field: &[u8]) -> Option<Vec<u8>> {
        match self {
            Self::Text => unescape(field),
            Self::Hex => std::str::from_utf8(field)
                .ok()
                .and_then(|s| sealdb_crypto::hex::decode(s.trim())),
        }
    }

    /// Appends `bytes` as one field of a tab-separated line: escaped text ([`escape_into`]) or
    /// hexadecimal. Any bytes can be written, and [`Encoding::decode_field`] reads them back.
    pub fn push_tsv_field(self, out: &mut Vec<u8>, bytes: &[u8]) {
        match self {
            Self::Hex => out.extend_from_slice(sealdb_crypto::hex::encode(bytes).as_bytes()),
            Self::Text => escape_into(bytes, out),
        }
    }

    /// `bytes` as JSON: with `--hex` a hexadecimal string, else [`json_bytes`].
    pub fn json_value(self, bytes: &[u8]) -> Value {
        match self {
            Self::Hex => Value::String(sealdb_crypto::hex::encode(bytes)),
            Self::Text => json_bytes(bytes),
        }
    }
}

/// The one JSON rule for keys and values (`scan`, `get`, `index query`, `stream read/tail`):
/// a JSON string when the bytes are valid UTF-8, else `{"hex": "<lower-case hex>"}`.
pub fn json_bytes(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(s) => Value::String(s.to_string()),
        Err(_) => serde_json::json!({"hex": sealdb_crypto::hex::encode(bytes)}),
    }
}

/// The one text rule for keys and values in line output (`scan`, `export`, `index query`):
/// valid UTF-8 is written as it is, except `\t` `\n` `\r` `\\` for TAB, newline,
/// carriage return and backslash, and `\xHH` for every other control character (each of its
/// bytes) and every byte that is not part of valid UTF-8. The result never holds a TAB or a
/// newline, so it fits in one field of a line; [`unescape`] reverses it exactly.
pub fn escape_into(bytes: &[u8], out: &mut Vec<u8>) {
    fn hex_byte(b: u8, out: &mut Vec<u8>) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        out.extend_from_slice(b"\\x");
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 0x0f)]);
    }
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\t' => out.extend_from_slice(b"\\t"),
                '\n' => out.extend_from_slice(b"\\n"),
                '\r' => out.extend_from_slice(b"\\r"),
                '\\' => out.extend_from_slice(b"\\\\"),
                c if c.is_control() => {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        hex_byte(b, out);
                    }
                }
                c => {
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
        for b in chunk.invalid() {
            hex_byte(*b, out);
        }
    }
}

/// [`escape_into`] as a string (always valid UTF-8: everything else is escaped).
pub fn escape(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len());
    escape_into(bytes, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Reverses [`escape_into`]. Bytes other than a backslash are taken as they are (a carriage
/// return included); a backslash must start one of `\t` `\n` `\r` `\\` `\xHH`, anything else
/// is refused (`None`) rather than guessed at.
pub fn unescape(field: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(field.len());
    let mut it = field.iter().copied();
    while let Some(b) = it.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match it.next()? {
            b't' => out.push(b'\t'),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b'\\' => out.push(b'\\'),
            b'x' => {
                let hi = char::from(it.next()?).to_digit(16)?;
                let lo = char::from(it.next()?).to_digit(16)?;
                out.push(u8::try_from(hi * 16 + lo).ok()?);
            }
            _ => return None,
        }
    }
    Some(out)
}

/// A key for messages: quoted text if it is printable UTF-8, else hexadecimal.
pub fn display_key(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(s) if !s.chars().any(char::is_control) => format!("{s:?}"),
        _ => format!("0x{}", sealdb_crypto::hex::encode(key)),
    }
}

/// Bytes with a binary unit (`12.3 MiB`).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    match (unit, UNITS.get(unit)) {
        (0, _) => format!("{n} B"),
        (_, Some(u)) => format!("{v:.1} {u}"),
        (_, None) => format!("{n} B"),
    }
}

/// A duration with a unit suited to its size (`850 ns`, `12.3 µs`, `4.56 ms`, `1.23 s`).
pub fn duration(d: Duration) -> String {
    nanos(d.as_nanos().min(u128::from(u64::MAX)) as u64)
}

/// Nanoseconds with a unit suited to their size.
pub fn nanos(ns: u64) -> String {
    let f = ns as f64;
    if ns < 1_000 {
        format!("{ns} ns")
    } else if ns < 1_000_000 {
        format!("{:.1} µs", f / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.2} ms", f / 1e6)
    } else {
        format!("{:.2} s", f / 1e9)
    }
}

/// A count with thousands separators (`1,234,567`).
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A rate per second, guarding against a zero elapsed time.
pub fn per_sec(n: u64, elapsed: Duration) -> f64 {
    let s = elapsed.as_secs_f64();
    if s > 0.0 { n as f64 / s } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_fields_escape_separators_and_binary_and_round_trip() {
        let mut out = Vec::new();
        Encoding::Text.push_tsv_field(&mut out, b"a\tb\nc\rd\\e\x00\xff\x7f\xc2\x85 \xc3\xa9");
        assert_eq!(out, b"a\\tb\\nc\\rd\\\\e\\x00\\xff\\x7f\\xc2\\x85 \xc3\xa9");
        assert_eq!(
            Encoding::Text.decode_field(&out).as_deref(),
            Some(&b"a\tb\nc\rd\\e\x00\xff\x7f\xc2\x85 \xc3\xa9"[..])
        );
        // Every single byte and every pair round-trips.
        for a in 0..=255u8 {
            for b in [0u8, b'\\', b'x', 0x80, 0xc3, 0xff] {
                let bytes = [a, b];
                let mut e = Vec::new();
                escape_into(&bytes, &mut e);
                assert!(!e.contains(&b'\t') && !e.contains(&b'\n'));
                assert_eq!(unescape(&e).as_deref(), Some(&bytes[..]));
            }
        }
        let mut hex = Vec::new();
        Encoding::Hex.push_tsv_field(&mut hex, b"\t\n");
        assert_eq!(hex, b"090a");
    }

    #[test]
    fn unknown_or_cut_escapes_are_refused() {
        assert_eq!(unescape(b"a\\q"), None);
        assert_eq!(unescape(b"a\\"), None);
        assert_eq!(unescape(b"\\x4"), None);
        assert_eq!(unescape(b"\\xg0"), None);
        assert_eq!(unescape(b"cr\r"), Some(b"cr\r".to_vec()));
    }

    #[test]
    fn hex_fields_round_trip_and_tolerate_crlf() {
        assert_eq!(Encoding::Hex.decode_field(b"00FF\r"), Some(vec![0, 255]));
        assert_eq!(Encoding::Hex.decode_field(b"0g"), None);
        assert!(Encoding::Hex.decode_arg("abc", "key").is_err());
    }

    #[test]
    fn json_is_a_string_when_utf8_else_hex() {
        assert_eq!(json_bytes(b"caf\xc3\xa9"), Value::String("café".into()));
        assert_eq!(json_bytes(&[0xff, 0]), serde_json::json!({"hex": "ff00"}));
        assert_eq!(
            Encoding::Hex.json_value(&[0xff]),
            Value::String("ff".into())
        );
    }

    #[test]
    fn human_numbers() {
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(count(12), "12");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 << 20), "3.0 MiB");
        assert_eq!(nanos(1_500), "1.5 µs");
        assert_eq!(display_key(b"a\tb"), "0x610962");
    }
}
