//! The two partner styles end to end over HTTP: the provider's HTTP supplier
//! with the offer-request and the flight-offers adapter, against the real
//! `mock-suppliers` process. One supplier of each style answers the same
//! search; each must deliver exactly what the mock sells (its journeys, with
//! the fares it quotes) with exact prices, the airports' offsets and
//! gate-to-gate durations, connections included: first through the HTTP
//! supplier alone, then through the whole stack (`SUPPLIERS_FILE` naming one
//! supplier of each style, a search over the API, the offers read back from
//! the event stream). Then the same over HTTPS with a private CA, each
//! partner with its own credentials (a bearer token, OAuth2 client
//! credentials), including a token the partner refuses.

use std::sync::Arc;
use std::time::Duration;

use contract::{Airline, Flight, Iata, SearchRequest};
use mock_suppliers::journeys::{self, Journey};
use provider_service::supplier::{Defaults, HttpSupplier, Style, SupplierSettings};
use provider_service::{KnownLabels, Metrics};
use test_support::mock_suppliers::{HttpsOptions, MockSuppliers};
use test_support::pki::TestCa;
use test_support::search_body;
use test_support::sse::Event;
use test_support::stack::Stack;
use test_support::supplier_outcomes::{self, outcome};
use test_support::suppliers_file::{SuppliersFile, supplier_table};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const LIMIT: Duration = Duration::from_secs(10);

/// Supplier `code` speaking `style` at `base_url`, selling what `skyhub` sells.
fn settings(code: &'static str, style: Style, base_url: String) -> SupplierSettings {
    let defaults = Defaults {
        timeout: LIMIT,
        retries: 0,
        max_connections: 4,
        breaker_failures: 5,
        breaker_open: LIMIT,
        cache_ttl: Duration::ZERO,
        deadline: LIMIT,
    };
    let mut settings = defaults.settings(code, style, base_url);
    settings.airlines = journeys::airlines("skyhub")
        .iter()
        .map(|c| c.code.to_owned())
        .collect();
    settings
}

/// The flight `journey` must arrive as, with `seats` as the style tells them
/// and the fare the mock quotes in `currency`.
fn expected(
    journey: &Journey,
    request: &SearchRequest,
    currency: &str,
    seats: Option<u32>,
) -> Flight {
    let (first, last) = (&journey.legs[0], journey.legs.last().unwrap());
    let at = |t: &str| OffsetDateTime::parse(t, &Rfc3339).unwrap();
    let mut priced = first.clone();
    priced.price =
        contract::Price::for_party(journey.fare().unwrap(), "IDR", request.passengers).unwrap();
    let price = mock_suppliers::currencies::quote(vec![priced], currency, request.passengers)
        .pop()
        .unwrap()
        .price;
    Flight {
        flight_number: first.flight_number.clone(),
        airline: Airline {
            code: journey.carrier.code.to_owned(),
            name: journey.carrier.name.to_owned(),
        },
        from: first.from.clone(),
        to: last.to.clone(),
        departure_time: first.departure_time.clone(),
        arrival_time: last.arrival_time.clone(),
        duration_minutes: u32::try_from(
            (at(&last.arrival_time) - at(&first.departure_time)).whole_minutes(),
        )
        .unwrap(),
        stops: u8::try_from(journey.legs.len() - 1).unwrap(),
        seats_available: seats,
        price,
    }
}

/// Asks the mock's supplier `skyhub` in `style` (its path) quoting in `currency`.
async fn ask(
    mock: &MockSuppliers,
    (style, path, currency): (Style, &str, &str),
    request: &SearchRequest,
) -> Vec<Flight> {
    let settings = settings(
        "SKYHUB",
        style,
        format!("{}/{path}/skyhub/{currency}", mock.base_url()),
    );
    let supplier = HttpSupplier::new(
        &settings,
        Arc::new(Metrics::new(&KnownLabels {
            suppliers: &["SKYHUB"],
            ..KnownLabels::default()
        })),
        500,
    );
    let deadline = tokio::time::Instant::now() + LIMIT;
    supplier
        .search(request, deadline)
        .await
        .expect("the supplier answers")
}

/// CGK to DPS for two, nine days ahead.
fn request() -> SearchRequest {
    SearchRequest {
        from: Iata::parse("CGK").unwrap(),
        to: Iata::parse("DPS").unwrap(),
        date: contract::request::parse_date(&test_support::date_in(9)).unwrap(),
        passengers: 2,
    }
}

/// What supplier `name` sells for `request`, as it must arrive through the
/// offer-request style in EUR and through the flight-offers style in KWD.
fn wanted(name: &str, request: &SearchRequest) -> (Vec<Flight>, Vec<Flight>) {
    let sold = journeys::journeys(name, request);
    let airlines: std::collections::BTreeSet<&str> = sold.iter().map(|j| j.carrier.code).collect();
    assert!(airlines.len() >= 2, "several airlines: {airlines:?}");
    assert!(sold.iter().any(|j| j.legs.len() == 2), "a connection");
    let eur = sold
        .iter()
        .map(|j| expected(j, request, "EUR", None))
        .collect();
    let kwd = sold
        .iter()
        .map(|j| {
            let mut flight = expected(j, request, "KWD", j.seats());
            // The style's carrier dictionary writes names in capitals.
            flight.airline.name = flight.airline.name.to_uppercase();
            flight
        })
        .collect();
    (eur, kwd)
}

