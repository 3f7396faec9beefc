//! What one client connection's socket and its requests share
//! ([`Connection`]): whether it was cut off as stalled, and the reader of a
//! finished stream.
//!
//! A stream that delivered the terminal event ends its response at once, but
//! the client may not have read those bytes yet: they can sit in socket buffers
//! while the client is busy. Its reader therefore stays registered (and the
//! search's stream stays in Redis) until the client shows it has read the whole
//! response, by sending its next request on the connection or by closing it.
//! The connection parks that reader here; dropping the connection (every holder
//! gone when hyper finishes with it) detaches it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::delivery::reader::Reader;

/// Per-connection state, shared behind an `Arc` by the socket wrapper, the
/// service and the responses on the connection.
#[derive(Default)]
pub(crate) struct Connection {
    /// Set when the connection is cut off because the client stopped reading,
    /// so the stream that ends with it reports why.
    stalled: AtomicBool,
    /// The reader of a stream that ended with its terminal event, until the
    /// client is known to have read the response.
    finished_reader: Mutex<Option<Reader>>,
}

impl Connection {
    /// Records that the connection is being cut off as stalled.
    pub(crate) fn mark_stalled(&self) {
        self.stalled.store(true, Ordering::Relaxed);
    }

    /// True if and only if the connection was cut off for not reading.
    pub(crate) fn is_stalled(&self) -> bool {
        self.stalled.load(Ordering::Relaxed)
    }

    /// Keeps the reader of a stream that delivered its terminal event until the
    /// client is done with the response.
    pub(crate) fn keep_finished_reader(&self, reader: Reader) {
        // A previous one is released by the replacement: the client could only
        // start a second stream on this connection after reading the first.
        let previous = self.slot().replace(reader);
        drop(previous);
    }

    /// Detaches the parked reader: a new request shows the client read the
    /// previous response to its end.
    pub(crate) fn release_finished_reader(&self) {
        let parked = self.slot().take();
        drop(parked);
    }

    /// The parked reader, dropped outside the lock by the callers (its drop
    /// spawns the detach).
    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Reader>> {
        self.finished_reader
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}
