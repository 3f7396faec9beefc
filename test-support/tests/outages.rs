//! Redis failing at the front door: while Redis is down main-service is not
//! ready and answers 503 with `Retry-After`, and recovers when it returns; a
//! queue write that fails after the state hash was written leaves only an
//! expiring state hash. Always runs on a local stack.

use std::time::Duration;

use test_support::documents::{self, Schema};
use test_support::http::{self, metric};
use test_support::stack::Stack;
use test_support::{eventually, search_body};

const LIMIT: Duration = Duration::from_secs(30);

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
    assert_eq!(not_ready.header("retry-after"), Some("2"));
    // The provider's readiness answer is built by the same code: same shape.
    let provider_url = format!("{}/readyz", stack.local().providers[0].base_url());
    let provider = eventually("the provider's readiness to drop", LIMIT, || async {
        let answer = http::get(&provider_url).await.ok()?;
        (answer.status == 503).then_some(answer)
    })
    .await;
    assert_eq!(provider.header("retry-after"), Some("2"));
    let provider_body = provider.json();
    assert_eq!(provider_body["status"], "not ready", "{provider_body}");
    assert!(
        provider_body["reason"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "{provider_body}"
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
