//! Which trace a search belongs to, so its event stream joins the trace of
//! its POST.
//!
//! The client opens the stream with a request of its own, usually without a
//! `traceparent` (a browser's `EventSource` cannot send one). This instance
//! remembers the POST span of each search it accepted while traces are
//! exported; a stream opened here is a child of it. A stream opened on
//! another instance, or after a restart, starts from the client's
//! `traceparent` if it sent one, else a trace of its own.
//!
//! The memory is bounded: entries older than the results' TTL (the search is
//! gone by then) are swept when the map is full, and while it stays full new
//! searches are not remembered.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use contract::TraceParent;
use uuid::Uuid;

/// Searches remembered at most.
const CAPACITY: usize = 65_536;

/// The POST span of recent searches.
pub(crate) struct SearchTraces {
    /// How long a search can be streamed: its keys' TTL.
    keep: Duration,
    /// Search id to its POST span and when it was accepted.
    posts: Mutex<HashMap<Uuid, (TraceParent, Instant)>>,
}

impl SearchTraces {
    /// An empty memory keeping entries for `keep`.
    pub(crate) fn new(keep: Duration) -> SearchTraces {
        SearchTraces {
            keep,
            posts: Mutex::new(HashMap::new()),
        }
    }

    /// Remembers that `search_id` was posted in the span `post`.
    pub(crate) fn remember(&self, search_id: Uuid, post: TraceParent) {
        let now = Instant::now();
        let mut posts = self.posts.lock().unwrap_or_else(PoisonError::into_inner);
        if posts.len() >= CAPACITY {
            posts.retain(|_, (_, at)| now.saturating_duration_since(*at) < self.keep);
        }
        if posts.len() < CAPACITY {
            posts.insert(search_id, (post, now));
        }
    }

    /// The POST span of `search_id`, if remembered.
    pub(crate) fn post_of(&self, search_id: Uuid) -> Option<TraceParent> {
        let posts = self.posts.lock().unwrap_or_else(PoisonError::into_inner);
        posts.get(&search_id).map(|(post, _)| *post)
    }

    /// Forgets `search_id`: its stream was deleted.
    pub(crate) fn forget(&self, search_id: Uuid) {
        let mut posts = self.posts.lock().unwrap_or_else(PoisonError::into_inner);
        posts.remove(&search_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_until_forgotten() {
        let traces = SearchTraces::new(Duration::from_secs(60));
        let id = Uuid::new_v4();
        let post = TraceParent {
            trace_id: 1,
            span_id: 2,
            flags: 1,
        };
        assert_eq!(traces.post_of(id), None);
        traces.remember(id, post);
        assert_eq!(traces.post_of(id), Some(post));
        traces.forget(id);
        assert_eq!(traces.post_of(id), None);
    }
}
