//! Checks what every client received against what the search's result stream
//! holds, and turns the reports into the figures of the report: events lost,
//! ordering and duplicate errors, completed searches, and the latency
//! distributions.
//!
//! What a search "should" deliver is read back from Redis rather than assumed:
//! `APPEND_EVENT` records the entry id of every event it writes in the search's
//! state hash under the event's slot (`processing`, `result:<supplier>`,
//! `terminal`), and that hash outlives the result stream's DEL. Sorted, those ids
//! are exactly the sequence each client must receive, whoever wrote it.

use std::collections::{HashMap, HashSet};

use contract::{EntryId, keys};
use service_runtime::redis_connection::RedisConnection;
use uuid::Uuid;

use crate::clock::elapsed_us;
use crate::errors::{ErrorKind, Errors};
use crate::keyspace;
use crate::searches::Submitted;
use crate::subscriber::{Outcome, StreamReport};
use crate::summary::Recorder;

/// State hashes fetched per pipeline on one server.
const BATCH: usize = 500;

/// The event ids recorded in a state hash, in stream order.
pub fn slot_ids(fields: &HashMap<String, String>) -> Vec<EntryId> {
    let mut ids: Vec<EntryId> = fields
        .iter()
        .filter(|(slot, _)| {
            *slot == "processing" || *slot == keys::STATE_TERMINAL || slot.starts_with("result:")
        })
        .filter_map(|(_, id)| id.parse().ok())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Each search's expected event ids, from its state hash. A search whose hash
/// is missing is left out and counted as [`ErrorKind::StateMissing`].
pub async fn expected_ids(
    conn: &mut RedisConnection,
    searches: &[Uuid],
    errors: &mut Errors,
) -> redis::RedisResult<HashMap<Uuid, Vec<EntryId>>> {
    // A cluster refuses a pipeline over several slots: one hash at a time there.
    let batch_size = if keyspace::is_cluster(conn) { 1 } else { BATCH };
    let mut expected = HashMap::with_capacity(searches.len());
    for batch in searches.chunks(batch_size) {
        let mut pipe = redis::pipe();
        for &id in batch {
            pipe.hgetall(keys::state_key(id));
        }
        let hashes: Vec<HashMap<String, String>> = pipe.query_async(conn).await?;
        for (&id, fields) in batch.iter().zip(hashes) {
            if fields.is_empty() {
                errors.record(ErrorKind::StateMissing, id);
            } else {
                expected.insert(id, slot_ids(&fields));
            }
        }
    }
    Ok(expected)
}

/// How one stream's events compare with the expected sequence.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamCheck {
    /// Expected events received (first copy only).
    pub matched: u64,
    /// Expected events never received.
    pub lost: u64,
    /// Events received more than once.
    pub duplicates: u64,
    /// Events received after a later one.
    pub out_of_order: u64,
    /// Events not in the expected sequence.
    pub unexpected: u64,
}

/// Compares `received` (arrival order) with `expected` (stream order).
pub fn check_stream(expected: &[EntryId], received: &[EntryId]) -> StreamCheck {
    let wanted: HashSet<EntryId> = expected.iter().copied().collect();
    let mut seen = HashSet::with_capacity(received.len());
    let mut check = StreamCheck::default();
    let mut last: Option<EntryId> = None;
    for &id in received {
        if !seen.insert(id) {
            check.duplicates += 1;
            continue;
        }
        if !wanted.contains(&id) {
            check.unexpected += 1;
            continue;
        }
        if last.is_some_and(|last| id < last) {
            check.out_of_order += 1;
        }
        last = Some(id);
        check.matched += 1;
    }
    check.lost = expected.len() as u64 - check.matched;
    check
}

/// The delivery figures of a run.
#[derive(Default)]
pub struct Delivery {
    /// Events that should have reached a client, summed over clients.
    pub events_expected: u64,
    /// Events clients received (every copy).
    pub events_received: u64,
    /// Expected events no client copy received, summed over clients.
    pub events_lost: u64,
    /// Streams that received their whole sequence and ended cleanly.
    pub streams_complete: u64,
    /// Searches all of whose clients completed.
    pub searches_completed: u64,
    /// POST → first event, per client.
    pub first_event: Recorder,
    /// POST → terminal event, per client.
    pub terminal: Recorder,
    /// Append → receipt, per event copy whose send time is known.
    pub delivery: Recorder,
    /// Latest receipt of a terminal event, µs since the epoch.
    pub last_terminal_at_us: Option<u64>,
    /// Stream failures, ordering errors, failed searches.
    pub errors: Errors,
}

