//! Request traces from the real binary to an OTLP/HTTP receiver in the test,
//! which decodes what arrives with the official protobuf types: one span per
//! request that reached dispatch — answered by the in-process engine
//! (INTERNAL) or a remote API (CLIENT), streamed, failed or abandoned by its
//! client — carrying the GenAI attributes and Watershed's own, with the same
//! tokens and cost as the ledger row; a caller's `traceparent` is the parent.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use serde_json::{json, Value};
use sqlx::Row;
use watershed_tests::harness::{test_model, Gateway};
use watershed_tests::mock::otlp::{OtlpReceiver, ReceivedSpan, SpanKind, StatusCode};
use watershed_tests::mock::{Failure, MockUpstream};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

fn config(model: &str, openai: &str, telemetry: &str) -> String {
    format!(
        r#"version: 1
ledger: {{ url: "sqlite://{{dir}}/ledger.db" }}
{telemetry}
models:
  local:
    engine: local
    gguf: "{model}"
    context_tokens: 1024
    parallel: 2
  gpt-5.4-mini:
    provider: openai
    base_url: "{openai}"
    api_key_env: E2E_OPENAI_KEY
    timeout_ms: 5000
fleet: {{ gpus: 1, gpu_hour_usd: 3.6 }}
counterfactual: {{ all_closed: gpt-5.4-mini }}
routes:
  - name: confidential-stays-home
    when: {{ privacy: ">= confidential" }}
    to: [local]
  - name: remote
    when: {{ model: gpt-5.4-mini }}
    to: [gpt-5.4-mini]
  - name: home
    to: [local]
"#
    )
}

