//! Admission control: a search is accepted only while the queue's backlog,
//! the searches accepted and not yet finished by a provider, is below
//! `QUEUE_MAX_BACKLOG`. A 202 is a promise; refusing at the door (503 with
//! `Retry-After`) is how overload keeps it.
//!
//! The backlog of a group is its pending entries plus its lag (entries not yet
//! delivered), both from `XINFO GROUPS`; the queue's backlog is the largest
//! over its groups, since every group must get through every search. When
//! Redis cannot compute a lag, the queue's length stands in for it: an
//! overestimate, because trimming keeps only a little finished work in the
//! queue.
//!
//! No command per POST while the backlog is far from the bound: a task reads
//! the figure every [`REFRESH_INTERVAL`], and this instance adds the searches
//! it accepted since. Within [`Admission::margin`] of the bound each POST reads
//! the figure afresh, so instances cannot overshoot together on a stale one.
//! The bound can then be passed only by POSTs that read the figure before
//! another's write landed: at most the submissions in progress at that moment
//! across all instances; or, far from the bound, by more accepts across all
//! instances within one refresh interval than the margin holds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use service_runtime::redis_link::RedisLink;
use tokio_util::sync::CancellationToken;

use crate::groups;
use crate::metrics::Metrics;

/// How often the cached figure is read.
const REFRESH_INTERVAL: Duration = Duration::from_millis(100);

/// Whether a search may be queued now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Below the bound.
    Admit,
    /// The backlog is at the bound (the figure is attached).
    Full(u64),
}

/// The admission state of this instance.
pub(crate) struct Admission {
    /// For the fresh reads near the bound and the refresh task.
    redis: RedisLink,
    /// `QUEUE_MAX_BACKLOG`.
    max: u64,
    /// Width of the zone below the bound where every POST reads afresh.
    margin: u64,
    /// The backlog as last read.
    figure: AtomicU64,
    /// Searches this instance accepted since `figure` was read.
    accepted_since: AtomicU64,
}

impl Admission {
    /// Admission against `max`, starting from an empty backlog until the first read.
    pub(crate) fn new(redis: RedisLink, max: u64) -> Admission {
        Admission {
            redis,
            max,
            margin: Admission::margin(max),
            figure: AtomicU64::new(0),
            accepted_since: AtomicU64::new(0),
        }
    }

    /// A tenth of the bound, and the whole bound up to 100: a small bound is
    /// always checked afresh, a large one only in its last tenth.
    pub(crate) fn margin(max: u64) -> u64 {
        (max / 10).max(max.min(100))
    }

    /// Decides on one submission. Fails only when a fresh read is needed and
    /// Redis does not answer.
    pub(crate) async fn check(&self) -> redis::RedisResult<Verdict> {
        let estimate =
            self.figure.load(Ordering::Acquire) + self.accepted_since.load(Ordering::Acquire);
        if estimate.saturating_add(self.margin) < self.max {
            return Ok(Verdict::Admit);
        }
        let backlog = read_backlog(&mut self.redis.commands()).await?;
        Ok(if backlog >= self.max {
            Verdict::Full(backlog)
        } else {
            Verdict::Admit
        })
    }

    /// Counts a search this instance queued, until the next read includes it.
    pub(crate) fn accepted(&self) {
        self.accepted_since.fetch_add(1, Ordering::AcqRel);
    }

    /// Reads the figure every [`REFRESH_INTERVAL`] until `shutdown`, and
    /// publishes it as `queue_backlog`.
    pub(crate) async fn refresh(
        self: std::sync::Arc<Self>,
        metrics: std::sync::Arc<Metrics>,
        shutdown: CancellationToken,
    ) {
        let mut conn = self.redis.commands();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(REFRESH_INTERVAL) => {}
            }
            if !self.redis.is_ready() {
                continue;
            }
            // Accepts counted before the read began are in the figure it returns
            // (or counted twice, which errs on the safe side).
            let counted = self.accepted_since.load(Ordering::Acquire);
            match read_backlog(&mut conn).await {
                Ok(backlog) => {
                    self.figure.store(backlog, Ordering::Release);
                    self.accepted_since.fetch_sub(counted, Ordering::AcqRel);
                    metrics.queue_backlog.set(backlog as i64);
                }
                Err(error) => {
                    metrics.redis_error("backlog");
                    tracing::debug!(%error, "cannot read the queue's backlog");
                }
            }
        }
    }
}

/// Searches accepted and not yet finished by the slowest group.
pub(crate) async fn read_backlog(
    conn: &mut redis::aio::ConnectionManager,
) -> redis::RedisResult<u64> {
    let groups = groups::read(conn).await?;
    let mut backlog = 0;
    let mut length = None;
    for group in groups {
        let unfinished = match group.lag {
            Some(lag) => group.pending + lag,
            // The queue's length counts the pending entries too.
            None => match length {
                Some(length) => length,
                None => *length.insert(groups::queue_length(conn).await?),
            },
        };
        backlog = backlog.max(unfinished);
    }
    Ok(backlog)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_bounds_are_always_checked_afresh() {
        assert_eq!(Admission::margin(1), 1);
        assert_eq!(Admission::margin(20), 20);
        assert_eq!(Admission::margin(100), 100);
        assert_eq!(Admission::margin(500), 100);
        assert_eq!(Admission::margin(5_000), 500);
    }
}
