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
//! the figure every [`REFRESH_INTERVAL`], and this instance adds the searches it
//! accepted since and those it is admitting right now. While no POST arrives
//! the task reads only every [`IDLE_REFRESH_INTERVAL`] (idle instances cost
//! Redis almost nothing), and the first POST that finds the figure older than
//! [`STALE_AFTER`] reads afresh instead of trusting it. Within
//! [`Admission::margin`] of the bound each POST reads the figure afresh, so
//! instances cannot overshoot together on a stale one, and adds this
//! instance's admissions in progress, so one instance never overshoots on its
//! own. The bound can then be passed only by POSTs of other instances that were
//! between their read and their write at that moment, or, far from the bound,
//! by more accepts across all instances within one refresh interval than the
//! margin holds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use service_runtime::redis_link::RedisLink;
use tokio_util::sync::CancellationToken;

use crate::intake::queue_progress;
use crate::metrics::Metrics;

/// How often the cached figure is read while POSTs arrive.
const REFRESH_INTERVAL: Duration = Duration::from_millis(100);

/// How often it is read when no POST came within the last interval, for the
/// `queue_backlog` gauge.
const IDLE_REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// A figure older than this is not trusted by a POST: it reads afresh.
const STALE_AFTER: Duration = Duration::from_millis(250);

/// Whether a search may be queued now.
pub(crate) enum Verdict<'a> {
    /// Below the bound; the place is held until the reservation is settled.
    Admit(Reservation<'a>),
    /// The backlog is at the bound (the figure is attached).
    Full(u64),
}

/// A place in the backlog held while a search is being queued. Dropped without
/// [`Reservation::accepted`] (the write failed, or the request was abandoned),
/// it frees the place.
pub(crate) struct Reservation<'a> {
    /// Whose place it is.
    admission: &'a Admission,
}

impl Reservation<'_> {
    /// The search was queued: it counts among the accepted until the next read
    /// of the figure includes it.
    pub(crate) fn accepted(self) {
        self.admission.accepted_since.fetch_add(1, Ordering::AcqRel);
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.admission.reserved.fetch_sub(1, Ordering::AcqRel);
    }
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
    /// Searches this instance is admitting now (read done, write not settled).
    reserved: AtomicU64,
    /// When `figure` was read, in ms since `epoch` (0: never).
    read_at_ms: AtomicU64,
    /// When the latest POST was checked, in ms since `epoch`.
    checked_at_ms: AtomicU64,
    /// The origin of the two times above.
    epoch: Instant,
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
            reserved: AtomicU64::new(0),
            read_at_ms: AtomicU64::new(0),
            checked_at_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// Milliseconds since `epoch`, at least 1 (0 means "never").
    fn now_ms(&self) -> u64 {
        (self.epoch.elapsed().as_millis() as u64).max(1)
    }

    /// A tenth of the bound, and the whole bound up to 100: a small bound is
    /// always checked afresh, a large one only in its last tenth.
    pub(crate) fn margin(max: u64) -> u64 {
        (max / 10).max(max.min(100))
    }

    /// Decides on one submission. Fails only when a fresh read is needed and
    /// Redis does not answer.
    pub(crate) async fn check(&self) -> redis::RedisResult<Verdict<'_>> {
        // Held from here, so concurrent checks of this instance see each other.
        let others = self.reserved.fetch_add(1, Ordering::AcqRel);
        let reservation = Reservation { admission: self };
        let now_ms = self.now_ms();
        self.checked_at_ms.store(now_ms, Ordering::Release);
        let fresh = now_ms.saturating_sub(self.read_at_ms.load(Ordering::Acquire))
            <= STALE_AFTER.as_millis() as u64;
        let estimate = self.figure.load(Ordering::Acquire)
            + self.accepted_since.load(Ordering::Acquire)
            + others;
        if fresh && estimate.saturating_add(self.margin) < self.max {
            return Ok(Verdict::Admit(reservation));
        }
        // Taken before the read: an admission in progress now either lands in
        // the read or is counted here (or both, erring on the safe side). Taken
        // after, one that settled in between would be in neither. Any later
        // admission sees this one's reservation in its own count.
        let in_progress = self.reserved.load(Ordering::Acquire).saturating_sub(1);
        let backlog = read_backlog(&mut self.redis.commands()).await?;
        Ok(if backlog + in_progress >= self.max {
            Verdict::Full(backlog)
        } else {
            Verdict::Admit(reservation)
        })
    }

    /// Reads the figure every [`REFRESH_INTERVAL`] while POSTs arrive (every
    /// [`IDLE_REFRESH_INTERVAL`] otherwise) until `shutdown`, and publishes it
    /// as `queue_backlog`.
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
            let now_ms = self.now_ms();
            let idle = now_ms.saturating_sub(self.checked_at_ms.load(Ordering::Acquire))
                > REFRESH_INTERVAL.as_millis() as u64;
            let read_at_ms = self.read_at_ms.load(Ordering::Acquire);
            if idle
                && read_at_ms != 0
                && now_ms.saturating_sub(read_at_ms) < IDLE_REFRESH_INTERVAL.as_millis() as u64
            {
                continue;
            }
            // Accepts counted before the read began are in the figure it returns
            // (or counted twice, which errs on the safe side).
            let counted = self.accepted_since.load(Ordering::Acquire);
            match read_backlog(&mut conn).await {
                Ok(backlog) => {
                    self.figure.store(backlog, Ordering::Release);
                    self.accepted_since.fetch_sub(counted, Ordering::AcqRel);
                    self.read_at_ms.store(now_ms, Ordering::Release);
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
    conn: &mut service_runtime::redis_connection::RedisConnection,
) -> redis::RedisResult<u64> {
    let groups = queue_progress::read(conn).await?;
    let mut backlog = 0;
    let mut length = None;
    for group in groups {
        let unfinished = match group.lag {
            Some(lag) => group.pending + lag,
            // The queue's length counts the pending entries too.
            None => match length {
                Some(length) => length,
                None => *length.insert(queue_progress::queue_length(conn).await?),
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
