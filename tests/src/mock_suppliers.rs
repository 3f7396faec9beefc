//! The real `mock-suppliers` process, and its admin endpoint: what tests use to
//! make an airline slow, failing, rate limited or hanging, and to count the
//! calls it received.

use crate::http;
use crate::services::{Kind, Service};

/// A running mock-suppliers process, killed on Drop.
pub struct MockSuppliers {
    /// The process.
    service: Service,
}

impl MockSuppliers {
    /// Starts the mock with `env` (e.g. `MOCK_LATENCY_MS`) and waits until it answers.
    pub async fn start(env: &[(&str, &str)]) -> MockSuppliers {
        MockSuppliers {
            service: Service::start(Kind::MockSuppliers, "", env).await,
        }
    }

    /// Where the mock listens, e.g. `http://127.0.0.1:1234`.
    pub fn base_url(&self) -> String {
        self.service.base_url()
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
