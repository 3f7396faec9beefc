//! The standard `process_*` metrics of the Prometheus client libraries, read
//! from `/proc/self` at each scrape: open and allowed file descriptors, resident
//! memory and CPU time.
//!
//! They carry no service prefix, under the names every Prometheus client library
//! uses, so generic dashboards and alerts apply unchanged. Each SSE stream holds
//! one descriptor, so `process_open_fds / process_max_fds` is how close an
//! instance is to refusing connections. Where `/proc` is missing (not Linux) a
//! metric is left out rather than reported as zero.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

/// Clock ticks per second in `/proc/<pid>/stat`: `USER_HZ`, fixed at 100 by
/// the kernel's user-space interface on every architecture Linux reports to
/// user space in (the kernel's own tick rate is hidden behind it).
const USER_HZ: f64 = 100.0;

/// Reads the process figures at scrape time.
#[derive(Debug, Default)]
pub struct ProcessCollector;

/// An unprefixed registry holding only the process metrics, to encode after
/// a service's own registry.
pub fn registry() -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(ProcessCollector));
    registry
}

/// The text of `registry` followed by the process metrics, in the OpenMetrics
/// text format with its closing `# EOF`.
pub fn encode_with(registry: &Registry, process: &Registry) -> String {
    use prometheus_client::encoding::text::{encode_eof, encode_registry};
    let mut text = String::new();
    encode_registry(&mut text, registry)
        .and_then(|()| encode_registry(&mut text, process))
        .and_then(|()| encode_eof(&mut text))
        .expect("writing to a String cannot fail");
    text
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(open) = open_fds() {
            gauge(
                &mut encoder,
                "process_open_fds",
                "File descriptors this process has open (sockets included)",
                open,
            )?;
        }
        if let Some(max) = max_fds() {
            gauge(
                &mut encoder,
                "process_max_fds",
                "Soft limit on open file descriptors (RLIMIT_NOFILE)",
                max,
            )?;
        }
        let stat = std::fs::read_to_string("/proc/self/stat").ok();
        if let Some(ticks) = stat.as_deref().and_then(cpu_ticks) {
            // f64 is exact for any tick count a process reaches (< 2^53).
            #[allow(clippy::cast_precision_loss)]
            let seconds = ticks as f64 / USER_HZ;
            let counter = ConstCounter::new(seconds);
            let metric = encoder.encode_descriptor(
                "process_cpu_seconds",
                "User and system CPU time this process has used",
                None,
                counter.metric_type(),
            )?;
            counter.encode(metric)?;
        }
        if let Some(bytes) = resident_bytes() {
            gauge(
                &mut encoder,
                "process_resident_memory_bytes",
                "Resident memory (VmRSS) of this process",
                bytes,
            )?;
        }
        Ok(())
    }
}

/// Encodes one gauge; values beyond `i64` (never met in practice) saturate.
fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
    let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
    gauge.encode(metric)
}

/// Entries of `/proc/self/fd` (the directory handle read to list it is
/// counted too, as every client library does).
fn open_fds() -> Option<u64> {
    let entries = std::fs::read_dir("/proc/self/fd").ok()?;
    Some(entries.fold(0u64, |n, _| n.saturating_add(1)))
}

/// The soft `Max open files` limit from `/proc/self/limits`; `None` when
/// unlimited or unreadable.
fn max_fds() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_max_open_files(&limits)
}

/// The soft limit in a `/proc/<pid>/limits` text.
fn parse_max_open_files(limits: &str) -> Option<u64> {
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `utime + stime` in clock ticks from a `/proc/<pid>/stat` text. The command
/// name (field 2) may contain spaces and parentheses, so fields are counted
/// from the last `)`.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // After the name: state is field 3, utime field 14, stime field 15.
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime.saturating_add(stime))
}

/// `VmRSS` from `/proc/self/status`, in bytes.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib.saturating_mul(1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_open_files_limit_is_read_from_limits() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max cpu time              unlimited            unlimited            seconds   \n\
                      Max open files            20000                40000                files     \n";
        assert_eq!(parse_max_open_files(limits), Some(20_000));
        assert_eq!(
            parse_max_open_files("Max open files unlimited unlimited files"),
            None
        );
    }

    #[test]
    fn cpu_ticks_count_from_the_end_of_a_name_with_spaces_and_parentheses() {
        let stat = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 37 5 0 0 20 0 8 0";
        assert_eq!(cpu_ticks(stat), Some(42));
    }

    #[test]
    fn this_process_reports_its_descriptors_memory_and_cpu() {
        let _held = std::fs::File::open("/proc/self/status").expect("open a file");
        let text = encode_with(&Registry::default(), &registry());
        let value = |name: &str| -> f64 {
            text.lines()
                .find_map(|line| line.strip_prefix(&format!("{name} ")))
                .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
                .parse()
                .expect("a number")
        };
        assert!(value("process_open_fds") >= 4.0, "{text}");
        assert!(
            value("process_max_fds") >= value("process_open_fds"),
            "{text}"
        );
        assert!(
            value("process_resident_memory_bytes") > 1_000_000.0,
            "{text}"
        );
        assert!(value("process_cpu_seconds_total") >= 0.0, "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
