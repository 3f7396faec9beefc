//! The delivery hub: one shared [`Feed`] per search with local clients, kept
//! current on a constant number of Redis connections however many clients there
//! are.
//!
//! * [`nudges`]: one pub/sub connection; the append script publishes a nudge
//!   after every write: the search id and the entries written
//!   ([`contract::nudge`]). Entries that continue the search's feed are
//!   appended to it at once; any other nudge (a gap, a bare search id) marks
//!   the feed for a read. On a Redis Cluster [`shard_nudges`] does the same
//!   with one sharded channel per search, subscribed while the search has a
//!   feed here.
//! * [`fetcher`]: reads new entries with `XRANGE` on the shared multiplexed
//!   connection, many searches concurrently, and wakes the feed's clients: a
//!   new feed's first read, and reads of feeds whose nudge did not continue
//!   them. Nudged reads go first; safety-net re-reads ("rechecks") take the
//!   spare capacity only, a few at a time, so they never delay a nudged read.
//! * [`sweep`]: the clock. Times out searches from a queue ordered by deadline
//!   (work per pass is the number of deadlines due, not the number of feeds),
//!   retries failed reads, and re-reads every feed while the subscription is
//!   down. While pub/sub is healthy nothing is re-read: Redis loses a nudge only
//!   by closing the subscriber's connection, and every (re)subscription
//!   rechecks every feed ([`Hub::recheck_all`]). Idle feeds therefore cost no
//!   Redis command at all.
//! * a heartbeat: the keep-alive clock, split into slots ticked one after the
//!   other over the interval, so each tick wakes a small share of the idle
//!   clients instead of all of them at once.
//!
//! A client holds a [`Subscription`]: a cursor into its search's feed plus two
//! watch receivers. Dropping it releases the feed when it was the last.

mod feed;
mod fetcher;
mod nudges;
mod shard_nudges;
mod sweep;

use std::collections::hash_map::Entry as MapEntry;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use contract::nudge::Nudge;
use contract::{EntryId, EventStatus};
use service_runtime::redis_health::RedisHealth;
use service_runtime::redis_link::{LinkState, RedisLink};
use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::metrics::Metrics;
use crate::tasks::Tasks;

pub(crate) use feed::Entry;
use feed::Feed;
use sweep::Deadlines;

/// The heartbeat ticks one slot this often at most (fewer slots for short
/// heartbeats), so each tick wakes about 1/slots of the idle clients.
const TICK_SPACING: Duration = Duration::from_millis(10);

/// Most keep-alive slots: at 15 s heartbeats, a tick every 15 ms.
const MAX_TICK_SLOTS: usize = 1024;

/// What the hub needs from the configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    /// Time from POST to the timeout event.
    pub search_timeout: Duration,
    /// TTL passed to the append script with the timeout event.
    pub results_ttl: Duration,
    /// Interval of the keep-alive tick.
    pub heartbeat: Duration,
}

impl From<&crate::config::Config> for Settings {
    fn from(config: &crate::config::Config) -> Settings {
        Settings {
            search_timeout: config.search_timeout,
            results_ttl: config.results_ttl,
            heartbeat: config.sse_heartbeat,
        }
    }
}

