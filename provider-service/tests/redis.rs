//! The provider against a real `redis-server` (started per test on a free port):
//! a fresh search, a search resumed after a crash, poison input (including field
//! names that are not UTF-8), a search handed out too often, readiness, a
//! shutdown that runs out of grace and one in the middle of a sweep, and
//! hostile suppliers (one whose handling panics, one asking for a
//! `Retry-After` of `u64::MAX`, answers over the bounds). The tests drive the
//! same `run` the binary calls, or `serve` with one supplier swapped; the
//! append script's answers are checked on `service_runtime::streams` itself.
//! The queue's and the result streams' own commands are unit tests of
//! `searches::queue` and `searches::result_streams`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use contract::keys::{DEAD_LETTER_STREAM, REQUESTS_STREAM, results_key};
use contract::{
    EventKind, QueuedSearch, SearchEvent, SearchRequest, SupplierOutcome, SupplierOutcomes, Tally,
};
use futures_util::StreamExt;
use provider_service::supplier::{
    self, Adapter, BadAnswer, Defaults, HttpSupplier, Style, Supplier, SupplierSettings,
};
use provider_service::{Config, Metrics};
use redis::aio::MultiplexedConnection;
use service_runtime::config::Vars;
use service_runtime::streams::{self, Appended, Nudges};
use test_support::left_behind::{append, enqueue, enqueue_search, queued_search, take_and_die};
use test_support::redis_server::RedisServer;
use test_support::{eventually, free_port};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const LIMIT: Duration = Duration::from_secs(20);

/// A provider running in-process, stopped by [`Provider::stop`].
struct Provider {
    /// Where its admin server listens, for /readyz and /metrics.
    admin: std::net::SocketAddr,
    /// Stands in for SIGTERM.
    shutdown: CancellationToken,
    /// `run` itself, so a test sees how and when it returns.
    task: tokio::task::JoinHandle<Result<(), provider_service::Error>>,
}

impl Provider {
    async fn start(redis: &RedisServer, extra: &[(&str, &str)]) -> Provider {
        let config = config(redis, extra);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(provider_service::run(listener, config, shutdown.clone()));
        Provider {
            admin,
            shutdown,
            task,
        }
    }

    /// A provider over `suppliers` instead of those its configuration names.
    async fn serving(
        redis: &RedisServer,
        extra: &[(&str, &str)],
        suppliers: impl FnOnce(&Config, &Arc<Metrics>) -> Vec<Supplier> + Send + 'static,
    ) -> Provider {
        let config = config(redis, extra);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(provider_service::serve(
            listener,
            config,
            suppliers,
            shutdown.clone(),
        ));
        Provider {
            admin,
            shutdown,
            task,
        }
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let mut stream = tokio::net::TcpStream::connect(self.admin).await.unwrap();
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).await.unwrap();
        let status = text[9..12].parse().unwrap();
        (status, text)
    }

    async fn stop(self) -> Duration {
        let started = Instant::now();
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
        started.elapsed()
    }
}

