//! How each airline's API behaves, and the board that holds it while the mock
//! runs: latency, a random error rate, and one fault at a time (5xx, 429 with
//! `Retry-After`, hanging, malformed JSON, an oversized answer, a gzip bomb),
//! optionally for the next few calls only, and the currency its fares are
//! quoted in. Tests change it at run time through the admin endpoint.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use timetable::latency_range::LatencyRange;
use timetable::rng::Rng;

use crate::credentials::{OAuthRule, Tokens};

/// A latency drawn uniformly from `latency`.
fn draw(latency: LatencyRange, rng: &mut Rng) -> Duration {
    let span = latency.max_ms - latency.min_ms;
    let ms = latency.min_ms + if span == 0 { 0 } else { rng.below(span + 1) };
    Duration::from_millis(ms)
}

/// Writes `latency` as `min-max`, the form `latency_ms` is set in.
fn serialize_latency<S: serde::Serializer>(
    latency: &LatencyRange,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_str(latency)
}

/// The failure an airline's API is set to produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// Answer normally.
    #[default]
    None,
    /// 503 Service Unavailable.
    ServerError,
    /// 429 Too Many Requests with `Retry-After`.
    RateLimited,
    /// Accept the request and never answer (until [`HANG_LIMIT`], then close).
    Hang,
    /// 200 with a body that is not valid JSON.
    Malformed,
    /// 200 with a small gzip body that expands to 8 MiB.
    GzipBomb,
    /// 200 with the timetable's offers repeated into a body of just under
    /// [`crate::OVERSIZED_BYTES`]: a valid answer far larger than any real one.
    Oversized,
}

/// A hanging call gives up after this long and closes the connection without
/// an answer, so a forgotten fault cannot hold connections for ever.
pub const HANG_LIMIT: Duration = Duration::from_secs(120);

/// One airline API's behaviour.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Behaviour {
    /// Time before every answer (also before a fault's answer).
    #[serde(rename = "latency_ms", serialize_with = "serialize_latency")]
    pub latency: LatencyRange,
    /// Chance, 0 to 1, that a call without a fault answers 500.
    pub error_rate: f64,
    /// The fault to produce.
    pub fault: Fault,
    /// How many more calls get the fault before it reverts to `none`; `None`
    /// for every call until changed.
    pub fault_calls: Option<u32>,
    /// The `Retry-After` of a `rate_limited` answer, in seconds.
    pub retry_after_secs: u64,
    /// The currency fares are quoted in ([`crate::currencies`]).
    pub currency: String,
    /// The bearer token every call must carry ([`crate::credentials`]).
    pub bearer: Option<String>,
    /// The `X-Api-Key` every call must carry.
    pub api_key: Option<String>,
    /// The OAuth2 client whose tokens every call must carry.
    pub oauth: Option<OAuthRule>,
    /// Answers are gzipped for callers that accept it.
    pub gzip: bool,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            latency: LatencyRange {
                min_ms: 0,
                max_ms: 0,
            },
            error_rate: 0.0,
            fault: Fault::None,
            fault_calls: None,
            retry_after_secs: 1,
            currency: "IDR".to_owned(),
            bearer: None,
            api_key: None,
            oauth: None,
            gzip: false,
        }
    }
}

/// A change to a [`Behaviour`]: fields left out keep their value. Setting
/// `fault` without `fault_calls` makes the fault permanent.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BehaviourPatch {
    /// `"a-b"` or one number of milliseconds (a JSON number works too).
    latency_ms: Option<serde_json::Value>,
    /// Chance of a 500.
    error_rate: Option<f64>,
    /// The fault to produce.
    fault: Option<Fault>,
    /// Calls the fault lasts.
    fault_calls: Option<u32>,
    /// `Retry-After` seconds.
    retry_after_secs: Option<u64>,
    /// Currency of the fares.
    currency: Option<String>,
    /// Required bearer token; `""` for none.
    bearer: Option<String>,
    /// Required API key; `""` for none.
    api_key: Option<String>,
    /// Required OAuth2 client; `null` for none.
    #[serde(default, deserialize_with = "some")]
    oauth: Option<Option<OAuthRule>>,
    /// Gzip answers.
    gzip: Option<bool>,
}

/// Reads a present field, `null` included, as `Some`, so a patch can clear it.
pub(crate) fn some<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