/// Exact minor units of the currency, whole offsets of the airports' zones.
fn assert_exact(flights: &[Flight], decimals: u8) {
    for f in flights {
        assert_eq!(f.price.decimals, decimals, "{f:?}");
        assert_eq!(f.price.total, f.price.amount * 2, "{f:?}");
        assert!(
            f.departure_time.ends_with("+07:00") && f.arrival_time.ends_with("+08:00"),
            "{f:?}"
        );
    }
}

#[tokio::test]
async fn both_styles_deliver_what_the_mock_sells_exactly() {
    let mock = MockSuppliers::start(&[]).await;
    let request = request();
    let (want_eur, want_kwd) = wanted("skyhub", &request);
    let eur = ask(
        &mock,
        (Style::OfferRequest, "offer_request", "EUR"),
        &request,
    )
    .await;
    assert_eq!(eur, want_eur, "offer-request style in EUR");
    assert_exact(&eur, 2);
    assert!(eur.iter().all(|f| f.seats_available.is_none()));
    let kwd = ask(
        &mock,
        (Style::FlightOffers, "flight_offers", "KWD"),
        &request,
    )
    .await;
    assert_eq!(kwd, want_kwd, "flight-offers style in KWD");
    assert_exact(&kwd, 3);
    assert!(kwd.iter().all(|f| f.seats_available >= Some(2)));
}

/// The offers of `supplier`'s result event, as flights.
fn offers(events: &[Event], supplier: &str) -> Vec<Flight> {
    serde_json::from_value(serde_json::Value::Array(supplier_outcomes::offers(
        events, supplier,
    )))
    .expect("results are flights")
}

/// A `[[supplier]]` table: `code` speaking `style` at `<base>/<style>/<name>/<currency>`,
/// selling what `name` sells, then `extra` lines.
fn table(
    code: &str,
    style: &str,
    (base, name, currency): (&str, &str, &str),
    extra: &str,
) -> String {
    let airlines: Vec<String> = journeys::airlines(name)
        .iter()
        .map(|c| format!("\"{}\"", c.code))
        .collect();
    supplier_table(
        code,
        style,
        &format!("{base}/{style}/{name}/{currency}"),
        &format!("[{}]", airlines.join(", ")),
        extra,
    )
}

/// Runs the search of [`request`] through `stack` to its terminal event.
async fn search(stack: &Stack) -> Vec<Event> {
    stack.search(&search_body("CGK", "DPS", 9, 2)).await
}

#[tokio::test]
async fn one_supplier_of_each_style_answers_the_same_search_through_the_stack() {
    let mock = MockSuppliers::start(&[]).await;
    let request = request();
    let (want_eur, want_kwd) = wanted("skyhub", &request);
    let base = mock.base_url();
    let file = SuppliersFile::new(&format!(
        "{}{}",
        table("DUFF", "offer_request", (&base, "skyhub", "EUR"), ""),
        table("AMAD", "flight_offers", (&base, "skyhub", "KWD"), "")
    ));
    let stack = Stack::builder()
        .local_only()
        .provider_env("SUPPLIERS_FILE", &file.path())
        .start()
        .await;
    let events = search(&stack).await;
    assert_eq!(events.last().unwrap().status(), "completed");
    assert_eq!(
        offers(&events, "DUFF"),
        want_eur,
        "offer-request style in EUR"
    );
    assert_eq!(
        offers(&events, "AMAD"),
        want_kwd,
        "flight-offers style in KWD"
    );
}

/// The offer-request supplier's name: it demands a bearer token.
const DUFF_NAME: &str = "skyhub";
/// The flight-offers supplier's name: it demands OAuth2 client credentials.
const AMAD_NAME: &str = "farenet";

