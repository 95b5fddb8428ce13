//! `POST /v1/responses` end to end: the real binary driven by the official
//! `openai` Python SDK's `client.responses` against the local model and a
//! mock OpenAI upstream (the gateway translates Responses → canonical → the
//! upstream's chat wire), the ledger rows read back; confidential text in
//! any Responses field keeps the request home; bad input is a 400 naming
//! the field, in OpenAI's error shape, and never leaves.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use sqlx::Row;
use watershed_tests::harness::{python, test_model, workspace_root, Gateway};
use watershed_tests::mock::otlp::OtlpReceiver;
use watershed_tests::mock::{Failure, MockUpstream};

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
  - name: everything-else
    to: [local]
"#
    )
}

async fn start(tag: &str) -> (MockUpstream, Gateway) {
    let model = test_model().unwrap();
    let mock = MockUpstream::openai().await;
    let gw = Gateway::start(
        tag,
        &config(&model.display().to_string(), &mock.base_url),
        &[("E2E_OPENAI_KEY", "sk-test-responses")],
    )
    .unwrap();
    gw.wait_ready(Duration::from_secs(120)).await.unwrap();
    (mock, gw)
}

async fn ledger(gw: Gateway) -> Vec<sqlx::sqlite::SqliteRow> {
    let dir = gw.dir.clone();
    gw.stop().unwrap();
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}/ledger.db", dir.display()))
        .await
        .unwrap();
    sqlx::query("SELECT * FROM ledger ORDER BY ts_ms")
        .fetch_all(&pool)
        .await
        .unwrap()
}

fn row_of<'a>(rows: &'a [sqlx::sqlite::SqliteRow], call: &Value) -> &'a sqlx::sqlite::SqliteRow {
    let id = call["request_id"].as_str().unwrap();
    rows.iter()
        .find(|r| r.get::<String, _>("request_id") == id)
        .unwrap_or_else(|| panic!("no ledger row for {call}"))
}

