//! What `/proc` says about the measured processes (resident memory, CPU time,
//! environment, and which of their sockets are TCP connections to Redis) and
//! about the machine (load average, CPU time the host stole).
//!
//! Parsing is separate from reading so that the formats are pinned down by
//! tests; readers return `io::Error` naming the file.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::Path;

/// Clock ticks per second of the times in `/proc/<pid>/stat`. The kernel reports
/// them in `USER_HZ`, which is 100 on every architecture Linux exports to user
/// space (`sysconf(_SC_CLK_TCK)`); reading it would take `unsafe` libc calls.
pub const USER_HZ: f64 = 100.0;

fn read(path: &str) -> io::Result<String> {
    fs::read_to_string(path).map_err(|e| io::Error::new(e.kind(), format!("{path}: {e}")))
}

/// The 1-minute load average from the text of `/proc/loadavg`.
pub fn parse_load_average(loadavg: &str) -> Option<f64> {
    loadavg.split_whitespace().next()?.parse().ok()
}

/// The machine's 1-minute load average, if readable.
pub fn load_average() -> Option<f64> {
    parse_load_average(&read("/proc/loadavg").ok()?)
}

/// The machine's CPU time so far, all CPUs together, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTicks {
    /// Time the host kept from the guest's CPUs (`steal`).
    pub steal: u64,
    /// user + nice + system + idle + iowait + irq + softirq + steal.
    pub total: u64,
}

impl CpuTicks {
    /// Steal as a percent of all CPU time since `start`, one decimal; `None`
    /// when no time passed.
    pub fn steal_percent_since(&self, start: &CpuTicks) -> Option<f64> {
        let total = self.total.checked_sub(start.total).filter(|&t| t > 0)?;
        let steal = self.steal.saturating_sub(start.steal);
        Some((steal as f64 / total as f64 * 1000.0).round() / 10.0)
    }
}

/// The aggregate `cpu` line of `/proc/stat`. Guest time is already counted in
/// user time, so it is left out of the total.
pub fn parse_cpu_ticks_total(stat: &str) -> Option<CpuTicks> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    (fields.len() == 8).then(|| CpuTicks {
        steal: fields[7],
        total: fields.iter().sum(),
    })
}

/// The machine's CPU time so far.
pub fn cpu_ticks() -> io::Result<CpuTicks> {
    parse_cpu_ticks_total(&read("/proc/stat")?)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "/proc/stat: no cpu line"))
}

/// `VmRSS` in KiB from the text of `/proc/<pid>/status`.
pub fn parse_vm_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
}

/// Resident memory of `pid`, in KiB.
pub fn rss_kib(pid: u32) -> io::Result<u64> {
    let path = format!("/proc/{pid}/status");
    parse_vm_rss_kib(&read(&path)?)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("{path}: no VmRSS")))
}

/// `utime + stime` in clock ticks from the text of `/proc/<pid>/stat`. The
/// command name may contain spaces and parentheses, so fields are counted from
/// the last `)`.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the name come field 3 (state) onwards; utime and stime are 14 and 15.
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some(utime + stime)
}

/// CPU seconds (user + system) `pid` has used so far, over all its threads.
pub fn cpu_seconds(pid: u32) -> io::Result<f64> {
    let path = format!("/proc/{pid}/stat");
    parse_cpu_ticks(&read(&path)?)
        .map(|ticks| ticks as f64 / USER_HZ)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("{path}: unparsable")))
}

/// The value of `name` in the text of `/proc/<pid>/environ` (NUL-separated).
pub fn parse_environ<'a>(environ: &'a str, name: &str) -> Option<&'a str> {
    environ
        .split('\0')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

/// The value of environment variable `name` in process `pid`, if set.
pub fn environ_var(pid: u32, name: &str) -> io::Result<Option<String>> {
    let raw = fs::read(format!("/proc/{pid}/environ"))?;
    Ok(parse_environ(&String::from_utf8_lossy(&raw), name).map(str::to_owned))
}

