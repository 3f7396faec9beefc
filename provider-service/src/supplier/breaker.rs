//! A circuit breaker per supplier: after enough consecutive failures the
//! supplier is not called at all for a while, so a partner that is down costs
//! searches nothing (they report `circuit_open` at once instead of waiting for
//! a timeout) and the partner is not flooded while it recovers.
//!
//! Closed: calls pass; `failures` consecutive failures open it. Open: calls are
//! refused until `open_for` has passed. Half-open: one probe call passes (and
//! another one only if that probe never reported back within `open_for`); its
//! success closes the circuit, its failure opens it again.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Calls pass; this many failed in a row.
    Closed(u32),
    /// Calls are refused until then.
    Open(Instant),
    /// A probe was let through at this time.
    HalfOpen(Instant),
}

/// What the breaker says about a call about to be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Make the call.
    Call,
    /// Do not call; the circuit is open.
    Refused,
}

/// One supplier's breaker.
pub struct Breaker {
    /// The supplier, for the log lines on each change of state.
    supplier: &'static str,
    /// Consecutive failures that open the circuit.
    failures: u32,
    /// How long it stays open before a probe.
    open_for: Duration,
    /// Current state; a plain mutex held for a comparison or two.
    state: Mutex<State>,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(supplier: &'static str, failures: u32, open_for: Duration) -> Breaker {
        Breaker {
            supplier,
            failures,
            open_for,
            state: Mutex::new(State::Closed(0)),
        }
    }

    /// Whether a call may be made now.
    pub fn permit(&self) -> Permission {
        let now = Instant::now();
        let mut state = self.state.lock().expect("breaker poisoned");
        match *state {
            State::Closed(_) => Permission::Call,
            State::Open(until) | State::HalfOpen(until) if now < until => Permission::Refused,
            State::Open(_) | State::HalfOpen(_) => {
                *state = State::HalfOpen(now + self.open_for);
                tracing::info!(supplier = self.supplier, "circuit half-open: probing");
                Permission::Call
            }
        }
    }

    /// Reports a call that succeeded.
    pub fn succeeded(&self) {
        let mut state = self.state.lock().expect("breaker poisoned");
        if !matches!(*state, State::Closed(_)) {
            tracing::info!(
                supplier = self.supplier,
                "circuit closed: supplier answers again"
            );
        }
        *state = State::Closed(0);
    }

    /// Reports a call that failed in a way that counts against the supplier.
    pub fn failed(&self) {
        let mut state = self.state.lock().expect("breaker poisoned");
        let open = match *state {
            State::Closed(n) if n + 1 < self.failures => {
                *state = State::Closed(n + 1);
                false
            }
            State::Open(_) => false,
            State::Closed(_) | State::HalfOpen(_) => true,
        };
        if open {
            *state = State::Open(Instant::now() + self.open_for);
            tracing::warn!(
                supplier = self.supplier,
                open_ms = self.open_for.as_millis() as u64,
                "circuit open: supplier failing"
            );
        }
    }

    /// True if and only if calls are being refused or probed.
    pub fn is_open(&self) -> bool {
        !matches!(
            *self.state.lock().expect("breaker poisoned"),
            State::Closed(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_after_consecutive_failures_and_closes_after_a_good_probe() {
        let b = Breaker::new("GA", 3, Duration::from_secs(5));
        b.failed();
        b.failed();
        b.succeeded();
        b.failed();
        b.failed();
        assert_eq!(b.permit(), Permission::Call, "a success resets the count");
        b.failed();
        assert!(b.is_open());
        assert_eq!(b.permit(), Permission::Refused);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(b.permit(), Permission::Call, "one probe");
        assert_eq!(b.permit(), Permission::Refused, "only one");
        b.failed();
        assert_eq!(b.permit(), Permission::Refused, "a failed probe reopens");
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(b.permit(), Permission::Call);
        b.succeeded();
        assert!(!b.is_open());
        assert_eq!(b.permit(), Permission::Call);
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_that_never_reports_is_replaced() {
        let b = Breaker::new("GA", 1, Duration::from_secs(2));
        b.failed();
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(b.permit(), Permission::Call);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(b.permit(), Permission::Call);
    }
}