/// Shared state of the delivery machinery; see the module docs.
pub(crate) struct Hub {
    /// Feeds of searches with at least one local client, and their timeout
    /// deadlines. A std mutex: it is held for map and queue updates only,
    /// never across an await.
    feeds: Mutex<Feeds>,
    /// Feeds to read because they were nudged or are new, consumed first by
    /// the fetcher task.
    fetch_queue: mpsc::UnboundedSender<Arc<Feed>>,
    /// Feeds to re-read in case a nudge was missed, consumed by the fetcher
    /// with spare capacity only.
    recheck_queue: mpsc::UnboundedSender<Arc<Feed>>,
    /// Searches whose latest read failed, re-read by the sweep's next retry.
    retries: Mutex<HashSet<Uuid>>,
    /// The keep-alive slots: each client waits on one, and the heartbeat ticks
    /// them in turn.
    ticks: Box<[watch::Sender<()>]>,
    /// The slot the next subscription joins (modulo the slot count): round
    /// robin keeps the slots evenly filled.
    next_slot: AtomicUsize,
    /// The multiplexed connection for reads and timeout writes; the client for
    /// the pub/sub connection.
    redis: RedisLink,
    /// Where outcomes and Redis failures are counted.
    metrics: Arc<Metrics>,
    /// Timeout, TTL and heartbeat.
    settings: Settings,
    /// Stops the hub's tasks.
    shutdown: CancellationToken,
    /// Where the hub's tasks run, so shutdown waits for them: its loops and
    /// the one-off timeout writes and subscription retries they start.
    tasks: Tasks,
    /// Outcome of the hub's latest command (read or timeout write), so an outage
    /// is logged once rather than once per feed.
    link: LinkState,
    /// Where a timeout write refused by Redis (OOM and the like) is noted: the
    /// connection is fine then, and the write is retried by the next pass.
    health: Arc<RedisHealth>,
    /// True while the pub/sub subscription is up (and every feed was rechecked
    /// when it came up), so nudges arrive and nothing needs re-reading.
    subscribed: AtomicBool,
    /// On a cluster, where each search has its own channel: the ids of
    /// searches whose feed appeared or went away, for [`shard_nudges`] to
    /// subscribe or unsubscribe. `None` on a single server.
    shard_subscriptions: Option<mpsc::UnboundedSender<Uuid>>,
}

/// What the hub's map lock guards.
#[derive(Default)]
struct Feeds {
    /// Feeds by search.
    by_id: HashMap<Uuid, Arc<Feed>>,
    /// When each feed's search times out (or its failed timeout write is
    /// retried).
    deadlines: Deadlines,
}

/// A client's place in its search's feed.
pub(crate) struct Subscription {
    /// To release the feed on drop.
    hub: Arc<Hub>,
    /// The search's events.
    feed: Arc<Feed>,
    /// Woken by appends to the feed.
    changes: watch::Receiver<()>,
    /// Woken by the keep-alive tick.
    ticks: watch::Receiver<()>,
    /// The last entry delivered (or the client's `Last-Event-ID`).
    cursor: Option<EntryId>,
}

/// What a subscription has for its client now.
pub(crate) enum Next {
    /// The next event.
    Entry(Entry),
    /// Nothing yet.
    Wait,
    /// The client already has the terminal event, of this status (it resumed
    /// after it).
    Ended(EventStatus),
    /// The search's stream is gone without its terminal event having been
    /// read: nothing more will come. A client that reconnects learns from the
    /// attach that the search is over.
    Vanished,
}

/// Why [`Subscription::wait`] returned.
pub(crate) enum Wake {
    /// The feed has new entries.
    Entries,
    /// Keep-alive time.
    Tick,
}

impl Hub {
    /// Creates the hub and starts its tasks in `tasks`; they run until
    /// `shutdown`.
    pub(crate) fn start(
        redis: RedisLink,
        metrics: Arc<Metrics>,
        health: Arc<RedisHealth>,
        settings: Settings,
        tasks: &Tasks,
        shutdown: CancellationToken,
    ) -> Arc<Hub> {
        let (fetch_queue, fetches) = mpsc::unbounded_channel();
        let (recheck_queue, rechecks) = mpsc::unbounded_channel();
        let slots = tick_slots(settings.heartbeat);
        let (pushes, pushed) = mpsc::unbounded_channel();
        let (changes, changed) = mpsc::unbounded_channel();
        let sharded = redis.sharded_subscriber(pushes);
        let hub = Arc::new(Hub {
            feeds: Mutex::default(),
            fetch_queue,
            recheck_queue,
            retries: Mutex::default(),
            ticks: (0..slots).map(|_| watch::Sender::new(())).collect(),
            next_slot: AtomicUsize::new(0),
            redis,
            metrics,
            settings,
            shutdown,
            tasks: tasks.clone(),
            link: LinkState::new("redis-hub"),
            health,
            subscribed: AtomicBool::new(false),
            shard_subscriptions: sharded.is_some().then(|| changes.clone()),
        });
        tasks.spawn("hub fetcher", fetcher::run(hub.clone(), fetches, rechecks));
        match sharded {
            Some(conn) => tasks.spawn(
                "hub sharded nudges",
                shard_nudges::run(hub.clone(), conn, pushed, changed, changes),
            ),
            None => tasks.spawn("hub nudges", nudges::run(hub.clone())),
        }
        tasks.spawn("hub sweep", sweep::run(hub.clone()));
        tasks.spawn("hub heartbeat", heartbeat(hub.clone()));
        hub
    }

