//! Where a Redis server is and how to reach it: a `redis://` or `rediss://` URL,
//! plus, for TLS, the certificate authorities to trust.
//!
//! [`RedisEndpoint::parse`] turns one URL and its [`TlsOptions`] (the CAs of
//! `REDIS_CA_FILE`, the client certificate of `REDIS_CLIENT_CERT_FILE` and
//! `REDIS_CLIENT_KEY_FILE`) into connection settings, once per URL, so a list of URLs (cluster seeds)
//! goes through the same checks. TLS uses rustls with the `ring` crypto provider,
//! installed explicitly before the first client is built: rustls refuses to guess
//! a provider when none is chosen. Without `REDIS_CA_FILE` the server certificate
//! is checked against the system's roots (`/etc/ssl/certs`, the `ca-certificates`
//! package); with it, against those CAs only. Certificate and host name checks
//! cannot be switched off.
//!
//! An endpoint prints (`Display`, `Debug`) with its password masked.

use std::sync::Arc;

use redis::{ClientTlsConfig, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, TlsCertificates};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::redact::redact_url;

/// The accepted URL forms, for error messages.
pub const URL_FORMS: &str =
    "redis://[user:password@]host:port[/db] or rediss://[user:password@]host:port[/db]";

/// Certificate authorities to trust for `rediss://`, read from a PEM file.
#[derive(Clone)]
pub struct TrustedCas {
    /// The PEM text as read, every certificate in it checked to parse; the redis
    /// client takes PEM.
    pem: Arc<[u8]>,
}

impl TrustedCas {
    /// The CAs of a PEM file's bytes (read with
    /// [`crate::config::read_setting_file`]). Fails, with a reason fit for a
    /// configuration error, if they hold no certificate or a malformed one.
    pub fn from_pem(pem: Vec<u8>) -> Result<TrustedCas, String> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| format!("not a PEM certificate file: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("holds a certificate that cannot be a CA: {e}"))?;
        }
        if roots.is_empty() {
            return Err("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".to_owned());
        }
        Ok(TrustedCas { pem: pem.into() })
    }
}

/// A client certificate chain and its private key, PEM, for servers that
/// require clients to prove who they are (`tls-auth-clients yes`).
#[derive(Clone)]
pub struct ClientIdentity {
    /// The certificate chain, leaf first.
    cert_pem: Arc<[u8]>,
    /// The private key of the leaf; never printed.
    key_pem: Arc<[u8]>,
}

impl ClientIdentity {
    /// Checks that a PEM file's bytes hold a certificate chain; the reason on
    /// failure fits a configuration error.
    pub fn certificates(pem: Vec<u8>) -> Result<Vec<u8>, String> {
        let mut found = false;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            cert.map_err(|e| format!("not a PEM certificate file: {e}"))?;
            found = true;
        }
        if !found {
            return Err("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".to_owned());
        }
        Ok(pem)
    }

    /// Checks that a PEM file's bytes hold a private key; the reason on
    /// failure never quotes the file.
    pub fn key(pem: Vec<u8>) -> Result<Vec<u8>, String> {
        PrivateKeyDer::from_pem_slice(&pem)
            .map_err(|_| "holds no PEM private key (PKCS#8, PKCS#1 or SEC1)".to_owned())?;
        Ok(pem)
    }

    /// The identity made of a chain and key checked with the functions above.
    pub fn new(cert_pem: Vec<u8>, key_pem: Vec<u8>) -> ClientIdentity {
        ClientIdentity {
            cert_pem: cert_pem.into(),
            key_pem: key_pem.into(),
        }
    }
}

/// How to secure a `rediss://` connection beyond the defaults.
#[derive(Clone, Debug, Default)]
pub struct TlsOptions {
    /// CAs to trust instead of the system roots.
    pub cas: Option<TrustedCas>,
    /// The certificate to present, when the server asks for one.
    pub identity: Option<ClientIdentity>,
}

/// One Redis server to connect to: its parsed URL and how to trust its TLS certificate.
#[derive(Clone)]
pub struct RedisEndpoint {
    /// Address, database and credentials, as the redis client takes them.
    info: ConnectionInfo,
    /// The URL with its password masked: what logs and errors show.
    shown: String,
    /// CAs and client certificate for a `rediss://` URL.
    tls: TlsOptions,
}

