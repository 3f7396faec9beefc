//! A throwaway `redis-server` on a free port, stopped on Drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::free_port;

/// A running redis-server child process with its own data directory.
pub struct RedisServer {
    /// Where it listens; kept across [`RedisServer::restart`].
    port: u16,
    /// Data directory (AOF lives here, so a restart keeps acknowledged writes).
    dir: PathBuf,
    /// The process, `None` while stopped.
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server with AOF (`appendfsync always`, so a restart in a fault
    /// test loses nothing) and waits until it answers PING.
    pub async fn start() -> RedisServer {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("flight-search-redis-{port}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create redis data dir");
        let mut server = RedisServer {
            port,
            dir,
            child: None,
        };
        server.spawn().await;
        server
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The listening port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A fresh multiplexed connection.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .expect("valid url")
            .get_multiplexed_async_connection()
            .await
            .expect("connect to test redis")
    }

    /// Kills the server (SIGKILL: an outage, not a clean stop).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and data directory.
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }

    async fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server)");
        self.child = Some(child);
        let url = self.url();
        crate::eventually(
            "redis-server to answer PING",
            Duration::from_secs(10),
            || {
                let url = url.clone();
                async move {
                    let client = redis::Client::open(url).ok()?;
                    let mut conn = client.get_multiplexed_async_connection().await.ok()?;
                    let pong: String = redis::cmd("PING").query_async(&mut conn).await.ok()?;
                    (pong == "PONG").then_some(())
                }
            },
        )
        .await;
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
