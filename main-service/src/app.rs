//! What every request handler shares.

use std::sync::Arc;

use service_runtime::redis_link::RedisLink;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::queue::SearchQueue;

/// The service's shared state, one per process, behind an `Arc`.
pub(crate) struct App {
    /// Settings the handlers read.
    pub config: Config,
    /// Redis, for readiness.
    pub redis: RedisLink,
    /// Where submissions go.
    pub queue: Arc<SearchQueue>,
    /// Everything counted.
    pub metrics: Arc<Metrics>,
}
