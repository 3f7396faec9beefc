//! Log setup: `tracing` events to stdout, as text for people or JSON lines for
//! collectors (`LOG_FORMAT`). The level filter comes from `RUST_LOG` (default `info`).
//! Text is coloured only when stdout is a terminal: escape codes in a file or a
//! log collector are noise that breaks grep.
//!
//! The redis crate's cluster client logs a warning on every reconnect attempt,
//! many a second while a node is down, where this project logs one line per
//! change of a connection's state. Unless `RUST_LOG` names the `redis` target,
//! only its errors are shown.

use std::io::IsTerminal;
use std::str::FromStr;

use tracing_subscriber::EnvFilter;

/// The log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err("expected text or json".to_owned()),
        }
    }
}

/// Installs the global subscriber. Call once, first thing in `main`.
pub fn init(format: LogFormat) {
    let spec = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned());
    let filter = EnvFilter::try_new(with_quiet_redis(&spec))
        .unwrap_or_else(|_| EnvFilter::new(with_quiet_redis("info")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stdout().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
}

/// `spec` plus `redis=error`, unless a directive of `spec` is about the
/// `redis` target already.
fn with_quiet_redis(spec: &str) -> String {
    let names_redis = spec.split(',').any(|directive| {
        directive.trim() == "redis"
            || directive.trim().starts_with("redis=")
            || directive.trim().starts_with("redis::")
    });
    if names_redis {
        spec.to_owned()
    } else {
        format!("{spec},redis=error")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_redis_crate_is_quiet_unless_asked_for() {
        assert_eq!(with_quiet_redis("info"), "info,redis=error");
        assert_eq!(
            with_quiet_redis("warn,service_runtime::redis_link=debug"),
            "warn,service_runtime::redis_link=debug,redis=error"
        );
        assert_eq!(with_quiet_redis("info,redis=debug"), "info,redis=debug");
    }
}
