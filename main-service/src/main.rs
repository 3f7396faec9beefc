//! The `main-service` binary: configuration, logging, the listener and the
//! shutdown signal around [`main_service::run`].
//!
//! `main-service --healthcheck` asks a running instance's `/healthz` instead and
//! exits 0 if it answered 200, 1 otherwise (container health checks).

use std::process::ExitCode;

use main_service::Config;
use service_runtime::config::Vars;
use service_runtime::traces::TraceConfig;
use service_runtime::{probe, shutdown, telemetry};

/// jemalloc instead of glibc malloc: with the `malloc_conf` compiled in from
/// `.cargo/config.toml`, the untouched pages of hyper's two 8 KiB buffers per
/// connection stay out of RSS, so an idle SSE stream costs < 10 KB, and freed
/// memory goes back to the kernel once clients leave (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::from_env();
    if std::env::args().skip(1).any(|arg| arg == "--healthcheck") {
        let healthy = match config {
            Ok(config) => probe::healthz(config.http_addr).await,
            Err(_) => false,
        };
        return if healthy {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    let config = match config {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(2);
        }
    };
    let telemetry = match TraceConfig::from_vars(&Vars::from_env(), "main-service")
        .map_err(|error| error.to_string())
        .and_then(|traces| telemetry::init(config.log_format, traces.as_ref()))
    {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(config.http_addr).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("cannot listen on HTTP_ADDR={}: {error}", config.http_addr);
            return ExitCode::FAILURE;
        }
    };
    let shutdown = shutdown::on_signal();
    let ended = main_service::run(listener, config, shutdown).await;
    telemetry.shutdown().await;
    match ended {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "main-service stopped");
            ExitCode::FAILURE
        }
    }
}