/// The test configuration: `redis`, simulated suppliers without latency, a
/// short grace period, plus `extra`.
fn config(redis: &RedisServer, extra: &[(&str, &str)]) -> Config {
    let mut vars: HashMap<String, String> = [
        ("REDIS_URL", redis.url()),
        ("CONSUMER_NAME", format!("test-{}", free_port())),
        ("MOCK_LATENCY_MS", "0".to_owned()),
        ("SHUTDOWN_GRACE_SECS", "2".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Config::from_vars(&Vars::new(move |k: &str| vars.get(k).cloned())).unwrap()
}

async fn events(conn: &mut MultiplexedConnection, id: Uuid) -> Vec<SearchEvent> {
    let entries: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
        .arg(results_key(id))
        .arg("-")
        .arg("+")
        .query_async(conn)
        .await
        .unwrap();
    entries
        .into_iter()
        .map(|(_, fields)| serde_json::from_str(&fields["data"]).unwrap())
        .collect()
}

/// Waits for the search's terminal event and returns every event.
async fn finished(conn: &MultiplexedConnection, id: Uuid) -> Vec<SearchEvent> {
    eventually("the search's terminal event", LIMIT, || async {
        let seen = events(&mut conn.clone(), id).await;
        seen.last()
            .is_some_and(|e| e.kind.is_terminal())
            .then_some(seen)
    })
    .await
}

/// Waits until nothing is pending in the group.
async fn nothing_pending(conn: &MultiplexedConnection) {
    eventually("no entry left pending", LIMIT, || async {
        (pending(&mut conn.clone()).await == 0).then_some(())
    })
    .await;
}

async fn pending(conn: &mut MultiplexedConnection) -> u64 {
    let reply: redis::Value = redis::cmd("XPENDING")
        .arg(REQUESTS_STREAM)
        .arg("provider-service")
        .query_async(conn)
        .await
        .unwrap();
    match reply {
        redis::Value::Array(items) => redis::from_redis_value(items[0].clone()).unwrap(),
        other => panic!("XPENDING: {other:?}"),
    }
}

/// One field of each of the group's consumers in `XINFO CONSUMERS`.
async fn consumer_field<T: redis::FromRedisValue>(
    conn: &mut MultiplexedConnection,
    field: &str,
) -> Vec<T> {
    let reply: Vec<HashMap<String, redis::Value>> = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(REQUESTS_STREAM)
        .arg("provider-service")
        .query_async(conn)
        .await
        .unwrap();
    reply
        .into_iter()
        .map(|c| redis::from_redis_value(c[field].clone()).unwrap())
        .collect()
}

/// Names of the group's consumers.
async fn consumers(conn: &mut MultiplexedConnection) -> Vec<String> {
    consumer_field(conn, "name").await
}

/// Queues a search with every field of `q` plus one whose name is not UTF-8.
async fn enqueue_with_binary_field(conn: &mut MultiplexedConnection, q: &QueuedSearch) -> String {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(REQUESTS_STREAM).arg("*");
    for (name, value) in q.to_fields() {
        cmd.arg(name).arg(value);
    }
    cmd.arg(b"note\xff".to_vec()).arg("binary name");
    cmd.query_async(conn).await.unwrap()
}

/// Suppliers in `events`, checking each appears once, and their offers.
fn answers(events: &[SearchEvent]) -> (Vec<String>, u32) {
    let mut suppliers = Vec::new();
    let mut offers = 0;
    for e in events {
        if let EventKind::Result { supplier, results } = &e.kind {
            assert!(!suppliers.contains(supplier), "{supplier} twice");
            suppliers.push(supplier.clone());
            offers += results.len() as u32;
        }
    }
    (suppliers, offers)
}

#[tokio::test]
async fn a_terminal_event_based_on_a_stale_tally_is_refused() {
    let redis = RedisServer::start().await;
    let mut conn = redis.connection().await;
    let id = Uuid::new_v4();
    let ttl = Duration::from_secs(60);
    let request = queued_search("CGK", "DPS").request;
    let flights: Vec<_> =
        timetable::schedule::flights(&timetable::catalogue::CARRIERS[0], &request)
            .into_iter()
            .take(2)
            .collect();
    assert_eq!(
        flights.len(),
        2,
        "the first carrier flies CGK-DPS more than once a day"
    );
    append(
        &mut conn,
        id,
        EventKind::Result {
            supplier: "GA".into(),
            results: flights,
        },
    )
    .await;

    // Based on what was read before another attempt's GA result landed.
    let completed = |total_results| SearchEvent {
        search_id: id,
        kind: EventKind::Completed { total_results },
    };
    let stale = Tally {
        answers: 0,
        offers: 0,
    };
    let refused = streams::append_event(
        &mut conn,
        &completed(0),
        ttl,
        Some(stale),
        Nudges::Broadcast,
    )
    .await
    .unwrap();
    let now = Tally {
        answers: 1,
        offers: 2,
    };
    assert_eq!(refused, Appended::Stale(now));
    assert!(
        events(&mut conn, id)
            .await
            .iter()
            .all(|e| !e.kind.is_terminal())
    );

    let written =
        streams::append_event(&mut conn, &completed(2), ttl, Some(now), Nudges::Broadcast)
            .await
            .unwrap();
    assert!(matches!(written, Appended::Written(_)), "{written:?}");
    let seen = events(&mut conn, id).await;
    assert_eq!(
        seen.last().unwrap().kind,
        EventKind::Completed { total_results: 2 }
    );
}

/// Asserts that of the stored `processing`, `result` and terminal events of
/// `id`, only the terminal one carries the supplier report, and it is `report`.
async fn assert_report_only_on_the_terminal_event(
    conn: &mut MultiplexedConnection,
    id: Uuid,
    report: &SupplierOutcomes,
) {
    let stored: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(results_key(id))
        .arg("-")
        .arg("+")
        .query_async(conn)
        .await
        .unwrap();
    assert_eq!(
        contract::supplier_report(stored[2].1[0].1.as_bytes()),
        *report,
        "the terminal event carries the report"
    );
    assert!(
        contract::supplier_report(stored[1].1[0].1.as_bytes()).is_empty(),
        "a result carries none"
    );
}

/// Asserts that the results stream of `id` expires, within `ttl`.
async fn assert_expires_within(conn: &mut MultiplexedConnection, id: Uuid, ttl: Duration) {
    let ttl_left: i64 = redis::cmd("TTL")
        .arg(results_key(id))
        .query_async(conn)
        .await
        .unwrap();
    assert!(
        ttl_left > 0 && ttl_left <= ttl.as_secs() as i64,
        "{ttl_left}"
    );
}

/// The search ids of the next `n` nudges published on the subscribed channel.
async fn next_nudges(nudges: &mut redis::aio::PubSub, n: usize) -> Vec<Uuid> {
    let mut messages = nudges.on_message();
    let mut seen = Vec::new();
    for _ in 0..n {
        let message = tokio::time::timeout(LIMIT, messages.next()).await.unwrap();
        let payload = message.unwrap().get_payload_bytes().to_vec();
        let nudge = contract::nudge::Nudge::parse(&payload).expect("a nudge");
        seen.push(nudge.search_id);
    }
    seen
}

#[tokio::test]
async fn a_batch_is_written_in_order_once_and_its_terminal_event_checks_the_tally() {
    let redis = RedisServer::start().await;
    let mut conn = redis.connection().await;
    let mut nudges = redis::Client::open(redis.url())
        .unwrap()
        .get_async_pubsub()
        .await
        .unwrap();
    let id = Uuid::new_v4();
    let ttl = Duration::from_secs(60);
    let request = queued_search("CGK", "DPS").request;
    let flights = timetable::schedule::flights(&timetable::catalogue::CARRIERS[0], &request);
    let offers = flights.len() as u64;
    let event = |kind| SearchEvent {
        search_id: id,
        kind,
    };
    let processing = event(EventKind::Processing { results: vec![] });
    let result = event(EventKind::Result {
        supplier: "GA".into(),
        results: flights,
    });
    let none = SupplierOutcomes::new();
    let report = SupplierOutcomes::from([("GA".to_owned(), SupplierOutcome::Answered)]);
    let batched = |event, basis: Option<Tally>| streams::Batched {
        event,
        report: if basis.is_some() { &report } else { &none },
        basis,
    };
    let append = async |conn: &mut MultiplexedConnection, batch: &[streams::Batched<'_>]| {
        streams::append_events(conn, id, batch, ttl, Nudges::Broadcast)
            .await
            .unwrap()
    };
    nudges
        .subscribe(contract::keys::EVENTS_CHANNEL)
        .await
        .unwrap();

    // A terminal event based on nothing, behind a result: refused, the rest written.
    let stale = event(EventKind::Completed { total_results: 0 });
    let basis = Tally::default();
    let first = append(
        &mut conn,
        &[
            batched(&processing, None),
            batched(&result, None),
            batched(&stale, Some(basis)),
        ],
    )
    .await;
    let now = Tally { answers: 1, offers };
    assert!(
        matches!(first[..2], [Appended::Written(_), Appended::Written(_)]),
        "{first:?}"
    );
    assert_eq!(first[2], Appended::Stale(now));

    // Again, with the right basis: the written slots are skipped, the end is written.
    let completed = event(EventKind::Completed {
        total_results: offers as u32,
    });
    let second = append(
        &mut conn,
        &[
            batched(&processing, None),
            batched(&result, None),
            batched(&completed, Some(now)),
        ],
    )
    .await;
    assert!(
        matches!(
            second[..],
            [Appended::Skipped, Appended::Skipped, Appended::Written(_)]
        ),
        "{second:?}"
    );
    let seen = events(&mut conn, id).await;
    let kinds: Vec<_> = seen.iter().map(|e| e.kind.slot()).collect();
    assert_eq!(kinds, ["processing", "result:GA", "terminal"]);
    assert_report_only_on_the_terminal_event(&mut conn, id, &report).await;

    // Nothing new after the end: no write and no nudge.
    let after = append(&mut conn, &[batched(&processing, None)]).await;
    assert_eq!(after, [Appended::Skipped]);
    assert_expires_within(&mut conn, id, ttl).await;

    // Nudges arrive in publish order: one per batch that wrote, then the
    // marker's, with none for the batch that wrote nothing.
    let marker = Uuid::new_v4();
    let marker_event = SearchEvent {
        search_id: marker,
        kind: EventKind::Processing { results: vec![] },
    };
    streams::append_events(
        &mut conn,
        marker,
        &[batched(&marker_event, None)],
        ttl,
        Nudges::Broadcast,
    )
    .await
    .unwrap();
    assert_eq!(next_nudges(&mut nudges, 3).await, [id, id, marker]);
}

#[tokio::test]
async fn a_first_delivery_finds_what_the_stream_already_holds() {
    let redis = RedisServer::start().await;
    let mut conn = redis.connection().await;

    // Timed out before any provider took it: acknowledged, nothing added.
    let timed_out = queued_search("CGK", "DPS");
    let failed = EventKind::Failed {
        error: contract::EventError::new(contract::EventError::TIMEOUT, "late"),
    };
    append(&mut conn, timed_out.search_id, failed.clone()).await;
    // Answered in part by an attempt whose queue entry was lost (the group
    // recreated): its answer stays the only one from that airline.
    let replayed = queued_search("CGK", "DPS");
    let request = &replayed.request;
    let flights = timetable::schedule::flights(&timetable::catalogue::CARRIERS[0], request);
    append(
        &mut conn,
        replayed.search_id,
        EventKind::Processing { results: vec![] },
    )
    .await;
    let result = EventKind::Result {
        supplier: timetable::catalogue::CARRIERS[0].code.to_owned(),
        results: flights,
    };
    streams::append_event(
        &mut conn,
        &SearchEvent {
            search_id: replayed.search_id,
            kind: result.clone(),
        },
        Duration::from_secs(60),
        None,
        Nudges::Broadcast,
    )
    .await
    .unwrap();
    enqueue_search(&mut conn, &timed_out).await;
    enqueue_search(&mut conn, &replayed).await;
    let provider = Provider::start(&redis, &[]).await;

    let seen = finished(&conn, replayed.search_id).await;
    let (suppliers, offers) = answers(&seen);
    assert_eq!(suppliers.len(), 6, "{suppliers:?}");
    assert_eq!(seen[1].kind, result, "the earlier answer is kept");
    let processing = seen
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Processing { .. }))
        .count();
    assert_eq!(processing, 1, "{seen:?}");
    assert_eq!(
        seen.last().unwrap().kind,
        EventKind::Completed {
            total_results: offers
        }
    );
    nothing_pending(&conn).await;
    let seen = events(&mut conn, timed_out.search_id).await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].kind, failed);
    let (_, metrics) = provider.get("/metrics").await;
    let calls: u64 = metrics
        .lines()
        .filter(|line| line.starts_with("flight_search_provider_supplier_outcomes_total{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(
        calls, 5,
        "only the airlines without an answer were asked, and nothing for the ended search:\n{metrics}"
    );
    provider.stop().await;
}

