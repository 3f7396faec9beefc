//! Where Redis is: one server (`REDIS_URL`) or a Redis Cluster
//! (`REDIS_CLUSTER_NODES`), chosen once at start.
//!
//! Both modes use the same keys and scripts; only how connections are opened
//! differs, and that is decided here and in [`crate::redis_connection`].

use std::time::Duration;

use redis::cluster::{ClusterClient, ClusterClientBuilder};

use crate::config::{ConfigError, Vars};
use crate::redact::redact_url;
use crate::redis_endpoint::{RedisEndpoint, install_crypto_provider};
use crate::redis_failure::LinkFault;

/// The default of `REDIS_URL`.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// The Redis deployment a service talks to. Prints with passwords masked.
#[derive(Debug, Clone)]
pub enum RedisTarget {
    /// One server, or a primary behind a stable address (`REDIS_URL`).
    Server(Box<RedisEndpoint>),
    /// Seed nodes of a Redis Cluster (`REDIS_CLUSTER_NODES`); the client learns
    /// the rest of the topology from whichever answers first.
    Cluster(Vec<RedisEndpoint>),
}

impl RedisTarget {
    /// True if and only if this is a cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self, RedisTarget::Cluster(_))
    }

    /// `error` as a log line should show it (see [`RedisEndpoint::explain`]).
    pub fn explain(&self, error: &redis::RedisError) -> String {
        match self {
            RedisTarget::Server(endpoint) => endpoint.explain(error),
            RedisTarget::Cluster(seeds) => seeds
                .first()
                .map_or_else(|| error.to_string(), |seed| seed.explain(error)),
        }
    }

    /// The class of a failure to reach or use this target (see [`LinkFault`]).
    pub fn fault(&self, error: &redis::RedisError) -> LinkFault {
        let tls = match self {
            RedisTarget::Server(endpoint) => endpoint.is_tls(),
            RedisTarget::Cluster(seeds) => seeds.first().is_some_and(RedisEndpoint::is_tls),
        };
        LinkFault::of(error, tls)
    }

    /// The cluster client for `seeds`, every node connection bounded by
    /// `connect` and every answer by `response`. The seeds share one set of
    /// TLS settings (the same variables as `REDIS_URL`), which the client
    /// applies to every node it discovers.
    pub(crate) fn cluster_client(
        seeds: &[RedisEndpoint],
        connect: Duration,
        response: Duration,
    ) -> redis::RedisResult<ClusterClient> {
        install_crypto_provider();
        let mut builder = ClusterClientBuilder::new(
            seeds
                .iter()
                .map(|seed| seed.connection_info().clone())
                .collect::<Vec<_>>(),
        )
        .connection_timeout(connect)
        .response_timeout(response)
        // RESP3 carries sharded pub/sub messages on an ordinary connection.
        .use_protocol(redis::ProtocolVersion::RESP3);
        if let Some(certs) = seeds.first().and_then(RedisEndpoint::tls_certificates) {
            builder = builder.certs(certs);
        }
        builder.build()
    }
}

impl std::fmt::Display for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RedisTarget::Server(endpoint) => endpoint.fmt(f),
            RedisTarget::Cluster(seeds) => {
                let shown: Vec<String> = seeds.iter().map(ToString::to_string).collect();
                f.write_str(&shown.join(","))
            }
        }
    }
}

impl<F: Fn(&str) -> Option<String>> Vars<F> {
    /// `REDIS_CLUSTER_NODES` (comma-separated seed URLs) when set, else
    /// `REDIS_URL` (default `redis://127.0.0.1:6379`), both with the TLS
    /// settings of [`Vars::redis_tls`]. Setting both is an error: a service
    /// must never guess which deployment was meant. Errors show URLs with
    /// their passwords masked.
    pub fn redis_target(&self) -> Result<RedisTarget, ConfigError> {
        let Some(nodes) = self.raw("REDIS_CLUSTER_NODES") else {
            return self
                .redis_endpoint("REDIS_URL", DEFAULT_REDIS_URL)
                .map(|endpoint| RedisTarget::Server(Box::new(endpoint)));
        };
        let invalid = |reason: String| ConfigError {
            name: "REDIS_CLUSTER_NODES",
            value: nodes
                .split(',')
                .map(redact_url)
                .collect::<Vec<_>>()
                .join(","),
            reason,
        };
        if self.raw("REDIS_URL").is_some() {
            return Err(invalid(
                "cannot be combined with REDIS_URL; set only one of them".to_owned(),
            ));
        }
        let tls = self.redis_tls()?;
        let mut seeds = Vec::new();
        for seed in nodes.split(',').map(str::trim) {
            if !(seed.starts_with("redis://") || seed.starts_with("rediss://")) {
                return Err(invalid(format!(
                    "expected comma-separated redis:// or rediss:// URLs, got {:?}",
                    redact_url(seed)
                )));
            }
            let endpoint = RedisEndpoint::parse(seed, tls.clone()).map_err(&invalid)?;
            seeds.push(endpoint);
        }
        RedisTarget::cluster_client(&seeds, Duration::from_secs(1), Duration::from_secs(1))
            .map_err(|e| invalid(format!("the cluster client refuses these seeds ({e})")))?;
        Ok(RedisTarget::Cluster(seeds))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_url_is_the_default_target() {
        let default = Vars::from_pairs(&[]).redis_target().unwrap();
        assert!(!default.is_cluster());
        assert_eq!(default.to_string(), DEFAULT_REDIS_URL);
        let set = Vars::from_pairs(&[("REDIS_URL", "redis://redis:6379/2")])
            .redis_target()
            .unwrap();
        assert_eq!(set.to_string(), "redis://redis:6379/2");
    }

    #[test]
    fn cluster_nodes_are_split_and_trimmed() {
        let vars = Vars::from_pairs(&[(
            "REDIS_CLUSTER_NODES",
            "redis://app:s3cret@10.0.0.1:7000, redis://app:s3cret@10.0.0.2:7000",
        )]);
        let target = vars.redis_target().unwrap();
        assert!(target.is_cluster());
        assert_eq!(
            target.to_string(),
            "redis://app:***@10.0.0.1:7000,redis://app:***@10.0.0.2:7000"
        );
    }

    #[test]
    fn both_variables_at_once_are_refused() {
        let err = Vars::from_pairs(&[
            ("REDIS_URL", "redis://127.0.0.1:6379"),
            ("REDIS_CLUSTER_NODES", "redis://127.0.0.1:7000"),
        ])
        .redis_target()
        .unwrap_err();
        assert_eq!(err.name, "REDIS_CLUSTER_NODES");
        assert!(err.reason.contains("REDIS_URL"), "{err}");
    }

    #[test]
    fn bad_seed_lists_are_refused() {
        for bad in [
            "redis://127.0.0.1:7000,",
            "127.0.0.1:7000",
            "http://127.0.0.1:7000",
            "redis://:s3cret@127.0.0.1:7000,redis://:s3cret@host:port",
        ] {
            let vars = Vars::from_pairs(&[("REDIS_CLUSTER_NODES", bad)]);
            let err = vars.redis_target().unwrap_err();
            assert!(!err.to_string().contains("s3cret"), "{err}");
        }
    }
}
