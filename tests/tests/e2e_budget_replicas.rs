//! Budgets across replicas, end to end: three real gateway processes on one
//! PostgreSQL ledger (a schema of this test's own, dropped at the end), one
//! mock paid upstream, a small team budget and a small key budget, and
//! concurrent load through all three. The ledger then shows that neither
//! budget was overspent at all (the bound is zero while the reserved upper
//! bound covers the real cost), that every refusal came when what was left
//! could not cover the request's reservation, and that the budgets were used
//! up to less than one reservation.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::time::Duration;

use serde_json::{json, Value};
use sqlx::Row;
use watershed_tests::harness::{binary, Gateway};
use watershed_tests::mock::MockUpstream;

fn sha256(s: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A dollar a token. "hi" with `max_tokens: 5` costs $3 (1 prompt token, 2
/// completion tokens from the mock) and reserves $7 (the prompt estimate's
/// 2 tokens with margin and all 5 completion tokens).
const COST: f64 = 3.0;
const RESERVED: f64 = 7.0;
const TEAM_LIMIT: f64 = 60.0;
const KEY_LIMIT: f64 = 45.0;

fn config(openai: &str, ledger: &str) -> String {
    format!(
        r#"version: 1
ledger:
  url: "{ledger}"
  budgets: {{ reservation_ttl_s: 120, sync_interval_ms: 200, timeout_ms: 2000 }}
pricing:
  gpt-5.4-mini: {{ input: 1000000, output: 1000000 }}
models:
  gpt-5.4-mini: {{ provider: openai, base_url: "{openai}", api_key_env: E2E_OPENAI_KEY, trusted: true }}
teams:
  support: {{ budget: {{ daily_usd: {TEAM_LIMIT}, alert_at: 0.5, on_exhausted: reject }} }}
  ops: {{}}
keys:
  support-bot: {{ sha256: {support}, team: support }}
  ops-bot: {{ sha256: {ops}, team: ops, budget: {{ monthly_usd: {KEY_LIMIT} }} }}
routes:
  - name: paid
    to: [gpt-5.4-mini]
"#,
        support = sha256("sk-support"),
        ops = sha256("sk-ops"),
    )
}

#[derive(Debug)]
struct Outcome {
    status: u16,
    message: String,
    /// `x-watershed-budget`, on answers near or past a limit.
    budget: Option<String>,
}

async fn post(http: &reqwest::Client, base: &str, key: &str) -> Outcome {
    let resp = http
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": "gpt-5.4-mini", "max_tokens": 5,
                      "messages": [{"role": "user", "content": "hi"}]}))
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let budget = resp
        .headers()
        .get("x-watershed-budget")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    Outcome {
        status,
        message: body["error"]["message"].as_str().unwrap_or("").to_owned(),
        budget,
    }
}

/// The dollar figure just before `marker` in a refusal, e.g. "$4.0000 left".
fn dollars_before(msg: &str, marker: &str) -> f64 {
    let head = &msg[..msg.find(marker).unwrap_or_else(|| panic!("{msg}"))];
    let at = head.rfind('$').unwrap_or_else(|| panic!("{msg}"));
    head[at + 1..]
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{msg}"))
}

/// The dollar figure just after `marker`.
fn dollars_after(msg: &str, marker: &str) -> f64 {
    let tail = &msg[msg.find(marker).unwrap_or_else(|| panic!("{msg}")) + marker.len()..];
    let end = tail
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(tail.len());
    tail[..end].parse().unwrap_or_else(|_| panic!("{msg}"))
}

/// A refusal must say what was left and what the request needed, and the
/// first must not cover the second.
fn check_refusal(o: &Outcome) -> f64 {
    assert_eq!(o.status, 429, "{o:?}");
    let left = dollars_before(&o.message, " left");
    let needs = dollars_after(&o.message, "needs up to $");
    assert!((needs - RESERVED).abs() < 1e-6, "{o:?}");
    assert!(left < needs, "refused although it fit: {o:?}");
    left
}

