//! The end-to-end scenario with the real provider-service: lanes that each
//! POST a search, read its event stream to the end, and go on with the next,
//! until every search has run. All clients live in this process: at most
//! `--concurrency` streams are open at once.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;
use uuid::Uuid;

use crate::cli::ThroughputArgs;
use crate::cpu::CpuReading;
use crate::errors::Errors;
use crate::http::{HttpConnection, Target};
use crate::machine::NoiseMeter;
use crate::procfs;
use crate::report::{Report, per_sec};
use crate::sampler::Sampler;
use crate::searches::{Submitted, search_body_later, submit};
use crate::stack::{PROVIDER_SERVICE, Stack};
use crate::subscriber::{StreamReport, Subscription};
use crate::verify;

/// Default overall limit.
const DEFAULT_DEADLINE: Duration = Duration::from_secs(900);

/// Default sampling period: a run lasts seconds, and holds few connections.
const SAMPLE_INTERVAL: Duration = Duration::from_millis(100);

/// How long a response may stay open after its terminal event.
const END_GRACE: Duration = Duration::from_secs(5);

/// Streams open now and at most, over all lanes.
#[derive(Default)]
struct OpenStreams {
    /// Open now.
    now: AtomicUsize,
    /// Most open at once.
    peak: AtomicUsize,
}

/// What one lane did.
#[derive(Default)]
struct Lane {
    /// Searches it submitted.
    submitted: Vec<Submitted>,
    /// One report per submitted search.
    reports: Vec<StreamReport>,
    /// Its failed POSTs.
    errors: Errors,
}

/// provider-service's pid: the one given, else the one found connected to
/// Redis; without it its CPU is missing from the report.
fn provider_pid(args: &ThroughputArgs, stack: &Stack) -> Result<Option<u32>, String> {
    let pid = match args.provider_pid {
        Some(pid) => Some(pid),
        None => stack.provider_pid()?,
    };
    if pid.is_none() {
        eprintln!(
            "loadgen: no {PROVIDER_SERVICE} process connected to this Redis found: its CPU will be missing (use --provider-pid)"
        );
    }
    Ok(pid)
}

