//! The `watershed` command line as an operator runs it: `policy check` accepts the
//! embedded default policy and refuses a leaky one with file:line:col.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::path::{Path, PathBuf};
use std::process::Command;

fn watershed() -> Command {
    Command::new(env!("CARGO_BIN_EXE_watershed"))
}

/// Runs `policy explain` on `request` (written into `dir`); its output as text and JSON.
fn run_explain(dir: &Path, cfg: &Path, request: &str) -> (String, serde_json::Value) {
    let file = dir.join("request.json");
    std::fs::write(&file, request).unwrap();
    let out = watershed()
        .args(["policy", "explain", "--config"])
        .arg(cfg)
        .arg("--request")
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = serde_json::from_str(&stdout).unwrap();
    (stdout, json)
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[test]
fn policy_check_accepts_the_default_policy() {
    let file = repo_root().join("config/default.yaml");
    let out = watershed()
        .args(["policy", "check"])
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("ok (4 models, 5 routes)"), "{stdout}");
}

#[test]
fn policy_check_refuses_a_leaky_policy_with_its_position() {
    let dir = std::env::temp_dir().join(format!("watershed-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("leaky.yaml");
    std::fs::write(
        &file,
        "version: 1\n\
         models:\n  \
           local: { engine: local, gguf: m.gguf }\n  \
           gpt: { provider: openai, model: gpt-5.4-mini, api_key_env: OPENAI_API_KEY }\n\
         routes:\n  \
           - name: all\n    \
             to: [gpt]\n    \
             fallback: [local]\n",
    )
    .unwrap();
    let out = watershed()
        .args(["policy", "check"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    // `gpt` in the route's `to` list is on line 7, column 10.
    let pos = format!("{}:7:10", file.display());
    assert!(stderr.contains(&pos), "expected {pos} in:\n{stderr}");
    assert!(stderr.contains("confidential"), "{stderr}");
}

#[test]
fn an_unknown_subcommand_is_refused() {
    let out = watershed().arg("frobnicate").output().unwrap();
    assert!(!out.status.success());
}

#[test]
fn classify_reads_json_lines_and_answers_one_object_per_line() {
    use std::io::Write;
    let mut child = watershed()
        .arg("classify")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            b"{\"prompt\":\"What is 2+2?\"}\n\
              {\"messages\":[{\"role\":\"user\",\"content\":\"Card 4111 1111 1111 1111, thanks\"}]}\n\
              {\"prompt\":\"Prove that there are infinitely many primes, then generalise the argument to primes of the form 4k+3 and discuss Dirichlet's theorem.\"}\n",
        )
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(
        lines[0]["privacy"], "internal",
        "the default config's floor"
    );
    assert_eq!(lines[0]["pii"], serde_json::json!([]));
    assert_eq!(lines[1]["privacy"], "confidential");
    assert_eq!(
        lines[1]["pii"],
        serde_json::json!([{"type": "credit_card", "start": 5, "end": 24}])
    );
    for l in &lines {
        let d = l["difficulty"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&d), "{l}");
    }
}

#[test]
fn policy_explain_shows_evidence_rules_and_outcome_without_the_values() {
    let dir = std::env::temp_dir().join(format!("watershed-explain-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("policy.yaml");
    std::fs::write(
        &cfg,
        "version: 1\n\
         models:\n  \
           local: { engine: local, gguf: m.gguf }\n  \
           gpt: { provider: openai, model: gpt-5.4, api_key_env: OPENAI_API_KEY }\n\
         routes:\n  \
           - name: confidential-stays-home\n    \
             when: { privacy: \">= confidential\" }\n    \
             to: [local]\n  \
           - name: everything-else\n    \
             to: [gpt]\n    \
             fallback: [local]\n",
    )
    .unwrap();
    let explain = |request: &str| run_explain(&dir, &cfg, request);

    // Declared public, but the prompt holds a card number.
    let (text, e) = explain(
        r#"{"headers":{"x-watershed-privacy":"public"},
            "body":{"model":"auto","messages":[{"role":"user","content":"My card is 4111 1111 1111 1111"}]}}"#,
    );
    assert!(
        !text.contains("4111"),
        "the value itself must not be shown:\n{text}"
    );
    assert_eq!(e["privacy"]["declared"], "public");
    assert_eq!(e["privacy"]["level"], "confidential");
    assert_eq!(
        e["privacy"]["evidence"],
        serde_json::json!([{"type": "credit_card", "start": 11, "end": 30, "level": "confidential"}])
    );
    assert_eq!(e["rules"].as_array().unwrap().len(), 1);
    assert_eq!(e["rules"][0]["matched"], true);
    assert_eq!(e["outcome"]["route"], "confidential-stays-home");
    assert_eq!(e["outcome"]["targets"], serde_json::json!(["local"]));
    let d = e["difficulty"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&d));

    // A bare body with nothing sensitive: the default level, the first rule
    // explained as not matching, the second taken.
    let (_, e) = explain(r#"{"model":"auto","messages":[{"role":"user","content":"Hello"}]}"#);
    assert_eq!(e["privacy"]["level"], "internal");
    assert_eq!(e["privacy"]["declared"], serde_json::Value::Null);
    assert_eq!(e["rules"][0]["matched"], false);
    assert!(!e["rules"][0]["reason"].as_str().unwrap().is_empty());
    assert_eq!(e["rules"][1]["route"], "everything-else");
    assert_eq!(e["outcome"]["targets"], serde_json::json!(["gpt", "local"]));
}

#[test]
fn policy_calibrate_derives_the_threshold_for_a_strong_fraction() {
    let dir = std::env::temp_dir().join(format!("watershed-calibrate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let samples = dir.join("samples.jsonl");
    let prompts = [
        "Hi",
        "What is the capital of France?",
        "Translate 'good morning' into Spanish.",
        "Write a haiku about autumn.",
        "Prove that the square root of 2 is irrational.",
        "Explain the CAP theorem and its implications for distributed databases.",
        "Derive the closed form of the Fibonacci sequence using generating functions.",
        "Summarise the causes of the First World War in three paragraphs.",
        "Implement a lock-free queue in C++ and explain the memory ordering.",
        "What is 7 times 8?",
    ];
    let lines: Vec<String> = prompts
        .iter()
        .map(|p| serde_json::json!({ "prompt": p }).to_string())
        .collect();
    std::fs::write(&samples, lines.join("\n")).unwrap();
    let out = watershed()
        .args([
            "policy",
            "calibrate",
            "--strong-fraction",
            "0.3",
            "--samples",
        ])
        .arg(&samples)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("10 sample prompts"), "{stdout}");
    assert!(stdout.contains("3 of them (30.0 %)"), "{stdout}");
    // The printed block is valid config: append it to a policy and check it.
    let block = stdout
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let cfg = dir.join("policy.yaml");
    std::fs::write(
        &cfg,
        format!(
            "version: 1\nmodels:\n  local: {{ engine: local, gguf: m.gguf }}\n{block}\n\
             routes:\n  - name: hard\n    when: {{ difficulty: strong }}\n    to: [local]\n"
        ),
    )
    .unwrap();
    let out = watershed()
        .args(["policy", "check"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn policy_explain_reads_the_budget_state_from_the_ledger() {
    let dir = std::env::temp_dir().join(format!("watershed-explain-budget-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ledger = format!("sqlite://{}/ledger.db", dir.display());
    // Today the support team has spent $2.00 on a paid target.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let store = watershed_dashboards::ledger::open_store(&ledger)
                .await
                .unwrap();
            store
                .insert_batch(&[watershed_dashboards::ledger::LedgerRecord {
                    request_id: "spent-1".into(),
                    ts_ms: chrono::Utc::now().timestamp_millis(),
                    team: "support".into(),
                    key_id: "bot".into(),
                    route: "closed".into(),
                    backend: "gpt".into(),
                    backend_kind: "openai".into(),
                    model: "gpt-5.4".into(),
                    privacy: "internal".into(),
                    prompt_tokens: 10,
                    completion_tokens: 10,
                    cached_tokens: 0,
                    cost_usd: 2.0,
                    counterfactual_usd: 2.0,
                    engine_seconds: 0.0,
                    ttft_ms: None,
                    latency_ms: 10.0,
                    status: 200,
                    error_code: None,
                    finish_reason: Some("stop".into()),
                    stream: false,
                    attempts: 1,
                    difficulty: None,
                    explanation: None,
                }])
                .await
                .unwrap();
        });
    let cfg = dir.join("policy.yaml");
    std::fs::write(
        &cfg,
        format!(
            "version: 1\nledger: {{ url: \"{ledger}\" }}\n\
             models:\n  local: {{ engine: local, gguf: m.gguf }}\n  \
             gpt: {{ provider: openai, model: gpt-5.4, api_key_env: OPENAI_API_KEY }}\n\
             teams:\n  support: {{ budget: {{ daily_usd: 1, on_exhausted: reject }} }}\n\
             keys:\n  bot: {{ sha256: {}, team: support }}\n\
             routes:\n  - name: home\n    when: {{ privacy: \">= confidential\" }}\n    to: [local]\n  \
             - name: spent\n    when: {{ budget: exhausted }}\n    to: [local]\n  \
             - name: closed\n    to: [gpt]\n",
            watershed::access::key_sha256("sk-bot")
        ),
    )
    .unwrap();
    let (_, e) = run_explain(
        &dir,
        &cfg,
        r#"{"headers":{"authorization":"Bearer sk-bot"},"body":{"model":"auto","messages":[{"role":"user","content":"Hello"}]}}"#,
    );
    assert_eq!(e["budget"], "exhausted", "{e:#}");
    assert_eq!(e["caller"]["team"], "support");
    assert_eq!(e["rules"][0]["matched"], false);
    assert_eq!(e["rules"][1]["matched"], true);
    assert_eq!(
        e["rules"][1]["reason"],
        "route \"spent\" matched: budget is exhausted"
    );
    assert_eq!(e["outcome"]["targets"], serde_json::json!(["local"]));
    let detail = e["budget_detail"]["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("team \"support\" daily budget of $1.00 is exhausted: $0.0000 left"),
        "{detail}"
    );
}
