//! `POST /v1/embeddings` through the real binary: the official `openai`
//! Python SDK against the local engine (the default model, mean pooling) and
//! against a mock OpenAI upstream (checking the exact body it received),
//! base64 and float, a target that cannot embed skipped, a confidential
//! input kept home, bad inputs refused by name, and the ledger rows read
//! back (input tokens, no completion tokens, the embedding model's price).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use sqlx::Row;
use watershed_tests::harness::{python, test_model, workspace_root, Gateway};
use watershed_tests::mock::{Failure, MockUpstream};

fn config(openai: &str, gguf: &str) -> String {
    format!(
        r#"version: 1
ledger: {{ url: "sqlite://{{dir}}/ledger.db" }}
server: {{ max_embedding_inputs: 3 }}
models:
  local:
    engine: local
    gguf: "{gguf}"
    context_tokens: 256
    parallel: 1
  local-chat:
    engine: local
    gguf: "{gguf}"
    context_tokens: 256
    parallel: 1
    embeddings: false
  chat-only:
    provider: openai
    base_url: "{openai}"
    api_key_env: E2E_OPENAI_KEY
  text-embedding-3-small:
    provider: openai
    base_url: "{openai}"
    api_key_env: E2E_OPENAI_KEY
    embeddings: {{ model: text-embedding-3-small }}
routes:
  - name: chat-home
    when: {{ model: local-chat }}
    to: [local-chat]
  - name: home
    when: {{ privacy: ">= confidential" }}
    to: [local]
  - name: remote-embed
    when: {{ model: text-embedding-3-small }}
    to: [chat-only]
    fallback: [text-embedding-3-small]
  - name: local-embed
    to: [local]
"#
    )
}

struct Env {
    openai: MockUpstream,
    gw: Gateway,
    http: reqwest::Client,
}

async fn start(tag: &str) -> Env {
    let openai = MockUpstream::openai().await;
    let gguf = test_model().unwrap();
    let gw = Gateway::start(
        tag,
        &config(&openai.base_url, &gguf.display().to_string()),
        &[("E2E_OPENAI_KEY", "sk-openai")],
    )
    .unwrap();
    gw.wait_ready(Duration::from_secs(120)).await.unwrap();
    Env {
        openai,
        gw,
        http: reqwest::Client::new(),
    }
}

