//! The real `mock-suppliers` process, and its admin endpoint: what tests use to
//! make an airline slow, failing, rate limited or hanging, and to count the
//! calls it received.

use std::path::PathBuf;

use crate::http;
use crate::pki::TestCa;
use crate::services::{Kind, Service};

/// A running mock-suppliers process, killed on Drop.
pub struct MockSuppliers {
    /// The process.
    service: Service,
    /// The HTTPS address and the directory of its certificate files, if any.
    https: Option<(String, PathBuf)>,
}

/// How a mock serves HTTPS.
pub struct HttpsOptions<'a> {
    /// Signs the server certificate (for 127.0.0.1).
    pub ca: &'a TestCa,
    /// Client certificates must be signed by this CA, if given.
    pub client_ca: Option<&'a TestCa>,
    /// Offer HTTP/2 by ALPN.
    pub http2: bool,
}

impl MockSuppliers {
    /// Starts the mock with `env` (e.g. `MOCK_LATENCY_MS`) and waits until it answers.
    pub async fn start(env: &[(&str, &str)]) -> MockSuppliers {
        MockSuppliers {
            service: Service::start(Kind::MockSuppliers, "", env).await,
            https: None,
        }
    }

    /// Where the mock listens, e.g. `http://127.0.0.1:1234`.
    pub fn base_url(&self) -> String {
        self.service.base_url()
    }

    /// Starts the mock serving the airline APIs over HTTPS too, as `options`
    /// say, with `env` besides.
    pub async fn start_https(options: &HttpsOptions<'_>, env: &[(&str, &str)]) -> MockSuppliers {
        let dir = std::env::temp_dir().join(format!("mock-tls-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("create the certificate directory");
        let server = options.ca.issue(&["127.0.0.1"]);
        let write = |name: &str, pem: &str| {
            let path = dir.join(name);
            std::fs::write(&path, pem).expect("write a PEM file");
            path.to_str().expect("UTF-8 path").to_owned()
        };
        let cert = write("server.pem", &server.cert_pem);
        let key = write("server.key", &server.key_pem);
        let addr = format!("127.0.0.1:{}", crate::free_port());
        let mut vars: Vec<(String, String)> = vec![
            ("MOCK_HTTPS_ADDR".into(), addr.clone()),
            ("MOCK_TLS_CERT_FILE".into(), cert),
            ("MOCK_TLS_KEY_FILE".into(), key),
            ("MOCK_HTTPS_HTTP2".into(), options.http2.to_string()),
        ];
        if let Some(client_ca) = options.client_ca {
            vars.push((
                "MOCK_TLS_CLIENT_CA_FILE".into(),
                write("client-ca.pem", client_ca.pem()),
            ));
        }
        vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        MockSuppliers {
            service: Service::start(Kind::MockSuppliers, "", &vars).await,
            https: Some((addr, dir)),
        }
    }

    /// The HTTPS base URL of airline `code`'s API.
    pub fn https_url(&self, code: &str) -> String {
        format!("{}/{}", self.https_base(), code.to_ascii_lowercase())
    }

    /// The HTTPS address as a URL, e.g. `https://127.0.0.1:1234`.
    pub fn https_base(&self) -> String {
        let (addr, _) = self.https.as_ref().expect("started with HTTPS");
        format!("https://{addr}")
    }

    /// Airline and style supplier calls that arrived over HTTP/2.
    pub async fn http2_calls(&self) -> u64 {
        self.state().await["http2_calls"]
            .as_u64()
            .expect("http2_calls")
    }

    /// The base URL of airline `code`'s API, e.g. `http://127.0.0.1:1234/ga`.
    pub fn api_url(&self, code: &str) -> String {
        format!("{}/{}", self.service.base_url(), code.to_ascii_lowercase())
    }

    /// OAuth2 tokens `code`'s token endpoint has issued.
    pub async fn tokens_issued(&self, code: &str) -> u64 {
        self.state().await["suppliers"][code]["tokens_issued"]
            .as_u64()
            .expect("tokens_issued")
    }

    /// `SUPPLIER_URLS` for `codes` on this mock, e.g. `GA=http://127.0.0.1:1234/ga`.
    pub fn urls(&self, codes: &[&str]) -> String {
        codes
            .iter()
            .map(|code| {
                format!(
                    "{code}={}/{}",
                    self.service.base_url(),
                    code.to_ascii_lowercase()
                )
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Changes `code`'s behaviour with a JSON patch such as
    /// `{"fault":"server_error","fault_calls":1}`; panics if the mock refuses it.
    pub async fn set(&self, code: &str, patch: &str) {
        let response = http::request(
            hyper::Method::PATCH,
            &format!("{}/admin/suppliers/{code}", self.service.base_url()),
            &[("content-type", "application/json")],
            patch.to_owned(),
        )
        .await
        .expect("PATCH behaviour");
        assert_eq!(response.status, 200, "{patch}: {:?}", response.body);
    }

    /// Sets the credentials style supplier `name` demands with a JSON patch
    /// such as `{"bearer":"t0ken"}`; panics if the mock refuses it.
    pub async fn set_style(&self, name: &str, patch: &str) {
        let response = http::request(
            hyper::Method::PATCH,
            &format!("{}/admin/styles/{name}", self.service.base_url()),
            &[("content-type", "application/json")],
            patch.to_owned(),
        )
        .await
        .expect("PATCH style credentials");
        assert_eq!(response.status, 200, "{patch}: {:?}", response.body);
    }

    /// Style supplier `name`'s calls and tokens issued since its rule was set.
    pub async fn style_counts(&self, name: &str) -> (u64, u64) {
        let state = self.state().await;
        let supplier = &state["styles"][name];
        (
            supplier["calls"].as_u64().expect("calls"),
            supplier["tokens_issued"].as_u64().expect("tokens_issued"),
        )
    }

    /// The mock's state: `{"connections":N,"suppliers":{"GA":{"calls":N,…},…}}`.
    pub async fn state(&self) -> serde_json::Value {
        let response = http::get(&format!("{}/admin/suppliers", self.service.base_url()))
            .await
            .expect("GET /admin/suppliers");
        assert_eq!(response.status, 200);
        response.json()
    }

    /// Calls `code` has received.
    pub async fn calls(&self, code: &str) -> u64 {
        self.state().await["suppliers"][code]["calls"]
            .as_u64()
            .expect("calls")
    }

    /// TCP connections the mock has accepted.
    pub async fn connections(&self) -> u64 {
        self.state().await["connections"]
            .as_u64()
            .expect("connections")
    }
}

impl Drop for MockSuppliers {
    fn drop(&mut self) {
        if let Some((_, dir)) = &self.https {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
