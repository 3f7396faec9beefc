//! The one backoff of the workspace: every loop that waits before trying
//! again (reconnecting a dedicated Redis connection, retrying a Redis write or
//! a supplier call) draws its waits from a [`Backoff`].
//!
//! Each wait is drawn uniformly between half a ceiling and the ceiling, which
//! doubles per failure up to a cap ("equal jitter"): many replicas or searches
//! failing together, say when Redis restarts, come back spread over the
//! window instead of in one wave at each step, and a run of retries still
//! lasts at least half its ceilings' sum, so a loop sized to ride out an
//! outage cannot give up early on unlucky draws. A success resets the ceiling.
//! The draws come from `fastrand`, seeded per backoff from the thread's
//! generator, never from the simulated world's seeded generator.

use std::time::Duration;

/// Capped exponential backoff with equal jitter.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// Ceiling of the first wait, and of the wait after a [`Backoff::reset`].
    first: Duration,
    /// No ceiling grows beyond this.
    cap: Duration,
    /// Ceiling of the wait [`Backoff::next_delay`] draws next.
    ceiling: Duration,
    /// Where the waits are drawn from.
    rng: fastrand::Rng,
}

impl Backoff {
    /// Waits up to `first`, with a ceiling that doubles per failure up to `cap`.
    pub fn new(first: Duration, cap: Duration) -> Backoff {
        Backoff {
            first,
            cap,
            ceiling: first.min(cap),
            rng: fastrand::Rng::new(),
        }
    }

    /// The wait before the next try: uniform in `[ceiling/2, ceiling]`. The
    /// ceiling of the following one is twice as high, up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling;
        self.ceiling = ceiling.saturating_mul(2).min(self.cap);
        let half = ceiling / 2;
        half + (ceiling - half).mul_f64(self.rng.f64())
    }

    /// Back to the first ceiling, after a success.
    pub fn reset(&mut self) {
        self.ceiling = self.first.min(self.cap);
    }
}

impl Default for Backoff {
    /// Up to 100 ms, doubling up to 5 s.
    fn default() -> Self {
        Backoff::new(Duration::from_millis(100), Duration::from_secs(5))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backoff drawing from a fixed seed, so failures reproduce.
    fn seeded(first_ms: u64, cap_ms: u64) -> Backoff {
        Backoff {
            rng: fastrand::Rng::with_seed(0x5EED),
            ..Backoff::new(
                Duration::from_millis(first_ms),
                Duration::from_millis(cap_ms),
            )
        }
    }

    #[test]
    fn the_ceiling_doubles_up_to_the_cap_and_resets() {
        let mut b = seeded(100, 350);
        let ceilings: Vec<u128> = (0..4)
            .map(|_| {
                let ceiling = b.ceiling.as_millis();
                b.next_delay();
                ceiling
            })
            .collect();
        assert_eq!(ceilings, [100, 200, 350, 350]);
        b.reset();
        assert_eq!(b.ceiling, Duration::from_millis(100));
        assert_eq!(seeded(500, 350).ceiling, Duration::from_millis(350));
    }

    #[test]
    fn waits_are_jittered_between_half_a_growing_ceiling_and_the_ceiling() {
        let mut b = seeded(50, 2000);
        for failures in 0..8 {
            let ceiling = Duration::from_millis(50 << failures).min(Duration::from_secs(2));
            let draws: Vec<Duration> = (0..100)
                .map(|seed| {
                    let mut probe = b.clone();
                    probe.rng = fastrand::Rng::with_seed(seed);
                    probe.next_delay()
                })
                .collect();
            assert!(
                draws.iter().all(|d| *d >= ceiling / 2 && *d <= ceiling),
                "{draws:?}"
            );
            assert!(draws.iter().any(|d| *d > ceiling * 3 / 4), "{draws:?}");
            assert!(draws.iter().any(|d| *d < ceiling * 3 / 4), "{draws:?}");
            assert!(draws.iter().any(|d| *d != draws[0]), "{draws:?}");
            b.next_delay();
        }
    }

    #[test]
    fn a_long_run_of_failures_neither_overflows_nor_passes_the_cap() {
        let mut b = seeded(1, 2000);
        for _ in 0..200 {
            assert!(b.next_delay() <= Duration::from_secs(2));
        }
    }
}