/// Event types as the Responses stream sends them, without repeats of a
/// delta (their number depends on the tokens).
fn shape(types: &Value) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for t in types.as_array().unwrap() {
        let t = t.as_str().unwrap().to_owned();
        if t.ends_with(".delta") && out.last() == Some(&t) {
            continue;
        }
        out.push(t);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_sdk_drives_responses_on_the_local_model_and_a_mock_upstream() {
    let (mock, gw) = start("e2e-responses-sdk").await;
    let script = workspace_root().join("tests/sdk/openai_sdk_responses.py");
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

    // Routed like chat, with the routing headers.
    for (key, route, backend) in [
        ("local_plain", "everything-else", "local"),
        ("local_stream", "everything-else", "local"),
        ("closed_plain", "closed-by-name", "gpt-5.4-mini"),
        ("closed_stream", "closed-by-name", "gpt-5.4-mini"),
    ] {
        assert_eq!(seen[key]["route"], route, "{key}: {}", seen[key]);
        assert_eq!(seen[key]["backend"], backend, "{key}");
    }
    assert_eq!(
        seen["closed_plain"]["text"], "echo: Name a colour of the sky.",
        "{}",
        seen["closed_plain"]
    );
    // The stream's deltas add up to the final response's text, and the
    // events come in the Responses API's order.
    for key in ["local_stream", "closed_stream"] {
        let s = &seen[key];
        assert_eq!(s["text"], s["final_text"], "{key}: {s}");
        assert!(!s["text"].as_str().unwrap().is_empty(), "{key}");
        let end = if s["status"] == "completed" {
            "response.completed"
        } else {
            "response.incomplete"
        };
        assert_eq!(
            shape(&s["types"]),
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                end,
            ],
            "{key}"
        );
    }

    // A function tool round trip, the call id kept from call to result.
    let tools = &seen["tools"];
    assert_eq!(tools["call"]["name"], "get_weather", "{tools}");
    assert_eq!(
        tools["call"]["arguments"],
        json!({"query": "weather in Paris"})
    );
    assert!(tools["call"]["call_id"]
        .as_str()
        .unwrap()
        .starts_with("call_mock"));
    assert_eq!(tools["answer"]["text"], "echo: tool said 18C and sunny");
    let upstream = mock.requests();
    let round_trip = upstream
        .iter()
        .find(|r| {
            r.body["messages"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m["role"] == "tool"))
        })
        .expect("the tool result reached the upstream");
    let messages = round_trip.body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3, "{messages:?}");
    assert_eq!(
        messages[1]["tool_calls"][0]["id"], tools["call"]["call_id"],
        "{messages:?}"
    );
    assert_eq!(messages[2]["tool_call_id"], tools["call"]["call_id"]);
    assert_eq!(
        round_trip.body["tools"][0]["function"]["name"],
        "get_weather"
    );
    // Streamed: the call arrives as an item with argument deltas.
    let ts = &seen["tools_stream"];
    assert_eq!(
        shape(&ts["types"]),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ],
        "{ts}"
    );
    assert_eq!(
        serde_json::from_str::<Value>(ts["arguments"].as_str().unwrap()).unwrap(),
        json!({"query": "weather in Oslo"})
    );
    assert_eq!(ts["output"][0]["type"], "function_call");
    assert_eq!(ts["output"][0]["arguments"], ts["arguments"]);

    // The SDK's stream helper rebuilds the same responses from the events.
    let helper = &seen["stream_helper"];
    assert_eq!(helper["call_type"], "function_call", "{helper}");
    assert_eq!(
        helper["call_arguments"],
        json!({"query": "weather in Rome"})
    );
    assert_eq!(helper["text"], "echo: Say hello.", "{helper}");
    assert_eq!(helper["text"], helper["deltas"], "{helper}");

    // text.format json_schema: the local model's output parses into it, and
    // a chat upstream gets it as its response_format.
    let js = &seen["json_schema_local"];
    assert_eq!(js["backend"], "local", "{js}");
    assert!(js["parsed"]["name"].is_string(), "{js}");
    let sent = upstream
        .iter()
        .find(|r| r.body["response_format"]["type"] == "json_schema")
        .expect("the schema reached the upstream");
    assert_eq!(
        sent.body["response_format"]["json_schema"]["name"],
        "colour"
    );
    assert_eq!(
        sent.body["response_format"]["json_schema"]["schema"]["properties"]["name"]["type"],
        "string"
    );

    // Refusals name their field; none of them was dispatched.
    for field in [
        "previous_response_id",
        "store",
        "background",
        "reasoning.effort",
        "input[0].content[0].file_id",
    ] {
        let r = &seen["refused"][field];
        assert_eq!(r["status"], 400, "{field}: {r}");
        assert_eq!(r["param"], field, "{field}: {r}");
    }
    // plain + stream + 2 tool calls + tool stream + 2 helpers + schema, on the mock.
    assert_eq!(upstream.len(), 8, "nothing refused left the gateway");

    // One ledger row per dispatched request, with the tokens the SDK saw.
    let rows = ledger(gw).await;
    assert_eq!(
        rows.len(),
        12,
        "4 answers, 2 tool calls, 1 tool stream, 2 stream helpers, 2 schemas, and the reasoning \
         effort the local target refused at dispatch"
    );
    for key in [
        "local_plain",
        "local_stream",
        "closed_plain",
        "closed_stream",
    ] {
        let call = &seen[key];
        let row = row_of(&rows, call);
        assert_eq!(row.get::<i64, _>("status"), 200, "{key}");
        assert_eq!(
            row.get::<String, _>("route"),
            call["route"].as_str().unwrap()
        );
        assert_eq!(
            row.get::<i64, _>("prompt_tokens"),
            call["input_tokens"].as_i64().unwrap(),
            "{key}"
        );
        assert_eq!(
            row.get::<i64, _>("completion_tokens"),
            call["output_tokens"].as_i64().unwrap(),
            "{key}"
        );
        if key.ends_with("stream") {
            assert!(row.get::<Option<f64>, _>("ttft_ms").is_some(), "{key}");
        }
    }
    let closed = row_of(&rows, &seen["closed_plain"]);
    let header_cost: f64 = seen["closed_plain"]["cost"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(header_cost > 0.0);
    assert!((header_cost - closed.get::<f64, _>("cost_usd")).abs() < 1e-8);
    let call_row = row_of(&rows, &seen["tools"]["call"]);
    assert_eq!(
        call_row
            .get::<Option<String>, _>("finish_reason")
            .as_deref(),
        Some("tool_calls")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confidential_text_in_any_responses_field_stays_home_and_bad_input_names_the_field() {
    let (mock, gw) = start("e2e-responses-privacy").await;
    let http = reqwest::Client::new();
    let post = |body: Value| {
        let http = http.clone();
        let url = format!("{}/v1/responses", gw.base_url);
        async move {
            let resp = http.post(url).json(&body).send().await.unwrap();
            let status = resp.status().as_u16();
            let backend = resp
                .headers()
                .get("x-watershed-backend")
                .map(|v| v.to_str().unwrap().to_owned());
            let body: Value = resp.json().await.unwrap();
            (status, backend, body)
        }
    };
    // Every request names the closed model; only the e-mail address (a
    // confidential detection) can keep it home.
    let secret = "jane.doe@example.com";
    let (status, backend, body) = post(json!({
        "model": "gpt-5.4-mini",
        "instructions": format!("Reply to {secret} politely."),
        "input": "Say hello.",
        "max_output_tokens": 8,
    }))
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(backend.as_deref(), Some("local"), "instructions");
    let (status, backend, body) = post(json!({
        "model": "gpt-5.4-mini",
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "Say hello."}]},
            {"role": "assistant", "content": [{"type": "output_text", "text": "Hello."}]},
            {"role": "user", "content": format!("Now write to {secret}.")},
        ],
        "max_output_tokens": 8,
    }))
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(backend.as_deref(), Some("local"), "input item");
    // In a tool definition: the only trusted target, the local engine,
    // serves it with its own tool calling.
    let (status, backend, body) = post(json!({
        "model": "gpt-5.4-mini",
        "input": "What is the weather?",
        "tools": [{"type": "function", "name": "get_weather", "description": format!("Ask {secret} for the weather")}],
        "max_output_tokens": 16,
    }))
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(backend.as_deref(), Some("local"), "tool definition");
    assert!(
        mock.requests().is_empty(),
        "a confidential request left the gateway: {:?}",
        mock.requests()
    );

    // Bad input: a 400 in OpenAI's shape naming the field; nothing leaves.
    let cases = [
        (json!({"model": "gpt-5.4-mini"}), "input"),
        (
            json!({"model": "gpt-5.4-mini", "input": "hi", "previous_response_id": "resp_1"}),
            "previous_response_id",
        ),
        (
            json!({"model": "gpt-5.4-mini", "input": "hi", "store": true}),
            "store",
        ),
        (
            json!({"model": "gpt-5.4-mini", "input": "hi", "service_tier": "flex"}),
            "service_tier",
        ),
        (
            json!({"model": "gpt-5.4-mini", "input": [{"type": "function_call_output", "call_id": "call_x", "output": "18C"}]}),
            "input[0].call_id",
        ),
        (
            json!({"model": "gpt-5.4-mini", "input": "hi", "tools": [{"type": "function", "name": "f", "parameters": {"type": "array"}}]}),
            "tools[0].parameters",
        ),
        (
            json!({"model": "gpt-5.4-mini", "input": "hi", "text": {"format": {"type": "json_schema", "name": "x", "schema": 3}}}),
            "text.format.schema",
        ),
        (
            json!({"model": "gpt-5.4-mini", "input": "hi", "reasoning": {"summary": "auto"}}),
            "reasoning.summary",
        ),
    ];
    for (body, field) in cases {
        let (status, _, answer) = post(body.clone()).await;
        assert_eq!(status, 400, "{body} -> {answer}");
        assert_eq!(answer["error"]["param"], field, "{answer}");
        assert_eq!(answer["error"]["type"], "invalid_request_error");
        assert!(
            answer["error"]["message"].as_str().unwrap().contains(field),
            "{answer}"
        );
    }
    // A store: false request is fine and goes where its model says.
    let (status, backend, body) = post(json!({
        "model": "gpt-5.4-mini", "input": "hi", "store": false, "max_output_tokens": 4
    }))
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(backend.as_deref(), Some("gpt-5.4-mini"));
    assert_eq!(mock.requests().len(), 1);

    let rows = ledger(gw).await;
    assert_eq!(
        rows.len(),
        4,
        "three kept home, one sent out; refusals leave none"
    );
    let privacies: Vec<String> = rows.iter().map(|r| r.get("privacy")).collect();
    assert_eq!(
        privacies[..3],
        ["confidential", "confidential", "confidential"]
    );
    let backends: Vec<String> = rows.iter().map(|r| r.get("backend")).collect();
    assert_eq!(backends, ["local", "local", "local", "gpt-5.4-mini"]);
}

