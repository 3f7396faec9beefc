//! A whole flight-search deployment for a test: started locally, or attached to a
//! running one when `FLIGHT_SEARCH_URL` (and `REDIS_URL` or
//! `REDIS_CLUSTER_NODES`) are set. When that URL is a load balancer,
//! `FLIGHT_SEARCH_INSTANCES` lists the main-service instances behind it
//! (comma-separated base URLs), so a test can read what only one instance
//! knows, such as its metrics.
//!
//! A local stack runs on one `redis-server`, or on a local Redis Cluster when
//! `FLIGHT_SEARCH_REDIS=cluster` is set (or the test asks for one), so the same
//! suites prove both deployments.

use std::time::Duration;

use service_runtime::config::Vars;
use service_runtime::redis_connection::RedisConnection;
use service_runtime::redis_link::RedisLink;
use service_runtime::redis_target::RedisTarget;
use uuid::Uuid;

use crate::documents::{self, Schema};
use crate::http::{self, Response};
use crate::redis_cluster::RedisCluster;
use crate::redis_server::{RedisOptions, RedisServer};
use crate::services::{Kind, Service};
use crate::sse::{Event, SseStream, assert_exactly_once};

/// Supplier latency for tests: short, but long enough that results arrive one by one.
pub const TEST_LATENCY_MS: &str = "20-150";

/// The Redis of a local stack.
pub enum LocalRedis {
    /// One server.
    Server(Box<RedisServer>),
    /// A cluster of three masters with a replica each.
    Cluster(RedisCluster),
}

impl LocalRedis {
    /// Kills every Redis process (an outage, not a clean stop).
    pub fn stop(&mut self) {
        match self {
            LocalRedis::Server(server) => server.stop(),
            LocalRedis::Cluster(cluster) => cluster.kill_all(),
        }
    }

    /// Starts every Redis process again with its data and waits until it serves.
    pub async fn restart(&mut self) {
        match self {
            LocalRedis::Server(server) => server.restart().await,
            LocalRedis::Cluster(cluster) => cluster.revive_all().await,
        }
    }

    /// The single server; panics for a cluster.
    pub fn server(&mut self) -> &mut RedisServer {
        match self {
            LocalRedis::Server(server) => server,
            LocalRedis::Cluster(_) => panic!("this test needs a single Redis server"),
        }
    }

    /// The cluster; panics for a single server (build with `StackBuilder::cluster`).
    pub fn cluster(&mut self) -> &mut RedisCluster {
        match self {
            LocalRedis::Cluster(cluster) => cluster,
            LocalRedis::Server(_) => panic!("this test needs a cluster (StackBuilder::cluster)"),
        }
    }

    /// How the test itself reaches this Redis (plain TCP, default user).
    fn target(&self) -> RedisTarget {
        let (variable, value) = match self {
            LocalRedis::Server(server) => ("REDIS_URL", server.url()),
            LocalRedis::Cluster(cluster) => ("REDIS_CLUSTER_NODES", cluster.seeds()),
        };
        Vars::from_pairs(&[(variable, value.as_str())])
            .redis_target()
            .expect("a valid local Redis address")
    }
}

/// The processes of a locally started stack.
pub struct Local {
    /// The Redis server or cluster.
    pub redis: LocalRedis,
    /// main-service instances (usually one).
    pub mains: Vec<Service>,
    /// provider-service instances.
    pub providers: Vec<Service>,
    /// How providers reach Redis: `REDIS_URL` and, over TLS, `REDIS_CA_FILE`.
    provider_redis: RedisAccess,
}

/// How a service reaches the stack's Redis.
#[derive(Clone)]
struct RedisAccess {
    /// `REDIS_URL`, or `REDIS_CLUSTER_NODES` for a cluster.
    variable: &'static str,
    /// Its value.
    url: String,
    /// `REDIS_CA_FILE` when the URL is `rediss://`.
    ca_file: Option<String>,
    /// `REDIS_CLIENT_CERT_FILE` and `REDIS_CLIENT_KEY_FILE` when the server
    /// asks for a client certificate.
    client_certificate: Option<(String, String)>,
}

