//! The mock's configuration, read once at start from environment variables.
//!
//! `MOCK_LATENCY_MS` and `MOCK_FAILURE_RATE` mean what they mean for the
//! in-process simulation: the latency range is split into one band per airline
//! (so answers arrive one by one) and the failure rate is each call's chance of
//! a 500. `MOCK_BEHAVIOUR` then overrides any airline's behaviour with the same
//! JSON the admin endpoint takes, e.g. `{"GA":{"fault":"hang"}}`.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use service_runtime::config::{ConfigError, Vars};
use service_runtime::telemetry::LogFormat;
use timetable::catalogue::CARRIERS;

use timetable::latency_range::LatencyRange;

use crate::behaviour::{Behaviour, BehaviourPatch};
use crate::https::TlsFiles;

/// Everything the mock can be told from outside.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where the airline APIs and the admin endpoints are served.
    pub http_addr: SocketAddr,
    /// Each airline's behaviour at start, by airline code.
    pub behaviours: BTreeMap<&'static str, Behaviour>,
    /// Log line format.
    pub log_format: LogFormat,
    /// HTTPS instead of HTTP, when a certificate is given.
    pub tls: Option<TlsFiles>,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_vars(&Vars::from_env())
    }

    /// Reads and validates every variable.
    pub fn from_vars<F: Fn(&str) -> Option<String>>(vars: &Vars<F>) -> Result<Config, ConfigError> {
        let http_addr = http_addr(vars)?;
        let latency = vars.parse_with(
            "MOCK_LATENCY_MS",
            LatencyRange {
                min_ms: 200,
                max_ms: 1500,
            },
            LatencyRange::parse,
        )?;
        let failure_rate =
            vars.parse_with("MOCK_FAILURE_RATE", 0.0, |v| match v.parse::<f64>() {
                Ok(rate) if (0.0..=1.0).contains(&rate) => Ok(rate),
                _ => Err("expected a number from 0 to 1".to_owned()),
            })?;
        let mut behaviours = default_behaviours(latency, failure_rate);
        let overrides = vars.parse_with("MOCK_BEHAVIOUR", BTreeMap::new(), |v| {
            serde_json::from_str::<BTreeMap<String, BehaviourPatch>>(v)
                .map_err(|e| format!("expected a JSON object of airline code to behaviour ({e})"))
        })?;
        for (code, patch) in overrides {
            let Some(behaviour) = behaviours.get_mut(code.as_str()) else {
                return Err(ConfigError {
                    name: "MOCK_BEHAVIOUR",
                    value: vars.raw("MOCK_BEHAVIOUR").unwrap_or_default(),
                    reason: format!("{code} is not one of the airlines"),
                });
            };
            behaviour.apply(patch).map_err(|reason| ConfigError {
                name: "MOCK_BEHAVIOUR",
                value: vars.raw("MOCK_BEHAVIOUR").unwrap_or_default(),
                reason: format!("{code}: {reason}"),
            })?;
        }
        Ok(Config {
            http_addr,
            behaviours,
            log_format: vars.parse("LOG_FORMAT", LogFormat::Text)?,
            tls: tls_files(vars)?,
        })
    }
}

/// `MOCK_HTTPS_ADDR` with `MOCK_TLS_CERT_FILE` and `MOCK_TLS_KEY_FILE` (all
/// or none), and `MOCK_TLS_CLIENT_CA_FILE` to require client certificates;
/// checked now.
fn tls_files<F: Fn(&str) -> Option<String>>(
    vars: &Vars<F>,
) -> Result<Option<TlsFiles>, ConfigError> {
    let cert = vars.raw("MOCK_TLS_CERT_FILE").filter(|v| !v.is_empty());
    let key = vars.raw("MOCK_TLS_KEY_FILE").filter(|v| !v.is_empty());
    let client_ca = vars
        .raw("MOCK_TLS_CLIENT_CA_FILE")
        .filter(|v| !v.is_empty());
    let addr = vars.parse_with("MOCK_HTTPS_ADDR", None, |v| {
        v.parse()
            .map(Some)
            .map_err(|_| "expected host:port, e.g. 0.0.0.0:8443".to_owned())
    })?;
    let files = match (cert, key, addr) {
        (None, None, None) if client_ca.is_none() => return Ok(None),
        (Some(cert_file), Some(key_file), Some(addr)) => TlsFiles {
            http2: vars.parse("MOCK_HTTPS_HTTP2", true)?,
            addr,
            cert_file,
            key_file,
            client_ca_file: client_ca,
        },
        _ => {
            return Err(ConfigError {
                name: "MOCK_TLS_CERT_FILE",
                value: vars.raw("MOCK_TLS_CERT_FILE").unwrap_or_default(),
                reason: "give MOCK_HTTPS_ADDR, MOCK_TLS_CERT_FILE and MOCK_TLS_KEY_FILE together"
                    .to_owned(),
            });
        }
    };
    crate::https::acceptor(&files).map_err(|reason| ConfigError {
        name: "MOCK_TLS_CERT_FILE",
        value: files.cert_file.clone(),
        reason,
    })?;
    Ok(Some(files))
}

