//! The local engine's column of the compatibility matrix: every endpoint
//! and feature `e2e_matrix` checks over the remote kinds, here against the
//! real binary serving the real SmolLM2 model (`WATERSHED_TEST_MODEL`).
//! Each case checks the client's answer in its own wire's shape (text, tool
//! name and parsed arguments, finish or stop reason, stream event order),
//! and every request leaves exactly one ledger row with backend `local` and
//! its status, except refusals made before routing chose a target (none).
//! Answers are kept short: the model runs on the CPU.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::time::Duration;

use serde_json::{json, Value};
use sqlx::Row;
use watershed_tests::harness::{test_model, Gateway};
use watershed_tests::sse::{anthropic_streamed_call, openai_chunks, openai_streamed_call};

const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

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

/// What a client got back.
struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    /// The JSON body; for a stream, the raw text as a JSON string.
    body: Value,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn raw(&self) -> &str {
        self.body
            .as_str()
            .unwrap_or_else(|| panic!("not a stream: {}", self.body))
    }

    /// The `data:` payloads of an SSE body, parsed (`[DONE]` left out).
    fn events(&self) -> Vec<Value> {
        self.raw()
            .split("\n\n")
            .filter_map(|frame| {
                frame
                    .lines()
                    .find_map(|l| l.strip_prefix("data: "))
                    .filter(|d| *d != "[DONE]")
                    .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("{e}: {d}")))
            })
            .collect()
    }
}

/// One test's gateway at a time: four models generating at once on a
/// small machine turn short answers into timeouts.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The gateway on the local model, and what the ledger should hold.
struct Local {
    _serial: tokio::sync::MutexGuard<'static, ()>,
    gw: Gateway,
    http: reqwest::Client,
    /// (request id, backend, status) of every request that must leave a row.
    expected_rows: Vec<(String, String, i64)>,
    /// Requests refused before routing chose a target: no row.
    refused_ids: Vec<String>,
    cases: usize,
}

