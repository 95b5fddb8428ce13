//! The compatibility matrix end to end: one gateway configuration, started
//! with the real binary, with one target of every remote backend kind
//! (OpenAI, Anthropic, Gemini, OpenAI-compatible) on mock upstreams that
//! speak each provider's wire format, and a route per kind chosen by
//! `model`. One test per endpoint loops over the kinds and the features;
//! every case checks what the client got, what the upstream received (the
//! translated body), and, at the end, the ledger: one row per dispatched
//! request with its backend and status. A combination refused by design is
//! checked as a refusal (status, code, field). The README's compatibility
//! table names these tests.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::time::Duration;

use serde_json::{json, Value};
use sqlx::Row;
use watershed_tests::harness::Gateway;
use watershed_tests::mock::{MockUpstream, RecordedRequest};

/// A 70-byte 1x1 PNG.
const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

/// The remote backend kinds, in the table's column order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    OpenAi,
    Anthropic,
    Gemini,
    Compat,
}

const KINDS: [Kind; 4] = [Kind::OpenAi, Kind::Anthropic, Kind::Gemini, Kind::Compat];

impl Kind {
    /// The `model` a client sends to reach this kind's route.
    fn model(self) -> &'static str {
        match self {
            Kind::OpenAi => "openai",
            Kind::Anthropic => "anthropic",
            Kind::Gemini => "gemini",
            Kind::Compat => "compat",
        }
    }

    /// The target (backend) that serves the route.
    fn target(self) -> &'static str {
        match self {
            Kind::OpenAi => "gpt",
            Kind::Anthropic => "claude",
            Kind::Gemini => "gem",
            Kind::Compat => "vllm",
        }
    }

    /// The model name the upstream is asked for.
    fn upstream_model(self) -> &'static str {
        match self {
            Kind::OpenAi => "gpt-4o",
            Kind::Anthropic => "claude-sonnet-4-5",
            Kind::Gemini => "gemini-3-flash-preview",
            Kind::Compat => "served-model",
        }
    }
}

fn config(openai: &str, anthropic: &str, gemini: &str, compat: &str) -> String {
    format!(
        r#"version: 1
ledger: {{ url: "sqlite://{{dir}}/ledger.db" }}
privacy: {{ uninspectable: public }}
models:
  local:
    engine: local
    gguf: "{{dir}}/does-not-exist.gguf"
  gpt:
    provider: openai
    base_url: "{openai}"
    model: gpt-4o
    api_key_env: MATRIX_OPENAI_KEY
    embeddings: {{ model: text-embedding-3-small }}
    timeout_ms: 5000
  claude:
    provider: anthropic
    base_url: "{anthropic}"
    model: claude-sonnet-4-5
    api_key_env: MATRIX_ANTHROPIC_KEY
    timeout_ms: 5000
  gem:
    provider: gemini
    base_url: "{gemini}"
    model: gemini-3-flash-preview
    api_key_env: MATRIX_GEMINI_KEY
    timeout_ms: 5000
  vllm:
    provider: openai-compatible
    base_url: "{compat}"
    model: served-model
    capabilities: {{ vision: true }}
    embeddings: {{ model: served-embedder }}
    timeout_ms: 5000
routes:
  - name: home
    when: {{ privacy: ">= confidential" }}
    to: [local]
  - name: openai
    when: {{ model: openai }}
    to: [gpt]
  - name: anthropic
    when: {{ model: anthropic }}
    to: [claude]
  - name: gemini
    when: {{ model: gemini }}
    to: [gem]
  - name: compat
    when: {{ model: compat }}
    to: [vllm]
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

    /// The `data:` payloads of an SSE body, parsed (`[DONE]` left out).
    fn events(&self) -> Vec<Value> {
        let text = self
            .body
            .as_str()
            .unwrap_or_else(|| panic!("not a stream: {}", self.body));
        text.split("\n\n")
            .filter_map(|frame| {
                frame
                    .lines()
                    .find_map(|l| l.strip_prefix("data: "))
                    .filter(|d| *d != "[DONE]")
                    .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("{e}: {d}")))
            })
            .collect()
    }

    fn raw(&self) -> &str {
        self.body.as_str().unwrap_or_default()
    }
}

/// The four mocks, the gateway, and what the ledger should hold.
struct Matrix {
    openai: MockUpstream,
    anthropic: MockUpstream,
    gemini: MockUpstream,
    compat: MockUpstream,
    gw: Gateway,
    http: reqwest::Client,
    /// (request id, backend, status) of every request that must leave a row.
    expected_rows: Vec<(String, String, i64)>,
    /// Requests refused before routing chose a target: never dispatched, so
    /// they leave no row.
    refused_ids: Vec<String>,
    cases: usize,
}

impl Matrix {
    async fn start(tag: &str) -> Self {
        let openai = MockUpstream::openai().await;
        let anthropic = MockUpstream::anthropic().await;
        let gemini = MockUpstream::gemini().await;
        let compat = MockUpstream::vllm().await;
        let gw = Gateway::start(
            tag,
            &config(
                &openai.base_url,
                &anthropic.base_url,
                &gemini.base_url,
                &compat.base_url,
            ),
            &[
                ("MATRIX_OPENAI_KEY", "sk-matrix-openai"),
                ("MATRIX_ANTHROPIC_KEY", "sk-ant-matrix"),
                ("MATRIX_GEMINI_KEY", "gem-matrix"),
            ],
        )
        .unwrap();
        gw.wait_ready(Duration::from_secs(30)).await.unwrap();
        Self {
            openai,
            anthropic,
            gemini,
            compat,
            gw,
            http: reqwest::Client::new(),
            expected_rows: Vec::new(),
            refused_ids: Vec::new(),
            cases: 0,
        }
    }

