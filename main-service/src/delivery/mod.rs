//! Delivering a search's events: `GET /api/flights/search/{id}/stream`.
//!
//! * [`stream`]: the handler: resume point, attach, the event stream body and
//!   its end.
//! * `reader`: registering and releasing SSE readers in the search's state
//!   hash, which decides when a finished search's stream may be deleted.
//! * [`connection`]: where a finished stream's reader waits until the client
//!   has read the response.
//! * [`hub`]: one shared feed per search with local clients, kept current from
//!   Redis on a constant number of connections.
//! * `sse`: Server-Sent Events framing.

pub(crate) mod connection;
pub(crate) mod hub;
mod reader;
mod sse;
pub(crate) mod stream;
