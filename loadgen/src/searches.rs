//! Submitting searches: `POST /api/flights/search` over keep-alive connections,
//! with a bounded number in flight.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::time::Instant;
use uuid::Uuid;

use crate::clock::now_us;
use crate::errors::{ErrorKind, Errors};
use crate::http::{HttpConnection, HttpError, Target};

/// How far ahead the searched date lies; well inside the one-year window.
const DAYS_AHEAD: i64 = 30;

/// A search main-service accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Submitted {
    /// The id from the 202 answer.
    pub search_id: Uuid,
    /// When the POST was sent, µs since the epoch.
    pub posted_at_us: u64,
}

/// The request body every search uses: one route, so provider-service's mocks
/// do the same work for each.
pub fn search_body() -> String {
    search_body_later(0)
}

/// [`search_body`] for a departure `later` days after its date (at most 300,
/// so the date stays inside the one-year window): the same route, another
/// question for a supplier answer cache.
pub fn search_body_later(later: u16) -> String {
    let later = i64::from(later.min(300));
    let date = time::OffsetDateTime::now_utc().date() + time::Duration::days(DAYS_AHEAD + later);
    serde_json::json!({
        "from": "CGK",
        "to": "DPS",
        "date": contract::request::format_date(date),
        "passengers": 2,
    })
    .to_string()
}

/// The `search_id` of a 202 answer body.
pub fn parse_accepted(body: &[u8]) -> Option<Uuid> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value["data"]["search_id"].as_str()?.parse().ok()
}

/// POSTs one search on `conn`. Failures come back as the kind to count.
pub async fn submit(
    conn: &mut HttpConnection,
    body: &str,
    deadline: Instant,
) -> Result<Submitted, (ErrorKind, String)> {
    let posted_at_us = now_us();
    let request = conn.request(
        "POST",
        "/api/flights/search",
        &[("content-type", "application/json")],
        body.as_bytes(),
    );
    let response = match tokio::time::timeout_at(deadline, request).await {
        Err(_) => {
            return Err((
                ErrorKind::PostTimeout,
                "no answer before the deadline".into(),
            ));
        }
        Ok(Err(e)) => {
            let kind = match e {
                HttpError::Connect(_) => ErrorKind::PostConnect,
                HttpError::Io(_) | HttpError::Eof => ErrorKind::PostIo,
                HttpError::Malformed(_) => ErrorKind::PostMalformed,
            };
            return Err((kind, e.to_string()));
        }
        Ok(Ok(response)) => response,
    };
    if response.status != 202 {
        return Err((
            ErrorKind::PostStatus,
            format!(
                "status {}: {}",
                response.status,
                String::from_utf8_lossy(&response.body)
            ),
        ));
    }
    let search_id = parse_accepted(&response.body).ok_or_else(|| {
        (
            ErrorKind::PostMalformed,
            format!("202 body {:?}", String::from_utf8_lossy(&response.body)),
        )
    })?;
    Ok(Submitted {
        search_id,
        posted_at_us,
    })
}

/// POSTs `count` searches, `concurrency` at a time, each lane on its own
/// keep-alive connection. Returns the accepted ones in submission order of
/// their lanes; failures are counted in `errors`.
pub async fn submit_all(
    target: &Target,
    count: usize,
    concurrency: usize,
    deadline: Instant,
    errors: &mut Errors,
) -> Vec<Submitted> {
    let body = Arc::new(search_body());
    let next = Arc::new(AtomicUsize::new(0));
    let mut lanes = tokio::task::JoinSet::new();
    for _ in 0..concurrency.clamp(1, count.max(1)) {
        let (target, body, next) = (target.clone(), body.clone(), next.clone());
        lanes.spawn(async move {
            let mut conn = HttpConnection::new(target);
            let mut accepted = Vec::new();
            let mut errors = Errors::new();
            while next.fetch_add(1, Ordering::Relaxed) < count {
                match submit(&mut conn, &body, deadline).await {
                    Ok(submitted) => accepted.push(submitted),
                    Err((kind, detail)) => errors.record(kind, detail),
                }
            }
            (accepted, errors)
        });
    }
    let mut accepted = Vec::with_capacity(count);
    while let Some(joined) = lanes.join_next().await {
        let (lane, lane_errors) = joined.expect("a submit lane never panics");
        accepted.extend(lane);
        errors.merge(lane_errors);
    }
    accepted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_search_id_of_an_accepted_search() {
        let body = br#"{"success":true,"message":"Search request submitted","data":{"search_id":"6f1c2a9e-8a5b-4c2d-9e7f-0a1b2c3d4e5f","status":"processing"}}"#;
        assert_eq!(
            parse_accepted(body).unwrap().to_string(),
            "6f1c2a9e-8a5b-4c2d-9e7f-0a1b2c3d4e5f"
        );
        assert_eq!(parse_accepted(br#"{"success":false}"#), None);
        assert_eq!(parse_accepted(b"not json"), None);
    }

    #[test]
    fn the_body_is_a_valid_search() {
        let today = time::OffsetDateTime::now_utc().date();
        assert!(contract::SearchRequest::from_json(search_body().as_bytes(), today).is_ok());
    }
}