    /// Subscribes a client to a search, creating the search's feed if this is its
    /// first local client. `requested_at_ms` is the POST time when known;
    /// `finished` says whether the search already had its terminal event when the
    /// client attached; `after` is the client's `Last-Event-ID`.
    pub(crate) fn subscribe(
        self: &Arc<Self>,
        search_id: Uuid,
        requested_at_ms: Option<u64>,
        finished: bool,
        after: Option<EntryId>,
    ) -> Subscription {
        let (feed, created) = {
            let mut guard = self.feeds.lock().unwrap_or_else(PoisonError::into_inner);
            let feeds = &mut *guard;
            let (feed, created) = match feeds.by_id.entry(search_id) {
                MapEntry::Occupied(e) => (e.get().clone(), false),
                MapEntry::Vacant(e) => {
                    let feed = Arc::new(Feed::new(
                        search_id,
                        requested_at_ms.unwrap_or_else(crate::unix_ms),
                        !finished && requested_at_ms.is_some(),
                    ));
                    e.insert(feed.clone());
                    feeds.deadlines.insert(&feed, self.deadline_ms(&feed));
                    (feed, true)
                }
            };
            feed.watch();
            (feed, created)
        };
        if created {
            self.metrics.hub_feeds_active.inc();
            self.want_fetch(&feed);
            self.feed_changed(search_id);
        }
        let slot = self.next_slot.fetch_add(1, Ordering::Relaxed) % self.ticks.len();
        Subscription {
            hub: self.clone(),
            changes: feed.changes(),
            ticks: self.ticks[slot].subscribe(),
            feed,
            cursor: after,
        }
    }

    /// Drops one watcher of `feed`, and the feed itself when it was the last.
    fn release(&self, feed: &Arc<Feed>) {
        let mut feeds = self.feeds.lock().unwrap_or_else(PoisonError::into_inner);
        if feed.unwatch()
            && feeds
                .by_id
                .get(&feed.search_id)
                .is_some_and(|current| Arc::ptr_eq(current, feed))
        {
            feeds.by_id.remove(&feed.search_id);
            feeds.deadlines.remove(feed);
            self.metrics.hub_feeds_active.dec();
            drop(feeds);
            self.feed_changed(feed.search_id);
        }
    }

    /// When the feed's search times out, in Unix ms.
    fn deadline_ms(&self, feed: &Feed) -> u64 {
        feed.requested_at_ms
            .saturating_add(self.settings.search_timeout.as_millis() as u64)
    }

    /// Takes the feeds whose deadline is at or before `now_ms` out of the
    /// deadline queue.
    fn due_feeds(&self, now_ms: u64) -> Vec<Arc<Feed>> {
        let mut guard = self.feeds.lock().unwrap_or_else(PoisonError::into_inner);
        let feeds = &mut *guard;
        feeds
            .deadlines
            .take_due(now_ms)
            .into_iter()
            .filter_map(|search_id| feeds.by_id.get(&search_id).cloned())
            .inspect(|feed| {
                feed.take_due();
            })
            .collect()
    }

    /// Puts `feed` back in the deadline queue at `at_ms`, if it still has
    /// clients.
    fn due_again(&self, feed: &Arc<Feed>, at_ms: u64) {
        let mut feeds = self.feeds.lock().unwrap_or_else(PoisonError::into_inner);
        if feeds
            .by_id
            .get(&feed.search_id)
            .is_some_and(|current| Arc::ptr_eq(current, feed))
        {
            feeds.deadlines.insert(feed, at_ms);
        }
    }

