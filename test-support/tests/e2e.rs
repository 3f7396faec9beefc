//! The end-to-end suite: the whole path a user walks, through HTTP and Redis
//! only, so it runs against a local stack or, with `FLIGHT_SEARCH_URL` and
//! `REDIS_URL`, against a running deployment. What the services send and
//! write is also checked against `openapi.yaml` and `asyncapi.yaml`.

use std::collections::HashSet;
use std::time::Duration;

use contract::EntryId;
use contract::keys::{REQUESTS_STREAM, results_key, state_key};
use hyper::Method;
use redis::AsyncCommands;
use redis::streams::{StreamReadOptions, StreamReadReply};
use test_support::documents::{self, Schema};
use test_support::http::{self, Response};
use test_support::sse::{Event, Item};
use test_support::stack::Stack;
use test_support::{eventually, search_body};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

const LIMIT: Duration = Duration::from_secs(30);

/// A random 3-letter code, so a test can recognise its own queue entries.
fn unique_code() -> String {
    let n = Uuid::new_v4().as_u128();
    (0..3)
        .map(|i| (b'A' + ((n >> (i * 8)) % 26) as u8) as char)
        .collect()
}

/// Checks the shape every complete sequence must have and returns the offers count.
fn assert_complete_sequence(search_id: Uuid, events: &[Event]) -> u64 {
    assert!(events.len() >= 3, "too few events: {events:?}");
    assert_eq!(events[0].status(), "processing", "{events:?}");
    assert_eq!(events[0].data["results"], serde_json::json!([]));
    let (last, middle) = events[1..].split_last().expect("non-empty");
    assert_eq!(last.status(), "completed", "{events:?}");
    assert_eq!(events.iter().filter(|e| e.is_terminal()).count(), 1);
    let mut suppliers = HashSet::new();
    let mut offers = 0;
    for event in middle {
        assert_eq!(event.status(), "result", "{event:?}");
        let supplier = event.data["supplier"]
            .as_str()
            .expect("supplier")
            .to_owned();
        assert!(suppliers.insert(supplier), "supplier twice: {events:?}");
        offers += event.data["results"].as_array().expect("results").len() as u64;
    }
    assert!(!middle.is_empty(), "no supplier answered: {events:?}");
    for event in events {
        assert_eq!(event.data["search_id"], search_id.to_string());
    }
    let ids: Vec<EntryId> = events
        .iter()
        .map(|e| e.id.parse().expect("entry id"))
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids not increasing: {ids:?}"
    );
    assert_eq!(last.data["total_results"].as_u64(), Some(offers));
    offers
}

