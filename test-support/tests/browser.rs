//! The browser suite: the demo page at `GET /`, driven in headless Chromium through
//! chromedriver, against a real stack.
//!
//! Needs `chromium` and `chromedriver` (Debian: `apt-get install chromium
//! chromium-driver`; `CHROMIUM` and `CHROMEDRIVER` override their paths). A
//! missing browser fails the suite with that hint instead of skipping it, so CI
//! cannot pass without running it.
//!
//! The page is read through its `data-testid` hooks and `data-*` attributes;
//! every wait polls a condition against a deadline.

use std::collections::HashSet;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use contract::keys::REQUESTS_STREAM;

use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use test_support::stack::{Stack, TEST_LATENCY_MS};
use test_support::{date_in, eventually, free_port, search_body};

/// How long a search may take in the browser, reconnects included.
const LIMIT: Duration = Duration::from_secs(45);

/// The state of the newest search panel: id, status, total and row count.
const PANEL_STATE: &str = r#"
    const p = document.querySelector('[data-testid=search-panel]');
    if (!p) return null;
    const s = p.querySelector('[data-testid=search-status]');
    return {
        id: p.dataset.searchId,
        state: s.dataset.state,
        text: s.textContent,
        total: s.dataset.totalResults === undefined ? null : Number(s.dataset.totalResults),
        rows: p.querySelectorAll('[data-testid=flight-row]').length,
    };
"#;

/// Every result row of the newest panel: its `data-*` attributes plus cell texts.
const PANEL_ROWS: &str = r#"
    const p = document.querySelector('[data-testid=search-panel]');
    return [...p.querySelectorAll('[data-testid=flight-row]')]
        .map(r => Object.assign({}, r.dataset, { cells: [...r.cells].map(c => c.textContent.trim()) }));
"#;

/// A tool the suite needs: `$var` or `default`, which must exist.
fn tool(var: &str, default: &str, package: &str) -> PathBuf {
    let path = std::env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from);
    assert!(
        path.exists(),
        "{} not found: the browser suite needs it. Install it (Debian: apt-get install \
         chromium chromium-driver; package `{package}`) or set {var} to its path.",
        path.display()
    );
    path
}

/// chromedriver on a free port, in its own process group so that Drop takes the
/// browsers it started down with it, even when a test panics.
struct ChromeDriver {
    /// The driver process (leader of its process group).
    child: Child,
    /// `http://127.0.0.1:<port>`.
    url: String,
}