impl Behaviour {
    /// Applies `patch`, or changes nothing and says why when a value is bad.
    pub fn apply(&mut self, patch: BehaviourPatch) -> Result<(), String> {
        let mut next = self.clone();
        if let Some(latency) = patch.latency_ms {
            let text = match latency {
                serde_json::Value::String(s) => s,
                serde_json::Value::Number(n) => n.to_string(),
                _ => return Err("latency_ms: expected \"min-max\" or a number".to_owned()),
            };
            next.latency = LatencyRange::parse(&text).map_err(|e| format!("latency_ms: {e}"))?;
        }
        if let Some(rate) = patch.error_rate {
            if !(0.0..=1.0).contains(&rate) {
                return Err("error_rate: expected a number from 0 to 1".to_owned());
            }
            next.error_rate = rate;
        }
        if let Some(fault) = patch.fault {
            next.fault = fault;
            next.fault_calls = patch.fault_calls;
        } else if patch.fault_calls.is_some() {
            next.fault_calls = patch.fault_calls;
        }
        // Any number, up to the largest a header can spell: the mock also
        // plays partners whose Retry-After no client should take literally.
        if let Some(secs) = patch.retry_after_secs {
            next.retry_after_secs = secs;
        }
        if let Some(currency) = patch.currency {
            crate::currencies::check(&currency)?;
            next.currency = currency;
        }
        if let Some(bearer) = patch.bearer {
            next.bearer = Some(bearer).filter(|b| !b.is_empty());
        }
        if let Some(key) = patch.api_key {
            next.api_key = Some(key).filter(|k| !k.is_empty());
        }
        if let Some(oauth) = patch.oauth {
            next.oauth = oauth;
        }
        if let Some(gzip) = patch.gzip {
            next.gzip = gzip;
        }
        *self = next;
        Ok(())
    }
}

/// What one call is to do, decided when it arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Answer with the timetable.
    Answer,
    /// 500 (the random error rate).
    InternalError,
    /// Produce this fault.
    Fault(Fault),
}

/// One airline's behaviour plus what it has seen.
#[derive(Debug, Clone, Serialize)]
pub struct Airline {
    /// Current behaviour.
    pub behaviour: Behaviour,
    /// Calls received since start, whatever they were answered with.
    pub calls: u64,
    /// OAuth2 tokens issued since start.
    pub tokens_issued: u64,
    /// Tokens still valid.
    #[serde(skip)]
    tokens: Tokens,
}

/// Every airline's behaviour and call count, shared by all connections.
pub struct Board {
    /// By airline code; a plain mutex, held for a few field updates only.
    airlines: Mutex<BTreeMap<&'static str, Airline>>,
}

impl Board {
    /// A board with these starting behaviours and no calls.
    pub fn new(behaviours: BTreeMap<&'static str, Behaviour>) -> Board {
        Board {
            airlines: Mutex::new(
                behaviours
                    .into_iter()
                    .map(|(code, behaviour)| {
                        (
                            code,
                            Airline {
                                behaviour,
                                calls: 0,
                                tokens_issued: 0,
                                tokens: Tokens::default(),
                            },
                        )
                    })
                    .collect(),
            ),
        }
    }

    /// Counts a call to `code` and decides what it does and how long it waits;
    /// a fault limited to a number of calls uses one up.
    pub fn plan(&self, code: &str, rng: &mut Rng) -> Option<(Plan, Duration, Behaviour)> {
        let mut airlines = self.airlines.lock().expect("board poisoned");
        let airline = airlines.get_mut(code)?;
        airline.calls = airline.calls.saturating_add(1);
        let behaviour = airline.behaviour.clone();
        let plan = match behaviour.fault {
            Fault::None if rng.chance(behaviour.error_rate) => Plan::InternalError,
            Fault::None => Plan::Answer,
            fault => {
                match &mut airline.behaviour.fault_calls {
                    Some(0) | Some(1) => {
                        airline.behaviour.fault = Fault::None;
                        airline.behaviour.fault_calls = None;
                    }
                    Some(left) => *left -= 1,
                    None => {}
                }
                Plan::Fault(fault)
            }
        };
        Some((plan, draw(behaviour.latency, rng), behaviour))
    }