impl RedisAccess {
    /// Over TLS when `tls`, as `user` (name, password) when given.
    fn new(redis: &RedisServer, tls: bool, user: Option<&(String, String)>) -> RedisAccess {
        let url = if tls { redis.tls_url() } else { redis.url() };
        let url = match user {
            Some((name, password)) => url.replacen("://", &format!("://{name}:{password}@"), 1),
            None => url,
        };
        RedisAccess {
            variable: "REDIS_URL",
            url,
            ca_file: tls.then(|| redis.ca_file().display().to_string()),
            client_certificate: redis
                .client_certificate_files()
                .map(|(cert, key)| (cert.display().to_string(), key.display().to_string())),
        }
    }

    /// The seed nodes of `cluster` over plain TCP, as `user` (name,
    /// password) when given, else the default user.
    fn cluster(cluster: &RedisCluster, user: Option<&(String, String)>) -> RedisAccess {
        RedisAccess {
            variable: "REDIS_CLUSTER_NODES",
            url: cluster.seeds_as(user),
            ca_file: None,
            client_certificate: None,
        }
    }

    /// Starts `kind` with this access plus `env`.
    async fn start(&self, kind: Kind, env: &[(&str, &str)]) -> Service {
        let mut env = env.to_vec();
        if let Some(ca_file) = &self.ca_file {
            env.push(("REDIS_CA_FILE", ca_file));
        }
        if let Some((cert, key)) = &self.client_certificate {
            env.extend([
                ("REDIS_CLIENT_CERT_FILE", cert.as_str()),
                ("REDIS_CLIENT_KEY_FILE", key.as_str()),
            ]);
        }
        Service::start_with(kind, (self.variable, &self.url), &env).await
    }
}

impl Local {
    /// Starts one more provider with the stack's provider settings plus `env`.
    pub async fn add_provider(&mut self, env: &[(&str, &str)]) -> &mut Service {
        let provider = self.provider_redis.start(Kind::Provider, env).await;
        self.providers.push(provider);
        self.providers.last_mut().expect("just pushed")
    }
}

/// A deployment under test.
pub struct Stack {
    /// main-service base URL.
    base_url: String,
    /// The stack's Redis, for checking what the services wrote.
    redis: RedisTarget,
    /// Base URLs of the main-service instances: `base_url` itself unless it
    /// is a load balancer.
    instances: Vec<String>,
    /// The processes, when this test started them.
    local: Option<Local>,
}

/// What to start; ignored when attaching to a running stack.
pub struct StackBuilder {
    /// Extra environment for main-service.
    main_env: Vec<(String, String)>,
    /// Extra environment for each provider.
    provider_env: Vec<(String, String)>,
    /// Number of providers to start (0 for tests that start them later).
    providers: usize,
    /// Number of main-service instances.
    mains: usize,
    /// Refuse to attach to a running stack (the test needs process control).
    local_only: bool,
    /// Start a Redis Cluster rather than one server.
    cluster: bool,
    /// How to configure Redis.
    redis: RedisOptions,
    /// main-service's ACL user (name, password); `default` when `None`.
    main_user: Option<(String, String)>,
    /// The providers' ACL user (name, password); `default` when `None`.
    provider_user: Option<(String, String)>,
}

impl StackBuilder {
    /// Sets a main-service variable.
    pub fn main_env(mut self, name: &str, value: &str) -> Self {
        self.main_env.push((name.into(), value.into()));
        self
    }

    /// Sets a provider variable.
    pub fn provider_env(mut self, name: &str, value: &str) -> Self {
        self.provider_env.push((name.into(), value.into()));
        self
    }

    /// Sets each of `env`'s provider variables.
    pub fn provider_envs(self, env: &[(&str, &str)]) -> Self {
        env.iter().fold(self, |builder, (name, value)| {
            builder.provider_env(name, value)
        })
    }

    /// How many providers to start.
    pub fn providers(mut self, n: usize) -> Self {
        self.providers = n;
        self
    }

