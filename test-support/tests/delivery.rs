//! Pub/sub nudges and the safety net under them: what the append scripts
//! publish (the entries they wrote, or the bare search id), a watched search
//! delivered from its nudges without another read, idle streams that cost
//! Redis nothing while the subscription is healthy, and an event whose nudge
//! never arrived still reaching its client when there is a reason to look
//! again (a failed read, a resubscription). Always runs on a local Redis; most
//! tests have no provider and write the events themselves.

use std::collections::HashMap;
use std::time::Duration;

use contract::keys::{EVENTS_CHANNEL, results_key, state_key};
use contract::nudge::NUDGE_DATA_LIMIT;
use contract::{EventKind, SearchEvent, scripts};
use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
use test_support::http::metric;
use test_support::redis_server::RedisServer;
use test_support::sse::{Item, SseStream, assert_exactly_once};
use test_support::stack::Stack;
use test_support::{eventually, search_body};
use uuid::Uuid;

const LIMIT: Duration = Duration::from_secs(30);

/// A channel nobody subscribes to: events appended with it carry no nudge,
/// as if the nudge had been lost.
const NOWHERE: &str = "flight.search.events.unheard";

/// Appends `kind` to the search through the append script, publishing the
/// nudge on `channel`.
async fn append(stack: &Stack, id: Uuid, kind: EventKind, channel: &str) {
    let event = SearchEvent {
        search_id: id,
        kind,
    };
    let written: Option<String> = redis::cmd("EVAL")
        .arg(scripts::APPEND_EVENT)
        .arg(2)
        .arg(results_key(id))
        .arg(state_key(id))
        .arg(event.kind.slot())
        .arg(event.to_json())
        .arg(600)
        .arg(channel)
        .arg(id.to_string())
        .query_async(&mut stack.redis().await)
        .await
        .expect("append");
    assert!(
        written.is_some(),
        "{id}: the append script refused the event"
    );
}

/// Appends `processing` and `completed` without nudges.
async fn append_unannounced(stack: &Stack, id: Uuid) {
    append(
        stack,
        id,
        EventKind::Processing { results: vec![] },
        NOWHERE,
    )
    .await;
    append(
        stack,
        id,
        EventKind::Completed { total_results: 0 },
        NOWHERE,
    )
    .await;
}

