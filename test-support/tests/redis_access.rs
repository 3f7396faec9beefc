//! Redis as deployments run it: over TLS with a private CA, as restricted ACL
//! users, with certificate mistakes that must not crash anything, and with a
//! password in `REDIS_URL` that must never be printed.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use test_support::mock_suppliers::MockSuppliers;
use test_support::pki::TestCa;
use test_support::redis_server::{RedisOptions, RedisServer};
use test_support::services::{Kind, Service, binary_path};
use test_support::stack::{Stack, TEST_LATENCY_MS};
use test_support::{eventually, free_port, http, search_body};
use uuid::Uuid;

const LIMIT: Duration = Duration::from_secs(30);

/// Runs searches through `stack` as a user would and checks each step Redis
/// serves: POST, every event to `completed`, the stream's DEL, a `timeout`
/// written by main-service once no provider is left, and no permission error
/// logged by either service.
async fn assert_whole_flow(stack: &mut Stack) {
    let local = stack.local();
    let urls = [local.mains[0].base_url(), local.providers[0].base_url()];
    for base_url in urls {
        let ready = format!("{base_url}/readyz");
        eventually("both services ready", LIMIT, || {
            let ready = ready.clone();
            async move { (http::get(&ready).await.ok()?.status == 200).then_some(()) }
        })
        .await;
    }
    let id = stack.submit(&search_body("CGK", "DPS", 9, 2)).await;
    let events = stack.events(id).await;
    let last = events.last().expect("events");
    assert_eq!(last.status(), "completed", "{events:?}");
    assert!(events.len() >= 3, "{events:?}");
    let key = contract::keys::results_key(id);
    eventually("the finished stream deleted", LIMIT, || {
        let stack = &*stack;
        let key = key.clone();
        async move { (!stack.key_exists(&key).await).then_some(()) }
    })
    .await;

    stack.local().providers[0].kill();
    let id = stack.submit(&search_body("CGK", "DPS", 10, 1)).await;
    let events = stack.events(id).await;
    let last = events.last().expect("events");
    assert_eq!(last.status(), "failed", "{events:?}");
    assert_eq!(last.data["error"]["code"], "timeout", "{events:?}");

    let local = stack.local();
    for service in local.mains.iter().chain(&local.providers) {
        let output = service.output();
        assert!(!output.contains("no permissions"), "{output}");
        assert!(!output.contains("ERROR"), "{output}");
    }
}

/// A builder for a stack whose timeout and recovery sweep both run within a test.
fn quick_stack() -> test_support::stack::StackBuilder {
    Stack::builder()
        .main_env("SEARCH_TIMEOUT_SECS", "3")
        .provider_env("CLAIM_IDLE_MS", "1000")
}

#[tokio::test]
async fn the_whole_flow_runs_over_tls_with_a_private_ca() {
    let mut stack = quick_stack()
        .redis(RedisOptions {
            tls: true,
            ..RedisOptions::default()
        })
        .start()
        .await;
    assert_whole_flow(&mut stack).await;
}

/// The `user ...` lines of docs/configuration.md's ACL block, with `>CHANGE-ME` replaced.
fn documented_acl_users(password: &str) -> Vec<String> {
    let page = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md"),
    )
    .expect("read docs/configuration.md");
    let users: Vec<String> = page
        .lines()
        .filter(|line| {
            line.starts_with("user main-service ") || line.starts_with("user provider-service ")
        })
        .map(|line| line.replace(">CHANGE-ME", &format!(">{password}")))
        .collect();
    assert_eq!(
        users.len(),
        2,
        "docs/configuration.md documents one ACL user per service"
    );
    users
}

/// [`documented_acl_users`] with docs/configuration.md's cluster rules (`ACL SETUSER <name>
/// <rules>`) appended to each user's line, as an ACL file would hold them.
fn documented_cluster_acl_users(password: &str) -> Vec<String> {
    let page = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md"),
    )
    .expect("read docs/configuration.md");
    let additions: Vec<(&str, &str)> = page
        .lines()
        .filter_map(|line| line.strip_prefix("ACL SETUSER "))
        .filter_map(|rest| rest.split_once(' '))
        .collect();
    assert_eq!(
        additions.len(),
        2,
        "docs/configuration.md documents the cluster rules of each service"
    );
    documented_acl_users(password)
        .into_iter()
        .map(|line| {
            let (name, added) = additions
                .iter()
                .find(|(name, _)| line.starts_with(&format!("user {name} ")))
                .expect("cluster rules for every user");
            assert!(
                !added.contains('>'),
                "no password in the cluster rules of {name}"
            );
            format!("{line} {added}")
        })
        .collect()
}

