//! Promises the repository's own files make to a newcomer, checked against
//! each other: both compose files pass every setting README.md documents, and
//! no document points outside the repository.

use std::path::{Path, PathBuf};

/// The repository root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_owned()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// The variables of README.md's configuration table, in order.
fn documented_variables() -> Vec<String> {
    let readme = read("README.md");
    let table = readme
        .split("\n## Configuration\n")
        .nth(1)
        .expect("README.md has a Configuration section")
        .split("\n## ")
        .next()
        .expect("the section has text");
    // A row's first cell names one variable or several: `A`, `B`.
    table
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|row| row.split_once(" |").map(|(cell, _)| cell))
        .flat_map(|cell| {
            cell.split('`')
                .step_by(2)
                .map(|name| name.trim_matches([',', ' ']))
                .filter(|name| !name.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn compose_passes_every_documented_variable() {
    // Set by the stack's own network; or never passed, because each replica
    // derives its own or the stack's plain-TCP Redis makes it moot. The
    // compose file's header says why for each.
    assert_compose_passes(
        "docker-compose.yml",
        &["REDIS_URL", "HTTP_ADDR", "METRICS_ADDR"],
        &[
            "CONSUMER_NAME",
            "REDIS_CLUSTER_NODES",
            "REDIS_CA_FILE",
            "REDIS_CLIENT_CERT_FILE",
            "REDIS_CLIENT_KEY_FILE",
            "OTEL_SERVICE_NAME",
        ],
    );
}

#[test]
fn the_cluster_compose_file_passes_every_documented_variable() {
    // The same, with the cluster's seeds in place of REDIS_URL, which must
    // not be set beside them.
    assert_compose_passes(
        "docker-compose.cluster.yml",
        &["REDIS_CLUSTER_NODES", "HTTP_ADDR", "METRICS_ADDR"],
        &[
            "CONSUMER_NAME",
            "REDIS_URL",
            "REDIS_CA_FILE",
            "REDIS_CLIENT_CERT_FILE",
            "REDIS_CLIENT_KEY_FILE",
            "OTEL_SERVICE_NAME",
        ],
    );
}

/// Every variable of README.md's configuration table is passed by the
/// compose file at `path` from the environment, except those in `fixed`
/// (passed with a value of the stack's own) and `not_passed` (absent, and
/// explained in the file).
fn assert_compose_passes(path: &str, fixed: &[&str], not_passed: &[&str]) {
    let variables = documented_variables();
    assert!(
        variables.len() >= 15 && variables.iter().any(|v| v == "SSE_STALL_TIMEOUT_SECS"),
        "the configuration table was not found: {variables:?}"
    );
    let compose = read(path);
    let value_of = |name: &str| {
        compose
            .lines()
            .find_map(|line| line.trim().strip_prefix(&format!("{name}:")))
            .map(str::trim)
    };
    for name in &variables {
        if not_passed.contains(&name.as_str()) {
            assert!(value_of(name).is_none(), "{name} must stay unset in {path}");
            assert!(compose.contains(name), "{path} explains {name}");
            continue;
        }
        let value = value_of(name).unwrap_or_else(|| panic!("{path} does not pass {name}"));
        if fixed.contains(&name.as_str()) {
            assert!(!value.is_empty(), "{path} gives {name} no value");
        } else {
            assert!(
                value.is_empty() || value.contains(&format!("${{{name}")),
                "{path} sets {name}: {value} instead of taking it from the environment"
            );
        }
    }
}

#[test]
fn documents_point_only_inside_the_repository() {
    for path in [
        "README.md",
        "ASSUMPTIONS.md",
        "BENCHMARKS.md",
        "docker-compose.yml",
        "docker-compose.cluster.yml",
        "deploy/nginx/nginx.conf",
        "Dockerfile",
    ] {
        let text = read(path);
        for outside in ["DESIGN.md", "../", "/work/"] {
            assert!(!text.contains(outside), "{path} mentions {outside}");
        }
        // Relative Markdown links must name files that exist.
        for link in text.split("](").skip(1) {
            let target = link.split([')', '#']).next().unwrap_or("");
            if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            assert!(
                root().join(target).exists(),
                "{path} links to {target}, which is not in the repository"
            );
        }
    }
}
