//! What each style supplier ([`crate::styles`]) demands of its callers, by
//! supplier name, in the same three modes as the airline APIs
//! ([`crate::credentials`]): a bearer token, an `X-Api-Key`, or OAuth2 client
//! credentials with tokens from `POST <base>/oauth/token`.
//!
//! Rules are set at run time with `PATCH /admin/styles/<name>` and
//! `{"bearer":…,"api_key":…,"oauth":…}`; a name never set demands nothing,
//! and the currency in the path does not matter (a token serves every
//! currency of its supplier). Only names given a rule are kept, at most
//! [`MAX_NAMES`], so calls with any name cannot grow the mock's memory.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use timetable::rng::Rng;

use crate::credentials::{OAuthRule, Tokens};

/// At most this many supplier names can be given a rule.
pub const MAX_NAMES: usize = 64;
/// The longest supplier name a rule can be set for, in bytes.
const MAX_NAME_LEN: usize = 64;

/// The credentials one style supplier demands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Rule {
    /// The bearer token every call must carry.
    pub bearer: Option<String>,
    /// The `X-Api-Key` every call must carry.
    pub api_key: Option<String>,
    /// The OAuth2 client whose tokens every call must carry.
    pub oauth: Option<OAuthRule>,
}

/// A change to a [`Rule`]: fields left out keep their value.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulePatch {
    /// Required bearer token; `""` for none.
    bearer: Option<String>,
    /// Required API key; `""` for none.
    api_key: Option<String>,
    /// Required OAuth2 client; `null` for none.
    #[serde(default, deserialize_with = "crate::behaviour::some")]
    oauth: Option<Option<OAuthRule>>,
}

/// One named supplier's rule and what it has seen.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Supplier {
    /// What calls must carry.
    #[serde(flatten)]
    pub rule: Rule,
    /// Calls received since the rule was first set, refused ones included.
    pub calls: u64,
    /// OAuth2 tokens issued since the rule was first set.
    pub tokens_issued: u64,
    /// Tokens still valid.
    #[serde(skip)]
    tokens: Tokens,
}

/// Every named style supplier's rule, shared by all connections.
#[derive(Default)]
pub struct StyleCredentials {
    /// By supplier name; a plain mutex, held for a few field updates only.
    suppliers: Mutex<BTreeMap<String, Supplier>>,
}

