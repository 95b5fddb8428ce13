//! The HTML dashboard and the JSON behind each of its charts. The page is
//! self-contained: charts are inline SVG drawn here, styles are inline, the
//! filters are a plain GET form, and nothing is fetched when it is viewed.

use serde_json::{json, Value};

use crate::charts::{bar_chart, escape, line_chart, money, table, Cell, Legend, Series, Unit};
use crate::dashboard::DashboardData;
use crate::planner::PlanResult;
use crate::render::count;

/// Every chart, by the name its JSON endpoint and its `<figure>` id use.
pub const CHARTS: &[&str] = &[
    "summary",
    "daily-spend",
    "cumulative-savings",
    "spend-by-team",
    "spend-by-backend",
    "tokens",
    "latency",
    "privacy",
    "planner",
];

/// The capacity plan shown beside the ledger's figures.
#[derive(Debug, Clone)]
pub struct PlannerView {
    /// Where the plan came from (a path, or the built-in example).
    pub source: String,
    pub result: Result<PlanResult, String>,
}

/// The JSON behind chart `name`, or `None` for an unknown chart.
pub fn chart_json(name: &str, data: &DashboardData, planner: &PlannerView) -> Option<Value> {
    let f = &data.filter;
    let body = match name {
        "summary" => json!({
            "summary": data.summary,
            "teams": data.teams,
            "notes": data.notes,
        }),
        "daily-spend" => json!({
            "days": data.daily.iter().map(|d| json!({
                "day": d.day,
                "hybrid_usd": d.hybrid_usd,
                "idle_usd": d.idle_usd,
                "all_closed_usd": d.all_closed_usd,
                "savings_usd": d.savings_usd,
            })).collect::<Vec<_>>(),
            "hybrid_usd": data.summary.hybrid_usd,
            "idle_usd": data.summary.idle_usd,
            "all_closed_usd": data.summary.all_closed_usd,
        }),
        "cumulative-savings" => json!({
            "days": data.daily.iter().map(|d| json!({
                "day": d.day,
                "cumulative_savings_usd": d.cumulative_savings_usd,
            })).collect::<Vec<_>>(),
            "savings_usd": data.summary.savings_usd,
        }),
        "spend-by-team" => json!({ "rows": data.by_team }),
        "spend-by-backend" => json!({ "rows": data.by_backend }),
        "tokens" => json!({
            "tokens": data.tokens,
            "local_tokens": data.summary.local_tokens,
            "remote_tokens": data.summary.remote_tokens,
        }),
        "latency" => json!({ "rows": data.latency }),
        "privacy" => json!({ "rows": data.privacy }),
        "planner" => match &planner.result {
            Ok(r) => json!({ "source": planner.source, "plan": r }),
            Err(e) => json!({ "source": planner.source, "error": e }),
        },
        _ => return None,
    };
    let mut out = json!({
        "chart": name,
        "from": f.from,
        "to": f.to,
        "team": f.team,
    });
    if let (Value::Object(o), Value::Object(b)) = (&mut out, body) {
        o.extend(b);
    }
    Some(out)
}

/// `?from=..&to=..[&team=..]` for links that keep the current view.
pub fn query_string(data: &DashboardData) -> String {
    let f = &data.filter;
    let mut q = format!("?from={}&to={}", f.from, f.to);
    if let Some(t) = &f.team {
        q.push_str("&team=");
        q.push_str(&percent_encode(t));
    }
    q
}

/// Percent-encodes everything but unreserved URL characters.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

const STYLE: &str =
    "body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1560px}\
h1{font-size:22px;margin:0 0 12px}\
form{display:flex;gap:12px;align-items:end;margin-bottom:16px;flex-wrap:wrap}\
label{display:flex;flex-direction:column;font-size:12px;color:#555}\
#summary{display:flex;gap:12px;flex-wrap:wrap;margin:0 0 16px}\
.stat{border:1px solid #ddd;border-radius:6px;padding:8px 12px;min-width:130px}\
.stat dt{font-size:12px;color:#555}.stat dd{margin:0;font-size:20px;font-weight:600}\
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(620px,1fr));gap:16px}\
svg.chart{width:100%;height:auto}\
figure{margin:0;border:1px solid #eee;border-radius:6px;padding:8px}\
figcaption{font-size:12px;color:#555}\
table.data{border-collapse:collapse;font-size:13px;margin:8px 0}\
table.data caption{text-align:left;font-weight:bold;padding:4px 0}\
table.data th,table.data td{border-bottom:1px solid #eee;padding:4px 10px;text-align:left}\
td.num{text-align:right;font-variant-numeric:tabular-nums}\
.notes{font-size:12px;color:#555}";