    /// A search's feed appeared or went away: on a cluster, its sharded
    /// subscription follows.
    fn feed_changed(&self, search_id: Uuid) {
        if let Some(changes) = &self.shard_subscriptions {
            // Fails only once the task stopped at shutdown.
            let _ = changes.send(search_id);
        }
    }

    /// True if and only if a local client watches the search.
    fn has_feed(&self, search_id: Uuid) -> bool {
        self.feeds
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .by_id
            .contains_key(&search_id)
    }

    /// Queues a read of `feed` unless one is already queued or the feed is over.
    fn want_fetch(&self, feed: &Arc<Feed>) {
        if feed.want_fetch() {
            // Fails only once the fetcher stopped at shutdown, when reads no longer matter.
            let _ = self.fetch_queue.send(feed.clone());
        }
    }

    /// Queues a safety-net re-read of `feed` unless one is already queued or
    /// the feed is over.
    fn want_recheck(&self, feed: &Arc<Feed>) {
        if feed.want_recheck() {
            // Fails only once the fetcher stopped at shutdown, when reads no longer matter.
            let _ = self.recheck_queue.send(feed.clone());
        }
    }

    /// Records whether the pub/sub subscription is up, so nudges arrive.
    fn set_subscribed(&self, up: bool) {
        self.subscribed.store(up, Ordering::Release);
    }

    /// True if and only if the pub/sub subscription is up; while it is down
    /// the sweep re-reads every feed.
    fn is_subscribed(&self) -> bool {
        self.subscribed.load(Ordering::Acquire)
    }

    /// Notes that a read of `feed` failed, for the sweep to retry.
    fn retry_later(&self, feed: &Feed) {
        self.retries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(feed.search_id);
    }

    /// Queues a recheck of every search whose read failed since the last
    /// call and that still has local clients.
    fn retry_failed(&self) {
        let failed =
            std::mem::take(&mut *self.retries.lock().unwrap_or_else(PoisonError::into_inner));
        if !failed.is_empty() {
            self.recheck_searches(failed);
        }
    }

    /// A nudge may have been missed for any search (the subscription was
    /// (re)established, or lost): re-reads every feed, behind nudged reads.
    pub(super) fn recheck_all(&self) {
        for feed in self.feeds() {
            self.want_recheck(&feed);
        }
    }

    /// A nudge may have been missed for these searches (for example, their
    /// channel was (re)subscribed): re-reads those with local clients, behind
    /// nudged reads.
    pub(super) fn recheck_searches(&self, search_ids: impl IntoIterator<Item = Uuid>) {
        let feeds: Vec<Arc<Feed>> = {
            let feeds = self.feeds.lock().unwrap_or_else(PoisonError::into_inner);
            search_ids
                .into_iter()
                .filter_map(|id| feeds.by_id.get(&id).cloned())
                .collect()
        };
        for feed in feeds {
            self.want_recheck(&feed);
        }
    }

    /// A search's stream changed. If a local client watches it, the entries
    /// the nudge carries are appended to its feed when they continue it;
    /// otherwise (a gap, a bare nudge) the feed is read as before. Carried
    /// entries save that read: a round trip and two task hand-offs per event.
    fn nudge(&self, nudge: &Nudge<'_>) {
        let feed = self
            .feeds
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .by_id
            .get(&nudge.search_id)
            .cloned();
        let Some(feed) = feed else {
            return;
        };
        let appended = nudge
            .carried()
            .and_then(|carried| feed.append_after(carried.after, &carried.entries));
        match appended {
            Some(appended) => self.record(&feed, &appended),
            None => self.want_fetch(&feed),
        }
    }

    /// Searches with at least one local client, for the summary logged while
    /// Redis refuses writes.
    pub(crate) fn feed_count(&self) -> usize {
        self.feeds
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .by_id
            .len()
    }

    /// Every current feed, copied out so the lock is not held while using them.
    fn feeds(&self) -> Vec<Arc<Feed>> {
        self.feeds
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .by_id
            .values()
            .cloned()
            .collect()
    }

