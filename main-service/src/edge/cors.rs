//! Cross-origin resource sharing: which web origins other than the service's
//! own may call the API from a browser (`CORS_ALLOWED_ORIGINS`).
//!
//! Applied in one place, to every response on its way out ([`Cors::apply`]),
//! so errors, event streams and any answer added later carry the same headers
//! as successes: a browser hides a response without `Access-Control-Allow-Origin`
//! from the page entirely, error body included. A preflight (`OPTIONS` with
//! `Access-Control-Request-Method`) on an API route from an allowed origin is
//! answered 204 ([`Cors::preflight`]); from any other origin it stays what any
//! other method is (405), without CORS headers, and the browser blocks the
//! request.
//!
//! Each origin is matched exactly. A wildcard inside an origin
//! (`https://*.example.com`) is refused at start rather than read as a
//! subdomain pattern: every origin a policy allows is then one an operator
//! wrote down, and a typo cannot open the API to a whole domain.
//!
//! No credentials are allowed (`Access-Control-Allow-Credentials` is never
//! sent): the API uses no cookies or HTTP authentication, and without
//! credentials `*` is a valid answer.

use std::str::FromStr;

use hyper::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_METHOD,
    HeaderMap, HeaderValue, ORIGIN, VARY,
};
use hyper::{Response, StatusCode};

use crate::answer::response::{self, Body};

/// Request headers a cross-origin page may send: the submission's type, and
/// the resume point of an EventSource reconnecting or of a page resuming by hand.
const ALLOW_HEADERS: HeaderValue = HeaderValue::from_static("Content-Type, Last-Event-ID");

/// Response headers a cross-origin page may read besides the safelisted ones:
/// where a new search streams, and how long to wait after a 503 or 429.
const EXPOSE_HEADERS: HeaderValue = HeaderValue::from_static("Location, Retry-After");

/// How long a browser may reuse a preflight answer, in seconds. An hour keeps
/// preflights rare; Chromium caps it at two hours anyway.
const MAX_AGE: HeaderValue = HeaderValue::from_static("3600");

/// The origins allowed to call the API from a browser.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AllowedOrigins {
    /// Same origin only: no CORS headers at all (the default).
    #[default]
    None,
    /// Any origin (`*`).
    Any,
    /// These origins, each in the form a browser sends in `Origin`
    /// (`scheme://host[:port]`, lower case, default port omitted).
    List(Vec<String>),
}

impl FromStr for AllowedOrigins {
    type Err = String;

    /// `*`, or comma-separated origins such as `https://app.example.com,
    /// http://localhost:3000`; each is normalised the way browsers serialise
    /// an origin, so `HTTPS://App.Example.com:443` matches what they send.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text == "*" {
            return Ok(AllowedOrigins::Any);
        }
        let origins = text
            .split(',')
            .map(str::trim)
            .filter(|origin| !origin.is_empty())
            .map(origin)
            .collect::<Result<Vec<_>, _>>()?;
        if origins.is_empty() {
            return Ok(AllowedOrigins::None);
        }
        Ok(AllowedOrigins::List(origins))
    }
}

/// One configured origin in the browser's serialisation, or why it is not one.
fn origin(text: &str) -> Result<String, String> {
    let expected = || {
        format!(
            "expected `*` or comma-separated origins like https://app.example.com or \
             http://localhost:3000 (scheme, host and optional port only); `{text}` is not one"
        )
    };
    // A pattern would look like it matches subdomains and match nothing,
    // since a browser sends its own origin, never a pattern.
    if text.contains('*') {
        return Err(format!(
            "{}; wildcards inside an origin are not supported: list each origin",
            expected()
        ));
    }
    let url = url::Url::parse(text).map_err(|_| expected())?;
    let bare = matches!(url.scheme(), "http" | "https")
        && url.username().is_empty()
        && url.password().is_none()
        && url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none();
    if !bare {
        return Err(expected());
    }
    Ok(url.origin().ascii_serialization())
}

/// The CORS policy of this instance.
#[derive(Debug)]
pub(crate) struct Cors {
    /// Who may call.
    allowed: AllowedOrigins,
}

/// The origin of a request that the policy allows, as its
/// `Access-Control-Allow-Origin` value; taken from the request before it is
/// handed to its handler.
#[derive(Debug, Clone)]
pub(crate) struct AllowedOrigin(HeaderValue);

impl Cors {
    /// The policy for `allowed`.
    pub(crate) fn new(allowed: AllowedOrigins) -> Cors {
        Cors { allowed }
    }

    /// The `Access-Control-Allow-Origin` value for a request with `headers`,
    /// if and only if it comes from an allowed origin. A request with several
    /// `Origin` headers is not allowed.
    pub(crate) fn allowed_origin(&self, headers: &HeaderMap) -> Option<AllowedOrigin> {
        let mut origins = headers.get_all(ORIGIN).iter();
        let origin = origins.next()?;
        if origins.next().is_some() {
            return None;
        }
        match &self.allowed {
            AllowedOrigins::None => None,
            AllowedOrigins::Any => Some(AllowedOrigin(HeaderValue::from_static("*"))),
            AllowedOrigins::List(list) => {
                let sent = origin.to_str().ok()?;
                list.iter()
                    .any(|allowed| allowed == sent)
                    .then(|| AllowedOrigin(origin.clone()))
            }
        }
    }

