//! Redis' `maxmemory-policy`, read from `INFO memory` (managed Redis often
//! disables `CONFIG`).
//!
//! Only `noeviction` is safe for this project: any other policy lets Redis
//! delete keys when memory runs short, and an evicted state hash turns an
//! accepted search into a 404, an evicted queue entry loses the search, and an
//! evicted reader count leaves streams behind. The services still run under
//! another policy, since refusing to start would turn a configuration
//! mistake into an outage; they log one warning naming the setting whenever
//! the policy they see changes, and `/readyz` reports it.

use std::sync::Mutex;

/// The one policy under which Redis never deletes data on its own.
pub const SAFE_POLICY: &str = "noeviction";

/// The value of `maxmemory_policy` in the text of `INFO memory`.
pub fn policy_in(info: &str) -> Option<&str> {
    info.lines()
        .find_map(|line| line.strip_prefix("maxmemory_policy:"))
        .map(str::trim)
}

/// The policy last read, shared by whoever reports on it.
#[derive(Debug, Default)]
pub(crate) struct MemoryPolicy {
    /// `None` until first read.
    seen: Mutex<Option<String>>,
}

impl MemoryPolicy {
    /// Records the policy just read; logs when it differs from the last one
    /// (a warning when it is not [`SAFE_POLICY`]).
    pub(crate) fn record(&self, policy: &str) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.as_deref() == Some(policy) {
            return;
        }
        let first = seen.is_none();
        *seen = Some(policy.to_owned());
        if policy != SAFE_POLICY {
            tracing::warn!(
                maxmemory_policy = policy,
                "redis maxmemory-policy is {policy}, not noeviction: under memory pressure redis \
                 deletes keys, which loses accepted searches and their state; set \
                 maxmemory-policy noeviction"
            );
        } else if !first {
            tracing::info!(
                maxmemory_policy = policy,
                "redis maxmemory-policy is noeviction again"
            );
        }
    }

    /// The warning `/readyz` shows, if the policy last read is not [`SAFE_POLICY`].
    pub(crate) fn warning(&self) -> Option<String> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.as_deref()
            .filter(|policy| *policy != SAFE_POLICY)
            .map(|policy| {
                format!(
                    "redis maxmemory-policy is {policy}, not noeviction: redis may evict \
                     accepted searches"
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_is_read_from_info_memory() {
        let info = "# Memory\r\nused_memory:1064072\r\nmaxmemory:0\r\nmaxmemory_policy:allkeys-lru\r\nallocator_frag_ratio:1.0\r\n";
        assert_eq!(policy_in(info), Some("allkeys-lru"));
        assert_eq!(policy_in("# Memory\r\nused_memory:1\r\n"), None);
    }

    #[test]
    fn only_noeviction_is_free_of_warnings() {
        let policy = MemoryPolicy::default();
        assert_eq!(policy.warning(), None);
        policy.record("allkeys-lru");
        let warning = policy.warning().unwrap();
        assert!(warning.contains("allkeys-lru"), "{warning}");
        policy.record("noeviction");
        assert_eq!(policy.warning(), None);
    }
}
