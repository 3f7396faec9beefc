//! One search's events as this instance has read them, shared by every local
//! client of the search.
//!
//! Entries are kept as finished SSE frames (`Bytes`), so a thousand clients of one
//! search share one copy of each event and one Redis read of it; a client only
//! holds a cursor into the list. The list lives as long as the search has a local
//! client, and a search has a handful of events, so keeping all of them lets late
//! joiners and `Last-Event-ID` resumes be served from memory.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{PoisonError, RwLock};

use bytes::Bytes;
use contract::{EntryId, EventStatus};
use tokio::sync::watch;
use uuid::Uuid;

use crate::delivery::sse;

/// The events of one search read so far, plus the bookkeeping the hub needs.
pub(super) struct Feed {
    /// The search.
    pub(super) search_id: Uuid,
    /// `flight.search.results:<id>`, built once because every fetch needs it.
    pub(super) results_key: String,
    /// POST time (Unix ms), where the search timeout starts.
    pub(super) requested_at_ms: u64,
    /// True if the search was still running when the feed was created, so its
    /// outcome is news to this instance and goes into the metrics.
    pub(super) fresh: bool,
    /// What has been read, behind a lock that is never held across an await.
    log: RwLock<Log>,
    /// Bumped after each append; every client waits on a receiver of it.
    changes: watch::Sender<()>,
    /// Set while a nudged read is queued, so a burst of nudges costs one read.
    fetch_wanted: AtomicBool,
    /// Set while a safety-net re-read is queued, apart from `fetch_wanted` so
    /// that a nudge never waits behind the slower re-read queue.
    recheck_wanted: AtomicBool,
    /// The time (Unix ms) under which the feed sits in the hub's deadline
    /// queue, 0 when it is not queued; changed only under the hub's map lock,
    /// so the feed can be taken out of the queue when its last client leaves.
    due_ms: AtomicU64,
    /// Local clients watching; changed only under the hub's map lock.
    watchers: AtomicUsize,
}

/// The entries of a feed and what they tell.
#[derive(Default)]
struct Log {
    /// Every event read, in stream order.
    entries: Vec<Entry>,
    /// The last stream entry read (also entries without `data`), where the next
    /// fetch starts.
    last_id: Option<EntryId>,
    /// The terminal entry and its status, once read; nothing after it is ever
    /// delivered.
    terminal: Option<(EntryId, EventStatus)>,
    /// Set when the search's stream turned out to be gone before its terminal
    /// event was read: nothing more will ever come, so clients must end.
    vanished: bool,
    /// Whether a `result` event has been read, for the first-result metric.
    seen_result: bool,
}

/// One event, ready to send.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// Its stream entry id, the SSE `id:`.
    pub id: EntryId,
    /// The complete SSE frame.
    pub frame: Bytes,
    /// What the event says, read once here rather than once per client.
    pub status: EventStatus,
}

/// What one append added.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Appended {
    /// New events.
    pub count: usize,
    /// True if the first `result` event was among them.
    pub first_result: bool,
    /// The terminal event's status, if it was among them.
    pub terminal: Option<EventStatus>,
}

impl Log {
    /// Adds the entries after the last one read, up to the terminal event;
    /// see [`Feed::append`].
    fn push<D: AsRef<[u8]>>(
        &mut self,
        entries: impl IntoIterator<Item = (EntryId, Option<D>)>,
    ) -> Appended {
        let mut appended = Appended::default();
        for (id, data) in entries {
            if self.terminal.is_some() || self.last_id.is_some_and(|last| id <= last) {
                continue;
            }
            self.last_id = Some(id);
            let Some(data) = data else {
                continue;
            };
            let data = data.as_ref();
            let status = EventStatus::of(data);
            if status == EventStatus::Result && !self.seen_result {
                self.seen_result = true;
                appended.first_result = true;
            }
            if status.is_terminal() {
                self.terminal = Some((id, status));
                appended.terminal = Some(status);
            }
            self.entries.push(Entry {
                id,
                frame: sse::event(id, data),
                status,
            });
            appended.count += 1;
        }
        appended
    }
}

