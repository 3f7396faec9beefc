//! `CORS_ALLOWED_ORIGINS`: preflights and answers (errors and event streams
//! included) carry the CORS headers for an allowed origin and none for any
//! other. Always runs on a local stack.

use hyper::Method;
use test_support::http;
use test_support::search_body;
use test_support::stack::Stack;
use uuid::Uuid;

/// A CORS preflight from `origin` for `method` on `url`.
async fn preflight(url: &str, origin: &str, method: &str) -> http::Response {
    http::request(
        Method::OPTIONS,
        url,
        &[
            ("origin", origin),
            ("access-control-request-method", method),
            (
                "access-control-request-headers",
                "content-type,last-event-id",
            ),
        ],
        "",
    )
    .await
    .unwrap()
}

/// Preflights from `allowed` get every CORS header; others get 405 and none.
async fn assert_preflights(allowed: &str, routes: [(&str, &str); 2]) {
    for (url, method) in routes {
        let answer = preflight(url, allowed, method).await;
        assert_eq!(answer.status, 204, "{url}");
        assert_eq!(answer.header("access-control-allow-origin"), Some(allowed));
        let methods = answer.header("access-control-allow-methods").unwrap();
        assert!(methods.split(", ").any(|m| m == method), "{url}: {methods}");
        let headers = answer
            .header("access-control-allow-headers")
            .unwrap()
            .to_ascii_lowercase();
        assert!(
            headers.contains("content-type") && headers.contains("last-event-id"),
            "{headers}"
        );
        assert!(answer.header("access-control-max-age").is_some());
        assert_eq!(answer.header("vary"), Some("Origin"));

        let refused = preflight(url, "http://evil.test", method).await;
        assert_eq!(refused.status, 405, "{url}");
        assert!(
            refused
                .headers
                .keys()
                .all(|name| !name.as_str().starts_with("access-control-")),
            "{:?}",
            refused.headers
        );
    }
}

#[tokio::test]
async fn allowed_origins_get_cors_headers_on_every_answer_and_others_none() {
    let allowed = "http://app.example.test:3000";
    let stack = Stack::builder()
        .local_only()
        .main_env("CORS_ALLOWED_ORIGINS", &format!("{allowed},https://b.test"))
        .start()
        .await;
    let search = stack.url("/api/flights/search");
    let stream = stack.stream_url(Uuid::new_v4());
    assert_preflights(allowed, [(&search, "POST"), (&stream, "GET")]).await;

    // Actual answers, errors and event streams included.
    let origin = [("origin", allowed)];
    let json = [("origin", allowed), ("content-type", "application/json")];
    let accepted = http::request(
        Method::POST,
        &search,
        &json,
        search_body("CGK", "DPS", 3, 1),
    )
    .await
    .unwrap();
    assert_eq!(accepted.status, 202);
    let rejected = http::request(Method::POST, &search, &json, "{}")
        .await
        .unwrap();
    assert_eq!(rejected.status, 400);
    let unknown = http::request(Method::GET, &stream, &origin, "")
        .await
        .unwrap();
    assert_eq!(unknown.status, 404);
    let location = accepted.header("location").unwrap();
    let events = http::send(Method::GET, &stack.url(location), &origin, "")
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    let events_cors = events.headers().get("access-control-allow-origin").cloned();
    drop(events);
    assert_eq!(events_cors.unwrap(), allowed, "the event stream");
    for answer in [&accepted, &rejected, &unknown] {
        assert_eq!(
            answer.header("access-control-allow-origin"),
            Some(allowed),
            "{}",
            answer.status
        );
        assert_eq!(
            answer.header("access-control-expose-headers"),
            Some("Location, Retry-After")
        );
        assert_eq!(answer.header("vary"), Some("Origin"));
    }

    let elsewhere = http::request(
        Method::GET,
        &stream,
        &[("origin", "https://b.test.evil")],
        "",
    )
    .await
    .unwrap();
    assert_eq!(elsewhere.status, 404);
    assert!(elsewhere.header("access-control-allow-origin").is_none());
    let same_origin = http::get(&stream).await.unwrap();
    assert!(same_origin.header("access-control-allow-origin").is_none());
}