/// True if and only if a process with this `comm` and `cmdline` runs the binary
/// `name`. `comm` holds at most 15 bytes of the name, so the first word of the
/// command line decides when the name is longer.
pub fn is_named(comm: &str, cmdline: &[u8], name: &str) -> bool {
    let short = &name[..name.len().min(15)];
    if comm.trim_end() != short {
        return false;
    }
    let argv0 = cmdline.split(|&b| b == 0).next().unwrap_or_default();
    let argv0 = String::from_utf8_lossy(argv0);
    Path::new(argv0.as_ref())
        .file_name()
        .is_some_and(|f| f == name)
}

/// Every process running the binary `name`.
pub fn pids_named(name: &str) -> io::Result<Vec<u32>> {
    let mut pids = Vec::new();
    for entry in fs::read_dir("/proc")? {
        let entry = entry?;
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        // A process may exit between listing and reading: skip it.
        let (Ok(comm), Ok(cmdline)) = (
            fs::read_to_string(format!("/proc/{pid}/comm")),
            fs::read(format!("/proc/{pid}/cmdline")),
        ) else {
            continue;
        };
        if is_named(&comm, &cmdline, name) {
            pids.push(pid);
        }
    }
    pids.sort_unstable();
    Ok(pids)
}

/// The inode of a `/proc/<pid>/fd/*` link target such as `socket:[12345]`.
pub fn parse_socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Inodes of every socket `pid` has open.
pub fn socket_inodes(pid: u32) -> io::Result<HashSet<u64>> {
    let dir = format!("/proc/{pid}/fd");
    let entries =
        fs::read_dir(&dir).map_err(|e| io::Error::new(e.kind(), format!("{dir}: {e}")))?;
    let mut inodes = HashSet::new();
    for entry in entries {
        // A descriptor closed since the listing has no link any more: skip it.
        if let Ok(target) = fs::read_link(entry?.path())
            && let Some(inode) = target.to_str().and_then(parse_socket_inode)
        {
            inodes.insert(inode);
        }
    }
    Ok(inodes)
}

/// One row of `/proc/net/tcp` or `tcp6`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSocket {
    /// Local port.
    pub local_port: u16,
    /// Remote port (0 for a listener).
    pub remote_port: u16,
    /// The `st` column: kernel TCP state number.
    pub state: u8,
    /// Socket inode, as in `/proc/<pid>/fd` links.
    pub inode: u64,
}

impl TcpSocket {
    /// `TCP_ESTABLISHED`.
    pub const ESTABLISHED: u8 = 0x01;
    /// `TCP_LISTEN`.
    pub const LISTEN: u8 = 0x0A;
}

/// The rows of the text of `/proc/net/tcp` or `tcp6` (addresses are ignored:
/// ports, state and inode are what identify a process's connections here).
pub fn parse_tcp_table(table: &str) -> Vec<TcpSocket> {
    let port = |addr: &str| {
        addr.rsplit_once(':')
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
    };
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            Some(TcpSocket {
                local_port: port(f.get(1)?)?,
                remote_port: port(f.get(2)?)?,
                state: u8::from_str_radix(f.get(3)?, 16).ok()?,
                inode: f.get(9)?.parse().ok()?,
            })
        })
        .collect()
}