impl ChromeDriver {
    async fn start() -> ChromeDriver {
        use std::os::unix::process::CommandExt;
        let binary = tool("CHROMEDRIVER", "/usr/bin/chromedriver", "chromium-driver");
        let port = free_port();
        let child = Command::new(&binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
        let url = format!("http://127.0.0.1:{port}");
        let status = format!("{url}/status");
        eventually("chromedriver /status", Duration::from_secs(20), || {
            let status = status.clone();
            async move { (test_support::http::get(&status).await.ok()?.status == 200).then_some(()) }
        })
        .await;
        ChromeDriver { child, url }
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        // `--` so that kill reads `-<pgid>` as a process group, not an option.
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A headless Chromium session and the driver behind it.
struct Browser {
    /// The WebDriver session.
    client: Client,
    /// Declared after `client` so the driver outlives the session's last command.
    _driver: ChromeDriver,
}

impl Browser {
    async fn start() -> Browser {
        let chromium = tool("CHROMIUM", "/usr/bin/chromium", "chromium");
        let driver = ChromeDriver::start().await;
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--window-size=1280,1000", "--lang=en-US"],
            }),
        );
        // chromedriver speaks plain HTTP on loopback: no TLS stack needed.
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&driver.url)
            .await
            .expect("open a Chromium session through chromedriver");
        Browser {
            client,
            _driver: driver,
        }
    }

    /// Runs `script` (a function body) and returns its value.
    async fn js(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Polls `script` until it returns something other than `null`/`false`;
    /// panics naming `what` and showing the newest panel after `limit`.
    async fn wait_for(&self, what: &str, limit: Duration, script: &str) -> Value {
        // `eventually` polls; its own limit is never reached, so that a
        // timeout can report the page's state.
        let polled = eventually(what, 2 * limit, || async {
            let value = self.js(script).await;
            (!value.is_null() && value != Value::Bool(false)).then_some(value)
        });
        match tokio::time::timeout(limit, polled).await {
            Ok(value) => value,
            Err(_) => {
                let panel = self.js(PANEL_STATE).await;
                panic!("timed out after {limit:?} waiting for {what}; newest panel: {panel}");
            }
        }
    }

    async fn open(&self, base_url: &str) {
        self.client
            .goto(&format!("{base_url}/"))
            .await
            .expect("load the page");
        let lang = self.js("return document.documentElement.lang;").await;
        assert_eq!(lang, "en");
    }

    /// Clears the field with this `data-testid` and types `text`.
    async fn type_into(&self, testid: &str, text: &str) {
        let field = self.testid(testid).await;
        field.clear().await.expect("clear field");
        field.send_keys(text).await.expect("type into field");
    }

    async fn testid(&self, testid: &str) -> fantoccini::elements::Element {
        self.client
            .find(Locator::Css(&format!("[data-testid=\"{testid}\"]")))
            .await
            .unwrap_or_else(|e| panic!("no element with data-testid={testid}: {e}"))
    }

    /// Fills the form the way a user does and presses the search button.
    async fn search(&self, from: &str, to: &str, passengers: u8) {
        self.type_into("input-from", from).await;
        self.type_into("input-to", to).await;
        self.testid("input-passengers")
            .await
            .select_by_value(&passengers.to_string())
            .await
            .expect("choose passengers");
        self.testid("submit-search")
            .await
            .click()
            .await
            .expect("press search");
    }

    /// Waits until the newest panel reaches a terminal state; panics unless it
    /// is `completed`. Returns the panel state.
    async fn wait_completed(&self) -> Value {
        let script = format!(
            "const s = (() => {{ {PANEL_STATE} }})();
             return s && ['completed', 'failed', 'closed'].includes(s.state) ? s : null;"
        );
        let state = self.wait_for("the search to finish", LIMIT, &script).await;
        assert_eq!(
            state["state"], "completed",
            "search did not complete: {state}"
        );
        state
    }

    async fn screenshot(&self, path: &Path) {
        let png = self.client.screenshot().await.expect("take a screenshot");
        std::fs::create_dir_all(path.parent().expect("has a parent")).expect("create dir");
        std::fs::write(path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    async fn close(self) {
        self.client.close().await.expect("end the browser session");
    }
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// True if and only if `text` is `<h>h`, `<h>h <m>m` or `<m>m`.
fn is_duration(text: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match text.split_once(' ') {
        Some((h, m)) => {
            h.strip_suffix('h').is_some_and(digits) && m.strip_suffix('m').is_some_and(digits)
        }
        None => {
            text.strip_suffix('h').is_some_and(digits) || text.strip_suffix('m').is_some_and(digits)
        }
    }
}

fn field<'a>(row: &'a Value, name: &str) -> &'a str {
    row[name]
        .as_str()
        .unwrap_or_else(|| panic!("row has no data-{name}: {row}"))
}

fn number(row: &Value, name: &str) -> u64 {
    field(row, name)
        .parse()
        .unwrap_or_else(|_| panic!("data-{name} is not a whole number: {row}"))
}

/// Asserts rows carry distinct flights (supplier, flight number, departure).
fn assert_unique(rows: &[Value]) {
    let mut seen = HashSet::new();
    for row in rows {
        let identity = (
            field(row, "supplier").to_owned(),
            field(row, "flightNumber").to_owned(),
            field(row, "departure").to_owned(),
        );
        assert!(seen.insert(identity.clone()), "duplicate row {identity:?}");
    }
}

/// One table row: its data attributes agree with each other and with the
/// search's date, and its eight cells show them as a reader expects.
fn assert_row_shows_its_flight(row: &Value, date: &str) {
    let amount = number(row, "priceAmount");
    assert_eq!(number(row, "priceTotal"), amount * 2, "{row}");
    assert_eq!(field(row, "currency"), "IDR");
    let duration = field(row, "duration");
    assert!(is_duration(duration), "duration {duration:?}");
    let minutes = number(row, "durationMinutes");
    let expected = match (minutes / 60, minutes % 60) {
        (0, m) => format!("{m}m"),
        (h, 0) => format!("{h}h"),
        (h, m) => format!("{h}h {m}m"),
    };
    assert_eq!(duration, expected, "{row}");
    assert_eq!(field(row, "departureDate"), date, "{row}");
    let departure = field(row, "departure");
    assert!(departure.starts_with(date), "{row}");
    assert!(!field(row, "airline").trim().is_empty(), "{row}");
    assert!(!field(row, "flightNumber").trim().is_empty(), "{row}");

    let cells: Vec<&str> = row["cells"]
        .as_array()
        .expect("cells")
        .iter()
        .map(|c| c.as_str().expect("cell text"))
        .collect();
    assert_eq!(cells.len(), 8, "{row}");
    assert!(cells[0].contains(field(row, "airline")), "{row}");
    assert!(cells[0].contains(field(row, "flightNumber")), "{row}");
    // Local time as written in the timestamp, not converted to the browser's zone.
    assert!(cells[1].starts_with(&departure[11..16]), "{row}");
    let arrival = field(row, "arrival");
    assert!(cells[2].starts_with(&arrival[11..16]), "{row}");
    assert_eq!(
        cells[2].contains("+1"),
        arrival[..10] > departure[..10],
        "{row}"
    );
    assert_eq!(cells[3], duration);
    let stops = number(row, "stops");
    let stops_text = match stops {
        0 => "Direct".to_owned(),
        1 => "1 stop".to_owned(),
        n => format!("{n} stops"),
    };
    assert_eq!(cells[4], stops_text, "{row}");
    assert!(number(row, "seats") >= 2, "{row}");
    let digits = |s: &str| -> u64 {
        let d: String = s.chars().filter(char::is_ascii_digit).collect();
        d.parse().unwrap_or_else(|_| panic!("no amount in {s:?}"))
    };
    assert!(cells[7].starts_with("Rp"), "{row}");
    assert_eq!(digits(cells[6]), amount, "{row}");
    assert_eq!(digits(cells[7]), amount * 2, "{row}");
}

#[tokio::test]
async fn search_streams_into_a_complete_sorted_table() {
    let stack = Stack::start().await;
    let browser = Browser::start().await;
    browser.open(stack.base_url()).await;

    // The date defaults to two weeks ahead (browser-local, so allow a day either way).
    let date = browser
        .js("return document.querySelector('[data-testid=input-date]').value;")
        .await;
    let date = date.as_str().expect("date value").to_owned();
    assert!(
        [date_in(13), date_in(14), date_in(15)].contains(&date),
        "default date {date} is not two weeks ahead"
    );

    browser.search("cgk", "dps", 2).await;
    let typed = browser
        .js("return [document.getElementById('from').value, document.getElementById('to').value];")
        .await;
    assert_eq!(
        typed,
        json!(["CGK", "DPS"]),
        "codes are upper-cased as typed"
    );

    let state = browser.wait_completed().await;
    let total = state["total"].as_u64().expect("data-total-results");
    let plural = if total == 1 { "flight" } else { "flights" };
    assert_eq!(state["text"], format!("Completed: {total} {plural}"));
    assert!(total > 0, "CGK-DPS is a trunk route: some airline flies it");

    let artifact = target_dir().join("artifacts/browser-completed.png");
    browser.screenshot(&artifact).await;
    if std::env::var_os("UPDATE_SCREENSHOT").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshot.png");
        std::fs::create_dir_all(docs.parent().expect("docs dir")).expect("create docs/");
        std::fs::copy(&artifact, &docs).expect("copy the screenshot to docs/");
    }

    let rows = browser.js(PANEL_ROWS).await;
    let rows = rows.as_array().expect("rows");
    assert_eq!(rows.len() as u64, total, "one row per flight");
    assert_unique(rows);
    for row in rows {
        assert_row_shows_its_flight(row, &date);
    }

    // Sorted by price by default; the duration header sorts from the keyboard.
    let totals: Vec<u64> = rows.iter().map(|r| number(r, "priceTotal")).collect();
    assert!(totals.is_sorted(), "not sorted by price: {totals:?}");
    let sort_by_duration = browser
        .client
        .find(Locator::Css("th[data-sort-key=duration] button"))
        .await
        .expect("duration sort button");
    let enter = char::from(Key::Enter).to_string();
    for expected in ["ascending", "descending"] {
        sort_by_duration
            .send_keys(&enter)
            .await
            .expect("press Enter");
        let aria = browser
            .js("return document.querySelector('th[data-sort-key=duration]').getAttribute('aria-sort');")
            .await;
        assert_eq!(aria, expected);
        let rows = browser.js(PANEL_ROWS).await;
        let mut minutes: Vec<u64> = rows
            .as_array()
            .expect("rows")
            .iter()
            .map(|r| number(r, "durationMinutes"))
            .collect();
        if expected == "descending" {
            minutes.reverse();
        }
        assert!(minutes.is_sorted(), "not sorted {expected}: {minutes:?}");
    }

    browser.close().await;
}

