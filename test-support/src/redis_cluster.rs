//! A throwaway Redis Cluster: three masters with one replica each, six
//! `redis-server` processes (`redis_process`) on free ports joined by
//! `redis-cli --cluster create`, stopped on Drop.
//!
//! `cluster-node-timeout` is three seconds, so a killed master's replica is
//! promoted within several seconds, which keeps fault tests short; a shorter
//! one made a node starved of CPU on a loaded machine look dead and failed it
//! over in the middle of unrelated tests.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::redis_process::{self, connect};
use crate::{eventually, free_port};

/// Masters in the cluster; each has one replica.
pub const MASTERS: usize = 3;

/// How long a node may be unreachable before the cluster fails it over.
const NODE_TIMEOUT_MS: &str = "3000";

/// One node's process.
struct Node {
    /// Where it listens; kept across restarts.
    port: u16,
    /// Where it talks to the other nodes. Chosen free like `port`: the
    /// default, `port` + 10000, may belong to anything else on the machine.
    bus_port: u16,
    /// The process, `None` while stopped.
    child: Option<Child>,
}

/// A running cluster with its own data directory.
pub struct RedisCluster {
    /// Six nodes; which are masters changes with failovers.
    nodes: Vec<Node>,
    /// Holds one sub-directory per node (its AOF and `nodes.conf`).
    dir: PathBuf,
    /// The ACL file every node loads, when users were asked for.
    acl_file: Option<PathBuf>,
}

impl RedisCluster {
    /// Starts six nodes, creates the cluster and waits until every node sees
    /// all slots served and every replica is in sync with its master.
    pub async fn start() -> RedisCluster {
        RedisCluster::start_with_users(&[]).await
    }

    /// Like [`RedisCluster::start`], with every node loading the ACL file
    /// lines `acl` (`user <name> ...`) besides the default user, which the
    /// cluster's own tooling and the tests keep using.
    pub async fn start_with_users(acl: &[String]) -> RedisCluster {
        let ports: Vec<u16> = (0..MASTERS * 2).map(|_| free_port()).collect();
        let dir = std::env::temp_dir().join(format!(
            "flight-search-cluster-{}-{}",
            ports[0],
            std::process::id()
        ));
        let mut cluster = RedisCluster {
            nodes: ports
                .into_iter()
                .map(|port| Node {
                    port,
                    bus_port: free_port(),
                    child: None,
                })
                .collect(),
            acl_file: (!acl.is_empty()).then(|| dir.join("users.acl")),
            dir,
        };
        if let Some(path) = &cluster.acl_file {
            std::fs::create_dir_all(&cluster.dir).expect("create cluster dir");
            std::fs::write(path, acl.join("\n") + "\n").expect("write ACL file");
        }
        for i in 0..cluster.nodes.len() {
            // A free port can be taken by another process before the node
            // binds it: such a node exits at once, and gets new ports.
            let mut attempts = 0;
            while !cluster.spawn(i).await {
                attempts += 1;
                assert!(attempts < 5, "no cluster node could bind its ports");
                cluster.nodes[i].port = free_port();
                cluster.nodes[i].bus_port = free_port();
            }
        }
        let addresses: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let created = tokio::process::Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .status()
            .await
            .expect("redis-cli must be installed (apt-get install redis-tools)");
        assert!(created.success(), "redis-cli --cluster create failed");
        cluster.wait_healthy().await;
        cluster
    }

    /// The seed URLs of every node, comma-separated: `REDIS_CLUSTER_NODES`.
    pub fn seeds(&self) -> String {
        self.seeds_as(None)
    }