impl RedisEndpoint {
    /// Parses `url` (`redis://`, `rediss://` or a Unix socket URL). TLS options
    /// may be given only with `rediss://`: a CA or certificate next to a
    /// plain-text URL means TLS was intended and would silently not happen.
    /// Errors never contain the password.
    pub fn parse(url: &str, tls: TlsOptions) -> Result<RedisEndpoint, String> {
        let shown = redact_url(url);
        let info = url.into_connection_info().map_err(|e| {
            // The client's messages do not quote the URL; masked anyway, so a
            // future one that does cannot leak.
            let detail = e.to_string().replace(url, &shown);
            format!("expected {URL_FORMS} ({detail})")
        })?;
        check_database(info.redis_settings().db())?;
        match info.addr() {
            ConnectionAddr::TcpTls { insecure: true, .. } => {
                return Err(
                    "certificate checks cannot be turned off (#insecure); trust a private CA with REDIS_CA_FILE"
                        .to_owned(),
                );
            }
            ConnectionAddr::TcpTls { .. } => {}
            _ if tls.cas.is_some() => {
                return Err("REDIS_CA_FILE is set, so expected a rediss:// (TLS) URL".to_owned());
            }
            _ if tls.identity.is_some() => {
                return Err(
                    "REDIS_CLIENT_CERT_FILE is set, so expected a rediss:// (TLS) URL".to_owned(),
                );
            }
            _ => {}
        }
        Ok(RedisEndpoint { info, shown, tls })
    }

    /// True if and only if connections use TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self.info.addr(), ConnectionAddr::TcpTls { .. })
    }

    /// The address, database and credentials.
    pub fn connection_info(&self) -> &ConnectionInfo {
        &self.info
    }

    /// The CAs a TLS connection trusts and the certificate it presents, in the
    /// form the redis client's builders take (`Client::build_with_tls`, the
    /// cluster builder's `certs`); `None` for the system roots without a client
    /// certificate, or a plain-text URL.
    pub fn tls_certificates(&self) -> Option<TlsCertificates> {
        let TlsOptions { cas, identity } = &self.tls;
        if cas.is_none() && identity.is_none() {
            return None;
        }
        Some(TlsCertificates {
            client_tls: identity.as_ref().map(|id| ClientTlsConfig {
                client_cert: id.cert_pem.to_vec(),
                client_key: id.key_pem.to_vec(),
            }),
            root_cert: cas.as_ref().map(|cas| cas.pem.to_vec()),
        })
    }

    /// A client for this endpoint; connects only when asked to.
    pub fn client(&self) -> redis::RedisResult<redis::Client> {
        install_crypto_provider();
        match self.tls_certificates() {
            Some(certs) => redis::Client::build_with_tls(self.info.clone(), certs),
            None => redis::Client::open(self.info.clone()),
        }
    }
}

/// The highest database index any Redis server can have: `databases` is at
/// most `INT_MAX`, and indexes count from 0.
pub const MAX_DATABASE_INDEX: i64 = i32::MAX as i64 - 1;

/// Refuses a database index no server can have. One beyond this server's
/// `databases` is only known when it answers the `SELECT` (see
/// [`crate::redis_failure::LinkFault`]).
fn check_database(db: i64) -> Result<(), String> {
    if (0..=MAX_DATABASE_INDEX).contains(&db) {
        Ok(())
    } else {
        Err(format!(
            "the database index (/{db}) must be from 0 to {MAX_DATABASE_INDEX}, \
             and below the server's `databases` setting (16 by default)"
        ))
    }
}

impl RedisEndpoint {
    /// `error` as a log line should show it, with a hint where the client's
    /// own words are too vague: a TLS connection that times out is most often
    /// a server that does not speak TLS on that port (it waits for a line of
    /// text and never answers the handshake).
    pub fn explain(&self, error: &redis::RedisError) -> String {
        if self.is_tls() && error.is_timeout() {
            format!("{error} (no TLS handshake: does the server speak TLS on this port?)")
        } else {
            error.to_string()
        }
    }
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientIdentity(<redacted>)")
    }
}