/// Inserts, as an attacker's markup would, a `<script>` with inline text and
/// an `<img>` with an inline handler, after starting to record the page's
/// Content-Security-Policy violations; returns whether the inline script ran
/// at once (an allowed one runs during the insertion).
const INJECT_INLINE_SCRIPTS: &str = r#"
window.__violations = [];
document.addEventListener('securitypolicyviolation',
  e => window.__violations.push(e.effectiveDirective));
window.__injected = [];
const script = document.createElement('script');
script.textContent = "window.__injected.push('script');";
document.body.appendChild(script);
const holder = document.createElement('div');
holder.innerHTML = '<img src="/favicon.ico?injected" onload="window.__injected.push(\'handler\')">';
document.body.appendChild(holder);
return window.__injected.length;
"#;

#[tokio::test]
async fn the_page_works_under_its_policy_and_injected_inline_script_does_not_run() {
    let stack = Stack::start().await;
    let browser = Browser::start().await;
    browser.open(stack.base_url()).await;
    // The style sheet applied: the page's own font, not the browser default.
    let font = browser
        .js("return getComputedStyle(document.body).fontFamily;")
        .await;
    assert!(
        font.as_str().unwrap_or_default().contains("system-ui"),
        "{font}"
    );

    let ran_at_once = browser.js(INJECT_INLINE_SCRIPTS).await;
    assert_eq!(ran_at_once, 0, "the inserted inline script ran");
    // Both are reported as blocked; only then is it certain the handler,
    // which would run once the image loads, never will.
    let blocked = browser
        .wait_for(
            "the policy to block the inline script and the inline handler",
            LIMIT,
            "const v = window.__violations;
             return v.includes('script-src-elem') && v.includes('script-src-attr') ? v : null;",
        )
        .await;
    let ran = browser.js("return window.__injected;").await;
    assert_eq!(ran, json!([]), "injected code ran; violations: {blocked}");

    // The page's own script runs under the same policy: a whole search.
    browser.search("CGK", "DPS", 1).await;
    let state = browser.wait_completed().await;
    assert!(state["total"].as_u64().is_some_and(|n| n > 0), "{state}");
    browser.close().await;
}