/// What a run planned and sent, to check the reports against.
pub struct Plan<'a> {
    /// Clients planned per search (a client whose report is missing lost everything).
    pub clients: &'a HashMap<Uuid, usize>,
    /// Expected ids per search.
    pub expected: &'a HashMap<Uuid, Vec<EntryId>>,
    /// POST time per search, µs since the epoch.
    pub posted_at: &'a HashMap<Uuid, u64>,
    /// Send time per appended event, when the load generator produced them.
    pub sent_at: &'a HashMap<(Uuid, EntryId), u64>,
}

/// Reads back the entry ids Redis recorded for the `submitted` searches and
/// checks every client's report against them; the checks' errors go into
/// `errors`. `clients` is the number of clients planned per search,
/// `sent_at` the send time of each event the load generator produced.
pub async fn verify_submitted(
    conn: &mut RedisConnection,
    submitted: &[Submitted],
    clients: &HashMap<Uuid, usize>,
    sent_at: &HashMap<(Uuid, EntryId), u64>,
    reports: &[StreamReport],
    errors: &mut Errors,
) -> Result<Delivery, String> {
    let ids: Vec<Uuid> = submitted.iter().map(|s| s.search_id).collect();
    let expected = expected_ids(conn, &ids, errors)
        .await
        .map_err(|e| format!("reading the state hashes back: {e}"))?;
    let posted_at: HashMap<Uuid, u64> = submitted
        .iter()
        .map(|s| (s.search_id, s.posted_at_us))
        .collect();
    let mut delivery = verify(
        &Plan {
            clients,
            expected: &expected,
            posted_at: &posted_at,
            sent_at,
        },
        reports,
    );
    errors.merge(std::mem::replace(&mut delivery.errors, Errors::new()));
    Ok(delivery)
}

