//! Fault tests on real processes: providers killed mid-search, Redis restarted
//! under load, main-service restarted under open streams, poison input, searches
//! handed out too often, several instances of each service sharing one Redis,
//! and on a Redis Cluster a master killed mid-run.
//! Every test is bounded in time and proves that nothing is lost or doubled as
//! clients see it.

use std::collections::HashSet;
use std::time::Duration;

use contract::keys::{DEAD_LETTER_STREAM, REQUESTS_STREAM, results_key, state_key};
use test_support::documents::{self, Schema};
use test_support::sse::{Event, assert_exactly_once};
use test_support::stack::{Stack, follow, submit_to};
use test_support::{eventually, search_body};
use uuid::Uuid;

const LIMIT: Duration = Duration::from_secs(60);

/// Waits for every client and asserts that each search completed, exactly
/// once.
async fn all_completed_once(clients: Vec<tokio::task::JoinHandle<(Uuid, Vec<Event>)>>) {
    for client in clients {
        let (id, events) = client.await.unwrap();
        assert_eq!(
            events.last().unwrap().status(),
            "completed",
            "{id}: {events:?}"
        );
        assert_exactly_once(id, &events);
    }
}

async fn results_so_far(stack: &Stack, id: Uuid) -> Vec<String> {
    stack
        .stored_events(id)
        .await
        .into_iter()
        .map(|(_, data)| data)
        .collect()
}

async fn pending_count(stack: &Stack) -> i64 {
    let mut redis = stack.redis().await;
    let summary: redis::Value = redis::cmd("XPENDING")
        .arg(REQUESTS_STREAM)
        .arg("provider-service")
        .query_async(&mut redis)
        .await
        .unwrap();
    match summary {
        redis::Value::Array(items) => redis::from_redis_value(items[0].clone()).unwrap(),
        other => panic!("XPENDING: {other:?}"),
    }
}

