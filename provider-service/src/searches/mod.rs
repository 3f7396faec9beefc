//! The work path: taking searches off the request stream, running each one
//! against the suppliers, and writing its events.
//!
//! * [`queue`]: the request stream's group commands and the dead-letter stream.
//! * [`consumer`]: the read loop on its own connection, bounded by a semaphore.
//! * [`worker`]: search tasks: the entries held, retries, the drain at shutdown.
//! * [`search`]: one attempt at a search, resumable after a crash, within the
//!   [`answer_bounds`].
//! * [`result_streams`]: appending a search's events through the idempotent
//!   script, and reading back what earlier attempts wrote.
//! * [`recovery`]: the sweep claiming idle entries and retiring those out of
//!   deliveries.
//! * [`dead_letter`]: setting aside entries that cannot be processed.
//! * [`containment`]: a panic ends one supplier's part, or one search, only.

pub(crate) mod answer_bounds;
pub(crate) mod consumer;
mod containment;
pub(crate) mod dead_letter;
pub(crate) mod queue;
pub(crate) mod recovery;
pub(crate) mod result_streams;
pub(crate) mod search;
pub(crate) mod worker;
