//! End to end with the official SDKs' async clients: `openai.AsyncOpenAI`
//! (chat plain and streamed, `chat.completions.parse`, embeddings,
//! `responses` plain and streamed, tool calls plain and streamed) and
//! `anthropic.AsyncAnthropic` (messages plain and streamed, tools,
//! `count_tokens`) against the real binary serving the local model and mock
//! OpenAI and Anthropic upstreams, each client's calls to the two running
//! concurrently; then every call's ledger row is read back and checked
//! against what the SDK saw.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::time::Duration;

use serde_json::{json, Value};
use sqlx::Row;
use watershed_tests::harness::{run_sdk_script, test_model, Gateway};
use watershed_tests::mock::MockUpstream;

fn config(model: &str, openai: &str, anthropic: &str) -> String {
    format!(
        r#"version: 1
ledger: {{ url: "sqlite://{{dir}}/ledger.db" }}
models:
  local:
    engine: local
    gguf: "{model}"
    parallel: 2
    context_tokens: 2048
  gpt-5.4-mini:
    provider: openai
    base_url: "{openai}"
    api_key_env: E2E_OPENAI_KEY
  text-embedding-3-small:
    provider: openai
    base_url: "{openai}"
    api_key_env: E2E_OPENAI_KEY
    embeddings: {{ model: text-embedding-3-small }}
  claude:
    provider: anthropic
    base_url: "{anthropic}"
    api_key_env: E2E_ANTHROPIC_KEY
routes:
  - name: confidential-stays-home
    when: {{ privacy: ">= confidential" }}
    to: [local]
  - name: gpt
    when: {{ model: gpt-5.4-mini }}
    to: [gpt-5.4-mini]
  - name: embed
    when: {{ model: text-embedding-3-small }}
    to: [text-embedding-3-small]
  - name: claude
    when: {{ model: claude }}
    to: [claude]
  - name: everything-else
    to: [local]
"#
    )
}

