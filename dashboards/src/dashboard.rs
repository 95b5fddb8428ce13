//! The dashboard's figures for one date range and team: daily spend hybrid
//! against all-closed, cumulative savings, spend by team and by backend,
//! token volume local against remote, latency percentiles per backend and
//! where confidential requests were routed. They come from the report
//! layer's daily rollups, never a scan of the raw ledger. Each figure
//! serializes as the JSON behind its chart; `page` draws them.

use chrono::{Duration, NaiveDate};
use serde::Serialize;

use crate::error::LedgerError;
use crate::ledger::LedgerStore;
use crate::report::{self, Dimension, Fleet, GroupRow, Period, ReportQuery};

/// The longest range one view covers, in days.
pub const MAX_RANGE_DAYS: i64 = 366;

/// Which requests a view covers: UTC days `from..=to`, one team or all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Filter {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub team: Option<String>,
}

impl Filter {
    /// Checks the range: `from` not after `to`, at most `MAX_RANGE_DAYS` days.
    pub fn new(from: NaiveDate, to: NaiveDate, team: Option<String>) -> Result<Self, LedgerError> {
        if from > to {
            return Err(LedgerError::Invalid(format!(
                "from ({from}) is after to ({to})"
            )));
        }
        let days = (to - from).num_days() + 1;
        if days > MAX_RANGE_DAYS {
            return Err(LedgerError::Invalid(format!(
                "the range {from}..{to} covers {days} days; at most {MAX_RANGE_DAYS} are shown at once"
            )));
        }
        Ok(Self {
            from,
            to,
            team: team.filter(|t| !t.is_empty()),
        })
    }

    /// The last `days` days up to and including `today`, all teams.
    pub fn last_days(today: NaiveDate, days: i64) -> Self {
        Self {
            from: today - Duration::days(days.clamp(1, MAX_RANGE_DAYS) - 1),
            to: today,
            team: None,
        }
    }

    /// Unix milliseconds at the start of `from` (UTC).
    pub fn since_ms(&self) -> i64 {
        day_start_ms(self.from)
    }

    /// Unix milliseconds at the end of `to` (exclusive).
    pub fn until_ms(&self) -> i64 {
        day_start_ms(self.to + Duration::days(1))
    }

    /// Every day of the range, in order.
    pub fn days(&self) -> Vec<NaiveDate> {
        self.from
            .iter_days()
            .take_while(|d| *d <= self.to)
            .collect()
    }
}

fn day_start_ms(d: NaiveDate) -> i64 {
    d.and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc().timestamp_millis())
        .unwrap_or(0)
}

/// What a view needs besides the filter: the config's fleet and all-closed
/// reference model, and the time now (fleet hours are not counted ahead of it).
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub fleet: Option<Fleet>,
    pub counterfactual_model: Option<String>,
    pub now_ms: i64,
}

/// Totals of the whole view.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    pub requests: i64,
    /// Recorded spend plus idle fleet cost.
    pub hybrid_usd: f64,
    /// Recorded spend: API prices, and local requests' share of the fleet.
    pub recorded_usd: f64,
    /// The fleet's cost that no request used; only without a team filter and
    /// with a fleet in the config.
    pub idle_usd: Option<f64>,
    pub all_closed_usd: f64,
    pub savings_usd: f64,
    /// Savings as a percentage of the all-closed cost; `None` when that is 0.
    pub savings_pct: Option<f64>,
    /// Prompt plus completion tokens of local and of remote backends.
    pub local_tokens: i64,
    pub remote_tokens: i64,
    pub errors: i64,
    /// Requests at confidential or restricted.
    pub privacy_routed: i64,
}

/// One day of spend.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DaySpend {
    pub day: String,
    /// Recorded spend plus that day's idle fleet cost.
    pub hybrid_usd: f64,
    pub idle_usd: Option<f64>,
    pub all_closed_usd: f64,
    pub savings_usd: f64,
    /// Savings from the first day of the range up to and including this one.
    pub cumulative_savings_usd: f64,
}

/// Recorded spend of one team or one backend.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpendRow {
    pub name: String,
    pub requests: i64,
    pub spend_usd: f64,
    pub all_closed_usd: f64,
}

/// Tokens in and out, in-process engine against remote backends.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TokenVolume {
    pub local_in: i64,
    pub local_out: i64,
    pub remote_in: i64,
    pub remote_out: i64,
}

/// Latency of one backend's requests (every status), from the rollups'
/// histograms: within `PERCENTILE_RELATIVE_ERROR` of the exact value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencyRow {
    pub backend: String,
    pub requests: i64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub mean_ms: Option<f64>,
    pub ttft_mean_ms: Option<f64>,
}

