//! The dashboard as a person sees it: the real binary serves `/dashboard` from
//! a SQLite ledger seeded with known rows, headless Chromium (Debian's
//! `chromium`) renders it, and the numbers in the rendered DOM must equal sums
//! computed here from the seeded rows — for all teams, for one team, and for
//! a date range that leaves rows out. Every chart's JSON endpoint must agree.
//! A screenshot of the rendered page is kept under the target directory.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design
#![allow(clippy::print_stderr)] // the screenshot's path is reported

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use serde_json::Value;
use watershed_dashboards::ledger::{open_store, LedgerRecord};
use watershed_tests::harness::{scratch_dir, Gateway};

// --- the seeded ledger --------------------------------------------------------

const LOCAL: &str = "local-moe";
const CLAUDE: &str = "claude-opus-4.6";
const GPT: &str = "gpt-5.4-mini";

fn kind_of(backend: &str) -> &'static str {
    match backend {
        LOCAL => "llama.cpp",
        CLAUDE => "anthropic",
        GPT => "openai",
        _ => "",
    }
}

#[allow(clippy::too_many_arguments)]
fn row(
    id: &str,
    day: NaiveDate,
    minute: u32,
    team: &str,
    backend: &str,
    privacy: &str,
    tokens: (i64, i64),
    cost: f64,
    counterfactual: f64,
    latency_ms: f64,
    status: i64,
) -> LedgerRecord {
    LedgerRecord {
        request_id: id.into(),
        ts_ms: day
            .and_hms_opt(10, minute, 0)
            .unwrap()
            .and_utc()
            .timestamp_millis(),
        team: team.into(),
        key_id: "anonymous".into(),
        route: "seeded".into(),
        backend: backend.into(),
        backend_kind: kind_of(backend).into(),
        model: backend.into(),
        privacy: privacy.into(),
        prompt_tokens: tokens.0,
        completion_tokens: tokens.1,
        cached_tokens: 0,
        cost_usd: cost,
        counterfactual_usd: counterfactual,
        engine_seconds: if backend == LOCAL { 0.5 } else { 0.0 },
        ttft_ms: (status == 200).then_some(latency_ms / 4.0),
        latency_ms,
        status,
        error_code: (status != 200).then(|| "upstream_error".to_owned()),
        finish_reason: (status == 200).then(|| "stop".to_owned()),
        stream: false,
        attempts: 1,
        difficulty: Some(0.5),
        explanation: None,
    }
}

/// Six days (6 to 1 days ago), two teams, the local engine and two remote
/// APIs, confidential requests that stayed home, one that could not be sent
/// anywhere, a failed remote request, and one row older than the default view.
fn seed(today: NaiveDate) -> Vec<LedgerRecord> {
    let mut rows = Vec::new();
    for d in 1..=6i64 {
        let day = today - chrono::Duration::days(d);
        let f = d as f64;
        rows.push(row(
            &format!("legal-local-{d}"),
            day,
            1,
            "legal",
            LOCAL,
            "confidential",
            (400 + 10 * d, 100),
            0.002 * f,
            0.03 * f,
            120.0 + 10.0 * f,
            200,
        ));
        rows.push(row(
            &format!("legal-claude-{d}"),
            day,
            2,
            "legal",
            CLAUDE,
            "internal",
            (1000, 300 + d),
            0.0125 * f,
            0.02 * f,
            900.0 + 50.0 * f,
            200,
        ));
        rows.push(row(
            &format!("support-gpt-{d}"),
            day,
            3,
            "support",
            GPT,
            "public",
            (800, 200),
            0.0011 * f,
            0.011 * f,
            400.0 + 20.0 * f,
            200,
        ));
        rows.push(row(
            &format!("support-local-{d}"),
            day,
            4,
            "support",
            LOCAL,
            "internal",
            (300, 50 * d),
            0.001 * f,
            0.009 * f,
            80.0 + 5.0 * f,
            200,
        ));
    }
    let two_ago = today - chrono::Duration::days(2);
    rows.push(row(
        "legal-unsent",
        two_ago,
        5,
        "legal",
        "",
        "confidential",
        (500, 0),
        0.0,
        0.0,
        3.0,
        503,
    ));
    rows.push(row(
        "support-failed",
        two_ago,
        6,
        "support",
        GPT,
        "public",
        (700, 0),
        0.0,
        0.0,
        30_000.0,
        502,
    ));
    rows.push(row(
        "support-old",
        today - chrono::Duration::days(45),
        0,
        "support",
        GPT,
        "public",
        (5000, 5000),
        9.0,
        20.0,
        500.0,
        200,
    ));
    rows
}

