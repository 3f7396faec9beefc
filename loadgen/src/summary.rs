//! Latency distributions: values are recorded in microseconds into an HDR
//! histogram (fixed memory whatever the sample count, 3 significant digits) and
//! reported as p50/p90/p99/p99.9/max in milliseconds with microsecond precision.

use hdrhistogram::Histogram;
use serde::Serialize;

/// Collects latency samples in microseconds.
pub struct Recorder {
    /// Auto-resizing, so a pathological outlier is recorded rather than dropped.
    histogram: Histogram<u64>,
}

/// Percentiles of one distribution, in milliseconds (three decimals: µs precision).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    /// Number of samples.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile: the tail that periodic work in the server shows up in.
    pub p999_ms: f64,
    /// Largest sample (exact up to the histogram's precision).
    pub max_ms: f64,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

impl Recorder {
    /// An empty recorder.
    pub fn new() -> Self {
        let mut histogram = Histogram::new(3).expect("3 significant digits is valid");
        histogram.auto(true);
        Recorder { histogram }
    }

    /// Records one sample of `micros` microseconds.
    pub fn record(&mut self, micros: u64) {
        self.histogram
            .record(micros)
            .expect("an auto-resizing histogram accepts any u64");
    }

    /// The distribution so far, or `None` when nothing was recorded.
    pub fn summary(&self) -> Option<Summary> {
        let h = &self.histogram;
        if h.is_empty() {
            return None;
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Some(Summary {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        })
    }
}

impl Summary {
    /// One line for people: `p50 1.234 ms  p90 …  (n=…)`.
    pub fn line(&self) -> String {
        format!(
            "p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  max {:.3} ms  (n={})",
            self.p50_ms, self.p90_ms, self.p99_ms, self.p999_ms, self.max_ms, self.count
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_has_no_summary() {
        assert_eq!(Recorder::new().summary(), None);
    }

    #[test]
    fn percentiles_of_one_to_a_thousand_microseconds() {
        let mut r = Recorder::new();
        for us in 1..=1000 {
            r.record(us);
        }
        let s = r.summary().unwrap();
        assert_eq!(s.count, 1000);
        assert_eq!(s.p50_ms, 0.5);
        assert_eq!(s.p90_ms, 0.9);
        assert_eq!(s.p99_ms, 0.99);
        assert_eq!(s.p999_ms, 0.999);
        assert_eq!(s.max_ms, 1.0);
    }

    #[test]
    fn keeps_three_significant_digits_for_large_values() {
        let mut r = Recorder::new();
        r.record(12_345_678);
        let s = r.summary().unwrap();
        assert!((s.max_ms - 12_345.678).abs() / 12_345.678 < 1e-3, "{s:?}");
        assert_eq!(s.p50_ms, s.max_ms);
    }
}
