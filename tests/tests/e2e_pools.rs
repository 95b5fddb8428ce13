//! Pools end to end: one `openai-compatible` target served by three mock
//! servers through the real binary, under concurrent load. Load follows the
//! members' outstanding requests, a member that goes down is ejected while
//! every request is still answered (retried on another member), it comes
//! back once it passes its health checks, and the ledger holds one row per
//! answered request naming the member that served it. When no member is
//! usable the target's breaker opens, and no error names a member's URL,
//! also when the members cannot be reached at all.
//! Time is asserted only as ordering and generous bounds.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlx::Row;
use watershed_tests::harness::Gateway;
use watershed_tests::mock::MockUpstream;

const CHAT: &str = "/v1/chat/completions";

fn config(members: &[&MockUpstream], health: &str, breaker: &str) -> String {
    let endpoints: Vec<String> = members
        .iter()
        .zip(["a", "b", "c"])
        .map(|(m, name)| format!("      - {{ name: {name}, url: \"{}\" }}", m.base_url))
        .collect();
    format!(
        r#"version: 1
ledger: {{ url: "sqlite://{{dir}}/ledger.db" }}
server: {{ request_deadline_ms: 30000 }}
models:
  pool:
    provider: openai-compatible
    model: mock-open-model
    trusted: true
    timeout_ms: 5000
    retries: 3
    retry_backoff_ms: 20
    breaker: {breaker}
    endpoints:
{}
    health: {health}
routes:
  - name: everything
    to: [pool]
"#,
        endpoints.join("\n")
    )
}

struct Env {
    members: Vec<MockUpstream>,
    gw: Gateway,
    http: reqwest::Client,
}

async fn start(tag: &str, health: &str, breaker: &str) -> Env {
    let mut members = Vec::new();
    for _ in 0..3 {
        members.push(MockUpstream::openai().await);
    }
    let refs: Vec<&MockUpstream> = members.iter().collect();
    let gw = Gateway::start(tag, &config(&refs, health, breaker), &[]).unwrap();
    gw.wait_ready(Duration::from_secs(30)).await.unwrap();
    Env {
        members,
        gw,
        http: reqwest::Client::new(),
    }
}

/// (status, request id, body) of one chat request, plain or streamed.
async fn post(
    http: &reqwest::Client,
    base: &str,
    text: &str,
    stream: bool,
) -> (u16, String, String) {
    let resp = http
        .post(format!("{base}{CHAT}"))
        .json(&json!({
            "model": "pool",
            "messages": [{"role": "user", "content": text}],
            "max_tokens": 16,
            "stream": stream,
        }))
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body = resp.text().await.unwrap_or_default();
    (status, id, body)
}

/// A streamed answer that completed: its last event is `[DONE]` and no
/// error event came before it.
fn stream_complete(body: &str) -> bool {
    body.trim_end().ends_with("data: [DONE]") && !body.contains("\"error\"")
}