/// Every object under `v` that records a call (it has a `request_id`),
/// with its path.
fn calls<'a>(path: String, v: &'a Value, out: &mut Vec<(String, &'a Value)>) {
    if let Some(obj) = v.as_object() {
        if obj.contains_key("request_id") {
            out.push((path, v));
            return;
        }
        for (k, child) in obj {
            calls(format!("{path}.{k}"), child, out);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_openai_and_anthropic_clients_against_the_local_model_and_mock_upstreams() {
    let model = test_model().unwrap();
    let openai = MockUpstream::openai().await;
    let anthropic = MockUpstream::anthropic().await;
    let gw = Gateway::start(
        "e2e-sdk-async",
        &config(
            &model.display().to_string(),
            &openai.base_url,
            &anthropic.base_url,
        ),
        &[
            ("E2E_OPENAI_KEY", "sk-openai"),
            ("E2E_ANTHROPIC_KEY", "sk-ant"),
        ],
    )
    .unwrap();
    gw.wait_ready(Duration::from_secs(120)).await.unwrap();

    let o = run_sdk_script(
        &gw,
        "openai_sdk_async.py",
        &["local", "gpt-5.4-mini", "local", "text-embedding-3-small"],
    )
    .await;
    for (side, backend, embedder) in [
        ("local", "local", "local"),
        ("closed", "gpt-5.4-mini", "text-embedding-3-small"),
    ] {
        let s = &o[side];
        for key in [
            "chat",
            "chat_stream",
            "parse",
            "responses",
            "responses_stream",
        ] {
            assert_eq!(s[key]["backend"], backend, "{side}.{key}: {}", s[key]);
        }
        assert_eq!(s["embed"]["backend"], embedder, "{side}: {}", s["embed"]);
        assert_eq!(s["embed"]["vectors"], 2);
        assert!(!s["parse"]["parsed"]["name"].as_str().unwrap().is_empty());
    }
    let closed = &o["closed"];
    assert_eq!(closed["chat"]["text"], "echo: Name a colour of the sky.");
    // The mock answers a json_schema request with an instance of the schema.
    assert_eq!(
        closed["parse"]["parsed"],
        json!({"name": "Name a colour as JSON."})
    );
    assert!(closed["tools"]["plain"]["id"]
        .as_str()
        .unwrap()
        .starts_with("call_mock"));
    assert_eq!(
        closed["tools"]["plain"]["arguments"],
        json!({"query": "weather in Paris"})
    );
    assert_eq!(closed["tools"]["stream"]["name"], "get_weather");
    assert_eq!(
        closed["tools"]["stream"]["arguments"],
        closed["tools"]["plain"]["arguments"]
    );
    assert_eq!(o["bad_request"]["status"], 400);
    assert_eq!(o["bad_request"]["param"], "messages");
    let to_openai = openai.requests();
    assert_eq!(
        to_openai.len(),
        8,
        "5 answers, 2 tool calls, 1 embedding: {:?}",
        to_openai.iter().map(|r| &r.path).collect::<Vec<_>>()
    );
    assert!(to_openai
        .iter()
        .any(|r| r.body["response_format"]["type"] == "json_schema"));

    let a = run_sdk_script(&gw, "anthropic_sdk_async.py", &["local", "claude"]).await;
    for (side, backend) in [("local", "local"), ("closed", "claude")] {
        let s = &a[side];
        assert_eq!(s["plain"]["backend"], backend, "{side}: {s}");
        assert_eq!(s["stream"]["backend"], backend, "{side}: {s}");
        assert!(s["plain"]["output_tokens"].as_u64().unwrap() > 0);
        // count_tokens counts the plain call's prompt as its answer did.
        assert_eq!(s["count_tokens"], s["plain"]["input_tokens"], "{side}: {s}");
    }
    let t = &a["closed"]["tools"];
    assert!(
        t["plain"]["id"].as_str().unwrap().starts_with("toolu_mock"),
        "{t}"
    );
    assert_eq!(t["plain"]["input"], json!({"query": "weather in Oslo"}));
    assert_eq!(t["stream"]["input"], t["plain"]["input"]);
    assert_eq!(t["answer"]["text"], "echo: tool said minus 3", "{t}");
    assert_eq!(t["answer"]["stop_reason"], "end_turn");
    assert_eq!(a["bad_request"]["status"], 400);
    assert_eq!(a["bad_request"]["type"], "error");
    assert_eq!(
        anthropic.requests().len(),
        6,
        "plain, stream, count, 2 tool calls and the answer"
    );

    // Every call the clients made has its ledger row, with the tokens they saw.
    let dir = gw.dir.clone();
    gw.stop().unwrap();
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}/ledger.db", dir.display()))
        .await
        .unwrap();
    let rows = sqlx::query("SELECT * FROM ledger")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(
        rows.len(),
        14 + 7,
        "OpenAI: 6 per model and 2 tool calls; Anthropic: 2 per model and 3 with tools"
    );
    let mut recorded = Vec::new();
    calls("openai".into(), &o, &mut recorded);
    calls("anthropic".into(), &a, &mut recorded);
    assert_eq!(recorded.len(), 12 + 1 + 4 + 1, "{recorded:?}");
    for (path, call) in &recorded {
        let id = call["request_id"].as_str().unwrap();
        let row = rows
            .iter()
            .find(|r| r.get::<String, _>("request_id") == id)
            .unwrap_or_else(|| panic!("no ledger row for {path} ({id})"));
        assert_eq!(row.get::<i64, _>("status"), 200, "{path}");
        assert_eq!(
            row.get::<String, _>("backend"),
            call["backend"].as_str().unwrap(),
            "{path}"
        );
        let prompt = call["prompt_tokens"]
            .as_i64()
            .or_else(|| call["input_tokens"].as_i64())
            .unwrap();
        let completion = call["completion_tokens"]
            .as_i64()
            .or_else(|| call["output_tokens"].as_i64())
            .unwrap();
        // A streamed Messages answer announces its input count in
        // message_start, before a remote backend has counted it (see
        // `MessagesStreamEncoder::start`); the ledger holds the backend's.
        let announced = path.starts_with("anthropic") && path.ends_with(".stream");
        if !announced || call["backend"] == "local" {
            assert_eq!(row.get::<i64, _>("prompt_tokens"), prompt, "{path}");
        }
        assert_eq!(row.get::<i64, _>("completion_tokens"), completion, "{path}");
        let cost: f64 = row.get("cost_usd");
        match call["backend"].as_str().unwrap() {
            "local" => assert_eq!(cost, 0.0, "{path}: local tokens cost no API money"),
            "gpt-5.4-mini" => {
                // $0.75 in / $4.50 out per million tokens.
                let want = (prompt as f64 * 0.75 + completion as f64 * 4.50) / 1e6;
                assert!((cost - want).abs() < 1e-12, "{path}: {cost} want {want}");
            }
            _ => {}
        }
    }
    println!(
        "async clients: {} ledger rows, {} calls checked against them",
        rows.len(),
        recorded.len()
    );
}
