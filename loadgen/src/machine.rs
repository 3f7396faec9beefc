//! How much of the machine the measured processes actually got.
//!
//! On a virtual machine the host can take a vCPU away for milliseconds at a
//! time (steal), and no process on the guest, however it is written, delivers
//! an event while its vCPU is gone. A delivery tail means little without that
//! floor beside it, so every latency phase also measures:
//!
//! * steal: the share of all CPU time in the phase that the host kept, from
//!   the `steal` column of `/proc/stat`;
//! * hiccups: a plain thread that sleeps 1 ms again and again and records by
//!   how much each sleep overran. Nothing on this machine can answer faster than
//!   this thread wakes, so its p99.9 and max are the floor under the delivery
//!   tail. It costs about 1,000 short wakeups per second.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::procfs;
use crate::summary::{Recorder, Summary};

/// The hiccup thread's sleep.
const TICK: Duration = Duration::from_millis(1);

/// What the machine took from the processes over one phase.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Noise {
    /// Percent of all CPU time (every CPU) that the host stole.
    pub steal_percent: Option<f64>,
    /// By how much a 1 ms sleep overran, in milliseconds.
    pub hiccup_ms: Option<Summary>,
}

/// Measures [`Noise`] from [`NoiseMeter::start`] to [`NoiseMeter::finish`].
pub struct NoiseMeter {
    /// Steal and total CPU ticks at the start.
    cpu_start: Option<procfs::CpuTicks>,
    /// Tells the hiccup thread to stop.
    stop: Arc<AtomicBool>,
    /// The hiccup thread; it returns what it recorded.
    thread: JoinHandle<Recorder>,
}

impl NoiseMeter {
    /// Starts the hiccup thread and reads the steal counter.
    pub fn start() -> NoiseMeter {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("hiccup-meter".to_owned())
            .spawn({
                let stop = stop.clone();
                move || measure_hiccups(&stop)
            })
            .expect("a thread can be spawned");
        NoiseMeter {
            cpu_start: procfs::cpu_ticks().ok(),
            stop,
            thread,
        }
    }

    /// Stops the thread and returns what the phase saw.
    pub fn finish(self) -> Noise {
        self.stop.store(true, Ordering::Relaxed);
        let hiccups = self.thread.join().ok().and_then(|r| r.summary());
        let steal_percent = match (self.cpu_start, procfs::cpu_ticks().ok()) {
            (Some(start), Some(end)) => end.steal_percent_since(&start),
            _ => None,
        };
        Noise {
            steal_percent,
            hiccup_ms: hiccups,
        }
    }
}

/// Sleeps [`TICK`] until told to stop, recording each overrun in µs.
fn measure_hiccups(stop: &AtomicBool) -> Recorder {
    let mut recorder = Recorder::new();
    while !stop.load(Ordering::Relaxed) {
        let asked = Instant::now();
        std::thread::sleep(TICK);
        let overrun = asked.elapsed().saturating_sub(TICK);
        recorder.record(overrun.as_micros() as u64);
    }
    recorder
}

impl Noise {
    /// One line for people.
    pub fn line(&self) -> String {
        let steal = self
            .steal_percent
            .map_or("n/a".to_owned(), |s| format!("{s} %"));
        let hiccups = self.hiccup_ms.map_or("n/a".to_owned(), |h| {
            format!(
                "p99 {:.3} ms  p99.9 {:.3} ms  max {:.3} ms",
                h.p99_ms, h.p999_ms, h.max_ms
            )
        });
        format!("steal {steal} of CPU time; a 1 ms sleep overran {hiccups}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_meter_records_every_sleep_until_stopped() {
        let meter = NoiseMeter::start();
        std::thread::sleep(Duration::from_millis(50));
        let noise = meter.finish();
        let hiccups = noise.hiccup_ms.expect("the thread slept at least once");
        assert!(
            (5..=50).contains(&hiccups.count),
            "≈1 sample per ms of a 50 ms phase: {hiccups:?}"
        );
        assert!(hiccups.p50_ms <= hiccups.max_ms);
        assert!(
            noise
                .steal_percent
                .is_some_and(|s| (0.0..=100.0).contains(&s))
        );
    }
}