#[tokio::test]
async fn a_search_gets_processing_one_result_per_supplier_and_a_matching_total() {
    let redis = RedisServer::start().await;
    let mut conn = redis.connection().await;
    let q = queued_search("CGK", "DPS");
    enqueue_search(&mut conn, &q).await;
    let provider = Provider::start(&redis, &[]).await;

    let seen = finished(&conn, q.search_id).await;
    assert!(
        matches!(seen[0].kind, EventKind::Processing { .. }),
        "{seen:?}"
    );
    let (suppliers, offers) = answers(&seen);
    assert_eq!(suppliers.len(), 6, "{suppliers:?}");
    assert!(offers > 0);
    assert_eq!(
        seen.last().unwrap().kind,
        EventKind::Completed {
            total_results: offers
        }
    );
    assert_eq!(seen.len(), 8);
    assert_eq!(pending(&mut conn).await, 0);
    let ttl: i64 = redis::cmd("TTL")
        .arg(results_key(q.search_id))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!((1..=1800).contains(&ttl), "{ttl}");

    let (status, _) = provider.get("/readyz").await;
    assert_eq!(status, 200);
    let (_, metrics) = provider.get("/metrics").await;
    assert!(metrics.contains("flight_search_provider_searches_completed_total 1"));
    assert_eq!(consumers(&mut conn).await.len(), 1);
    assert!(provider.stop().await < Duration::from_secs(2));
    assert_eq!(
        consumers(&mut conn).await,
        Vec::<String>::new(),
        "a clean exit leaves no consumer behind"
    );
}

