//! Panics contained where they happen, so one bad answer cannot take more
//! with it than its own part of the work.
//!
//! A panic in one supplier's call (its adapter, the parsing of its answer, the
//! cache in front of it) ends that supplier's part of the search as `error`;
//! the other suppliers' offers still reach the client. A panic anywhere else in
//! a search attempt ends that search at once with `failed` (code
//! `internal_error`) and dead-letters its entry: a search that panics once
//! would panic again on every redelivery, so waiting for `MAX_DELIVERIES`
//! would only keep its client waiting. Either way the task, its concurrency
//! permit and the read loop carry on.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;

/// Runs `work` to its end, returning the panic's message if it panicked.
///
/// Unwind safety is asserted: what a contained panic leaves half-done is only
/// the attempt's own state, which is dropped with it. Shared state is behind
/// mutexes that are never held across code that may panic, and the Redis
/// writes are idempotent.
pub async fn contain<F: Future>(work: F) -> Result<F::Output, String> {
    AssertUnwindSafe(work)
        .catch_unwind()
        .await
        .map_err(|payload| message(&*payload))
}

/// The text a panic was raised with (`panic!("…")` gives a `&str` or a
/// `String`); anything else is named as such.
fn message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_becomes_its_message_and_an_answer_passes() {
        assert_eq!(contain(async { 7 }).await, Ok(7));
        let n = 3;
        let formatted = contain(async move {
            if n == 3 {
                panic!("bad offer {n}");
            }
        })
        .await;
        assert_eq!(formatted, Err("bad offer 3".to_owned()));
        let literal = contain(async { panic!("static text") }).await;
        assert_eq!(literal, Err::<(), _>("static text".to_owned()));
        let other = contain(async { std::panic::panic_any(42_u8) }).await;
        assert_eq!(other, Err::<(), _>("a panic without a message".to_owned()));
    }
}