fn day_of(r: &LedgerRecord) -> NaiveDate {
    chrono::DateTime::from_timestamp_millis(r.ts_ms)
        .unwrap()
        .date_naive()
}

/// What the page must show for the rows a filter admits, computed the plain way.
#[derive(Debug, Default)]
struct Expected {
    requests: usize,
    hybrid: f64,
    all_closed: f64,
    local_in: i64,
    local_out: i64,
    remote_in: i64,
    remote_out: i64,
    hybrid_by_day: BTreeMap<NaiveDate, f64>,
    closed_by_day: BTreeMap<NaiveDate, f64>,
    by_team: BTreeMap<String, f64>,
    by_backend: BTreeMap<String, f64>,
    /// backend -> (confidential or restricted, the rest)
    privacy: BTreeMap<String, (i64, i64)>,
    /// backend -> sorted latencies of all its requests
    latency: BTreeMap<String, Vec<f64>>,
}

fn expected(rows: &[LedgerRecord], from: NaiveDate, to: NaiveDate, team: Option<&str>) -> Expected {
    let mut e = Expected::default();
    for day in from.iter_days().take_while(|d| *d <= to) {
        e.hybrid_by_day.insert(day, 0.0);
        e.closed_by_day.insert(day, 0.0);
    }
    for r in rows {
        let day = day_of(r);
        if day < from || day > to || team.is_some_and(|t| t != r.team) {
            continue;
        }
        e.requests += 1;
        e.hybrid += r.cost_usd;
        e.all_closed += r.counterfactual_usd;
        *e.hybrid_by_day.get_mut(&day).unwrap() += r.cost_usd;
        *e.closed_by_day.get_mut(&day).unwrap() += r.counterfactual_usd;
        if r.backend == LOCAL {
            e.local_in += r.prompt_tokens;
            e.local_out += r.completion_tokens;
        } else {
            e.remote_in += r.prompt_tokens;
            e.remote_out += r.completion_tokens;
        }
        *e.by_team.entry(r.team.clone()).or_default() += r.cost_usd;
        let backend = if r.backend.is_empty() {
            "(none)"
        } else {
            &r.backend
        };
        *e.by_backend.entry(backend.to_owned()).or_default() += r.cost_usd;
        let p = e.privacy.entry(backend.to_owned()).or_default();
        if r.privacy == "confidential" || r.privacy == "restricted" {
            p.0 += 1;
        } else {
            p.1 += 1;
        }
        if !r.backend.is_empty() {
            e.latency
                .entry(r.backend.clone())
                .or_default()
                .push(r.latency_ms);
        }
    }
    for v in e.latency.values_mut() {
        v.sort_by(f64::total_cmp);
    }
    e
}

impl Expected {
    fn local_tokens(&self) -> f64 {
        (self.local_in + self.local_out) as f64
    }
    fn remote_tokens(&self) -> f64 {
        (self.remote_in + self.remote_out) as f64
    }
}

fn nearest_rank(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.max(1) - 1]
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

/// Percentiles come from the rollups' latency histograms: within this
/// fraction of the exact nearest-rank value.
const PERCENTILE_ERROR: f64 = watershed_dashboards::report::PERCENTILE_RELATIVE_ERROR;

#[track_caller]
fn assert_percentile(what: &str, got: f64, exact: f64) {
    assert!(
        (got - exact).abs() <= PERCENTILE_ERROR * exact + 1e-9,
        "{what}: page shows {got}, the exact value is {exact}"
    );
}

#[track_caller]
fn assert_close(what: &str, got: f64, want: f64) {
    assert!(
        close(got, want),
        "{what}: page shows {got}, ledger sums to {want}"
    );
}

// --- Chromium -------------------------------------------------------------------

/// Runs headless Chromium with a throwaway profile; fails the test (never
/// skips it) when Chromium is not installed.
fn chromium(args: &[String]) -> Vec<u8> {
    let profile = scratch_dir("chromium-profile").unwrap();
    let mut child = match Command::new("chromium")
        .args([
            "--headless",
            "--disable-gpu",
            // Chromium refuses to run as root with its sandbox on.
            "--no-sandbox",
            "--no-first-run",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-sync",
            "--metrics-recording-only",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "chromium is not installed: run scripts/setup.sh --test (it installs the Debian \
             package chromium), the dashboard test renders the page in it"
        ),
        Err(e) => panic!("cannot start chromium: {e}"),
    };
    // Read the pipes on threads so a large DOM cannot fill them and stall Chromium.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut buf).map(|_| buf)
    });
    let err = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stderr, &mut buf);
        buf
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium {args:?} did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = out.join().unwrap().unwrap();
    let stderr = err.join().unwrap();
    let _ = std::fs::remove_dir_all(&profile);
    assert!(
        status.success(),
        "chromium {args:?} failed with {status}: {}",
        String::from_utf8_lossy(&stderr)
    );
    stdout
}

