//! The two partner styles end to end over HTTP: the provider's HTTP supplier
//! with the offer-request and the flight-offers adapter, against the real
//! `mock-suppliers` process. One supplier of each style answers the same
//! search; each must deliver exactly what the mock sells (its journeys, with
//! the fares it quotes) with exact prices, the airports' offsets and
//! gate-to-gate durations, connections included.

use std::sync::Arc;
use std::time::Duration;

use contract::{Airline, Flight, Iata, SearchRequest};
use mock_suppliers::journeys::{self, Journey};
use provider_service::adapters::Adapter;
use provider_service::adapters::flight_offers::FlightOffersApi;
use provider_service::adapters::offer_request::OfferRequestApi;
use provider_service::config::SupplierConfig;
use provider_service::http_supplier::{self, HttpSupplier};
use provider_service::metrics::Metrics;
use tests::mock_suppliers::MockSuppliers;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const LIMIT: Duration = Duration::from_secs(10);

fn config() -> SupplierConfig {
    SupplierConfig {
        urls: Vec::new(),
        timeout: LIMIT,
        deadline: LIMIT,
        retries: 0,
        max_connections: 4,
        breaker_failures: 5,
        breaker_open: LIMIT,
    }
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

/// Asks the mock's supplier `name` in `style` at `currency` through `adapter`.
async fn ask(
    mock: &MockSuppliers,
    (style, name, currency): (&str, &'static str, &str),
    adapter: Box<dyn Adapter>,
    request: &SearchRequest,
) -> Vec<Flight> {
    let config = config();
    let supplier = HttpSupplier::new(
        name,
        format!("{}/{style}/{name}/{currency}", mock.base_url()),
        adapter,
        http_supplier::client(&config),
        &config,
        Arc::new(Metrics::new(&[name])),
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
        date: contract::request::parse_date(&tests::date_in(9)).unwrap(),
        passengers: 2,
    }
}

/// What supplier `skyhub` sells for `request`, as it must arrive through the
/// offer-request style in EUR and through the flight-offers style in KWD.
fn wanted(request: &SearchRequest) -> (Vec<Flight>, Vec<Flight>) {
    let sold = journeys::journeys("skyhub", request);
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
    let (want_eur, want_kwd) = wanted(&request);
    let eur = ask(
        &mock,
        ("offer_request", "skyhub", "EUR"),
        Box::new(OfferRequestApi),
        &request,
    )
    .await;
    assert_eq!(eur, want_eur, "offer-request style in EUR");
    assert_exact(&eur, 2);
    assert!(eur.iter().all(|f| f.seats_available.is_none()));
    let kwd = ask(
        &mock,
        ("flight_offers", "skyhub", "KWD"),
        Box::new(FlightOffersApi),
        &request,
    )
    .await;
    assert_eq!(kwd, want_kwd, "flight-offers style in KWD");
    assert_exact(&kwd, 3);
    assert!(kwd.iter().all(|f| f.seats_available >= Some(2)));
}
