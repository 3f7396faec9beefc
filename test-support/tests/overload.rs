//! Overload never loses an accepted search: admission control at
//! `QUEUE_MAX_BACKLOG`, trimming that keeps unfinished entries, the per-client
//! rate limit, and Redis refusing writes (OOM) or configured to evict. Always
//! runs on a local stack.
//!
//! The flood is sized for CI; the full-size run of the scenario that used to
//! lose searches (105,000 POSTs against a bound of 100,000, no provider running
//! until the flood is over) is, outside nextest's time limit,
//! `OVERLOAD_POSTS=105000 OVERLOAD_BACKLOG=100000 cargo test -p test-support --test overload flood -- --nocapture`.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use contract::keys::{DEAD_LETTER_STREAM, REQUESTS_STREAM, results_key};
use hyper::Method;
use test_support::http::{self, metric};
use test_support::stack::Stack;
use test_support::{eventually, search_body};
use uuid::Uuid;

const LIMIT: Duration = Duration::from_secs(30);

/// A stream entry as XRANGE returns it: id and field/value pairs.
type StreamEntry = (String, Vec<(String, String)>);

/// The search id in a 202 body.
fn accepted_id(response: &http::Response) -> Uuid {
    response.json()["data"]["search_id"]
        .as_str()
        .expect("search_id")
        .parse()
        .expect("a UUID")
}

/// The search ids queued in `flight.search.requested`, read in pages (a
/// full-size run queues 100,000).
async fn queued_ids(stack: &Stack) -> Vec<Uuid> {
    let mut redis = stack.redis().await;
    let mut ids = Vec::new();
    let mut start = "-".to_owned();
    loop {
        let page: Vec<StreamEntry> = redis::cmd("XRANGE")
            .arg(REQUESTS_STREAM)
            .arg(&start)
            .arg("+")
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut redis)
            .await
            .expect("XRANGE");
        let Some((last, _)) = page.last() else {
            return ids;
        };
        start = format!("({last}");
        ids.extend(page.into_iter().map(|(_, fields)| {
            let (_, id) = fields
                .into_iter()
                .find(|(name, _)| name == "search_id")
                .expect("a search_id field");
            id.parse::<Uuid>().expect("a UUID")
        }));
    }
}

async fn xlen(stack: &Stack, key: &str) -> u64 {
    let mut redis = stack.redis().await;
    redis::cmd("XLEN")
        .arg(key)
        .query_async(&mut redis)
        .await
        .expect("XLEN")
}

async fn state_keys(stack: &Stack) -> usize {
    let mut redis = stack.redis().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("{flight.search.results:*}:state")
        .query_async(&mut redis)
        .await
        .expect("KEYS");
    keys.len()
}