    /// [`RedisCluster::seeds`] with `user` (name, password) in each URL.
    pub fn seeds_as(&self, user: Option<&(String, String)>) -> String {
        let credentials = user.map_or_else(String::new, |(name, password)| {
            format!("{name}:{password}@")
        });
        self.nodes
            .iter()
            .map(|n| format!("redis://{credentials}127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Ports of every running node, masters and replicas.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.port)
            .collect()
    }

    /// Ports of the current masters serving slots, as the running nodes see it.
    pub async fn masters(&self) -> Vec<u16> {
        self.topology()
            .await
            .into_iter()
            .filter(|n| n.master && n.serves_slots)
            .map(|n| n.port)
            .collect()
    }

    /// The port of the master serving `key`'s slot.
    pub async fn master_of(&self, key: &str) -> u16 {
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query_async(&mut self.any_node().await)
            .await
            .expect("CLUSTER KEYSLOT");
        self.topology()
            .await
            .into_iter()
            .find(|n| n.master && n.slots.iter().any(|r| r.contains(&slot)))
            .unwrap_or_else(|| panic!("no master serves slot {slot}"))
            .port
    }

    /// A connection to the node on `port`, for commands about that node only.
    pub async fn node(&self, port: u16) -> redis::aio::MultiplexedConnection {
        connect(port).await.expect("the node answers")
    }

    /// SIGKILLs the node on `port` (a crash, not a clean stop).
    pub fn kill(&mut self, port: u16) {
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.port == port)
            .expect("a node of this cluster");
        redis_process::kill(&mut node.child);
    }

    /// Starts the node on `port` again with its data; it rejoins as a replica
    /// if its slots were failed over meanwhile.
    pub async fn revive(&mut self, port: u16) {
        let i = self
            .nodes
            .iter()
            .position(|n| n.port == port)
            .expect("a node of this cluster");
        assert!(self.spawn(i).await, "a revived cluster node exited");
    }

    /// SIGKILLs every node.
    pub fn kill_all(&mut self) {
        let ports: Vec<u16> = self.nodes.iter().map(|n| n.port).collect();
        for port in ports {
            self.kill(port);
        }
    }

    /// Starts every stopped node again and waits until the cluster is healthy.
    pub async fn revive_all(&mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].child.is_none() {
                assert!(self.spawn(i).await, "a revived cluster node exited");
            }
        }
        self.wait_healthy().await;
    }

    /// Waits until every running node reports `cluster_state:ok` and the same
    /// view: three masters serving all slots, each with a replica in sync.
    pub async fn wait_healthy(&self) {
        eventually(
            "the cluster to be healthy",
            Duration::from_secs(60),
            || async {
                for node in self.nodes.iter().filter(|n| n.child.is_some()) {
                    let mut conn = connect(node.port).await?;
                    let info: String = redis::cmd("CLUSTER")
                        .arg("INFO")
                        .query_async(&mut conn)
                        .await
                        .ok()?;
                    if !info.contains("cluster_state:ok") {
                        return None;
                    }
                    let replication: String = redis::cmd("INFO")
                        .arg("replication")
                        .query_async(&mut conn)
                        .await
                        .ok()?;
                    if replication.contains("role:slave")
                        && !replication.contains("master_link_status:up")
                    {
                        return None;
                    }
                }
                let topology = self.topology().await;
                let masters = topology.iter().filter(|n| n.master && n.serves_slots);
                (masters.count() == MASTERS).then_some(())
            },
        )
        .await;
    }

    /// `CLUSTER NODES` as seen by a running node, failed nodes left out.
    async fn topology(&self) -> Vec<NodeView> {
        let nodes: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query_async(&mut self.any_node().await)
            .await
            .expect("CLUSTER NODES");
        nodes.lines().filter_map(NodeView::parse).collect()
    }

    /// A connection to some running node.
    async fn any_node(&self) -> redis::aio::MultiplexedConnection {
        for node in self.nodes.iter().filter(|n| n.child.is_some()) {
            if let Some(conn) = connect(node.port).await {
                return conn;
            }
        }
        panic!("no cluster node answers");
    }

    /// Starts node `i` and waits until it answers; returns false if and only
    /// if the process exited instead (its port taken, say).
    async fn spawn(&mut self, i: usize) -> bool {
        let (port, bus_port) = (self.nodes[i].port, self.nodes[i].bus_port);
        let cluster_args: Vec<OsString> = [
            "--cluster-enabled",
            "yes",
            "--cluster-port",
            &bus_port.to_string(),
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            NODE_TIMEOUT_MS,
        ]
        .into_iter()
        .map(OsString::from)
        .collect();
        let dir = self.dir.join(port.to_string());
        let child = redis_process::start(port, &dir, self.acl_file.as_deref(), &cluster_args).await;
        let started = child.is_some();
        self.nodes[i].child = child;
        started
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            redis_process::kill(&mut node.child);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One line of `CLUSTER NODES`.
struct NodeView {
    /// Its port on 127.0.0.1.
    port: u16,
    /// A master (possibly without slots).
    master: bool,
    /// Owns at least one slot range.
    serves_slots: bool,
    /// The slot ranges it serves.
    slots: Vec<std::ops::RangeInclusive<u16>>,
}

impl NodeView {
    /// `<id> <ip:port@bus> <flags> <master> <ping> <pong> <epoch> <link> <slot>...`;
    /// `None` for failed or disconnected nodes.
    fn parse(line: &str) -> Option<NodeView> {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let port = fields
            .get(1)?
            .split('@')
            .next()?
            .rsplit(':')
            .next()?
            .parse()
            .ok()?;
        let flags = fields.get(2)?;
        if flags.contains("fail") || fields.get(7) != Some(&"connected") {
            return None;
        }
        let slots: Vec<_> = fields[8..]
            .iter()
            .filter(|s| !s.starts_with('['))
            .filter_map(|s| {
                let (a, b) = s.split_once('-').unwrap_or((s, s));
                Some(a.parse().ok()?..=b.parse().ok()?)
            })
            .collect();
        Some(NodeView {
            port,
            master: flags.contains("master"),
            serves_slots: !slots.is_empty(),
            slots,
        })
    }
}