    fn mock(&self, kind: Kind) -> &MockUpstream {
        match kind {
            Kind::OpenAi => &self.openai,
            Kind::Anthropic => &self.anthropic,
            Kind::Gemini => &self.gemini,
            Kind::Compat => &self.compat,
        }
    }

    fn requests_to_all(&self) -> usize {
        KINDS.iter().map(|k| self.mock(*k).request_count()).sum()
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

    /// Sends one case that must be dispatched to `kind`'s upstream: checks
    /// the status, the backend header, that exactly one upstream request
    /// was made, and notes the ledger row it must leave. Returns the reply
    /// and what the upstream received.
    async fn dispatched(
        &mut self,
        kind: Kind,
        path: &str,
        body: &Value,
        status: u16,
    ) -> (Reply, RecordedRequest) {
        let before = self.mock(kind).request_count();
        let all_before = self.requests_to_all();
        let reply = self.post(path, body).await;
        assert_eq!(
            reply.status,
            status,
            "{kind:?} {path}: {}\n{}",
            reply.body,
            self.gw.log_text()
        );
        assert_eq!(reply.header("x-watershed-backend"), Some(kind.target()));
        assert_eq!(
            self.mock(kind).request_count(),
            before + 1,
            "{kind:?} {path}"
        );
        assert_eq!(
            self.requests_to_all(),
            all_before + 1,
            "only {kind:?} was asked"
        );
        let sent = self.mock(kind).last_request().unwrap();
        assert_credentials(kind, &sent);
        let id = reply.header("x-request-id").unwrap().to_owned();
        self.expected_rows
            .push((id, kind.target().to_owned(), i64::from(status)));
        self.cases += 1;
        (reply, sent)
    }

    /// Sends one case refused by design before any upstream is asked:
    /// checks the status, the error's code and the field it names.
    async fn refused(&mut self, kind: Kind, path: &str, body: &Value, code: &str, param: &str) {
        let all_before = self.requests_to_all();
        let reply = self.post(path, body).await;
        assert_eq!(reply.status, 400, "{kind:?} {path}: {}", reply.body);
        let (got_code, got_param) = error_shape(&reply.body);
        assert_eq!(got_code, code, "{kind:?} {path}: {}", reply.body);
        assert_eq!(got_param, param, "{kind:?} {path}: {}", reply.body);
        assert_eq!(self.requests_to_all(), all_before, "nothing left");
        let id = reply.header("x-request-id").unwrap().to_owned();
        self.refused_ids.push(id);
        self.cases += 1;
    }

    /// Sends one case whose route's only target cannot honour an option:
    /// dispatch skips it, so nothing leaves, and the route answers 400
    /// naming the field; the ledger row has the status and no backend.
    async fn refused_at_dispatch(
        &mut self,
        kind: Kind,
        path: &str,
        body: &Value,
        code: &str,
        param: &str,
    ) {
        let all_before = self.requests_to_all();
        let reply = self.post(path, body).await;
        assert_eq!(reply.status, 400, "{kind:?} {path}: {}", reply.body);
        // The route was chosen; its only target was skipped, never tried.
        assert_eq!(reply.header("x-watershed-route"), Some(kind.model()));
        assert_eq!(reply.header("x-watershed-backend"), None);
        let (got_code, got_param) = error_shape(&reply.body);
        assert_eq!(
            (got_code.as_str(), got_param.as_str()),
            (code, param),
            "{kind:?}: {}",
            reply.body
        );
        assert_eq!(self.requests_to_all(), all_before, "nothing left");
        let id = reply.header("x-request-id").unwrap().to_owned();
        self.expected_rows.push((id, String::new(), 400));
        self.cases += 1;
    }

    /// Stops the gateway and checks every dispatched request left exactly
    /// one ledger row, with its backend and status, and nothing else did
    /// (refusals, counts, model listings). Returns the row count.
    async fn check_ledger(self) -> usize {
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
                "the refused {id} was never dispatched"
            );
        }
        assert_eq!(rows.len(), self.expected_rows.len(), "no other rows");
        rows.len()
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

/// Each upstream gets its own key in its own header; the
/// OpenAI-compatible server, configured without one, gets none.
fn assert_credentials(kind: Kind, sent: &RecordedRequest) {
    let got = (
        sent.header("authorization"),
        sent.header("x-api-key"),
        sent.header("x-goog-api-key"),
    );
    let want = match kind {
        Kind::OpenAi => (Some("Bearer sk-matrix-openai"), None, None),
        Kind::Anthropic => (None, Some("sk-ant-matrix"), None),
        Kind::Gemini => (None, None, Some("gem-matrix")),
        Kind::Compat => (None, None, None),
    };
    assert_eq!(got, want, "{kind:?} credentials");
    if kind == Kind::Anthropic {
        assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
    }
}

/// The weather tool's parameters, as JSON Schema.
fn weather_params() -> Value {
    json!({"type": "object", "properties": {"query": {"type": "string", "description": "the city"}}, "required": ["query"]})
}

/// The colour schema of the JSON-output cases.
fn colour_schema() -> Value {
    json!({"type": "object", "properties": {"colour": {"type": "string"}}, "required": ["colour"], "additionalProperties": false})
}

/// The tools, as the upstream of `kind` received them: each tool's name
/// and its parameters in that wire's shape.
fn upstream_tools(kind: Kind, body: &Value) -> Vec<(String, Value)> {
    let list = |ptr: &str| {
        body.pointer(ptr)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    match kind {
        Kind::OpenAi | Kind::Compat => list("/tools")
            .iter()
            .map(|t| {
                assert_eq!(t["type"], "function", "{body}");
                (
                    t["function"]["name"].as_str().unwrap().to_owned(),
                    t["function"]["parameters"].clone(),
                )
            })
            .collect(),
        Kind::Anthropic => list("/tools")
            .iter()
            .map(|t| {
                (
                    t["name"].as_str().unwrap().to_owned(),
                    t["input_schema"].clone(),
                )
            })
            .collect(),
        Kind::Gemini => list("/tools/0/functionDeclarations")
            .iter()
            .map(|t| {
                (
                    t["name"].as_str().unwrap().to_owned(),
                    t["parameters"].clone(),
                )
            })
            .collect(),
    }
}

/// Checks the upstream got both tools in its own shape and, where the
/// client forced one, the forced choice in its own shape.
fn assert_tools_sent(kind: Kind, body: &Value, forced: bool) {
    let tools = upstream_tools(kind, body);
    let names: Vec<&str> = tools.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["lookup_time", "get_weather"], "{kind:?}: {body}");
    let params = &tools[1].1;
    match kind {
        Kind::Gemini => assert_eq!(
            params,
            &json!({"type": "OBJECT", "properties": {"query": {"type": "STRING", "description": "the city"}}, "required": ["query"]}),
            "{body}"
        ),
        _ => assert_eq!(params, &weather_params(), "{kind:?}: {body}"),
    }
    let choice = match kind {
        Kind::OpenAi | Kind::Compat => body["tool_choice"].clone(),
        Kind::Anthropic => body["tool_choice"].clone(),
        Kind::Gemini => body
            .pointer("/toolConfig/functionCallingConfig")
            .cloned()
            .unwrap_or(Value::Null),
    };
    let want = match (kind, forced) {
        (Kind::OpenAi | Kind::Compat, true) => {
            json!({"type": "function", "function": {"name": "get_weather"}})
        }
        (Kind::OpenAi | Kind::Compat, false) => json!("auto"),
        (Kind::Anthropic, true) => json!({"type": "tool", "name": "get_weather"}),
        (Kind::Anthropic, false) => json!({"type": "auto"}),
        (Kind::Gemini, true) => json!({"mode": "ANY", "allowedFunctionNames": ["get_weather"]}),
        (Kind::Gemini, false) => json!({"mode": "AUTO"}),
    };
    assert_eq!(choice, want, "{kind:?} forced={forced}: {body}");
}

/// Checks the upstream of `kind` was asked for a stream (or not).
fn assert_streamed(kind: Kind, sent: &RecordedRequest, stream: bool) {
    match kind {
        Kind::Gemini => {
            let method = if stream {
                ":streamGenerateContent"
            } else {
                ":generateContent"
            };
            assert_eq!(
                sent.path,
                format!("/v1beta/models/{}{method}", kind.upstream_model()),
                "{kind:?}"
            );
        }
        _ => {
            let path = if kind == Kind::Anthropic {
                "/v1/messages"
            } else {
                "/v1/chat/completions"
            };
            assert_eq!(sent.path, path, "{kind:?}");
            assert_eq!(sent.body["model"], kind.upstream_model(), "{kind:?}");
            assert_eq!(
                sent.body["stream"].as_bool().unwrap_or(false),
                stream,
                "{kind:?}: {}",
                sent.body
            );
        }
    }
}

/// The text of the last user turn the upstream of `kind` received.
fn upstream_user_text(kind: Kind, body: &Value) -> String {
    let (turns, key) = match kind {
        Kind::Gemini => (body["contents"].as_array().unwrap(), "parts"),
        _ => (body["messages"].as_array().unwrap(), "content"),
    };
    let last = turns.iter().rev().find(|t| t["role"] == "user").unwrap();
    match &last[key] {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join(" "),
        other => panic!("{other}"),
    }
}

/// Checks the upstream of `kind` got the PNG in its own image shape.
fn assert_image_sent(kind: Kind, body: &Value) {
    let parts = match kind {
        Kind::Gemini => body["contents"][0]["parts"].clone(),
        _ => body["messages"][0]["content"].clone(),
    };
    let image = match kind {
        Kind::OpenAi | Kind::Compat => {
            json!({"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG}")}})
        }
        Kind::Anthropic => {
            json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}})
        }
        Kind::Gemini => json!({"inlineData": {"mimeType": "image/png", "data": PNG}}),
    };
    let found = parts.as_array().unwrap().iter().any(|p| {
        // OpenAI may carry `detail`; compare the rest.
        let mut p = p.clone();
        if let Some(u) = p.pointer_mut("/image_url").and_then(Value::as_object_mut) {
            u.remove("detail");
        }
        p == image
    });
    assert!(found, "{kind:?} got no image part {image}: {body}");
}

