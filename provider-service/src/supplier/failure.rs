//! How a supplier call ended without an answer, and the outcome the client
//! is told. Every kind of supplier (the simulation, the HTTP client) reports
//! the same failures, so they live apart from the supplier interface that
//! chooses between those kinds.

use contract::SupplierOutcome;

/// Why a supplier contributed no answer; the search goes on without it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// No answer within the call's timeout or the search's deadline.
    #[error("timed out")]
    Timeout,
    /// An error answer, an unreadable one, or no connection.
    #[error("failed")]
    Error,
    /// Refused with 429 for longer than the search could wait.
    #[error("rate limited")]
    RateLimited,
    /// Not called: its circuit is open.
    #[error("circuit open")]
    CircuitOpen,
    /// The supplier refused the credentials.
    #[error("unauthorized")]
    Unauthorized,
}

impl Failure {
    /// The outcome reported to the client.
    pub fn outcome(self) -> SupplierOutcome {
        match self {
            Failure::Timeout => SupplierOutcome::Timeout,
            Failure::Error => SupplierOutcome::Error,
            Failure::RateLimited => SupplierOutcome::RateLimited,
            Failure::CircuitOpen => SupplierOutcome::CircuitOpen,
            Failure::Unauthorized => SupplierOutcome::Unauthorized,
        }
    }
}
