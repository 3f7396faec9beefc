//! The overload scenario: searches offered at a fixed rate, typically a
//! multiple of what the providers can finish, for a fixed time; then every
//! accepted search is followed to its end.
//!
//! Arrivals are open-loop (one POST every `1 / --rate` seconds, whatever the
//! answers), as real clients arrive, so a slow front door shows as latency and
//! refusals rather than as a lower offered load. With `--clients n` the POSTs
//! carry `X-Forwarded-For` with one of `n` synthetic addresses in turn, so a
//! main-service that trusts loopback as a proxy applies
//! `RATE_LIMIT_PER_CLIENT` per synthetic client.
//!
//! It reports accepted, refused (503, 429) and completed per second over the
//! offered period, POST latency, the largest queue backlog seen (`XINFO
//! GROUPS`, every 200 ms), and `accepted_lost`: accepted searches whose
//! terminal event is missing after the drain or is not `completed`. That must
//! be 0. Nobody reads the streams, so main-service writes no timeouts.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use contract::keys::{
    DEFAULT_CONSUMER_GROUP, REQUESTS_STREAM, STATE_TERMINAL, results_key, state_key,
};
use redis::aio::MultiplexedConnection;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use uuid::Uuid;

use crate::cli::OverloadArgs;
use crate::http::{HttpConnection, Target};
use crate::procfs;
use crate::searches::{parse_accepted, search_body};
use crate::summary::{Recorder, Summary};

/// A stream entry as XRANGE returns it: id and field/value pairs.
type StreamEntry = (String, Vec<(String, String)>);

/// Interval of the backlog samples.
const BACKLOG_SAMPLE: Duration = Duration::from_millis(200);

/// Interval of the checks for finished searches while draining.
const DRAIN_POLL: Duration = Duration::from_secs(1);

/// Searches checked per pipeline.
const CHECK_BATCH: usize = 1000;

/// What the run measured.
#[derive(Debug, Serialize)]
pub struct OverloadReport {
    /// POSTs offered per second.
    pub offered_per_sec: f64,
    /// The offered period, in seconds.
    pub offered_secs: f64,
    /// POSTs sent.
    pub posts: u64,
    /// Arrivals not sent because `--lanes` POSTs were already in flight.
    pub not_sent_lanes_busy: u64,
    /// Answers by status code (0: no answer, the exchange failed).
    pub statuses: BTreeMap<u16, u64>,
    /// 202s per second of the offered period.
    pub accepted_per_sec: f64,
    /// 503s per second.
    pub rejected_503_per_sec: f64,
    /// 429s per second.
    pub rejected_429_per_sec: f64,
    /// Searches the group finished (delivered and acknowledged) per second of
    /// the offered period.
    pub completed_per_sec: f64,
    /// POST latency, every answer.
    pub post_latency: Option<Summary>,
    /// Largest backlog (pending + lag of the default group) seen.
    pub backlog_peak: u64,
    /// Seconds from the end of the offer until every accepted search had its
    /// terminal event (or the drain limit).
    pub drain_secs: f64,
    /// Accepted searches by how they ended (`completed`, `failed:<code>`, `missing`).
    pub outcomes: BTreeMap<String, u64>,
    /// Accepted searches without a `completed` terminal event. Must be 0.
    pub accepted_lost: u64,
    /// One-minute load average at start and end.
    pub load_average: (Option<f64>, Option<f64>),
}

impl OverloadReport {
    /// True if and only if nothing accepted was lost and every POST got an answer.
    pub fn passed(&self) -> bool {
        self.accepted_lost == 0 && !self.statuses.contains_key(&0)
    }

    /// The report for people.
    pub fn human(&self) -> String {
        let latency = self
            .post_latency
            .map_or_else(|| "none".to_owned(), |s| s.line());
        format!(
            "overload: {:.0} POSTs/s offered for {:.1} s ({} sent, {} not sent: lanes busy)\n\
             answers: {:?}\n\
             accepted {:.1}/s, rejected 503 {:.1}/s, rejected 429 {:.1}/s, completed {:.1}/s\n\
             POST latency: {latency}\n\
             backlog peak: {}\n\
             drain: {:.1} s; outcomes: {:?}\n\
             accepted but lost: {}\n\
             load average: {:?} -> {:?}\n",
            self.offered_per_sec,
            self.offered_secs,
            self.posts,
            self.not_sent_lanes_busy,
            self.statuses,
            self.accepted_per_sec,
            self.rejected_503_per_sec,
            self.rejected_429_per_sec,
            self.completed_per_sec,
            self.backlog_peak,
            self.drain_secs,
            self.outcomes,
            self.accepted_lost,
            self.load_average.0,
            self.load_average.1,
        )
    }

    /// Every figure as one JSON line.
    pub fn json_line(&self) -> String {
        serde_json::to_string(self).expect("the report serialises")
    }
}

/// What the POST tasks share.
#[derive(Default)]
struct Tally {
    /// Answers by status (0: failed exchange).
    statuses: Mutex<BTreeMap<u16, u64>>,
    /// Latency of every answer, in µs.
    latency: Mutex<Recorder>,
    /// The accepted search ids.
    accepted: Mutex<Vec<Uuid>>,
}

