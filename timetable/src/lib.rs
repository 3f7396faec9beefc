//! The simulated airlines' deterministic timetables, shared by the in-process
//! supplier simulation in provider-service and the `mock-suppliers` HTTP service,
//! so both answer a question with the same flights and neither service imports
//! the other.
//!
//! * [`catalogue`]: airports, airlines and which airline flies which route.
//! * [`schedule`]: the flights one airline offers on one route and day.
//! * [`rng`]: the stable pseudo-random generator both are drawn from.
//! * [`latency_range`]: the `min-max` span the simulated answers' latencies
//!   are drawn from (`MOCK_LATENCY_MS`, the mock's `latency_ms`).

pub mod catalogue;
pub mod latency_range;
pub mod rng;
pub mod schedule;