#[tokio::test]
async fn a_search_streams_processing_results_and_completed_then_its_key_is_deleted() {
    let stack = Stack::start().await;
    let response = stack.post(&search_body("cgk", "dps", 14, 2)).await;
    assert_eq!(response.status, 202);
    let body = response.json();
    let id: Uuid = body["data"]["search_id"].as_str().unwrap().parse().unwrap();
    assert_eq!(id.get_version_num(), 4);
    assert_eq!(
        body,
        serde_json::json!({"success": true, "message": "Search request submitted",
                           "data": {"search_id": id.to_string(), "status": "processing"}})
    );
    assert_eq!(
        response.header("location"),
        Some(format!("/api/flights/search/{id}/stream").as_str())
    );

    let mut stream = stack.open(id, None).await;
    assert_eq!(stream.status, 200);
    assert_eq!(stream.headers["content-type"], "text/event-stream");
    assert_eq!(stream.headers["cache-control"], "no-cache");
    assert_eq!(stream.headers["x-accel-buffering"], "no");
    assert!(
        matches!(stream.next_item(LIMIT).await.unwrap(), Some(Item::Retry(_))),
        "retry first"
    );
    let events = stream.until_terminal(LIMIT).await.unwrap();
    let offers = assert_complete_sequence(id, &events);
    assert!(offers > 0, "CGK-DPS has flights");
    for event in &events[1..events.len() - 1] {
        for flight in event.data["results"].as_array().unwrap() {
            assert_eq!(flight["from"], "CGK");
            assert_eq!(flight["to"], "DPS");
            let amount = flight["price"]["amount"].as_u64().unwrap();
            assert_eq!(flight["price"]["total"].as_u64(), Some(amount * 2));
            assert!(flight["seats_available"].as_u64().unwrap() >= 2);
            assert!(
                flight["departure_time"]
                    .as_str()
                    .unwrap()
                    .starts_with(&test_support::date_in(14))
            );
        }
    }

    let key = results_key(id);
    eventually("the results key to be deleted", LIMIT, || async {
        (!stack.key_exists(&key).await).then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_stored_json_reaches_the_client_untouched_and_matches_the_asyncapi_document() {
    let stack = Stack::start().await;
    let watch = QueueWatch::start(&stack).await;
    let id = stack.submit(&search_body("SUB", "CGK", 3, 1)).await;
    let queued = watch.finish(&stack).await;
    let (_, fields) = queued
        .iter()
        .find(|(_, fields)| fields.contains(&("search_id".to_owned(), id.to_string())))
        .expect("the search's queue entry");
    documents::assert_matches(Schema::QueuedSearch, &documents::fields_object(fields));

    // A second reader that stays attached keeps the stream alive for the comparison.
    let mut holder = stack.open_holder(id).await;
    let events = stack.events(id).await;
    let stored = stack.stored_events(id).await;
    assert_eq!(stored.len(), events.len());
    for ((entry_id, data), event) in stored.iter().zip(&events) {
        assert_eq!(entry_id, &event.id);
        assert_eq!(data, &event.raw, "forwarded byte for byte");
        documents::assert_matches(Schema::StoredEvent, &serde_json::from_str(data).unwrap());
    }
    holder.until_terminal(LIMIT).await.unwrap();
}

#[tokio::test]
async fn an_entry_main_service_cannot_read_is_skipped_and_the_rest_delivered() {
    let stack = Stack::start().await;
    let id = Uuid::new_v4();
    let key = results_key(id);
    let processing = format!(r#"{{"search_id":"{id}","status":"processing","results":[]}}"#);
    let completed = format!(r#"{{"search_id":"{id}","status":"completed","total_results":0}}"#);
    let mut redis = stack.redis().await;
    let _: () = redis::pipe()
        .cmd("XADD")
        .arg(&key)
        .arg("*")
        .arg(&b"\xff\xfe"[..])
        .arg("not an event")
        .ignore()
        .cmd("XADD")
        .arg(&key)
        .arg("*")
        .arg("data")
        .arg(&processing)
        .ignore()
        .cmd("XADD")
        .arg(&key)
        .arg("*")
        .arg("data")
        .arg(&completed)
        .ignore()
        .expire(&key, 60)
        .ignore()
        .query_async(&mut redis)
        .await
        .unwrap();
    let events = stack.events(id).await;
    let raw: Vec<&str> = events.iter().map(|e| e.raw.as_str()).collect();
    assert_eq!(raw, [processing.as_str(), completed.as_str()]);
    // Counted by the instance that served the stream, whichever it was.
    let skipped: f64 = stack
        .instance_metrics()
        .await
        .iter()
        .filter_map(|text| http::metric(text, "flight_search_hub_entries_skipped_total"))
        .sum();
    assert!(skipped >= 1.0, "{skipped}");
}

#[tokio::test]
async fn two_clients_of_one_search_both_get_the_whole_sequence() {
    let stack = Stack::start().await;
    let id = stack.submit(&search_body("CGK", "KNO", 5, 3)).await;
    let (a, b) = tokio::join!(stack.events(id), stack.events(id));
    assert_complete_sequence(id, &a);
    assert_eq!(a, b);
}

#[tokio::test]
async fn last_event_id_resumes_with_no_gap_and_no_duplicate() {
    let stack = Stack::start().await;
    let id = stack.submit(&search_body("CGK", "UPG", 9, 1)).await;
    // Readers that stay attached keep the search's stream alive while others resume.
    let mut full_reader = stack.open_holder(id).await;
    let mut late_reader = stack.open_holder(id).await;

    let mut first = stack.open(id, None).await;
    let opening = first.next_event(LIMIT).await.unwrap().expect("processing");
    drop(first);

    let mut resumed = stack.open(id, Some(&opening.id)).await;
    assert_eq!(resumed.status, 200);
    let rest = resumed.until_terminal(LIMIT).await.unwrap();
    let full = full_reader.until_terminal(LIMIT).await.unwrap();
    let mut joined = vec![opening];
    joined.extend(rest);
    assert_eq!(joined, full);

    // The query-string form resumes the same way.
    let url = format!("{}?last_event_id={}", stack.stream_url(id), full[1].id);
    let mut by_query = test_support::sse::SseStream::open(&url, None)
        .await
        .unwrap();
    assert_eq!(by_query.status, 200);
    assert_eq!(by_query.until_terminal(LIMIT).await.unwrap(), full[2..]);
    assert_eq!(late_reader.until_terminal(LIMIT).await.unwrap(), full);
}

#[tokio::test]
async fn a_finished_search_answers_410_or_204_with_last_event_id() {
    let stack = Stack::start().await;
    let id = stack.submit(&search_body("DPS", "CGK", 20, 1)).await;
    let events = stack.events(id).await;
    let key = results_key(id);
    eventually("the results key to be deleted", LIMIT, || async {
        (!stack.key_exists(&key).await).then_some(())
    })
    .await;

    let gone = http::get(&stack.stream_url(id)).await.unwrap();
    assert_eq!(gone.status, 410);
    assert_error_envelope(&gone, None);

    let last = &events.last().unwrap().id;
    let with_header = http::request(
        Method::GET,
        &stack.stream_url(id),
        &[("last-event-id", last)],
        "",
    )
    .await
    .unwrap();
    assert_eq!(with_header.status, 204);
    let with_query = http::get(&format!("{}?last_event_id={last}", stack.stream_url(id)))
        .await
        .unwrap();
    assert_eq!(with_query.status, 204);
}

#[tokio::test]
async fn unknown_and_malformed_search_ids() {
    let stack = Stack::start().await;
    let unknown = http::get(&stack.stream_url(Uuid::new_v4())).await.unwrap();
    assert_eq!(unknown.status, 404);
    assert_error_envelope(&unknown, None);

    let malformed = http::get(&stack.url("/api/flights/search/not-a-uuid/stream"))
        .await
        .unwrap();
    assert_eq!(malformed.status, 400);
    assert_error_envelope(&malformed, Some("search_id"));

    let id = stack.submit(&search_body("CGK", "DPS", 2, 1)).await;
    let bad_resume = http::request(
        Method::GET,
        &stack.stream_url(id),
        &[("last-event-id", "yesterday")],
        "",
    )
    .await
    .unwrap();
    assert_eq!(bad_resume.status, 400);
    assert_error_envelope(&bad_resume, Some("last_event_id"));
    stack.events(id).await;

    // Only the hyphenated form, the one the API hands out, in any case.
    let upper = http::get(&stack.url(&format!(
        "/api/flights/search/{}/stream",
        id.hyphenated().to_string().to_uppercase()
    )))
    .await
    .unwrap();
    assert_ne!(upper.status, 400, "{:?}", upper.body);
    for other in [
        id.simple().to_string(),
        format!("%7B{id}%7D"),
        id.urn().to_string(),
    ] {
        let response = http::get(&stack.url(&format!("/api/flights/search/{other}/stream")))
            .await
            .unwrap();
        assert_eq!(response.status, 400, "{other}");
        assert_error_envelope(&response, Some("search_id"));
    }
}

#[tokio::test]
async fn a_resume_point_beyond_the_last_event_is_refused_and_deletes_nothing() {
    let stack = Stack::start().await;
    let beyond = "18446744073709551615-18446744073709551615";
    let refused = |id: Uuid| {
        let url = stack.stream_url(id);
        async move {
            let response = http::request(Method::GET, &url, &[("last-event-id", beyond)], "")
                .await
                .unwrap();
            assert_eq!(response.status, 400, "{:?}", response.body);
            assert_error_envelope(&response, Some("last_event_id"));
        }
    };

    // While the search runs, and by query as well as by header.
    let id = stack.submit(&search_body("CGK", "DPS", 5, 1)).await;
    refused(id).await;
    let by_query = http::get(&format!("{}?last_event_id={beyond}", stack.stream_url(id)))
        .await
        .unwrap();
    assert_eq!(by_query.status, 400);

    // Once the search is over (with no reader, so nothing deletes its stream;
    // a client that read even its first event might already hold the terminal
    // one when suppliers answer at once), a resume point beyond its end must
    // not count as a reader that saw the terminal event, whose leaving deletes
    // the stream.
    let mut redis = stack.redis().await;
    let state = state_key(id);
    eventually("the search to end with no reader left", LIMIT, || {
        let mut redis = redis.clone();
        let state = state.clone();
        async move {
            let (terminal, readers): (Option<String>, Option<i64>) = redis::cmd("HMGET")
                .arg(&state)
                .arg("terminal")
                .arg("readers")
                .query_async(&mut redis)
                .await
                .ok()?;
            (terminal.is_some() && readers.unwrap_or(0) == 0).then_some(())
        }
    })
    .await;
    refused(id).await;
    let first: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(results_key(id))
        .arg("-")
        .arg("+")
        .arg("COUNT")
        .arg(1)
        .query_async(&mut redis)
        .await
        .unwrap();
    let processing_id = first.ids.first().expect("the processing entry").id.clone();
    let readers: Option<i64> = redis::cmd("HGET")
        .arg(&state)
        .arg("readers")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(readers.unwrap_or(0), 0, "the refused request was counted");
    assert!(
        stack.key_exists(&results_key(id)).await,
        "the stream was deleted"
    );
    let rest = stack
        .open(id, Some(&processing_id))
        .await
        .until_terminal(LIMIT)
        .await
        .unwrap();
    assert!(rest.last().is_some_and(Event::is_terminal), "{rest:?}");
}

/// Sends `head` (a request head, CRLF line ends) on a fresh connection to
/// `base_url` and returns the status code and the body of the answer.
async fn raw_request(base_url: &str, head: &str) -> (u16, serde_json::Value) {
    let authority = base_url
        .strip_prefix("http://")
        .expect("an http:// base URL");
    let mut socket = tokio::net::TcpStream::connect(authority).await.unwrap();
    socket.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(LIMIT, socket.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection")
        .unwrap();
    let answer = String::from_utf8(answer).unwrap();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {answer:?}"));
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    (status, serde_json::from_str(body).unwrap_or_default())
}

#[tokio::test]
async fn http_1_1_requests_need_exactly_one_host() {
    let stack = Stack::start().await;
    let bad = [
        "GET /healthz HTTP/1.1\r\nconnection: close\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nhost: a.test\r\nhost: b.test\r\nconnection: close\r\n\r\n",
        "GET /healthz HTTP/1.0\r\nhost: a.test\r\nhost: a.test\r\n\r\n",
        "POST /api/flights/search HTTP/1.1\r\ncontent-type: application/json\r\n\
         content-length: 2\r\nconnection: close\r\n\r\n{}",
    ];
    let good = [
        "GET /healthz HTTP/1.1\r\nhost: a.test\r\nconnection: close\r\n\r\n",
        "GET /healthz HTTP/1.0\r\n\r\n",
    ];
    for instance in stack.instance_urls() {
        for head in bad {
            let (status, body) = raw_request(instance, head).await;
            assert_eq!(status, 400, "{instance} {head:?}: {body}");
            assert_eq!(body["errors"][0]["field"], "host", "{head:?}: {body}");
        }
        for head in good {
            let (status, body) = raw_request(instance, head).await;
            assert_eq!(status, 200, "{instance} {head:?}: {body}");
        }
    }
    // A load balancer in front refuses the bad requests itself, in its own
    // words, and must pass the good ones on.
    if stack.is_balanced() {
        for head in bad {
            assert_eq!(raw_request(stack.base_url(), head).await.0, 400, "{head:?}");
        }
        for head in good {
            let (status, body) = raw_request(stack.base_url(), head).await;
            assert_eq!(status, 200, "{head:?}: {body}");
        }
    }
}

#[tokio::test]
async fn unknown_paths_are_404_and_wrong_methods_405_with_allow() {
    let stack = Stack::start().await;
    let missing = http::get(&stack.url("/api/nothing-here")).await.unwrap();
    assert_eq!(missing.status, 404);
    assert_error_envelope(&missing, None);

    let get_search = http::get(&stack.url("/api/flights/search")).await.unwrap();
    assert_eq!(get_search.status, 405);
    assert_eq!(get_search.header("allow"), Some("POST"));
    assert_error_envelope(&get_search, None);

    let stream = stack.stream_url(Uuid::new_v4());
    let post_stream = http::request(Method::POST, &stream, &[], "").await.unwrap();
    assert_eq!(post_stream.status, 405);
    assert!(post_stream.header("allow").unwrap().contains("GET"));

    let delete_health = http::request(Method::DELETE, &stack.url("/healthz"), &[], "")
        .await
        .unwrap();
    assert_eq!(delete_health.status, 405);
}

/// The newest 5,000 entries of the queue, newest first, as field lists.
/// A consumer group of the test's own on the search queue, created at the
/// queue's end. Trimming keeps every entry some group has not finished, so the
/// entries queued while it exists stay readable however fast the providers
/// acknowledge them: reading them does not race the trim.
struct QueueWatch {
    /// The group's name, unique to the test.
    group: String,
}

/// A queue entry: its id and its fields.
type QueueEntry = (String, Vec<(String, String)>);

impl QueueWatch {
    /// Starts watching: entries queued from now on are kept for [`QueueWatch::finish`].
    async fn start(stack: &Stack) -> QueueWatch {
        let group = format!("e2e-watch-{}", Uuid::new_v4());
        let _: () = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(REQUESTS_STREAM)
            .arg(&group)
            .arg("$")
            .arg("MKSTREAM")
            .query_async(&mut stack.redis().await)
            .await
            .unwrap();
        QueueWatch { group }
    }

    /// Every entry queued since [`QueueWatch::start`], oldest first; removes
    /// the group before looking at them, so a failing check leaves no group
    /// holding the queue.
    async fn finish(self, stack: &Stack) -> Vec<QueueEntry> {
        let mut redis = stack.redis().await;
        let options = StreamReadOptions::default()
            .group(&self.group, "e2e")
            .count(1000);
        let mut entries = Vec::new();
        loop {
            let reply: redis::RedisResult<StreamReadReply> = redis
                .xread_options(&[REQUESTS_STREAM], &[">"], &options)
                .await;
            let ids: Vec<_> = match reply {
                Ok(reply) => reply.keys.into_iter().flat_map(|key| key.ids).collect(),
                Err(error) => {
                    destroy_group(&mut redis, &self.group).await;
                    panic!("reading the queue watch: {error}");
                }
            };
            if ids.is_empty() {
                break;
            }
            for entry in ids {
                let mut fields: Vec<(String, String)> = entry
                    .map
                    .into_iter()
                    .map(|(field, value)| {
                        (field, redis::from_redis_value(value).unwrap_or_default())
                    })
                    .collect();
                fields.sort();
                entries.push((entry.id, fields));
            }
        }
        destroy_group(&mut redis, &self.group).await;
        entries
    }
}

/// Removes the watch's group, so it holds the queue no longer.
async fn destroy_group(redis: &mut impl redis::aio::ConnectionLike, group: &str) {
    let _: () = redis::cmd("XGROUP")
        .arg("DESTROY")
        .arg(REQUESTS_STREAM)
        .arg(group)
        .query_async(redis)
        .await
        .unwrap();
}

#[tokio::test]
async fn rejected_requests_get_the_right_status_and_write_nothing() {
    let stack = Stack::start().await;
    let code = unique_code();
    let date = test_support::date_in(10);
    let valid = format!(r#"{{"from":"{code}","to":"DPS","date":"{date}","passengers":2}}"#);
    let url = stack.url("/api/flights/search");
    let watch = QueueWatch::start(&stack).await;
    let post = |content_type: Option<&'static str>, body: String| {
        let url = url.clone();
        async move {
            let headers: Vec<(&str, &str)> = content_type
                .map(|c| ("content-type", c))
                .into_iter()
                .collect();
            http::request(Method::POST, &url, &headers, body)
                .await
                .unwrap()
        }
    };
    let json = Some("application/json");

    type Case<'a> = ((Option<&'a str>, String), u16, Option<&'a str>);
    let cases: Vec<Case> = vec![
        ((json, "{\"from\":".into()), 400, None),
        ((json, "[1,2]".into()), 400, None),
        (
            (
                json,
                valid.replace("\"passengers\":2", "\"passengers\":\"2\""),
            ),
            400,
            Some("passengers"),
        ),
        (
            (json, valid.replace("\"passengers\":2", "\"passengers\":10")),
            400,
            Some("passengers"),
        ),
        (
            (json, valid.replace(&date, "2020-01-01")),
            400,
            Some("date"),
        ),
        (
            (json, valid.replace(&date, &test_support::date_in(366))),
            400,
            Some("date"),
        ),
        (
            (json, valid.replace(&date, "2027-02-30")),
            400,
            Some("date"),
        ),
        (
            (
                json,
                valid.replace("\"DPS\"", &format!("\"{}\"", code.to_lowercase())),
            ),
            400,
            Some("to"),
        ),
        ((json, valid.replace("\"DPS\"", "\"DP\"")), 400, Some("to")),
        (
            (json, valid.replace("}", ",\"cabin\":\"first\"}")),
            400,
            Some("cabin"),
        ),
        (
            (json, valid.replace("}", ",\"from\":\"XXX\"}")),
            400,
            Some("from"),
        ),
        ((None, valid.clone()), 415, None),
        ((Some("text/plain"), valid.clone()), 415, None),
        ((Some("text/plain"), "{\"from\":".into()), 415, None),
        ((json, format!("{valid:17000}")), 413, None),
        ((Some("text/plain"), format!("{:17000}", "nope")), 413, None),
    ];
    for (i, ((content_type, body), status, field)) in cases.into_iter().enumerate() {
        let response = post(content_type, body).await;
        assert_eq!(response.status, status, "case {i}: {:?}", response.body);
        assert_error_envelope(&response, field);
    }

    let charset = post(
        Some("application/json; charset=utf-8"),
        valid.replace("\"passengers\":2", "\"passengers\":0"),
    )
    .await;
    assert_eq!(
        charset.status, 400,
        "a JSON content type with charset is JSON"
    );

    let written = watch
        .finish(&stack)
        .await
        .iter()
        .filter(|(_, f)| f.iter().any(|(_, v)| v == &code))
        .count();
    assert_eq!(written, 0, "a rejected request was queued");
}

#[tokio::test]
async fn many_concurrent_searches_all_complete() {
    let stack = Stack::start().await;
    let routes = [
        ("CGK", "DPS"),
        ("SUB", "CGK"),
        ("KNO", "CGK"),
        ("CGK", "SIN"),
        ("UPG", "DPS"),
    ];
    let searches = futures_util::future::join_all((0..200).map(|i| {
        let (from, to) = routes[i % routes.len()];
        let stack = &stack;
        async move {
            let id = stack
                .submit(&search_body(from, to, 1 + (i % 30) as i64, 1))
                .await;
            let events = stack.events(id).await;
            assert_complete_sequence(id, &events);
        }
    }));
    tokio::time::timeout(Duration::from_secs(120), searches)
        .await
        .expect("200 searches in 2 minutes");
}

#[tokio::test]
async fn the_openapi_document_is_served_byte_for_byte() {
    let stack = Stack::start().await;
    let served = http::get(&stack.url("/openapi.yaml")).await.unwrap();
    assert_eq!(served.status, 200);
    assert_eq!(served.header("content-type"), Some("application/yaml"));
    assert!(
        served.body == documents::OPENAPI_YAML.as_bytes(),
        "the served document differs from openapi.yaml"
    );
    for method in [Method::POST, Method::PUT] {
        let refused = http::request(method.clone(), &stack.url("/openapi.yaml"), &[], "")
            .await
            .unwrap();
        assert_eq!(refused.status, 405, "{method}");
        assert_eq!(refused.header("allow"), Some("GET, HEAD"), "{method}");
    }
}

#[tokio::test]
async fn head_answers_what_get_would_without_a_body() {
    let stack = Stack::start().await;
    for path in [
        "/",
        "/demo.js",
        "/demo.css",
        "/favicon.ico",
        "/healthz",
        "/readyz",
        "/openapi.yaml",
        "/api/nothing-here",
    ] {
        let get = http::get(&stack.url(path)).await.unwrap();
        let head = http::request(Method::HEAD, &stack.url(path), &[], "")
            .await
            .unwrap();
        assert_eq!(head.status, get.status, "{path}");
        assert!(head.body.is_empty(), "{path}: {:?}", head.body);
        for name in [
            "content-type",
            "content-length",
            "content-security-policy",
            "x-content-type-options",
        ] {
            assert_eq!(head.header(name), get.header(name), "{path} {name}");
        }
    }
}

#[tokio::test]
async fn head_on_a_stream_looks_the_search_up_and_attaches_no_reader() {
    let stack = Stack::start().await;
    let head = |url: String, headers: &'static [(&'static str, &'static str)]| async move {
        http::request(Method::HEAD, &url, headers, "")
            .await
            .unwrap()
    };
    let unknown = head(stack.stream_url(Uuid::new_v4()), &[]).await;
    assert_eq!(unknown.status, 404);
    let malformed = head(stack.url("/api/flights/search/not-a-uuid/stream"), &[]).await;
    assert_eq!(malformed.status, 400);
    let id = stack.submit(&search_body("CGK", "SUB", 6, 1)).await;
    let bad_resume = head(stack.stream_url(id), &[("last-event-id", "yesterday")]).await;
    assert_eq!(bad_resume.status, 400);

    let open = head(stack.stream_url(id), &[]).await;
    assert_eq!(open.status, 200);
    assert_eq!(open.header("content-type"), Some("text/event-stream"));
    assert_eq!(open.header("cache-control"), Some("no-cache"));
    assert!(open.body.is_empty());
    let readers: Option<i64> = redis::cmd("HGET")
        .arg(state_key(id))
        .arg(contract::keys::STATE_READERS)
        .query_async(&mut stack.redis().await)
        .await
        .unwrap();
    assert_eq!(readers.unwrap_or(0), 0, "HEAD counted a reader");

    // The one real reader's leaving deletes the stream: HEAD held nothing.
    let events = stack.events(id).await;
    let key = results_key(id);
    eventually("the results key to be deleted", LIMIT, || async {
        (!stack.key_exists(&key).await).then_some(())
    })
    .await;
    assert_eq!(head(stack.stream_url(id), &[]).await.status, 410);
    let last = events.last().unwrap().id.clone();
    let resumed = http::request(
        Method::HEAD,
        &stack.stream_url(id),
        &[("last-event-id", &last)],
        "",
    )
    .await
    .unwrap();
    assert_eq!(resumed.status, 204);
}

#[tokio::test]
async fn ambiguous_request_heads_are_400() {
    let stack = Stack::start().await;
    let bad_hosts = [
        "GET /healthz HTTP/1.1\r\nhost: a b\r\nconnection: close\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nhost: x, y\r\nconnection: close\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nhost:\r\nconnection: close\r\n\r\n",
    ];
    for instance in stack.instance_urls() {
        for head in bad_hosts {
            let (status, body) = raw_request(instance, head).await;
            assert_eq!(status, 400, "{instance} {head:?}: {body}");
            assert_eq!(body["errors"][0]["field"], "host", "{head:?}: {body}");
        }
    }
    let search = stack.url("/api/flights/search");
    let two_types = http::request(
        Method::POST,
        &search,
        &[
            ("content-type", "application/json"),
            ("content-type", "text/plain"),
        ],
        search_body("CGK", "DPS", 3, 1),
    )
    .await
    .unwrap();
    assert_eq!(two_types.status, 400);
    assert_error_envelope(&two_types, Some("content-type"));

    let id = stack.submit(&search_body("CGK", "DPS", 3, 1)).await;
    let stream = stack.stream_url(id);
    for (url, headers) in [
        (
            stream.clone(),
            vec![("last-event-id", "0-1"), ("last-event-id", "0-2")],
        ),
        (
            format!("{stream}?last_event_id=0-1&last_event_id=0-2"),
            vec![],
        ),
        (
            format!("{stream}?last_event_id=yesterday"),
            vec![("last-event-id", "0-1")],
        ),
    ] {
        for method in [Method::GET, Method::HEAD] {
            let refused = http::request(method.clone(), &url, &headers, "")
                .await
                .unwrap();
            assert_eq!(refused.status, 400, "{method} {url} {headers:?}");
            if method == Method::GET {
                assert_error_envelope(&refused, Some("last_event_id"));
            }
        }
    }
    stack.events(id).await;
}

#[tokio::test]
async fn every_answer_carries_the_security_headers() {
    let stack = Stack::start().await;
    let id = stack.submit(&search_body("CGK", "DPS", 5, 1)).await;
    let mut answers = vec![
        ("/", http::get(&stack.url("/")).await.unwrap()),
        ("/healthz", http::get(&stack.url("/healthz")).await.unwrap()),
        ("404", http::get(&stack.url("/nothing")).await.unwrap()),
        ("202", stack.post(&search_body("CGK", "DPS", 5, 1)).await),
    ];
    let stream = http::send(Method::GET, &stack.stream_url(id), &[], "")
        .await
        .unwrap();
    answers.push((
        "stream",
        http::Response {
            status: stream.status().as_u16(),
            headers: stream.headers().clone(),
            body: Default::default(),
        },
    ));
    drop(stream);
    for (what, answer) in &answers {
        assert_eq!(
            answer.header("x-content-type-options"),
            Some("nosniff"),
            "{what}"
        );
        assert_eq!(
            answer.header("referrer-policy"),
            Some("no-referrer"),
            "{what}"
        );
        let policy = answer.header("content-security-policy").unwrap_or_default();
        assert!(
            policy.contains("frame-ancestors 'none'"),
            "{what}: {policy}"
        );
        assert!(policy.starts_with("default-src 'none'"), "{what}: {policy}");
        assert!(!policy.contains("unsafe-inline"), "{what}: {policy}");
    }
    let page_policy = answers[0].1.header("content-security-policy").unwrap();
    assert!(page_policy.contains("script-src 'self'"), "{page_policy}");
    let json_policy = answers[1].1.header("content-security-policy").unwrap();
    assert!(!json_policy.contains("script-src"), "{json_policy}");
}

#[tokio::test]
async fn health_readiness_and_metrics_answer() {
    let stack = Stack::start().await;
    assert_eq!(http::get(&stack.url("/healthz")).await.unwrap().status, 200);
    // The stack is up once /healthz answers; readiness follows when every
    // Redis link has answered (on a cluster, every master), a moment later.
    eventually("/readyz to answer 200", LIMIT, || async {
        (http::get(&stack.url("/readyz")).await.ok()?.status == 200).then_some(())
    })
    .await;
    let id = stack.submit(&search_body("CGK", "DPS", 4, 1)).await;
    stack.events(id).await;
    assert!(
        http::metric(&stack.metrics().await, "flight_search_redis_up").is_some(),
        "/metrics at {}",
        stack.base_url()
    );
    // Every instance reports every series; the search was counted by the
    // instance that accepted it.
    let mut submitted = 0.0;
    for (instance, metrics) in stack
        .instance_urls()
        .iter()
        .zip(stack.instance_metrics().await)
    {
        assert_instance_metrics(instance, &metrics);
        submitted +=
            test_support::http::metric(&metrics, "flight_search_searches_submitted_total").unwrap();
    }
    assert!(submitted >= 1.0, "{submitted}");
}

/// The series of one instance's `/metrics` that the dashboards rely on.
fn assert_instance_metrics(instance: &str, metrics: &str) {
    for series in [
        "flight_search_http_requests_total",
        "flight_search_http_request_duration_seconds_bucket",
        "flight_search_sse_streams_open",
        "flight_search_sse_events_delivered_total",
        "flight_search_searches_submitted_total",
        "flight_search_deliveries_completed_total",
        "flight_search_search_time_to_first_result_seconds_bucket",
        "flight_search_search_time_to_completion_seconds_bucket",
        "flight_search_hub_feeds_active",
        "flight_search_redis_up",
    ] {
        assert!(
            test_support::http::metric(metrics, series).is_some(),
            "{series} missing at {instance}:\n{metrics}"
        );
    }
    assert_eq!(
        test_support::http::metric(metrics, "flight_search_redis_up"),
        Some(1.0),
        "{instance}"
    );
}

#[tokio::test]
async fn the_demo_page_is_served() {
    let stack = Stack::start().await;
    let page = http::get(&stack.url("/")).await.unwrap();
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    let script = http::get(&stack.url("/demo.js")).await.unwrap();
    assert_eq!(script.status, 200);
    assert_eq!(
        script.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    let html = String::from_utf8_lossy(&page.body);
    assert!(html.contains(r#"<script src="/demo.js"></script>"#));
    assert!(html.contains(r#"<link rel="stylesheet" href="/demo.css">"#));
    assert!(!html.contains("<script>"), "no inline script");
    let text = format!("{html}{}", String::from_utf8_lossy(&script.body));
    // The search form and the fields the API takes.
    assert!(text.contains(r#"<form class="search card" id="search-form""#));
    for field in ["from", "to", "date", "passengers"] {
        assert!(
            text.contains(&format!(r#"name="{field}""#)),
            "the form has no `{field}` field"
        );
    }
    // Submitting the form posts the search, and the 202's stream location is
    // what the page opens an EventSource on.
    for (wiring, what) in [
        (
            "form.addEventListener('submit'",
            "the form's submit is handled",
        ),
        (
            "fetch('/api/flights/search', {\n      method: 'POST'",
            "the search is POSTed to the API",
        ),
        (
            "response.status === 202 && body && body.data && body.data.search_id",
            "the 202 answer is read",
        ),
        (
            "response.headers.get('Location') || ('/api/flights/search/' + encodeURIComponent(id) + '/stream')",
            "the stream URL is the Location header or the stream route",
        ),
        (
            "startSearch(req, id, location)",
            "the search starts on that URL",
        ),
        ("connect(panel, streamUrl)", "the page connects to it"),
        ("new EventSource(url)", "through an EventSource"),
    ] {
        assert!(text.contains(wiring), "{what}: `{wiring}` not found");
    }
}

/// Checks the error envelope against `openapi.yaml` and the contract, and that
/// `field` (when given) is among its errors.
fn assert_error_envelope(response: &Response, field: Option<&str>) {
    assert!(
        response
            .header("content-type")
            .unwrap_or("")
            .starts_with("application/json"),
        "{:?}",
        response.headers
    );
    let body = response.json();
    documents::assert_matches(Schema::ErrorEnvelope, &body);
    assert_eq!(body["success"], false, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    if let Some(field) = field {
        let errors = body["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("no errors: {body}"));
        assert!(
            errors.iter().any(
                |e| e["field"] == field && e["message"].as_str().is_some_and(|m| !m.is_empty())
            ),
            "no error for {field}: {body}"
        );
    }
}
