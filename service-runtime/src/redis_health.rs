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

use std::sync::Arc;
use std::time::Duration;

use std::sync::Mutex;

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
    pub writes: WriteRefusals,
    /// The eviction policy last read.
    pub policy: MemoryPolicy,
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
        let mut unsafe_policies = Vec::new();
        for (node, reply) in answers {
            let info = reply.and_then(|info| Ok(redis::from_redis_value::<String>(info)?));
            let policy = match &info {
                Ok(info) => memory_policy::policy_in(info),
                Err(error) => {
                    tracing::debug!(%error, node, "cannot read INFO memory");
                    return false;
                }
            };
            match (policy, node) {
                (None | Some(SAFE_POLICY), _) => {}
                (Some(policy), None) => unsafe_policies.push(policy.to_owned()),
                (Some(policy), Some(node)) => unsafe_policies.push(format!("{policy} on {node}")),
            }
        }
        unsafe_policies.sort();
        if unsafe_policies.is_empty() {
            self.policy.record(SAFE_POLICY);
        } else {
            self.policy.record(&unsafe_policies.join(", "));
        }
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