/// Drops a schema of the test database when the test ends, also when it
/// fails: others share the server.
struct Dropper(String);

impl Drop for Dropper {
    fn drop(&mut self) {
        let schema = self.0.clone();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(pool) = sqlx::PgPool::connect(&postgres()).await {
                    let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                        .execute(&pool)
                        .await;
                }
            });
        })
        .join();
    }
}

fn postgres() -> String {
    std::env::var("WATERSHED_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

fn gauge(text: &str, scope: &str, name: &str, window: &str) -> Option<f64> {
    let prefix = format!(
        "watershed_budget_remaining_usd{{scope=\"{scope}\",name=\"{name}\",window=\"{window}\"}} "
    );
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_share_team_and_key_budgets_without_overspending() {
    let base = postgres();
    let schema = format!("e2e_budget_replicas_{}", std::process::id());
    let _drop = Dropper(schema.clone());
    let admin = sqlx::PgPool::connect(&base).await.unwrap();
    sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .execute(&admin)
        .await
        .unwrap();
    let openai = MockUpstream::openai().await;
    let yaml = config(&openai.base_url, &format!("{base}?schema={schema}"));
    let env = [("E2E_OPENAI_KEY", "sk-test")];
    // One at a time, so the first applies the migrations alone.
    let mut gws = Vec::new();
    for i in 0..3 {
        let gw = Gateway::start(&format!("budget-replica-{i}"), &yaml, &env).unwrap();
        gw.wait_ready(Duration::from_secs(60)).await.unwrap();
        gws.push(gw);
    }
    let bases: Vec<String> = gws.iter().map(|g| g.base_url.clone()).collect();
    let http = reqwest::Client::new();

    // Four workers per replica and key, twelve requests each: 144 requests
    // per budget against room for at most 20 (team) and 15 (key).
    let mut tasks = tokio::task::JoinSet::new();
    for base in &bases {
        for key in ["sk-support", "sk-ops"] {
            for _ in 0..4 {
                let (http, base) = (http.clone(), base.clone());
                tasks.spawn(async move {
                    let mut out = Vec::new();
                    for _ in 0..12 {
                        out.push((key, post(&http, &base, key).await));
                    }
                    out
                });
            }
        }
    }
    let started = std::time::Instant::now();
    let mut answered = [0usize; 2];
    let mut refused = [0usize; 2];
    let mut alerting = 0;
    while let Some(r) = tasks.join_next().await {
        for (key, o) in r.unwrap() {
            let i = usize::from(key == "sk-ops");
            match o.status {
                200 => {
                    answered[i] += 1;
                    alerting += usize::from(o.budget.as_deref() == Some("alerting"));
                }
                429 => {
                    check_refusal(&o);
                    refused[i] += 1;
                }
                _ => panic!("unexpected answer {o:?}"),
            }
        }
    }
    let load_s = started.elapsed().as_secs_f64();
    assert_eq!(answered[0] + refused[0], 144);
    // Past half the team's day (alert_at 0.5), answers say so. How many
    // depends on how the replicas interleave (each decides on the figures it
    // read just before), so only that some did is asserted.
    assert!(alerting > 0, "no answer was marked alerting");
    assert_eq!(answered[1] + refused[1], 144);

    // Every settle is written within a sync round; then each replica refuses
    // both keys, and says what is left: the same figure on all three.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut left = [Vec::new(), Vec::new()];
    for base in &bases {
        for (i, key) in ["sk-support", "sk-ops"].into_iter().enumerate() {
            left[i].push(check_refusal(&post(&http, base, key).await));
        }
    }

    // The ledger: what was answered, what it cost.
    let pool = admin.clone();
    let mut spent = [0.0f64; 2];
    for _ in 0..50 {
        let rows = sqlx::query(
            &"SELECT team, COUNT(*) AS n, COALESCE(SUM(cost_usd), 0) AS usd FROM ledger \
             WHERE status = 200 GROUP BY team"
                .replace("FROM ledger", &format!("FROM \"{schema}\".ledger")),
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        let mut n = [0i64; 2];
        for r in &rows {
            let team: String = r.get("team");
            let i = usize::from(team == "ops");
            n[i] = r.get("n");
            spent[i] = r.get("usd");
        }
        if n[0] as usize == answered[0] && n[1] as usize == answered[1] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (i, limit) in [TEAM_LIMIT, KEY_LIMIT].into_iter().enumerate() {
        let what = ["team support", "key ops-bot"][i];
        assert!(
            (spent[i] - answered[i] as f64 * COST).abs() < 1e-6,
            "{what}: {answered:?} answered, ${} in the ledger",
            spent[i]
        );
        // The bound: zero overspend.
        assert!(spent[i] <= limit + 1e-9, "{what} overspent: ${}", spent[i]);
        // Used to within one reservation: no request that fit was refused
        // once the load was over.
        assert!(
            spent[i] > limit - RESERVED,
            "{what} left unused: ${}",
            spent[i]
        );
        for l in &left[i] {
            assert!((l - (limit - spent[i])).abs() < 1e-3, "{what}: {l} left");
        }
        assert!(refused[i] > 0, "{what} was never refused");
    }

    // Every replica's gauges show the shared figures, not only its own spend.
    tokio::time::sleep(Duration::from_millis(800)).await;
    for base in &bases {
        let text = http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let team = gauge(&text, "team", "support", "daily").unwrap();
        let key = gauge(&text, "key", "ops-bot", "monthly").unwrap();
        assert!((team - (TEAM_LIMIT - spent[0])).abs() < 1e-6, "{team}");
        assert!((key - (KEY_LIMIT - spent[1])).abs() < 1e-6, "{key}");
        assert!(
            text.lines()
                .find_map(|l| l.strip_prefix("watershed_budget_store_up "))
                .and_then(|v| v.trim().parse::<f64>().ok())
                == Some(1.0),
            "{text}"
        );
    }
    // `policy explain` reads the same shared figures.
    let req = gws[0].dir.join("explain.json");
    std::fs::write(
        &req,
        json!({"headers": {"authorization": "Bearer sk-support"},
               "body": {"model": "gpt-5.4-mini", "max_tokens": 5,
                        "messages": [{"role": "user", "content": "hi"}]}})
        .to_string(),
    )
    .unwrap();
    let out = std::process::Command::new(binary().unwrap())
        .args(["policy", "explain", "--config"])
        .arg(gws[0].config_path())
        .arg("--request")
        .arg(&req)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let e: Value = serde_json::from_slice(&out.stdout).unwrap();
    let detail = e["budget_detail"]["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("${:.4} left", TEAM_LIMIT - spent[0])),
        "{detail}"
    );

    let leftover: i64 = sqlx::query_scalar(&format!(
        "SELECT COUNT(*) FROM \"{schema}\".budget_reservations"
    ))
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(leftover, 0, "settled reservations are removed");
    println!(
        "answered {answered:?}, refused {refused:?}, spent {spent:?} of [{TEAM_LIMIT}, {KEY_LIMIT}], \
         {alerting} alerting, 288 requests in {load_s:.2} s"
    );

    for gw in gws {
        gw.stop().unwrap();
    }
}

/// The value of the sample `series` (name and labels) on `/metrics`.
async fn metric(http: &reqwest::Client, base: &str, series: &str) -> Option<f64> {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Polls `/metrics` until `series` has `value`, for at most 20 s.
async fn wait_metric(http: &reqwest::Client, base: &str, series: &str, value: f64) {
    for _ in 0..200 {
        if metric(http, base, series).await == Some(value) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("/metrics never showed {series} {value}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_off_from_postgresql_a_replica_enforces_its_last_figures_and_reconciles() {
    let base = postgres();
    let schema = format!("e2e_budget_cut_{}", std::process::id());
    let _drop = Dropper(schema.clone());
    let admin = sqlx::PgPool::connect(&base).await.unwrap();
    sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .execute(&admin)
        .await
        .unwrap();
    let proxy = watershed_tests::proxy::CutProxy::start("127.0.0.1:5432")
        .await
        .unwrap();
    let via = base.replace("127.0.0.1:5432", &format!("127.0.0.1:{}", proxy.port));
    assert_ne!(via, base, "the test database must be on 127.0.0.1:5432");
    let openai = MockUpstream::openai().await;
    // A $30 team day: with $3 answers reserving $7, 8 fit ($24 spent).
    let yaml = config(&openai.base_url, &format!("{via}?schema={schema}"))
        .replace("daily_usd: 60", "daily_usd: 30")
        .replace("timeout_ms: 2000", "timeout_ms: 500");
    let gw = Gateway::start("budget-cut", &yaml, &[("E2E_OPENAI_KEY", "sk-test")]).unwrap();
    gw.wait_ready(Duration::from_secs(60)).await.unwrap();
    let http = reqwest::Client::new();
    for _ in 0..2 {
        assert_eq!(post(&http, &gw.base_url, "sk-support").await.status, 200);
    }
    let spent = || async {
        let r = sqlx::query(&format!(
            "SELECT day_usd, reserved_usd FROM \"{schema}\".budget_spend WHERE scope = 'team:support'"
        ))
        .fetch_one(&admin)
        .await
        .unwrap();
        (r.get::<f64, _>("day_usd"), r.get::<f64, _>("reserved_usd"))
    };
    // Both settles written (right after each answer, by the sync task).
    for _ in 0..100 {
        if spent().await == (6.0, 0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(spent().await, (6.0, 0.0));
    wait_metric(&http, &gw.base_url, "watershed_budget_store_up", 1.0).await;

    proxy.cut().await;
    // Six more fit in what was left at the last read ($24 of $30 after them),
    // the seventh does not.
    let mut answered = 0;
    let refusal = loop {
        let o = post(&http, &gw.base_url, "sk-support").await;
        if o.status != 200 {
            break o;
        }
        answered += 1;
        assert!(answered <= 8, "the budget never ran out while cut off");
    };
    assert_eq!(answered, 6, "{refusal:?}");
    assert!((check_refusal(&refusal) - 6.0).abs() < 1e-6, "{refusal:?}");
    // The key budget this replica never read is refused: when_unknown is closed.
    let unknown = post(&http, &gw.base_url, "sk-ops").await;
    assert_eq!(unknown.status, 503, "{unknown:?}");
    assert!(
        unknown
            .message
            .contains("key \"ops-bot\" budget cannot be checked"),
        "{unknown:?}"
    );
    // The gauge follows within a sync round.
    wait_metric(&http, &gw.base_url, "watershed_budget_store_up", 0.0).await;
    assert_eq!(
        metric(
            &http,
            &gw.base_url,
            "watershed_budget_offline_reservations_total{outcome=\"admitted\"}"
        )
        .await,
        Some(6.0)
    );
    // Nothing reached the shared row meanwhile.
    assert_eq!(spent().await, (6.0, 0.0));

    proxy.restore();
    wait_metric(&http, &gw.base_url, "watershed_budget_store_up", 1.0).await;
    // The outage's spend is in the shared row, once.
    assert_eq!(spent().await, (24.0, 0.0), "{}", gw.log_text());
    let o = post(&http, &gw.base_url, "sk-support").await;
    assert!((check_refusal(&o) - 6.0).abs() < 1e-6, "{o:?}");
    // Back online the key budget is read (its row created) and admits.
    assert_eq!(post(&http, &gw.base_url, "sk-ops").await.status, 200);
    gw.stop().unwrap();
    drop(proxy);
}
