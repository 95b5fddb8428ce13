//! The real binary against mock upstreams on port 0: privacy fail-closed, config
//! refusal, missing keys, fallback, upstream errors, bad input, client disconnects,
//! and the ledger rows each of them leaves.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};
use sqlx::Row;
use watershed_tests::harness::{binary, scratch_dir, Gateway};
use watershed_tests::mock::{Failure, MockUpstream};

fn config(openai: &str, anthropic: &str, extra: &str) -> String {
    format!(
        r#"version: 1
ledger: {{ url: "sqlite://{{dir}}/ledger.db" }}
server: {{ max_body_bytes: 65536 }}
models:
  local:
    engine: local
    gguf: "{{dir}}/does-not-exist.gguf"
  gpt-5.4-mini:
    provider: openai
    base_url: "{openai}"
    api_key_env: E2E_OPENAI_KEY
    timeout_ms: 1500
    # Fallback is what these tests check; retries are e2e_faults's.
    retries: 0
  claude-sonnet-4.6:
    provider: anthropic
    base_url: "{anthropic}"
    api_key_env: E2E_ANTHROPIC_KEY
    timeout_ms: 1500
    retries: 0
  gpt-5.4:
    provider: openai
    base_url: "{openai}"
    api_key_env: E2E_UNSET_KEY
routes:
  - name: confidential-stays-home
    when: {{ privacy: ">= confidential" }}
    to: [local]
  - name: unset-key
    when: {{ model: gpt-5.4 }}
    to: [gpt-5.4]
  - name: with-fallback
    when: {{ model: gpt-5.4-mini }}
    to: [gpt-5.4-mini]
    fallback: [claude-sonnet-4.6]
  - name: anthropic-only
    when: {{ model: claude-sonnet-4.6 }}
    to: [claude-sonnet-4.6]
{extra}"#
    )
}

struct Env {
    openai: MockUpstream,
    anthropic: MockUpstream,
    gw: Gateway,
    http: reqwest::Client,
}

async fn start() -> Env {
    let openai = MockUpstream::openai().await;
    let anthropic = MockUpstream::anthropic().await;
    let gw = Gateway::start(
        "e2e-gw",
        &config(&openai.base_url, &anthropic.base_url, ""),
        &[
            ("E2E_OPENAI_KEY", "sk-openai"),
            ("E2E_ANTHROPIC_KEY", "sk-ant"),
        ],
    )
    .unwrap();
    // The local model fails to load (bad path); the gateway still becomes ready.
    gw.wait_ready(Duration::from_secs(30)).await.unwrap();
    Env {
        openai,
        anthropic,
        gw,
        http: reqwest::Client::new(),
    }
}

impl Env {
    async fn post(
        &self,
        body: &Value,
        privacy: Option<&str>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut req = self
            .http
            .post(format!("{}/v1/chat/completions", self.gw.base_url))
            .json(body);
        if let Some(p) = privacy {
            req = req.header("x-watershed-privacy", p);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.json::<Value>().await.unwrap_or(Value::Null);
        (status, headers, body)
    }

    async fn post_raw(&self, body: Vec<u8>) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}/v1/chat/completions", self.gw.base_url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json::<Value>().await.unwrap_or(Value::Null))
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

fn chat(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 16})
}

fn error_shape(body: &Value) -> (&str, &str) {
    let e = &body["error"];
    assert!(e["message"].is_string(), "no error.message in {body}");
    assert!(e["type"].is_string(), "no error.type in {body}");
    (
        e["code"].as_str().unwrap_or(""),
        e["message"].as_str().unwrap_or(""),
    )
}

fn row_for<'a>(rows: &'a [sqlx::sqlite::SqliteRow], id: &str) -> &'a sqlx::sqlite::SqliteRow {
    rows.iter()
        .find(|r| r.get::<String, _>("request_id") == id)
        .unwrap_or_else(|| panic!("no ledger row for {id}"))
}

