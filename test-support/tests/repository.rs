//! Promises the repository's own files make to a newcomer, checked against
//! each other: both compose files pass every setting docs/configuration.md
//! documents, no document points outside the repository, and every relative
//! link of the documentation leads to a file and heading that exist; no
//! crate's modules name each other in a circle.

use std::path::{Path, PathBuf};

/// The repository root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("test-support/ has a parent")
        .to_owned()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// The variables of docs/configuration.md's settings table, in order.
fn documented_variables() -> Vec<String> {
    let page = read("docs/configuration.md");
    let table = page
        .split("\n## Settings\n")
        .nth(1)
        .expect("docs/configuration.md has a Settings section")
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

/// Every variable of docs/configuration.md's settings table is passed by the
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

/// README.md, ASSUMPTIONS.md and every page under docs/, relative to the root.
fn markdown_documents() -> Vec<String> {
    let mut pages: Vec<String> = std::fs::read_dir(root().join("docs"))
        .expect("read docs/")
        .map(|entry| entry.expect("docs/ entry").file_name())
        .filter_map(|name| name.to_str().map(str::to_owned))
        .filter(|name| name.ends_with(".md"))
        .map(|name| format!("docs/{name}"))
        .collect();
    pages.sort();
    assert!(pages.len() >= 7, "docs/ holds the topic pages: {pages:?}");
    [String::from("README.md"), String::from("ASSUMPTIONS.md")]
        .into_iter()
        .chain(pages)
        .collect()
}

#[test]
fn documents_point_only_inside_the_repository() {
    let others = [
        "docker-compose.yml",
        "docker-compose.cluster.yml",
        "deploy/nginx/nginx.conf",
        "Dockerfile",
    ];
    for path in markdown_documents()
        .iter()
        .map(String::as_str)
        .chain(others)
    {
        let text = read(path);
        for outside in ["DESIGN.md", "/work/"] {
            assert!(!text.contains(outside), "{path} mentions {outside}");
        }
        // A page under docs/ reaches the root's files through one `../`, and
        // only as a link's start; nothing else may climb out of its directory.
        for (at, _) in text.match_indices("../") {
            assert!(
                path.starts_with("docs/")
                    && text[..at].ends_with("](")
                    && !text[at + 3..].starts_with("../"),
                "{path} points outside the repository near {:?}",
                &text[at..text.len().min(at + 40)]
            );
        }
    }
}

#[test]
fn every_relative_link_leads_to_a_file_and_heading_that_exist() {
    let mut checked = 0;
    let mut broken = Vec::new();
    for path in markdown_documents() {
        let text = read(&path);
        let dir = Path::new(&path)
            .parent()
            .expect("a document has a directory");
        for target in relative_links(&text) {
            checked += 1;
            let (file, anchor) = target.split_once('#').unwrap_or((target.as_str(), ""));
            let linked = if file.is_empty() {
                PathBuf::from(&path)
            } else {
                dir.join(file)
            };
            if !root().join(&linked).exists() {
                broken.push(format!("{path} -> {target}: no file {}", linked.display()));
            } else if !anchor.is_empty() {
                let linked = linked.to_str().expect("a UTF-8 path");
                if !heading_anchors(&read(linked)).iter().any(|a| a == anchor) {
                    broken.push(format!(
                        "{path} -> {target}: no heading #{anchor} in {linked}"
                    ));
                }
            }
        }
    }
    assert!(
        checked > 50,
        "only {checked} links found: is the parser broken?"
    );
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// The targets of a Markdown text's inline links that are neither absolute
/// URLs nor mail addresses, outside code blocks and code spans.
fn relative_links(text: &str) -> Vec<String> {
    prose_lines(text)
        .iter()
        .flat_map(|line| {
            // Code spans may hold `](` that is no link.
            let prose: String = line.split('`').step_by(2).collect::<Vec<_>>().join(" ");
            prose
                .split("](")
                .skip(1)
                .filter_map(|rest| rest.split_once(')').map(|(target, _)| target.to_owned()))
                .collect::<Vec<_>>()
        })
        .filter(|target| !target.contains("://") && !target.starts_with("mailto:"))
        .collect()
}

/// The lines of a Markdown text outside fenced code blocks.
fn prose_lines(text: &str) -> Vec<&str> {
    let mut in_code = false;
    text.lines()
        .filter(|line| {
            if line.trim_start().starts_with("```") {
                in_code = !in_code;
                return false;
            }
            !in_code
        })
        .collect()
}

/// The anchors GitHub gives a Markdown text's headings: the heading's text
/// lower-cased, without punctuation, spaces turned into hyphens, and `-1`,
/// `-2`, ... appended to repeats.
fn heading_anchors(text: &str) -> Vec<String> {
    let mut seen = std::collections::HashMap::<String, usize>::new();
    let mut anchors = Vec::new();
    for line in prose_lines(text) {
        let Some(heading) = line
            .strip_prefix('#')
            .map(|rest| rest.trim_start_matches('#'))
            .filter(|rest| rest.starts_with(' '))
        else {
            continue;
        };
        let slug: String = heading
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let repeats = seen.entry(slug.clone()).or_default();
        anchors.push(if *repeats == 0 {
            slug
        } else {
            format!("{slug}-{repeats}")
        });
        *repeats += 1;
    }
    anchors
}

#[test]
fn heading_anchors_follow_github() {
    let text = "# Quick start (Docker Compose)\n```\n# not a heading\n```\n## `tail`: many idle streams, then 1,000 ev/s\n### API\n## API\n#hashtag\n";
    assert_eq!(
        heading_anchors(text),
        [
            "quick-start-docker-compose",
            "tail-many-idle-streams-then-1000-evs",
            "api",
            "api-1"
        ]
    );
}

/// The YAML documents of every file a kustomization directory lists.
fn kustomize_documents(dir: &str) -> Vec<serde_yaml_ng::Value> {
    let kustomization: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&read(&format!("{dir}/kustomization.yaml"))).expect("YAML");
    let mut documents = Vec::new();
    for resource in kustomization["resources"].as_sequence().expect("resources") {
        let path = format!("{dir}/{}", resource.as_str().expect("a path"));
        if root().join(&path).is_dir() {
            continue;
        }
        let text = read(&path);
        for document in text.split("\n---\n") {
            documents.push(serde_yaml_ng::from_str(document).expect("YAML"));
        }
    }
    documents
}

/// `(secret, key) → value` of the demo overlay's generated Secrets.
fn demo_secrets() -> std::collections::BTreeMap<(String, String), String> {
    let kustomization: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&read("deploy/kubernetes/overlays/demo/kustomization.yaml"))
            .expect("YAML");
    let mut secrets = std::collections::BTreeMap::new();
    for generator in kustomization["secretGenerator"]
        .as_sequence()
        .expect("secrets")
    {
        let name = generator["name"].as_str().expect("name");
        for literal in generator["literals"].as_sequence().expect("literals") {
            let (key, value) = literal
                .as_str()
                .expect("text")
                .split_once('=')
                .expect("k=v");
            secrets.insert((name.to_owned(), key.to_owned()), value.to_owned());
        }
    }
    secrets
}