fn figure(out: &mut String, name: &str, api_query: &str, inner: &str, caption: &str) {
    out.push_str(&format!(
        "<figure class=\"chart\" id=\"chart-{name}\" \
         data-api=\"/api/dashboard/{name}.json{q}\">{inner}\
         <figcaption>{caption} <a href=\"/api/dashboard/{name}.json{q}\">JSON</a>\
         </figcaption></figure>",
        q = escape(api_query)
    ));
}

fn stat(out: &mut String, id: &str, label: &str, value: f64, text: &str) {
    out.push_str(&format!(
        "<div class=\"stat\"><dt>{}</dt><dd id=\"{id}\" data-value=\"{value}\">{}</dd></div>",
        escape(label),
        escape(text)
    ));
}

/// The whole dashboard page.
pub fn render_page(data: &DashboardData, planner: &PlannerView) -> String {
    let f = &data.filter;
    let q = query_string(data);
    let mut out = String::with_capacity(64 * 1024);
    out.push_str(&format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Watershed spend {} to {}</title><style>{STYLE}</style></head><body>\
         <h1>Watershed spend</h1>",
        f.from, f.to
    ));

    // Filters: a plain GET form back to this page.
    out.push_str(&format!(
        "<form id=\"filters\" method=\"get\" action=\"/dashboard\">\
         <label>From<input type=\"date\" name=\"from\" value=\"{}\"></label>\
         <label>To<input type=\"date\" name=\"to\" value=\"{}\"></label>\
         <label>Team<select name=\"team\"><option value=\"\">all teams</option>",
        f.from, f.to
    ));
    let mut teams = data.teams.clone();
    if let Some(t) = &f.team {
        if !teams.contains(t) {
            teams.push(t.clone());
        }
    }
    for t in &teams {
        let selected = if f.team.as_deref() == Some(t.as_str()) {
            " selected"
        } else {
            ""
        };
        out.push_str(&format!(
            "<option value=\"{0}\"{selected}>{0}</option>",
            escape(t)
        ));
    }
    out.push_str("</select></label><button type=\"submit\">Show</button></form>");

    // Totals.
    let s = &data.summary;
    out.push_str("<dl id=\"summary\">");
    stat(
        &mut out,
        "total-hybrid",
        "Hybrid spend",
        s.hybrid_usd,
        &money(s.hybrid_usd),
    );
    stat(
        &mut out,
        "total-all-closed",
        "All-closed spend",
        s.all_closed_usd,
        &money(s.all_closed_usd),
    );
    stat(
        &mut out,
        "total-savings",
        "Savings",
        s.savings_usd,
        &money(s.savings_usd),
    );
    if let Some(pct) = s.savings_pct {
        stat(
            &mut out,
            "savings-pct",
            "Savings %",
            pct,
            &format!("{pct:.1}%"),
        );
    }
    if let Some(idle) = s.idle_usd {
        stat(&mut out, "total-idle", "Idle GPU cost", idle, &money(idle));
    }
    stat(
        &mut out,
        "total-requests",
        "Requests",
        s.requests as f64,
        &count(s.requests as f64),
    );
    stat(
        &mut out,
        "total-local-tokens",
        "Local tokens",
        s.local_tokens as f64,
        &count(s.local_tokens as f64),
    );
    stat(
        &mut out,
        "total-remote-tokens",
        "Remote tokens",
        s.remote_tokens as f64,
        &count(s.remote_tokens as f64),
    );
    out.push_str("</dl><div class=\"grid\">");

    let days: Vec<String> = data.daily.iter().map(|d| d.day.to_string()).collect();
    figure(
        &mut out,
        "daily-spend",
        &q,
        &line_chart(
            "daily-spend",
            "Daily spend: hybrid vs all-closed",
            &days,
            &[
                Series::new("hybrid", data.daily.iter().map(|d| d.hybrid_usd).collect()),
                Series::new(
                    "all-closed",
                    data.daily.iter().map(|d| d.all_closed_usd).collect(),
                ),
            ],
            Unit::Usd,
            Legend::Sum,
        ),
        "What the traffic cost as routed, and what it would have cost on the all-closed model.",
    );
    figure(
        &mut out,
        "cumulative-savings",
        &q,
        &line_chart(
            "cumulative-savings",
            "Cumulative savings",
            &days,
            &[Series::new(
                "savings",
                data.daily
                    .iter()
                    .map(|d| d.cumulative_savings_usd)
                    .collect(),
            )],
            Unit::Usd,
            Legend::Last,
        ),
        "Savings (all-closed minus hybrid) added up day by day.",
    );
    let names = |rows: &[crate::dashboard::SpendRow]| -> Vec<String> {
        rows.iter().map(|r| r.name.clone()).collect()
    };
    figure(
        &mut out,
        "spend-by-team",
        &q,
        &bar_chart(
            "spend-by-team",
            "Spend by team",
            &names(&data.by_team),
            &[Series::new(
                "spend",
                data.by_team.iter().map(|r| r.spend_usd).collect(),
            )],
            Unit::Usd,
        ),
        "Recorded spend per team; idle GPU time belongs to no team.",
    );
    figure(
        &mut out,
        "spend-by-backend",
        &q,
        &bar_chart(
            "spend-by-backend",
            "Spend by backend",
            &names(&data.by_backend),
            &[Series::new(
                "spend",
                data.by_backend.iter().map(|r| r.spend_usd).collect(),
            )],
            Unit::Usd,
        ),
        "Recorded spend per backend (local ones carry their share of the GPU fleet's time), and the fleet's idle time.",
    );
    let t = &data.tokens;
    figure(
        &mut out,
        "tokens",
        &q,
        &bar_chart(
            "tokens",
            "Token volume: local vs remote",
            &["local".to_owned(), "remote".to_owned()],
            &[
                Series::new("tokens in", vec![t.local_in as f64, t.remote_in as f64]),
                Series::new("tokens out", vec![t.local_out as f64, t.remote_out as f64]),
            ],
            Unit::Count,
        ),
        "Prompt (in) and completion (out) tokens, in-process engine against remote backends.",
    );
    let backends: Vec<String> = data.privacy.iter().map(|p| p.backend.clone()).collect();
    figure(
        &mut out,
        "privacy",
        &q,
        &bar_chart(
            "privacy",
            "Requests by backend: confidential or restricted, and the rest",
            &backends,
            &[
                Series::new(
                    "confidential or restricted",
                    data.privacy.iter().map(|p| p.kept_home as f64).collect(),
                ),
                Series::new(
                    "public or internal",
                    data.privacy.iter().map(|p| p.other as f64).collect(),
                ),
            ],
            Unit::Count,
        ),
        "Where requests went by privacy level. Confidential and restricted requests may \
         only reach the local engine or trusted targets; (none) counts requests no \
         allowed target could take.",
    );
    let latency_rows: Vec<Vec<Cell>> = data
        .latency
        .iter()
        .map(|r| {
            vec![
                Cell::text(&r.backend),
                Cell::num(r.requests as f64, Unit::Count),
                Cell::opt(r.p50_ms, Unit::Millis),
                Cell::opt(r.p95_ms, Unit::Millis),
                Cell::opt(r.p99_ms, Unit::Millis),
                Cell::opt(r.mean_ms, Unit::Millis),
                Cell::opt(r.ttft_mean_ms, Unit::Millis),
            ]
        })
        .collect();
    figure(
        &mut out,
        "latency",
        &q,
        &table(
            "latency",
            "Latency per backend",
            &[
                "backend",
                "requests",
                "p50",
                "p95",
                "p99",
                "mean",
                "ttft mean",
            ],
            &latency_rows,
        ),
        "All requests, failures included. Percentiles come from daily histograms: within 9.1% \
         of the exact value.",
    );
    figure(
        &mut out,
        "planner",
        &q,
        &planner_html(planner),
        &format!("Capacity plan from {}.", escape(&planner.source)),
    );
    out.push_str("</div><div class=\"notes\" id=\"notes\">");
    for n in &data.notes {
        out.push_str(&format!("<p>{}</p>", escape(n)));
    }
    out.push_str(
        "<p>Days are UTC. Hybrid spend is what the ledger recorded for each request plus, \
         for all teams, the fleet's idle time; spend by team and backend is recorded spend.</p>",
    );
    out.push_str("</div></body></html>");
    out
}

