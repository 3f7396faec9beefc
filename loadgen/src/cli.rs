//! Command line: one subcommand per scenario, plus the hidden `worker`.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Benchmarks SSE delivery of a running flight-search stack.
///
/// Start redis-server and main-service first (and provider-service for
/// `throughput` only); loadgen starts nothing but its own worker processes.
/// Progress goes to stderr; stdout gets the human report and, last, one JSON
/// line with every figure. Exit status 0 only if nothing failed and nothing was lost.
#[derive(Debug, Parser)]
#[command(name = "loadgen", version)]
pub struct Cli {
    /// The scenario to run.
    #[command(subcommand)]
    pub scenario: Scenario,
}

/// The scenarios.
#[derive(Debug, Subcommand)]
pub enum Scenario {
    /// Hold many idle SSE streams, measure main-service's memory and Redis
    /// connections, then deliver events to all of them.
    ///
    /// POSTs --searches searches, opens --connections streams spread evenly over
    /// them (from worker processes), holds them idle for --hold while sampling,
    /// then appends processing, --results-per-search results and completed to
    /// every search through APPEND_EVENT and checks that every stream receives
    /// every event exactly once, in order, and then ends. loadgen is the
    /// producer: provider-service must NOT be running. main-service's
    /// SEARCH_TIMEOUT_SECS must exceed the connect time plus --hold (e.g. 600),
    /// or its timeout events pre-empt the delivery.
    Idle(IdleArgs),
    /// Measure append → client delivery latency at a steady event rate.
    ///
    /// POSTs --searches searches with one SSE client each, then appends events
    /// at about --rate per second in total, spread over all searches, and
    /// reports the time from right before each EVALSHA to its receipt by the
    /// client. loadgen is the producer: provider-service must NOT be running.
    Latency(LatencyArgs),
    /// Hold many idle streams, then deliver events at a steady rate: the tail
    /// latency that periodic work in main-service causes.
    ///
    /// POSTs --streams searches with one SSE client each, holds them idle for
    /// --hold while counting main-service's Redis commands over its second half
    /// (INFO commandstats, less loadgen's own INFO/CLIENT/HELLO), then appends processing,
    /// --results-per-search results (default 0) and completed to every search
    /// at --rate events per second in total, and reports the delivery latency
    /// (p50/p99/p99.9/max) and the idle commands per second. loadgen is the
    /// producer: provider-service must NOT be running, and main-service's
    /// SEARCH_TIMEOUT_SECS must exceed connecting plus --hold plus producing.
    Tail(TailArgs),
    /// End-to-end searches per second with the real provider-service.
    ///
    /// provider-service must be running (MOCK_LATENCY_MS=0 for a benchmark).
    /// --concurrency lanes each POST a search, read its stream to the terminal
    /// event, and start the next, until --searches are done.
    Throughput(ThroughputArgs),
    /// Offer more searches than the providers can finish, and check that no
    /// accepted search is lost.
    ///
    /// POSTs at --rate per second (open loop) for --duration, then waits up
    /// to --drain for every accepted search's terminal event. Reports
    /// accepted, 503 and 429 per second, completed per second, POST latency,
    /// the backlog peak and accepted-but-lost (must be 0). provider-service
    /// must be running with realistic MOCK_LATENCY_MS; no client reads the
    /// streams.
    Overload(OverloadArgs),
    /// Internal: one process of SSE clients, driven over stdin/stdout.
    #[command(hide = true)]
    Worker,
}

/// Options every scenario shares.
#[derive(Debug, Args)]
pub struct Common {
    /// main-service base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// The Redis main-service uses.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    pub redis: String,
    /// Comma-separated seed URLs of the Redis Cluster main-service uses: search
    /// keys are then read and events appended through a cluster connection,
    /// while `--redis` names the one node whose INFO is sampled.
    #[arg(long)]
    pub redis_cluster: Option<String>,
    /// main-service's process id; by default the only process named main-service.
    #[arg(long)]
    pub main_pid: Option<u32>,
    /// How often to sample RSS, Redis clients and /metrics [default: 1s;
    /// 100ms for throughput, whose run lasts seconds].
    #[arg(long, value_parser = parse_duration)]
    pub sample_interval: Option<Duration>,
    /// Overall limit for the scenario; by default derived from its size.
    #[arg(long, value_parser = parse_duration)]
    pub deadline: Option<Duration>,
}