#[tokio::test]
async fn field_errors_show_next_to_their_field() {
    let stack = Stack::start().await;
    let browser = Browser::start().await;
    browser.open(stack.base_url()).await;

    // Rejected in the page: the error sits in the field's own box and is announced.
    browser.search("CGK", "cgk", 1).await;
    let error = browser
        .wait_for(
            "the client-side error on `to`",
            LIMIT,
            "const e = document.querySelector('[data-testid=error-to]');
             const to = document.getElementById('to');
             return e.textContent && to.getAttribute('aria-invalid') === 'true'
                 && to.getAttribute('aria-describedby').split(' ').includes(e.id)
                 && to.closest('.field').contains(e) ? e.textContent : null;",
        )
        .await;
    assert!(error.as_str().expect("text").contains("differ"), "{error}");
    let focused = browser.js("return document.activeElement.id;").await;
    assert_eq!(focused, "to", "focus moves to the field at fault");
    let panels = browser
        .js("return document.querySelectorAll('[data-testid=search-panel]').length;")
        .await;
    assert_eq!(panels, 0, "nothing is submitted while the form is invalid");

    // Rejected by the server: a date past the one-year window, sent past the page's
    // own check through its test hook, comes back as a 400 on `date`.
    browser
        .js(&format!(
            "document.querySelector('[data-testid=search-form]').setAttribute('data-skip-client-checks', '');
             document.getElementById('date').value = '{}';",
            date_in(400)
        ))
        .await;
    browser.search("CGK", "DPS", 1).await;
    let error = browser
        .wait_for(
            "the server's error on `date`",
            LIMIT,
            "const e = document.querySelector('[data-testid=error-date]');
             const date = document.getElementById('date');
             return e.textContent && date.getAttribute('aria-invalid') === 'true'
                 && date.closest('.field').contains(e) ? e.textContent : null;",
        )
        .await;
    assert!(error.as_str().expect("text").contains("365"), "{error}");
    let other_errors = browser
        .js("return ['from', 'to', 'passengers']
                .map(f => document.querySelector(`[data-testid=error-${f}]`).textContent)
                .join('') + document.querySelector('[data-testid=form-error]').textContent;")
        .await;
    assert_eq!(other_errors, "", "only the date is at fault");
    let panels = browser
        .js("return document.querySelectorAll('[data-testid=search-panel]').length;")
        .await;
    assert_eq!(panels, 0, "a rejected search opens no panel");

    browser.close().await;
}

#[tokio::test]
async fn page_survives_a_main_service_restart_mid_search() {
    // Slow suppliers, answering one after another over several seconds, so the
    // restart lands between the first answer and the last.
    let mut stack = Stack::builder()
        .local_only()
        .provider_env("MOCK_LATENCY_MS", "1000-6000")
        .main_env("SSE_RETRY_MS", "500")
        .start()
        .await;
    let browser = Browser::start().await;
    browser.open(stack.base_url()).await;
    // Record every status the panel goes through.
    browser
        .js("window.seenStates = [];
             new MutationObserver(() => {
                 const s = document.querySelector('[data-testid=search-status]');
                 if (s && window.seenStates[window.seenStates.length - 1] !== s.dataset.state)
                     window.seenStates.push(s.dataset.state);
             }).observe(document.getElementById('searches'),
                        { subtree: true, childList: true, attributes: true, characterData: true });")
        .await;

    browser.search("CGK", "DPS", 1).await;
    let script = format!(
        "const s = (() => {{ {PANEL_STATE} }})();
         return s && s.rows > 0 ? s : null;"
    );
    let state = browser
        .wait_for("the first result row", LIMIT, &script)
        .await;
    assert_eq!(
        state["state"], "searching",
        "the search must still be running when main-service restarts: {state}"
    );

    stack.local().mains[0].restart().await;

    let state = browser.wait_completed().await;
    let total = state["total"].as_u64().expect("data-total-results");
    let rows = browser.js(PANEL_ROWS).await;
    let rows = rows.as_array().expect("rows");
    assert_eq!(
        rows.len() as u64,
        total,
        "every flight once after the reconnect"
    );
    assert_unique(rows);
    let seen = browser.js("return window.seenStates;").await;
    assert!(
        seen.as_array()
            .expect("states")
            .contains(&json!("reconnecting")),
        "the page never showed the dropped connection: {seen}"
    );

    browser.close().await;
}

/// A page from another origin than main-service's: an HTTP server on its own
/// port answering every request with one empty HTML page, for scripts that
/// call the API cross-origin.
struct OtherOrigin {
    /// `http://127.0.0.1:<port>`.
    url: String,
    /// The accept loop; aborted on drop.
    server: tokio::task::JoinHandle<()>,
}

impl OtherOrigin {
    async fn start() -> OtherOrigin {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the page server");
        let url = format!("http://{}", listener.local_addr().expect("bound address"));
        let server = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let service = hyper::service::service_fn(|_request| async {
                    let page = "<!doctype html><html lang=en><title>elsewhere</title></html>";
                    let response = hyper::Response::builder()
                        .header("content-type", "text/html; charset=utf-8")
                        .body(http_body_util::Full::new(bytes::Bytes::from_static(
                            page.as_bytes(),
                        )))
                        .expect("a valid response");
                    Ok::<_, Infallible>(response)
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(socket), service),
                );
            }
        });
        OtherOrigin { url, server }
    }
}

