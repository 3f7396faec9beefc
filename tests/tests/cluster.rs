//! Behaviour particular to a Redis Cluster: per-search sharded nudges, held
//! exactly while a search has clients on an instance. Always runs on a local
//! cluster.

use std::time::{Duration, Instant};

use contract::keys::events_channel;
use contract::{EventKind, SearchEvent};
use service_runtime::streams::{self, Appended, Nudges};
use tests::search_body;
use tests::sse::Item;
use tests::stack::Stack;

const LIMIT: Duration = Duration::from_secs(30);

/// Subscribers of `channel` on the node listening on `port`.
async fn shard_subscribers(port: u16, channel: &str) -> i64 {
    let mut node = redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("connect to the channel's node");
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
    tests::eventually("main-service to subscribe", LIMIT, || async {
        (shard_subscribers(owner, &channel).await == 1).then_some(())
    })
    .await;

    // Each append reaches the client at once: far sooner than the sweep that
    // re-reads feeds as a net under pub/sub.
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
    drop(stream);
    tests::eventually("main-service to unsubscribe", LIMIT, || async {
        (shard_subscribers(owner, &channel).await == 0).then_some(())
    })
    .await;
}