impl std::fmt::Debug for TrustedCas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TrustedCas({} bytes of PEM)", self.pem.len())
    }
}

impl std::fmt::Display for RedisEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl std::fmt::Debug for RedisEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisEndpoint")
            .field("url", &self.shown)
            .field("ca_file", &self.tls.cas.is_some())
            .field("client_certificate", &self.tls.identity.is_some())
            .finish()
    }
}

/// Makes `ring` the process's rustls crypto provider unless one is set already.
/// Idempotent: installing twice is refused by rustls and ignored here.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_tls_urls_parse_and_print_without_the_password() {
        let plain =
            RedisEndpoint::parse("redis://app:s3cret@127.0.0.1:6379/2", TlsOptions::default())
                .unwrap();
        assert!(!plain.is_tls());
        assert_eq!(plain.to_string(), "redis://app:***@127.0.0.1:6379/2");
        assert_eq!(plain.connection_info().redis_settings().db(), 2);
        let tls =
            RedisEndpoint::parse("rediss://:s3cret@cache.example:6380", TlsOptions::default())
                .unwrap();
        assert!(tls.is_tls());
        assert!(tls.tls_certificates().is_none());
        assert!(!format!("{tls:?}").contains("s3cret"));
        assert!(tls.client().is_ok());
    }

    #[test]
    fn bad_urls_name_the_accepted_forms_without_the_password() {
        for url in ["http://:s3cret@h", "rediss://:s3cret@h:port", "s3cret"] {
            let reason = RedisEndpoint::parse(url, TlsOptions::default()).unwrap_err();
            assert!(
                reason.starts_with(&format!("expected {URL_FORMS}")),
                "{reason}"
            );
            assert!(!reason.contains("s3cret"), "{reason}");
        }
        let reason =
            RedisEndpoint::parse("rediss://h:6380/#insecure", TlsOptions::default()).unwrap_err();
        assert!(reason.contains("#insecure"), "{reason}");
    }

    #[test]
    fn database_indexes_no_server_can_have_are_refused() {
        for url in [
            "redis://127.0.0.1:6379/99999999999",
            "redis://127.0.0.1:6379/2147483647",
            "redis://127.0.0.1:6379/-1",
        ] {
            let reason = RedisEndpoint::parse(url, TlsOptions::default()).unwrap_err();
            assert!(reason.contains("database index"), "{url}: {reason}");
        }
        let highest = format!("redis://127.0.0.1:6379/{MAX_DATABASE_INDEX}");
        assert!(RedisEndpoint::parse(&highest, TlsOptions::default()).is_ok());
    }

    #[test]
    fn ca_files_must_hold_certificates() {
        let junk = b"not a certificate\n".to_vec();
        assert!(
            TrustedCas::from_pem(junk)
                .unwrap_err()
                .contains("no PEM certificate")
        );
    }

    #[test]
    fn tls_options_need_a_tls_url() {
        let cas = TrustedCas {
            pem: Arc::from(&b"-----BEGIN CERTIFICATE-----"[..]),
        };
        let with_cas = TlsOptions {
            cas: Some(cas),
            identity: None,
        };
        let reason = RedisEndpoint::parse("redis://h:6379", with_cas.clone()).unwrap_err();
        assert!(reason.contains("REDIS_CA_FILE"), "{reason}");
        let tls = RedisEndpoint::parse("rediss://h:6380", with_cas).unwrap();
        let certs = tls.tls_certificates().expect("CAs given");
        assert!(certs.root_cert.is_some() && certs.client_tls.is_none());

        let with_identity = TlsOptions {
            cas: None,
            identity: Some(ClientIdentity::new(b"cert".to_vec(), b"key".to_vec())),
        };
        let reason = RedisEndpoint::parse("redis://h:6379", with_identity.clone()).unwrap_err();
        assert!(reason.contains("REDIS_CLIENT_CERT_FILE"), "{reason}");
        let tls = RedisEndpoint::parse("rediss://h:6380", with_identity).unwrap();
        let certs = tls.tls_certificates().expect("identity given");
        assert!(certs.root_cert.is_none() && certs.client_tls.is_some());
        assert!(!format!("{tls:?}").contains("key"), "{tls:?}");
    }
}