    /// How many main-service instances to start.
    pub fn mains(mut self, n: usize) -> Self {
        self.mains = n;
        self
    }

    /// Always start a local stack, even when `FLIGHT_SEARCH_URL` is set.
    pub fn local_only(mut self) -> Self {
        self.local_only = true;
        self
    }

    /// Configures Redis; with `tls`, both services connect over TLS only,
    /// trusting the server's CA through `REDIS_CA_FILE`. Implies `local_only`.
    /// On a cluster only the ACL users apply (every node loads them).
    pub fn redis(mut self, options: RedisOptions) -> Self {
        self.redis = options;
        self.local_only = true;
        self
    }

    /// Connects main-service as this ACL user (defined with [`StackBuilder::redis`]).
    pub fn main_user(mut self, name: &str, password: &str) -> Self {
        self.main_user = Some((name.into(), password.into()));
        self
    }

    /// Connects every provider as this ACL user.
    pub fn provider_user(mut self, name: &str, password: &str) -> Self {
        self.provider_user = Some((name.into(), password.into()));
        self
    }

    /// Start a local Redis Cluster, whatever `FLIGHT_SEARCH_REDIS` says.
    /// Implies `local_only`.
    pub fn cluster(mut self) -> Self {
        self.cluster = true;
        self.local_only = true;
        self
    }

    /// Starts (or attaches to) the stack.
    pub async fn start(self) -> Stack {
        if !self.local_only
            && let Ok(base_url) = std::env::var("FLIGHT_SEARCH_URL")
        {
            let redis = Vars::from_env().redis_target().expect(
                "FLIGHT_SEARCH_URL needs REDIS_URL or REDIS_CLUSTER_NODES (the stack's Redis)",
            );
            let base_url = base_url.trim_end_matches('/').to_owned();
            let instances = match std::env::var("FLIGHT_SEARCH_INSTANCES") {
                Ok(list) => list
                    .split(',')
                    .map(|url| url.trim().trim_end_matches('/').to_owned())
                    .filter(|url| !url.is_empty())
                    .collect(),
                Err(_) => vec![base_url.clone()],
            };
            assert!(
                !instances.is_empty(),
                "FLIGHT_SEARCH_INSTANCES names no instance"
            );
            return Stack {
                base_url,
                redis,
                instances,
                local: None,
            };
        }
        let (redis, main_redis, provider_redis) = if self.cluster || cluster_requested() {
            let cluster = RedisCluster::start_with_users(&self.redis.acl).await;
            let main_redis = RedisAccess::cluster(&cluster, self.main_user.as_ref());
            let provider_redis = RedisAccess::cluster(&cluster, self.provider_user.as_ref());
            (LocalRedis::Cluster(cluster), main_redis, provider_redis)
        } else {
            let redis = RedisServer::start_with(self.redis.clone()).await;
            let tls = self.redis.tls;
            let main_redis = RedisAccess::new(&redis, tls, self.main_user.as_ref());
            let provider_redis = RedisAccess::new(&redis, tls, self.provider_user.as_ref());
            (
                LocalRedis::Server(Box::new(redis)),
                main_redis,
                provider_redis,
            )
        };
        let pairs = |v: &[(String, String)]| -> Vec<(String, String)> { v.to_vec() };
        let main_env = pairs(&self.main_env);
        let mut mains = Vec::new();
        for _ in 0..self.mains {
            let env: Vec<(&str, &str)> = main_env
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            mains.push(main_redis.start(Kind::Main, &env).await);
        }
        let mut local = Local {
            redis,
            mains,
            providers: Vec::new(),
            provider_redis,
        };
        let mut provider_env = vec![("MOCK_LATENCY_MS".to_owned(), TEST_LATENCY_MS.to_owned())];
        provider_env.extend(pairs(&self.provider_env));
        for _ in 0..self.providers {
            let env: Vec<(&str, &str)> = provider_env
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            local.add_provider(&env).await;
        }
        Stack {
            base_url: local.mains[0].base_url(),
            redis: local.redis.target(),
            instances: local.mains.iter().map(Service::base_url).collect(),
            local: Some(local),
        }
    }
}

