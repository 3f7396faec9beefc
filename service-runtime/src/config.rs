//! Reading configuration from environment variables.
//!
//! Services describe their configuration as a typed struct built from a lookup
//! function (`Fn(&str) -> Option<String>`), so tests pass a map instead of
//! mutating the process environment. Every value is validated at start; the first
//! bad one stops the service with a single line naming it.

use std::fmt::Display;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use crate::files::read_bounded;
use crate::redact::redact_url;
use crate::redis_endpoint::{ClientIdentity, RedisEndpoint, TlsOptions, TrustedCas};

/// The variable naming a PEM file of CAs to trust for `rediss://`.
const REDIS_CA_FILE: &str = "REDIS_CA_FILE";
/// The variable naming a PEM file with the client certificate chain.
const REDIS_CLIENT_CERT_FILE: &str = "REDIS_CLIENT_CERT_FILE";
/// The variable naming a PEM file with the client certificate's private key.
const REDIS_CLIENT_KEY_FILE: &str = "REDIS_CLIENT_KEY_FILE";

/// Reads the file at `path`, named by the variable `var`, whole, through
/// [`read_bounded`]. Fails with a [`ConfigError`] naming both when it is not
/// a regular file, is larger than [`crate::files::MAX_SETTING_FILE_BYTES`],
/// or cannot be read.
pub fn read_setting_file(var: &'static str, path: &str) -> Result<Vec<u8>, ConfigError> {
    read_bounded(Path::new(path)).map_err(|reason| ConfigError {
        name: var,
        value: path.to_owned(),
        reason,
    })
}

/// A variable holds a value the service cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}={value} is not valid: {reason}")]
pub struct ConfigError {
    /// The environment variable.
    pub name: &'static str,
    /// Its value as given.
    pub value: String,
    /// What a valid value looks like.
    pub reason: String,
}

/// Looks variables up through `lookup`; [`Vars::from_env`] reads the process environment.
pub struct Vars<F> {
    lookup: F,
}

impl Vars<fn(&str) -> Option<String>> {
    /// Variables from the process environment.
    pub fn from_env() -> Self {
        Vars {
            lookup: |name| std::env::var(name).ok(),
        }
    }

    /// Variables from fixed name/value pairs; what tests use instead of the
    /// process environment.
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Vars<impl Fn(&str) -> Option<String> + use<>> {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Vars::new(move |name: &str| map.get(name).cloned())
    }
}

impl<F: Fn(&str) -> Option<String>> Vars<F> {
    /// Variables from an arbitrary lookup (tests use a map).
    pub fn new(lookup: F) -> Self {
        Vars { lookup }
    }

    /// The raw value, if set and not empty.
    pub fn raw(&self, name: &str) -> Option<String> {
        (self.lookup)(name).filter(|v| !v.trim().is_empty())
    }

    /// Parses `name` with `parse`, or returns `default` when unset.
    pub fn parse_with<T>(
        &self,
        name: &'static str,
        default: T,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        match self.raw(name) {
            None => Ok(default),
            Some(value) => parse(value.trim()).map_err(|reason| ConfigError {
                name,
                value,
                reason,
            }),
        }
    }

    /// Parses `name` with [`FromStr`], or returns `default` when unset.
    pub fn parse<T>(&self, name: &'static str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        self.parse_with(name, default, |v| v.parse::<T>().map_err(|e| e.to_string()))
    }

    /// An integer within `range`, or `default` when unset.
    pub fn int_in(
        &self,
        name: &'static str,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<u64, ConfigError> {
        self.parse_with(name, default, |v| match v.parse::<u64>() {
            Ok(n) if range.contains(&n) => Ok(n),
            _ => Err(format!(
                "expected a whole number from {} to {}",
                range.start(),
                range.end()
            )),
        })
    }

    /// A duration in whole seconds within `range`.
    pub fn secs(
        &self,
        name: &'static str,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<Duration, ConfigError> {
        self.int_in(name, default, range).map(Duration::from_secs)
    }

    /// A duration in whole milliseconds within `range`.
    pub fn millis(
        &self,
        name: &'static str,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<Duration, ConfigError> {
        self.int_in(name, default, range).map(Duration::from_millis)
    }

    /// `RESULTS_TTL_SECS`, read the same way by both services: from one second
    /// to seven days (default 30 minutes).
    pub fn results_ttl(&self) -> Result<Duration, ConfigError> {
        self.secs("RESULTS_TTL_SECS", 1800, 1..=7 * 24 * 3600)
    }

