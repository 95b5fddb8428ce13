//! Upstream faults end to end, through the real binary against fault-injecting
//! mocks: retries on the same target (429 with `retry-after`, 5xx, resets,
//! timeouts), fallback, the request deadline over hanging targets, streams that
//! trickle, break before their first event or after it, and what the client
//! and the ledger are told. Timeouts in the configs are small so every case
//! ends in seconds; time is asserted only with generous bounds.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlx::Row;
use watershed_tests::harness::Gateway;
use watershed_tests::mock::{Failure, MockUpstream};

/// Two OpenAI targets, `a` first and `b` its fallback, each with two retries
/// and a short backoff. They are marked trusted so one route can take every
/// request; privacy is not what these tests are about.
/// `a_extra` is added to `a`'s settings.
fn config(a: &str, b: &str, timeout_ms: u64, server: &str, a_extra: &str) -> String {
    format!(
        r#"version: 1
ledger: {{ url: "sqlite://{{dir}}/ledger.db" }}
server: {{ {server} }}
models:
  a:
    provider: openai
    base_url: "{a}"
    api_key_env: E2E_KEY
    trusted: true
    timeout_ms: {timeout_ms}
    retries: 2
    retry_backoff_ms: 20
{a_extra}
  b:
    provider: openai
    base_url: "{b}"
    api_key_env: E2E_KEY
    trusted: true
    timeout_ms: {timeout_ms}
    retries: 2
    retry_backoff_ms: 20
routes:
  - name: a-then-b
    to: [a]
    fallback: [b]
"#
    )
}

struct Env {
    a: MockUpstream,
    b: MockUpstream,
    gw: Gateway,
    http: reqwest::Client,
}

async fn start(tag: &str, timeout_ms: u64, server: &str, a_extra: &str) -> Env {
    let a = MockUpstream::openai().await;
    let b = MockUpstream::openai().await;
    let gw = Gateway::start(
        tag,
        &config(&a.base_url, &b.base_url, timeout_ms, server, a_extra),
        &[("E2E_KEY", "sk-test")],
    )
    .unwrap();
    gw.wait_ready(Duration::from_secs(30)).await.unwrap();
    Env {
        a,
        b,
        gw,
        http: reqwest::Client::new(),
    }
}

struct Answer {
    status: u16,
    id: String,
    backend: Option<String>,
    retry_after: Option<String>,
    body: String,
}

impl Env {
    async fn post(&self, text: &str, stream: bool) -> Answer {
        let body = json!({
            "model": "a",
            "messages": [{"role": "user", "content": text}],
            "max_tokens": 64,
            "stream": stream,
        });
        let resp = self
            .http
            .post(format!("{}/v1/chat/completions", self.gw.base_url))
            .json(&body)
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .unwrap();
        let h = resp.headers().clone();
        Answer {
            status: resp.status().as_u16(),
            id: h["x-request-id"].to_str().unwrap().to_owned(),
            backend: h
                .get("x-watershed-backend")
                .map(|v| v.to_str().unwrap().to_owned()),
            retry_after: h.get("retry-after").map(|v| v.to_str().unwrap().to_owned()),
            body: resp.text().await.unwrap_or_default(),
        }
    }

    /// The same request in Anthropic's wire format (`/v1/messages`).
    async fn post_messages(&self, text: &str, stream: bool) -> Answer {
        let body = json!({
            "model": "a",
            "messages": [{"role": "user", "content": text}],
            "max_tokens": 64,
            "stream": stream,
        });
        let resp = self
            .http
            .post(format!("{}/v1/messages", self.gw.base_url))
            .json(&body)
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .unwrap();
        let h = resp.headers().clone();
        Answer {
            status: resp.status().as_u16(),
            id: h["x-request-id"].to_str().unwrap().to_owned(),
            backend: h
                .get("x-watershed-backend")
                .map(|v| v.to_str().unwrap().to_owned()),
            retry_after: h.get("retry-after").map(|v| v.to_str().unwrap().to_owned()),
            body: resp.text().await.unwrap_or_default(),
        }
    }