/// Calls per command so far (`INFO commandstats`), e.g. `"xrange"`.
async fn command_calls(stack: &Stack) -> HashMap<String, u64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut stack.redis().await)
        .await
        .expect("INFO commandstats");
    info.lines()
        .filter_map(|line| {
            let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

/// Opens a search's stream and reads its `retry:` line.
async fn open(stack: &Stack, id: Uuid) -> SseStream {
    let mut stream = stack.open(id, None).await;
    assert_eq!(stream.status, 200);
    assert!(matches!(
        stream.next_item(LIMIT).await.unwrap(),
        Some(Item::Retry(_))
    ));
    stream
}

/// Reads the stream for `limit` and checks that no event came (keep-alive
/// comments may).
async fn assert_no_event_within(stream: &mut SseStream, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match stream.next_item(left).await {
            Err(_) => return,
            Ok(Some(Item::Event(event))) => panic!("unexpected {event:?}"),
            Ok(Some(_)) => {}
            Ok(None) => panic!("the response ended"),
        }
    }
}

/// Reads the stream to its terminal event and checks it got both events.
async fn assert_delivered(stream: &mut SseStream) {
    let events = stream.until_terminal(LIMIT).await.expect("both events");
    let statuses: Vec<&str> = events.iter().map(|e| e.status()).collect();
    assert_eq!(statuses, ["processing", "completed"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_streams_cost_redis_no_reads_while_the_subscription_is_healthy() {
    let stack = Stack::builder().local_only().providers(0).start().await;
    let searches: Vec<Uuid> = futures_util::future::join_all((0..200).map(|i| {
        let body = search_body("CGK", "DPS", 1 + i % 300, 1);
        let stack = &stack;
        async move { stack.submit(&body).await }
    }))
    .await;
    let mut streams =
        futures_util::future::join_all(searches.iter().map(|&id| open(&stack, id))).await;
    // Every feed has had its first read.
    eventually("the first read of every feed", LIMIT, || async {
        let calls = command_calls(&stack).await;
        (calls.get("xrange").copied().unwrap_or(0) >= 200).then_some(())
    })
    .await;

    // The hub's clock decides every re-read: a failed read is retried every
    // fourth pass (two seconds), so six passes cover every re-read it could
    // schedule. Counted, not timed, so a slow machine cannot shorten the window.
    let sweeps = || async {
        metric(&stack.metrics().await, "flight_search_hub_sweeps_total").expect("hub_sweeps_total")
    };
    let before = command_calls(&stack).await;
    let started = std::time::Instant::now();
    let first = sweeps().await;
    eventually("six passes of the hub's clock", LIMIT, || async {
        (sweeps().await >= first + 6.0).then_some(())
    })
    .await;
    let window = started.elapsed();
    let after = command_calls(&stack).await;
    let delta = |name: &str| after.get(name).unwrap_or(&0) - before.get(name).unwrap_or(&0);
    assert_eq!(delta("xrange"), 0, "idle feeds were re-read");
    // What is left does not grow with the streams: main-service's readiness
    // PING and write probe, the queue's trim and backlog gauge (each about once
    // a second), besides this test's own connection set-up and INFO. 200
    // streams read even once per window would exceed the bound.
    let others: u64 = after
        .keys()
        .filter(|name| !["info", "client", "hello"].contains(&name.as_str()))
        .map(|name| delta(name))
        .sum();
    assert!(
        (others as f64) < 10.0 * window.as_secs_f64(),
        "{others} commands in {window:?} with 200 idle streams: {after:?}"
    );

    // The streams are still live: one nudged event each arrives.
    for &id in &searches {
        append(
            &stack,
            id,
            EventKind::Processing { results: vec![] },
            contract::keys::EVENTS_CHANNEL,
        )
        .await;
    }
    for stream in &mut streams {
        let event = stream.next_event(LIMIT).await.unwrap().expect("an event");
        assert_eq!(event.status(), "processing");
    }
}

#[tokio::test]
async fn a_failed_read_is_retried_without_another_nudge() {
    let stack = Stack::builder().local_only().providers(0).start().await;
    let id = stack.submit(&search_body("CGK", "DPS", 6, 2)).await;
    // A results key of the wrong type makes the feed's first read fail.
    let _: () = redis::cmd("SET")
        .arg(results_key(id))
        .arg("not a stream")
        .query_async(&mut stack.redis().await)
        .await
        .unwrap();
    let mut stream = open(&stack, id).await;
    eventually("a failed read", LIMIT, || async {
        let failed = metric(
            &stack.metrics().await,
            "flight_search_redis_errors_total{op=\"fetch\"}",
        );
        failed.is_some_and(|n| n >= 1.0).then_some(())
    })
    .await;

    let _: () = redis::cmd("DEL")
        .arg(results_key(id))
        .query_async(&mut stack.redis().await)
        .await
        .unwrap();
    append_unannounced(&stack, id).await;
    assert_delivered(&mut stream).await;
}

/// Waits until main-service has made its first read of a feed.
async fn first_read_done(stack: &Stack) {
    eventually("the feed's first read", LIMIT, || async {
        let calls = command_calls(stack).await;
        calls.get("xrange").is_some_and(|&n| n >= 1).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_nudge_lost_with_the_subscription_is_made_up_for_when_it_returns() {
    let stack = Stack::builder().local_only().providers(0).start().await;
    let id = stack.submit(&search_body("CGK", "DPS", 6, 2)).await;
    let mut stream = open(&stack, id).await;
    first_read_done(&stack).await;

    append_unannounced(&stack, id).await;
    assert_no_event_within(&mut stream, Duration::from_secs(1)).await;
    // Redis closes a subscriber's connection when it cannot deliver to it
    // (for example an overflowing output buffer); main-service resubscribes
    // and rechecks its feeds.
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut stack.redis().await)
        .await
        .unwrap();
    assert_eq!(killed, 1, "main-service holds one subscription");
    assert_delivered(&mut stream).await;
}

/// Appends events to search `id` in one `APPEND_EVENTS` call, each given as
/// its slot and data, nudging on [`EVENTS_CHANNEL`]; returns the new entry ids.
async fn append_batch(
    conn: &mut MultiplexedConnection,
    id: Uuid,
    events: &[(&str, &str)],
) -> Vec<String> {
    let mut call = redis::cmd("EVAL");
    call.arg(scripts::APPEND_EVENTS)
        .arg(2)
        .arg(results_key(id))
        .arg(state_key(id))
        .arg(600)
        .arg(EVENTS_CHANNEL)
        .arg(id.to_string())
        .arg("PUBLISH");
    for (slot, data) in events {
        call.arg(slot).arg(data).arg("");
    }
    call.query_async(conn).await.expect("append")
}

/// Appends an entry to search `id`'s stream without the script, as a writer
/// of an older version would have (it kept no last entry in the state hash).
async fn xadd(conn: &mut MultiplexedConnection, id: Uuid) -> String {
    redis::cmd("XADD")
        .arg(results_key(id))
        .arg("*")
        .arg("data")
        .arg("{}")
        .query_async(conn)
        .await
        .unwrap()
}

/// The next message on `subscription`, as bytes.
async fn next_message(subscription: &mut redis::aio::PubSub) -> Vec<u8> {
    let message = tokio::time::timeout(LIMIT, subscription.on_message().next())
        .await
        .expect("a nudge in time")
        .expect("the subscription is open");
    message.get_payload_bytes().to_vec()
}

/// The nudge announcing `entries` (id, data) written after `previous`.
fn carrying(id: Uuid, previous: &str, entries: &[(&str, &str)]) -> Vec<u8> {
    let mut nudge = format!("{id} {previous}");
    for (entry, data) in entries {
        nudge += &format!("\n{entry} {}\n{data}", data.len());
    }
    nudge.into_bytes()
}

/// A fresh Redis, a connection to it, and a subscription to the nudges.
async fn listening_to_nudges() -> (RedisServer, MultiplexedConnection, redis::aio::PubSub) {
    let redis = RedisServer::start().await;
    let conn = redis.connection().await;
    let client = redis::Client::open(redis.url()).unwrap();
    let mut nudges = client.get_async_pubsub().await.unwrap();
    nudges.subscribe(EVENTS_CHANNEL).await.unwrap();
    (redis, conn, nudges)
}

#[tokio::test]
async fn a_nudge_carries_the_entries_written_or_is_bare_when_too_large() {
    let (_redis, mut conn, mut nudges) = listening_to_nudges().await;
    let id = Uuid::new_v4();

    // The stream's first entry, then several in one call, whatever their data holds.
    let first = r#"{"status":"processing"}"#;
    let written = append_batch(&mut conn, id, &[("processing", first)]).await;
    let expected = carrying(id, "-", &[(&written[0], first)]);
    assert_eq!(next_message(&mut nudges).await, expected);
    let (ga, jt) = (r#"{"status":"result", "a b":"c\nd"}"#, "{\n}");
    let batch = append_batch(
        &mut conn,
        id,
        &[("result:GA", ga), ("processing", "x"), ("result:JT", jt)],
    )
    .await;
    assert_eq!(batch[1], "0", "a taken slot writes nothing");
    let expected = carrying(id, &written[0], &[(&batch[0], ga), (&batch[2], jt)]);
    assert_eq!(next_message(&mut nudges).await, expected);

    // Over the limit: the bare search id, so subscribers read the stream.
    let large = "x".repeat(NUDGE_DATA_LIMIT / 2 + 1);
    let over = append_batch(
        &mut conn,
        id,
        &[("result:QG", &large), ("result:QZ", &large)],
    )
    .await;
    assert_eq!(next_message(&mut nudges).await, id.to_string().into_bytes());
    // At the limit, and after an oversized call: carried again.
    let limit = "y".repeat(NUDGE_DATA_LIMIT);
    let at = append_batch(&mut conn, id, &[("result:SJ", &limit)]).await;
    let expected = carrying(id, &over[1], &[(&at[0], &limit)]);
    assert_eq!(next_message(&mut nudges).await, expected);
}

#[tokio::test]
async fn a_nudge_names_the_streams_real_last_entry_whoever_wrote_it() {
    let (_redis, mut conn, mut nudges) = listening_to_nudges().await;
    let id = Uuid::new_v4();

    // An entry written by someone else than the script (an older version,
    // or by hand) is the previous entry the next nudge names.
    let foreign = xadd(&mut conn, id).await;
    let written = append_batch(&mut conn, id, &[("processing", "p")]).await;
    let expected = carrying(id, &foreign, &[(&written[0], "p")]);
    assert_eq!(next_message(&mut nudges).await, expected);

    let behind = xadd(&mut conn, id).await;
    let next = append_batch(&mut conn, id, &[("result:GA", "r")]).await;
    let expected = carrying(id, &behind, &[(&next[0], "r")]);
    assert_eq!(next_message(&mut nudges).await, expected);
}

#[tokio::test]
async fn a_search_watched_from_the_start_is_delivered_without_another_read() {
    let mut stack = Stack::builder().local_only().providers(0).start().await;
    let id = stack.submit(&search_body("CGK", "DPS", 6, 2)).await;
    let mut stream = open(&stack, id).await;
    first_read_done(&stack).await;
    let before = command_calls(&stack).await;

    // The search starts only now, so every event is written after that read.
    stack.local().add_provider(&[]).await;
    let events = stream
        .until_terminal(LIMIT)
        .await
        .expect("the whole search");
    assert_exactly_once(id, &events);
    let after = command_calls(&stack).await;
    let delta = |name: &str| after.get(name).unwrap_or(&0) - before.get(name).unwrap_or(&0);
    assert_eq!(delta("xrange"), 0, "{} events, {after:?}", events.len());
    assert!(
        delta("publish") >= 2,
        "the events were announced: {after:?}"
    );
}
