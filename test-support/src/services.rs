//! The real service binaries as child processes.
//!
//! The binaries come from the workspace's `target/debug` (or `$CARGO_TARGET_DIR`);
//! the test command (scripts/test.sh) builds them before running the suites.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

use crate::{eventually, free_port};

/// Which binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// HTTP API and SSE.
    Main,
    /// Search worker.
    Provider,
    /// The airline APIs over HTTP.
    MockSuppliers,
}

impl Kind {
    fn binary(self) -> &'static str {
        match self {
            Kind::Main => "main-service",
            Kind::Provider => "provider-service",
            Kind::MockSuppliers => "mock-suppliers",
        }
    }
}

/// Path of a workspace binary, panicking with the fix when it was not built.
pub fn binary_path(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let path = target.join("debug").join(name);
    assert!(
        path.exists(),
        "{} is missing: build the services first (cargo build --bins)",
        path.display()
    );
    path
}

/// A running service process, killed on Drop.
pub struct Service {
    /// Which binary runs.
    kind: Kind,
    /// Its environment, kept so [`Service::restart`] starts an identical process.
    env: BTreeMap<String, String>,
    /// The HTTP address it serves health on (`HTTP_ADDR` or `METRICS_ADDR`).
    addr: String,
    /// The process, `None` once stopped.
    child: Option<Child>,
    /// Where the process's stdout and stderr go (logs, panics), appended across
    /// restarts; read with [`Service::output`], removed on Drop.
    output: PathBuf,
}

impl Service {
    /// Starts `kind` with `env` (on top of quiet defaults) on a free port and waits
    /// until its `/healthz` answers.
    pub async fn start(kind: Kind, redis_url: &str, env: &[(&str, &str)]) -> Service {
        Service::start_with(kind, ("REDIS_URL", redis_url), env).await
    }

    /// Like [`Service::start`], with Redis given as `(variable, value)`:
    /// `REDIS_URL` or `REDIS_CLUSTER_NODES`.
    pub async fn start_with(kind: Kind, redis: (&str, &str), env: &[(&str, &str)]) -> Service {
        let addr = format!("127.0.0.1:{}", free_port());
        let addr_var = match kind {
            Kind::Main | Kind::MockSuppliers => "HTTP_ADDR",
            Kind::Provider => "METRICS_ADDR",
        };
        let mut vars: BTreeMap<String, String> = [
            redis,
            (addr_var, addr.as_str()),
            ("RUST_LOG", "warn"),
            ("SHUTDOWN_GRACE_SECS", "5"),
        ]
        .into_iter()
        .chain(env.iter().copied())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        if kind == Kind::Provider {
            vars.entry("CONSUMER_NAME".into())
                .or_insert_with(|| format!("test-provider-{}", free_port()));
        }
        let output = std::env::temp_dir().join(format!(
            "flight-search-{}-{}-{}.log",
            kind.binary(),
            addr.rsplit(':').next().unwrap_or_default(),
            std::process::id()
        ));
        let mut service = Service {
            kind,
            env: vars,
            addr,
            child: None,
            output,
        };
        service.spawn().await;
        service
    }

    /// `http://<addr>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything the process wrote to stdout and stderr so far.
    pub fn output(&self) -> String {
        std::fs::read(&self.output)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// SIGKILL: a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for the exit; returns how long that took and whether
    /// the exit status was success.
    pub async fn terminate(&mut self) -> (Duration, bool) {
        let mut child = self.child.take().expect("service is running");
        let started = std::time::Instant::now();
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        let exit = tokio::task::spawn_blocking(move || child.wait())
            .await
            .expect("join")
            .expect("wait for service");
        (started.elapsed(), exit.success())
    }

    /// Stops (SIGTERM) and starts the same service again on the same address.
    pub async fn restart(&mut self) {
        if self.child.is_some() {
            self.terminate().await;
        }
        self.spawn().await;
    }

    /// Starts the process again after [`Service::kill`] or [`Service::terminate`].
    pub async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.output)
            .expect("open the service's output file");
        let child = Command::new(binary_path(self.kind.binary()))
            .envs(&self.env)
            .stdout(log.try_clone().expect("clone the output file"))
            .stderr(log)
            .spawn()
            .expect("spawn service");
        self.child = Some(child);
        let url = format!("{}/healthz", self.base_url());
        eventually("service /healthz", Duration::from_secs(15), || {
            let url = url.clone();
            async move { (crate::http::get(&url).await.ok()?.status == 200).then_some(()) }
        })
        .await;
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
        // A failing test shows what the service said; a passing one stays quiet.
        if std::thread::panicking() {
            eprintln!(
                "--- {} {} output ---\n{}",
                self.kind.binary(),
                self.addr,
                self.output()
            );
        }
        let _ = std::fs::remove_file(&self.output);
    }
}