fn chat(model: &str, text: &str, max_tokens: u32, temperature: f64) -> Value {
    json!({
        "model": model,
        "messages": [{"role": "user", "content": text}],
        "max_tokens": max_tokens,
        "temperature": temperature,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

struct Sent {
    id: String,
    status: u16,
    body: Value,
}

async fn post(
    http: &reqwest::Client,
    gw: &Gateway,
    body: &Value,
    traceparent: Option<&str>,
) -> Sent {
    let mut req = http
        .post(format!("{}/v1/chat/completions", gw.base_url))
        .json(body);
    if let Some(tp) = traceparent {
        req = req.header("traceparent", tp).header("tracestate", "acme=1");
    }
    let resp = req.send().await.unwrap();
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    let status = resp.status().as_u16();
    let body = if body["stream"] == json!(true) {
        // The last data line before [DONE] holds the usage.
        let text = resp.text().await.unwrap();
        let datas: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .collect();
        assert_eq!(datas.last(), Some(&"[DONE]"), "{text}");
        serde_json::from_str(datas[datas.len() - 2]).unwrap()
    } else {
        resp.json().await.unwrap()
    };
    Sent { id, status, body }
}

/// The attributes every span carries, checked against its ledger row.
fn assert_matches_ledger(span: &ReceivedSpan, row: &sqlx::sqlite::SqliteRow) {
    let id = row.get::<String, _>("request_id");
    assert_eq!(
        span.resource_str("service.name"),
        Some("watershed-e2e"),
        "{id}"
    );
    assert_eq!(span.scope_name, "watershed");
    assert_eq!(span.str("gen_ai.operation.name"), Some("chat"));
    assert_eq!(
        span.str("watershed.route"),
        Some(row.get::<String, _>("route").as_str())
    );
    assert_eq!(
        span.str("watershed.privacy"),
        Some(row.get::<String, _>("privacy").as_str())
    );
    assert_eq!(
        span.str("watershed.backend"),
        Some(row.get::<String, _>("backend").as_str())
    );
    assert_eq!(
        span.int("watershed.attempts"),
        Some(row.get::<i64, _>("attempts"))
    );
    assert_eq!(
        span.int("watershed.status"),
        Some(row.get::<i64, _>("status"))
    );
    assert_eq!(
        span.f64("watershed.cost_usd"),
        Some(row.get::<f64, _>("cost_usd")),
        "{id}"
    );
    assert_eq!(
        span.f64("watershed.counterfactual_usd"),
        Some(row.get::<f64, _>("counterfactual_usd")),
        "{id}"
    );
    assert_eq!(
        span.f64("watershed.difficulty"),
        row.get::<Option<f64>, _>("difficulty")
    );
    assert_eq!(
        span.str("gen_ai.provider.name"),
        Some(row.get::<String, _>("backend_kind").as_str())
    );
    assert_eq!(
        span.strings("gen_ai.response.finish_reasons"),
        row.get::<Option<String>, _>("finish_reason")
            .map(|r| vec![r])
    );
    assert_eq!(
        span.str("error.type"),
        row.get::<Option<String>, _>("error_code").as_deref()
    );
    // The span lasts as long as the ledger says the request did.
    let s = &span.span;
    assert!(s.end_time_unix_nano >= s.start_time_unix_nano);
    let span_ms = (s.end_time_unix_nano - s.start_time_unix_nano) as f64 / 1e6;
    let latency_ms = row.get::<f64, _>("latency_ms");
    assert!(
        (span_ms - latency_ms).abs() < 5.0,
        "{id}: span {span_ms} ms, ledger {latency_ms} ms"
    );
    assert_eq!(s.trace_id.len(), 16);
    assert_eq!(s.span_id.len(), 8);
    match row.get::<Option<String>, _>("error_code") {
        None => {
            assert_eq!(
                s.status.as_ref().map_or(0, |st| st.code),
                StatusCode::Unset as i32
            );
            assert_eq!(
                span.int("gen_ai.usage.input_tokens"),
                Some(row.get::<i64, _>("prompt_tokens"))
            );
            assert_eq!(
                span.int("gen_ai.usage.output_tokens"),
                Some(row.get::<i64, _>("completion_tokens"))
            );
            assert_eq!(
                span.str("gen_ai.response.model"),
                Some(row.get::<String, _>("model").as_str())
            );
        }
        Some(code) => {
            let st = s.status.as_ref().unwrap();
            assert_eq!(st.code, StatusCode::Error as i32, "{id}");
            assert_eq!(st.message, code);
            assert_eq!(span.str("gen_ai.response.model"), None);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_leaves_one_span_with_the_ledger_s_numbers() {
    let receiver = OtlpReceiver::start().await.unwrap();
    let openai = MockUpstream::openai().await;
    let model = test_model().unwrap();
    let telemetry = format!(
        "telemetry: {{ otlp_endpoint: \"{}\", service_name: watershed-e2e }}",
        receiver.endpoint
    );
    let gw = Gateway::start(
        "e2e-otel",
        &config(&model.display().to_string(), &openai.base_url, &telemetry),
        &[("E2E_OPENAI_KEY", "sk-openai")],
    )
    .unwrap();
    gw.wait_ready(Duration::from_secs(60)).await.unwrap();
    assert!(
        gw.log_text().contains("exporting traces over OTLP/HTTP"),
        "{}",
        gw.log_text()
    );
    let http = reqwest::Client::new();
    let t0 = now_nanos();

    // The in-process engine, inside the caller's trace.
    let traceparent = format!("00-{TRACE_ID}-{PARENT_ID}-01");
    let local = post(
        &http,
        &gw,
        &chat("local", "Say hello.", 8, 0.0),
        Some(&traceparent),
    )
    .await;
    assert_eq!(local.status, 200, "{}", local.body);
    // A remote API, answered whole.
    let remote = post(
        &http,
        &gw,
        &chat("gpt-5.4-mini", "one two three", 16, 0.5),
        None,
    )
    .await;
    assert_eq!(remote.status, 200, "{}", remote.body);
    // A remote API, streamed.
    let mut body = chat("gpt-5.4-mini", "four five six seven", 16, 0.5);
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let streamed = post(&http, &gw, &body, None).await;
    assert_eq!(streamed.status, 200);
    // A remote API that fails: the first try and both retries.
    openai.fail_next(3, Failure::Status(500));
    let failed = post(&http, &gw, &chat("gpt-5.4-mini", "x", 16, 0.5), None).await;
    assert_eq!(failed.status, 502, "{}", failed.body);
    // A caller that decided not to sample: answered, but no span.
    let unsampled = post(
        &http,
        &gw,
        &chat("gpt-5.4-mini", "quiet", 16, 0.5),
        Some(&format!("00-{TRACE_ID}-{PARENT_ID}-00")),
    )
    .await;
    assert_eq!(unsampled.status, 200);
    // A client that goes away mid-stream.
    openai.set_chunk_delay(Duration::from_millis(300));
    let mut body = chat("gpt-5.4-mini", "a b c d e f g h i j k l", 16, 0.5);
    body["stream"] = json!(true);
    let resp = http
        .post(format!("{}/v1/chat/completions", gw.base_url))
        .json(&body)
        .send()
        .await
        .unwrap();
    let cancelled_id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    let mut chunks = resp.bytes_stream();
    assert!(!chunks.next().await.unwrap().unwrap().is_empty());
    drop(chunks);
    tokio::time::sleep(Duration::from_millis(800)).await;

    // Shutdown exports what is still queued.
    let dir = gw.dir.clone();
    gw.stop().unwrap();
    let t1 = now_nanos();
    assert_eq!(receiver.refused(), Vec::<String>::new());
    let spans = receiver.spans();
    let by_id: HashMap<String, ReceivedSpan> = spans
        .iter()
        .map(|s| (s.str("watershed.request_id").unwrap().to_owned(), s.clone()))
        .collect();
    assert_eq!(
        spans.len(),
        5,
        "one span per sampled request: {:?}",
        by_id.keys()
    );
    assert_eq!(by_id.len(), 5, "span request ids are distinct");
    assert!(!by_id.contains_key(&unsampled.id));

    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}/ledger.db", dir.display()))
        .await
        .unwrap();
    let rows = sqlx::query("SELECT * FROM ledger")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(rows.len(), 6);
    let row = |id: &str| {
        rows.iter()
            .find(|r| r.get::<String, _>("request_id") == id)
            .unwrap_or_else(|| panic!("no ledger row for {id}"))
    };
    for (id, span) in &by_id {
        assert_matches_ledger(span, row(id));
        assert!(span.span.start_time_unix_nano >= t0 && span.span.end_time_unix_nano <= t1);
    }

    // Local: INTERNAL, the caller's trace and parent, the engine's exact counts.
    let s = &by_id[&local.id];
    assert_eq!(s.span.kind, SpanKind::Internal as i32);
    assert_eq!(s.span.name, "chat local");
    assert_eq!(hex(&s.span.trace_id), TRACE_ID);
    assert_eq!(hex(&s.span.parent_span_id), PARENT_ID);
    assert_eq!(s.span.trace_state, "acme=1");
    assert_eq!(s.str("gen_ai.provider.name"), Some("llama.cpp"));
    assert_eq!(s.str("gen_ai.request.model"), Some("local"));
    assert_eq!(s.int("gen_ai.request.max_tokens"), Some(8));
    assert_eq!(s.f64("gen_ai.request.temperature"), Some(0.0));
    assert_eq!(s.attr("server.address"), None);
    assert_eq!(
        s.int("gen_ai.usage.input_tokens"),
        local.body["usage"]["prompt_tokens"].as_i64()
    );
    assert_eq!(
        s.int("gen_ai.usage.output_tokens"),
        local.body["usage"]["completion_tokens"].as_i64()
    );
    assert!(s.int("gen_ai.usage.output_tokens").unwrap() > 0);
    assert!(
        s.f64("watershed.cost_usd").unwrap() > 0.0,
        "fleet time is charged"
    );

    // Remote: CLIENT, a new trace, the upstream's address and usage.
    let port: i64 = openai
        .base_url
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches("/v1")
        .parse()
        .unwrap();
    for (sent, stream) in [(&remote, false), (&streamed, true)] {
        let s = &by_id[&sent.id];
        assert_eq!(s.span.kind, SpanKind::Client as i32, "{}", sent.id);
        assert_eq!(s.span.name, "chat gpt-5.4-mini");
        assert!(s.span.parent_span_id.is_empty());
        assert_ne!(hex(&s.span.trace_id), TRACE_ID);
        assert_eq!(s.str("gen_ai.provider.name"), Some("openai"));
        assert_eq!(s.str("server.address"), Some("127.0.0.1"));
        assert_eq!(s.int("server.port"), Some(port));
        assert_eq!(s.f64("gen_ai.request.temperature"), Some(0.5));
        assert_eq!(s.int("gen_ai.request.max_tokens"), Some(16));
        assert_eq!(s.bool("watershed.stream"), Some(stream));
        assert_eq!(
            s.int("gen_ai.usage.input_tokens"),
            sent.body["usage"]["prompt_tokens"].as_i64(),
            "{}",
            sent.body
        );
        assert_eq!(
            s.int("gen_ai.usage.output_tokens"),
            sent.body["usage"]["completion_tokens"].as_i64()
        );
        assert!(s.f64("watershed.cost_usd").unwrap() > 0.0);
        assert!(s.f64("watershed.counterfactual_usd").unwrap() > 0.0);
        assert_eq!(row(&sent.id).get::<i64, _>("stream"), i64::from(stream));
    }
    assert_ne!(
        by_id[&remote.id].span.trace_id,
        by_id[&streamed.id].span.trace_id
    );

    // Failed: an error status naming the code, no response model.
    let s = &by_id[&failed.id];
    assert_eq!(s.span.kind, SpanKind::Client as i32);
    assert_eq!(s.str("error.type"), Some("upstream_error"));
    assert_eq!(s.span.status.as_ref().unwrap().message, "upstream_error");

    // Cancelled: an error status, what was generated so far.
    let s = &by_id[&cancelled_id];
    assert_eq!(s.str("error.type"), Some("cancelled"));
    assert_eq!(
        s.strings("gen_ai.response.finish_reasons"),
        Some(vec!["cancelled".to_owned()])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standard_environment_variables_turn_export_on() {
    let receiver = OtlpReceiver::start().await.unwrap();
    let openai = MockUpstream::openai().await;
    let gw = Gateway::start(
        "e2e-otel-env",
        &config("{dir}/not-loaded.gguf", &openai.base_url, ""),
        &[
            ("E2E_OPENAI_KEY", "sk-openai"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint.as_str()),
            ("OTEL_SERVICE_NAME", "from-env"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    )
    .unwrap();
    gw.wait_ready(Duration::from_secs(30)).await.unwrap();
    let http = reqwest::Client::new();
    let mut ids = Vec::new();
    for text in ["one", "two three"] {
        let sent = post(&http, &gw, &chat("gpt-5.4-mini", text, 16, 1.0), None).await;
        assert_eq!(sent.status, 200);
        ids.push(sent.id);
    }
    // Batches go out while the gateway runs, not only at shutdown.
    let spans = receiver.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(spans.len(), 2, "{}", gw.log_text());
    for (s, id) in spans.iter().zip(&ids) {
        assert_eq!(s.resource_str("service.name"), Some("from-env"));
        assert_eq!(s.str("watershed.request_id"), Some(id.as_str()));
        assert_eq!(s.span.kind, SpanKind::Client as i32);
    }
    gw.stop().unwrap();
    assert_eq!(receiver.spans().len(), 2);
    assert_eq!(receiver.refused(), Vec::<String>::new());
}
