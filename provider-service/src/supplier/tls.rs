//! HTTPS to partners: rustls with ring (no OpenSSL), the system's root
//! certificates plus an optional per-supplier CA file, an optional client
//! certificate and key (mutual TLS), and HTTP/2 when the partner offers it by
//! ALPN, HTTP/1.1 otherwise. Plain `http://` URLs keep working through the
//! same connector.

use std::sync::Arc;
use std::time::Duration;

use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

/// The connector every supplier client uses.
pub type Connector = HttpsConnector<HttpConnector>;

/// A supplier's TLS files; all empty for system roots and no client
/// certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM CA certificates trusted besides the system's.
    pub ca_file: Option<String>,
    /// PEM client certificate chain, for mutual TLS.
    pub client_cert_file: Option<String>,
    /// PEM private key of the client certificate.
    pub client_key_file: Option<String>,
}

impl TlsFiles {
    /// True if nothing differs from the shared default client.
    pub fn is_default(&self) -> bool {
        *self == TlsFiles::default()
    }
}

/// The rustls configuration for `files`; the error names the file.
pub fn client_config(files: &TlsFiles) -> Result<ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    // Unreadable system certificates are skipped: a partner with a private
    // CA names it in `ca_file`, and a public one fails its handshake clearly.
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = &files.ca_file {
        let mut added = 0;
        let pem = read_pem(path)?;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| format!("{path}: {e}"))?;
            roots.add(cert).map_err(|e| format!("{path}: {e}"))?;
            added += 1;
        }
        if added == 0 {
            return Err(format!("{path}: no PEM certificate"));
        }
    }
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots);
    match (&files.client_cert_file, &files.client_key_file) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(cert_path), Some(key_path)) => {
            let certs = CertificateDer::pem_slice_iter(&read_pem(cert_path)?)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("{cert_path}: {e}"))?;
            let key = PrivateKeyDer::from_pem_slice(&read_pem(key_path)?)
                .map_err(|e| format!("{key_path}: {e}"))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| format!("{cert_path}: {e}"))
        }
        _ => Err("give both client_cert_file and client_key_file, or neither".to_owned()),
    }
}

/// The PEM file at `path`, read under the rules of every file a setting names
/// (a regular file of at most 1 MiB, so a FIFO or a device cannot hang or
/// flood the start).
fn read_pem(path: &str) -> Result<Vec<u8>, String> {
    service_runtime::files::read_bounded(std::path::Path::new(path))
        .map_err(|e| format!("{path}: {e}"))
}

/// A connector for `files`, connecting within `connect_timeout`.
pub fn connector(files: &TlsFiles, connect_timeout: Option<Duration>) -> Result<Connector, String> {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.set_connect_timeout(connect_timeout);
    http.enforce_http(false);
    Ok(HttpsConnectorBuilder::new()
        .with_tls_config(client_config(files)?)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http))
}