#[tokio::test]
async fn a_crashed_search_is_claimed_and_finished_without_asking_answered_suppliers_again() {
    let redis = RedisServer::start().await;
    let mut conn = redis.connection().await;
    let q = queued_search("CGK", "DPS");
    enqueue_search(&mut conn, &q).await;
    take_and_die(&mut conn, "crashed", 1).await;
    // What the crashed consumer got written: processing and GA's offers,
    // made recognisable by being empty (GA has flights on this route).
    append(
        &mut conn,
        q.search_id,
        EventKind::Processing { results: vec![] },
    )
    .await;
    append(
        &mut conn,
        q.search_id,
        EventKind::Result {
            supplier: "GA".into(),
            results: vec![],
        },
    )
    .await;

    let provider = Provider::start(&redis, &[("CLAIM_IDLE_MS", "200")]).await;
    let seen = finished(&conn, q.search_id).await;
    let processing = seen
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Processing { .. }))
        .count();
    assert_eq!(processing, 1, "{seen:?}");
    let (suppliers, offers) = answers(&seen);
    assert_eq!(suppliers.len(), 6, "{suppliers:?}");
    assert_eq!(suppliers[0], "GA");
    assert_eq!(
        seen.last().unwrap().kind,
        EventKind::Completed {
            total_results: offers
        }
    );
    assert_eq!(pending(&mut conn).await, 0);

    let (_, metrics) = provider.get("/metrics").await;
    assert!(
        metrics.contains("flight_search_provider_claims_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"flight_search_provider_supplier_call_duration_seconds_count{supplier="GA"} 0"#
        ),
        "GA was asked again:\n{metrics}"
    );
    assert!(metrics.contains(
        r#"flight_search_provider_supplier_call_duration_seconds_count{supplier="JT"} 1"#
    ));
    provider.stop().await;
}