/// `HTTP_ADDR` alone, for `--healthcheck`, which must not fail on an
/// unrelated bad variable.
pub fn http_addr<F: Fn(&str) -> Option<String>>(vars: &Vars<F>) -> Result<SocketAddr, ConfigError> {
    vars.parse_with("HTTP_ADDR", ([0, 0, 0, 0], 8090).into(), |v| {
        v.parse()
            .map_err(|_| "expected host:port, e.g. 0.0.0.0:8090".to_owned())
    })
}

/// One latency band per airline across `latency`, in catalogue order, each with
/// `failure_rate`: the in-process simulation's timing, minus its overlap.
fn default_behaviours(
    latency: LatencyRange,
    failure_rate: f64,
) -> BTreeMap<&'static str, Behaviour> {
    let band = (latency.max_ms - latency.min_ms) / CARRIERS.len() as u64;
    CARRIERS
        .iter()
        .enumerate()
        .map(|(i, carrier)| {
            let min_ms = latency.min_ms + band * i as u64;
            let behaviour = Behaviour {
                latency: LatencyRange {
                    min_ms,
                    max_ms: if i + 1 == CARRIERS.len() {
                        latency.max_ms
                    } else {
                        min_ms + band
                    },
                },
                error_rate: failure_rate,
                ..Behaviour::default()
            };
            (carrier.code, behaviour)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::behaviour::Fault;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_vars(&Vars::from_pairs(pairs))
    }

    #[test]
    fn the_latency_range_is_split_into_one_band_per_airline() {
        let c = config(&[("MOCK_LATENCY_MS", "0-600"), ("MOCK_FAILURE_RATE", "0.5")]).unwrap();
        assert_eq!(c.behaviours.len(), 6);
        let ga = &c.behaviours["GA"];
        assert_eq!(
            ga.latency,
            LatencyRange {
                min_ms: 0,
                max_ms: 100
            }
        );
        assert_eq!(
            c.behaviours["SJ"].latency,
            LatencyRange {
                min_ms: 500,
                max_ms: 600
            }
        );
        assert!(c.behaviours.values().all(|b| b.error_rate == 0.5));
        let zero = config(&[("MOCK_LATENCY_MS", "0")]).unwrap();
        assert!(zero.behaviours.values().all(|b| b.latency.max_ms == 0));
    }

    #[test]
    fn behaviour_overrides_apply_per_airline() {
        let c = config(&[(
            "MOCK_BEHAVIOUR",
            r#"{"GA":{"fault":"rate_limited","retry_after_secs":2},"JT":{"latency_ms":"5"}}"#,
        )])
        .unwrap();
        assert_eq!(c.behaviours["GA"].fault, Fault::RateLimited);
        assert_eq!(c.behaviours["GA"].retry_after_secs, 2);
        assert_eq!(
            c.behaviours["JT"].latency,
            LatencyRange {
                min_ms: 5,
                max_ms: 5
            }
        );
        assert_eq!(c.behaviours["QZ"].fault, Fault::None);
    }

    #[test]
    fn bad_values_are_named() {
        for (name, value) in [
            ("HTTP_ADDR", "nowhere"),
            ("MOCK_LATENCY_MS", "9-1"),
            ("MOCK_FAILURE_RATE", "2"),
            ("MOCK_BEHAVIOUR", "{"),
            ("MOCK_BEHAVIOUR", r#"{"XX":{}}"#),
            ("MOCK_BEHAVIOUR", r#"{"GA":{"fault":"explode"}}"#),
            ("MOCK_BEHAVIOUR", r#"{"GA":{"error_rate":3}}"#),
        ] {
            let err = config(&[(name, value)]).unwrap_err();
            assert_eq!(err.name, name, "{value}");
        }
    }
}
