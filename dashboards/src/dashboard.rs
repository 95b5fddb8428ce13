//! The dashboard's figures for one date range and team: daily spend hybrid
//! against all-closed, cumulative savings, spend by team and by backend,
//! token volume local against remote, latency percentiles per backend and
//! where each privacy level was routed. Each figure serializes as the JSON
//! behind its chart; `page` draws them.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate};
use serde::Serialize;
use watershed_providers::BackendKind;

use crate::error::LedgerError;
use crate::ledger::{LedgerRecord, LedgerStore};

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

    fn admits(&self, r: &LedgerRecord) -> bool {
        self.team.as_deref().is_none_or(|t| r.team == t)
    }
}

fn day_start_ms(d: NaiveDate) -> i64 {
    d.and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc().timestamp_millis())
        .unwrap_or(0)
}

/// The UTC day a record belongs to.
pub fn day_of(ts_ms: i64) -> Option<NaiveDate> {
    DateTime::from_timestamp_millis(ts_ms).map(|t| t.date_naive())
}

/// Where a request went, for the privacy view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// The in-process engine.
    Local,
    /// Any remote target (closed API or a remote open-model server).
    Remote,
    /// No target was tried (for example, no allowed target could serve it).
    Unsent,
}

impl Destination {
    pub fn of(r: &LedgerRecord) -> Self {
        if r.backend.is_empty() && r.backend_kind.is_empty() {
            Destination::Unsent
        } else if is_local_kind(&r.backend_kind) {
            Destination::Local
        } else {
            Destination::Remote
        }
    }
}

/// Whether a ledger `backend_kind` names the in-process engine.
pub fn is_local_kind(kind: &str) -> bool {
    kind == BackendKind::Local.otel_name() || kind == "local"
}

/// Totals of the whole view.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    pub requests: u64,
    pub hybrid_usd: f64,
    pub all_closed_usd: f64,
    pub savings_usd: f64,
    /// Savings as a percentage of the all-closed cost (0 when that is 0).
    pub savings_pct: f64,
    pub local_tokens: i64,
    pub remote_tokens: i64,
}

/// One day of spend.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DaySpend {
    pub day: NaiveDate,
    pub hybrid_usd: f64,
    pub all_closed_usd: f64,
    pub savings_usd: f64,
    /// Savings from the first day of the range up to and including this one.
    pub cumulative_savings_usd: f64,
}

/// Spend of one team or one backend.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpendRow {
    pub name: String,
    pub requests: u64,
    pub hybrid_usd: f64,
    pub all_closed_usd: f64,
}

/// One day of tokens (prompt + completion).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DayTokens {
    pub day: NaiveDate,
    pub local_tokens: i64,
    pub remote_tokens: i64,
}

/// Latency percentiles of one backend's successful requests.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencyRow {
    pub backend: String,
    pub requests: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub ttft_p50_ms: Option<f64>,
    pub ttft_p90_ms: Option<f64>,
}

/// Where the requests of one privacy level went.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PrivacyRow {
    pub privacy: String,
    pub local: u64,
    pub remote: u64,
    pub unsent: u64,
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
    pub tokens: Vec<DayTokens>,
    pub latency: Vec<LatencyRow>,
    pub privacy: Vec<PrivacyRow>,
}

/// Reads the range from the store and computes every figure.
pub async fn load(store: &dyn LedgerStore, filter: &Filter) -> Result<DashboardData, LedgerError> {
    let rows = store
        .list(filter.since_ms(), filter.until_ms(), i64::MAX)
        .await?;
    Ok(compute(filter, &rows))
}

