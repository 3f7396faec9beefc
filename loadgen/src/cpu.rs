//! CPU used over a phase: main-service and provider-service from
//! `/proc/<pid>/stat` (user + system, all threads), Redis from `INFO cpu`.

use redis::aio::MultiplexedConnection;
use serde::Serialize;
use tokio::time::Instant;

use crate::errors::{ErrorKind, Errors};
use crate::{procfs, redis_info};

/// Cumulative CPU seconds of each process at one instant.
#[derive(Debug, Clone, Copy)]
pub struct CpuReading {
    /// When it was read.
    at: Instant,
    /// main-service, if known.
    main: Option<f64>,
    /// provider-service, if known.
    provider: Option<f64>,
    /// redis-server.
    redis: Option<f64>,
}

/// CPU use over a phase, in percent of one core (may exceed 100).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct CpuUsage {
    /// main-service.
    pub main_percent: Option<f64>,
    /// provider-service.
    pub provider_percent: Option<f64>,
    /// redis-server.
    pub redis_percent: Option<f64>,
}

impl CpuReading {
    /// Reads every process's CPU time now; failures are counted in `errors`.
    pub async fn take(
        main: Option<u32>,
        provider: Option<u32>,
        redis: &mut MultiplexedConnection,
        errors: &mut Errors,
    ) -> CpuReading {
        let mut process = |pid: Option<u32>| {
            pid.and_then(|pid| {
                procfs::cpu_seconds(pid)
                    .map_err(|e| errors.record(ErrorKind::Sample, e))
                    .ok()
            })
        };
        let (main, provider) = (process(main), process(provider));
        let redis = redis_info::used_cpu(redis)
            .await
            .map_err(|e| errors.record(ErrorKind::Sample, format!("INFO cpu: {e}")))
            .ok();
        CpuReading {
            at: Instant::now(),
            main,
            provider,
            redis,
        }
    }

    /// Usage between `start` and this reading.
    pub fn since(&self, start: &CpuReading) -> CpuUsage {
        let wall = self.at.duration_since(start.at).as_secs_f64();
        let percent = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if wall > 0.0 => Some(((b - a) / wall * 1000.0).round() / 10.0),
            _ => None,
        };
        CpuUsage {
            main_percent: percent(start.main, self.main),
            provider_percent: percent(start.provider, self.provider),
            redis_percent: percent(start.redis, self.redis),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn percent_of_one_core_over_the_wall_time() {
        let start = CpuReading {
            at: Instant::now(),
            main: Some(1.0),
            provider: None,
            redis: Some(10.0),
        };
        let end = CpuReading {
            at: start.at + Duration::from_secs(2),
            main: Some(2.5),
            provider: Some(1.0),
            redis: Some(10.5),
        };
        assert_eq!(
            end.since(&start),
            CpuUsage {
                main_percent: Some(75.0),
                provider_percent: None,
                redis_percent: Some(25.0),
            }
        );
    }
}
