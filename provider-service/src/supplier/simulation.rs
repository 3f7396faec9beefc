//! The in-process supplier simulation, the default when `SUPPLIER_URLS` is not
//! set: one per airline, each answering after its own simulated latency and
//! sometimes not at all.
//!
//! The offers are deterministic (see `timetable::schedule`); only the timing and the
//! failures are random. `MOCK_LATENCY_MS` is split into one band per supplier and
//! each call lands around its own band's centre, give or take a band width, so
//! results arrive one by one in a mostly stable but not fixed order.

use std::time::Duration;

use contract::{Flight, SearchRequest};

use crate::supplier::failure::Failure;
use timetable::catalogue::{CARRIERS, Carrier};
use timetable::latency_range::LatencyRange;
use timetable::rng::Rng;
use timetable::schedule;

/// One simulated airline API.
pub struct Simulated {
    /// The airline whose timetable this API serves.
    carrier: &'static Carrier,
    /// Centre of this supplier's latency band, in milliseconds.
    latency_centre_ms: f64,
    /// Jitter either side of the centre, in milliseconds (one band width).
    latency_spread_ms: f64,
    /// Bounds every drawn latency stays within.
    latency: LatencyRange,
    /// Chance of failing a call.
    failure_rate: f64,
}

/// Every supplier, in catalogue order.
pub fn all(latency: LatencyRange, failure_rate: f64) -> Vec<Simulated> {
    let span = (latency.max_ms - latency.min_ms) as f64;
    let band = span / CARRIERS.len() as f64;
    CARRIERS
        .iter()
        .enumerate()
        .map(|(i, carrier)| Simulated {
            carrier,
            latency_centre_ms: latency.min_ms as f64 + band * (i as f64 + 0.5),
            latency_spread_ms: band,
            latency,
            failure_rate,
        })
        .collect()
}

/// Airline codes of every supplier, for labelling metrics before any call.
pub fn codes() -> Vec<&'static str> {
    CARRIERS.iter().map(|c| c.code).collect()
}

impl Simulated {
    /// The airline code, which names the supplier in `result` events.
    pub fn code(&self) -> &'static str {
        self.carrier.code
    }

    /// Asks the supplier for `request`'s flights: waits the simulated latency,
    /// then answers or, with `MOCK_FAILURE_RATE`, fails.
    pub async fn search(&self, request: &SearchRequest) -> Result<Vec<Flight>, Failure> {
        let mut rng = Rng::from_entropy();
        tokio::time::sleep(self.draw_latency(&mut rng)).await;
        if rng.chance(self.failure_rate) {
            Err(Failure::Error)
        } else {
            Ok(schedule::flights(self.carrier, request))
        }
    }

    fn draw_latency(&self, rng: &mut Rng) -> Duration {
        let jitter = (rng.unit() * 2.0 - 1.0) * self.latency_spread_ms;
        let ms = (self.latency_centre_ms + jitter)
            .clamp(self.latency.min_ms as f64, self.latency.max_ms as f64);
        Duration::from_micros((ms * 1000.0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn suppliers(min_ms: u64, max_ms: u64) -> Vec<Simulated> {
        all(LatencyRange { min_ms, max_ms }, 0.0)
    }

    #[test]
    fn latencies_stay_in_range_and_spread_by_supplier() {
        let list = suppliers(200, 1500);
        assert!(list.len() >= 5);
        let mut rng = Rng::for_key("latency");
        let mut means = Vec::new();
        for s in &list {
            let draws: Vec<Duration> = (0..500).map(|_| s.draw_latency(&mut rng)).collect();
            assert!(
                draws
                    .iter()
                    .all(|d| (200..=1500).contains(&(d.as_millis() as u64)))
            );
            means.push(draws.iter().sum::<Duration>() / 500);
        }
        assert!(means.windows(2).all(|w| w[0] < w[1]), "{means:?}");
    }

    #[test]
    fn a_fixed_latency_is_exact() {
        let mut rng = Rng::for_key("fixed");
        for s in suppliers(3000, 3000) {
            assert_eq!(s.draw_latency(&mut rng), Duration::from_secs(3));
        }
        for s in suppliers(0, 0) {
            assert_eq!(s.draw_latency(&mut rng), Duration::ZERO);
        }
    }

    #[tokio::test]
    async fn failure_rate_one_always_fails() {
        let list = all(
            LatencyRange {
                min_ms: 0,
                max_ms: 0,
            },
            1.0,
        );
        let request = SearchRequest {
            from: contract::Iata::parse("CGK").unwrap(),
            to: contract::Iata::parse("DPS").unwrap(),
            date: time::macros::date!(2026 - 12 - 10),
            passengers: 1,
        };
        for s in &list {
            assert_eq!(s.search(&request).await, Err(Failure::Error));
        }
    }
}
