//! Redis key, field and channel names. The first group is the public contract
//! (fixed); the rest are this project's own and documented in docs/architecture.md ("Redis keys").

use uuid::Uuid;

/// Stream of submitted searches, consumed by provider-service in a consumer group.
pub const REQUESTS_STREAM: &str = "flight.search.requested";

/// Default consumer group on [`REQUESTS_STREAM`].
pub const DEFAULT_CONSUMER_GROUP: &str = "provider-service";

/// Prefix of each search's result stream; see [`results_key`].
pub const RESULTS_PREFIX: &str = "flight.search.results:";

/// Prefix of the provider's answer cache keys:
/// `flight.supplier.answer:<code>:<from>:<to>:<date>:<passengers>`. One key per
/// question, shared by all searches and replicas; a single-key command, so it
/// needs no hash tag on a cluster.
pub const SUPPLIER_ANSWER_PREFIX: &str = "flight.supplier.answer:";

/// Stream where searches that cannot be processed end up, with the reason.
pub const DEAD_LETTER_STREAM: &str = "flight.search.dead-letter";

/// Pub/sub channel on which every appended event is announced on a single
/// Redis (message: a [nudge](crate::nudge), the search id and the entries
/// written), so main-service learns of new events without polling. On a
/// cluster, [`events_channel`] is used instead.
pub const EVENTS_CHANNEL: &str = "flight.search.events";

/// Field of a result stream entry holding the event JSON.
pub const DATA_FIELD: &str = "data";

/// State hash field: POST time in Unix milliseconds, the start of the search timeout.
pub const STATE_REQUESTED_AT: &str = "requested_at";

/// State hash field: entry id of the search's one terminal event, once written.
pub const STATE_TERMINAL: &str = "terminal";

/// State hash field: SSE readers currently attached, over all main-service
/// instances (kept by the attach and detach scripts).
pub const STATE_READERS: &str = "readers";

/// Prefix of the state hash field `reader:<token>` that records one attached
/// reader, so its detach counts down once at most.
pub const STATE_READER_PREFIX: &str = "reader:";

/// State hash field: `result` events written so far (kept by the append script).
pub const STATE_ANSWERS: &str = "answers";

/// State hash field: offers over those `result` events (kept by the append script).
pub const STATE_OFFERS: &str = "offers";

/// Approximate length cap of [`DEAD_LETTER_STREAM`].
pub const DEAD_LETTER_MAXLEN: usize = 10_000;

/// Dead-letter field: the id the entry had in [`REQUESTS_STREAM`].
pub const DEAD_LETTER_ENTRY_ID: &str = "entry_id";

/// Dead-letter field: why it was set aside (`invalid_request`, `max_deliveries_exceeded`).
pub const DEAD_LETTER_REASON: &str = "reason";

/// Dead-letter field: what exactly was wrong, for people.
pub const DEAD_LETTER_DETAIL: &str = "detail";

/// Dead-letter field: how often the entry had been handed out.
pub const DEAD_LETTER_DELIVERIES: &str = "deliveries";

/// Dead-letter field: the consumer that set it aside.
pub const DEAD_LETTER_CONSUMER: &str = "consumer";

/// Prefix of the dead-letter fields copying the entry's own, `orig.<name>`.
pub const DEAD_LETTER_ORIGINAL_PREFIX: &str = "orig.";

/// `flight.search.results:<search_id>`: the search's events, in order.
pub fn results_key(search_id: Uuid) -> String {
    format!("{RESULTS_PREFIX}{search_id}")
}

/// `{flight.search.results:<search_id>}`: the hash tag on every key of a search
/// other than its result stream. Redis Cluster hashes only what is inside the
/// braces, and a key without braces hashes its whole name, so a tagged key lands
/// in the same slot as the contract's `flight.search.results:<search_id>` and a
/// script over both stays one atomic step on a cluster.
pub fn search_tag(search_id: Uuid) -> String {
    format!("{{{RESULTS_PREFIX}{search_id}}}")
}

/// `{flight.search.results:<search_id>}:state`: what the search's stream alone
/// cannot tell (that it was submitted, when, whether it ended, who is reading it).
pub fn state_key(search_id: Uuid) -> String {
    format!("{}:state", search_tag(search_id))
}

/// `{flight.search.results:<search_id>}:events`: the sharded pub/sub channel
/// announcing the search's appends on a Redis Cluster (SPUBLISH/SSUBSCRIBE).
/// It lives on the node that owns the search's keys, so an announcement costs
/// one node, not a broadcast to every node as a PUBLISH does.
pub fn events_channel(search_id: Uuid) -> String {
    format!("{}:events", search_tag(search_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_contract() {
        let id = Uuid::parse_str("6f1c2a9e-8a5b-4c2d-9e7f-0a1b2c3d4e5f").unwrap();
        assert_eq!(
            results_key(id),
            "flight.search.results:6f1c2a9e-8a5b-4c2d-9e7f-0a1b2c3d4e5f"
        );
        assert_eq!(
            state_key(id),
            "{flight.search.results:6f1c2a9e-8a5b-4c2d-9e7f-0a1b2c3d4e5f}:state"
        );
    }

    #[test]
    fn a_search_keys_share_the_result_stream_slot() {
        // Redis Cluster hashes the text between the first `{` and the next `}`.
        let id = Uuid::new_v4();
        let state = state_key(id);
        let tagged = &state[state.find('{').unwrap() + 1..state.find('}').unwrap()];
        assert_eq!(tagged, results_key(id));
        assert!(!results_key(id).contains('{'));
        assert!(events_channel(id).starts_with(&state[..state.find('}').unwrap() + 1]));
    }
}
