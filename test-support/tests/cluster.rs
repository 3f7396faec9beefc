//! Behaviour particular to a Redis Cluster: per-search sharded nudges, held
//! exactly while a search has clients on an instance, and readiness checks
//! that look at every master. Always runs on a local cluster.

use std::time::{Duration, Instant};

use contract::keys::events_channel;
use contract::{EventKind, SearchEvent};
use service_runtime::streams::{self, Appended, Nudges};
use test_support::search_body;
use test_support::sse::Item;
use test_support::stack::Stack;

const LIMIT: Duration = Duration::from_secs(30);

/// A connection to the node listening on `port` alone.
async fn node(port: u16) -> redis::aio::MultiplexedConnection {
    redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("connect to the node")
}

/// XRANGE calls so far on the node listening on `port` (`INFO commandstats`).
async fn xrange_calls(port: u16) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut node(port).await)
        .await
        .expect("INFO commandstats");
    info.lines()
        .find_map(|line| {
            line.strip_prefix("cmdstat_xrange:calls=")?
                .split(',')
                .next()
        })
        .map_or(0, |calls| calls.parse().expect("a count"))
}

/// Subscribers of `channel` on the node listening on `port`.
async fn shard_subscribers(port: u16, channel: &str) -> i64 {
    let mut node = node(port).await;
    let (_, count): (String, i64) = redis::cmd("PUBSUB")
        .arg("SHARDNUMSUB")
        .arg(channel)
        .query_async(&mut node)
        .await
        .expect("PUBSUB SHARDNUMSUB");
    count
}

#[tokio::test]
async fn a_search_sharded_channel_is_held_while_it_has_clients_and_carries_each_append() {
    let mut stack = Stack::builder()
        .local_only()
        .cluster()
        .providers(0)
        .start()
        .await;
    let id = stack.submit(&search_body("CGK", "DPS", 6, 2)).await;
    let channel = events_channel(id);
    let owner = stack.local().redis.cluster().master_of(&channel).await;
    assert_eq!(shard_subscribers(owner, &channel).await, 0);

    let mut stream = stack.open(id, None).await;
    assert!(matches!(
        stream.next_item(LIMIT).await.unwrap(),
        Some(Item::Retry(_))
    ));
    test_support::eventually("main-service to subscribe", LIMIT, || async {
        (shard_subscribers(owner, &channel).await == 1).then_some(())
    })
    .await;
    let reads = test_support::eventually("the feed's first read", LIMIT, || async {
        Some(xrange_calls(owner).await).filter(|&calls| calls >= 1)
    })
    .await;

    // Each append reaches the client at once, carried by its nudge: far
    // sooner than the sweep that re-reads feeds as a net under pub/sub, and
    // without a read of the stream.
    let mut redis = stack.redis().await;
    let kinds = [
        (
            "processing",
            EventKind::Processing {
                results: Vec::new(),
            },
        ),
        (
            "result",
            EventKind::Result {
                supplier: "GA".into(),
                results: Vec::new(),
            },
        ),
        ("completed", EventKind::Completed { total_results: 0 }),
    ];
    for (status, kind) in kinds {
        let event = SearchEvent {
            search_id: id,
            kind,
        };
        let sent = Instant::now();
        let appended =
            streams::append_event(&mut redis, &event, LIMIT, None, Nudges::Sharded).await;
        assert!(matches!(appended, Ok(Appended::Written(_))), "{appended:?}");
        let received = stream.next_event(LIMIT).await.unwrap().expect("the event");
        let took = sent.elapsed();
        assert_eq!(received.status(), status);
        assert!(
            took < Duration::from_millis(900),
            "{} took {took:?}: not nudged",
            received.status()
        );
    }
    assert!(
        stream.next_event(LIMIT).await.unwrap().is_none(),
        "the response ends after the terminal event"
    );
    // At most the read the subscription's confirmation asks for, which may
    // come after the first one; a read per append would be three.
    let reads = xrange_calls(owner).await - reads;
    assert!(reads <= 1, "{reads} reads of the stream for three appends");
    drop(stream);
    test_support::eventually("main-service to unsubscribe", LIMIT, || async {
        (shard_subscribers(owner, &channel).await == 0).then_some(())
    })
    .await;
}

