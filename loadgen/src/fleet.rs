//! The parent's side of the worker processes: spawns `loadgen worker` children
//! (this same binary), hands each its [`WorkerPlan`], follows their
//! [`WorkerMessage`]s, and collects their stream reports.
//!
//! A worker that exits or garbles its output before reporting is counted as
//! [`ErrorKind::WorkerLost`]; one still running at the deadline is killed and
//! counted the same way, so the parent never waits forever.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::errors::{ErrorKind, Errors};
use crate::subscriber::StreamReport;
use crate::worker::{WorkerMessage, WorkerPlan};

/// How often waits re-check what the workers reported.
const POLL: Duration = Duration::from_millis(20);

/// What the workers have reported so far.
#[derive(Default)]
struct FleetState {
    /// Latest open-stream count of each worker.
    live: Vec<usize>,
    /// Largest sum of `live` seen: streams held at once over all workers.
    peak_open: usize,
    /// `(opened, failed)` of each worker, once it tried every client.
    connected: Vec<Option<(usize, usize)>>,
    /// Each worker's reports, once it finished.
    finished: Vec<Option<Vec<StreamReport>>>,
    /// Why a worker stopped talking before finishing.
    lost: Vec<Option<String>>,
}

impl FleetState {
    fn done(&self, worker: usize) -> bool {
        self.finished[worker].is_some() || self.lost[worker].is_some()
    }
}

/// Running worker processes.
pub struct Fleet {
    /// The processes, for killing stragglers and reaping.
    children: Vec<Child>,
    /// Their stdins, held open until the end: closing one tells a worker to quit.
    stdins: Vec<ChildStdin>,
    /// Shared with the stdout readers.
    state: Arc<Mutex<FleetState>>,
    /// One stdout reader per worker.
    readers: Vec<JoinHandle<()>>,
}

impl Fleet {
    /// Starts one worker per plan.
    pub async fn spawn(plans: Vec<WorkerPlan>) -> Result<Fleet, String> {
        let exe = std::env::current_exe().map_err(|e| format!("finding this executable: {e}"))?;
        let n = plans.len();
        let state = Arc::new(Mutex::new(FleetState {
            live: vec![0; n],
            connected: vec![None; n],
            finished: (0..n).map(|_| None).collect(),
            lost: vec![None; n],
            ..FleetState::default()
        }));
        let mut fleet = Fleet {
            children: Vec::new(),
            stdins: Vec::new(),
            state: state.clone(),
            readers: Vec::new(),
        };
        for (index, plan) in plans.into_iter().enumerate() {
            let mut child = Command::new(&exe)
                .arg("worker")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| format!("starting worker {index}: {e}"))?;
            let mut stdin = child.stdin.take().expect("piped");
            let stdout = child.stdout.take().expect("piped");
            let mut line = serde_json::to_vec(&plan).expect("a WorkerPlan serialises");
            line.push(b'\n');
            stdin
                .write_all(&line)
                .await
                .map_err(|e| format!("sending worker {index} its plan: {e}"))?;
            let state = state.clone();
            fleet.readers.push(tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                let lost = loop {
                    match lines.next_line().await {
                        Ok(Some(line)) => match serde_json::from_str(&line) {
                            Ok(message) => {
                                let finished = matches!(message, WorkerMessage::Finished { .. });
                                apply(&state, index, message);
                                if finished {
                                    return;
                                }
                            }
                            Err(e) => break format!("unreadable message: {e}"),
                        },
                        Ok(None) => break "exited without reporting its streams".to_owned(),
                        Err(e) => break format!("reading its output: {e}"),
                    }
                };
                let mut state = state.lock().expect("not poisoned");
                state.lost[index] = Some(lost);
                state.live[index] = 0;
            }));
            fleet.children.push(child);
            fleet.stdins.push(stdin);
        }
        Ok(fleet)
    }

    /// Waits until every worker has tried to open all its streams (or is lost),
    /// or until `deadline`. Returns `(opened, failed)` over the workers that
    /// reported.
    pub async fn wait_connected(&self, deadline: Instant) -> (usize, usize) {
        loop {
            {
                let state = self.state.lock().expect("not poisoned");
                let all = (0..state.connected.len())
                    .all(|w| state.connected[w].is_some() || state.lost[w].is_some());
                if all || Instant::now() >= deadline {
                    return state
                        .connected
                        .iter()
                        .flatten()
                        .fold((0, 0), |(o, f), (wo, wf)| (o + wo, f + wf));
                }
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Streams open right now over all workers (as of their latest report).
    pub fn open_now(&self) -> usize {
        self.state.lock().expect("not poisoned").live.iter().sum()
    }

    /// Most streams open at once so far.
    pub fn peak_open(&self) -> usize {
        self.state.lock().expect("not poisoned").peak_open
    }

    /// Waits for every worker's reports until `deadline`, then kills any
    /// straggler and reaps all. Lost workers are counted in `errors`.
    pub async fn finish(mut self, deadline: Instant, errors: &mut Errors) -> Vec<StreamReport> {
        loop {
            let all = {
                let state = self.state.lock().expect("not poisoned");
                (0..state.finished.len()).all(|w| state.done(w))
            };
            if all || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(POLL).await;
        }
        drop(std::mem::take(&mut self.stdins));
        let mut reports = Vec::new();
        for (index, mut child) in self.children.into_iter().enumerate() {
            let outcome = {
                let mut state = self.state.lock().expect("not poisoned");
                match (state.finished[index].take(), state.lost[index].take()) {
                    (Some(streams), _) => Ok(streams),
                    (None, Some(why)) => Err(why),
                    (None, None) => Err("still running at the deadline; killed".to_owned()),
                }
            };
            let reported = match outcome {
                Ok(streams) => {
                    reports.extend(streams);
                    true
                }
                Err(why) => {
                    errors.record(ErrorKind::WorkerLost, format!("worker {index}: {why}"));
                    // Fails only if it already exited; the wait below tells.
                    let _ = child.start_kill();
                    false
                }
            };
            match tokio::time::timeout(Duration::from_secs(10), child.wait()).await {
                Ok(Ok(status)) if reported && !status.success() => {
                    errors.record(
                        ErrorKind::WorkerLost,
                        format!("worker {index}: exit {status}"),
                    );
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => errors.record(ErrorKind::WorkerLost, format!("worker {index}: {e}")),
                Err(_) => errors.record(
                    ErrorKind::WorkerLost,
                    format!("worker {index}: did not exit"),
                ),
            }
        }
        for reader in self.readers {
            reader.abort();
        }
        reports
    }
}

fn apply(state: &Mutex<FleetState>, worker: usize, message: WorkerMessage) {
    let mut state = state.lock().expect("not poisoned");
    match message {
        WorkerMessage::Live { open } => {
            state.live[worker] = open;
            let total = state.live.iter().sum();
            state.peak_open = state.peak_open.max(total);
        }
        WorkerMessage::Connected { opened, failed } => {
            state.connected[worker] = Some((opened, failed))
        }
        WorkerMessage::Finished { streams } => state.finished[worker] = Some(streams),
    }
}