#[tokio::test]
async fn poison_and_exhausted_entries_are_dead_lettered_with_a_failed_event() {
    let redis = RedisServer::start().await;
    let mut conn = redis.connection().await;
    let exhausted = queued_search("SUB", "UPG");
    let exhausted_entry = enqueue_search(&mut conn, &exhausted).await;
    take_and_die(&mut conn, "crashed-1", 1).await;
    let _: redis::Value = redis::cmd("XCLAIM")
        .arg(REQUESTS_STREAM)
        .arg("provider-service")
        .arg("crashed-2")
        .arg(0)
        .arg(&exhausted_entry)
        .query_async(&mut conn)
        .await
        .unwrap();
    let poison_id = Uuid::new_v4();
    let poison_entry = enqueue(
        &mut conn,
        &[
            ("search_id", &poison_id.to_string()),
            ("passengers", "a crowd"),
        ],
    )
    .await;
    let nameless_entry = enqueue(&mut conn, &[("garbage", "yes")]).await;

    let provider =
        Provider::start(&redis, &[("MAX_DELIVERIES", "2"), ("CLAIM_IDLE_MS", "200")]).await;

    let poisoned = finished(&conn, poison_id).await;
    assert_eq!(poisoned.len(), 1);
    let EventKind::Failed { error } = &poisoned[0].kind else {
        panic!("{poisoned:?}")
    };
    assert_eq!(error.code, "invalid_request");

    let retired = finished(&conn, exhausted.search_id).await;
    assert_eq!(retired.len(), 1);
    let EventKind::Failed { error } = &retired[0].kind else {
        panic!("{retired:?}")
    };
    assert_eq!(error.code, "dead_lettered");
    assert!(error.message.contains("2 times"), "{}", error.message);

    nothing_pending(&conn).await;
    let dead: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
        .arg(DEAD_LETTER_STREAM)
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    let by_entry: HashMap<&str, &HashMap<String, String>> = dead
        .iter()
        .map(|(_, f)| (f["entry_id"].as_str(), f))
        .collect();
    assert_eq!(dead.len(), 3, "{dead:?}");
    assert_eq!(by_entry[poison_entry.as_str()]["reason"], "invalid_request");
    assert_eq!(
        by_entry[poison_entry.as_str()]["orig.passengers"],
        "a crowd"
    );
    assert_eq!(by_entry[nameless_entry.as_str()]["orig.garbage"], "yes");
    assert_eq!(
        by_entry[exhausted_entry.as_str()]["reason"],
        "max_deliveries_exceeded"
    );
    assert_eq!(by_entry[exhausted_entry.as_str()]["deliveries"], "2");
    provider.stop().await;
}

#[tokio::test]
async fn becomes_ready_and_leaves_unfinished_work_pending_after_the_grace_period() {
    let redis = RedisServer::start().await;
    let mut conn = redis.connection().await;
    let provider = Provider::start(
        &redis,
        &[("MOCK_LATENCY_MS", "10000"), ("SHUTDOWN_GRACE_SECS", "1")],
    )
    .await;
    eventually("the provider to be ready", LIMIT, || async {
        (provider.get("/readyz").await.0 == 200).then_some(())
    })
    .await;
    let q = queued_search("CGK", "DPS");
    enqueue_search(&mut conn, &q).await;
    eventually("the search to start", LIMIT, || async {
        (!events(&mut conn.clone(), q.search_id).await.is_empty()).then_some(())
    })
    .await;

    let took = provider.stop().await;
    assert!(
        (Duration::from_millis(900)..Duration::from_secs(3)).contains(&took),
        "{took:?}"
    );
    assert_eq!(pending(&mut conn).await, 1, "unfinished work stays pending");
    assert_eq!(events(&mut conn, q.search_id).await.len(), 1);
    assert_eq!(consumers(&mut conn).await.len(), 1, "its consumer holds it");
}

