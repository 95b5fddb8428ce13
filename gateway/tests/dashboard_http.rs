//! `/dashboard` and `/api/dashboard/<chart>.json` through the whole router,
//! in process (no socket): status codes, the OpenAI error shape for bad
//! parameters, content types and the page's no-fetch policy, and that a
//! chart's JSON follows the ledger and the filters.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{DateTime, Duration, Utc};
use http_body_util::BodyExt;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use watershed::http::app;
use watershed::state::{build_runtime, AppState};
use watershed_dashboards::ledger::{open_store, LedgerRecord, LedgerWriter};
use watershed_policies::load_config;

const CONFIG: &str = r#"version: 1
ledger: { url: "sqlite::memory:" }
models:
  gpt-5.4-mini: { provider: openai, base_url: "http://127.0.0.1:9", api_key_env: DASHBOARD_HTTP_UNSET }
routes:
  - name: everything-else
    when: { privacy: "<= internal" }
    to: [gpt-5.4-mini]
counterfactual: { all_closed: claude-sonnet-4.6 }
"#;

/// The instant the app's clock is stopped at: five seconds into a new year,
/// so the outcome never depends on the day the test runs and the year end's
/// boundaries are crossed on every run.
fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2027-01-01T00:00:05Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// The state's clock, stopped at `now()`.
fn clock() -> watershed_dashboards::clock::SharedClock {
    Arc::new(watershed_dashboards::clock::ManualClock::new(now()))
}

fn record(id: &str, days_ago: i64, team: &str, cost: f64) -> LedgerRecord {
    LedgerRecord {
        request_id: id.into(),
        ts_ms: (now() - Duration::days(days_ago)).timestamp_millis(),
        team: team.into(),
        key_id: "anonymous".into(),
        route: "everything-else".into(),
        backend: "gpt-5.4-mini".into(),
        backend_kind: "openai".into(),
        model: "gpt-5.4-mini".into(),
        privacy: "internal".into(),
        prompt_tokens: 100,
        completion_tokens: 20,
        cached_tokens: 0,
        cost_usd: cost,
        counterfactual_usd: cost * 4.0,
        engine_seconds: 0.0,
        ttft_ms: Some(50.0),
        latency_ms: 400.0,
        status: 200,
        error_code: None,
        finish_reason: Some("stop".into()),
        stream: false,
        attempts: 1,
        difficulty: None,
        explanation: None,
    }
}

async fn router(rows: &[LedgerRecord]) -> axum::Router {
    router_with(CONFIG, rows).await
}

async fn router_with(config: &str, rows: &[LedgerRecord]) -> axum::Router {
    let config = Arc::new(load_config(config, "dashboard_http.yaml").unwrap());
    let store = open_store("sqlite::memory:").await.unwrap();
    store.insert_batch(rows).await.unwrap();
    // The writer task is never stopped; the runtime ends with the test.
    let ledger = LedgerWriter::start(store, &TaskTracker::new(), CancellationToken::new());
    let runtime = build_runtime(config, Path::new("."), None).unwrap();
    app(Arc::new(
        AppState::new(
            runtime,
            ledger,
            Arc::new(watershed::metrics::Metrics::default()),
            watershed::telemetry::Traces::disabled(),
        )
        .with_clock(clock()),
    ))
}

async fn get(app: &axum::Router, uri: &str) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let resp = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, headers, body)
}

async fn get_json(app: &axum::Router, uri: &str) -> (StatusCode, Value) {
    let (status, headers, body) = get(app, uri).await;
    assert_eq!(
        headers["content-type"],
        "application/json",
        "{uri}: {}",
        String::from_utf8_lossy(&body)
    );
    (status, serde_json::from_slice(&body).unwrap())
}