    /// Counts what an append revealed about the search's progress, for feeds
    /// that watched the search while it ran.
    fn record(&self, feed: &Feed, appended: &feed::Appended) {
        if !feed.fresh {
            return;
        }
        let since_post =
            Duration::from_millis(crate::unix_ms().saturating_sub(feed.requested_at_ms));
        if appended.first_result {
            self.metrics
                .time_to_first_result
                .observe(since_post.as_secs_f64());
        }
        if let Some(kind) = appended.terminal {
            self.metrics
                .time_to_completion
                .observe(since_post.as_secs_f64());
            match kind {
                EventStatus::Completed => self.metrics.deliveries_completed.inc(),
                _ => self.metrics.deliveries_failed.inc(),
            };
        }
    }
}

impl Subscription {
    /// The next event for this client, advancing its cursor.
    pub(crate) fn next(&mut self) -> Next {
        // Marked before reading, so an append racing this read still wakes `wait`.
        self.changes.mark_unchanged();
        if let Some(entry) = self.feed.after(self.cursor) {
            self.cursor = Some(entry.id);
            return Next::Entry(entry);
        }
        match self.feed.terminal() {
            Some((terminal, kind)) if Some(terminal) <= self.cursor => Next::Ended(kind),
            None if self.feed.is_vanished() => Next::Vanished,
            _ => Next::Wait,
        }
    }

