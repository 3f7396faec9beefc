//! The API documents, `openapi.yaml` and `asyncapi.yaml`, as JSON Schema
//! validators, so the suites check what the services send against what the
//! documents promise.
//!
//! Both documents are registered under `file:///flight-search/<name>`, so
//! `asyncapi.yaml`'s relative references into `openapi.yaml` resolve exactly
//! as they do side by side in the repository. Formats (`uuid`, `date`,
//! `date-time`) are asserted, not just annotated.

use std::collections::HashMap;
use std::sync::LazyLock;

use jsonschema::{Draft, Registry, Validator};
use serde_json::{Value, json};

/// `openapi.yaml` as committed; main-service serves these bytes.
pub const OPENAPI_YAML: &str = include_str!("../../openapi.yaml");

/// `asyncapi.yaml` as committed.
pub const ASYNCAPI_YAML: &str = include_str!("../../asyncapi.yaml");

/// Where the documents live for reference resolution.
const BASE_URI: &str = "file:///flight-search/";

/// A schema of one of the documents that the suites check against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Schema {
    /// OpenAPI `SearchEvent`: the JSON of one SSE event.
    SearchEvent,
    /// OpenAPI `ErrorEnvelope`: the body of every error answer.
    ErrorEnvelope,
    /// OpenAPI `SearchAccepted`: the 202 body of a submission.
    SearchAccepted,
    /// AsyncAPI `searchEvent` payload: the `data` field of a result stream entry.
    StoredEvent,
    /// AsyncAPI `searchRequested` payload: the fields of a queue entry.
    QueuedSearch,
    /// AsyncAPI `deadLetter` payload: the fields of a dead-letter entry.
    DeadLetter,
}

impl Schema {
    const ALL: [Schema; 6] = [
        Schema::SearchEvent,
        Schema::ErrorEnvelope,
        Schema::SearchAccepted,
        Schema::StoredEvent,
        Schema::QueuedSearch,
        Schema::DeadLetter,
    ];

    /// The document and JSON pointer of the schema.
    fn location(self) -> (&'static str, &'static str) {
        match self {
            Schema::SearchEvent => ("openapi.yaml", "/components/schemas/SearchEvent"),
            Schema::ErrorEnvelope => ("openapi.yaml", "/components/schemas/ErrorEnvelope"),
            Schema::SearchAccepted => ("openapi.yaml", "/components/schemas/SearchAccepted"),
            Schema::StoredEvent => (
                "asyncapi.yaml",
                "/components/messages/searchEvent/payload/schema",
            ),
            Schema::QueuedSearch => (
                "asyncapi.yaml",
                "/components/messages/searchRequested/payload",
            ),
            Schema::DeadLetter => ("asyncapi.yaml", "/components/messages/deadLetter/payload"),
        }
    }
}

/// `openapi.yaml` as JSON.
pub fn openapi() -> &'static Value {
    static DOCUMENT: LazyLock<Value> = LazyLock::new(|| parse("openapi.yaml", OPENAPI_YAML));
    &DOCUMENT
}

/// `asyncapi.yaml` as JSON.
pub fn asyncapi() -> &'static Value {
    static DOCUMENT: LazyLock<Value> = LazyLock::new(|| parse("asyncapi.yaml", ASYNCAPI_YAML));
    &DOCUMENT
}

fn parse(name: &str, text: &str) -> Value {
    serde_yaml_ng::from_str(text).unwrap_or_else(|e| panic!("{name} is not valid YAML: {e}"))
}

/// One validator per schema, compiled on first use.
fn validators() -> &'static HashMap<Schema, Validator> {
    static VALIDATORS: LazyLock<HashMap<Schema, Validator>> = LazyLock::new(|| {
        let registry = Registry::new()
            .add(format!("{BASE_URI}openapi.yaml"), openapi().clone())
            .and_then(|r| r.add(format!("{BASE_URI}asyncapi.yaml"), asyncapi().clone()))
            .and_then(|r| r.prepare())
            .expect("the documents register as JSON Schema resources");
        Schema::ALL
            .into_iter()
            .map(|schema| {
                let (document, pointer) = schema.location();
                let root = json!({"$ref": format!("{BASE_URI}{document}#{pointer}")});
                let validator = jsonschema::options()
                    .with_draft(Draft::Draft202012)
                    .with_registry(&registry)
                    .should_validate_formats(true)
                    .build(&root)
                    .unwrap_or_else(|e| panic!("{document}#{pointer} does not compile: {e}"));
                (schema, validator)
            })
            .collect()
    });
    &VALIDATORS
}

