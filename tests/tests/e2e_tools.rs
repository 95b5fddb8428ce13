//! Tool calling through the real binary against mock upstreams on port 0:
//! OpenAI clients served by an Anthropic target and Anthropic clients by an
//! OpenAI target, plain and streamed, a whole call → result → answer round
//! trip with the ids kept, placeholders restored inside tool-call
//! arguments, a local engine configured with `tools: false` skipped (and a
//! confidential request with tools failing closed with a 400), and the
//! ledger rows each request leaves.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::time::Duration;

use serde_json::{json, Value};
use sqlx::Row;
use watershed_tests::harness::Gateway;
use watershed_tests::mock::MockUpstream;
use watershed_tests::sse::{anthropic_streamed_call, openai_streamed_call};

/// `claude` is reached after `local`, configured without tools (and unable
/// to load here); `gpt` redacts e-mail addresses, which are `internal`.
fn config(openai: &str, anthropic: &str) -> String {
    format!(
        r#"version: 1
ledger: {{ url: "sqlite://{{dir}}/ledger.db" }}
privacy:
  detectors: {{ email: internal }}
models:
  local:
    engine: local
    gguf: "{{dir}}/does-not-exist.gguf"
    tools: false
  gpt:
    provider: openai
    base_url: "{openai}"
    api_key_env: E2E_OPENAI_KEY
    timeout_ms: 3000
  claude:
    provider: anthropic
    base_url: "{anthropic}"
    api_key_env: E2E_ANTHROPIC_KEY
    timeout_ms: 3000
routes:
  - name: home
    when: {{ privacy: ">= confidential" }}
    to: [local]
  - name: claude-after-local
    when: {{ model: claude }}
    to: [local]
    fallback: [claude]
  - name: gpt-redacted
    to: [gpt]
    redact: true
"#
    )
}

struct Env {
    openai: MockUpstream,
    anthropic: MockUpstream,
    gw: Gateway,
    http: reqwest::Client,
}

async fn start(tag: &str) -> Env {
    let openai = MockUpstream::openai().await;
    let anthropic = MockUpstream::anthropic().await;
    let gw = Gateway::start(
        tag,
        &config(&openai.base_url, &anthropic.base_url),
        &[
            ("E2E_OPENAI_KEY", "sk-openai"),
            ("E2E_ANTHROPIC_KEY", "sk-ant"),
        ],
    )
    .unwrap();
    gw.wait_ready(Duration::from_secs(30)).await.unwrap();
    Env {
        openai,
        anthropic,
        gw,
        http: reqwest::Client::new(),
    }
}

impl Env {
    /// A POST; the answer as JSON, or as the raw SSE text for streams.
    async fn post(&self, path: &str, body: &Value, privacy: Option<&str>) -> (u16, String) {
        let mut req = self
            .http
            .post(format!("{}{path}", self.gw.base_url))
            .json(body);
        if let Some(p) = privacy {
            req = req.header("x-watershed-privacy", p);
        }
        let resp = req.send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
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

fn weather_tool_openai() -> Value {
    json!({"type": "function", "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}
    }})
}

fn weather_tool_anthropic() -> Value {
    json!({
        "name": "get_weather",
        "description": "Weather for a city",
        "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_clients_call_tools_on_an_anthropic_target_and_get_the_answer() {
    let env = start("e2e-tools-openai").await;
    let first = json!({
        "model": "claude",
        "messages": [{"role": "user", "content": "weather in Paris"}],
        "tools": [weather_tool_openai()],
        "tool_choice": "auto"
    });
    let (status, text) = env.post("/v1/chat/completions", &first, None).await;
    assert_eq!(status, 200, "{text}");
    let answer: Value = serde_json::from_str(&text).unwrap();
    let choice = &answer["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{answer}");
    assert_eq!(choice["message"]["content"], Value::Null);
    let call = &choice["message"]["tool_calls"][0];
    let id = call["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("toolu_mock"), "{call}");
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"query": "weather in Paris"}));
    // The Anthropic target got the tool in its own shape.
    let sent = env.anthropic.last_request().unwrap().body;
    assert_eq!(sent["tools"], json!([weather_tool_anthropic()]));
    assert_eq!(sent["tool_choice"], json!({"type": "auto"}));

    // Streamed: the same call, in OpenAI's fragments.
    let mut streamed = first.clone();
    streamed["stream"] = json!(true);
    let (status, sse) = env.post("/v1/chat/completions", &streamed, None).await;
    assert_eq!(status, 200, "{sse}");
    let (sid, sname, sargs, finish) = openai_streamed_call(&sse);
    assert!(sid.starts_with("toolu_mock"), "{sse}");
    assert_eq!(sname, "get_weather");
    assert_eq!(
        serde_json::from_str::<Value>(&sargs).unwrap(),
        json!({"query": "weather in Paris"})
    );
    assert_eq!(finish, "tool_calls");

    // The round trip: the call and its result go back, the answer uses it.
    let mut second = first.clone();
    second["messages"] = json!([
        {"role": "user", "content": "weather in Paris"},
        choice["message"].clone(),
        {"role": "tool", "tool_call_id": id, "content": "18C and sunny"}
    ]);
    let (status, text) = env.post("/v1/chat/completions", &second, None).await;
    assert_eq!(status, 200, "{text}");
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        answer["choices"][0]["message"]["content"],
        "echo: tool said 18C and sunny"
    );
    let sent = env.anthropic.last_request().unwrap().body;
    assert_eq!(sent["messages"][1]["content"][0]["type"], "tool_use");
    assert_eq!(sent["messages"][1]["content"][0]["id"], id.as_str());
    assert_eq!(
        sent["messages"][2]["content"][0],
        json!({"type": "tool_result", "tool_use_id": id, "content": "18C and sunny"})
    );

