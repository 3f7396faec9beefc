//! The load generator as the producer of events (the `idle` and `latency`
//! scenarios, where provider-service must not run): appends each search's
//! `processing`, `result`s and `completed` through the contract's
//! `APPEND_EVENT` script exactly as provider-service does, so main-service
//! cannot tell the difference, and timestamps every append.

use std::collections::HashMap;

use contract::{Airline, EntryId, EventKind, Flight, Price, SearchEvent, keys, scripts};
use service_runtime::redis_connection::RedisConnection;
use tokio::time::{Duration, Instant};
use uuid::Uuid;

use crate::clock::now_us;
use crate::errors::{ErrorKind, Errors};
use crate::keyspace;

/// TTL given to the streams written, the contract's default `RESULTS_TTL_SECS`.
const RESULTS_TTL_SECS: u64 = 1800;

/// Suppliers the `result` events are attributed to, in order; each needs its own
/// slot in `APPEND_EVENT`.
const SUPPLIERS: [(&str, &str); 8] = [
    ("GA", "Garuda Indonesia"),
    ("JT", "Lion Air"),
    ("QG", "Citilink"),
    ("ID", "Batik Air"),
    ("IU", "Super Air Jet"),
    ("QZ", "Indonesia AirAsia"),
    ("SJ", "Sriwijaya Air"),
    ("IW", "Wings Air"),
];

/// Most `result` events per search the producer can write.
pub const MAX_RESULTS: usize = SUPPLIERS.len();

/// Offers per `result` event: sized like a real supplier answer.
const FLIGHTS_PER_RESULT: usize = 2;

/// Appends events through `APPEND_EVENT` on a connection of its own.
pub struct Producer {
    /// Dedicated connection, so sampling `INFO` never queues ahead of an append.
    conn: RedisConnection,
    /// The script, loaded once up front so no append pays for `SCRIPT LOAD`.
    script: redis::Script,
}

/// What the producer wrote.
#[derive(Debug, Default)]
pub struct Production {
    /// Send time (µs since the epoch, taken right before the EVALSHA) of each
    /// appended event, by search and entry id.
    pub sent_at: HashMap<(Uuid, EntryId), u64>,
    /// Events the script accepted.
    pub appended: u64,
    /// How long producing took.
    pub elapsed: Duration,
}

/// The events of one search: `processing`, `results` results, `completed`.
pub fn events_for(search_id: Uuid, results: usize) -> Vec<SearchEvent> {
    let mut kinds = vec![EventKind::Processing { results: vec![] }];
    for (code, name) in SUPPLIERS.iter().take(results) {
        kinds.push(EventKind::Result {
            supplier: (*code).to_owned(),
            results: (0..FLIGHTS_PER_RESULT)
                .map(|i| flight(code, name, i))
                .collect(),
        });
    }
    kinds.push(EventKind::Completed {
        total_results: (results * FLIGHTS_PER_RESULT) as u32,
    });
    kinds
        .into_iter()
        .map(|kind| SearchEvent { search_id, kind })
        .collect()
}

fn flight(code: &str, name: &str, i: usize) -> Flight {
    Flight {
        flight_number: format!("{code} {}", 400 + i),
        airline: Airline {
            code: code.to_owned(),
            name: name.to_owned(),
        },
        from: "CGK".to_owned(),
        to: "DPS".to_owned(),
        departure_time: format!("2026-12-10T{:02}:15:00+07:00", 6 + 3 * i),
        arrival_time: format!("2026-12-10T{:02}:05:00+08:00", 9 + 3 * i),
        duration_minutes: 110,
        stops: 0,
        seats_available: Some(9),
        price: Price {
            amount: 1_250_000 + 50_000 * i as u64,
            total: 2 * (1_250_000 + 50_000 * i as u64),
            currency: "IDR".to_owned(),
            decimals: 0,
        },
    }
}

