//! Where the load generator reads a search's keys and appends its events: the
//! one Redis server (`--redis`), or a Redis Cluster (`--redis-cluster`), whose
//! keys live on different masters and whose appends announce on the search's
//! sharded channel, as provider-service does there. The connection is the
//! services' own [`RedisConnection`], so commands are routed as theirs are.

use contract::keys;
use redis::cluster::ClusterClient;
use service_runtime::redis_connection::RedisConnection;
use service_runtime::streams::Nudges;
use uuid::Uuid;

use crate::cli::Common;

/// A new connection that reaches every search key of the deployment: to
/// `--redis-cluster` when given, else to `--redis`.
pub async fn open(common: &Common) -> Result<RedisConnection, String> {
    match &common.redis_cluster {
        Some(seeds) => {
            let client = ClusterClient::builder(seeds.split(',').map(str::trim))
                .use_protocol(redis::ProtocolVersion::RESP3)
                .build()
                .map_err(|e| format!("--redis-cluster {seeds}: {e}"))?;
            let conn = client
                .get_async_connection()
                .await
                .map_err(|e| format!("--redis-cluster {seeds}: {e}"))?;
            Ok(RedisConnection::Cluster(conn))
        }
        None => {
            let client = redis::Client::open(common.redis.as_str())
                .map_err(|e| format!("--redis {}: {e}", common.redis))?;
            let conn = client
                .get_multiplexed_async_connection()
                .await
                .map_err(|e| format!("--redis {}: {e}", common.redis))?;
            Ok(RedisConnection::Dedicated(conn))
        }
    }
}

/// True if and only if `conn` reaches a cluster, which refuses a pipeline
/// over several slots.
pub fn is_cluster(conn: &RedisConnection) -> bool {
    conn.nudges() == Nudges::Sharded
}

/// The channel and publish command `APPEND_EVENT` announces `search_id`'s
/// events with on `conn`: the broadcast channel on one server, the search's
/// own sharded channel on a cluster.
pub fn nudge(conn: &RedisConnection, search_id: Uuid) -> (String, &'static str) {
    match conn.nudges() {
        Nudges::Broadcast => (keys::EVENTS_CHANNEL.to_owned(), "PUBLISH"),
        Nudges::Sharded => (keys::events_channel(search_id), "SPUBLISH"),
    }
}
