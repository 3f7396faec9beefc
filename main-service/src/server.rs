//! The HTTP/1.1 server: accept loop, one task per connection, graceful drain.
//!
//! Connection tasks are tracked: at the end of the grace period the ones still
//! open are stopped (their connections dropped), and [`serve`] returns only
//! once every one has ended, so nothing is left running behind `run`.
//!
//! Per-connection cost matters when tens of thousands of event streams are
//! open. hyper's http1 connection keeps a read buffer and a write buffer of
//! 8 KiB each for its whole life; neither can be configured smaller
//! (`max_buf_size` has an 8 KiB floor and only caps growth), and they are most of
//! what an idle connection costs. `max_buf_size` is lowered from hyper's ~400 KiB
//! default, which bounds how much a slow reader's connection may buffer if hyper
//! ever has to flatten writes.
//!
//! Event frames are `Bytes` shared by every client of a search and reach the
//! socket through hyper's vectored write queue without a copy, which
//! [`StallWatch`] preserves by forwarding `is_write_vectored`.
//!
//! A peer that vanishes without a FIN or RST (a machine switched off, a NAT
//! entry dropped) leaves an idle stream nothing to fail on: keep-alive comments
//! are too small to fill the send buffer, so [`StallWatch`] never fires. Every
//! accepted socket therefore has TCP keepalive and `TCP_USER_TIMEOUT` set, and
//! the kernel resets such a connection within about a minute.

use std::convert::Infallible;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use socket2::{SockRef, TcpKeepalive};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::app::App;
use crate::connection::Connection;
use crate::routes;
use crate::stall::StallWatch;
use crate::submit::Peer;

/// Time a client gets to send a complete request head.
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
/// peer is given up on after about a minute whether the stream was idle or
/// still sending keep-alive comments.
const USER_TIMEOUT: Duration = Duration::from_secs(
    KEEPALIVE_IDLE.as_secs() + KEEPALIVE_INTERVAL.as_secs() * KEEPALIVE_RETRIES as u64,
);

/// Serves connections until `shutdown`, then stops accepting, lets open streams
/// end (they watch `app.closing`) and waits for connections to finish, for at
/// most the grace period; connections still open then are dropped. Returns,
/// once every connection task has ended, the end of the grace period.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: CancellationToken,
) -> Instant {
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
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        // Small writes (event frames) must leave at once, not wait for an ACK.
        let _ = socket.set_nodelay(true);
        if let Err(error) = detect_dead_peers(&socket) {
            tracing::debug!(%peer, %error, "could not set TCP keepalive");
        }
        let connection = Arc::new(Connection::default());
        let io = StallWatch::new(
            socket,
            peer,
            app.config.sse_stall_timeout,
            connection.clone(),
            app.metrics.clone(),
        );
        let app = app.clone();
        let service = service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(Peer(peer));
            let app = app.clone();
            let connection = connection.clone();
            async move { Ok::<_, Infallible>(routes::handle(app, connection, req).await) }
        });
        let serving = graceful.watch(http.serve_connection(TokioIo::new(io), service));
        let cut_off = cut_off.clone();
        connections.spawn(async move {
            tokio::select! {
                served = serving => if let Err(error) = served {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                },
                () = cut_off.cancelled() => {}
            }
        });
    }
    drop(listener);
    let deadline = Instant::now() + app.config.shutdown_grace;
    // Normally already cancelled with `shutdown`, of which it is a child.
    app.closing.cancel();
    connections.close();
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections closed"),
        _ = tokio::time::sleep_until(deadline) => {
            tracing::warn!(
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
    use service_runtime::config::Vars;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn connections_open_at_the_end_of_the_grace_period_are_closed() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let vars = Vars::new(|name| match name {
            "REDIS_URL" => Some("redis://127.0.0.1:1".to_owned()),
            "SHUTDOWN_GRACE_SECS" => Some("1".to_owned()),
            _ => None,
        });
        let config = crate::Config::from_vars(&vars).unwrap();
        let shutdown = CancellationToken::new();
        let running = tokio::spawn(crate::run(listener, config, shutdown.clone()));

        // A request whose body never comes would hold its connection for the
        // 10 s body timeout, well past the grace period.
        let mut client = TcpStream::connect(addr).await.unwrap();
        client
            .write_all(
                b"POST /api/flights/search HTTP/1.1\r\nhost: test\r\n\
                  content-type: application/json\r\ncontent-length: 100\r\n\r\n{",
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        shutdown.cancel();
        let started = Instant::now();
        tokio::time::timeout(Duration::from_secs(5), running)
            .await
            .expect("run returns")
            .unwrap()
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(2));

        // The connection is already closed, not answered with a 408 later.
        let mut answer = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_millis(500), client.read_to_end(&mut answer))
                .await
                .expect("the connection was closed when run returned");
        assert!(read.is_err() || answer.is_empty(), "{answer:?}");
    }

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
