//! The HTTP edge: what every request meets before and after its handler.
//!
//! * [`server`]: the accept loop with this service's per-connection state.
//! * [`routes`]: method and path to endpoint; one log line and one metrics
//!   sample per request.
//! * [`request_head`]: the `Host` and `Content-Type` rules every request must
//!   satisfy.
//! * [`cors`] and [`browser_policy`]: the headers that tell browsers which
//!   pages may call the API and how to treat each answer.
//! * [`stall`]: cutting off clients that stopped reading.
//!
//! The edge calls into [`crate::intake`] and [`crate::delivery`], never the
//! other way round.

mod browser_policy;
pub(crate) mod cors;
mod request_head;
pub(crate) mod routes;
pub(crate) mod server;
mod stall;