/// The DOM after Chromium has loaded and laid out `url`.
fn rendered_dom(url: &str) -> String {
    let dom = String::from_utf8(chromium(&["--dump-dom".into(), url.into()])).unwrap();
    assert!(dom.contains("</html>"), "no document from {url}: {dom}");
    dom
}

fn target_dir() -> PathBuf {
    // target/<profile>/deps/<this test> -> target
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).map(Path::to_path_buf).unwrap()
}

// --- reading the DOM --------------------------------------------------------------

/// A start tag: its name and attributes (entity references decoded).
#[derive(Debug)]
struct Tag {
    name: String,
    attrs: BTreeMap<String, String>,
}

impl Tag {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.get(name).map(String::as_str)
    }

    fn value(&self) -> f64 {
        self.attr("data-value")
            .unwrap_or_else(|| panic!("{self:?} has no data-value"))
            .parse()
            .unwrap_or_else(|e| panic!("{self:?}: {e}"))
    }
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// Every start tag in `html`, in document order. Chromium serializes
/// attributes as `name="value"` with `"` and `&` escaped, which is all this
/// reader has to understand.
fn tags(html: &str) -> Vec<Tag> {
    let mut out = Vec::new();
    for chunk in html.split('<').skip(1) {
        let Some(end) = chunk.find('>') else { continue };
        let inner = &chunk[..end];
        if inner.starts_with('/') || inner.starts_with('!') {
            continue;
        }
        let name_end = inner
            .find(|c: char| c.is_whitespace() || c == '/')
            .unwrap_or(inner.len());
        let mut attrs = BTreeMap::new();
        let mut rest = &inner[name_end..];
        while let Some(eq) = rest.find("=\"") {
            let key = rest[..eq].trim().to_owned();
            let after = &rest[eq + 2..];
            let close = after.find('"').unwrap();
            attrs.insert(key, unescape(&after[..close]));
            rest = &after[close + 1..];
        }
        out.push(Tag {
            name: inner[..name_end].to_owned(),
            attrs,
        });
    }
    out
}

/// The markup of `<figure id="chart-NAME">` up to its end.
fn figure<'a>(dom: &'a str, name: &str) -> &'a str {
    let start = dom
        .find(&format!("<figure class=\"chart\" id=\"chart-{name}\""))
        .unwrap_or_else(|| panic!("the page has no chart {name}"));
    let len = dom[start..].find("</figure>").unwrap();
    &dom[start..start + len]
}

fn by_id(dom: &str, id: &str) -> f64 {
    tags(dom)
        .into_iter()
        .find(|t| t.attr("id") == Some(id))
        .unwrap_or_else(|| panic!("no element #{id}"))
        .value()
}

/// `data-value`s of the tags in a chart with the given class, keyed by `key`.
fn values_by(
    fragment: &str,
    class: &str,
    key: &str,
    series: Option<&str>,
) -> BTreeMap<String, f64> {
    tags(fragment)
        .into_iter()
        .filter(|t| t.attr("class") == Some(class))
        .filter(|t| series.is_none_or(|s| t.attr("data-series") == Some(s)))
        .map(|t| (t.attr(key).unwrap().to_owned(), t.value()))
        .collect()
}

