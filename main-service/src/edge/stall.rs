//! Cutting off clients that stopped reading.
//!
//! An event stream is written to for as long as its search runs. A client whose
//! connection stops accepting bytes (a frozen tab, a process that stopped
//! reading) would otherwise pin its connection, its buffers and its reader
//! registration for as long as it stays that way. [`StallWatch`] wraps a
//! connection's socket: when a write has been refused (`Pending`) and nothing
//! could be written for the stall limit, the next write fails, hyper drops the
//! connection, and with it the response body, which detaches the reader. Only
//! connections whose writes are blocked pay for a timer, and one blocked client
//! never delays another: every connection has its own task and its own socket
//! buffer.
//!
//! It only sees writes that block, which takes more than the socket buffers
//! hold. A peer that vanished without a reset while its stream is idle is never
//! blocked on: keep-alive comments are too small to fill the buffers. Such peers
//! are found by the kernel, through the TCP keepalive and `TCP_USER_TIMEOUT` set
//! on every accepted socket (see [`crate::edge::server`]).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::delivery::connection::Connection;
use crate::metrics::Metrics;

/// A socket whose writes fail once they have been blocked for too long.
pub(crate) struct StallWatch<IO> {
    /// The socket.
    io: IO,
    /// How long writes may stay blocked.
    limit: Duration,
    /// Fires `limit` after writes got blocked; created on the first block, then
    /// reset and reused, so connections that never block never allocate one.
    timer: Option<Pin<Box<Sleep>>>,
    /// True from a refused write until the next write that makes progress.
    blocked: bool,
    /// Told when the limit is hit, so the stream that ends with it says why.
    connection: Arc<Connection>,
    /// Who is at the other end, for the log line.
    peer: SocketAddr,
    /// Counts cut-off clients.
    metrics: Arc<Metrics>,
}

impl<IO> StallWatch<IO> {
    /// Watches `io`, which belongs to `peer`.
    pub(crate) fn new(
        io: IO,
        peer: SocketAddr,
        limit: Duration,
        connection: Arc<Connection>,
        metrics: Arc<Metrics>,
    ) -> StallWatch<IO> {
        StallWatch {
            io,
            limit,
            timer: None,
            blocked: false,
            connection,
            peer,
            metrics,
        }
    }

    /// Passes a write's outcome through, tracking how long writes have been
    /// refused; turns a refusal past the limit into an error.
    fn check<T>(
        &mut self,
        cx: &mut Context<'_>,
        outcome: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if outcome.is_ready() {
            self.blocked = false;
            return outcome;
        }
        let timer = match &mut self.timer {
            Some(timer) if self.blocked => timer,
            Some(timer) => {
                timer.as_mut().reset(Instant::now() + self.limit);
                timer
            }
            None => self.timer.insert(Box::pin(tokio::time::sleep(self.limit))),
        };
        self.blocked = true;
        ready!(timer.as_mut().poll(cx));
        self.connection.mark_stalled();
        self.metrics.sse_clients_dropped_slow.inc();
        tracing::info!(
            peer = %self.peer,
            stalled_secs = self.limit.as_secs(),
            "dropping a client that stopped reading"
        );
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "client stopped reading",
        )))
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for StallWatch<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for StallWatch<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let outcome = Pin::new(&mut self.io).poll_write(cx, buf);
        self.check(cx, outcome)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let outcome = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.check(cx, outcome)
    }

    /// Forwarded, so hyper keeps queueing the shared event frames for `writev`
    /// instead of copying them into a flat buffer per connection.
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn watch(
        io: tokio::io::DuplexStream,
        connection: &Arc<Connection>,
    ) -> StallWatch<tokio::io::DuplexStream> {
        StallWatch::new(
            io,
            "127.0.0.1:1".parse().unwrap(),
            Duration::from_secs(5),
            connection.clone(),
            Arc::new(Metrics::new(&[])),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn writes_blocked_past_the_limit_fail() {
        let (client, server) = tokio::io::duplex(16);
        let connection = Arc::new(Connection::default());
        let mut io = watch(server, &connection);
        io.write_all(&[0; 16]).await.unwrap();
        let started = Instant::now();
        let err = io.write_all(&[0; 1]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        assert!(connection.is_stalled());
        drop(client);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_reader_that_keeps_reading_is_not_cut_off() {
        let (mut client, server) = tokio::io::duplex(16);
        let connection = Arc::new(Connection::default());
        let mut io = watch(server, &connection);
        let reader = tokio::spawn(async move {
            let mut buf = [0; 16];
            for _ in 0..8 {
                tokio::time::sleep(Duration::from_secs(3)).await;
                tokio::io::AsyncReadExt::read_exact(&mut client, &mut buf)
                    .await
                    .unwrap();
            }
        });
        for _ in 0..8 {
            io.write_all(&[1; 16]).await.unwrap();
        }
        reader.await.unwrap();
        assert!(!connection.is_stalled());
    }
}