/// Every way `instance` breaks `schema`, one line each (`<path>: <problem>`);
/// empty if and only if it matches.
pub fn violations(schema: Schema, instance: &Value) -> Vec<String> {
    validators()[&schema]
        .iter_errors(instance)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

/// Panics, naming the document and schema, unless `instance` matches `schema`.
pub fn assert_matches(schema: Schema, instance: &Value) {
    let problems = violations(schema, instance);
    if !problems.is_empty() {
        let (document, pointer) = schema.location();
        panic!(
            "{instance} does not match {document}#{pointer}:\n  {}",
            problems.join("\n  ")
        );
    }
}

/// Stream entry fields as the JSON object the AsyncAPI payloads describe.
pub fn fields_object<'a>(fields: impl IntoIterator<Item = &'a (String, String)>) -> Value {
    Value::Object(
        fields
            .into_iter()
            .map(|(name, value)| (name.clone(), Value::String(value.clone())))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use contract::event::{EventError, EventKind, SearchEvent};
    use contract::flight::{Airline, Flight, Price};
    use uuid::Uuid;

    fn flight() -> Flight {
        Flight {
            flight_number: "GA 402".into(),
            airline: Airline {
                code: "GA".into(),
                name: "Garuda Indonesia".into(),
            },
            from: "CGK".into(),
            to: "DPS".into(),
            departure_time: "2026-12-10T07:05:00+07:00".into(),
            arrival_time: "2026-12-10T09:50:00+08:00".into(),
            duration_minutes: 105,
            stops: 0,
            seats_available: Some(9),
            price: Price {
                amount: 1_385_000,
                total: 2_770_000,
                currency: "IDR".into(),
                decimals: 0,
            },
        }
    }

    fn events() -> Vec<Value> {
        let search_id = Uuid::new_v4();
        let kinds = [
            EventKind::Processing { results: vec![] },
            EventKind::Result {
                supplier: "GA".into(),
                results: vec![flight()],
            },
            EventKind::Completed { total_results: 1 },
            EventKind::Failed {
                error: EventError::new(EventError::TIMEOUT, "no answer in time"),
            },
        ];
        kinds
            .into_iter()
            .map(|kind| serde_json::from_str(&SearchEvent { search_id, kind }.to_json()).unwrap())
            .collect()
    }

    #[test]
    fn every_event_the_contract_types_write_matches_both_documents() {
        for event in events() {
            assert_matches(Schema::SearchEvent, &event);
            assert_matches(Schema::StoredEvent, &event);
        }
        for code in [
            EventError::TIMEOUT,
            EventError::DEAD_LETTERED,
            EventError::INVALID_REQUEST,
            EventError::SUPPLIERS_UNAVAILABLE,
            EventError::INTERNAL_ERROR,
        ] {
            let failed = json!({"search_id": Uuid::new_v4(), "status": "failed",
                                "error": {"code": code, "message": "m"}});
            assert_matches(Schema::SearchEvent, &failed);
        }
    }

    #[test]
    fn terminal_events_may_report_each_suppliers_outcome() {
        let outcomes = json!({"GA": "answered", "JT": "timeout", "QZ": "error",
                              "ID": "rate_limited", "QG": "circuit_open", "SJ": "truncated"});
        let completed = json!({"search_id": Uuid::new_v4(), "status": "completed",
                               "total_results": 3, "suppliers": outcomes});
        let failed = json!({"search_id": Uuid::new_v4(), "status": "failed",
                            "error": {"code": "suppliers_unavailable", "message": "m"},
                            "suppliers": {"GA": "timeout"}});
        for event in [completed, failed] {
            assert_matches(Schema::SearchEvent, &event);
            assert_matches(Schema::StoredEvent, &event);
        }
    }

    #[test]
    fn the_event_schemas_refuse_what_the_contract_does_not_allow() {
        let mut events = events();
        let mut extra = events[2].clone();
        extra["undocumented"] = json!([]);
        let mut bad_outcome = events[2].clone();
        bad_outcome["suppliers"] = json!({"GA": "exploded"});
        let mut bad_code = events[3].clone();
        bad_code["error"]["code"] = json!("exploded");
        let mut not_empty = events[0].clone();
        not_empty["results"] = events[1]["results"].clone();
        let mut no_price = events[1].clone();
        no_price["results"][0]
            .as_object_mut()
            .unwrap()
            .remove("price");
        let mut bad_time = events[1].clone();
        bad_time["results"][0]["departure_time"] = json!("2026-12-10 07:05");
        let mut bad_id = events.remove(2);
        bad_id["search_id"] = json!("not-a-uuid");
        for (what, event) in [
            ("an undocumented field", extra),
            ("an unknown supplier outcome", bad_outcome),
            ("an unknown failure code", bad_code),
            ("offers in processing", not_empty),
            ("a flight without a price", no_price),
            ("a time that is not RFC 3339", bad_time),
            ("a search id that is not a UUID", bad_id),
        ] {
            assert!(
                !violations(Schema::SearchEvent, &event).is_empty(),
                "{what} passed: {event}"
            );
            assert!(
                !violations(Schema::StoredEvent, &event).is_empty(),
                "{what} passed the AsyncAPI payload: {event}"
            );
        }
    }

    #[test]
    fn the_envelope_schema_requires_the_contract_shape() {
        assert_matches(
            Schema::ErrorEnvelope,
            &json!({"success": false, "message": "search not found"}),
        );
        assert_matches(
            Schema::ErrorEnvelope,
            &json!({"success": false, "message": "invalid",
                    "errors": [{"field": "date", "message": "must not be in the past"}]}),
        );
        for body in [
            json!({"success": true, "message": "m"}),
            json!({"success": false}),
            json!({"success": false, "message": "m", "errors": []}),
            json!({"success": false, "message": "m", "errors": [{"field": "date"}]}),
            json!({"success": false, "message": "m", "detail": "x"}),
        ] {
            assert!(
                !violations(Schema::ErrorEnvelope, &body).is_empty(),
                "{body}"
            );
        }
    }

    #[test]
    fn the_documents_own_examples_match_their_schemas() {
        let api = openapi();
        let request = &api["components"]["schemas"]["SearchRequest"];
        let example = &api["paths"]["/api/flights/search/{search_id}/stream"]["get"]["responses"]["200"]
            ["content"]["text/event-stream"]["example"];
        let mut sse_events = 0;
        for line in example.as_str().unwrap().lines() {
            if let Some(data) = line.strip_prefix("data: ") {
                assert_matches(Schema::SearchEvent, &serde_json::from_str(data).unwrap());
                sse_events += 1;
            }
        }
        assert_eq!(sse_events, 2);
        assert_eq!(request["examples"].as_array().map(Vec::len), Some(1));
        let queued = &asyncapi()["components"]["messages"]["searchRequested"]["examples"][0];
        assert_matches(Schema::QueuedSearch, &queued["payload"]);
        let bad_request =
            &api["components"]["responses"]["BadRequest"]["content"]["application/json"]["example"];
        assert_matches(Schema::ErrorEnvelope, bad_request);
    }

    /// Every `$ref` in `value`, with the JSON path where it appears.
    fn references<'a>(value: &'a Value, path: String, found: &mut Vec<(String, &'a str)>) {
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    if key == "$ref"
                        && let Some(target) = child.as_str()
                    {
                        found.push((path.clone(), target));
                    }
                    references(child, format!("{path}/{key}"), found);
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    references(child, format!("{path}/{i}"), found);
                }
            }
            _ => {}
        }
    }

    /// The node a reference from `document` points at.
    fn resolve<'a>(document: &'a Value, target: &str) -> Option<&'a Value> {
        let (file, pointer) = target.split_once('#')?;
        let root = match file {
            "" => document,
            "openapi.yaml" => openapi(),
            _ => return None,
        };
        let pointer = pointer.replace("~1", "/").replace("~0", "~");
        root.pointer(&pointer)
    }

    #[test]
    fn every_reference_in_both_documents_resolves() {
        for (name, document) in [("openapi.yaml", openapi()), ("asyncapi.yaml", asyncapi())] {
            let mut found = Vec::new();
            references(document, String::new(), &mut found);
            assert!(!found.is_empty());
            for (path, target) in found {
                assert!(
                    resolve(document, target).is_some(),
                    "{name}{path}: $ref {target} resolves to nothing"
                );
            }
        }
    }

    /// AsyncAPI's own validator is an npm package; these are the structural
    /// rules of AsyncAPI 3.0 that a JSON Schema of the format cannot check.
    #[test]
    fn the_asyncapi_operations_match_their_channels() {
        let doc = asyncapi();
        assert_eq!(doc["asyncapi"], "3.0.0");
        let channels = doc["channels"].as_object().expect("channels");
        for (name, channel) in channels {
            assert!(channel["address"].is_string(), "{name} has no address");
            let messages = channel["messages"].as_object().expect("channel messages");
            assert!(!messages.is_empty(), "{name} carries no message");
        }
        let mut used = std::collections::HashSet::new();
        for (name, operation) in doc["operations"].as_object().expect("operations") {
            assert!(
                matches!(operation["action"].as_str(), Some("send" | "receive")),
                "{name}: action"
            );
            let channel_ref = operation["channel"]["$ref"].as_str().expect("channel");
            let channel = channel_ref
                .strip_prefix("#/channels/")
                .unwrap_or_else(|| panic!("{name}: channel must be a #/channels/ reference"));
            assert!(
                channels.contains_key(channel),
                "{name}: no channel {channel}"
            );
            used.insert(channel);
            for message in operation["messages"].as_array().expect("messages") {
                let target = message["$ref"].as_str().expect("message reference");
                assert!(
                    target.starts_with(&format!("{channel_ref}/messages/")),
                    "{name}: {target} is not a message of its channel {channel_ref}"
                );
                assert!(resolve(doc, target).is_some(), "{name}: {target}");
            }
            let services: Vec<&str> = operation["tags"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t["name"].as_str())
                .collect();
            assert!(
                !services.is_empty()
                    && services
                        .iter()
                        .all(|s| ["main-service", "provider-service"].contains(s)),
                "{name}: tags must name the services performing it, got {services:?}"
            );
        }
        assert_eq!(used.len(), channels.len(), "a channel no operation uses");
    }
}
