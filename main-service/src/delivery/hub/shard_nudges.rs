//! Nudges on a Redis Cluster: while this instance has a feed for a search, it
//! holds `SSUBSCRIBE {flight.search.results:<id>}:events`, the sharded channel
//! on which the append script SPUBLISHes a nudge (the search id and the entries
//! written, see [`contract::nudge`]) after every call that wrote.
//!
//! A sharded channel lives on the node that owns the search's keys, so an
//! announcement reaches only that node and the instances watching the search;
//! a PUBLISH on a cluster is forwarded to every node. The price is one
//! SSUBSCRIBE when a search gets its first local client and one SUNSUBSCRIBE
//! when its last one leaves.
//!
//! The cluster connection resubscribes by itself after reconnects, MOVED and
//! failovers, and every subscription confirmation, first or renewed, re-reads
//! its feed: that covers both the events appended before the subscription
//! took effect and those announced while it was down.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use contract::keys::{RESULTS_PREFIX, events_channel};
use contract::nudge::Nudge;
use redis::cluster_async::ClusterConnection;
use redis::{PushInfo, PushKind, Value};
use service_runtime::redis_link::LinkState;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use uuid::Uuid;

use super::Hub;

/// Limit on each SSUBSCRIBE or SUNSUBSCRIBE.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(3);

/// A subscription change that failed is tried again after this.
const RETRY_DELAY: Duration = Duration::from_secs(1);

/// Keeps this instance's sharded subscriptions equal to its feeds until
/// shutdown, and forwards each message as a nudge. `changed` carries the ids
/// of searches whose feed appeared or went away; `retry` sends into it.
pub(super) async fn run(
    hub: Arc<Hub>,
    mut conn: ClusterConnection,
    mut pushes: UnboundedReceiver<PushInfo>,
    mut changed: UnboundedReceiver<Uuid>,
    retry: UnboundedSender<Uuid>,
) {
    let link = LinkState::new("redis-sharded-pubsub");
    let mut held: HashSet<Uuid> = HashSet::new();
    loop {
        tokio::select! {
            biased;
            _ = hub.shutdown.cancelled() => return,
            Some(push) = pushes.recv() => on_push(&hub, &link, push),
            Some(search_id) = changed.recv() => {
                let wanted = hub.has_feed(search_id);
                if wanted == held.contains(&search_id) {
                    continue;
                }
                match reconcile(&mut conn, search_id, wanted).await {
                    Ok(()) => {
                        link.up();
                        if wanted {
                            held.insert(search_id);
                        } else {
                            held.remove(&search_id);
                        }
                    }
                    Err(error) => {
                        link.down(&error);
                        hub.metrics.redis_error("subscribe");
                        let retry = retry.clone();
                        hub.tasks.spawn("hub subscription retry", async move {
                            tokio::time::sleep(RETRY_DELAY).await;
                            // Fails only after shutdown, when it no longer matters.
                            let _ = retry.send(search_id);
                        });
                    }
                }
            }
        }
    }
}

/// Subscribes to (`wanted`) or unsubscribes from the search's channel.
async fn reconcile(
    conn: &mut ClusterConnection,
    search_id: Uuid,
    wanted: bool,
) -> Result<(), String> {
    let channel = events_channel(search_id);
    let answer = if wanted {
        tokio::time::timeout(ANSWER_TIMEOUT, conn.ssubscribe(&channel)).await
    } else {
        tokio::time::timeout(ANSWER_TIMEOUT, conn.sunsubscribe(&channel)).await
    };
    match answer {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("no answer in time".to_owned()),
    }
}

/// A message nudges its search; a (re)subscription re-reads its search, as
/// messages may have been missed before it; a lost node connection makes the
/// sweep re-read often until its subscriptions are back.
fn on_push(hub: &Hub, link: &LinkState, push: PushInfo) {
    match push.kind {
        PushKind::SMessage => match push.data.get(1).and_then(nudge_of) {
            Some(nudge) => hub.nudge(&nudge),
            None => tracing::debug!("ignored a nudge that does not start with a search id"),
        },
        PushKind::SSubscribe => {
            hub.set_subscribed(true);
            if let Some(search_id) = push.data.first().and_then(channel_search_id) {
                hub.nudge(&Nudge::bare(search_id));
            }
        }
        PushKind::Disconnection => {
            hub.set_subscribed(false);
            link.down(&"a node connection closed");
        }
        _ => {}
    }
}

/// The nudge a message carries.
fn nudge_of(payload: &Value) -> Option<Nudge<'_>> {
    match payload {
        Value::BulkString(bytes) => Nudge::parse(bytes),
        _ => None,
    }
}

/// The search id in a channel name `{flight.search.results:<id>}:events`.
fn channel_search_id(channel: &Value) -> Option<Uuid> {
    let Value::BulkString(bytes) = channel else {
        return None;
    };
    let name = std::str::from_utf8(bytes).ok()?;
    let id = name
        .strip_prefix('{')?
        .strip_prefix(RESULTS_PREFIX)?
        .strip_suffix("}:events")?;
    Uuid::try_parse(id).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_give_back_their_search() {
        let id = Uuid::new_v4();
        let channel = Value::BulkString(events_channel(id).into_bytes());
        assert_eq!(channel_search_id(&channel), Some(id));
        let other = Value::BulkString(b"flight.search.events".to_vec());
        assert_eq!(channel_search_id(&other), None);
        let payload = Value::BulkString(format!("{id} -\n1-0 2\n{{}}").into_bytes());
        let nudge = nudge_of(&payload).unwrap();
        assert_eq!(nudge.search_id, id);
        assert_eq!(nudge.carried().unwrap().entries.len(), 1);
    }
}