/// Waits until every accepted search has finished, for at most `limit`;
/// returns the seconds it waited.
async fn drain(
    redis: &mut MultiplexedConnection,
    accepted: &[Uuid],
    limit: Duration,
) -> Result<f64, String> {
    let drain_start = Instant::now();
    loop {
        let open = unfinished(redis, accepted).await?;
        if open == 0 || drain_start.elapsed() >= limit {
            break;
        }
        tokio::time::sleep(DRAIN_POLL).await;
    }
    Ok(drain_start.elapsed().as_secs_f64())
}

/// Runs the scenario.
pub async fn run(args: &OverloadArgs) -> Result<OverloadReport, String> {
    if args.rate.is_nan() || args.rate <= 0.0 {
        return Err("--rate must be above 0".into());
    }
    let load_start = procfs::load_average();
    let target = Target::resolve(&args.common.url).await?;
    let client = redis::Client::open(args.common.redis.as_str())
        .map_err(|e| format!("--redis {}: {e}", args.common.redis))?;
    let mut redis = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| format!("{}: {e}", args.common.redis))?;

    let sampling = Arc::new(AtomicBool::new(true));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = tokio::spawn(sample_backlog(
        redis.clone(),
        sampling.clone(),
        peak.clone(),
    ));

    let body = Arc::new(search_body());
    let tally = Arc::new(Tally::default());
    let lanes = Arc::new(Semaphore::new(args.lanes.max(1)));
    let pool: Arc<Mutex<Vec<HttpConnection>>> = Arc::default();
    let finished_start = finished(&mut redis).await;
    let interval = Duration::from_secs_f64(1.0 / args.rate);
    eprintln!(
        "loadgen: offering {:.0} POSTs/s for {:?}",
        args.rate, args.duration
    );
    let start = Instant::now();
    let mut posts = 0u64;
    let mut busy = 0u64;
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let due = start + interval.mul_f64(posts as f64 + busy as f64);
        if due.duration_since(start) >= args.duration {
            break;
        }
        tokio::time::sleep_until(due).await;
        let Ok(permit) = lanes.clone().try_acquire_owned() else {
            busy += 1;
            continue;
        };
        let client_addr = (args.clients > 0).then(|| synthetic_client(posts, args.clients));
        posts += 1;
        let (target, body, tally, pool) =
            (target.clone(), body.clone(), tally.clone(), pool.clone());
        tasks.spawn(async move {
            let _permit = permit;
            let mut conn = pool
                .lock()
                .expect("pool lock")
                .pop()
                .unwrap_or_else(|| HttpConnection::new(target));
            post(&mut conn, &body, client_addr.as_deref(), &tally).await;
            pool.lock().expect("pool lock").push(conn);
        });
        // Reap finished tasks as we go, so the set stays small.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let offered_secs = start.elapsed().as_secs_f64();
    let finished_end = finished(&mut redis).await;

    let accepted = std::mem::take(&mut *tally.accepted.lock().expect("lock"));
    eprintln!(
        "loadgen: {} accepted; waiting up to {:?} for each to finish",
        accepted.len(),
        args.drain
    );
    let drain_secs = drain(&mut redis, &accepted, args.drain).await?;
    sampling.store(false, Ordering::Release);
    let _ = sampler.await;
    let outcomes = outcomes(&mut redis, &accepted).await?;
    let accepted_lost = outcomes
        .iter()
        .filter(|(outcome, _)| outcome.as_str() != "completed")
        .map(|(_, n)| n)
        .sum();

    let statuses = std::mem::take(&mut *tally.statuses.lock().expect("lock"));
    let per_sec = |n: u64| n as f64 / offered_secs;
    let count = |status| statuses.get(&status).copied().unwrap_or(0);
    Ok(OverloadReport {
        offered_per_sec: args.rate,
        offered_secs,
        posts,
        not_sent_lanes_busy: busy,
        accepted_per_sec: per_sec(count(202)),
        rejected_503_per_sec: per_sec(count(503)),
        rejected_429_per_sec: per_sec(count(429)),
        completed_per_sec: per_sec(finished_end.saturating_sub(finished_start)),
        post_latency: tally.latency.lock().expect("lock").summary(),
        statuses,
        backlog_peak: peak.load(Ordering::Acquire),
        drain_secs,
        outcomes,
        accepted_lost,
        load_average: (load_start, procfs::load_average()),
    })
}

/// The `i`th of `n` synthetic client addresses (10.x.y.z).
fn synthetic_client(i: u64, n: usize) -> String {
    let k = (i % n as u64) as u32 + 1;
    format!("10.{}.{}.{}", (k >> 16) & 0xff, (k >> 8) & 0xff, k & 0xff)
}

