//! Every documented field of the Chat Completions API, sent one at a time
//! through the real binary to a mock OpenAI upstream and a mock Anthropic
//! upstream (which record the bodies they receive): each field either reached
//! the upstream under its name there, or was refused with a 400 naming it —
//! nothing is dropped without a word. Then the answer side: `logprobs`
//! (plain and streamed) and `n > 1` choices come back from an OpenAI-shaped
//! upstream into the client's answer.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::time::Duration;

use serde_json::{json, Value};
use watershed_tests::harness::Gateway;
use watershed_tests::mock::MockUpstream;

fn config(openai: &str, anthropic: &str) -> String {
    format!(
        r#"version: 1
ledger: {{ url: "sqlite://{{dir}}/ledger.db" }}
models:
  gpt:
    provider: openai
    base_url: "{openai}"
    api_key_env: E2E_OPENAI_KEY
    timeout_ms: 3000
    trusted: true
  claude:
    provider: anthropic
    base_url: "{anthropic}"
    api_key_env: E2E_ANTHROPIC_KEY
    timeout_ms: 3000
    trusted: true
routes:
  - name: claude-tagged
    when: {{ model: claude, metadata: {{ project: fields }} }}
    to: [claude]
  - name: claude
    when: {{ model: claude }}
    to: [claude]
  - name: gpt-tagged
    when: {{ metadata: {{ project: fields }} }}
    to: [gpt]
  - name: gpt
    to: [gpt]
"#
    )
}

/// What a field must do on a target.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    /// Reached the upstream: its body holds this key.
    Sent(&'static str),
    /// Refused with a 400 whose `param` is this name.
    Refused(&'static str),
    /// The gateway's own routing tags: the tagged route served it.
    Tags(&'static str),
    /// Honoured in the client's stream: a usage chunk / event came back.
    Usage,
}
use Outcome::*;

/// One documented field: a value that is not its default, the fields it
/// needs alongside, and what it must do on OpenAI and on Anthropic.
struct Case {
    field: &'static str,
    value: Value,
    with: Vec<(&'static str, Value)>,
    openai: Outcome,
    anthropic: Outcome,
}

fn tools() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])
}

