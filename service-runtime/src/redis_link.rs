//! The Redis link: one multiplexed, self-reconnecting connection for ordinary
//! commands, plus the up/down state of long-lived dedicated connections
//! (blocking reads, pub/sub), which reconnect after a
//! [`crate::backoff::Backoff`] wait. It works the same on one server and on a Redis
//! Cluster (see [`RedisTarget`]).
//!
//! A service starts whether or not Redis is up. [`RedisLink::new`] connects
//! lazily; [`RedisLink::watch`] pings once a second and keeps [`RedisLink::is_ready`]
//! current, logging one line per change of state rather than one per failure.
//! While the link is down, [`RedisLink::down_reason`] names the class of the
//! last failure ([`LinkFault`]) for `/readyz`.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSub};
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use tokio_util::sync::CancellationToken;

use crate::redis_connection::{RedisConnection, RenewableCluster};
use crate::redis_failure::LinkFault;
use crate::redis_target::RedisTarget;
use crate::streams::Nudges;

/// Non-blocking commands answer within this, or count as failed.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(3);

/// A shared cluster connection failing this long is replaced: after a
/// failover the redis crate's cluster connection has been seen to stay stuck.
pub const RENEW_CLUSTER_AFTER: Duration = Duration::from_secs(10);

/// The `/readyz` reason before the first ping has answered or failed.
pub const NOT_CHECKED_YET: &str = "redis has not answered yet (connecting)";

/// How often readiness is re-checked.
const PING_INTERVAL: Duration = Duration::from_secs(1);

/// Shared handle to Redis. Cloning is cheap; all clones share one connection.
#[derive(Clone)]
pub struct RedisLink {
    /// For dedicated connections (blocking XREADGROUP, pub/sub), which must never
    /// share the multiplexed connection: a blocked command would stall every other.
    opener: Opener,
    /// The multiplexed connection for every non-blocking command.
    commands: RedisConnection,
    /// Result of the latest ping, shared by all clones.
    state: Arc<LinkState>,
    /// The class of the latest failed ping, shared by all clones.
    fault: Arc<Mutex<LinkFault>>,
    /// Where Redis is, to explain failures in the log.
    target: RedisTarget,
}

/// What opens new connections, per kind of deployment.
#[derive(Clone)]
enum Opener {
    /// One server.
    Server(Box<redis::Client>),
    /// A cluster.
    Cluster(Box<ClusterClient>),
}