    // A result answering no call is refused before anything is sent.
    let before = env.anthropic.request_count();
    let mut orphan = first.clone();
    orphan["messages"] = json!([
        {"role": "user", "content": "hi"},
        {"role": "tool", "tool_call_id": "call_nowhere", "content": "x"}
    ]);
    let (status, text) = env.post("/v1/chat/completions", &orphan, None).await;
    assert_eq!(status, 400, "{text}");
    let err: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(err["error"]["param"], "messages[1].tool_call_id", "{err}");
    assert_eq!(env.anthropic.request_count(), before);
    assert_eq!(env.openai.request_count(), 0);

    // Three rows, served by claude; local was skipped for lacking tools.
    let rows = env.ledger().await;
    assert_eq!(rows.len(), 3);
    for row in &rows {
        assert_eq!(row.get::<i64, _>("status"), 200);
        assert_eq!(row.get::<String, _>("backend"), "claude");
        let explanation: Value =
            serde_json::from_str(&row.get::<String, _>("explanation")).unwrap();
        assert_eq!(
            explanation["skipped"],
            json!([{"target": "local", "reason": "missing_capability", "capability": "tools"}]),
            "{explanation}"
        );
    }
    assert_eq!(
        rows[0].get::<Option<String>, _>("finish_reason").as_deref(),
        Some("tool_calls")
    );
    assert_eq!(
        rows[2].get::<Option<String>, _>("finish_reason").as_deref(),
        Some("stop")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_clients_call_tools_on_an_openai_target_and_get_the_answer() {
    let env = start("e2e-tools-anthropic").await;
    let first = json!({
        "model": "gpt",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "weather in Oslo"}],
        "tools": [weather_tool_anthropic()],
        "tool_choice": {"type": "any"}
    });
    let (status, text) = env.post("/v1/messages", &first, None).await;
    assert_eq!(status, 200, "{text}");
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["stop_reason"], "tool_use", "{answer}");
    let block = &answer["content"][0];
    assert_eq!(block["type"], "tool_use", "{answer}");
    let id = block["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("call_mock"), "{block}");
    assert_eq!(block["name"], "get_weather");
    assert_eq!(block["input"], json!({"query": "weather in Oslo"}));
    let sent = env.openai.last_request().unwrap().body;
    assert_eq!(sent["tools"], json!([weather_tool_openai()]));
    assert_eq!(sent["tool_choice"], "required");

    let mut streamed = first.clone();
    streamed["stream"] = json!(true);
    let (status, sse) = env.post("/v1/messages", &streamed, None).await;
    assert_eq!(status, 200, "{sse}");
    let (sid, sname, sargs, stop) = anthropic_streamed_call(&sse);
    assert!(sid.starts_with("call_mock"), "{sse}");
    assert_eq!(sname, "get_weather");
    assert_eq!(
        serde_json::from_str::<Value>(&sargs).unwrap(),
        json!({"query": "weather in Oslo"})
    );
    assert_eq!(stop, "tool_use");

    let mut second = first.clone();
    second["messages"] = json!([
        {"role": "user", "content": "weather in Oslo"},
        {"role": "assistant", "content": answer["content"].clone()},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": id, "content": "minus 3"}
        ]}
    ]);
    second["tool_choice"] = json!({"type": "auto"});
    let (status, text) = env.post("/v1/messages", &second, None).await;
    assert_eq!(status, 200, "{text}");
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["stop_reason"], "end_turn");
    assert_eq!(
        answer["content"],
        json!([{"type": "text", "text": "echo: tool said minus 3"}])
    );
    let sent = env.openai.last_request().unwrap().body;
    assert_eq!(sent["messages"][1]["tool_calls"][0]["id"], id.as_str());
    assert_eq!(
        sent["messages"][2],
        json!({"role": "tool", "tool_call_id": id, "content": "minus 3"})
    );

    let rows = env.ledger().await;
    assert_eq!(rows.len(), 3);
    assert!(rows
        .iter()
        .all(|r| r.get::<String, _>("backend") == "gpt" && r.get::<i64, _>("status") == 200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placeholders_in_tool_call_arguments_are_restored_plain_and_streamed() {
    let env = start("e2e-tools-restore").await;
    let email = "jane.doe@example.com";
    let openai_body = json!({
        "model": "gpt",
        "messages": [{"role": "user", "content": format!("mail {email} the forecast")}],
        "tools": [weather_tool_openai()]
    });
    let anthropic_body = json!({
        "model": "gpt",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": format!("mail {email} the forecast")}],
        "tools": [weather_tool_anthropic()]
    });
    let want = json!({"query": format!("mail {email} the forecast")});
    for stream in [false, true] {
        let mut b = openai_body.clone();
        b["stream"] = json!(stream);
        let (status, text) = env.post("/v1/chat/completions", &b, None).await;
        assert_eq!(status, 200, "{text}");
        let args = if stream {
            openai_streamed_call(&text).2
        } else {
            let v: Value = serde_json::from_str(&text).unwrap();
            v["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        assert_eq!(
            serde_json::from_str::<Value>(&args).unwrap(),
            want,
            "{text}"
        );

        let mut b = anthropic_body.clone();
        b["stream"] = json!(stream);
        let (status, text) = env.post("/v1/messages", &b, None).await;
        assert_eq!(status, 200, "{text}");
        let input = if stream {
            serde_json::from_str::<Value>(&anthropic_streamed_call(&text).2).unwrap()
        } else {
            let v: Value = serde_json::from_str(&text).unwrap();
            v["content"][0]["input"].clone()
        };
        assert_eq!(input, want, "{text}");
    }
    // The target only ever saw the placeholder.
    let sent: Vec<String> = env
        .openai
        .requests()
        .iter()
        .map(|r| r.body.to_string())
        .collect();
    assert_eq!(sent.len(), 4);
    assert!(sent
        .iter()
        .all(|b| !b.contains(email) && b.contains("[EMAIL_1]")));
    env.gw.stop().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confidential_request_with_tools_fails_closed_with_a_400_naming_tools() {
    let env = start("e2e-tools-confidential").await;
    for (path, body) in [
        (
            "/v1/chat/completions",
            json!({"model": "gpt", "messages": [{"role": "user", "content": "hi"}],
                   "tools": [weather_tool_openai()]}),
        ),
        (
            "/v1/messages",
            json!({"model": "claude", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}],
                   "tools": [weather_tool_anthropic()]}),
        ),
    ] {
        let (status, text) = env.post(path, &body, Some("confidential")).await;
        assert_eq!(status, 400, "{path}: {text}");
        assert!(text.contains(r#"capability \"tools\""#), "{path}: {text}");
        // Without tools the same request stays home as before (the local
        // engine cannot load here: 503).
        let mut plain = body.clone();
        plain.as_object_mut().unwrap().remove("tools");
        let (status, text) = env.post(path, &plain, Some("confidential")).await;
        assert_eq!(status, 503, "{path}: {text}");
    }
    assert_eq!(env.openai.request_count(), 0);
    assert_eq!(env.anthropic.request_count(), 0);
    // `/v1/models` says which targets can do tools.
    let models: Value = env
        .http
        .get(format!("{}/v1/models", env.gw.base_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for m in models["data"].as_array().unwrap() {
        match m["id"].as_str().unwrap() {
            "local" => assert_eq!(m["watershed"]["tools"], false, "{m}"),
            "gpt" | "claude" => assert_eq!(m["watershed"]["tools"], true, "{m}"),
            _ => assert_eq!(m["watershed"]["alias"], true, "{m}"),
        }
    }
    let (status, text) = env
        .post(
            "/v1/chat/completions",
            &json!({"model": "gpt", "messages": [{"role": "user", "content": "hi"}],
                    "tools": [weather_tool_openai()]}),
            Some("confidential"),
        )
        .await;
    let err: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(status, 400);
    assert_eq!(err["error"]["param"], "tools", "{err}");
    assert_eq!(err["error"]["type"], "invalid_request_error", "{err}");
    env.gw.stop().unwrap();
}
