//! The real binary serving several local models at once: the default dense model,
//! a synthetic mixture-of-experts model (scripts/make_moe_gguf.py) and a corrupt
//! file. Each has its own engine; the broken one is named with its reason and
//! does not take the others down; `/v1/models` reports the MoE's metadata; a
//! client that goes away mid-answer is recorded as cancelled with the tokens
//! actually generated.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::process::Command;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};
use sqlx::Row;
use watershed_tests::harness::{python, scratch_dir, test_model, workspace_root, Gateway};

fn config(dense: &str, moe: &str, broken: &str) -> String {
    format!(
        r#"version: 1
ledger: {{ url: "sqlite://{{dir}}/ledger.db" }}
models:
  local:
    engine: local
    gguf: "{dense}"
    context_tokens: 1024
    parallel: 2
  moe:
    engine: local
    gguf: "{moe}"
    context_tokens: 512
    parallel: 2
  broken:
    engine: local
    gguf: "{broken}"
fleet: {{ gpus: 1, gpu_hour_usd: 3.6 }}
routes:
  - name: the-moe
    when: {{ model: moe }}
    to: [moe]
  - name: the-broken-one
    when: {{ model: broken }}
    to: [broken]
  - name: everything-else
    to: [local]
"#
    )
}

fn chat(model: &str, text: &str, max_tokens: u32) -> Value {
    json!({
        "model": model,
        "messages": [{"role": "user", "content": text}],
        "max_tokens": max_tokens,
        "temperature": 0,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dense_moe_and_broken_models_side_by_side() {
    let models = scratch_dir("e2e-local-models").unwrap();
    let dense = test_model().unwrap();
    let moe = models.join("moe.gguf");
    let status = Command::new(python())
        .arg(workspace_root().join("scripts/make_moe_gguf.py"))
        .arg("--out")
        .arg(&moe)
        .arg("--tokenizer-from")
        .arg(&dense)
        .status()
        .unwrap();
    assert!(status.success(), "make_moe_gguf.py failed");
    let broken = models.join("broken.gguf");
    let mut junk = b"GGUF".to_vec();
    junk.extend([0xff; 60]);
    std::fs::write(&broken, junk).unwrap();

    let gw = Gateway::start(
        "e2e-local",
        &config(
            &dense.display().to_string(),
            &moe.display().to_string(),
            &broken.display().to_string(),
        ),
        &[],
    )
    .unwrap();
    gw.wait_ready(Duration::from_secs(120)).await.unwrap();
    let http = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", gw.base_url);

    // What /v1/models says about each engine.
    let listed: Value = http
        .get(url("/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entry = |id: &str| {
        listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == id)
            .unwrap_or_else(|| panic!("{id} missing from {listed}"))
            .clone()
    };
    let m = entry("moe");
    let d = &m["watershed"]["details"];
    assert_eq!(d["architecture"], "qwen3moe", "{m}");
    assert_eq!(d["expert_count"], 8, "{m}");
    assert_eq!(d["expert_used_count"], 2, "{m}");
    assert_eq!(d["quantization"], "F16", "{m}");
    let total = d["parameters"].as_u64().unwrap();
    let active = d["active_parameters"].as_u64().unwrap();
    assert!(active > 0 && active < total, "{m}");
    assert_eq!(m["watershed"]["unavailable"], Value::Null, "{m}");
    let b = entry("broken");
    let why = b["watershed"]["unavailable"].as_str().unwrap();
    assert!(why.contains("broken.gguf"), "{why}");
    assert_eq!(
        entry("local")["watershed"]["details"]["architecture"],
        "llama"
    );

    // The MoE model generates through the gateway.
    let resp = http
        .post(url("/v1/chat/completions"))
        .json(&chat("moe", "Hello there", 12))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-watershed-backend"], "moe");
    let moe_id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["model"], "moe");
    assert!(
        body["usage"]["completion_tokens"].as_u64().unwrap() > 0,
        "{body}"
    );

    // The broken model answers 503 naming its file; the dense one still serves.
    let resp = http
        .post(url("/v1/chat/completions"))
        .json(&chat("broken", "Hello", 8))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.contains("broken.gguf"), "{body}");
    let resp = http
        .post(url("/v1/chat/completions"))
        .json(&chat("local", "Name a colour.", 8))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // A streaming client that goes away after a few chunks.
    let mut req = chat(
        "local",
        "Write a long story about a dragon and a knight.",
        400,
    );
    req["stream"] = json!(true);
    let resp = http
        .post(url("/v1/chat/completions"))
        .json(&req)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let cancelled_id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    let mut stream = resp.bytes_stream();
    let mut seen = 0;
    while seen < 6 {
        let chunk = stream.next().await.unwrap().unwrap();
        seen += String::from_utf8_lossy(&chunk)
            .matches("\"content\"")
            .count();
    }
    drop(stream);
    // The engine notices at its next step and frees the sequence.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let dir = gw.dir.clone();
    gw.stop().unwrap();
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}/ledger.db", dir.display()))
        .await
        .unwrap();
    let rows = sqlx::query("SELECT * FROM ledger")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(rows.len(), 4, "moe, broken, local, cancelled");
    let row = |id: &str| {
        rows.iter()
            .find(|r| r.get::<String, _>("request_id") == id)
            .unwrap()
    };
    let c = row(&cancelled_id);
    assert_eq!(c.get::<String, _>("error_code"), "cancelled");
    assert_eq!(c.get::<i64, _>("status"), 499);
    let generated = c.get::<i64, _>("completion_tokens");
    assert!((5..400).contains(&generated), "{generated} tokens recorded");
    // The fleet costs $3.60 an hour, $0.001 per engine-second: a local answer
    // is charged its engine time at that rate.
    let m = row(&moe_id);
    let engine: f64 = m.get("engine_seconds");
    let cost: f64 = m.get("cost_usd");
    assert!(engine > 0.0, "{engine}");
    assert!(
        (cost - engine * 0.001).abs() < 1e-12,
        "{cost} for {engine} s"
    );
    let backends: Vec<String> = rows.iter().map(|r| r.get("backend")).collect();
    assert!(backends.contains(&"moe".to_owned()), "{backends:?}");
    let broken_row = rows
        .iter()
        .find(|r| r.get::<String, _>("backend") == "broken")
        .unwrap();
    assert_eq!(broken_row.get::<i64, _>("status"), 503);
}
