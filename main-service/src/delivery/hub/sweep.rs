//! The clock and the safety net: the `timeout` event for searches that outlive
//! `SEARCH_TIMEOUT_SECS`, the end of feeds whose stream vanished, retries of
//! failed reads, and re-reads while the pub/sub subscription is down.
//!
//! Timeouts come from a queue ordered by deadline ([`Deadlines`]): a pass
//! every half second takes out only the deadlines that are due, so its cost
//! follows the number of searches timing out, not the number of feeds, and no
//! feed needs a timer of its own. A search times out at most half a second
//! late.
//!
//! Re-reads only happen where a nudge may have been missed. A read that
//! failed is retried every two seconds until it succeeds. While the
//! subscription is down every feed is re-read every two seconds (the only
//! news then); when it comes back, [`super::nudges`] has every feed rechecked
//! once. While it is up and reads succeed, nothing is re-read: Redis drops a
//! published message only by closing the subscriber's connection (a network
//! failure, a restart, an overflowing output buffer), which the subscription
//! notices. All re-reads go through the fetcher's recheck queue, behind nudged
//! reads.
//!
//! The timeout is written into the search's own stream through the append
//! script, in the terminal slot: every reader, on every instance, receives the
//! same entry, and a provider that answers late finds the slot taken, so a
//! search never has two terminal events. While Redis refuses writes (OOM and
//! the like) the write fails and is retried every two seconds, so the event reaches
//! the open streams within two seconds of Redis accepting writes again.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use contract::{EventError, EventKind, SearchEvent};
use service_runtime::streams::{self, Appended};
use tokio::time::{Instant, MissedTickBehavior};
use uuid::Uuid;

use super::{Feed, Hub, fetcher};

/// Interval of the passes, and so the precision of the timeout.
const PASS_INTERVAL: Duration = Duration::from_millis(500);

/// Interval of the retries of failed reads and failed timeout writes, and of
/// the re-reads while the subscription is down.
const RETRY_INTERVAL: Duration = Duration::from_secs(2);

/// Timeout deadlines of the feeds, earliest first. Each feed is in it at most
/// once, under the time the feed keeps ([`Feed::set_due`]); the hub's map lock
/// guards both.
#[derive(Default)]
pub(super) struct Deadlines {
    /// `(deadline in Unix ms, search)`, ordered by deadline.
    queue: BTreeSet<(u64, Uuid)>,
}

impl Deadlines {
    /// Queues `feed` at `at_ms`, replacing its previous place.
    pub(super) fn insert(&mut self, feed: &Feed, at_ms: u64) {
        self.remove(feed);
        // 0 means "not queued"; a deadline at the epoch is due anyway.
        let at_ms = at_ms.max(1);
        self.queue.insert((at_ms, feed.search_id));
        feed.set_due(at_ms);
    }

    /// Takes `feed` out of the queue, if it is in it.
    pub(super) fn remove(&mut self, feed: &Feed) {
        if let Some(at_ms) = feed.take_due() {
            self.queue.remove(&(at_ms, feed.search_id));
        }
    }

    /// Takes out and returns the searches due at or before `now_ms`, earliest
    /// first. The caller, which holds the feeds, must clear their due time
    /// ([`Feed::take_due`]).
    pub(super) fn take_due(&mut self, now_ms: u64) -> Vec<Uuid> {
        let mut due = Vec::new();
        while let Some(&(at_ms, search_id)) = self.queue.first() {
            if at_ms > now_ms {
                break;
            }
            self.queue.pop_first();
            due.push(search_id);
        }
        due
    }

    /// Deadlines queued.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.queue.len()
    }
}