impl Env {
    async fn post(&self, body: &Value, privacy: Option<&str>) -> (u16, Value, Option<String>) {
        let mut req = self
            .http
            .post(format!("{}/v1/embeddings", self.gw.base_url))
            .json(body);
        if let Some(p) = privacy {
            req = req.header("x-watershed-privacy", p);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let backend = resp
            .headers()
            .get("x-watershed-backend")
            .map(|v| v.to_str().unwrap().to_owned());
        (status, resp.json().await.unwrap(), backend)
    }

    async fn sdk(&self, model: &str, dims: Option<u32>) -> Value {
        let script = workspace_root().join("tests/sdk/openai_sdk_embeddings.py");
        let mut args = vec![self.gw.base_url.clone(), model.to_owned()];
        if let Some(d) = dims {
            args.push(d.to_string());
        }
        let out = tokio::task::spawn_blocking(move || {
            Command::new(python()).arg(script).args(args).output()
        })
        .await
        .unwrap()
        .unwrap();
        assert!(
            out.status.success(),
            "SDK script failed:\n{}\n--- gateway log ---\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.gw.log_text()
        );
        serde_json::from_slice(&out.stdout).unwrap()
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

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (na * nb)
}

fn row<'a>(rows: &'a [sqlx::sqlite::SqliteRow], id: &str) -> &'a sqlx::sqlite::SqliteRow {
    let found: Vec<_> = rows
        .iter()
        .filter(|r| r.get::<String, _>("request_id") == id)
        .collect();
    assert_eq!(found.len(), 1, "exactly one ledger row for {id}");
    found[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_sdk_embeds_locally_and_upstream_with_one_ledger_row_each() {
    let env = start("emb-sdk").await;

    // The local engine: the default model, mean-pooled and normalised.
    let local = env.sdk("local", None).await;
    let s = floats(&local["string"]["vectors"][0]);
    let l0 = floats(&local["list"]["vectors"][0]);
    let l1 = floats(&local["list"]["vectors"][1]);
    assert_eq!(local["string"]["backend"], "local");
    assert_eq!(s.len(), 576, "SmolLM2-135M's hidden size");
    assert_eq!(local["list"]["indexes"], json!([0, 1]));
    let norm = s.iter().map(|x| x * x).sum::<f64>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4, "normalised, got {norm}");
    // The same text gives the same vector in another request, alone or in a
    // list; base64 carries exactly the floats.
    assert!(cosine(&s, &l0) > 0.999_999, "{}", cosine(&s, &l0));
    assert!(cosine(&l0, &l1) < 0.999, "different texts differ");
    let b64 = floats(&local["base64_sdk"]["vectors"][0]);
    let manual: Vec<f64> = floats(&local["base64_manual"]);
    for (a, b) in s.iter().zip(&b64).chain(s.iter().zip(&manual)) {
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    }
    assert!(local["list"]["prompt_tokens"].as_u64().unwrap() > 4);
    assert_eq!(
        local["list"]["prompt_tokens"],
        local["list"]["total_tokens"]
    );

    // Upstream: `chat-only` cannot embed and is skipped; the embedding
    // target gets exactly the fields the client sent.
    let before = env.openai.request_count();
    let remote = env.sdk("text-embedding-3-small", Some(4)).await;
    assert_eq!(remote["string"]["backend"], "text-embedding-3-small");
    assert_eq!(remote["string"]["model"], "text-embedding-3-small");
    assert_eq!(floats(&remote["string"]["vectors"][0]).len(), 4);
    assert_eq!(remote["list"]["vectors"].as_array().unwrap().len(), 2);
    let sent = env.openai.requests();
    let sent: Vec<_> = sent[before..].iter().collect();
    assert_eq!(sent.len(), 4, "one upstream call per request, none to chat");
    assert!(sent.iter().all(|r| r.path == "/v1/embeddings"));
    assert_eq!(
        sent[0].body,
        json!({
            "model": "text-embedding-3-small",
            "input": ["The river meets the sea."],
            "encoding_format": "float",
            "dimensions": 4,
            "user": "user-42"
        })
    );
    assert_eq!(
        sent[1].body["input"],
        json!(["The river meets the sea.", "Quarterly revenue grew."])
    );
    assert_eq!(sent[0].header("authorization"), Some("Bearer sk-openai"));
    // The gateway decodes nothing: base64 for the client is the upstream's
    // floats re-encoded.
    let up = floats(&remote["string"]["vectors"][0]);
    let b64 = floats(&remote["base64_sdk"]["vectors"][0]);
    for (a, b) in up.iter().zip(&b64) {
        assert!((a - b).abs() < 1e-6);
    }

    let rows = env.ledger().await;
    for name in ["string", "list", "base64_sdk"] {
        let r = row(&rows, local[name]["request_id"].as_str().unwrap());
        assert_eq!(r.get::<String, _>("backend"), "local");
        assert_eq!(r.get::<i64, _>("completion_tokens"), 0);
        assert_eq!(
            r.get::<i64, _>("prompt_tokens"),
            local[name]["prompt_tokens"].as_i64().unwrap()
        );
        assert_eq!(r.get::<f64, _>("cost_usd"), 0.0);
        assert_eq!(r.get::<i64, _>("status"), 200);
        assert!(r.get::<f64, _>("engine_seconds") > 0.0);

        let r = row(&rows, remote[name]["request_id"].as_str().unwrap());
        assert_eq!(r.get::<String, _>("backend"), "text-embedding-3-small");
        assert_eq!(r.get::<i64, _>("completion_tokens"), 0);
        let tokens = remote[name]["prompt_tokens"].as_i64().unwrap();
        assert!(tokens > 0);
        assert_eq!(r.get::<i64, _>("prompt_tokens"), tokens);
        // OpenAI's list price: $0.02 per million input tokens.
        let want = tokens as f64 * 0.02 / 1e6;
        assert!((r.get::<f64, _>("cost_usd") - want).abs() < 1e-12);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confidential_inputs_stay_home_and_bad_inputs_are_named() {
    let env = start("emb-rules").await;

    // An e-mail address makes the input confidential: the remote embedding
    // target is never asked, the local engine embeds it.
    let before = env.openai.request_count();
    let (status, body, backend) = env
        .post(
            &json!({"model": "text-embedding-3-small", "input": ["fine", "mail jane.doe@example.com"]}),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(backend.as_deref(), Some("local"));
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    // Token ids cannot be classified: they stay home too.
    let (status, body, backend) = env
        .post(
            &json!({"model": "text-embedding-3-small", "input": [[1, 2, 3], [4, 5]]}),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(backend.as_deref(), Some("local"));
    assert_eq!(
        env.openai.request_count(),
        before,
        "nothing left the gateway"
    );

    // A confidential request whose only trusted target cannot embed fails
    // closed, naming the capability.
    let (status, body, _) = env
        .post(
            &json!({"model": "local-chat", "input": "x"}),
            Some("confidential"),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "embeddings", "{body}");

    // Bad input, each refused by name.
    let long = "river ".repeat(600);
    for (req, param, words) in [
        (json!({"model": "local", "input": ""}), "input", "empty"),
        (json!({"model": "local", "input": []}), "input", "empty"),
        (
            json!({"model": "local", "input": {"a": 1}}),
            "input",
            "an object",
        ),
        (
            json!({"model": "local", "input": ["a", "b", "c", "d"]}),
            "input",
            "at most 3",
        ),
        (
            json!({"model": "local", "input": ["short", long]}),
            "input",
            "input[1]",
        ),
        (
            json!({"model": "local", "input": [[999999999]]}),
            "input",
            "vocabulary",
        ),
        (
            json!({"model": "local", "input": "a", "dimensions": 8}),
            "dimensions",
            "dimensions",
        ),
        (
            json!({"model": "local", "input": "a", "encoding_format": "int8"}),
            "encoding_format",
            "int8",
        ),
        (json!({"input": "a"}), "model", "model"),
    ] {
        let (status, body, _) = env.post(&req, None).await;
        assert_eq!(status, 400, "{req}: {body}");
        assert_eq!(body["error"]["param"], param, "{req}: {body}");
        assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
        let msg = body["error"]["message"].as_str().unwrap();
        assert!(msg.contains(words), "{req}: {msg}");
    }
    assert_eq!(env.openai.request_count(), before);
    let rows = env.ledger().await;
    assert!(rows
        .iter()
        .all(|r| r.get::<String, _>("backend") != "text-embedding-3-small"));
}

/// A remote embedding target's transient failures (429, 503) are retried
/// on the same target exactly as an answer's are (`retries`,
/// `retry_backoff_ms`), each try counted in the ledger row's attempts;
/// once its retries are spent the client gets the upstream's failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_embeddings_retry_a_429_and_a_503_on_the_same_target() {
    let openai = MockUpstream::openai().await;
    let config = format!(
        r#"version: 1
ledger: {{ url: "sqlite://{{dir}}/ledger.db" }}
models:
  text-embedding-3-small:
    provider: openai
    base_url: "{}"
    api_key_env: E2E_OPENAI_KEY
    embeddings: {{ model: text-embedding-3-small }}
    retries: 1
    retry_backoff_ms: 10
  local:
    engine: local
    gguf: "{{dir}}/does-not-exist.gguf"
routes:
  - name: home
    when: {{ privacy: ">= confidential" }}
    to: [local]
  - name: remote-embed
    to: [text-embedding-3-small]
"#,
        openai.base_url
    );
    let gw = Gateway::start(
        "e2e-embed-retry",
        &config,
        &[("E2E_OPENAI_KEY", "sk-openai")],
    )
    .unwrap();
    gw.wait_ready(Duration::from_secs(30)).await.unwrap();
    let env = Env {
        openai,
        gw,
        http: reqwest::Client::new(),
    };
    let body = json!({"model": "text-embedding-3-small", "input": "The river meets the sea."});
    let embeds = || env.openai.count_path("/v1/embeddings");

    env.openai.fail_next(1, Failure::Status(429));
    let (status, answer, backend) = env.post(&body, None).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(backend.as_deref(), Some("text-embedding-3-small"));
    assert_eq!(answer["data"].as_array().unwrap().len(), 1);
    assert_eq!(embeds(), 2, "one 429, then the retry");

    env.openai.fail_next(1, Failure::Status(503));
    let (status, answer, _) = env.post(&body, None).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(embeds(), 4, "one 503, then the retry");

    // Two failures in a row spend the one retry.
    env.openai.fail_next(2, Failure::Status(503));
    let (status, answer, _) = env.post(&body, None).await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["error"]["code"], "upstream_unavailable");
    assert_eq!(embeds(), 6);

    let dir = env.gw.dir.clone();
    env.gw.stop().unwrap();
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
    assert_eq!(got, [(200, 2), (200, 2), (503, 2)]);
}
