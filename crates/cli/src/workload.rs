//! Synthetic keys and values for `load` and `demo`.
//!
//! Keys are decimal indexes zero-padded to the key size, so they sort in index order and a
//! prefix of them selects a predictable range. Values are printable pseudo-random characters
//! derived from the index alone, so a reader can check any value without storing it, and
//! `scan`/`export` can show them without `--hex`.

use crate::error::{CliError, Result};
use std::io::Write;

/// Characters values are drawn from (64 of them: six random bits each).
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// The shape of the synthetic data.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    prefix: &'static str,
    key_size: usize,
    value_size: usize,
}

impl Workload {
    /// Keys `0..count` of `key_size` bytes with `value_size`-byte values; refuses keys too
    /// short to hold the largest index (distinct indexes must give distinct keys).
    pub fn new(count: u64, key_size: u64, value_size: u64) -> Result<Self> {
        Self::with_prefix("", count, key_size, value_size)
    }

    /// Like [`Workload::new`], every key starting with `prefix` (counted in `key_size`).
    pub fn with_prefix(
        prefix: &'static str,
        count: u64,
        key_size: u64,
        value_size: u64,
    ) -> Result<Self> {
        let digits = count.saturating_sub(1).to_string().len() as u64;
        let needed = digits + prefix.len() as u64;
        if key_size < needed {
            return Err(CliError::other(format!(
                "--key-size {key_size} is too small for {count} distinct keys (needs at least \
                 {needed} bytes)"
            )));
        }
        let size = |v: u64, what: &str| {
            usize::try_from(v).map_err(|_| CliError::other(format!("{what} {v} is too large")))
        };
        Ok(Self {
            prefix,
            key_size: size(key_size, "--key-size")?,
            value_size: size(value_size, "--value-size")?,
        })
    }

    /// Bytes per key.
    pub fn key_size(&self) -> usize {
        self.key_size
    }

    /// Bytes per value.
    pub fn value_size(&self) -> usize {
        self.value_size
    }

    /// Writes key `i` into `buf` (replacing its contents).
    pub fn key(&self, i: u64, buf: &mut Vec<u8>) {
        buf.clear();
        // Writing into a Vec cannot fail.
        let _ = write!(
            buf,
            "{}{i:0width$}",
            self.prefix,
            width = self.key_size.saturating_sub(self.prefix.len())
        );
    }

    /// Writes value `i` into `buf` (replacing its contents).
    pub fn value(&self, i: u64, buf: &mut Vec<u8>) {
        buf.clear();
        let mut state = i ^ 0x5EA1_DB5E_A1DB_5EA1;
        while buf.len() < self.value_size {
            let mut r = splitmix64(&mut state);
            for _ in 0..10 {
                if buf.len() == self.value_size {
                    break;
                }
                buf.push(ALPHABET[(r & 63) as usize]);
                r >>= 6;
            }
        }
    }
}

/// SplitMix64: a small, fast, well-mixed generator (no need for cryptographic randomness:
/// these values only have to be deterministic and incompressible-ish).
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_padded_and_sorted() {
        let w = Workload::new(1000, 6, 10).expect("valid workload");
        let (mut a, mut b) = (Vec::new(), Vec::new());
        w.key(9, &mut a);
        w.key(10, &mut b);
        assert_eq!(a, b"000009");
        assert!(a < b);
    }

    #[test]
    fn values_are_deterministic_printable_and_sized() {
        let w = Workload::new(10, 4, 37).expect("valid workload");
        let (mut a, mut b) = (Vec::new(), Vec::new());
        w.value(7, &mut a);
        w.value(7, &mut b);
        assert_eq!(a, b);
        assert_eq!(a.len(), 37);
        assert!(a.iter().all(|c| c.is_ascii_graphic()));
        w.value(8, &mut b);
        assert_ne!(a, b);
    }

    #[test]
    fn prefixed_keys_keep_their_size() {
        let w = Workload::with_prefix("demo:", 100, 16, 1).expect("valid workload");
        let mut k = Vec::new();
        w.key(42, &mut k);
        assert_eq!(k, b"demo:00000000042");
        assert!(Workload::with_prefix("demo:", 100, 6, 1).is_err());
    }

    #[test]
    fn too_short_keys_are_refused() {
        assert!(Workload::new(1001, 3, 1).is_err());
        assert!(Workload::new(1000, 3, 1).is_ok());
        assert!(Workload::new(0, 1, 0).is_ok());
    }
}
