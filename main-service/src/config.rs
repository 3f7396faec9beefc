//! main-service configuration, read once from environment variables.
//!
//! Names and defaults are those of docs/configuration.md;
//! `SSE_STALL_TIMEOUT_SECS` is this service's own addition.
//! `QUEUE_MAX_BACKLOG`'s default comes from measured provider throughput
//! (docs/operations.md, "Admission control"). Every value is validated at
//! start so a typo stops the process with one line naming the variable
//! instead of surfacing at the first request.

use std::net::SocketAddr;
use std::time::Duration;

use ipnet::IpNet;
use service_runtime::config::{ConfigError, Vars};
use service_runtime::redis_target::RedisTarget;
use service_runtime::telemetry::LogFormat;

use crate::intake::rate_limit::{self, RateLimit};

/// Default `QUEUE_MAX_BACKLOG`: four fifths of what one provider with the
/// default settings finishes within one default `SEARCH_TIMEOUT_SECS`
/// (docs/operations.md, "Admission control").
pub const DEFAULT_QUEUE_MAX_BACKLOG: u64 = 2_000;
use crate::edge::cors::AllowedOrigins;

/// Everything main-service reads from its environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where Redis is (`REDIS_URL` or
    /// `REDIS_CLUSTER_NODES`, with `REDIS_CA_FILE` and the client certificate); the only shared state.
    pub redis: RedisTarget,
    /// Where the HTTP API, health and metrics listen (`HTTP_ADDR`).
    pub http_addr: SocketAddr,
    /// Lifetime of a search's keys after their last write (`RESULTS_TTL_SECS`),
    /// so abandoned searches clean themselves up. Never shorter than
    /// `search_timeout`: the keys written at POST must still exist when the
    /// search times out.
    pub results_ttl: Duration,
    /// How long after its POST a search may run before main-service ends it with
    /// a `timeout` failure (`SEARCH_TIMEOUT_SECS`).
    pub search_timeout: Duration,
    /// Idle time between `: keep-alive` comments (`SSE_HEARTBEAT_SECS`), which keep
    /// proxies from closing quiet streams and reveal dead clients.
    pub sse_heartbeat: Duration,
    /// The reconnect delay suggested to EventSource clients (`SSE_RETRY_MS`).
    pub sse_retry: Duration,
    /// How long a client may accept no bytes before it is disconnected
    /// (`SSE_STALL_TIMEOUT_SECS`), so a reader that stopped reading cannot pin its
    /// connection forever.
    pub sse_stall_timeout: Duration,
    /// Upper bound on shutdown (`SHUTDOWN_GRACE_SECS`): open streams end, then
    /// connections get this long to finish.
    pub shutdown_grace: Duration,
    /// Log line format (`LOG_FORMAT`).
    pub log_format: LogFormat,
    /// Searches accepted and not yet finished beyond which POST answers 503
    /// (`QUEUE_MAX_BACKLOG`), so a 202 stays a promise under overload.
    pub queue_max_backlog: u64,
    /// Submissions allowed per client (`RATE_LIMIT_PER_CLIENT`); `None`: no limit.
    pub rate_limit: Option<RateLimit>,
    /// Peers whose `X-Forwarded-For` names the client (`TRUSTED_PROXIES`).
    pub trusted_proxies: Vec<IpNet>,
    /// Web origins whose pages may call the API (`CORS_ALLOWED_ORIGINS`); by
    /// default none but the service's own.
    pub cors_allowed_origins: AllowedOrigins,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_vars(&Vars::from_env())
    }

    /// Reads variables through `vars`; tests pass a map.
    pub fn from_vars<F: Fn(&str) -> Option<String>>(vars: &Vars<F>) -> Result<Config, ConfigError> {
        let config = Config {
            redis: vars.redis_target()?,
            http_addr: vars.parse_with(
                "HTTP_ADDR",
                SocketAddr::from(([0, 0, 0, 0], 8080)),
                |v| {
                    v.parse()
                        .map_err(|_| "expected ip:port, e.g. 0.0.0.0:8080".to_owned())
                },
            )?,
            results_ttl: vars.results_ttl()?,
            search_timeout: vars.secs("SEARCH_TIMEOUT_SECS", 60, 1..=3600)?,
            sse_heartbeat: vars.secs("SSE_HEARTBEAT_SECS", 15, 1..=3600)?,
            sse_retry: vars.millis("SSE_RETRY_MS", 2000, 0..=3_600_000)?,
            sse_stall_timeout: vars.secs("SSE_STALL_TIMEOUT_SECS", 10, 1..=3600)?,
            shutdown_grace: vars.secs("SHUTDOWN_GRACE_SECS", 10, 0..=3600)?,
            log_format: vars.parse("LOG_FORMAT", LogFormat::Text)?,
            queue_max_backlog: vars.parse_with(
                "QUEUE_MAX_BACKLOG",
                DEFAULT_QUEUE_MAX_BACKLOG,
                |v| {
                    v.parse()
                        .ok()
                        .filter(|n| (1..=10_000_000).contains(n))
                        .ok_or_else(|| "expected a whole number from 1 to 10000000".to_owned())
                },
            )?,
            rate_limit: vars.parse_with("RATE_LIMIT_PER_CLIENT", None, |v| v.parse().map(Some))?,
            trusted_proxies: vars.parse_with(
                "TRUSTED_PROXIES",
                Vec::new(),
                rate_limit::parse_trusted_proxies,
            )?,
            cors_allowed_origins: vars.parse("CORS_ALLOWED_ORIGINS", AllowedOrigins::None)?,
        };
        if config.results_ttl < config.search_timeout {
            return Err(ConfigError {
                name: "RESULTS_TTL_SECS",
                value: config.results_ttl.as_secs().to_string(),
                reason: format!(
                    "must be at least SEARCH_TIMEOUT_SECS ({}), or a search's keys expire before it times out",
                    config.search_timeout.as_secs()
                ),
            });
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_vars(&Vars::from_pairs(pairs))
    }

    #[test]
    fn defaults_follow_the_design() {
        let c = config(&[]).unwrap();
        assert_eq!(c.redis.to_string(), "redis://127.0.0.1:6379");
        assert_eq!(c.http_addr.to_string(), "0.0.0.0:8080");
        assert_eq!(c.results_ttl, Duration::from_secs(1800));
        assert_eq!(c.search_timeout, Duration::from_secs(60));
        assert_eq!(c.sse_heartbeat, Duration::from_secs(15));
        assert_eq!(c.sse_retry, Duration::from_millis(2000));
        assert_eq!(c.sse_stall_timeout, Duration::from_secs(10));
        assert_eq!(c.shutdown_grace, Duration::from_secs(10));
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.cors_allowed_origins, AllowedOrigins::None);
        assert_eq!(c.queue_max_backlog, DEFAULT_QUEUE_MAX_BACKLOG);
        assert_eq!(c.rate_limit, None);
        assert!(c.trusted_proxies.is_empty());
    }

    #[test]
    fn overload_settings_are_read_and_checked() {
        let c = config(&[
            ("QUEUE_MAX_BACKLOG", "20"),
            ("RATE_LIMIT_PER_CLIENT", "600/m"),
            ("TRUSTED_PROXIES", "10.0.0.0/8,127.0.0.1"),
        ])
        .unwrap();
        assert_eq!(c.queue_max_backlog, 20);
        assert_eq!(c.rate_limit.unwrap().count.get(), 600);
        assert_eq!(c.trusted_proxies.len(), 2);
        for (name, value) in [
            ("QUEUE_MAX_BACKLOG", "0"),
            ("QUEUE_MAX_BACKLOG", "many"),
            ("RATE_LIMIT_PER_CLIENT", "20 per second"),
            ("TRUSTED_PROXIES", "10.0.0.0/40"),
        ] {
            let err = config(&[(name, value)]).unwrap_err();
            assert_eq!(err.name, name);
            assert_eq!(err.to_string().lines().count(), 1);
        }
    }

    #[test]
    fn values_are_read() {
        let c = config(&[
            ("HTTP_ADDR", "127.0.0.1:18080"),
            ("SSE_RETRY_MS", "1234"),
            ("LOG_FORMAT", "json"),
        ])
        .unwrap();
        assert_eq!(c.http_addr.port(), 18080);
        assert_eq!(c.sse_retry, Duration::from_millis(1234));
        assert_eq!(c.log_format, LogFormat::Json);
    }

    #[test]
    fn a_bad_value_is_named_in_one_line() {
        let err = config(&[("SEARCH_TIMEOUT_SECS", "soon")]).unwrap_err();
        assert_eq!(err.name, "SEARCH_TIMEOUT_SECS");
        assert!(
            err.to_string()
                .starts_with("SEARCH_TIMEOUT_SECS=soon is not valid")
        );
        let err = config(&[("HTTP_ADDR", "nowhere")]).unwrap_err();
        assert_eq!(err.to_string().lines().count(), 1);
        assert!(err.to_string().contains("HTTP_ADDR=nowhere"));
        assert!(config(&[("SSE_HEARTBEAT_SECS", "0")]).is_err());
        assert!(config(&[("LOG_FORMAT", "yaml")]).is_err());
        let err = config(&[("CORS_ALLOWED_ORIGINS", "example.com")]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("CORS_ALLOWED_ORIGINS=example.com is not valid"),
            "{err}"
        );
    }

    #[test]
    fn the_results_ttl_is_read_as_the_provider_reads_it() {
        let c = config(&[
            ("RESULTS_TTL_SECS", "604800"),
            ("SEARCH_TIMEOUT_SECS", "60"),
        ])
        .unwrap();
        assert_eq!(c.results_ttl, Duration::from_secs(7 * 24 * 3600));
        let err = config(&[("RESULTS_TTL_SECS", "604801")]).unwrap_err();
        assert_eq!(err.name, "RESULTS_TTL_SECS");
    }

    #[test]
    fn keys_must_outlive_the_search_timeout() {
        assert!(config(&[("RESULTS_TTL_SECS", "60"), ("SEARCH_TIMEOUT_SECS", "60")]).is_ok());
        let err = config(&[("RESULTS_TTL_SECS", "30"), ("SEARCH_TIMEOUT_SECS", "60")]).unwrap_err();
        assert_eq!(err.name, "RESULTS_TTL_SECS");
        let line = err.to_string();
        assert_eq!(line.lines().count(), 1);
        assert!(
            line.starts_with("RESULTS_TTL_SECS=30 is not valid"),
            "{line}"
        );
        assert!(line.contains("SEARCH_TIMEOUT_SECS (60)"), "{line}");
        let err = config(&[("SEARCH_TIMEOUT_SECS", "3600")]).unwrap_err();
        assert!(
            err.to_string().starts_with("RESULTS_TTL_SECS=1800"),
            "{err}"
        );
    }
}
