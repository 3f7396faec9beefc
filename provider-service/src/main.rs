//! The provider-service binary: configuration, logging, the admin listener and
//! the shutdown signal; everything else is [`provider_service::run`].

use std::process::ExitCode;

use provider_service::Config;
use service_runtime::config::Vars;
use service_runtime::traces::TraceConfig;
use service_runtime::{probe, shutdown, telemetry};

/// jemalloc instead of glibc malloc: with the `malloc_conf` compiled in from
/// `.cargo/config.toml` (`dirty_decay_ms:0`), the pages of a burst of large
/// supplier answers go back to the kernel once they are freed, where glibc
/// keeps them in its arenas (BENCHMARKS.md, "Hostile supplier answers").
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("--healthcheck") {
        return match provider_service::metrics_addr(&Vars::from_env()) {
            Ok(addr) if probe::healthz(addr).await => ExitCode::SUCCESS,
            _ => ExitCode::FAILURE,
        };
    }
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("provider-service: {error}");
            return ExitCode::from(2);
        }
    };
    let telemetry = match TraceConfig::from_vars(&Vars::from_env(), "provider-service")
        .map_err(|error| error.to_string())
        .and_then(|traces| telemetry::init(config.log_format, traces.as_ref()))
    {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("provider-service: {error}");
            return ExitCode::from(2);
        }
    };
    let admin = match tokio::net::TcpListener::bind(config.metrics_addr).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(addr = %config.metrics_addr, %error, "cannot bind METRICS_ADDR");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = shutdown::on_signal();
    let ended = provider_service::run(admin, config, shutdown).await;
    telemetry.shutdown().await;
    match ended {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "provider-service failed");
            ExitCode::FAILURE
        }
    }
}
