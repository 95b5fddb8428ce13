//! `n` choices from the real local model through `/v1/chat/completions`: the
//! answer carries `choices[0..n]`, each with its own index and finish reason,
//! usage and the ledger row count the prompt once and the choices' tokens
//! summed; `n` above the target's `parallel`, and `n` with `stream`, are
//! refused naming `n`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::time::Duration;

use serde_json::{json, Value};
use sqlx::Row;
use watershed_tests::harness::{test_model, Gateway};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_n_choices_through_the_gateway() {
    let model = test_model().unwrap();
    let cfg = format!(
        r#"version: 1
ledger: {{ url: "sqlite://{{dir}}/ledger.db" }}
models:
  local:
    engine: local
    gguf: "{}"
    context_tokens: 512
    parallel: 3
routes:
  - name: everything-else
    to: [local]
"#,
        model.display()
    );
    let gw = Gateway::start("e2e-local-n", &cfg, &[]).unwrap();
    gw.wait_ready(Duration::from_secs(120)).await.unwrap();
    let http = reqwest::Client::new();
    let url = format!("{}/v1/chat/completions", gw.base_url);
    let ask = |extra: Value| {
        let mut body = json!({
            "model": "local",
            "messages": [{"role": "user", "content": "Write a short poem about the sea."}],
            "max_tokens": 16,
            "temperature": 1.0,
            "seed": 11,
        });
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let http = http.clone();
        let url = url.clone();
        async move {
            let resp = http.post(&url).json(&body).send().await.unwrap();
            let status = resp.status().as_u16();
            let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
            let text = resp.text().await.unwrap();
            (status, id, text)
        }
    };

    let (status, three_id, text) = ask(json!({"n": 3, "logprobs": true})).await;
    assert_eq!(status, 200, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    let choices = body["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 3, "{body}");
    let mut per_choice = Vec::new();
    for (i, c) in choices.iter().enumerate() {
        assert_eq!(c["index"], i, "{c}");
        assert!(
            matches!(c["finish_reason"].as_str(), Some("stop" | "length")),
            "{c}"
        );
        assert!(!c["message"]["content"].as_str().unwrap().is_empty(), "{c}");
        // One logprobs entry per generated token.
        per_choice.push(c["logprobs"]["content"].as_array().unwrap().len() as u64);
    }
    let texts: Vec<&str> = choices
        .iter()
        .map(|c| c["message"]["content"].as_str().unwrap())
        .collect();
    println!("choices: {texts:?} usage: {}", body["usage"]);
    assert!(texts[0] != texts[1] || texts[1] != texts[2], "{texts:?}");
    let completion = body["usage"]["completion_tokens"].as_u64().unwrap();
    assert_eq!(completion, per_choice.iter().sum::<u64>(), "{body}");

    // The prompt is counted once: as for one choice.
    let (status, one_id, text) = ask(json!({})).await;
    assert_eq!(status, 200, "{text}");
    let one: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(one["choices"].as_array().unwrap().len(), 1);
    assert_eq!(
        body["usage"]["prompt_tokens"], one["usage"]["prompt_tokens"],
        "{body} {one}"
    );
    // Choice 0 is the one-choice answer of the same seed.
    assert_eq!(texts[0], one["choices"][0]["message"]["content"]);

    // More choices than the target decodes at once, or streamed: 400 naming `n`.
    for extra in [json!({"n": 4}), json!({"n": 2, "stream": true})] {
        let (status, _, text) = ask(extra.clone()).await;
        println!("{extra}: {text}");
        assert_eq!(status, 400, "{text}");
        let err: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(err["error"]["param"], "n", "{text}");
    }
    let (_, _, text) = ask(json!({"n": 4})).await;
    assert!(text.contains("parallel: 3"), "{text}");

    let dir = gw.dir.clone();
    gw.stop().unwrap();
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}/ledger.db", dir.display()))
        .await
        .unwrap();
    let rows = sqlx::query("SELECT * FROM ledger")
        .fetch_all(&pool)
        .await
        .unwrap();
    let row = |id: &str| {
        rows.iter()
            .find(|r| r.get::<String, _>("request_id") == id)
            .unwrap_or_else(|| panic!("no ledger row for {id}"))
    };
    let three = row(&three_id);
    println!(
        "ledger: prompt {} completion {}",
        three.get::<i64, _>("prompt_tokens"),
        three.get::<i64, _>("completion_tokens")
    );
    assert_eq!(three.get::<i64, _>("completion_tokens") as u64, completion);
    assert_eq!(
        three.get::<i64, _>("prompt_tokens"),
        row(&one_id).get::<i64, _>("prompt_tokens")
    );
}