impl Local {
    async fn start(tag: &str) -> Self {
        let serial = SERIAL.lock().await;
        let model = test_model().unwrap();
        let gw = Gateway::start(tag, &config(&model.display().to_string()), &[]).unwrap();
        gw.wait_ready(Duration::from_secs(120)).await.unwrap();
        Self {
            _serial: serial,
            gw,
            http: reqwest::Client::new(),
            expected_rows: Vec::new(),
            refused_ids: Vec::new(),
            cases: 0,
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Reply {
        let resp = req
            .header("anthropic-version", "2023-06-01")
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn post(&self, path: &str, body: &Value) -> Reply {
        let url = format!("{}{path}", self.gw.base_url);
        self.send(self.http.post(url).json(body)).await
    }

    async fn get(&self, path: &str) -> Reply {
        let url = format!("{}{path}", self.gw.base_url);
        self.send(self.http.get(url)).await
    }

    /// One case answered by the local engine with `status`; notes its row.
    async fn answered(&mut self, path: &str, body: &Value, status: u16) -> Reply {
        let r = self.post(path, body).await;
        assert_eq!(r.status, status, "{path} {body}: {}", r.body);
        assert_eq!(r.header("x-watershed-backend"), Some("local"), "{path}");
        let id = r.header("x-request-id").unwrap().to_owned();
        self.expected_rows
            .push((id, "local".to_owned(), i64::from(status)));
        self.cases += 1;
        r
    }

    /// One case refused before routing chose a target, naming `param`.
    async fn refused(&mut self, path: &str, body: &Value, code: &str, param: &str) -> Reply {
        let r = self.post(path, body).await;
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        assert_eq!(error_shape(&r.body), (code.to_owned(), param.to_owned()));
        assert_eq!(r.header("x-watershed-backend"), None);
        self.refused_ids
            .push(r.header("x-request-id").unwrap().to_owned());
        self.cases += 1;
        r
    }

    /// One case whose only target cannot honour an option: skipped at
    /// dispatch, a 400 naming the field, a row without backend.
    async fn refused_at_dispatch(&mut self, path: &str, body: &Value, code: &str, param: &str) {
        let r = self.post(path, body).await;
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        assert_eq!(r.header("x-watershed-route"), Some("everything"));
        assert_eq!(r.header("x-watershed-backend"), None);
        assert_eq!(
            error_shape(&r.body),
            (code.to_owned(), param.to_owned()),
            "{}",
            r.body
        );
        let id = r.header("x-request-id").unwrap().to_owned();
        self.expected_rows.push((id, String::new(), 400));
        self.cases += 1;
    }

    /// Stops the gateway; every noted request left exactly one row with its
    /// backend and status, refusals none, and nothing else did.
    async fn check_ledger(self) -> (usize, usize) {
        let dir = self.gw.dir.clone();
        self.gw.stop().unwrap();
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}/ledger.db", dir.display()))
            .await
            .unwrap();
        let rows = sqlx::query("SELECT request_id, backend, status FROM ledger")
            .fetch_all(&pool)
            .await
            .unwrap();
        for (id, backend, status) in &self.expected_rows {
            let mine: Vec<_> = rows
                .iter()
                .filter(|r| r.get::<String, _>("request_id") == *id)
                .collect();
            assert_eq!(mine.len(), 1, "one ledger row for {id}");
            assert_eq!(mine[0].get::<String, _>("backend"), *backend, "{id}");
            assert_eq!(mine[0].get::<i64, _>("status"), *status, "{id}");
        }
        for id in &self.refused_ids {
            assert!(
                rows.iter().all(|r| r.get::<String, _>("request_id") != *id),
                "the refused {id} left no row"
            );
        }
        assert_eq!(rows.len(), self.expected_rows.len(), "no other rows");
        (self.cases, rows.len())
    }
}

/// The error code and field of an OpenAI- or Anthropic-shaped error body.
fn error_shape(v: &Value) -> (String, String) {
    let e = &v["error"];
    let code = e["code"]
        .as_str()
        .or(e["type"].as_str())
        .unwrap_or_default();
    let param = e["param"].as_str().unwrap_or_default();
    (code.to_owned(), param.to_owned())
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

fn colour_schema() -> Value {
    json!({"type": "object", "properties": {
        "colour": {"type": "string", "enum": ["red", "green", "blue"]}
    }, "required": ["colour"], "additionalProperties": false})
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
            // An integer, though maybe written `-0`.
            let zone = obj["zone"].as_f64().unwrap_or_else(|| panic!("{args}"));
            assert!(zone.fract() == 0.0 && (-12.0..=14.0).contains(&zone));
        }
        other => panic!("unknown tool {other}"),
    }
}

fn assert_colour(text: &str) {
    let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let obj = v.as_object().unwrap_or_else(|| panic!("{v}"));
    assert_eq!(obj.len(), 1, "{v}");
    assert!(["red", "green", "blue"].contains(&obj["colour"].as_str().unwrap()));
}

const ASK_TOOLS: &str = "What is the weather in Paris, and what time is it in Tokyo?";
const COUNT: &str = "Count from one to ten in words, separated by spaces.";

/// A word from the middle of `text` that first appears there: the stop
/// that cuts a repeat of the same greedy answer short.
fn stop_from(text: &str) -> (String, String) {
    let mut pos = 0;
    for (i, w) in text.split_whitespace().enumerate() {
        let at = pos + text[pos..].find(w).unwrap();
        pos = at + w.len();
        if i >= 2 && text.find(w) == Some(at) {
            return (w.to_owned(), text[..at].to_owned());
        }
    }
    panic!("no stop in {text:?}")
}

// ---------- /v1/chat/completions ----------

fn openai_tools() -> Value {
    json!([
        {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city", "parameters": weather_params()}},
        {"type": "function", "function": {"name": "get_time", "description": "The time in a UTC offset", "parameters": time_params()}}
    ])
}

fn chat_tools(choice: Value, stream: bool) -> Value {
    json!({
        "model": "local",
        "messages": [{"role": "user", "content": ASK_TOOLS}],
        "tools": openai_tools(),
        "tool_choice": choice,
        "parallel_tool_calls": false,
        "max_tokens": 96,
        "temperature": 1.0,
        "seed": 3,
        "stream": stream,
    })
}

fn chat_text(content: &str, max_tokens: u32) -> Value {
    json!({
        "model": "local",
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        "temperature": 0,
    })
}

/// The content and finish reason of an OpenAI stream, checking its usage
/// chunk when asked for.
fn chat_streamed(r: &Reply, usage: bool) -> (String, String) {
    let chunks = openai_chunks(r.raw());
    let mut text = String::new();
    let mut finish = String::new();
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk", "{c}");
        if let Some(choice) = c["choices"].get(0) {
            text.push_str(choice["delta"]["content"].as_str().unwrap_or_default());
            if let Some(f) = choice["finish_reason"].as_str() {
                finish = f.to_owned();
            }
        }
    }
    if usage {
        let last = chunks.last().unwrap();
        assert_eq!(last["choices"], json!([]), "{last}");
        assert!(last["usage"]["completion_tokens"].as_u64().unwrap() > 0);
        assert!(last["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    }
    (text, finish)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_completions_on_the_local_engine() {
    let mut m = Local::start("e2e-matrix-local-chat").await;
    let path = "/v1/chat/completions";

    // Plain.
    let r = m.answered(path, &chat_text("Say hello.", 12), 200).await;
    assert_eq!(r.body["object"], "chat.completion", "{}", r.body);
    // The model that answered: the GGUF's stem, as an upstream names its own.
    let stem = test_model().unwrap();
    let stem = stem.file_stem().unwrap().to_str().unwrap();
    assert_eq!(r.body["model"], stem);
    let msg = &r.body["choices"][0]["message"];
    assert_eq!(msg["role"], "assistant");
    assert!(!msg["content"].as_str().unwrap().is_empty(), "{}", r.body);
    assert!(["stop", "length"].contains(&r.body["choices"][0]["finish_reason"].as_str().unwrap()));
    let u = &r.body["usage"];
    assert_eq!(
        u["total_tokens"].as_u64().unwrap(),
        u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap()
    );

    // Streamed, with the usage chunk: the same greedy answer.
    let plain = msg["content"].as_str().unwrap().to_owned();
    let mut body = chat_text("Say hello.", 12);
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let r = m.answered(path, &body, 200).await;
    let (text, finish) = chat_streamed(&r, true);
    assert_eq!(text, plain, "a stream says what the plain answer did");
    assert!(["stop", "length"].contains(&finish.as_str()), "{finish}");

    // Tools, plain: auto (text or a call), required, named.
    let named = json!({"type": "function", "function": {"name": "get_time"}});
    for (choice, must, only) in [
        (json!("auto"), false, None),
        (json!("required"), true, None),
        (named.clone(), true, Some("get_time")),
    ] {
        let r = m.answered(path, &chat_tools(choice, false), 200).await;
        let c = &r.body["choices"][0];
        match c["message"]["tool_calls"].as_array() {
            Some(calls) => {
                assert_eq!(c["finish_reason"], "tool_calls", "{}", r.body);
                assert_eq!(calls.len(), 1, "{}", r.body);
                let f = &calls[0]["function"];
                let name = f["name"].as_str().unwrap();
                if let Some(only) = only {
                    assert_eq!(name, only);
                }
                assert!(calls[0]["id"].as_str().unwrap().starts_with("call_"));
                assert_schema(
                    name,
                    &serde_json::from_str(f["arguments"].as_str().unwrap()).unwrap(),
                );
            }
            None => {
                assert!(!must, "a call was required: {}", r.body);
                assert!(c["message"]["content"].as_str().is_some(), "{}", r.body);
            }
        }
    }
    // Tools, streamed: required and named.
    for (choice, only) in [(json!("required"), None), (named, Some("get_time"))] {
        let r = m.answered(path, &chat_tools(choice, true), 200).await;
        let (id, name, args, finish) = openai_streamed_call(r.raw());
        assert!(id.starts_with("call_"), "{}", r.raw());
        assert_eq!(finish, "tool_calls");
        if let Some(only) = only {
            assert_eq!(name, only);
        }
        assert_schema(&name, &serde_json::from_str(&args).unwrap());
    }

    // A call and its result, answered in text.
    let body = json!({
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
    let r = m.answered(path, &body, 200).await;
    let c = &r.body["choices"][0];
    assert!(c["message"]["tool_calls"].is_null(), "{}", r.body);
    assert!(!c["message"]["content"].as_str().unwrap().is_empty());

    // JSON schema: the answer parses and fits.
    let mut body = chat_text("Pick a colour.", 48);
    body["response_format"] = json!({"type": "json_schema", "json_schema": {"name": "colour", "strict": true, "schema": colour_schema()}});
    let r = m.answered(path, &body, 200).await;
    assert_eq!(r.body["choices"][0]["finish_reason"], "stop", "{}", r.body);
    assert_colour(r.body["choices"][0]["message"]["content"].as_str().unwrap());

    // Logprobs with top_logprobs, plain: one entry per generated token.
    let mut body = chat_text("Say hello.", 6);
    body["logprobs"] = json!(true);
    body["top_logprobs"] = json!(2);
    let r = m.answered(path, &body, 200).await;
    let lp = r.body["choices"][0]["logprobs"]["content"]
        .as_array()
        .unwrap();
    assert_eq!(
        lp.len() as u64,
        r.body["usage"]["completion_tokens"].as_u64().unwrap(),
        "{}",
        r.body
    );
    for t in lp {
        assert!(t["logprob"].as_f64().unwrap() <= 0.0, "{t}");
        assert_eq!(t["top_logprobs"].as_array().unwrap().len(), 2, "{t}");
        assert!(t["token"].is_string() && t["bytes"].is_array(), "{t}");
    }
    // And streamed: the chunks carry them, as many as the plain answer.
    body["stream"] = json!(true);
    let r = m.answered(path, &body, 200).await;
    let streamed: usize = openai_chunks(r.raw())
        .iter()
        .filter_map(|c| c["choices"][0]["logprobs"]["content"].as_array())
        .map(|a| {
            assert!(a
                .iter()
                .all(|t| t["top_logprobs"].as_array().unwrap().len() == 2));
            a.len()
        })
        .sum();
    assert_eq!(streamed, lp.len(), "{}", r.raw());

    // A stop sequence: the greedy answer, cut before it.
    let r = m.answered(path, &chat_text(COUNT, 16), 200).await;
    let full = r.body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    let (stop, before) = stop_from(&full);
    let mut body = chat_text(COUNT, 16);
    body["stop"] = json!([stop]);
    let r = m.answered(path, &body, 200).await;
    assert_eq!(r.body["choices"][0]["finish_reason"], "stop", "{}", r.body);
    let cut = r.body["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(cut, before, "stopped before {stop:?} in {full:?}");

    // An image: the engine cannot see, so the route has no target for it.
    let body = json!({"model": "local", "max_tokens": 8, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG}")}}
    ]}]});
    m.refused(
        path,
        &body,
        "missing_capability",
        "messages[0].content[1].image_url.url",
    )
    .await;

    let (cases, rows) = m.check_ledger().await;
    println!("chat completions on the local engine: {cases} cases, {rows} ledger rows matched (stop {stop:?} cut {full:?} to {before:?})");
}

// ---------- /v1/messages ----------

fn anthropic_tools() -> Value {
    json!([
        {"name": "get_weather", "description": "The weather in a city", "input_schema": weather_params()},
        {"name": "get_time", "description": "The time in a UTC offset", "input_schema": time_params()}
    ])
}

fn messages_text(content: &str, max_tokens: u32) -> Value {
    json!({
        "model": "local",
        "max_tokens": max_tokens,
        "temperature": 0,
        "messages": [{"role": "user", "content": content}],
    })
}

fn messages_tools(choice: Value, stream: bool) -> Value {
    json!({
        "model": "local",
        "messages": [{"role": "user", "content": ASK_TOOLS}],
        "tools": anthropic_tools(),
        "tool_choice": choice,
        "max_tokens": 96,
        "temperature": 1.0,
        "stream": stream,
    })
}

/// The text, tool calls (name, input), stop reason and stop sequence of an
/// Anthropic answer, plain or streamed, in the documented event order.
fn anthropic_answer(r: &Reply, stream: bool) -> (String, Vec<(String, Value)>, Value, Value) {
    if !stream {
        assert_eq!(r.body["type"], "message", "{}", r.body);
        assert_eq!(r.body["role"], "assistant");
        let content = r.body["content"].as_array().unwrap();
        let text = content.iter().filter_map(|b| b["text"].as_str()).collect();
        let calls = content
            .iter()
            .filter(|b| b["type"] == "tool_use")
            .map(|b| {
                assert!(!b["id"].as_str().unwrap().is_empty(), "{b}");
                (b["name"].as_str().unwrap().to_owned(), b["input"].clone())
            })
            .collect();
        return (
            text,
            calls,
            r.body["stop_reason"].clone(),
            r.body["stop_sequence"].clone(),
        );
    }
    let events = r.events();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types.first(), Some(&"message_start"), "{types:?}");
    assert_eq!(types.last(), Some(&"message_stop"), "{types:?}");
    assert_eq!(types[types.len() - 2], "message_delta", "{types:?}");
    let mut text = String::new();
    let mut calls: Vec<(String, String)> = Vec::new();
    for e in &events {
        match (
            e["type"].as_str().unwrap(),
            e["content_block"]["type"].as_str(),
            e["delta"]["type"].as_str(),
        ) {
            ("content_block_start", Some("tool_use"), _) => calls.push((
                e["content_block"]["name"].as_str().unwrap().to_owned(),
                String::new(),
            )),
            ("content_block_delta", _, Some("text_delta")) => {
                text.push_str(e["delta"]["text"].as_str().unwrap())
            }
            ("content_block_delta", _, Some("input_json_delta")) => calls
                .last_mut()
                .unwrap()
                .1
                .push_str(e["delta"]["partial_json"].as_str().unwrap()),
            _ => {}
        }
    }
    let delta = &events[events.len() - 2]["delta"];
    let calls = calls
        .into_iter()
        .map(|(n, a)| (n, serde_json::from_str(&a).unwrap()))
        .collect();
    (
        text,
        calls,
        delta["stop_reason"].clone(),
        delta["stop_sequence"].clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_on_the_local_engine() {
    let mut m = Local::start("e2e-matrix-local-messages").await;
    let path = "/v1/messages";

    // Plain, then streamed: the same greedy answer.
    let r = m
        .answered(path, &messages_text("Say hello.", 12), 200)
        .await;
    let (plain, calls, stop, _) = anthropic_answer(&r, false);
    assert!(!plain.is_empty() && calls.is_empty(), "{}", r.body);
    assert!(["end_turn", "max_tokens"].contains(&stop.as_str().unwrap()));
    assert!(r.body["usage"]["input_tokens"].as_u64().unwrap() > 0);
    let mut body = messages_text("Say hello.", 12);
    body["stream"] = json!(true);
    let r = m.answered(path, &body, 200).await;
    let (text, _, stop_streamed, _) = anthropic_answer(&r, true);
    assert_eq!(text, plain);
    assert_eq!(stop_streamed, stop);

    // Tools: auto plain (text or a call), any plain + streamed, a named
    // tool plain + streamed.
    let any = json!({"type": "any", "disable_parallel_tool_use": true});
    let named = json!({"type": "tool", "name": "get_weather", "disable_parallel_tool_use": true});
    for (choice, stream, must, only) in [
        (
            json!({"type": "auto", "disable_parallel_tool_use": true}),
            false,
            false,
            None,
        ),
        (any.clone(), false, true, None),
        (any, true, true, None),
        (named.clone(), false, true, Some("get_weather")),
        (named, true, true, Some("get_weather")),
    ] {
        let r = m.answered(path, &messages_tools(choice, stream), 200).await;
        if stream {
            let (id, name, args, stop) = anthropic_streamed_call(r.raw());
            assert!(!id.is_empty(), "{}", r.raw());
            assert_eq!(stop, "tool_use");
            if let Some(only) = only {
                assert_eq!(name, only);
            }
            assert_schema(&name, &serde_json::from_str(&args).unwrap());
            continue;
        }
        let (_, calls, stop, _) = anthropic_answer(&r, false);
        if calls.is_empty() {
            assert!(!must, "a call was required: {}", r.body);
            continue;
        }
        assert_eq!(stop, "tool_use", "{}", r.body);
        assert_eq!(calls.len(), 1, "{}", r.body);
        if let Some(only) = only {
            assert_eq!(calls[0].0, only);
        }
        assert_schema(&calls[0].0, &calls[0].1);
    }

    // A tool_use and its tool_result, answered in text.
    let body = json!({
        "model": "local",
        "max_tokens": 24,
        "temperature": 0,
        "tools": anthropic_tools(),
        "tool_choice": {"type": "none"},
        "messages": [
            {"role": "user", "content": "What is the weather in Paris?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris", "unit": "celsius"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "18 degrees and sunny"}]}
        ],
    });
    let r = m.answered(path, &body, 200).await;
    let (text, calls, _, _) = anthropic_answer(&r, false);
    assert!(calls.is_empty() && !text.is_empty(), "{}", r.body);

    // A stop sequence, named in `stop_sequence`, plain and streamed.
    let r = m.answered(path, &messages_text(COUNT, 16), 200).await;
    let (full, _, _, _) = anthropic_answer(&r, false);
    let (stop, before) = stop_from(&full);
    for stream in [false, true] {
        let mut body = messages_text(COUNT, 16);
        body["stop_sequences"] = json!([stop]);
        body["stream"] = json!(stream);
        let r = m.answered(path, &body, 200).await;
        let (text, _, reason, named) = anthropic_answer(&r, stream);
        assert_eq!(reason, "stop_sequence", "stream {stream}: {}", r.body);
        assert_eq!(named, json!(stop), "stream {stream}");
        assert_eq!(text, before, "stream {stream}: cut before {stop:?}");
    }

    // An image: refused before routing, in Anthropic's shape.
    let body = json!({"model": "local", "max_tokens": 8, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    ]}]});
    let r = m.post(path, &body).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.body["type"], "error", "{}", r.body);
    assert_eq!(r.body["error"]["type"], "invalid_request_error");
    let msg = r.body["error"]["message"].as_str().unwrap();
    // No `param` in Anthropic's error shape: the message leads with the field.
    assert!(
        msg.starts_with("messages[0].content[1].source.data: ") && msg.contains("\"vision\""),
        "{}",
        r.body
    );
    m.refused_ids
        .push(r.header("x-request-id").unwrap().to_owned());
    m.cases += 1;

    let (cases, rows) = m.check_ledger().await;
    println!("messages on the local engine: {cases} cases, {rows} ledger rows matched (stop_sequence {stop:?} named plain and streamed)");
}

