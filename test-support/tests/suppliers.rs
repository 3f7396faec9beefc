//! provider-service against the real `mock-suppliers` process over HTTP: every
//! failure mode a partner API has (slow, 5xx, 429 with Retry-After, hanging,
//! malformed JSON, answers of 4 MiB, refusing connections), the circuit breaker opening and
//! closing, a provider killed mid-search, and the answer cache. In each the
//! search ends on time, every offer reaches the client once, and the terminal
//! event says how each supplier's part ended.

use std::time::{Duration, Instant};

use test_support::mock_suppliers::MockSuppliers;
use test_support::sse::{Event, assert_exactly_once};
use test_support::stack::{Stack, StackBuilder, follow};
use test_support::supplier_outcomes::{offers_of, outcome};
use test_support::{eventually, free_port, search_body};

const LIMIT: Duration = Duration::from_secs(60);
const ALL: &[&str] = &["GA", "JT", "QZ", "ID", "QG", "SJ"];

/// A local stack whose provider calls `codes` on `mock`, with the cache off
/// unless `env` turns it on.
fn builder(mock: &MockSuppliers, codes: &[&str], env: &[(&str, &str)]) -> StackBuilder {
    Stack::builder()
        .local_only()
        .provider_env("SUPPLIER_URLS", &mock.urls(codes))
        .provider_env("SUPPLIER_CACHE_TTL_SECS", "0")
        .provider_envs(env)
}

/// Runs one search to its terminal event; returns the events and how long
/// that took from the POST.
async fn search(stack: &Stack, body: &str) -> (Vec<Event>, Duration) {
    let started = Instant::now();
    let events = stack.search(body).await;
    (events, started.elapsed())
}

#[tokio::test]
async fn http_suppliers_answer_with_the_timetables_over_pooled_connections() {
    let mock = MockSuppliers::start(&[("MOCK_LATENCY_MS", "0-60")]).await;
    let stack = builder(&mock, ALL, &[]).start().await;
    let (events, _) = search(&stack, &search_body("CGK", "DPS", 9, 2)).await;
    assert_eq!(events.last().unwrap().status(), "completed");
    let request = contract::SearchRequest {
        from: contract::Iata::parse("CGK").unwrap(),
        to: contract::Iata::parse("DPS").unwrap(),
        date: contract::request::parse_date(&test_support::date_in(9)).unwrap(),
        passengers: 2,
    };
    for carrier in timetable::catalogue::CARRIERS {
        assert_eq!(outcome(&events, carrier.code), "answered");
        let expected =
            serde_json::to_value(timetable::schedule::flights(carrier, &request)).unwrap();
        assert_eq!(
            offers_of(&events, carrier.code),
            Some(expected),
            "{} over HTTP differs from the timetable",
            carrier.code
        );
    }

    let after_first = mock.connections().await;
    assert!(
        after_first <= ALL.len() as u64,
        "{after_first} connections for one search"
    );
    for day in 10..15 {
        search(&stack, &search_body("CGK", "DPS", day, 1)).await;
    }
    let added = mock.connections().await - after_first;
    assert!(
        added <= 3,
        "{added} new connections for 5 more searches: the pool is not reused"
    );
}

