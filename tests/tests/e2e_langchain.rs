//! LangChain end to end, past what `e2e_sdk` drives: `ChatOpenAI
//! .with_structured_output(method="json_schema")` against a mock OpenAI
//! upstream and the local model (which constrains its output to the schema
//! with a grammar), and `ChatAnthropic` (langchain-anthropic) against a mock
//! Anthropic upstream — plain, streamed, `bind_tools` plain and streamed,
//! the tool result sent back — with the ledger rows read back.

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
  - name: claude
    when: {{ model: claude }}
    to: [claude]
  - name: everything-else
    to: [local]
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn langchain_json_schema_output_and_chat_anthropic() {
    let model = test_model().unwrap();
    let openai = MockUpstream::openai().await;
    let anthropic = MockUpstream::anthropic().await;
    let gw = Gateway::start(
        "e2e-langchain",
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

    // with_structured_output(method="json_schema") on the mock: the schema
    // went out strict, as the response format, and came back parsed.
    let closed = run_sdk_script(&gw, "langchain_structured.py", &["gpt-5.4-mini"]).await;
    assert_eq!(
        closed["parsed"],
        json!({"name": "Name a colour as JSON."}),
        "{closed}"
    );
    let sent = openai.last_request().unwrap().body;
    assert_eq!(sent["response_format"]["type"], "json_schema", "{sent}");
    assert_eq!(sent["response_format"]["json_schema"]["name"], "Colour");
    assert_eq!(sent["response_format"]["json_schema"]["strict"], true);
    assert_eq!(
        sent["response_format"]["json_schema"]["schema"]["required"],
        json!(["name"])
    );
    // On the local model the grammar makes the output parse into the model.
    let local = run_sdk_script(&gw, "langchain_structured.py", &["local"]).await;
    let name = local["parsed"]["name"].as_str().unwrap();
    let text: Value = serde_json::from_str(local["text"].as_str().unwrap()).unwrap();
    assert_eq!(text["name"], name, "{local}");
    assert_eq!(local["finish_reason"], "stop", "{local}");

    // ChatAnthropic: plain, streamed, bind_tools plain and streamed, the result.
    let a = run_sdk_script(&gw, "langchain_chat_anthropic.py", &["claude"]).await;
    assert_eq!(a["plain"]["text"], "echo: Name a colour of the sky.", "{a}");
    assert_eq!(a["plain"]["stop_reason"], "end_turn");
    assert_eq!(a["stream"]["text"], "echo: Count from one to five.", "{a}");
    assert!(a["stream"]["usage"]["output_tokens"].as_u64().unwrap() > 0);
    assert_eq!(a["tools"]["name"], "get_weather", "{a}");
    assert!(a["tools"]["id"].as_str().unwrap().starts_with("toolu_mock"));
    assert_eq!(a["tools"]["args"], json!({"query": "weather in Rome"}));
    assert_eq!(a["tools_stream"]["name"], "get_weather");
    assert_eq!(a["tools_stream"]["args"], a["tools"]["args"]);
    assert_eq!(a["answer"], "echo: tool said 18C and sunny", "{a}");
    let to_anthropic = anthropic.requests();
    assert_eq!(to_anthropic.len(), 5);
    assert_eq!(to_anthropic[2].body["tools"][0]["name"], "get_weather");
    assert_eq!(to_anthropic[1].body["stream"], true);

    let dir = gw.dir.clone();
    gw.stop().unwrap();
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}/ledger.db", dir.display()))
        .await
        .unwrap();
    let rows = sqlx::query("SELECT backend, status, finish_reason, prompt_tokens, completion_tokens FROM ledger ORDER BY ts_ms")
        .fetch_all(&pool)
        .await
        .unwrap();
    let got: Vec<(String, i64, Option<String>)> = rows
        .iter()
        .map(|r| (r.get("backend"), r.get("status"), r.get("finish_reason")))
        .collect();
    let row = |b: &str, f: &str| (b.to_owned(), 200, Some(f.to_owned()));
    assert_eq!(
        got,
        [
            row("gpt-5.4-mini", "stop"),
            row("local", "stop"),
            row("claude", "stop"),
            row("claude", "stop"),
            row("claude", "tool_calls"),
            row("claude", "tool_calls"),
            row("claude", "stop"),
        ]
    );
    // The ledger's tokens are what LangChain reported.
    let usage = |v: &Value| {
        (
            v["input_tokens"].as_i64().unwrap(),
            v["output_tokens"].as_i64().unwrap(),
        )
    };
    let tokens = |i: usize| {
        (
            rows[i].get::<i64, _>("prompt_tokens"),
            rows[i].get::<i64, _>("completion_tokens"),
        )
    };
    assert_eq!(tokens(0), usage(&closed["usage"]));
    assert_eq!(tokens(1), usage(&local["usage"]));
    assert_eq!(tokens(2), usage(&a["plain"]["usage"]));
    println!(
        "langchain: {} ledger rows; local structured output {}",
        rows.len(),
        local["text"]
    );
}