// ---------- /v1/responses ----------

fn responses_tools() -> Value {
    json!([
        {"type": "function", "name": "get_weather", "description": "The weather in a city", "parameters": weather_params()},
        {"type": "function", "name": "get_time", "description": "The time in a UTC offset", "parameters": time_params()}
    ])
}

/// The output text, function calls (name, arguments) and status of a
/// Responses answer, plain or streamed; a stream opens with
/// `response.created`, closes with `response.completed`, numbers its
/// events in order, and its deltas add up to the final response.
fn responses_answer(r: &Reply, stream: bool) -> (String, Vec<(String, Value)>, Value) {
    let read = |resp: &Value| {
        let output = resp["output"].as_array().unwrap();
        let text: String = output
            .iter()
            .filter(|i| i["type"] == "message")
            .flat_map(|i| i["content"].as_array().unwrap().iter())
            .filter(|c| c["type"] == "output_text")
            .map(|c| c["text"].as_str().unwrap())
            .collect();
        let calls = output
            .iter()
            .filter(|i| i["type"] == "function_call")
            .map(|i| {
                assert!(i["call_id"].as_str().is_some_and(|c| !c.is_empty()), "{i}");
                let args = serde_json::from_str(i["arguments"].as_str().unwrap()).unwrap();
                (i["name"].as_str().unwrap().to_owned(), args)
            })
            .collect::<Vec<_>>();
        (text, calls, resp["status"].clone())
    };
    if !stream {
        assert_eq!(r.body["object"], "response", "{}", r.body);
        return read(&r.body);
    }
    let events = r.events();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types.first(), Some(&"response.created"), "{types:?}");
    // `response.incomplete` closes an answer cut at `max_output_tokens`.
    let last = *types.last().unwrap();
    assert!(
        ["response.completed", "response.incomplete"].contains(&last),
        "{types:?}"
    );
    for t in ["response.output_item.added", "response.output_item.done"] {
        assert!(types.contains(&t), "{t} missing: {types:?}");
    }
    let seq: Vec<u64> = events
        .iter()
        .filter_map(|e| e["sequence_number"].as_u64())
        .collect();
    assert_eq!(seq.len(), events.len(), "every event numbered");
    assert!(seq.windows(2).all(|w| w[1] == w[0] + 1), "{seq:?}");
    let done = read(&events.last().unwrap()["response"]);
    let deltas: String = events
        .iter()
        .filter(|e| e["type"] == "response.output_text.delta")
        .map(|e| e["delta"].as_str().unwrap())
        .collect();
    assert_eq!(deltas, done.0, "{types:?}");
    let arg_deltas: String = events
        .iter()
        .filter(|e| e["type"] == "response.function_call_arguments.delta")
        .map(|e| e["delta"].as_str().unwrap())
        .collect();
    if let Some((_, args)) = done.1.first() {
        assert_eq!(serde_json::from_str::<Value>(&arg_deltas).unwrap(), *args);
    }
    done
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_on_the_local_engine() {
    let mut m = Local::start("e2e-matrix-local-responses").await;
    let path = "/v1/responses";
    let text = |input: &str, max: u32| {
        json!({"model": "local", "instructions": "Be brief.", "input": input,
            "max_output_tokens": max, "temperature": 0})
    };

    // Plain, then streamed: the same greedy answer.
    let r = m.answered(path, &text("Say hello.", 12), 200).await;
    let (plain, calls, status) = responses_answer(&r, false);
    assert!(!plain.is_empty() && calls.is_empty(), "{}", r.body);
    assert!(["completed", "incomplete"].contains(&status.as_str().unwrap()));
    let mut body = text("Say hello.", 12);
    body["stream"] = json!(true);
    let r = m.answered(path, &body, 200).await;
    let (streamed, _, status_streamed) = responses_answer(&r, true);
    assert_eq!(streamed, plain);
    assert_eq!(status_streamed, status);

    // Function tools, forced by name, plain and streamed.
    for stream in [false, true] {
        let body = json!({"model": "local", "input": ASK_TOOLS, "tools": responses_tools(),
            "tool_choice": {"type": "function", "name": "get_weather"},
            "parallel_tool_calls": false, "max_output_tokens": 96, "temperature": 1.0,
            "stream": stream});
        let r = m.answered(path, &body, 200).await;
        let (_, calls, status) = responses_answer(&r, stream);
        assert_eq!(status, "completed", "{}", r.body);
        assert_eq!(calls.len(), 1, "{}", r.body);
        assert_eq!(calls[0].0, "get_weather");
        assert_schema(&calls[0].0, &calls[0].1);
    }

    // A function_call and its output, answered in text.
    let body = json!({"model": "local", "max_output_tokens": 24, "temperature": 0,
    "tools": responses_tools(), "tool_choice": "none",
    "input": [
        {"role": "user", "content": "What is the weather in Paris?"},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\",\"unit\":\"celsius\"}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "18 degrees and sunny"}
    ]});
    let r = m.answered(path, &body, 200).await;
    let (answer, calls, _) = responses_answer(&r, false);
    assert!(calls.is_empty() && !answer.is_empty(), "{}", r.body);

    // text.format json_schema: the answer parses and fits.
    let mut body = text("Pick a colour.", 48);
    body["text"] = json!({"format": {"type": "json_schema", "name": "colour", "strict": true, "schema": colour_schema()}});
    let r = m.answered(path, &body, 200).await;
    let (answer, _, status) = responses_answer(&r, false);
    assert_eq!(status, "completed", "{}", r.body);
    assert_colour(&answer);

    // An input_image: the engine cannot see.
    let body = json!({"model": "local", "max_output_tokens": 8, "input": [{"role": "user", "content": [
        {"type": "input_text", "text": "What is this?"},
        {"type": "input_image", "image_url": format!("data:image/png;base64,{PNG}")}
    ]}]});
    let r = m.post(path, &body).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "missing_capability", "{}", r.body);
    let param = r.body["error"]["param"].as_str().unwrap().to_owned();
    assert!(param.starts_with("input[0].content[1]"), "{}", r.body);
    m.refused_ids
        .push(r.header("x-request-id").unwrap().to_owned());
    m.cases += 1;

    // reasoning.effort: the engine does not reason; refused by name.
    let mut body = text("Say hello.", 8);
    body["reasoning"] = json!({"effort": "low"});
    m.refused_at_dispatch(path, &body, "bad_request", "reasoning.effort")
        .await;

    let (cases, rows) = m.check_ledger().await;
    println!("responses on the local engine: {cases} cases, {rows} ledger rows matched (image refused naming {param})");
}

