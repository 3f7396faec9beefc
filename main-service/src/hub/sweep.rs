//! The clock and the safety net: the `timeout` event for searches that outlive
//! `SEARCH_TIMEOUT_SECS`, the end of feeds whose stream vanished, and periodic
//! re-reads of unfinished feeds.
//!
//! One pass every two seconds checks every feed's deadline, so a search times
//! out at most two seconds late and no feed needs a timer of its own. The
//! re-reads only catch what nudges missed: while the subscription is up (every
//! feed was re-read when it came up, and nudges arrive) and reads succeed, they
//! run every ten seconds; while the subscription is down they are the only
//! news, and after a failed read the read must be retried, so they run at every
//! pass.
//!
//! The timeout is written into the search's own stream through the append
//! script, in the terminal slot: every reader, on every instance, receives the
//! same entry, and a provider that answers late finds the slot taken, so a
//! search never has two terminal events. While Redis refuses writes (OOM and
//! the like) the write fails and each pass tries again, so the event reaches
//! the open streams within one pass of Redis accepting writes again.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use contract::{EventError, EventKind, SearchEvent};
use service_runtime::streams::{self, Appended};
use tokio::time::{Instant, MissedTickBehavior};

use super::{Feed, Hub, fetcher};

/// Interval of the passes, and so the precision of the timeout.
const PASS_INTERVAL: Duration = Duration::from_secs(2);

/// Interval of the re-reads while the pub/sub subscription is up and reads
/// succeed.
const REREAD_INTERVAL: Duration = Duration::from_secs(10);

/// Every two seconds until shutdown: time out searches past their deadline
/// (retrying writes that failed), and queue a read of every unfinished feed
/// when one is due.
pub(super) async fn run(hub: Arc<Hub>) {
    let mut interval = tokio::time::interval(PASS_INTERVAL);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_reread = Instant::now();
    loop {
        tokio::select! {
            _ = hub.shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        let reread = !hub.subscribed.load(Ordering::Acquire)
            || !hub.link.is_up()
            || last_reread.elapsed() >= REREAD_INTERVAL;
        if reread {
            last_reread = Instant::now();
        }
        let now = crate::unix_ms();
        for feed in hub.feeds() {
            if feed.is_over() {
                continue;
            }
            if reread {
                hub.want_fetch(&feed);
            }
            if deadline_ms(&hub, &feed) <= now && !feed.expiring.load(Ordering::Acquire) {
                tokio::spawn(expire(hub.clone(), feed));
            }
        }
    }
}

/// When the feed's search times out, in Unix ms.
fn deadline_ms(hub: &Hub, feed: &Feed) -> u64 {
    feed.requested_at_ms
        .saturating_add(hub.settings.search_timeout.as_millis() as u64)
}

/// Writes the `timeout` failure unless the search already has its terminal
/// event. A failed write is retried by the next pass.
async fn expire(hub: Arc<Hub>, feed: Arc<Feed>) {
    if feed.is_over() || feed.expiring.swap(true, Ordering::AcqRel) {
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
    // A timeout is not based on the results, so it carries no tally and is never
    // refused as stale.
    let written = streams::append_event(
        &mut hub.redis.commands(),
        &event,
        hub.settings.results_ttl,
        None,
    )
    .await;
    match written {
        Ok(Appended::Written(entry_id)) => {
            hub.link.up();
            hub.metrics.searches_timed_out.inc();
            tracing::info!(search_id = %feed.search_id, entry_id, "search timed out");
            hub.want_fetch(&feed);
        }
        // The terminal slot is taken: the provider's terminal event got there
        // first, and a complete read must reach it, unless the stream itself is
        // gone (deleted by another instance's last reader, evicted, deleted by
        // hand). Then nothing will ever end the feed but this.
        Ok(Appended::Skipped | Appended::Stale(_)) => {
            hub.link.up();
            if !fetcher::fetch(&hub, feed.clone()).await {
                // Not read to the end: the next pass tries again.
                feed.expiring.store(false, Ordering::Release);
            } else if !feed.is_terminal() {
                tracing::info!(search_id = %feed.search_id, "the search's stream is gone; ending its streams");
                feed.vanish();
            }
        }
        Err(error) => {
            hub.metrics.redis_error("timeout");
            // A refused write says nothing about the connection; it is logged
            // once by the refusal state, not as the link going down.
            if hub.health.writes.note(&error).is_none() {
                hub.link.down(&error);
            }
            feed.expiring.store(false, Ordering::Release);
        }
    }
}
