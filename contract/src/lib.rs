//! The flight-search contract shared by `main-service` and `provider-service`.
//!
//! Everything two processes must agree on lives here and nowhere else: the search
//! request and its validation rules, the event JSON written to each search's result
//! stream, the flight offer shape and its exact money, Redis key and field
//! names, the fields of a queued search (with the trace context it carries),
//! the Lua scripts both services run and the nudge they publish. The crate
//! does no I/O: callers pass in what it needs (the current date, the raw bytes) so
//! every rule is a pure function that tests can pin down.

pub mod entry_id;
pub mod event;
pub mod flight;
#[cfg(test)]
mod hostile_input;
pub mod keys;
pub mod money;
pub mod nudge;
pub mod queued;
pub mod request;
pub mod scripts;
pub mod trace_parent;

pub use entry_id::EntryId;
pub use event::{
    EventError, EventKind, EventStatus, SearchEvent, SupplierOutcome, SupplierOutcomes, Tally,
    supplier_report,
};
pub use flight::{Airline, Flight, Price};
pub use queued::{DecodeError, QueuedSearch};
pub use request::{FieldError, Iata, RequestError, SearchRequest};
pub use trace_parent::TraceParent;