#[tokio::test]
async fn bad_parameters_answer_400_in_the_openai_shape() {
    let app = router(&[]).await;
    for (query, param, needle) in [
        ("from=2026-02-30", "from", "invalid from \"2026-02-30\""),
        ("to=11/26/2026", "to", "YYYY-MM-DD"),
        ("from=2026-11-10&to=2026-11-01", "from", "is after"),
        ("colour=red", "colour", "unknown parameter"),
    ] {
        for path in ["/dashboard", "/api/dashboard/daily-spend.json"] {
            let (status, body) = get_json(&app, &format!("{path}?{query}")).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path}?{query}: {body}");
            let err = &body["error"];
            assert_eq!(err["type"], "invalid_request_error", "{body}");
            assert_eq!(err["code"], "bad_request", "{body}");
            assert_eq!(err["param"], param, "{body}");
            let message = err["message"].as_str().unwrap();
            assert!(message.contains(needle), "{message}");
        }
    }
}

#[tokio::test]
async fn an_unknown_chart_is_a_404_listing_the_charts() {
    let app = router(&[]).await;
    for uri in ["/api/dashboard/pie.json", "/api/dashboard/summary"] {
        let (status, body) = get_json(&app, uri).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("daily-spend.json"), "{message}");
    }
}

#[tokio::test]
async fn the_page_is_html_that_may_fetch_nothing() {
    let app = router(&[record("a", 1, "legal", 0.25)]).await;
    let (status, headers, body) = get(&app, "/dashboard").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    let html = String::from_utf8(body).unwrap();
    assert!(
        html.contains("id=\"total-hybrid\" data-value=\"0.25\""),
        "{html}"
    );
    assert!(html.contains("claude-sonnet-4.6"));
    // The default plan is the seed example: hybrid $392.25 a day.
    assert!(html.contains("data-value=\"392.25\""));
}

#[tokio::test]
async fn chart_json_follows_the_ledger_and_the_filters() {
    let today = now().date_naive();
    let rows = [
        record("a", 0, "legal", 0.5),
        record("b", 0, "support", 0.25),
        record("c", 3, "support", 1.0),
        // Older than the default thirty days.
        record("d", 40, "legal", 8.0),
    ];
    let app = router(&rows).await;
    let (status, all) = get_json(&app, "/api/dashboard/summary.json").await;
    assert_eq!(status, StatusCode::OK, "{all}");
    assert_eq!(all["summary"]["requests"], 3);
    assert_eq!(all["summary"]["hybrid_usd"], 1.75);
    assert_eq!(all["summary"]["all_closed_usd"], 7.0);
    assert_eq!(all["teams"], serde_json::json!(["legal", "support"]));

    let (_, support) = get_json(&app, "/api/dashboard/spend-by-team.json?team=support").await;
    assert_eq!(support["team"], "support");
    assert_eq!(support["rows"].as_array().unwrap().len(), 1);
    assert_eq!(support["rows"][0]["spend_usd"], 1.25);

    let from = today - Duration::days(1);
    let (_, recent) = get_json(
        &app,
        &format!("/api/dashboard/daily-spend.json?from={from}&to={today}"),
    )
    .await;
    assert_eq!(recent["hybrid_usd"], 0.75);
    assert_eq!(recent["days"].as_array().unwrap().len(), 2);
    assert_eq!(recent["days"][1]["day"], today.to_string());

    let old = today - Duration::days(40);
    let (_, cum) = get_json(
        &app,
        &format!("/api/dashboard/cumulative-savings.json?from={old}&to={old}"),
    )
    .await;
    assert_eq!(cum["days"][0]["cumulative_savings_usd"], 24.0);

    let (_, planner) = get_json(&app, "/api/dashboard/planner.json").await;
    assert_eq!(planner["plan"]["savings_per_month"], 1732.5);
}

