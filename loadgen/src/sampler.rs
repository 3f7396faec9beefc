//! Periodic measurements of the system under test while a scenario runs:
//! main-service's resident memory and its TCP connections to Redis (from
//! `/proc`), Redis' `connected_clients`, and main-service's own gauges from
//! `/metrics`. Samples are folded into a [`Window`] that the scenario takes at
//! each phase boundary, so every phase reports its own peaks.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use serde::Serialize;
use tokio::task::JoinHandle;

use crate::errors::{ErrorKind, Errors};
use crate::http::{HttpConnection, Target};
use crate::{procfs, redis_info};

/// main-service gauge: SSE responses currently open.
pub const SSE_STREAMS_OPEN: &str = "flight_search_sse_streams_open";

/// main-service gauge: searches whose result stream is being followed.
pub const HUB_FEEDS_ACTIVE: &str = "flight_search_hub_feeds_active";

/// The value of the first sample of metric `name` (any labels) in a Prometheus
/// text exposition.
pub fn metric_value(exposition: &str, name: &str) -> Option<f64> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with([' ', '{']))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// What is measured, and how to reach it.
pub struct Probe {
    /// main-service, for `/proc`; `None` when it could not be found.
    pub main_pid: Option<u32>,
    /// Redis' TCP port, to recognise main-service's connections to it.
    pub redis_port: Option<u16>,
    /// The load generator's own Redis connection for `INFO`.
    pub redis: MultiplexedConnection,
    /// Keep-alive connection for `/metrics`.
    metrics: HttpConnection,
}

/// One reading of everything; a part that failed is `None` and counted.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    /// main-service VmRSS, KiB.
    pub rss_kib: Option<u64>,
    /// Redis `connected_clients`.
    pub redis_clients: Option<u64>,
    /// Established TCP connections from main-service to the Redis port.
    pub main_redis_connections: Option<u64>,
    /// main-service's [`SSE_STREAMS_OPEN`].
    pub streams_open: Option<f64>,
    /// main-service's [`HUB_FEEDS_ACTIVE`].
    pub feeds_active: Option<f64>,
}

/// Peaks and last values over the samples of one phase.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Window {
    /// Samples taken.
    pub samples: u64,
    /// Largest main-service RSS, KiB.
    pub rss_peak_kib: Option<u64>,
    /// main-service RSS at the last sample, KiB.
    pub rss_last_kib: Option<u64>,
    /// Largest Redis `connected_clients`.
    pub redis_clients_peak: Option<u64>,
    /// Largest count of main-service's connections to Redis.
    pub main_redis_connections_peak: Option<u64>,
    /// Largest [`SSE_STREAMS_OPEN`].
    pub streams_open_peak: Option<f64>,
    /// Largest [`HUB_FEEDS_ACTIVE`].
    pub feeds_active_peak: Option<f64>,
}

fn max<T: PartialOrd + Copy>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b > a { b } else { a }),
        (a, b) => a.or(b),
    }
}

impl Window {
    /// Folds one sample in.
    pub fn add(&mut self, s: &Sample) {
        self.samples += 1;
        self.rss_peak_kib = max(self.rss_peak_kib, s.rss_kib);
        self.rss_last_kib = s.rss_kib.or(self.rss_last_kib);
        self.redis_clients_peak = max(self.redis_clients_peak, s.redis_clients);
        self.main_redis_connections_peak =
            max(self.main_redis_connections_peak, s.main_redis_connections);
        self.streams_open_peak = max(self.streams_open_peak, s.streams_open);
        self.feeds_active_peak = max(self.feeds_active_peak, s.feeds_active);
    }

    /// Peaks over both windows.
    pub fn merge(&self, other: &Window) -> Window {
        Window {
            samples: self.samples + other.samples,
            rss_peak_kib: max(self.rss_peak_kib, other.rss_peak_kib),
            rss_last_kib: other.rss_last_kib.or(self.rss_last_kib),
            redis_clients_peak: max(self.redis_clients_peak, other.redis_clients_peak),
            main_redis_connections_peak: max(
                self.main_redis_connections_peak,
                other.main_redis_connections_peak,
            ),
            streams_open_peak: max(self.streams_open_peak, other.streams_open_peak),
            feeds_active_peak: max(self.feeds_active_peak, other.feeds_active_peak),
        }
    }
}

impl Probe {
    /// A probe of main-service at `target` (process `main_pid`) and of Redis over
    /// `redis`, whose server listens on `redis_port`.
    pub fn new(
        target: Target,
        main_pid: Option<u32>,
        redis_port: Option<u16>,
        redis: MultiplexedConnection,
    ) -> Probe {
        Probe {
            main_pid,
            redis_port,
            redis,
            metrics: HttpConnection::new(target),
        }
    }

