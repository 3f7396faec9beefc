//! Deterministic timetables: the flights one airline offers on one route and day.
//!
//! Everything about a flight is drawn from a generator keyed by
//! `airline|from|to|date` (flight numbers from `airline|from|to`, so they recur
//! daily), so the same question always gets the same answer, in any process.
//! The party size never feeds the generator: the day's flights are generated
//! first and the party size only filters out flights with too few seats left,
//! the way a real inventory answers. Inflating the seat count to the party size
//! instead would advertise seats that do not exist.
//!
//! A queued date can be anything the contract parses, up to 9999-12-31, so all
//! date arithmetic is checked: a flight whose arrival cannot be represented is
//! simply not offered.

use contract::request::format_date;
use contract::{Airline, Flight, Price, SearchRequest};
use time::format_description::well_known::Rfc3339;
use time::{Date, Duration, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

use crate::catalogue::{Airport, Carrier, airport_by_code, distance_km};
use crate::rng::Rng;

/// First departure of the day, minutes after local midnight (05:00).
const FIRST_DEPARTURE_MIN: u64 = 5 * 60;
/// Last departure of the day (22:00).
const LAST_DEPARTURE_MIN: u64 = 22 * 60;
/// Departures are on a 5-minute grid, like published timetables.
const GRID_MIN: u64 = 5;
/// Number of departure slots in a day.
const SLOTS: u64 = (LAST_DEPARTURE_MIN - FIRST_DEPARTURE_MIN) / GRID_MIN + 1;
/// Average block speed over the great circle.
const CRUISE_KMH: f64 = 800.0;
/// Taxi, climb and descent per leg.
const TAXI_MIN: f64 = 30.0;
/// A connection is never on the great circle.
const DETOUR: f64 = 1.15;
/// Below this distance nobody sells a connection.
const DIRECT_ONLY_KM: f64 = 1200.0;
/// Fare floor per passenger in IDR (airport tax, fuel surcharge).
const BASE_FARE_IDR: f64 = 300_000.0;
/// Fare per great-circle kilometre in IDR, before the airline's factor.
const FARE_PER_KM_IDR: f64 = 1_000.0;

/// One scheduled departure before it is priced for a party.
struct Departure {
    /// Marketing flight number.
    number: u64,
    /// Local time at the origin.
    departs: OffsetDateTime,
    /// Gate to gate, layover included.
    minutes: u32,
    /// 0 or 1.
    stops: u8,
    /// Seats left at this fare.
    seats: u32,
    /// Per passenger, IDR.
    fare: u64,
}

/// The flights `carrier` offers for `request`: none for an unknown airport or a
/// route the airline does not fly, otherwise 0 to 4 departures (at least one
/// between two hubs) on the requested local date, keeping those with at least
/// `request.passengers` seats left. Never panics, whatever the date.
pub fn flights(carrier: &Carrier, request: &SearchRequest) -> Vec<Flight> {
    let (Some(from), Some(to)) = (
        airport_by_code(request.from.as_str()),
        airport_by_code(request.to.as_str()),
    ) else {
        return Vec::new();
    };
    if !carrier.serves(from, to) {
        return Vec::new();
    }
    let passengers = u32::from(request.passengers);
    timetable(carrier, from, to, request.date)
        .into_iter()
        .filter(|d| d.seats >= passengers)
        .filter_map(|d| offer(carrier, from, to, &d, passengers))
        .collect()
}

/// The day's departures, independent of who asks.
fn timetable(carrier: &Carrier, from: &Airport, to: &Airport, date: Date) -> Vec<Departure> {
    let distance = distance_km(from, to);
    let route_key = format!("{}|{}|{}", carrier.code, from.code, to.code);
    let first_number = 100 + Rng::for_key(&route_key).below(800);
    let mut day = Rng::for_key(&format!("{route_key}|{}", format_date(date)));

    let count = match day.below(100) {
        0..10 => 0,
        10..30 => 1,
        30..60 => 2,
        60..85 => 3,
        _ => 4,
    };
    // Nobody cancels a whole day on a trunk route.
    let count = if from.hub && to.hub {
        count.max(1)
    } else {
        count
    };
    let mut slots: Vec<u64> = Vec::with_capacity(count);
    while slots.len() < count {
        let slot = day.below(SLOTS);
        if !slots.contains(&slot) {
            slots.push(slot);
        }
    }
    slots.sort_unstable();

    let origin_offset = offset(from);
    let international = Carrier::is_international(from, to);
    slots
        .into_iter()
        .zip(first_number..)
        .map(|(slot, number)| {
            let minute_of_day = FIRST_DEPARTURE_MIN + slot * GRID_MIN;
            let local = Time::from_hms((minute_of_day / 60) as u8, (minute_of_day % 60) as u8, 0)
                .expect("05:00 to 22:00 is a valid time");
            let departs = PrimitiveDateTime::new(date, local).assume_offset(origin_offset);

            let connection_chance = if distance > 2500.0 { 0.5 } else { 0.3 };
            let stops = u8::from(distance > DIRECT_ONLY_KM && day.chance(connection_chance));
            let minutes = if stops == 0 {
                block_minutes(distance)
            } else {
                let layover = 45.0 + (day.below(22) * 5) as f64;
                block_minutes(distance * DETOUR) + TAXI_MIN + layover
            };

            let mut fare = (BASE_FARE_IDR + FARE_PER_KM_IDR * distance) * carrier.fare_factor;
            if international {
                fare *= 1.15;
            }
            if stops > 0 {
                fare *= 0.9;
            }
            fare *= 0.85 + 0.5 * day.unit();

            let seats = if day.below(10) < 3 {
                1 + day.below(9)
            } else {
                10 + day.below(51)
            };
            Departure {
                number,
                departs,
                minutes: round_to(minutes, 5.0) as u32,
                stops,
                seats: seats as u32,
                fare: round_to(fare, 1000.0) as u64,
            }
        })
        .collect()
}

/// A departure priced for a party of `passengers`, or `None` if its times fall
/// outside what can be represented (arriving after 9999-12-31).
fn offer(
    carrier: &Carrier,
    from: &Airport,
    to: &Airport,
    d: &Departure,
    passengers: u32,
) -> Option<Flight> {
    let arrives = d
        .departs
        .checked_add(Duration::minutes(i64::from(d.minutes)))?
        .checked_to_offset(offset(to))?;
    Some(Flight {
        flight_number: format!("{} {}", carrier.code, d.number),
        airline: Airline {
            code: carrier.code.to_owned(),
            name: carrier.name.to_owned(),
        },
        from: from.code.to_owned(),
        to: to.code.to_owned(),
        departure_time: rfc3339(d.departs)?,
        arrival_time: rfc3339(arrives)?,
        duration_minutes: d.minutes,
        stops: d.stops,
        seats_available: Some(d.seats),
        price: Price {
            amount: d.fare,
            total: d.fare.saturating_mul(u64::from(passengers)),
            currency: "IDR".to_owned(),
            decimals: 0,
        },
    })
}

/// Airborne time at block speed plus one taxi, for one leg of `km`.
fn block_minutes(km: f64) -> f64 {
    km / CRUISE_KMH * 60.0 + TAXI_MIN
}

fn round_to(value: f64, step: f64) -> f64 {
    (value / step).round() * step
}

fn offset(airport: &Airport) -> UtcOffset {
    UtcOffset::from_hms(airport.utc_offset_hours, 0, 0).expect("catalogue offsets are valid")
}

/// RFC 3339 text, or `None` for a year it cannot express (outside 0000 to 9999).
fn rfc3339(at: OffsetDateTime) -> Option<String> {
    at.format(&Rfc3339).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::{AIRPORTS, CARRIERS};
    use contract::Iata;
    use time::macros::date;

    fn request(from: &str, to: &str, date: Date, passengers: u8) -> SearchRequest {
        SearchRequest {
            from: Iata::parse(from).unwrap(),
            to: Iata::parse(to).unwrap(),
            date,
            passengers,
        }
    }

    /// Every carrier on every route between known airports, over two weeks.
    fn all_offers(passengers: u8) -> Vec<(SearchRequest, Flight)> {
        let mut out = Vec::new();
        for day in 0..14 {
            let date = date!(2026 - 12 - 01) + Duration::days(day);
            for a in AIRPORTS {
                for b in AIRPORTS.iter().filter(|b| b.code != a.code) {
                    let r = request(a.code, b.code, date, passengers);
                    for c in CARRIERS {
                        out.extend(flights(c, &r).into_iter().map(|f| (r, f)));
                    }
                }
            }
        }
        out
    }

    fn parse(text: &str) -> OffsetDateTime {
        OffsetDateTime::parse(text, &Rfc3339).unwrap()
    }

    #[test]
    fn same_question_same_answer() {
        let r = request("CGK", "DPS", date!(2026 - 12 - 10), 2);
        for c in CARRIERS {
            assert_eq!(flights(c, &r), flights(c, &r), "{}", c.code);
        }
        let once: Vec<_> = all_offers(3).into_iter().map(|(_, f)| f).collect();
        let again: Vec<_> = all_offers(3).into_iter().map(|(_, f)| f).collect();
        assert_eq!(once, again);
    }

    #[test]
    fn a_busy_route_has_flights_and_they_change_by_day() {
        let on = |d: Date| -> Vec<Flight> {
            CARRIERS
                .iter()
                .flat_map(|c| flights(c, &request("CGK", "DPS", d, 1)))
                .collect()
        };
        let first = on(date!(2026 - 12 - 10));
        assert!(first.len() >= 5, "{first:?}");
        assert_ne!(first, on(date!(2026 - 12 - 11)));
        for day in 0..30 {
            let d = date!(2026 - 12 - 01) + Duration::days(day);
            for c in CARRIERS {
                assert!(
                    !flights(c, &request("SUB", "UPG", d, 1)).is_empty(),
                    "{} {d}",
                    c.code
                );
            }
        }
    }

    #[test]
    fn departures_are_on_the_requested_local_date_in_the_origin_zone() {
        let offers = all_offers(1);
        assert!(offers.len() > 10_000, "only {} offers", offers.len());
        for (r, f) in &offers {
            let origin = airport_by_code(r.from.as_str()).unwrap();
            let destination = airport_by_code(r.to.as_str()).unwrap();
            let dep = parse(&f.departure_time);
            let arr = parse(&f.arrival_time);
            assert_eq!(dep.date(), r.date, "{f:?}");
            assert_eq!(dep.offset().whole_hours(), origin.utc_offset_hours, "{f:?}");
            assert_eq!(
                arr.offset().whole_hours(),
                destination.utc_offset_hours,
                "{f:?}"
            );
            assert!(
                (5..=22).contains(&dep.hour()) && dep.minute().is_multiple_of(5),
                "{f:?}"
            );
            assert_eq!(
                arr - dep,
                Duration::minutes(i64::from(f.duration_minutes)),
                "{f:?}"
            );
            assert_eq!(
                (f.from.as_str(), f.to.as_str()),
                (origin.code, destination.code)
            );
        }
    }

    #[test]
    fn a_known_example_converts_between_zones() {
        // CGK is UTC+7, DPS UTC+8: wall-clock difference is duration + 1 h.
        let f = CARRIERS
            .iter()
            .flat_map(|c| flights(c, &request("CGK", "DPS", date!(2026 - 12 - 10), 1)))
            .next()
            .unwrap();
        assert!(f.departure_time.starts_with("2026-12-10T"), "{f:?}");
        assert!(f.departure_time.ends_with("+07:00"), "{f:?}");
        assert!(f.arrival_time.ends_with("+08:00"), "{f:?}");
    }

    #[test]
    fn seats_cover_the_party_and_totals_multiply() {
        for passengers in [1, 4, 9] {
            for (_, f) in all_offers(passengers) {
                assert!(f.seats_available >= Some(u32::from(passengers)), "{f:?}");
                assert_eq!(f.price.total, f.price.amount * u64::from(passengers));
                assert!(f.price.amount.is_multiple_of(1000));
                assert_eq!(f.price.currency, "IDR");
            }
        }
    }

    #[test]
    fn party_size_only_filters_by_seats() {
        let date = date!(2026 - 12 - 10);
        let mut filtered_out = 0;
        for c in CARRIERS {
            for (from, to) in [
                ("CGK", "DPS"),
                ("SUB", "UPG"),
                ("CGK", "SIN"),
                ("KNO", "DJJ"),
            ] {
                let one = flights(c, &request(from, to, date, 1));
                let nine = flights(c, &request(from, to, date, 9));
                for f in &nine {
                    let same = one
                        .iter()
                        .find(|g| g.flight_number == f.flight_number)
                        .expect("a flight for nine is also a flight for one");
                    assert_eq!(
                        (
                            &same.departure_time,
                            same.seats_available,
                            same.price.amount
                        ),
                        (&f.departure_time, f.seats_available, f.price.amount)
                    );
                }
                filtered_out += one.len() - nine.len();
            }
        }
        assert!(
            filtered_out > 0,
            "no flight was ever too full; the filter is untested"
        );
    }

    #[test]
    fn durations_follow_distance() {
        let direct: Vec<Flight> = CARRIERS
            .iter()
            .flat_map(|c| flights(c, &request("CGK", "DPS", date!(2026 - 12 - 10), 1)))
            .collect();
        for f in &direct {
            assert_eq!(f.stops, 0);
            assert!((100..=120).contains(&f.duration_minutes), "{f:?}");
        }
        for (r, f) in all_offers(1) {
            let km = distance_km(
                airport_by_code(r.from.as_str()).unwrap(),
                airport_by_code(r.to.as_str()).unwrap(),
            );
            assert!(f.duration_minutes.is_multiple_of(5));
            let airborne = (km / CRUISE_KMH * 60.0) as u32;
            assert!(f.duration_minutes >= airborne + 25, "{f:?}");
            if f.stops == 0 {
                assert!(f.duration_minutes <= airborne + 35, "{f:?}");
            } else {
                assert!(
                    km > DIRECT_ONLY_KM && f.duration_minutes >= airborne + 100,
                    "{f:?}"
                );
            }
        }
    }

    #[test]
    fn fares_look_like_real_ones() {
        let r = request("CGK", "DPS", date!(2026 - 12 - 10), 1);
        for c in CARRIERS {
            for f in flights(c, &r) {
                assert!(
                    (700_000..=4_000_000).contains(&f.price.amount),
                    "{}: {f:?}",
                    c.code
                );
            }
        }
    }

    #[test]
    fn unknown_airports_and_foreign_pairs_have_no_offers() {
        let d = date!(2026 - 12 - 10);
        for c in CARRIERS {
            assert!(flights(c, &request("CGK", "XYZ", d, 1)).is_empty());
            assert!(flights(c, &request("ZZZ", "DPS", d, 1)).is_empty());
            assert!(flights(c, &request("SIN", "BKK", d, 1)).is_empty());
        }
    }

    #[test]
    fn the_last_representable_day_offers_only_flights_that_land_on_it() {
        let last = date!(9999 - 12 - 31);
        let busy: Vec<Flight> = CARRIERS
            .iter()
            .flat_map(|c| flights(c, &request("CGK", "DPS", last, 1)))
            .collect();
        // CGK-DPS takes under two hours and DPS is an hour ahead, so
        // departures up to about 21:00 still land on the same day.
        assert!(!busy.is_empty());
        for f in &busy {
            assert!(f.arrival_time.starts_with("9999-12-31T"), "{f:?}");
        }
        for a in AIRPORTS {
            for b in AIRPORTS.iter().filter(|b| b.code != a.code) {
                for c in CARRIERS {
                    for f in flights(c, &request(a.code, b.code, last, 1)) {
                        assert!(parse(&f.arrival_time) > parse(&f.departure_time));
                    }
                    for f in flights(c, &request(a.code, b.code, date!(0000 - 01 - 01), 1)) {
                        assert!(f.departure_time.starts_with("0000-01-01T"), "{f:?}");
                    }
                }
            }
        }

        let late = Departure {
            number: 100,
            departs: PrimitiveDateTime::new(last, time::macros::time!(22:00))
                .assume_offset(offset(&AIRPORTS[0])),
            minutes: 120,
            stops: 0,
            seats: 10,
            fare: 1_000_000,
        };
        let dps = airport_by_code("DPS").unwrap();
        assert_eq!(offer(&CARRIERS[0], &AIRPORTS[0], dps, &late, 1), None);
    }

    #[test]
    fn flight_numbers_carry_the_airline_and_recur_daily() {
        let mut numbers: Vec<String> = (0..14)
            .flat_map(|day| {
                let d = date!(2026 - 12 - 01) + Duration::days(day);
                flights(&CARRIERS[0], &request("CGK", "DPS", d, 1))
            })
            .map(|f| f.flight_number)
            .collect();
        assert!(numbers.len() > 14, "{numbers:?}");
        assert!(
            numbers.iter().all(|n| n.starts_with("GA ") && n.len() == 6),
            "{numbers:?}"
        );
        numbers.sort();
        numbers.dedup();
        assert!(numbers.len() <= 4, "a route keeps its numbers: {numbers:?}");
    }
}
