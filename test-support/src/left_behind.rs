//! Redis state a provider would leave behind, written the way the services
//! write it, so a suite can start a provider (or one of its parts) against a
//! queue and result streams that another replica has already worked on.

use std::time::Duration;

use contract::keys::REQUESTS_STREAM;
use contract::{EventKind, Iata, QueuedSearch, SearchEvent, SearchRequest};
use redis::aio::ConnectionLike;
use service_runtime::streams::{self, Nudges};
use uuid::Uuid;

/// The consumer group every provider replica reads in.
const GROUP: &str = "provider-service";

/// A queued search from `from` to `to` for two passengers, with a fresh id.
pub fn queued_search(from: &str, to: &str) -> QueuedSearch {
    QueuedSearch {
        search_id: Uuid::new_v4(),
        request: SearchRequest {
            from: Iata::parse(from).unwrap(),
            to: Iata::parse(to).unwrap(),
            date: time::macros::date!(2026 - 12 - 10),
            passengers: 2,
        },
        requested_at_ms: Some(1_790_000_000_000),
        traceparent: None,
    }
}

/// Adds an entry with `fields` to the request stream, as main-service would;
/// returns its id.
pub async fn enqueue(conn: &mut impl ConnectionLike, fields: &[(&str, &str)]) -> String {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(REQUESTS_STREAM).arg("*");
    for (name, value) in fields {
        cmd.arg(*name).arg(*value);
    }
    cmd.query_async(conn).await.unwrap()
}

/// Queues `search` with the fields main-service writes; returns its entry id.
pub async fn enqueue_search(conn: &mut impl ConnectionLike, search: &QueuedSearch) -> String {
    let fields = search.to_fields();
    let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    enqueue(conn, &pairs).await
}

/// A consumer that takes `count` entries and dies: they stay pending on it.
pub async fn take_and_die(conn: &mut impl ConnectionLike, consumer: &str, count: usize) {
    streams::create_group(conn, GROUP).await.unwrap();
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(GROUP)
        .arg(consumer)
        .arg("COUNT")
        .arg(count)
        .arg("STREAMS")
        .arg(REQUESTS_STREAM)
        .arg(">")
        .query_async(conn)
        .await
        .unwrap();
}

/// Appends `kind` to search `id`'s result stream as an earlier attempt would,
/// through the services' own append script.
pub async fn append(conn: &mut impl ConnectionLike, id: Uuid, kind: EventKind) {
    let event = SearchEvent {
        search_id: id,
        kind,
    };
    streams::append_event(
        conn,
        &event,
        Duration::from_secs(60),
        None,
        Nudges::Broadcast,
    )
    .await
    .unwrap();
}