fn request_id(h: &reqwest::header::HeaderMap) -> String {
    h.get("x-request-id").unwrap().to_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confidential_requests_fail_closed_and_never_leave() {
    let env = start().await;
    // Asked by name for a closed model, but confidential: only `local` may serve,
    // and it failed to load, so the request fails closed.
    let (status, h, body) = env
        .post(
            &chat("gpt-5.4-mini", "my card is 4111 1111 1111 1111"),
            Some("confidential"),
        )
        .await;
    assert_eq!(status, 503, "{body}");
    error_shape(&body);
    // The error names the route that kept it home.
    assert_eq!(
        h.get("x-watershed-route").map(|v| v.to_str().unwrap()),
        Some("confidential-stays-home")
    );
    let (status, _, _) = env
        .post(&chat("claude-sonnet-4.6", "secret"), Some("restricted"))
        .await;
    assert_eq!(status, 503);
    assert_eq!(
        env.openai.request_count(),
        0,
        "confidential data reached OpenAI"
    );
    assert_eq!(
        env.anthropic.request_count(),
        0,
        "restricted data reached Anthropic"
    );
    // An invalid privacy header is a clear 400.
    let (status, _, body) = env
        .post(&chat("gpt-5.4-mini", "x"), Some("top-secret"))
        .await;
    assert_eq!(status, 400);
    assert!(error_shape(&body).1.contains("top-secret"), "{body}");
    let id = request_id(&h);
    let rows = env.ledger().await;
    let row = row_for(&rows, &id);
    assert_eq!(row.get::<i64, _>("status"), 503);
    assert_eq!(row.get::<String, _>("backend"), "local");
    assert_eq!(row.get::<String, _>("privacy"), "confidential");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_that_could_leak_confidential_data_is_refused_at_start() {
    let dir = scratch_dir("refuse").unwrap();
    let cfg = dir.join("leaky.yaml");
    std::fs::write(
        &cfg,
        "version: 1\nmodels:\n  gpt-5.4-mini:\n    provider: openai\n    api_key_env: K\nroutes:\n  - name: all-out\n    to: [gpt-5.4-mini]\n",
    )
    .unwrap();
    let out = std::process::Command::new(binary().unwrap())
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success(), "a leaky config was accepted");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("leaky.yaml:8:"), "no file:line:col in: {err}");
    assert!(err.contains("gpt-5.4-mini"), "{err}");
    // `policy check` reports the same and exits non-zero.
    let out = std::process::Command::new(binary().unwrap())
        .args(["policy", "check"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_key_fallback_and_upstream_errors() {
    let env = start().await;
    // A target whose key variable is unset answers 503 naming the variable.
    let (status, _, body) = env.post(&chat("gpt-5.4", "hi"), None).await;
    assert_eq!(status, 503, "{body}");
    assert!(error_shape(&body).1.contains("E2E_UNSET_KEY"), "{body}");
    assert_eq!(env.openai.request_count(), 0);

    // OpenAI fails with 500: the fallback (Anthropic) answers, in OpenAI's format.
    env.openai.fail_next(1, Failure::Status(500));
    let (status, h, body) = env.post(&chat("gpt-5.4-mini", "hello there"), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(h["x-watershed-backend"], "claude-sonnet-4.6");
    assert_eq!(h["x-watershed-route"], "with-fallback");
    assert_eq!(body["object"], "chat.completion");
    let fallback_id = request_id(&h);
    let sent = env.anthropic.last_request().unwrap();
    assert_eq!(sent.header("x-api-key"), Some("sk-ant"));

    // The only target fails: upstream statuses map to 502 / 429 / 504.
    env.anthropic.fail_next(1, Failure::Status(500));
    let (status, _, body) = env.post(&chat("claude-sonnet-4.6", "x"), None).await;
    assert_eq!(status, 502, "{body}");
    error_shape(&body);
    env.anthropic.fail_next(1, Failure::Status(429));
    let (status, _, _) = env.post(&chat("claude-sonnet-4.6", "x"), None).await;
    assert_eq!(status, 429);
    env.openai.fail_next(1, Failure::Hang);
    env.anthropic.fail_next(1, Failure::Hang);
    let started = std::time::Instant::now();
    let (status, _, body) = env.post(&chat("gpt-5.4-mini", "x"), None).await;
    assert!(status == 504, "{status} {body}");
    assert!(started.elapsed() < Duration::from_secs(10));

    let rows = env.ledger().await;
    let row = row_for(&rows, &fallback_id);
    assert_eq!(row.get::<i64, _>("attempts"), 2);
    assert_eq!(row.get::<String, _>("backend"), "claude-sonnet-4.6");
    assert!(row.get::<f64, _>("cost_usd") > 0.0);
    // The missing-key request reached dispatch and is in the ledger as a 503.
    assert!(rows.iter().any(|r| r.get::<i64, _>("status") == 503));
    assert!(rows.iter().any(|r| r.get::<i64, _>("status") == 504));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_openai_shaped_errors() {
    let env = start().await;
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (b"{\"model\": \"gpt-5.4-mini\", ".to_vec(), 400, "malformed"),
        (b"[1,2]".to_vec(), 400, "object"),
        (br#"{"model":"gpt-5.4-mini","messages":[]}"#.to_vec(), 400, "messages"),
        (br#"{"model":"gpt-5.4-mini","messages":"hi"}"#.to_vec(), 400, "messages"),
        (br#"{"model":7,"messages":[{"role":"user","content":"x"}]}"#.to_vec(), 400, "model"),
        (br#"{"model":"gpt-5.4-mini","messages":[{"role":"user","content":"x"}],"max_tokens":-3}"#.to_vec(), 400, "max_tokens"),
        (br#"{"model":"gpt-5.4-mini","messages":[{"role":"user","content":"x"}],"max_tokens":999999999999}"#.to_vec(), 400, "max_tokens"),
        (br#"{"model":"gpt-5.4-mini","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f","parameters":"x"}}]}"#.to_vec(), 400, "tools[0].function.parameters"),
        (br#"{"model":"gpt-5.4-mini","messages":[{"role":"user","content":"x"},{"role":"tool","tool_call_id":"c","content":"r"}]}"#.to_vec(), 400, "messages[1].tool_call_id"),
        (br#"{"model":"gpt-6","messages":[{"role":"user","content":"x"}]}"#.to_vec(), 404, "gpt-6"),
        (vec![b' '; 70_000], 413, "limit"),
    ];
    for (body, want, mention) in cases {
        let shown = String::from_utf8_lossy(&body[..body.len().min(80)]).into_owned();
        let (status, resp) = env.post_raw(body).await;
        assert_eq!(status, want, "{shown} → {resp}");
        let (_, message) = error_shape(&resp);
        assert!(
            message.contains(mention) || resp["error"]["param"].as_str() == Some(mention),
            "{shown}: message {message:?} does not mention {mention:?}"
        );
    }
    // Harmless unknown fields are ignored.
    let mut ok = chat("gpt-5.4-mini", "hi");
    ok["some_future_field"] = json!({"x": 1});
    let (status, _, body) = env.post(&ok, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        env.openai.request_count(),
        1,
        "bad requests never reached the upstream"
    );
    // Nothing before dispatch is in the ledger; the one good request is.
    let rows = env.ledger().await;
    assert_eq!(rows.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_pass_through_and_a_vanishing_client_is_recorded_as_cancelled() {
    let env = start().await;
    // A complete stream through the Anthropic adapter, in OpenAI's SSE format.
    let mut body = chat("claude-sonnet-4.6", "one two three four");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let resp = env
        .http
        .post(format!("{}/v1/chat/completions", env.gw.base_url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let text = resp.text().await.unwrap();
    let datas: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(datas.last(), Some(&"[DONE]"), "{text}");
    let usage_chunk: Value = serde_json::from_str(datas[datas.len() - 2]).unwrap();
    assert!(
        usage_chunk["usage"]["completion_tokens"].as_u64().unwrap() > 0,
        "{usage_chunk}"
    );
    assert_eq!(usage_chunk["choices"], json!([]));

    // A client that goes away mid-stream: slow chunks, read one, hang up.
    env.openai.set_chunk_delay(Duration::from_millis(300));
    let mut body = chat("gpt-5.4-mini", "a b c d e f g h i j k l");
    body["stream"] = json!(true);
    let resp = env
        .http
        .post(format!("{}/v1/chat/completions", env.gw.base_url))
        .json(&body)
        .send()
        .await
        .unwrap();
    let id = request_id(resp.headers());
    let mut chunks = resp.bytes_stream();
    let first = chunks.next().await.unwrap().unwrap();
    assert!(!first.is_empty());
    drop(chunks);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let rows = env.ledger().await;
    let row = row_for(&rows, &id);
    assert_eq!(row.get::<i64, _>("status"), 499);
    assert_eq!(
        row.get::<Option<String>, _>("error_code").as_deref(),
        Some("cancelled")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_reloads_on_sighup_and_an_invalid_one_is_refused() {
    let env = start().await;
    let backend = |h: &reqwest::header::HeaderMap| {
        h.get("x-watershed-backend")
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let (status, h, _) = env.post(&chat("gpt-5.4-mini", "hi"), None).await;
    assert_eq!(status, 200);
    assert_eq!(backend(&h).as_deref(), Some("gpt-5.4-mini"));

    // The platform team points the route at Anthropic and sends SIGHUP.
    let path = env.gw.config_path();
    let original = std::fs::read_to_string(&path).unwrap();
    let edited = original.replace(
        "    to: [gpt-5.4-mini]\n    fallback: [claude-sonnet-4.6]",
        "    to: [claude-sonnet-4.6]",
    );
    assert_ne!(edited, original);
    std::fs::write(&path, &edited).unwrap();
    env.gw.signal("HUP").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, h, body) = env.post(&chat("gpt-5.4-mini", "hi"), None).await;
        assert_eq!(status, 200, "{body}");
        if backend(&h).as_deref() == Some("claude-sonnet-4.6") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "reload never applied");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Requests sent before the reload took effect went to OpenAI; none may after.
    let reached_openai = env.openai.request_count();

    // A config that would send confidential traffic to OpenAI is refused with its
    // position, and the last good one stays in force.
    let leaky = edited.replace(
        "  - name: confidential-stays-home\n    when: { privacy: \">= confidential\" }\n    to: [local]\n",
        "",
    );
    assert_ne!(leaky, edited);
    std::fs::write(&path, &leaky).unwrap();
    env.gw.signal("HUP").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !env.gw.log_text().contains("configuration refused") {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            env.gw.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = env.gw.log_text();
    assert!(log.contains("watershed.yaml:"), "{log}");
    assert!(log.contains("trust boundary"), "{log}");
    let (status, h, _) = env.post(&chat("gpt-5.4-mini", "hi"), None).await;
    assert_eq!(status, 200);
    assert_eq!(backend(&h).as_deref(), Some("claude-sonnet-4.6"));
    let (status, _, _) = env
        .post(&chat("gpt-5.4-mini", "secret"), Some("confidential"))
        .await;
    assert_eq!(status, 503, "confidential traffic must still stay home");
    assert_eq!(
        env.openai.request_count(),
        reached_openai,
        "a request reached OpenAI after the reload"
    );
    let metrics = env
        .http
        .get(format!("{}/metrics", env.gw.base_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("watershed_config_reloads_total{result=\"refused\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("watershed_config_reloads_total{result=\"applied\"}"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detected_personal_data_raises_the_level_and_stays_home() {
    let env = start().await;
    // No header (the default is internal), but the prompt holds an e-mail
    // address and a cloud key: the request is restricted and may only go to
    // the local model, which cannot answer in this setup.
    let (status, h, body) = env
        .post(
            &chat(
                "gpt-5.4-mini",
                "mail jane.doe@example.com the key AKIAIOSFODNN7EXAMPLE",
            ),
            None,
        )
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        env.openai.request_count(),
        0,
        "personal data reached OpenAI"
    );
    assert_eq!(
        env.anthropic.request_count(),
        0,
        "personal data reached Anthropic"
    );
    // The same model without personal data goes to OpenAI.
    let (status, h2, _) = env.post(&chat("gpt-5.4-mini", "hello there"), None).await;
    assert_eq!(status, 200);
    assert_eq!(env.openai.request_count(), 1);
    let first = request_id(&h);
    let second = request_id(&h2);
    let rows = env.ledger().await;
    assert_eq!(
        row_for(&rows, &first).get::<String, _>("privacy"),
        "restricted"
    );
    assert_eq!(
        row_for(&rows, &first).get::<String, _>("route"),
        "confidential-stays-home"
    );
    assert_eq!(
        row_for(&rows, &second).get::<String, _>("privacy"),
        "internal"
    );
    let d: Option<f64> = row_for(&rows, &second).get("difficulty");
    assert!(d.is_some_and(|d| (0.0..=1.0).contains(&d)), "{d:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_can_live_in_postgresql() {
    let base = std::env::var("WATERSHED_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let schema = format!("e2e_gateway_{}", std::process::id());
    let pool = sqlx::PgPool::connect(&base).await.unwrap();
    sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .execute(&pool)
        .await
        .unwrap();
    let openai = MockUpstream::openai().await;
    let anthropic = MockUpstream::anthropic().await;
    let yaml = config(&openai.base_url, &anthropic.base_url, "").replace(
        "sqlite://{dir}/ledger.db",
        &format!("{base}?schema={schema}"),
    );
    let gw = Gateway::start(
        "e2e-pg",
        &yaml,
        &[
            ("E2E_OPENAI_KEY", "sk-openai"),
            ("E2E_ANTHROPIC_KEY", "sk-ant"),
        ],
    )
    .unwrap();
    gw.wait_ready(Duration::from_secs(30)).await.unwrap();
    let http = reqwest::Client::new();
    let mut ids = Vec::new();
    for model in ["gpt-5.4-mini", "claude-sonnet-4.6"] {
        let resp = http
            .post(format!("{}/v1/chat/completions", gw.base_url))
            .json(&chat(model, "hello"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        ids.push(request_id(resp.headers()));
    }
    gw.stop().unwrap();
    let rows = sqlx::query(&format!(
        "SELECT request_id, backend, cost_usd FROM \"{schema}\".ledger ORDER BY ts_ms"
    ))
    .fetch_all(&pool)
    .await
    .unwrap();
    let got: Vec<String> = rows.iter().map(|r| r.get("request_id")).collect();
    assert_eq!(got, ids);
    let backends: Vec<String> = rows.iter().map(|r| r.get("backend")).collect();
    assert_eq!(backends, ["gpt-5.4-mini", "claude-sonnet-4.6"]);
    assert!(rows.iter().all(|r| r.get::<f64, _>("cost_usd") > 0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_price_in_force_today_is_charged() {
    let openai = MockUpstream::openai().await;
    let anthropic = MockUpstream::anthropic().await;
    // On the gateway's clock it is the last day of February in a leap year:
    // the price that took effect on the 1st is in force, the one from
    // 1 March is not yet, whatever the real date is.
    let pricing = "pricing:\n  gpt-5.4-mini:\n    - { input: 9.0, output: 9.0, effective_from: 2020-01-01 }\n    - { input: 1.0, output: 2.0, effective_from: 2028-02-01 }\n    - { input: 100.0, output: 200.0, effective_from: 2028-03-01 }\n";
    let gw = Gateway::start(
        "e2e-prices",
        &config(&openai.base_url, &anthropic.base_url, pricing),
        &[
            ("E2E_OPENAI_KEY", "sk-openai"),
            ("E2E_ANTHROPIC_KEY", "sk-ant"),
            (
                watershed_dashboards::clock::CLOCK_START_ENV,
                "2028-02-29T12:00:00Z",
            ),
        ],
    )
    .unwrap();
    gw.wait_ready(Duration::from_secs(30)).await.unwrap();
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", gw.base_url))
        .json(&chat("gpt-5.4-mini", "what does this cost"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let charged: f64 = resp.headers()["x-watershed-cost-usd"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    let p = body["usage"]["prompt_tokens"].as_f64().unwrap();
    let c = body["usage"]["completion_tokens"].as_f64().unwrap();
    assert!(p > 0.0 && c > 0.0, "{body}");
    let expected = (p * 1.0 + c * 2.0) / 1e6;
    assert!((charged - expected).abs() < 1e-8, "{charged} vs {expected}");
    gw.stop().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_retry_after_and_decision_headers_reach_error_answers() {
    let env = start().await;
    // A 429 from the only target: its Retry-After is passed on, and the error
    // says which route and backend it came from.
    env.anthropic.fail_next(1, Failure::Status(429));
    let (status, h, body) = env.post(&chat("claude-sonnet-4.6", "x"), None).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(h["retry-after"], "1");
    assert_eq!(h["x-watershed-route"], "anthropic-only");
    assert_eq!(h["x-watershed-backend"], "claude-sonnet-4.6");
    assert!(h.contains_key("x-request-id"));
    // 503 too, in Anthropic's wire format.
    env.anthropic.fail_next(1, Failure::Status(503));
    let resp = env
        .http
        .post(format!("{}/v1/messages", env.gw.base_url))
        .json(&json!({"model": "claude-sonnet-4.6", "max_tokens": 8, "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    assert_eq!(resp.headers()["x-watershed-route"], "anthropic-only");
    assert_eq!(resp.headers()["x-watershed-backend"], "claude-sonnet-4.6");
    // Before a route is chosen there is none to name.
    let (status, h, _) = env.post(&chat("no-such-model", "x"), None).await;
    assert_eq!(status, 404);
    assert!(h.contains_key("x-request-id"));
    assert!(!h.contains_key("x-watershed-backend"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_sequences_are_named_in_anthropic_answers_plain_and_streamed() {
    let env = start().await;
    let body = json!({
        "model": "claude-sonnet-4.6", "max_tokens": 32,
        "stop_sequences": ["STOP"],
        "messages": [{"role": "user", "content": "one two STOP three"}]
    });
    let url = format!("{}/v1/messages", env.gw.base_url);
    let plain: Value = env
        .http
        .post(&url)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(plain["stop_reason"], "stop_sequence", "{plain}");
    assert_eq!(plain["stop_sequence"], "STOP", "{plain}");
    assert_eq!(plain["content"][0]["text"], "echo: one two ");

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let text = env
        .http
        .post(&url)
        .json(&streamed)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let data: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let start = data.iter().find(|d| d["type"] == "message_start").unwrap();
    let delta = data.iter().find(|d| d["type"] == "message_delta").unwrap();
    assert_eq!(delta["delta"]["stop_reason"], "stop_sequence", "{text}");
    assert_eq!(delta["delta"]["stop_sequence"], "STOP", "{text}");
    // One input count, whichever event a client reads it from.
    assert_eq!(
        start["message"]["usage"]["input_tokens"], delta["usage"]["input_tokens"],
        "{text}"
    );

    // A natural end is end_turn with no sequence.
    let natural = json!({"model": "claude-sonnet-4.6", "max_tokens": 32, "messages": [{"role": "user", "content": "hi"}]});
    let v: Value = env
        .http
        .post(&url)
        .json(&natural)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["stop_reason"], "end_turn");
    assert!(v["stop_sequence"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_retrieve_unknown_endpoints_and_wrong_methods() {
    let env = start().await;
    let get = |path: &str| env.http.get(format!("{}{path}", env.gw.base_url)).send();
    let resp = get("/v1/models/claude-sonnet-4.6").await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["id"], "claude-sonnet-4.6");
    assert_eq!(v["object"], "model");
    let resp = get("/v1/models/auto").await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);

    let resp = get("/v1/models/gpt-6").await.unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(error_shape(&v).0, "model_not_found", "{v}");

    let resp = get("/v1/nope").await.unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    let v: Value = resp.json().await.unwrap();
    let (code, message) = error_shape(&v);
    assert_eq!(code, "unknown_endpoint", "{v}");
    assert!(message.contains("/v1/nope"), "{v}");
    assert_eq!(v["error"]["type"], "invalid_request_error");

    let resp = get("/v1/chat/completions").await.unwrap();
    assert_eq!(resp.status().as_u16(), 405);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(error_shape(&v).0, "method_not_allowed", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpriced_target_is_warned_about_and_its_requests_counted() {
    let openai = MockUpstream::openai().await;
    let cfg = format!(
        r#"version: 1
ledger: {{ url: "sqlite://{{dir}}/ledger.db" }}
models:
  local:
    engine: local
    gguf: "{{dir}}/does-not-exist.gguf"
  house:
    provider: openai-compatible
    base_url: "{}"
    model: house-model-7b
routes:
  - name: home
    when: {{ privacy: ">= confidential" }}
    to: [local]
  - name: all
    to: [house]
"#,
        openai.base_url
    );
    let gw = Gateway::start("e2e-unpriced", &cfg, &[]).unwrap();
    gw.wait_ready(Duration::from_secs(30)).await.unwrap();
    assert!(
        gw.log_text().contains("target \"house\" has no price"),
        "{}",
        gw.log_text()
    );
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{}/v1/chat/completions", gw.base_url))
        .json(&chat("house", "hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let metrics = http
        .get(format!("{}/metrics", gw.base_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("watershed_unpriced_requests_total{backend=\"house\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_tokens_is_routed_like_a_message_and_says_when_it_estimates() {
    let env = start().await;
    let url = format!("{}/v1/messages/count_tokens", env.gw.base_url);
    let body = |model: &str| json!({"model": model, "system": "be brief", "messages": [{"role": "user", "content": "one two three"}]});
    // Anthropic targets: forwarded to the upstream's count_tokens.
    let resp = env
        .http
        .post(&url)
        .json(&body("claude-sonnet-4.6"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let h = resp.headers().clone();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v, json!({"input_tokens": 5}));
    assert_eq!(h["x-watershed-route"], "anthropic-only");
    assert_eq!(h["x-watershed-backend"], "claude-sonnet-4.6");
    assert!(!h.contains_key("x-watershed-estimate"));
    let sent = env.anthropic.last_request().unwrap();
    assert_eq!(sent.path, "/v1/messages/count_tokens");
    assert_eq!(sent.header("x-api-key"), Some("sk-ant"));

    // OpenAI targets cannot count: an estimate, and it says so.
    let before = env.openai.request_count();
    let resp = env
        .http
        .post(&url)
        .json(&body("gpt-5.4-mini"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["x-watershed-estimate"], "true");
    assert_eq!(resp.headers()["x-watershed-backend"], "gpt-5.4-mini");
    let v: Value = resp.json().await.unwrap();
    assert!(v["input_tokens"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(env.openai.request_count(), before);

    // Confidential: only the local engine may count it, and it is down, so
    // the count fails closed and nothing leaves.
    let anthropic_before = env.anthropic.request_count();
    let resp = env
        .http
        .post(&url)
        .header("x-watershed-privacy", "confidential")
        .json(&body("claude-sonnet-4.6"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(
        resp.headers()["x-watershed-route"],
        "confidential-stays-home"
    );
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(env.anthropic.request_count(), anthropic_before);
}
