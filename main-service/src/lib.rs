//! main-service: the HTTP front door of the flight search.
//!
//! It validates searches and queues them in Redis (`POST /api/flights/search`),
//! and streams each search's events to any number of Server-Sent Events clients
//! (`GET /api/flights/search/{id}/stream`), reading each event from Redis once
//! per instance however many clients watch it.
//!
//! Its modules, by what the service does:
//!
//! * [`edge`]: the HTTP edge: the server, routing (see [`edge::routes`] for
//!   the endpoints), the checks and headers around every request.
//! * [`intake`]: taking searches in: the submission handler, rate limit,
//!   admission control, and the search queue it writes to and trims.
//! * [`delivery`]: delivering events: the stream handler, reader registration,
//!   and the hub that reads each search's events once for all its clients.
//! * [`answer`]: the response body, builders and error answers all three
//!   speak.
//! * Beside them, what the whole process shares: [`app`] (the state every
//!   handler holds, and the tasks it starts), [`tasks`] (every task has an
//!   owner and an end), [`config`], [`metrics`], [`search_traces`].
//!
//! The binary is a thin wrapper around [`run`]; tests call `run` directly with a
//! listener on `127.0.0.1:0`.

mod answer;
mod app;
mod config;
mod delivery;
mod edge;
mod intake;
mod metrics;
mod search_traces;
mod tasks;

use std::sync::Arc;

use service_runtime::redis_link::RedisLink;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use edge::cors::AllowedOrigins;

use app::App;
use edge::{routes, server};
use metrics::Metrics;

/// Why the service could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Redis client could not be created from `REDIS_URL` and `REDIS_CA_FILE`.
    #[error("cannot set up the Redis client: {0}")]
    Redis(#[from] redis::RedisError),
}

/// Serves the API on `listener` until `shutdown` is cancelled, then drains:
/// open event streams end cleanly, connections get `SHUTDOWN_GRACE_SECS` to
/// finish (those still open then are closed), and readers are detached from
/// Redis and background tasks stopped within the same period. When it
/// returns, every connection has ended.
///
/// Redis does not need to be up: requests that need it answer 503 until it is.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let redis = RedisLink::new(&config.redis)?;
    let metrics = Arc::new(Metrics::new(routes::SUCCESSES));
    let app = App::start(config, redis, metrics, &shutdown);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "listening");
    }
    let deadline = server::serve(listener, app.clone(), shutdown).await;
    app.stop(deadline).await;
    Ok(())
}

/// The current time in Unix milliseconds, the unit of `requested_at`.
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
