//! Virtual keys, team defaults, budgets, redaction and the admin explain API,
//! end to end: the real binary, the local model and a mock OpenAI upstream.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};
use watershed_tests::harness::{scratch_dir, test_model, Gateway};
use watershed_tests::mock::MockUpstream;

/// Lowercase hex SHA-256, as `printf %s KEY | sha256sum` prints it.
fn sha256(s: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn config(openai: &str, ledger: &str, model: &str) -> String {
    format!(
        r#"version: 1
ledger: {{ url: "sqlite://{ledger}" }}
server: {{ admin_key_env: E2E_ADMIN_TOKEN }}
privacy:
  detectors: {{ email: internal }}
pricing:
  gpt-5.4-mini: {{ input: 1000000, output: 1000000 }}   # a dollar a token
models:
  local: {{ engine: local, gguf: "{model}", context_tokens: 1024, parallel: 2 }}
  gpt-5.4-mini: {{ provider: openai, base_url: "{openai}", api_key_env: E2E_OPENAI_KEY }}
teams:
  legal: {{ privacy_default: confidential }}
  support: {{ budget: {{ daily_usd: 30, alert_at: 0.5, on_exhausted: reject }} }}
  research: {{ budget: {{ daily_usd: 30, on_exhausted: downgrade }} }}
keys:
  legal-bot: {{ sha256: {legal}, team: legal }}
  support-bot: {{ sha256: {support}, team: support }}
  research-bot: {{ sha256: {research}, team: research }}
routes:
  - name: confidential-stays-home
    when: {{ privacy: ">= confidential" }}
    to: [local]
  - name: closed-redacted
    when: {{ model: gpt-5.4-mini }}
    to: [gpt-5.4-mini]
    redact: true
    counterfactual: claude-opus-4.6
  - name: everything-else
    to: [local]
counterfactual: {{ all_closed: claude-sonnet-4.6 }}
"#,
        legal = sha256("sk-legal"),
        support = sha256("sk-support"),
        research = sha256("sk-research"),
    )
}

async fn post(
    http: &reqwest::Client,
    gw: &Gateway,
    key: Option<&str>,
    body: Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = http
        .post(format!("{}/v1/chat/completions", gw.base_url))
        .json(&body);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.json::<Value>().await.unwrap_or(Value::Null);
    (status, headers, body)
}

fn header<'a>(h: &'a reqwest::header::HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn chat(model: &str, text: &str) -> Value {
    json!({"model": model, "max_tokens": 5, "messages": [{"role": "user", "content": text}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_budgets_redaction_and_explanations() {
    let openai = MockUpstream::openai().await;
    let ledger_dir = scratch_dir("access-ledger").unwrap();
    let ledger = ledger_dir.join("ledger.db").display().to_string();
    let model = test_model().unwrap().display().to_string();
    let cfg = config(&openai.base_url, &ledger, &model);
    // Both gateways' clocks start at the same noon, so the restart below
    // reads "today's" spend back on any date, also when the suite runs
    // across a real midnight.
    let envs = [
        ("E2E_OPENAI_KEY", "sk-openai"),
        ("E2E_ADMIN_TOKEN", "admin-secret"),
        (
            watershed_dashboards::clock::CLOCK_START_ENV,
            "2027-01-01T12:00:00Z",
        ),
    ];
    let gw = Gateway::start("e2e-access", &cfg, &envs).unwrap();
    gw.wait_ready(Duration::from_secs(120)).await.unwrap();
    let http = reqwest::Client::new();

    // An unknown key is refused in the OpenAI error shape and nothing is sent.
    let (status, _, body) = post(&http, &gw, Some("sk-nope"), chat("gpt-5.4-mini", "hi")).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["type"], "authentication_error");
    assert_eq!(openai.request_count(), 0);

    // The legal team's default level keeps even a harmless request at home.
    let (status, h, body) = post(
        &http,
        &gw,
        Some("sk-legal"),
        chat("gpt-5.4-mini", "Summarise the weather."),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        header(&h, "x-watershed-route"),
        Some("confidential-stays-home")
    );
    assert_eq!(header(&h, "x-watershed-backend"), Some("local"));
    assert_eq!(openai.request_count(), 0);

    // Redaction: an e-mail address (internal by this config) may leave, but
    // only as a placeholder; the answer shows the caller their own address.
    let text = "Write to anna.berg@example.com and again anna.berg@example.com today";
    let (status, h, body) = post(&http, &gw, None, chat("gpt-5.4-mini", text)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&h, "x-watershed-route"), Some("closed-redacted"));
    assert_eq!(header(&h, "x-watershed-redacted"), Some("1"));
    let sent = openai.last_request().unwrap().body.to_string();
    assert!(
        !sent.contains("anna.berg"),
        "the provider saw the address: {sent}"
    );
    assert!(sent.contains("[EMAIL_1] and again [EMAIL_1]"), "{sent}");
    let answer = body["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(answer.contains("anna.berg@example.com"), "{answer}");
    assert!(!answer.contains("[EMAIL_1]"), "{answer}");
    let redacted_id = header(&h, "x-request-id").unwrap().to_owned();

    // The same, streamed: the deltas put back together show the address.
    let mut body = chat(
        "gpt-5.4-mini",
        "Mail bob@corp.example.org please, now, soon",
    );
    body["stream"] = json!(true);
    body["max_tokens"] = json!(20);
    let resp = http
        .post(format!("{}/v1/chat/completions", gw.base_url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut sse = String::new();
    let mut s = resp.bytes_stream();
    while let Some(chunk) = s.next().await {
        sse.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    let streamed: String = sse
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert!(streamed.contains("bob@corp.example.org"), "{streamed}");
    assert!(!streamed.contains("[EMAIL"), "{streamed}");
    let sent = openai.last_request().unwrap().body.to_string();
    assert!(!sent.contains("bob@corp"), "{sent}");

    // Reject: each "hi" costs $3 (1 prompt + 2 completion tokens at $1) and
    // reserves up to $7 (2 prompt + 5 completion), so of a $30 day eight
    // requests fit: after them $24 is spent and $24 + $7 would pass the limit.
    let mut ok = 0;
    let mut alerting_seen = false;
    let refusal = loop {
        let (status, h, body) =
            post(&http, &gw, Some("sk-support"), chat("gpt-5.4-mini", "hi")).await;
        if status != 200 {
            break (status, h, body);
        }
        ok += 1;
        alerting_seen |= header(&h, "x-watershed-budget") == Some("alerting");
        assert!(ok < 20, "the budget never ran out");
    };
    assert_eq!(ok, 8);
    assert!(
        alerting_seen,
        "alert_at 0.5 should mark answers as alerting"
    );
    let (status, h, body) = refusal;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "budget_exceeded");
    assert_eq!(body["error"]["type"], "rate_limit_error");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("team \"support\" daily budget of $30.00"),
        "{msg}"
    );
    assert!(msg.contains("$6.0000 left"), "{msg}");
    assert!(msg.contains("resets at"), "{msg}");
    let retry: u64 = header(&h, "retry-after").unwrap().parse().unwrap();
    assert!((1..=86_400).contains(&retry), "{retry}");
    // The free local model stays open to the same team.
    let (status, h, _) = post(&http, &gw, Some("sk-support"), chat("auto", "hi")).await;
    assert_eq!(status, 200);
    assert_eq!(header(&h, "x-watershed-backend"), Some("local"));

    // Downgrade: the research team gets the local model instead, and is told.
    let mut downgraded = None;
    for _ in 0..12 {
        let (status, h, body) =
            post(&http, &gw, Some("sk-research"), chat("gpt-5.4-mini", "hi")).await;
        assert_eq!(status, 200, "{body}");
        if header(&h, "x-watershed-backend") == Some("local") {
            downgraded = Some(h);
            break;
        }
    }
    let h = downgraded.expect("the research budget never downgraded");
    let note = header(&h, "x-watershed-downgraded").unwrap();
    assert!(
        note.starts_with("to local: team \"research\" daily budget"),
        "{note}"
    );
    assert_eq!(header(&h, "x-watershed-budget"), Some("exhausted"));

    let metrics = http
        .get(format!("{}/metrics", gw.base_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            "watershed_budget_alerts_total{scope=\"team\",name=\"support\",window=\"daily\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("watershed_budget_actions_total{action=\"rejected\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "watershed_budget_remaining_usd{scope=\"team\",name=\"support\",window=\"daily\"} 6.0"
        ),
        "{metrics}"
    );

    // The admin API explains a logged request: evidence without values, each
    // rule checked, the caller.
    let url = format!("{}/admin/requests/{redacted_id}/explain", gw.base_url);
    let resp = http.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let mut explained = Value::Null;
    for _ in 0..100 {
        let resp = http
            .get(&url)
            .bearer_auth("admin-secret")
            .send()
            .await
            .unwrap();
        if resp.status() == 200 {
            explained = resp.json().await.unwrap();
            break;
        }
        assert_eq!(resp.status(), 404);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let e = &explained["explanation"];
    assert_eq!(e["privacy"]["level"], "internal", "{explained}");
    assert_eq!(e["privacy"]["evidence"][0]["type"], "email");
    assert_eq!(e["privacy"]["evidence"][0]["level"], "internal");
    assert_eq!(e["privacy"]["evidence"].as_array().unwrap().len(), 2);
    assert_eq!(e["rules"][0]["matched"], false);
    assert_eq!(
        e["rules"][0]["reason"],
        "route \"confidential-stays-home\": privacy internal does not satisfy >= confidential"
    );
    assert_eq!(e["rules"][1]["matched"], true);
    assert_eq!(e["outcome"]["route"], "closed-redacted");
    assert_eq!(e["caller"]["team"], "default");
    assert!(!explained.to_string().contains("anna.berg"), "{explained}");
    let resp = http
        .get(format!("{}/admin/requests/nope/explain", gw.base_url))
        .bearer_auth("admin-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    gw.stop().unwrap();

    // The ledger names each request's key and team, and prices the
    // counterfactual at the route's own reference model where it sets one.
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{ledger}"))
        .await
        .unwrap();
    let rows = sqlx::query(
        "SELECT request_id, team, key_id, route, prompt_tokens, completion_tokens, \
         cached_tokens, counterfactual_usd FROM ledger",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    use sqlx::Row;
    let by_key = |k: &str| {
        rows.iter()
            .filter(|r| r.get::<String, _>("key_id") == k)
            .count()
    };
    assert_eq!(by_key("support-bot"), 9, "8 closed answers and 1 local");
    assert_eq!(by_key("legal-bot"), 1);
    for r in &rows {
        let (p, c): (i64, i64) = (r.get("prompt_tokens"), r.get("completion_tokens"));
        // Prompt tokens the local prefix cache served are priced at the
        // reference model's cached-input rate (a tenth of its input price).
        let cached: i64 = r.get("cached_tokens");
        let (input, output) = if r.get::<String, _>("route") == "closed-redacted" {
            (5.0, 25.0) // claude-opus-4.6
        } else {
            (3.0, 15.0) // claude-sonnet-4.6
        };
        let expected =
            ((p - cached) as f64 * input + cached as f64 * input / 10.0 + c as f64 * output) / 1e6;
        let got: f64 = r.get("counterfactual_usd");
        assert!((got - expected).abs() < 1e-12, "{got} vs {expected}");
        let team: String = r.get("team");
        let key: String = r.get("key_id");
        match key.as_str() {
            "support-bot" => assert_eq!(team, "support"),
            "anonymous" => assert_eq!(team, "default"),
            _ => {}
        }
    }
    pool.close().await;

    // A restarted gateway reads today's spend back from the ledger: the support
    // team is still out of budget.
    let gw = Gateway::start("e2e-access-again", &cfg, &envs).unwrap();
    gw.wait_ready(Duration::from_secs(120)).await.unwrap();
    let (status, _, body) = post(&http, &gw, Some("sk-support"), chat("gpt-5.4-mini", "hi")).await;
    assert_eq!(status, 429, "{body}");
    gw.stop().unwrap();
}
