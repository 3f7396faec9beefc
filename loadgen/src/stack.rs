//! The running deployment under test, as the load generator finds it:
//! main-service's address and process, and Redis. Nothing is started here; a
//! scenario that cannot reach what it needs stops before sending load.

use redis::aio::MultiplexedConnection;
use service_runtime::redis_connection::RedisConnection;
use tokio::time::Duration;

use crate::cli::Common;
use crate::http::{HttpConnection, Target};
use crate::keyspace;
use crate::sampler::Probe;
use crate::{procfs, redis_info};

/// main-service's binary name, as found in `/proc`.
pub const MAIN_SERVICE: &str = "main-service";

/// provider-service's binary name.
pub const PROVIDER_SERVICE: &str = "provider-service";

/// main-service's default `SEARCH_TIMEOUT_SECS`.
const DEFAULT_SEARCH_TIMEOUT_SECS: u64 = 60;

/// What a scenario measures and loads.
pub struct Stack {
    /// main-service's HTTP address.
    pub target: Target,
    /// For opening further Redis connections (the sampler's).
    pub redis_client: redis::Client,
    /// The load generator's connection for `INFO` (one node on a cluster).
    pub redis: MultiplexedConnection,
    /// Its connection for reading search keys back.
    pub keys: RedisConnection,
    /// Redis' TCP port, to count main-service's connections to it.
    pub redis_port: Option<u16>,
    /// main-service's process, when it runs on this machine.
    pub main_pid: Option<u32>,
}

/// The single process running binary `name` for which `ours` holds (other
/// deployments may run on the same machine): `None` if there is none, an error
/// if there are several (the caller must then name one).
pub fn find_process(name: &str, ours: impl Fn(u32) -> bool) -> Result<Option<u32>, String> {
    let pids = procfs::pids_named(name).map_err(|e| format!("scanning /proc: {e}"))?;
    let pids: Vec<u32> = pids.into_iter().filter(|&pid| ours(pid)).collect();
    match pids.as_slice() {
        [] => Ok(None),
        [pid] => Ok(Some(*pid)),
        many => Err(format!(
            "several {name} processes ({many:?}): pick one with its --*-pid option"
        )),
    }
}

impl Stack {
    /// Checks that main-service is ready and Redis answers, and finds
    /// main-service's process.
    pub async fn connect(common: &Common) -> Result<Stack, String> {
        let target = Target::resolve(&common.url).await?;
        let mut http = HttpConnection::new(target.clone());
        let ready = tokio::time::timeout(
            Duration::from_secs(5),
            http.request("GET", "/readyz", &[], b""),
        )
        .await
        .map_err(|_| format!("{}/readyz did not answer within 5 s", common.url))?
        .map_err(|e| format!("{}/readyz: {e} (is main-service running?)", common.url))?;
        if ready.status != 200 {
            return Err(format!(
                "{}/readyz answered {}: main-service is not ready",
                common.url, ready.status
            ));
        }
        let redis_client = redis::Client::open(common.redis.as_str())
            .map_err(|e| format!("--redis {}: {e}", common.redis))?;
        let mut redis = tokio::time::timeout(
            Duration::from_secs(5),
            redis_client.get_multiplexed_async_connection(),
        )
        .await
        .map_err(|_| format!("{}: no connection within 5 s", common.redis))?
        .map_err(|e| format!("{}: {e}", common.redis))?;
        redis_info::connected_clients(&mut redis)
            .await
            .map_err(|e| format!("{}: INFO clients: {e}", common.redis))?;
        let main_pid = match common.main_pid {
            Some(pid) => Some(pid),
            None => {
                let port = target.addr.port();
                find_process(MAIN_SERVICE, |pid| {
                    procfs::listens_on(pid, port).unwrap_or(false)
                })?
            }
        };
        if main_pid.is_none() {
            eprintln!(
                "loadgen: no {MAIN_SERVICE} process listening on the --url port found: RSS, CPU and Redis connection counts will be missing (use --main-pid)"
            );
        }
        let keys = keyspace::open(common).await?;
        Ok(Stack {
            target,
            keys,
            redis_port: redis_info::port_of(&redis_client),
            redis_client,
            redis,
            main_pid,
        })
    }

    /// The single provider-service process connected to this Redis, if any.
    pub fn provider_pid(&self) -> Result<Option<u32>, String> {
        let Some(port) = self.redis_port else {
            return Ok(None);
        };
        find_process(PROVIDER_SERVICE, |pid| {
            procfs::connections_to_port(pid, port).is_ok_and(|n| n > 0)
        })
    }

    /// A probe of this deployment on a connection of its own.
    pub async fn probe(&self) -> Result<Probe, String> {
        let conn = self
            .redis_client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| format!("sampler's Redis connection: {e}"))?;
        Ok(Probe::new(
            self.target.clone(),
            self.main_pid,
            self.redis_port,
            conn,
        ))
    }

    /// main-service's `SEARCH_TIMEOUT_SECS` as read from its environment, when
    /// readable.
    pub fn search_timeout_secs(&self) -> Option<u64> {
        let pid = self.main_pid?;
        match procfs::environ_var(pid, "SEARCH_TIMEOUT_SECS").ok()? {
            None => Some(DEFAULT_SEARCH_TIMEOUT_SECS),
            Some(value) => value.parse().ok(),
        }
    }
}
