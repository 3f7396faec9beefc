//! The scenarios in which the load generator produces the events itself
//! (`idle`, `latency` and `tail`): POST searches, open SSE clients in worker processes,
//! optionally hold them idle while sampling, then append every search's events
//! through `APPEND_EVENT` and check what each client received.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use tokio::time::Instant;
use uuid::Uuid;

use crate::cli::{Common, FleetArgs};
use crate::clock::now_us;
use crate::cpu::CpuReading;
use crate::errors::{ErrorKind, Errors};
use crate::fleet::Fleet;
use crate::machine::{Noise, NoiseMeter};
use crate::producer::{Producer, Production};
use crate::report::{Report, per_sec};
use crate::sampler::{Probe, Sampler, Window};
use crate::searches::{Submitted, submit_all};
use crate::stack::{PROVIDER_SERVICE, Stack};
use crate::subscriber::StreamReport;
use crate::verify;
use crate::worker::WorkerPlan;
use crate::{procfs, redis_info};

/// POSTs in flight while submitting the searches.
const POST_CONCURRENCY: usize = 32;

/// Clients per extra loopback source address when spreading automatically:
/// well below the ~28k ephemeral ports each address gives.
const CLIENTS_PER_SOURCE: usize = 10_000;

/// How long a response may stay open after its terminal event.
const END_GRACE: Duration = Duration::from_secs(5);

/// Default sampling period: `/proc/<pid>/fd` of main-service has one entry
/// per client, so sampling is not free.
const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// Pause before the idle baseline, so that work triggered by the POSTs is done.
const SETTLE: Duration = Duration::from_millis(500);

/// How often progress is printed while holding.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// Extra time the parent gives workers past their own deadline to report.
const REPORT_GRACE: Duration = Duration::from_secs(15);

/// One run of `idle`, `latency` or `tail`.
pub struct DeliveryRun<'a> {
    /// `idle`, `latency` or `tail`.
    pub name: &'static str,
    /// Target and sampling options.
    pub common: &'a Common,
    /// Client placement.
    pub fleet: &'a FleetArgs,
    /// `result` events per search, between processing and completed.
    pub results: u8,
    /// SSE clients, spread evenly over the searches.
    pub connections: usize,
    /// Searches to POST.
    pub searches: usize,
    /// Idle time between connecting and producing; zero to skip.
    pub hold: Duration,
    /// Appends per second, or as fast as possible.
    pub rate: Option<f64>,
}

/// What holding the streams idle measured.
struct Held {
    /// The samples taken during the hold.
    window: Window,
    /// Redis commands by name over the second half of the hold, and its
    /// length in seconds; `None` when they could not be counted.
    idle_calls: Option<(BTreeMap<String, u64>, f64)>,
    /// How long the hold lasted.
    secs: f64,
}

/// What the delivery phase produced and measured.
struct Delivered {
    /// What the producer appended, with send times.
    production: Production,
    /// Every client's report.
    reports: Vec<StreamReport>,
    /// Most responses held open at once.
    peak_open: usize,
    /// What the machine took from the processes meanwhile.
    noise: Noise,
}

/// main-service's memory per open stream, in bytes: an idle figure, so read
/// during the hold only (`None` without one).
fn memory_per_connection(
    baseline_kib: Option<u64>,
    hold_window: Option<&Window>,
    opened: usize,
) -> Option<f64> {
    match (baseline_kib, hold_window.and_then(|held| held.rss_peak_kib)) {
        (Some(base), Some(peak)) if opened > 0 => {
            Some(((peak as f64 - base as f64) * 1024.0 / opened as f64).round())
        }
        _ => None,
    }
}

/// Commands per second, rounded to hundredths, of calls counted over `secs`.
fn commands_per_sec((calls, secs): &(BTreeMap<String, u64>, f64)) -> f64 {
    (calls.values().sum::<u64>() as f64 / secs * 100.0).round() / 100.0
}

/// The source addresses to spread `connections` over towards `target`.
pub fn source_addrs(
    target: IpAddr,
    connections: usize,
    requested: Option<usize>,
) -> Vec<Option<IpAddr>> {
    let wanted = requested.unwrap_or(if connections > CLIENTS_PER_SOURCE {
        connections.div_ceil(CLIENTS_PER_SOURCE)
    } else {
        0
    });
    if wanted == 0 || !target.is_loopback() || !target.is_ipv4() {
        return vec![None];
    }
    (0..wanted.min(250))
        .map(|k| Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + k as u8))))
        .collect()
}

