//! provider-service against partner APIs described in `SUPPLIERS_FILE`, all
//! served by the real `mock-suppliers` process: a supplier added by
//! configuration alone, the airlines a supplier may sell, every credential
//! mode (static bearer, API key header, OAuth2 client credentials with tokens
//! that expire mid-run), including credentials the partner refuses, and HTTPS
//! (a private CA, a wrong one, mutual TLS, HTTP/2 and HTTP/1.1 by ALPN, gzip
//! answers and a gzip bomb).

use std::time::{Duration, Instant};

use test_support::mock_suppliers::{HttpsOptions, MockSuppliers};
use test_support::pki::TestCa;
use test_support::search_body;
use test_support::sse::Event;
use test_support::stack::Stack;
use test_support::supplier_outcomes::{offers, outcome};
use test_support::suppliers_file::{SuppliersFile, supplier_table};

/// A local stack whose provider reads `file`, with `env` besides.
async fn stack(file: &SuppliersFile, env: &[(&str, &str)]) -> Stack {
    Stack::builder()
        .local_only()
        .provider_env("SUPPLIERS_FILE", &file.path())
        .provider_envs(env)
        .start()
        .await
}

/// Runs one search on day `day` to its terminal event.
async fn search(stack: &Stack, day: i64) -> Vec<Event> {
    stack.search(&search_body("CGK", "DPS", day, 1)).await
}

/// A day on which `airline` flies CGK-DPS (for one passenger).
fn flying_day(index: usize) -> i64 {
    (7..30)
        .find(|day| {
            let request = contract::SearchRequest {
                from: contract::Iata::parse("CGK").unwrap(),
                to: contract::Iata::parse("DPS").unwrap(),
                date: contract::request::parse_date(&test_support::date_in(*day)).unwrap(),
                passengers: 1,
            };
            !timetable::schedule::flights(&timetable::catalogue::CARRIERS[index], &request)
                .is_empty()
        })
        .expect("the airline flies CGK-DPS within three weeks")
}