// ---------- embeddings, count_tokens, models ----------

/// Standard base64 (with padding) to bytes.
fn decode_base64(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    assert_eq!(text.len() % 4, 0, "{text}");
    let mut out = Vec::new();
    for quad in text.as_bytes().chunks(4) {
        let mut n = 0u32;
        let mut pad = 0;
        for &c in quad {
            n <<= 6;
            match ALPHABET.iter().position(|&a| a == c) {
                Some(v) => n |= v as u32,
                None => {
                    assert_eq!(c, b'=', "{text}");
                    pad += 1;
                }
            }
        }
        out.extend(&n.to_be_bytes()[1..4 - pad]);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_count_tokens_and_models_on_the_local_engine() {
    let mut m = Local::start("e2e-matrix-local-embed").await;
    let path = "/v1/embeddings";

    // A string, then a list holding it: the same vector.
    let r = m
        .answered(path, &json!({"model": "local", "input": "first text"}), 200)
        .await;
    let one = r.body["data"][0]["embedding"].as_array().unwrap().clone();
    let dims = one.len();
    assert!(dims > 0);
    assert_eq!(r.body["object"], "list");
    let body = json!({"model": "local", "input": ["first text", "second text"]});
    let r = m.answered(path, &body, 200).await;
    let data = r.body["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(
        (data[0]["index"].clone(), data[1]["index"].clone()),
        (json!(0), json!(1))
    );
    assert_eq!(data[0]["embedding"].as_array().unwrap().len(), dims);
    assert_ne!(data[0]["embedding"], data[1]["embedding"]);
    let close = |a: &[Value], b: &[Value]| {
        a.iter()
            .zip(b)
            .all(|(x, y)| (x.as_f64().unwrap() - y.as_f64().unwrap()).abs() < 1e-4)
    };
    assert!(close(&one, data[0]["embedding"].as_array().unwrap()));

    // Token arrays: counted as given.
    let r = m
        .answered(
            path,
            &json!({"model": "local", "input": [[1, 2, 3], [4, 5]]}),
            200,
        )
        .await;
    assert_eq!(r.body["usage"]["prompt_tokens"], 5, "{}", r.body);
    assert_eq!(r.body["data"].as_array().unwrap().len(), 2);

    // base64: the same floats, little-endian f32.
    let body = json!({"model": "local", "input": "first text", "encoding_format": "base64"});
    let r = m.answered(path, &body, 200).await;
    let bytes = decode_base64(r.body["data"][0]["embedding"].as_str().unwrap());
    assert_eq!(bytes.len(), dims * 4);
    let floats: Vec<Value> = bytes
        .chunks(4)
        .map(|b| json!(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
        .collect();
    assert!(close(&one, &floats), "base64 carries the float vector");

    // `dimensions`: the engine cannot shorten a vector; skipped at dispatch.
    let body = json!({"model": "local", "input": "a", "dimensions": 8});
    m.refused_at_dispatch(path, &body, "bad_request", "dimensions")
        .await;

    // count_tokens: exact (the model's tokenizer), no estimate header, and
    // equal to what a plain answer to the same request was billed.
    let ask = json!({"model": "local", "system": "be brief", "max_tokens": 4, "temperature": 0,
        "messages": [{"role": "user", "content": "one two three"}]});
    let r = m.answered("/v1/messages", &ask, 200).await;
    let billed = r.body["usage"]["input_tokens"].as_u64().unwrap();
    let r = m.post("/v1/messages/count_tokens", &ask).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-watershed-estimate"), None, "an exact count");
    assert_eq!(r.header("x-watershed-backend"), Some("local"));
    assert_eq!(r.body, json!({"input_tokens": billed}));
    m.cases += 1;

    // /v1/models and /v1/models/{id} agree.
    let stem = test_model().unwrap();
    let stem = stem.file_stem().unwrap().to_str().unwrap().to_owned();
    let list = m.get("/v1/models").await;
    assert_eq!(list.status, 200);
    let listed = list.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == "local")
        .unwrap_or_else(|| panic!("{}", list.body))
        .clone();
    let r = m.get("/v1/models/local").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, listed);
    assert_eq!(r.body["object"], "model");
    let w = &r.body["watershed"];
    assert_eq!(w["backend"], "llama.cpp", "{w}");
    assert_eq!(w["upstream_model"], stem, "{w}");
    // What the cases found: all but images.
    let caps = &w["capabilities"];
    for (cap, want) in [
        ("embeddings", true),
        ("json_schema", true),
        ("logprobs", true),
        ("tools", true),
        ("vision", false),
    ] {
        assert_eq!(caps[cap], want, "{cap}: {w}");
    }
    assert_eq!(w["details"]["architecture"], "llama", "{w}");
    let r = m.get("/v1/models/nobody").await;
    assert_eq!(r.status, 404, "{}", r.body);
    m.cases += 3;

    let (cases, rows) = m.check_ledger().await;
    println!("embeddings, count_tokens and models on the local engine: {cases} cases, {rows} ledger rows matched ({dims} dimensions)");
}