/// Every field of the current Chat Completions request, in the API
/// reference's order. A field added here without handling in the gateway
/// fails: it neither reaches the mock nor is refused by name.
fn cases() -> Vec<Case> {
    let c = |field, value, openai, anthropic| Case {
        field,
        value,
        with: Vec::new(),
        openai,
        anthropic,
    };
    let w = |field, value, with, openai, anthropic| Case {
        field,
        value,
        with,
        openai,
        anthropic,
    };
    vec![
        c("model", json!("m"), Sent("model"), Sent("model")),
        c(
            "messages",
            json!([{"role": "user", "content": "hello there"}]),
            Sent("messages"),
            Sent("messages"),
        ),
        c(
            "audio",
            json!({"voice": "alloy", "format": "wav"}),
            Refused("audio"),
            Refused("audio"),
        ),
        c(
            "frequency_penalty",
            json!(0.5),
            Sent("frequency_penalty"),
            Refused("frequency_penalty"),
        ),
        c(
            "function_call",
            json!({"name": "get_weather"}),
            Refused("function_call"),
            Refused("function_call"),
        ),
        c(
            "functions",
            json!([{"name": "get_weather", "parameters": {"type": "object"}}]),
            Refused("functions"),
            Refused("functions"),
        ),
        c(
            "logit_bias",
            json!({"50256": -100}),
            Sent("logit_bias"),
            Refused("logit_bias"),
        ),
        c(
            "logprobs",
            json!(true),
            Sent("logprobs"),
            Refused("logprobs"),
        ),
        c(
            "max_completion_tokens",
            json!(32),
            Sent("max_completion_tokens"),
            Sent("max_tokens"),
        ),
        // OpenAI's reasoning models take only the newer name.
        c(
            "max_tokens",
            json!(32),
            Sent("max_completion_tokens"),
            Sent("max_tokens"),
        ),
        c(
            "metadata",
            json!({"project": "fields"}),
            Tags("gpt-tagged"),
            Tags("claude-tagged"),
        ),
        c(
            "modalities",
            json!(["text", "audio"]),
            Refused("modalities"),
            Refused("modalities"),
        ),
        c("n", json!(2), Sent("n"), Refused("n")),
        w(
            "parallel_tool_calls",
            json!(false),
            vec![("tools", tools())],
            Sent("parallel_tool_calls"),
            // Anthropic: `tool_choice.disable_parallel_tool_use`.
            Sent("tool_choice"),
        ),
        c(
            "prediction",
            json!({"type": "content", "content": "hello"}),
            Refused("prediction"),
            Refused("prediction"),
        ),
        c(
            "presence_penalty",
            json!(-0.5),
            Sent("presence_penalty"),
            Refused("presence_penalty"),
        ),
        c(
            "prompt_cache_key",
            json!("cache-1"),
            Sent("prompt_cache_key"),
            Refused("prompt_cache_key"),
        ),
        c(
            "reasoning_effort",
            json!("low"),
            Sent("reasoning_effort"),
            Refused("reasoning_effort"),
        ),
        c(
            "response_format",
            json!({"type": "json_object"}),
            Sent("response_format"),
            Refused("response_format"),
        ),
        c(
            "safety_identifier",
            json!("user-hash-1"),
            Sent("safety_identifier"),
            Refused("safety_identifier"),
        ),
        c("seed", json!(7), Sent("seed"), Refused("seed")),
        c(
            "service_tier",
            json!("flex"),
            Sent("service_tier"),
            Refused("service_tier"),
        ),
        c("stop", json!(["END"]), Sent("stop"), Sent("stop_sequences")),
        c("store", json!(true), Sent("store"), Refused("store")),
        c("stream", json!(true), Sent("stream"), Sent("stream")),
        w(
            "stream_options",
            json!({"include_usage": true}),
            vec![("stream", json!(true))],
            Sent("stream_options"),
            // Anthropic streams always carry usage; the client gets its chunk.
            Usage,
        ),
        c(
            "temperature",
            json!(0.5),
            Sent("temperature"),
            Sent("temperature"),
        ),
        w(
            "tool_choice",
            json!("required"),
            vec![("tools", tools())],
            Sent("tool_choice"),
            Sent("tool_choice"),
        ),
        c("tools", tools(), Sent("tools"), Sent("tools")),
        w(
            "top_logprobs",
            json!(2),
            vec![("logprobs", json!(true))],
            Sent("top_logprobs"),
            // The first option Anthropic cannot honour is named.
            Refused("logprobs"),
        ),
        c("top_p", json!(0.9), Sent("top_p"), Sent("top_p")),
        // Anthropic: `metadata.user_id`.
        c("user", json!("user-1"), Sent("user"), Sent("metadata")),
        c(
            "verbosity",
            json!("low"),
            Sent("verbosity"),
            Refused("verbosity"),
        ),
        c(
            "web_search_options",
            json!({"search_context_size": "low"}),
            Refused("web_search_options"),
            Refused("web_search_options"),
        ),
    ]
}

/// The fields of the API reference; the table above must cover each once.
const DOCUMENTED: [&str; 34] = [
    "model",
    "messages",
    "audio",
    "frequency_penalty",
    "function_call",
    "functions",
    "logit_bias",
    "logprobs",
    "max_completion_tokens",
    "max_tokens",
    "metadata",
    "modalities",
    "n",
    "parallel_tool_calls",
    "prediction",
    "presence_penalty",
    "prompt_cache_key",
    "reasoning_effort",
    "response_format",
    "safety_identifier",
    "seed",
    "service_tier",
    "stop",
    "store",
    "stream",
    "stream_options",
    "temperature",
    "tool_choice",
    "tools",
    "top_logprobs",
    "top_p",
    "user",
    "verbosity",
    "web_search_options",
];

/// The options decided at dispatch for the chosen target.
const GENERATION_OPTIONS: [&str; 13] = [
    "frequency_penalty",
    "presence_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "n",
    "reasoning_effort",
    "verbosity",
    "service_tier",
    "prompt_cache_key",
    "safety_identifier",
    "store",
    "seed",
];

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
    /// A chat request; the status, the route header and the body text.
    async fn chat(&self, body: &Value) -> (u16, String, String) {
        let resp = self
            .http
            .post(format!("{}/v1/chat/completions", self.gw.base_url))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let route = resp
            .headers()
            .get("x-watershed-route")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        (status, route, resp.text().await.unwrap())
    }
}

