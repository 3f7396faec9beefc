//! The provider's configuration, read once at start from environment variables.
//!
//! Every value is validated before anything connects; the first bad one stops the
//! process with `NAME=value is not valid: why`. Built from
//! [`service_runtime::config::Vars`] so tests pass a map instead of touching the
//! process environment.

use std::net::SocketAddr;
use std::time::Duration;

use service_runtime::config::{ConfigError, Vars};

use crate::searches::answer_bounds::AnswerBounds;
use service_runtime::redis_target::RedisTarget;
use service_runtime::telemetry::LogFormat;
use timetable::latency_range::LatencyRange;

use crate::supplier::adapters::Style;
use crate::supplier::suppliers_file::{self, Defaults, SupplierSettings};

/// Everything the provider can be told from outside.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where Redis is (`REDIS_URL` or
    /// `REDIS_CLUSTER_NODES`, with `REDIS_CA_FILE` and the client certificate); the only shared
    /// state between the services.
    pub redis: RedisTarget,
    /// Address of the admin server (/healthz, /readyz, /metrics); the provider
    /// has no other HTTP surface.
    pub metrics_addr: SocketAddr,
    /// TTL refreshed on every write to a search's result stream and state hash,
    /// so abandoned searches clean themselves up.
    pub results_ttl: Duration,
    /// Consumer group on the request stream; replicas in one group share the work.
    pub consumer_group: String,
    /// This replica's name in the group; must be unique per live replica, or two
    /// replicas would share (and heartbeat) one pending list.
    pub consumer_name: String,
    /// Searches processed at once; bounds memory and Redis load under a backlog.
    pub concurrency: usize,
    /// Simulated supplier response times.
    pub mock_latency: LatencyRange,
    /// Chance, 0 to 1, that a simulated supplier call fails.
    pub mock_failure_rate: f64,
    /// How long a delivered search may sit unacknowledged before another
    /// consumer may claim it; also the `min-idle-time` of every claim.
    pub claim_idle: Duration,
    /// Deliveries after which a search is dead-lettered instead of retried, so a
    /// search that crashes its provider cannot take the fleet down in turn.
    pub max_deliveries: u64,
    /// How long in-flight searches may run on after SIGTERM before they are left
    /// pending for another replica.
    pub shutdown_grace: Duration,
    /// Log line format.
    pub log_format: LogFormat,
    /// How suppliers are called: the in-process simulation, or HTTP.
    pub suppliers: SupplierConfig,
    /// How long a supplier answer is reused from Redis; zero disables the
    /// cache. Defaults to 30 s for HTTP suppliers and off for the in-process
    /// simulation, whose answers cost nothing to recompute.
    pub supplier_cache_ttl: Duration,
}

