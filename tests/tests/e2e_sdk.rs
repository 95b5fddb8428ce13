//! End to end: the real `watershed` binary, driven by the official `openai`
//! Python SDK against the local model and a mock closed upstream; then the ledger
//! rows are read back and checked against what the SDK saw. Tool calling
//! is driven by both official SDKs against the mocks (OpenAI SDK → Anthropic
//! target, Anthropic SDK → OpenAI target).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use sqlx::Row;
use watershed_tests::harness::{python, run_sdk_script, test_model, workspace_root, Gateway};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_sdk_against_local_model_and_mock_closed_upstream() {
    let model = test_model().unwrap();
    let mock = MockUpstream::openai().await;
    let gw = Gateway::start(
        "e2e-sdk",
        &config(&model.display().to_string(), &mock.base_url),
        &[("E2E_OPENAI_KEY", "sk-test-e2e")],
    )
    .unwrap();
    gw.wait_ready(Duration::from_secs(120)).await.unwrap();

    let script = workspace_root().join("tests/sdk/openai_sdk_e2e.py");
    let out = tokio::task::spawn_blocking({
        let base = gw.base_url.clone();
        move || {
            Command::new(python())
                .arg(script)
                .args([base.as_str(), "local", "gpt-5.4-mini"])
                .output()
        }
    })
    .await
    .unwrap()
    .unwrap();
    assert!(
        out.status.success(),
        "SDK script failed:\n{}\n--- gateway log ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        gw.log_text()
    );
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();

    // What the SDK saw.
    let models: Vec<&str> = seen["models"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        models.contains(&"local") && models.contains(&"gpt-5.4-mini"),
        "{models:?}"
    );
    assert_eq!(seen["local_plain"]["backend"], "local");
    assert_eq!(seen["local_plain"]["route"], "everything-else");
    assert_eq!(seen["closed_plain"]["backend"], "gpt-5.4-mini");
    assert_eq!(seen["closed_plain"]["route"], "closed-by-name");
    assert_eq!(seen["local_stream"]["backend"], "local");
    assert_eq!(seen["closed_stream"]["backend"], "gpt-5.4-mini");
    assert_eq!(seen["bad_request"]["status"], 400);
    assert_eq!(seen["not_found"]["status"], 404);
    assert_eq!(seen["n3"]["status"], 400);
    assert_eq!(seen["retrieved"], "local");
    assert_eq!(seen["retrieve_not_found"]["status"], 404);
    assert_eq!(
        seen["retrieve_not_found"]["body"]["code"], "model_not_found",
        "{}",
        seen["retrieve_not_found"]
    );
    assert_eq!(seen["n3"]["body"]["param"], "n", "{}", seen["n3"]);
    // The mock received the key from the environment variable the config names.
    let upstream = mock.requests();
    assert_eq!(
        upstream.len(),
        2,
        "one plain and one streamed call upstream"
    );
    assert!(upstream
        .iter()
        .all(|r| r.header("authorization") == Some("Bearer sk-test-e2e")));

    // The Anthropic SDK against `/v1/messages`, served by the local model.
    let script = workspace_root().join("tests/sdk/anthropic_sdk_e2e.py");
    let out = tokio::task::spawn_blocking({
        let base = gw.base_url.clone();
        move || {
            Command::new(python())
                .arg(script)
                .args([base.as_str(), "local"])
                .output()
        }
    })
    .await
    .unwrap()
    .unwrap();
    assert!(
        out.status.success(),
        "Anthropic SDK script failed:\n{}\n--- gateway log ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        gw.log_text()
    );
    let anth: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(anth["plain"]["backend"], "local");
    assert!(anth["plain"]["output_tokens"].as_u64().unwrap() > 0);
    assert_eq!(anth["bad_request"]["status"], 400);
    // Counted with the model's own template and tokenizer: what generation counted.
    assert_eq!(
        anth["count_tokens"]["input_tokens"], anth["count_tokens"]["plain_prompt_tokens"],
        "{}",
        anth["count_tokens"]
    );
    assert_eq!(
        anth["stop_sequence"]["plain"], anth["stop_sequence"]["stream"],
        "{}",
        anth["stop_sequence"]
    );
    assert_eq!(
        anth["bad_request"]["body"]["type"], "error",
        "{}",
        anth["bad_request"]
    );

    // Stop the gateway cleanly so the ledger writer flushes, then read it back.
    let dir = gw.dir.clone();
    gw.stop().unwrap();
    let url = format!("sqlite://{}/ledger.db", dir.display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let rows = sqlx::query("SELECT * FROM ledger")
        .fetch_all(&pool)
        .await
        .unwrap();
    // `n=3` is refused by the local target (more than its `parallel: 2`),
    // so its 400 is a dispatched request with a record too.
    assert_eq!(
        rows.len(),
        9,
        "one record per dispatched request (errors before dispatch have none, nor do counts)"
    );
    let n3_id = seen["n3"]["request_id"].as_str();
    assert!(
        rows.iter().any(|r| r.get::<i64, _>("status") == 400
            && n3_id.is_none_or(|id| r.get::<String, _>("request_id") == id)),
        "a 400 record for the refused n=3"
    );
    for key in [
        "local_plain",
        "local_stream",
        "closed_plain",
        "closed_stream",
    ] {
        let call = &seen[key];
        let id = call["request_id"].as_str().unwrap();
        let row = rows
            .iter()
            .find(|r| r.get::<String, _>("request_id") == id)
            .unwrap_or_else(|| panic!("no ledger row for {key} ({id})"));
        assert_eq!(row.get::<i64, _>("status"), 200, "{key}");
        assert_eq!(
            row.get::<i64, _>("prompt_tokens"),
            call["prompt_tokens"].as_i64().unwrap(),
            "{key}"
        );
        assert_eq!(
            row.get::<i64, _>("completion_tokens"),
            call["completion_tokens"].as_i64().unwrap(),
            "{key}"
        );
        let backend: String = row.get("backend");
        let cost: f64 = row.get("cost_usd");
        let latency: f64 = row.get("latency_ms");
        assert!(latency > 0.0, "{key}");
        if key.starts_with("local") {
            assert_eq!(backend, "local");
            assert_eq!(cost, 0.0, "local tokens cost no API money");
        } else {
            assert_eq!(backend, "gpt-5.4-mini");
            // gpt-5.4-mini: $0.75 in / $4.50 out per million tokens.
            let p = call["prompt_tokens"].as_f64().unwrap();
            let c = call["completion_tokens"].as_f64().unwrap();
            let want = (p * 0.75 + c * 4.50) / 1e6;
            assert!(
                (cost - want).abs() < 1e-12,
                "{key}: cost {cost} want {want}"
            );
        }
        if key.ends_with("stream") {
            assert!(
                row.get::<Option<f64>, _>("ttft_ms").is_some(),
                "{key} has a TTFT"
            );
        }
    }
    // The non-streamed answer's cost header equals the ledger's cost.
    let header_cost: f64 = seen["closed_plain"]["cost"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let closed_id = seen["closed_plain"]["request_id"].as_str().unwrap();
    let row = rows
        .iter()
        .find(|r| r.get::<String, _>("request_id") == closed_id)
        .unwrap();
    assert!((header_cost - row.get::<f64, _>("cost_usd")).abs() < 1e-8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_sdks_call_tools_across_wire_formats() {
    let openai = MockUpstream::openai().await;
    let anthropic = MockUpstream::anthropic().await;
    let config = format!(
        r#"version: 1
ledger: {{ url: "sqlite://{{dir}}/ledger.db" }}
models:
  gpt:
    provider: openai
    base_url: "{}"
    api_key_env: E2E_OPENAI_KEY
  claude:
    provider: anthropic
    base_url: "{}"
    api_key_env: E2E_ANTHROPIC_KEY
  local:
    engine: local
    gguf: "{{dir}}/does-not-exist.gguf"
routes:
  - name: home
    when: {{ privacy: ">= confidential" }}
    to: [local]
  - name: claude-by-name
    when: {{ model: claude }}
    to: [claude]
  - name: everything-else
    to: [gpt]
"#,
        openai.base_url, anthropic.base_url
    );
    let gw = Gateway::start(
        "e2e-sdk-tools",
        &config,
        &[
            ("E2E_OPENAI_KEY", "sk-openai"),
            ("E2E_ANTHROPIC_KEY", "sk-ant"),
        ],
    )
    .unwrap();
    gw.wait_ready(Duration::from_secs(30)).await.unwrap();

    let o = run_sdk_script(&gw, "openai_sdk_tools.py", &["claude"]).await;
    assert!(
        o["plain"]["id"].as_str().unwrap().starts_with("toolu_mock"),
        "{o}"
    );
    assert_eq!(
        o["plain"]["arguments"],
        serde_json::json!({"query": "weather in Paris"})
    );
    assert!(
        o["stream"]["id"]
            .as_str()
            .unwrap()
            .starts_with("toolu_mock"),
        "{o}"
    );
    assert_eq!(o["stream"]["name"], "get_weather");
    assert_eq!(o["stream"]["arguments"], o["plain"]["arguments"]);
    assert_eq!(o["answer"]["text"], "echo: tool said 18C and sunny", "{o}");
    assert_eq!(o["answer"]["finish_reason"], "stop");
    assert_eq!(o["bad_tool"]["status"], 400);
    assert_eq!(o["bad_tool"]["param"], "tools[0].function.parameters");
    let sent = anthropic.requests();
    assert_eq!(sent.len(), 3, "the bad tool never left");
    assert_eq!(
        sent[0].body["tool_choice"],
        serde_json::json!({"type": "auto", "disable_parallel_tool_use": true})
    );

    let a = run_sdk_script(&gw, "anthropic_sdk_tools.py", &["gpt"]).await;
    assert!(
        a["plain"]["id"].as_str().unwrap().starts_with("call_mock"),
        "{a}"
    );
    assert_eq!(
        a["plain"]["input"],
        serde_json::json!({"query": "weather in Oslo"})
    );
    assert_eq!(a["stream"]["name"], "get_weather");
    assert_eq!(a["stream"]["input"], a["plain"]["input"]);
    assert_eq!(a["answer"]["text"], "echo: tool said minus 3", "{a}");
    assert_eq!(a["answer"]["stop_reason"], "end_turn");
    assert_eq!(openai.requests().len(), 3);

    // LangChain's ChatOpenAI, the way agent frameworks use it.
    let l = run_sdk_script(&gw, "langchain_tools.py", &["claude"]).await;
    assert_eq!(l["plain"]["name"], "get_weather", "{l}");
    assert_eq!(
        l["plain"]["args"],
        serde_json::json!({"query": "weather in Rome"})
    );
    assert_eq!(l["stream"]["name"], "get_weather", "{l}");
    assert_eq!(l["stream"]["args"], l["plain"]["args"]);
    assert_eq!(l["structured"], serde_json::json!({"query": "rome"}), "{l}");
    assert_eq!(l["answer"], "echo: tool said 18C and sunny", "{l}");
    let forced = anthropic.requests()[5].body.clone();
    assert_eq!(
        forced["tool_choice"]["type"], "tool",
        "with_structured_output forces its tool: {forced}"
    );

    let dir = gw.dir.clone();
    gw.stop().unwrap();
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}/ledger.db", dir.display()))
        .await
        .unwrap();
    let rows = sqlx::query("SELECT backend, finish_reason, status FROM ledger")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(rows.len(), 10);
    let tool_calls = rows
        .iter()
        .filter(|r| r.get::<Option<String>, _>("finish_reason").as_deref() == Some("tool_calls"))
        .count();
    assert_eq!(
        tool_calls, 7,
        "plain and streamed calls per client, and the forced one"
    );
    assert!(rows.iter().all(|r| r.get::<i64, _>("status") == 200));
}
