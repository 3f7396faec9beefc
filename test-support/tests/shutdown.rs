//! A clean stop: on SIGTERM main-service ends its open streams with their
//! final chunk within the grace period. Always runs on a local stack.

use std::time::Duration;

use test_support::search_body;
use test_support::sse::Item;
use test_support::stack::Stack;

const LIMIT: Duration = Duration::from_secs(30);

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