impl Stack {
    /// One main-service, one provider, fast suppliers.
    pub fn builder() -> StackBuilder {
        StackBuilder {
            main_env: Vec::new(),
            provider_env: Vec::new(),
            providers: 1,
            mains: 1,
            local_only: false,
            cluster: false,
            redis: RedisOptions::default(),
            main_user: None,
            provider_user: None,
        }
    }

    /// The default stack.
    pub async fn start() -> Stack {
        Stack::builder().start().await
    }

    /// True if and only if this test attached to a running stack.
    pub fn is_remote(&self) -> bool {
        self.local.is_none()
    }

    /// The local processes; panics for a remote stack (build with `local_only`).
    pub fn local(&mut self) -> &mut Local {
        self.local
            .as_mut()
            .expect("this test needs a local stack (StackBuilder::local_only)")
    }

    /// main-service base URL.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `base_url` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// The stream URL of a search.
    pub fn stream_url(&self, search_id: Uuid) -> String {
        self.url(&format!("/api/flights/search/{search_id}/stream"))
    }

    /// True if and only if the stack runs on a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.redis.is_cluster()
    }

    /// A new connection to the stack's Redis (a cluster connection on a
    /// cluster, so keys are found on whichever node holds them). Generous
    /// timeout: on a loaded machine a large read (a full-size queue) can take
    /// longer than the client's default of 500 ms.
    pub async fn redis(&self) -> RedisConnection {
        RedisLink::new(&self.redis)
            .expect("valid Redis address")
            .dedicated(Duration::from_secs(5), Duration::from_secs(30))
            .await
            .expect("connect to the stack's redis")
    }

    /// POSTs a search body and returns the raw response.
    pub async fn post(&self, body: &str) -> Response {
        http::post_json(&self.url("/api/flights/search"), body)
            .await
            .expect("POST search")
    }

    /// Submits a search that must be accepted; returns its id.
    pub async fn submit(&self, body: &str) -> Uuid {
        submit_to(&self.base_url, body).await
    }

    /// Opens a search's event stream (optionally resuming after `last_event_id`).
    pub async fn open(&self, search_id: Uuid, last_event_id: Option<&str>) -> SseStream {
        SseStream::open(&self.stream_url(search_id), last_event_id)
            .await
            .expect("open SSE stream")
    }

    /// Opens a search's stream directly at an instance, bypassing any load
    /// balancer: a reader that keeps the search's stream alive until it is
    /// dropped. Through a proxy that reuses its upstream connections, a
    /// response counts as read once the proxy has all of it, so a reader
    /// there stops holding the stream as soon as the search ends.
    pub async fn open_holder(&self, search_id: Uuid) -> SseStream {
        let url = format!(
            "{}/api/flights/search/{search_id}/stream",
            self.instances[0]
        );
        SseStream::open(&url, None).await.expect("open SSE stream")
    }

    /// Opens a search's stream and reads it to the terminal event.
    pub async fn events(&self, search_id: Uuid) -> Vec<Event> {
        let mut stream = self.open(search_id, None).await;
        assert_eq!(stream.status, 200, "stream of {search_id}");
        stream
            .until_terminal(Duration::from_secs(30))
            .await
            .expect("events to the terminal one")
    }

    /// Submits a search and reads its stream to the terminal event, which
    /// must be exactly once what a client may see ([`assert_exactly_once`]).
    pub async fn search(&self, body: &str) -> Vec<Event> {
        let id = self.submit(body).await;
        let events = self.events(id).await;
        assert_exactly_once(id, &events);
        events
    }

    /// True if and only if `base_url` is a load balancer in front of the
    /// instances rather than an instance itself.
    pub fn is_balanced(&self) -> bool {
        self.instances != [self.base_url.as_str()]
    }

    /// Base URLs of the main-service instances, bypassing any load balancer.
    pub fn instance_urls(&self) -> &[String] {
        &self.instances
    }

    /// The text of `/metrics` from whichever instance answers at `base_url`.
    pub async fn metrics(&self) -> String {
        metrics_of(&self.base_url).await
    }

    /// The text of `/metrics` of every main-service instance, in the order
    /// of [`Stack::instance_urls`].
    pub async fn instance_metrics(&self) -> Vec<String> {
        futures_util::future::join_all(self.instances.iter().map(|url| metrics_of(url))).await
    }

    /// The entries of a search's result stream as `(entry id, data JSON)`.
    pub async fn stored_events(&self, search_id: Uuid) -> Vec<(String, String)> {
        let mut redis = self.redis().await;
        let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
            .arg(contract::keys::results_key(search_id))
            .arg("-")
            .arg("+")
            .query_async(&mut redis)
            .await
            .expect("XRANGE");
        entries
            .into_iter()
            .map(|(id, mut fields)| {
                assert_eq!(fields.len(), 1, "{id}: one field per entry");
                let (name, data) = fields.remove(0);
                assert_eq!(name, contract::keys::DATA_FIELD);
                (id, data)
            })
            .collect()
    }

    /// Connections to the stack's Redis in CLIENT LIST, not counting the one asking.
    pub async fn redis_clients(&self) -> usize {
        let mut redis = self.redis().await;
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query_async(&mut redis)
            .await
            .expect("CLIENT LIST");
        list.lines().count() - 1
    }

    /// True if and only if the key exists in the stack's Redis.
    pub async fn key_exists(&self, key: &str) -> bool {
        let mut redis = self.redis().await;
        redis::cmd("EXISTS")
            .arg(key)
            .query_async::<i64>(&mut redis)
            .await
            .expect("EXISTS")
            == 1
    }
}