/// Checks one rendered page against what the ledger rows say.
fn check_page(dom: &str, e: &Expected) {
    // Every chart is drawn: an SVG with marks in it (the latency view is a table).
    for name in [
        "daily-spend",
        "cumulative-savings",
        "spend-by-team",
        "spend-by-backend",
        "tokens",
        "privacy",
        "planner",
    ] {
        let fig = figure(dom, name);
        let svg_start = fig
            .find("<svg")
            .unwrap_or_else(|| panic!("chart {name} has no svg"));
        let svg = &fig[svg_start..fig.find("</svg>").unwrap()];
        let marks = ["<polyline", "<rect", "<circle"]
            .iter()
            .map(|m| svg.matches(m).count())
            .sum::<usize>();
        assert!(marks > 0, "chart {name} draws nothing: {svg}");
        assert!(svg.contains("data-value="), "chart {name} shows no numbers");
    }
    assert!(!dom.contains("<script"), "the page must not run scripts");

    // Totals.
    assert_close("hybrid total", by_id(dom, "total-hybrid"), e.hybrid);
    assert_close(
        "all-closed total",
        by_id(dom, "total-all-closed"),
        e.all_closed,
    );
    assert_close(
        "savings",
        by_id(dom, "total-savings"),
        e.all_closed - e.hybrid,
    );
    assert_close("requests", by_id(dom, "total-requests"), e.requests as f64);
    assert_close(
        "local tokens",
        by_id(dom, "total-local-tokens"),
        e.local_tokens(),
    );
    assert_close(
        "remote tokens",
        by_id(dom, "total-remote-tokens"),
        e.remote_tokens(),
    );

    // Daily spend: every day of the range, both lines; cumulative savings.
    let daily = figure(dom, "daily-spend");
    let hybrid = values_by(daily, "point", "data-x", Some("hybrid"));
    let closed = values_by(daily, "point", "data-x", Some("all-closed"));
    assert_eq!(hybrid.len(), e.hybrid_by_day.len(), "days on the chart");
    let mut running = 0.0;
    let cumulative = values_by(figure(dom, "cumulative-savings"), "point", "data-x", None);
    for (day, want) in &e.hybrid_by_day {
        let k = day.to_string();
        assert_close(&format!("hybrid on {k}"), hybrid[&k], *want);
        assert_close(
            &format!("all-closed on {k}"),
            closed[&k],
            e.closed_by_day[day],
        );
        running += e.closed_by_day[day] - want;
        assert_close(
            &format!("cumulative savings on {k}"),
            cumulative[&k],
            running,
        );
    }

    // Spend by team and by backend.
    let teams = values_by(figure(dom, "spend-by-team"), "value", "data-category", None);
    assert_eq!(
        teams.keys().collect::<Vec<_>>(),
        e.by_team.keys().collect::<Vec<_>>()
    );
    for (team, want) in &e.by_team {
        assert_close(&format!("spend of {team}"), teams[team], *want);
    }
    let backends = values_by(
        figure(dom, "spend-by-backend"),
        "value",
        "data-category",
        None,
    );
    assert_eq!(
        backends.keys().collect::<Vec<_>>(),
        e.by_backend.keys().collect::<Vec<_>>()
    );
    for (b, want) in &e.by_backend {
        assert_close(&format!("spend of {b}"), backends[b], *want);
    }

    // Token volume: in and out, local and remote.
    let tokens = figure(dom, "tokens");
    let tin = values_by(tokens, "value", "data-category", Some("tokens in"));
    let tout = values_by(tokens, "value", "data-category", Some("tokens out"));
    assert_close("local tokens in", tin["local"], e.local_in as f64);
    assert_close("local tokens out", tout["local"], e.local_out as f64);
    assert_close("remote tokens in", tin["remote"], e.remote_in as f64);
    assert_close("remote tokens out", tout["remote"], e.remote_out as f64);

    // Privacy routing: per backend, confidential-or-restricted and the rest.
    let privacy = figure(dom, "privacy");
    let home = values_by(
        privacy,
        "value",
        "data-category",
        Some("confidential or restricted"),
    );
    let rest = values_by(
        privacy,
        "value",
        "data-category",
        Some("public or internal"),
    );
    assert_eq!(
        home.keys().collect::<Vec<_>>(),
        e.privacy.keys().collect::<Vec<_>>()
    );
    for (backend, (h, r)) in &e.privacy {
        assert_close(&format!("{backend} confidential"), home[backend], *h as f64);
        assert_close(&format!("{backend} other"), rest[backend], *r as f64);
    }

    // Latency percentiles per backend (every request that reached one).
    let latency = figure(dom, "latency");
    let rows_shown = tags(latency)
        .iter()
        .filter(|t| t.name == "td" && t.attr("data-column") == Some("backend"))
        .count();
    assert_eq!(rows_shown, e.latency.len(), "rows of the latency table");
    for (backend, sorted) in &e.latency {
        let row_start = latency
            .find(&format!("<td data-column=\"backend\">{backend}</td>"))
            .unwrap_or_else(|| panic!("no latency row for {backend}"));
        let row = &latency[row_start..row_start + latency[row_start..].find("</tr>").unwrap()];
        let row_values: BTreeMap<String, f64> = tags(row)
            .into_iter()
            .filter(|t| t.attr("data-value").is_some())
            .map(|t| (t.attr("data-column").unwrap().to_owned(), t.value()))
            .collect();
        assert_close(
            &format!("{backend} requests"),
            row_values["requests"],
            sorted.len() as f64,
        );
        for (col, p) in [("p50", 50.0), ("p95", 95.0), ("p99", 99.0)] {
            assert_percentile(
                &format!("{backend} {col}"),
                row_values[col],
                nearest_rank(sorted, p),
            );
        }
        let mean = sorted.iter().sum::<f64>() / sorted.len() as f64;
        assert_close(&format!("{backend} mean"), row_values["mean"], mean);
    }

    // The planner view evaluates the seed example (the default plan).
    let planner = figure(dom, "planner");
    assert!(
        planner.contains("data-value=\"392.25\""),
        "hybrid per day of the seed plan"
    );
    assert!(
        planner.contains("data-value=\"1732.5\""),
        "savings per month of the seed plan"
    );
}

