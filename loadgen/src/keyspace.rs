//! Where the load generator reads a search's keys and appends its events: the
//! one Redis server (`--redis`), or a Redis Cluster (`--redis-cluster`), whose
//! keys live on different masters and whose appends announce on the search's
//! sharded channel, as provider-service does there.

use contract::keys;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};
use uuid::Uuid;

use crate::cli::Common;

/// A connection that reaches every search key of the deployment.
#[derive(Clone)]
pub enum Keyspace {
    /// The one server.
    Server(MultiplexedConnection),
    /// A cluster: commands routed to the master of their key's slot.
    Cluster(ClusterConnection),
}

impl Keyspace {
    /// A new connection: to `--redis-cluster` when given, else to `--redis`.
    pub async fn open(common: &Common) -> Result<Keyspace, String> {
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
                Ok(Keyspace::Cluster(conn))
            }
            None => {
                let client = redis::Client::open(common.redis.as_str())
                    .map_err(|e| format!("--redis {}: {e}", common.redis))?;
                let conn = client
                    .get_multiplexed_async_connection()
                    .await
                    .map_err(|e| format!("--redis {}: {e}", common.redis))?;
                Ok(Keyspace::Server(conn))
            }
        }
    }

    /// The channel and publish command `APPEND_EVENT` announces `search_id`'s
    /// events with: the broadcast channel on one server, the search's own
    /// sharded channel on a cluster.
    pub fn nudge(&self, search_id: Uuid) -> (String, &'static str) {
        match self {
            Keyspace::Server(_) => (keys::EVENTS_CHANNEL.to_owned(), "PUBLISH"),
            Keyspace::Cluster(_) => (keys::events_channel(search_id), "SPUBLISH"),
        }
    }
}

impl ConnectionLike for Keyspace {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Keyspace::Server(c) => c.req_packed_command(cmd),
            Keyspace::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Keyspace::Server(c) => c.req_packed_commands(pipeline, offset, count),
            Keyspace::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Keyspace::Server(c) => c.get_db(),
            Keyspace::Cluster(c) => c.get_db(),
        }
    }
}