#[tokio::test]
async fn an_entry_with_a_binary_field_name_is_dead_lettered_and_the_rest_is_processed() {
    let redis = RedisServer::start().await;
    let mut conn = redis.connection().await;
    // Claim path: a bad entry pending on a dead consumer, ahead of a good one.
    let claimed_bad = queued_search("CGK", "DPS");
    let claimed_bad_entry = enqueue_with_binary_field(&mut conn, &claimed_bad).await;
    let claimed_good = queued_search("SUB", "UPG");
    enqueue_search(&mut conn, &claimed_good).await;
    take_and_die(&mut conn, "crashed", 2).await;
    // Read path: a bad entry and a good one delivered in one batch.
    let read_bad = queued_search("CGK", "DPS");
    let read_bad_entry = enqueue_with_binary_field(&mut conn, &read_bad).await;
    let read_good = queued_search("CGK", "DPS");
    enqueue_search(&mut conn, &read_good).await;

    let provider = Provider::start(&redis, &[("CLAIM_IDLE_MS", "200")]).await;

    for good in [&read_good, &claimed_good] {
        let seen = finished(&conn, good.search_id).await;
        let (suppliers, offers) = answers(&seen);
        assert_eq!(suppliers.len(), 6, "{seen:?}");
        assert_eq!(
            seen.last().unwrap().kind,
            EventKind::Completed {
                total_results: offers
            }
        );
    }
    for bad in [&read_bad, &claimed_bad] {
        let seen = finished(&conn, bad.search_id).await;
        let [event] = seen.as_slice() else {
            panic!("{seen:?}")
        };
        let EventKind::Failed { error } = &event.kind else {
            panic!("{seen:?}")
        };
        assert_eq!(error.code, "invalid_request");
        assert!(error.message.contains("not UTF-8"), "{}", error.message);
    }
    nothing_pending(&conn).await;

    let dead: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
        .arg(DEAD_LETTER_STREAM)
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    let by_entry: HashMap<&str, &HashMap<String, String>> = dead
        .iter()
        .map(|(_, f)| (f["entry_id"].as_str(), f))
        .collect();
    assert_eq!(dead.len(), 2, "{dead:?}");
    for (entry, q) in [
        (&read_bad_entry, &read_bad),
        (&claimed_bad_entry, &claimed_bad),
    ] {
        let fields = by_entry[entry.as_str()];
        assert_eq!(fields["reason"], "invalid_request");
        assert_eq!(fields[r"orig.note\xff"], "binary name");
        assert_eq!(fields["orig.search_id"], q.search_id.to_string());
    }
    let (status, _) = provider.get("/readyz").await;
    assert_eq!(status, 200, "the reader never dropped its connection");
    let (_, metrics) = provider.get("/metrics").await;
    // The series exists from start; it must still be at zero.
    assert!(
        metrics
            .lines()
            .any(|line| line == r#"flight_search_provider_redis_errors_total{op="read"} 0"#),
        "{metrics}"
    );
    provider.stop().await;
}

#[tokio::test]
async fn the_sweep_takes_nothing_more_once_stopped() {
    let redis = RedisServer::start().await;
    let mut conn = redis.connection().await;
    // Far more exhausted entries than one sweep looks at, so the stop lands
    // in the middle of a sweep.
    let mut add = redis::pipe();
    for _ in 0..1000 {
        add.cmd("XADD")
            .arg(REQUESTS_STREAM)
            .arg("*")
            .arg("search_id")
            .arg(Uuid::new_v4().to_string())
            .ignore();
    }
    add.query_async::<()>(&mut conn).await.unwrap();
    take_and_die(&mut conn, "crashed", 1000).await;
    let provider =
        Provider::start(&redis, &[("CLAIM_IDLE_MS", "100"), ("MAX_DELIVERIES", "1")]).await;
    let dead_letters = |mut conn: MultiplexedConnection| async move {
        redis::cmd("XLEN")
            .arg(DEAD_LETTER_STREAM)
            .query_async::<u64>(&mut conn)
            .await
            .unwrap()
    };
    let at_stop = eventually("some entries to be retired", LIMIT, || async {
        Some(dead_letters(conn.clone()).await).filter(|&n| n >= 10)
    })
    .await;
    provider.stop().await;
    let after = dead_letters(conn.clone()).await;
    assert!(
        after - at_stop <= 5,
        "retired {at_stop} before the stop, {after} after it"
    );
    // Once the provider's connections are gone nothing of it can retire
    // another entry: the count must not have moved until then.
    eventually("the provider's connections to close", LIMIT, || async {
        (client_count(&mut conn.clone()).await == 1).then_some(())
    })
    .await;
    assert_eq!(dead_letters(conn).await, after);
}

/// Connections Redis has open, this test's own included.
async fn client_count(conn: &mut MultiplexedConnection) -> usize {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(conn)
        .await
        .unwrap();
    list.lines().count()
}

/// An adapter with a bug: building its request panics, as a parser might on
/// an answer it did not expect.
struct Panicking;

impl Adapter for Panicking {
    fn request(
        &self,
        _base: &str,
        search: &SearchRequest,
    ) -> hyper::Request<http_body_util::Full<bytes::Bytes>> {
        panic!("adapter bug for {}", search.from)
    }

    fn flights(&self, _: &SearchRequest, _: &[u8]) -> Result<Vec<contract::Flight>, BadAnswer> {
        unreachable!("the request already panicked")
    }
}

/// GA's API at `base_url`, in the style `SUPPLIER_URLS` gives it, with the
/// provider's default supplier settings.
fn ga_settings(config: &Config, base_url: String) -> SupplierSettings {
    let defaults = Defaults {
        timeout: Duration::from_secs(3),
        retries: 2,
        max_connections: 4,
        breaker_failures: 5,
        breaker_open: Duration::from_secs(10),
        cache_ttl: Duration::ZERO,
        deadline: config.suppliers.deadline,
    };
    defaults.settings("GA", Style::Flights, base_url)
}

/// The simulated airlines `config` gives, without GA.
fn simulated_but_ga(config: &Config, metrics: &Arc<Metrics>) -> Vec<Supplier> {
    supplier::from_config(config, metrics)
        .into_iter()
        .filter(|s| s.code() != "GA")
        .collect()
}

/// GA over HTTP through [`Panicking`], every other airline simulated.
fn panicking_ga(config: &Config, metrics: &Arc<Metrics>) -> Vec<Supplier> {
    let mut suppliers = simulated_but_ga(config, metrics);
    let settings = ga_settings(config, "http://127.0.0.1:1/ga".to_owned());
    suppliers.push(Supplier::Http(Box::new(HttpSupplier::with_adapter(
        &settings,
        Box::new(Panicking),
        Arc::clone(metrics),
        config.suppliers.answer_bounds.max_offers,
    ))));
    suppliers
}

/// The `suppliers` report of the search's terminal event.
async fn report(conn: &mut MultiplexedConnection, id: Uuid) -> SupplierOutcomes {
    let last: Vec<(String, HashMap<String, Vec<u8>>)> = redis::cmd("XREVRANGE")
        .arg(results_key(id))
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(conn)
        .await
        .unwrap();
    contract::supplier_report(&last[0].1["data"])
}

#[tokio::test]
async fn a_panicking_supplier_ends_as_error_and_the_rest_still_answer() {
    let redis = RedisServer::start().await;
    let mut conn = redis.connection().await;
    // One slot: were a panic to keep it, the second search would never start.
    let provider = Provider::serving(&redis, &[("PROVIDER_CONCURRENCY", "1")], panicking_ga).await;
    for route in [("CGK", "DPS"), ("SUB", "UPG"), ("CGK", "KNO")] {
        let q = queued_search(route.0, route.1);
        enqueue_search(&mut conn, &q).await;
        let seen = finished(&conn, q.search_id).await;
        let (suppliers, offers) = answers(&seen);
        assert_eq!(suppliers.len(), 5, "{suppliers:?}");
        assert!(!suppliers.contains(&"GA".to_owned()));
        assert_eq!(
            seen.last().unwrap().kind,
            EventKind::Completed {
                total_results: offers
            }
        );
        let outcomes = report(&mut conn, q.search_id).await;
        assert_eq!(outcomes.get("GA"), Some(&SupplierOutcome::Error));
        assert_eq!(outcomes.get("JT"), Some(&SupplierOutcome::Answered));
    }
    nothing_pending(&conn).await;
    let (_, metrics) = provider.get("/metrics").await;
    for line in [
        r#"flight_search_provider_supplier_panics_total{supplier="GA"} 3"#,
        "flight_search_provider_searches_completed_total 3",
        "flight_search_provider_search_panics_total 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
    let (status, _) = provider.get("/readyz").await;
    assert_eq!(status, 200);
    provider.stop().await;
}

#[tokio::test]
async fn answers_are_cut_to_the_bounds_and_reported_truncated() {
    let redis = RedisServer::start().await;
    let mut conn = redis.connection().await;
    let provider = Provider::start(
        &redis,
        &[
            ("MAX_OFFERS_PER_ANSWER", "2"),
            ("MAX_RESULT_EVENT_BYTES", "4096"),
            ("MAX_SEARCH_EVENT_BYTES", "4096"),
        ],
    )
    .await;
    let q = queued_search("CGK", "DPS");
    enqueue_search(&mut conn, &q).await;
    let seen = finished(&conn, q.search_id).await;
    let (suppliers, offers) = answers(&seen);
    assert_eq!(suppliers.len(), 6, "every supplier still has its event");
    assert_eq!(
        seen.last().unwrap().kind,
        EventKind::Completed {
            total_results: offers
        }
    );
    let result_bytes: usize = seen
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Result { .. }))
        .map(|e| e.to_json().len())
        .sum();
    assert!(result_bytes <= 4096, "{result_bytes}");
    for event in &seen {
        if let EventKind::Result { results, .. } = &event.kind {
            assert!(results.len() <= 2, "{event:?}");
        }
    }
    // An airline is `truncated` exactly when it kept fewer offers than its
    // timetable has.
    let outcomes = report(&mut conn, q.search_id).await;
    let mut by_count = 0;
    for carrier in timetable::catalogue::CARRIERS {
        let offered = timetable::schedule::flights(carrier, &q.request).len();
        let kept = seen
            .iter()
            .find_map(|e| match &e.kind {
                EventKind::Result { supplier, results } if supplier == carrier.code => {
                    Some(results.len())
                }
                _ => None,
            })
            .unwrap();
        let expected = if kept < offered {
            SupplierOutcome::Truncated
        } else {
            SupplierOutcome::Answered
        };
        assert_eq!(
            outcomes[carrier.code], expected,
            "{}: {kept} of {offered}",
            carrier.code
        );
        by_count += usize::from(offered > 2);
    }
    assert!(
        by_count >= 2,
        "the route has airlines with more than two flights"
    );
    let (_, metrics) = provider.get("/metrics").await;
    let cut_by_count = metrics
        .lines()
        .filter(|l| {
            l.starts_with("flight_search_provider_supplier_offers_truncated_total{")
                && l.contains(r#"limit="offers""#)
                && !l.ends_with(" 0")
        })
        .count();
    assert!(cut_by_count >= 1, "{metrics}");
    assert!(
        metrics.contains(r#"limit="search_bytes"} "#),
        "some answers were cut by the search's budget"
    );
    provider.stop().await;
}

/// An HTTP endpoint that answers every request with `429` and a
/// `Retry-After` of `u64::MAX` seconds, as the adversarial probe did.
async fn hostile_rate_limiter() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = [0_u8; 4096];
                while let Ok(n) = socket.read(&mut request).await {
                    if n == 0 {
                        return;
                    }
                    let answer = "HTTP/1.1 429 Too Many Requests\r\n\
                                  Retry-After: 18446744073709551615\r\n\
                                  Content-Length: 0\r\n\r\n";
                    if socket.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_retry_after_of_u64_max_is_rate_limited_at_once() {
    let redis = RedisServer::start().await;
    let mut conn = redis.connection().await;
    let limiter = hostile_rate_limiter().await;
    let provider = Provider::serving(&redis, &[], move |config, metrics| {
        let mut suppliers = simulated_but_ga(config, metrics);
        let settings = ga_settings(config, format!("http://{limiter}/ga"));
        suppliers.push(Supplier::Http(Box::new(HttpSupplier::new(
            &settings,
            Arc::clone(metrics),
            config.suppliers.answer_bounds.max_offers,
        ))));
        suppliers
    })
    .await;
    let q = queued_search("CGK", "DPS");
    let started = Instant::now();
    enqueue_search(&mut conn, &q).await;
    let seen = finished(&conn, q.search_id).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "no wait: {:?}",
        started.elapsed()
    );
    assert!(matches!(
        seen.last().unwrap().kind,
        EventKind::Completed { .. }
    ));
    let outcomes = report(&mut conn, q.search_id).await;
    assert_eq!(outcomes["GA"], SupplierOutcome::RateLimited);
    let (_, metrics) = provider.get("/metrics").await;
    assert!(metrics.contains("flight_search_provider_supplier_panics_total{supplier=\"GA\"} 0"));
    provider.stop().await;
}
