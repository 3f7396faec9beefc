//! The mock-suppliers binary: configuration, logging, the listener and the
//! shutdown signal; everything else is [`mock_suppliers::run`].
//!
//! `mock-suppliers --partner-pki <dir>` first makes (once) the demo partner
//! CA, certificate and credentials in `<dir>` ([`mock_suppliers::partner_pki`])
//! and serves HTTPS with them on `MOCK_HTTPS_ADDR` (default `0.0.0.0:8443`),
//! GA demanding the bearer token and JT the OAuth2 client unless
//! `MOCK_BEHAVIOUR` says otherwise.

use std::process::ExitCode;

use mock_suppliers::Config;
use service_runtime::config::Vars;
use service_runtime::{probe, shutdown, telemetry};

#[tokio::main]
async fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("--healthcheck") {
        return match mock_suppliers::config::http_addr(&Vars::from_env()) {
            Ok(addr) if probe::healthz(addr).await => ExitCode::SUCCESS,
            _ => ExitCode::FAILURE,
        };
    }
    let config = match std::env::args().nth(1).as_deref() {
        Some("--partner-pki") => with_partner_pki(std::env::args().nth(2)),
        _ => Config::from_env().map_err(|e| e.to_string()),
    };
    let config = match config {
        Ok(config) => config,
        Err(error) => {
            eprintln!("mock-suppliers: {error}");
            return ExitCode::from(2);
        }
    };
    // No search spans here: the supplier's side is the provider's client span.
    drop(telemetry::init(config.log_format, None));
    let listener = match tokio::net::TcpListener::bind(config.http_addr).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(addr = %config.http_addr, %error, "cannot bind HTTP_ADDR");
            return ExitCode::FAILURE;
        }
    };
    mock_suppliers::run(listener, config, shutdown::on_signal()).await;
    ExitCode::SUCCESS
}

/// The configuration from the environment, with the demo partner files in
/// `dir` (made if missing) filling in the TLS and credential settings.
fn with_partner_pki(dir: Option<String>) -> Result<Config, String> {
    let dir = dir.ok_or("--partner-pki needs a directory")?;
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let https_addr = env("MOCK_HTTPS_ADDR").unwrap_or_else(|| "0.0.0.0:8443".to_owned());
    let port = https_addr
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or(format!("MOCK_HTTPS_ADDR={https_addr} has no port"))?;
    let pki = mock_suppliers::partner_pki::ensure(std::path::Path::new(&dir), port)?;
    let vars = Vars::new(move |name: &str| {
        env(name).or_else(|| match name {
            "MOCK_HTTPS_ADDR" => Some(https_addr.clone()),
            "MOCK_TLS_CERT_FILE" => Some(pki.cert_file.clone()),
            "MOCK_TLS_KEY_FILE" => Some(pki.key_file.clone()),
            "MOCK_BEHAVIOUR" => Some(pki.behaviour.clone()),
            _ => None,
        })
    });
    Config::from_vars(&vars).map_err(|e| e.to_string())
}
