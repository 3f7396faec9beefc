//! A real Prometheus server (Debian's `prometheus` binary) for a test: started
//! on a free loopback port with a generated configuration that scrapes the
//! given targets every second and loads the repository's rules, queried over
//! its HTTP API, killed on Drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::{eventually, free_port, http};

/// One scrape job: its name and the `host:port` addresses it scrapes.
pub struct Job<'a> {
    /// The `job` label, e.g. `flight-search-main`.
    pub name: &'a str,
    /// `host:port` of each instance.
    pub targets: Vec<String>,
}

/// A running Prometheus.
pub struct Prometheus {
    /// `http://127.0.0.1:<port>`.
    base_url: String,
    /// The process.
    child: Child,
    /// Configuration, data and log; removed on Drop.
    dir: PathBuf,
}

impl Prometheus {
    /// Starts Prometheus scraping `jobs` every second, evaluating `rule_files`
    /// every second, and waits until it is ready.
    pub async fn start(jobs: &[Job<'_>], rule_files: &[PathBuf]) -> Prometheus {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!(
            "flight-search-prometheus-{port}-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("create the Prometheus directory");
        let config = config(jobs, rule_files);
        std::fs::write(dir.join("prometheus.yml"), config).expect("write prometheus.yml");
        let log = std::fs::File::create(dir.join("prometheus.log")).expect("create the log");
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus (Debian package `prometheus`)");
        let prometheus = Prometheus {
            base_url: format!("http://127.0.0.1:{port}"),
            child,
            dir,
        };
        let ready = format!("{}/-/ready", prometheus.base_url);
        eventually("Prometheus ready", Duration::from_secs(20), || {
            let ready = ready.clone();
            async move { (http::get(&ready).await.ok()?.status == 200).then_some(()) }
        })
        .await;
        prometheus
    }

    /// The `data` of an instant query of `expr`; panics with Prometheus' error
    /// when the query is refused (a parse error, say).
    pub async fn query(&self, expr: &str) -> Value {
        let url = format!(
            "{}/api/v1/query?query={}",
            self.base_url,
            percent_encode(expr)
        );
        let response = http::get(&url).await.expect("GET /api/v1/query");
        let body: Value = serde_json::from_slice(&response.body).expect("query answer is JSON");
        assert_eq!(
            (response.status, body["status"].as_str()),
            (200, Some("success")),
            "query {expr}: {body}"
        );
        body["data"].clone()
    }

    /// The rule groups as Prometheus loaded them (`/api/v1/rules`).
    pub async fn rules(&self) -> Vec<Value> {
        let response = http::get(&format!("{}/api/v1/rules", self.base_url))
            .await
            .expect("GET /api/v1/rules");
        let body: Value = serde_json::from_slice(&response.body).expect("rules answer is JSON");
        body["data"]["groups"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// What Prometheus logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- prometheus output ---\n{}", self.log());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A configuration scraping `jobs` and evaluating `rule_files` every second.
fn config(jobs: &[Job<'_>], rule_files: &[PathBuf]) -> String {
    let mut text =
        String::from("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n");
    for file in rule_files {
        text.push_str(&format!("  - {:?}\n", file.display().to_string()));
    }
    text.push_str("scrape_configs:\n");
    for job in jobs {
        let targets: Vec<String> = job.targets.iter().map(|t| format!("{t:?}")).collect();
        text.push_str(&format!(
            "  - job_name: {:?}\n    static_configs:\n      - targets: [{}]\n",
            job.name,
            targets.join(", ")
        ));
    }
    text
}

/// `text` for a URL query parameter: everything but unreserved characters
/// percent-encoded.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(byte).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}
