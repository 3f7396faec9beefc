//! One connection type for both deployments: [`RedisConnection`] is a single
//! server's connection or a cluster connection, and every caller sends its
//! commands, pipelines and scripts through it without knowing which.
//!
//! A cluster connection routes each command by its first key, so the same
//! keys and scripts work in both modes as long as every multi-key command and
//! script stays within one search's hash tag.

use std::sync::{Arc, PoisonError, RwLock};

use redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};

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
    /// The shared cluster connection, replaceable by [`RedisConnection::renew`]
    /// for every holder of a clone at once.
    SharedCluster(Arc<RenewableCluster>),
}

/// A cluster connection that can be swapped for a new one. After a failover
/// the redis crate's cluster connection has been seen to stay stuck on the
/// old topology, answering nothing for a minute and more; a fresh one learns
/// the topology anew from the seed nodes.
pub struct RenewableCluster {
    /// Opens the replacement.
    client: ClusterClient,
    /// Timeouts of every connection this opens.
    config: ClusterConfig,
    /// The connection in use; clones of it are cheap handles.
    current: RwLock<ClusterConnection>,
}

impl RenewableCluster {
    /// A connection that connects in the background, like every replacement.
    pub fn new(client: ClusterClient, config: ClusterConfig) -> RenewableCluster {
        let current = client.get_pending_async_connection_with_config(config.clone());
        RenewableCluster {
            client,
            config,
            current: RwLock::new(current),
        }
    }

    /// A handle on the connection in use.
    fn current(&self) -> ClusterConnection {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl RedisConnection {
    /// Replaces a shared cluster connection with a new one, for every clone;
    /// returns false (and does nothing) for other kinds, which reconnect by
    /// themselves or are replaced by their owners.
    pub fn renew(&self) -> bool {
        let RedisConnection::SharedCluster(shared) = self else {
            return false;
        };
        let fresh = shared
            .client
            .get_pending_async_connection_with_config(shared.config.clone());
        *shared
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner) = fresh;
        true
    }

    /// Sends `cmd`, which names no key, to every master and returns each
    /// one's answer with its address (`None` on a single server, whose one
    /// answer it is). An error reply of one master is that master's answer;
    /// the whole call fails only when a master cannot be asked at all. Health
    /// checks use it: on a cluster a keyed command reaches one master only, and
    /// a keyless one an arbitrary master.
    pub async fn on_every_master(
        &mut self,
        cmd: &Cmd,
    ) -> RedisResult<Vec<(Option<String>, RedisResult<Value>)>> {
        let mut cluster = match self {
            RedisConnection::Cluster(c) => c.clone(),
            RedisConnection::SharedCluster(shared) => shared.current(),
            RedisConnection::Managed(_) | RedisConnection::Dedicated(_) => {
                let reply = self
                    .req_packed_command(cmd)
                    .await
                    .and_then(Value::extract_error);
                return match reply {
                    // Not an answer of the server: it could not be asked.
                    Err(error) if error.code().is_none() => Err(error),
                    reply => Ok(vec![(None, reply)]),
                };
            }
        };
        // No response policy: the crate then answers with a map from each
        // master's address to its reply, error replies included.
        let routing = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
        let Value::Map(answers) = cluster.route_command(cmd.clone(), routing).await? else {
            return Err(redis::RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "expected one reply per master",
            )));
        };
        Ok(answers
            .into_iter()
            .map(|(node, reply)| {
                let node = match node {
                    Value::BulkString(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                    other => format!("{other:?}"),
                };
                (Some(node), reply.extract_error())
            })
            .collect())
    }

    /// How appends written on this connection are announced: sharded channels
    /// on a cluster, the one broadcast channel on a single server.
    pub fn nudges(&self) -> Nudges {
        match self {
            RedisConnection::Cluster(_) | RedisConnection::SharedCluster(_) => Nudges::Sharded,
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
            RedisConnection::SharedCluster(shared) => {
                let mut conn = shared.current();
                Box::pin(async move { conn.req_packed_command(cmd).await })
            }
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
            RedisConnection::SharedCluster(shared) => {
                let mut conn = shared.current();
                Box::pin(async move { conn.req_packed_commands(pipeline, offset, count).await })
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConnection::Managed(c) => c.get_db(),
            RedisConnection::Dedicated(c) => c.get_db(),
            RedisConnection::Cluster(c) => c.get_db(),
            RedisConnection::SharedCluster(_) => 0,
        }
    }
}