impl Feed {
    /// An empty feed.
    pub(super) fn new(search_id: Uuid, requested_at_ms: u64, fresh: bool) -> Feed {
        Feed {
            search_id,
            results_key: contract::keys::results_key(search_id),
            requested_at_ms,
            fresh,
            log: RwLock::default(),
            changes: watch::Sender::new(()),
            fetch_wanted: AtomicBool::new(false),
            recheck_wanted: AtomicBool::new(false),
            due_ms: AtomicU64::new(0),
            watchers: AtomicUsize::new(0),
        }
    }

    /// Appends entries read from the result stream (id and `data` field, `None`
    /// when missing) and wakes the clients. Entries at or before the last one read
    /// are skipped, so overlapping fetches are harmless, and so is everything
    /// after the terminal event.
    pub(super) fn append(
        &self,
        entries: impl IntoIterator<Item = (EntryId, Option<Vec<u8>>)>,
    ) -> Appended {
        let appended = self
            .log
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(entries);
        self.wake(&appended);
        appended
    }

    /// Appends the entries a nudge carried, which follow the stream's entry
    /// `after` (`None`: they are its first) with nothing in between, if they
    /// continue what the feed holds; returns `None` when they do not (a gap:
    /// the feed must read the stream instead). They continue it when the
    /// feed's last entry is `after` or one of them: the feed holds every entry
    /// up to its last one, so the rest follow without a hole. A feed that
    /// already holds the newest of them has nothing to add.
    ///
    /// The check and the append are one step under the log's lock, so a fetch
    /// appending at the same time can neither open a gap nor be skipped.
    pub(super) fn append_after(
        &self,
        after: Option<EntryId>,
        entries: &[(EntryId, &[u8])],
    ) -> Option<Appended> {
        let appended = {
            let mut log = self.log.write().unwrap_or_else(PoisonError::into_inner);
            let last = log.last_id;
            let newest = entries.last().map(|&(id, _)| id);
            if newest.is_none_or(|newest| last.is_some_and(|last| last >= newest)) {
                return Some(Appended::default());
            }
            if last != after && !entries.iter().any(|&(id, _)| Some(id) == last) {
                return None;
            }
            log.push(entries.iter().map(|&(id, data)| (id, Some(data))))
        };
        self.wake(&appended);
        Some(appended)
    }

    /// Wakes the clients if an append added an event.
    fn wake(&self, appended: &Appended) {
        if appended.count > 0 {
            self.changes.send_replace(());
        }
    }

    /// The first entry after `cursor` (from the start for `None`).
    pub(super) fn after(&self, cursor: Option<EntryId>) -> Option<Entry> {
        let log = self.log.read().unwrap_or_else(PoisonError::into_inner);
        let next = log.entries.partition_point(|e| Some(e.id) <= cursor);
        log.entries.get(next).cloned()
    }

    /// Where the next fetch starts.
    pub(super) fn last_id(&self) -> Option<EntryId> {
        self.log
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .last_id
    }

    /// The terminal entry's id and status, once read.
    pub(super) fn terminal(&self) -> Option<(EntryId, EventStatus)> {
        self.log
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .terminal
    }

    /// True if and only if the terminal entry has been read.
    pub(super) fn is_terminal(&self) -> bool {
        self.terminal().is_some()
    }

    /// Records that the search's stream is gone although its terminal event
    /// was never read (it was deleted or evicted), and wakes the clients so
    /// they end.
    pub(super) fn vanish(&self) {
        self.log
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .vanished = true;
        self.changes.send_replace(());
    }

    /// True if and only if the stream is known to be gone; see [`Feed::vanish`].
    pub(super) fn is_vanished(&self) -> bool {
        self.log
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .vanished
    }

    /// True if and only if nothing more will be read: the terminal event is
    /// in, or the stream is gone.
    pub(super) fn is_over(&self) -> bool {
        let log = self.log.read().unwrap_or_else(PoisonError::into_inner);
        log.terminal.is_some() || log.vanished
    }

    /// A receiver woken after every append.
    pub(super) fn changes(&self) -> watch::Receiver<()> {
        self.changes.subscribe()
    }

