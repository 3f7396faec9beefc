//! The operators' dashboard and rules against a real Prometheus: a local stack
//! (Redis, main-service, provider-service) is scraped every second by Debian's
//! `prometheus` with `deploy/prometheus/rules.yml` loaded, a few searches run,
//! and then every panel query of `deploy/grafana/flight-search.json` and every
//! rule expression is evaluated through the HTTP API. A query that does not
//! parse, a panel without data, a rule that fails to evaluate or an alert that
//! names a metric no service exports fails the test.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use test_support::prometheus::{Job, Prometheus};
use test_support::stack::Stack;
use test_support::{eventually, search_body};

/// The repository root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("test-support/ has a parent")
        .to_owned()
}

/// Grafana's rate window, as a fixed range: long enough that the searches of
/// this test stay inside it while the test waits, so rates stay above zero.
const RATE_INTERVAL: &str = "1m";

/// Every query of every panel of the dashboard, rows' nested panels included.
fn panel_queries() -> Vec<(String, String)> {
    let path = root().join("deploy/grafana/flight-search.json");
    let text = std::fs::read_to_string(&path).expect("read the dashboard");
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut queries = Vec::new();
    let mut panels: Vec<Value> = dashboard["panels"].as_array().cloned().unwrap_or_default();
    while let Some(panel) = panels.pop() {
        panels.extend(panel["panels"].as_array().cloned().unwrap_or_default());
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("every target has an expr");
            let title = panel["title"].as_str().unwrap_or("untitled");
            queries.push((
                format!("panel {title:?} {}", target["refId"]),
                expr.replace("$__rate_interval", RATE_INTERVAL),
            ));
        }
    }
    queries
}

/// One rule of `rules.yml`.
struct Rule {
    /// The recorded series or the alert's name.
    name: String,
    /// True for a recording rule.
    recording: bool,
    /// Its PromQL expression.
    expr: String,
}

/// Every rule of the rules file.
fn rules() -> Vec<Rule> {
    let text = std::fs::read_to_string(root().join("deploy/prometheus/rules.yml"))
        .expect("read rules.yml");
    let file: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("rules.yml is YAML");
    let mut rules = Vec::new();
    for group in file["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let expr = rule["expr"].as_str().expect("expr").trim().to_owned();
            let (name, recording) = match rule["record"].as_str() {
                Some(record) => (record.to_owned(), true),
                None => (rule["alert"].as_str().expect("alert").to_owned(), false),
            };
            rules.push(Rule {
                name,
                recording,
                expr,
            });
        }
    }
    rules
}

/// The metric names an expression selects: identifiers outside label
/// matchers, strings and ranges that name an exported family (the services'
/// prefix, `process_`) or `up`; recorded series contain a colon and are
/// checked as rules themselves.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    // The closing characters of the label matchers, string or range being
    // read, innermost last (a string may sit inside label matchers).
    let mut open: Vec<char> = Vec::new();
    let mut word = String::new();
    let mut flush = |word: &mut String| {
        if word.starts_with("flight_search_") || word.starts_with("process_") || word == "up" {
            names.insert(word.clone());
        }
        word.clear();
    };
    for c in expr.chars() {
        match (open.last(), c) {
            (Some(&close), c) if c == close => {
                open.pop();
            }
            (Some('"'), _) => {}
            (_, '"') => open.push('"'),
            (Some(_), _) => {}
            (None, '{') => {
                flush(&mut word);
                open.push('}');
            }
            (None, '[') => {
                flush(&mut word);
                open.push(']');
            }
            (None, c) if c.is_ascii_alphanumeric() || c == '_' || c == ':' => word.push(c),
            (None, _) => flush(&mut word),
        }
    }
    flush(&mut word);
    names
}

/// True if `data` (an instant query's answer) holds a number that is not NaN.
fn has_a_number(data: &Value) -> bool {
    let samples = match data["resultType"].as_str() {
        Some("vector") => data["result"]
            .as_array()
            .map(|r| r.iter().map(|s| s["value"][1].clone()).collect())
            .unwrap_or_default(),
        Some("scalar") => vec![data["result"][1].clone()],
        _ => Vec::new(),
    };
    samples
        .iter()
        .filter_map(Value::as_str)
        .filter_map(|v| v.parse::<f64>().ok())
        .any(|v| !v.is_nan())
}