impl Drop for OtherOrigin {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Submits a search with `fetch` to the API at `api` and follows it with
/// `EventSource` until its terminal event; the outcome lands in
/// `window.outcome`: what the page could read, or the error that stopped it.
const CROSS_ORIGIN_SEARCH: &str = r#"
    const [api, body] = arguments;
    window.outcome = null;
    (async () => {
        const post = (text) => fetch(api + '/api/flights/search', {
            method: 'POST', headers: { 'Content-Type': 'application/json' }, body: text });
        const out = {};
        try {
            const refused = await post(body.replace('{', '{"to":"SUB",'));
            out.refusedStatus = refused.status;
            out.refusedField = (await refused.json()).errors[0].field;
            const accepted = await post(body);
            out.status = accepted.status;
            out.location = accepted.headers.get('Location');
            out.searchId = (await accepted.json()).data.search_id;
        } catch (e) {
            out.fetch = 'blocked: ' + e.name;
            window.outcome = out;
            return;
        }
        out.events = [];
        out.stream = await new Promise((resolve) => {
            const source = new EventSource(api + out.location);
            source.onmessage = (e) => {
                const status = JSON.parse(e.data).status;
                out.events.push(status);
                if (status === 'completed' || status === 'failed') { source.close(); resolve('ended'); }
            };
            source.onerror = () => {
                if (source.readyState === EventSource.CLOSED) resolve('closed by the browser');
            };
        });
        window.outcome = out;
    })();
    return true;
"#;

/// Opens an `EventSource` on `url`; `window.opened` becomes `open` once the
/// browser accepts the response, or `blocked` if it gives up on the stream.
const CROSS_ORIGIN_STREAM: &str = r#"
    const [url] = arguments;
    window.opened = null;
    const source = new EventSource(url);
    source.onopen = () => { source.close(); window.opened = 'open'; };
    source.onerror = () => {
        if (source.readyState === EventSource.CLOSED) window.opened = 'blocked';
    };
    return true;
"#;

impl Browser {
    /// Loads `page` and runs `script` there with `args`, then waits until
    /// `window[result]` is set and returns it.
    async fn run_on(&self, page: &str, script: &str, args: Vec<Value>, result: &str) -> Value {
        self.client.goto(page).await.expect("load the page");
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("script failed on {page}: {e}"));
        self.wait_for(result, LIMIT, &format!("return window.{result};"))
            .await
    }
}

