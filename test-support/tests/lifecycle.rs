//! Behaviour that needs control over the processes: waiting before a provider
//! exists, timeouts, Redis outages at the front door, disconnect cleanup,
//! shutdown, start-up configuration errors and settings that change answers
//! (CORS). Always runs on a local stack.

use std::process::Command;
use std::time::Duration;

use contract::keys::{results_key, state_key};
use contract::{EventKind, SearchEvent, scripts};
use hyper::Method;
use test_support::documents::{self, Schema};
use test_support::http::{self, metric};
use test_support::redis_server::RedisServer;
use test_support::services::binary_path;
use test_support::sse::Item;
use test_support::stack::Stack;
use test_support::{eventually, free_port, search_body};
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

const LIMIT: Duration = Duration::from_secs(30);

async fn gauge(stack: &Stack, series: &str) -> f64 {
    metric(&stack.metrics().await, series).unwrap_or_else(|| panic!("{series} missing"))
}

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

#[tokio::test]
async fn redis_down_means_503_with_retry_after_and_recovery_when_it_returns() {
    let mut stack = Stack::builder().local_only().start().await;
    let pending = stack.submit(&search_body("CGK", "DPS", 6, 2)).await;
    stack.events(pending).await;

    stack.local().redis.stop();
    let url = stack.url("/readyz");
    let not_ready = eventually("readiness to drop", LIMIT, || async {
        let answer = http::get(&url).await.ok()?;
        (answer.status == 503).then_some(answer)
    })
    .await;
    let body = not_ready.json();
    assert_eq!(body["status"], "not ready", "{body}");
    assert!(
        body["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{body}"
    );
    let refused = stack.post(&search_body("CGK", "DPS", 6, 2)).await;
    assert_eq!(refused.status, 503);
    assert!(refused.header("retry-after").is_some());
    documents::assert_matches(Schema::ErrorEnvelope, &refused.json());
    let stream = http::get(&stack.stream_url(uuid::Uuid::new_v4()))
        .await
        .unwrap();
    assert_eq!(stream.status, 503);
    assert!(stream.header("retry-after").is_some());

    // The POST fails on its backlog read when the cached figure is stale, or
    // on its write when it is fresh.
    let metrics = stack.metrics().await;
    let errors: f64 = ["submit", "backlog"]
        .iter()
        .filter_map(|op| {
            metric(
                &metrics,
                &format!("flight_search_redis_errors_total{{op=\"{op}\"}}"),
            )
        })
        .sum();
    assert!(
        errors >= 1.0,
        "the refused POST is counted as a Redis error: {errors:?}"
    );

    stack.local().redis.restart().await;
    eventually("readiness to return", LIMIT, || async {
        (http::get(&url).await.ok()?.status == 200).then_some(())
    })
    .await;
    let id = stack.submit(&search_body("CGK", "DPS", 6, 2)).await;
    assert_eq!(stack.events(id).await.last().unwrap().status(), "completed");
}

#[tokio::test]
async fn a_failed_queue_write_answers_503_and_leaves_only_an_expiring_state_hash() {
    let stack = Stack::builder()
        .local_only()
        .providers(0)
        .main_env("RESULTS_TTL_SECS", "120")
        .start()
        .await;
    stack.submit(&search_body("CGK", "DPS", 6, 2)).await;
    let mut redis = stack.redis().await;
    // The state hash is written first and the queue entry second. A queue
    // whose last entry has the largest id there is makes only the second write
    // fail (XADD * has no id left), while the admission check, which reads the
    // group, still works: the POST gets past it whenever it reads.
    let queue = contract::keys::REQUESTS_STREAM;
    let _: () = redis::pipe()
        .del(queue)
        .cmd("XADD")
        .arg(queue)
        .arg("18446744073709551615-18446744073709551615")
        .arg("search_id")
        .arg("none")
        .ignore()
        .cmd("XGROUP")
        .arg("CREATE")
        .arg(queue)
        .arg(contract::keys::DEFAULT_CONSUMER_GROUP)
        .arg("$")
        .ignore()
        .query_async(&mut redis)
        .await
        .unwrap();
    let before = state_hashes(&stack).await;

    let refused = stack.post(&search_body("CGK", "DPS", 6, 2)).await;
    assert_eq!(refused.status, 503, "{:?}", refused.body);
    assert!(refused.header("retry-after").is_some());
    let left: Vec<String> = state_hashes(&stack)
        .await
        .into_iter()
        .filter(|k| !before.contains(k))
        .collect();
    assert_eq!(left.len(), 1, "one state hash left behind: {left:?}");
    let ttl: i64 = redis::cmd("TTL")
        .arg(&left[0])
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(
        (1..=120).contains(&ttl),
        "the state hash expires: TTL {ttl}"
    );
    let streams: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}*", contract::keys::RESULTS_PREFIX))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(streams.is_empty(), "no result stream: {streams:?}");
}

