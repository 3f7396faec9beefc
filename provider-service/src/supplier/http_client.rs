//! The HTTP(S) client that supplier calls and credential fetches share: one
//! keep-alive pool per set of TLS files. Both the supplier calls
//! ([`super::http_supplier`]) and the token fetches ([`super::auth`]) go
//! through it, so it belongs to neither.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::supplier::suppliers_file::SupplierSettings;
use crate::supplier::tls::{Connector, TlsFiles};

/// Idle pooled connections are closed after this long.
const POOL_IDLE: Duration = Duration::from_secs(30);

/// An HTTP(S) client with its keep-alive pool: one shared by every supplier
/// on the system roots, one of its own for a supplier with its own TLS files.
pub type HttpClient = Client<Connector, Full<Bytes>>;

/// Builds a client for `suppliers`, which share `tls`. The pool keeps as many
/// idle connections per host as may be in use at once: the suppliers'
/// connection limits added up (the pool is keyed by host, and several
/// suppliers can live behind one gateway). A smaller cap would close
/// connections after each busy moment and open new ones the next. Connecting
/// is bounded by the longest supplier timeout; each call's own timeout bounds
/// it further. The TLS files were checked when configured.
pub fn client(suppliers: &[SupplierSettings], tls: &TlsFiles) -> HttpClient {
    let connector = crate::supplier::tls::connector(tls, suppliers.iter().map(|s| s.timeout).max())
        .expect("TLS files are checked when configured");
    let idle = suppliers
        .iter()
        .fold(0usize, |sum, s| sum.saturating_add(s.max_connections));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE)
        .pool_max_idle_per_host(idle.max(1))
        .build(connector)
}