/// How SSE clients are spread over worker processes.
#[derive(Debug, Args)]
pub struct FleetArgs {
    /// SSE clients per worker process (each needs one descriptor per client;
    /// the per-process limit here is 20,000).
    #[arg(long, default_value_t = 5000)]
    pub clients_per_worker: usize,
    /// Loopback source addresses to spread clients over (127.0.0.2, …); each
    /// gives its own ~28k ephemeral ports. Default: one per 10,000 clients,
    /// none (kernel's choice) below that.
    #[arg(long)]
    pub source_addrs: Option<usize>,
    /// Clients connecting at once per worker.
    #[arg(long, default_value_t = 64)]
    pub connect_concurrency: usize,
    /// `result` events per search, between processing and completed (max 8)
    /// [default: 3; 0 for tail].
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=8))]
    pub results_per_search: Option<u8>,
}

/// `idle` options.
#[derive(Debug, Args)]
pub struct IdleArgs {
    /// Shared options.
    #[command(flatten)]
    pub common: Common,
    /// Client placement.
    #[command(flatten)]
    pub fleet: FleetArgs,
    /// SSE connections to hold.
    #[arg(long, default_value_t = 19_000)]
    pub connections: usize,
    /// Searches the connections are spread over; default connections / 19
    /// (19 readers per search), at least 1.
    #[arg(long)]
    pub searches: Option<usize>,
    /// How long to hold the connections idle before delivering.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub hold: Duration,
    /// Appends per second during delivery; default: as fast as Redis answers.
    #[arg(long)]
    pub rate: Option<f64>,
}

/// `latency` options.
#[derive(Debug, Args)]
pub struct LatencyArgs {
    /// Shared options.
    #[command(flatten)]
    pub common: Common,
    /// Client placement.
    #[command(flatten)]
    pub fleet: FleetArgs,
    /// Searches, each with one SSE client.
    #[arg(long, default_value_t = 1000)]
    pub searches: usize,
    /// Events appended per second, over all searches.
    #[arg(long, default_value_t = 500.0)]
    pub rate: f64,
}

/// `tail` options.
#[derive(Debug, Args)]
pub struct TailArgs {
    /// Shared options.
    #[command(flatten)]
    pub common: Common,
    /// Client placement.
    #[command(flatten)]
    pub fleet: FleetArgs,
    /// SSE streams, each on a search of its own.
    #[arg(long, default_value_t = 10_000)]
    pub streams: usize,
    /// How long to hold the streams idle before the events start.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub hold: Duration,
    /// Events appended per second, over all searches.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
}

/// `throughput` options.
#[derive(Debug, Args)]
pub struct ThroughputArgs {
    /// Shared options.
    #[command(flatten)]
    pub common: Common,
    /// Searches to run end to end.
    #[arg(long, default_value_t = 5000)]
    pub searches: usize,
    /// Searches in flight at once (POST, then its stream to the end).
    #[arg(long, default_value_t = 200)]
    pub concurrency: usize,
    /// Distinct questions: search `i` departs `i mod dates` days after the
    /// first date, so a supplier answer cache sees each question repeated
    /// (1 to 301; 1 asks the same question every time).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=301))]
    pub dates: u16,
    /// provider-service's process id, for its CPU; by default the only process
    /// named provider-service, if any.
    #[arg(long)]
    pub provider_pid: Option<u32>,
}

/// `overload` options.
#[derive(Debug, Args)]
pub struct OverloadArgs {
    /// Shared options (only --url and --redis are used).
    #[command(flatten)]
    pub common: Common,
    /// POSTs offered per second.
    #[arg(long)]
    pub rate: f64,
    /// How long to offer them.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Most POSTs in flight; an arrival finding all busy is counted, not sent.
    #[arg(long, default_value_t = 256)]
    pub lanes: usize,
    /// Synthetic clients named in X-Forwarded-For, in turn (0: none), for
    /// RATE_LIMIT_PER_CLIENT with TRUSTED_PROXIES=127.0.0.1.
    #[arg(long, default_value_t = 0)]
    pub clients: usize,
    /// Longest wait for the accepted searches to finish after the offer.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub drain: Duration,
}

/// Parses `250ms`, `60s`, `2m` or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 250ms, 60s or 2m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("{text:?}: unit must be ms, s or m")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5h").is_err());
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["loadgen", "idle", "--connections", "1000", "--hold", "5s"])
            .unwrap();
        let Scenario::Idle(args) = cli.scenario else {
            panic!("not idle")
        };
        assert_eq!(
            (args.connections, args.hold, args.searches),
            (1000, Duration::from_secs(5), None)
        );
        let cli = Cli::try_parse_from(["loadgen", "tail", "--streams", "500"]).unwrap();
        let Scenario::Tail(args) = cli.scenario else {
            panic!("not tail")
        };
        assert_eq!(
            (
                args.streams,
                args.hold,
                args.rate,
                args.fleet.results_per_search
            ),
            (500, Duration::from_secs(10), 1000.0, None)
        );
    }
}