/// One POST, recorded in `tally`.
async fn post(conn: &mut HttpConnection, body: &str, client: Option<&str>, tally: &Tally) {
    let mut headers = vec![("content-type", "application/json")];
    if let Some(client) = client {
        headers.push(("x-forwarded-for", client));
    }
    let sent = Instant::now();
    let answer = conn
        .request("POST", "/api/flights/search", &headers, body.as_bytes())
        .await;
    let micros = sent.elapsed().as_micros() as u64;
    let status = match answer {
        Ok(response) => {
            if response.status == 202
                && let Some(id) = parse_accepted(&response.body)
            {
                tally.accepted.lock().expect("lock").push(id);
            }
            tally.latency.lock().expect("lock").record(micros);
            response.status
        }
        Err(_) => 0,
    };
    *tally
        .statuses
        .lock()
        .expect("lock")
        .entry(status)
        .or_default() += 1;
}

/// Samples the default group's backlog until `sampling` is cleared.
async fn sample_backlog(
    mut redis: MultiplexedConnection,
    sampling: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
) {
    while sampling.load(Ordering::Acquire) {
        if let Some((pending, lag, _)) = group(&mut redis).await {
            peak.fetch_max(pending + lag, Ordering::AcqRel);
        }
        tokio::time::sleep(BACKLOG_SAMPLE).await;
    }
}

/// Searches the default group finished so far: entries read minus pending.
async fn finished(redis: &mut MultiplexedConnection) -> u64 {
    group(redis)
        .await
        .map_or(0, |(pending, _, read)| read.saturating_sub(pending))
}

/// `(pending, lag, entries-read)` of the default group.
async fn group(redis: &mut MultiplexedConnection) -> Option<(u64, u64, u64)> {
    let groups: Vec<BTreeMap<String, redis::Value>> = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(REQUESTS_STREAM)
        .query_async(redis)
        .await
        .ok()?;
    let group = groups.into_iter().find(|g| {
        matches!(g.get("name"), Some(redis::Value::BulkString(name)) if name == DEFAULT_CONSUMER_GROUP.as_bytes())
    })?;
    let int = |key: &str| match group.get(key) {
        Some(redis::Value::Int(n)) => u64::try_from(*n).ok(),
        _ => None,
    };
    Some((
        int("pending")?,
        int("lag").unwrap_or(0),
        int("entries-read").unwrap_or(0),
    ))
}

/// How many of `ids` have no terminal event yet.
async fn unfinished(redis: &mut MultiplexedConnection, ids: &[Uuid]) -> Result<usize, String> {
    let mut open = 0;
    for batch in ids.chunks(CHECK_BATCH) {
        let mut pipe = redis::pipe();
        for id in batch {
            pipe.cmd("HEXISTS").arg(state_key(*id)).arg(STATE_TERMINAL);
        }
        let done: Vec<bool> = pipe
            .query_async(redis)
            .await
            .map_err(|e| format!("checking terminal events: {e}"))?;
        open += done.iter().filter(|d| !**d).count();
    }
    Ok(open)
}

/// How each of `ids` ended: `completed`, `failed:<code>` or `missing`.
async fn outcomes(
    redis: &mut MultiplexedConnection,
    ids: &[Uuid],
) -> Result<BTreeMap<String, u64>, String> {
    let mut outcomes = BTreeMap::new();
    for batch in ids.chunks(CHECK_BATCH) {
        let mut pipe = redis::pipe();
        for id in batch {
            pipe.cmd("HGET").arg(state_key(*id)).arg(STATE_TERMINAL);
        }
        let terminals: Vec<Option<String>> = pipe
            .query_async(redis)
            .await
            .map_err(|e| format!("reading terminal ids: {e}"))?;
        let mut pipe = redis::pipe();
        for (id, terminal) in batch.iter().zip(&terminals) {
            let entry = terminal.as_deref().unwrap_or("0-0");
            pipe.cmd("XRANGE")
                .arg(results_key(*id))
                .arg(entry)
                .arg(entry);
        }
        let entries: Vec<Vec<StreamEntry>> = pipe
            .query_async(redis)
            .await
            .map_err(|e| format!("reading terminal events: {e}"))?;
        for (terminal, entry) in terminals.iter().zip(entries) {
            let outcome = match (terminal, entry.first()) {
                (None, _) => "missing".to_owned(),
                (Some(_), None) => "terminal_entry_gone".to_owned(),
                (Some(_), Some((_, fields))) => fields
                    .iter()
                    .find(|(name, _)| name == "data")
                    .and_then(|(_, data)| serde_json::from_str::<serde_json::Value>(data).ok())
                    .map_or_else(
                        || "unreadable".to_owned(),
                        |event| match event["status"].as_str() {
                            Some("completed") => "completed".to_owned(),
                            Some(status) => format!(
                                "{status}:{}",
                                event["error"]["code"].as_str().unwrap_or("")
                            ),
                            None => "unreadable".to_owned(),
                        },
                    ),
            };
            *outcomes.entry(outcome).or_default() += 1;
        }
    }
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_clients_cycle_through_distinct_addresses() {
        assert_eq!(synthetic_client(0, 3), "10.0.0.1");
        assert_eq!(synthetic_client(2, 3), "10.0.0.3");
        assert_eq!(synthetic_client(3, 3), "10.0.0.1");
        assert_eq!(synthetic_client(299, 1000), "10.0.1.44");
    }
}
