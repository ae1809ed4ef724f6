//! Shared helpers for sealdb's benchmarks: HDR-histogram latency summaries.

use hdrhistogram::Histogram;
use std::time::Duration;

/// A latency recorder with microsecond-resolution percentiles.
#[derive(Debug, Clone)]
pub struct Latency {
    hist: Histogram<u64>,
}

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

impl Latency {
    /// An empty recorder covering 1 ns to 60 s with 3 significant digits.
    pub fn new() -> Self {
        let hist = Histogram::new_with_bounds(1, 60_000_000_000, 3)
            .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable_hist()));
        Self { hist }
    }

    /// Records one operation's duration (clamped to the histogram's range).
    pub fn record(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1);
        self.hist.saturating_record(ns);
    }

    /// Adds another recorder's samples.
    pub fn merge(&mut self, other: &Latency) {
        let _ = self.hist.add(&other.hist);
    }

    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// The value at `q` (0..=1) in microseconds.
    pub fn quantile_us(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }

    /// The maximum in microseconds.
    pub fn max_us(&self) -> f64 {
        self.hist.max() as f64 / 1000.0
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

fn unreachable_hist() -> Histogram<u64> {
    // Histogram::new(3) only fails for sigfig > 5; 3 is always valid.
    #[expect(clippy::unwrap_used, reason = "sigfig 3 is a valid constant")]
    Histogram::new(3).unwrap()
}
