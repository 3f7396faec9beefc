//! Redis failures as the services see them: the error codes they branch on,
//! named once, and a failed command labelled with the step it served.

use std::fmt;

/// The Redis error codes the services tell apart. Redis' own codes, except
/// [`ErrorCode::StaleTally`], which the append script raises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// `NOGROUP`: the consumer group (or its stream) does not exist.
    NoGroup,
    /// `BUSYGROUP`: the consumer group to create exists already.
    BusyGroup,
    /// `UNBLOCKED`: a blocked read ended because its stream was deleted.
    Unblocked,
    /// The append script refused a terminal event based on a stale tally
    /// (`contract::scripts::STALE_TALLY`).
    StaleTally,
    /// `OOM`: over `maxmemory` with a policy that evicts nothing.
    OutOfMemory,
    /// `READONLY`: the server is a replica.
    ReadOnly,
    /// `MISCONF`: the last background save failed and writes are stopped.
    Misconf,
}

impl ErrorCode {
    /// Every code, for lookups by text.
    const ALL: [ErrorCode; 7] = [
        ErrorCode::NoGroup,
        ErrorCode::BusyGroup,
        ErrorCode::Unblocked,
        ErrorCode::StaleTally,
        ErrorCode::OutOfMemory,
        ErrorCode::ReadOnly,
        ErrorCode::Misconf,
    ];

    /// The code as Redis writes it, the first word of the error reply.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NoGroup => "NOGROUP",
            ErrorCode::BusyGroup => "BUSYGROUP",
            ErrorCode::Unblocked => "UNBLOCKED",
            ErrorCode::StaleTally => contract::scripts::STALE_TALLY,
            ErrorCode::OutOfMemory => "OOM",
            ErrorCode::ReadOnly => "READONLY",
            ErrorCode::Misconf => "MISCONF",
        }
    }

    /// The code of `error`, if it is one of these.
    pub fn of(error: &redis::RedisError) -> Option<ErrorCode> {
        let code = error.code()?;
        Self::ALL.into_iter().find(|known| known.as_str() == code)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Redis command that failed, and which step of the work it was.
#[derive(Debug, thiserror::Error)]
#[error("redis {op} failed: {source}")]
pub struct RedisFailure {
    /// The operation, as labelled in the services' `redis_errors_total`.
    pub op: &'static str,
    /// What Redis or the connection said.
    #[source]
    pub source: redis::RedisError,
}

impl RedisFailure {
    /// True if and only if trying again may succeed: the connection dropped or
    /// timed out, Redis is still loading, and the like; not a script or type error.
    pub fn is_transient(&self) -> bool {
        !matches!(self.source.retry_method(), redis::RetryMethod::NoRetry)
    }

    /// The error code Redis answered with, if it is one the services know.
    pub fn code(&self) -> Option<ErrorCode> {
        ErrorCode::of(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_read_from_error_replies() {
        for code in ErrorCode::ALL {
            let error = redis::make_extension_error(code.as_str().to_owned(), None);
            assert_eq!(ErrorCode::of(&error), Some(code));
        }
        let other = redis::make_extension_error("WRONGTYPE".to_owned(), None);
        assert_eq!(ErrorCode::of(&other), None);
        let io = redis::RedisError::from((redis::ErrorKind::Io, "connection reset"));
        assert_eq!(ErrorCode::of(&io), None);
    }
}