/// The supplier side: where the partner APIs are and how patiently to call them.
#[derive(Debug, Clone, PartialEq)]
pub struct SupplierConfig {
    /// The HTTP suppliers, from `SUPPLIERS_FILE` or `SUPPLIER_URLS`, in the
    /// order given; empty for the in-process simulation.
    pub http: Vec<SupplierSettings>,
    /// All supplier calls of one search attempt, retries and waits included,
    /// end this long after it started: the search's own deadline.
    pub deadline: Duration,
    /// How much of each supplier answer a search keeps.
    pub answer_bounds: AnswerBounds,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_vars(&Vars::from_env())
    }

    /// Reads and validates every variable, in the order of the design table.
    pub fn from_vars<F: Fn(&str) -> Option<String>>(vars: &Vars<F>) -> Result<Config, ConfigError> {
        let suppliers = SupplierConfig::from_vars(vars)?;
        Ok(Config {
            redis: vars.redis_target()?,
            metrics_addr: metrics_addr(vars)?,
            results_ttl: vars.results_ttl()?,
            consumer_group: name(vars, "CONSUMER_GROUP")?
                .unwrap_or_else(|| contract::keys::DEFAULT_CONSUMER_GROUP.to_owned()),
            consumer_name: name(vars, "CONSUMER_NAME")?.unwrap_or_else(default_consumer_name),
            concurrency: bounded(
                vars.int_in("PROVIDER_CONCURRENCY", 64, 1..=10_000)?,
                usize::MAX,
            ),
            mock_latency: vars.parse_with(
                "MOCK_LATENCY_MS",
                LatencyRange {
                    min_ms: 200,
                    max_ms: 1500,
                },
                LatencyRange::parse,
            )?,
            mock_failure_rate: vars.parse_with("MOCK_FAILURE_RATE", 0.0, |v| {
                match v.parse::<f64>() {
                    Ok(rate) if (0.0..=1.0).contains(&rate) => Ok(rate),
                    _ => Err("expected a number from 0 to 1".to_owned()),
                }
            })?,
            claim_idle: vars.millis("CLAIM_IDLE_MS", 15_000, 100..=86_400_000)?,
            max_deliveries: vars.int_in("MAX_DELIVERIES", 3, 1..=1000)?,
            shutdown_grace: vars.secs("SHUTDOWN_GRACE_SECS", 10, 0..=3600)?,
            log_format: vars.parse("LOG_FORMAT", LogFormat::Text)?,
            supplier_cache_ttl: vars.secs(
                "SUPPLIER_CACHE_TTL_SECS",
                if suppliers.http.is_empty() { 0 } else { 30 },
                0..=86_400,
            )?,
            suppliers,
        })
    }
}

impl SupplierConfig {
    fn from_vars<F: Fn(&str) -> Option<String>>(
        vars: &Vars<F>,
    ) -> Result<SupplierConfig, ConfigError> {
        let timeout = vars.millis("SUPPLIER_TIMEOUT_MS", 3_000, 1..=120_000)?;
        let deadline = vars.millis("SUPPLIER_DEADLINE_MS", 20_000, 1..=600_000)?;
        if deadline < timeout {
            return Err(ConfigError {
                name: "SUPPLIER_DEADLINE_MS",
                value: deadline.as_millis().to_string(),
                reason: format!(
                    "must be at least SUPPLIER_TIMEOUT_MS ({} ms)",
                    timeout.as_millis()
                ),
            });
        }
        let urls = vars.parse_with("SUPPLIER_URLS", Vec::new(), parse_supplier_urls)?;
        let file = vars.raw("SUPPLIERS_FILE").filter(|f| !f.trim().is_empty());
        let cache_default = if urls.is_empty() && file.is_none() {
            0
        } else {
            30
        };
        let defaults = Defaults {
            timeout,
            retries: bounded(vars.int_in("SUPPLIER_RETRIES", 2, 0..=10)?, u32::MAX),
            max_connections: bounded(
                vars.int_in("SUPPLIER_MAX_CONNECTIONS", 32, 1..=10_000)?,
                usize::MAX,
            ),
            breaker_failures: bounded(
                vars.int_in("SUPPLIER_BREAKER_FAILURES", 5, 1..=1000)?,
                u32::MAX,
            ),
            breaker_open: vars.millis("SUPPLIER_BREAKER_OPEN_MS", 10_000, 1..=3_600_000)?,
            cache_ttl: vars.secs("SUPPLIER_CACHE_TTL_SECS", cache_default, 0..=86_400)?,
            deadline,
        };
        // The file, when given, is the whole list: the short form is then
        // ignored, so a deployment can keep a default SUPPLIER_URLS and
        // switch to a file by setting one variable.
        let http = match file {
            Some(path) => suppliers_file::read(path.trim(), &defaults, |name| vars.raw(name))?,
            None => urls
                .into_iter()
                .map(|(code, style, url)| defaults.settings(code, style, url))
                .collect(),
        };
        Ok(SupplierConfig {
            http,
            deadline,
            answer_bounds: AnswerBounds::from_vars(vars)?,
        })
    }
}

/// A setting already checked against a small range, in the type that uses
/// it; the largest value of that type if it somehow does not fit, never a
/// wrapped one.
fn bounded<T: TryFrom<u64>>(n: u64, largest: T) -> T {
    T::try_from(n).unwrap_or(largest)
}

