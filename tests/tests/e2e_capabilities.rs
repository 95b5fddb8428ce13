//! Capability-aware routing through the real binary against mock upstreams
//! on port 0: a JSON-schema request skips the Anthropic target (the Messages
//! API takes no `response_format`), a logprobs request skips it and the
//! o-series target too, each served by the next target that can; a
//! confidential request whose needs no trusted target meets is refused with
//! a 400 naming the capability and reaches no upstream; and the ledger's
//! explanation names each target skipped and why.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::time::Duration;

use serde_json::{json, Value};
use sqlx::Row;
use watershed_tests::harness::Gateway;
use watershed_tests::mock::MockUpstream;

/// `claude` first, then `o3` and `gpt` (both on the OpenAI mock, told apart
/// by `x-watershed-backend`); confidential traffic goes to `vllm`, trusted,
/// which has JSON schema but no logprobs.
fn config(openai: &str, anthropic: &str) -> String {
    format!(
        r#"version: 1
ledger: {{ url: "sqlite://{{dir}}/ledger.db" }}
models:
  vllm:
    provider: openai-compatible
    base_url: "{openai}"
    model: qwen3
    trusted: true
    timeout_ms: 3000
  claude:
    provider: anthropic
    model: claude-sonnet-4-5
    base_url: "{anthropic}"
    api_key_env: E2E_ANTHROPIC_KEY
    timeout_ms: 3000
  o3:
    provider: openai
    model: o3-mini
    base_url: "{openai}"
    api_key_env: E2E_OPENAI_KEY
    timeout_ms: 3000
  gpt:
    provider: openai
    model: gpt-4o-mini
    base_url: "{openai}"
    api_key_env: E2E_OPENAI_KEY
    timeout_ms: 3000
routes:
  - name: home
    when: {{ privacy: ">= confidential" }}
    to: [vllm]
  - name: rest
    to: [claude]
    fallback: [o3, gpt]
"#
    )
}

