//! The ledger journal end to end, through the real binary: `kill -9` under
//! load and a restart lose no answered request's record and make no
//! duplicate (SQLite and PostgreSQL); PostgreSQL taken away mid-load and at
//! start (through a TCP proxy the test cuts, never by stopping the shared
//! server); SIGTERM bounded by `server.shutdown_grace_ms` with the database
//! away, a trickling stream (cut with an error event, in both wire formats),
//! requests waiting on a hanging upstream (answered 503 `shutting_down`)
//! and a client sending its body a byte a second. Time is asserted only
//! against the grace period plus several seconds.

// Tests fail loudly by design; the load generators are plain tasks each
// test awaits or aborts itself, which no shutdown machinery owns.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlx::Row;
use watershed_tests::harness::Gateway;
use watershed_tests::mock::MockUpstream;
use watershed_tests::proxy::TcpProxy;

const GRACE_MS: u64 = 4000;
/// The bound every SIGTERM test asserts: the grace period and five seconds.
const STOP_BOUND: Duration = Duration::from_millis(GRACE_MS + 5000);

fn pg_base() -> String {
    std::env::var("WATERSHED_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

fn config(upstream: &str, ledger_url: &str, server_extra: &str) -> String {
    format!(
        r#"version: 1
ledger:
  url: "{ledger_url}"
  timeout_ms: 2000
server:
  shutdown_grace_ms: {GRACE_MS}
{server_extra}
models:
  a:
    provider: openai
    base_url: "{upstream}"
    api_key_env: E2E_KEY
    trusted: true
    timeout_ms: 30000
routes:
  - name: all
    to: [a]
"#
    )
}

const ENV: &[(&str, &str)] = &[("E2E_KEY", "sk-test")];

/// Requests from `clients` concurrent loops until `stop`; the ids of those
/// answered in full with a 200.
async fn load(base: String, clients: usize, stop: Arc<AtomicBool>) -> Vec<String> {
    let answered = Arc::new(Mutex::new(Vec::new()));
    let http = reqwest::Client::new();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (base, stop, answered, http) =
            (base.clone(), stop.clone(), answered.clone(), http.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let body = json!({
                    "model": "a",
                    "messages": [{"role": "user", "content": format!("client {c} request {i}")}],
                    "max_tokens": 16,
                    "stream": i.is_multiple_of(3),
                });
                let Ok(resp) = http
                    .post(format!("{base}/v1/chat/completions"))
                    .json(&body)
                    .timeout(Duration::from_secs(20))
                    .send()
                    .await
                else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                let ok = resp.status() == 200;
                let id = resp
                    .headers()
                    .get("x-request-id")
                    .map(|v| v.to_str().unwrap().to_owned());
                // Answered means the whole body arrived (a stream to its end).
                let Ok(text) = resp.text().await else {
                    continue;
                };
                let complete = !body["stream"].as_bool().unwrap() || text.contains("[DONE]");
                if let (true, true, Some(id)) = (ok, complete, id) {
                    answered.lock().unwrap().push(id);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let v = answered.lock().unwrap().clone();
    v
}

/// The ledger's request ids and whether the rollups count each row once.
struct LedgerView {
    ids: Vec<String>,
    rollup_requests: i64,
}

async fn sqlite_view(db: &Path) -> LedgerView {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let ids = sqlx::query("SELECT request_id FROM ledger")
        .fetch_all(&pool)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<String, _>(0))
        .collect();
    let rollup_requests: i64 =
        sqlx::query_scalar("SELECT COALESCE(SUM(requests), 0) FROM ledger_rollup_backend")
            .fetch_one(&pool)
            .await
            .unwrap();
    pool.close().await;
    LedgerView {
        ids,
        rollup_requests,
    }
}

/// The ledger in `schema`; empty while the gateway has not created it yet.
async fn pg_view(schema: &str) -> LedgerView {
    let pool = sqlx::PgPool::connect(&pg_base()).await.unwrap();
    let ids = sqlx::query(&format!("SELECT request_id FROM \"{schema}\".ledger"))
        .fetch_all(&pool)
        .await
        .unwrap_or_default()
        .iter()
        .map(|r| r.get::<String, _>(0))
        .collect();
    let rollup_requests: i64 = sqlx::query_scalar(&format!(
        "SELECT COALESCE(SUM(requests), 0)::BIGINT FROM \"{schema}\".ledger_rollup_backend"
    ))
    .fetch_one(&pool)
    .await
    .unwrap_or(0);
    pool.close().await;
    LedgerView {
        ids,
        rollup_requests,
    }
}

/// A fresh PostgreSQL schema for one test, dropped first if a run left it.
async fn fresh_schema(tag: &str) -> String {
    let schema = format!("e2e_journal_{tag}_{}", std::process::id());
    drop_schema(&schema).await;
    schema
}

async fn drop_schema(schema: &str) {
    let pool = sqlx::PgPool::connect(&pg_base())
        .await
        .expect("PostgreSQL at 127.0.0.1:5432");
    sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}

/// Waits until the ledger holds every answered id (the writer catching up),
/// then checks there is exactly one row per id and the rollups agree.
async fn assert_complete<F, Fut>(answered: &[String], view: F) -> LedgerView
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = LedgerView>,
{
    let want: HashSet<&String> = answered.iter().collect();
    assert_eq!(want.len(), answered.len(), "request ids are unique");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = view().await;
        let have: HashSet<&String> = v.ids.iter().collect();
        let missing: Vec<_> = want.difference(&have).collect();
        if missing.is_empty() {
            assert_eq!(have.len(), v.ids.len(), "no duplicate rows");
            assert_eq!(
                v.rollup_requests,
                v.ids.len() as i64,
                "the rollups count each row once"
            );
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{} answered requests have no ledger row, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The ledger part of `/readyz`.
async fn readyz(base: &str) -> (u16, Value) {
    let r = reqwest::get(format!("{base}/readyz")).await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

async fn metric(base: &str, name: &str) -> f64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
}

async fn wait_for<F, Fut>(what: &str, f: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Rows beyond the answered requests can only be those in flight when the
/// process died (journaled, their answer cut off): at most one per client.
fn assert_at_most_the_in_flight_extra(answered: &[String], v: &LedgerView) {
    assert!(
        v.ids.len() <= answered.len() + KILL_CLIENTS,
        "{} rows for {} answered requests and {KILL_CLIENTS} clients",
        v.ids.len(),
        answered.len()
    );
}

const KILL_CLIENTS: usize = 8;

/// Load, `kill -9` while it runs, restart on the same directory; returns the
/// answered ids.
async fn kill_mid_load(upstream: &MockUpstream, ledger_url: &str) -> (Vec<String>, Gateway) {
    let cfg = config(&upstream.base_url, ledger_url, "");
    let gw = Gateway::start("journal-kill", &cfg, ENV).unwrap();
    gw.wait_ready(Duration::from_secs(30)).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(load(gw.base_url.clone(), KILL_CLIENTS, stop.clone()));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let dir = tokio::task::spawn_blocking(move || gw.kill9())
        .await
        .unwrap()
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    let answered = load.await.unwrap();
    assert!(answered.len() > 50, "load ran: {} answered", answered.len());
    let gw = Gateway::start_in(dir, &cfg, ENV).unwrap();
    gw.wait_ready(Duration::from_secs(30)).await.unwrap();
    (answered, gw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_mid_load_loses_no_answered_record_on_sqlite() {
    let upstream = MockUpstream::openai().await;
    let (answered, gw) = kill_mid_load(&upstream, "sqlite://{dir}/ledger.db").await;
    let db = gw.dir.join("ledger.db");
    let v = assert_complete(&answered, || sqlite_view(&db)).await;
    assert_at_most_the_in_flight_extra(&answered, &v);
    eprintln!(
        "sqlite kill -9: {} answered, {} ledger rows",
        answered.len(),
        v.ids.len()
    );
    gw.stop().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_mid_load_loses_no_answered_record_on_postgres() {
    let upstream = MockUpstream::openai().await;
    let schema = fresh_schema("kill").await;
    let url = format!("{}?schema={schema}", pg_base());
    let (answered, gw) = kill_mid_load(&upstream, &url).await;
    let v = assert_complete(&answered, || pg_view(&schema)).await;
    assert_at_most_the_in_flight_extra(&answered, &v);
    eprintln!(
        "postgres kill -9: {} answered, {} ledger rows",
        answered.len(),
        v.ids.len()
    );
    gw.stop().unwrap();
    drop_schema(&schema).await;
}

/// Where the test PostgreSQL listens, from its url.
fn pg_addr() -> std::net::SocketAddr {
    use std::net::ToSocketAddrs;
    let base = pg_base();
    let rest = base.split_once('@').map_or(base.as_str(), |(_, r)| r);
    let hostport = rest.split('/').next().unwrap();
    hostport.to_socket_addrs().unwrap().next().unwrap()
}

/// How many times each id appears in the journal's segment files.
fn journal_lines(dir: &Path, ids: &[String]) -> Vec<usize> {
    let mut text = String::new();
    for e in std::fs::read_dir(dir.join("watershed-journal")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "jsonl") {
            text.push_str(&std::fs::read_to_string(&p).unwrap());
        }
    }
    ids.iter()
        .map(|id| {
            let needle = format!("\"request_id\":\"{id}\"");
            text.lines().filter(|l| l.contains(&needle)).count()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_cut_mid_load_loses_nothing_and_shows_on_readyz_and_metrics() {
    let upstream = MockUpstream::openai().await;
    let proxy = TcpProxy::start(pg_addr()).await.unwrap();
    let schema = fresh_schema("cut").await;
    let url = format!("postgres://postgres@{}/test?schema={schema}", proxy.addr);
    let gw = Gateway::start("journal-cut", &config(&upstream.base_url, &url, ""), ENV).unwrap();
    gw.wait_ready(Duration::from_secs(30)).await.unwrap();
    let base = gw.base_url.clone();
    wait_for("the ledger to be ok", || {
        let base = base.clone();
        async move { readyz(&base).await.1["ledger"]["status"] == "ok" }
    })
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let load_task = tokio::spawn(load(gw.base_url.clone(), 6, stop.clone()));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    proxy.cut();
    let base = gw.base_url.clone();
    wait_for("the ledger to be degraded", || {
        let base = base.clone();
        async move { readyz(&base).await.1["ledger"]["status"] == "degraded" }
    })
    .await;
    // Degraded is still ready: the journal keeps every record.
    let (status, body) = readyz(&gw.base_url).await;
    assert_eq!(status, 200, "{body}");
    tokio::time::sleep(Duration::from_millis(3000)).await;
    assert!(metric(&gw.base_url, "watershed_ledger_journal_records").await > 0.0);
    assert!(metric(&gw.base_url, "watershed_ledger_journal_bytes").await > 0.0);
    assert!(metric(&gw.base_url, "watershed_ledger_backlog_records").await > 0.0);
    assert!(metric(&gw.base_url, "watershed_ledger_batches_failed_total").await >= 1.0);
    assert_eq!(
        metric(&gw.base_url, "watershed_ledger_database_up").await,
        0.0
    );
    assert_eq!(
        metric(&gw.base_url, "watershed_ledger_journal_errors_total").await,
        0.0
    );
    proxy.restore();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::Relaxed);
    let answered = load_task.await.unwrap();
    assert!(answered.len() > 50, "{} answered", answered.len());
    let v = assert_complete(&answered, || pg_view(&schema)).await;
    let base = gw.base_url.clone();
    wait_for("the journal to empty", || {
        let base = base.clone();
        async move { metric(&base, "watershed_ledger_journal_records").await == 0.0 }
    })
    .await;
    assert_eq!(readyz(&gw.base_url).await.1["ledger"]["status"], "ok");
    assert_eq!(
        metric(&gw.base_url, "watershed_ledger_backlog_records").await,
        0.0
    );
    eprintln!(
        "postgres cut: {} answered, {} ledger rows, {} connections refused while cut",
        answered.len(),
        v.ids.len(),
        proxy.refused()
    );
    gw.stop().unwrap();
    drop_schema(&schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gateway_starts_with_the_database_down_and_catches_up() {
    let upstream = MockUpstream::openai().await;
    let proxy = TcpProxy::start(pg_addr()).await.unwrap();
    proxy.cut();
    let schema = fresh_schema("down").await;
    let url = format!("postgres://postgres@{}/test?schema={schema}", proxy.addr);
    let started = Instant::now();
    let gw = Gateway::start("journal-down", &config(&upstream.base_url, &url, ""), ENV).unwrap();
    gw.wait_ready(Duration::from_secs(30)).await.unwrap();
    eprintln!("ready with the database down after {:?}", started.elapsed());
    let (status, body) = readyz(&gw.base_url).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ledger"]["status"], "degraded", "{body}");
    let stop = Arc::new(AtomicBool::new(false));
    let load_task = tokio::spawn(load(gw.base_url.clone(), 4, stop.clone()));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let answered = load_task.await.unwrap();
    assert!(answered.len() > 20, "{} answered", answered.len());
    assert!(
        metric(&gw.base_url, "watershed_ledger_journal_records").await >= answered.len() as f64
    );
    // On disk, once each, by the time its answer was complete.
    assert!(
        journal_lines(&gw.dir, &answered).iter().all(|&n| n == 1),
        "every answered request is in the journal files once"
    );
    proxy.restore();
    let v = assert_complete(&answered, || pg_view(&schema)).await;
    assert_eq!(v.ids.len(), answered.len());
    let base = gw.base_url.clone();
    wait_for("the ledger to be ok", || {
        let base = base.clone();
        async move { readyz(&base).await.1["ledger"]["status"] == "ok" }
    })
    .await;
    gw.stop().unwrap();
    drop_schema(&schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_with_the_database_down_ends_within_the_grace_and_keeps_the_records() {
    let upstream = MockUpstream::openai().await;
    let proxy = TcpProxy::start(pg_addr()).await.unwrap();
    let schema = fresh_schema("term").await;
    let url = format!("postgres://postgres@{}/test?schema={schema}", proxy.addr);
    let cfg = config(&upstream.base_url, &url, "");
    let gw = Gateway::start("journal-term", &cfg, ENV).unwrap();
    gw.wait_ready(Duration::from_secs(30)).await.unwrap();
    // Gone silent rather than refusing: every database wait runs into its
    // bound (ledger.timeout_ms), and the stop must still fit the grace.
    proxy.black_hole();
    let stop = Arc::new(AtomicBool::new(false));
    let load_task = tokio::spawn(load(gw.base_url.clone(), 4, stop.clone()));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let answered = load_task.await.unwrap();
    assert!(answered.len() > 20);
    assert!(metric(&gw.base_url, "watershed_ledger_journal_records").await > 0.0);
    let dir = gw.dir.clone();
    let (took, log) = tokio::task::spawn_blocking(move || gw.stop_within(STOP_BOUND))
        .await
        .unwrap()
        .unwrap();
    eprintln!("SIGTERM with the database down: stopped in {took:?}");
    assert!(log.contains("stay in the journal"), "{log}");
    // The next start, with the database back, writes what was left.
    proxy.restore();
    let gw = Gateway::start_in(dir, &cfg, ENV).unwrap();
    gw.wait_ready(Duration::from_secs(30)).await.unwrap();
    let v = assert_complete(&answered, || pg_view(&schema)).await;
    assert_eq!(v.ids.len(), answered.len());
    gw.stop().unwrap();
    drop_schema(&schema).await;
}

/// A streamed request that the mock answers one word a second (the prompt
/// is 40 words), read to its end; returns the body.
async fn slow_stream(base: String, path: &str) -> (String, String) {
    let words: Vec<String> = (0..40).map(|i| format!("w{i}")).collect();
    let body = json!({
        "model": "a",
        "messages": [{"role": "user", "content": words.join(" ")}],
        "max_tokens": 64,
        "stream": true,
    });
    let resp = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .json(&body)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    (id, resp.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_cuts_trickling_streams_with_an_error_event_in_both_wire_formats() {
    let upstream = MockUpstream::openai().await;
    upstream.set_chunk_delay(Duration::from_millis(1000));
    let cfg = config(&upstream.base_url, "sqlite://{dir}/ledger.db", "");
    let gw = Gateway::start("journal-trickle", &cfg, ENV).unwrap();
    gw.wait_ready(Duration::from_secs(30)).await.unwrap();
    let openai = tokio::spawn(slow_stream(gw.base_url.clone(), "/v1/chat/completions"));
    let anthropic = tokio::spawn(slow_stream(gw.base_url.clone(), "/v1/messages"));
    // Both streams are running before the signal.
    let up = &upstream;
    wait_for("both streams at the upstream", || async move {
        up.request_count() == 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let dir = gw.dir.clone();
    let (took, _log) = tokio::task::spawn_blocking(move || gw.stop_within(STOP_BOUND))
        .await
        .unwrap()
        .unwrap();
    eprintln!("SIGTERM with two trickling streams: stopped in {took:?}");
    let (oid, obody) = openai.await.unwrap();
    let (aid, abody) = anthropic.await.unwrap();
    // OpenAI: a data line with an error object, and no [DONE].
    assert!(obody.contains("\"code\":\"shutting_down\""), "{obody}");
    assert!(!obody.contains("[DONE]"), "{obody}");
    // Anthropic: an `error` event of its own shape.
    assert!(abody.contains("event: error"), "{abody}");
    assert!(abody.contains("overloaded_error"), "{abody}");
    assert!(!abody.contains("message_stop"), "{abody}");
    // Both have a record saying so, written before the process ended.
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.join("ledger.db").display()))
        .await
        .unwrap();
    for id in [&oid, &aid] {
        let row = sqlx::query("SELECT status, error_code, stream FROM ledger WHERE request_id = ?")
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap_or_else(|e| panic!("no ledger row for {id}: {e}"));
        assert_eq!(row.get::<i64, _>("status"), 503);
        assert_eq!(
            row.get::<Option<String>, _>("error_code").as_deref(),
            Some("shutting_down")
        );
        assert!(row.get::<bool, _>("stream"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_with_a_client_sending_its_body_a_byte_a_second_ends_within_the_grace() {
    use tokio::io::AsyncWriteExt;
    let upstream = MockUpstream::openai().await;
    let cfg = config(&upstream.base_url, "sqlite://{dir}/ledger.db", "");
    let gw = Gateway::start("journal-slowbody", &cfg, ENV).unwrap();
    gw.wait_ready(Duration::from_secs(30)).await.unwrap();
    let addr = gw.base_url.strip_prefix("http://").unwrap().to_owned();
    let body =
        json!({"model": "a", "messages": [{"role": "user", "content": "hello"}]}).to_string();
    let mut sock = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    let sender = tokio::spawn(async move {
        for b in body.bytes() {
            if sock.write_all(&[b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (took, _log) = tokio::task::spawn_blocking(move || gw.stop_within(STOP_BOUND))
        .await
        .unwrap()
        .unwrap();
    eprintln!("SIGTERM with a slow-body client: stopped in {took:?}");
    assert!(!sender.is_finished(), "the body was still being sent");
    sender.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_journal_refuses_paid_requests_with_a_503_in_the_clients_format() {
    let upstream = MockUpstream::openai().await;
    let proxy = TcpProxy::start(pg_addr()).await.unwrap();
    proxy.cut();
    let schema = fresh_schema("full").await;
    let url = format!("postgres://postgres@{}/test?schema={schema}", proxy.addr);
    let cfg = config(&upstream.base_url, &url, "").replace(
        "  timeout_ms: 2000\n",
        "  timeout_ms: 2000\n  journal: { max_bytes: 65536, segment_bytes: 16384 }\n",
    );
    let gw = Gateway::start("journal-full", &cfg, ENV).unwrap();
    gw.wait_ready(Duration::from_secs(30)).await.unwrap();
    let http = reqwest::Client::new();
    let mut ok = 0;
    let mut refused = None;
    for i in 0..2000 {
        let r = http
            .post(format!("{}/v1/chat/completions", gw.base_url))
            .json(
                &json!({"model": "a", "messages": [{"role": "user", "content": format!("r{i}")}]}),
            )
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            ok += 1;
            continue;
        }
        refused = Some((r.status().as_u16(), r.json::<Value>().await.unwrap()));
        break;
    }
    let (status, body) = refused.expect("a 64 KiB journal fills");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "ledger_unavailable", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("journal"),
        "{body}"
    );
    // Anthropic's format for the same refusal.
    let r = http
        .post(format!("{}/v1/messages", gw.base_url))
        .json(
            &json!({"model": "a", "max_tokens": 8, "messages": [{"role": "user", "content": "x"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["type"], "error", "{b}");
    assert_eq!(b["error"]["type"], "overloaded_error", "{b}");
    let (status, ready) = readyz(&gw.base_url).await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["ledger"]["status"], "full", "{ready}");
    eprintln!("a 64 KiB journal took {ok} records before refusing");
    // The database back: the journal drains and paid requests are served again.
    proxy.restore();
    let base = gw.base_url.clone();
    wait_for("the journal to drain", || {
        let base = base.clone();
        async move { readyz(&base).await.1["ledger"]["status"] == "ok" }
    })
    .await;
    let r = http
        .post(format!("{}/v1/chat/completions", gw.base_url))
        .json(&json!({"model": "a", "messages": [{"role": "user", "content": "again"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let schema2 = schema.clone();
    wait_for("every served request's row", || {
        let schema = schema2.clone();
        async move { pg_view(&schema).await.ids.len() == ok + 1 }
    })
    .await;
    gw.stop().unwrap();
    drop_schema(&schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_answers_requests_waiting_on_a_hanging_upstream_and_records_them() {
    let upstream = MockUpstream::openai().await;
    upstream.fail_next(2, watershed_tests::mock::Failure::Hang);
    let cfg = config(&upstream.base_url, "sqlite://{dir}/ledger.db", "");
    let gw = Gateway::start("journal-hang", &cfg, ENV).unwrap();
    gw.wait_ready(Duration::from_secs(30)).await.unwrap();
    let http = reqwest::Client::new();
    let send = |path: &'static str, stream: bool| {
        let (http, base) = (http.clone(), gw.base_url.clone());
        tokio::spawn(async move {
            let r = http
                .post(format!("{base}{path}"))
                .json(&json!({"model": "a", "max_tokens": 8, "stream": stream,
                    "messages": [{"role": "user", "content": "hello"}]}))
                .timeout(Duration::from_secs(60))
                .send()
                .await
                .unwrap();
            let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
            (r.status().as_u16(), id, r.json::<Value>().await.unwrap())
        })
    };
    let plain = send("/v1/chat/completions", false);
    let streamed = send("/v1/messages", true);
    // Both wait on the upstream before the signal.
    let up = &upstream;
    wait_for("both requests at the upstream", || async move {
        up.request_count() == 2
    })
    .await;
    let dir = gw.dir.clone();
    let (took, _log) = tokio::task::spawn_blocking(move || gw.stop_within(STOP_BOUND))
        .await
        .unwrap()
        .unwrap();
    eprintln!("SIGTERM with two requests on a hanging upstream: stopped in {took:?}");
    // Each gets a 503 in its own format before the process ends...
    let (status, oid, body) = plain.await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "shutting_down", "{body}");
    let (status, aid, body) = streamed.await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["type"], "overloaded_error", "{body}");
    // ... and a record saying so.
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.join("ledger.db").display()))
        .await
        .unwrap();
    for id in [&oid, &aid] {
        let code: Option<String> =
            sqlx::query_scalar("SELECT error_code FROM ledger WHERE request_id = ?")
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap_or_else(|e| panic!("no ledger row for {id}: {e}"));
        assert_eq!(code.as_deref(), Some("shutting_down"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_journal_set_to_drop_keeps_serving_and_counts_what_it_drops() {
    let upstream = MockUpstream::openai().await;
    let proxy = TcpProxy::start(pg_addr()).await.unwrap();
    proxy.cut();
    let schema = fresh_schema("drop").await;
    let url = format!("postgres://postgres@{}/test?schema={schema}", proxy.addr);
    let cfg = config(&upstream.base_url, &url, "").replace(
        "  timeout_ms: 2000\n",
        "  timeout_ms: 2000\n  journal: { max_bytes: 65536, segment_bytes: 16384, when_full: drop }\n",
    );
    let gw = Gateway::start("journal-drop", &cfg, ENV).unwrap();
    gw.wait_ready(Duration::from_secs(30)).await.unwrap();
    let http = reqwest::Client::new();
    for i in 0..120 {
        let r = http
            .post(format!("{}/v1/chat/completions", gw.base_url))
            .json(
                &json!({"model": "a", "messages": [{"role": "user", "content": format!("r{i}")}]}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "drop keeps serving");
    }
    let kept = metric(&gw.base_url, "watershed_ledger_journal_records").await;
    let dropped = metric(
        &gw.base_url,
        "watershed_ledger_records_dropped_total{reason=\"journal_full\"}",
    )
    .await;
    assert!(
        kept > 0.0 && dropped > 0.0,
        "kept {kept}, dropped {dropped}"
    );
    assert_eq!(kept + dropped, 120.0, "every record kept or counted");
    assert!(metric(&gw.base_url, "watershed_ledger_journal_bytes").await <= 65536.0);
    assert_eq!(
        readyz(&gw.base_url).await.0,
        200,
        "drop never makes it unready"
    );
    eprintln!("drop: {kept} records kept in a 64 KiB journal, {dropped} dropped and counted");
    proxy.restore();
    let schema2 = schema.clone();
    wait_for("the kept records' rows", || {
        let schema = schema2.clone();
        async move { pg_view(&schema).await.ids.len() as f64 == kept }
    })
    .await;
    gw.stop().unwrap();
    drop_schema(&schema).await;
}