/// Every figure from the records of the range (records outside it are ignored).
pub fn compute(filter: &Filter, rows: &[LedgerRecord]) -> DashboardData {
    let (since, until) = (filter.since_ms(), filter.until_ms());
    let in_range: Vec<&LedgerRecord> = rows
        .iter()
        .filter(|r| r.ts_ms >= since && r.ts_ms < until)
        .collect();
    let mut teams: Vec<String> = in_range.iter().map(|r| r.team.clone()).collect();
    teams.sort();
    teams.dedup();
    let rows: Vec<&LedgerRecord> = in_range.into_iter().filter(|r| filter.admits(r)).collect();

    let days = filter.days();
    let index: BTreeMap<NaiveDate, usize> = days.iter().enumerate().map(|(i, d)| (*d, i)).collect();
    let mut daily: Vec<DaySpend> = days
        .iter()
        .map(|d| DaySpend {
            day: *d,
            hybrid_usd: 0.0,
            all_closed_usd: 0.0,
            savings_usd: 0.0,
            cumulative_savings_usd: 0.0,
        })
        .collect();
    let mut tokens: Vec<DayTokens> = days
        .iter()
        .map(|d| DayTokens {
            day: *d,
            local_tokens: 0,
            remote_tokens: 0,
        })
        .collect();
    let mut by_team: BTreeMap<String, SpendRow> = BTreeMap::new();
    let mut by_backend: BTreeMap<String, SpendRow> = BTreeMap::new();
    let mut latencies: BTreeMap<String, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
    let mut privacy: BTreeMap<String, PrivacyRow> = BTreeMap::new();
    let mut summary = Summary::default();

    for r in &rows {
        let Some(i) = day_of(r.ts_ms).and_then(|d| index.get(&d).copied()) else {
            continue;
        };
        summary.requests += 1;
        summary.hybrid_usd += r.cost_usd;
        summary.all_closed_usd += r.counterfactual_usd;
        daily[i].hybrid_usd += r.cost_usd;
        daily[i].all_closed_usd += r.counterfactual_usd;
        let toks = r.prompt_tokens + r.completion_tokens;
        let dest = Destination::of(r);
        if dest == Destination::Local {
            tokens[i].local_tokens += toks;
            summary.local_tokens += toks;
        } else {
            tokens[i].remote_tokens += toks;
            summary.remote_tokens += toks;
        }
        for (map, key) in [(&mut by_team, &r.team), (&mut by_backend, &r.backend)] {
            let name = if key.is_empty() {
                "(none)"
            } else {
                key.as_str()
            };
            let row = map.entry(name.to_owned()).or_insert_with(|| SpendRow {
                name: name.to_owned(),
                requests: 0,
                hybrid_usd: 0.0,
                all_closed_usd: 0.0,
            });
            row.requests += 1;
            row.hybrid_usd += r.cost_usd;
            row.all_closed_usd += r.counterfactual_usd;
        }
        if (200..300).contains(&r.status) && !r.backend.is_empty() {
            let (lat, ttft) = latencies.entry(r.backend.clone()).or_default();
            lat.push(r.latency_ms);
            if let Some(t) = r.ttft_ms {
                ttft.push(t);
            }
        }
        let p = privacy
            .entry(r.privacy.clone())
            .or_insert_with(|| PrivacyRow {
                privacy: r.privacy.clone(),
                local: 0,
                remote: 0,
                unsent: 0,
            });
        match dest {
            Destination::Local => p.local += 1,
            Destination::Remote => p.remote += 1,
            Destination::Unsent => p.unsent += 1,
        }
    }

    let mut running = 0.0;
    for d in &mut daily {
        d.savings_usd = d.all_closed_usd - d.hybrid_usd;
        running += d.savings_usd;
        d.cumulative_savings_usd = running;
    }
    summary.savings_usd = summary.all_closed_usd - summary.hybrid_usd;
    summary.savings_pct = if summary.all_closed_usd > 0.0 {
        summary.savings_usd / summary.all_closed_usd * 100.0
    } else {
        0.0
    };
    let latency = latencies
        .into_iter()
        .map(|(backend, (mut lat, mut ttft))| {
            lat.sort_by(f64::total_cmp);
            ttft.sort_by(f64::total_cmp);
            LatencyRow {
                backend,
                requests: lat.len() as u64,
                p50_ms: percentile(&lat, 50.0).unwrap_or(0.0),
                p90_ms: percentile(&lat, 90.0).unwrap_or(0.0),
                p99_ms: percentile(&lat, 99.0).unwrap_or(0.0),
                ttft_p50_ms: percentile(&ttft, 50.0),
                ttft_p90_ms: percentile(&ttft, 90.0),
            }
        })
        .collect();
    let mut privacy: Vec<PrivacyRow> = privacy.into_values().collect();
    privacy.sort_by_key(|p| (privacy_rank(&p.privacy), p.privacy.clone()));
    let mut by_team: Vec<SpendRow> = by_team.into_values().collect();
    let mut by_backend: Vec<SpendRow> = by_backend.into_values().collect();
    // Biggest spenders first; names break ties so the order is stable.
    for v in [&mut by_team, &mut by_backend] {
        v.sort_by(|a, b| {
            b.hybrid_usd
                .total_cmp(&a.hybrid_usd)
                .then_with(|| a.name.cmp(&b.name))
        });
    }
    DashboardData {
        filter: filter.clone(),
        teams,
        summary,
        daily,
        by_team,
        by_backend,
        tokens,
        latency,
        privacy,
    }
}