/// The TCP sockets of process `pid`, IPv4 and IPv6, as seen in its own
/// network namespace.
pub fn tcp_sockets(pid: u32) -> io::Result<Vec<TcpSocket>> {
    let inodes = socket_inodes(pid)?;
    let mut sockets = Vec::new();
    for table in ["tcp", "tcp6"] {
        let path = format!("/proc/{pid}/net/{table}");
        match read(&path) {
            Ok(text) => sockets.extend(
                parse_tcp_table(&text)
                    .into_iter()
                    .filter(|s| inodes.contains(&s.inode)),
            ),
            // No IPv6 in this kernel or namespace: nothing to count there.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(sockets)
}

/// Established TCP connections from `pid` to remote port `port`.
pub fn connections_to_port(pid: u32, port: u16) -> io::Result<usize> {
    Ok(tcp_sockets(pid)?
        .iter()
        .filter(|s| s.state == TcpSocket::ESTABLISHED && s.remote_port == port)
        .count())
}

/// True if and only if `pid` has a listening socket on `port`.
pub fn listens_on(pid: u32, port: u16) -> io::Result<bool> {
    Ok(tcp_sockets(pid)?
        .iter()
        .any(|s| s.state == TcpSocket::LISTEN && s.local_port == port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vm_rss() {
        let status = "Name:\tmain-service\nVmPeak:\t  900 kB\nVmRSS:\t   12345 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss_kib(status), Some(12345));
        assert_eq!(parse_vm_rss_kib("Name:\tx\n"), None);
    }

    #[test]
    fn reads_the_machine_steal() {
        let stat = "cpu  100 5 50 800 10 1 4 30 7 0\ncpu0 50 2 25 400 5 0 2 15 3 0\nintr 1\n";
        let start = parse_cpu_ticks_total(stat).unwrap();
        assert_eq!(
            start,
            CpuTicks {
                steal: 30,
                total: 1000
            }
        );
        let end = CpuTicks {
            steal: 55,
            total: 1200,
        };
        assert_eq!(end.steal_percent_since(&start), Some(12.5));
        assert_eq!(start.steal_percent_since(&start), None);
        assert_eq!(parse_cpu_ticks_total("cpu  1 2 3\n"), None);
        assert_eq!(parse_cpu_ticks_total("cpu0 1 2 3 4 5 6 7 8\n"), None);
    }

    #[test]
    fn reads_the_load_average() {
        assert_eq!(
            parse_load_average("6.97 7.32 4.64 3/812 14306\n"),
            Some(6.97)
        );
        assert_eq!(parse_load_average(""), None);
    }

    #[test]
    fn reads_cpu_ticks_even_with_odd_names() {
        let stat = "4242 (main (x) service) S 1 4242 4242 0 -1 4194560 500 0 0 0 120 35 0 0 20 0 3 0 100 1000 50 ";
        assert_eq!(parse_cpu_ticks(stat), Some(155));
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn reads_environment_variables_exactly() {
        let env = "PATH=/bin\0SEARCH_TIMEOUT_SECS_X=1\0SEARCH_TIMEOUT_SECS=600\0";
        assert_eq!(parse_environ(env, "SEARCH_TIMEOUT_SECS"), Some("600"));
        assert_eq!(parse_environ(env, "HOME"), None);
    }

    #[test]
    fn matches_names_longer_than_comm() {
        assert!(is_named(
            "main-service\n",
            b"target/release/main-service\0",
            "main-service"
        ));
        assert!(is_named(
            "provider-servic\n",
            b"/x/provider-service\0--flag\0",
            "provider-service"
        ));
        assert!(!is_named(
            "main-service\n",
            b"/x/main-service-old\0",
            "main-service"
        ));
        assert!(!is_named("bash\n", b"main-service\0", "main-service"));
    }

    #[test]
    fn reads_socket_links() {
        assert_eq!(parse_socket_inode("socket:[98765]"), Some(98765));
        assert_eq!(parse_socket_inode("pipe:[98765]"), None);
        assert_eq!(parse_socket_inode("/dev/null"), None);
    }

    #[test]
    fn parses_tcp_tables() {
        // 0x18F6 = 6390; 0x46A2 = 18082.
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:46A2 0100007F:18F6 01 00000000:00000000 00:00000000 00000000  1000        0 111 1 0 20 4 30 10 -1
   1: 0100007F:46A3 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 222 1 0 20 4 30 10 -1
";
        assert_eq!(
            parse_tcp_table(table),
            [
                TcpSocket {
                    local_port: 18082,
                    remote_port: 6390,
                    state: TcpSocket::ESTABLISHED,
                    inode: 111
                },
                TcpSocket {
                    local_port: 18083,
                    remote_port: 0,
                    state: TcpSocket::LISTEN,
                    inode: 222
                },
            ]
        );
        let tcp6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:C350 00000000000000000000000001000000:18F6 06 00000000:00000000 00:00000000 00000000  1000        0 777 1 0 20 4 30 10 -1
";
        assert_eq!(
            parse_tcp_table(tcp6),
            [TcpSocket {
                local_port: 50000,
                remote_port: 6390,
                state: 6,
                inode: 777
            }]
        );
    }

    #[test]
    fn finds_this_process_listening_and_connected() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let _client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let me = std::process::id();
        assert!(listens_on(me, port).unwrap());
        assert_eq!(connections_to_port(me, port).unwrap(), 1);
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(rss_kib(me).unwrap() > 0);
        assert!(cpu_seconds(me).unwrap() >= 0.0);
        assert!(socket_inodes(me).is_ok());
    }
}