async fn state_hashes(stack: &Stack) -> Vec<String> {
    redis::cmd("KEYS")
        .arg("{flight.search.results:*}:state")
        .query_async(&mut stack.redis().await)
        .await
        .unwrap()
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

#[tokio::test]
async fn sigterm_ends_open_streams_cleanly_within_the_grace_period() {
    let mut stack = Stack::builder()
        .local_only()
        .providers(0)
        .main_env("SHUTDOWN_GRACE_SECS", "3")
        .start()
        .await;
    let id = stack.submit(&search_body("CGK", "DPS", 6, 2)).await;
    let mut streams = Vec::new();
    for _ in 0..5 {
        let mut stream = stack.open(id, None).await;
        assert!(matches!(
            stream.next_item(LIMIT).await.unwrap(),
            Some(Item::Retry(_))
        ));
        streams.push(stream);
    }
    let (took, success) = stack.local().mains[0].terminate().await;
    assert!(success, "clean exit status");
    assert!(took < Duration::from_secs(3), "exit took {took:?}");
    for stream in &mut streams {
        // Keep-alives are spread over the interval, so one may come first; no
        // event may.
        loop {
            match stream.next_item(LIMIT).await.unwrap() {
                Some(Item::Comment(_)) => continue,
                other => {
                    assert_eq!(other, None, "response ended with its final chunk");
                    break;
                }
            }
        }
    }
}

#[test]
fn a_bad_setting_stops_each_service_with_one_line_naming_it() {
    for (binary, name, value) in [
        ("main-service", "SEARCH_TIMEOUT_SECS", "soon"),
        ("main-service", "HTTP_ADDR", "nowhere"),
        (
            "main-service",
            "CORS_ALLOWED_ORIGINS",
            "https://*.example.com",
        ),
        ("provider-service", "MOCK_FAILURE_RATE", "2"),
        ("provider-service", "PROVIDER_CONCURRENCY", "0"),
    ] {
        let output = Command::new(binary_path(binary))
            .env(name, value)
            .env("REDIS_URL", "redis://127.0.0.1:1")
            .output()
            .unwrap();
        assert!(!output.status.success(), "{binary} {name}={value} started");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{binary}: {stderr}");
        assert!(
            stderr.contains(&format!("{name}={value}")),
            "{binary}: {stderr}"
        );
    }
}

/// Parses an OpenMetrics exposition into (family name → TYPE) and checks its
/// framing: every sample belongs to a declared family and the text ends with `# EOF`.
fn families(exposition: &str) -> std::collections::HashMap<String, String> {
    let mut types = std::collections::HashMap::new();
    for line in exposition.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE line has a kind");
            types.insert(name.to_owned(), kind.to_owned());
        } else if !line.starts_with('#') && !line.is_empty() {
            let name = line.split(['{', ' ']).next().unwrap();
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "bad sample value in {line:?}");
            assert!(
                types.keys().any(|family| name.starts_with(family.as_str())),
                "sample {name} without a TYPE line"
            );
        }
    }
    assert_eq!(
        exposition.lines().last(),
        Some("# EOF"),
        "exposition not terminated"
    );
    types
}

/// main-service's metric families and their types, as docs/operations.md
/// documents them.
const MAIN_FAMILIES: &[(&str, &str)] = &[
    ("flight_search_http_requests", "counter"),
    ("flight_search_http_request_duration_seconds", "histogram"),
    ("flight_search_sse_streams_open", "gauge"),
    ("flight_search_sse_events_delivered", "counter"),
    ("flight_search_sse_clients_dropped_slow", "counter"),
    ("flight_search_searches_submitted", "counter"),
    ("flight_search_deliveries_completed", "counter"),
    ("flight_search_deliveries_failed", "counter"),
    ("flight_search_searches_timed_out", "counter"),
    (
        "flight_search_search_time_to_first_result_seconds",
        "histogram",
    ),
    (
        "flight_search_search_time_to_completion_seconds",
        "histogram",
    ),
    ("flight_search_hub_feeds_active", "gauge"),
    ("flight_search_hub_entries_skipped", "counter"),
    ("flight_search_hub_sweeps", "counter"),
    ("flight_search_redis_errors", "counter"),
    ("flight_search_redis_up", "gauge"),
    ("flight_search_queue_backlog", "gauge"),
    ("flight_search_queue_trimmed_entries", "counter"),
    ("flight_search_searches_rejected", "counter"),
    ("flight_search_redis_writes_refused", "gauge"),
    ("flight_search_trace_spans_dropped", "counter"),
];

