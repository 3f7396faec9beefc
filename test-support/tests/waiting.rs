//! What a client of a search sees while nothing answers it: a stream opened
//! before any provider ran waits and then completes, idle streams carry
//! keep-alive comments, a search no provider takes times out with a `failed`
//! event, and a stream deleted before its terminal event was read still ends
//! its clients. Always runs on a local stack.

use std::time::Duration;

use contract::keys::{results_key, state_key};
use contract::{EventKind, SearchEvent, scripts};
use test_support::http;
use test_support::sse::Item;
use test_support::stack::Stack;
use test_support::{eventually, search_body};

const LIMIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_client_that_connects_before_any_provider_ran_waits_and_then_completes() {
    let mut stack = Stack::builder().local_only().providers(0).start().await;
    let id = stack.submit(&search_body("CGK", "DPS", 6, 2)).await;
    let mut stream = stack.open(id, None).await;
    assert_eq!(stream.status, 200, "an existing search is never 404");
    assert!(matches!(
        stream.next_item(LIMIT).await.unwrap(),
        Some(Item::Retry(_))
    ));
    assert!(
        stream.next_item(Duration::from_millis(500)).await.is_err(),
        "nothing to send before a provider runs"
    );

    stack.local().add_provider(&[]).await;
    let events = stream.until_terminal(LIMIT).await.unwrap();
    assert_eq!(events.first().unwrap().status(), "processing");
    assert_eq!(events.last().unwrap().status(), "completed");
}

#[tokio::test]
async fn idle_streams_carry_keep_alive_comments() {
    let stack = Stack::builder()
        .local_only()
        .providers(0)
        .main_env("SSE_HEARTBEAT_SECS", "1")
        .main_env("SSE_RETRY_MS", "1234")
        .start()
        .await;
    let id = stack.submit(&search_body("CGK", "DPS", 6, 2)).await;
    let mut stream = stack.open(id, None).await;
    assert_eq!(
        stream.next_item(LIMIT).await.unwrap(),
        Some(Item::Retry(1234))
    );
    assert_eq!(
        stream.next_item(Duration::from_secs(3)).await.unwrap(),
        Some(Item::Comment("keep-alive".into()))
    );
}

#[tokio::test]
async fn a_search_without_a_provider_times_out_with_a_failed_event() {
    let stack = Stack::builder()
        .local_only()
        .providers(0)
        .main_env("SEARCH_TIMEOUT_SECS", "2")
        .start()
        .await;
    let id = stack.submit(&search_body("CGK", "DPS", 6, 2)).await;
    let events = stack.events(id).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].status(), "failed");
    assert_eq!(events[0].data["error"]["code"], "timeout");
    assert!(
        events[0].data["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    let key = results_key(id);
    eventually("the results key to be deleted", LIMIT, || async {
        (!stack.key_exists(&key).await).then_some(())
    })
    .await;
    assert!(
        stack
            .metrics()
            .await
            .contains("flight_search_searches_timed_out_total 1")
    );
}

#[tokio::test]
async fn a_stream_that_vanished_after_its_terminal_event_ends_its_clients() {
    let stack = Stack::builder()
        .local_only()
        .providers(0)
        .main_env("SEARCH_TIMEOUT_SECS", "2")
        .main_env("SSE_HEARTBEAT_SECS", "1")
        .start()
        .await;
    let id = stack.submit(&search_body("CGK", "DPS", 6, 2)).await;
    let mut stream = stack.open(id, None).await;
    assert!(matches!(
        stream.next_item(LIMIT).await.unwrap(),
        Some(Item::Retry(_))
    ));

    // The terminal event is written and the stream deleted before main-service
    // reads it (as when another instance's last reader deletes it), and its
    // nudge is lost: one that arrived would carry the event itself.
    let mut redis = stack.redis().await;
    let completed = SearchEvent {
        search_id: id,
        kind: EventKind::Completed { total_results: 0 },
    };
    let _: (Option<String>, i64) = redis::pipe()
        .atomic()
        .cmd("EVAL")
        .arg(scripts::APPEND_EVENT)
        .arg(2)
        .arg(results_key(id))
        .arg(state_key(id))
        .arg(completed.kind.slot())
        .arg(completed.to_json())
        .arg(600)
        .arg("flight.search.events.unheard")
        .arg(id.to_string())
        .del(results_key(id))
        .query_async(&mut redis)
        .await
        .unwrap();

    // Past the timeout the response ends, without any event.
    let ended = tokio::time::timeout(LIMIT, async {
        loop {
            match stream.next_item(LIMIT).await.unwrap() {
                None => return,
                Some(Item::Event(event)) => panic!("unexpected {event:?}"),
                Some(_) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the response never ended");
    // Reconnecting tells the client the search is over.
    assert_eq!(http::get(&stack.stream_url(id)).await.unwrap().status, 410);
    let resumed = stack.open(id, Some("1-0")).await;
    assert_eq!(resumed.status, 204);
}