#[tokio::test]
async fn the_planner_view_reads_the_configured_plan() {
    let dir = std::env::temp_dir().join(format!("watershed-dashboard-plan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("plan.yaml"),
        "tiers:\n  - name: bulk\n    tokens_per_day: 2000000\n    serve:\n      api: { model: deepseek-v3.2, blended_usd_per_mtok: 0.5 }\n    all_closed: { model: gpt-5.4, blended_usd_per_mtok: 4.0 }\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("broken.yaml"),
        "tiers:\n  - name: x\n    tokens: 5\n",
    )
    .unwrap();
    let with_plan = |plan: &str| {
        Arc::new(
            load_config(
                &format!("{CONFIG}dashboard: {{ plan: {plan} }}\n"),
                "t.yaml",
            )
            .unwrap(),
        )
    };

    let runtime = build_runtime(with_plan("plan.yaml"), &dir, None).unwrap();
    assert!(
        runtime.plan.source.ends_with("plan.yaml"),
        "{}",
        runtime.plan.source
    );
    let store = open_store("sqlite::memory:").await.unwrap();
    let ledger = LedgerWriter::start(store, &TaskTracker::new(), CancellationToken::new());
    let app = app(Arc::new(
        AppState::new(
            runtime,
            ledger,
            Arc::new(watershed::metrics::Metrics::default()),
            watershed::telemetry::Traces::disabled(),
        )
        .with_clock(clock()),
    ));
    let (status, body) = get_json(&app, "/api/dashboard/planner.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["plan"]["hybrid_per_day"], 1.0);
    assert_eq!(body["plan"]["all_closed_per_day"], 8.0);

    // A plan that is missing or does not parse is a configuration error.
    let missing = build_runtime(with_plan("nope.yaml"), &dir, None)
        .unwrap_err()
        .to_string();
    assert!(
        missing.contains("dashboard.plan") && missing.contains("nope.yaml"),
        "{missing}"
    );
    let broken = build_runtime(with_plan("broken.yaml"), &dir, None)
        .unwrap_err()
        .to_string();
    assert!(
        broken.contains("invalid plan") && broken.contains("tokens"),
        "{broken}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn idle_fleet_time_counts_in_hybrid_spend_for_all_teams_only() {
    // Two GPUs at $0.50/h: $24 a day, busy or idle.
    let config = format!("{CONFIG}fleet: {{ gpus: 2, gpu_hour_usd: 0.5 }}\n");
    let mut local = record("local", 3, "legal", 4.0);
    local.backend = "local-moe".into();
    local.backend_kind = "llama.cpp".into();
    let remote = record("remote", 3, "support", 1.0);
    let app = router_with(&config, &[local, remote]).await;
    let day = (now() - Duration::days(3)).date_naive();
    let q = format!("from={day}&to={day}");

    let (_, s) = get_json(&app, &format!("/api/dashboard/summary.json?{q}")).await;
    assert_eq!(s["summary"]["recorded_usd"], 5.0, "{s}");
    assert_eq!(s["summary"]["idle_usd"], 20.0, "{s}");
    assert_eq!(s["summary"]["hybrid_usd"], 25.0, "{s}");
    let (_, b) = get_json(&app, &format!("/api/dashboard/spend-by-backend.json?{q}")).await;
    let idle = b["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "(idle GPU time)")
        .unwrap_or_else(|| panic!("no idle row: {b}"));
    assert_eq!(idle["spend_usd"], 20.0);
    let (_, _, html) = get(&app, &format!("/dashboard?{q}")).await;
    let html = String::from_utf8(html).unwrap();
    assert!(
        html.contains("id=\"total-idle\" data-value=\"20\""),
        "{html}"
    );
    assert!(html.contains("id=\"total-hybrid\" data-value=\"25\""));

    // Idle time belongs to no team.
    let (_, s) = get_json(&app, &format!("/api/dashboard/summary.json?{q}&team=legal")).await;
    assert_eq!(s["summary"]["idle_usd"], Value::Null, "{s}");
    assert_eq!(s["summary"]["hybrid_usd"], 4.0, "{s}");
}
