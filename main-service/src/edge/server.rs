//! The HTTP/1.1 server: the workspace's accept loop
//! ([`service_runtime::http_server`]) with this service's connection state.
//!
//! Each connection gets a [`Connection`] (the reader of a finished stream
//! waits there until the client has read the response) and a [`StallWatch`]
//! around its socket, which cuts off a client that accepts nothing for
//! `SSE_STALL_TIMEOUT_SECS`. Event frames are `Bytes` shared by every client of
//! a search and reach the socket through hyper's vectored write queue without
//! a copy, which [`StallWatch`] preserves by forwarding `is_write_vectored`.

use std::convert::Infallible;
use std::sync::Arc;

use hyper::service::service_fn;
use service_runtime::http_server;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::delivery::connection::Connection;
use crate::edge::routes;
use crate::edge::stall::StallWatch;
use crate::intake::rate_limit::Peer;

/// Serves connections until `shutdown`, then stops accepting, lets open streams
/// end (they watch `app.closing`, a child of `shutdown`) and waits for
/// connections to finish, for at most the grace period; connections still open
/// then are dropped. Returns, once every connection task has ended, the end of
/// the grace period.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: CancellationToken,
) -> Instant {
    let grace = app.config.shutdown_grace;
    http_server::serve("main", listener, grace, shutdown, move |socket, peer| {
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
        (io, service)
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use service_runtime::config::Vars;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

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
}
