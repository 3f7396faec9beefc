//! Redis refusing writes while it answers reads: out of memory under
//! `noeviction` (`OOM`), a replica after a failover (`READONLY`), or a failed
//! background save with `stop-writes-on-bgsave-error` (`MISCONF`).
//!
//! None of these is a connection problem, and none passes by retrying at once,
//! so the services treat them apart: readiness goes down with the reason, work
//! waits with capped backoff without spending deliveries, and the logs get one
//! line when the state changes and a summary every [`SUMMARY_INTERVAL`] instead
//! of a line per refused command.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::redis_failure::ErrorCode;

/// While writes are refused, a summary line this often.
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(30);

/// Why Redis refuses writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `OOM`: `used_memory` is over `maxmemory` and the policy evicts nothing.
    OutOfMemory,
    /// `READONLY`: the server is a replica (typically after a failover).
    ReadOnly,
    /// `MISCONF`: the last background save failed and Redis stops writes.
    PersistenceFailing,
}

impl Refusal {
    /// The refusal an error reply carries, if it is one. Looks at the error
    /// code first and then at the text, because a refusal inside a
    /// transaction or pipeline may come wrapped in another error.
    pub fn of(error: &redis::RedisError) -> Option<Refusal> {
        let by_code = match ErrorCode::of(error) {
            Some(ErrorCode::OutOfMemory) => Some(Refusal::OutOfMemory),
            Some(ErrorCode::ReadOnly) => Some(Refusal::ReadOnly),
            Some(ErrorCode::Misconf) => Some(Refusal::PersistenceFailing),
            _ => None,
        };
        by_code.or_else(|| {
            let text = error.to_string();
            if text.contains("OOM command not allowed") {
                Some(Refusal::OutOfMemory)
            } else if text.contains("READONLY You can't write") {
                Some(Refusal::ReadOnly)
            } else if text.contains("MISCONF") {
                Some(Refusal::PersistenceFailing)
            } else {
                None
            }
        })
    }

    /// The Redis error code.
    pub fn code(self) -> &'static str {
        match self {
            Refusal::OutOfMemory => ErrorCode::OutOfMemory,
            Refusal::ReadOnly => ErrorCode::ReadOnly,
            Refusal::PersistenceFailing => ErrorCode::Misconf,
        }
        .as_str()
    }

    /// What an operator should read in `/readyz` and the logs.
    pub fn explain(self) -> &'static str {
        match self {
            Refusal::OutOfMemory => {
                "redis refuses writes: out of memory (OOM; used_memory over maxmemory)"
            }
            Refusal::ReadOnly => {
                "redis refuses writes: the server is a read-only replica (READONLY)"
            }
            Refusal::PersistenceFailing => {
                "redis refuses writes: its last background save failed (MISCONF)"
            }
        }
    }
}

/// Whether writes are currently refused, shared by everything that writes
/// through [`crate::redis_health::RedisHealth`].
#[derive(Debug, Default)]
pub(crate) struct WriteRefusals {
    /// The state and its counters.
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Set while writes are refused, with when that started.
    refused: Option<(Refusal, Instant)>,
    /// When writes were last seen accepted after a refusal; `None` before any
    /// refusal, which counts as accepted for ever.
    accepted_since: Option<Instant>,
    /// Commands refused since the state last changed.
    refused_commands: u64,
    /// Commands refused since the last summary line.
    refused_since_summary: u64,
    /// When the last line (state change or summary) was logged.
    last_line: Option<Instant>,
}

impl WriteRefusals {
    /// Records a failed command. Returns the refusal if and only if the error
    /// is Redis refusing a write; any other error is left to the caller.
    /// Logs only when the state changes.
    pub(crate) fn note(&self, error: &redis::RedisError) -> Option<Refusal> {
        let refusal = Refusal::of(error)?;
        let mut state = self.lock();
        state.refused_commands += 1;
        state.refused_since_summary += 1;
        let changed = state.refused.map(|(r, _)| r) != Some(refusal);
        if changed {
            let now = Instant::now();
            state.refused = Some((refusal, now));
            state.accepted_since = None;
            state.refused_commands = 1;
            state.refused_since_summary = 1;
            state.last_line = Some(now);
            tracing::warn!(
                code = refusal.code(),
                %error,
                "{}; writes wait until it accepts them again",
                refusal.explain()
            );
        }
        Some(refusal)
    }