/// What a Deployment's one container promises, read from the manifest.
struct Container {
    /// Its environment, Secret references resolved from the demo overlay.
    env: Vec<(String, String)>,
    /// Named container ports.
    ports: std::collections::BTreeMap<String, u16>,
    /// The `terminationGracePeriodSeconds`.
    termination_grace: u64,
    /// The preStop `sleep` in seconds.
    pre_stop: u64,
    /// The container itself, for its probes.
    spec: serde_yaml_ng::Value,
}

/// The container of the base's Deployment `name`.
fn deployment(name: &str) -> Container {
    let documents = kustomize_documents("deploy/kubernetes/base");
    let deployment = documents
        .iter()
        .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("the base has no Deployment {name}"));
    let pod = &deployment["spec"]["template"]["spec"];
    let spec = pod["containers"][0].clone();
    let secrets = demo_secrets();
    let env = spec["env"]
        .as_sequence()
        .expect("env")
        .iter()
        .map(|var| {
            let name = var["name"].as_str().expect("name").to_owned();
            let value = match var["value"].as_str() {
                Some(value) => value.to_owned(),
                None => {
                    let reference = &var["valueFrom"]["secretKeyRef"];
                    let key = (
                        reference["name"].as_str().expect("secret").to_owned(),
                        reference["key"].as_str().expect("key").to_owned(),
                    );
                    secrets.get(&key).cloned().unwrap_or_else(|| {
                        panic!("{name} reads {key:?}, which the demo overlay does not generate")
                    })
                }
            };
            (name, value)
        })
        .collect();
    let ports = spec["ports"]
        .as_sequence()
        .expect("ports")
        .iter()
        .map(|p| {
            let port = p["containerPort"].as_u64().expect("port");
            (p["name"].as_str().expect("named").to_owned(), port as u16)
        })
        .collect();
    let pre_stop = spec["lifecycle"]["preStop"]["exec"]["command"]
        .as_sequence()
        .and_then(|command| match command.as_slice() {
            [sleep, secs] if sleep == "sleep" => secs.as_str()?.parse().ok(),
            _ => None,
        })
        .expect("a preStop `sleep N`");
    Container {
        env,
        ports,
        termination_grace: pod["terminationGracePeriodSeconds"]
            .as_u64()
            .expect("grace"),
        pre_stop,
        spec,
    }
}

