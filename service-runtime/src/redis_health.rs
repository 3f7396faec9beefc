//! What readiness needs to know about Redis beyond "it answers": whether it
//! accepts writes ([`crate::write_refusal`]) and whether its eviction policy
//! can lose data ([`crate::memory_policy`]).
//!
//! [`RedisHealth::watch`] checks both while the link is up: a write probe every
//! second, and `INFO memory` at start, after every outage of the link and once a
//! minute (which also catches a `CONFIG SET` at run time). The probe is
//! [`WRITE_PROBE`], a script declared as a writing one that writes nothing:
//! Redis judges a write command before running it, so it is refused exactly
//! like any other write under OOM, READONLY or MISCONF, and it names no key.
//!
//! Both go to every master ([`RedisConnection::on_every_master`]): on a
//! cluster each master holds a share of the searches, and a refusal or an
//! evicting policy on any one of them loses or stalls that share. Writes count
//! as accepted only when every master accepts the probe; the policy reported
//! is the unsafe one of any master, named with its address.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::memory_policy::{self, MemoryPolicy, SAFE_POLICY};
use crate::redis_connection::RedisConnection;
use crate::redis_link::RedisLink;
use crate::write_refusal::{Refusal, WriteRefusals};

/// The write probe: a script whose shebang line declares flags (none), so
/// Redis treats it as a write that may grow memory and refuses it under OOM,
/// on a read-only replica and after a failed save, like any write; it touches
/// no key, so it runs on whichever master it is sent to.
pub const WRITE_PROBE: &str = "#!lua\nreturn 0";

/// Interval of the write probe.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// Interval of the policy check while the link stays up.
const POLICY_INTERVAL: Duration = Duration::from_secs(60);

/// Shared view of Redis' write state and eviction policy.
#[derive(Debug, Default)]
pub struct RedisHealth {
    /// Whether writes are refused, noted by every writer and by the probe.
    writes: WriteRefusals,
    /// The eviction policy last read.
    policy: MemoryPolicy,
    /// The cluster masters that refused the latest probe, by address (empty on
    /// a single server, where the refusal says it all).
    refusing: Mutex<Vec<String>>,
}

impl RedisHealth {
    /// Nothing known yet: writes assumed accepted, policy unread.
    pub fn new() -> Arc<RedisHealth> {
        Arc::new(RedisHealth::default())
    }

    /// Why the service is not ready because of Redis' write state, if it is not.
    pub fn refusal(&self) -> Option<Refusal> {
        self.writes.current()
    }

    /// Notes a failed write: returns the refusal if and only if `error` is
    /// Redis refusing writes (logged here, once per change of state); any
    /// other error is the caller's to handle.
    pub fn note_write_failure(&self, error: &redis::RedisError) -> Option<Refusal> {
        self.writes.note(error)
    }

    /// True if and only if Redis has accepted writes for at least `period`
    /// (always, until a refusal is seen): long enough for writes refused
    /// meanwhile, such as heartbeats, to have been made again.
    pub fn writes_accepted_for(&self, period: Duration) -> bool {
        self.writes.accepted_for(period)
    }

    /// [`RedisHealth::refusal`] as `/readyz` explains it, naming the refusing
    /// masters on a cluster.
    pub fn refusal_reason(&self) -> Option<String> {
        let refusal = self.refusal()?;
        let refusing = self.refusing.lock().unwrap_or_else(|e| e.into_inner());
        Some(if refusing.is_empty() {
            refusal.explain().to_owned()
        } else {
            format!("{} on master {}", refusal.explain(), refusing.join(", "))
        })
    }

    /// Warnings for `/readyz` that do not make the service unready.
    pub fn warnings(&self) -> Vec<String> {
        self.policy.warning().into_iter().collect()
    }

