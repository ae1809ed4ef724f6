//! The table's bloom filter over user keys.
//!
//! One 64-bit hash per key (FNV-1a 64 followed by the MurmurHash3 `fmix64` finalizer, which
//! spreads FNV's weak high bits), then Kirsch–Mitzenmacher double hashing: with
//! `h1 = h & 0xffff_ffff` and `h2 = h >> 32`, probe `i` (for `i` in `0..k`) sets bit
//! `(h1 + i * h2) mod m`. Bit `j` is bit `j % 8` of byte `j / 8`. The hash is unkeyed: it
//! needs no secret because the filter bytes are sealed like every other block.

use sealdb_base::{PutBytes, Reader};

/// Filter kind byte: no filter (every key may be present).
const HASH_NONE: u8 = 0;
/// Filter kind byte: FNV-1a 64 + fmix64, double hashing, as described above.
const HASH_FNV1A_FMIX64: u8 = 1;
/// Smallest filter, so a table with a handful of keys still gets a usable rate.
const MIN_BITS: u64 = 64;
/// Largest filter accepted (and built): it must fit in one sealed block.
const MAX_FILTER_BYTES: usize = 60 << 20;
/// Upper limit on the bits-per-key option; more buys nothing measurable.
pub(crate) const MAX_BITS_PER_KEY: u32 = 64;

/// The 64-bit key hash the filter is built from.
pub(crate) fn key_hash(key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    fmix64(h)
}

fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

/// Number of probes for `bits_per_key`: `round(bits * ln 2)`, clamped to `1..=30`.
pub(crate) fn probes_for(bits_per_key: u32) -> u8 {
    let k = (f64::from(bits_per_key) * std::f64::consts::LN_2).round();
    k.clamp(1.0, 30.0) as u8
}

/// Encodes a filter over the given key hashes (one per distinct user key).
///
/// Layout: `kind u8 | k u8 | bit count u32 LE | bits`, bits being `bit count / 8` bytes.
/// `bits_per_key == 0` writes the "no filter" kind with `k = 0` and no bits.
pub(crate) fn build(hashes: &[u64], bits_per_key: u32) -> Vec<u8> {
    if bits_per_key == 0 {
        let mut out = vec![HASH_NONE, 0];
        out.put_u32(0);
        return out;
    }
    let wanted = (hashes.len() as u64)
        .saturating_mul(u64::from(bits_per_key))
        .max(MIN_BITS);
    let bytes = wanted.div_ceil(8).min(MAX_FILTER_BYTES as u64) as usize;
    let m = (bytes as u64) * 8;
    let k = probes_for(bits_per_key);
    let mut out = Vec::with_capacity(6 + bytes);
    out.put_u8(HASH_FNV1A_FMIX64)
        .put_u8(k)
        .put_u32(u32::try_from(m).unwrap_or(u32::MAX));
    out.resize(6 + bytes, 0);
    if let Some(bits) = out.get_mut(6..) {
        for &h in hashes {
            for bit in probe_bits(h, k, m) {
                if let Some(byte) = bits.get_mut((bit / 8) as usize) {
                    *byte |= 1 << (bit % 8);
                }
            }
        }
    }
    out
}

fn probe_bits(h: u64, k: u8, m: u64) -> impl Iterator<Item = u64> {
    let h1 = h & 0xffff_ffff;
    let h2 = h >> 32;
    (0..u64::from(k)).map(move |i| (h1 + i * h2) % m)
}

/// A decoded filter held in memory for the table's lifetime.
#[derive(Debug, Clone)]
pub(crate) struct BloomFilter {
    k: u8,
    bits: Vec<u8>,
}

impl BloomFilter {
    /// Decodes a filter block; errors are reasons for the caller to wrap.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, String> {
        let mut c = Reader::new(bytes);
        let kind = c.u8("filter kind")?;
        let k = c.u8("filter probes")?;
        let m = c.u32("filter bit count")?;
        match kind {
            HASH_NONE => {
                if k != 0 || m != 0 || !c.is_empty() {
                    return Err("an absent filter carries bits".into());
                }
                Ok(Self {
                    k: 0,
                    bits: Vec::new(),
                })
            }
            HASH_FNV1A_FMIX64 => {
                if !(1..=30).contains(&k) {
                    return Err(format!("filter with {k} probes"));
                }
                if m == 0 || m % 8 != 0 || (m / 8) as usize > MAX_FILTER_BYTES {
                    return Err(format!("filter with {m} bits"));
                }
                if c.remaining() != (m / 8) as usize {
                    return Err(format!(
                        "filter of {m} bits has {} bytes of bits",
                        c.remaining()
                    ));
                }
                let bits = c.take((m / 8) as usize, "filter bits")?.to_vec();
                Ok(Self { k, bits })
            }
            other => Err(format!("unknown filter kind {other}")),
        }
    }

    /// Whether `key` may be in the table (`false` means it certainly is not).
    pub(crate) fn may_contain(&self, key: &[u8]) -> bool {
        self.may_contain_hash(key_hash(key))
    }

    /// Like [`may_contain`](Self::may_contain) for a precomputed [`key_hash`].
    pub(crate) fn may_contain_hash(&self, h: u64) -> bool {
        if self.k == 0 {
            return true;
        }
        let m = self.bits.len() as u64 * 8;
        probe_bits(h, self.k, m).all(|bit| {
            self.bits
                .get((bit / 8) as usize)
                .is_some_and(|b| b & (1 << (bit % 8)) != 0)
        })
    }

    /// Bytes held in memory.
    pub(crate) fn memory(&self) -> usize {
        self.bits.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_follow_ln2() {
        assert_eq!(probes_for(10), 7);
        assert_eq!(probes_for(1), 1);
        assert_eq!(probes_for(64), 30);
    }

    #[test]
    fn no_false_negatives_and_a_low_false_positive_rate() {
        let keys: Vec<Vec<u8>> = (0..10_000u32)
            .map(|i| format!("key{i}").into_bytes())
            .collect();
        let hashes: Vec<u64> = keys.iter().map(|k| key_hash(k)).collect();
        let f = BloomFilter::decode(&build(&hashes, 10)).expect("decodes");
        assert!(keys.iter().all(|k| f.may_contain(k)));
        let fp = (0..10_000u32)
            .filter(|i| f.may_contain(format!("absent{i}").as_bytes()))
            .count();
        assert!(fp < 300, "{fp} false positives in 10000");
    }

    #[test]
    fn absent_filter_admits_everything() {
        let f = BloomFilter::decode(&build(&[1, 2, 3], 0)).expect("decodes");
        assert!(f.may_contain(b"anything"));
    }

    #[test]
    fn hostile_filters_are_errors() {
        assert!(BloomFilter::decode(&[]).is_err());
        assert!(BloomFilter::decode(&[1, 0, 64, 0, 0, 0]).is_err());
        assert!(BloomFilter::decode(&[1, 7, 64, 0, 0, 0, 1]).is_err());
        assert!(BloomFilter::decode(&[1, 7, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(BloomFilter::decode(&[9, 7, 64, 0, 0, 0]).is_err());
        assert!(BloomFilter::decode(&[0, 0, 0, 0, 0, 0, 1]).is_err());
    }
}
