//! The safety net and the clock: periodic re-reads of unfinished feeds, and the
//! `timeout` event for searches that outlive `SEARCH_TIMEOUT_SECS`.
//!
//! The timeout is written into the search's own stream through the append
//! script, in the terminal slot: every reader, on every instance, receives the
//! same entry, and a provider that answers late finds the slot taken, so a
//! search never has two terminal events.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use contract::{EventError, EventKind, SearchEvent};
use service_runtime::streams;
use tokio::time::MissedTickBehavior;

use super::{Feed, Hub};

/// Interval of the re-read of unfinished feeds.
const SWEEP_INTERVAL: Duration = Duration::from_secs(2);

/// Every two seconds until shutdown: queue a read of every unfinished feed, and
/// retry timeouts whose first write failed.
pub(super) async fn run(hub: Arc<Hub>) {
    let mut interval = tokio::time::interval(SWEEP_INTERVAL);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = hub.shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        let now = crate::unix_ms();
        for feed in hub.feeds() {
            if feed.is_terminal() {
                continue;
            }
            hub.want_fetch(&feed);
            if deadline_ms(&hub, &feed) <= now && !feed.expiring.load(Ordering::Acquire) {
                tokio::spawn(expire(hub.clone(), feed));
            }
        }
    }
}

/// Sleeps until the feed's search times out, then ends it if it is still
/// running and still watched. One such timer runs per feed, not per client.
pub(super) async fn expire_at_deadline(hub: Arc<Hub>, feed: Weak<Feed>) {
    let Some(deadline) = feed.upgrade().map(|f| deadline_ms(&hub, &f)) else {
        return;
    };
    let wait = Duration::from_millis(deadline.saturating_sub(crate::unix_ms()));
    tokio::select! {
        _ = hub.shutdown.cancelled() => return,
        _ = tokio::time::sleep(wait) => {}
    }
    if let Some(feed) = feed.upgrade() {
        expire(hub, feed).await;
    }
}

/// When the feed's search times out, in Unix ms.
fn deadline_ms(hub: &Hub, feed: &Feed) -> u64 {
    feed.requested_at_ms
        .saturating_add(hub.settings.search_timeout.as_millis() as u64)
}

/// Writes the `timeout` failure unless the search already has its terminal
/// event. A failed write is retried by the sweep.
async fn expire(hub: Arc<Hub>, feed: Arc<Feed>) {
    if feed.is_terminal() || feed.expiring.swap(true, Ordering::AcqRel) {
        return;
    }
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
    let written =
        streams::append_event(&mut hub.redis.commands(), &event, hub.settings.results_ttl).await;
    match written {
        Ok(Some(entry_id)) => {
            hub.link.up();
            hub.metrics.searches_timed_out.inc();
            tracing::info!(search_id = %feed.search_id, entry_id, "search timed out");
            hub.want_fetch(&feed);
        }
        // The provider's terminal event got there first.
        Ok(None) => {
            hub.link.up();
            hub.want_fetch(&feed);
        }
        Err(error) => {
            hub.metrics.redis_error("timeout");
            hub.link.down(&error);
            feed.expiring.store(false, Ordering::Release);
        }
    }
}