impl Producer {
    /// Opens the producer's connection and loads the script.
    pub async fn connect(mut conn: RedisConnection) -> redis::RedisResult<Producer> {
        let script = redis::Script::new(scripts::APPEND_EVENT);
        script.prepare_invoke().load_async(&mut conn).await?;
        Ok(Producer { conn, script })
    }

    /// Appends one event. Returns its entry id and send time, or `None` when
    /// the script refused it (slot taken, or the search already ended).
    pub async fn append(
        &mut self,
        event: &SearchEvent,
    ) -> redis::RedisResult<Option<(EntryId, u64)>> {
        let (channel, publish) = keyspace::nudge(&self.conn, event.search_id);
        let mut invocation = self.script.prepare_invoke();
        invocation
            .key(keys::results_key(event.search_id))
            .key(keys::state_key(event.search_id))
            .arg(event.kind.slot())
            .arg(event.to_json())
            .arg(RESULTS_TTL_SECS)
            .arg(channel)
            .arg(event.search_id.to_string())
            // No tally: the producer's terminal event is not checked against
            // the offers before it, as without the argument.
            .arg("")
            .arg(publish);
        let sent_at = now_us();
        let id: Option<String> = invocation.invoke_async(&mut self.conn).await?;
        id.map(|id| {
            id.parse::<EntryId>()
                .map(|entry| (entry, sent_at))
                .map_err(|_| {
                    redis::RedisError::from((
                        redis::ErrorKind::Parse,
                        "APPEND_EVENT returned a non-id",
                        id,
                    ))
                })
        })
        .transpose()
    }

    /// Appends `results` results plus `processing` and `completed` for every
    /// search, one phase at a time over all searches (every search's
    /// `processing`, then every first result, …), so all searches stay active
    /// for the whole run. With a `rate`, the i-th append is sent at
    /// `start + i / rate`; without, appends follow each other at once. Stops at
    /// `deadline`; failures are counted in `errors`.
    pub async fn produce(
        &mut self,
        searches: &[Uuid],
        results: usize,
        rate: Option<f64>,
        deadline: Instant,
        errors: &mut Errors,
    ) -> Production {
        let scripts: Vec<Vec<SearchEvent>> =
            searches.iter().map(|&id| events_for(id, results)).collect();
        let phases = results + 2;
        let start = Instant::now();
        let mut production = Production::default();
        let mut sequence = 0u64;
        'phases: for phase in 0..phases {
            for events in &scripts {
                if let Some(rate) = rate {
                    let due = start + Duration::from_secs_f64(sequence as f64 / rate);
                    tokio::time::sleep_until(due).await;
                }
                sequence += 1;
                if Instant::now() >= deadline {
                    errors.record(
                        ErrorKind::ProduceDeadline,
                        format!(
                            "{} events not appended",
                            scripts.len() * phases - sequence as usize + 1
                        ),
                    );
                    break 'phases;
                }
                let event = &events[phase];
                match self.append(event).await {
                    Ok(Some((id, sent_at))) => {
                        production.sent_at.insert((event.search_id, id), sent_at);
                        production.appended += 1;
                    }
                    Ok(None) => errors.record(
                        ErrorKind::ProduceRefused,
                        format!("{} slot {}", event.search_id, event.kind.slot()),
                    ),
                    Err(e) => errors.record(ErrorKind::ProduceRedis, e),
                }
            }
        }
        production.elapsed = start.elapsed();
        production
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_search_gets_processing_results_and_one_terminal() {
        let id = Uuid::new_v4();
        let events = events_for(id, 3);
        assert_eq!(events.len(), 5);
        assert!(matches!(events[0].kind, EventKind::Processing { .. }));
        assert!(events[4].kind.is_terminal());
        let slots: std::collections::HashSet<String> =
            events.iter().map(|e| e.kind.slot()).collect();
        assert_eq!(slots.len(), 5, "every event needs its own slot");
        assert!(matches!(
            events[4].kind,
            EventKind::Completed { total_results: 6 }
        ));
        assert!(events.iter().all(|e| e.search_id == id));
    }
}
