//! Taking searches in: `POST /api/flights/search` and the search queue it
//! writes to.
//!
//! * [`submit`]: the handler: rate limit, size, type and body checks,
//!   admission, queueing.
//! * [`rate_limit`]: the per-client limit on submissions.
//! * [`admission`]: accept only while the queue's backlog is below its bound.
//! * [`queue`]: writing a search (its state hash, then its queue entry) and
//!   keeping the consumer group.
//! * [`trim`]: removing queue entries every group has acknowledged.
//! * `queue_progress`: how far each consumer group has got through the queue,
//!   which admission and trimming both start from.

pub(crate) mod admission;
pub(crate) mod queue;
mod queue_progress;
pub(crate) mod rate_limit;
pub(crate) mod submit;
pub(crate) mod trim;