    /// Asks for a nudged read. Returns true if and only if the caller must
    /// queue one: none is queued yet and the feed is not over.
    pub(super) fn want_fetch(&self) -> bool {
        !self.is_over() && !self.fetch_wanted.swap(true, Ordering::AcqRel)
    }

    /// Asks for a safety-net re-read; true if and only if the caller must
    /// queue one, as for [`Feed::want_fetch`].
    pub(super) fn want_recheck(&self) -> bool {
        !self.is_over() && !self.recheck_wanted.swap(true, Ordering::AcqRel)
    }

    /// A queued nudged read starts. Cleared before reading: a nudge that
    /// arrives during the read queues another one instead of being lost.
    pub(super) fn fetch_started(&self) {
        self.fetch_wanted.store(false, Ordering::Release);
    }

    /// A queued re-read starts; see [`Feed::fetch_started`].
    pub(super) fn recheck_started(&self) {
        self.recheck_wanted.store(false, Ordering::Release);
    }

    /// One more local client watches. Called under the hub's map lock.
    pub(super) fn watch(&self) {
        self.watchers.fetch_add(1, Ordering::Relaxed);
    }

    /// One local client left. Returns true if and only if it was the last.
    /// Called under the hub's map lock.
    pub(super) fn unwatch(&self) -> bool {
        self.watchers.fetch_sub(1, Ordering::Relaxed) == 1
    }

    /// True if and only if a local client watches.
    pub(super) fn is_watched(&self) -> bool {
        self.watchers.load(Ordering::Relaxed) > 0
    }

    /// Records that the feed sits in the deadline queue under `at_ms`
    /// (never 0). Called under the hub's map lock.
    pub(super) fn set_due(&self, at_ms: u64) {
        self.due_ms.store(at_ms, Ordering::Relaxed);
    }