    /// Records that a write was accepted. Logs once when this ends a refusal.
    pub(crate) fn accepted(&self) {
        let mut state = self.lock();
        if let Some((refusal, since)) = state.refused.take() {
            let now = Instant::now();
            state.accepted_since = Some(now);
            tracing::info!(
                code = refusal.code(),
                refused_for_ms = now.duration_since(since).as_millis() as u64,
                refused_commands = state.refused_commands,
                "redis accepts writes again"
            );
            state.refused_commands = 0;
            state.refused_since_summary = 0;
            state.last_line = Some(now);
        }
    }

    /// The current refusal, if writes are refused.
    pub(crate) fn current(&self) -> Option<Refusal> {
        self.lock().refused.map(|(refusal, _)| refusal)
    }

    /// True if and only if writes have been accepted for at least `period`
    /// (always true when no refusal was ever seen).
    pub(crate) fn accepted_for(&self, period: Duration) -> bool {
        let state = self.lock();
        state.refused.is_none() && state.accepted_since.is_none_or(|t| t.elapsed() >= period)
    }

    /// Logs the periodic summary if writes are refused and the last line is
    /// older than [`SUMMARY_INTERVAL`]; `waiting` says what is held up (for
    /// example "searches waiting: 12").
    pub(crate) fn summarise(&self, waiting: &dyn Fn() -> String) {
        let mut state = self.lock();
        let Some((refusal, since)) = state.refused else {
            return;
        };
        if state
            .last_line
            .is_some_and(|t| t.elapsed() < SUMMARY_INTERVAL)
        {
            return;
        }
        tracing::warn!(
            code = refusal.code(),
            refused_for_secs = since.elapsed().as_secs(),
            refused_commands = state.refused_commands,
            refused_since_last_summary = state.refused_since_summary,
            waiting = waiting(),
            "{}; still waiting",
            refusal.explain()
        );
        state.refused_since_summary = 0;
        state.last_line = Some(Instant::now());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_error(code: &str, detail: &str) -> redis::RedisError {
        redis::RedisError::from((redis::ErrorKind::Extension, "", format!("{code} {detail}")))
    }

    #[test]
    fn refusals_are_recognised_by_code_and_text() {
        let text = server_error("OOM", "command not allowed when used memory > 'maxmemory'.");
        assert_eq!(Refusal::of(&text), Some(Refusal::OutOfMemory));
        let readonly = server_error("READONLY", "You can't write against a read only replica.");
        assert_eq!(Refusal::of(&readonly), Some(Refusal::ReadOnly));
        let misconf = server_error("MISCONF", "Redis is configured to save RDB snapshots");
        assert_eq!(Refusal::of(&misconf), Some(Refusal::PersistenceFailing));
        let other = redis::RedisError::from((redis::ErrorKind::Io, "connection reset"));
        assert_eq!(Refusal::of(&other), None);
    }

    #[tokio::test(start_paused = true)]
    async fn the_state_follows_refusals_and_acceptance() {
        let writes = WriteRefusals::default();
        assert!(writes.accepted_for(Duration::from_secs(60)));
        let oom = server_error("OOM", "command not allowed when used memory > 'maxmemory'.");
        assert_eq!(writes.note(&oom), Some(Refusal::OutOfMemory));
        assert_eq!(writes.current(), Some(Refusal::OutOfMemory));
        assert!(!writes.accepted_for(Duration::ZERO));
        writes.accepted();
        assert_eq!(writes.current(), None);
        assert!(!writes.accepted_for(Duration::from_secs(5)));
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(writes.accepted_for(Duration::from_secs(5)));
        let io = redis::RedisError::from((redis::ErrorKind::Io, "connection reset"));
        assert_eq!(writes.note(&io), None);
        assert_eq!(writes.current(), None);
    }
}