/// The stop strings as the upstream of `kind` received them.
fn upstream_stops(kind: Kind, body: &Value) -> Value {
    match kind {
        Kind::OpenAi | Kind::Compat => body["stop"].clone(),
        Kind::Anthropic => body["stop_sequences"].clone(),
        Kind::Gemini => body["generationConfig"]["stopSequences"].clone(),
    }
}

fn tools_chat() -> Value {
    json!([
        {"type": "function", "function": {"name": "lookup_time", "description": "the time somewhere", "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}}}},
        {"type": "function", "function": {"name": "get_weather", "description": "the weather in a city", "parameters": weather_params()}}
    ])
}

/// The arguments a mock calls its tool with: the prompt as `query`.
fn query_args(prompt: &str) -> Value {
    json!({"query": prompt})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_completions_on_every_remote_kind() {
    let mut m = Matrix::start("e2e-matrix-chat").await;
    let path = "/v1/chat/completions";
    for kind in KINDS {
        let model = kind.model();
        let user = |text: &str| json!([{"role": "user", "content": text}]);

        // Plain.
        let prompt = format!("plain chat for {model}");
        let body = json!({"model": model, "max_tokens": 32, "messages": user(&prompt)});
        let (r, sent) = m.dispatched(kind, path, &body, 200).await;
        assert_eq!(r.body["object"], "chat.completion");
        assert_eq!(
            r.body["choices"][0]["message"]["content"],
            format!("echo: {prompt}"),
            "{kind:?}"
        );
        assert_eq!(r.body["choices"][0]["finish_reason"], "stop");
        assert!(
            r.body["usage"]["prompt_tokens"].as_u64().unwrap() > 0,
            "{kind:?}"
        );
        assert_streamed(kind, &sent, false);
        assert_eq!(upstream_user_text(kind, &sent.body), prompt);

        // Streamed.
        let prompt = format!("streamed chat for {model}");
        let body = json!({"model": model, "max_tokens": 32, "stream": true,
            "stream_options": {"include_usage": true}, "messages": user(&prompt)});
        let (r, sent) = m.dispatched(kind, path, &body, 200).await;
        assert!(
            r.raw().trim_end().ends_with("data: [DONE]"),
            "{kind:?}: {}",
            r.raw()
        );
        let chunks = r.events();
        let text: String = chunks
            .iter()
            .filter_map(|c| {
                c.pointer("/choices/0/delta/content")
                    .and_then(Value::as_str)
            })
            .collect();
        assert_eq!(text, format!("echo: {prompt}"), "{kind:?}");
        let finish: Vec<&Value> = chunks
            .iter()
            .filter_map(|c| c.pointer("/choices/0/finish_reason"))
            .filter(|f| !f.is_null())
            .collect();
        assert_eq!(finish, [&json!("stop")], "{kind:?}");
        assert!(
            chunks
                .iter()
                .any(|c| c["usage"]["completion_tokens"].as_u64() > Some(0)),
            "{kind:?}"
        );
        assert_streamed(kind, &sent, true);

        // Tools: auto and a named (forced) choice, plain and streamed.
        for (forced, stream) in [(false, false), (false, true), (true, false), (true, true)] {
            let prompt = format!("weather in Paris for {model} forced={forced} stream={stream}");
            let choice = if forced {
                json!({"type": "function", "function": {"name": "get_weather"}})
            } else {
                json!("auto")
            };
            let body = json!({"model": model, "max_tokens": 32, "stream": stream,
                "tools": tools_chat(), "tool_choice": choice, "messages": user(&prompt)});
            let (r, sent) = m.dispatched(kind, path, &body, 200).await;
            let (name, args, finish) = if stream {
                let chunks = r.events();
                let name = chunks
                    .iter()
                    .find_map(|c| c.pointer("/choices/0/delta/tool_calls/0/function/name"))
                    .and_then(Value::as_str)
                    .unwrap_or_else(|| panic!("{kind:?}: {}", r.raw()))
                    .to_owned();
                let args: String = chunks
                    .iter()
                    .filter_map(|c| c.pointer("/choices/0/delta/tool_calls/0/function/arguments"))
                    .filter_map(Value::as_str)
                    .collect();
                let finish = chunks
                    .iter()
                    .filter_map(|c| c.pointer("/choices/0/finish_reason"))
                    .find(|f| !f.is_null())
                    .cloned();
                (name, args, finish)
            } else {
                let call = &r.body["choices"][0]["message"]["tool_calls"][0];
                assert_eq!(call["type"], "function", "{kind:?}: {}", r.body);
                assert!(call["id"].as_str().is_some_and(|id| !id.is_empty()));
                (
                    call["function"]["name"].as_str().unwrap().to_owned(),
                    call["function"]["arguments"].as_str().unwrap().to_owned(),
                    Some(r.body["choices"][0]["finish_reason"].clone()),
                )
            };
            // Auto: the mocks call the first tool; forced: the named one.
            let want = if forced { "get_weather" } else { "lookup_time" };
            assert_eq!(name, want, "{kind:?} forced={forced} stream={stream}");
            let args: Value = serde_json::from_str(&args).unwrap();
            assert_eq!(args, query_args(&prompt), "{kind:?}");
            assert_eq!(finish, Some(json!("tool_calls")), "{kind:?}");
            assert_tools_sent(kind, &sent.body, forced);
            assert_streamed(kind, &sent, stream);
        }

        // The tool result turn.
        let prompt = format!("weather in Rome for {model}");
        let body = json!({"model": model, "max_tokens": 32, "tools": tools_chat(), "messages": [
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"query\":\"Rome\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "21C and clear"}
        ]});
        let (r, sent) = m.dispatched(kind, path, &body, 200).await;
        assert_eq!(
            r.body["choices"][0]["message"]["content"], "echo: tool said 21C and clear",
            "{kind:?}"
        );
        assert_eq!(r.body["choices"][0]["finish_reason"], "stop");
        assert_tool_round_trip_sent(kind, &sent.body);

        // JSON schema.
        let prompt = format!("sky colour for {model}");
        let body = json!({"model": model, "max_tokens": 32, "messages": user(&prompt),
            "response_format": {"type": "json_schema", "json_schema": {"name": "colour", "schema": colour_schema(), "strict": true}}});
        if kind == Kind::Anthropic {
            // Anthropic is sent no `response_format`: its only target lacks it.
            m.refused(kind, path, &body, "missing_capability", "response_format")
                .await;
        } else {
            let (r, sent) = m.dispatched(kind, path, &body, 200).await;
            let content = r.body["choices"][0]["message"]["content"].as_str().unwrap();
            let parsed: Value = serde_json::from_str(content)
                .unwrap_or_else(|e| panic!("{kind:?}: {e}: {content}"));
            assert_eq!(parsed, json!({"colour": prompt}), "{kind:?}");
            match kind {
                Kind::Gemini => {
                    let c = &sent.body["generationConfig"];
                    assert_eq!(c["responseMimeType"], "application/json", "{c}");
                    assert_eq!(
                        c["responseSchema"],
                        json!({"type": "OBJECT", "properties": {"colour": {"type": "STRING"}}, "required": ["colour"]}),
                        "{c}"
                    );
                }
                _ => {
                    assert_eq!(sent.body["response_format"]["type"], "json_schema");
                    assert_eq!(
                        sent.body["response_format"]["json_schema"]["schema"],
                        colour_schema()
                    );
                }
            }
        }

        // An image.
        let prompt = format!("describe for {model}");
        let body = json!({"model": model, "max_tokens": 32, "messages": [{"role": "user", "content": [
            {"type": "text", "text": prompt},
            {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG}")}}
        ]}]});
        let (r, sent) = m.dispatched(kind, path, &body, 200).await;
        assert_eq!(
            r.body["choices"][0]["message"]["content"],
            format!("echo: {prompt}"),
            "{kind:?}"
        );
        assert_image_sent(kind, &sent.body);
        let mut streamed = body.clone();
        streamed["stream"] = json!(true);
        let (r, sent) = m.dispatched(kind, path, &streamed, 200).await;
        let text: String = r
            .events()
            .iter()
            .filter_map(|c| {
                c.pointer("/choices/0/delta/content")
                    .and_then(Value::as_str)
            })
            .collect();
        assert_eq!(text, format!("echo: {prompt}"), "{kind:?}");
        assert_image_sent(kind, &sent.body);
        assert_streamed(kind, &sent, true);

        // A stop sequence: the mocks stop before it, as a model does.
        let prompt = format!("alpha STOP beta for {model}");
        let body =
            json!({"model": model, "max_tokens": 32, "stop": ["STOP"], "messages": user(&prompt)});
        let (r, sent) = m.dispatched(kind, path, &body, 200).await;
        assert_eq!(
            r.body["choices"][0]["message"]["content"], "echo: alpha ",
            "{kind:?}"
        );
        assert_eq!(r.body["choices"][0]["finish_reason"], "stop", "{kind:?}");
        assert_eq!(
            upstream_stops(kind, &sent.body),
            json!(["STOP"]),
            "{kind:?}: {}",
            sent.body
        );
    }
    let cases = m.cases;
    let rows = m.check_ledger().await;
    println!("chat_completions: {cases} cases over 4 kinds checked, {rows} ledger rows matched");
}

/// Checks the upstream got the call and its result in its own shape.
fn assert_tool_round_trip_sent(kind: Kind, body: &Value) {
    match kind {
        Kind::OpenAi | Kind::Compat => {
            let turns = body["messages"].as_array().unwrap();
            assert_eq!(
                turns[1]["tool_calls"][0]["function"]["name"], "get_weather",
                "{body}"
            );
            assert_eq!(turns[2]["role"], "tool", "{body}");
            assert_eq!(
                turns[2]["tool_call_id"], turns[1]["tool_calls"][0]["id"],
                "{body}"
            );
            assert_eq!(turns[2]["content"], "21C and clear", "{body}");
        }
        Kind::Anthropic => {
            let turns = body["messages"].as_array().unwrap();
            let call = &turns[1]["content"][0];
            assert_eq!(call["type"], "tool_use", "{body}");
            assert_eq!(call["name"], "get_weather", "{body}");
            assert_eq!(call["input"], json!({"query": "Rome"}), "{body}");
            let result = &turns[2]["content"][0];
            assert_eq!(result["type"], "tool_result", "{body}");
            assert_eq!(result["tool_use_id"], call["id"], "{body}");
        }
        Kind::Gemini => {
            let turns = body["contents"].as_array().unwrap();
            assert_eq!(
                turns[1]["parts"][0]["functionCall"],
                json!({"name": "get_weather", "args": {"query": "Rome"}}),
                "{body}"
            );
            assert_eq!(
                turns[2]["parts"][0]["functionResponse"],
                json!({"name": "get_weather", "response": {"output": "21C and clear"}}),
                "{body}"
            );
        }
    }
}

fn tools_anthropic() -> Value {
    json!([
        {"name": "lookup_time", "description": "the time somewhere", "input_schema": {"type": "object", "properties": {"zone": {"type": "string"}}}},
        {"name": "get_weather", "description": "the weather in a city", "input_schema": weather_params()}
    ])
}

/// The text, tool calls (name, input) and stop reason of an Anthropic
/// answer, plain or streamed; a stream must follow the documented event
/// order.
fn anthropic_answer(r: &Reply, stream: bool) -> (String, Vec<(String, Value)>, Value, Value) {
    if !stream {
        let content = r.body["content"].as_array().unwrap();
        let text = content.iter().filter_map(|b| b["text"].as_str()).collect();
        let calls = content
            .iter()
            .filter(|b| b["type"] == "tool_use")
            .map(|b| (b["name"].as_str().unwrap().to_owned(), b["input"].clone()))
            .collect();
        assert_eq!(r.body["type"], "message", "{}", r.body);
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
            ("content_block_start", Some("tool_use"), _) => {
                calls.push((
                    e["content_block"]["name"].as_str().unwrap().to_owned(),
                    String::new(),
                ));
            }
            ("content_block_delta", _, Some("text_delta")) => {
                text.push_str(e["delta"]["text"].as_str().unwrap())
            }
            ("content_block_delta", _, Some("input_json_delta")) => {
                calls
                    .last_mut()
                    .unwrap()
                    .1
                    .push_str(e["delta"]["partial_json"].as_str().unwrap());
            }
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
async fn messages_on_every_remote_kind() {
    let mut m = Matrix::start("e2e-matrix-messages").await;
    let path = "/v1/messages";
    for kind in KINDS {
        let model = kind.model();
        let user = |text: &str| json!([{"role": "user", "content": text}]);

        // Plain and streamed text.
        for stream in [false, true] {
            let prompt = format!("plain message for {model} stream={stream}");
            let body = json!({"model": model, "max_tokens": 32, "stream": stream, "messages": user(&prompt)});
            let (r, sent) = m.dispatched(kind, path, &body, 200).await;
            let (text, calls, stop, _) = anthropic_answer(&r, stream);
            assert_eq!(text, format!("echo: {prompt}"), "{kind:?}");
            assert!(calls.is_empty());
            assert_eq!(stop, "end_turn", "{kind:?}");
            assert_streamed(kind, &sent, stream);
            assert_eq!(upstream_user_text(kind, &sent.body), prompt);
        }

        // Tools: auto and a forced tool, plain and streamed.
        for (forced, stream) in [(false, false), (false, true), (true, false), (true, true)] {
            let prompt = format!("weather in Oslo for {model} forced={forced} stream={stream}");
            let choice = if forced {
                json!({"type": "tool", "name": "get_weather"})
            } else {
                json!({"type": "auto"})
            };
            let body = json!({"model": model, "max_tokens": 32, "stream": stream,
                "tools": tools_anthropic(), "tool_choice": choice, "messages": user(&prompt)});
            let (r, sent) = m.dispatched(kind, path, &body, 200).await;
            let (_, calls, stop, _) = anthropic_answer(&r, stream);
            let want = if forced { "get_weather" } else { "lookup_time" };
            assert_eq!(
                calls,
                [(want.to_owned(), query_args(&prompt))],
                "{kind:?} forced={forced} stream={stream}"
            );
            assert_eq!(stop, "tool_use", "{kind:?}");
            assert_tools_sent(kind, &sent.body, forced);
            assert_streamed(kind, &sent, stream);
        }

        // The tool result turn.
        let prompt = format!("weather in Rome for {model}");
        let body = json!({"model": model, "max_tokens": 32, "tools": tools_anthropic(), "messages": [
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"query": "Rome"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "21C and clear"}]}
        ]});
        let (r, sent) = m.dispatched(kind, path, &body, 200).await;
        let (text, _, stop, _) = anthropic_answer(&r, false);
        assert_eq!(text, "echo: tool said 21C and clear", "{kind:?}");
        assert_eq!(stop, "end_turn");
        assert_tool_round_trip_sent(kind, &sent.body);

        // An image block.
        let prompt = format!("describe for {model}");
        let body = json!({"model": model, "max_tokens": 32, "messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
            {"type": "text", "text": prompt}
        ]}]});
        let (r, sent) = m.dispatched(kind, path, &body, 200).await;
        let (text, _, _, _) = anthropic_answer(&r, false);
        assert_eq!(text, format!("echo: {prompt}"), "{kind:?}");
        assert_image_sent(kind, &sent.body);

        // Anthropic's `output_format` is refused by name, in Anthropic's
        // error shape, before routing.
        let body = json!({"model": model, "max_tokens": 32, "messages": user("json please"),
            "output_format": {"type": "json_schema", "schema": colour_schema()}});
        let all_before = m.requests_to_all();
        let r = m.post(path, &body).await;
        assert_eq!(r.status, 400, "{kind:?}: {}", r.body);
        assert_eq!(r.body["type"], "error", "{}", r.body);
        assert_eq!(r.body["error"]["type"], "invalid_request_error");
        let message = r.body["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with("\"output_format\" is not supported"),
            "{message}"
        );
        assert_eq!(m.requests_to_all(), all_before, "nothing left");
        m.refused_ids
            .push(r.header("x-request-id").unwrap().to_owned());
        m.cases += 1;

        // A stop sequence, plain and streamed: named in the answer.
        for stream in [false, true] {
            let prompt = format!("alpha STOP beta for {model}");
            let body = json!({"model": model, "max_tokens": 32, "stream": stream,
                "stop_sequences": ["STOP", "NEVER"], "messages": user(&prompt)});
            let (r, sent) = m.dispatched(kind, path, &body, 200).await;
            let (text, _, stop, seq) = anthropic_answer(&r, stream);
            assert_eq!(text, "echo: alpha ", "{kind:?}");
            // OpenAI and Gemini strip the string and name none, so the
            // gateway cannot tell it from a natural end; vLLM names it in
            // `stop_reason`, Anthropic in `stop_sequence`.
            let want = match kind {
                Kind::OpenAi | Kind::Gemini => (json!("end_turn"), Value::Null),
                _ => (json!("stop_sequence"), json!("STOP")),
            };
            assert_eq!((stop, seq), want, "{kind:?} stream={stream}");
            assert_eq!(
                upstream_stops(kind, &sent.body),
                json!(["STOP", "NEVER"]),
                "{kind:?}"
            );
        }
    }
    let cases = m.cases;
    let rows = m.check_ledger().await;
    println!("messages: {cases} cases over 4 kinds checked, {rows} ledger rows matched");
}

