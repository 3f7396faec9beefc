//! Settings read at start: a bad one stops each service with one line naming
//! it, and `LOG_FORMAT=text` writes plain lines that leave the probes to the
//! debug level. Runs the service binaries directly.

use std::process::Command;
use std::time::Duration;

use test_support::http;
use test_support::redis_server::RedisServer;
use test_support::services::binary_path;
use test_support::{eventually, free_port};
use uuid::Uuid;

const LIMIT: Duration = Duration::from_secs(30);

#[test]
fn a_bad_setting_stops_each_service_with_one_line_naming_it() {
    for (binary, name, value) in [
        ("main-service", "SEARCH_TIMEOUT_SECS", "soon"),
        ("main-service", "HTTP_ADDR", "nowhere"),
        (
            "main-service",
            "CORS_ALLOWED_ORIGINS",
            "https://*.example.com",
        ),
        ("provider-service", "MOCK_FAILURE_RATE", "2"),
        ("provider-service", "PROVIDER_CONCURRENCY", "0"),
    ] {
        let output = Command::new(binary_path(binary))
            .env(name, value)
            .env("REDIS_URL", "redis://127.0.0.1:1")
            .output()
            .unwrap();
        assert!(!output.status.success(), "{binary} {name}={value} started");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{binary}: {stderr}");
        assert!(
            stderr.contains(&format!("{name}={value}")),
            "{binary}: {stderr}"
        );
    }
}

#[tokio::test]
async fn text_logs_are_plain_and_leave_probes_to_debug() {
    let redis = RedisServer::start().await;
    let addr = format!("127.0.0.1:{}", free_port());
    let log_path = std::env::temp_dir().join(format!("main-service-{}.log", Uuid::new_v4()));
    let log = std::fs::File::create(&log_path).unwrap();
    let mut main = Command::new(binary_path("main-service"))
        .env("REDIS_URL", redis.url())
        .env("HTTP_ADDR", &addr)
        .env("RUST_LOG", "info")
        .env("LOG_FORMAT", "text")
        .stdout(log)
        .spawn()
        .unwrap();
    let base = format!("http://{addr}");
    eventually("main-service to answer", LIMIT, || {
        let url = format!("{base}/readyz");
        async move { (http::get(&url).await.ok()?.status == 200).then_some(()) }
    })
    .await;
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(
            http::get(&format!("{base}{path}")).await.unwrap().status,
            200
        );
    }
    let icon = http::get(&format!("{base}/favicon.ico")).await.unwrap();
    assert_eq!(icon.status, 200);
    assert_eq!(icon.header("content-type"), Some("image/svg+xml"));
    assert_eq!(
        http::get(&format!("{base}/nothing")).await.unwrap().status,
        404
    );
    let text = eventually("the 404 to be logged", LIMIT, || {
        let log_path = log_path.clone();
        async move {
            let text = std::fs::read_to_string(&log_path).ok()?;
            text.contains("/nothing").then_some(text)
        }
    })
    .await;
    let _ = main.kill();
    let _ = main.wait();
    let _ = std::fs::remove_file(&log_path);
    assert!(
        !text.contains('\u{1b}'),
        "escape codes in a log file:\n{text}"
    );
    assert!(text.contains("/favicon.ico"), "{text}");
    for probe in ["/healthz", "/readyz", "/metrics"] {
        assert!(!text.contains(probe), "{probe} logged at info:\n{text}");
    }
}