/// `CONFIG SET name value` on the node listening on `port` only.
async fn config_set_on(stack: &mut Stack, port: u16, name: &str, value: &str) {
    let mut node = stack.local().redis.cluster().node(port).await;
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg(name)
        .arg(value)
        .query_async(&mut node)
        .await
        .expect("CONFIG SET");
}

/// Status and body of `GET url`, once it answers.
async fn readiness(url: &str) -> Option<(u16, String)> {
    let response = test_support::http::get(url).await.ok()?;
    Some((
        response.status,
        String::from_utf8_lossy(&response.body).into_owned(),
    ))
}

/// `/readyz` of main-service and of the first provider.
fn readiness_urls(stack: &mut Stack) -> [String; 2] {
    [
        stack.url("/readyz"),
        format!("{}/readyz", stack.local().providers[0].base_url()),
    ]
}

#[tokio::test]
async fn on_a_cluster_any_master_refusing_writes_makes_both_services_unready_naming_it() {
    let mut stack = Stack::builder().local_only().cluster().start().await;
    let urls = readiness_urls(&mut stack);
    for url in &urls {
        test_support::eventually("ready", LIMIT, || async {
            (readiness(url).await?.0 == 200).then_some(())
        })
        .await;
    }
    let masters = stack.local().redis.cluster().masters().await;
    assert_eq!(masters.len(), test_support::redis_cluster::MASTERS);
    // Each master in turn, so a probe that reaches only one (a keyed command
    // goes to its key's master) is caught whichever master that is.
    for port in masters {
        config_set_on(&mut stack, port, "maxmemory", "1").await;
        for url in &urls {
            let body =
                test_support::eventually("not ready: redis refuses writes", LIMIT, || async {
                    let (status, body) = readiness(url).await?;
                    (status == 503 && body.contains("OOM")).then_some(body)
                })
                .await;
            assert!(body.contains(&format!("127.0.0.1:{port}")), "{body}");
        }
        config_set_on(&mut stack, port, "maxmemory", "0").await;
        for url in &urls {
            test_support::eventually("ready again", LIMIT, || async {
                (readiness(url).await?.0 == 200).then_some(())
            })
            .await;
        }
    }
    let id = stack.submit(&search_body("CGK", "DPS", 5, 1)).await;
    let events = stack.events(id).await;
    assert_eq!(events.last().map(|e| e.status()), Some("completed"));
}

#[tokio::test]
async fn on_a_cluster_an_evicting_policy_on_any_master_is_reported_naming_it() {
    let mut stack = Stack::builder()
        .local_only()
        .cluster()
        .providers(0)
        .start()
        .await;
    let queue = stack
        .local()
        .redis
        .cluster()
        .master_of(contract::keys::REQUESTS_STREAM)
        .await;
    let masters = stack.local().redis.cluster().masters().await;
    let port = masters
        .into_iter()
        .find(|&port| port != queue)
        .expect("a master without the queue");
    config_set_on(&mut stack, port, "maxmemory-policy", "allkeys-lru").await;
    // The policy is read at start and after each reconnect.
    stack.local().mains[0].restart().await;
    stack.local().add_provider(&[]).await;
    for url in readiness_urls(&mut stack) {
        let body = test_support::eventually("the policy reported", LIMIT, || async {
            let (status, body) = readiness(&url).await?;
            (status == 200 && body.contains("warnings")).then_some(body)
        })
        .await;
        assert!(
            body.contains(&format!("allkeys-lru on 127.0.0.1:{port}")),
            "{body}"
        );
    }
}
