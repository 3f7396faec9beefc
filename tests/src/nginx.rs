//! Debian's nginx as the load balancer in front of several main-service
//! instances, on a free port, stopped on Drop.
//!
//! The proxy settings are those an SSE deployment needs: HTTP/1.1 to the
//! upstreams with keepalive, no response buffering (each event goes out as it
//! arrives), a read timeout far above the keep-alive interval, and
//! `least_conn`, since streams are long-lived and a round robin would pile
//! them up unevenly.

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

/// The configuration: one process in the foreground, everything under `dir`.
fn config_text(port: u16, upstreams: &[String], dir: &std::path::Path) -> String {
    let servers: String = upstreams
        .iter()
        .map(|u| format!("        server {u} max_fails=1 fail_timeout=2s;\n"))
        .collect();
    let dir = dir.display();
    format!(
        r#"daemon off;
master_process off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream main_service {{
        least_conn;
{servers}        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://main_service;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_buffering off;
            proxy_read_timeout 1h;
            proxy_next_upstream error timeout http_502 http_503;
        }}
    }}
}}
"#
    )
}