/// Runs the scenario.
pub async fn run(args: &ThroughputArgs) -> Result<Report, String> {
    let started = Instant::now();
    let load_start = procfs::load_average();
    let deadline = started + args.common.deadline.unwrap_or(DEFAULT_DEADLINE);
    let mut errors = Errors::new();
    let mut stack = Stack::connect(&args.common).await?;
    let provider_pid = provider_pid(args, &stack)?;
    let interval = args.common.sample_interval.unwrap_or(SAMPLE_INTERVAL);
    let mut probe = stack.probe().await?;
    let baseline = probe.sample(&mut errors).await.rss_kib;
    let sampler = Sampler::start(probe, interval);

    eprintln!(
        "loadgen: running {} searches, {} at a time",
        args.searches, args.concurrency
    );
    let cpu_start =
        CpuReading::take(stack.main_pid, provider_pid, &mut stack.redis, &mut errors).await;
    let run_start = Instant::now();
    let noise = NoiseMeter::start();
    let bodies: Arc<Vec<String>> = Arc::new((0..args.dates).map(search_body_later).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let open = Arc::new(OpenStreams::default());
    let mut lanes = JoinSet::new();
    for _ in 0..args.concurrency.clamp(1, args.searches.max(1)) {
        let (target, bodies, next, open) = (
            stack.target.clone(),
            bodies.clone(),
            next.clone(),
            open.clone(),
        );
        let searches = args.searches;
        lanes.spawn(run_lane(target, bodies, next, open, searches, deadline));
    }
    let mut submitted = Vec::with_capacity(args.searches);
    let mut reports = Vec::with_capacity(args.searches);
    while let Some(joined) = lanes.join_next().await {
        let lane = joined.map_err(|e| format!("a lane failed: {e}"))?;
        submitted.extend(lane.submitted);
        reports.extend(lane.reports);
        errors.merge(lane.errors);
    }
    let run_secs = run_start.elapsed().as_secs_f64();
    let noise = noise.finish();
    let cpu_end =
        CpuReading::take(stack.main_pid, provider_pid, &mut stack.redis, &mut errors).await;
    let window = sampler.take();
    errors.merge(sampler.stop());

    let clients: HashMap<Uuid, usize> = submitted.iter().map(|s| (s.search_id, 1)).collect();
    let delivery = verify::verify_submitted(
        &mut stack.keys,
        &submitted,
        &clients,
        &HashMap::new(),
        &reports,
        &mut errors,
    )
    .await?;
    let opened = reports.iter().filter(|r| r.opened_at_us.is_some()).count();
    Ok(Report {
        scenario: "throughput",
        searches_submitted: submitted.len() as u64,
        searches_completed: delivery.searches_completed,
        submitted_per_sec: per_sec(submitted.len() as u64, run_secs),
        completed_per_sec: per_sec(delivery.searches_completed, run_secs),
        connections_requested: args.searches as u64,
        connections_opened: opened as u64,
        peak_sse_connections: open.peak.load(Ordering::Relaxed) as u64,
        server_sse_streams_open_peak: window.streams_open_peak,
        server_hub_feeds_active_peak: window.feeds_active_peak,
        post_to_first_event_ms: delivery.first_event.summary(),
        post_to_terminal_ms: delivery.terminal.summary(),
        delivery_latency_ms: None,
        events_appended: None,
        events_expected: delivery.events_expected,
        events_received: delivery.events_received,
        events_lost: delivery.events_lost,
        main_pid: stack.main_pid,
        main_rss_baseline_kib: baseline,
        main_rss_peak_kib: window.rss_peak_kib,
        main_rss_per_connection_bytes: None,
        redis_connected_clients_peak: window.redis_clients_peak,
        loadgen_redis_clients: 3,
        main_redis_connections_peak: window.main_redis_connections_peak,
        idle_redis_commands_per_sec: None,
        idle_redis_commands: BTreeMap::new(),
        cpu: BTreeMap::from([("run", cpu_end.since(&cpu_start))]),
        machine: Some(noise),
        load_average: (load_start, procfs::load_average()),
        phase_secs: BTreeMap::from([("run", run_secs)]),
        wall_secs: started.elapsed().as_secs_f64(),
        errors: BTreeMap::new(),
        error_samples: Vec::new(),
    }
    .with_errors(errors))
}

/// One lane: takes the next search until all are taken, POSTs it on its own
/// keep-alive connection and follows its stream to the end.
async fn run_lane(
    target: Target,
    bodies: Arc<Vec<String>>,
    next: Arc<AtomicUsize>,
    open: Arc<OpenStreams>,
    searches: usize,
    deadline: Instant,
) -> Lane {
    let mut lane = Lane::default();
    let mut conn = HttpConnection::new(target.clone());
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= searches {
            break;
        }
        let body = &bodies[i % bodies.len()];
        let submitted = match submit(&mut conn, body, deadline).await {
            Ok(submitted) => submitted,
            Err((kind, detail)) => {
                lane.errors.record(kind, detail);
                continue;
            }
        };
        let subscription = Subscription {
            target: target.clone(),
            search_id: submitted.search_id,
            source: None,
            deadline,
            end_grace: END_GRACE,
        };
        let report = match subscription.open().await {
            Ok(stream) => {
                let now = open.now.fetch_add(1, Ordering::Relaxed) + 1;
                open.peak.fetch_max(now, Ordering::Relaxed);
                let report = subscription.read(stream).await;
                open.now.fetch_sub(1, Ordering::Relaxed);
                report
            }
            Err(outcome) => StreamReport {
                search_id: submitted.search_id,
                opened_at_us: None,
                events: Vec::new(),
                outcome,
            },
        };
        lane.submitted.push(submitted);
        lane.reports.push(report);
    }
    lane
}