#[test]
fn metric_names_skip_labels_strings_and_ranges() {
    let names = metric_names(
        r#"sum by (code) (rate(flight_search_provider_searches_failed_total{code=~"process_x|up"}[5m])) / on (job) up and process_open_fds"#,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        [
            "flight_search_provider_searches_failed_total",
            "process_open_fds",
            "up"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_and_rule_returns_data_from_a_real_prometheus() {
    // Supplier latency above the time a client takes to open its stream, so
    // each search is watched from before its first result; the answer cache
    // on, so the hit ratio has hits and misses.
    // A rate limit of four searches an hour, so the fifth POST is refused
    // and the refusal panels have a series.
    let mut stack = Stack::builder()
        .local_only()
        .main_env("RATE_LIMIT_PER_CLIENT", "4/h")
        .provider_env("MOCK_LATENCY_MS", "300-600")
        .provider_env("SUPPLIER_CACHE_TTL_SECS", "30")
        .start()
        .await;
    let main = stack.base_url().trim_start_matches("http://").to_owned();
    let provider = stack.local().providers[0]
        .base_url()
        .trim_start_matches("http://")
        .to_owned();
    let jobs = [
        Job {
            name: "flight-search-main",
            targets: vec![main],
        },
        Job {
            name: "flight-search-provider",
            targets: vec![provider],
        },
    ];
    let prometheus = Prometheus::start(&jobs, &[root().join("deploy/prometheus/rules.yml")]).await;

    // Prometheus applies new targets a few seconds after it starts: the load
    // begins once both services have been scraped, so rates see it.
    eventually("both services scraped", Duration::from_secs(30), || async {
        let data = prometheus.query("count(up == 1)").await;
        (data["result"][0]["value"][1] == "2").then_some(())
    })
    .await;

    // A short load: two routes asked twice each, one after the other, so the
    // second asking of each is answered from the cache.
    for (from, to) in [
        ("CGK", "DPS"),
        ("CGK", "DPS"),
        ("SUB", "KNO"),
        ("SUB", "KNO"),
    ] {
        let id = stack.submit(&search_body(from, to, 9, 1)).await;
        let events = stack.events(id).await;
        assert_eq!(
            events.last().map(|e| e.data["status"].clone()),
            Some("completed".into()),
            "{id}: {events:?}"
        );
    }

    let refused = stack.post(&search_body("CGK", "DPS", 9, 1)).await;
    assert_eq!(refused.status, 429, "the fifth search within the hour");

    let mut queries = panel_queries();
    assert!(
        queries.len() >= 20,
        "the dashboard has its panels: {queries:?}"
    );
    let rules = rules();
    assert!(rules.iter().filter(|r| !r.recording).count() >= 10);
    queries.extend(
        rules
            .iter()
            .filter(|r| r.recording)
            .map(|r| (format!("recording rule {}", r.name), r.expr.clone())),
    );
    // Every panel and recording rule answers with a number once the scrapes
    // after the load are in; until then, name those still without one.
    eventually(
        "every panel and recording rule to return data",
        Duration::from_secs(40),
        || {
            let (prometheus, queries) = (&prometheus, &queries);
            async move {
                let mut empty = Vec::new();
                for (what, expr) in queries {
                    if !has_a_number(&prometheus.query(expr).await) {
                        empty.push(what.as_str());
                    }
                }
                if !empty.is_empty() {
                    eprintln!("still without data: {empty:?}");
                }
                empty.is_empty().then_some(())
            }
        },
    )
    .await;

    assert_alerts_select_exported_metrics(&prometheus, &rules).await;
    assert_every_rule_evaluates(&prometheus, &rules).await;
}

/// Every alert expression parses and every metric it selects has data.
async fn assert_alerts_select_exported_metrics(prometheus: &Prometheus, rules: &[Rule]) {
    for rule in rules.iter().filter(|r| !r.recording) {
        prometheus.query(&rule.expr).await;
        let names = metric_names(&rule.expr);
        assert!(
            !names.is_empty() || rule.expr.contains(':'),
            "{}: {}",
            rule.name,
            rule.expr
        );
        for name in names {
            let data = prometheus.query(&format!("count({name})")).await;
            assert!(
                has_a_number(&data),
                "alert {} selects {name}, which no service exports",
                rule.name
            );
        }
    }
}

/// Prometheus loaded every rule of the file and evaluated each without error.
async fn assert_every_rule_evaluates(prometheus: &Prometheus, rules: &[Rule]) {
    let expected: BTreeSet<&str> = rules.iter().map(|r| r.name.as_str()).collect();
    let loaded = eventually("every rule evaluated", Duration::from_secs(10), || async {
        let groups = prometheus.rules().await;
        let loaded: Vec<Value> = groups
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        let evaluated = loaded.iter().all(|r| {
            r["lastEvaluation"]
                .as_str()
                .is_some_and(|t| !t.starts_with("0001"))
        });
        (evaluated && !loaded.is_empty()).then_some(loaded)
    })
    .await;
    let names: BTreeSet<&str> = loaded.iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(
        names, expected,
        "Prometheus loaded exactly the file's rules"
    );
    for rule in &loaded {
        assert_eq!(
            rule["health"], "ok",
            "rule {}: {}",
            rule["name"], rule["lastError"]
        );
    }
}