fn planner_html(planner: &PlannerView) -> String {
    let r = match &planner.result {
        Ok(r) => r,
        Err(e) => {
            return format!(
                "<p class=\"error\">the plan cannot be evaluated: {}</p>",
                escape(e)
            )
        }
    };
    let tiers: Vec<String> = r.tiers.iter().map(|t| t.name.clone()).collect();
    let mut out = bar_chart(
        "planner",
        "Plan: cost per day, hybrid vs all-closed",
        &tiers,
        &[
            Series::new("hybrid", r.tiers.iter().map(|t| t.hybrid_per_day).collect()),
            Series::new(
                "all-closed",
                r.tiers.iter().map(|t| t.all_closed_per_day).collect(),
            ),
        ],
        Unit::Usd,
    );
    let mut rows: Vec<Vec<Cell>> = r
        .tiers
        .iter()
        .map(|t| {
            vec![
                Cell::text(&t.name),
                Cell::text(&t.solution),
                Cell::num(t.tokens_per_day, Unit::Count),
                Cell::num(t.hybrid_per_day, Unit::Usd),
                Cell::num(t.all_closed_per_day, Unit::Usd),
                Cell::num(t.savings_per_day, Unit::Usd),
                Cell::opt(t.break_even_tokens_per_day, Unit::Count),
            ]
        })
        .collect();
    rows.push(vec![
        Cell::text("total per day"),
        Cell::text(""),
        Cell::num(r.tiers.iter().map(|t| t.tokens_per_day).sum(), Unit::Count),
        Cell::num(r.hybrid_per_day, Unit::Usd),
        Cell::num(r.all_closed_per_day, Unit::Usd),
        Cell::num(r.savings_per_day, Unit::Usd),
        Cell::text(""),
    ]);
    rows.push(vec![
        Cell::text(&format!("total per month ({} days)", r.days_per_month)),
        Cell::text(""),
        Cell::text(""),
        Cell::num(r.hybrid_per_month, Unit::Usd),
        Cell::num(r.all_closed_per_month, Unit::Usd),
        Cell::num(r.savings_per_month, Unit::Usd),
        Cell::text(""),
    ]);
    out.push_str(&table(
        "planner",
        "Hybrid vs all-closed by tier",
        &[
            "tier",
            "solution",
            "tokens/day",
            "hybrid",
            "all-closed",
            "savings",
            "break-even tokens/day",
        ],
        &rows,
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dashboard::{Filter, Summary, TokenVolume};
    use crate::planner::Plan;
    use crate::pricing::PriceTable;

    /// 2026-11-26: plans are priced at a fixed instant.
    const NOW_MS: i64 = 1_795_651_200_000;

    fn view() -> (DashboardData, PlannerView) {
        let f = Filter::new(
            "2026-11-01".parse().unwrap_or_default(),
            "2026-11-02".parse().unwrap_or_default(),
            Some("a&b".into()),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let plan = Plan::from_value(json!({
            "tiers": [{
                "name": "chat",
                "tokens_per_day": 1_000_000.0,
                "serve": { "api": { "model": "x", "blended_usd_per_mtok": 1.0 } },
                "all_closed": { "model": "y", "blended_usd_per_mtok": 3.0 },
            }]
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let planner = PlannerView {
            source: "test plan".into(),
            result: plan
                .evaluate(&PriceTable::builtin(), NOW_MS)
                .map_err(|e| e.to_string()),
        };
        let data = DashboardData {
            filter: f,
            teams: vec![],
            summary: Summary::default(),
            daily: vec![],
            by_team: vec![],
            by_backend: vec![],
            tokens: TokenVolume::default(),
            latency: vec![],
            privacy: vec![],
            notes: vec!["<counterfactual> is an estimate".into()],
        };
        (data, planner)
    }

    #[test]
    fn the_page_has_every_chart_and_fetches_nothing() {
        let (data, planner) = view();
        let html = render_page(&data, &planner);
        for name in CHARTS.iter().filter(|n| **n != "summary") {
            assert!(
                html.contains(&format!("id=\"chart-{name}\"")),
                "missing chart {name}"
            );
        }
        assert_eq!(html.matches("<svg").count(), 7);
        // No scripts, no external stylesheets or images: every URL is ours.
        assert!(!html.contains("<script"));
        let stripped = html.replace("http://www.w3.org/2000/svg", "");
        assert!(!stripped.contains("http://") && !stripped.contains("https://"));
        // The team is escaped in HTML and encoded in links.
        assert!(html.contains("data-api=\"/api/dashboard/daily-spend.json?from=2026-11-01&amp;to=2026-11-02&amp;team=a%26b\""));
        assert!(html.contains("<option value=\"a&amp;b\" selected>a&amp;b</option>"));
        // The report layer's caveats are shown, escaped.
        assert!(html.contains("<p>&lt;counterfactual&gt; is an estimate</p>"));
        // The plan's totals are on the page.
        assert!(
            html.contains("data-value=\"2\""),
            "savings per day of the plan"
        );
    }

    #[test]
    fn each_chart_has_json_and_unknown_charts_do_not() {
        let (data, planner) = view();
        for name in CHARTS {
            let v = chart_json(name, &data, &planner).unwrap_or_else(|| panic!("{name}"));
            assert_eq!(v["chart"], *name);
            assert_eq!(v["from"], "2026-11-01");
            assert_eq!(v["team"], "a&b");
        }
        assert_eq!(
            chart_json("planner", &data, &planner).unwrap_or_default()["plan"]["savings_per_day"],
            2.0
        );
        assert!(chart_json("nope", &data, &planner).is_none());
    }
}
