//! On a single server, the one pub/sub connection: `SUBSCRIBE
//! flight.search.events`, where the append script publishes a nudge (the
//! search id and the entries written, see [`contract::nudge`]) after every
//! call that wrote. (redis-rs offers SSUBSCRIBE only on its cluster
//! connection, so a single server keeps this broadcast channel.)
//!
//! Pub/sub is at-most-once: messages published while this connection is down
//! are gone, and only then: Redis drops a subscriber's messages only by
//! closing its connection. So after every (re)subscription every feed is
//! rechecked, and the sweep re-reads them while this connection is down.

use std::sync::Arc;
use std::time::Duration;

use contract::keys::EVENTS_CHANNEL;
use contract::nudge::Nudge;
use futures_util::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use service_runtime::backoff::Backoff;
use service_runtime::redis_link::LinkState;

use super::Hub;

/// Limit on connecting and subscribing, and on each ping.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(3);

/// A silent subscription is pinged this often, so a connection that died
/// without a reset is noticed and replaced.
const PING_INTERVAL: Duration = Duration::from_secs(10);

/// Keeps the subscription up until shutdown, forwarding each message as a nudge.
pub(super) async fn run(hub: Arc<Hub>) {
    let link = LinkState::new("redis-pubsub");
    let mut backoff = Backoff::default();
    loop {
        let subscribed = tokio::select! {
            _ = hub.shutdown.cancelled() => return,
            subscribed = tokio::time::timeout(ANSWER_TIMEOUT, subscribe(&hub)) => subscribed,
        };
        match subscribed {
            Ok(Ok((mut sink, mut messages))) => {
                link.up();
                backoff.reset();
                hub.set_subscribed(true);
                hub.recheck_all();
                let lost = listen(&hub, &mut sink, &mut messages).await;
                hub.set_subscribed(false);
                match lost {
                    None => return,
                    Some(lost) => link.down(&lost),
                }
            }
            Ok(Err(error)) => link.down(&error),
            Err(_) => link.down(&"no answer in time"),
        }
        hub.metrics.redis_error("subscribe");
        tokio::select! {
            _ = hub.shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
}

/// Opens a dedicated connection and subscribes.
async fn subscribe(hub: &Hub) -> redis::RedisResult<(PubSubSink, PubSubStream)> {
    let (mut sink, messages) = hub.redis.pubsub().await?.split();
    sink.subscribe(EVENTS_CHANNEL).await?;
    Ok((sink, messages))
}

/// Forwards messages until the connection is lost (returns why) or shutdown
/// (returns `None`).
async fn listen(hub: &Hub, sink: &mut PubSubSink, messages: &mut PubSubStream) -> Option<String> {
    let mut ping = tokio::time::interval(PING_INTERVAL);
    ping.tick().await;
    loop {
        tokio::select! {
            _ = hub.shutdown.cancelled() => return None,
            message = messages.next() => match message {
                Some(message) => match Nudge::parse(message.get_payload_bytes()) {
                    Some(nudge) => hub.nudge(&nudge),
                    None => tracing::debug!("ignored a nudge that does not start with a search id"),
                },
                None => return Some("subscription closed".to_owned()),
            },
            _ = ping.tick() => {
                match tokio::time::timeout(ANSWER_TIMEOUT, sink.ping::<redis::Value>()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => return Some(error.to_string()),
                    Err(_) => return Some("ping not answered in time".to_owned()),
                }
            }
        }
    }
}
