//! `loadgen`: benchmarks SSE delivery of a running flight-search deployment.
//!
//! Five scenarios, each a subcommand (see [`cli`]):
//!
//! * `idle`: thousands of SSE clients held idle (spread over worker processes
//!   and loopback source addresses), sampling main-service's RSS and Redis
//!   connections, then one delivery to all of them ([`delivery`]).
//! * `latency`: one client per search and a steady event rate, measuring the
//!   time from right before each `APPEND_EVENT` to its receipt ([`delivery`]).
//! * `tail`: one client per search held idle, counting main-service's Redis
//!   commands, then a steady event rate: the latency tail ([`delivery`]).
//! * `throughput`: end-to-end searches per second with the real
//!   provider-service ([`throughput`]).
//! * `overload`: searches offered above capacity; admission, rate limit and
//!   accepted-but-lost ([`overload`]).
//!
//! In the first three the load generator is the producer ([`producer`]); every
//! client's events are checked against the entry ids Redis recorded
//! ([`verify`]): exactly once, in order, response ended after the terminal event.
//! On a Redis Cluster (`--redis-cluster`) keys are read and events appended
//! through a cluster connection ([`keyspace`]); `--redis` then names the one
//! node whose `INFO` is sampled.
//! The SSE clients ([`subscriber`]) speak HTTP/1.1 directly over `TcpStream`
//! ([`http`], [`sse`]) so that tens of thousands cost little. Measurements of
//! the system come from `/proc` ([`procfs`]), Redis `INFO` ([`redis_info`]) and
//! main-service's `/metrics` ([`sampler`], [`cpu`]); what the machine itself
//! took (steal, hiccups) from [`machine`].

pub mod cli;
pub mod clock;
pub mod cpu;
pub mod delivery;
pub mod errors;
pub mod fleet;
pub mod http;
pub mod keyspace;
pub mod machine;
pub mod overload;
pub mod procfs;
pub mod producer;
pub mod redis_info;
pub mod report;
pub mod sampler;
pub mod searches;
pub mod sse;
pub mod stack;
pub mod subscriber;
pub mod summary;
pub mod throughput;
pub mod verify;
pub mod worker;

use std::process::ExitCode;
use std::time::Duration;

use cli::{Cli, Scenario};
use delivery::DeliveryRun;
use overload::OverloadReport;
use report::Report;

/// Runs the command line's scenario, prints its report, and returns the exit
/// status: 0 if and only if nothing failed and nothing was lost, 1 if the run
/// found failures, 2 if it could not run.
pub fn run(cli: Cli) -> ExitCode {
    if let Scenario::Worker = cli.scenario {
        return run_worker();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match &cli.scenario {
        Scenario::Overload(args) => conclude(runtime.block_on(overload::run(args))),
        scenario => conclude(runtime.block_on(measure(scenario))),
    }
}

/// A worker process: holds its share of idle clients for the parent.
fn run_worker() -> ExitCode {
    // Many idle sockets need no parallelism; one thread keeps a worker small.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(worker::run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen {e}");
            ExitCode::from(2)
        }
    }
}

/// Runs one of the delivery scenarios or `throughput`.
async fn measure(scenario: &Scenario) -> Result<Report, String> {
    match scenario {
        Scenario::Idle(args) => {
            DeliveryRun {
                name: "idle",
                common: &args.common,
                fleet: &args.fleet,
                connections: args.connections,
                searches: args.searches.unwrap_or(args.connections / 19).max(1),
                hold: args.hold,
                rate: args.rate,
                results: args.fleet.results_per_search.unwrap_or(3),
            }
            .run()
            .await
        }
        Scenario::Latency(args) => {
            DeliveryRun {
                name: "latency",
                common: &args.common,
                fleet: &args.fleet,
                connections: args.searches,
                searches: args.searches,
                hold: Duration::ZERO,
                rate: Some(args.rate),
                results: args.fleet.results_per_search.unwrap_or(3),
            }
            .run()
            .await
        }
        Scenario::Tail(args) => {
            DeliveryRun {
                name: "tail",
                common: &args.common,
                fleet: &args.fleet,
                connections: args.streams,
                searches: args.streams,
                hold: args.hold,
                rate: Some(args.rate),
                results: args.fleet.results_per_search.unwrap_or(0),
            }
            .run()
            .await
        }
        Scenario::Throughput(args) => throughput::run(args).await,
        Scenario::Worker | Scenario::Overload(_) => unreachable!("run handles these"),
    }
}

/// What every scenario's report offers: a text for people, one JSON line for
/// tools, and the verdict.
trait Verdict {
    /// The report for people.
    fn human(&self) -> String;
    /// The report as one JSON line.
    fn json_line(&self) -> String;
    /// True if and only if nothing failed and nothing was lost.
    fn passed(&self) -> bool;
}

impl Verdict for Report {
    fn human(&self) -> String {
        Report::human(self)
    }
    fn json_line(&self) -> String {
        Report::json_line(self)
    }
    fn passed(&self) -> bool {
        Report::passed(self)
    }
}

impl Verdict for OverloadReport {
    fn human(&self) -> String {
        OverloadReport::human(self)
    }
    fn json_line(&self) -> String {
        OverloadReport::json_line(self)
    }
    fn passed(&self) -> bool {
        OverloadReport::passed(self)
    }
}

/// Prints a run's report (or why it could not run) and turns it into the
/// exit status described at [`run`].
fn conclude(outcome: Result<impl Verdict, String>) -> ExitCode {
    match outcome {
        Ok(report) => {
            print!("{}", report.human());
            println!("{}", report.json_line());
            if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::from(2)
        }
    }
}
