//! sealdb-latency: the latency recorder shared by the `sealdb` program (`load`, `demo`) and
//! the benchmarks, so both measure with the same histogram, the same bounds and the same
//! percentile definitions.
//!
//! A [`Latency`] is an HDR histogram of nanoseconds with fixed bounds (1 ns to one hour,
//! three significant digits). Fixed rather than auto-resizing: `saturating_record` clamps to
//! the bounds in force instead of growing them, so an auto-resizing histogram would record
//! clamped nonsense for a sample past its first bounds.

use hdrhistogram::Histogram;
use std::time::Duration;

/// Largest latency tracked exactly: one hour, in nanoseconds. Longer samples are clamped to
/// it, which no realistic single operation reaches.
pub const MAX_TRACKED_NS: u64 = 3_600 * 1_000_000_000;

/// A latency recorder (nanoseconds in, nanosecond or microsecond percentiles out).
#[derive(Debug, Clone)]
pub struct Latency {
    hist: Histogram<u64>,
}

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

/// p50 … p99.99, max and mean, in microseconds: the benchmarks' tables and JSON records.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// 99.99th percentile.
    pub p9999: f64,
    /// Maximum.
    pub max: f64,
}

/// The usual percentiles in whole nanoseconds: the CLI's `load` and `demo` output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct NanosSummary {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest sample.
    pub max: u64,
}

impl Latency {
    /// An empty recorder covering 1 ns to one hour with 3 significant digits.
    pub fn new() -> Self {
        #[expect(
            clippy::expect_used,
            reason = "constant bounds: low 1 >= 1, high >= 2 * low, 3 significant digits <= 5"
        )]
        let hist = Histogram::new_with_bounds(1, MAX_TRACKED_NS, 3)
            .expect("constant histogram bounds are valid");
        Self { hist }
    }

    /// Records one operation's duration (clamped to 1 ns ..= one hour).
    pub fn record(&mut self, d: Duration) {
        self.record_ns(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Records one sample in nanoseconds (clamped to 1 ns ..= one hour).
    pub fn record_ns(&mut self, ns: u64) {
        self.hist.saturating_record(ns.clamp(1, MAX_TRACKED_NS));
    }

    /// Adds another recorder's samples (same bounds, so nothing is lost).
    pub fn merge(&mut self, other: &Latency) {
        // Both histograms have the same fixed bounds: adding cannot go out of range.
        let _ = self.hist.add(&other.hist);
    }

    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// The value at quantile `q` (0..=1) in nanoseconds.
    pub fn quantile_ns(&self, q: f64) -> u64 {
        self.hist.value_at_quantile(q)
    }

    /// The value at quantile `q` (0..=1) in microseconds.
    pub fn quantile_us(&self, q: f64) -> f64 {
        self.quantile_ns(q) as f64 / 1000.0
    }

    /// The largest sample in nanoseconds.
    pub fn max_ns(&self) -> u64 {
        self.hist.max()
    }

    /// The largest sample in microseconds.
    pub fn max_us(&self) -> f64 {
        self.max_ns() as f64 / 1000.0
    }

    /// p50 … p99.99, max and mean in microseconds.
    pub fn percentiles(&self) -> Percentiles {
        Percentiles {
            count: self.count(),
            mean: self.hist.mean() / 1000.0,
            p50: self.quantile_us(0.50),
            p90: self.quantile_us(0.90),
            p99: self.quantile_us(0.99),
            p999: self.quantile_us(0.999),
            p9999: self.quantile_us(0.9999),
            max: self.max_us(),
        }
    }

    /// p50, p99, p99.9 and max in nanoseconds.
    pub fn nanos_summary(&self) -> NanosSummary {
        NanosSummary {
            count: self.count(),
            p50: self.quantile_ns(0.5),
            p99: self.quantile_ns(0.99),
            p999: self.quantile_ns(0.999),
            max: self.max_ns(),
        }
    }

    /// The percentile curve for plots: `(nines, µs)` points where `nines = -log10(1 - q)`
    /// (0 = the minimum, 2 = p99, 3 = p99.9 …), from 0 up to what the sample count resolves,
    /// then the maximum.
    pub fn curve(&self) -> Vec<(f64, f64)> {
        let n = self.count();
        if n == 0 {
            return Vec::new();
        }
        let top = (n as f64).log10().max(0.0);
        let mut pts = Vec::new();
        let mut x = 0.0f64;
        while x < top {
            let q = 1.0 - 10f64.powf(-x);
            pts.push((x, self.quantile_us(q)));
            x += 0.05;
        }
        pts.push((top, self.max_us()));
        pts
    }

    /// `p50 p99 p99.9 max` in microseconds, fixed-width, for tables.
    pub fn summary(&self) -> String {
        format!(
            "{:>9.1} {:>9.1} {:>9.1} {:>10.1}",
            self.quantile_us(0.50),
            self.quantile_us(0.99),
            self.quantile_us(0.999),
            self.max_us()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn realistic_latencies_are_recorded_within_three_digits() {
        let mut l = Latency::new();
        for v in [1_000u64, 2_000, 50_000, 10_000_000] {
            l.record_ns(v);
        }
        let s = l.nanos_summary();
        assert_eq!(s.count, 4);
        assert!((1_990..=2_010).contains(&s.p50), "{s:?}");
        assert!(s.max >= 9_990_000, "{s:?}");
        assert!((l.percentiles().p50 - 2.0).abs() < 0.01);
    }

    #[test]
    fn samples_past_a_minute_are_kept_not_clamped_to_it() {
        // The benchmarks' old recorder stopped at 60 s: a 2-minute stall read as 60 s.
        let mut l = Latency::new();
        l.record(Duration::from_secs(120));
        assert!(l.max_ns() >= 119_900_000_000, "{}", l.max_ns());
        l.record(Duration::from_secs(7200));
        assert!(l.max_ns() <= MAX_TRACKED_NS + MAX_TRACKED_NS / 500);
        l.record(Duration::ZERO);
        assert_eq!(l.count(), 3);
    }

    #[test]
    fn merged_recorders_hold_both_sample_sets() {
        let (mut a, mut b) = (Latency::new(), Latency::new());
        a.record_ns(1_000);
        b.record_ns(3_000_000);
        a.merge(&b);
        assert_eq!(a.count(), 2);
        assert!(a.max_ns() >= 2_990_000);
        assert_eq!(Latency::new().curve(), Vec::new());
    }
}
