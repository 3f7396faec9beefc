//! What the mock suppliers know about the world: real airports (position and a
//! fixed UTC offset), the airlines, and which airline flies which route.
//!
//! Only zones without daylight saving time are listed (Indonesia, its neighbours,
//! Japan, Korea, Western Australia), so one offset per airport is exact all year.
//! Any other well-formed IATA code is unknown: suppliers answer it with no offers.

/// An airport the suppliers fly to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Airport {
    /// IATA code.
    pub code: &'static str,
    /// ISO 3166 country; decides domestic versus international.
    pub country: &'static str,
    /// Latitude in degrees, for great-circle distances.
    pub lat: f64,
    /// Longitude in degrees.
    pub lon: f64,
    /// Local time minus UTC, in whole hours; departures and arrivals carry it.
    pub utc_offset_hours: i8,
    /// Trunk airport: every domestic airline flies between two of them, and only
    /// they see international service.
    pub hub: bool,
}

/// Indonesia's country code; routes touching it are the airlines' home market.
const INDONESIA: &str = "ID";

const fn airport(
    code: &'static str,
    country: &'static str,
    lat: f64,
    lon: f64,
    utc_offset_hours: i8,
    hub: bool,
) -> Airport {
    Airport {
        code,
        country,
        lat,
        lon,
        utc_offset_hours,
        hub,
    }
}

/// Every known airport.
pub const AIRPORTS: &[Airport] = &[
    // Western Indonesia (WIB, UTC+7).
    airport("CGK", "ID", -6.1256, 106.6559, 7, true),
    airport("SUB", "ID", -7.3798, 112.7868, 7, true),
    airport("KNO", "ID", 3.6422, 98.8853, 7, true),
    airport("YIA", "ID", -7.9076, 110.0575, 7, true),
    airport("BTH", "ID", 1.1210, 104.1190, 7, false),
    airport("PLM", "ID", -2.8983, 104.6999, 7, false),
    airport("PDG", "ID", -0.7869, 100.2809, 7, false),
    airport("PKU", "ID", 0.4608, 101.4445, 7, false),
    airport("SRG", "ID", -6.9727, 110.3750, 7, false),
    airport("SOC", "ID", -7.5161, 110.7569, 7, false),
    airport("PNK", "ID", -0.1507, 109.4039, 7, false),
    airport("BTJ", "ID", 5.5229, 95.4206, 7, false),
    // Central Indonesia (WITA, UTC+8).
    airport("DPS", "ID", -8.7482, 115.1672, 8, true),
    airport("UPG", "ID", -5.0617, 119.5540, 8, true),
    airport("BPN", "ID", -1.2683, 116.8945, 8, true),
    airport("LOP", "ID", -8.7573, 116.2767, 8, false),
    airport("BDJ", "ID", -3.4424, 114.7625, 8, false),
    airport("MDC", "ID", 1.5493, 124.9260, 8, false),
    airport("KOE", "ID", -10.1716, 123.6711, 8, false),
    airport("LBJ", "ID", -8.4866, 119.8891, 8, false),
    // Eastern Indonesia (WIT, UTC+9).
    airport("DJJ", "ID", -2.5770, 140.5164, 9, false),
    airport("AMQ", "ID", -3.7103, 128.0891, 9, false),
    airport("SOQ", "ID", -0.8941, 131.2870, 9, false),
    // Abroad.
    airport("SIN", "SG", 1.3644, 103.9915, 8, true),
    airport("KUL", "MY", 2.7456, 101.7099, 8, true),
    airport("BKK", "TH", 13.6900, 100.7501, 7, true),
    airport("HKG", "HK", 22.3080, 113.9185, 8, true),
    airport("MNL", "PH", 14.5086, 121.0194, 8, true),
    airport("NRT", "JP", 35.7720, 140.3929, 9, true),
    airport("ICN", "KR", 37.4602, 126.4407, 9, true),
    airport("PER", "AU", -31.9385, 115.9672, 8, true),
    airport("DIL", "TL", -8.5465, 125.5247, 9, false),
];

/// The airport with this IATA code, if the suppliers know it.
pub fn airport_by_code(code: &str) -> Option<&'static Airport> {
    AIRPORTS.iter().find(|a| a.code == code)
}

/// Great-circle distance in kilometres (haversine on a 6371 km sphere).
pub fn distance_km(a: &Airport, b: &Airport) -> f64 {
    let (lat1, lat2) = (a.lat.to_radians(), b.lat.to_radians());
    let dlat = lat2 - lat1;
    let dlon = (b.lon - a.lon).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * 6371.0 * h.sqrt().asin()
}

