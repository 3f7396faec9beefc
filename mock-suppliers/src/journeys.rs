//! What a multi-airline supplier sells for a search: each of its airlines'
//! direct flights from the timetables, plus at most one same-day connection
//! per airline through a hub, so answers have several airlines and segments
//! in more than one time zone. Everything follows from the supplier's name,
//! the route and the date, like the timetables themselves.

use contract::{Flight, SearchRequest};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use timetable::catalogue::{AIRPORTS, CARRIERS, Carrier};
use timetable::rng::Rng;

/// Airlines each supplier sells.
const AIRLINES_PER_SUPPLIER: usize = 3;
/// Shortest time between landing and the next departure of a connection.
const MIN_CONNECTION_MINUTES: i64 = 60;

/// One thing to buy: one flight, or two that connect.
#[derive(Debug, Clone, PartialEq)]
pub struct Journey {
    /// The airline selling it (and flying every leg).
    pub carrier: &'static Carrier,
    /// The legs in order, each a timetable flight priced in IDR.
    pub legs: Vec<Flight>,
}

impl Journey {
    /// The fare per passenger in IDR: the legs' fares added up.
    pub fn fare(&self) -> Option<u64> {
        self.legs
            .iter()
            .try_fold(0u64, |sum, leg| sum.checked_add(leg.price.amount))
    }

    /// Seats left on the fullest leg.
    pub fn seats(&self) -> Option<u32> {
        self.legs.iter().filter_map(|l| l.seats_available).min()
    }
}

/// The airlines supplier `name` sells, always the same for one name.
pub fn airlines(name: &str) -> Vec<&'static Carrier> {
    let mut rng = Rng::for_key(&format!("supplier|{name}"));
    let mut pool: Vec<&'static Carrier> = CARRIERS.iter().collect();
    let mut chosen = Vec::with_capacity(AIRLINES_PER_SUPPLIER);
    while chosen.len() < AIRLINES_PER_SUPPLIER && !pool.is_empty() {
        let len = u64::try_from(pool.len()).unwrap_or(u64::MAX);
        let i = usize::try_from(rng.below(len)).unwrap_or(0);
        chosen.push(pool.swap_remove(i));
    }
    chosen.sort_by_key(|c| c.code);
    chosen
}

fn instant(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).ok()
}

/// The first connection `carrier` offers from `request.from` to `request.to`
/// through a hub on the requested date, if any.
fn connection(carrier: &'static Carrier, request: &SearchRequest) -> Option<Journey> {
    let leg = |from: &str, to: &str| {
        let mut leg_request = *request;
        leg_request.from = contract::Iata::parse(from)?;
        leg_request.to = contract::Iata::parse(to)?;
        Some(timetable::schedule::flights(carrier, &leg_request))
    };
    AIRPORTS
        .iter()
        .filter(|a| a.hub && a.code != request.from.as_str() && a.code != request.to.as_str())
        .find_map(|hub| {
            let firsts = leg(request.from.as_str(), hub.code)?;
            let seconds = leg(hub.code, request.to.as_str())?;
            firsts.into_iter().find_map(|first| {
                let landed = instant(&first.arrival_time)?;
                let second = seconds.iter().find(|s| {
                    instant(&s.departure_time)
                        .is_some_and(|d| (d - landed).whole_minutes() >= MIN_CONNECTION_MINUTES)
                })?;
                Some(Journey {
                    carrier,
                    legs: vec![first, second.clone()],
                })
            })
        })
}

/// Everything supplier `name` sells for `request`.
pub fn journeys(name: &str, request: &SearchRequest) -> Vec<Journey> {
    airlines(name)
        .into_iter()
        .flat_map(|carrier| {
            timetable::schedule::flights(carrier, request)
                .into_iter()
                .map(move |f| Journey {
                    carrier,
                    legs: vec![f],
                })
                .chain(connection(carrier, request))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use contract::Iata;

    fn request(from: &str, to: &str) -> SearchRequest {
        SearchRequest {
            from: Iata::parse(from).unwrap(),
            to: Iata::parse(to).unwrap(),
            date: time::macros::date!(2026 - 12 - 10),
            passengers: 2,
        }
    }

    #[test]
    fn a_supplier_sells_several_airlines_the_same_every_time() {
        let a = airlines("skyhub");
        assert_eq!(a.len(), AIRLINES_PER_SUPPLIER);
        assert_eq!(a, airlines("skyhub"));
        assert_ne!(a, airlines("farefinder"), "another name, another mix");
    }

    #[test]
    fn connections_chain_on_the_day_through_a_hub() {
        let all: Vec<Journey> = ["skyhub", "farefinder", "a", "b"]
            .iter()
            .flat_map(|name| journeys(name, &request("CGK", "DPS")))
            .collect();
        let connections: Vec<&Journey> = all.iter().filter(|j| j.legs.len() == 2).collect();
        assert!(!connections.is_empty());
        for j in connections {
            let (first, second) = (&j.legs[0], &j.legs[1]);
            assert_eq!((first.from.as_str(), second.to.as_str()), ("CGK", "DPS"));
            assert_eq!(first.to, second.from);
            let gap =
                instant(&second.departure_time).unwrap() - instant(&first.arrival_time).unwrap();
            assert!(gap.whole_minutes() >= MIN_CONNECTION_MINUTES, "{j:?}");
            assert_eq!(j.fare(), Some(first.price.amount + second.price.amount));
        }
        assert_eq!(
            journeys("skyhub", &request("CGK", "DPS")),
            journeys("skyhub", &request("CGK", "DPS"))
        );
    }
}
