//! A span of response times in milliseconds, as the simulated suppliers
//! (`MOCK_LATENCY_MS`) and the mock airline service (`latency_ms`) take it.

use std::fmt;

/// Longest latency accepted, so a typo cannot park every call for hours.
pub const MAX_LATENCY_MS: u64 = 120_000;

/// A span response times are drawn from, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatencyRange {
    /// Fastest answer.
    pub min_ms: u64,
    /// Slowest answer; equal to `min_ms` for a fixed latency.
    pub max_ms: u64,
}

impl LatencyRange {
    /// `a-b` (inclusive, a ≤ b) or a single number of milliseconds, each at
    /// most [`MAX_LATENCY_MS`].
    pub fn parse(text: &str) -> Result<LatencyRange, String> {
        let reason = || {
            format!(
                "expected milliseconds as `min-max` or one number, each from 0 to {MAX_LATENCY_MS}"
            )
        };
        let ms = |part: &str| match part.trim().parse::<u64>() {
            Ok(n) if n <= MAX_LATENCY_MS => Ok(n),
            _ => Err(reason()),
        };
        let (min_ms, max_ms) = match text.split_once('-') {
            Some((a, b)) => (ms(a)?, ms(b)?),
            None => {
                let n = ms(text)?;
                (n, n)
            }
        };
        if min_ms > max_ms {
            return Err(format!(
                "{reason}; the first bound must not exceed the second",
                reason = reason()
            ));
        }
        Ok(LatencyRange { min_ms, max_ms })
    }
}

impl fmt::Display for LatencyRange {
    /// `min-max`, which [`LatencyRange::parse`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.min_ms, self.max_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_or_one_number_and_nothing_else() {
        assert_eq!(
            LatencyRange::parse("100-250"),
            Ok(LatencyRange {
                min_ms: 100,
                max_ms: 250
            })
        );
        let fixed = LatencyRange::parse("3000").unwrap();
        assert_eq!((fixed.min_ms, fixed.max_ms), (3000, 3000));
        assert_eq!(LatencyRange::parse(&fixed.to_string()), Ok(fixed));
        for bad in ["", "fast", "-1", "20-10", "1-2-3", "120001", "0-120001"] {
            assert!(LatencyRange::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::{any, prop_assert, prop_oneof, proptest};
    use proptest::test_runner::{Config, RngSeed};

    use super::*;

    proptest! {
        #![proptest_config(Config {
            cases: 1000,
            rng_seed: RngSeed::Fixed(0x5EED_F00D),
            failure_persistence: None,
            ..Config::default()
        })]

        /// No text panics the parser, and what it accepts is an ordered span
        /// within the limit.
        #[test]
        fn no_text_panics_the_parser(
            text in prop_oneof![any::<String>(), "[0-9 .+-]{0,24}"]
        ) {
            if let Ok(range) = LatencyRange::parse(&text) {
                prop_assert!(range.min_ms <= range.max_ms);
                prop_assert!(range.max_ms <= MAX_LATENCY_MS);
            }
        }
    }
}