/// Checks each chart's JSON against the same expectations.
async fn check_json(http: &reqwest::Client, base: &str, query: &str, e: &Expected) {
    let get = |chart: &str| {
        let url = format!("{base}/api/dashboard/{chart}.json{query}");
        let http = http.clone();
        async move {
            let resp = http.get(&url).send().await.unwrap();
            assert_eq!(resp.status(), 200, "{url}");
            resp.json::<Value>().await.unwrap()
        }
    };
    let f = |v: &Value| v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"));

    let s = get("summary").await;
    assert_close("json hybrid", f(&s["summary"]["hybrid_usd"]), e.hybrid);
    assert_close(
        "json all-closed",
        f(&s["summary"]["all_closed_usd"]),
        e.all_closed,
    );
    assert_close(
        "json requests",
        f(&s["summary"]["requests"]),
        e.requests as f64,
    );

    let daily = get("daily-spend").await;
    let days = daily["days"].as_array().unwrap();
    assert_eq!(days.len(), e.hybrid_by_day.len());
    for d in days {
        let day: NaiveDate = d["day"].as_str().unwrap().parse().unwrap();
        assert_close(
            "json daily hybrid",
            f(&d["hybrid_usd"]),
            e.hybrid_by_day[&day],
        );
        assert_close(
            "json daily all-closed",
            f(&d["all_closed_usd"]),
            e.closed_by_day[&day],
        );
    }
    let cum = get("cumulative-savings").await;
    assert_close(
        "json savings",
        f(&cum["days"].as_array().unwrap().last().unwrap()["cumulative_savings_usd"]),
        e.all_closed - e.hybrid,
    );
    for (chart, want) in [
        ("spend-by-team", &e.by_team),
        ("spend-by-backend", &e.by_backend),
    ] {
        let rows = get(chart).await["rows"].as_array().unwrap().clone();
        assert_eq!(rows.len(), want.len(), "{chart}");
        for r in rows {
            let name = r["name"].as_str().unwrap();
            assert_close(
                &format!("json {chart} {name}"),
                f(&r["spend_usd"]),
                want[name],
            );
        }
    }
    let tokens = get("tokens").await;
    assert_close(
        "json local tokens",
        f(&tokens["local_tokens"]),
        e.local_tokens(),
    );
    assert_close(
        "json remote tokens",
        f(&tokens["remote_tokens"]),
        e.remote_tokens(),
    );
    assert_close(
        "json remote in",
        f(&tokens["tokens"]["remote_in"]),
        e.remote_in as f64,
    );
    let lat = get("latency").await;
    assert_eq!(lat["rows"].as_array().unwrap().len(), e.latency.len());
    for r in lat["rows"].as_array().unwrap() {
        let sorted = &e.latency[r["backend"].as_str().unwrap()];
        assert_percentile("json p95", f(&r["p95_ms"]), nearest_rank(sorted, 95.0));
    }
    let privacy = get("privacy").await;
    let rows = privacy["rows"].as_array().unwrap();
    assert_eq!(rows.len(), e.privacy.len());
    for r in rows {
        let want = e.privacy[r["backend"].as_str().unwrap()];
        let got = (f(&r["kept_home"]) as i64, f(&r["other"]) as i64);
        assert_eq!(got, want, "json privacy {r}");
    }
    let planner = get("planner").await;
    assert_close("json plan", f(&planner["plan"]["hybrid_per_day"]), 392.25);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rendered_dashboard_shows_the_ledgers_numbers() {
    // The gateway's clock starts at a fixed noon, so the "last thirty days"
    // default and every seeded day are the same on any date the test runs.
    let today = NaiveDate::from_ymd_opt(2026, 12, 31).unwrap();
    let clock_start = "2026-12-31T12:00:00Z";
    let rows = seed(today);
    let dir = scratch_dir("e2e-dashboard-ledger").unwrap();
    let db = dir.join("ledger.db");
    let url = format!("sqlite://{}", db.display());
    {
        let store = open_store(&url).await.unwrap();
        store.insert_batch(&rows).await.unwrap();
        assert_eq!(store.count().await.unwrap(), rows.len() as i64);
    }
    let gw = Gateway::start(
        "e2e-dashboard",
        &format!(
            r#"version: 1
ledger: {{ url: "{url}" }}
models:
  gpt-5.4-mini: {{ provider: openai, base_url: "http://127.0.0.1:9", api_key_env: E2E_DASHBOARD_UNSET }}
routes:
  - name: everything-else
    when: {{ privacy: "<= internal" }}
    to: [gpt-5.4-mini]
counterfactual: {{ all_closed: claude-sonnet-4.6 }}
"#
        ),
        &[(watershed_dashboards::clock::CLOCK_START_ENV, clock_start)],
    )
    .unwrap();
    gw.wait_ready(Duration::from_secs(30)).await.unwrap();
    let http = reqwest::Client::new();
    let base = gw.base_url.clone();

    // The default view: the last thirty days, every team. The 45-day-old row is out.
    let default_from = today - chrono::Duration::days(29);
    let all = expected(&rows, default_from, today, None);
    assert_eq!(all.requests, rows.len() - 1);
    let dom = rendered_dom(&format!("{base}/dashboard"));
    check_page(&dom, &all);
    // The confidential requests never left: all on the local engine or unsent.
    assert_eq!(all.privacy[LOCAL].0, 6);
    assert_eq!(all.privacy["(none)"], (1, 0));
    assert_eq!(all.privacy[CLAUDE].0 + all.privacy[GPT].0, 0);
    check_json(&http, &base, "", &all).await;

    // One team, as the form submits it (every field present).
    let legal = expected(&rows, default_from, today, Some("legal"));
    assert!(legal.hybrid < all.hybrid && legal.requests == 13);
    let legal_dom = rendered_dom(&format!("{base}/dashboard?from=&to=&team=legal"));
    check_page(&legal_dom, &legal);
    assert!(
        legal_dom.contains("<option value=\"legal\" selected=\"\">")
            || legal_dom.contains("<option value=\"legal\" selected>"),
        "the form keeps the chosen team"
    );
    check_json(&http, &base, "?team=legal", &legal).await;

    // A date range that leaves out the oldest and the newest seeded days.
    let from = today - chrono::Duration::days(5);
    let to = today - chrono::Duration::days(2);
    let range = expected(&rows, from, to, None);
    assert!(range.requests < all.requests && range.requests == 18);
    let q = format!("?from={from}&to={to}");
    let range_dom = rendered_dom(&format!("{base}/dashboard{q}"));
    check_page(&range_dom, &range);
    check_json(&http, &base, &q, &range).await;

    // Both filters together, and the old row alone.
    let q = format!("?from={from}&to={to}&team=support");
    let both = expected(&rows, from, to, Some("support"));
    check_page(&rendered_dom(&format!("{base}/dashboard{q}")), &both);
    check_json(&http, &base, &q, &both).await;
    let old = today - chrono::Duration::days(45);
    let q = format!("?from={old}&to={old}");
    let only_old = expected(&rows, old, old, None);
    assert_eq!(only_old.requests, 1);
    check_json(&http, &base, &q, &only_old).await;

    // A screenshot of the full page, kept for people to look at.
    let shot = target_dir().join("dashboard-screenshot.png");
    let _ = std::fs::remove_file(&shot);
    chromium(&[
        format!("--screenshot={}", shot.display()),
        "--window-size=1400,2400".into(),
        "--hide-scrollbars".into(),
        format!("{base}/dashboard"),
    ]);
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("{}: {e}", shot.display()));
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!((width, height), (1400, 2400));
    assert!(
        png.len() > 20_000,
        "a {} byte screenshot is blank",
        png.len()
    );
    eprintln!(
        "dashboard screenshot: {} ({} bytes)",
        shot.display(),
        png.len()
    );

    gw.stop().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