/// Commands some node refused since it started, from `ACL LOG` (`CLIENT
/// SETINFO`, whose refusal the client ignores, left out).
async fn acl_denials(ports: &[u16]) -> Vec<String> {
    let mut denials = Vec::new();
    for port in ports {
        let mut node = redis::Client::open(format!("redis://127.0.0.1:{port}"))
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .expect("connect to a cluster node");
        let log: Vec<std::collections::HashMap<String, redis::Value>> = redis::cmd("ACL")
            .arg("LOG")
            .query_async(&mut node)
            .await
            .expect("ACL LOG");
        for entry in log {
            let text = |field: &str| match entry.get(field) {
                Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                other => format!("{other:?}"),
            };
            if text("object") != "client|setinfo" {
                denials.push(format!(
                    "node {port}: {} {} refused ({})",
                    text("username"),
                    text("object"),
                    text("reason")
                ));
            }
        }
    }
    denials
}

#[tokio::test]
async fn on_a_cluster_the_whole_flow_runs_with_each_service_as_its_own_restricted_user() {
    let password = format!("pw{}", Uuid::new_v4().simple());
    let mut stack = quick_stack()
        .cluster()
        .redis(RedisOptions {
            acl: documented_cluster_acl_users(&password),
            ..RedisOptions::default()
        })
        .main_user("main-service", &password)
        .provider_user("provider-service", &password)
        .start()
        .await;
    let ports = stack.local().redis.cluster().ports();
    // Every stream opened makes main-service SSUBSCRIBE to its search's
    // channel; ACL LOG shows any command a node refused, even one a service
    // retried or ignored.
    assert_whole_flow(&mut stack).await;
    let denials = acl_denials(&ports).await;
    assert!(denials.is_empty(), "{denials:#?}");

    let url = format!("redis://main-service:{password}@127.0.0.1:{}", ports[0]);
    let mut conn = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("main-service's user can log in on every node");
    let refused: redis::RedisResult<String> = redis::cmd("CLUSTER")
        .arg("NODES")
        .query_async(&mut conn)
        .await;
    let error = refused.expect_err("CLUSTER NODES is not in main-service's rule");
    assert!(error.to_string().contains("no permissions"), "{error}");
}

#[tokio::test]
async fn the_whole_flow_runs_with_each_service_as_its_own_restricted_user_over_mutual_tls() {
    let password = format!("pw{}", Uuid::new_v4().simple());
    // Airlines over HTTP, so the provider also keeps its answer cache.
    let mock = MockSuppliers::start(&[]).await;
    let mut stack = quick_stack()
        .redis(RedisOptions {
            tls: true,
            client_certificates: true,
            acl: documented_acl_users(&password),
        })
        .main_user("main-service", &password)
        .provider_user("provider-service", &password)
        .provider_env("SUPPLIER_URLS", &mock.urls(&["GA", "JT", "QZ"]))
        .provider_env("SUPPLIER_CACHE_TTL_SECS", "30")
        .start()
        .await;
    assert_whole_flow(&mut stack).await;
    let cached: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}*", contract::keys::SUPPLIER_ANSWER_PREFIX))
        .query_async(&mut stack.redis().await)
        .await
        .unwrap();
    assert_eq!(cached.len(), 3, "one cached answer per airline: {cached:?}");

    // The users really are restricted: a command outside the rule is refused.
    let url = format!(
        "redis://provider-service:{password}@127.0.0.1:{}",
        stack.local().redis.server().port()
    );
    let mut conn = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("the provider's user can log in");
    let refused: redis::RedisResult<Vec<String>> =
        redis::cmd("KEYS").arg("*").query_async(&mut conn).await;
    let error = refused.expect_err("KEYS is not in the provider's rule");
    assert!(error.to_string().contains("no permissions"), "{error}");
}

/// The start of each `/readyz` reason, by class of link failure.
const TLS_FAILED: &str = "the TLS handshake with redis failed";
const AUTH_REFUSED: &str = "redis refused authentication";
const UNREACHABLE: &str = "redis is unreachable";
const DATABASE_REFUSED: &str = "redis refused the database index";

/// Starts both services against `url` (plus `env`), waits until each reports
/// `cause` in one log line while `/readyz` answers 503 with a reason that
/// starts with `class`, and returns them.
async fn start_unready(url: &str, env: &[(&str, &str)], cause: &str, class: &str) -> Vec<Service> {
    let provider_env: Vec<(&str, &str)> = env
        .iter()
        .copied()
        .chain([("MOCK_LATENCY_MS", TEST_LATENCY_MS)])
        .collect();
    let services = vec![
        Service::start(Kind::Main, url, env).await,
        Service::start(Kind::Provider, url, &provider_env).await,
    ];
    for service in &services {
        eventually(&format!("a log line naming {cause}"), LIMIT, || async {
            let output = service.output();
            output
                .lines()
                .any(|line| line.contains("connection down") && line.contains(cause))
                .then_some(())
        })
        .await;
        // Other connections may log before the readiness ping first fails.
        let readyz = format!("{}/readyz", service.base_url());
        eventually(&format!("/readyz 503 naming {class}"), LIMIT, || async {
            let ready = http::get(&readyz).await.ok()?;
            let reason = ready.json()["reason"].as_str()?.to_owned();
            (ready.status == 503 && reason.starts_with(class)).then_some(())
        })
        .await;
    }
    services
}