/// Waits until `search_id`'s stream holds its terminal event, and checks that
/// it holds exactly one, `completed`.
async fn completed_once(stack: &Stack, search_id: Uuid, limit: Duration) {
    let terminal = |events: &[(String, String)]| {
        events
            .iter()
            .filter(|(_, data)| {
                data.contains(r#""status":"completed""#) || data.contains(r#""status":"failed""#)
            })
            .count()
    };
    let events = eventually(&format!("{search_id} to finish"), limit, || async {
        let events = stack.stored_events(search_id).await;
        (terminal(&events) > 0).then_some(events)
    })
    .await;
    assert_eq!(terminal(&events), 1, "{search_id}: {events:?}");
    let last = &events.last().unwrap().1;
    assert!(
        last.contains(r#""status":"completed""#),
        "{search_id}: {last}"
    );
}

#[tokio::test]
async fn a_full_queue_answers_503_and_every_accepted_search_completes_once() {
    const BOUND: usize = 20;
    let mut stack = Stack::builder()
        .local_only()
        .providers(0)
        .main_env("QUEUE_MAX_BACKLOG", &BOUND.to_string())
        .start()
        .await;
    let mut accepted = Vec::new();
    let mut statuses = Vec::new();
    for _ in 0..3 * BOUND {
        let response = stack.post(&search_body("CGK", "DPS", 6, 2)).await;
        statuses.push(response.status);
        match response.status {
            202 => accepted.push(accepted_id(&response)),
            503 => {
                assert_eq!(response.header("retry-after"), Some("5"));
                let body = response.json();
                assert_eq!(body["success"], false);
                assert!(
                    body["message"].as_str().unwrap().contains("queue is full"),
                    "{body}"
                );
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(statuses[..BOUND], [202; BOUND], "202s up to the bound");
    assert_eq!(statuses[BOUND..], [503; 2 * BOUND], "503s after it");
    assert_eq!(
        queued_ids(&stack).await,
        accepted,
        "exactly the accepted searches are queued"
    );
    assert_eq!(
        state_keys(&stack).await,
        BOUND,
        "a refused POST writes nothing"
    );
    let metrics = stack.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "flight_search_searches_rejected_total{reason=\"queue_full\""
        ),
        Some((2 * BOUND) as f64)
    );

    stack
        .local()
        .add_provider(&[("MOCK_LATENCY_MS", "0")])
        .await;
    stack
        .local()
        .add_provider(&[("MOCK_LATENCY_MS", "0")])
        .await;
    for id in &accepted {
        completed_once(&stack, *id, LIMIT).await;
    }
    eventually(
        "the backlog to drain and the queue to be trimmed",
        LIMIT,
        || async {
            let backlog = metric(&stack.metrics().await, "flight_search_queue_backlog")?;
            (backlog == 0.0 && xlen(&stack, REQUESTS_STREAM).await == 0).then_some(())
        },
    )
    .await;
    assert_eq!(
        stack.post(&search_body("CGK", "DPS", 6, 2)).await.status,
        202
    );
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} must be a number"))
        })
        .unwrap_or(default)
}

/// POSTs `posts` searches from `concurrency` clients at once; returns the ids
/// accepted (202) and the number refused (503).
async fn flood(url: String, posts: usize, concurrency: usize) -> (Vec<Uuid>, usize) {
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let url = url.clone();
        let next = next.clone();
        workers.push(tokio::spawn(async move {
            let mut accepted = Vec::new();
            let mut refused = 0usize;
            while next.fetch_add(1, Ordering::AcqRel) < posts as u64 {
                let response = http::post_json(&url, &search_body("CGK", "DPS", 6, 2))
                    .await
                    .expect("POST");
                match response.status {
                    202 => accepted.push(accepted_id(&response)),
                    503 => refused += 1,
                    other => panic!("unexpected status {other}"),
                }
            }
            (accepted, refused)
        }));
    }
    let mut accepted = Vec::new();
    let mut refused = 0;
    for worker in workers {
        let (ids, n) = worker.await.unwrap();
        accepted.extend(ids);
        refused += n;
    }
    (accepted, refused)
}