    /// The file named by `name`, read through [`read_setting_file`] and
    /// checked with `check`; `None` when unset.
    fn file<T>(
        &self,
        name: &'static str,
        check: impl FnOnce(Vec<u8>) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        self.raw(name)
            .map(|path| {
                let path = path.trim();
                let bytes = read_setting_file(name, path)?;
                check(bytes).map_err(|reason| ConfigError {
                    name,
                    value: path.to_owned(),
                    reason,
                })
            })
            .transpose()
    }

    /// The error for `set` given without `missing`.
    fn needs(&self, set: &'static str, missing: &str) -> ConfigError {
        ConfigError {
            name: set,
            value: self.raw(set).unwrap_or_default(),
            reason: format!("needs {missing} too"),
        }
    }

    /// The TLS settings for `rediss://` URLs: `REDIS_CA_FILE` (CAs to trust
    /// instead of the system roots) and `REDIS_CLIENT_CERT_FILE` with
    /// `REDIS_CLIENT_KEY_FILE` (a client certificate, for servers that ask for
    /// one). The files are read and checked now, so a bad one stops the
    /// service at start.
    pub fn redis_tls(&self) -> Result<TlsOptions, ConfigError> {
        let cas = self.file(REDIS_CA_FILE, TrustedCas::from_pem)?;
        let cert = self.file(REDIS_CLIENT_CERT_FILE, ClientIdentity::certificates)?;
        let key = self.file(REDIS_CLIENT_KEY_FILE, ClientIdentity::key)?;
        let identity = match (cert, key) {
            (Some(cert), Some(key)) => Some(ClientIdentity::new(cert, key)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(self.needs(REDIS_CLIENT_CERT_FILE, REDIS_CLIENT_KEY_FILE));
            }
            (None, Some(_)) => {
                return Err(self.needs(REDIS_CLIENT_KEY_FILE, REDIS_CLIENT_CERT_FILE));
            }
        };
        Ok(TlsOptions { cas, identity })
    }