/// The `(event, data)` pairs of a Responses event stream; each data's
/// `type` is its event name.
fn events(sse: &str) -> Vec<(String, Value)> {
    sse.split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .map(|block| {
            let event = block
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or_else(|| panic!("no event name in {block}"))
                .to_owned();
            let data: Value = serde_json::from_str(
                block
                    .lines()
                    .find_map(|l| l.strip_prefix("data: "))
                    .unwrap(),
            )
            .unwrap();
            assert_eq!(data["type"], event.as_str(), "{block}");
            (event, data)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_say_when_they_were_cut_or_failed_and_are_traced_like_chat() {
    let mock = MockUpstream::openai().await;
    let receiver = OtlpReceiver::start().await.unwrap();
    let config = format!(
        r#"version: 1
ledger: {{ url: "sqlite://{{dir}}/ledger.db" }}
telemetry: {{ otlp_endpoint: "{}" }}
models:
  gpt-5.4-mini:
    provider: openai
    base_url: "{}"
    api_key_env: E2E_OPENAI_KEY
    retries: 0
    timeout_ms: 3000
  local:
    engine: local
    gguf: "{{dir}}/does-not-exist.gguf"
routes:
  - name: home
    when: {{ privacy: ">= confidential" }}
    to: [local]
  - name: everything
    to: [gpt-5.4-mini]
"#,
        receiver.endpoint, mock.base_url
    );
    let gw = Gateway::start(
        "e2e-responses-ends",
        &config,
        &[("E2E_OPENAI_KEY", "sk-test")],
    )
    .unwrap();
    gw.wait_ready(Duration::from_secs(30)).await.unwrap();
    let http = reqwest::Client::new();
    let url = format!("{}/v1/responses", gw.base_url);
    let body = |stream: bool| json!({"model": "gpt-5.4-mini", "input": "one two three four five", "max_output_tokens": 2, "stream": stream});

    // Cut by max_output_tokens: incomplete, saying why.
    let resp = http.post(&url).json(&body(false)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let plain_id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["status"], "incomplete", "{v}");
    assert_eq!(v["incomplete_details"]["reason"], "max_output_tokens");
    assert_eq!(v["usage"]["output_tokens"], 2);
    assert_eq!(v["output_text"], "echo: one");
    let sse = http
        .post(&url)
        .json(&body(true))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let evs = events(&sse);
    let (last, data) = evs.last().unwrap();
    assert_eq!(last, "response.incomplete", "{sse}");
    assert_eq!(
        data["response"]["incomplete_details"]["reason"],
        "max_output_tokens"
    );
    assert_eq!(data["response"]["output_text"], "echo: one");

    // The upstream fails after the first text reached the client: the
    // stream ends with response.failed, never response.completed, and says
    // nothing of the upstream's address.
    mock.fail_next(1, Failure::DropMidStream);
    let resp = http
        .post(&url)
        .json(&json!({"model": "gpt-5.4-mini", "input": "five six seven", "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let cut_id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    let sse = resp.text().await.unwrap();
    let evs = events(&sse);
    let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains(&"response.output_text.delta"), "{sse}");
    assert!(!names.contains(&"response.completed"), "{sse}");
    let (last, data) = evs.last().unwrap();
    assert_eq!(last, "response.failed", "{sse}");
    assert_eq!(data["response"]["status"], "failed");
    assert_eq!(data["response"]["error"]["code"], "upstream_unavailable");
    assert!(!sse.contains("127.0.0.1"), "{sse}");
    for (n, (_, d)) in evs.iter().enumerate() {
        assert_eq!(d["sequence_number"], n as u64);
    }

    // Refused before the answer started: OpenAI's error shape, with the
    // upstream's retry-after and the routing headers.
    mock.fail_next(1, Failure::RetryAfter(7));
    let resp = http.post(&url).json(&body(false)).send().await.unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "7");
    assert_eq!(resp.headers()["x-watershed-route"], "everything");
    assert_eq!(resp.headers()["x-watershed-backend"], "gpt-5.4-mini");
    let limited_id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "rate_limit_error", "{v}");

    let rows = ledger(gw).await;
    assert_eq!(rows.len(), 4, "one row per dispatched request");
    let get = |id: &str| {
        let r = rows
            .iter()
            .find(|r| r.get::<String, _>("request_id") == id)
            .unwrap();
        (
            r.get::<i64, _>("status"),
            r.get::<Option<String>, _>("finish_reason"),
        )
    };
    assert_eq!(get(&plain_id), (200, Some("length".into())));
    assert_eq!(get(&cut_id).0, 503);
    assert_eq!(get(&limited_id).0, 429);

    // One span per request, as for chat, with the ledger's numbers.
    let spans = receiver.spans();
    assert_eq!(spans.len(), 4, "one span per dispatched request");
    let span = |id: &str| {
        spans
            .iter()
            .find(|s| s.str("watershed.request_id") == Some(id))
            .unwrap_or_else(|| panic!("no span for {id}"))
    };
    let plain = span(&plain_id);
    assert_eq!(plain.span.name, "chat gpt-5.4-mini");
    assert_eq!(plain.str("watershed.route"), Some("everything"));
    assert_eq!(plain.int("gen_ai.request.max_tokens"), Some(2));
    assert_eq!(plain.int("gen_ai.usage.output_tokens"), Some(2));
    assert_eq!(
        plain.strings("gen_ai.response.finish_reasons"),
        Some(vec!["length".to_owned()])
    );
    assert_eq!(
        span(&cut_id).str("error.type"),
        Some("upstream_unavailable")
    );
}

/// `reasoning.effort` reaches an OpenAI target as the chat wire's
/// `reasoning_effort` and is echoed back; a target that cannot honour it
/// refuses it by its Responses name, before anything leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reasoning_effort_reaches_an_openai_target_and_is_refused_by_name_elsewhere() {
    let (mock, gw) = start("e2e-responses-reasoning").await;
    let http = reqwest::Client::new();
    let post = |body: Value| {
        let http = http.clone();
        let url = format!("{}/v1/responses", gw.base_url);
        async move {
            let resp = http.post(url).json(&body).send().await.unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = post(json!({
        "model": "gpt-5.4-mini", "input": "Say hello.", "reasoning": {"effort": "low"}
    }))
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reasoning"], json!({"effort": "low", "summary": null}));
    let sent = mock.last_request().unwrap().body;
    assert_eq!(sent["reasoning_effort"], "low", "{sent}");
    assert!(sent.get("reasoning").is_none(), "{sent}");

    let (status, body) = post(json!({
        "model": "local", "input": "Say hello.", "reasoning": {"effort": "high"}
    }))
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "reasoning.effort", "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("\"reasoning.effort\"") && message.contains("local"),
        "{message}"
    );
    assert_eq!(mock.requests().len(), 1, "the refused request never left");

    let rows = ledger(gw).await;
    let got: Vec<(String, i64)> = rows
        .iter()
        .map(|r| (r.get("backend"), r.get("status")))
        .collect();
    // The refusal was decided at dispatch: a row, served by no target.
    assert_eq!(
        got,
        [("gpt-5.4-mini".to_owned(), 200), (String::new(), 400)]
    );
}