/// Assigns client `i` to search `i mod searches` and source `i mod sources`,
/// and cuts the clients into workers of at most `per_worker`.
pub fn place_clients(
    searches: &[Uuid],
    sources: &[Option<IpAddr>],
    connections: usize,
    per_worker: usize,
) -> Vec<Vec<(Uuid, Option<IpAddr>)>> {
    let clients: Vec<(Uuid, Option<IpAddr>)> = (0..connections)
        .map(|i| (searches[i % searches.len()], sources[i % sources.len()]))
        .collect();
    clients
        .chunks(per_worker.max(1))
        .map(<[_]>::to_vec)
        .collect()
}

impl DeliveryRun<'_> {
    /// The default overall limit: setup, hold and production with margin.
    fn default_deadline(&self) -> Duration {
        let events = self.searches * (usize::from(self.results) + 2);
        let producing = self.rate.map_or(0.0, |rate| events as f64 / rate);
        self.hold + Duration::from_secs_f64(producing) + Duration::from_secs(300)
    }

    fn sample_interval(&self) -> Duration {
        self.common.sample_interval.unwrap_or(SAMPLE_INTERVAL)
    }

    /// Refuses a stack where provider-service would compete with the
    /// producer, and warns when main-service's timeout would end the searches
    /// during the hold.
    fn check_stack(&self, stack: &Stack) -> Result<(), String> {
        if let Some(pid) = stack.provider_pid()? {
            return Err(format!(
                "{PROVIDER_SERVICE} (pid {pid}) is connected to this Redis: stop it, loadgen is the producer in this scenario"
            ));
        }
        if self.hold > Duration::ZERO
            && let Some(timeout) = stack.search_timeout_secs()
            && Duration::from_secs(timeout) < self.hold + Duration::from_secs(30)
        {
            eprintln!(
                "loadgen: warning: main-service's SEARCH_TIMEOUT_SECS={timeout} is shorter than --hold plus connecting; \
                 its timeout events will end the searches first (restart it with e.g. SEARCH_TIMEOUT_SECS=600)"
            );
        }
        Ok(())
    }

    /// Places the clients over source addresses and worker processes; returns
    /// each worker's plan and the number of clients of each search.
    fn plan_workers(
        &self,
        stack: &Stack,
        ids: &[Uuid],
        deadline: Instant,
    ) -> (Vec<WorkerPlan>, HashMap<Uuid, usize>) {
        let sources = source_addrs(
            stack.target.addr.ip(),
            self.connections,
            self.fleet.source_addrs,
        );
        let placement = place_clients(
            ids,
            &sources,
            self.connections,
            self.fleet.clients_per_worker,
        );
        let mut clients: HashMap<Uuid, usize> = HashMap::new();
        for &(id, _) in placement.iter().flatten() {
            *clients.entry(id).or_default() += 1;
        }
        let worker_deadline_us = now_us()
            + deadline
                .saturating_duration_since(Instant::now())
                .as_micros() as u64;
        let plans: Vec<WorkerPlan> = placement
            .into_iter()
            .map(|streams| WorkerPlan {
                addr: stack.target.addr,
                host: stack.target.host.clone(),
                streams,
                connect_concurrency: self.fleet.connect_concurrency,
                deadline_us: worker_deadline_us,
                end_grace_ms: END_GRACE.as_millis() as u64,
            })
            .collect();
        eprintln!(
            "loadgen: opening {} SSE streams from {} worker processes{}",
            self.connections,
            plans.len(),
            match sources.as_slice() {
                [None] => String::new(),
                many => format!(" over {} source addresses", many.len()),
            }
        );
        (plans, clients)
    }

    /// Holds the open streams idle until the hold (or the deadline) ends,
    /// printing progress, and counts the Redis commands of its second half.
    async fn hold_idle(
        &self,
        stack: &mut Stack,
        fleet: &Fleet,
        sampler: &Sampler,
        deadline: Instant,
        errors: &mut Errors,
    ) -> Held {
        let hold_start = Instant::now();
        let hold_end = (hold_start + self.hold).min(deadline);
        // Idle commands are counted over the second half of the hold: the
        // first lets the streams' first reads, queued while connecting, finish.
        let idle_from = hold_start + (hold_end - hold_start) / 2;
        let mut calls_before = None;
        while Instant::now() < hold_end {
            let next = (Instant::now() + PROGRESS_EVERY).min(hold_end);
            if calls_before.is_none() && next >= idle_from {
                tokio::time::sleep_until(idle_from).await;
                calls_before = Some((
                    redis_info::command_calls(&mut stack.redis).await,
                    Instant::now(),
                ));
            }
            tokio::time::sleep_until(next).await;
            eprintln!(
                "loadgen: holding, {:.0}s/{:.0}s, {} streams open",
                hold_start.elapsed().as_secs_f64(),
                self.hold.as_secs_f64(),
                fleet.open_now()
            );
        }
        let secs = hold_start.elapsed().as_secs_f64();
        let window = sampler.take();
        let (calls_before, counted_from) = calls_before.unwrap_or((
            Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "the hold ended early",
            ))),
            Instant::now(),
        ));
        let counted_secs = counted_from.elapsed().as_secs_f64();
        let idle_calls = match (
            calls_before,
            redis_info::command_calls(&mut stack.redis).await,
        ) {
            (Ok(before), Ok(after)) => {
                Some((redis_info::calls_between(&before, &after), counted_secs))
            }
            (Err(e), _) | (_, Err(e)) => {
                errors.record(ErrorKind::Sample, format!("INFO commandstats: {e}"));
                None
            }
        };
        Held {
            window,
            idle_calls,
            secs,
        }
    }

    /// POSTs the searches; returns those accepted and how long it took.
    async fn post(
        &self,
        stack: &Stack,
        deadline: Instant,
        errors: &mut Errors,
    ) -> Result<(Vec<Submitted>, f64), String> {
        eprintln!("loadgen: posting {} searches", self.searches);
        let post_start = Instant::now();
        let submitted = submit_all(
            &stack.target,
            self.searches,
            POST_CONCURRENCY,
            deadline,
            errors,
        )
        .await;
        if submitted.is_empty() {
            return Err(format!("no search was accepted: {:?}", errors.samples));
        }
        Ok((submitted, post_start.elapsed().as_secs_f64()))
    }

    /// Takes the baseline (every POST answered, no client connected yet), then
    /// samples in the background.
    async fn start_sampling(
        &self,
        mut probe: Probe,
        errors: &mut Errors,
    ) -> (Option<u64>, Sampler) {
        tokio::time::sleep(SETTLE).await;
        let baseline = probe.sample(errors).await.rss_kib;
        (baseline, Sampler::start(probe, self.sample_interval()))
    }

    /// The producer, on its own Redis connection.
    async fn producer(&self, stack: &Stack) -> Result<Producer, String> {
        eprintln!(
            "loadgen: appending {} events per search{}",
            usize::from(self.results) + 2,
            self.rate
                .map_or(String::new(), |r| format!(" at {r} events/s"))
        );
        Producer::connect(stack.keys.clone())
            .await
            .map_err(|e| format!("producer's Redis connection: {e}"))
    }

    /// Appends every event and waits for the clients' reports, measuring what
    /// the machine took meanwhile.
    async fn deliver(
        &self,
        stack: &Stack,
        fleet: Fleet,
        ids: &[Uuid],
        deadline: Instant,
        phases: &mut BTreeMap<&'static str, f64>,
        errors: &mut Errors,
    ) -> Result<Delivered, String> {
        let mut producer = self.producer(stack).await?;
        let deliver_start = Instant::now();
        let noise = NoiseMeter::start();
        let production = producer
            .produce(ids, self.results.into(), self.rate, deadline, errors)
            .await;
        phases.insert("produce", production.elapsed.as_secs_f64());
        let peak_open = fleet.peak_open();
        let reports = fleet.finish(deadline + REPORT_GRACE, errors).await;
        phases.insert("deliver", deliver_start.elapsed().as_secs_f64());
        Ok(Delivered {
            production,
            reports,
            peak_open,
            noise: noise.finish(),
        })
    }

    /// Runs the scenario.
    pub async fn run(&self) -> Result<Report, String> {
        let started = Instant::now();
        let load_start = procfs::load_average();
        let deadline = started + self.common.deadline.unwrap_or(self.default_deadline());
        let mut errors = Errors::new();
        let mut stack = Stack::connect(self.common).await?;
        self.check_stack(&stack)?;
        let probe = stack.probe().await?;
        let mut phases = BTreeMap::new();

        let (submitted, post_secs) = self.post(&stack, deadline, &mut errors).await?;
        phases.insert("post", post_secs);
        let (baseline, sampler) = self.start_sampling(probe, &mut errors).await;

        let ids: Vec<Uuid> = submitted.iter().map(|s| s.search_id).collect();
        let (plans, clients) = self.plan_workers(&stack, &ids, deadline);
        let connect_start = Instant::now();
        let fleet = Fleet::spawn(plans).await?;
        let (opened, failed) = fleet.wait_connected(deadline).await;
        phases.insert("connect", connect_start.elapsed().as_secs_f64());
        eprintln!("loadgen: {opened} streams open, {failed} failed");

        let connect_window = sampler.take();
        let phase_start =
            CpuReading::take(stack.main_pid, None, &mut stack.redis, &mut errors).await;
        let (hold_window, idle_calls) = if self.hold > Duration::ZERO {
            let held = self
                .hold_idle(&mut stack, &fleet, &sampler, deadline, &mut errors)
                .await;
            phases.insert("hold", held.secs);
            (Some(held.window), held.idle_calls)
        } else {
            (None, None)
        };
        let hold_cpu = CpuReading::take(stack.main_pid, None, &mut stack.redis, &mut errors).await;

        let deliver_start_us = now_us();
        let delivered = self
            .deliver(&stack, fleet, &ids, deadline, &mut phases, &mut errors)
            .await?;
        let (production, reports) = (delivered.production, delivered.reports);
        let deliver_cpu =
            CpuReading::take(stack.main_pid, None, &mut stack.redis, &mut errors).await;
        let deliver_window = sampler.take();
        errors.merge(sampler.stop());

        let delivery = verify::verify_submitted(
            &mut stack.keys,
            &submitted,
            &clients,
            &production.sent_at,
            &reports,
            &mut errors,
        )
        .await?;

        let connected = hold_window.map_or(connect_window, |hold| connect_window.merge(&hold));
        let connected = connected.merge(&deliver_window);
        let mut cpu = BTreeMap::from([("deliver", deliver_cpu.since(&hold_cpu))]);
        cpu.extend(hold_window.map(|_| ("hold", hold_cpu.since(&phase_start))));
        let per_connection = memory_per_connection(baseline, hold_window.as_ref(), opened);
        Ok(Report {
            scenario: self.name,
            searches_submitted: submitted.len() as u64,
            searches_completed: delivery.searches_completed,
            submitted_per_sec: per_sec(submitted.len() as u64, post_secs),
            completed_per_sec: delivery
                .last_terminal_at_us
                .map(|last| last.saturating_sub(deliver_start_us) as f64 / 1e6)
                .and_then(|secs| per_sec(delivery.searches_completed, secs)),
            connections_requested: self.connections as u64,
            connections_opened: opened as u64,
            peak_sse_connections: delivered.peak_open as u64,
            server_sse_streams_open_peak: connected.streams_open_peak,
            server_hub_feeds_active_peak: connected.feeds_active_peak,
            post_to_first_event_ms: delivery.first_event.summary(),
            post_to_terminal_ms: delivery.terminal.summary(),
            delivery_latency_ms: delivery.delivery.summary(),
            events_appended: Some(production.appended),
            events_expected: delivery.events_expected,
            events_received: delivery.events_received,
            events_lost: delivery.events_lost,
            main_pid: stack.main_pid,
            main_rss_baseline_kib: baseline,
            main_rss_peak_kib: connected.rss_peak_kib,
            main_rss_per_connection_bytes: per_connection,
            redis_connected_clients_peak: connected.redis_clients_peak,
            loadgen_redis_clients: 3,
            main_redis_connections_peak: connected.main_redis_connections_peak,
            idle_redis_commands_per_sec: idle_calls.as_ref().map(commands_per_sec),
            idle_redis_commands: idle_calls.map(|(calls, _)| calls).unwrap_or_default(),
            cpu,
            machine: Some(delivered.noise),
            load_average: (load_start, procfs::load_average()),
            phase_secs: phases,
            wall_secs: started.elapsed().as_secs_f64(),
            errors: BTreeMap::new(),
            error_samples: Vec::new(),
        }
        .with_errors(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_over_source_addresses_only_when_needed() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(source_addrs(lo, 1000, None), vec![None]);
        let auto = source_addrs(lo, 19_000, None);
        assert_eq!(auto.len(), 2);
        assert_eq!(auto[1], Some("127.0.0.3".parse().unwrap()));
        assert_eq!(source_addrs(lo, 10, Some(3)).len(), 3);
        assert_eq!(
            source_addrs("10.0.0.1".parse().unwrap(), 19_000, None),
            vec![None]
        );
    }

    #[test]
    fn clients_are_spread_evenly_over_searches_and_workers() {
        let searches: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
        let placed = place_clients(&searches, &[None], 10, 4);
        assert_eq!(placed.iter().map(Vec::len).collect::<Vec<_>>(), [4, 4, 2]);
        let all: Vec<Uuid> = placed.into_iter().flatten().map(|(id, _)| id).collect();
        for s in &searches {
            let n = all.iter().filter(|id| *id == s).count();
            assert!((3..=4).contains(&n));
        }
    }
}
