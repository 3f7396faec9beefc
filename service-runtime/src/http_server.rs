//! The HTTP/1.1 accept loop every server of the workspace runs: one task per
//! connection, the same timeouts and socket settings, and a drain bounded by a
//! grace period.
//!
//! Connection tasks are tracked: at the end of the grace period the ones still
//! open are stopped (their connections dropped), and [`serve`] returns only
//! once every one has ended, so nothing is left running behind it.
//!
//! Per-connection cost matters when tens of thousands of event streams are
//! open. hyper's http1 connection keeps a read buffer and a write buffer of
//! 8 KiB each for its whole life; neither can be configured smaller
//! (`max_buf_size` has an 8 KiB floor and only caps growth), and they are most of
//! what an idle connection costs. `max_buf_size` is lowered from hyper's ~400 KiB
//! default, which bounds how much a slow reader's connection may buffer if hyper
//! ever has to flatten writes.
//!
//! A peer that vanishes without a FIN or RST (a machine switched off, a NAT
//! entry dropped) leaves an idle connection nothing to fail on: small writes
//! such as keep-alive comments never fill the send buffer. Every accepted
//! socket therefore has TCP keepalive and `TCP_USER_TIMEOUT` set, and the
//! kernel resets such a connection within about a minute.

use std::error::Error as StdError;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::HttpService;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use socket2::{SockRef, TcpKeepalive};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Content type of the Prometheus metrics every service serves on `/metrics`
/// (the OpenMetrics text format `prometheus-client` encodes).
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Time a client gets to send a complete request head, so it cannot hold a
/// connection open by trickling bytes.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Cap on hyper's per-connection buffers.
const MAX_BUF_SIZE: usize = 64 * 1024;

/// Pause after a failed accept (e.g. out of file descriptors), so the loop does
/// not spin while the condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Idle time before the kernel probes a silent connection, so a stream whose
/// keep-alive comments are further apart (`SSE_HEARTBEAT_SECS` may be up to an
/// hour) is still checked.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);

/// Time between unanswered probes.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// Unanswered probes before the connection is reset.
const KEEPALIVE_RETRIES: u32 = 3;

/// How long sent bytes may stay unacknowledged before the kernel resets the
/// connection: the keepalive's own bound (idle, then every probe), so a dead
/// peer is given up on after about a minute whether the connection was idle or
/// still sending.
const USER_TIMEOUT: Duration = Duration::from_secs(
    KEEPALIVE_IDLE.as_secs() + KEEPALIVE_INTERVAL.as_secs() * KEEPALIVE_RETRIES as u64,
);

/// Serves connections from `listener` until `shutdown`, then stops accepting
/// and waits for open connections to finish, for at most `grace`; those still
/// open then are dropped. Returns, once every connection task has ended, the
/// end of the grace period (so a caller can bound its own clean-up by it).
///
/// `connect` turns each accepted socket (already set up: no Nagle delay, dead
/// peers detected) and its peer address into the I/O the connection runs on
/// and the service that answers its requests. `name` labels the log lines.
pub async fn serve<I, S, B>(
    name: &'static str,
    listener: TcpListener,
    grace: Duration,
    shutdown: CancellationToken,
    mut connect: impl FnMut(TcpStream, SocketAddr) -> (I, S),
) -> Instant
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: HttpService<Incoming, ResBody = B> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let graceful = GracefulShutdown::new();
    let connections = TaskTracker::new();
    // Cancelled at the end of the grace period: every connection task still
    // running drops its connection.
    let cut_off = CancellationToken::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_BUF_SIZE);
    loop {
        let (socket, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(server = name, %error, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        // Small writes (event frames) must leave at once, not wait for an ACK.
        let _ = socket.set_nodelay(true);
        if let Err(error) = detect_dead_peers(&socket) {
            tracing::debug!(server = name, %peer, %error, "could not set TCP keepalive");
        }
        let (io, service) = connect(socket, peer);
        let serving = graceful.watch(http.serve_connection(TokioIo::new(io), service));
        let cut_off = cut_off.clone();
        connections.spawn(async move {
            tokio::select! {
                served = serving => if let Err(error) = served {
                    tracing::debug!(server = name, %peer, %error, "connection ended with an error");
                },
                () = cut_off.cancelled() => {}
            }
        });
    }
    drop(listener);
    let deadline = Instant::now() + grace;
    connections.close();
    tokio::select! {
        () = graceful.shutdown() => tracing::info!(server = name, "all connections closed"),
        () = tokio::time::sleep_until(deadline) => {
            tracing::warn!(
                server = name,
                open = connections.len(),
                "grace period over; closing the remaining connections"
            );
            cut_off.cancel();
        }
    }
    connections.wait().await;
    deadline
}

/// Lets the kernel find out that a silent peer is gone; see the module docs.
fn detect_dead_peers(socket: &TcpStream) -> io::Result<()> {
    let socket = SockRef::from(socket);
    socket.set_tcp_keepalive(
        &TcpKeepalive::new()
            .with_time(KEEPALIVE_IDLE)
            .with_interval(KEEPALIVE_INTERVAL)
            .with_retries(KEEPALIVE_RETRIES),
    )?;
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "fuchsia"))]
    socket.set_tcp_user_timeout(Some(USER_TIMEOUT))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_sockets_give_up_on_silent_peers() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        let (socket, _) = accepted.unwrap();
        detect_dead_peers(&socket).unwrap();
        let socket = SockRef::from(&socket);
        assert!(socket.keepalive().unwrap());
        assert_eq!(socket.tcp_keepalive_time().unwrap(), KEEPALIVE_IDLE);
        assert_eq!(socket.tcp_keepalive_interval().unwrap(), KEEPALIVE_INTERVAL);
        assert_eq!(socket.tcp_keepalive_retries().unwrap(), KEEPALIVE_RETRIES);
        #[cfg(target_os = "linux")]
        assert_eq!(
            socket.tcp_user_timeout().unwrap(),
            Some(Duration::from_secs(60))
        );
        drop(client);
    }
}
