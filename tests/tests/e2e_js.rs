//! End to end under Node: the official `openai` JavaScript client and the
//! Vercel AI SDK (`generateText`, `streamText`, `generateObject`, tools) driven
//! against the real `watershed` binary — plain and streamed chat and a JSON
//! schema answer on the local model, tool calls plain and streamed on a mock
//! closed upstream — then every request id the clients saw is looked up in the
//! ledger. `scripts/setup.sh --test` installs the clients (`tests/js`,
//! `npm ci`); `WATERSHED_NODE` names another `node` than the one on PATH.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use sqlx::Row;
use watershed_tests::harness::{test_model, workspace_root, Gateway};
use watershed_tests::mock::MockUpstream;

fn config(model: &str, openai_url: &str) -> String {
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
    base_url: "{openai_url}"
    api_key_env: E2E_OPENAI_KEY
routes:
  - name: confidential-stays-home
    when: {{ privacy: ">= confidential" }}
    to: [local]
  - name: closed-by-name
    when: {{ model: gpt-5.4-mini }}
    to: [gpt-5.4-mini]
    fallback: [local]
  - name: everything-else
    to: [local]
"#
    )
}

fn ids(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().flat_map(ids).collect(),
        _ => panic!("not a request id: {v}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_js_client_and_vercel_ai_sdk_against_local_model_and_mock_upstream() {
    let js = workspace_root().join("tests/js");
    assert!(
        js.join("node_modules/openai").exists() && js.join("node_modules/ai").exists(),
        "the JS clients are missing: run scripts/setup.sh --test (npm ci in tests/js)"
    );
    let model = test_model().unwrap();
    let mock = MockUpstream::openai().await;
    let gw = Gateway::start(
        "e2e-js",
        &config(&model.display().to_string(), &mock.base_url),
        &[("E2E_OPENAI_KEY", "sk-test-js")],
    )
    .unwrap();
    gw.wait_ready(Duration::from_secs(120)).await.unwrap();

    let node = std::env::var("WATERSHED_NODE").unwrap_or_else(|_| "node".into());
    let out = tokio::task::spawn_blocking({
        let base = gw.base_url.clone();
        move || {
            Command::new(node)
                .current_dir(&js)
                .args(["clients.mjs", base.as_str(), "local", "gpt-5.4-mini"])
                .output()
        }
    })
    .await
    .unwrap()
    .unwrap();
    assert!(
        out.status.success(),
        "JS clients failed:\n{}\n--- gateway log ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        gw.log_text()
    );
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();

    // openai JS: chat on the local model, plain and streamed, with usage.
    let chat = &seen["openai_chat"];
    assert_eq!(chat["backend"], "local", "{chat}");
    assert!(!chat["text"].as_str().unwrap().is_empty(), "{chat}");
    assert!(chat["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    let stream = &seen["openai_stream"];
    assert_eq!(stream["backend"], "local");
    assert!(stream["chunks"].as_u64().unwrap() > 2, "{stream}");
    assert!(!stream["text"].as_str().unwrap().is_empty());
    assert!(
        stream["usage"]["completion_tokens"].as_u64().unwrap() > 0,
        "include_usage gives the last chunk usage: {stream}"
    );
    // openai JS: a tool call, its result sent back, the final answer; streamed
    // fragments assembled into one call with a named tool_choice.
    let tools = &seen["openai_tools"];
    assert_eq!(tools["finish_reason"], "tool_calls", "{tools}");
    assert_eq!(tools["call_name"], "get_weather");
    assert_eq!(tools["call_arguments"]["query"], "weather in Paris");
    assert_eq!(tools["answer"], "echo: tool said sunny, 21 C", "{tools}");
    let ts = &seen["openai_tools_stream"];
    assert_eq!(ts["finish_reason"], "tool_calls", "{ts}");
    assert_eq!(ts["call_name"], "get_weather");
    assert_eq!(ts["call_arguments"]["query"], "weather in Oslo");
    assert!(ts["call_id"].as_str().is_some_and(|s| !s.is_empty()));

    // Vercel AI SDK on the local model.
    let gt = &seen["ai_generate_text"];
    assert!(!gt["text"].as_str().unwrap().is_empty(), "{gt}");
    assert!(gt["usage"]["outputTokens"].as_u64().unwrap() > 0, "{gt}");
    let st = &seen["ai_stream_text"];
    assert!(st["parts"].as_u64().unwrap() > 1, "{st}");
    assert!(st["usage"]["outputTokens"].as_u64().unwrap() > 0, "{st}");
    // generateObject sends a JSON schema; the local engine's grammar makes the
    // answer parse into it (the SDK validates it against the schema too).
    let obj = &seen["ai_generate_object"]["object"];
    assert!(obj["city"].is_string(), "{obj}");
    assert!(
        obj["population"].is_i64() || obj["population"].is_u64(),
        "{obj}"
    );
    // Vercel AI SDK tools on the mock upstream: the SDK ran the tool with the
    // arguments the model gave and sent the result back.
    let at = &seen["ai_tools"];
    assert_eq!(at["steps"], 2, "{at}");
    assert_eq!(at["first_finish_reason"], "tool-calls", "{at}");
    assert_eq!(at["tool_inputs"][0]["query"], "weather in Rome", "{at}");
    assert_eq!(at["text"], "echo: tool said sunny, 21 C", "{at}");

    // The AI SDK's default provider, over /v1/responses.
    let rt = &seen["ai_responses_text"];
    assert!(!rt["text"].as_str().unwrap().is_empty(), "{rt}");
    assert!(rt["usage"]["outputTokens"].as_u64().unwrap() > 0, "{rt}");
    let rs = &seen["ai_responses_stream"];
    assert!(!rs["text"].as_str().unwrap().is_empty(), "{rs}");
    assert!(rs["usage"]["outputTokens"].as_u64().unwrap() > 0, "{rs}");
    let rtools = &seen["ai_responses_tools"];
    assert_eq!(rtools["steps"], 2, "{rtools}");
    assert_eq!(
        rtools["tool_inputs"][0]["query"], "weather in Oslo",
        "{rtools}"
    );
    assert_eq!(rtools["text"], "echo: tool said snow, -3 C", "{rtools}");

    // The mock upstream received exactly the tool requests (2 + 1 + 2 + 2).
    assert_eq!(mock.request_count(), 7);
    let upstream = mock.requests();
    assert!(upstream
        .iter()
        .all(|r| r.header("authorization") == Some("Bearer sk-test-js")));

    // Every request id the clients saw has its one ledger row.
    let expected: HashMap<String, &str> = [
        ("openai_chat", "request_id", "local"),
        ("openai_stream", "request_id", "local"),
        ("openai_tools", "request_ids", "gpt-5.4-mini"),
        ("openai_tools_stream", "request_id", "gpt-5.4-mini"),
        ("ai_generate_text", "request_id", "local"),
        ("ai_stream_text", "request_id", "local"),
        ("ai_generate_object", "request_id", "local"),
        ("ai_tools", "request_ids", "gpt-5.4-mini"),
        ("ai_responses_text", "request_id", "local"),
        ("ai_responses_stream", "request_id", "local"),
        ("ai_responses_tools", "request_ids", "gpt-5.4-mini"),
    ]
    .into_iter()
    .flat_map(|(case, field, backend)| {
        ids(&seen[case][field])
            .into_iter()
            .map(move |id| (id, backend))
    })
    .collect();
    assert_eq!(expected.len(), 14, "fourteen distinct request ids: {seen}");

    let dir = gw.dir.clone();
    gw.stop().unwrap();
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}/ledger.db", dir.display()))
        .await
        .unwrap();
    let rows = sqlx::query("SELECT request_id, backend, status, completion_tokens FROM ledger")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(rows.len(), expected.len(), "one ledger row per request");
    for row in &rows {
        let id: String = row.get("request_id");
        let backend = expected
            .get(&id)
            .unwrap_or_else(|| panic!("ledger row {id} was not seen by a client"));
        assert_eq!(row.get::<String, _>("backend"), *backend, "{id}");
        assert_eq!(row.get::<i64, _>("status"), 200, "{id}");
        assert!(row.get::<i64, _>("completion_tokens") > 0, "{id}");
    }
}