/// The short form's airline APIs (those of `mock-suppliers`) and the style
/// each speaks. Any other supplier is described in `SUPPLIERS_FILE`.
const SHORT_FORM: [(&str, Style); 6] = [
    ("GA", Style::Flights),
    ("ID", Style::Flights),
    ("QG", Style::Flights),
    ("JT", Style::Offers),
    ("QZ", Style::Offers),
    ("SJ", Style::Offers),
];

/// A supplier of the short form: code, style, base URL.
type ShortForm = (&'static str, Style, String);

/// `GA=http://host:port/ga,JT=…`: each code one of [`SHORT_FORM`], at most
/// once, each URL `http://` or `https://` with a host.
fn parse_supplier_urls(text: &str) -> Result<Vec<ShortForm>, String> {
    let mut urls: Vec<ShortForm> = Vec::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (code, url) = item
            .split_once('=')
            .ok_or_else(|| format!("expected CODE=http://host:port/path, got `{item}`"))?;
        let (code, style) = SHORT_FORM
            .iter()
            .copied()
            .find(|(c, _)| c.eq_ignore_ascii_case(code.trim()))
            .ok_or_else(|| {
                let known: Vec<&str> = SHORT_FORM.iter().map(|(c, _)| *c).collect();
                format!(
                    "`{}` is not a short-form airline ({}); describe it in SUPPLIERS_FILE",
                    code.trim(),
                    known.join(", ")
                )
            })?;
        let url = suppliers_file::base_url(url)?;
        if urls.iter().any(|(c, _, _)| *c == code) {
            return Err(format!("{code} is listed twice"));
        }
        urls.push((code, style, url));
    }
    if urls.is_empty() {
        return Err("expected at least one CODE=http://host:port/path".to_owned());
    }
    Ok(urls)
}

/// `METRICS_ADDR` alone, for `--healthcheck`, which must not fail on an
/// unrelated bad variable.
pub fn metrics_addr<F: Fn(&str) -> Option<String>>(
    vars: &Vars<F>,
) -> Result<SocketAddr, ConfigError> {
    vars.parse_with("METRICS_ADDR", ([0, 0, 0, 0], 9091).into(), |v| {
        v.parse()
            .map_err(|_| "expected host:port, e.g. 0.0.0.0:9091".to_owned())
    })
}

/// A group or consumer name: optional, one word (Redis would take anything, but
/// a name with spaces is almost certainly a quoting mistake).
fn name<F: Fn(&str) -> Option<String>>(
    vars: &Vars<F>,
    var: &'static str,
) -> Result<Option<String>, ConfigError> {
    vars.parse_with(var, None, |v| {
        if v.chars().any(char::is_whitespace) {
            Err("expected a name without whitespace".to_owned())
        } else {
            Ok(Some(v.to_owned()))
        }
    })
}

