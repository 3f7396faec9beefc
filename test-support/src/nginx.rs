//! Debian's nginx as the load balancer in front of several main-service
//! instances, on a free port, stopped on Drop.
//!
//! It runs the configuration the cluster compose stack ships,
//! `deploy/nginx/nginx.conf`, with only the addresses and file locations
//! changed, so the settings that suite tests are the ones deployed: HTTP/1.1
//! to the upstreams with keepalive, no response buffering, a read timeout far
//! above the keep-alive interval, `least_conn`, and passive health checks.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{eventually, free_port};

/// A running nginx with its own prefix directory.
pub struct Nginx {
    /// Where it listens.
    port: u16,
    /// Its configuration, logs and temporary files.
    dir: PathBuf,
    /// The single nginx process (`master_process off`, so a kill stops it all).
    child: Option<Child>,
}

impl Nginx {
    /// Starts nginx proxying to `upstreams` (`host:port` each) and waits until
    /// it answers.
    pub async fn start(upstreams: &[String]) -> Nginx {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("flight-search-nginx-{port}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create nginx dir");
        let config = dir.join("nginx.conf");
        std::fs::write(&config, config_text(port, upstreams, &dir)).expect("write nginx.conf");
        let child = Command::new("nginx")
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("nginx must be installed (apt-get install nginx-light)");
        let nginx = Nginx {
            port,
            dir,
            child: Some(child),
        };
        let url = format!("{}/healthz", nginx.base_url());
        eventually("nginx to answer", Duration::from_secs(10), || {
            let url = url.clone();
            async move { (crate::http::get(&url).await.ok()?.status == 200).then_some(()) }
        })
        .await;
        nginx
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The shipped configuration.
const SHIPPED: &str = include_str!("../../deploy/nginx/nginx.conf");

/// The shipped configuration with `upstreams` as the instances, listening on
/// `port` of loopback, as one process in the foreground with every file under
/// `dir`.
fn config_text(port: u16, upstreams: &[String], dir: &std::path::Path) -> String {
    let dir = dir.display();
    let servers: Vec<String> = upstreams
        .iter()
        .map(|u| format!("server {u} max_fails=1 fail_timeout=2s;"))
        .collect();
    let replacements = [
        (
            "worker_processes auto;",
            "daemon off;\nmaster_process off;".to_owned(),
        ),
        ("pid /run/nginx.pid;", format!("pid {dir}/nginx.pid;")),
        (
            "error_log /var/log/nginx/error.log warn;",
            format!("error_log {dir}/error.log warn;"),
        ),
        (
            "access_log /var/log/nginx/access.log upstream;",
            ["body", "proxy", "fastcgi", "uwsgi", "scgi"].iter().fold(
                format!("access_log {dir}/access.log upstream;"),
                |text, kind| {
                    let directive = if *kind == "body" { "client_body" } else { kind };
                    format!("{text}\n    {directive}_temp_path {dir}/{kind};")
                },
            ),
        ),
        (
            "server main-service:8080 max_fails=1 fail_timeout=2s;",
            servers.join("\n        "),
        ),
        ("listen 80;", format!("listen 127.0.0.1:{port};")),
    ];
    let mut config = SHIPPED.to_owned();
    for (shipped, local) in replacements {
        assert!(
            config.contains(shipped),
            "deploy/nginx/nginx.conf no longer has `{shipped}`"
        );
        config = config.replacen(shipped, &local, 1);
    }
    config
}
