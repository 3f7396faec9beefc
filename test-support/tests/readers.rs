//! The readers of a search's stream as main-service counts them in the state
//! hash: clients that disconnect release everything and never delete the
//! stream, clients that leave or time out while attaching leave no reader
//! counted, and a reader that was never counted never counts down. Always
//! runs on a local stack.

use std::time::Duration;

use contract::keys::{results_key, state_key};
use test_support::http::{self, metric};
use test_support::sse::Item;
use test_support::stack::Stack;
use test_support::{eventually, search_body};
use tokio::io::AsyncWriteExt;

const LIMIT: Duration = Duration::from_secs(30);

async fn gauge(stack: &Stack, series: &str) -> f64 {
    metric(&stack.metrics().await, series).unwrap_or_else(|| panic!("{series} missing"))
}

#[tokio::test]
async fn disconnected_clients_release_everything_and_never_delete_the_stream() {
    let stack = Stack::builder().local_only().providers(0).start().await;
    let id = stack.submit(&search_body("CGK", "DPS", 6, 2)).await;
    let clients_before = stack.redis_clients().await;

    let mut streams = Vec::new();
    for _ in 0..50 {
        let mut stream = stack.open(id, None).await;
        assert!(matches!(
            stream.next_item(LIMIT).await.unwrap(),
            Some(Item::Retry(_))
        ));
        streams.push(stream);
    }
    assert_eq!(gauge(&stack, "flight_search_sse_streams_open").await, 50.0);
    assert_eq!(gauge(&stack, "flight_search_hub_feeds_active").await, 1.0);
    assert_eq!(
        stack.redis_clients().await,
        clients_before,
        "SSE clients cost no Redis connections"
    );

    drop(streams);
    eventually(
        "streams and feeds to be released",
        Duration::from_secs(5),
        || async {
            let text = stack.metrics().await;
            (metric(&text, "flight_search_sse_streams_open") == Some(0.0)
                && metric(&text, "flight_search_hub_feeds_active") == Some(0.0))
            .then_some(())
        },
    )
    .await;
    let mut redis = stack.redis().await;
    eventually("every reader to be detached", LIMIT, || {
        let mut redis = redis.clone();
        async move {
            let readers: Option<i64> = redis::cmd("HGET")
                .arg(state_key(id))
                .arg("readers")
                .query_async(&mut redis)
                .await
                .ok()?;
            (readers == Some(0)).then_some(())
        }
    })
    .await;
    let exists: i64 = redis::cmd("EXISTS")
        .arg(state_key(id))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(exists, 1, "a search abandoned mid-way stays resumable");
}

/// The state hash's `readers` count and the number of `reader:<token>` fields;
/// `None` while Redis does not answer (it may be paused).
async fn readers(
    redis: &mut service_runtime::redis_connection::RedisConnection,
    id: uuid::Uuid,
) -> Option<(i64, usize)> {
    let fields: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
        .arg(state_key(id))
        .query_async(redis)
        .await
        .ok()?;
    let count = fields.get("readers").map_or(0, |n| n.parse().unwrap());
    let tokens = fields.keys().filter(|f| f.starts_with("reader:")).count();
    Some((count, tokens))
}

/// Sends a stream request for `id` from each of `clients` connections, then
/// closes them while their attach waits on the paused Redis.
async fn request_and_leave(stack: &Stack, id: uuid::Uuid, clients: usize) {
    let address = stack.base_url().trim_start_matches("http://").to_owned();
    let request =
        format!("GET /api/flights/search/{id}/stream HTTP/1.1\r\nHost: {address}\r\n\r\n");
    let mut sockets = Vec::new();
    for _ in 0..clients {
        let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
        socket.write_all(request.as_bytes()).await.unwrap();
        sockets.push(socket);
    }
    // Leaving before main-service read a request would cancel its attach
    // before it was sent; once read, the attach runs in a task of its own.
    let ports: Vec<u16> = sockets
        .iter()
        .map(|s| s.local_addr().unwrap().port())
        .collect();
    eventually("main-service to read every request", LIMIT, || async {
        ports
            .iter()
            .all(|&port| unread_by_peer(port) == Some(0))
            .then_some(())
    })
    .await;
}

/// Bytes sent from the loopback TCP socket bound to `client_port` that its
/// peer has not read yet (the peer socket's receive queue in
/// `/proc/net/tcp`), or `None` while no such peer socket is listed.
fn unread_by_peer(client_port: u16) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let remote_port = fields.get(2)?.rsplit(':').next()?;
        if u16::from_str_radix(remote_port, 16).ok()? != client_port {
            return None;
        }
        let rx_queue = fields.get(4)?.split(':').nth(1)?;
        u64::from_str_radix(rx_queue, 16).ok()
    })
}

/// Makes Redis hold every client's commands for `ms` milliseconds.
async fn pause_redis(stack: &Stack, ms: u64) {
    let mut redis = stack.redis().await;
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(ms)
        .arg("ALL")
        .query_async(&mut redis)
        .await
        .unwrap();
}