/// The text of `/metrics` at `base_url`, which must answer 200.
async fn metrics_of(base_url: &str) -> String {
    let response = http::get(&format!("{base_url}/metrics"))
        .await
        .expect("GET /metrics");
    assert_eq!(response.status, 200, "{base_url}/metrics");
    String::from_utf8(response.body.to_vec()).expect("metrics are text")
}

/// True if and only if `FLIGHT_SEARCH_REDIS=cluster`: local stacks then run on
/// a Redis Cluster.
pub fn cluster_requested() -> bool {
    std::env::var("FLIGHT_SEARCH_REDIS").is_ok_and(|v| v == "cluster")
}

/// Submits a search to the main-service at `base_url`, which must accept it;
/// returns its id.
pub async fn submit_to(base_url: &str, body: &str) -> Uuid {
    let response = http::post_json(&format!("{base_url}/api/flights/search"), body)
        .await
        .expect("POST search");
    assert_eq!(response.status, 202, "POST {body}: {:?}", response.body);
    documents::assert_matches(Schema::SearchAccepted, &response.json());
    let id = response.json()["data"]["search_id"]
        .as_str()
        .expect("search_id")
        .to_owned();
    id.parse().expect("search_id is a UUID")
}

/// Follows a search like a browser's EventSource: whenever the response ends
/// or fails before the terminal event, reconnects with the last id received.
/// Returns every event once; panics on a duplicate id or after `limit`.
pub async fn follow(stack_url: &str, search_id: Uuid, limit: Duration) -> Vec<Event> {
    let url = format!("{stack_url}/api/flights/search/{search_id}/stream");
    let deadline = tokio::time::Instant::now() + limit;
    let mut events: Vec<Event> = Vec::new();
    while tokio::time::Instant::now() < deadline {
        let last = events.last().map(|e| e.id.clone());
        let Ok(mut stream) = SseStream::open(&url, last.as_deref()).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if stream.status != 200 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        while let Ok(Some(event)) = stream.next_event(Duration::from_secs(5)).await {
            assert!(
                events.iter().all(|e| e.id != event.id),
                "duplicate event {} for {search_id}",
                event.id
            );
            let terminal = event.is_terminal();
            events.push(event);
            if terminal {
                return events;
            }
        }
    }
    panic!("{search_id}: no terminal event within {limit:?}; got {events:?}");
}
