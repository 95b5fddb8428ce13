//! A Gemini target end to end: the official `openai` Python SDK talks to
//! the real binary, which answers from a Gemini mock on port 0 — chat plain
//! and streamed, a tool call plain and streamed, the result sent back — and
//! every request leaves a ledger row costed at the built-in Gemini 3 Flash
//! price.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::time::Duration;

use serde_json::{json, Value};
use sqlx::Row;
use watershed_tests::harness::{run_sdk_script, Gateway};
use watershed_tests::mock::MockUpstream;

fn config(gemini_url: &str) -> String {
    format!(
        r#"version: 1
ledger: {{ url: "sqlite://{{dir}}/ledger.db" }}
models:
  local:
    engine: local
    gguf: "{{dir}}/does-not-exist.gguf"
  gemini-3-flash:
    provider: gemini
    base_url: "{gemini_url}"
    model: gemini-3-flash-preview
    api_key_env: E2E_GEMINI_KEY
    timeout_ms: 5000
routes:
  - name: home
    when: {{ privacy: ">= confidential" }}
    to: [local]
  - name: gemini
    to: [gemini-3-flash]
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_sdk_chats_and_calls_tools_on_a_gemini_target() {
    let gemini = MockUpstream::gemini().await;
    let gw = Gateway::start(
        "e2e-gemini",
        &config(&gemini.base_url),
        &[("E2E_GEMINI_KEY", "gemini-key-e2e")],
    )
    .unwrap();
    gw.wait_ready(Duration::from_secs(30)).await.unwrap();

    let o = run_sdk_script(&gw, "openai_sdk_gemini.py", &["gemini-3-flash"]).await;
    assert_eq!(o["plain"]["text"], "echo: name a colour of the sky", "{o}");
    assert_eq!(o["plain"]["finish_reason"], "stop");
    assert_eq!(o["plain"]["backend"], "gemini-3-flash");
    // Mock tokens are words: "You are terse." + the question.
    assert_eq!(o["plain"]["prompt_tokens"], 9);
    assert_eq!(o["plain"]["completion_tokens"], 7);
    assert_eq!(o["stream"]["text"], "echo: count one two three", "{o}");
    assert_eq!(o["stream"]["finish_reason"], "stop");
    assert!(o["stream"]["chunks"].as_u64().unwrap() >= 4, "{o}");
    assert_eq!(o["stream"]["completion_tokens"], 5);

    let plain_id = o["tool_plain"]["id"].as_str().unwrap();
    let stream_id = o["tool_stream"]["id"].as_str().unwrap();
    assert!(plain_id.starts_with("call_mockresp"), "{o}");
    assert!(stream_id.starts_with("call_mockresp"), "{o}");
    assert_ne!(plain_id, stream_id, "each answer names its calls afresh");
    assert_eq!(o["tool_plain"]["name"], "get_weather");
    assert_eq!(
        o["tool_plain"]["arguments"],
        json!({"query": "weather in Paris"})
    );
    assert_eq!(o["tool_stream"]["arguments"], o["tool_plain"]["arguments"]);
    assert_eq!(o["tool_stream"]["finish_reason"], "tool_calls");
    assert_eq!(o["answer"]["text"], "echo: tool said 18C and sunny", "{o}");
    assert_eq!(o["answer"]["finish_reason"], "stop");
    assert_eq!(o["untranslatable"]["status"], 400, "{o}");
    assert_eq!(
        o["untranslatable"]["param"], "tools[0].function.parameters",
        "{o}"
    );
    assert!(
        o["untranslatable"]["message"]
            .as_str()
            .unwrap()
            .contains("multipleOf"),
        "{o}"
    );

    // What Gemini received: its own paths, key header and body shapes.
    let sent = gemini.requests();
    assert_eq!(sent.len(), 5, "the untranslatable schema never left");
    let paths: Vec<&str> = sent.iter().map(|r| r.path.as_str()).collect();
    let generate = "/v1beta/models/gemini-3-flash-preview:generateContent";
    let stream = "/v1beta/models/gemini-3-flash-preview:streamGenerateContent";
    assert_eq!(paths, [generate, stream, generate, stream, generate]);
    assert!(sent
        .iter()
        .all(|r| r.header("x-goog-api-key") == Some("gemini-key-e2e")));
    assert_eq!(
        sent[0].body["systemInstruction"],
        json!({"parts": [{"text": "You are terse."}]})
    );
    assert_eq!(
        sent[0].body["generationConfig"],
        json!({"maxOutputTokens": 32, "temperature": 0.2, "stopSequences": ["NEVER"]})
    );
    assert_eq!(
        sent[2].body["tools"][0]["functionDeclarations"][0]["parameters"],
        json!({
            "type": "OBJECT",
            "properties": {"query": {"type": "STRING", "description": "the city"}},
            "required": ["query"]
        })
    );
    assert_eq!(
        sent[2].body["toolConfig"],
        json!({"functionCallingConfig": {"mode": "ANY"}})
    );
    // The round trip: the call replayed with Gemini 3's documented
    // signature, the result under the function's name.
    let turns = sent[4].body["contents"].as_array().unwrap();
    assert_eq!(turns.len(), 3, "{}", sent[4].body);
    assert_eq!(
        turns[1],
        json!({"role": "model", "parts": [{
            "functionCall": {"name": "get_weather", "args": {"query": "weather in Paris"}},
            "thoughtSignature": "skip_thought_signature_validator"
        }]})
    );
    assert_eq!(
        turns[2],
        json!({"role": "user", "parts": [{"functionResponse": {
            "name": "get_weather", "response": {"output": "18C and sunny"}
        }}]})
    );

    let dir = gw.dir.clone();
    gw.stop().unwrap();
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}/ledger.db", dir.display()))
        .await
        .unwrap();
    let rows = sqlx::query("SELECT * FROM ledger")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(rows.len(), 6, "one row per dispatched request");
    for r in &rows {
        assert_eq!(r.get::<String, _>("backend"), "gemini-3-flash");
        assert_eq!(r.get::<String, _>("backend_kind"), "gcp.gemini");
    }
    let finishes = |want: &str| {
        rows.iter()
            .filter(|r| r.get::<Option<String>, _>("finish_reason").as_deref() == Some(want))
            .count()
    };
    assert_eq!(finishes("tool_calls"), 2);
    assert_eq!(
        rows.iter()
            .filter(|r| r.get::<i64, _>("status") == 400)
            .count(),
        1
    );
    // Gemini 3 Flash, built in: $0.50 in, $3.00 out per million tokens.
    for key in ["plain", "stream"] {
        let id = o[key]["request_id"].as_str().unwrap();
        let row = rows
            .iter()
            .find(|r| r.get::<String, _>("request_id") == id)
            .unwrap_or_else(|| panic!("no ledger row for {key}"));
        let p = o[key]["prompt_tokens"].as_f64().unwrap();
        let c = o[key]["completion_tokens"].as_f64().unwrap();
        assert_eq!(row.get::<i64, _>("prompt_tokens") as f64, p, "{key}");
        assert_eq!(row.get::<i64, _>("completion_tokens") as f64, c, "{key}");
        assert_eq!(row.get::<String, _>("model"), "gemini-3-flash-preview");
        let cost: f64 = row.get("cost_usd");
        let want = (p * 0.50 + c * 3.00) / 1e6;
        assert!(
            cost > 0.0 && (cost - want).abs() < 1e-12,
            "{key}: {cost} vs {want}"
        );
    }
    let header: f64 = o["plain"]["cost"].as_str().unwrap().parse().unwrap();
    assert!(
        (header - (9.0 * 0.50 + 7.0 * 3.00) / 1e6).abs() < 1e-9,
        "{header}"
    );
}

/// Gemini says how long to wait in a 429's `RetryInfo`, not in a header:
/// dispatch waits that out before retrying, and when the retries run out
/// the client gets the 429 with the delay as `retry-after`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gemini_429_is_waited_out_by_its_retry_delay_and_passed_on() {
    let gemini = MockUpstream::gemini().await;
    let config = config(&gemini.base_url).replace(
        "    timeout_ms: 5000\n",
        "    timeout_ms: 5000\n    retries: 1\n    retry_backoff_ms: 10\n",
    );
    let gw = Gateway::start(
        "e2e-gemini-429",
        &config,
        &[("E2E_GEMINI_KEY", "gemini-key-e2e")],
    )
    .unwrap();
    gw.wait_ready(Duration::from_secs(30)).await.unwrap();
    let http = reqwest::Client::new();
    let body =
        json!({"model": "gemini-3-flash", "messages": [{"role": "user", "content": "hi there"}]});
    let post = || {
        http.post(format!("{}/v1/chat/completions", gw.base_url))
            .json(&body)
            .send()
    };

    gemini.fail_next(1, watershed_tests::mock::Failure::RetryAfter(1));
    let started = std::time::Instant::now();
    let resp = post().await.unwrap();
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["choices"][0]["message"]["content"], "echo: hi there");
    assert_eq!(gemini.request_count(), 2, "one 429, then the retry");
    // The retry came after the upstream's delay, not the 10 ms backoff.
    assert!(started.elapsed() >= Duration::from_millis(900));

    gemini.fail_next(2, watershed_tests::mock::Failure::RetryAfter(2));
    let resp = post().await.unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("2")
    );
    assert_eq!(
        resp.headers()
            .get("x-watershed-backend")
            .and_then(|v| v.to_str().ok()),
        Some("gemini-3-flash")
    );
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["code"], "rate_limited", "{err}");
    assert!(
        !err.to_string().contains("quota"),
        "the upstream's own text stays in the log: {err}"
    );
    assert_eq!(gemini.request_count(), 4);

    let dir = gw.dir.clone();
    gw.stop().unwrap();
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}/ledger.db", dir.display()))
        .await
        .unwrap();
    let rows = sqlx::query("SELECT status, attempts FROM ledger ORDER BY ts_ms")
        .fetch_all(&pool)
        .await
        .unwrap();
    let got: Vec<(i64, i64)> = rows
        .iter()
        .map(|r| (r.get("status"), r.get("attempts")))
        .collect();
    assert_eq!(got, [(200, 2), (429, 2)]);
}

