//! The result of a run: printed for people, then as one JSON line for programs
//! (`… | tail -n 1 | jq`). Fields that a scenario does not measure are `null`.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use crate::cpu::CpuUsage;
use crate::errors::{ErrorKind, Errors};
use crate::machine::Noise;
use crate::summary::Summary;

/// Every figure of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `idle`, `latency`, `tail` or `throughput`.
    pub scenario: &'static str,
    /// Searches main-service accepted (202).
    pub searches_submitted: u64,
    /// Searches every client of which received the whole sequence and the end.
    pub searches_completed: u64,
    /// Accepted searches per second of the POST phase.
    pub submitted_per_sec: Option<f64>,
    /// Completed searches per second: over the whole run for `throughput`, from
    /// the first append to the last terminal receipt otherwise.
    pub completed_per_sec: Option<f64>,
    /// SSE clients planned.
    pub connections_requested: u64,
    /// SSE clients that got a 200 response head.
    pub connections_opened: u64,
    /// Most SSE responses held open at once, counted by the clients.
    pub peak_sse_connections: u64,
    /// main-service's `flight_search_sse_streams_open`, peak.
    pub server_sse_streams_open_peak: Option<f64>,
    /// main-service's `flight_search_hub_feeds_active`, peak.
    pub server_hub_feeds_active_peak: Option<f64>,
    /// POST → first event per client (for `idle` this includes `--hold`).
    pub post_to_first_event_ms: Option<Summary>,
    /// POST → terminal event per client.
    pub post_to_terminal_ms: Option<Summary>,
    /// Right before the EVALSHA → client receipt, per event copy.
    pub delivery_latency_ms: Option<Summary>,
    /// Events the load generator appended (`null` when provider-service wrote them).
    pub events_appended: Option<u64>,
    /// Events that should have reached clients, summed over clients.
    pub events_expected: u64,
    /// Events clients received.
    pub events_received: u64,
    /// Expected events no copy of which reached the client. Must be 0.
    pub events_lost: u64,
    /// The measured main-service process.
    pub main_pid: Option<u32>,
    /// main-service RSS before the SSE clients connected, KiB.
    pub main_rss_baseline_kib: Option<u64>,
    /// main-service RSS peak while the clients were connected, KiB.
    pub main_rss_peak_kib: Option<u64>,
    /// (peak − baseline) ÷ connections opened, bytes (`idle`, `latency`).
    pub main_rss_per_connection_bytes: Option<f64>,
    /// Redis `connected_clients`, peak (includes `loadgen_redis_clients`).
    pub redis_connected_clients_peak: Option<u64>,
    /// Redis connections the load generator itself held.
    pub loadgen_redis_clients: u64,
    /// Established TCP connections from main-service to the Redis port, peak.
    pub main_redis_connections_peak: Option<u64>,
    /// Redis commands per second sent while the streams were held idle, by
    /// anyone but the load generator (so main-service's, when nothing else
    /// uses this Redis): from `INFO commandstats` over the second half of the
    /// hold, once the streams' first reads are done.
    pub idle_redis_commands_per_sec: Option<f64>,
    /// Those commands by name, over the same window.
    pub idle_redis_commands: BTreeMap<String, u64>,
    /// CPU by phase: `hold` and `deliver` (`idle`), `deliver` (`latency`),
    /// `run` (`throughput`).
    pub cpu: BTreeMap<&'static str, CpuUsage>,
    /// Steal and hiccups over the phase whose latency is reported (`deliver`,
    /// or `run` for `throughput`): the floor under the delivery tail.
    pub machine: Option<Noise>,
    /// 1-minute load average of the machine at the start and end of the run:
    /// anything else running on it shows here.
    pub load_average: (Option<f64>, Option<f64>),
    /// Duration of each phase, seconds.
    pub phase_secs: BTreeMap<&'static str, f64>,
    /// Whole run, seconds.
    pub wall_secs: f64,
    /// Failures by kind.
    pub errors: BTreeMap<ErrorKind, u64>,
    /// The first few failures in words.
    pub error_samples: Vec<String>,
}

/// `n / secs`, rounded to one decimal, when both make sense.
pub fn per_sec(n: u64, secs: f64) -> Option<f64> {
    (secs > 0.0 && n > 0).then(|| (n as f64 / secs * 10.0).round() / 10.0)
}

impl Report {
    /// Sets the error fields from `errors`.
    pub fn with_errors(mut self, errors: Errors) -> Report {
        self.errors = errors.counts;
        self.error_samples = errors.samples;
        self
    }

    /// True if and only if nothing failed and nothing was lost.
    pub fn passed(&self) -> bool {
        self.errors.is_empty() && self.events_lost == 0
    }

