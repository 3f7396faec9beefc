//! The suppliers as configuration: `SUPPLIERS_FILE` (TOML) lists any number
//! of partner APIs, each with its own code, adapter style, base URL,
//! credentials, the airlines it may sell, and its own call settings falling
//! back to the `SUPPLIER_*` variables. `SUPPLIER_URLS` stays as the short form
//! for the six built-in airline APIs.
//!
//! Everything is checked at start; the first mistake stops the service with
//! one line naming the file, the supplier and the field. Secrets are named by
//! where they live (`*_env`, `*_file`) and resolved here ([`super::secret`]).

use std::time::Duration;

use serde::Deserialize;
use service_runtime::config::ConfigError;

use crate::supplier::adapters::Style;
use crate::supplier::secret::{Secret, Source, resolve};
use crate::supplier::tls::TlsFiles;

/// One partner API, fully resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct SupplierSettings {
    /// Names the supplier in events, metrics and cache keys.
    pub code: &'static str,
    /// For people (logs).
    pub name: String,
    /// Which adapter speaks its API.
    pub style: Style,
    /// Base URL, no trailing `/`.
    pub base_url: String,
    /// Airline codes it may sell; offers for others are dropped.
    pub airlines: Vec<String>,
    /// Longest one call may take, connection included.
    pub timeout: Duration,
    /// Calls after the first for a failure worth retrying.
    pub retries: u32,
    /// Calls (and so connections) in flight.
    pub max_connections: usize,
    /// Consecutive failures that open its circuit.
    pub breaker_failures: u32,
    /// How long an open circuit refuses calls.
    pub breaker_open: Duration,
    /// How long its answers are reused; zero: not cached.
    pub cache_ttl: Duration,
    /// How calls prove who is asking.
    pub auth: AuthSettings,
    /// CA and client certificate for HTTPS.
    pub tls: TlsFiles,
}

/// A supplier's credentials.
#[derive(Debug, Clone, PartialEq)]
pub enum AuthSettings {
    /// No credentials.
    None,
    /// One static header on every call (an API key, `Authorization: Bearer …`).
    Header {
        /// Header name.
        name: hyper::header::HeaderName,
        /// Its value.
        value: Secret,
    },
    /// OAuth2 client credentials: a token from `token_url`, sent as a bearer.
    OAuth2 {
        /// Where tokens are fetched (form-encoded POST).
        token_url: String,
        /// The client id.
        client_id: String,
        /// The client secret.
        client_secret: Secret,
        /// Optional `scope` of the token request.
        scope: Option<String>,
    },
}

/// The `SUPPLIER_*` values each supplier falls back to.
#[derive(Debug, Clone, PartialEq)]
pub struct Defaults {
    /// `SUPPLIER_TIMEOUT_MS`.
    pub timeout: Duration,
    /// `SUPPLIER_RETRIES`.
    pub retries: u32,
    /// `SUPPLIER_MAX_CONNECTIONS`.
    pub max_connections: usize,
    /// `SUPPLIER_BREAKER_FAILURES`.
    pub breaker_failures: u32,
    /// `SUPPLIER_BREAKER_OPEN_MS`.
    pub breaker_open: Duration,
    /// `SUPPLIER_CACHE_TTL_SECS` (30 s for HTTP suppliers unless set).
    pub cache_ttl: Duration,
    /// `SUPPLIER_DEADLINE_MS`: no supplier's timeout may exceed it.
    pub deadline: Duration,
}

impl Defaults {
    /// A supplier of the short form (`SUPPLIER_URLS`): every setting default.
    pub fn settings(&self, code: &'static str, style: Style, base_url: String) -> SupplierSettings {
        SupplierSettings {
            code,
            name: code.to_owned(),
            style,
            base_url,
            airlines: vec![code.to_owned()],
            timeout: self.timeout,
            retries: self.retries,
            max_connections: self.max_connections,
            breaker_failures: self.breaker_failures,
            breaker_open: self.breaker_open,
            cache_ttl: self.cache_ttl,
            auth: AuthSettings::None,
            tls: TlsFiles::default(),
        }
    }
}

/// The file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    supplier: Vec<Entry>,
}