#[tokio::test]
async fn a_seventh_supplier_is_added_by_configuration_alone_and_sells_only_its_airlines() {
    let mock = MockSuppliers::start(&[("MOCK_LATENCY_MS", "0-20")]).await;
    assert_eq!(timetable::catalogue::CARRIERS[1].code, "JT");
    let day = flying_day(1);
    // "OTA7" is no code the service knows: an aggregator reselling JT's
    // offers API. "NOJT" has the same API but may sell only GA.
    let file = SuppliersFile::new(&format!(
        "{}{}",
        supplier_table(
            "OTA7",
            "offers",
            &mock.api_url("JT"),
            r#"["JT"]"#,
            "name = \"Seventh\""
        ),
        supplier_table("NOJT", "offers", &mock.api_url("JT"), r#"["GA"]"#, ""),
    ));
    let stack = stack(&file, &[]).await;
    let events = search(&stack, day).await;
    assert_eq!(outcome(&events, "OTA7"), "answered");
    assert!(
        !offers(&events, "OTA7").is_empty(),
        "JT flies CGK-DPS that day"
    );
    assert!(
        offers(&events, "OTA7")
            .iter()
            .all(|f| f["airline"]["code"] == "JT")
    );
    assert_eq!(outcome(&events, "NOJT"), "answered");
    assert!(
        offers(&events, "NOJT").is_empty(),
        "offers for an airline NOJT may not sell are dropped"
    );
    assert_eq!(
        events.last().unwrap().data["total_results"].as_u64(),
        Some(offers(&events, "OTA7").len() as u64)
    );
}

#[tokio::test]
async fn static_credentials_are_sent_and_a_revoked_one_is_unauthorized() {
    let mock = MockSuppliers::start(&[("MOCK_LATENCY_MS", "0-20")]).await;
    mock.set("GA", r#"{"bearer":"ga-t0ken"}"#).await;
    mock.set("JT", r#"{"api_key":"jt-k3y"}"#).await;
    let file = SuppliersFile::new(&format!(
        "{}{}",
        supplier_table(
            "GA",
            "flights",
            &mock.api_url("GA"),
            r#"["GA"]"#,
            "[supplier.auth]\ntype = \"bearer\"\nsecret_env = \"GA_TOKEN\"",
        ),
        supplier_table(
            "JT",
            "offers",
            &mock.api_url("JT"),
            r#"["JT"]"#,
            "[supplier.auth]\ntype = \"header\"\nheader = \"X-Api-Key\"\nsecret_env = \"JT_KEY\"",
        ),
    ));
    let stack = stack(&file, &[("GA_TOKEN", "ga-t0ken"), ("JT_KEY", "jt-k3y")]).await;
    let day = flying_day(1);
    let events = search(&stack, day).await;
    assert_eq!(outcome(&events, "GA"), "answered");
    assert_eq!(outcome(&events, "JT"), "answered");

    mock.set("GA", r#"{"bearer":"rotated"}"#).await;
    let calls_before = mock.calls("GA").await;
    let events = search(&stack, day).await;
    assert_eq!(outcome(&events, "GA"), "unauthorized");
    assert_eq!(outcome(&events, "JT"), "answered");
    assert!(
        !offers(&events, "JT").is_empty(),
        "the other supplier's offers arrive"
    );
    assert_eq!(events.last().unwrap().status(), "completed");
    assert_eq!(
        mock.calls("GA").await - calls_before,
        1,
        "unauthorized is not retried"
    );
    let mut stack = stack;
    let output = stack.local().providers[0].output();
    assert!(output.contains("unauthorized") || output.contains("refused our credentials"));
    for secret in ["ga-t0ken", "jt-k3y"] {
        assert!(!output.contains(secret), "a secret in the provider's log");
    }
}

#[tokio::test]
async fn oauth2_tokens_expiring_mid_run_are_fetched_once_per_lifetime() {
    let mock = MockSuppliers::start(&[("MOCK_LATENCY_MS", "0-10")]).await;
    mock.set(
        "JT",
        r#"{"oauth":{"client_id":"flight-search","client_secret":"s3 cret&","token_lifetime_ms":2000}}"#,
    )
    .await;
    let file = SuppliersFile::new(&supplier_table(
        "JT",
        "offers",
        &mock.api_url("JT"),
        r#"["JT"]"#,
        &format!(
            "[supplier.auth]\ntype = \"oauth2\"\ntoken_url = \"{}/oauth/token\"\n\
             client_id = \"flight-search\"\nclient_secret_env = \"JT_SECRET\"",
            mock.api_url("JT")
        ),
    ));
    let stack = stack(&file, &[("JT_SECRET", "s3 cret&")]).await;
    let day = flying_day(1);
    let started = Instant::now();
    // 50 searches in waves of 10, spread over more than two token lifetimes.
    for wave in 0..5 {
        let searches = (0..10).map(|_| search(&stack, day));
        for events in futures_util::future::join_all(searches).await {
            assert_eq!(outcome(&events, "JT"), "answered", "wave {wave}");
        }
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    let elapsed = started.elapsed();
    let issued = mock.tokens_issued("JT").await;
    // A token is renewed at 4/5 of its 2 s life: one fetch per 1.6 s at most,
    // plus the first.
    let most = elapsed.as_millis() as u64 / 1600 + 1;
    assert!(
        issued >= 2,
        "the token expired during the run: {issued} fetched in {elapsed:?}"
    );
    assert!(
        issued <= most,
        "{issued} tokens in {elapsed:?}: more than one fetch per lifetime"
    );

    // Tokens revoked by the partner: the next call gets 401, fetches a new
    // token once and answers.
    mock.set(
        "JT",
        r#"{"oauth":{"client_id":"flight-search","client_secret":"s3 cret&","token_lifetime_ms":60000}}"#,
    )
    .await;
    let before = mock.tokens_issued("JT").await;
    let events = search(&stack, day).await;
    assert_eq!(outcome(&events, "JT"), "answered", "renewed after a 401");
    assert_eq!(mock.tokens_issued("JT").await, before + 1);

    // A revoked client: the token endpoint refuses it.
    mock.set(
        "JT",
        r#"{"oauth":{"client_id":"flight-search","client_secret":"rotated","token_lifetime_ms":2000}}"#,
    )
    .await;
    let events = search(&stack, day).await;
    assert_eq!(outcome(&events, "JT"), "unauthorized");
    assert_eq!(events.last().unwrap().status(), "failed");
}

#[tokio::test]
async fn https_with_a_private_ca_speaks_http2_or_http1_by_alpn_and_gzip() {
    let ca = TestCa::new("partner CA");
    let h2 = MockSuppliers::start_https(
        &HttpsOptions {
            ca: &ca,
            client_ca: None,
            http2: true,
        },
        &[("MOCK_LATENCY_MS", "0-10")],
    )
    .await;
    h2.set("GA", r#"{"gzip":true}"#).await;
    let h1 = MockSuppliers::start_https(
        &HttpsOptions {
            ca: &ca,
            client_ca: None,
            http2: false,
        },
        &[("MOCK_LATENCY_MS", "0-10")],
    )
    .await;
    let file = SuppliersFile::new(&format!(
        "{}{}{}",
        supplier_table(
            "GA",
            "flights",
            &h2.https_url("GA"),
            r#"["GA"]"#,
            "ca_file = \"{dir}/ca.pem\""
        ),
        supplier_table(
            "JT",
            "offers",
            &h1.https_url("JT"),
            r#"["JT"]"#,
            "ca_file = \"{dir}/ca.pem\""
        ),
        supplier_table(
            "WRONGCA",
            "offers",
            &h1.https_url("QZ"),
            r#"["QZ"]"#,
            "ca_file = \"{dir}/other.pem\""
        ),
    ));
    file.file("ca.pem", Some(ca.pem()));
    file.file("other.pem", Some(TestCa::new("someone else").pem()));
    let stack = stack(&file, &[]).await;
    let day = flying_day(0);
    let events = search(&stack, day).await;
    assert_eq!(outcome(&events, "GA"), "answered");
    assert_eq!(outcome(&events, "JT"), "answered");
    assert_eq!(
        outcome(&events, "WRONGCA"),
        "error",
        "a certificate from another CA is refused"
    );
    assert_eq!(
        h1.calls("QZ").await,
        0,
        "no request after a failed handshake"
    );
    let request = contract::SearchRequest {
        from: contract::Iata::parse("CGK").unwrap(),
        to: contract::Iata::parse("DPS").unwrap(),
        date: contract::request::parse_date(&test_support::date_in(day)).unwrap(),
        passengers: 1,
    };
    let expected = timetable::schedule::flights(&timetable::catalogue::CARRIERS[0], &request);
    assert_eq!(
        serde_json::Value::Array(offers(&events, "GA")),
        serde_json::to_value(expected).unwrap(),
        "the gzipped answer arrives whole"
    );
    assert!(h2.http2_calls().await >= 1, "HTTP/2 when offered");
    assert_eq!(
        h1.http2_calls().await,
        0,
        "HTTP/1.1 when only that is offered"
    );
    assert!(h1.calls("JT").await >= 1);
}

#[tokio::test]
async fn mutual_tls_answers_with_the_client_certificate_and_not_without() {
    let ca = TestCa::new("partner CA");
    let clients = TestCa::new("our client CA");
    let mock = MockSuppliers::start_https(
        &HttpsOptions {
            ca: &ca,
            client_ca: Some(&clients),
            http2: true,
        },
        &[("MOCK_LATENCY_MS", "0-10")],
    )
    .await;
    let identity = clients.issue(&["flight-search"]);
    let file = SuppliersFile::new(&format!(
        "{}{}",
        supplier_table(
            "GA",
            "flights",
            &mock.https_url("GA"),
            r#"["GA"]"#,
            "ca_file = \"{dir}/ca.pem\"\nclient_cert_file = \"{dir}/client.pem\"\nclient_key_file = \"{dir}/client.key\"",
        ),
        supplier_table(
            "ANON",
            "flights",
            &mock.https_url("ID"),
            r#"["ID"]"#,
            "ca_file = \"{dir}/ca.pem\""
        ),
    ));
    file.file("ca.pem", Some(ca.pem()));
    file.file("client.pem", Some(&identity.cert_pem));
    file.file("client.key", Some(&identity.key_pem));
    let stack = stack(&file, &[]).await;
    let events = search(&stack, flying_day(0)).await;
    assert_eq!(outcome(&events, "GA"), "answered");
    assert_eq!(
        outcome(&events, "ANON"),
        "error",
        "no client certificate, no answer"
    );
    assert_eq!(mock.calls("ID").await, 0);
}

#[tokio::test]
async fn a_gzip_bomb_is_refused_within_the_answer_limit() {
    let mock = MockSuppliers::start(&[("MOCK_LATENCY_MS", "0-10")]).await;
    mock.set("GA", r#"{"gzip":true,"fault":"gzip_bomb"}"#).await;
    let file = SuppliersFile::new(&format!(
        "{}{}",
        supplier_table("GA", "flights", &mock.api_url("GA"), r#"["GA"]"#, ""),
        supplier_table("JT", "offers", &mock.api_url("JT"), r#"["JT"]"#, ""),
    ));
    let stack = stack(&file, &[]).await;
    let day = flying_day(1);
    let events = search(&stack, day).await;
    assert_eq!(
        outcome(&events, "GA"),
        "error",
        "8 MiB once decompressed is over the 4 MiB limit"
    );
    assert_eq!(outcome(&events, "JT"), "answered");
    assert_eq!(
        mock.calls("GA").await,
        1,
        "an oversized answer is not retried"
    );
    mock.set("GA", r#"{"fault":"none"}"#).await;
    let events = search(&stack, day).await;
    assert_eq!(
        outcome(&events, "GA"),
        "answered",
        "the provider is unharmed"
    );
}