#[tokio::test]
async fn a_page_on_an_allowed_origin_searches_cross_origin_and_others_are_blocked() {
    let allowed = OtherOrigin::start().await;
    let other = OtherOrigin::start().await;
    // No provider at first, so the stream checks below find a search that
    // is still waiting: a reader of it never sees an end, never deletes it.
    let mut stack = Stack::builder()
        .local_only()
        .providers(0)
        .main_env("CORS_ALLOWED_ORIGINS", &allowed.url)
        .start()
        .await;
    let browser = Browser::start().await;
    let api = stack.base_url().to_owned();

    // The same event stream: accepted by the browser on the allowed origin,
    // refused on the other, although the service answers both with 200.
    let waiting = stack.submit(&search_body("CGK", "SUB", 9, 1)).await;
    let stream = json!(stack.stream_url(waiting));
    let opened = browser
        .run_on(
            &allowed.url,
            CROSS_ORIGIN_STREAM,
            vec![stream.clone()],
            "opened",
        )
        .await;
    assert_eq!(opened, "open");
    let opened = browser
        .run_on(&other.url, CROSS_ORIGIN_STREAM, vec![stream], "opened")
        .await;
    assert_eq!(opened, "blocked");

    // From the other origin the POST's preflight gets no CORS answer, so the
    // browser never sends the search.
    let code = "QQZ";
    let blocked_body = search_body(code, "DPS", 9, 1);
    let outcome = browser
        .run_on(
            &other.url,
            CROSS_ORIGIN_SEARCH,
            vec![json!(api), json!(blocked_body)],
            "outcome",
        )
        .await;
    assert_eq!(outcome["fetch"], "blocked: TypeError", "{outcome}");
    let mut redis = stack.redis().await;
    let queued: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(REQUESTS_STREAM)
        .arg("-")
        .arg("+")
        .query_async(&mut redis)
        .await
        .expect("read the queue");
    assert!(
        !queued
            .iter()
            .any(|(_, fields)| fields.iter().any(|(_, v)| v == code)),
        "the blocked search was queued"
    );

    // From the allowed origin the 400's body, the 202's Location and the
    // whole event stream are readable.
    stack
        .local()
        .add_provider(&[("MOCK_LATENCY_MS", TEST_LATENCY_MS)])
        .await;
    let body = search_body("CGK", "DPS", 9, 1);
    let outcome = browser
        .run_on(
            &allowed.url,
            CROSS_ORIGIN_SEARCH,
            vec![json!(api), json!(body)],
            "outcome",
        )
        .await;
    assert_eq!(outcome["refusedStatus"], 400, "{outcome}");
    assert_eq!(outcome["refusedField"], "to", "{outcome}");
    assert_eq!(outcome["status"], 202, "{outcome}");
    let search_id = outcome["searchId"].as_str().expect("search id");
    assert_eq!(
        outcome["location"],
        format!("/api/flights/search/{search_id}/stream"),
        "Location is exposed: {outcome}"
    );
    assert_eq!(outcome["stream"], "ended", "{outcome}");
    let events = outcome["events"].as_array().expect("events");
    assert_eq!(events.first(), Some(&json!("processing")), "{outcome}");
    assert_eq!(events.last(), Some(&json!("completed")), "{outcome}");

    browser.close().await;
}