impl RedisLink {
    /// Creates the link without connecting. Fails only if the target's TLS
    /// settings cannot be turned into a client.
    pub fn new(target: &RedisTarget) -> redis::RedisResult<RedisLink> {
        let (opener, commands) = match target {
            RedisTarget::Server(url) => {
                let client = url.client()?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(1)))
                    .set_response_timeout(Some(COMMAND_TIMEOUT))
                    .set_number_of_retries(2)
                    .set_max_delay(Duration::from_millis(500));
                let commands = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
                (
                    Opener::Server(Box::new(client)),
                    RedisConnection::Managed(commands),
                )
            }
            RedisTarget::Cluster(nodes) => {
                let client =
                    RedisTarget::cluster_client(nodes, Duration::from_secs(1), COMMAND_TIMEOUT)?;
                // Connects in the background and recovers by itself, like the
                // lazy connection manager above, or is renewed by `watch`.
                let commands = RenewableCluster::new(
                    client.clone(),
                    ClusterConfig::new()
                        .set_connection_timeout(Duration::from_secs(1))
                        .set_response_timeout(COMMAND_TIMEOUT),
                );
                (
                    Opener::Cluster(Box::new(client)),
                    RedisConnection::SharedCluster(Arc::new(commands)),
                )
            }
        };
        Ok(RedisLink {
            opener,
            commands,
            state: Arc::new(LinkState::new("redis")),
            fault: Arc::default(),
            target: target.clone(),
        })
    }

    /// How appends are announced: sharded channels on a cluster, the one
    /// broadcast channel on a single server.
    pub fn nudges(&self) -> Nudges {
        self.commands.nudges()
    }

    /// On a cluster, a new cluster connection for sharded subscriptions that
    /// hands every message and subscription change to `pushes`; it connects in
    /// the background and resubscribes by itself after reconnects, MOVED and
    /// failovers. `None` on a single server, where redis-rs offers SSUBSCRIBE
    /// on no connection type (see [`Nudges`]).
    pub fn sharded_subscriber(
        &self,
        pushes: impl redis::aio::AsyncPushSender,
    ) -> Option<ClusterConnection> {
        match &self.opener {
            Opener::Server(_) => None,
            Opener::Cluster(client) => Some(
                client.get_pending_async_connection_with_config(
                    ClusterConfig::new()
                        .set_connection_timeout(Duration::from_secs(1))
                        .set_response_timeout(COMMAND_TIMEOUT)
                        .set_push_sender(pushes),
                ),
            ),
        }
    }

    /// The multiplexed connection (a cheap clone). Never send blocking commands on it.
    pub fn commands(&self) -> RedisConnection {
        self.commands.clone()
    }

    /// A new connection of its own, for commands that block (XREADGROUP
    /// BLOCK): each answer may take up to `response_timeout`, which must exceed
    /// the block time. On a cluster it is a cluster connection of its own, as
    /// a BLOCK on the shared one would delay other commands to the same node.
    pub async fn dedicated(
        &self,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> redis::RedisResult<RedisConnection> {
        match &self.opener {
            Opener::Server(client) => {
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(connect_timeout))
                    .set_response_timeout(Some(response_timeout));
                client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .map(RedisConnection::Dedicated)
            }
            Opener::Cluster(client) => client
                .get_async_connection_with_config(
                    ClusterConfig::new()
                        .set_connection_timeout(connect_timeout)
                        .set_response_timeout(response_timeout),
                )
                .await
                .map(RedisConnection::Cluster),
        }
    }

    /// A new pub/sub connection to a single server. A cluster announces on
    /// sharded channels instead (see [`RedisLink::sharded_subscriber`]).
    pub async fn pubsub(&self) -> redis::RedisResult<PubSub> {
        match &self.opener {
            Opener::Server(client) => client.get_async_pubsub().await,
            Opener::Cluster(_) => Err(redis::RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "a cluster announces appends on sharded channels",
            ))),
        }
    }

    /// True if and only if the latest ping succeeded.
    pub fn is_ready(&self) -> bool {
        self.state.is_up()
    }

    /// Why the link is down, for `/readyz`: the class of the latest failure
    /// ([`LinkFault::explain`]); `None` while up.
    pub fn down_reason(&self) -> Option<&'static str> {
        if self.is_ready() {
            return None;
        }
        if !self.state.is_checked() {
            return Some(NOT_CHECKED_YET);
        }
        let fault = *self.fault.lock().unwrap_or_else(PoisonError::into_inner);
        Some(fault.explain())
    }

    /// Pings Redis every second until `shutdown`, keeping readiness current.
    /// A cluster connection that has failed every ping for
    /// [`RENEW_CLUSTER_AFTER`] is replaced with a new one.
    pub async fn watch(self, shutdown: CancellationToken) {
        let mut conn = self.commands();
        let mut failing_since: Option<tokio::time::Instant> = None;
        loop {
            let ping: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut conn).await;
            match ping {
                Ok(_) => {
                    failing_since = None;
                    self.state.up();
                }
                Err(e) => {
                    let fault = self.target.fault(&e);
                    *self.fault.lock().unwrap_or_else(PoisonError::into_inner) = fault;
                    self.state
                        .down(&format!("{}: {}", fault.explain(), self.target.explain(&e)));
                    let since = *failing_since.get_or_insert_with(tokio::time::Instant::now);
                    if since.elapsed() >= RENEW_CLUSTER_AFTER && self.commands.renew() {
                        tracing::warn!(
                            connection = "redis",
                            failing_for = ?since.elapsed(),
                            "cluster connection replaced with a new one"
                        );
                        failing_since = None;
                    }
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(PING_INTERVAL) => {}
            }
        }
    }
}

/// Up/down state of a connection, logged only when it changes.
pub struct LinkState {
    /// What the log lines call this connection.
    name: &'static str,
    /// 0 = never checked, 1 = up, 2 = down.
    state: AtomicU8,
}

impl LinkState {
    /// A connection not yet checked.
    pub const fn new(name: &'static str) -> LinkState {
        LinkState {
            name,
            state: AtomicU8::new(0),
        }
    }

    /// Records a success; logs if the connection was down or unchecked.
    pub fn up(&self) {
        if self.state.swap(1, Ordering::Relaxed) != 1 {
            tracing::info!(connection = self.name, "connection up");
        }
    }

    /// Records a failure; logs if the connection was up or unchecked.
    pub fn down(&self, error: &dyn std::fmt::Display) {
        if self.state.swap(2, Ordering::Relaxed) != 2 {
            tracing::warn!(connection = self.name, %error, "connection down");
        }
    }

    /// True if and only if the latest report was a success.
    pub fn is_up(&self) -> bool {
        self.state.load(Ordering::Relaxed) == 1
    }

    /// True once a success or failure has been reported.
    pub fn is_checked(&self) -> bool {
        self.state.load(Ordering::Relaxed) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_state_tracks_the_latest_report() {
        let s = LinkState::new("test");
        assert!(!s.is_up());
        assert!(!s.is_checked());
        s.up();
        assert!(s.is_checked());
        assert!(s.is_up());
        s.down(&"refused");
        assert!(!s.is_up());
    }
}
