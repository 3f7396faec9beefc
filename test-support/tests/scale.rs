//! Delivery at scale, sized for CI: thousands of SSE clients on one instance over
//! a constant number of Redis connections, slow clients cut off without holding
//! anyone back, and nothing left behind when everyone leaves.

use std::time::{Duration, Instant};

use contract::keys::{EVENTS_CHANNEL, results_key, state_key};
use contract::{EventKind, SearchEvent, scripts};
use test_support::http::metric;
use test_support::sse::{Item, SseStream};
use test_support::stack::Stack;
use test_support::{eventually, search_body};
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

const LIMIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_clients_share_a_constant_number_of_redis_connections() {
    let mut stack = Stack::builder().local_only().providers(0).start().await;
    let searches: Vec<Uuid> = futures_util::future::join_all((0..20).map(|i| {
        let body = search_body("CGK", "DPS", 1 + i, 1);
        let stack = &stack;
        async move { stack.submit(&body).await }
    }))
    .await;

    let opened = futures_util::future::join_all((0..2000).map(|i| {
        let url = stack.stream_url(searches[i % searches.len()]);
        async move {
            let mut stream = SseStream::open(&url, None).await.expect("open");
            assert_eq!(stream.status, 200);
            assert!(matches!(
                stream.next_item(LIMIT).await.unwrap(),
                Some(Item::Retry(_))
            ));
            stream
        }
    }))
    .await;
    let metrics = stack.metrics().await;
    assert_eq!(
        metric(&metrics, "flight_search_sse_streams_open"),
        Some(2000.0)
    );
    assert_eq!(
        metric(&metrics, "flight_search_hub_feeds_active"),
        Some(20.0)
    );
    let held = stack.redis_clients().await;
    assert!(
        held <= 4,
        "main-service holds {held} Redis connections for 2000 clients"
    );

    stack.local().add_provider(&[]).await;
    let results = futures_util::future::join_all(opened.into_iter().map(|mut stream| async move {
        stream
            .until_terminal(LIMIT)
            .await
            .expect("complete sequence")
    }))
    .await;
    for events in &results {
        assert_eq!(events.first().unwrap().status(), "processing");
        assert_eq!(events.last().unwrap().status(), "completed");
    }
    // Every client of a search saw the identical sequence.
    for (i, events) in results.iter().enumerate() {
        assert_eq!(events, &results[i % searches.len()]);
    }

    eventually("every stream and feed to be released", LIMIT, || async {
        let text = stack.metrics().await;
        (metric(&text, "flight_search_sse_streams_open") == Some(0.0)
            && metric(&text, "flight_search_hub_feeds_active") == Some(0.0))
        .then_some(())
    })
    .await;
    let provider_connections = 4;
    assert!(stack.redis_clients().await <= 4 + provider_connections);
    for id in searches {
        let key = results_key(id);
        eventually("finished searches to be deleted", LIMIT, || async {
            (!stack.key_exists(&key).await).then_some(())
        })
        .await;
    }
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_without_delaying_others() {
    let stack = Stack::builder()
        .local_only()
        .providers(0)
        .main_env("SSE_STALL_TIMEOUT_SECS", "5")
        .start()
        .await;
    let id = stack.submit(&search_body("CGK", "DPS", 3, 1)).await;

    // The stalled client sends its request and never reads a byte.
    let address = stack.base_url().trim_start_matches("http://").to_owned();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = socket.connect(address.parse().unwrap()).await.unwrap();
    let request =
        format!("GET /api/flights/search/{id}/stream HTTP/1.1\r\nHost: {address}\r\n\r\n");
    stalled.write_all(request.as_bytes()).await.unwrap();
    let mut fast = stack.open(id, None).await;
    eventually("both clients to be attached", LIMIT, || async {
        (metric(&stack.metrics().await, "flight_search_sse_streams_open") == Some(2.0))
            .then_some(())
    })
    .await;

    // Far more data than the kernel buffers of the stalled connection can hold.
    let mut redis = stack.redis().await;
    let append = redis::Script::new(scripts::APPEND_EVENT);
    let padding = "x".repeat(60_000);
    let mut kinds: Vec<EventKind> = (0..150)
        .map(|i| EventKind::Result {
            supplier: format!("S{i}{padding}"),
            results: vec![],
        })
        .collect();
    kinds.push(EventKind::Completed { total_results: 0 });
    let started = Instant::now();
    for kind in kinds {
        let slot = kind.slot();
        let json = SearchEvent {
            search_id: id,
            kind,
        }
        .to_json();
        let _: Option<String> = append
            .key(results_key(id))
            .key(state_key(id))
            .arg(slot)
            .arg(json)
            .arg(600)
            .arg(EVENTS_CHANNEL)
            .arg(id.to_string())
            .invoke_async(&mut redis)
            .await
            .unwrap();
    }
    let events = fast.until_terminal(LIMIT).await.unwrap();
    assert_eq!(events.len(), 151);
    // The fast client got everything while the stalled one was still connected:
    // it never waited for the stall limit to cut the other one off.
    let dropped = metric(
        &stack.metrics().await,
        "flight_search_sse_clients_dropped_slow_total",
    );
    assert_eq!(
        dropped,
        Some(0.0),
        "the fast client finished only after {:?}",
        started.elapsed()
    );

    eventually(
        "the stalled client to be dropped",
        Duration::from_secs(15),
        || async {
            (metric(
                &stack.metrics().await,
                "flight_search_sse_clients_dropped_slow_total",
            ) == Some(1.0))
            .then_some(())
        },
    )
    .await;
    eventually("its stream to be released", LIMIT, || async {
        (metric(&stack.metrics().await, "flight_search_sse_streams_open") == Some(0.0))
            .then_some(())
    })
    .await;
    // The search is still readable: the stalled reader never saw the terminal
    // event, so it must be able to resume.
    assert!(stack.key_exists(&results_key(id)).await);
}