    /// Waits for new entries or the next keep-alive tick.
    pub(crate) async fn wait(&mut self) -> Wake {
        // Neither sender can be dropped while this subscription holds the feed
        // and the hub, so neither branch can return an error in a loop.
        tokio::select! {
            _ = self.changes.changed() => Wake::Entries,
            _ = self.ticks.changed() => Wake::Tick,
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.release(&self.feed);
    }
}

/// How many keep-alive slots a heartbeat interval is split into: one per
/// [`TICK_SPACING`], at least one, at most [`MAX_TICK_SLOTS`].
fn tick_slots(heartbeat: Duration) -> usize {
    let slots = heartbeat.as_nanos() / TICK_SPACING.as_nanos();
    (slots as usize).clamp(1, MAX_TICK_SLOTS)
}

/// Ticks the keep-alive slots in turn until shutdown, each once per heartbeat
/// interval: the wake-ups (and keep-alive writes) of idle clients are spread
/// evenly over the interval rather than bunched into one burst.
async fn heartbeat(hub: Arc<Hub>) {
    let slots = hub.ticks.len();
    let mut interval = tokio::time::interval(hub.settings.heartbeat / slots as u32);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    interval.tick().await;
    for slot in (0..slots).cycle() {
        tokio::select! {
            _ = hub.shutdown.cancelled() => return,
            _ = interval.tick() => {
                hub.ticks[slot].send_replace(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use service_runtime::config::Vars;

    /// A hub with the metrics it writes.
    struct Fixture {
        hub: Arc<Hub>,
        metrics: Arc<Metrics>,
    }

    /// A hub whose Redis is unreachable (nothing listens on port 1), for
    /// tests of what happens before any Redis answer.
    fn fixture() -> Fixture {
        let vars =
            Vars::new(|name| (name == "REDIS_URL").then(|| "redis://127.0.0.1:1".to_owned()));
        let config = Config::from_vars(&vars).unwrap();
        let redis = RedisLink::new(&config.redis).unwrap();
        let metrics = Arc::new(Metrics::new(&[]));
        let hub = Hub::start(
            redis,
            metrics.clone(),
            RedisHealth::new(),
            Settings::from(&config),
            &Tasks::default(),
            CancellationToken::new(),
        );
        Fixture { hub, metrics }
    }

    #[tokio::test]
    async fn feeds_leave_no_task_behind() {
        let fixture = fixture();
        let runtime = tokio::runtime::Handle::current();
        let search_id = Uuid::new_v4();
        drop(
            fixture
                .hub
                .subscribe(search_id, Some(crate::unix_ms()), false, None),
        );
        let before = runtime.metrics().num_alive_tasks();
        for _ in 0..100 {
            drop(
                fixture
                    .hub
                    .subscribe(search_id, Some(crate::unix_ms()), false, None),
            );
        }
        assert_eq!(runtime.metrics().num_alive_tasks(), before);
        assert_eq!(fixture.metrics.hub_feeds_active.get(), 0);
        let feeds = fixture.hub.feeds.lock().unwrap();
        assert_eq!(feeds.deadlines.len(), 0, "released feeds leave no deadline");
    }

    #[tokio::test(start_paused = true)]
    async fn keep_alive_ticks_are_spread_over_the_interval() {
        let fixture = fixture();
        let heartbeat = fixture.hub.settings.heartbeat;
        let slots = fixture.hub.ticks.len();
        assert!(slots > 100, "{slots} slots for {heartbeat:?}");
        let search_id = Uuid::new_v4();
        let mut subscriptions: Vec<Subscription> = (0..2 * slots)
            .map(|_| {
                fixture
                    .hub
                    .subscribe(search_id, Some(crate::unix_ms()), false, None)
            })
            .collect();
        let ticked = |subscriptions: &mut [Subscription]| {
            subscriptions
                .iter_mut()
                .filter(|s| s.ticks.has_changed().unwrap())
                .count()
        };

        // A tenth of the way through the interval, about a tenth of the
        // clients were woken: never all of them at once.
        tokio::time::sleep(heartbeat / 10).await;
        let early = ticked(&mut subscriptions);
        let tenth = subscriptions.len() / 10;
        assert!(
            early > tenth / 2 && early < tenth * 2,
            "{early} of {} ticked after a tenth of the interval",
            subscriptions.len()
        );
        // After a whole interval, every client was woken once.
        tokio::time::sleep(heartbeat).await;
        assert_eq!(ticked(&mut subscriptions), subscriptions.len());
    }

    #[tokio::test]
    async fn a_client_past_the_end_learns_how_the_search_ended() {
        let fixture = fixture();
        let after = EntryId { ms: 5, seq: 0 };
        let mut subscription = fixture
            .hub
            .subscribe(Uuid::new_v4(), Some(0), true, Some(after));
        subscription.feed.append([(
            after,
            Some(br#"{"status":"failed","error":{"code":"timeout","message":"m"}}"#.to_vec()),
        )]);
        assert!(matches!(
            subscription.next(),
            Next::Ended(EventStatus::TimedOut)
        ));
    }

    #[tokio::test]
    async fn a_nudge_delivers_the_entries_that_continue_the_feed_and_no_others() {
        let fixture = fixture();
        let search_id = Uuid::new_v4();
        let mut subscription = fixture.hub.subscribe(search_id, Some(0), false, None);
        let nudge = |payload: String| {
            fixture
                .hub
                .nudge(&Nudge::parse(payload.as_bytes()).expect("a nudge"));
        };
        let processing = r#"{"status":"processing"}"#;
        nudge(format!(
            "{search_id} -\n5-0 {}\n{processing}",
            processing.len()
        ));
        let first = EntryId { ms: 5, seq: 0 };
        assert!(matches!(subscription.next(), Next::Entry(e) if e.id == first));

        // Entries after one this feed never held wait for a read instead.
        nudge(format!("{search_id} 6-0\n7-0 2\n{{}}"));
        nudge(format!("{search_id} -\n7-0 2\n{{}}"));
        nudge(search_id.to_string());
        assert!(matches!(subscription.next(), Next::Wait));
        assert_eq!(subscription.feed.last_id(), Some(first));
    }

    #[tokio::test]
    async fn a_vanished_feed_delivers_what_it_has_then_ends() {
        let fixture = fixture();
        let mut subscription = fixture.hub.subscribe(Uuid::new_v4(), Some(0), false, None);
        let processing = EntryId { ms: 1, seq: 0 };
        subscription
            .feed
            .append([(processing, Some(br#"{"status":"processing"}"#.to_vec()))]);
        subscription.feed.vanish();
        assert!(matches!(subscription.next(), Next::Entry(e) if e.id == processing));
        assert!(matches!(subscription.next(), Next::Vanished));
    }
}
