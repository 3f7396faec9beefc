//! The airline APIs over HTTPS, on an address of their own beside the plain
//! HTTP one (which keeps `/healthz` and `/admin` simple for probes and tests):
//! rustls with the server certificate given at start, optionally demanding a client certificate signed by a given CA
//! (mutual TLS), speaking HTTP/2 to clients that offer it by ALPN and
//! HTTP/1.1 to the others. Open connections are closed at shutdown.

use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::Service;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A handshake that takes longer is abandoned.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where HTTPS is served, and the server's TLS files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The HTTPS address.
    pub addr: std::net::SocketAddr,
    /// PEM certificate chain.
    pub cert_file: String,
    /// PEM private key.
    pub key_file: String,
    /// PEM CA whose client certificates are required; `None`: none asked.
    pub client_ca_file: Option<String>,
    /// Offer HTTP/2 by ALPN; when false only HTTP/1.1 is offered.
    pub http2: bool,
}

/// The acceptor for `files`; the error names the file.
pub fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = CertificateDer::pem_file_iter(&files.cert_file)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| format!("{}: {e}", files.cert_file))?;
    let key = PrivateKeyDer::from_pem_file(&files.key_file)
        .map_err(|e| format!("{}: {e}", files.key_file))?;
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match &files.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| format!("{path}: {e}"))? {
                roots
                    .add(cert.map_err(|e| format!("{path}: {e}"))?)
                    .map_err(|e| format!("{path}: {e}"))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("{path}: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("{}: {e}", files.cert_file))?;
    config.alpn_protocols = if files.http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The HTTPS listener and acceptor for `files`.
pub async fn listen(files: &TlsFiles) -> Result<(TcpListener, TlsAcceptor), String> {
    let acceptor = acceptor(files)?;
    let listener = TcpListener::bind(files.addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", files.addr))?;
    tracing::info!(addr = %files.addr, "serving the airline APIs over HTTPS");
    Ok((listener, acceptor))
}

/// Serves HTTPS on `listener` until `shutdown`, with a service from
/// `service` for each connection.
pub async fn serve<S, F>(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    shutdown: CancellationToken,
    service: F,
) where
    F: Fn() -> S,
    S: Service<Request<Incoming>, Response = Response<http_body_util::Full<bytes::Bytes>>>
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let connections = TaskTracker::new();
    loop {
        let socket = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => socket,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    continue;
                }
            },
        };
        let _ = socket.set_nodelay(true);
        let acceptor = acceptor.clone();
        let service = service();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(socket)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    tracing::debug!(%error, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let builder = auto::Builder::new(TokioExecutor::new());
            let serving = builder.serve_connection(TokioIo::new(tls), service);
            tokio::select! {
                served = serving => if let Err(error) = served {
                    tracing::debug!(%error, "connection ended with an error");
                },
                () = shutdown.cancelled() => {}
            }
        });
    }
    connections.close();
    connections.wait().await;
}
