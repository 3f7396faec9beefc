//! One connection type for both deployments: [`RedisConnection`] is a single
//! server's connection or a cluster connection, and every caller sends its
//! commands, pipelines and scripts through it without knowing which.
//!
//! A cluster connection routes each command by its first key, so the same
//! keys and scripts work in both modes as long as every multi-key command and
//! script stays within one search's hash tag.

use redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

use crate::streams::Nudges;

/// A connection to Redis, whichever kind of deployment it is. Cloning is cheap
/// and shares the underlying connection.
#[derive(Clone)]
pub enum RedisConnection {
    /// The shared, self-reconnecting connection to one server.
    Managed(ConnectionManager),
    /// A dedicated connection to one server (blocking reads); its owner
    /// reconnects it.
    Dedicated(MultiplexedConnection),
    /// A cluster connection: one connection per node, commands routed by slot,
    /// MOVED and failovers followed by refreshing the slot map.
    Cluster(ClusterConnection),
}

impl RedisConnection {
    /// How appends written on this connection are announced: sharded channels
    /// on a cluster, the one broadcast channel on a single server.
    pub fn nudges(&self) -> Nudges {
        match self {
            RedisConnection::Cluster(_) => Nudges::Sharded,
            RedisConnection::Managed(_) | RedisConnection::Dedicated(_) => Nudges::Broadcast,
        }
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConnection::Managed(c) => c.req_packed_command(cmd),
            RedisConnection::Dedicated(c) => c.req_packed_command(cmd),
            RedisConnection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConnection::Managed(c) => c.req_packed_commands(pipeline, offset, count),
            RedisConnection::Dedicated(c) => c.req_packed_commands(pipeline, offset, count),
            RedisConnection::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConnection::Managed(c) => c.get_db(),
            RedisConnection::Dedicated(c) => c.get_db(),
            RedisConnection::Cluster(c) => c.get_db(),
        }
    }
}
