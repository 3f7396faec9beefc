//! What readiness needs to know about Redis beyond "it answers": whether it
//! accepts writes ([`crate::write_refusal`]) and whether its eviction policy
//! can lose data ([`crate::memory_policy`]).
//!
//! [`RedisHealth::watch`] checks both while the link is up: a write probe every
//! second, and `INFO memory` at start, after every outage of the link and once a
//! minute (which also catches a `CONFIG SET` at run time). The probe is
//! `SET <probe key> "" XX`: Redis judges a write command before running it, so
//! it is refused exactly like any other write under OOM, READONLY or MISCONF,
//! and since the key never exists, `XX` makes it write nothing when accepted.

use std::sync::Arc;
use std::time::Duration;

use contract::keys::WRITE_PROBE_KEY;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::memory_policy::{self, MemoryPolicy};
use crate::redis_link::RedisLink;
use crate::write_refusal::{Refusal, WriteRefusals};

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
            if policy_read.is_none_or(|t| t.elapsed() >= POLICY_INTERVAL) {
                let info: redis::RedisResult<String> = redis::cmd("INFO")
                    .arg("memory")
                    .query_async(&mut conn)
                    .await;
                match info {
                    Ok(info) => {
                        if let Some(policy) = memory_policy::policy_in(&info) {
                            self.policy.record(policy);
                        }
                        policy_read = Some(Instant::now());
                    }
                    Err(error) => tracing::debug!(%error, "cannot read INFO memory"),
                }
            }
            let probe: redis::RedisResult<Option<String>> = redis::cmd("SET")
                .arg(WRITE_PROBE_KEY)
                .arg("")
                .arg("XX")
                .query_async(&mut conn)
                .await;
            match probe {
                Ok(_) => self.writes.accepted(),
                Err(error) => {
                    if self.writes.note(&error).is_none() {
                        tracing::debug!(%error, "write probe failed");
                    }
                }
            }
            self.writes.summarise(&waiting);
        }
    }
}
