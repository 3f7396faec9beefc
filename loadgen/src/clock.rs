//! Wall-clock timestamps that mean the same in every process on the machine,
//! so an append time taken by the producer and a receipt time taken in a worker
//! process can be subtracted.

use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_micros() as u64
}

/// `later - earlier` in microseconds, 0 if the clock stepped backwards.
pub fn elapsed_us(earlier: u64, later: u64) -> u64 {
    later.saturating_sub(earlier)
}
