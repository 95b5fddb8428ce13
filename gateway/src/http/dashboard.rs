//! `GET /dashboard` (the HTML page) and `GET /api/dashboard/<chart>.json` (the
//! JSON behind each chart). Both take `from`, `to` (YYYY-MM-DD, UTC days,
//! inclusive) and `team`; the figures and the markup come from
//! `watershed-dashboards`, this module only turns a query string into a filter
//! and the answers into HTTP.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use tracing::error;
use watershed_dashboards::dashboard::{self, Context, DashboardData, Filter};
use watershed_dashboards::page::{self, PlannerView};
use watershed_dashboards::report::Fleet;
use watershed_providers::ErrorCode;

use crate::error::ApiError;
use crate::state::AppState;

/// How many days the view covers when the query gives no `from`.
pub const DEFAULT_DAYS: i64 = 30;

/// The page forbids every fetch but its own form: no scripts, no remote
/// styles, fonts or images. Charts are inline SVG.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; \
                   form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

pub async fn page(State(state): State<Arc<AppState>>, RawQuery(q): RawQuery) -> Response {
    match view(&state, q.as_deref()).await {
        Ok((data, planner)) => {
            let html = page::render_page(&data, &planner);
            (
                [
                    (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                    (header::CONTENT_SECURITY_POLICY, CSP),
                    (header::CACHE_CONTROL, "no-store"),
                ],
                html,
            )
                .into_response()
        }
        Err(e) => e.into_response(),
    }
}

pub async fn chart(
    State(state): State<Arc<AppState>>,
    Path(file): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let known = file
        .strip_suffix(".json")
        .filter(|name| page::CHARTS.contains(name));
    let Some(name) = known else {
        return ApiError::new(
            ErrorCode::NotFound,
            format!(
                "unknown chart \"{file}\" (expected one of {})",
                page::CHARTS
                    .iter()
                    .map(|c| format!("{c}.json"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
        .into_response();
    };
    match view(&state, q.as_deref()).await {
        Ok((data, planner)) => match page::chart_json(name, &data, &planner) {
            Some(body) => ([(header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response(),
            None => ApiError::new(ErrorCode::NotFound, format!("unknown chart \"{name}\""))
                .into_response(),
        },
        Err(e) => e.into_response(),
    }
}

/// Reads the ledger and evaluates the plan for one query.
async fn view(
    state: &AppState,
    query: Option<&str>,
) -> Result<(DashboardData, PlannerView), ApiError> {
    let now = state.clock.now();
    let filter = parse_filter(query, now.date_naive())?;
    let rt = state.runtime();
    let cx = Context {
        fleet: rt.config.fleet.as_ref().map(|f| Fleet {
            gpus: f64::from(f.gpus),
            gpu_hour_usd: f.gpu_hour_usd,
        }),
        counterfactual_model: rt.config.counterfactual.clone(),
        now_ms: now.timestamp_millis(),
    };
    let data = dashboard::load(state.ledger.store().as_ref(), &filter, &cx)
        .await
        .map_err(|e| {
            error!(error = %e, "dashboard query failed");
            ApiError::new(e.code(), "the ledger could not be read")
        })?;
    let planner = PlannerView {
        source: rt.plan.source.clone(),
        result: rt
            .plan
            .plan
            .evaluate(&rt.prices, now.timestamp_millis())
            .map_err(|e| e.to_string()),
    };
    Ok((data, planner))
}

/// `from`, `to` and `team` from a query string. Empty values mean the
/// default (the last `DEFAULT_DAYS` days up to today, all teams), as a plain
/// HTML form sends every field; anything else unknown or malformed is a 400
/// naming the parameter.
pub fn parse_filter(query: Option<&str>, today: NaiveDate) -> Result<Filter, ApiError> {
    let mut from = None;
    let mut to = None;
    let mut team = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode(k).map_err(|m| ApiError::bad_request(m, None))?;
        let value = decode(v).map_err(|m| ApiError::bad_request(m, Some(&key)))?;
        let slot = match key.as_str() {
            "from" => &mut from,
            "to" => &mut to,
            "team" => &mut team,
            other => {
                return Err(ApiError::bad_request(
                    format!("unknown parameter \"{other}\" (expected from, to or team)"),
                    Some(other),
                ))
            }
        };
        if slot.is_some() {
            return Err(ApiError::bad_request(
                format!("parameter \"{key}\" is given more than once"),
                Some(&key),
            ));
        }
        *slot = Some(value);
    }
    let date = |name: &str, v: Option<String>| -> Result<Option<NaiveDate>, ApiError> {
        match v.filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(s) => NaiveDate::parse_from_str(&s, "%Y-%m-%d")
                .map(Some)
                .map_err(|_| {
                    ApiError::bad_request(
                        format!("invalid {name} \"{s}\" (expected a date as YYYY-MM-DD)"),
                        Some(name),
                    )
                }),
        }
    };
    let to = date("to", to)?.unwrap_or(today);
    let from = date("from", from)?.unwrap_or_else(|| Filter::last_days(to, DEFAULT_DAYS).from);
    Filter::new(from, to, team).map_err(|e| ApiError::bad_request(e.to_string(), Some("from")))
}

/// Decodes `application/x-www-form-urlencoded` text: `+` is a space, `%XX` a byte.
fn decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("invalid percent-encoding in \"{s}\""))?;
                out.push(hex);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| format!("\"{s}\" is not UTF-8 once decoded"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn bad(q: &str) -> (String, Option<String>) {
        match parse_filter(Some(q), day("2026-11-26")) {
            Ok(f) => panic!("{q} was accepted as {f:?}"),
            Err(e) => {
                assert_eq!(e.status().as_u16(), 400, "{q}");
                (e.message, e.param)
            }
        }
    }

    #[test]
    fn defaults_are_the_last_thirty_days_for_every_team() {
        for q in [None, Some(""), Some("from=&to=&team=")] {
            let f = parse_filter(q, day("2026-11-26")).unwrap_or_else(|e| panic!("{}", e.message));
            assert_eq!(
                (f.from, f.to, f.team),
                (day("2026-10-28"), day("2026-11-26"), None)
            );
        }
    }

    #[test]
    fn parameters_are_decoded() {
        let f = parse_filter(
            Some("from=2026-11-01&to=2026-11-03&team=data+science%26ml"),
            day("2026-11-26"),
        )
        .unwrap_or_else(|e| panic!("{}", e.message));
        assert_eq!((f.from, f.to), (day("2026-11-01"), day("2026-11-03")));
        assert_eq!(f.team.as_deref(), Some("data science&ml"));
        // Only `to`: the thirty days before it.
        let f = parse_filter(Some("to=2026-02-10"), day("2026-11-26"))
            .unwrap_or_else(|e| panic!("{}", e.message));
        assert_eq!(f.from, day("2026-01-12"));
    }

    #[test]
    fn bad_parameters_are_named() {
        let (m, p) = bad("from=2026-13-01");
        assert!(m.contains("invalid from \"2026-13-01\""), "{m}");
        assert_eq!(p.as_deref(), Some("from"));
        let (m, p) = bad("to=yesterday");
        assert!(m.contains("YYYY-MM-DD"), "{m}");
        assert_eq!(p.as_deref(), Some("to"));
        let (m, _) = bad("from=2026-11-05&to=2026-11-01");
        assert!(m.contains("after"), "{m}");
        let (m, _) = bad("from=2020-01-01&to=2026-11-01");
        assert!(m.contains("at most 366"), "{m}");
        let (m, p) = bad("tema=legal");
        assert!(m.contains("unknown parameter \"tema\""), "{m}");
        assert_eq!(p.as_deref(), Some("tema"));
        let (m, _) = bad("team=a&team=b");
        assert!(m.contains("more than once"), "{m}");
        let (m, _) = bad("team=%zz");
        assert!(m.contains("percent-encoding"), "{m}");
    }
}