impl Env {
    async fn readyz(&self) -> Value {
        self.http
            .get(format!("{}/readyz", self.gw.base_url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn member_state(&self, member: &str) -> String {
        let v = self.readyz().await;
        v["targets"]["pool"]["members"][member]["state"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Waits until `/readyz` shows `member` in `state`; panics after 30 s.
    async fn wait_member(&self, member: &str, state: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.member_state(member).await == state {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "member {member} never became {state}: {}",
                self.readyz().await
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.gw.base_url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    fn chats(&self) -> [usize; 3] {
        [0, 1, 2].map(|i| self.members[i].count_path(CHAT))
    }

    async fn ledger(self) -> Vec<sqlx::sqlite::SqliteRow> {
        let dir = self.gw.dir.clone();
        self.gw.stop().unwrap();
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}/ledger.db", dir.display()))
            .await
            .unwrap();
        sqlx::query("SELECT * FROM ledger ORDER BY ts_ms")
            .fetch_all(&pool)
            .await
            .unwrap()
    }
}

/// The value of a Prometheus sample line that starts with `prefix`.
fn sample(metrics: &str, prefix: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// `promtool check metrics` (the linter Prometheus ships) accepts `text`.
fn promtool_accepts(text: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) is installed by scripts/setup.sh --test");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What the load generator saw: every request's id and status.
#[derive(Default)]
struct Seen {
    answers: Mutex<Vec<(u16, String)>>,
    incomplete_streams: AtomicUsize,
}

/// `workers` clients sending requests (every other one streamed) back to
/// back until `stop` is set; each request is recorded in `seen`.
async fn load(base: &str, workers: usize, stop: &AtomicBool, seen: &Seen) {
    let http = reqwest::Client::new();
    let worker = |w: usize| {
        let http = http.clone();
        async move {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let stream = (w + n) % 2 == 1;
                let (status, id, body) = post(&http, base, &format!("w{w} n{n}"), stream).await;
                if stream && status == 200 && !stream_complete(&body) {
                    seen.incomplete_streams.fetch_add(1, Ordering::Relaxed);
                }
                seen.answers.lock().unwrap().push((status, id));
                n += 1;
            }
        }
    };
    futures::future::join_all((0..workers).map(worker)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_balances_by_outstanding_ejects_a_failing_member_and_readmits_it_under_load() {
    // Health checks every 300 ms; three failed checks take a member out, so
    // under load the passive ejection (two failed requests) comes first.
    let env = start(
        "pools-load",
        "{ path: /health, interval_ms: 300, timeout_ms: 200, unhealthy_threshold: 3, healthy_threshold: 2, eject_after_failures: 2 }",
        "{ failures: 5, cooldown_ms: 1000 }",
    )
    .await;
    let base = env.gw.base_url.clone();

    // Phase 1: `c` answers 40 times slower than `a` and `b`. Round robin
    // would give each a third; least-outstanding gives `c` far fewer.
    env.members[0].set_answer_delay(Duration::from_millis(20));
    env.members[1].set_answer_delay(Duration::from_millis(20));
    env.members[2].set_answer_delay(Duration::from_millis(800));
    let stop = AtomicBool::new(false);
    let seen = Seen::default();
    let until_enough = async {
        while seen.answers.lock().unwrap().len() < 120 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.store(true, Ordering::Relaxed);
    };
    tokio::join!(load(&base, 8, &stop, &seen), until_enough);
    let [a, b, c] = env.chats();
    println!("phase 1 (c 40x slower): a={a} b={b} c={c}");
    assert_eq!(a + b + c, seen.answers.lock().unwrap().len());
    assert!(c * 2 < a && c * 2 < b, "a={a} b={b} c={c}");
    // Equal members share evenly: neither of `a`, `b` takes twice the other.
    assert!(a < 2 * b && b < 2 * a, "a={a} b={b}");
    for m in &env.members {
        m.set_answer_delay(Duration::from_millis(10));
    }

    // Phase 2: under load, `b` goes down, is ejected, stays without model
    // requests while out, comes back up and is readmitted.
    let stop = AtomicBool::new(false);
    let phase2 = Seen::default();
    let p2 = &phase2;
    let script = async {
        let wait_answers = |n: usize| async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            while p2.answers.lock().unwrap().len() < n {
                assert!(Instant::now() < deadline, "load stalled");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        wait_answers(40).await;
        env.members[1].set_down(true);
        env.wait_member("b", "ejected").await;
        // Requests that leased `b` just before its ejection reach it a
        // moment later; they belong to the time before.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let at_ejection = env.members[1].count_path(CHAT);
        let answered_at_ejection = p2.answers.lock().unwrap().len();
        // While out, `b` gets health checks but no model request.
        wait_answers(answered_at_ejection + 60).await;
        assert_eq!(env.member_state("b").await, "ejected");
        let while_out = env.members[1].count_path(CHAT) - at_ejection;
        env.members[1].set_down(false);
        env.wait_member("b", "healthy").await;
        let at_readmission = env.members[1].count_path(CHAT);
        let answered_at_readmission = p2.answers.lock().unwrap().len();
        wait_answers(answered_at_readmission + 60).await;
        stop.store(true, Ordering::Relaxed);
        (at_ejection, while_out, at_readmission)
    };
    let ((), (at_ejection, while_out, at_readmission)) =
        tokio::join!(load(&base, 8, &stop, &phase2), script);
    let after = env.members[1].count_path(CHAT);
    println!(
        "phase 2: b had {at_ejection} model requests at ejection, {while_out} while out, {} after readmission; totals {:?}",
        after - at_readmission,
        env.chats()
    );
    assert_eq!(while_out, 0);
    assert!(after > at_readmission, "b got nothing after readmission");
    assert!(env.members[1].count_path("/health") > 0);

    // Nothing lost: every request of both phases answered 200, every
    // stream complete.
    let mut all = seen.answers.into_inner().unwrap();
    all.extend(phase2.answers.into_inner().unwrap());
    let failed: Vec<&(u16, String)> = all.iter().filter(|(s, _)| *s != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} failed: {failed:?}",
        failed.len(),
        all.len()
    );
    assert_eq!(seen.incomplete_streams.load(Ordering::Relaxed), 0);
    assert_eq!(phase2.incomplete_streams.load(Ordering::Relaxed), 0);

    // The ejection and readmission are counted; the breaker never moved,
    // since a member was usable all along.
    let metrics = env.metrics().await;
    let ejections = sample(
        &metrics,
        "watershed_pool_ejections_total{backend=\"pool\",member=\"b\"}",
    );
    assert!(ejections >= Some(1.0), "{metrics}");
    assert!(
        sample(
            &metrics,
            "watershed_pool_readmissions_total{backend=\"pool\",member=\"b\"}"
        ) >= Some(1.0),
        "{metrics}"
    );
    for m in ["a", "b", "c"] {
        assert_eq!(
            sample(
                &metrics,
                &format!("watershed_pool_member_state{{backend=\"pool\",member=\"{m}\"}}")
            ),
            Some(0.0),
            "{metrics}"
        );
    }
    assert!(!metrics.contains("watershed_breaker_transitions_total{backend=\"pool\""));
    promtool_accepts(&metrics);
    assert_eq!(env.readyz().await["targets"]["pool"]["breaker"], "closed");
    let chats = env.chats();

    // The ledger: one row per answered request, each naming its member; `a`
    // and `c` never failed, so their rows equal the requests they received.
    let rows = env.ledger().await;
    assert_eq!(rows.len(), all.len());
    let mut by_member: BTreeMap<String, usize> = BTreeMap::new();
    let mut retried = 0;
    for r in &rows {
        assert_eq!(r.get::<i64, _>("status"), 200);
        assert_eq!(r.get::<String, _>("backend"), "pool");
        let explanation: Value = serde_json::from_str(&r.get::<String, _>("explanation")).unwrap();
        let member = explanation["pool_member"].as_str().unwrap().to_owned();
        *by_member.entry(member).or_default() += 1;
        if r.get::<i64, _>("attempts") > 1 {
            retried += 1;
        }
    }
    let ids: std::collections::HashSet<String> = rows.iter().map(|r| r.get("request_id")).collect();
    assert!(all.iter().all(|(_, id)| ids.contains(id)));
    println!(
        "ledger rows {} by member {by_member:?}, {retried} retried on another member",
        rows.len()
    );
    assert_eq!(by_member.get("a").copied(), Some(chats[0]));
    assert_eq!(by_member.get("c").copied(), Some(chats[2]));
    // `b`'s failed requests were answered by another member.
    let b_rows = by_member.get("b").copied().unwrap_or(0);
    assert!(
        b_rows < chats[1],
        "b rows {b_rows}, b requests {}",
        chats[1]
    );
    assert_eq!(retried, chats[1] - b_rows);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_usable_member_the_breaker_opens_and_no_error_names_a_member_url() {
    let env = start(
        "pools-down",
        "{ path: /health, interval_ms: 200, timeout_ms: 150, unhealthy_threshold: 1, healthy_threshold: 1, eject_after_failures: 1 }",
        "{ failures: 3, cooldown_ms: 500 }",
    )
    .await;
    let base = env.gw.base_url.clone();
    for m in &env.members {
        m.set_down(true);
    }
    let mut bodies = Vec::new();
    let mut sent = 0;
    // Whatever the members' state when each request comes, it fails
    // cleanly: 502 while members are tried, 503 once none is usable.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, _, body) = post(&env.http, &base, "anyone?", false).await;
        sent += 1;
        assert!(status == 502 || status == 503, "{status} {body}");
        bodies.push(body);
        if env.readyz().await["targets"]["pool"]["breaker"] == "open" {
            break;
        }
        assert!(Instant::now() < deadline, "breaker never opened");
    }
    let ready = env.readyz().await;
    for m in ["a", "b", "c"] {
        assert_ne!(
            ready["targets"]["pool"]["members"][m]["state"], "healthy",
            "{ready}"
        );
    }
    // Open: answered at once with a retry-after, the members left alone.
    let before = env.chats();
    let (status, _, body) = post(&env.http, &base, "still?", false).await;
    sent += 1;
    assert_eq!(status, 503, "{body}");
    assert_eq!(env.chats(), before);
    bodies.push(body);
    for body in &bodies {
        let err: Value = serde_json::from_str(body).unwrap();
        assert!(
            err["error"]["message"].as_str().unwrap().contains("pool"),
            "{body}"
        );
        assert!(!body.contains("127.0.0.1"), "{body}");
        for m in &env.members {
            let port = m
                .base_url
                .rsplit(':')
                .next()
                .unwrap()
                .trim_end_matches("/v1");
            assert!(!body.contains(port), "{body}");
        }
    }

    // Members come back: health checks readmit them, the breaker's probe
    // succeeds and closes it.
    for m in &env.members {
        m.set_down(false);
    }
    for m in ["a", "b", "c"] {
        env.wait_member(m, "healthy").await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, _, body) = post(&env.http, &base, "back?", true).await;
        sent += 1;
        if status == 200 {
            assert!(stream_complete(&body), "{body}");
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(Instant::now() < deadline, "never served again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(env.readyz().await["targets"]["pool"]["breaker"], "closed");
    let metrics = env.metrics().await;
    assert!(
        metrics.contains("watershed_breaker_transitions_total{backend=\"pool\",to=\"open\"}"),
        "{metrics}"
    );
    let rows = env.ledger().await;
    // One row per request, failed ones included.
    assert_eq!(rows.len(), sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_that_cannot_be_reached_fail_without_showing_their_address() {
    // Two ports nothing listens on: every attempt is a connect error, whose
    // own text holds the member's URL.
    let mut ports = Vec::new();
    for _ in 0..2 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        ports.push(l.local_addr().unwrap().port());
    }
    let yaml = format!(
        r#"version: 1
ledger: {{ url: "sqlite://{{dir}}/ledger.db" }}
models:
  pool:
    provider: openai-compatible
    model: mock-open-model
    trusted: true
    retries: 1
    retry_backoff_ms: 10
    endpoints:
      - {{ url: "http://127.0.0.1:{}/v1" }}
      - {{ url: "http://127.0.0.1:{}/v1" }}
    health: {{ interval_ms: 60000, eject_after_failures: 5 }}
routes:
  - name: everything
    to: [pool]
"#,
        ports[0], ports[1]
    );
    let gw = Gateway::start("pools-unreachable", &yaml, &[]).unwrap();
    gw.wait_ready(Duration::from_secs(30)).await.unwrap();
    let http = reqwest::Client::new();
    for stream in [false, true] {
        let (status, _, body) = post(&http, &gw.base_url, "hello", stream).await;
        assert_eq!(status, 503, "{body}");
        let err: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            err["error"]["message"], "upstream pool could not be reached",
            "{body}"
        );
        assert!(!body.contains("127.0.0.1"), "{body}");
        for p in &ports {
            assert!(!body.contains(&p.to_string()), "{body}");
        }
    }
    // Both members were tried by each request: one failure each so far.
    let ready: Value = http
        .get(format!("{}/readyz", gw.base_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for m in ["0", "1"] {
        assert_eq!(
            ready["targets"]["pool"]["members"][m]["state"], "healthy",
            "{ready}"
        );
    }
    assert!(!ready.to_string().contains("127.0.0.1"), "{ready}");
    let log = gw.stop().unwrap();
    // The cause is in the log, for the operator.
    assert!(log.contains("upstream attempt failed"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_and_the_span_name_the_member_that_served() {
    let receiver = watershed_tests::mock::otlp::OtlpReceiver::start()
        .await
        .unwrap();
    let a = MockUpstream::openai().await;
    let b = MockUpstream::openai().await;
    let yaml = format!(
        r#"version: 1
ledger: {{ url: "sqlite://{{dir}}/ledger.db" }}
telemetry: {{ otlp_endpoint: "{}", service_name: watershed-pools }}
models:
  pool:
    provider: openai-compatible
    model: mock-open-model
    trusted: true
    endpoints:
      - {{ name: a, url: "{}" }}
      - {{ name: b, url: "{}" }}
routes:
  - name: everything
    to: [pool]
"#,
        receiver.endpoint, a.base_url, b.base_url
    );
    let gw = Gateway::start("pools-spans", &yaml, &[]).unwrap();
    gw.wait_ready(Duration::from_secs(30)).await.unwrap();
    let http = reqwest::Client::new();
    let mut ids = Vec::new();
    for n in 0..4 {
        let (status, id, body) = post(&http, &gw.base_url, &format!("n{n}"), n % 2 == 1).await;
        assert_eq!(status, 200, "{body}");
        ids.push(id);
    }
    // One after the other, each finds both idle: they take turns.
    assert_eq!((a.count_path(CHAT), b.count_path(CHAT)), (2, 2));
    let spans = receiver.wait_for(4, Duration::from_secs(10)).await;
    assert_eq!(spans.len(), 4, "{}", gw.log_text());
    let port = |m: &MockUpstream| -> i64 {
        m.base_url
            .rsplit(':')
            .next()
            .unwrap()
            .trim_end_matches("/v1")
            .parse()
            .unwrap()
    };
    let mut span_member = BTreeMap::new();
    for s in &spans {
        let member = s.str("watershed.pool_member").unwrap().to_owned();
        let expected = if member == "a" { port(&a) } else { port(&b) };
        assert_eq!(s.int("server.port"), Some(expected), "{member}");
        assert_eq!(s.str("watershed.backend"), Some("pool"));
        span_member.insert(s.str("watershed.request_id").unwrap().to_owned(), member);
    }
    let dir = gw.dir.clone();
    gw.stop().unwrap();
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}/ledger.db", dir.display()))
        .await
        .unwrap();
    let rows = sqlx::query("SELECT request_id, explanation FROM ledger")
        .fetch_all(&db)
        .await
        .unwrap();
    assert_eq!(rows.len(), 4);
    for r in &rows {
        let id: String = r.get("request_id");
        let e: Value = serde_json::from_str(&r.get::<String, _>("explanation")).unwrap();
        assert_eq!(
            e["pool_member"].as_str(),
            Some(span_member[&id].as_str()),
            "{id}"
        );
        assert!(ids.contains(&id));
    }
}