/// Checks every report against the plan.
pub fn verify(plan: &Plan<'_>, reports: &[StreamReport]) -> Delivery {
    let mut d = Delivery::default();
    let mut reported: HashMap<Uuid, usize> = HashMap::new();
    let mut complete: HashMap<Uuid, usize> = HashMap::new();
    for report in reports {
        let id = report.search_id;
        *reported.entry(id).or_default() += 1;
        let expected = plan
            .expected
            .get(&id)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let received: Vec<EntryId> = report.events.iter().map(|e| e.entry_id()).collect();
        let check = check_stream(expected, &received);
        d.events_expected += expected.len() as u64;
        d.events_received += received.len() as u64;
        d.events_lost += check.lost;
        let detail = |what: &str| format!("{what} on a stream of {id}");
        d.errors.add(
            ErrorKind::SseDuplicate,
            check.duplicates,
            detail("duplicate event"),
        );
        d.errors.add(
            ErrorKind::SseOutOfOrder,
            check.out_of_order,
            detail("event out of order"),
        );
        d.errors.add(
            ErrorKind::SseUnexpectedEvent,
            check.unexpected,
            detail("event not in Redis"),
        );
        if let Outcome::Failed { kind, detail } = &report.outcome {
            d.errors.record(*kind, format!("{id}: {detail}"));
        }
        let failed = report.events.iter().any(|e| e.failed);
        if failed {
            d.errors.record(ErrorKind::SearchFailed, id);
        }
        let clean = check
            == StreamCheck {
                matched: expected.len() as u64,
                ..StreamCheck::default()
            };
        if report.outcome == Outcome::Complete && clean && !failed && !expected.is_empty() {
            d.streams_complete += 1;
            *complete.entry(id).or_default() += 1;
        }
        if let Some(&posted) = plan.posted_at.get(&id) {
            if let Some(first) = report.events.first() {
                d.first_event.record(elapsed_us(posted, first.at_us));
            }
            if let Some(last) = report.events.iter().find(|e| e.terminal) {
                d.terminal.record(elapsed_us(posted, last.at_us));
            }
        }
        if let Some(terminal) = report.events.iter().find(|e| e.terminal) {
            d.last_terminal_at_us = d.last_terminal_at_us.max(Some(terminal.at_us));
        }
        for event in &report.events {
            if let Some(&sent) = plan.sent_at.get(&(id, event.entry_id())) {
                d.delivery.record(elapsed_us(sent, event.at_us));
            }
        }
    }
    for (id, &clients) in plan.clients {
        let missing = clients.saturating_sub(reported.get(id).copied().unwrap_or(0)) as u64;
        let expected = plan.expected.get(id).map_or(0, Vec::len) as u64;
        d.events_expected += missing * expected;
        d.events_lost += missing * expected;
        if complete.get(id) == Some(&clients) {
            d.searches_completed += 1;
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subscriber::Received;

    fn ids(text: &[&str]) -> Vec<EntryId> {
        text.iter().map(|t| t.parse().unwrap()).collect()
    }

    #[test]
    fn slot_ids_come_from_event_slots_only_in_stream_order() {
        let fields: HashMap<String, String> = [
            ("requested_at", "1700000000000"),
            ("readers", "2"),
            ("terminal", "9-0"),
            ("result:GA", "5-1"),
            ("processing", "5-0"),
            ("result:JT", "10-0"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(slot_ids(&fields), ids(&["5-0", "5-1", "9-0", "10-0"]));
    }

    #[test]
    fn classifies_every_deviation() {
        let expected = ids(&["1-0", "1-1", "2-0", "3-0"]);
        assert_eq!(
            check_stream(&expected, &expected),
            StreamCheck {
                matched: 4,
                ..StreamCheck::default()
            }
        );
        assert_eq!(
            check_stream(&expected, &ids(&["1-0", "2-0", "1-1", "1-1", "7-0"])),
            StreamCheck {
                matched: 3,
                lost: 1,
                duplicates: 1,
                out_of_order: 1,
                unexpected: 1
            }
        );
        assert_eq!(check_stream(&expected, &[]).lost, 4);
    }

    fn report(id: Uuid, events: &[(&str, u64)], outcome: Outcome) -> StreamReport {
        let n = events.len();
        let ended = outcome == Outcome::Complete;
        StreamReport {
            search_id: id,
            opened_at_us: Some(0),
            events: events
                .iter()
                .enumerate()
                .map(|(i, (e, at))| {
                    let e: EntryId = e.parse().unwrap();
                    Received {
                        id: (e.ms, e.seq),
                        at_us: *at,
                        terminal: ended && i + 1 == n,
                        failed: false,
                    }
                })
                .collect(),
            outcome,
        }
    }

    #[test]
    fn verifies_searches_lost_events_and_latencies() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let clients = HashMap::from([(a, 2), (b, 1)]);
        let expected = HashMap::from([(a, ids(&["1-0", "2-0"])), (b, ids(&["3-0", "4-0"]))]);
        let posted_at = HashMap::from([(a, 1_000), (b, 1_000)]);
        let sent_at = HashMap::from([
            ((a, "1-0".parse().unwrap()), 1_500),
            ((a, "2-0".parse().unwrap()), 2_000),
        ]);
        let plan = Plan {
            clients: &clients,
            expected: &expected,
            posted_at: &posted_at,
            sent_at: &sent_at,
        };
        let reports = [
            report(a, &[("1-0", 1_600), ("2-0", 2_300)], Outcome::Complete),
            report(a, &[("1-0", 1_700), ("2-0", 2_400)], Outcome::Complete),
            report(
                b,
                &[("3-0", 5_000)],
                Outcome::Failed {
                    kind: ErrorKind::SseEof,
                    detail: "cut".into(),
                },
            ),
        ];
        let d = verify(&plan, &reports);
        assert_eq!(
            (d.events_expected, d.events_received, d.events_lost),
            (6, 5, 1)
        );
        assert_eq!((d.streams_complete, d.searches_completed), (2, 1));
        assert_eq!(d.errors.counts.get(&ErrorKind::SseEof), Some(&1));
        assert_eq!(d.delivery.summary().unwrap().count, 4);
        assert_eq!(d.delivery.summary().unwrap().max_ms, 0.4);
        assert_eq!(d.first_event.summary().unwrap().count, 3);
        assert_eq!(d.terminal.summary().unwrap().p50_ms, 1.3);
        assert_eq!(d.last_terminal_at_us, Some(2_400));

        let d = verify(&plan, &reports[..1]);
        assert_eq!(
            d.events_lost,
            2 + 2,
            "a missing client loses its whole sequence"
        );
        assert_eq!(d.searches_completed, 0);
    }
}