#[tokio::test]
async fn a_supplier_slower_than_its_timeout_is_reported_and_the_search_ends_on_time() {
    let mock = MockSuppliers::start(&[("MOCK_LATENCY_MS", "0-50")]).await;
    mock.set("GA", r#"{"latency_ms":10000}"#).await;
    let stack = builder(&mock, &["GA", "JT"], &[("SUPPLIER_TIMEOUT_MS", "700")])
        .start()
        .await;
    let (events, took) = search(&stack, &search_body("CGK", "DPS", 9, 1)).await;
    assert_eq!(outcome(&events, "GA"), "timeout");
    assert_eq!(outcome(&events, "JT"), "answered");
    assert_eq!(events.last().unwrap().status(), "completed");
    assert!(took < Duration::from_secs(5), "the search took {took:?}");
    assert_eq!(mock.calls("GA").await, 1, "a timeout is not retried");
}

#[tokio::test]
async fn a_5xx_is_retried_once_and_its_offers_appear_once() {
    let mock = MockSuppliers::start(&[("MOCK_LATENCY_MS", "0-50")]).await;
    mock.set("GA", r#"{"fault":"server_error","fault_calls":1}"#)
        .await;
    let stack = builder(&mock, &["GA", "JT"], &[]).start().await;
    let (events, _) = search(&stack, &search_body("CGK", "DPS", 9, 1)).await;
    assert_eq!(outcome(&events, "GA"), "answered");
    assert!(offers_of(&events, "GA").is_some());
    assert_eq!(mock.calls("GA").await, 2, "one 503, one retry");
    assert_eq!(mock.calls("JT").await, 1);
}

#[tokio::test]
async fn a_429_is_retried_after_its_retry_after_unless_the_wait_is_too_long() {
    let mock = MockSuppliers::start(&[("MOCK_LATENCY_MS", "0-50")]).await;
    mock.set(
        "JT",
        r#"{"fault":"rate_limited","fault_calls":1,"retry_after_secs":1}"#,
    )
    .await;
    mock.set("QZ", r#"{"fault":"rate_limited","retry_after_secs":60}"#)
        .await;
    // The largest number a Retry-After can spell: no arithmetic on it may overflow.
    mock.set(
        "GA",
        r#"{"fault":"rate_limited","retry_after_secs":18446744073709551615}"#,
    )
    .await;
    let stack = builder(
        &mock,
        &["JT", "QZ", "GA"],
        &[("SUPPLIER_DEADLINE_MS", "8000")],
    )
    .start()
    .await;
    let (events, took) = search(&stack, &search_body("CGK", "DPS", 9, 1)).await;
    assert_eq!(outcome(&events, "JT"), "answered");
    assert_eq!(outcome(&events, "QZ"), "rate_limited");
    assert_eq!(outcome(&events, "GA"), "rate_limited");
    assert_eq!(mock.calls("JT").await, 2);
    assert_eq!(mock.calls("GA").await, 1);
    assert_eq!(
        mock.calls("QZ").await,
        1,
        "a 60 s wait does not fit an 8 s deadline"
    );
    assert!(
        took >= Duration::from_secs(1),
        "Retry-After not honoured: {took:?}"
    );
    assert!(took < Duration::from_secs(8), "the search took {took:?}");
}

#[tokio::test]
async fn a_hanging_supplier_times_out_and_the_search_ends_on_time() {
    let mock = MockSuppliers::start(&[("MOCK_LATENCY_MS", "0-50")]).await;
    mock.set("ID", r#"{"fault":"hang"}"#).await;
    let stack = builder(&mock, &["ID", "QG"], &[("SUPPLIER_TIMEOUT_MS", "700")])
        .start()
        .await;
    let (events, took) = search(&stack, &search_body("CGK", "DPS", 9, 1)).await;
    assert_eq!(outcome(&events, "ID"), "timeout");
    assert_eq!(outcome(&events, "QG"), "answered");
    assert!(took < Duration::from_secs(5), "the search took {took:?}");
}

#[tokio::test]
async fn malformed_json_is_an_error_and_not_retried() {
    let mock = MockSuppliers::start(&[("MOCK_LATENCY_MS", "0-50")]).await;
    mock.set("QG", r#"{"fault":"malformed"}"#).await;
    mock.set("SJ", r#"{"fault":"malformed"}"#).await;
    let stack = builder(&mock, &["QG", "SJ", "GA"], &[]).start().await;
    let (events, _) = search(&stack, &search_body("CGK", "DPS", 9, 1)).await;
    assert_eq!(outcome(&events, "QG"), "error");
    assert_eq!(outcome(&events, "SJ"), "error");
    assert_eq!(outcome(&events, "GA"), "answered");
    assert_eq!((mock.calls("QG").await, mock.calls("SJ").await), (1, 1));
}

#[tokio::test]
async fn an_oversized_answer_is_cut_to_the_bounds_and_reported_truncated() {
    let mock = MockSuppliers::start(&[("MOCK_LATENCY_MS", "0")]).await;
    mock.set("JT", r#"{"fault":"oversized"}"#).await;
    mock.set("GA", r#"{"fault":"oversized"}"#).await;
    let stack = builder(
        &mock,
        &["JT", "GA", "QZ"],
        &[
            ("MAX_OFFERS_PER_ANSWER", "100"),
            // Reading 4 MiB takes a debug build on a busy CI host seconds.
            ("SUPPLIER_TIMEOUT_MS", "30000"),
            ("SUPPLIER_DEADLINE_MS", "30000"),
        ],
    )
    .start()
    .await;
    let (events, _) = search(&stack, &search_body("CGK", "DPS", 9, 1)).await;
    for (supplier, outcome_now) in [("JT", "truncated"), ("GA", "truncated"), ("QZ", "answered")] {
        assert_eq!(outcome(&events, supplier), outcome_now, "{supplier}");
    }
    for supplier in ["JT", "GA"] {
        let offers = offers_of(&events, supplier).expect("a result event");
        assert_eq!(offers.as_array().map(Vec::len), Some(100), "{supplier}");
    }
    let largest = events.iter().map(|e| e.raw.len()).max().unwrap_or(0);
    assert!(largest <= 256 * 1024, "an event of {largest} bytes");
}

#[tokio::test]
async fn a_supplier_refusing_connections_is_an_error_and_every_failure_means_failed() {
    let nobody = format!("SJ=http://127.0.0.1:{}/sj", free_port());
    let stack = Stack::builder()
        .local_only()
        .provider_env("SUPPLIER_URLS", &nobody)
        .provider_env("SUPPLIER_CACHE_TTL_SECS", "0")
        .start()
        .await;
    let (events, took) = search(&stack, &search_body("CGK", "DPS", 9, 1)).await;
    let last = events.last().unwrap();
    assert_eq!(last.status(), "failed", "{}", last.raw);
    assert_eq!(last.data["error"]["code"], "suppliers_unavailable");
    assert_eq!(outcome(&events, "SJ"), "error");
    assert!(took < Duration::from_secs(5), "the search took {took:?}");
}

#[tokio::test]
async fn the_circuit_opens_after_repeated_failures_and_closes_after_recovery() {
    let mock = MockSuppliers::start(&[("MOCK_LATENCY_MS", "0-50")]).await;
    mock.set("GA", r#"{"fault":"server_error"}"#).await;
    let env = [
        ("SUPPLIER_RETRIES", "0"),
        ("SUPPLIER_BREAKER_FAILURES", "2"),
        ("SUPPLIER_BREAKER_OPEN_MS", "1500"),
    ];
    let stack = builder(&mock, &["GA", "JT"], &env).start().await;
    let body = search_body("CGK", "DPS", 9, 1);
    for _ in 0..2 {
        let (events, _) = search(&stack, &body).await;
        assert_eq!(outcome(&events, "GA"), "error");
    }
    let (events, _) = search(&stack, &body).await;
    assert_eq!(outcome(&events, "GA"), "circuit_open");
    assert_eq!(outcome(&events, "JT"), "answered");
    assert_eq!(mock.calls("GA").await, 2, "an open circuit makes no call");

    mock.set("GA", r#"{"fault":"none"}"#).await;
    eventually(
        "GA answering again after the open period",
        LIMIT,
        || async {
            let (events, _) = search(&stack, &body).await;
            (outcome(&events, "GA") == "answered").then_some(())
        },
    )
    .await;
    let (events, _) = search(&stack, &body).await;
    assert_eq!(outcome(&events, "GA"), "answered", "the circuit closed");
}

#[tokio::test]
async fn a_provider_killed_mid_search_over_http_still_yields_each_offer_once() {
    let mock = MockSuppliers::start(&[("MOCK_LATENCY_MS", "300-4000")]).await;
    let urls = mock.urls(ALL);
    let env = [
        ("SUPPLIER_URLS", urls.as_str()),
        ("SUPPLIER_CACHE_TTL_SECS", "0"),
        ("SUPPLIER_TIMEOUT_MS", "8000"),
        ("CLAIM_IDLE_MS", "1000"),
    ];
    let mut stack = Stack::builder().local_only().providers(0).start().await;
    stack.local().add_provider(&env).await;
    let id = stack.submit(&search_body("CGK", "DPS", 9, 2)).await;
    let url = stack.base_url().to_owned();
    let client = tokio::spawn(async move { follow(&url, id, LIMIT).await });

    eventually("a first supplier result", LIMIT, || async {
        stack
            .stored_events(id)
            .await
            .iter()
            .any(|(_, data)| data.contains(r#""status":"result""#))
            .then_some(())
    })
    .await;
    let before = stack.stored_events(id).await;
    assert!(
        !before.iter().any(|(_, data)| data.contains("completed")),
        "killed too late: {before:?}"
    );
    stack.local().providers[0].kill();
    stack.local().add_provider(&env).await;

    let events = client.await.unwrap();
    assert_exactly_once(id, &events);
    assert_eq!(events.last().unwrap().status(), "completed", "{events:?}");
    for code in ALL {
        assert_eq!(outcome(&events, code), "answered");
    }
}

#[tokio::test]
async fn the_answer_cache_spares_the_supplier_within_its_ttl_and_not_after() {
    let mock = MockSuppliers::start(&[("MOCK_LATENCY_MS", "0-50")]).await;
    mock.set("GA", r#"{"latency_ms":400}"#).await;
    let mut stack = builder(&mock, &["GA", "JT"], &[("SUPPLIER_CACHE_TTL_SECS", "2")])
        .start()
        .await;
    let body = search_body("CGK", "DPS", 9, 1);
    let (first, _) = search(&stack, &body).await;
    let (second, _) = search(&stack, &body).await;
    assert_eq!(
        mock.calls("GA").await,
        1,
        "the second search was answered from the cache"
    );
    assert_eq!(offers_of(&first, "GA"), offers_of(&second, "GA"));
    assert_eq!(outcome(&second, "GA"), "answered");
    let metrics = test_support::http::get(&format!(
        "{}/metrics",
        stack.local().providers[0].base_url()
    ))
    .await
    .unwrap();
    let text = String::from_utf8(metrics.body.to_vec()).unwrap();
    let hits = test_support::http::metric(
        &text,
        r#"flight_search_provider_supplier_cache_hits_total{supplier="GA"}"#,
    );
    assert_eq!(hits, Some(1.0), "{text}");

    let key = format!(
        "flight.supplier.answer:GA:CGK:DPS:{}:1",
        test_support::date_in(9)
    );
    assert!(stack.key_exists(&key).await);
    eventually("the cached answer to expire", LIMIT, || async {
        (!stack.key_exists(&key).await).then_some(())
    })
    .await;
    search(&stack, &body).await;
    assert_eq!(mock.calls("GA").await, 2, "asked again after the TTL");

    // Identical searches at once share one call: those arriving while it is in
    // flight wait for it, later ones find its answer cached.
    let other = search_body("CGK", "SUB", 9, 1);
    let ids = futures_util::future::join_all((0..3).map(|_| stack.submit(&other))).await;
    for id in ids {
        let events = stack.events(id).await;
        assert_exactly_once(id, &events);
        assert_eq!(outcome(&events, "GA"), "answered");
    }
    assert_eq!(
        mock.calls("GA").await,
        3,
        "one call for three identical searches"
    );
}

#[tokio::test]
async fn eur_and_kwd_fares_arrive_exact_in_both_wire_formats() {
    let mock = MockSuppliers::start(&[("MOCK_LATENCY_MS", "0-20")]).await;
    mock.set("GA", r#"{"currency":"EUR"}"#).await;
    mock.set("JT", r#"{"currency":"KWD"}"#).await;
    let stack = builder(&mock, &["GA", "JT"], &[]).start().await;
    // A day on which both airlines fly CGK-DPS, so both answers carry fares.
    let (day, request) = (7..30)
        .map(|day| {
            let request = contract::SearchRequest {
                from: contract::Iata::parse("CGK").unwrap(),
                to: contract::Iata::parse("DPS").unwrap(),
                date: contract::request::parse_date(&test_support::date_in(day)).unwrap(),
                passengers: 3,
            };
            (day, request)
        })
        .find(|(_, request)| {
            timetable::catalogue::CARRIERS[..2]
                .iter()
                .all(|c| !timetable::schedule::flights(c, request).is_empty())
        })
        .expect("GA and JT both fly CGK-DPS within three weeks");
    let (events, _) = search(&stack, &search_body("CGK", "DPS", day, 3)).await;
    // The mock's fixed rates: 17 000 IDR per euro, 52 000 per dinar, rounded down.
    for (index, code, currency, decimals, rupiah_per_unit) in
        [(0, "GA", "EUR", 2, 17_000), (1, "JT", "KWD", 3, 52_000)]
    {
        let carrier = &timetable::catalogue::CARRIERS[index];
        assert_eq!(carrier.code, code);
        let rupiah = timetable::schedule::flights(carrier, &request);
        let offers = offers_of(&events, code).expect("an answer");
        let offers = offers.as_array().unwrap();
        assert_eq!(offers.len(), rupiah.len(), "{code}");
        assert!(!offers.is_empty(), "{code} flies CGK-DPS");
        for (offer, idr) in offers.iter().zip(&rupiah) {
            let expected = idr.price.amount * 10u64.pow(decimals) / rupiah_per_unit;
            assert_eq!(
                offer["price"],
                serde_json::json!({"amount": expected, "total": expected * 3,
                                   "currency": currency, "decimals": decimals}),
                "{code}: {offer}"
            );
        }
    }
}
