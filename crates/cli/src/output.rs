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

    /// Decodes one field of an imported line.
    pub fn decode_field(self, field: &[u8]) -> Option<Vec<u8>> {
        match self {
            Self::Text => Some(field.to_vec()),
            Self::Hex => std::str::from_utf8(field)
                .ok()
                .and_then(|s| sealdb_crypto::hex::decode(s.trim())),
        }
    }

    /// Appends `bytes` as one field of a tab-separated line, refusing (in text mode) bytes
    /// that would break the line format. `what` and `key` name the record in the error.
    pub fn push_tsv_field(
        self,
        out: &mut Vec<u8>,
        bytes: &[u8],
        what: &str,
        key: &[u8],
    ) -> Result<()> {
        match self {
            Self::Hex => {
                out.extend_from_slice(sealdb_crypto::hex::encode(bytes).as_bytes());
                Ok(())
            }
            Self::Text => {
                if bytes.iter().any(|b| *b == b'\t' || *b == b'\n') {
                    return Err(CliError::other(format!(
                        "the {what} of key {} contains a tab or newline, which the \
                         tab-separated format cannot represent; use --hex",
                        display_key(key)
                    )));
                }
                out.extend_from_slice(bytes);
                Ok(())
            }
        }
    }

    /// `bytes` as a JSON string: hexadecimal, or the UTF-8 text (refused if not UTF-8).
    pub fn json_string(self, bytes: &[u8], what: &str, key: &[u8]) -> Result<Value> {
        match self {
            Self::Hex => Ok(Value::String(sealdb_crypto::hex::encode(bytes))),
            Self::Text => match std::str::from_utf8(bytes) {
                Ok(s) => Ok(Value::String(s.to_string())),
                Err(_) => Err(CliError::other(format!(
                    "the {what} of key {} is not valid UTF-8, which JSON text cannot carry \
                     as is; use --hex",
                    display_key(key)
                ))),
            },
        }
    }
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
    fn tsv_fields_refuse_separators_in_text_mode_only() {
        let mut out = Vec::new();
        assert!(
            Encoding::Text
                .push_tsv_field(&mut out, b"a\tb", "value", b"k")
                .is_err()
        );
        assert!(
            Encoding::Text
                .push_tsv_field(&mut out, b"a\nb", "value", b"k")
                .is_err()
        );
        assert!(
            Encoding::Text
                .push_tsv_field(&mut out, b"a\\b\r", "value", b"k")
                .is_ok()
        );
        assert!(
            Encoding::Hex
                .push_tsv_field(&mut out, b"\t\n", "value", b"k")
                .is_ok()
        );
        assert!(out.ends_with(b"090a"));
    }

    #[test]
    fn hex_fields_round_trip_and_tolerate_crlf() {
        assert_eq!(Encoding::Hex.decode_field(b"00FF\r"), Some(vec![0, 255]));
        assert_eq!(Encoding::Hex.decode_field(b"0g"), None);
        assert!(Encoding::Hex.decode_arg("abc", "key").is_err());
    }

    #[test]
    fn json_refuses_non_utf8_without_hex() {
        assert!(Encoding::Text.json_string(&[0xff], "value", b"k").is_err());
        let v = Encoding::Hex.json_string(&[0xff], "value", b"k");
        assert!(matches!(v, Ok(Value::String(s)) if s == "ff"));
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