#[tokio::test]
async fn a_provider_killed_mid_search_is_replaced_and_the_client_sees_each_offer_once() {
    let mut stack = Stack::builder().local_only().providers(0).start().await;
    let slow = [("MOCK_LATENCY_MS", "300-6000"), ("CLAIM_IDLE_MS", "1000")];
    stack.local().add_provider(&slow).await;
    let id = stack.submit(&search_body("CGK", "DPS", 7, 2)).await;
    let url = stack.base_url().to_owned();
    let client = tokio::spawn(async move { follow(&url, id, LIMIT).await });

    eventually("a first supplier result", LIMIT, || async {
        results_so_far(&stack, id)
            .await
            .iter()
            .any(|e| e.contains(r#""status":"result""#))
            .then_some(())
    })
    .await;
    let before = results_so_far(&stack, id).await;
    assert!(
        !before.iter().any(|e| e.contains("completed")),
        "killed too late: {before:?}"
    );
    stack.local().providers[0].kill();

    stack
        .local()
        .add_provider(&[("CLAIM_IDLE_MS", "1000")])
        .await;
    let events = client.await.unwrap();
    assert_eq!(events.last().unwrap().status(), "completed", "{events:?}");
    assert_exactly_once(id, &events);
    eventually("nothing left pending", LIMIT, || async {
        (pending_count(&stack).await == 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn every_accepted_search_completes_across_a_redis_restart() {
    let mut stack = Stack::builder()
        .local_only()
        .provider_env("MOCK_LATENCY_MS", "200-1500")
        .start()
        .await;
    let mut accepted = Vec::new();
    for i in 0..20 {
        accepted.push(stack.submit(&search_body("CGK", "DPS", 1 + i, 1)).await);
    }
    let url = stack.base_url().to_owned();
    let clients: Vec<_> = accepted
        .iter()
        .map(|&id| {
            let url = url.clone();
            tokio::spawn(async move { (id, follow(&url, id, Duration::from_secs(90)).await) })
        })
        .collect();

    stack.local().redis.stop();
    tokio::time::sleep(Duration::from_secs(2)).await; // the outage itself
    stack.local().redis.restart().await;

    all_completed_once(clients).await;
    let after = stack.submit(&search_body("SUB", "DPS", 3, 1)).await;
    assert_eq!(
        stack.events(after).await.last().unwrap().status(),
        "completed"
    );
}

#[tokio::test]
async fn clients_resume_across_a_main_service_restart_with_no_gap_or_duplicate() {
    let mut stack = Stack::builder()
        .local_only()
        .provider_env("MOCK_LATENCY_MS", "500-4000")
        .start()
        .await;
    let ids: Vec<Uuid> = futures_util::future::join_all((0..10).map(|i| {
        let body = search_body("CGK", "SIN", 2 + i, 2);
        let stack = &stack;
        async move { stack.submit(&body).await }
    }))
    .await;
    let url = stack.base_url().to_owned();
    let clients: Vec<_> = ids
        .iter()
        .map(|&id| {
            let url = url.clone();
            tokio::spawn(async move { (id, follow(&url, id, LIMIT).await) })
        })
        .collect();
    eventually("streams to be open", LIMIT, || async {
        let text = stack.metrics().await;
        (test_support::http::metric(&text, "flight_search_sse_streams_open") == Some(10.0))
            .then_some(())
    })
    .await;

    let (took, clean) = stack.local().mains[0].terminate().await;
    assert!(
        clean && took < Duration::from_secs(5),
        "SIGTERM exit: clean={clean} after {took:?}"
    );
    stack.local().mains[0].spawn().await;

    all_completed_once(clients).await;
}

#[tokio::test]
async fn a_poison_entry_is_dead_lettered_once_and_acknowledged() {
    let stack = Stack::builder().local_only().start().await;
    let id = Uuid::new_v4();
    let mut redis = stack.redis().await;
    let entry: String = redis::cmd("XADD")
        .arg(REQUESTS_STREAM)
        .arg("*")
        .arg("search_id")
        .arg(id.to_string())
        .arg("passengers")
        .arg("a crowd")
        .query_async(&mut redis)
        .await
        .unwrap();

    let dead: Vec<(String, Vec<(String, String)>)> = eventually("the dead letter", LIMIT, || {
        let mut redis = redis.clone();
        async move {
            let dead: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
                .arg(DEAD_LETTER_STREAM)
                .arg("-")
                .arg("+")
                .query_async(&mut redis)
                .await
                .ok()?;
            (!dead.is_empty()).then_some(dead)
        }
    })
    .await;
    assert_eq!(dead.len(), 1, "dead-lettered once: {dead:?}");
    documents::assert_matches(Schema::DeadLetter, &documents::fields_object(&dead[0].1));
    assert!(
        dead[0]
            .1
            .iter()
            .any(|(k, v)| k == "entry_id" && v == &entry),
        "{dead:?}"
    );
    eventually("the entry to be acknowledged", LIMIT, || async {
        (pending_count(&stack).await == 0).then_some(())
    })
    .await;

    let events = results_so_far(&stack, id).await;
    assert_eq!(events.len(), 1, "{events:?}");
    documents::assert_matches(
        Schema::StoredEvent,
        &serde_json::from_str(&events[0]).unwrap(),
    );
    assert!(
        events[0].contains(r#""code":"invalid_request""#),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_search_handed_out_too_often_fails_with_dead_lettered() {
    let mut stack = Stack::builder().local_only().providers(0).start().await;
    let id = stack.submit(&search_body("CGK", "DPS", 5, 1)).await;
    // Two consumers take the search and die without acknowledging it.
    let mut redis = stack.redis().await;
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("provider-service")
        .arg("crashed-1")
        .arg("COUNT")
        .arg(1)
        .arg("STREAMS")
        .arg(REQUESTS_STREAM)
        .arg(">")
        .query_async(&mut redis)
        .await
        .unwrap();
    let _: redis::Value = redis::cmd("XAUTOCLAIM")
        .arg(REQUESTS_STREAM)
        .arg("provider-service")
        .arg("crashed-2")
        .arg(0)
        .arg("0-0")
        .query_async(&mut redis)
        .await
        .unwrap();

    stack
        .local()
        .add_provider(&[("MAX_DELIVERIES", "2"), ("CLAIM_IDLE_MS", "500")])
        .await;
    let events = stack.events(id).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].status(), "failed");
    assert_eq!(events[0].data["error"]["code"], "dead_lettered");
    eventually("nothing left pending", LIMIT, || async {
        (pending_count(&stack).await == 0).then_some(())
    })
    .await;
    let dead: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(DEAD_LETTER_STREAM)
        .arg("-")
        .arg("+")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    documents::assert_matches(Schema::DeadLetter, &documents::fields_object(&dead[0].1));
}

#[tokio::test]
async fn two_providers_and_two_front_doors_process_each_of_500_searches_once() {
    let stack = Stack::builder()
        .local_only()
        .providers(2)
        .mains(2)
        .start()
        .await;
    let mut stack = stack;
    let fronts: Vec<String> = stack.local().mains.iter().map(|m| m.base_url()).collect();
    let routes = [
        ("CGK", "DPS"),
        ("SUB", "CGK"),
        ("KNO", "CGK"),
        ("UPG", "DPS"),
    ];
    let runs = futures_util::future::join_all((0..500).map(|i| {
        let (post_to, read_from) = (&fronts[i % 2], &fronts[(i + 1) % 2]);
        let (from, to) = routes[i % routes.len()];
        async move {
            let body = search_body(from, to, 1 + (i % 60) as i64, 1);
            let id = submit_to(post_to, &body).await;
            let events = follow(read_from, id, Duration::from_secs(120)).await;
            assert_eq!(events.last().unwrap().status(), "completed");
            assert_exactly_once(id, &events);
        }
    }));
    tokio::time::timeout(Duration::from_secs(180), runs)
        .await
        .expect("500 searches in 3 minutes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_searches_survive_providers_killed_every_few_seconds() {
    // 3 providers of 16 slots with sub-second suppliers: long enough for several
    // kills, short enough for CI.
    let provider_env = [
        ("CLAIM_IDLE_MS", "1000"),
        ("MOCK_LATENCY_MS", "100-800"),
        ("PROVIDER_CONCURRENCY", "16"),
    ];
    let mut stack = Stack::builder().local_only().providers(0).start().await;
    for _ in 0..3 {
        stack.local().add_provider(&provider_env).await;
    }
    let url = stack.base_url().to_owned();
    let clients: Vec<_> = (0..1000)
        .map(|i| {
            let url = url.clone();
            tokio::spawn(async move {
                let body = search_body("CGK", "DPS", 1 + (i % 90), 1);
                let id = submit_to(&url, &body).await;
                (id, follow(&url, id, Duration::from_secs(240)).await)
            })
        })
        .collect();

    let mut kills = 0;
    let mut done = futures_util::future::join_all(clients);
    let results = loop {
        tokio::select! {
            results = &mut done => break results,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {
                let local = stack.local();
                let victim = kills % local.providers.len();
                local.providers[victim].kill();
                local.providers[victim].spawn().await;
                kills += 1;
            }
        }
    };
    let mut offers_duplicated = 0;
    let mut terminal = 0;
    for result in results {
        let (id, events) = result.unwrap();
        assert_exactly_once(id, &events);
        terminal += events.iter().filter(|e| e.is_terminal()).count();
        let mut seen = HashSet::new();
        for event in events.iter().filter(|e| e.status() == "result") {
            for flight in event.data["results"].as_array().unwrap() {
                if !seen.insert(
                    flight["flight_number"].to_string()
                        + flight["departure_time"].as_str().unwrap(),
                ) {
                    offers_duplicated += 1;
                }
            }
        }
    }
    println!(
        "1000 searches, {kills} provider kills: {terminal} terminal events, {offers_duplicated} duplicated offers"
    );
    assert_eq!(terminal, 1000);
    assert_eq!(offers_duplicated, 0);
    assert!(
        kills >= 3,
        "the run was too short to kill providers ({kills})"
    );
}

#[tokio::test]
async fn on_a_cluster_searches_spread_over_all_three_masters_each_within_one_slot() {
    let mut stack = Stack::builder().local_only().cluster().start().await;
    let ids: Vec<Uuid> = futures_util::future::join_all((0..30).map(|i| {
        let body = search_body("CGK", "DPS", 1 + i, 1);
        let stack = &stack;
        async move { stack.submit(&body).await }
    }))
    .await;
    for &id in &ids {
        assert_exactly_once(id, &stack.events(id).await);
    }
    let cluster = stack.local().redis.cluster();
    let mut masters = HashSet::new();
    for &id in &ids {
        let state = state_key(id);
        let node = cluster.master_of(&state).await;
        assert_eq!(
            node,
            cluster.master_of(&results_key(id)).await,
            "{id}: the state hash shares the result stream's slot"
        );
        masters.insert(node);
    }
    assert_eq!(
        masters.len(),
        test_support::redis_cluster::MASTERS,
        "30 searches on {masters:?}"
    );
}

#[tokio::test]
async fn on_a_cluster_a_master_killed_mid_run_is_replaced_and_every_search_completes_once() {
    let mut stack = Stack::builder()
        .local_only()
        .cluster()
        .providers(2)
        .provider_env("MOCK_LATENCY_MS", "300-3000")
        .provider_env("CLAIM_IDLE_MS", "2000")
        .start()
        .await;
    let url = stack.base_url().to_owned();
    let follow_all = |ids: Vec<Uuid>| -> Vec<_> {
        ids.into_iter()
            .map(|id| {
                let url = url.clone();
                tokio::spawn(async move { (id, follow(&url, id, Duration::from_secs(120)).await) })
            })
            .collect()
    };
    let before: Vec<Uuid> = futures_util::future::join_all((0..30).map(|i| {
        let body = search_body("CGK", "SIN", 1 + i, 2);
        let stack = &stack;
        async move { stack.submit(&body).await }
    }))
    .await;
    let mut clients = follow_all(before.clone());
    eventually("searches under way", LIMIT, || async {
        let mut started = 0;
        for &id in &before {
            started += usize::from(!results_so_far(&stack, id).await.is_empty());
        }
        (started >= 10).then_some(())
    })
    .await;

    // The queue's master: POSTs and every provider's reads depend on it, and
    // it holds a third of the searches in flight.
    let cluster = stack.local().redis.cluster();
    let victim = cluster.master_of(REQUESTS_STREAM).await;
    cluster.kill(victim);
    cluster.wait_healthy().await;
    assert!(
        !cluster.masters().await.contains(&victim),
        "a replica took over"
    );

    let after: Vec<Uuid> = futures_util::future::join_all((0..10).map(|i| {
        let body = search_body("SUB", "DPS", 1 + i, 1);
        let url = &url;
        async move {
            eventually("POST to be accepted after the failover", LIMIT, || async {
                let response =
                    test_support::http::post_json(&format!("{url}/api/flights/search"), &body)
                        .await
                        .ok()?;
                (response.status == 202).then(|| {
                    response.json()["data"]["search_id"]
                        .as_str()
                        .unwrap()
                        .parse::<Uuid>()
                        .unwrap()
                })
            })
            .await
        }
    }))
    .await;
    clients.extend(follow_all(after));
    all_completed_once(clients).await;
}

/// Debian's nginx in front of every main-service instance of `stack`.
async fn nginx_in_front(stack: &mut Stack) -> test_support::nginx::Nginx {
    let upstreams: Vec<String> = stack
        .local()
        .mains
        .iter()
        .map(|m| m.base_url().trim_start_matches("http://").to_owned())
        .collect();
    test_support::nginx::Nginx::start(&upstreams).await
}

#[tokio::test]
async fn behind_nginx_clients_resume_on_another_main_service_when_one_is_killed() {
    let mut stack = Stack::builder()
        .local_only()
        .mains(2)
        .provider_env("MOCK_LATENCY_MS", "500-4000")
        .start()
        .await;
    let nginx = nginx_in_front(&mut stack).await;
    let url = nginx.base_url();
    let ids: Vec<Uuid> = futures_util::future::join_all((0..10).map(|i| {
        let body = search_body("CGK", "SIN", 2 + i, 2);
        let url = &url;
        async move { submit_to(url, &body).await }
    }))
    .await;
    let clients: Vec<_> = ids
        .iter()
        .map(|&id| {
            let url = url.clone();
            tokio::spawn(async move { (id, follow(&url, id, LIMIT).await) })
        })
        .collect();
    // least_conn spreads the streams, so the victim holds some of them.
    let victim = stack.local().mains[0].base_url();
    eventually("streams open on the instance to kill", LIMIT, || async {
        let text = test_support::http::get(&format!("{victim}/metrics"))
            .await
            .ok()?
            .body;
        let open = test_support::http::metric(
            std::str::from_utf8(&text).ok()?,
            "flight_search_sse_streams_open",
        )?;
        (open >= 3.0).then_some(())
    })
    .await;

    stack.local().mains[0].kill();
    all_completed_once(clients).await;
}

#[tokio::test]
async fn behind_nginx_oversized_bodies_are_refused_without_taking_instances_out() {
    let mut stack = Stack::builder().local_only().mains(2).start().await;
    let nginx = nginx_in_front(&mut stack).await;
    let instances = stack.local().mains.len();
    let url = format!("{}/api/flights/search", nginx.base_url());
    // Far more than a socket buffer: an instance that answered 413 and
    // closed would break nginx's pipe while it still sent the body.
    let oversized = search_body("CGK", "DPS", 3, 1) + &" ".repeat(1_000_000);
    for _ in 0..instances * 2 {
        let refused = test_support::http::post_json(&url, &oversized)
            .await
            .unwrap();
        assert_eq!(refused.status, 413, "{:?}", refused.body);
        documents::assert_matches(Schema::ErrorEnvelope, &refused.json());
    }
    // Every instance is still in rotation: nothing answers nginx's 503.
    for _ in 0..instances * 2 {
        submit_to(&nginx.base_url(), &search_body("CGK", "DPS", 3, 1)).await;
    }
}