    /// Applies `patch` to `code`'s behaviour. `Ok(None)` for an unknown airline.
    pub fn change(&self, code: &str, patch: BehaviourPatch) -> Result<Option<Behaviour>, String> {
        let mut airlines = self.airlines.lock().expect("board poisoned");
        let Some(airline) = airlines.get_mut(code) else {
            return Ok(None);
        };
        let oauth = airline.behaviour.oauth.clone();
        airline.behaviour.apply(patch)?;
        if airline.behaviour.oauth != oauth {
            airline.tokens.revoke();
        }
        tracing::info!(supplier = code, "behaviour changed");
        Ok(Some(airline.behaviour.clone()))
    }

    /// True if `headers` carry the credentials `code`'s API demands; a
    /// refused call is counted here, as it never reaches [`Board::plan`].
    pub fn authorized(&self, code: &str, headers: &hyper::HeaderMap) -> bool {
        let mut airlines = self.airlines.lock().expect("board poisoned");
        let Some(airline) = airlines.get_mut(code) else {
            return false;
        };
        let b = &airline.behaviour;
        let allowed = crate::credentials::allowed(
            headers,
            b.bearer.as_deref(),
            b.api_key.as_deref(),
            b.oauth.as_ref(),
            &airline.tokens,
        );
        if !allowed {
            airline.calls += 1;
        }
        allowed
    }

    /// A token for the client in `form`, if `code`'s API has that OAuth2
    /// client: the token and its lifetime.
    pub fn issue_token(
        &self,
        code: &str,
        form: &[u8],
        rng: &mut Rng,
    ) -> Option<(String, Duration)> {
        let mut airlines = self.airlines.lock().expect("board poisoned");
        let airline = airlines.get_mut(code)?;
        let rule = airline.behaviour.oauth.clone()?;
        if !crate::credentials::client_matches(form, &rule) {
            return None;
        }
        let token = format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64());
        let lifetime = Duration::from_millis(rule.token_lifetime_ms);
        airline.tokens.issue(token.clone(), lifetime);
        airline.tokens_issued = airline.tokens.issued;
        Some((token, lifetime))
    }

    /// Every airline's state, for `GET /admin/suppliers`.
    pub fn snapshot(&self) -> BTreeMap<&'static str, Airline> {
        self.airlines.lock().expect("board poisoned").clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patch(json: &str) -> BehaviourPatch {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_limited_fault_reverts_after_its_calls() {
        let board = Board::new(BTreeMap::from([("GA", Behaviour::default())]));
        board
            .change("GA", patch(r#"{"fault":"server_error","fault_calls":2}"#))
            .unwrap();
        let mut rng = Rng::for_key("t");
        let plans: Vec<Plan> = (0..3)
            .map(|_| board.plan("GA", &mut rng).unwrap().0)
            .collect();
        assert_eq!(
            plans,
            [
                Plan::Fault(Fault::ServerError),
                Plan::Fault(Fault::ServerError),
                Plan::Answer
            ]
        );
        assert_eq!(board.snapshot()["GA"].calls, 3);
        assert!(board.plan("XX", &mut rng).is_none());
    }

    #[test]
    fn a_bad_patch_changes_nothing() {
        let board = Board::new(BTreeMap::from([("GA", Behaviour::default())]));
        let before = board.snapshot()["GA"].behaviour.clone();
        assert!(
            board
                .change("GA", patch(r#"{"fault":"hang","error_rate":2}"#))
                .is_err()
        );
        assert_eq!(board.snapshot()["GA"].behaviour, before);
        assert_eq!(board.change("XX", patch("{}")), Ok(None));
        assert!(serde_json::from_str::<BehaviourPatch>(r#"{"nope":1}"#).is_err());
    }

    #[test]
    fn latency_draws_stay_in_range() {
        let mut rng = Rng::for_key("latency");
        let latency = LatencyRange::parse("10-20").unwrap();
        for _ in 0..200 {
            let d = draw(latency, &mut rng).as_millis();
            assert!((10..=20).contains(&d), "{d}");
        }
        assert_eq!(
            draw(LatencyRange::parse("0").unwrap(), &mut rng),
            Duration::ZERO
        );
        for bad in ["9-1", "x", "1-2-3", "999999999"] {
            assert!(LatencyRange::parse(bad).is_err(), "{bad}");
        }
    }
}
