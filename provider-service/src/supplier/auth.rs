//! Credentials on supplier calls, added by the client layer so adapters only
//! build requests and read answers.
//!
//! * **Static header**: one header on every call (`X-Api-Key: …`,
//!   `Authorization: Bearer …`).
//! * **OAuth2 client credentials**: a token is fetched from the token URL with
//!   a form-encoded POST of the client id and secret, and sent as a bearer. It
//!   is cached until shortly before its `expires_in`; however many searches
//!   need one at once, one fetch runs per supplier (single flight: the fetch
//!   holds the token's lock, the others wait for its result). A call refused
//!   with 401 drops the token it used, so the next call fetches a new one;
//!   concurrent refusals of the same token cause one fetch, not one each.
//!
//! A token endpoint that refuses the client (400, 401, 403) is
//! [`AuthError::Refused`]: the credential is wrong or revoked, which a retry
//! cannot fix. Token values are [`Secret`]s and never logged.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper::{Request, StatusCode};
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::supplier::http_client::HttpClient;
use crate::supplier::secret::Secret;
use crate::supplier::suppliers_file::AuthSettings;

/// Largest token answer read.
const MAX_TOKEN_ANSWER: usize = 64 * 1024;
/// A token is renewed this long before it expires (at most a fifth of its
/// lifetime), so a call never goes out with one about to lapse.
const RENEW_BEFORE: Duration = Duration::from_secs(30);

/// Why a call could not be given its credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The token endpoint refused the client: wrong or revoked credentials.
    #[error("the token endpoint refused the client credentials")]
    Refused,
    /// The token endpoint could not be reached, failed or answered nonsense.
    #[error("no token: the token endpoint is unavailable")]
    Unavailable,
}

/// A supplier's credentials at run time.
pub enum Credentials {
    /// None needed.
    None,
    /// One static header.
    Header(hyper::header::HeaderName, HeaderValue),
    /// OAuth2 client credentials.
    OAuth2(Box<OAuth2>),
}

/// An OAuth2 client and its cached token.
pub struct OAuth2 {
    /// Supplier code, for logs.
    supplier: &'static str,
    /// Token endpoint.
    token_url: String,
    /// The form body of a token request (id and secret, form-encoded).
    form: Secret,
    /// The current token; the lock is held while one is fetched.
    token: Mutex<Option<Token>>,
}

/// A token and until when it is used.
struct Token {
    /// The `Authorization` value, `Bearer …`.
    header: HeaderValue,
    /// Renewed after this.
    renew_at: Instant,
    /// Counts fetches, so a 401 drops only the token it was given.
    generation: u64,
}

/// Which token a call carried: what a 401 refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Used(Option<u64>);

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl Credentials {
    /// The run-time form of `settings` for supplier `supplier`.
    pub fn new(supplier: &'static str, settings: &AuthSettings) -> Credentials {
        match settings {
            AuthSettings::None => Credentials::None,
            AuthSettings::Header { name, value } => {
                let mut value =
                    HeaderValue::from_str(value.expose()).expect("checked when configured");
                value.set_sensitive(true);
                Credentials::Header(name.clone(), value)
            }
            AuthSettings::OAuth2 {
                token_url,
                client_id,
                client_secret,
                scope,
            } => {
                let mut form = url::form_urlencoded::Serializer::new(String::new());
                form.append_pair("grant_type", "client_credentials");
                form.append_pair("client_id", client_id);
                form.append_pair("client_secret", client_secret.expose());
                if let Some(scope) = scope {
                    form.append_pair("scope", scope);
                }
                Credentials::OAuth2(Box::new(OAuth2 {
                    supplier,
                    token_url: token_url.clone(),
                    form: Secret::new(form.finish()),
                    token: Mutex::new(None),
                }))
            }
        }
    }

    /// True if a 401 may be cured by a new token.
    pub fn renewable(&self) -> bool {
        matches!(self, Credentials::OAuth2(_))
    }

    /// Adds the credential to `request`, fetching a token first if needed.
    pub async fn apply(
        &self,
        request: &mut Request<Full<Bytes>>,
        client: &HttpClient,
        on_fetch: impl FnOnce(),
    ) -> Result<Used, AuthError> {
        match self {
            Credentials::None => Ok(Used(None)),
            Credentials::Header(name, value) => {
                request.headers_mut().insert(name.clone(), value.clone());
                Ok(Used(None))
            }
            Credentials::OAuth2(oauth) => {
                let (header, generation) = oauth.token(client, on_fetch).await?;
                request.headers_mut().insert(AUTHORIZATION, header);
                Ok(Used(Some(generation)))
            }
        }
    }

    /// A call carrying `used` was refused with 401: its token is dropped
    /// unless another call has already replaced it.
    pub async fn refused(&self, used: Used) {
        if let (Credentials::OAuth2(oauth), Used(Some(generation))) = (self, used) {
            let mut token = oauth.token.lock().await;
            if token.as_ref().is_some_and(|t| t.generation == generation) {
                *token = None;
            }
        }
    }
}

impl OAuth2 {
    /// The current token, fetched while holding the lock if there is none or
    /// it is due for renewal.
    async fn token(
        &self,
        client: &HttpClient,
        on_fetch: impl FnOnce(),
    ) -> Result<(HeaderValue, u64), AuthError> {
        let mut slot = self.token.lock().await;
        if let Some(token) = slot.as_ref().filter(|t| Instant::now() < t.renew_at) {
            return Ok((token.header.clone(), token.generation));
        }
        on_fetch();
        let generation = slot.as_ref().map_or(1, |t| t.generation.wrapping_add(1));
        let (header, lifetime) = self.fetch(client).await?;
        let renew_before = RENEW_BEFORE.min(lifetime / 5);
        *slot = Some(Token {
            header: header.clone(),
            renew_at: Instant::now() + lifetime.saturating_sub(renew_before),
            generation,
        });
        Ok((header, generation))
    }

    /// One token request.
    async fn fetch(&self, client: &HttpClient) -> Result<(HeaderValue, Duration), AuthError> {
        let request = Request::post(&self.token_url)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json")
            .body(Full::new(Bytes::from(self.form.expose().to_owned())))
            .map_err(|_| AuthError::Unavailable)?;
        let response = client.request(request).await.map_err(|error| {
            tracing::debug!(supplier = self.supplier, %error, "token endpoint unreachable");
            AuthError::Unavailable
        })?;
        let status = response.status();
        if matches!(
            status,
            StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        ) {
            return Err(AuthError::Refused);
        }
        if status != StatusCode::OK {
            tracing::debug!(supplier = self.supplier, %status, "token endpoint failed");
            return Err(AuthError::Unavailable);
        }
        let body = Limited::new(response.into_body(), MAX_TOKEN_ANSWER)
            .collect()
            .await
            .map_err(|_| AuthError::Unavailable)?
            .to_bytes();
        let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|error| {
            tracing::info!(supplier = self.supplier, %error, "token answer unreadable");
            AuthError::Unavailable
        })?;
        let mut header = HeaderValue::from_str(&format!("Bearer {}", answer.access_token))
            .map_err(|_| AuthError::Unavailable)?;
        header.set_sensitive(true);
        // No `expires_in`: the token is used until refused (a 401 renews it).
        let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(86_400).min(86_400));
        Ok((header, lifetime))
    }
}