#[tokio::test]
async fn https_partners_of_both_styles_take_a_bearer_token_and_oauth2_by_file_alone() {
    let ca = TestCa::new("partner CA");
    let https = HttpsOptions {
        ca: &ca,
        client_ca: None,
        http2: true,
    };
    let mock = MockSuppliers::start_https(&https, &[]).await;
    mock.set_style(DUFF_NAME, r#"{"bearer":"duff-t0ken"}"#)
        .await;
    mock.set_style(
        AMAD_NAME,
        r#"{"oauth":{"client_id":"flight-search","client_secret":"amad s3cret&","token_lifetime_ms":60000}}"#,
    )
    .await;
    let request = request();
    let (want_eur, _) = wanted(DUFF_NAME, &request);
    let (_, want_kwd) = wanted(AMAD_NAME, &request);
    let base = mock.https_base();
    let file = SuppliersFile::new("");
    let ca_file = format!("ca_file = \"{}\"", file.file("ca.pem", Some(ca.pem())));
    std::fs::write(
        file.path(),
        format!(
            "{}{}",
            table(
                "DUFF",
                "offer_request",
                (&base, DUFF_NAME, "EUR"),
                &format!(
                    "{ca_file}\n[supplier.auth]\ntype = \"bearer\"\nsecret_env = \"DUFF_TOKEN\""
                ),
            ),
            table(
                "AMAD",
                "flight_offers",
                (&base, AMAD_NAME, "KWD"),
                &format!(
                    "{ca_file}\n[supplier.auth]\ntype = \"oauth2\"\n\
                     token_url = \"{base}/flight_offers/{AMAD_NAME}/KWD/oauth/token\"\n\
                     client_id = \"flight-search\"\nclient_secret_env = \"AMAD_SECRET\""
                ),
            ),
        ),
    )
    .expect("write the suppliers file");
    let stack = Stack::builder()
        .local_only()
        .provider_env("SUPPLIERS_FILE", &file.path())
        .provider_env("DUFF_TOKEN", "duff-t0ken")
        .provider_env("AMAD_SECRET", "amad s3cret&")
        .start()
        .await;

    let events = search(&stack).await;
    assert_eq!(outcome(&events, "DUFF"), "answered");
    assert_eq!(outcome(&events, "AMAD"), "answered");
    assert_eq!(events.last().unwrap().status(), "completed");
    let eur = offers(&events, "DUFF");
    assert_eq!(eur, want_eur, "offer-request style in EUR, gzipped");
    assert_exact(&eur, 2);
    let kwd = offers(&events, "AMAD");
    assert_eq!(kwd, want_kwd, "flight-offers style in KWD");
    assert_exact(&kwd, 3);
    assert_eq!(mock.style_counts(AMAD_NAME).await.1, 1, "one OAuth2 token");
    assert!(mock.http2_calls().await >= 2, "HTTP/2 by ALPN");

    // The offer-request partner rotates its token: refused once, not retried,
    // and the other partner's offers still arrive.
    mock.set_style(DUFF_NAME, r#"{"bearer":"rotated"}"#).await;
    let (calls_before, _) = mock.style_counts(DUFF_NAME).await;
    let events = search(&stack).await;
    assert_eq!(outcome(&events, "DUFF"), "unauthorized");
    assert_eq!(outcome(&events, "AMAD"), "answered");
    assert_eq!(offers(&events, "AMAD"), want_kwd);
    assert_eq!(events.last().unwrap().status(), "completed");
    assert_eq!(mock.style_counts(DUFF_NAME).await.0, calls_before + 1);
}

#[tokio::test]
async fn offer_requests_are_gzipped_when_asked_and_refused_without_credentials() {
    let mock = MockSuppliers::start(&[]).await;
    let url = |style: &str, endpoint: &str| {
        format!("{}/{style}/{DUFF_NAME}/EUR/{endpoint}", mock.base_url())
    };
    let body = format!(
        r#"{{"data":{{"slices":[{{"origin":"CGK","destination":"DPS","departure_date":"{}"}}],"passengers":[{{"type":"adult"}}]}}}}"#,
        test_support::date_in(9)
    );
    let offer_requests = url("offer_request", "air/offer_requests");
    let ask = |headers: &'static [(&'static str, &'static str)]| {
        test_support::http::request(hyper::Method::POST, &offer_requests, headers, body.clone())
    };
    let gzip = ask(&[("duffel-version", "v2"), ("accept-encoding", "gzip")])
        .await
        .unwrap();
    assert_eq!(gzip.status, 200);
    assert_eq!(gzip.header("content-encoding"), Some("gzip"));
    assert_eq!(gzip.body.get(..2), Some(&[0x1f, 0x8b][..]), "gzip magic");
    let plain = ask(&[("duffel-version", "v2")]).await.unwrap();
    assert_eq!(plain.header("content-encoding"), None);
    assert!(plain.json()["data"]["offers"].is_array());

    mock.set_style(DUFF_NAME, r#"{"api_key":"k3y"}"#).await;
    let refused = ask(&[("duffel-version", "v2"), ("x-api-key", "other")])
        .await
        .unwrap();
    assert_eq!(refused.status, 401);
    let allowed = ask(&[("duffel-version", "v2"), ("x-api-key", "k3y")])
        .await
        .unwrap();
    assert_eq!(allowed.status, 200);
    let token = test_support::http::request(
        hyper::Method::POST,
        &url("flight_offers", "oauth/token"),
        &[("content-type", "application/x-www-form-urlencoded")],
        "grant_type=client_credentials&client_id=x&client_secret=y",
    )
    .await
    .unwrap();
    assert_eq!(token.status, 401, "no OAuth2 client configured");
}
