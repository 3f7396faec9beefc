//! The hidden `worker` subcommand: one process holding a share of the SSE
//! clients, so that no process of the load generator needs more descriptors
//! than its limit allows.
//!
//! Protocol, one JSON document per line: the parent writes one [`WorkerPlan`] to
//! the worker's stdin and keeps stdin open; the worker writes [`WorkerMessage`]s
//! to stdout: `Live` twice a second, `Connected` once every client has either
//! received its response head or failed to, and `Finished` with every stream's
//! report when all have ended. Stdin reaching EOF early means the parent is gone:
//! the worker exits at once. Each client also stops at the plan's deadline, so a
//! worker always ends by itself.

use std::io::{BufRead, Write};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;
use uuid::Uuid;

use crate::clock::now_us;
use crate::http::Target;
use crate::subscriber::{StreamReport, Subscription};

/// How often a worker reports its open stream count.
const LIVE_EVERY: Duration = Duration::from_millis(500);

/// What a worker is asked to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerPlan {
    /// main-service address.
    pub addr: std::net::SocketAddr,
    /// `Host` header for it.
    pub host: String,
    /// One entry per SSE client: the search and the source address to use.
    pub streams: Vec<(Uuid, Option<IpAddr>)>,
    /// Clients connecting at once; the rest wait, so the listen backlog of
    /// main-service never overflows into SYN retries.
    pub connect_concurrency: usize,
    /// Every client gives up at this wall-clock time, µs since the epoch.
    pub deadline_us: u64,
    /// How long a response may stay open after its terminal event.
    pub end_grace_ms: u64,
}

/// What a worker tells its parent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum WorkerMessage {
    /// Streams open right now.
    Live {
        /// Count of clients between response head and end.
        open: usize,
    },
    /// Every client has tried to open its stream.
    Connected {
        /// Clients that got a 200 head.
        opened: usize,
        /// Clients that did not.
        failed: usize,
    },
    /// All clients ended; one report each.
    Finished {
        /// Per-stream reports, in no particular order.
        streams: Vec<StreamReport>,
    },
}

/// Set once the final report is written, so stdin closing after it is a clean end.
static REPORTED: AtomicBool = AtomicBool::new(false);

fn send(message: &WorkerMessage) {
    let mut line = serde_json::to_vec(message).expect("a WorkerMessage serialises");
    line.push(b'\n');
    let mut out = std::io::stdout().lock();
    if out.write_all(&line).and_then(|()| out.flush()).is_err() {
        // The parent is gone; nobody is left to report to.
        std::process::exit(3);
    }
}

/// Runs a worker: reads the plan from stdin, runs every client, reports.
pub async fn run() -> Result<(), String> {
    let plan: WorkerPlan = {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| format!("worker: reading the plan: {e}"))?;
        serde_json::from_str(&line).map_err(|e| format!("worker: bad plan: {e}"))?
    };
    // The parent keeps stdin open while it needs us. It closes stdin once it has
    // our report, which may happen before this process reaches its own exit: that
    // is a normal end, not a lost parent.
    std::thread::spawn(|| {
        let mut rest = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut rest);
        std::process::exit(if REPORTED.load(Ordering::Acquire) {
            0
        } else {
            4
        });
    });

    let now = now_us();
    let deadline = Instant::now() + Duration::from_micros(plan.deadline_us.saturating_sub(now));
    let target = Target {
        addr: plan.addr,
        host: plan.host.clone(),
    };
    let permits = Arc::new(Semaphore::new(plan.connect_concurrency.max(1)));
    let open = Arc::new(AtomicUsize::new(0));
    let (tried_tx, mut tried_rx) = mpsc::unbounded_channel::<bool>();
    let mut clients = JoinSet::new();
    for &(search_id, source) in &plan.streams {
        let subscription = Subscription {
            target: target.clone(),
            search_id,
            source,
            deadline,
            end_grace: Duration::from_millis(plan.end_grace_ms),
        };
        let (permits, open, tried_tx) = (permits.clone(), open.clone(), tried_tx.clone());
        clients.spawn(async move {
            let opened = {
                let _permit = permits.acquire().await.expect("never closed");
                subscription.open().await
            };
            let _ = tried_tx.send(opened.is_ok());
            match opened {
                Ok(stream) => {
                    open.fetch_add(1, Ordering::Relaxed);
                    let report = subscription.read(stream).await;
                    open.fetch_sub(1, Ordering::Relaxed);
                    report
                }
                Err(outcome) => StreamReport {
                    search_id,
                    opened_at_us: None,
                    events: Vec::new(),
                    outcome,
                },
            }
        });
    }
    drop(tried_tx);

    let (mut opened, mut failed) = (0, 0);
    let mut tried_all = plan.streams.is_empty();
    if tried_all {
        send(&WorkerMessage::Connected { opened, failed });
    }
    let mut streams = Vec::with_capacity(plan.streams.len());
    let mut live = tokio::time::interval(LIVE_EVERY);
    loop {
        tokio::select! {
            Some(ok) = tried_rx.recv(), if !tried_all => {
                if ok { opened += 1 } else { failed += 1 }
                if opened + failed == plan.streams.len() {
                    tried_all = true;
                    send(&WorkerMessage::Live { open: open.load(Ordering::Relaxed) });
                    send(&WorkerMessage::Connected { opened, failed });
                }
            }
            _ = live.tick() => send(&WorkerMessage::Live { open: open.load(Ordering::Relaxed) }),
            joined = clients.join_next() => match joined {
                Some(Ok(report)) => streams.push(report),
                Some(Err(e)) => return Err(format!("worker: client task failed: {e}")),
                None => break,
            },
        }
    }
    if !tried_all {
        // Every client ended before the select saw its last attempt.
        while let Ok(ok) = tried_rx.try_recv() {
            if ok { opened += 1 } else { failed += 1 }
        }
        send(&WorkerMessage::Connected { opened, failed });
    }
    send(&WorkerMessage::Live { open: 0 });
    send(&WorkerMessage::Finished { streams });
    REPORTED.store(true, Ordering::Release);
    Ok(())
}