    /// The Redis server in `name` (a URL, `default` when unset), with the TLS
    /// settings of [`Vars::redis_tls`]. The error shows the URL with its password masked.
    pub fn redis_endpoint(
        &self,
        name: &'static str,
        default: &str,
    ) -> Result<RedisEndpoint, ConfigError> {
        let tls = self.redis_tls()?;
        let url = self.raw(name).unwrap_or_else(|| default.to_owned());
        RedisEndpoint::parse(url.trim(), tls).map_err(|reason| ConfigError {
            name,
            value: redact_url(&url),
            reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vars<impl Fn(&str) -> Option<String>> {
        Vars::from_pairs(pairs)
    }

    #[test]
    fn defaults_apply_when_unset_or_blank() {
        let v = vars(&[("B", "  ")]);
        assert_eq!(v.int_in("A", 7, 1..=9), Ok(7));
        assert_eq!(v.int_in("B", 7, 1..=9), Ok(7));
    }

    #[test]
    fn errors_name_the_variable_and_value() {
        let v = vars(&[("SEARCH_TIMEOUT_SECS", "soon")]);
        let err = v.secs("SEARCH_TIMEOUT_SECS", 60, 1..=3600).unwrap_err();
        assert_eq!(
            err.to_string(),
            "SEARCH_TIMEOUT_SECS=soon is not valid: expected a whole number from 1 to 3600"
        );
    }

    #[test]
    fn out_of_range_is_rejected() {
        let v = vars(&[("N", "0")]);
        assert!(v.int_in("N", 5, 1..=10).is_err());
    }

    #[test]
    fn redis_urls_are_checked_and_errors_hide_the_password() {
        let ok = vars(&[("REDIS_URL", "rediss://app:s3cret@127.0.0.1:6380")])
            .redis_endpoint("REDIS_URL", "redis://127.0.0.1:6379")
            .unwrap();
        assert!(ok.is_tls());
        let default = vars(&[]).redis_endpoint("REDIS_URL", "redis://127.0.0.1:6379");
        assert_eq!(default.unwrap().to_string(), "redis://127.0.0.1:6379");
        let err = vars(&[("REDIS_URL", "http://:s3cret@nope")])
            .redis_endpoint("REDIS_URL", "")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "REDIS_URL=http://:***@nope is not valid: expected redis://[user:password@]host:port[/db] or rediss://"
            ),
            "{err}"
        );
        assert!(!err.contains("s3cret"), "{err}");
    }

    #[test]
    fn a_missing_ca_file_is_named() {
        let err = vars(&[
            ("REDIS_URL", "rediss://127.0.0.1:6380"),
            ("REDIS_CA_FILE", "/nonexistent/ca.pem"),
        ])
        .redis_endpoint("REDIS_URL", "")
        .unwrap_err();
        assert_eq!(err.name, "REDIS_CA_FILE");
        assert!(err.reason.contains("cannot read"), "{}", err.reason);
    }

    #[test]
    fn every_tls_file_goes_through_the_setting_file_gate() {
        for var in [REDIS_CA_FILE, REDIS_CLIENT_CERT_FILE, REDIS_CLIENT_KEY_FILE] {
            let err = vars(&[("REDIS_URL", "rediss://127.0.0.1:6380"), (var, "/dev/zero")])
                .redis_endpoint("REDIS_URL", "")
                .unwrap_err();
            assert_eq!(err.name, var);
            assert_eq!(err.value, "/dev/zero");
            assert!(err.reason.contains("expected a regular file"), "{err}");
        }
    }

    #[test]
    fn a_client_certificate_needs_its_key_and_a_bad_key_is_not_quoted() {
        let dir = std::env::temp_dir().join(format!("vars-client-cert-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cert = dir.join("client.pem");
        std::fs::write(
            &cert,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let cert = cert.display().to_string();
        let err = vars(&[("REDIS_CLIENT_CERT_FILE", &cert)])
            .redis_tls()
            .unwrap_err();
        assert_eq!(err.name, "REDIS_CLIENT_CERT_FILE");
        assert_eq!(err.reason, "needs REDIS_CLIENT_KEY_FILE too");
        let key = dir.join("client.key");
        std::fs::write(&key, "s3cret key material\n").unwrap();
        let key = key.display().to_string();
        let err = vars(&[
            ("REDIS_CLIENT_CERT_FILE", &cert),
            ("REDIS_CLIENT_KEY_FILE", &key),
        ])
        .redis_tls()
        .unwrap_err();
        assert_eq!(err.name, "REDIS_CLIENT_KEY_FILE");
        assert!(!err.to_string().contains("s3cret"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_refused_setting_file_names_the_variable_and_the_path() {
        for path in ["/dev/zero", "/nonexistent/ca.pem"] {
            let line = read_setting_file("REDIS_CA_FILE", path)
                .unwrap_err()
                .to_string();
            assert!(
                line.starts_with(&format!("REDIS_CA_FILE={path} is not valid: ")),
                "{line}"
            );
        }
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, RngSeed};

    use super::*;

    /// A fixed seed so CI runs the same cases every time; nothing on disk.
    fn config(cases: u32) -> Config {
        Config {
            cases,
            rng_seed: RngSeed::Fixed(0x5EED_F00D),
            failure_persistence: None,
            ..Config::default()
        }
    }

    /// Setting values: any text, or text made of what numbers and URLs are
    /// made of.
    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[0-9 .+-]{0,24}",
            "(redis|rediss|http)://[a-z0-9:@%./\\[\\]-]{0,40}(,[a-z0-9:/@.]{0,20}){0,2}",
        ]
    }

    proptest! {
        #![proptest_config(config(1000))]

        /// No value panics a setting's parser, and what is accepted is in
        /// range.
        #[test]
        fn no_value_panics_a_setting_parser(text in value()) {
            let vars = Vars::from_pairs(&[
                ("N", text.as_str()),
                ("REDIS_URL", text.as_str()),
            ]);
            if let Ok(n) = vars.int_in("N", 5, 1..=1000) {
                prop_assert!((1..=1000).contains(&n));
            }
            if let Ok(d) = vars.millis("N", 5, 0..=u64::MAX) {
                prop_assert!(d.as_millis() <= u128::from(u64::MAX));
            }
            let _ = vars.secs("N", 5, 0..=u64::MAX);
            let _ = vars.parse::<f64>("N", 0.0);
            let _ = vars.results_ttl();
            let _ = vars.redis_target();
            let cluster = Vars::from_pairs(&[("REDIS_CLUSTER_NODES", text.as_str())]);
            let _ = cluster.redis_target();
        }
    }
}
