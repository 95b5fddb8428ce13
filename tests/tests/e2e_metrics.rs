//! `/metrics` as operators consume it: `promtool check metrics` accepts the
//! exposition, and a real Prometheus server (Debian's `prometheus`) scrapes the
//! gateway and answers queries on the OpenTelemetry GenAI metric names for both
//! the in-process engine (server metrics) and a remote API (client metrics).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use watershed_tests::harness::{scratch_dir, test_model, Gateway};
use watershed_tests::mock::MockUpstream;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills the Prometheus server when the test ends, passing or not.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_gen_ai_metrics() {
    let model = test_model().unwrap();
    let openai = MockUpstream::openai().await;
    let gw = Gateway::start(
        "e2e-metrics",
        &format!(
            r#"version: 1
ledger: {{ url: "sqlite://{{dir}}/ledger.db" }}
models:
  local:
    engine: local
    gguf: "{}"
    context_tokens: 1024
    parallel: 2
  gpt-5.4-mini:
    provider: openai
    base_url: "{}"
    api_key_env: E2E_METRICS_KEY
routes:
  - name: confidential-stays-home
    when: {{ privacy: ">= confidential" }}
    to: [local]
  - name: closed-by-name
    when: {{ model: gpt-5.4-mini }}
    to: [gpt-5.4-mini]
  - name: everything-else
    to: [local]
teams:
  default: {{ budget: {{ daily_usd: 1000 }} }}
"#,
            model.display(),
            openai.base_url
        ),
        &[("E2E_METRICS_KEY", "sk-metrics")],
    )
    .unwrap();
    gw.wait_ready(Duration::from_secs(120)).await.unwrap();
    let http = reqwest::Client::new();
    for (model, stream) in [
        ("local", false),
        ("local", true),
        ("gpt-5.4-mini", false),
        ("gpt-5.4-mini", true),
    ] {
        let resp = http
            .post(format!("{}/v1/chat/completions", gw.base_url))
            .json(&json!({
                "model": model,
                "messages": [{"role": "user", "content": "Say hello."}],
                "max_tokens": 8,
                "stream": stream,
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap();
    }

    // The exposition passes Prometheus's own linter.
    let text = http
        .get(format!("{}/metrics", gw.base_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) is installed by scripts/setup.sh --test");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // A Prometheus server scrapes the gateway every second.
    let dir = scratch_dir("e2e-prometheus").unwrap();
    let target = gw.base_url.trim_start_matches("http://").to_owned();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global: {{ scrape_interval: 1s }}\n\
             scrape_configs:\n  \
               - job_name: watershed\n    \
                 static_configs: [{{ targets: ['{target}'] }}]\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let _prometheus = Killed(
        Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (Debian package) is installed by scripts/setup.sh --test"),
    );
    let query = |q: &'static str| {
        let http = http.clone();
        async move {
            let resp = http
                .get(format!("http://127.0.0.1:{port}/api/v1/query"))
                .query(&[("query", q)])
                .send()
                .await
                .ok()?;
            let v: Value = resp.json().await.ok()?;
            let result = v["data"]["result"].as_array()?.clone();
            let first = result.first()?;
            first["value"][1].as_str()?.parse::<f64>().ok()
        }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while query("up{job=\"watershed\"}").await != Some(1.0) {
        assert!(
            Instant::now() < deadline,
            "Prometheus never scraped the gateway"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Two requests each way, seen through Prometheus's query API.
    let expect = [
        (
            "sum(gen_ai_server_request_duration_seconds_count{gen_ai_provider_name=\"llama.cpp\"})",
            2.0,
        ),
        (
            "sum(gen_ai_client_operation_duration_seconds_count{gen_ai_provider_name=\"openai\"})",
            2.0,
        ),
        ("sum(gen_ai_server_time_to_first_token_seconds_count)", 1.0),
        (
            "sum(gen_ai_client_operation_time_to_first_chunk_seconds_count)",
            1.0,
        ),
        (
            "sum(gen_ai_client_token_usage_count{gen_ai_token_type=\"output\"})",
            4.0,
        ),
        ("sum(watershed_requests_total{status=\"200\"})", 4.0),
    ];
    for (q, want) in expect {
        assert_eq!(query(q).await, Some(want), "{q}");
    }
    // The budget gauges: the two closed answers were paid from the day's $1,000.
    let remaining =
        query("watershed_budget_remaining_usd{scope=\"team\",name=\"default\",window=\"daily\"}")
            .await
            .expect("the budget gauge is scraped");
    let spent = 1000.0 - remaining;
    assert!(spent > 0.0 && spent < 1.0, "spent {spent}");
    let ratio =
        query("watershed_budget_used_ratio{scope=\"team\",name=\"default\",window=\"daily\"}")
            .await
            .unwrap();
    assert!((ratio - spent / 1000.0).abs() < 1e-12, "{ratio} vs {spent}");
    gw.stop().unwrap();
}