/// provider-service's metric families and their types.
const PROVIDER_FAMILIES: &[(&str, &str)] = &[
    ("flight_search_provider_searches_in_flight", "gauge"),
    ("flight_search_provider_searches_completed", "counter"),
    ("flight_search_provider_searches_failed", "counter"),
    (
        "flight_search_provider_supplier_call_duration_seconds",
        "histogram",
    ),
    ("flight_search_provider_supplier_failures", "counter"),
    ("flight_search_provider_claims", "counter"),
    ("flight_search_provider_recovery_sweeps", "counter"),
    ("flight_search_provider_pending_entries", "gauge"),
    ("flight_search_provider_dead_letters", "counter"),
    ("flight_search_provider_redis_errors", "counter"),
    ("flight_search_provider_redis_up", "gauge"),
    (
        "flight_search_provider_searches_waiting_for_writes",
        "gauge",
    ),
    ("flight_search_provider_redis_writes_refused", "gauge"),
    ("flight_search_provider_supplier_panics", "counter"),
    ("flight_search_provider_search_panics", "counter"),
    ("flight_search_provider_supplier_offers_rejected", "counter"),
    (
        "flight_search_provider_supplier_offers_truncated",
        "counter",
    ),
    ("flight_search_provider_result_event_bytes", "histogram"),
    ("flight_search_provider_search_event_bytes", "histogram"),
    ("flight_search_provider_trace_spans_dropped", "counter"),
];

/// Asserts that every family in `expected` is exposed with its type, and
/// that docs/operations.md names every family exposed under `prefix` (the
/// page lists them without it), so a new metric cannot stay undocumented.
fn assert_families(who: &str, exposition: &str, prefix: &str, expected: &[(&str, &str)]) {
    let families = families(exposition);
    for (family, kind) in expected {
        assert_eq!(
            families.get(*family).map(String::as_str),
            Some(*kind),
            "{who} {family}"
        );
    }
    let page = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/operations.md"),
    )
    .expect("read docs/operations.md");
    for family in families.keys() {
        let Some(name) = family.strip_prefix(prefix) else {
            continue;
        };
        assert!(
            page.contains(&format!("`{name}`"))
                || page.contains(&format!("`{name}{{"))
                || page.contains(&format!("`{name}_total")),
            "docs/operations.md does not name {who}'s metric {family}"
        );
    }
}

/// The provider's `/metrics` text.
async fn provider_metrics(provider: &str) -> String {
    let body = http::get(&format!("{provider}/metrics"))
        .await
        .unwrap()
        .body;
    String::from_utf8(body.to_vec()).unwrap()
}

/// Polls an exposition until `series` reads `value`, and returns that text.
async fn metrics_when<F, Fut>(what: &str, series: &str, value: f64, scrape: F) -> String
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = String>,
{
    eventually(what, LIMIT, || async {
        let text = scrape().await;
        (metric(&text, series) == Some(value)).then_some(text)
    })
    .await
}

#[tokio::test]
async fn every_search_outcome_is_counted_once_even_when_nobody_watches() {
    let mut stack = Stack::builder().local_only().start().await;
    let provider = stack.local().providers[0].base_url();
    for day in 0..3 {
        stack.submit(&search_body("CGK", "DPS", 6 + day, 1)).await;
    }
    metrics_when(
        "the provider to count three searches",
        "flight_search_provider_searches_completed_total",
        3.0,
        || provider_metrics(&provider),
    )
    .await;
    let main_text = stack.metrics().await;
    assert_eq!(
        metric(&main_text, "flight_search_searches_submitted_total"),
        Some(3.0)
    );
    // Nobody watched: no delivery to count, however the searches ended.
    for delivery in [
        "flight_search_deliveries_completed_total",
        "flight_search_deliveries_failed_total",
        "flight_search_sse_events_delivered_total",
    ] {
        assert_eq!(metric(&main_text, delivery), Some(0.0), "{delivery}");
    }
}