impl Container {
    /// The environment as the services' configuration reads it.
    fn vars(&self) -> service_runtime::config::Vars<impl Fn(&str) -> Option<String>> {
        let env = self.env.clone();
        service_runtime::config::Vars::new(move |name: &str| {
            env.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
        })
    }

    /// Asserts every variable is documented, the probes ask `port_name` for
    /// `/readyz` and `/healthz`, that port is `port`, and the pod outlives its
    /// preStop pause plus `drain` before it is killed.
    fn assert_consistent(&self, who: &str, port_name: &str, port: u16, drain: u64) {
        let documented = documented_variables();
        for (name, _) in &self.env {
            assert!(
                documented.contains(name),
                "{who} sets {name}, which README does not document"
            );
        }
        assert_eq!(
            self.ports.get(port_name),
            Some(&port),
            "{who}: port {port_name}"
        );
        for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
            let get = &self.spec[probe]["httpGet"];
            assert_eq!(get["path"], path, "{who} {probe}");
            assert_eq!(get["port"], port_name, "{who} {probe}");
        }
        assert!(
            self.termination_grace > self.pre_stop + drain,
            "{who}: terminationGracePeriodSeconds {} must exceed the preStop pause {} plus SHUTDOWN_GRACE_SECS {drain}",
            self.termination_grace,
            self.pre_stop
        );
        assert!(
            self.pre_stop >= 1,
            "{who}: the preStop pause lets endpoints update"
        );
    }
}

#[test]
fn kubernetes_manifests_match_the_services_settings() {
    let main = deployment("main-service");
    let config = main_service::Config::from_vars(&main.vars()).expect("main-service's settings");
    main.assert_consistent(
        "main-service",
        "http",
        config.http_addr.port(),
        config.shutdown_grace.as_secs(),
    );
    let provider = deployment("provider-service");
    let config =
        provider_service::Config::from_vars(&provider.vars()).expect("provider-service's settings");
    provider.assert_consistent(
        "provider-service",
        "metrics",
        config.metrics_addr.port(),
        config.shutdown_grace.as_secs(),
    );
    assert!(
        !config.suppliers.http.is_empty(),
        "the demo's SUPPLIER_URLS name the mock airlines"
    );
    // Each Service forwards to a port its Deployment names.
    for (service, port_name) in [("main-service", "http"), ("provider-service", "metrics")] {
        let documents = kustomize_documents("deploy/kubernetes/base");
        let spec = &documents
            .iter()
            .find(|d| d["kind"] == "Service" && d["metadata"]["name"] == service)
            .unwrap_or_else(|| panic!("the base has no Service {service}"))["spec"];
        assert_eq!(
            spec["ports"][0]["targetPort"], port_name,
            "Service {service}"
        );
    }
}

