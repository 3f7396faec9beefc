//! Redis failures as the services see them: the error codes they branch on,
//! named once, a failed command labelled with the step it served, and the
//! class of a failed connection ([`LinkFault`]) that `/readyz` names.

use std::error::Error as _;
use std::fmt;
use std::io;
use std::sync::Arc;

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

/// Why the link to Redis is down, as a class an operator can act on; `/readyz`
/// names it and the log line adds the client's own words. Out of memory is
/// not one: the server then answers, and refuses writes
/// ([`crate::write_refusal`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LinkFault {
    /// No answer: connection refused, reset or timed out, or name not resolved.
    #[default]
    Unreachable,
    /// The server refused the user or password (or demands one).
    AuthenticationRefused,
    /// The TLS handshake failed: an untrusted certificate or one for another
    /// host, a missing client certificate, or a server that does not speak TLS.
    TlsHandshakeFailed,
    /// The server refused to `SELECT` the URL's database: its index is at or
    /// beyond the server's `databases`.
    DatabaseRefused,
    /// The server answered with some other error.
    Other,
}

impl LinkFault {
    /// The class of `error`, a failure to reach or use the server; `tls` says
    /// whether the link uses TLS (a TLS link that times out most often met a
    /// server that waits for plain text and never answers the handshake).
    pub fn of(error: &redis::RedisError, tls: bool) -> LinkFault {
        if error.kind() == redis::ErrorKind::AuthenticationFailed
            || matches!(error.code(), Some("NOAUTH" | "WRONGPASS"))
        {
            LinkFault::AuthenticationRefused
        } else if error.to_string().contains("refused to switch database") {
            LinkFault::DatabaseRefused
        } else if is_tls_error(error) || (tls && error.is_timeout()) {
            LinkFault::TlsHandshakeFailed
        } else if error.is_io_error()
            || error.is_timeout()
            || error.is_connection_refusal()
            || error.is_connection_dropped()
        {
            LinkFault::Unreachable
        } else {
            LinkFault::Other
        }
    }

    /// The `/readyz` reason: the class, and where to look.
    pub const fn explain(self) -> &'static str {
        match self {
            LinkFault::Unreachable => {
                "redis is unreachable (connection refused, reset or timed out)"
            }
            LinkFault::AuthenticationRefused => {
                "redis refused authentication (check the user and password of the Redis URL)"
            }
            LinkFault::TlsHandshakeFailed => {
                "the TLS handshake with redis failed (certificate, host name, client \
                 certificate, or a server that does not speak TLS on this port)"
            }
            LinkFault::DatabaseRefused => {
                "redis refused the database index of the Redis URL (beyond its `databases` setting)"
            }
            LinkFault::Other => "redis answers with an error (see the log)",
        }
    }
}

/// True if and only if `error` comes from rustls: the handshake failed on
/// this side, or the server sent a TLS alert.
fn is_tls_error(error: &redis::RedisError) -> bool {
    let mut next = error.source();
    while let Some(mut cause) = next {
        // The redis client hands out the errors it wraps as an `Arc`.
        if let Some(shared) = cause.downcast_ref::<Arc<dyn std::error::Error + Send + Sync>>() {
            cause = &**shared;
        }
        if cause.is::<rustls::Error>() {
            return true;
        }
        // An I/O error hides the error it wraps from `source`.
        if let Some(inner) = cause
            .downcast_ref::<io::Error>()
            .and_then(io::Error::get_ref)
            && inner.is::<rustls::Error>()
        {
            return true;
        }
        next = cause.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_faults_are_told_apart() {
        let of = |error: redis::RedisError| LinkFault::of(&error, false);
        let refused = io::Error::new(io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(of(refused.into()), LinkFault::Unreachable);
        assert_eq!(
            of((
                redis::ErrorKind::AuthenticationFailed,
                "Password authentication failed"
            )
                .into()),
            LinkFault::AuthenticationRefused
        );
        assert_eq!(
            of(redis::make_extension_error("NOAUTH".to_owned(), None)),
            LinkFault::AuthenticationRefused
        );
        let tls = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        assert_eq!(of(tls.into()), LinkFault::TlsHandshakeFailed);
        let timeout: redis::RedisError = io::Error::new(io::ErrorKind::TimedOut, "t").into();
        assert_eq!(of(timeout.clone()), LinkFault::Unreachable);
        assert_eq!(LinkFault::of(&timeout, true), LinkFault::TlsHandshakeFailed);
        assert_eq!(
            of((
                redis::ErrorKind::Client,
                "Redis server refused to switch database"
            )
                .into()),
            LinkFault::DatabaseRefused
        );
        assert_eq!(
            of(redis::make_extension_error("WRONGTYPE".to_owned(), None)),
            LinkFault::Other
        );
    }

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