    /// The report for people, several lines.
    pub fn human(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "== loadgen {} ==", self.scenario);
        self.write_delivery(&mut out);
        self.write_resources(&mut out);
        self.write_outcome(&mut out);
        out
    }

    /// Searches, clients, latencies and events.
    fn write_delivery(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "searches      submitted {} ({}), completed {} ({})",
            self.searches_submitted,
            opt(self.submitted_per_sec, "/s"),
            self.searches_completed,
            opt(self.completed_per_sec, "/s"),
        );
        let _ = writeln!(
            out,
            "sse clients   requested {}, opened {}, peak held {} (server gauge peak {}, hub feeds peak {})",
            self.connections_requested,
            self.connections_opened,
            self.peak_sse_connections,
            opt(self.server_sse_streams_open_peak, ""),
            opt(self.server_hub_feeds_active_peak, ""),
        );
        for (label, summary) in [
            ("POST→first   ", &self.post_to_first_event_ms),
            ("POST→terminal", &self.post_to_terminal_ms),
            ("delivery     ", &self.delivery_latency_ms),
        ] {
            if let Some(s) = summary {
                let _ = writeln!(out, "{label} {}", s.line());
            }
        }
        let _ = writeln!(
            out,
            "events        appended {}, expected {}, received {}, LOST {}",
            count(self.events_appended),
            self.events_expected,
            self.events_received,
            self.events_lost,
        );
    }

    /// What main-service, Redis and the CPUs spent.
    fn write_resources(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "main-service  pid {}, RSS baseline {}, peak {}, per connection {}",
            count(self.main_pid.map(u64::from)),
            kib(self.main_rss_baseline_kib),
            kib(self.main_rss_peak_kib),
            self.main_rss_per_connection_bytes
                .map_or("n/a".to_owned(), |b| format!("{:.0} B", b)),
        );
        let _ = writeln!(
            out,
            "redis         connected_clients peak {} (of which loadgen {}), main-service TCP connections peak {}",
            count(self.redis_connected_clients_peak),
            self.loadgen_redis_clients,
            count(self.main_redis_connections_peak),
        );
        if let Some(rate) = self.idle_redis_commands_per_sec {
            let calls: Vec<String> = self
                .idle_redis_commands
                .iter()
                .map(|(name, n)| format!("{name} {n}"))
                .collect();
            let _ = writeln!(
                out,
                "redis idle    {rate} commands/s from main-service in the second half of the hold ({})",
                if calls.is_empty() {
                    "none".to_owned()
                } else {
                    calls.join(", ")
                },
            );
        }
        if let Some(noise) = &self.machine {
            let _ = writeln!(out, "machine       {}", noise.line());
        }
        for (phase, cpu) in &self.cpu {
            let _ = writeln!(
                out,
                "cpu ({phase:7}) main-service {}, provider-service {}, redis {}",
                opt(cpu.main_percent, "%"),
                opt(cpu.provider_percent, "%"),
                opt(cpu.redis_percent, "%"),
            );
        }
    }

    /// Phase times, errors and the verdict.
    fn write_outcome(&self, out: &mut String) {
        let phases: Vec<String> = self
            .phase_secs
            .iter()
            .map(|(name, secs)| format!("{name} {secs:.2}s"))
            .collect();
        let _ = writeln!(
            out,
            "time          {} (wall {:.2}s)",
            phases.join(", "),
            self.wall_secs
        );
        if self.errors.is_empty() {
            let _ = writeln!(out, "errors        none");
        } else {
            let kinds: Vec<String> = self
                .errors
                .iter()
                .map(|(kind, n)| {
                    format!(
                        "{} {n}",
                        serde_json::to_string(kind)
                            .unwrap_or_default()
                            .trim_matches('"')
                    )
                })
                .collect();
            let _ = writeln!(out, "errors        {}", kinds.join(", "));
            for sample in &self.error_samples {
                let _ = writeln!(out, "  e.g. {sample}");
            }
        }
        let _ = writeln!(
            out,
            "result        {}",
            if self.passed() { "PASS" } else { "FAIL" }
        );
    }

    /// The report as one JSON line.
    pub fn json_line(&self) -> String {
        serde_json::to_string(self).expect("a Report serialises")
    }
}

/// `v unit`, or `n/a`.
fn opt(v: Option<f64>, unit: &str) -> String {
    v.map_or("n/a".to_owned(), |v| format!("{v} {unit}"))
}

/// KiB as MiB, or `n/a`.
fn kib(v: Option<u64>) -> String {
    v.map_or("n/a".to_owned(), |v| {
        format!("{:.1} MiB", v as f64 / 1024.0)
    })
}

/// A count, or `n/a`.
fn count(v: Option<u64>) -> String {
    v.map_or("n/a".to_owned(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_round_to_a_tenth_and_skip_nonsense() {
        assert_eq!(per_sec(1000, 3.0), Some(333.3));
        assert_eq!(per_sec(0, 3.0), None);
        assert_eq!(per_sec(5, 0.0), None);
    }
}