/// Nearest-rank percentile of sorted values: the smallest value with at
/// least `p` percent of the values at or below it.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Privacy levels from least to most sensitive; unknown names last.
fn privacy_rank(level: &str) -> usize {
    ["public", "internal", "confidential", "restricted"]
        .iter()
        .position(|l| *l == level)
        .unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        }
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

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 90.0), Some(90.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[1.0, 2.0, 3.0], 50.0), Some(2.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn figures_add_up_per_day_team_backend_and_destination() {
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
        rows[0].latency_ms = 40.0;
        rows[1].latency_ms = 300.0;
        rows[2].latency_ms = 200.0;
        rows[2].ttft_ms = None;
        rows[4].status = 503;
        rows[4].cost_usd = 0.0;
        rows[4].counterfactual_usd = 0.0;
        let f = Filter::new(day("2026-11-01"), day("2026-11-03"), None).unwrap();
        let d = compute(&f, &rows);
        assert_eq!(d.teams, vec!["legal", "support"]);
        assert_eq!(d.summary.requests, 4);
        assert_eq!(d.summary.hybrid_usd, 2.5);
        assert_eq!(d.summary.all_closed_usd, 9.0);
        assert_eq!(d.summary.savings_usd, 6.5);
        assert_eq!((d.summary.local_tokens, d.summary.remote_tokens), (15, 45));
        let per_day: Vec<(f64, f64, f64)> = d
            .daily
            .iter()
            .map(|x| (x.hybrid_usd, x.all_closed_usd, x.cumulative_savings_usd))
            .collect();
        assert_eq!(
            per_day,
            vec![(1.5, 6.0, 4.5), (0.0, 0.0, 4.5), (1.0, 3.0, 6.5)]
        );
        assert_eq!(d.tokens[0].local_tokens, 15);
        assert_eq!(d.tokens[2].remote_tokens, 15);
        let teams: Vec<(&str, f64)> = d
            .by_team
            .iter()
            .map(|t| (t.name.as_str(), t.hybrid_usd))
            .collect();
        assert_eq!(teams, vec![("support", 2.0), ("legal", 0.5)]);
        let backends: Vec<&str> = d.by_backend.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(backends, vec!["gpt", "local-moe", "(none)"]);
        // Failed requests have no latency row; ttft percentiles skip missing values.
        assert_eq!(d.latency.len(), 2);
        let gpt = &d.latency[0];
        assert_eq!((gpt.backend.as_str(), gpt.requests), ("gpt", 2));
        assert_eq!((gpt.p50_ms, gpt.p99_ms), (200.0, 300.0));
        assert_eq!(gpt.ttft_p50_ms, Some(10.0));
        let privacy: Vec<(&str, u64, u64, u64)> = d
            .privacy
            .iter()
            .map(|p| (p.privacy.as_str(), p.local, p.remote, p.unsent))
            .collect();
        assert_eq!(
            privacy,
            vec![("internal", 0, 2, 1), ("confidential", 1, 0, 0)]
        );
    }

    #[test]
    fn the_team_filter_narrows_figures_but_not_the_team_list() {
        let rows = vec![
            rec("a", "2026-11-01", 1, "legal", "local-moe", "llama.cpp"),
            rec("b", "2026-11-01", 2, "support", "gpt", "openai"),
        ];
        let f = Filter::new(day("2026-11-01"), day("2026-11-01"), Some("legal".into())).unwrap();
        let d = compute(&f, &rows);
        assert_eq!(d.teams, vec!["legal", "support"]);
        assert_eq!(d.summary.requests, 1);
        assert_eq!(d.by_team.len(), 1);
        assert_eq!(d.summary.remote_tokens, 0);
    }
}
