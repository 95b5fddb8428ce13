//! Tool calling on the real local model (SmolLM2, whose ChatML template
//! cannot express tools, so the generic format): through
//! `/v1/chat/completions` and `/v1/messages`, plain and streamed, with
//! `tool_choice` required and named the call parses into the declared
//! schema on every seed; with `auto` a plain answer is possible; a
//! conversation carrying a call and its result is answered; a tool whose
//! parameters cannot become a grammar is a 400 naming it; and each request
//! leaves its ledger row.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::time::Duration;

use serde_json::{json, Value};
use sqlx::Row;
use watershed_tests::harness::{test_model, Gateway};
use watershed_tests::sse::{anthropic_streamed_call, openai_streamed_call};

const SEEDS: [u64; 5] = [1, 2, 3, 4, 5];

fn config(model: &str) -> String {
    format!(
        r#"version: 1
ledger: {{ url: "sqlite://{{dir}}/ledger.db" }}
# An answer held to tool calls arrives whole at its end, so a
# stream's first event can come late on a loaded two-core machine.
server: {{ request_deadline_ms: 300000 }}
models:
  local:
    engine: local
    gguf: "{model}"
    context_tokens: 2048
    parallel: 2
routes:
  - name: everything
    to: [local]
"#
    )
}

fn weather_params() -> Value {
    json!({"type": "object", "properties": {
        "city": {"type": "string", "minLength": 1, "maxLength": 24},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}
    }, "required": ["city", "unit"]})
}

fn time_params() -> Value {
    json!({"type": "object", "properties": {
        "zone": {"type": "integer", "minimum": -12, "maximum": 14}
    }, "required": ["zone"]})
}

