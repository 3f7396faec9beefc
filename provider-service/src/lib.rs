//! provider-service: the worker behind the flight search.
//!
//! * [`config`]: the environment variables, validated at start.
//! * [`supplier`], [`schedule`], [`catalogue`], [`rng`]: the mock airline APIs
//!   and their deterministic timetables.
//! * [`metrics`]: the Prometheus series.

pub mod catalogue;
pub mod config;
pub mod metrics;
pub mod rng;
pub mod schedule;
pub mod supplier;

pub use config::Config;