/// The same target as the other wire format and endpoints see it: listed
/// with its facts, an Anthropic client's streamed tool call, and a token
/// count Gemini itself makes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_clients_models_and_count_tokens_reach_a_gemini_target() {
    let gemini = MockUpstream::gemini().await;
    let gw = Gateway::start(
        "e2e-gemini-messages",
        &config(&gemini.base_url),
        &[("E2E_GEMINI_KEY", "gemini-key-e2e")],
    )
    .unwrap();
    gw.wait_ready(Duration::from_secs(30)).await.unwrap();
    let http = reqwest::Client::new();

    let models: Value = http
        .get(format!("{}/v1/models/gemini-3-flash", gw.base_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["watershed"]["backend"], "gcp.gemini", "{models}");
    assert_eq!(
        models["watershed"]["upstream_model"],
        "gemini-3-flash-preview"
    );
    assert_eq!(models["watershed"]["tools"], true);
    assert_eq!(models["watershed"]["context_tokens"], 1_048_576);

    let body = json!({
        "model": "gemini-3-flash",
        "max_tokens": 100,
        "stream": true,
        "system": "be brief",
        "messages": [{"role": "user", "content": "weather in Oslo"}],
        "tools": [{"name": "get_weather", "input_schema": {
            "type": "object", "properties": {"query": {"type": "string"}}
        }}]
    });
    let sse = http
        .post(format!("{}/v1/messages", gw.base_url))
        .json(&body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events: Vec<Value> = sse
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let start = events
        .iter()
        .find(|e| e["type"] == "content_block_start" && e["content_block"]["type"] == "tool_use")
        .unwrap_or_else(|| panic!("no tool_use block in {sse}"));
    assert!(start["content_block"]["id"]
        .as_str()
        .unwrap()
        .starts_with("call_mockresp"));
    assert_eq!(start["content_block"]["name"], "get_weather");
    let input: String = events
        .iter()
        .filter(|e| e["delta"]["type"] == "input_json_delta")
        .map(|e| e["delta"]["partial_json"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&input).unwrap(),
        json!({"query": "weather in Oslo"})
    );
    let delta = events
        .iter()
        .find(|e| e["type"] == "message_delta")
        .unwrap();
    assert_eq!(delta["delta"]["stop_reason"], "tool_use", "{sse}");

    let mut count_body = body.clone();
    count_body.as_object_mut().unwrap().remove("stream");
    count_body.as_object_mut().unwrap().remove("max_tokens");
    let resp = http
        .post(format!("{}/v1/messages/count_tokens", gw.base_url))
        .json(&count_body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("x-watershed-estimate").is_none());
    let counted: Value = resp.json().await.unwrap();
    // Gemini's count (mock tokens are words): "be brief" + "weather in Oslo".
    assert_eq!(counted, json!({"input_tokens": 5}));
    let last = gemini.last_request().unwrap();
    assert_eq!(
        last.path,
        "/v1beta/models/gemini-3-flash-preview:countTokens"
    );
    assert_eq!(
        last.body["generateContentRequest"]["model"],
        "models/gemini-3-flash-preview"
    );
    gw.stop().unwrap();
}

/// `n`, `logprobs` and `top_logprobs` reach Gemini as `candidateCount`,
/// `responseLogprobs` and `logprobs`, and its candidates and
/// `logprobsResult` come back as the client's choices and log
/// probabilities, whole and streamed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_candidates_and_logprobs_come_back_from_a_gemini_target() {
    let gemini = MockUpstream::gemini().await;
    let gw = Gateway::start(
        "e2e-gemini-choices",
        &config(&gemini.base_url),
        &[("E2E_GEMINI_KEY", "gemini-key-e2e")],
    )
    .unwrap();
    gw.wait_ready(Duration::from_secs(30)).await.unwrap();
    let http = reqwest::Client::new();
    let url = format!("{}/v1/chat/completions", gw.base_url);
    let resp = http
        .post(&url)
        .json(
            &json!({"model": "gemini-3-flash", "n": 2, "logprobs": true, "top_logprobs": 2,
            "messages": [{"role": "user", "content": "hi there"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.unwrap();
    let sent = gemini.last_request().unwrap().body;
    assert_eq!(sent["generationConfig"]["candidateCount"], 2, "{sent}");
    assert_eq!(sent["generationConfig"]["responseLogprobs"], true);
    assert_eq!(sent["generationConfig"]["logprobs"], 2);
    let choices = answer["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 2, "{answer}");
    assert_eq!(choices[0]["message"]["content"], "echo: hi there");
    assert_eq!(choices[1]["message"]["content"], "[1] echo: hi there");
    assert_eq!(choices[1]["index"], 1);
    for c in choices {
        let tokens = c["logprobs"]["content"].as_array().unwrap();
        let text: String = tokens
            .iter()
            .map(|t| t["token"].as_str().unwrap())
            .collect();
        assert_eq!(text, c["message"]["content"].as_str().unwrap(), "{c}");
        assert!(tokens.iter().all(|t| t["logprob"] == -0.5), "{c}");
        assert!(tokens
            .iter()
            .all(|t| t["top_logprobs"].as_array().unwrap().len() == 2));
        assert_eq!(tokens[0]["top_logprobs"][1]["token"], "alt1");
        assert_eq!(tokens[0]["top_logprobs"][1]["logprob"], -2.0);
    }
    // Usage counts every candidate's tokens.
    assert_eq!(answer["usage"]["completion_tokens"], 3 + 4, "{answer}");

    // Streamed: every chunk with text carries its tokens' log probabilities.
    let body = http
        .post(&url)
        .json(
            &json!({"model": "gemini-3-flash", "logprobs": true, "stream": true,
            "messages": [{"role": "user", "content": "hi there"}]}),
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let chunks: Vec<Value> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let (mut text, mut lp_text) = (String::new(), String::new());
    for c in &chunks {
        if let Some(t) = c
            .pointer("/choices/0/delta/content")
            .and_then(Value::as_str)
        {
            text.push_str(t);
        }
        for t in c
            .pointer("/choices/0/logprobs/content")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            lp_text.push_str(t["token"].as_str().unwrap());
        }
    }
    assert_eq!(text, "echo: hi there", "{body}");
    assert_eq!(lp_text, text, "{body}");
    assert_eq!(
        gemini.last_request().unwrap().body["generationConfig"]["responseLogprobs"],
        true
    );
}