fn tools_responses() -> Value {
    json!([
        {"type": "function", "name": "lookup_time", "description": "the time somewhere", "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}}},
        {"type": "function", "name": "get_weather", "description": "the weather in a city", "parameters": weather_params()}
    ])
}

/// The output text, function calls (name, arguments) and status of a
/// Responses answer, plain or streamed; a stream must open with
/// `response.created` and close with `response.completed` holding the
/// whole response, its deltas adding up to it.
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
    assert_eq!(types.last(), Some(&"response.completed"), "{types:?}");
    for t in ["response.output_item.added", "response.output_item.done"] {
        assert!(types.contains(&t), "{t} missing: {types:?}");
    }
    let seq: Vec<u64> = events
        .iter()
        .filter_map(|e| e["sequence_number"].as_u64())
        .collect();
    assert!(
        seq.windows(2).all(|w| w[1] == w[0] + 1),
        "sequence numbers count up: {seq:?}"
    );
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
        assert_eq!(
            serde_json::from_str::<Value>(&arg_deltas).unwrap(),
            *args,
            "{types:?}"
        );
    }
    done
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_on_every_remote_kind() {
    let mut m = Matrix::start("e2e-matrix-responses").await;
    let path = "/v1/responses";
    for kind in KINDS {
        let model = kind.model();

        // Plain and streamed.
        for stream in [false, true] {
            let prompt = format!("plain response for {model} stream={stream}");
            let body = json!({"model": model, "max_output_tokens": 32, "stream": stream,
                "instructions": "be brief", "input": prompt});
            let (r, sent) = m.dispatched(kind, path, &body, 200).await;
            let (text, calls, status) = responses_answer(&r, stream);
            assert_eq!(text, format!("echo: {prompt}"), "{kind:?}");
            assert!(calls.is_empty());
            assert_eq!(status, "completed", "{kind:?}");
            assert_streamed(kind, &sent, stream);
            assert_eq!(upstream_user_text(kind, &sent.body), prompt);
            // The instructions are the system prompt, in each wire's place.
            let system = match kind {
                Kind::OpenAi | Kind::Compat => sent.body["messages"][0]["content"].clone(),
                Kind::Anthropic => sent.body["system"].clone(),
                Kind::Gemini => sent.body["systemInstruction"]["parts"][0]["text"].clone(),
            };
            assert_eq!(system, "be brief", "{kind:?}: {}", sent.body);
        }

        // Function tools, auto and forced, plain and streamed.
        for (forced, stream) in [(false, false), (false, true), (true, false), (true, true)] {
            let prompt = format!("weather in Lima for {model} forced={forced} stream={stream}");
            let choice = if forced {
                json!({"type": "function", "name": "get_weather"})
            } else {
                json!("auto")
            };
            let body = json!({"model": model, "max_output_tokens": 32, "stream": stream,
                "tools": tools_responses(), "tool_choice": choice, "input": prompt});
            let (r, sent) = m.dispatched(kind, path, &body, 200).await;
            let (_, calls, _) = responses_answer(&r, stream);
            let want = if forced { "get_weather" } else { "lookup_time" };
            assert_eq!(
                calls,
                [(want.to_owned(), query_args(&prompt))],
                "{kind:?} forced={forced} stream={stream}"
            );
            assert_tools_sent(kind, &sent.body, forced);
            assert_streamed(kind, &sent, stream);
        }

        // The function result turn.
        let prompt = format!("weather in Rome for {model}");
        let body = json!({"model": model, "max_output_tokens": 32, "tools": tools_responses(), "input": [
            {"role": "user", "content": prompt},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"query\":\"Rome\"}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "21C and clear"}
        ]});
        let (r, sent) = m.dispatched(kind, path, &body, 200).await;
        let (text, _, _) = responses_answer(&r, false);
        assert_eq!(text, "echo: tool said 21C and clear", "{kind:?}");
        assert_tool_round_trip_sent(kind, &sent.body);

        // text.format with a JSON schema.
        let prompt = format!("sky colour for {model}");
        let body = json!({"model": model, "max_output_tokens": 32, "input": prompt,
            "text": {"format": {"type": "json_schema", "name": "colour", "schema": colour_schema(), "strict": true}}});
        if kind == Kind::Anthropic {
            m.refused(kind, path, &body, "missing_capability", "text.format")
                .await;
        } else {
            let (r, sent) = m.dispatched(kind, path, &body, 200).await;
            let (text, _, _) = responses_answer(&r, false);
            let parsed: Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{kind:?}: {e}: {text}"));
            assert_eq!(parsed, json!({"colour": prompt}), "{kind:?}");
            match kind {
                Kind::Gemini => assert_eq!(
                    sent.body["generationConfig"]["responseSchema"]["type"],
                    "OBJECT"
                ),
                _ => assert_eq!(
                    sent.body["response_format"]["json_schema"]["schema"],
                    colour_schema()
                ),
            }
        }

        // reasoning.effort: sent to OpenAI, refused by name by every
        // other kind's adapter before anything leaves.
        let prompt = format!("think hard for {model}");
        let body = json!({"model": model, "max_output_tokens": 32, "input": prompt, "reasoning": {"effort": "low"}});
        if kind == Kind::OpenAi {
            let (r, sent) = m.dispatched(kind, path, &body, 200).await;
            assert_eq!(r.body["reasoning"]["effort"], "low");
            assert_eq!(sent.body["reasoning_effort"], "low", "{}", sent.body);
        } else {
            m.refused_at_dispatch(kind, path, &body, "bad_request", "reasoning.effort")
                .await;
        }

        // An input_image.
        let prompt = format!("describe for {model}");
        let body = json!({"model": model, "max_output_tokens": 32, "input": [{"role": "user", "content": [
            {"type": "input_text", "text": prompt},
            {"type": "input_image", "image_url": format!("data:image/png;base64,{PNG}")}
        ]}]});
        let (r, sent) = m.dispatched(kind, path, &body, 200).await;
        let (text, _, _) = responses_answer(&r, false);
        assert_eq!(text, format!("echo: {prompt}"), "{kind:?}");
        assert_image_sent(kind, &sent.body);
    }
    let cases = m.cases;
    let rows = m.check_ledger().await;
    println!("responses: {cases} cases over 4 kinds checked, {rows} ledger rows matched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_count_tokens_and_models_on_every_remote_kind() {
    let mut m = Matrix::start("e2e-matrix-embed").await;
    for kind in KINDS {
        let model = kind.model();

        // Embeddings where the kind serves them, a named refusal elsewhere.
        let body = json!({"model": model, "input": ["first text", "second text"]});
        match kind {
            Kind::OpenAi | Kind::Compat => {
                let (r, sent) = m.dispatched(kind, "/v1/embeddings", &body, 200).await;
                let data = r.body["data"].as_array().unwrap();
                assert_eq!(data.len(), 2, "{kind:?}");
                assert_eq!(data[1]["index"], 1);
                assert_eq!(data[0]["embedding"].as_array().unwrap().len(), 8);
                assert_ne!(data[0]["embedding"], data[1]["embedding"]);
                assert_eq!(sent.path, "/v1/embeddings");
                let want = if kind == Kind::OpenAi {
                    "text-embedding-3-small"
                } else {
                    "served-embedder"
                };
                assert_eq!(sent.body["model"], want);
                assert_eq!(sent.body["input"], json!(["first text", "second text"]));
            }
            Kind::Anthropic | Kind::Gemini => {
                m.refused(
                    kind,
                    "/v1/embeddings",
                    &body,
                    "missing_capability",
                    "embeddings",
                )
                .await;
            }
        }

        if matches!(kind, Kind::OpenAi | Kind::Compat) {
            // base64: the upstream is asked for floats, the gateway encodes
            // them as the client asked (8 little-endian f32 = 32 bytes).
            let body = json!({"model": model, "input": "encode me", "encoding_format": "base64"});
            let (r, sent) = m.dispatched(kind, "/v1/embeddings", &body, 200).await;
            let b64 = r.body["data"][0]["embedding"].as_str().unwrap();
            assert_eq!(b64.len(), 44, "{b64}");
            assert_eq!(sent.body["encoding_format"], "float");
            // Token arrays: with `uninspectable: public` (this config) they
            // may leave, as they are.
            let body = json!({"model": model, "input": [1, 2, 3]});
            let (r, sent) = m.dispatched(kind, "/v1/embeddings", &body, 200).await;
            assert_eq!(r.body["usage"]["prompt_tokens"], 3);
            assert_eq!(sent.body["input"], json!([[1, 2, 3]]));
            // `dimensions`: OpenAI's models take it; an OpenAI-compatible
            // server is not assumed to (`embeddings: { dimensions: true }`).
            let body = json!({"model": model, "input": "shorter", "dimensions": 4});
            if kind == Kind::OpenAi {
                let (r, sent) = m.dispatched(kind, "/v1/embeddings", &body, 200).await;
                assert_eq!(r.body["data"][0]["embedding"].as_array().unwrap().len(), 4);
                assert_eq!(sent.body["dimensions"], 4);
            } else {
                m.refused_at_dispatch(kind, "/v1/embeddings", &body, "bad_request", "dimensions")
                    .await;
            }
        }

        // count_tokens: the upstream counts where it can, else an estimate
        // that says so.
        let body = json!({"model": model, "system": "be brief", "messages": [{"role": "user", "content": "one two three"}]});
        let before = m.mock(kind).request_count();
        let r = m.post("/v1/messages/count_tokens", &body).await;
        assert_eq!(r.status, 200, "{kind:?}: {}", r.body);
        assert_eq!(r.header("x-watershed-backend"), Some(kind.target()));
        let counted = m.mock(kind).request_count() - before;
        match kind {
            Kind::Anthropic | Kind::Gemini => {
                // Mock tokens are words: "be brief" + "one two three".
                assert_eq!(r.body, json!({"input_tokens": 5}), "{kind:?}");
                assert_eq!(r.header("x-watershed-estimate"), None);
                assert_eq!(counted, 1);
                let sent = m.mock(kind).last_request().unwrap();
                let want = if kind == Kind::Anthropic {
                    "/v1/messages/count_tokens".to_owned()
                } else {
                    format!("/v1beta/models/{}:countTokens", kind.upstream_model())
                };
                assert_eq!(sent.path, want);
            }
            Kind::OpenAi | Kind::Compat => {
                assert!(r.body["input_tokens"].as_u64().unwrap() > 0, "{kind:?}");
                assert_eq!(r.header("x-watershed-estimate"), Some("true"), "{kind:?}");
                assert_eq!(counted, 0, "an estimate asks nobody");
            }
        }
        m.cases += 1;
    }

    // /v1/models lists every target; /v1/models/{id} retrieves each.
    let list = m.get("/v1/models").await;
    assert_eq!(list.status, 200);
    let ids: Vec<&str> = list.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["id"].as_str())
        .collect();
    for kind in KINDS {
        assert!(ids.contains(&kind.target()), "{kind:?} not listed: {ids:?}");
        let r = m.get(&format!("/v1/models/{}", kind.target())).await;
        assert_eq!(r.status, 200, "{kind:?}: {}", r.body);
        assert_eq!(r.body["id"], kind.target());
        assert_eq!(r.body["object"], "model");
        let listed = list.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == kind.target())
            .unwrap();
        assert_eq!(listed, &r.body, "the list and the retrieve agree");
        let w = &r.body["watershed"];
        let backend = match kind {
            Kind::OpenAi => "openai",
            Kind::Anthropic => "anthropic",
            Kind::Gemini => "gcp.gemini",
            Kind::Compat => "openai-compatible",
        };
        assert_eq!(w["backend"], backend);
        assert_eq!(w["upstream_model"], kind.upstream_model());
        let caps = &w["capabilities"];
        // What the matrix's cases found: embeddings where configured, JSON
        // schema everywhere but Anthropic, images everywhere (the
        // OpenAI-compatible one by its `capabilities:`).
        assert_eq!(
            caps["embeddings"],
            matches!(kind, Kind::OpenAi | Kind::Compat),
            "{kind:?}"
        );
        assert_eq!(caps["json_schema"], kind != Kind::Anthropic, "{kind:?}");
        assert_eq!(
            (caps["tools"].clone(), caps["vision"].clone()),
            (json!(true), json!(true))
        );
        m.cases += 2;
    }
    let cases = m.cases;
    let rows = m.check_ledger().await;
    println!("embeddings, count_tokens and models: {cases} cases over 4 kinds checked, {rows} ledger rows matched");
}
