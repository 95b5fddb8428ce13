//! The `watershed` command line as an operator runs it: `policy check` accepts the
//! embedded default policy and refuses a leaky one with file:line:col.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::path::{Path, PathBuf};
use std::process::Command;

/// The instant every command's clock starts at: an hour before a year ends,
/// so budgets, default periods and prices never depend on the day the suite
/// runs.
const CLOCK_START: &str = "2026-12-31T23:00:00Z";

fn watershed() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_watershed"));
    cmd.env("WATERSHED_CLOCK_START", CLOCK_START);
    cmd
}

fn clock_start_ms() -> i64 {
    chrono::DateTime::parse_from_rfc3339(CLOCK_START)
        .unwrap()
        .timestamp_millis()
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
    assert!(stdout.contains("ok (5 models, 6 routes)"), "{stdout}");
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
fn policy_check_warns_about_a_remote_target_with_no_price() {
    let dir = std::env::temp_dir().join(format!("watershed-cli-unpriced-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("unpriced.yaml");
    std::fs::write(
        &file,
        "version: 1\n\
         models:\n  \
           local: { engine: local, gguf: m.gguf }\n  \
           gpt: { provider: openai, model: gpt-5.4-mini, api_key_env: OPENAI_API_KEY }\n  \
           pool: { provider: openai-compatible, base_url: \"http://10.0.0.1/v1\", model: house-model-7b }\n\
         routes:\n  \
           - name: home\n    \
             when: { privacy: \">= confidential\" }\n    \
             to: [local]\n  \
           - name: all\n    \
             to: [pool, gpt]\n",
    )
    .unwrap();
    let out = watershed()
        .args(["policy", "check"])
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: target \"pool\" has no price"),
        "{stderr}"
    );
    // The built-in table prices gpt-5.4-mini; the local engine is not priced per token.
    assert!(!stderr.contains("\"gpt\""), "{stderr}");
    assert!(!stderr.contains("\"local\""), "{stderr}");
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
    // Today (on the commands' clock) the support team has spent $2.00 on a paid target.
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
                    ts_ms: clock_start_ms() - 60_000,
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

fn run_ok(args: &[&str]) -> String {
    let out = watershed().args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn report_plan_computes_the_seed_example_as_the_chapter_does() {
    let plan = repo_root().join("config/plans/seed-hybrid.yaml");
    let plan = plan.to_str().unwrap();
    let text = run_ok(&["report", "--plan", plan]);
    // Hybrid 312 + 5.25 + 75 = $392.25/day against 240 + 135 + 75 = $450.00;
    // 57.75 x 30 = $1,732.50 a month saved.
    assert!(text.contains("Hybrid vs all-closed"), "{text}");
    let total = text.lines().find(|l| l.starts_with("total")).unwrap();
    assert!(total.contains("100,000,000"), "{total}");
    assert!(total.contains("$392.25"), "{total}");
    assert!(total.contains("$450.00"), "{total}");
    assert!(total.contains("$57.75"), "{total}");
    assert!(
        text.contains("hybrid $11,767.50, all-closed $13,500.00, savings $1,732.50 (13%)"),
        "{text}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&run_ok(&["report", "--plan", plan, "--format", "json"])).unwrap();
    assert_eq!(json["hybrid_per_day"], 392.25);
    assert_eq!(json["all_closed_per_day"], 450.0);
    assert_eq!(json["savings_per_month"], 1732.5);
    let csv = run_ok(&["report", "--plan", plan, "--format", "csv"]);
    assert!(
        csv.contains("total,,\"100,000,000\",$392.25,$450.00,$57.75,"),
        "{csv}"
    );
}

#[test]
fn report_plan_errors_name_file_line_and_column() {
    let dir = std::env::temp_dir().join(format!("watershed-plan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("plan.yaml");
    std::fs::write(
        &file,
        "tiers:\n  - name: chatbot\n    tokens_per_day: 1000\n    serve: { api: { model: gpt-5.4, blended_usd_per_mtok: 9 } }\n    all_closed: { model: gpt-5.4, blended_usd_per_mtok: 9 }\n    colour: blue\n",
    )
    .unwrap();
    let out = watershed()
        .args(["report", "--plan"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let pos = format!(
        "{}:6:5: tiers[0].colour: invalid plan: unknown field \"colour\"",
        file.display()
    );
    assert!(stderr.contains(&pos), "expected {pos} in:\n{stderr}");
}

/// A ledger with four requests on 2026-03-02 (two local, two remote, one of
/// them failed after a fallback) and a config with a 2-GPU fleet at $6.50/h.
fn report_fixture(tag: &str) -> (PathBuf, String) {
    use watershed_dashboards::ledger::{open_store, LedgerRecord};
    let dir = std::env::temp_dir().join(format!("watershed-report-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("ledger.db");
    let _ = std::fs::remove_file(&db);
    let url = format!("sqlite://{}", db.display());
    let ts = |h: i64| 1_772_409_600_000 + h * 3_600_000; // 2026-03-02T00:00Z + h
    let base = LedgerRecord {
        request_id: String::new(),
        ts_ms: ts(9),
        team: "legal".into(),
        key_id: "key-1".into(),
        route: "confidential-stays-home".into(),
        backend: "local".into(),
        backend_kind: "llama.cpp".into(),
        model: "SmolLM2-135M-Instruct".into(),
        privacy: "confidential".into(),
        prompt_tokens: 1000,
        completion_tokens: 500,
        cached_tokens: 0,
        cost_usd: 6.5,
        counterfactual_usd: 2.0,
        engine_seconds: 1800.0,
        ttft_ms: Some(100.0),
        latency_ms: 2000.0,
        status: 200,
        error_code: None,
        finish_reason: Some("stop".into()),
        stream: false,
        attempts: 1,
        difficulty: None,
        explanation: None,
    };
    let rows = vec![
        LedgerRecord {
            request_id: "a".into(),
            ..base.clone()
        },
        LedgerRecord {
            request_id: "b".into(),
            ts_ms: ts(10),
            privacy: "restricted".into(),
            prompt_tokens: 400,
            completion_tokens: 100,
            cost_usd: 3.25,
            counterfactual_usd: 1.0,
            engine_seconds: 900.0,
            ttft_ms: Some(50.0),
            latency_ms: 1000.0,
            attempts: 2,
            ..base.clone()
        },
        LedgerRecord {
            request_id: "c".into(),
            ts_ms: ts(11),
            team: "support".into(),
            key_id: "key-2".into(),
            route: "asked-for-gpt-5.4-mini".into(),
            backend: "gpt-5.4-mini".into(),
            backend_kind: "openai".into(),
            model: "gpt-5.4-mini-2026-03-17".into(),
            privacy: "internal".into(),
            prompt_tokens: 2000,
            completion_tokens: 1000,
            cost_usd: 0.5,
            counterfactual_usd: 1.5,
            engine_seconds: 0.0,
            ttft_ms: None,
            latency_ms: 500.0,
            ..base.clone()
        },
        LedgerRecord {
            request_id: "d".into(),
            ts_ms: ts(12),
            team: "support".into(),
            key_id: "key-2".into(),
            route: "asked-for-gpt-5.4-mini".into(),
            backend: "gpt-5.4-mini".into(),
            backend_kind: "openai".into(),
            model: "gpt-5.4-mini-2026-03-17".into(),
            privacy: "internal".into(),
            prompt_tokens: 0,
            completion_tokens: 0,
            cost_usd: 0.0,
            counterfactual_usd: 0.0,
            engine_seconds: 0.0,
            ttft_ms: None,
            latency_ms: 3000.0,
            status: 502,
            error_code: Some("upstream_error".into()),
            finish_reason: None,
            attempts: 3,
            ..base
        },
    ];
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let store = open_store(&url).await.unwrap();
            store.insert_batch(&rows).await.unwrap();
        });
    let config = dir.join("config.yaml");
    let text = std::fs::read_to_string(repo_root().join("config/default.yaml"))
        .unwrap()
        .replace("sqlite://watershed.db", &url);
    std::fs::write(
        &config,
        format!("{text}\nfleet: {{ gpus: 2, gpu_hour_usd: 6.50 }}\n"),
    )
    .unwrap();
    (config, url)
}

#[test]
fn report_prints_the_ledger_as_a_table_json_and_csv() {
    let (config, url) = report_fixture("formats");
    let config = config.to_str().unwrap();
    let day = ["--from", "2026-03-02", "--to", "2026-03-02"];
    let mut args = vec!["report", "--config", config, "--by", "team"];
    args.extend(day);
    let text = run_ok(&args);
    let line = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("no {key} row in:\n{text}"))
            .split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect::<Vec<_>>()
    };
    // team, requests, tokens in, tokens out, spend, counterfactual, savings, savings %, ...
    assert_eq!(
        line("legal")[..8],
        ["legal", "2", "1,400", "600", "$9.75", "$3.00", "-$6.75", "-225.0%"]
    );
    assert_eq!(
        line("support")[..8],
        ["support", "2", "2,000", "1,000", "$0.50", "$1.50", "$1.00", "66.7%"]
    );
    // One day of 2 GPUs x $6.50/h = $312, $9.75 of it used: $302.25 idle.
    assert_eq!(line("(idle GPU time)"), ["(idle GPU time)", "$302.25"]);
    assert_eq!(
        line("total")[..8],
        ["total", "4", "3,400", "1,600", "$312.50", "$4.50", "-$308.00", "-6844.4%"]
    );
    assert!(
        text.contains("Spend 2026-03-02 to 2026-03-02, by team"),
        "{text}"
    );
    assert!(text.contains("tokenizer"), "{text}");
    assert!(text.contains("(claude-sonnet-4.6)"), "{text}");
    assert!(text.contains("within 9.1%"), "{text}");

    // The ledger url from --ledger wins over the config's; --since is --from.
    let mut args = vec![
        "report",
        "--config",
        config,
        "--ledger",
        &url,
        "--format",
        "json",
        "--by",
        "backend",
        "--since",
        "2026-03-02",
        "--to",
        "2026-03-02",
    ];
    let json: serde_json::Value = serde_json::from_str(&run_ok(&args)).unwrap();
    assert_eq!(json["by"], "backend");
    assert_eq!(json["overview"]["totals"]["requests"], 4);
    assert_eq!(json["overview"]["totals"]["privacy_routed"], 2);
    assert_eq!(json["overview"]["totals"]["errors"], 1);
    assert_eq!(json["overview"]["totals"]["fallbacks"], 2);
    assert_eq!(json["overview"]["fleet"]["fleet_usd"], 312.0);
    assert_eq!(json["overview"]["fleet"]["idle_usd"], 302.25);
    assert_eq!(json["overview"]["hybrid_spend_usd"], 312.5);
    assert_eq!(json["rows"][0]["key"], "gpt-5.4-mini");
    assert_eq!(json["rows"][1]["key"], "local");
    assert_eq!(json["rows"][1]["spend_usd"], 9.75);

    args.truncate(3);
    args.extend(["--team", "support", "--format", "csv", "--by", "day"]);
    args.extend(day);
    let csv = run_ok(&args);
    let mut lines = csv.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("day,requests,tokens in,tokens out,spend,counterfactual,savings"),
        "{csv}"
    );
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("2026-03-02,2,\"2,000\",\"1,000\",$0.50,$1.50,$1.00,66.7%"),
        "{csv}"
    );
}

#[test]
fn report_refuses_bad_arguments_clearly() {
    let (config, _) = report_fixture("bad-args");
    let config = config.to_str().unwrap();
    for (args, want) in [
        (vec!["--by", "colour"], "unknown grouping \"colour\""),
        (vec!["--format", "xml"], "unknown format \"xml\""),
        (vec!["--from", "2026-13-01"], "invalid date \"2026-13-01\""),
        (
            vec!["--from", "2026-03-05", "--to", "2026-03-01"],
            "ends (2026-03-01) before it starts (2026-03-05)",
        ),
        (vec!["--ledger", "mysql://x"], "mysql://x"),
    ] {
        let out = watershed()
            .args(["report", "--config", config])
            .args(&args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    }
}

#[test]
fn report_reads_the_ledger_url_from_the_variable_ledger_url_env_names() {
    let (config, url) = report_fixture("url-env");
    let text = std::fs::read_to_string(&config).unwrap().replacen(
        &format!("url: {url}"),
        "url_env: CLI_TEST_LEDGER_URL",
        1,
    );
    assert!(text.contains("url_env: CLI_TEST_LEDGER_URL"), "{text}");
    std::fs::write(&config, text).unwrap();
    let args = [
        "report",
        "--config",
        config.to_str().unwrap(),
        "--from",
        "2026-03-02",
        "--to",
        "2026-03-02",
        "--by",
        "team",
    ];
    let out = watershed()
        .args(args)
        .env("CLI_TEST_LEDGER_URL", &url)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.lines().any(|l| l.starts_with("legal")), "{stdout}");
    // Unset, the command says which variable is missing.
    let out = watershed()
        .args(args)
        .env_remove("CLI_TEST_LEDGER_URL")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("CLI_TEST_LEDGER_URL is not set"), "{err}");
}

#[test]
fn policy_explain_lists_a_pools_members_by_name_and_its_health_settings() {
    let dir = std::env::temp_dir().join(format!("watershed-explain-pool-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("policy.yaml");
    std::fs::write(
        &cfg,
        "version: 1\n\
         models:\n  \
           local: { engine: local, gguf: m.gguf }\n  \
           vllm:\n    \
             provider: openai-compatible\n    \
             model: qwen3\n    \
             endpoints:\n      \
               - { name: gpu-a, url: \"http://10.9.8.7:8000/v1\" }\n      \
               - { name: gpu-b, url: \"http://10.9.8.6:8000/v1\" }\n    \
             health: { path: /health, interval_ms: 3000 }\n\
         routes:\n  \
           - name: confidential-stays-home\n    \
             when: { privacy: \">= confidential\" }\n    \
             to: [local]\n  \
           - name: everything-else\n    \
             to: [vllm]\n    \
             fallback: [local]\n",
    )
    .unwrap();
    let (text, e) = run_explain(
        &dir,
        &cfg,
        r#"{"model":"auto","messages":[{"role":"user","content":"Hello"}]}"#,
    );
    assert_eq!(
        e["outcome"]["targets"],
        serde_json::json!(["vllm", "local"])
    );
    let pool = &e["pools"]["vllm"];
    assert_eq!(pool["members"], serde_json::json!(["gpu-a", "gpu-b"]));
    assert_eq!(pool["balancing"], "least_outstanding");
    assert_eq!(pool["health"]["path"], "/health");
    assert_eq!(pool["health"]["interval_ms"], 3000);
    assert_eq!(pool["health"]["eject_after_failures"], 3);
    // Only pools are listed, and no member's URL is.
    assert!(e["pools"].get("local").is_none());
    assert!(!text.contains("10.9.8"), "{text}");
    // A request that stays home names no pool.
    let (_, e) = run_explain(
        &dir,
        &cfg,
        r#"{"headers":{"x-watershed-privacy":"confidential"},"body":{"model":"auto","messages":[{"role":"user","content":"Hello"}]}}"#,
    );
    assert!(e.get("pools").is_none(), "{e}");
}

#[test]
fn policy_explain_names_each_target_skipped_for_a_missing_capability() {
    let dir = std::env::temp_dir().join(format!("watershed-explain-caps-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model = std::env::var("WATERSHED_TEST_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf"));
    let cfg = dir.join("policy.yaml");
    // The local window is configured far above what the model was trained
    // for; explain reads the GGUF and narrows it.
    std::fs::write(
        &cfg,
        format!(
            "version: 1\n\
             models:\n  \
               local: {{ engine: local, gguf: \"{}\", context_tokens: 100000, tools: false }}\n  \
               claude: {{ provider: anthropic, model: claude-sonnet-4-5, api_key_env: K }}\n  \
               o3: {{ provider: openai, model: o3-mini, api_key_env: K }}\n  \
               gpt: {{ provider: openai, model: gpt-4o, api_key_env: K }}\n\
             routes:\n  \
               - name: home\n    \
                 when: {{ privacy: \">= confidential\" }}\n    \
                 to: [local]\n  \
               - name: rest\n    \
                 to: [claude, local]\n    \
                 fallback: [o3, gpt]\n",
            model.display()
        ),
    )
    .unwrap();
    let explain = |request: &str| run_explain(&dir, &cfg, request).1;

    let e = explain(
        r#"{"model":"auto","logprobs":true,
            "response_format":{"type":"json_schema","json_schema":{"name":"a","schema":{"type":"object"}}},
            "messages":[{"role":"user","content":"Hello"}]}"#,
    );
    assert_eq!(
        e["needs"]["capabilities"],
        serde_json::json!(["json_schema", "logprobs"])
    );
    assert_eq!(
        e["skipped"],
        serde_json::json!([
            {"target": "claude", "reason": "missing_capability", "capability": "json_schema"},
            {"target": "o3", "reason": "missing_capability", "capability": "logprobs"},
        ]),
        "{e}"
    );
    assert_eq!(e["outcome"]["targets"], serde_json::json!(["local", "gpt"]));

    // More than the model's trained window: the local engine is skipped,
    // with the window it has.
    let e = explain(
        r#"{"model":"auto","max_tokens":9000,"messages":[{"role":"user","content":"Hello"}]}"#,
    );
    assert_eq!(e["needs"]["context_tokens"], 9002, "{e}");
    assert_eq!(
        e["skipped"],
        serde_json::json!([{
            "target": "local", "reason": "missing_capability",
            "capability": "context_tokens", "context_tokens": 8192,
        }]),
        "{e}"
    );
    assert_eq!(
        e["outcome"]["targets"],
        serde_json::json!(["claude", "o3", "gpt"])
    );

    // Confidential with tools: the only trusted target has `tools: false`,
    // so the request is refused naming the capability.
    let e = explain(
        r#"{"headers":{"x-watershed-privacy":"confidential"},
            "body":{"model":"auto","messages":[{"role":"user","content":"Hi"}],
            "tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}]}}"#,
    );
    assert_eq!(e["outcome"]["denied"]["code"], "missing_capability", "{e}");
    assert_eq!(
        e["outcome"]["denied"]["message"],
        "route \"home\" has no target with the capability \"tools\" allowed at privacy confidential"
    );
    assert_eq!(
        e["skipped"],
        serde_json::json!([{"target": "local", "reason": "missing_capability", "capability": "tools"}])
    );
}