fn schema_format() -> Value {
    json!({"type": "json_schema", "json_schema": {
        "name": "answer",
        "schema": {"type": "object", "properties": {"a": {"type": "string"}}}
    }})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_lacking_a_need_are_skipped_and_confidential_ones_fail_closed_with_a_400() {
    let openai = MockUpstream::openai().await;
    let anthropic = MockUpstream::anthropic().await;
    let gw = Gateway::start(
        "e2e-capabilities",
        &config(&openai.base_url, &anthropic.base_url),
        &[
            ("E2E_OPENAI_KEY", "sk-openai"),
            ("E2E_ANTHROPIC_KEY", "sk-ant"),
        ],
    )
    .unwrap();
    gw.wait_ready(Duration::from_secs(30)).await.unwrap();
    let http = reqwest::Client::new();
    let post = |body: Value, privacy: Option<&'static str>| {
        let mut req = http
            .post(format!("{}/v1/chat/completions", gw.base_url))
            .json(&body);
        if let Some(p) = privacy {
            req = req.header("x-watershed-privacy", p);
        }
        async move {
            let resp = req.send().await.unwrap();
            let backend = resp
                .headers()
                .get("x-watershed-backend")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            (resp.status().as_u16(), backend, resp.text().await.unwrap())
        }
    };
    let hello = json!([{"role": "user", "content": "Hello"}]);

    // `/v1/models` says what each target is held to.
    let models: Value = http
        .get(format!("{}/v1/models", gw.base_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let caps_of = |id: &str| {
        models["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == id)
            .map(|m| m["watershed"]["capabilities"].clone())
            .unwrap()
    };
    assert_eq!(
        caps_of("claude"),
        json!({"tools": true, "json_schema": false, "vision": true, "embeddings": false,
               "logprobs": false, "context_tokens": 200_000})
    );
    assert_eq!(
        caps_of("o3"),
        json!({"tools": true, "json_schema": true, "vision": false, "embeddings": false,
               "logprobs": false, "context_tokens": 200_000})
    );
    assert_eq!(caps_of("gpt")["logprobs"], true);
    assert_eq!(caps_of("vllm")["logprobs"], false);

    // A plain request goes to claude, the route's first target.
    let (status, backend, text) = post(json!({"model": "auto", "messages": hello}), None).await;
    assert_eq!(
        (status, backend.as_deref()),
        (200, Some("claude")),
        "{text}"
    );
    assert_eq!(anthropic.request_count(), 1);

    // JSON schema: claude is skipped, o3 serves it with the schema sent on.
    let (status, backend, text) = post(
        json!({"model": "auto", "messages": hello, "response_format": schema_format()}),
        None,
    )
    .await;
    assert_eq!((status, backend.as_deref()), (200, Some("o3")), "{text}");
    assert_eq!(anthropic.request_count(), 1, "claude was not asked");
    let sent = openai.last_request().unwrap().body;
    assert_eq!(sent["model"], "o3-mini");
    assert_eq!(sent["response_format"]["type"], "json_schema");

    // Logprobs: claude and o3 are skipped, gpt answers with them.
    let (status, backend, text) = post(
        json!({"model": "auto", "messages": hello, "logprobs": true, "top_logprobs": 2}),
        None,
    )
    .await;
    assert_eq!((status, backend.as_deref()), (200, Some("gpt")), "{text}");
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert!(
        answer["choices"][0]["logprobs"]["content"].is_array(),
        "{answer}"
    );
    assert_eq!(openai.last_request().unwrap().body["model"], "gpt-4o-mini");
    assert_eq!(anthropic.request_count(), 1);

    // Confidential with JSON schema: the trusted vllm can serve it.
    let (status, backend, text) = post(
        json!({"model": "auto", "messages": hello, "response_format": schema_format()}),
        Some("confidential"),
    )
    .await;
    assert_eq!((status, backend.as_deref()), (200, Some("vllm")), "{text}");

    // Confidential with logprobs: no trusted target returns them, so the
    // request is refused naming the capability, and nothing is sent out.
    let before = (openai.request_count(), anthropic.request_count());
    let (status, _, text) = post(
        json!({"model": "auto", "messages": hello, "logprobs": true}),
        Some("confidential"),
    )
    .await;
    assert_eq!(status, 400, "{text}");
    let err: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(err["error"]["code"], "missing_capability", "{err}");
    assert_eq!(err["error"]["param"], "logprobs", "{err}");
    assert_eq!(
        err["error"]["message"],
        "route \"home\" has no target with the capability \"logprobs\" allowed at privacy confidential"
    );
    assert_eq!(
        (openai.request_count(), anthropic.request_count()),
        before,
        "a refused request reaches no upstream"
    );

    // The ledger's explanations name each target skipped and why.
    let dir = gw.dir.clone();
    gw.stop().unwrap();
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}/ledger.db", dir.display()))
        .await
        .unwrap();
    let rows =
        sqlx::query("SELECT backend, explanation FROM ledger WHERE status = 200 ORDER BY ts_ms")
            .fetch_all(&pool)
            .await
            .unwrap();
    let seen: Vec<(String, Value, Value)> = rows
        .iter()
        .map(|r| {
            let e: Value = serde_json::from_str(&r.get::<String, _>("explanation")).unwrap();
            (
                r.get::<String, _>("backend"),
                e["needs"]["capabilities"].clone(),
                e["skipped"].clone(),
            )
        })
        .collect();
    let skip = |t: &str, cap: &str| json!({"target": t, "reason": "missing_capability", "capability": cap});
    assert_eq!(
        seen,
        vec![
            ("claude".to_owned(), json!([]), json!([])),
            (
                "o3".to_owned(),
                json!(["json_schema"]),
                json!([skip("claude", "json_schema")])
            ),
            (
                "gpt".to_owned(),
                json!(["logprobs"]),
                json!([skip("claude", "logprobs"), skip("o3", "logprobs")])
            ),
            ("vllm".to_owned(), json!(["json_schema"]), json!([])),
        ]
    );
}