impl StyleCredentials {
    /// Applies `patch` to `name`'s rule, or changes nothing and says why when
    /// the name or a value is refused. Changing the OAuth2 client revokes its
    /// tokens.
    pub fn change(&self, name: &str, patch: RulePatch) -> Result<Rule, String> {
        if name.is_empty()
            || name.len() > MAX_NAME_LEN
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(format!(
                "a supplier name is 1 to {MAX_NAME_LEN} letters, digits, - or _"
            ));
        }
        let mut suppliers = self.suppliers.lock().expect("style credentials poisoned");
        if !suppliers.contains_key(name) && suppliers.len() >= MAX_NAMES {
            return Err(format!("at most {MAX_NAMES} supplier names have rules"));
        }
        let supplier = suppliers.entry(name.to_owned()).or_default();
        if let Some(bearer) = patch.bearer {
            supplier.rule.bearer = Some(bearer).filter(|b| !b.is_empty());
        }
        if let Some(key) = patch.api_key {
            supplier.rule.api_key = Some(key).filter(|k| !k.is_empty());
        }
        if let Some(oauth) = patch.oauth
            && supplier.rule.oauth != oauth
        {
            supplier.rule.oauth = oauth;
            supplier.tokens.revoke();
        }
        tracing::info!(supplier = name, "style supplier credentials changed");
        Ok(supplier.rule.clone())
    }

    /// True if `headers` carry what `name` demands; counts the call when
    /// `name` has a rule.
    pub fn authorized(&self, name: &str, headers: &hyper::HeaderMap) -> bool {
        let mut suppliers = self.suppliers.lock().expect("style credentials poisoned");
        let Some(supplier) = suppliers.get_mut(name) else {
            return true;
        };
        supplier.calls = supplier.calls.saturating_add(1);
        let rule = &supplier.rule;
        crate::credentials::allowed(
            headers,
            rule.bearer.as_deref(),
            rule.api_key.as_deref(),
            rule.oauth.as_ref(),
            &supplier.tokens,
        )
    }

    /// A token for the client in `form`, if `name` has that OAuth2 client:
    /// the token and its lifetime.
    pub fn issue_token(
        &self,
        name: &str,
        form: &[u8],
        rng: &mut Rng,
    ) -> Option<(String, Duration)> {
        let mut suppliers = self.suppliers.lock().expect("style credentials poisoned");
        let supplier = suppliers.get_mut(name)?;
        let rule = supplier.rule.oauth.clone()?;
        if !crate::credentials::client_matches(form, &rule) {
            return None;
        }
        let token = format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64());
        let lifetime = Duration::from_millis(rule.token_lifetime_ms);
        supplier.tokens.issue(token.clone(), lifetime);
        supplier.tokens_issued = supplier.tokens.issued;
        Some((token, lifetime))
    }

    /// Every named supplier's state, for `GET /admin/suppliers`.
    pub fn snapshot(&self) -> BTreeMap<String, Supplier> {
        self.suppliers
            .lock()
            .expect("style credentials poisoned")
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patch(json: &str) -> RulePatch {
        serde_json::from_str(json).unwrap()
    }

    fn bearer(token: &str) -> hyper::HeaderMap {
        let mut headers = hyper::HeaderMap::new();
        headers.insert(
            hyper::header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        headers
    }

    #[test]
    fn names_without_a_rule_demand_nothing_and_are_not_kept() {
        let board = StyleCredentials::default();
        assert!(board.authorized("anyone", &hyper::HeaderMap::new()));
        assert!(board.snapshot().is_empty());
        board.change("duff", patch(r#"{"bearer":"t0"}"#)).unwrap();
        assert!(board.authorized("duff", &bearer("t0")));
        assert!(!board.authorized("duff", &bearer("t1")));
        assert!(!board.authorized("duff", &hyper::HeaderMap::new()));
        assert_eq!(board.snapshot()["duff"].calls, 3);
        board.change("duff", patch(r#"{"bearer":""}"#)).unwrap();
        assert!(board.authorized("duff", &hyper::HeaderMap::new()));
    }

    #[test]
    fn oauth_tokens_are_per_name_and_revoked_when_the_client_changes() {
        let board = StyleCredentials::default();
        let client =
            r#"{"oauth":{"client_id":"id","client_secret":"s","token_lifetime_ms":60000}}"#;
        board.change("amad", patch(client)).unwrap();
        let mut rng = Rng::for_key("tokens");
        let form = b"grant_type=client_credentials&client_id=id&client_secret=s";
        assert!(board.issue_token("other", form, &mut rng).is_none());
        assert!(
            board
                .issue_token(
                    "amad",
                    b"grant_type=client_credentials&client_id=id",
                    &mut rng
                )
                .is_none()
        );
        let (token, lifetime) = board.issue_token("amad", form, &mut rng).unwrap();
        assert_eq!(lifetime, Duration::from_secs(60));
        assert!(board.authorized("amad", &bearer(&token)));
        board.change("amad", patch(client)).unwrap();
        assert!(board.authorized("amad", &bearer(&token)), "same client");
        board
            .change(
                "amad",
                patch(r#"{"oauth":{"client_id":"id","client_secret":"new","token_lifetime_ms":60000}}"#),
            )
            .unwrap();
        assert!(!board.authorized("amad", &bearer(&token)), "revoked");
        assert_eq!(board.snapshot()["amad"].tokens_issued, 1);
    }

    #[test]
    fn bad_names_and_too_many_names_are_refused_and_change_nothing() {
        let board = StyleCredentials::default();
        for bad in ["", "a/b", "a b", &"x".repeat(65)] {
            assert!(
                board.change(bad, patch(r#"{"bearer":"t"}"#)).is_err(),
                "{bad}"
            );
        }
        for i in 0..MAX_NAMES {
            board.change(&format!("s{i}"), patch("{}")).unwrap();
        }
        assert!(board.change("one-more", patch("{}")).is_err());
        assert!(board.change("s0", patch(r#"{"api_key":"k"}"#)).is_ok());
        assert_eq!(board.snapshot().len(), MAX_NAMES);
        assert!(serde_json::from_str::<RulePatch>(r#"{"gzip":true}"#).is_err());
    }
}