#[tokio::test]
async fn airlines_that_did_not_answer_are_shown_with_the_reason() {
    let mock =
        test_support::mock_suppliers::MockSuppliers::start(&[("MOCK_LATENCY_MS", "0-50")]).await;
    mock.set("GA", r#"{"fault":"hang"}"#).await;
    mock.set("JT", r#"{"fault":"malformed"}"#).await;
    let stack = Stack::builder()
        .local_only()
        .provider_env("SUPPLIER_URLS", &mock.urls(&["GA", "JT", "QZ"]))
        .provider_env("SUPPLIER_TIMEOUT_MS", "700")
        .start()
        .await;
    let browser = Browser::start().await;
    browser.open(stack.base_url()).await;
    browser.search("CGK", "DPS", 1).await;
    browser.wait_completed().await;
    let chips = browser
        .js(
            "const p = document.querySelector('[data-testid=search-panel]');
             return [...p.querySelectorAll('[data-testid=suppliers] li')]
                 .map(li => [li.dataset.supplier, li.dataset.outcome, li.textContent]);",
        )
        .await;
    let chips: Vec<(String, String, String)> = serde_json::from_value(chips).unwrap();
    let chip = |code: &str| {
        chips
            .iter()
            .find(|c| c.0 == code)
            .unwrap_or_else(|| panic!("no chip for {code}: {chips:?}"))
            .clone()
    };
    assert_eq!(chip("QZ").1, "answered");
    let (_, outcome, text) = chip("GA");
    assert_eq!(outcome, "timeout");
    assert!(
        text.contains("Garuda Indonesia") && text.contains("timed out"),
        "{text}"
    );
    let (_, outcome, text) = chip("JT");
    assert_eq!(outcome, "error");
    assert!(text.contains("unavailable"), "{text}");
    browser.close().await;
}

#[tokio::test]
async fn a_eur_fare_is_shown_in_euros_and_never_sorted_with_rupiah() {
    let mock =
        test_support::mock_suppliers::MockSuppliers::start(&[("MOCK_LATENCY_MS", "0-50")]).await;
    mock.set("GA", r#"{"currency":"EUR"}"#).await;
    let stack = Stack::builder()
        .local_only()
        .provider_env("SUPPLIER_URLS", &mock.urls(&["GA", "ID"]))
        .start()
        .await;
    let browser = Browser::start().await;
    browser.open(stack.base_url()).await;
    browser.search("CGK", "DPS", 2).await;
    browser.wait_completed().await;
    let rows = browser.js(PANEL_ROWS).await;
    let rows = rows.as_array().expect("rows");
    let currencies: Vec<&str> = rows.iter().map(|r| field(r, "currency")).collect();
    assert!(
        currencies.contains(&"EUR") && currencies.contains(&"IDR"),
        "both currencies on CGK-DPS: {currencies:?}"
    );
    for row in rows {
        let cells = row["cells"].as_array().expect("cells");
        let total = cells[7].as_str().expect("total cell");
        let digits: String = total.chars().filter(char::is_ascii_digit).collect();
        assert_eq!(digits, field(row, "priceTotal"), "{row}");
        if field(row, "currency") == "EUR" {
            assert_eq!(field(row, "supplier"), "GA", "{row}");
            assert_eq!(field(row, "priceDecimals"), "2", "{row}");
            assert!(total.contains('€'), "{total}");
            let (_, cents) = total.rsplit_once(',').expect("a decimal comma in id-ID");
            assert_eq!(cents.trim().len(), 2, "two decimals: {total}");
        } else {
            assert!(total.starts_with("Rp"), "{total}");
        }
    }
    // Sorted by price: grouped by currency code, each group by its own totals.
    let mut groups: Vec<(&str, Vec<u64>)> = Vec::new();
    for row in rows {
        let currency = field(row, "currency");
        match groups.last_mut() {
            Some((c, totals)) if *c == currency => totals.push(number(row, "priceTotal")),
            _ => groups.push((currency, vec![number(row, "priceTotal")])),
        }
    }
    let order: Vec<&str> = groups.iter().map(|(c, _)| *c).collect();
    assert_eq!(order, ["EUR", "IDR"], "one block per currency, by code");
    assert!(
        groups.iter().all(|(_, totals)| totals.is_sorted()),
        "{groups:?}"
    );
    browser.close().await;
}