/// Host name plus process id: unique per replica, and recognisable in XPENDING.
fn default_consumer_name() -> String {
    let host = ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|path| {
            std::fs::read_to_string(path)
                .ok()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| "provider".to_owned());
    format!("{host}-{}", std::process::id())
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
        assert_eq!(c.metrics_addr, "0.0.0.0:9091".parse().unwrap());
        assert_eq!(c.results_ttl, Duration::from_secs(1800));
        assert_eq!(c.consumer_group, "provider-service");
        assert!(
            c.consumer_name
                .ends_with(&format!("-{}", std::process::id())),
            "{}",
            c.consumer_name
        );
        assert_eq!(c.concurrency, 64);
        assert_eq!(
            c.mock_latency,
            LatencyRange {
                min_ms: 200,
                max_ms: 1500
            }
        );
        assert_eq!(c.mock_failure_rate, 0.0);
        assert_eq!(c.claim_idle, Duration::from_millis(15_000));
        assert_eq!(c.max_deliveries, 3);
        assert_eq!(c.shutdown_grace, Duration::from_secs(10));
        assert_eq!(c.log_format, LogFormat::Text);
        assert!(c.suppliers.http.is_empty());
        assert_eq!(c.suppliers.deadline, Duration::from_secs(20));
        assert_eq!(
            c.supplier_cache_ttl,
            Duration::ZERO,
            "nothing to save on the simulation"
        );
        let http = config(&[("SUPPLIER_URLS", "GA=http://mock:8090/ga")]).unwrap();
        assert_eq!(http.supplier_cache_ttl, Duration::from_secs(30));
        let ga = &http.suppliers.http[0];
        assert_eq!(
            (ga.timeout, ga.retries, ga.max_connections),
            (Duration::from_secs(3), 2, 32)
        );
        assert_eq!(ga.cache_ttl, Duration::from_secs(30));
    }

    #[test]
    fn supplier_urls_name_known_airlines_once_over_http() {
        let c = config(&[
            (
                "SUPPLIER_URLS",
                "ga=http://mock:8090/ga/, JT=http://127.0.0.1:1/jt",
            ),
            ("SUPPLIER_TIMEOUT_MS", "500"),
            ("SUPPLIER_DEADLINE_MS", "2000"),
            ("SUPPLIER_CACHE_TTL_SECS", "0"),
        ])
        .unwrap();
        let short: Vec<(&str, Style, &str)> = c
            .suppliers
            .http
            .iter()
            .map(|s| (s.code, s.style, s.base_url.as_str()))
            .collect();
        assert_eq!(
            short,
            [
                ("GA", Style::Flights, "http://mock:8090/ga"),
                ("JT", Style::Offers, "http://127.0.0.1:1/jt")
            ]
        );
        assert_eq!(c.suppliers.http[0].timeout, Duration::from_millis(500));
        assert_eq!(c.supplier_cache_ttl, Duration::ZERO);
        for bad in [
            "GA",
            "XX=http://mock/xx",
            "GA=ftp://mock/ga",
            "GA=mock/ga",
            "GA=http://mock/ga,GA=http://mock/ga2",
            ",",
        ] {
            let err = config(&[("SUPPLIER_URLS", bad)]).unwrap_err();
            assert_eq!(err.name, "SUPPLIER_URLS", "{bad}");
        }
        let err = config(&[
            ("SUPPLIER_TIMEOUT_MS", "5000"),
            ("SUPPLIER_DEADLINE_MS", "1000"),
        ])
        .unwrap_err();
        assert_eq!(err.name, "SUPPLIER_DEADLINE_MS");
    }

    #[test]
    fn every_variable_is_read() {
        let c = config(&[
            ("REDIS_URL", "redis://redis:6379/2"),
            ("METRICS_ADDR", "127.0.0.1:19091"),
            ("RESULTS_TTL_SECS", "60"),
            ("CONSUMER_GROUP", "g1"),
            ("CONSUMER_NAME", "worker-7"),
            ("PROVIDER_CONCURRENCY", "8"),
            ("MOCK_LATENCY_MS", "0"),
            ("MOCK_FAILURE_RATE", "0.25"),
            ("CLAIM_IDLE_MS", "2000"),
            ("MAX_DELIVERIES", "5"),
            ("SHUTDOWN_GRACE_SECS", "0"),
            ("LOG_FORMAT", "json"),
        ])
        .unwrap();
        assert_eq!(c.redis.to_string(), "redis://redis:6379/2");
        assert_eq!(c.metrics_addr, "127.0.0.1:19091".parse().unwrap());
        assert_eq!(c.results_ttl, Duration::from_secs(60));
        assert_eq!(
            (c.consumer_group.as_str(), c.consumer_name.as_str()),
            ("g1", "worker-7")
        );
        assert_eq!(c.concurrency, 8);
        assert_eq!(
            c.mock_latency,
            LatencyRange {
                min_ms: 0,
                max_ms: 0
            }
        );
        assert_eq!(c.mock_failure_rate, 0.25);
        assert_eq!(c.claim_idle, Duration::from_secs(2));
        assert_eq!(c.max_deliveries, 5);
        assert_eq!(c.shutdown_grace, Duration::ZERO);
        assert_eq!(c.log_format, LogFormat::Json);
    }

    #[test]
    fn latency_is_a_range_or_one_number() {
        assert_eq!(
            LatencyRange::parse("3000"),
            Ok(LatencyRange {
                min_ms: 3000,
                max_ms: 3000
            })
        );
        assert_eq!(
            LatencyRange::parse("100-250"),
            Ok(LatencyRange {
                min_ms: 100,
                max_ms: 250
            })
        );
        for bad in ["250-100", "-5", "1-", "a-b", "1-2-3", "1.5", "999999999"] {
            assert!(LatencyRange::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn a_bad_value_is_named_in_one_line() {
        let err = config(&[("MOCK_FAILURE_RATE", "1.5")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "MOCK_FAILURE_RATE=1.5 is not valid: expected a number from 0 to 1"
        );
        let err = config(&[("MOCK_LATENCY_MS", "fast")]).unwrap_err();
        assert_eq!(err.name, "MOCK_LATENCY_MS");
        assert!(!err.to_string().contains('\n'));
        for (name, value) in [
            ("PROVIDER_CONCURRENCY", "0"),
            ("MAX_DELIVERIES", "three"),
            ("CLAIM_IDLE_MS", "-1"),
            ("METRICS_ADDR", "localhost"),
            ("LOG_FORMAT", "xml"),
            ("CONSUMER_NAME", "two words"),
            ("MOCK_FAILURE_RATE", "NaN"),
        ] {
            let err = config(&[(name, value)]).unwrap_err();
            assert_eq!(err.name, name, "{value}");
        }
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::{Strategy, any, prop_assert, prop_oneof, proptest};
    use proptest::test_runner::{Config as Cases, RngSeed};

    use super::*;

    /// Every variable the provider reads, bar the files of the TLS settings.
    const NAMES: [&str; 21] = [
        "METRICS_ADDR",
        "RESULTS_TTL_SECS",
        "CONSUMER_GROUP",
        "CONSUMER_NAME",
        "PROVIDER_CONCURRENCY",
        "MOCK_LATENCY_MS",
        "MOCK_FAILURE_RATE",
        "CLAIM_IDLE_MS",
        "MAX_DELIVERIES",
        "SHUTDOWN_GRACE_SECS",
        "LOG_FORMAT",
        "SUPPLIER_URLS",
        "SUPPLIER_TIMEOUT_MS",
        "SUPPLIER_DEADLINE_MS",
        "SUPPLIER_RETRIES",
        "SUPPLIER_MAX_CONNECTIONS",
        "SUPPLIER_BREAKER_FAILURES",
        "SUPPLIER_BREAKER_OPEN_MS",
        "MAX_OFFERS_PER_ANSWER",
        "MAX_RESULT_EVENT_BYTES",
        "MAX_SEARCH_EVENT_BYTES",
    ];

    /// Values: any text, or text made of what numbers and URL lists are
    /// made of.
    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[0-9 .eE+-]{0,24}",
            "([a-zA-Z]{0,3}=(http|https)?:?/{0,2}[a-z0-9:@%.?#/\\[\\]-]{0,30},?){0,3}",
        ]
    }

    proptest! {
        #![proptest_config(Cases {
            cases: 1500,
            rng_seed: RngSeed::Fixed(0x5EED_F00D),
            failure_persistence: None,
            ..Cases::default()
        })]

        /// No value of any variable panics the provider's configuration, and
        /// what it accepts keeps its own rules.
        #[test]
        fn no_value_panics_the_provider_configuration(
            name in proptest::sample::select(&NAMES[..]),
            text in value(),
        ) {
            let vars = Vars::from_pairs(&[(name, text.as_str())]);
            if let Ok(c) = Config::from_vars(&vars) {
                for supplier in &c.suppliers.http {
                    prop_assert!(c.suppliers.deadline >= supplier.timeout);
                }
                prop_assert!(c.concurrency >= 1);
                let bounds = c.suppliers.answer_bounds;
                prop_assert!(bounds.max_search_bytes >= bounds.max_event_bytes);
            }
        }
    }
}