    /// Takes one sample; each part that fails is counted in `errors`.
    pub async fn sample(&mut self, errors: &mut Errors) -> Sample {
        let mut sample = Sample::default();
        if let Some(pid) = self.main_pid {
            match procfs::rss_kib(pid) {
                Ok(kib) => sample.rss_kib = Some(kib),
                Err(e) => errors.record(ErrorKind::Sample, e),
            }
            if let Some(port) = self.redis_port {
                match procfs::connections_to_port(pid, port) {
                    Ok(n) => sample.main_redis_connections = Some(n as u64),
                    Err(e) => errors.record(ErrorKind::Sample, e),
                }
            }
        }
        match redis_info::connected_clients(&mut self.redis).await {
            Ok(n) => sample.redis_clients = Some(n),
            Err(e) => errors.record(ErrorKind::Sample, format!("INFO clients: {e}")),
        }
        let scrape = tokio::time::timeout(
            Duration::from_secs(5),
            self.metrics.request("GET", "/metrics", &[], b""),
        )
        .await;
        match scrape {
            Ok(Ok(r)) if r.status == 200 => {
                let text = String::from_utf8_lossy(&r.body);
                sample.streams_open = metric_value(&text, SSE_STREAMS_OPEN);
                sample.feeds_active = metric_value(&text, HUB_FEEDS_ACTIVE);
            }
            Ok(Ok(r)) => errors.record(ErrorKind::Sample, format!("/metrics: status {}", r.status)),
            Ok(Err(e)) => errors.record(ErrorKind::Sample, format!("/metrics: {e}")),
            Err(_) => errors.record(ErrorKind::Sample, "/metrics: no answer within 5 s"),
        }
        sample
    }
}

/// State shared between the sampling task and the scenario.
#[derive(Default)]
struct Collected {
    /// Samples since the last [`Sampler::take`].
    window: Window,
    /// Failed samples, cumulative.
    errors: Errors,
}

/// Samples a [`Probe`] every interval in the background.
pub struct Sampler {
    /// Shared with the task.
    collected: Arc<Mutex<Collected>>,
    /// The sampling task; aborted by [`Sampler::stop`].
    task: JoinHandle<()>,
}

impl Sampler {
    /// Starts sampling `probe` every `interval`.
    pub fn start(mut probe: Probe, interval: Duration) -> Sampler {
        let collected = Arc::new(Mutex::new(Collected::default()));
        let shared = collected.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let mut errors = Errors::new();
                let sample = probe.sample(&mut errors).await;
                let mut c = shared.lock().expect("not poisoned");
                c.window.add(&sample);
                c.errors.merge(errors);
            }
        });
        Sampler { collected, task }
    }

    /// The window since the previous call, starting a new one.
    pub fn take(&self) -> Window {
        std::mem::take(&mut self.collected.lock().expect("not poisoned").window)
    }

    /// Stops sampling; returns the failures seen.
    pub fn stop(self) -> Errors {
        self.task.abort();
        std::mem::take(&mut self.collected.lock().expect("not poisoned").errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_gauges_by_exact_name() {
        let text = "# HELP x\n# TYPE flight_search_sse_streams_open gauge\nflight_search_sse_streams_open_total 9\nflight_search_sse_streams_open 19000\nflight_search_hub_feeds_active{instance=\"a\"} 1000\n";
        assert_eq!(metric_value(text, SSE_STREAMS_OPEN), Some(19000.0));
        assert_eq!(metric_value(text, HUB_FEEDS_ACTIVE), Some(1000.0));
        assert_eq!(metric_value(text, "absent"), None);
    }

    #[test]
    fn windows_keep_peaks_and_last_values() {
        let mut w = Window::default();
        w.add(&Sample {
            rss_kib: Some(10),
            redis_clients: Some(5),
            ..Sample::default()
        });
        w.add(&Sample {
            rss_kib: Some(7),
            main_redis_connections: Some(2),
            ..Sample::default()
        });
        assert_eq!(w.samples, 2);
        assert_eq!((w.rss_peak_kib, w.rss_last_kib), (Some(10), Some(7)));
        assert_eq!(w.redis_clients_peak, Some(5));
        let merged = w.merge(&Window {
            samples: 1,
            rss_peak_kib: Some(12),
            ..Window::default()
        });
        assert_eq!(
            (merged.samples, merged.rss_peak_kib, merged.rss_last_kib),
            (3, Some(12), Some(7))
        );
    }
}