/// Until shutdown: every pass, time out the searches whose deadline came;
/// every [`RETRY_INTERVAL`], retry failed reads, and re-read every feed while
/// the subscription is down.
pub(super) async fn run(hub: Arc<Hub>) {
    let mut interval = tokio::time::interval(PASS_INTERVAL);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_retry = Instant::now();
    loop {
        tokio::select! {
            _ = hub.shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        hub.metrics.hub_sweeps.inc();
        for feed in hub.due_feeds(crate::unix_ms()) {
            if !feed.is_over() {
                hub.tasks.spawn("hub timeout", expire(hub.clone(), feed));
            }
        }
        if last_retry.elapsed() >= RETRY_INTERVAL {
            last_retry = Instant::now();
            hub.retry_failed();
            if !hub.is_subscribed() {
                hub.recheck_all();
            }
        }
    }
}

/// Writes the `timeout` failure unless the search already has its terminal
/// event. A failed write is retried after [`RETRY_INTERVAL`]: the feed goes
/// back into the deadline queue.
async fn expire(hub: Arc<Hub>, feed: Arc<Feed>) {
    let timeout = hub.settings.search_timeout.as_secs();
    let kind = EventKind::Failed {
        error: EventError::new(
            EventError::TIMEOUT,
            format!("no answer from the suppliers within {timeout} seconds"),
        ),
    };
    let event = SearchEvent {
        search_id: feed.search_id,
        kind,
    };
    // A timeout is not based on the results, so it carries no tally and is never
    // refused as stale.
    let written = streams::append_event(
        &mut hub.redis.commands(),
        &event,
        hub.settings.results_ttl,
        None,
        hub.redis.nudges(),
    )
    .await;
    match written {
        Ok(Appended::Written(entry_id)) => {
            hub.link.up();
            hub.metrics.searches_timed_out.inc();
            tracing::info!(search_id = %feed.search_id, %entry_id, "search timed out");
            hub.want_fetch(&feed);
        }
        // The terminal slot is taken: the provider's terminal event got there
        // first, and a complete read must reach it, unless the stream itself is
        // gone (deleted by another instance's last reader, evicted, deleted by
        // hand). Then nothing will ever end the feed but this.
        Ok(Appended::Skipped | Appended::Stale(_)) => {
            hub.link.up();
            if !fetcher::fetch(&hub, feed.clone()).await {
                // Not read to the end: try again later.
                hub.due_again(&feed, retry_at_ms());
            } else if !feed.is_terminal() {
                tracing::info!(search_id = %feed.search_id, "the search's stream is gone; ending its streams");
                feed.vanish();
            }
        }
        Err(error) => {
            hub.metrics.redis_error("timeout");
            // A refused write says nothing about the connection; it is logged
            // once by the refusal state, not as the link going down.
            if hub.health.note_write_failure(&error).is_none() {
                hub.link.down(&error);
            }
            hub.due_again(&feed, retry_at_ms());
        }
    }
}

/// When a failed timeout step is tried again, in Unix ms.
fn retry_at_ms() -> u64 {
    crate::unix_ms() + RETRY_INTERVAL.as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_come_out_earliest_first_and_only_when_due() {
        let feeds: Vec<Feed> = (0..3).map(|_| Feed::new(Uuid::new_v4(), 0, true)).collect();
        let mut deadlines = Deadlines::default();
        deadlines.insert(&feeds[0], 300);
        deadlines.insert(&feeds[1], 100);
        deadlines.insert(&feeds[2], 200);
        assert!(deadlines.take_due(99).is_empty());
        assert_eq!(
            deadlines.take_due(200),
            [feeds[1].search_id, feeds[2].search_id]
        );
        assert_eq!(deadlines.len(), 1);
    }

    #[test]
    fn a_feed_is_queued_once_and_can_be_taken_out() {
        let feed = Feed::new(Uuid::new_v4(), 0, true);
        let mut deadlines = Deadlines::default();
        deadlines.insert(&feed, 100);
        deadlines.insert(&feed, 500);
        assert_eq!(deadlines.len(), 1, "a new deadline replaces the old one");
        assert!(deadlines.take_due(400).is_empty());
        deadlines.remove(&feed);
        assert_eq!(deadlines.len(), 0);
        assert!(deadlines.take_due(u64::MAX).is_empty());
        deadlines.remove(&feed);
    }
}
