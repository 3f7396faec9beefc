//! Process plumbing shared by `main-service` and `provider-service`: everything a
//! service needs around its own domain logic, written once.
//!
//! * [`config`]: typed configuration read from environment variables through a
//!   lookup function, failing fast with `NAME=value is not valid: why`.
//! * [`files`]: the one gate for files a setting names (CA, client
//!   certificate and key): a regular file of at most 1 MiB, or a clear error.
//! * [`telemetry`]: tracing setup, text or JSON (`LOG_FORMAT`), and traces:
//!   [`traces`] reads the OpenTelemetry settings, [`trace_export`] sends
//!   spans through a bounded queue, [`trace_context`] carries a search's trace
//!   across processes (`traceparent`) and exports [`search_span!`] at the root.
//! * [`shutdown`]: one cancellation token per process, fired by SIGINT or SIGTERM.
//! * [`http_server`]: the HTTP/1.1 accept loop of every server in the workspace,
//!   with its timeouts, TCP keepalive and drain bounded by a grace period.
//! * [`http_answer`]: the answers those servers build alike: text, JSON, and
//!   `/healthz` and `/readyz` in the one shape both services share.
//! * [`redis_endpoint`]: a `redis://`/`rediss://` URL and the CAs to trust,
//!   turned into client settings; [`redact`] keeps its password out of output.
//! * [`redis_link`]: the shared Redis connection, usable while Redis is down,
//!   with readiness, and the up/down state of dedicated connections.
//! * [`backoff`]: the capped exponential backoff with equal jitter of every
//!   reconnect and retry loop in both services.
//! * [`redis_health`]: whether Redis accepts writes ([`write_refusal`]) and
//!   whether its eviction policy can lose data ([`memory_policy`]).
//! * [`redis_target`], [`redis_connection`]: one server or a Redis Cluster,
//!   chosen by configuration, behind one connection type.
//! * [`process_metrics`]: the standard `process_*` metrics (open and allowed
//!   file descriptors, memory, CPU) both services append to their `/metrics`.
//! * [`probe`]: the `--healthcheck` client used by container health checks.
//! * [`streams`]: consumer-group creation and event appends, the Redis writes
//!   both services make to the contract's streams.
//! * [`redis_reply`]: decoding the Redis replies both services read: stream
//!   entries and field lists.
//! * [`redis_failure`]: the Redis error codes the services branch on, and a
//!   failed command labelled with its step.

pub mod backoff;
pub mod config;
pub mod files;
pub mod http_answer;
pub mod http_server;
pub mod memory_policy;
pub mod probe;
pub mod process_metrics;
pub mod redact;
pub mod redis_connection;
pub mod redis_endpoint;
pub mod redis_failure;
pub mod redis_health;
pub mod redis_link;
pub mod redis_reply;
pub mod redis_target;
pub mod shutdown;
pub mod streams;
pub mod telemetry;
pub mod trace_context;
pub mod trace_export;
pub mod traces;
pub mod write_refusal;