/// Asserts that each search has exactly one terminal event, `completed`.
async fn each_completed_once(
    mut redis: service_runtime::redis_connection::RedisConnection,
    accepted: &[Uuid],
) {
    // One connection, pipelined: a full-size run checks 100,000 searches.
    for batch in accepted.chunks(100) {
        let mut pipe = redis::pipe();
        for id in batch {
            pipe.cmd("XRANGE").arg(results_key(*id)).arg("-").arg("+");
        }
        let streams: Vec<Vec<StreamEntry>> = pipe.query_async(&mut redis).await.expect("XRANGE");
        for (id, events) in batch.iter().zip(streams) {
            let terminal: Vec<&str> = events
                .iter()
                .filter_map(|(_, fields)| {
                    let data = &fields.first()?.1;
                    ["completed", "failed"]
                        .into_iter()
                        .find(|status| data.contains(&format!(r#""status":"{status}""#)))
                })
                .collect();
            assert_eq!(
                terminal,
                ["completed"],
                "{id}: one terminal event, completed"
            );
        }
    }
}

#[tokio::test]
async fn a_flood_beyond_the_bound_loses_nothing() {
    let posts = env_number("OVERLOAD_POSTS", 1_000);
    let bound = env_number("OVERLOAD_BACKLOG", 300);
    const CONCURRENCY: usize = 32;
    let mut stack = Stack::builder()
        .local_only()
        .providers(0)
        .main_env("QUEUE_MAX_BACKLOG", &bound.to_string())
        .main_env("SEARCH_TIMEOUT_SECS", "600")
        .start()
        .await;

    // The largest backlog seen while the flood runs, straight from Redis.
    let peak = Arc::new(AtomicU64::new(0));
    let watching = Arc::new(AtomicBool::new(true));
    let watcher = {
        let peak = peak.clone();
        let watching = watching.clone();
        let mut redis = stack.redis().await;
        tokio::spawn(async move {
            while watching.load(Ordering::Acquire) {
                let groups: redis::Value = redis::cmd("XINFO")
                    .arg("GROUPS")
                    .arg(REQUESTS_STREAM)
                    .query_async(&mut redis)
                    .await
                    .unwrap_or(redis::Value::Nil);
                peak.fetch_max(backlog_of(&groups), Ordering::AcqRel);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    let (accepted, refused) = flood(stack.url("/api/flights/search"), posts, CONCURRENCY).await;
    watching.store(false, Ordering::Release);
    watcher.await.unwrap();
    assert_eq!(accepted.len() + refused, posts);
    // One instance never overshoots (its admissions in progress count against
    // the bound); near the bound it may refuse a few early, when a write has
    // landed but its POST has not yet settled.
    assert!(
        (bound.min(posts).saturating_sub(CONCURRENCY)..=bound).contains(&accepted.len()),
        "accepted {} of {posts} against a bound of {bound}",
        accepted.len()
    );
    let peak = peak.load(Ordering::Acquire) as usize;
    assert!(peak <= bound, "backlog peaked at {peak}");
    let queued: HashSet<Uuid> = queued_ids(&stack).await.into_iter().collect();
    let promised: HashSet<Uuid> = accepted.iter().copied().collect();
    assert_eq!(
        queued, promised,
        "every accepted search, and only those, is queued"
    );

    for _ in 0..2 {
        stack
            .local()
            .add_provider(&[("MOCK_LATENCY_MS", "0")])
            .await;
    }
    // Two debug-build providers on a busy two-core machine finish about 100
    // searches per second.
    let drain = LIMIT + Duration::from_millis(20 * accepted.len() as u64);
    let redis = stack.redis().await;
    eventually("every accepted search to finish", drain, || {
        let mut redis = redis.clone();
        async move {
            let groups: redis::Value = redis::cmd("XINFO")
                .arg("GROUPS")
                .arg(REQUESTS_STREAM)
                .query_async(&mut redis)
                .await
                .ok()?;
            (backlog_of(&groups) == 0).then_some(())
        }
    })
    .await;
    each_completed_once(redis, &accepted).await;
    assert_eq!(
        xlen(&stack, DEAD_LETTER_STREAM).await,
        0,
        "nothing dead-lettered"
    );
    eventually("the queue to be trimmed", LIMIT, || async {
        (xlen(&stack, REQUESTS_STREAM).await == 0).then_some(())
    })
    .await;
}

/// The largest `pending + lag` over the groups of an `XINFO GROUPS` reply.
fn backlog_of(groups: &redis::Value) -> u64 {
    let redis::Value::Array(groups) = groups else {
        return 0;
    };
    groups
        .iter()
        .filter_map(|group| {
            let redis::Value::Array(fields) = group else {
                return None;
            };
            let field = |name: &str| {
                fields.chunks(2).find_map(|pair| match pair {
                    [redis::Value::BulkString(key), redis::Value::Int(n)]
                        if key == name.as_bytes() =>
                    {
                        Some(*n as u64)
                    }
                    _ => None,
                })
            };
            Some(field("pending")? + field("lag")?)
        })
        .max()
        .unwrap_or(0)
}

/// What a service logged (warnings and errors in tests).
fn lines_of(service: &test_support::services::Service) -> Vec<String> {
    service.output().lines().map(str::to_owned).collect()
}

async fn config_set(stack: &Stack, name: &str, value: &str) {
    let mut redis = stack.redis().await;
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg(name)
        .arg(value)
        .query_async(&mut redis)
        .await
        .expect("CONFIG SET");
}

async fn readiness(url: &str) -> Option<(u16, String)> {
    let response = http::get(url).await.ok()?;
    Some((
        response.status,
        String::from_utf8_lossy(&response.body).into_owned(),
    ))
}

#[tokio::test]
async fn redis_out_of_memory_mid_run_delays_searches_but_loses_and_dead_letters_none() {
    const SEARCHES: usize = 8;
    let mut stack = Stack::builder().local_only().providers(0).start().await;
    stack
        .local()
        .add_provider(&[
            ("MOCK_LATENCY_MS", "300-1500"),
            ("CLAIM_IDLE_MS", "1000"),
            ("MAX_DELIVERIES", "2"),
        ])
        .await;
    let provider = stack.local().providers[0].base_url();
    let main_ready = stack.url("/readyz");
    let provider_ready = format!("{provider}/readyz");

    let mut streams = Vec::new();
    for _ in 0..SEARCHES {
        let id = stack.submit(&search_body("CGK", "DPS", 6, 2)).await;
        let stream = stack.open(id, None).await;
        assert_eq!(stream.status, 200);
        streams.push((id, stream));
    }
    // Mid-run: the first search is being worked on.
    let first = streams[0].1.next_event(LIMIT).await.unwrap().unwrap();
    assert_eq!(first.status(), "processing");

    config_set(&stack, "maxmemory", "1").await;
    for url in [&main_ready, &provider_ready] {
        let body = eventually("readiness to report the refusal", LIMIT, || async {
            let (status, body) = readiness(url).await?;
            (status == 503).then_some(body)
        })
        .await;
        assert!(body.contains("OOM"), "{url}: {body}");
    }
    let queued = xlen(&stack, REQUESTS_STREAM).await;
    let refused = stack.post(&search_body("CGK", "DPS", 6, 2)).await;
    assert_eq!(refused.status, 503);
    assert!(refused.header("retry-after").is_some());
    assert_eq!(
        xlen(&stack, REQUESTS_STREAM).await,
        queued,
        "nothing queued"
    );
    // Enough recovery sweeps for every held entry to be claimed and
    // dead-lettered twice over if refused writes were spent as deliveries
    // (CLAIM_IDLE_MS 1 s, so a sweep every 500 ms; MAX_DELIVERIES 2).
    let sweeps = || async {
        let text = http::get(&format!("{provider}/metrics")).await.unwrap();
        metric(
            &String::from_utf8_lossy(&text.body),
            "flight_search_provider_recovery_sweeps_total",
        )
        .expect("recovery_sweeps_total")
    };
    let first = sweeps().await;
    eventually(
        "eight recovery sweeps while writes are refused",
        LIMIT,
        || async { (sweeps().await >= first + 8.0).then_some(()) },
    )
    .await;
    config_set(&stack, "maxmemory", "0").await;

    for url in [&main_ready, &provider_ready] {
        eventually("readiness to return", LIMIT, || async {
            (readiness(url).await?.0 == 200).then_some(())
        })
        .await;
    }
    for (id, stream) in &mut streams {
        let events = stream.until_terminal(LIMIT).await.unwrap();
        let last = events.last().expect("a terminal event");
        assert_eq!(last.status(), "completed", "{id}: {events:?}");
    }
    assert_eq!(
        xlen(&stack, DEAD_LETTER_STREAM).await,
        0,
        "nothing dead-lettered"
    );
    let provider_metrics = http::get(&format!("{provider}/metrics")).await.unwrap();
    let provider_metrics = String::from_utf8_lossy(&provider_metrics.body).into_owned();
    assert_eq!(
        metric(&provider_metrics, "flight_search_provider_claims_total"),
        Some(0.0),
        "no entry changed hands"
    );

    // Logs (warnings and errors in tests): one line when writes are refused,
    // none per retry.
    let local = stack.local();
    for (name, lines) in [
        ("main-service", lines_of(&local.mains[0])),
        ("provider", lines_of(&local.providers[0])),
    ] {
        assert!(
            lines.len() <= 4,
            "{name} logged {} lines:\n{}",
            lines.len(),
            lines.join("\n")
        );
        assert_eq!(
            lines
                .iter()
                .filter(|l| l.contains("redis refuses writes"))
                .count(),
            1,
            "{name}:\n{}",
            lines.join("\n")
        );
    }
}

#[tokio::test]
async fn a_search_timed_out_while_redis_refused_writes_ends_when_memory_returns() {
    let stack = Stack::builder()
        .local_only()
        .providers(0)
        .main_env("SEARCH_TIMEOUT_SECS", "2")
        .start()
        .await;
    let id = stack.submit(&search_body("CGK", "DPS", 6, 2)).await;
    let mut stream = stack.open(id, None).await;
    assert_eq!(stream.status, 200);
    config_set(&stack, "maxmemory", "1").await;
    let ready = stack.url("/readyz");
    eventually("readiness to drop", LIMIT, || async {
        (readiness(&ready).await?.0 == 503).then_some(())
    })
    .await;
    // Past the deadline, the timeout cannot be written.
    assert!(
        stream
            .next_event(Duration::from_secs(3))
            .await
            .unwrap_or(None)
            .is_none(),
        "no event while writes are refused"
    );
    config_set(&stack, "maxmemory", "0").await;
    let events = stream
        .until_terminal(Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].data["error"]["code"], "timeout");
}

#[tokio::test]
async fn a_client_over_its_rate_gets_429_and_others_are_unaffected() {
    let stack = Stack::builder()
        .local_only()
        .providers(0)
        .main_env("RATE_LIMIT_PER_CLIENT", "3/m")
        .main_env("TRUSTED_PROXIES", "127.0.0.1")
        .start()
        .await;
    let url = stack.url("/api/flights/search");
    let post_from = |client: &'static str| {
        let url = url.clone();
        async move {
            http::request(
                Method::POST,
                &url,
                &[
                    ("content-type", "application/json"),
                    ("x-forwarded-for", client),
                ],
                search_body("CGK", "DPS", 6, 2),
            )
            .await
            .expect("POST")
        }
    };
    for _ in 0..3 {
        assert_eq!(post_from("203.0.113.1").await.status, 202);
    }
    let limited = post_from("203.0.113.1").await;
    assert_eq!(limited.status, 429);
    let wait: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=20).contains(&wait), "Retry-After {wait}");
    let body = limited.json();
    assert_eq!(body["success"], false);
    assert!(
        body["message"].as_str().unwrap().contains("too many"),
        "{body}"
    );

    assert_eq!(
        post_from("203.0.113.2").await.status,
        202,
        "another client is unaffected"
    );
    // A client cannot escape by naming another address before its own.
    assert_eq!(post_from("198.51.100.7, 203.0.113.1").await.status, 429);
    assert_eq!(
        stack.post(&search_body("CGK", "DPS", 6, 2)).await.status,
        202
    );

    assert_eq!(
        xlen(&stack, REQUESTS_STREAM).await,
        5,
        "nothing written for a 429"
    );
    assert_eq!(state_keys(&stack).await, 5);
    assert_eq!(
        metric(
            &stack.metrics().await,
            "flight_search_searches_rejected_total{reason=\"rate_limited\""
        ),
        Some(2.0)
    );
}

#[tokio::test]
async fn an_evicting_redis_is_reported_by_both_services() {
    let mut stack = Stack::builder().local_only().providers(0).start().await;
    config_set(&stack, "maxmemory-policy", "allkeys-lru").await;
    // The policy is read at start and after each reconnect.
    stack.local().mains[0].restart().await;
    stack.local().add_provider(&[]).await;
    let provider = stack.local().providers[0].base_url();
    let main_ready = stack.url("/readyz");
    let body = eventually("main-service to report the policy", LIMIT, || async {
        let (status, body) = readiness(&main_ready).await?;
        (status == 200 && body.contains("warnings")).then_some(body)
    })
    .await;
    assert!(body.contains("allkeys-lru"), "{body}");
    let provider_ready = format!("{provider}/readyz");
    let body = eventually("the provider to report the policy", LIMIT, || async {
        let (status, body) = readiness(&provider_ready).await?;
        (status == 200 && body.contains("warning")).then_some(body)
    })
    .await;
    assert!(body.contains("allkeys-lru"), "{body}");
    let local = stack.local();
    for service in [&local.mains[0], &local.providers[0]] {
        let warnings: Vec<String> = service
            .output()
            .lines()
            .filter(|l| l.contains("maxmemory-policy is allkeys-lru"))
            .map(str::to_owned)
            .collect();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
    }
}
