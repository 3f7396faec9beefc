//! The two partner styles end to end over HTTP: the provider's HTTP supplier
//! with the offer-request and the flight-offers adapter, against the real
//! `mock-suppliers` process. One supplier of each style answers the same
//! search; each must deliver exactly what the mock sells (its journeys, with
//! the fares it quotes) with exact prices, the airports' offsets and
//! gate-to-gate durations, connections included: first through the HTTP
//! supplier alone, then through the whole stack (`SUPPLIERS_FILE` naming one
//! supplier of each style, a search over the API, the offers read back from
//! the event stream).

use std::sync::Arc;
use std::time::Duration;

use contract::{Airline, Flight, Iata, SearchRequest};
use mock_suppliers::journeys::{self, Journey};
use provider_service::adapters::Style;
use provider_service::http_client;
use provider_service::http_supplier::HttpSupplier;
use provider_service::metrics::{KnownLabels, Metrics};
use provider_service::suppliers_file::{Defaults, SupplierSettings};
use provider_service::tls::TlsFiles;
use tests::mock_suppliers::MockSuppliers;
use tests::search_body;
use tests::sse::{Event, assert_exactly_once};
use tests::stack::Stack;
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
        http_client::client(std::slice::from_ref(&settings), &TlsFiles::default()),
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

/// A suppliers file in a directory of its own, removed on Drop.
struct SuppliersFile {
    dir: std::path::PathBuf,
}

impl SuppliersFile {
    fn new(text: &str) -> SuppliersFile {
        let dir = std::env::temp_dir().join(format!("styles-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("create the file's directory");
        std::fs::write(dir.join("suppliers.toml"), text).expect("write the suppliers file");
        SuppliersFile { dir }
    }

    fn path(&self) -> String {
        self.dir
            .join("suppliers.toml")
            .to_str()
            .expect("UTF-8 path")
            .to_owned()
    }
}

impl Drop for SuppliersFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The offers of `supplier`'s result event, as flights.
fn offers(events: &[Event], supplier: &str) -> Vec<Flight> {
    let event = events
        .iter()
        .find(|e| e.status() == "result" && e.data["supplier"] == supplier)
        .unwrap_or_else(|| panic!("{supplier} did not answer"));
    serde_json::from_value(event.data["results"].clone()).expect("results are flights")
}

#[tokio::test]
async fn one_supplier_of_each_style_answers_the_same_search_through_the_stack() {
    let mock = MockSuppliers::start(&[]).await;
    let request = request();
    let (want_eur, want_kwd) = wanted(&request);
    let airlines: Vec<String> = journeys::airlines("skyhub")
        .iter()
        .map(|c| format!("\"{}\"", c.code))
        .collect();
    let table = |code: &str, style: &str, currency: &str| {
        format!(
            "[[supplier]]\ncode = \"{code}\"\nstyle = \"{style}\"\n\
             base_url = \"{}/{style}/skyhub/{currency}\"\nairlines = [{}]\ncache_ttl_secs = 0\n",
            mock.base_url(),
            airlines.join(", ")
        )
    };
    let file = SuppliersFile::new(&format!(
        "{}\n{}",
        table("DUFF", "offer_request", "EUR"),
        table("AMAD", "flight_offers", "KWD")
    ));
    let stack = Stack::builder()
        .local_only()
        .provider_env("SUPPLIERS_FILE", &file.path())
        .start()
        .await;
    let id = stack.submit(&search_body("CGK", "DPS", 9, 2)).await;
    let events = stack.events(id).await;
    assert_exactly_once(id, &events);
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
