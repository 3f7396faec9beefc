//! The mock-suppliers binary: configuration, logging, the listener and the
//! shutdown signal; everything else is [`mock_suppliers::run`].

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
    let config = match Config::from_env() {
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
