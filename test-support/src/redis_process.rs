//! The one way the test support starts `redis-server`: a process on a given
//! port and data directory, with AOF on every write (so a restart in a fault
//! test loses nothing acknowledged), waited for until it answers PING.
//! [`crate::redis_server`] runs one such process, [`crate::redis_cluster`] six.

use std::ffi::OsString;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use crate::eventually;

/// How long a process may take to answer PING. Generous: on a loaded machine
/// (six cluster nodes starting at once, say) one may take more than 10 s to
/// load its data and listen.
const START_LIMIT: Duration = Duration::from_secs(30);

/// Starts `redis-server` on 127.0.0.1:`port` with its data in `dir`, loading
/// `acl_file` when given, with `extra` arguments after the common ones, and
/// waits until it answers PING. `None` if the process exited first (its port
/// taken meanwhile, say), which is reported on stderr.
pub(crate) async fn start(
    port: u16,
    dir: &Path,
    acl_file: Option<&Path>,
    extra: &[OsString],
) -> Option<Child> {
    std::fs::create_dir_all(dir).expect("create the redis data directory");
    let mut command = Command::new("redis-server");
    command
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args([
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
        ])
        .arg("--dir")
        .arg(dir);
    if let Some(file) = acl_file {
        command.arg("--aclfile").arg(file);
    }
    let child = command
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("redis-server must be installed (apt-get install redis-server)");
    let child = Mutex::new(child);
    let started = eventually("redis-server to answer PING", START_LIMIT, || async {
        let exited = child
            .lock()
            .unwrap()
            .try_wait()
            .expect("wait on redis-server");
        if let Some(status) = exited {
            eprintln!("the redis-server on port {port} exited: {status}");
            return Some(false);
        }
        connect(port).await.map(|_| true)
    })
    .await;
    started.then(|| child.into_inner().unwrap())
}

/// A connection to the process on `port` that answered PING, or `None`.
pub(crate) async fn connect(port: u16) -> Option<redis::aio::MultiplexedConnection> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
    let mut conn = client.get_multiplexed_async_connection().await.ok()?;
    let _: String = redis::cmd("PING").query_async(&mut conn).await.ok()?;
    Some(conn)
}

/// SIGKILLs `child` (a crash, not a clean stop) and reaps it.
pub(crate) fn kill(child: &mut Option<Child>) {
    if let Some(mut process) = child.take() {
        let _ = process.kill();
        let _ = process.wait();
    }
}
