//! What every answer tells a browser about how to treat it: the security
//! headers, added in one place ([`apply`]) to every response on its way out,
//! like the CORS headers.
//!
//! * `Content-Security-Policy`: the demo page may load its own script, style
//!   and icon and talk to its own origin, nothing else; no inline script or
//!   style runs, so text that reaches the page (supplier names, error messages)
//!   cannot execute even if it ever landed in markup. Every other answer (JSON,
//!   YAML, metrics, events) gets `default-src 'none'`: opened in a tab, it can
//!   load and run nothing.
//! * `frame-ancestors 'none'` in both: no other site can frame a page of this
//!   service (clickjacking).
//! * `X-Content-Type-Options: nosniff`: a browser takes each answer as its
//!   declared type, so a JSON body is never sniffed into HTML or script.
//! * `Referrer-Policy: no-referrer`: search ids are capabilities (whoever
//!   knows one can read its results); no URL of this service leaks to another
//!   site through `Referer`.

use hyper::Response;
use hyper::header::{
    CONTENT_SECURITY_POLICY, HeaderValue, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
};

use crate::answer::response::Body;

/// The demo page's policy: its script, style and icon from this origin, its
/// requests (search, event streams) to this origin.
pub(crate) const DEMO_PAGE_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// The policy of every other answer: nothing may load or run.
pub(crate) const NOTHING_POLICY: &str = "default-src 'none'; frame-ancestors 'none'";

/// Adds the security headers to `response`; a response that set its own
/// `Content-Security-Policy` (the demo page) keeps it.
pub(crate) fn apply(response: &mut Response<Body>) {
    let headers = response.headers_mut();
    headers
        .entry(CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(NOTHING_POLICY));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
}

/// Marks `response` as the demo page, under [`DEMO_PAGE_POLICY`].
pub(crate) fn demo_page(mut response: Response<Body>) -> Response<Body> {
    response.headers_mut().insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(DEMO_PAGE_POLICY),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answer::response;
    use hyper::StatusCode;

    #[test]
    fn every_answer_gets_the_headers_and_the_page_keeps_its_policy() {
        let mut json = response::json(StatusCode::OK, &serde_json::json!({}));
        apply(&mut json);
        let headers = json.headers();
        assert_eq!(headers[CONTENT_SECURITY_POLICY], NOTHING_POLICY);
        assert_eq!(headers[X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(headers[REFERRER_POLICY], "no-referrer");

        let mut page = demo_page(response::with_body(StatusCode::OK, "text/html", "<p>"));
        apply(&mut page);
        let policy = page.headers()[CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert_eq!(policy, DEMO_PAGE_POLICY);
        assert!(policy.contains("frame-ancestors 'none'"));
        assert!(!policy.contains("unsafe-inline"), "{policy}");
    }
}