/// An airline behind one mock supplier API.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Carrier {
    /// IATA designator; also the supplier's name in events and metrics.
    pub code: &'static str,
    /// Name shown to travellers.
    pub name: &'static str,
    /// Multiplier on the distance-based base fare: full-service above hybrid
    /// above low-cost.
    pub fare_factor: f64,
    /// Percentage of domestic non-trunk routes flown; trunk routes (hub to hub)
    /// are always flown by a domestic airline.
    pub domestic_coverage: u64,
    /// Longest international sector flown, in km; 0 for a domestic-only airline.
    pub international_range_km: f64,
}

/// The airlines, one supplier each, in the order their latency bands are laid out.
pub const CARRIERS: &[Carrier] = &[
    Carrier {
        code: "GA",
        name: "Garuda Indonesia",
        fare_factor: 1.65,
        domestic_coverage: 85,
        international_range_km: 7000.0,
    },
    Carrier {
        code: "JT",
        name: "Lion Air",
        fare_factor: 0.95,
        domestic_coverage: 90,
        international_range_km: 0.0,
    },
    Carrier {
        code: "QZ",
        name: "Indonesia AirAsia",
        fare_factor: 0.90,
        domestic_coverage: 40,
        international_range_km: 3500.0,
    },
    Carrier {
        code: "ID",
        name: "Batik Air",
        fare_factor: 1.30,
        domestic_coverage: 70,
        international_range_km: 4000.0,
    },
    Carrier {
        code: "QG",
        name: "Citilink",
        fare_factor: 1.00,
        domestic_coverage: 65,
        international_range_km: 3000.0,
    },
    Carrier {
        code: "SJ",
        name: "Sriwijaya Air",
        fare_factor: 1.05,
        domestic_coverage: 45,
        international_range_km: 0.0,
    },
];

impl Carrier {
    /// True if and only if this airline flies between `from` and `to` (in either
    /// direction). Domestic: trunk routes always, others on a stable share of
    /// city pairs. International: only between an Indonesian hub and a foreign
    /// one within the airline's range; foreign-to-foreign never (no fifth freedoms).
    pub fn serves(&self, from: &Airport, to: &Airport) -> bool {
        let domestic = from.country == INDONESIA && to.country == INDONESIA;
        if domestic {
            if from.hub && to.hub {
                return true;
            }
            let (a, b) = if from.code < to.code {
                (from.code, to.code)
            } else {
                (to.code, from.code)
            };
            let mut pair = crate::rng::Rng::for_key(&format!("{}|{a}|{b}", self.code));
            return pair.below(100) < self.domestic_coverage;
        }
        let touches_home = from.country == INDONESIA || to.country == INDONESIA;
        touches_home && from.hub && to.hub && distance_km(from, to) <= self.international_range_km
    }

    /// True if and only if the route leaves the country (fares carry taxes).
    pub fn is_international(from: &Airport, to: &Airport) -> bool {
        from.country != to.country
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(code: &str) -> &'static Airport {
        airport_by_code(code).unwrap()
    }

    #[test]
    fn codes_are_unique_and_well_formed() {
        let mut codes: Vec<&str> = AIRPORTS.iter().map(|a| a.code).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), AIRPORTS.len());
        assert!(AIRPORTS.len() >= 20);
        for a in AIRPORTS {
            assert!(contract::Iata::parse(a.code).is_some_and(|c| c.as_str() == a.code));
        }
    }

    #[test]
    fn distances_match_the_real_routes() {
        let cgk_dps = distance_km(at("CGK"), at("DPS"));
        assert!((950.0..1010.0).contains(&cgk_dps), "{cgk_dps}");
        let cgk_nrt = distance_km(at("CGK"), at("NRT"));
        assert!((5700.0..5900.0).contains(&cgk_nrt), "{cgk_nrt}");
        assert_eq!(distance_km(at("SUB"), at("SUB")), 0.0);
    }

    #[test]
    fn trunk_routes_have_every_domestic_airline() {
        for c in CARRIERS {
            assert!(c.serves(at("CGK"), at("DPS")), "{}", c.code);
        }
    }

    #[test]
    fn international_service_follows_range_and_home_market() {
        let ga = &CARRIERS[0];
        let jt = &CARRIERS[1];
        assert!(ga.serves(at("CGK"), at("NRT")));
        assert!(!jt.serves(at("CGK"), at("SIN")));
        assert!(CARRIERS.iter().all(|c| !c.serves(at("SIN"), at("BKK"))));
        assert!(
            CARRIERS
                .iter()
                .any(|c| c.code == "QZ" && c.serves(at("DPS"), at("KUL")))
        );
        assert!(
            CARRIERS
                .iter()
                .filter(|c| c.code != "GA")
                .all(|c| !c.serves(at("CGK"), at("NRT")))
        );
    }

    #[test]
    fn service_is_the_same_both_ways() {
        for c in CARRIERS {
            for a in AIRPORTS {
                for b in AIRPORTS {
                    assert_eq!(
                        c.serves(a, b),
                        c.serves(b, a),
                        "{} {}-{}",
                        c.code,
                        a.code,
                        b.code
                    );
                }
            }
        }
    }
}