    /// Records that the feed left the deadline queue, and returns the time it
    /// was queued under, if it was. Called under the hub's map lock.
    pub(super) fn take_due(&self) -> Option<u64> {
        Some(self.due_ms.swap(0, Ordering::Relaxed)).filter(|&at_ms| at_ms != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> EntryId {
        EntryId { ms: 1000, seq: n }
    }

    fn data(status: &str) -> Option<Vec<u8>> {
        Some(format!(r#"{{"search_id":"x","status":"{status}","results":[]}}"#).into_bytes())
    }

    #[test]
    fn appends_skip_what_was_read_and_stop_at_the_terminal_event() {
        let feed = Feed::new(Uuid::nil(), 0, true);
        let first = feed.append([(id(1), data("processing")), (id(2), data("result"))]);
        assert_eq!(
            first,
            Appended {
                count: 2,
                first_result: true,
                terminal: None
            }
        );
        let again = feed.append([
            (id(2), data("result")),
            (id(3), None),
            (id(4), data("result")),
            (id(5), data("completed")),
            (id(6), data("result")),
        ]);
        assert_eq!(
            again,
            Appended {
                count: 2,
                first_result: false,
                terminal: Some(EventStatus::Completed)
            }
        );
        assert_eq!(feed.terminal(), Some((id(5), EventStatus::Completed)));
        assert!(feed.is_over());
        assert_eq!(feed.last_id(), Some(id(5)));
    }

    #[test]
    fn carried_entries_are_appended_only_where_they_continue_the_feed() {
        let feed = Feed::new(Uuid::nil(), 0, true);
        let mut changes = feed.changes();
        let (processing, result) = (data("processing").unwrap(), data("result").unwrap());
        let completed = data("completed").unwrap();
        assert_eq!(
            feed.append_after(Some(id(1)), &[(id(2), &result)]),
            None,
            "an empty feed takes only the stream's first entries"
        );
        let first = feed.append_after(None, &[(id(1), &processing)]);
        assert_eq!(first.map(|a| a.count), Some(1));
        assert!(changes.has_changed().unwrap());
        changes.mark_unchanged();

        // A gap: they follow an entry the feed has not read.
        assert_eq!(feed.append_after(Some(id(2)), &[(id(3), &result)]), None);
        assert_eq!(feed.append_after(None, &[(id(3), &result)]), None);
        assert!(!changes.has_changed().unwrap());
        assert_eq!(feed.last_id(), Some(id(1)));

        // Right after the last entry read: appended, told as a fetch tells it.
        let next = feed.append_after(Some(id(1)), &[(id(2), &result), (id(3), &result)]);
        let expected = Appended {
            count: 2,
            first_result: true,
            terminal: None,
        };
        assert_eq!(next, Some(expected));
        assert!(changes.has_changed().unwrap());
        changes.mark_unchanged();

        // Read already (a fetch was faster): nothing to add, nothing to read.
        assert_eq!(
            feed.append_after(Some(id(1)), &[(id(2), &result)]),
            Some(Appended::default())
        );
        assert!(!changes.has_changed().unwrap());
        // Partly read: only the rest is added, the duplicate skipped.
        let end = feed.append_after(Some(id(2)), &[(id(3), &result), (id(4), &completed)]);
        let expected = Appended {
            count: 1,
            first_result: false,
            terminal: Some(EventStatus::Completed),
        };
        assert_eq!(end, Some(expected));
        // A fetch overlapping them afterwards adds nothing either.
        assert_eq!(feed.append([(id(4), data("completed"))]).count, 0);
        let ids: Vec<EntryId> = std::iter::successors(feed.after(None), |e| feed.after(Some(e.id)))
            .map(|e| e.id)
            .collect();
        assert_eq!(ids, [id(1), id(2), id(3), id(4)]);
    }

    #[test]
    fn a_cursor_reads_the_entries_after_it_in_order() {
        let feed = Feed::new(Uuid::nil(), 0, true);
        feed.append([
            (id(1), data("processing")),
            (id(3), None),
            (id(4), data("result")),
        ]);
        let first = feed.after(None).unwrap();
        assert_eq!(first.id, id(1));
        assert!(first.frame.starts_with(b"id: 1000-1\ndata: {"));
        assert_eq!(feed.after(Some(id(1))).unwrap().id, id(4));
        assert_eq!(feed.after(Some(id(2))).unwrap().id, id(4));
        assert!(feed.after(Some(id(4))).is_none());
    }

    #[test]
    fn a_vanished_feed_is_over_and_wakes_its_clients() {
        let feed = Feed::new(Uuid::nil(), 0, true);
        let mut changes = feed.changes();
        feed.append([(id(1), data("processing"))]);
        changes.mark_unchanged();
        assert!(!feed.is_over());
        feed.vanish();
        assert!(changes.has_changed().unwrap());
        assert!(feed.is_vanished() && feed.is_over() && !feed.is_terminal());
    }

    #[test]
    fn clients_are_woken_by_appends_only() {
        let feed = Feed::new(Uuid::nil(), 0, true);
        let mut changes = feed.changes();
        assert!(!changes.has_changed().unwrap());
        feed.append([(id(1), None)]);
        assert!(!changes.has_changed().unwrap());
        feed.append([(id(2), data("processing"))]);
        assert!(changes.has_changed().unwrap());
        changes.mark_unchanged();
        feed.append([(id(2), data("processing"))]);
        assert!(
            !changes.has_changed().unwrap(),
            "an entry read before wakes nobody"
        );
    }

    #[test]
    fn a_burst_of_requests_for_a_read_queues_one_until_it_starts() {
        let feed = Feed::new(Uuid::nil(), 0, true);
        assert!(feed.want_fetch());
        assert!(!feed.want_fetch(), "one is queued already");
        assert!(feed.want_recheck(), "re-reads are queued apart");
        assert!(!feed.want_recheck());
        feed.fetch_started();
        assert!(feed.want_fetch(), "a nudge during the read queues another");
        assert!(!feed.want_recheck());
        feed.recheck_started();
        feed.fetch_started();
        feed.append([(id(1), data("completed"))]);
        assert!(
            !feed.want_fetch() && !feed.want_recheck(),
            "nothing to read once over"
        );
    }

    #[test]
    fn the_last_watcher_to_leave_is_told() {
        let feed = Feed::new(Uuid::nil(), 0, true);
        assert!(!feed.is_watched());
        feed.watch();
        feed.watch();
        assert!(!feed.unwatch());
        assert!(feed.is_watched());
        assert!(feed.unwatch());
        assert!(!feed.is_watched());
    }
}