#[tokio::test]
async fn clients_that_leave_or_time_out_while_attaching_leave_no_reader_counted() {
    let stack = Stack::builder().local_only().providers(0).start().await;
    let id = stack.submit(&search_body("CGK", "DPS", 6, 2)).await;
    let redis = stack.redis().await;
    let detached = |want: (i64, usize)| {
        let redis = redis.clone();
        eventually("the readers to be detached", LIMIT, move || {
            let mut redis = redis.clone();
            async move { (readers(&mut redis, id).await? == want).then_some(()) }
        })
    };
    // One more reader attaches after every earlier attach on main-service's
    // Redis connection, which answers in order: once it is counted, no
    // earlier attach can still register a reader late.
    let settled = || async {
        eventually("Redis to answer again", LIMIT, || {
            let mut redis = redis.clone();
            async move {
                let pong: Option<String> = redis::cmd("PING").query_async(&mut redis).await.ok();
                pong.map(|_| ())
            }
        })
        .await;
        let mut last = stack.open(id, None).await;
        assert!(matches!(
            last.next_item(LIMIT).await.unwrap(),
            Some(Item::Retry(_))
        ));
        detached((1, 1)).await;
        drop(last);
        detached((0, 0)).await;
    };

    // A first reader loads the scripts: an attach sent while Redis is paused
    // must find them loaded, or it would fail with NOSCRIPT and count nothing.
    let mut first = stack.open(id, None).await;
    assert!(matches!(
        first.next_item(LIMIT).await.unwrap(),
        Some(Item::Retry(_))
    ));
    drop(first);
    detached((0, 0)).await;

    // The attach answers after the clients left, within main-service's wait.
    pause_redis(&stack, 1500).await;
    request_and_leave(&stack, id, 20).await;
    settled().await;

    // The attach answers after main-service stopped waiting (3 s) and answered
    // 503, to the clients that left and to one that stayed. The pause leaves
    // room for main-service to be slow reading the requests on a busy machine.
    pause_redis(&stack, 8000).await;
    let url = stack.stream_url(id);
    let refused = tokio::spawn(async move { http::get(&url).await.unwrap().status });
    request_and_leave(&stack, id, 20).await;
    assert_eq!(refused.await.unwrap(), 503);
    settled().await;
}

#[tokio::test]
async fn a_reader_that_was_never_counted_never_counts_down() {
    let stack = Stack::builder().local_only().providers(0).start().await;
    let mut redis = stack.redis().await;
    // A result stream without a state hash: its first reader cannot be counted.
    let id = uuid::Uuid::new_v4();
    let processing = format!(r#"{{"search_id":"{id}","status":"processing","results":[]}}"#);
    let _: String = redis::cmd("XADD")
        .arg(results_key(id))
        .arg("*")
        .arg("data")
        .arg(&processing)
        .query_async(&mut redis)
        .await
        .unwrap();
    let mut uncounted = stack.open(id, None).await;
    assert_eq!(uncounted.status, 200);
    assert_eq!(
        uncounted.next_event(LIMIT).await.unwrap().unwrap().status(),
        "processing"
    );
    assert_eq!(readers(&mut redis, id).await.unwrap(), (0, 0));

    // The state hash appears, and a second reader is counted.
    let _: () = redis::cmd("HSET")
        .arg(state_key(id))
        .arg("requested_at")
        .arg(0)
        .query_async(&mut redis)
        .await
        .unwrap();
    let mut counted = stack.open(id, None).await;
    assert_eq!(
        counted.next_event(LIMIT).await.unwrap().unwrap().status(),
        "processing"
    );
    assert_eq!(readers(&mut redis, id).await.unwrap().0, 1);

    // The first one leaving must not take the second one's count away.
    drop(uncounted);
    eventually("the uncounted stream to end", LIMIT, || async {
        (gauge(&stack, "flight_search_sse_streams_open").await == 1.0).then_some(())
    })
    .await;
    // A third reader attaches and leaves after anything the first one's end
    // sent to Redis: the count goes 1 → 2 → 1 only if nothing else took it.
    let mut third = stack.open(id, None).await;
    assert_eq!(
        third.next_event(LIMIT).await.unwrap().unwrap().status(),
        "processing"
    );
    assert_eq!(readers(&mut redis, id).await.unwrap(), (2, 2));
    drop(third);
    eventually("the third reader to be detached", LIMIT, || {
        let mut redis = redis.clone();
        async move { (readers(&mut redis, id).await?.1 == 1).then_some(()) }
    })
    .await;
    assert_eq!(
        readers(&mut redis, id).await.unwrap(),
        (1, 1),
        "still counted"
    );

    drop(counted);
    eventually("the counted reader to be detached", LIMIT, || {
        let mut redis = redis.clone();
        async move { (readers(&mut redis, id).await? == (0, 0)).then_some(()) }
    })
    .await;
}