/// Health and readiness answer in one JSON shape on both services.
async fn assert_healthy_and_ready(bases: [&str; 2]) {
    for base in bases {
        let health = http::get(&format!("{base}/healthz")).await.unwrap();
        assert_eq!(health.status, 200, "{base}");
        assert_eq!(health.json(), serde_json::json!({"status": "ok"}), "{base}");
        let ready = http::get(&format!("{base}/readyz")).await.unwrap();
        assert_eq!(ready.status, 200, "{base}");
        assert_eq!(ready.header("content-type"), Some("application/json"));
        assert_eq!(
            ready.json(),
            serde_json::json!({"status": "ready"}),
            "{base}"
        );
    }
}

#[tokio::test]
async fn both_services_expose_health_readiness_and_the_documented_metrics() {
    let mut stack = Stack::builder().local_only().start().await;
    let provider = stack.local().providers[0].base_url();

    // Every documented family is there before anything happened, its known
    // series at zero.
    let main_at_start = stack.metrics().await;
    let provider_at_start = provider_metrics(&provider).await;
    for (text, series) in [
        (
            &main_at_start,
            "flight_search_http_requests_total{route=\"/api/flights/search\",method=\"POST\",status=\"202\"}",
        ),
        (
            &main_at_start,
            "flight_search_http_request_duration_seconds_count{route=\"/api/flights/search/{search_id}/stream\"}",
        ),
        (
            &main_at_start,
            "flight_search_redis_errors_total{op=\"attach\"}",
        ),
        (&main_at_start, "flight_search_searches_submitted_total"),
        (
            &provider_at_start,
            "flight_search_provider_dead_letters_total{reason=\"invalid_request\"}",
        ),
        (
            &provider_at_start,
            "flight_search_provider_dead_letters_total{reason=\"max_deliveries_exceeded\"}",
        ),
        (
            &provider_at_start,
            "flight_search_provider_redis_errors_total{op=\"append\"}",
        ),
        (
            &provider_at_start,
            "flight_search_provider_searches_failed_total{code=\"dead_lettered\"}",
        ),
    ] {
        assert_eq!(
            metric(text, series),
            Some(0.0),
            "{series} at start:\n{text}"
        );
    }
    assert_healthy_and_ready([stack.base_url(), &provider]).await;

    let id = stack.submit(&search_body("CGK", "DPS", 6, 2)).await;
    let events = stack.events(id).await;

    // Either service may count a moment after the client saw the terminal
    // event: the provider after acknowledging the search, main-service after
    // handing the last event to the connection.
    let text = metrics_when(
        "the provider to count the search",
        "flight_search_provider_searches_completed_total",
        1.0,
        || provider_metrics(&provider),
    )
    .await;
    assert_families(
        "provider",
        &text,
        "flight_search_provider_",
        PROVIDER_FAMILIES,
    );
    assert_eq!(metric(&text, "flight_search_provider_redis_up"), Some(1.0));
    assert!(
        metric(
            &text,
            "flight_search_provider_supplier_call_duration_seconds_count{supplier=\"GA\""
        )
        .is_some(),
        "per-supplier latency:\n{text}"
    );
    let main_text = metrics_when(
        "main-service to count the events it delivered",
        "flight_search_sse_events_delivered_total",
        events.len() as f64,
        || stack.metrics(),
    )
    .await;
    assert_families("main-service", &main_text, "flight_search_", MAIN_FAMILIES);
    assert_eq!(
        metric(&main_text, "flight_search_searches_submitted_total"),
        Some(1.0)
    );
    assert!(
        metric(
            &main_text,
            "flight_search_http_requests_total{route=\"/api/flights/search\""
        )
        .is_some(),
        "requests by route:\n{main_text}"
    );
}

/// A CORS preflight from `origin` for `method` on `url`.
async fn preflight(url: &str, origin: &str, method: &str) -> http::Response {
    http::request(
        Method::OPTIONS,
        url,
        &[
            ("origin", origin),
            ("access-control-request-method", method),
            (
                "access-control-request-headers",
                "content-type,last-event-id",
            ),
        ],
        "",
    )
    .await
    .unwrap()
}

/// Preflights from `allowed` get every CORS header; others get 405 and none.
async fn assert_preflights(allowed: &str, routes: [(&str, &str); 2]) {
    for (url, method) in routes {
        let answer = preflight(url, allowed, method).await;
        assert_eq!(answer.status, 204, "{url}");
        assert_eq!(answer.header("access-control-allow-origin"), Some(allowed));
        let methods = answer.header("access-control-allow-methods").unwrap();
        assert!(methods.split(", ").any(|m| m == method), "{url}: {methods}");
        let headers = answer
            .header("access-control-allow-headers")
            .unwrap()
            .to_ascii_lowercase();
        assert!(
            headers.contains("content-type") && headers.contains("last-event-id"),
            "{headers}"
        );
        assert!(answer.header("access-control-max-age").is_some());
        assert_eq!(answer.header("vary"), Some("Origin"));

        let refused = preflight(url, "http://evil.test", method).await;
        assert_eq!(refused.status, 405, "{url}");
        assert!(
            refused
                .headers
                .keys()
                .all(|name| !name.as_str().starts_with("access-control-")),
            "{:?}",
            refused.headers
        );
    }
}