    /// The 204 answer to a preflight from `origin` for a route answering
    /// `methods`, if the request is one: a preflight carries
    /// `Access-Control-Request-Method`; a bare `OPTIONS` is not.
    pub(crate) fn preflight(
        &self,
        origin: Option<&AllowedOrigin>,
        headers: &HeaderMap,
        methods: &'static str,
    ) -> Option<Response<Body>> {
        origin?;
        headers.get(ACCESS_CONTROL_REQUEST_METHOD)?;
        let mut response = response::empty(StatusCode::NO_CONTENT);
        let headers = response.headers_mut();
        headers.insert(
            ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(methods),
        );
        headers.insert(ACCESS_CONTROL_ALLOW_HEADERS, ALLOW_HEADERS);
        headers.insert(ACCESS_CONTROL_MAX_AGE, MAX_AGE);
        Some(response)
    }

    /// Adds the CORS headers `response` needs: `Access-Control-Allow-Origin`
    /// and the exposed headers for an allowed `origin`; and, whenever a policy
    /// is configured, `Vary: Origin`, because the answer then depends on the
    /// requesting origin and a shared cache must not hand one origin's answer
    /// to another.
    pub(crate) fn apply(&self, origin: Option<AllowedOrigin>, response: &mut Response<Body>) {
        if self.allowed == AllowedOrigins::None {
            return;
        }
        let headers = response.headers_mut();
        headers.append(VARY, HeaderValue::from_static("Origin"));
        if let Some(AllowedOrigin(origin)) = origin {
            headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSE_HEADERS);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(origins: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for origin in origins {
            headers.append(ORIGIN, HeaderValue::from_str(origin).unwrap());
        }
        headers
    }

    fn list(text: &str) -> Cors {
        Cors::new(text.parse().unwrap())
    }

    #[test]
    fn origins_are_read_and_normalised_as_browsers_send_them() {
        assert_eq!("".parse(), Ok(AllowedOrigins::None));
        assert_eq!(" * ".parse(), Ok(AllowedOrigins::Any));
        assert_eq!(
            "HTTPS://App.Example.com:443, http://localhost:3000/,".parse(),
            Ok(AllowedOrigins::List(vec![
                "https://app.example.com".to_owned(),
                "http://localhost:3000".to_owned()
            ]))
        );
    }

    #[test]
    fn anything_but_a_bare_origin_is_refused() {
        for bad in [
            "example.com",
            "ftp://example.com",
            "https://example.com/app",
            "https://example.com?x=1",
            "https://user@example.com",
            "*,https://example.com",
            "null",
            "https://*.example.com",
            "https://app.example.com,https://*.example.com",
            "*://example.com",
        ] {
            let error = bad.parse::<AllowedOrigins>().unwrap_err();
            assert!(
                error.contains("expected `*` or comma-separated origins"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn only_listed_origins_are_allowed() {
        let cors = list("https://app.example.com,http://localhost:3000");
        let allowed = |origins: &[&str]| {
            cors.allowed_origin(&request(origins))
                .map(|AllowedOrigin(value)| value)
        };
        assert_eq!(
            allowed(&["http://localhost:3000"]).unwrap(),
            "http://localhost:3000"
        );
        assert_eq!(allowed(&["http://localhost:3001"]), None);
        assert_eq!(allowed(&["https://app.example.com.evil.test"]), None);
        assert_eq!(allowed(&[]), None);
        assert_eq!(
            allowed(&["http://localhost:3000", "http://localhost:3000"]),
            None
        );
        let any = Cors::new(AllowedOrigins::Any);
        assert_eq!(
            any.allowed_origin(&request(&["https://anywhere.test"]))
                .map(|AllowedOrigin(value)| value)
                .unwrap(),
            "*"
        );
        let none = Cors::new(AllowedOrigins::None);
        assert!(
            none.allowed_origin(&request(&["https://anywhere.test"]))
                .is_none()
        );
    }

    #[test]
    fn allowed_responses_carry_the_origin_and_expose_location_and_retry_after() {
        let cors = list("http://localhost:3000");
        let origin = cors.allowed_origin(&request(&["http://localhost:3000"]));
        let mut response = response::empty(StatusCode::SERVICE_UNAVAILABLE);
        cors.apply(origin, &mut response);
        let headers = response.headers();
        assert_eq!(
            headers[ACCESS_CONTROL_ALLOW_ORIGIN],
            "http://localhost:3000"
        );
        assert_eq!(
            headers[ACCESS_CONTROL_EXPOSE_HEADERS],
            "Location, Retry-After"
        );
        assert_eq!(headers[VARY], "Origin");

        let mut refused = response::empty(StatusCode::OK);
        cors.apply(None, &mut refused);
        assert!(refused.headers().get(ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
        assert_eq!(refused.headers()[VARY], "Origin");

        let mut plain = response::empty(StatusCode::OK);
        Cors::new(AllowedOrigins::None).apply(None, &mut plain);
        assert!(plain.headers().is_empty(), "{:?}", plain.headers());
    }

    #[test]
    fn preflights_are_answered_only_for_allowed_origins() {
        let cors = list("http://localhost:3000");
        let mut headers = request(&["http://localhost:3000"]);
        let origin = cors.allowed_origin(&headers);
        assert!(
            cors.preflight(origin.as_ref(), &headers, "POST").is_none(),
            "OPTIONS without Access-Control-Request-Method is no preflight"
        );
        headers.insert(
            ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_static("POST"),
        );
        let answer = cors.preflight(origin.as_ref(), &headers, "POST").unwrap();
        assert_eq!(answer.status(), StatusCode::NO_CONTENT);
        assert_eq!(answer.headers()[ACCESS_CONTROL_ALLOW_METHODS], "POST");
        assert_eq!(
            answer.headers()[ACCESS_CONTROL_ALLOW_HEADERS],
            "Content-Type, Last-Event-ID"
        );
        assert_eq!(answer.headers()[ACCESS_CONTROL_MAX_AGE], "3600");
        assert!(cors.preflight(None, &headers, "POST").is_none());
    }
}