/// Sends each case to `model` and checks its outcome there; returns how many
/// fields reached the upstream and how many were refused.
async fn check_target(env: &Env, model: &str, upstream: &MockUpstream) -> (usize, usize) {
    let (mut sent, mut refused) = (0, 0);
    for case in cases() {
        let mut body =
            json!({"model": model, "messages": [{"role": "user", "content": "hello there"}]});
        for (k, v) in &case.with {
            body[*k] = v.clone();
        }
        if case.field != "model" {
            body[case.field] = case.value.clone();
        }
        let before = upstream.request_count();
        let (status, route, text) = env.chat(&body).await;
        let expected = if model == "claude" {
            case.anthropic
        } else {
            case.openai
        };
        let field = case.field;
        match expected {
            Sent(key) => {
                assert_eq!(status, 200, "{model}: {field}: {text}");
                assert_eq!(upstream.request_count(), before + 1, "{model}: {field}");
                let got = upstream.last_request().unwrap().body;
                assert!(
                    got.get(key).is_some_and(|v| !v.is_null()),
                    "{model}: {field} did not reach the upstream as {key}: {got}"
                );
                sent += 1;
            }
            Refused(param) => {
                assert_eq!(status, 400, "{model}: {field}: {text}");
                let err: Value = serde_json::from_str(&text).unwrap();
                assert_eq!(err["error"]["param"], param, "{model}: {field}: {text}");
                // Options refused at dispatch name the target too.
                if GENERATION_OPTIONS.contains(&param) {
                    let message = err["error"]["message"].as_str().unwrap();
                    assert!(
                        message.contains(&format!("\"{param}\"")) && message.contains(model),
                        "{model}: {field}: {text}"
                    );
                }
                assert_eq!(
                    upstream.request_count(),
                    before,
                    "{model}: a refused {field} reached the upstream"
                );
                refused += 1;
            }
            Tags(tagged) => {
                assert_eq!(status, 200, "{model}: {field}: {text}");
                assert_eq!(route, tagged, "{model}: {field} did not route by its tag");
                sent += 1;
            }
            Usage => {
                assert_eq!(status, 200, "{model}: {field}: {text}");
                assert!(
                    text.contains("\"prompt_tokens\""),
                    "{model}: {field}: no usage chunk in {text}"
                );
                sent += 1;
            }
        }
    }
    (sent, refused)
}