/// Where requests went by privacy: per backend, those at confidential or
/// restricted and the rest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PrivacyRow {
    pub backend: String,
    /// The in-process engine (else a remote target, or "(none)": no target
    /// could be tried).
    pub local: bool,
    pub kept_home: i64,
    pub other: i64,
}

/// Every figure of one view.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DashboardData {
    pub filter: Filter,
    /// Teams with requests in the range (whatever the team filter), for the form.
    pub teams: Vec<String>,
    pub summary: Summary,
    pub daily: Vec<DaySpend>,
    pub by_team: Vec<SpendRow>,
    pub by_backend: Vec<SpendRow>,
    pub tokens: TokenVolume,
    pub latency: Vec<LatencyRow>,
    pub privacy: Vec<PrivacyRow>,
    /// Caveats from the report layer (counterfactual estimate, fleet
    /// attribution, percentile resolution).
    pub notes: Vec<String>,
}

/// The name a backend group is shown under ("" is a request no target was tried for).
fn backend_name(key: &str) -> String {
    if key.is_empty() {
        NO_BACKEND.to_owned()
    } else {
        key.to_owned()
    }
}

/// How requests that reached no target are listed.
pub const NO_BACKEND: &str = "(none)";
/// The row that carries the fleet's unused cost in spend by backend.
pub const IDLE_ROW: &str = "(idle GPU time)";

