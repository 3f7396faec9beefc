//! A throwaway `redis-server` on a free port, stopped on Drop; optionally also
//! listening with TLS and with ACL users defined. Started by
//! `redis_process`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Child;

use crate::pki::{ServerCertificate, TestCa};
use crate::{free_port, redis_process};

/// How to configure a [`RedisServer`] beyond the defaults.
#[derive(Debug, Default, Clone)]
pub struct RedisOptions {
    /// Also listen with TLS on a second port, with a certificate for
    /// `127.0.0.1` and `localhost` from a CA made for this server.
    pub tls: bool,
    /// With `tls`, also require clients to present a certificate from the
    /// server's CA (`tls-auth-clients yes`); one is made for the services.
    pub client_certificates: bool,
    /// Lines of an ACL file (`user <name> on >password ...`) loaded at start.
    /// The `default` user keeps full access, for the test's own checks.
    pub acl: Vec<String>,
}

/// The TLS side of a server.
struct Tls {
    /// The TLS port; the plain port stays open for the test's own connections.
    port: u16,
    /// The CA that signed the initial certificate.
    ca: TestCa,
    /// The certificate and key files in use, kept across restarts.
    files: (PathBuf, PathBuf),
    /// How many certificates were installed, for fresh file names (Redis
    /// reloads TLS files on CONFIG SET only when their names change).
    installed: u32,
    /// Whether clients must present a certificate.
    client_certificates: bool,
}

/// A running redis-server child process with its own data directory.
pub struct RedisServer {
    /// Where it listens; kept across [`RedisServer::restart`].
    port: u16,
    /// Data directory (AOF lives here, so a restart keeps acknowledged writes).
    dir: PathBuf,
    /// The TLS listener, if asked for.
    tls: Option<Tls>,
    /// The ACL file, if users were asked for.
    acl_file: Option<PathBuf>,
    /// The process, `None` while stopped.
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server with AOF (`appendfsync always`, so a restart in a fault
    /// test loses nothing) and waits until it answers PING.
    pub async fn start() -> RedisServer {
        RedisServer::start_with(RedisOptions::default()).await
    }

    /// Starts a server configured by `options`.
    pub async fn start_with(options: RedisOptions) -> RedisServer {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("flight-search-redis-{port}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create redis data dir");
        let tls = options.tls.then(|| {
            let ca = TestCa::new("flight-search test CA");
            std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write CA file");
            let files = write_certificate(&dir, 0, &ca.issue(&["127.0.0.1", "localhost"]));
            if options.client_certificates {
                let client = ca.issue(&["flight-search-client"]);
                std::fs::write(dir.join("client.pem"), &client.cert_pem)
                    .expect("write client cert");
                std::fs::write(dir.join("client.key"), &client.key_pem).expect("write client key");
            }
            Tls {
                port: free_port(),
                ca,
                files,
                installed: 0,
                client_certificates: options.client_certificates,
            }
        });
        let acl_file = (!options.acl.is_empty()).then(|| {
            let path = dir.join("users.acl");
            std::fs::write(&path, options.acl.join("\n") + "\n").expect("write ACL file");
            path
        });
        let mut server = RedisServer {
            port,
            dir,
            tls,
            acl_file,
            child: None,
        };
        // A free port can be taken by another process before the server binds
        // it: such a server exits at once, and gets new ports.
        let mut attempts = 0;
        while !server.try_spawn().await {
            attempts += 1;
            assert!(attempts < 5, "no redis-server could bind its ports");
            server.port = free_port();
            if let Some(tls) = &mut server.tls {
                tls.port = free_port();
            }
        }
        server
    }

    /// `redis://127.0.0.1:<port>`: the plain-text port, as the `default` user.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `rediss://127.0.0.1:<tls port>`; panics unless started with TLS.
    pub fn tls_url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.tls().port)
    }

    /// The PEM file of the CA that signed the server's first certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.tls();
        self.dir.join("ca.pem")
    }

    /// The client certificate and key files the server accepts, when it
    /// requires one.
    pub fn client_certificate_files(&self) -> Option<(PathBuf, PathBuf)> {
        let tls = self.tls.as_ref()?;
        tls.client_certificates
            .then(|| (self.dir.join("client.pem"), self.dir.join("client.key")))
    }

    /// The CA that signed the server's first certificate.
    pub fn ca(&self) -> &TestCa {
        &self.tls().ca
    }

    /// Makes the TLS port present `certificate` to new connections, at once.
    pub async fn use_certificate(&mut self, certificate: &ServerCertificate) {
        let dir = self.dir.clone();
        let tls = self.tls.as_mut().expect("server started with TLS");
        tls.installed += 1;
        tls.files = write_certificate(&dir, tls.installed, certificate);
        let (cert, key) = tls.files.clone();
        let () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("tls-cert-file")
            .arg(cert.to_str().expect("UTF-8 temp path"))
            .arg("tls-key-file")
            .arg(key.to_str().expect("UTF-8 temp path"))
            .query_async(&mut self.connection().await)
            .await
            .expect("CONFIG SET the TLS certificate");
    }

    fn tls(&self) -> &Tls {
        self.tls.as_ref().expect("server started with TLS")
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
        redis_process::kill(&mut self.child);
    }

    /// Starts the server again on the same port and data directory.
    pub async fn restart(&mut self) {
        self.stop();
        assert!(self.try_spawn().await, "a restarted redis-server exited");
    }

    /// Starts the process; false if and only if it exited instead of
    /// answering (its port taken, say).
    async fn try_spawn(&mut self) -> bool {
        self.child = redis_process::start(
            self.port,
            &self.dir,
            self.acl_file.as_deref(),
            &self.tls_args(),
        )
        .await;
        self.child.is_some()
    }

    /// The TLS listener's arguments, none without TLS.
    fn tls_args(&self) -> Vec<OsString> {
        let Some(tls) = &self.tls else {
            return Vec::new();
        };
        vec![
            "--tls-port".into(),
            tls.port.to_string().into(),
            "--tls-cert-file".into(),
            tls.files.0.clone().into(),
            "--tls-key-file".into(),
            tls.files.1.clone().into(),
            "--tls-ca-cert-file".into(),
            self.dir.join("ca.pem").into(),
            "--tls-auth-clients".into(),
            if tls.client_certificates { "yes" } else { "no" }.into(),
        ]
    }
}

/// Writes a certificate and its key under fresh names; returns their paths.
fn write_certificate(
    dir: &std::path::Path,
    n: u32,
    certificate: &ServerCertificate,
) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("server-{n}.pem"));
    let key = dir.join(format!("server-{n}.key"));
    std::fs::write(&cert, &certificate.cert_pem).expect("write server certificate");
    std::fs::write(&key, &certificate.key_pem).expect("write server key");
    (cert, key)
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