#[tokio::test]
async fn allowed_origins_get_cors_headers_on_every_answer_and_others_none() {
    let allowed = "http://app.example.test:3000";
    let stack = Stack::builder()
        .local_only()
        .main_env("CORS_ALLOWED_ORIGINS", &format!("{allowed},https://b.test"))
        .start()
        .await;
    let search = stack.url("/api/flights/search");
    let stream = stack.stream_url(Uuid::new_v4());
    assert_preflights(allowed, [(&search, "POST"), (&stream, "GET")]).await;

    // Actual answers, errors and event streams included.
    let origin = [("origin", allowed)];
    let json = [("origin", allowed), ("content-type", "application/json")];
    let accepted = http::request(
        Method::POST,
        &search,
        &json,
        search_body("CGK", "DPS", 3, 1),
    )
    .await
    .unwrap();
    assert_eq!(accepted.status, 202);
    let rejected = http::request(Method::POST, &search, &json, "{}")
        .await
        .unwrap();
    assert_eq!(rejected.status, 400);
    let unknown = http::request(Method::GET, &stream, &origin, "")
        .await
        .unwrap();
    assert_eq!(unknown.status, 404);
    let location = accepted.header("location").unwrap();
    let events = http::send(Method::GET, &stack.url(location), &origin, "")
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    let events_cors = events.headers().get("access-control-allow-origin").cloned();
    drop(events);
    assert_eq!(events_cors.unwrap(), allowed, "the event stream");
    for answer in [&accepted, &rejected, &unknown] {
        assert_eq!(
            answer.header("access-control-allow-origin"),
            Some(allowed),
            "{}",
            answer.status
        );
        assert_eq!(
            answer.header("access-control-expose-headers"),
            Some("Location, Retry-After")
        );
        assert_eq!(answer.header("vary"), Some("Origin"));
    }

    let elsewhere = http::request(
        Method::GET,
        &stream,
        &[("origin", "https://b.test.evil")],
        "",
    )
    .await
    .unwrap();
    assert_eq!(elsewhere.status, 404);
    assert!(elsewhere.header("access-control-allow-origin").is_none());
    let same_origin = http::get(&stream).await.unwrap();
    assert!(same_origin.header("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn text_logs_are_plain_and_leave_probes_to_debug() {
    let redis = RedisServer::start().await;
    let addr = format!("127.0.0.1:{}", free_port());
    let log_path = std::env::temp_dir().join(format!("main-service-{}.log", Uuid::new_v4()));
    let log = std::fs::File::create(&log_path).unwrap();
    let mut main = Command::new(binary_path("main-service"))
        .env("REDIS_URL", redis.url())
        .env("HTTP_ADDR", &addr)
        .env("RUST_LOG", "info")
        .env("LOG_FORMAT", "text")
        .stdout(log)
        .spawn()
        .unwrap();
    let base = format!("http://{addr}");
    eventually("main-service to answer", LIMIT, || {
        let url = format!("{base}/readyz");
        async move { (http::get(&url).await.ok()?.status == 200).then_some(()) }
    })
    .await;
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(
            http::get(&format!("{base}{path}")).await.unwrap().status,
            200
        );
    }
    let icon = http::get(&format!("{base}/favicon.ico")).await.unwrap();
    assert_eq!(icon.status, 200);
    assert_eq!(icon.header("content-type"), Some("image/svg+xml"));
    assert_eq!(
        http::get(&format!("{base}/nothing")).await.unwrap().status,
        404
    );
    let text = eventually("the 404 to be logged", LIMIT, || {
        let log_path = log_path.clone();
        async move {
            let text = std::fs::read_to_string(&log_path).ok()?;
            text.contains("/nothing").then_some(text)
        }
    })
    .await;
    let _ = main.kill();
    let _ = main.wait();
    let _ = std::fs::remove_file(&log_path);
    assert!(
        !text.contains('\u{1b}'),
        "escape codes in a log file:\n{text}"
    );
    assert!(text.contains("/favicon.ico"), "{text}");
    for probe in ["/healthz", "/readyz", "/metrics"] {
        assert!(!text.contains(probe), "{probe} logged at info:\n{text}");
    }
}