    /// Probes and checks until `shutdown` (see the module docs). `waiting`
    /// describes, for the periodic summary, what the refusal holds up.
    pub async fn watch(
        self: Arc<Self>,
        link: RedisLink,
        waiting: impl Fn() -> String + Send + 'static,
        shutdown: CancellationToken,
    ) {
        let mut conn = link.commands();
        let mut policy_read: Option<Instant> = None;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(PROBE_INTERVAL) => {}
            }
            if !link.is_ready() {
                // Re-read the policy once the link is back: it may be another server.
                policy_read = None;
                continue;
            }
            if policy_read.is_none_or(|t| t.elapsed() >= POLICY_INTERVAL)
                && self.read_policy(&mut conn).await
            {
                policy_read = Some(Instant::now());
            }
            self.probe(&mut conn).await;
            self.writes.summarise(&waiting);
        }
    }

    /// Reads `INFO memory` of every master and records the policy; false if
    /// any master's could not be read.
    async fn read_policy(&self, conn: &mut RedisConnection) -> bool {
        let answers = match conn.on_every_master(redis::cmd("INFO").arg("memory")).await {
            Ok(answers) => answers,
            Err(error) => {
                tracing::debug!(%error, "cannot read INFO memory");
                return false;
            }
        };
        let mut read = Vec::new();
        for (node, reply) in answers {
            match reply.and_then(|info| Ok(redis::from_redis_value::<String>(info)?)) {
                Ok(info) => read.push((node, info)),
                Err(error) => {
                    tracing::debug!(%error, node, "cannot read INFO memory");
                    return false;
                }
            }
        }
        self.policy.record(&overall_policy(&read));
        true
    }

    /// Sends the write probe to every master and notes whether all accepted it.
    async fn probe(&self, conn: &mut RedisConnection) {
        let answers = match conn
            .on_every_master(redis::cmd("EVAL").arg(WRITE_PROBE).arg(0))
            .await
        {
            Ok(answers) => answers,
            Err(error) => {
                tracing::debug!(%error, "write probe failed");
                return;
            }
        };
        let mut refusal = None;
        let mut refusing = Vec::new();
        let mut all_accepted = true;
        for (node, reply) in answers {
            let Err(error) = reply.map(|_: Value| ()) else {
                continue;
            };
            all_accepted = false;
            if Refusal::of(&error).is_some() {
                refusing.extend(node);
                refusal.get_or_insert(error);
            } else {
                tracing::debug!(%error, node, "write probe failed");
            }
        }
        refusing.sort();
        *self.refusing.lock().unwrap_or_else(|e| e.into_inner()) = refusing;
        if let Some(error) = refusal {
            self.writes.note(&error);
        } else if all_accepted {
            self.writes.accepted();
        }
    }
}

/// The policy to report, from each master's address (`None` on a single
/// server) and `INFO memory` text: [`SAFE_POLICY`] when every master has it,
/// else each other policy, named with its master on a cluster.
fn overall_policy(masters: &[(Option<String>, String)]) -> String {
    let mut unsafe_policies: Vec<String> = masters
        .iter()
        .filter_map(|(node, info)| {
            let policy = memory_policy::policy_in(info).filter(|p| *p != SAFE_POLICY)?;
            Some(match node {
                Some(node) => format!("{policy} on {node}"),
                None => policy.to_owned(),
            })
        })
        .collect();
    unsafe_policies.sort();
    if unsafe_policies.is_empty() {
        SAFE_POLICY.to_owned()
    } else {
        unsafe_policies.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(policy: &str) -> String {
        format!("# Memory\r\nmaxmemory:0\r\nmaxmemory_policy:{policy}\r\n")
    }

    #[test]
    fn every_master_s_policy_counts_and_an_unsafe_one_is_named() {
        assert_eq!(overall_policy(&[(None, info("noeviction"))]), "noeviction");
        assert_eq!(
            overall_policy(&[(None, info("allkeys-lru"))]),
            "allkeys-lru"
        );
        let node = |port: u16, policy: &str| (Some(format!("127.0.0.1:{port}")), info(policy));
        let safe = [node(7001, "noeviction"), node(7002, "noeviction")];
        assert_eq!(overall_policy(&safe), "noeviction");
        let mixed = [
            node(7003, "volatile-lru"),
            node(7001, "noeviction"),
            node(7002, "allkeys-lru"),
        ];
        assert_eq!(
            overall_policy(&mixed),
            "allkeys-lru on 127.0.0.1:7002, volatile-lru on 127.0.0.1:7003"
        );
    }
}