    /// How many requests each mock has received so far.
    fn counts(&self) -> (usize, usize) {
        (self.a.request_count(), self.b.request_count())
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

/// Whether the Prometheus text has exactly this sample line.
fn has_line(metrics: &str, line: &str) -> bool {
    metrics.lines().any(|l| l == line)
}

/// A breaker that never opens, for the tests of retries and streams, which
/// fail `a` many times in a row on purpose.
const NO_BREAKER: &str = "    breaker: { failures: 1000 }";

/// (status, backend, attempts, error_code) of a request's ledger row.
fn row(rows: &[sqlx::sqlite::SqliteRow], id: &str) -> (i64, String, i64, Option<String>) {
    let r = rows
        .iter()
        .find(|r| r.get::<String, _>("request_id") == id)
        .unwrap_or_else(|| panic!("no ledger row for {id}"));
    (
        r.get("status"),
        r.get("backend"),
        r.get("attempts"),
        r.get("error_code"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_on_the_same_target_then_fall_back() {
    let env = start(
        "faults-retry",
        2000,
        "request_deadline_ms: 20000",
        NO_BREAKER,
    )
    .await;

    // Two 503s, then an answer: the same target, three attempts.
    env.a.fail_next(2, Failure::Status(503));
    let two_503 = env.post("one", false).await;
    assert_eq!(two_503.status, 200, "{}", two_503.body);
    assert_eq!(two_503.backend.as_deref(), Some("a"));
    assert_eq!(env.counts(), (3, 0));

    // A 429 asking for one second is waited out, then retried on the same target.
    env.a.fail_next(1, Failure::RetryAfter(1));
    let started = Instant::now();
    let limited = env.post("two", false).await;
    assert_eq!(limited.status, 200, "{}", limited.body);
    assert_eq!(limited.backend.as_deref(), Some("a"));
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(env.counts(), (5, 0));

    // A 429 asking for an hour is above the cap: not waited for, `b` answers.
    env.a.fail_next(1, Failure::RetryAfter(3600));
    let capped = env.post("three", false).await;
    assert_eq!(capped.status, 200, "{}", capped.body);
    assert_eq!(capped.backend.as_deref(), Some("b"));
    assert_eq!(env.counts(), (6, 1));

    // A connection reset is retried like a 5xx.
    env.a.fail_next(1, Failure::ResetBeforeFirstEvent);
    let reset = env.post("four", false).await;
    assert_eq!(reset.status, 200, "{}", reset.body);
    assert_eq!(reset.backend.as_deref(), Some("a"));
    assert_eq!(env.counts(), (8, 1));

    // Malformed JSON is not transient: no retry on `a`, straight to `b`.
    env.a.fail_next(1, Failure::Malformed);
    let malformed = env.post("five", false).await;
    assert_eq!(malformed.status, 200, "{}", malformed.body);
    assert_eq!(malformed.backend.as_deref(), Some("b"));
    assert_eq!(env.counts(), (9, 2));

    // A request the upstream calls bad is neither retried nor sent elsewhere.
    env.a.fail_next(1, Failure::Status(400));
    let bad = env.post("six", false).await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert_eq!(env.counts(), (10, 2));

    // Both targets keep failing: 1 + 2 attempts each, then a 502 that names
    // the target and its status but neither its URL nor its own words.
    env.a.fail_next(3, Failure::Status(500));
    env.b.fail_next(3, Failure::Status(500));
    let failed = env.post("seven", false).await;
    assert_eq!(failed.status, 502, "{}", failed.body);
    assert_eq!(env.counts(), (13, 5));
    let err: Value = serde_json::from_str(&failed.body).unwrap();
    let message = err["error"]["message"].as_str().unwrap();
    assert_eq!(message, "upstream b answered 500");
    assert!(!failed.body.contains("127.0.0.1"), "{}", failed.body);
    assert!(
        !failed.body.contains("The server had an error"),
        "{}",
        failed.body
    );

    let metrics = env.metrics().await;
    assert!(
        has_line(
            &metrics,
            "watershed_upstream_retries_total{backend=\"a\"} 6.0"
        ),
        "{metrics}"
    );
    let log = env.gw.log_text();
    assert!(
        log.contains(&failed.id) && log.contains("The server had an error"),
        "the upstream's own message is not in the log with the request id"
    );

    let rows = env.ledger().await;
    assert_eq!(row(&rows, &two_503.id), (200, "a".into(), 3, None));
    assert_eq!(row(&rows, &limited.id), (200, "a".into(), 2, None));
    assert_eq!(row(&rows, &capped.id), (200, "b".into(), 2, None));
    assert_eq!(row(&rows, &malformed.id), (200, "b".into(), 2, None));
    assert_eq!(
        row(&rows, &failed.id),
        (502, "b".into(), 6, Some("upstream_error".into()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_deadline_bounds_hanging_targets() {
    // Each attempt may take 8 s, but the whole dispatch only 1.5 s: two
    // hanging targets cost the deadline, not 2 × 8 s.
    let env = start("faults-deadline", 8000, "request_deadline_ms: 1500", "").await;
    env.a.fail_next(3, Failure::Hang);
    env.b.fail_next(3, Failure::Hang);
    let started = Instant::now();
    let hung = env.post("hello", false).await;
    let took = started.elapsed();
    assert_eq!(hung.status, 504, "{}", hung.body);
    assert!(took < Duration::from_secs(7), "took {took:?}");
    let err: Value = serde_json::from_str(&hung.body).unwrap();
    assert_eq!(err["error"]["code"], "upstream_timeout");
    // The stream waits for its first event within the same deadline.
    let started = Instant::now();
    let streamed = env.post("hello", true).await;
    assert_eq!(streamed.status, 504, "{}", streamed.body);
    assert!(started.elapsed() < Duration::from_secs(7));
    // An Anthropic client hears the same 504 in Anthropic's error shape.
    let anthropic = env.post_messages("hello", false).await;
    assert_eq!(anthropic.status, 504, "{}", anthropic.body);
    let err: Value = serde_json::from_str(&anthropic.body).unwrap();
    assert_eq!(err["type"], "error", "{err}");
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("deadline"));

    let rows = env.ledger().await;
    let (status, _, _, code) = row(&rows, &hung.id);
    assert_eq!((status, code.as_deref()), (504, Some("upstream_timeout")));
    assert_eq!(row(&rows, &streamed.id).0, 504);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_fall_back_before_their_first_event_and_end_cleanly_after_it() {
    let env = start(
        "faults-stream",
        600,
        "request_deadline_ms: 20000, stream_deadline_ms: 6000",
        NO_BREAKER,
    )
    .await;

    // A trickle of bytes that never completes an event times out on each
    // attempt (the idle timer moves only on events), then `b` answers.
    env.a.fail_next(3, Failure::Trickle);
    let trickled = env.post("one two", true).await;
    assert_eq!(trickled.status, 200, "{}", trickled.body);
    assert_eq!(trickled.backend.as_deref(), Some("b"));
    assert!(trickled.body.contains("[DONE]"), "{}", trickled.body);
    assert_eq!(env.counts(), (3, 1));

    // Cut after the head, before the first event: retried, then `b`.
    env.a.fail_next(3, Failure::ResetBeforeFirstEvent);
    let reset = env.post("three", true).await;
    assert_eq!(reset.status, 200, "{}", reset.body);
    assert_eq!(reset.backend.as_deref(), Some("b"));
    assert!(
        reset.body.contains("\"content\":\"three\""),
        "{}",
        reset.body
    );
    assert_eq!(env.counts(), (6, 2));

    // A first event that is not JSON: no retry, `b` answers.
    env.a.fail_next(1, Failure::Malformed);
    let malformed = env.post("four", true).await;
    assert_eq!(malformed.status, 200, "{}", malformed.body);
    assert_eq!(malformed.backend.as_deref(), Some("b"));
    assert_eq!(env.counts(), (7, 3));

    // Cut after the first text reached the client: no fallback; the stream
    // ends with an error event in OpenAI's format, without `[DONE]` and
    // without the upstream's URL.
    env.a.fail_next(1, Failure::DropMidStream);
    let cut = env.post("five six seven", true).await;
    assert_eq!(cut.status, 200);
    assert_eq!(cut.backend.as_deref(), Some("a"));
    assert_eq!(env.counts(), (8, 3));
    assert!(
        cut.body.contains("\"code\":\"upstream_unavailable\""),
        "{}",
        cut.body
    );
    assert!(!cut.body.contains("[DONE]"), "{}", cut.body);
    assert!(!cut.body.contains("127.0.0.1"), "{}", cut.body);

    // The same cut seen by an Anthropic client: an `error` event.
    env.a.fail_next(1, Failure::DropMidStream);
    let cut_anthropic = env.post_messages("five six seven", true).await;
    assert_eq!(cut_anthropic.status, 200);
    assert!(
        cut_anthropic.body.contains("event: error"),
        "{}",
        cut_anthropic.body
    );
    assert!(!cut_anthropic.body.contains("message_stop"));
    assert_eq!(env.counts(), (9, 3));

    // The cause, which the client does not see, is in the log with the request id.
    let log = env.gw.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains(&cut.id) && l.contains("stream failed after it started")),
        "{log}"
    );

    // A stream that goes on past the stream deadline is cut there.
    env.a.set_chunk_delay(Duration::from_millis(300));
    // Sixty words 300 ms apart would take 18 s; the deadline is 6 s.
    let words = vec!["w"; 60].join(" ");
    let long = env.post(&words, true).await;
    assert_eq!(long.status, 200);
    assert!(
        long.body.contains("\"code\":\"upstream_timeout\""),
        "{}",
        long.body
    );
    assert!(!long.body.contains("[DONE]"), "{}", long.body);

    let rows = env.ledger().await;
    assert_eq!(row(&rows, &trickled.id), (200, "b".into(), 4, None));
    assert_eq!(row(&rows, &reset.id), (200, "b".into(), 4, None));
    // The ledger says the failure came after text reached the client: the
    // failure's code, with a time to first token.
    for id in [&cut.id, &cut_anthropic.id] {
        assert_eq!(
            row(&rows, id),
            (503, "a".into(), 1, Some("upstream_unavailable".into()))
        );
        let r = rows
            .iter()
            .find(|r| r.get::<String, _>("request_id") == *id)
            .unwrap();
        assert!(r.get::<Option<f64>, _>("ttft_ms").is_some());
        let explanation: Value = serde_json::from_str(&r.get::<String, _>("explanation")).unwrap();
        assert_eq!(
            explanation["failed_after_first_token"], true,
            "{explanation}"
        );
    }
    // A stream that failed before its first event and fell back says nothing of the kind.
    let r = rows
        .iter()
        .find(|r| r.get::<String, _>("request_id") == reset.id)
        .unwrap();
    let explanation: Value = serde_json::from_str(&r.get::<String, _>("explanation")).unwrap();
    assert!(explanation.get("failed_after_first_token").is_none());
    assert_eq!(
        row(&rows, &long.id),
        (504, "a".into(), 1, Some("upstream_timeout".into()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_target_opens_its_breaker_is_skipped_then_probed_and_closed() {
    // The cool-down (3 s) is long enough that the requests between the
    // opening and the sleep below cannot outlast it on a loaded machine.
    let env = start(
        "faults-breaker",
        2000,
        "request_deadline_ms: 20000",
        "    breaker: { failures: 3, window_ms: 30000, cooldown_ms: 3000 }",
    )
    .await;
    let readyz = |env: &Env| {
        let url = format!("{}/readyz", env.gw.base_url);
        let http = env.http.clone();
        async move {
            let v: Value = http.get(url).send().await.unwrap().json().await.unwrap();
            v["targets"]["a"]["breaker"].as_str().unwrap().to_owned()
        }
    };
    assert_eq!(readyz(&env).await, "closed");
    assert!(has_line(
        &env.metrics().await,
        "watershed_breaker_state{backend=\"a\"} 0.0"
    ));

    // Three failures in a row (the first try and both retries) open it; `b`
    // answers this request.
    env.a.fail_next(3, Failure::Status(500));
    let opened = env.post("one", false).await;
    assert_eq!(opened.backend.as_deref(), Some("b"), "{}", opened.body);
    assert_eq!(env.counts(), (3, 1));
    assert_eq!(readyz(&env).await, "open");
    let metrics = env.metrics().await;
    assert!(
        has_line(&metrics, "watershed_breaker_state{backend=\"a\"} 2.0"),
        "{metrics}"
    );
    assert!(
        has_line(
            &metrics,
            "watershed_breaker_transitions_total{backend=\"a\",to=\"open\"} 1.0"
        ),
        "{metrics}"
    );

    // While open, `a` is skipped without being asked.
    let skipped = env.post("two", false).await;
    assert_eq!(skipped.backend.as_deref(), Some("b"));
    assert_eq!(env.counts(), (3, 2));

    // `b` failing five times in a row (its default) opens its breaker too...
    env.b.fail_next(5, Failure::Status(500));
    let b1 = env.post("b1", false).await;
    let b2 = env.post("b2", false).await;
    assert_eq!((b1.status, b2.status), (502, 502));
    assert_eq!(env.counts(), (3, 7));
    // ...and with every target open a request is turned away at once, with a
    // retry-after for when the first probe may go.
    let none = env.post("b3", false).await;
    assert_eq!(none.status, 503, "{}", none.body);
    assert!(none.body.contains("circuit open"), "{}", none.body);
    assert!(none.retry_after.is_some());
    assert_eq!(env.counts(), (3, 7));

    // After the cool-down one probe reaches `a`; its success closes the breaker.
    tokio::time::sleep(Duration::from_millis(3200)).await;
    let probe = env.post("three", false).await;
    assert_eq!(probe.backend.as_deref(), Some("a"), "{}", probe.body);
    assert_eq!(env.counts(), (4, 7));
    assert_eq!(readyz(&env).await, "closed");
    let metrics = env.metrics().await;
    assert!(
        has_line(&metrics, "watershed_breaker_state{backend=\"b\"} 2.0"),
        "{metrics}"
    );
    for to in ["half_open", "closed"] {
        let line = format!("watershed_breaker_transitions_total{{backend=\"a\",to=\"{to}\"}} 1.0");
        assert!(has_line(&metrics, &line), "{line} not in {metrics}");
    }

    let rows = env.ledger().await;
    let explanation = |id: &str| {
        let r = rows
            .iter()
            .find(|r| r.get::<String, _>("request_id") == id)
            .unwrap();
        serde_json::from_str::<Value>(&r.get::<String, _>("explanation")).unwrap()
    };
    assert_eq!(
        explanation(&skipped.id)["dispatch_skipped"],
        json!([{"target": "a", "reason": "circuit open"}])
    );
    assert!(explanation(&probe.id).get("dispatch_skipped").is_none());
    assert_eq!(row(&rows, &skipped.id), (200, "b".into(), 1, None));
}