#[tokio::test]
async fn every_documented_chat_field_reaches_the_upstream_or_is_refused_by_name() {
    let table: Vec<&str> = cases().iter().map(|c| c.field).collect();
    assert_eq!(table, DOCUMENTED.to_vec(), "every documented field, once");

    let env = start("fields-all").await;
    let (sent, refused) = check_target(&env, "gpt", &env.openai).await;
    assert_eq!((sent, refused), (28, 6), "openai: sent, refused");
    let (sent, refused) = check_target(&env, "claude", &env.anthropic).await;
    assert_eq!((sent, refused), (14, 20), "anthropic: sent, refused");

    // OpenAI gets the gateway's tags as its own metadata with the stored
    // completion they label.
    let body = json!({"model": "gpt", "messages": [{"role": "user", "content": "hi"}],
        "metadata": {"project": "fields"}, "store": true});
    let (status, _, text) = env.chat(&body).await;
    assert_eq!(status, 200, "{text}");
    let got = env.openai.last_request().unwrap().body;
    assert_eq!(got["metadata"], json!({"project": "fields"}), "{got}");
    assert_eq!(got["store"], json!(true), "{got}");

    // An Anthropic caller asking for what its target cannot do is told in
    // Anthropic's error shape.
    let resp = env
        .http
        .post(format!("{}/v1/messages", env.gw.base_url))
        .json(&json!({"model": "claude", "max_tokens": 16, "top_k": 3,
            "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["type"], "error", "{err}");
    assert!(
        err["error"]["message"].as_str().unwrap().contains("top_k"),
        "{err}"
    );
    env.gw.stop().unwrap();
}

#[tokio::test]
async fn logprobs_and_several_choices_come_back_from_an_openai_upstream() {
    let env = start("fields-answers").await;
    let body = json!({"model": "gpt", "messages": [{"role": "user", "content": "two words"}],
        "logprobs": true, "top_logprobs": 2, "n": 3});
    let (status, _, text) = env.chat(&body).await;
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    let choices = v["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 3, "{v}");
    for (i, c) in choices.iter().enumerate() {
        assert_eq!(c["index"], i, "{v}");
        let content = c["message"]["content"].as_str().unwrap();
        let tokens = c["logprobs"]["content"].as_array().unwrap();
        let joined: String = tokens
            .iter()
            .map(|t| t["token"].as_str().unwrap())
            .collect();
        assert_eq!(joined, content, "choice {i}'s tokens spell its text");
        assert!(tokens
            .iter()
            .all(|t| t["logprob"] == -0.5 && t["top_logprobs"].as_array().unwrap().len() == 2));
    }
    assert!(choices[1]["message"]["content"]
        .as_str()
        .unwrap()
        .starts_with("[1] "));

    // Streamed: the chunks carry the tokens' log probabilities, which spell
    // the streamed text.
    let body = json!({"model": "gpt", "messages": [{"role": "user", "content": "three small words"}],
        "logprobs": true, "top_logprobs": 1, "stream": true});
    let (status, _, sse) = env.chat(&body).await;
    assert_eq!(status, 200, "{sse}");
    let chunks: Vec<Value> = sse
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| {
            c.pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
        })
        .collect();
    let tokens: String = chunks
        .iter()
        .filter_map(|c| {
            c.pointer("/choices/0/logprobs/content")
                .and_then(Value::as_array)
        })
        .flatten()
        .map(|t| t["token"].as_str().unwrap().to_owned())
        .collect();
    assert!(!text.is_empty(), "{sse}");
    assert_eq!(tokens, text, "{sse}");

    // Several streamed choices are refused by name.
    let body = json!({"model": "gpt", "messages": [{"role": "user", "content": "hi"}],
        "n": 2, "stream": true});
    let (status, _, text) = env.chat(&body).await;
    assert_eq!(status, 400, "{text}");
    let err: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(err["error"]["param"], "n", "{text}");
    env.gw.stop().unwrap();
}

#[tokio::test]
async fn a_fallback_target_that_cannot_honour_a_field_is_skipped_not_used() {
    let openai = MockUpstream::openai().await;
    let anthropic = MockUpstream::anthropic().await;
    let cfg = format!(
        r#"version: 1
ledger: {{ url: "sqlite://{{dir}}/ledger.db" }}
models:
  gpt:
    provider: openai
    base_url: "{}"
    api_key_env: E2E_OPENAI_KEY
    timeout_ms: 3000
    trusted: true
  claude:
    provider: anthropic
    base_url: "{}"
    api_key_env: E2E_ANTHROPIC_KEY
    timeout_ms: 3000
    trusted: true
routes:
  - name: claude-first
    when: {{ model: claude }}
    to: [claude]
    fallback: [gpt]
"#,
        openai.base_url, anthropic.base_url
    );
    let gw = Gateway::start(
        "fields-fallback",
        &cfg,
        &[
            ("E2E_OPENAI_KEY", "sk-openai"),
            ("E2E_ANTHROPIC_KEY", "sk-ant"),
        ],
    )
    .unwrap();
    gw.wait_ready(Duration::from_secs(30)).await.unwrap();
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{}/v1/chat/completions", gw.base_url))
        .json(
            &json!({"model": "claude", "messages": [{"role": "user", "content": "hi"}],
            "reasoning_effort": "high"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers()["x-watershed-backend"].to_str().unwrap(),
        "gpt"
    );
    assert_eq!(anthropic.request_count(), 0, "claude cannot honour it");
    assert_eq!(
        openai.last_request().unwrap().body["reasoning_effort"],
        "high"
    );
    // Without the field, the first target serves.
    let resp = http
        .post(format!("{}/v1/chat/completions", gw.base_url))
        .json(&json!({"model": "claude", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(anthropic.request_count(), 1);
    gw.stop().unwrap();
}
