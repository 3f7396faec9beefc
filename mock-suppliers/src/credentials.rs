//! What an airline API demands of its callers, so tests can exercise every
//! credential mode against a real server:
//!
//! * `bearer`: every call must carry `Authorization: Bearer <it>`.
//! * `api_key`: every call must carry `X-Api-Key: <it>`.
//! * `oauth`: `POST /<code>/oauth/token` with a form-encoded
//!   `grant_type=client_credentials`, `client_id` and `client_secret` issues a
//!   token valid for `token_lifetime_ms`; every call must carry one that has
//!   not expired. Tokens are forgotten when the rule changes (a revocation).
//!
//! A call without what is demanded is answered 401.

use std::time::{Duration, Instant};

use hyper::HeaderMap;
use serde::{Deserialize, Serialize};

/// The OAuth2 client the token endpoint accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthRule {
    /// The accepted client id.
    pub client_id: String,
    /// The accepted client secret.
    pub client_secret: String,
    /// How long an issued token is valid.
    pub token_lifetime_ms: u64,
}

/// Issued tokens still valid, and how many were issued.
#[derive(Debug, Default, Clone)]
pub struct Tokens {
    /// Token and expiry; expired ones are pruned on each issue.
    live: Vec<(String, Instant)>,
    /// Tokens issued since start.
    pub issued: u64,
}

/// At most this many live tokens per airline; the oldest go first.
const MAX_LIVE: usize = 1024;

impl Tokens {
    /// Issues a token for `lifetime`.
    pub fn issue(&mut self, value: String, lifetime: Duration) {
        let now = Instant::now();
        self.live.retain(|(_, until)| *until > now);
        if self.live.len() >= MAX_LIVE {
            self.live.remove(0);
        }
        self.live.push((value, now + lifetime));
        self.issued += 1;
    }

    /// Forgets every token (the rule changed).
    pub fn revoke(&mut self) {
        self.live.clear();
    }

    fn valid(&self, token: &str) -> bool {
        let now = Instant::now();
        self.live
            .iter()
            .any(|(t, until)| t == token && *until > now)
    }
}

/// True if `headers` carry what `bearer`, `api_key` and `oauth` demand.
pub fn allowed(
    headers: &HeaderMap,
    bearer: Option<&str>,
    api_key: Option<&str>,
    oauth: Option<&OAuthRule>,
    tokens: &Tokens,
) -> bool {
    let presented = headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    bearer.is_none_or(|b| presented == Some(b))
        && api_key.is_none_or(|k| key == Some(k))
        && oauth.is_none_or(|_| presented.is_some_and(|t| tokens.valid(t)))
}

/// True if the form body of a token request names `rule`'s client.
pub fn client_matches(form: &[u8], rule: &OAuthRule) -> bool {
    let mut grant = None;
    let mut id = None;
    let mut secret = None;
    for (key, value) in url::form_urlencoded::parse(form) {
        match key.as_ref() {
            "grant_type" => grant = Some(value.into_owned()),
            "client_id" => id = Some(value.into_owned()),
            "client_secret" => secret = Some(value.into_owned()),
            _ => {}
        }
    }
    grant.as_deref() == Some("client_credentials")
        && id.as_deref() == Some(rule.client_id.as_str())
        && secret.as_deref() == Some(rule.client_secret.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_expire_and_clients_must_match() {
        let rule = OAuthRule {
            client_id: "id".into(),
            client_secret: "s e".into(),
            token_lifetime_ms: 50,
        };
        assert!(client_matches(
            b"grant_type=client_credentials&client_id=id&client_secret=s+e",
            &rule
        ));
        assert!(!client_matches(
            b"grant_type=client_credentials&client_id=id&client_secret=x",
            &rule
        ));
        let mut tokens = Tokens::default();
        tokens.issue("t1".into(), Duration::from_secs(60));
        tokens.issue("t0".into(), Duration::ZERO);
        let mut headers = HeaderMap::new();
        headers.insert(hyper::header::AUTHORIZATION, "Bearer t1".parse().unwrap());
        assert!(allowed(&headers, None, None, Some(&rule), &tokens));
        headers.insert(hyper::header::AUTHORIZATION, "Bearer t0".parse().unwrap());
        assert!(
            !allowed(&headers, None, None, Some(&rule), &tokens),
            "expired"
        );
        assert!(allowed(&headers, Some("t0"), None, None, &tokens));
        assert!(!allowed(&headers, None, Some("k"), None, &tokens));
        assert_eq!(tokens.issued, 2);
    }
}
