//! Shared helpers for sealdb's benchmarks: HDR-histogram latency summaries, per-second
//! throughput timelines, key and value generation, YCSB key choosers, and the engines under
//! test behind one trait (peers behind cargo features).

pub mod engine;
pub mod report;
pub mod rng;

// The one latency recorder, shared with the `sealdb` program's `load` and `demo`.
pub use sealdb_latency::{Latency, Percentiles};
use std::time::Duration;

/// Operations completed per whole second since a run's start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timeline {
    /// `buckets[s]` = operations that finished during second `s` of the run.
    pub buckets: Vec<u64>,
}

impl Timeline {
    /// Counts one operation finishing `since_start` after the run began.
    pub fn tick(&mut self, since_start: Duration) {
        let s = since_start.as_secs() as usize;
        if s >= self.buckets.len() {
            self.buckets.resize(s + 1, 0);
        }
        if let Some(b) = self.buckets.get_mut(s) {
            *b += 1;
        }
    }

    /// Adds another timeline bucket by bucket.
    pub fn merge(&mut self, other: &Timeline) {
        if other.buckets.len() > self.buckets.len() {
            self.buckets.resize(other.buckets.len(), 0);
        }
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
    }
}

/// The benchmark key space: key `i` is the decimal number `2i`, zero-padded to fill the key
/// (after a filler prefix when keys are longer than 20 bytes), so key order is index order and
/// the odd numbers in between are keys that are never written — absent keys that fall inside
/// every table's key range and must be turned away by bloom filters, not by range checks.
#[derive(Debug, Clone, Copy)]
pub struct KeySpace {
    key_size: usize,
    digits: usize,
}

impl KeySpace {
    /// Keys of `key_size` bytes (at least 8).
    pub fn new(key_size: usize) -> Result<Self, String> {
        if key_size < 8 {
            return Err(format!("--key-size {key_size} is below the minimum of 8"));
        }
        Ok(Self {
            key_size,
            digits: key_size.min(20),
        })
    }

    /// Whether `count` present keys (and the absent ones between them) fit in the digits.
    pub fn can_hold(&self, count: u64) -> bool {
        let max = u128::from(count) * 2 + 2;
        self.digits >= 39 || max <= 10u128.pow(self.digits as u32)
    }

    /// Key size in bytes.
    pub fn key_size(&self) -> usize {
        self.key_size
    }

    fn encode(&self, n: u64, out: &mut Vec<u8>) {
        out.clear();
        out.resize(self.key_size - self.digits, b'k');
        let s = format!("{n:0width$}", width = self.digits);
        // A number too large for the digits keeps its low digits (callers check can_hold).
        out.extend_from_slice(&s.as_bytes()[s.len() - self.digits..]);
    }

    /// Writes present key `i` into `out`.
    pub fn present(&self, i: u64, out: &mut Vec<u8>) {
        self.encode(i.saturating_mul(2), out);
    }

    /// Writes absent key `i` (between present keys `i` and `i + 1`) into `out`.
    pub fn absent(&self, i: u64, out: &mut Vec<u8>) {
        self.encode(i.saturating_mul(2).saturating_add(1), out);
    }
}

/// Incompressible value bytes: values are windows into one random buffer.
#[derive(Debug, Clone)]
pub struct Values {
    buf: Vec<u8>,
    size: usize,
}

impl Values {
    /// Values of `size` bytes.
    pub fn new(size: usize, seed: u64) -> Self {
        let mut buf = vec![0u8; (1 << 20).max(size * 2)];
        rng::Rng::new(seed).fill(&mut buf);
        Self { buf, size }
    }

    /// A value chosen by `r` (any number).
    pub fn get(&self, r: u64) -> &[u8] {
        let span = (self.buf.len() - self.size) as u64;
        let off = (r % span.max(1)) as usize;
        &self.buf[off..off + self.size]
    }

    /// Value size in bytes.
    pub fn size(&self) -> usize {
        self.size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_like_their_numbers_and_absent_keys_fall_between() {
        let ks = KeySpace::new(16).expect("keyspace");
        let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
        ks.present(41, &mut a);
        ks.absent(41, &mut b);
        ks.present(42, &mut c);
        assert_eq!(a.len(), 16);
        assert_eq!(a, b"0000000000000082");
        assert!(a < b && b < c);
        let long = KeySpace::new(24).expect("keyspace");
        long.present(1, &mut a);
        assert_eq!(a, b"kkkk00000000000000000002");
        assert!(KeySpace::new(4).is_err());
        assert!(ks.can_hold(1_000_000_000));
        assert!(!KeySpace::new(8).expect("keyspace").can_hold(100_000_000));
    }

    #[test]
    fn percentiles_and_curve() {
        let mut l = Latency::new();
        for i in 1..=10_000u64 {
            l.record(Duration::from_micros(i));
        }
        let p = l.percentiles();
        assert_eq!(p.count, 10_000);
        assert!((p.p50 - 5000.0).abs() < 10.0);
        assert!((p.p99 - 9900.0).abs() < 20.0);
        assert!((p.max - 10_000.0).abs() < 10.0);
        let c = l.curve();
        assert!(c.len() > 10);
        assert!(c.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
    }

    #[test]
    fn timeline_buckets_by_second() {
        let mut t = Timeline::default();
        t.tick(Duration::from_millis(10));
        t.tick(Duration::from_millis(2500));
        let mut u = Timeline::default();
        u.tick(Duration::from_millis(999));
        u.merge(&t);
        assert_eq!(u.buckets, vec![2, 0, 1]);
    }

    #[test]
    fn values_have_the_requested_size() {
        let v = Values::new(100, 1);
        assert_eq!(v.get(12345).len(), 100);
        assert_eq!(v.get(u64::MAX).len(), 100);
        assert_ne!(v.get(0), v.get(1));
    }
}