/// One `[[supplier]]` table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    code: Option<String>,
    name: Option<String>,
    style: Option<String>,
    base_url: Option<String>,
    airlines: Option<Vec<String>>,
    timeout_ms: Option<u64>,
    retries: Option<u64>,
    max_connections: Option<u64>,
    breaker_failures: Option<u64>,
    breaker_open_ms: Option<u64>,
    cache_ttl_secs: Option<u64>,
    ca_file: Option<String>,
    client_cert_file: Option<String>,
    client_key_file: Option<String>,
    auth: Option<AuthEntry>,
}

/// A `[supplier.auth]` table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthEntry {
    #[serde(rename = "type")]
    kind: String,
    header: Option<String>,
    secret_env: Option<String>,
    secret_file: Option<String>,
    token_url: Option<String>,
    client_id: Option<String>,
    client_secret_env: Option<String>,
    client_secret_file: Option<String>,
    scope: Option<String>,
}

/// Reads and checks the suppliers file at `path`.
pub fn read(
    path: &str,
    defaults: &Defaults,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Vec<SupplierSettings>, ConfigError> {
    let fail = |reason: String| ConfigError {
        name: "SUPPLIERS_FILE",
        value: path.to_owned(),
        reason,
    };
    let bytes = service_runtime::config::read_setting_file("SUPPLIERS_FILE", path)?;
    let text = String::from_utf8(bytes).map_err(|_| fail("not UTF-8 text".to_owned()))?;
    parse(&text, defaults, lookup).map_err(fail)
}

/// The suppliers in `text`; the error names the supplier and the field.
pub fn parse(
    text: &str,
    defaults: &Defaults,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Vec<SupplierSettings>, String> {
    let file: File = toml::from_str(text)
        .map_err(|e| format!("not valid TOML for a suppliers file: {}", e.message()))?;
    if file.supplier.is_empty() {
        return Err("lists no [[supplier]]".to_owned());
    }
    let mut suppliers: Vec<SupplierSettings> = Vec::new();
    for (index, entry) in file.supplier.into_iter().enumerate() {
        let label = entry
            .code
            .clone()
            .unwrap_or_else(|| format!("#{}", index + 1));
        let settings = entry
            .resolve(defaults, &lookup)
            .map_err(|(field, why)| format!("supplier {label}: {field}: {why}"))?;
        if suppliers.iter().any(|s| s.code == settings.code) {
            return Err(format!("supplier {label}: code: listed twice"));
        }
        suppliers.push(settings);
    }
    Ok(suppliers)
}

/// A field's name and what is wrong with it.
type FieldError = (&'static str, String);

fn required<T>(value: Option<T>, field: &'static str) -> Result<T, FieldError> {
    value.ok_or((field, "missing".to_owned()))
}

fn in_range(
    value: Option<u64>,
    field: &'static str,
    range: std::ops::RangeInclusive<u64>,
    default: u64,
) -> Result<u64, FieldError> {
    match value {
        None => Ok(default),
        Some(v) if range.contains(&v) => Ok(v),
        Some(_) => Err((
            field,
            format!("expected {} to {}", range.start(), range.end()),
        )),
    }
}

impl Entry {
    fn resolve(
        self,
        defaults: &Defaults,
        lookup: &impl Fn(&str) -> Option<String>,
    ) -> Result<SupplierSettings, FieldError> {
        let code = required(self.code, "code")?;
        if code.is_empty()
            || code.len() > 32
            || !code
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err((
                "code",
                "expected 1 to 32 letters, digits, `_` or `-`".to_owned(),
            ));
        }
        let style_name = required(self.style, "style")?;
        let style = Style::parse(&style_name).ok_or_else(|| {
            (
                "style",
                format!("`{style_name}` is not one of {}", Style::names()),
            )
        })?;
        let base_url =
            base_url(&required(self.base_url, "base_url")?).map_err(|e| ("base_url", e))?;
        let airlines = required(self.airlines, "airlines")?;
        if airlines.is_empty()
            || airlines.iter().any(|a| {
                a.len() != 2
                    || !a
                        .bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
            })
        {
            return Err((
                "airlines",
                "expected a non-empty list of two-character IATA codes".to_owned(),
            ));
        }
        let timeout = Duration::from_millis(in_range(
            self.timeout_ms,
            "timeout_ms",
            1..=120_000,
            defaults.timeout.as_millis() as u64,
        )?);
        if timeout > defaults.deadline {
            return Err((
                "timeout_ms",
                format!(
                    "must be at most SUPPLIER_DEADLINE_MS ({} ms)",
                    defaults.deadline.as_millis()
                ),
            ));
        }
        Ok(SupplierSettings {
            code: intern(code),
            name: self.name.unwrap_or_default(),
            style,
            base_url,
            airlines,
            timeout,
            retries: in_range(self.retries, "retries", 0..=10, u64::from(defaults.retries))? as u32,
            max_connections: in_range(
                self.max_connections,
                "max_connections",
                1..=10_000,
                defaults.max_connections as u64,
            )? as usize,
            breaker_failures: in_range(
                self.breaker_failures,
                "breaker_failures",
                1..=1000,
                u64::from(defaults.breaker_failures),
            )? as u32,
            breaker_open: Duration::from_millis(in_range(
                self.breaker_open_ms,
                "breaker_open_ms",
                1..=3_600_000,
                defaults.breaker_open.as_millis() as u64,
            )?),
            cache_ttl: Duration::from_secs(in_range(
                self.cache_ttl_secs,
                "cache_ttl_secs",
                0..=86_400,
                defaults.cache_ttl.as_secs(),
            )?),
            auth: match self.auth {
                None => AuthSettings::None,
                Some(auth) => auth.resolve(lookup)?,
            },
            tls: tls_files(self.ca_file, self.client_cert_file, self.client_key_file)?,
        })
    }
}

impl AuthEntry {
    fn resolve(self, lookup: &impl Fn(&str) -> Option<String>) -> Result<AuthSettings, FieldError> {
        let secret = |env: Option<String>, file: Option<String>, field: &'static str| {
            let source = match (env, file) {
                (Some(name), None) => Source::Env(name),
                (None, Some(path)) => Source::File(path),
                _ => {
                    return Err((
                        field,
                        "give exactly one of the _env and _file forms".to_owned(),
                    ));
                }
            };
            resolve(&source, lookup).map_err(|why| (field, why))
        };
        match self.kind.as_str() {
            "bearer" | "header" => {
                let name = if self.kind == "bearer" {
                    hyper::header::AUTHORIZATION
                } else {
                    let name = required(self.header, "auth.header")?;
                    hyper::header::HeaderName::from_bytes(name.as_bytes())
                        .map_err(|_| ("auth.header", format!("`{name}` is not a header name")))?
                };
                let value = secret(self.secret_env, self.secret_file, "auth.secret_env")?;
                let value = if self.kind == "bearer" {
                    Secret::new(format!("Bearer {}", value.expose()))
                } else {
                    value
                };
                if hyper::header::HeaderValue::from_str(value.expose()).is_err() {
                    return Err((
                        "auth.secret_env",
                        "the secret is not a valid header value".to_owned(),
                    ));
                }
                Ok(AuthSettings::Header { name, value })
            }
            "oauth2" => Ok(AuthSettings::OAuth2 {
                token_url: base_url(&required(self.token_url, "auth.token_url")?)
                    .map_err(|e| ("auth.token_url", e))?,
                client_id: required(self.client_id, "auth.client_id")?,
                client_secret: secret(
                    self.client_secret_env,
                    self.client_secret_file,
                    "auth.client_secret_env",
                )?,
                scope: self.scope,
            }),
            other => Err((
                "auth.type",
                format!("`{other}` is not one of bearer, header, oauth2"),
            )),
        }
    }
}

/// The TLS files, checked now (readable PEM, a certificate with its key) so
/// a mistake stops the start rather than every call.
fn tls_files(
    ca_file: Option<String>,
    client_cert_file: Option<String>,
    client_key_file: Option<String>,
) -> Result<TlsFiles, FieldError> {
    let files = TlsFiles {
        ca_file,
        client_cert_file,
        client_key_file,
    };
    if !files.is_default() {
        let field = match (&files.client_cert_file, &files.client_key_file) {
            (None, None) => "ca_file",
            _ => "client_cert_file",
        };
        crate::supplier::tls::client_config(&files).map_err(|why| (field, why))?;
    }
    Ok(files)
}

/// `url` without a trailing `/`, if it is `http://` or `https://` with a host
/// and no query.
pub fn base_url(url: &str) -> Result<String, String> {
    let url = url.trim().trim_end_matches('/');
    let uri: hyper::Uri = url.parse().map_err(|_| format!("`{url}` is not a URL"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https"))
        || uri.host().is_none()
        || uri.query().is_some()
    {
        return Err(format!("`{url}` must be http(s)://host[:port][/path]"));
    }
    Ok(url.to_owned())
}

/// A supplier code as a `&'static str`, the form metric labels and events
/// take. Codes are read once at start and few; each distinct code is stored
/// once for the life of the process, however often configuration is read.
pub fn intern(code: String) -> &'static str {
    static CODES: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
    let mut codes = CODES.lock().expect("code table poisoned");
    if let Some(known) = codes.iter().find(|c| **c == code) {
        return known;
    }
    let code: &'static str = Box::leak(code.into_boxed_str());
    codes.push(code);
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Defaults {
        Defaults {
            timeout: Duration::from_secs(3),
            retries: 2,
            max_connections: 32,
            breaker_failures: 5,
            breaker_open: Duration::from_secs(10),
            cache_ttl: Duration::from_secs(30),
            deadline: Duration::from_secs(20),
        }
    }

    fn env(name: &str) -> Option<String> {
        match name {
            "GA_TOKEN" => Some("t0ken".to_owned()),
            "OAUTH_SECRET" => Some("s3cret".to_owned()),
            _ => None,
        }
    }

    const GOOD: &str = r#"
        [[supplier]]
        code = "GA"
        name = "Garuda Indonesia"
        style = "flights"
        base_url = "http://mock:8090/ga/"
        airlines = ["GA"]
        timeout_ms = 800
        cache_ttl_secs = 0
        [supplier.auth]
        type = "bearer"
        secret_env = "GA_TOKEN"

        [[supplier]]
        code = "XX"
        style = "offers"
        base_url = "http://partner.example/api"
        airlines = ["JT", "IW"]
        [supplier.auth]
        type = "oauth2"
        token_url = "http://partner.example/oauth/token"
        client_id = "flight-search"
        client_secret_env = "OAUTH_SECRET"
    "#;

    #[test]
    fn a_file_lists_suppliers_with_their_own_settings_and_defaults() {
        let suppliers = parse(GOOD, &defaults(), env).unwrap();
        let ga = &suppliers[0];
        assert_eq!(
            (ga.code, ga.style, ga.base_url.as_str()),
            ("GA", Style::Flights, "http://mock:8090/ga")
        );
        assert_eq!(
            (ga.timeout, ga.retries, ga.cache_ttl),
            (Duration::from_millis(800), 2, Duration::ZERO)
        );
        assert_eq!(
            ga.auth,
            AuthSettings::Header {
                name: hyper::header::AUTHORIZATION,
                value: Secret::new("Bearer t0ken")
            }
        );
        let xx = &suppliers[1];
        assert_eq!(
            (xx.code, xx.style, xx.timeout),
            ("XX", Style::Offers, Duration::from_secs(3))
        );
        assert_eq!(xx.airlines, ["JT", "IW"]);
        assert!(
            matches!(&xx.auth, AuthSettings::OAuth2 { client_id, .. } if client_id == "flight-search")
        );
        assert!(
            !format!("{suppliers:?}").contains("s3cret"),
            "a secret in Debug"
        );
        assert!(
            !format!("{suppliers:?}").contains("t0ken"),
            "a secret in Debug"
        );
    }

    /// One supplier table with every required field, plus `extra` lines.
    fn one(extra: &str) -> String {
        format!(
            "[[supplier]]\ncode = \"GA\"\nstyle = \"flights\"\nbase_url = \"http://m/ga\"\nairlines = [\"GA\"]\n{extra}"
        )
    }

    /// Each mistake and how its message starts.
    fn mistakes() -> Vec<(String, &'static str)> {
        let supplier = one;
        vec![
            (
                "[[supplier]]\nstyle = \"flights\"".to_owned(),
                "supplier #1: code: missing",
            ),
            (
                supplier("").replace("code = \"GA\"", "code = \"G A\""),
                "supplier G A: code:",
            ),
            (
                supplier("").replace("\"flights\"", "\"soap\""),
                "supplier GA: style: `soap` is not one of",
            ),
            (
                supplier("").replace("http://m/ga", "ftp://m/ga"),
                "supplier GA: base_url:",
            ),
            (
                supplier("").replace("[\"GA\"]", "[]"),
                "supplier GA: airlines:",
            ),
            (
                supplier("").replace("airlines = [\"GA\"]\n", ""),
                "supplier GA: airlines: missing",
            ),
            (
                supplier("timeout_ms = 0"),
                "supplier GA: timeout_ms: expected 1 to 120000",
            ),
            (
                supplier("timeout_ms = 30000"),
                "supplier GA: timeout_ms: must be at most SUPPLIER_DEADLINE_MS",
            ),
            (supplier("retries = 11"), "supplier GA: retries:"),
            (
                supplier("max_connections = 0"),
                "supplier GA: max_connections:",
            ),
            (
                supplier("breaker_failures = 0"),
                "supplier GA: breaker_failures:",
            ),
            (
                supplier("breaker_open_ms = 0"),
                "supplier GA: breaker_open_ms:",
            ),
            (
                supplier("cache_ttl_secs = 100000"),
                "supplier GA: cache_ttl_secs:",
            ),
            (
                supplier("[supplier.auth]\ntype = \"magic\""),
                "supplier GA: auth.type:",
            ),
            (
                supplier("[supplier.auth]\ntype = \"header\"\nsecret_env = \"GA_TOKEN\""),
                "supplier GA: auth.header: missing",
            ),
            (
                supplier("[supplier.auth]\ntype = \"bearer\"\nsecret_env = \"NOPE\""),
                "supplier GA: auth.secret_env: environment variable NOPE is not set",
            ),
            (
                supplier("[supplier.auth]\ntype = \"bearer\""),
                "supplier GA: auth.secret_env: give exactly one",
            ),
            (
                supplier(
                    "[supplier.auth]\ntype = \"oauth2\"\nclient_id = \"a\"\nclient_secret_env = \"OAUTH_SECRET\"",
                ),
                "supplier GA: auth.token_url: missing",
            ),
            (
                supplier(
                    "[supplier.auth]\ntype = \"oauth2\"\ntoken_url = \"http://m/t\"\nclient_secret_env = \"OAUTH_SECRET\"",
                ),
                "supplier GA: auth.client_id: missing",
            ),
            (
                format!("{}\n{}", supplier(""), supplier("")),
                "supplier GA: code: listed twice",
            ),
            (
                supplier("colour = \"blue\""),
                "not valid TOML for a suppliers file: unknown field `colour`",
            ),
            (String::new(), "lists no [[supplier]]"),
        ]
    }

    #[test]
    fn every_mistake_names_the_supplier_and_the_field() {
        let cases = mistakes();
        for (text, expected) in cases {
            let err = parse(&text, &defaults(), env).unwrap_err();
            assert!(
                err.starts_with(expected),
                "{text}\n=> {err}\nexpected {expected}"
            );
            assert!(!err.contains("t0ken") && !err.contains("s3cret"), "{err}");
        }
    }

    #[test]
    fn the_file_must_be_a_small_regular_file_and_errors_name_it() {
        let dir = std::env::temp_dir().join(format!("suppliers-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let err = read(dir.to_str().unwrap(), &defaults(), env).unwrap_err();
        assert_eq!(err.name, "SUPPLIERS_FILE");
        assert!(err.to_string().contains("expected a regular file"), "{err}");
        let big = dir.join("big.toml");
        let max = service_runtime::files::MAX_SETTING_FILE_BYTES;
        std::fs::write(&big, vec![b'#'; (max + 1) as usize]).unwrap();
        let err = read(big.to_str().unwrap(), &defaults(), env).unwrap_err();
        assert!(err.to_string().contains("larger than"), "{err}");
        let good = dir.join("good.toml");
        std::fs::write(&good, GOOD).unwrap();
        assert_eq!(
            read(good.to_str().unwrap(), &defaults(), env)
                .unwrap()
                .len(),
            2
        );
        let err = read(dir.join("missing.toml").to_str().unwrap(), &defaults(), env).unwrap_err();
        assert!(err.to_string().starts_with("SUPPLIERS_FILE="), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