/// Waits until each service is ready again and checks it logged each
/// connection's failure once, not once per retry, and never crashed.
async fn assert_recovers(services: &[Service]) {
    for service in services {
        let ready = format!("{}/readyz", service.base_url());
        eventually("ready once the certificate is fixed", LIMIT, || {
            let ready = ready.clone();
            async move { (http::get(&ready).await.ok()?.status == 200).then_some(()) }
        })
        .await;
        let output = service.output();
        let downs = output
            .lines()
            .filter(|l| l.contains("connection down"))
            .count();
        assert!(
            (1..=2).contains(&downs),
            "one line per connection:\n{output}"
        );
        assert!(!output.contains("panicked"), "{output}");
    }
    let base_url = services[0].base_url();
    let id = test_support::stack::submit_to(&base_url, &search_body("CGK", "DPS", 8, 1)).await;
    let events = test_support::stack::follow(&base_url, id, LIMIT).await;
    assert_eq!(events.last().map(|e| e.status()), Some("completed"));
}

/// A PEM file holding `ca`, removed on drop.
struct CaFile(PathBuf);

impl CaFile {
    fn new(ca: &TestCa) -> CaFile {
        let path = std::env::temp_dir().join(format!("flight-search-ca-{}.pem", Uuid::new_v4()));
        std::fs::write(&path, ca.pem()).unwrap();
        CaFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for CaFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[tokio::test]
async fn an_untrusted_certificate_means_unready_until_the_server_presents_a_trusted_one() {
    let mut redis = RedisServer::start_with(RedisOptions {
        tls: true,
        ..RedisOptions::default()
    })
    .await;
    let trusted = TestCa::new("the CA the services trust");
    let ca_file = CaFile::new(&trusted);
    let services = start_unready(
        &redis.tls_url(),
        &[("REDIS_CA_FILE", ca_file.path())],
        "UnknownIssuer",
        TLS_FAILED,
    )
    .await;
    redis.use_certificate(&trusted.issue(&["127.0.0.1"])).await;
    assert_recovers(&services).await;
}

#[tokio::test]
async fn a_certificate_for_another_host_means_unready_until_fixed() {
    let mut redis = RedisServer::start_with(RedisOptions {
        tls: true,
        ..RedisOptions::default()
    })
    .await;
    let other_host = redis.ca().issue(&["redis.example.invalid"]);
    redis.use_certificate(&other_host).await;
    let ca_file = redis.ca_file().display().to_string();
    let services = start_unready(
        &redis.tls_url(),
        &[("REDIS_CA_FILE", &ca_file)],
        "not valid for name",
        TLS_FAILED,
    )
    .await;
    let right_host = redis.ca().issue(&["127.0.0.1"]);
    redis.use_certificate(&right_host).await;
    assert_recovers(&services).await;
}

#[tokio::test]
async fn a_server_that_requires_a_client_certificate_refuses_services_without_one() {
    let redis = RedisServer::start_with(RedisOptions {
        tls: true,
        client_certificates: true,
        ..RedisOptions::default()
    })
    .await;
    let ca_file = redis.ca_file().display().to_string();
    start_unready(
        &redis.tls_url(),
        &[("REDIS_CA_FILE", &ca_file)],
        "CertificateRequired",
        TLS_FAILED,
    )
    .await;
}

#[tokio::test]
async fn a_plain_text_server_behind_a_rediss_url_means_unready_without_a_crash() {
    let redis = RedisServer::start().await;
    let url = format!("rediss://127.0.0.1:{}", redis.port());
    let services = start_unready(&url, &[], "does the server speak TLS", TLS_FAILED).await;
    for service in &services {
        let health = http::get(&format!("{}/healthz", service.base_url()))
            .await
            .expect("healthz answers");
        assert_eq!(health.status, 200, "still alive");
    }
}

/// Asserts `text` does not contain `password`.
fn assert_hidden(what: &str, text: &str, password: &str) {
    assert!(
        !text.contains(password),
        "{what} shows the password:\n{text}"
    );
}

#[tokio::test]
async fn no_output_of_either_service_contains_the_redis_password() {
    let password = format!("s3cret{}", Uuid::new_v4().simple());

    // A URL that does not parse stops each service with one line, masked.
    for url in [
        format!("rediss://:{password}@127.0.0.1:notaport"),
        format!("redis://app:{password}@"),
        format!("http://app:{password}@127.0.0.1:6379"),
        format!("redis://{password}@127.0.0.1:6379/notadb"),
    ] {
        for binary in ["main-service", "provider-service"] {
            let output = Command::new(binary_path(binary))
                .env("REDIS_URL", &url)
                .env("RUST_LOG", "trace")
                .output()
                .unwrap();
            assert!(!output.status.success(), "{binary} started with {url}");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(stderr.contains("REDIS_URL="), "{binary}: {stderr}");
            assert!(
                stderr.contains("redis://[user:password@]host:port[/db]"),
                "{stderr}"
            );
            assert_hidden(binary, &stderr, &password);
            assert_hidden(binary, &String::from_utf8_lossy(&output.stdout), &password);
        }
    }

    // A wrong password, and a server that is not there, at the most verbose
    // log level: logs, /readyz and /metrics stay clean.
    let redis = RedisServer::start_with(RedisOptions {
        acl: vec![format!("user app on >right{password} ~* &* +@all")],
        ..RedisOptions::default()
    })
    .await;
    let wrong_password = format!("redis://app:{password}@127.0.0.1:{}", redis.port());
    let unreachable = format!("redis://app:{password}@127.0.0.1:{}", free_port());
    for (url, cause, class) in [
        (wrong_password, "AuthenticationFailed", AUTH_REFUSED),
        (unreachable, "refused", UNREACHABLE),
    ] {
        let services = start_unready(&url, &[("RUST_LOG", "trace")], cause, class).await;
        for service in &services {
            for path in ["/readyz", "/metrics", "/healthz"] {
                let response = http::get(&format!("{}{path}", service.base_url()))
                    .await
                    .expect("admin endpoint answers");
                assert_hidden(path, &String::from_utf8_lossy(&response.body), &password);
            }
            assert_hidden("the service's output", &service.output(), &password);
        }
    }
}

#[tokio::test]
async fn a_database_index_beyond_the_server_s_means_unready_with_that_cause() {
    let redis = RedisServer::start().await;
    // A test server has the default 16 databases, 0 to 15.
    let url = format!("{}/16", redis.url());
    start_unready(&url, &[], "refused to switch database", DATABASE_REFUSED).await;
}

/// Runs `binary` with `env` and returns its stderr once it exited with a
/// failure; fails if it runs on for 10 s (it would be reading or waiting).
async fn refused_at_start(binary: &str, env: &[(&str, &str)]) -> String {
    let run = tokio::process::Command::new(binary_path(binary))
        .envs(env.iter().copied())
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .unwrap_or_else(|_| panic!("{binary} {env:?} still runs after 10 s"))
        .unwrap();
    assert!(!output.status.success(), "{binary} started with {env:?}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn setting_files_and_database_indexes_no_server_can_serve_stop_each_service_at_start() {
    let dir = std::env::temp_dir().join(format!("flight-search-setting-files-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let huge = dir.join("huge.pem");
    std::fs::write(&huge, vec![b'A'; 2 * 1024 * 1024]).unwrap();
    let fifo = dir.join("fifo.pem");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let (huge, fifo) = (huge.display().to_string(), fifo.display().to_string());
    let tls_url = ("REDIS_URL", "rediss://127.0.0.1:1");
    let cases = [
        (
            vec![tls_url, ("REDIS_CA_FILE", "/dev/zero")],
            "REDIS_CA_FILE=/dev/zero",
        ),
        (
            vec![tls_url, ("REDIS_CA_FILE", fifo.as_str())],
            "REDIS_CA_FILE=",
        ),
        (
            vec![tls_url, ("REDIS_CA_FILE", huge.as_str())],
            "REDIS_CA_FILE=",
        ),
        (
            vec![
                tls_url,
                ("REDIS_CLIENT_CERT_FILE", "/dev/zero"),
                ("REDIS_CLIENT_KEY_FILE", "/dev/zero"),
            ],
            "REDIS_CLIENT_CERT_FILE=/dev/zero",
        ),
        (
            vec![("REDIS_URL", "redis://127.0.0.1:1/99999999999")],
            "REDIS_URL=redis://127.0.0.1:1/99999999999",
        ),
    ];
    for binary in ["main-service", "provider-service"] {
        for (env, named) in &cases {
            let stderr = refused_at_start(binary, env).await;
            assert_eq!(stderr.trim().lines().count(), 1, "{binary}: {stderr}");
            assert!(stderr.contains(named), "{binary} {env:?}: {stderr}");
            assert!(stderr.contains("is not valid"), "{binary}: {stderr}");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