#[test]
fn every_kubernetes_container_runs_locked_down_with_bounded_resources() {
    let mut documents = kustomize_documents("deploy/kubernetes/base");
    documents.extend(kustomize_documents("deploy/kubernetes/overlays/demo"));
    let deployments: Vec<_> = documents
        .iter()
        .filter(|d| d["kind"] == "Deployment")
        .collect();
    assert_eq!(
        deployments.len(),
        4,
        "main, provider, Redis and mock-suppliers"
    );
    for deployment in deployments {
        let name = deployment["metadata"]["name"].as_str().expect("named");
        let pod = &deployment["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
        assert_eq!(pod["automountServiceAccountToken"], false, "{name}");
        for container in pod["containers"].as_sequence().expect("containers") {
            let security = &container["securityContext"];
            assert_eq!(security["allowPrivilegeEscalation"], false, "{name}");
            assert_eq!(security["readOnlyRootFilesystem"], true, "{name}");
            assert_eq!(security["capabilities"]["drop"][0], "ALL", "{name}");
            for bound in ["requests", "limits"] {
                for resource in ["cpu", "memory"] {
                    assert!(
                        container["resources"][bound][resource].as_str().is_some(),
                        "{name}: {bound}.{resource}"
                    );
                }
            }
            assert!(!container["readinessProbe"].is_null(), "{name}: readiness");
            assert!(!container["livenessProbe"].is_null(), "{name}: liveness");
        }
    }
}

/// Every crate of the repository: the directories with a Cargo.toml and a
/// src/ directory.
fn crate_sources() -> Vec<PathBuf> {
    let mut sources: Vec<PathBuf> = std::fs::read_dir(root())
        .expect("the repository root")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|dir| dir.join("Cargo.toml").is_file() && dir.join("src").is_dir())
        .map(|dir| dir.join("src"))
        .collect();
    sources.sort();
    sources
}

#[test]
fn no_crate_has_an_import_circle_between_its_modules() {
    let sources = crate_sources();
    assert!(
        sources.iter().any(|s| s.ends_with("main-service/src"))
            && sources.iter().any(|s| s.ends_with("provider-service/src")),
        "crates found: {sources:?}"
    );
    let mut report = String::new();
    for src in &sources {
        for circle in test_support::module_graph::circles(src) {
            let name = src.strip_prefix(root()).unwrap_or(src);
            report += &format!("{}: a circle of {} files\n", name.display(), circle.len());
            for (file, named) in circle {
                let named: Vec<String> = named.iter().map(|f| f.display().to_string()).collect();
                report += &format!("  {} -> {}\n", file.display(), named.join(", "));
            }
        }
    }
    assert!(
        report.is_empty(),
        "modules that name each other in a circle:\n{report}"
    );
}

/// A directory of its own for one test, removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn the_module_graph_finds_a_circle_and_lets_containment_and_comments_be() {
    let scratch =
        Scratch(std::env::temp_dir().join(format!("module-graph-{}", std::process::id())));
    let src = scratch.0.join("src");
    std::fs::create_dir_all(src.join("c")).unwrap();
    for (file, text) in [
        ("lib.rs", "mod a;\nmod b;\nmod c;\nmod d;\npub fn f() {}\n"),
        (
            "a.rs",
            "use crate::{b::{self, B}, c as see};\npub struct A;\n",
        ),
        ("b.rs", "pub struct B(super::a::A);\n"),
        (
            "c.rs",
            "mod inner;\n// use crate::d;\npub fn g() { crate::f(); inner::h() }\n",
        ),
        (
            "c/inner.rs",
            "pub fn h() { super::g(); let _ = \"crate::d::D\"; }\n",
        ),
        (
            "d.rs",
            "pub struct D;\nfn e() { crate::c::g() }\n#[cfg(test)]\nmod tests { use super::*; }\n",
        ),
    ] {
        std::fs::write(src.join(file), text).unwrap();
    }
    let circles = test_support::module_graph::circles(&src);
    assert_eq!(
        circles,
        vec![vec![
            (PathBuf::from("a.rs"), vec![PathBuf::from("b.rs")]),
            (PathBuf::from("b.rs"), vec![PathBuf::from("a.rs")]),
        ]],
    );
}