/// Every figure for `filter`, from the ledger's daily rollups (five queries).
pub async fn load(
    store: &dyn LedgerStore,
    filter: &Filter,
    cx: &Context,
) -> Result<DashboardData, LedgerError> {
    let q = ReportQuery {
        team: filter.team.clone(),
        fleet: cx.fleet,
        counterfactual_model: cx.counterfactual_model.clone(),
        ..ReportQuery::new(Period::new(filter.from, filter.to)?, cx.now_ms)
    };
    let days = report::daily(store, &q).await?;
    let overview = report::overview(store, &q).await?;
    let teams_rows = report::breakdown(store, &q, Dimension::Team).await?;
    let backends = report::breakdown(store, &q, Dimension::Backend).await?;
    let teams: Vec<String> = if q.team.is_none() {
        teams_rows.iter().map(|r| r.key.clone()).collect()
    } else {
        let all = ReportQuery {
            team: None,
            ..q.clone()
        };
        report::breakdown(store, &all, Dimension::Team)
            .await?
            .into_iter()
            .map(|r| r.key)
            .collect()
    };

    let mut running = 0.0;
    let daily = days
        .iter()
        .map(|d| {
            running += d.savings_usd;
            DaySpend {
                day: d.key.clone(),
                hybrid_usd: d.hybrid_spend_usd,
                idle_usd: d.idle_usd,
                all_closed_usd: d.stats.counterfactual_usd,
                savings_usd: d.savings_usd,
                cumulative_savings_usd: running,
            }
        })
        .collect();

    let spend = |rows: &[GroupRow], name: fn(&str) -> String| -> Vec<SpendRow> {
        let mut v: Vec<SpendRow> = rows
            .iter()
            .map(|r| SpendRow {
                name: name(&r.key),
                requests: r.stats.requests,
                spend_usd: r.stats.spend_usd,
                all_closed_usd: r.stats.counterfactual_usd,
            })
            .collect();
        // Biggest spenders first; names break ties so the order is stable.
        v.sort_by(|a, b| {
            b.spend_usd
                .total_cmp(&a.spend_usd)
                .then_with(|| a.name.cmp(&b.name))
        });
        v
    };
    let by_team = spend(&teams_rows, str::to_owned);
    let mut by_backend = spend(&backends, backend_name);
    let idle_usd = overview.fleet.as_ref().map(|f| f.idle_usd);
    if let Some(idle) = idle_usd.filter(|i| *i > 0.0) {
        by_backend.push(SpendRow {
            name: IDLE_ROW.to_owned(),
            requests: 0,
            spend_usd: idle,
            all_closed_usd: 0.0,
        });
    }

    let mut tokens = TokenVolume::default();
    let mut latency = Vec::new();
    let mut privacy = Vec::new();
    for b in &backends {
        let s = &b.stats;
        // A backend is the in-process engine or it is not: its requests are all local or none.
        let local = s.local_requests > 0;
        if local {
            tokens.local_in += s.prompt_tokens;
            tokens.local_out += s.completion_tokens;
        } else {
            tokens.remote_in += s.prompt_tokens;
            tokens.remote_out += s.completion_tokens;
        }
        if !b.key.is_empty() {
            latency.push(LatencyRow {
                backend: b.key.clone(),
                requests: s.requests,
                p50_ms: s.latency_p50_ms,
                p95_ms: s.latency_p95_ms,
                p99_ms: s.latency_p99_ms,
                mean_ms: s.latency_mean_ms,
                ttft_mean_ms: s.ttft_mean_ms,
            });
        }
        privacy.push(PrivacyRow {
            backend: backend_name(&b.key),
            local,
            kept_home: s.privacy_routed,
            other: s.requests - s.privacy_routed,
        });
    }
    // Local first, then remote, then requests that reached no target.
    privacy.sort_by_key(|p| (!p.local, p.backend == NO_BACKEND, p.backend.clone()));

    let t = &overview.totals;
    let summary = Summary {
        requests: t.requests,
        hybrid_usd: overview.hybrid_spend_usd,
        recorded_usd: t.spend_usd,
        idle_usd,
        all_closed_usd: overview.counterfactual_usd,
        savings_usd: overview.savings_usd,
        savings_pct: overview.savings_pct,
        local_tokens: tokens.local_in + tokens.local_out,
        remote_tokens: tokens.remote_in + tokens.remote_out,
        errors: t.errors,
        privacy_routed: t.privacy_routed,
    };
    Ok(DashboardData {
        filter: filter.clone(),
        teams,
        summary,
        daily,
        by_team,
        by_backend,
        tokens,
        latency,
        privacy,
        notes: overview.notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{open_store, LedgerRecord};

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn rec(
        id: &str,
        day_s: &str,
        hour: i64,
        team: &str,
        backend: &str,
        kind: &str,
    ) -> LedgerRecord {
        LedgerRecord {
            request_id: id.into(),
            ts_ms: day_start_ms(day(day_s)) + hour * 3_600_000,
            team: team.into(),
            key_id: "k".into(),
            route: "r".into(),
            backend: backend.into(),
            backend_kind: kind.into(),
            model: "m".into(),
            privacy: "internal".into(),
            prompt_tokens: 10,
            completion_tokens: 5,
            cached_tokens: 0,
            cost_usd: 1.0,
            counterfactual_usd: 3.0,
            engine_seconds: 0.0,
            ttft_ms: Some(10.0),
            latency_ms: 100.0,
            status: 200,
            error_code: None,
            finish_reason: Some("stop".into()),
            stream: false,
            attempts: 1,
            difficulty: None,
            explanation: None,
        }
    }

    async fn view(rows: &[LedgerRecord], f: &Filter, cx: &Context) -> DashboardData {
        let store = open_store("sqlite::memory:").await.unwrap();
        store.insert_batch(rows).await.unwrap();
        load(store.as_ref(), f, cx).await.unwrap()
    }

    #[test]
    fn filters_check_their_range() {
        assert!(Filter::new(day("2026-11-02"), day("2026-11-01"), None).is_err());
        assert!(Filter::new(day("2025-01-01"), day("2026-11-01"), None).is_err());
        let f = Filter::new(day("2026-11-01"), day("2026-11-03"), Some(String::new())).unwrap();
        assert_eq!(f.team, None);
        assert_eq!(f.days().len(), 3);
        assert_eq!(f.until_ms() - f.since_ms(), 3 * 86_400_000);
        let last = Filter::last_days(day("2026-11-30"), 30);
        assert_eq!((last.from, last.to), (day("2026-11-01"), day("2026-11-30")));
    }

    #[tokio::test]
    async fn figures_add_up_per_day_team_backend_and_destination() {
        let mut rows = vec![
            rec("a", "2026-11-01", 1, "legal", "local-moe", "llama.cpp"),
            rec("b", "2026-11-01", 23, "support", "gpt", "openai"),
            rec("c", "2026-11-03", 5, "support", "gpt", "openai"),
            // Outside the range: ignored everywhere.
            rec("d", "2026-11-04", 0, "legal", "gpt", "openai"),
            // Failed before any target was tried.
            rec("e", "2026-11-02", 2, "legal", "", ""),
        ];
        rows[0].privacy = "confidential".into();
        rows[0].cost_usd = 0.5;
        rows[4].status = 503;
        rows[4].privacy = "restricted".into();
        rows[4].cost_usd = 0.0;
        rows[4].counterfactual_usd = 0.0;
        let f = Filter::new(day("2026-11-01"), day("2026-11-03"), None).unwrap();
        let d = view(&rows, &f, &Context::default()).await;
        assert_eq!(d.teams, vec!["legal", "support"]);
        let s = &d.summary;
        assert_eq!((s.requests, s.errors, s.privacy_routed), (4, 1, 2));
        assert_eq!(
            (s.hybrid_usd, s.all_closed_usd, s.savings_usd),
            (2.5, 9.0, 6.5)
        );
        assert_eq!(s.idle_usd, None);
        assert_eq!((s.local_tokens, s.remote_tokens), (15, 45));
        let per_day: Vec<(f64, f64, f64)> = d
            .daily
            .iter()
            .map(|x| (x.hybrid_usd, x.all_closed_usd, x.cumulative_savings_usd))
            .collect();
        assert_eq!(
            per_day,
            vec![(1.5, 6.0, 4.5), (0.0, 0.0, 4.5), (1.0, 3.0, 6.5)]
        );
        let teams: Vec<(&str, f64)> = d
            .by_team
            .iter()
            .map(|t| (t.name.as_str(), t.spend_usd))
            .collect();
        assert_eq!(teams, vec![("support", 2.0), ("legal", 0.5)]);
        let backends: Vec<&str> = d.by_backend.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(backends, vec!["gpt", "local-moe", NO_BACKEND]);
        // Requests that reached no target have no latency row.
        let lat: Vec<(&str, i64)> = d
            .latency
            .iter()
            .map(|l| (l.backend.as_str(), l.requests))
            .collect();
        assert_eq!(lat, vec![("gpt", 2), ("local-moe", 1)]);
        assert_eq!(d.latency[0].p50_ms, Some(100.0));
        let privacy: Vec<(&str, bool, i64, i64)> = d
            .privacy
            .iter()
            .map(|p| (p.backend.as_str(), p.local, p.kept_home, p.other))
            .collect();
        assert_eq!(
            privacy,
            vec![
                ("local-moe", true, 1, 0),
                ("gpt", false, 0, 2),
                (NO_BACKEND, false, 1, 0)
            ]
        );
        assert!(
            d.notes.iter().any(|n| n.contains("estimate")),
            "{:?}",
            d.notes
        );
    }

    #[tokio::test]
    async fn the_team_filter_narrows_figures_but_not_the_team_list() {
        let rows = vec![
            rec("a", "2026-11-01", 1, "legal", "local-moe", "llama.cpp"),
            rec("b", "2026-11-01", 2, "support", "gpt", "openai"),
        ];
        let f = Filter::new(day("2026-11-01"), day("2026-11-01"), Some("legal".into())).unwrap();
        let d = view(&rows, &f, &Context::default()).await;
        assert_eq!(d.teams, vec!["legal", "support"]);
        assert_eq!(d.summary.requests, 1);
        assert_eq!(d.by_team.len(), 1);
        assert_eq!(d.summary.remote_tokens, 0);
    }

    #[tokio::test]
    async fn idle_fleet_time_is_part_of_hybrid_spend_and_its_own_backend_row() {
        let mut local = rec("a", "2026-11-01", 1, "legal", "local-moe", "llama.cpp");
        local.cost_usd = 2.0;
        let f = Filter::new(day("2026-11-01"), day("2026-11-01"), None).unwrap();
        let cx = Context {
            fleet: Some(Fleet {
                gpus: 1.0,
                gpu_hour_usd: 1.0,
            }),
            counterfactual_model: Some("claude-sonnet-4.6".into()),
            now_ms: day_start_ms(day("2026-11-30")),
        };
        let d = view(&[local], &f, &cx).await;
        // A whole day of one GPU at $1/h is $24, of which the request used $2.
        assert_eq!(d.summary.idle_usd, Some(22.0));
        assert_eq!(d.summary.hybrid_usd, 24.0);
        assert_eq!(d.summary.recorded_usd, 2.0);
        assert_eq!(d.daily[0].hybrid_usd, 24.0);
        let idle = d.by_backend.iter().find(|b| b.name == IDLE_ROW).unwrap();
        assert_eq!(idle.spend_usd, 22.0);
        // One team's view leaves idle time out: it belongs to no team.
        let legal = Filter::new(f.from, f.to, Some("legal".into())).unwrap();
        let d = view(
            &[rec("b", "2026-11-01", 1, "legal", "gpt", "openai")],
            &legal,
            &cx,
        )
        .await;
        assert_eq!(d.summary.idle_usd, None);
        assert!(d.by_backend.iter().all(|b| b.name != IDLE_ROW));
    }
}