fn openai_tools() -> Value {
    json!([
        {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city", "parameters": weather_params()}},
        {"type": "function", "function": {"name": "get_time", "description": "The time in a UTC offset", "parameters": time_params()}}
    ])
}

fn anthropic_tools() -> Value {
    json!([
        {"name": "get_weather", "description": "The weather in a city", "input_schema": weather_params()},
        {"name": "get_time", "description": "The time in a UTC offset", "input_schema": time_params()}
    ])
}

/// Whether `args` follow the declared schema of tool `name`, exactly.
fn assert_schema(name: &str, args: &Value) {
    let obj = args.as_object().unwrap_or_else(|| panic!("{args}"));
    match name {
        "get_weather" => {
            assert_eq!(obj.len(), 2, "{args}");
            let city = obj["city"].as_str().unwrap();
            assert!((1..=24).contains(&city.chars().count()), "{args}");
            assert!(
                ["celsius", "fahrenheit"].contains(&obj["unit"].as_str().unwrap()),
                "{args}"
            );
        }
        "get_time" => {
            assert_eq!(obj.len(), 1, "{args}");
            // An integer, though maybe written `-0` (which JSON readers
            // take as a float).
            let zone = obj["zone"].as_f64().unwrap_or_else(|| panic!("{args}"));
            assert!(
                zone.fract() == 0.0 && (-12.0..=14.0).contains(&zone),
                "{args}"
            );
        }
        other => panic!("unknown tool {other}"),
    }
}

struct Env {
    gw: Gateway,
    http: reqwest::Client,
}

impl Env {
    async fn start(tag: &str) -> Env {
        let model = test_model().unwrap();
        let gw = Gateway::start(tag, &config(&model.display().to_string()), &[]).unwrap();
        gw.wait_ready(Duration::from_secs(120)).await.unwrap();
        Env {
            gw,
            http: reqwest::Client::new(),
        }
    }

    async fn post(&self, path: &str, body: &Value) -> (u16, String) {
        let resp = self
            .http
            .post(format!("{}{path}", self.gw.base_url))
            .json(body)
            .send()
            .await
            .unwrap();
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

fn chat(choice: Value, seed: u64, stream: bool) -> Value {
    json!({
        "model": "local",
        "messages": [{"role": "user", "content": "What is the weather in Paris, and what time is it in Tokyo?"}],
        "tools": openai_tools(),
        "tool_choice": choice,
        // One call: a 135M model asked for several rarely stops calling.
        "parallel_tool_calls": false,
        "max_tokens": 96,
        "temperature": 1.0,
        "seed": seed,
        "stream": stream,
    })
}

/// Anthropic's wire has no seed: each of these samples with a fresh one.
fn messages(choice: Value, _seed: u64, stream: bool) -> Value {
    json!({
        "model": "local",
        "messages": [{"role": "user", "content": "What is the weather in Paris, and what time is it in Tokyo?"}],
        "tools": anthropic_tools(),
        "tool_choice": choice,
        "max_tokens": 96,
        "temperature": 1.0,
        "stream": stream,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_tool_calls_parse_into_the_declared_schema_on_every_wire_and_seed() {
    let env = Env::start("e2e-local-tools").await;
    let mut requests = 0;
    let mut names = std::collections::BTreeMap::<String, u32>::new();
    let named = json!({"type": "function", "function": {"name": "get_time"}});
    for seed in SEEDS {
        // OpenAI, plain: required, then named.
        for (choice, only) in [(json!("required"), None), (named.clone(), Some("get_time"))] {
            let (status, text) = env
                .post("/v1/chat/completions", &chat(choice, seed, false))
                .await;
            requests += 1;
            assert_eq!(status, 200, "{text}");
            let body: Value = serde_json::from_str(&text).unwrap();
            let choice = &body["choices"][0];
            assert_eq!(choice["finish_reason"], "tool_calls", "{body}");
            let calls = choice["message"]["tool_calls"].as_array().unwrap();
            assert_eq!(calls.len(), 1, "{body}");
            for c in calls {
                assert!(c["id"].as_str().unwrap().starts_with("call_"), "{c}");
                assert_eq!(c["type"], "function");
                let name = c["function"]["name"].as_str().unwrap();
                if let Some(only) = only {
                    assert_eq!(name, only, "{body}");
                }
                let args: Value =
                    serde_json::from_str(c["function"]["arguments"].as_str().unwrap()).unwrap();
                assert_schema(name, &args);
                *names.entry(name.to_owned()).or_default() += 1;
            }
        }
        // OpenAI, streamed, required.
        let body = chat(json!("required"), seed, true);
        let (status, sse) = env.post("/v1/chat/completions", &body).await;
        requests += 1;
        assert_eq!(status, 200, "{sse}");
        let (id, name, args, finish) = openai_streamed_call(&sse);
        assert!(id.starts_with("call_"), "{sse}");
        assert_eq!(finish, "tool_calls", "{sse}");
        assert_schema(&name, &serde_json::from_str(&args).unwrap());

        // Anthropic, plain: any, then a named tool.
        for (choice, only) in [
            (
                json!({"type": "any", "disable_parallel_tool_use": true}),
                None,
            ),
            (
                json!({"type": "tool", "name": "get_weather", "disable_parallel_tool_use": true}),
                Some("get_weather"),
            ),
        ] {
            let (status, text) = env
                .post("/v1/messages", &messages(choice, seed, false))
                .await;
            requests += 1;
            assert_eq!(status, 200, "{text}");
            let body: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(body["stop_reason"], "tool_use", "{body}");
            let uses: Vec<&Value> = body["content"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|b| b["type"] == "tool_use")
                .collect();
            assert_eq!(uses.len(), 1, "{body}");
            for u in uses {
                let name = u["name"].as_str().unwrap();
                if let Some(only) = only {
                    assert_eq!(name, only, "{body}");
                }
                assert!(!u["id"].as_str().unwrap().is_empty(), "{u}");
                assert_schema(name, &u["input"]);
            }
        }
        // Anthropic, streamed, a named tool.
        let body = messages(
            json!({"type": "tool", "name": "get_time", "disable_parallel_tool_use": true}),
            seed,
            true,
        );
        let (status, sse) = env.post("/v1/messages", &body).await;
        requests += 1;
        assert_eq!(status, 200, "{sse}");
        let (id, name, args, stop) = anthropic_streamed_call(&sse);
        assert!(!id.is_empty(), "{sse}");
        assert_eq!(name, "get_time", "{sse}");
        assert_eq!(stop, "tool_use", "{sse}");
        assert_schema(&name, &serde_json::from_str(&args).unwrap());
    }
    println!("tool calls by name over {} seeds: {names:?}", SEEDS.len());

    let rows = env.ledger().await;
    assert_eq!(rows.len(), requests);
    for row in &rows {
        assert_eq!(row.get::<i64, _>("status"), 200);
        assert_eq!(row.get::<String, _>("backend"), "local");
        assert_eq!(
            row.get::<Option<String>, _>("finish_reason").as_deref(),
            Some("tool_calls")
        );
        assert!(row.get::<i64, _>("prompt_tokens") > 0);
        assert!(row.get::<i64, _>("completion_tokens") > 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_may_answer_in_text_results_are_answered_and_bad_schemas_are_named() {
    let env = Env::start("e2e-local-tools-auto").await;
    // `auto`: text or a call, and whichever it is parses.
    let mut texts = 0;
    for seed in SEEDS {
        let mut body = chat(json!("auto"), seed, false);
        body["messages"] = json!([{"role": "user", "content": "Say hello to me."}]);
        let (status, text) = env.post("/v1/chat/completions", &body).await;
        assert_eq!(status, 200, "{text}");
        let body: Value = serde_json::from_str(&text).unwrap();
        let choice = &body["choices"][0];
        match choice["message"]["tool_calls"].as_array() {
            Some(calls) => {
                assert_eq!(choice["finish_reason"], "tool_calls", "{body}");
                for c in calls {
                    let args: Value =
                        serde_json::from_str(c["function"]["arguments"].as_str().unwrap()).unwrap();
                    assert_schema(c["function"]["name"].as_str().unwrap(), &args);
                }
            }
            None => {
                texts += 1;
                let content = choice["message"]["content"].as_str().unwrap();
                assert!(!content.starts_with("{\"response\""), "{body}");
            }
        }
    }
    // Streamed `auto`: a finished answer is text or a call, never the JSON
    // that carries it (the answer is read at its end, so it is kept short).
    let mut body = chat(json!("auto"), 7, true);
    body["messages"] = json!([{"role": "user", "content": "Say hello to me."}]);
    body["max_tokens"] = json!(48);
    let (status, sse) = env.post("/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{sse}");
    let finished = !sse.contains(r#""finish_reason":"length""#);
    assert!(sse.contains(r#""finish_reason":"#), "{sse}");
    if finished {
        assert!(!sse.contains(r#"\"response\""#), "{sse}");
    }
    println!("auto answered in text {texts} times of {}", SEEDS.len());

    // A conversation with a call and its result, answered in text.
    let round_trip = json!({
        "model": "local",
        "messages": [
            {"role": "user", "content": "What is the weather in Paris?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\",\"unit\":\"celsius\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18 degrees and sunny"}
        ],
        "tools": openai_tools(),
        "tool_choice": "none",
        "max_tokens": 24,
        "temperature": 0,
    });
    let (status, text) = env.post("/v1/chat/completions", &round_trip).await;
    assert_eq!(status, 200, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert!(
        body["choices"][0]["message"]["tool_calls"].is_null(),
        "{body}"
    );
    assert!(!body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .is_empty());

    // Parameters llama.cpp cannot turn into a grammar: a 400 naming them, in each wire.
    let bad = json!({"type": "object", "properties": {"x": {"$ref": "#/$defs/missing"}}});
    let mut body = chat(json!("required"), 1, false);
    body["tools"][1]["function"]["parameters"] = bad.clone();
    let (status, text) = env.post("/v1/chat/completions", &body).await;
    assert_eq!(status, 400, "{text}");
    let err: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        err["error"]["param"], "tools[1].function.parameters",
        "{err}"
    );
    let mut body = messages(json!({"type": "any"}), 1, false);
    body["tools"][1]["input_schema"] = bad;
    let (status, text) = env.post("/v1/messages", &body).await;
    assert_eq!(status, 400, "{text}");
    let err: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(err["type"], "error", "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("tools[1]"),
        "{err}"
    );
    env.gw.stop().unwrap();
}
