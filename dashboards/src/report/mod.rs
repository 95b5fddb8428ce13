//! Reports over the ledger, for `watershed report` and the dashboard: spend,
//! counterfactual spend and savings, tokens, latency, privacy-routed requests,
//! errors and fallbacks for a period of whole UTC days, overall and grouped by
//! day, team, key, route, backend or model.
//!
//! Every figure comes from the daily rollups (`rollup`), never from a scan of
//! the raw ledger, so a report costs the same on ten million requests as on
//! ten thousand.
//!
//! Local cost, honestly: owned GPUs cost money busy or idle. For each day of
//! the period the fleet costs `gpus × gpu_hour_usd × hours` (hours of the day
//! inside the period and not in the future). Local requests carry their share
//! of it in `cost_usd` (engine seconds × the fleet's cost per second); a
//! request's engine seconds are its share of each decode step — the step's
//! wall time split among the sequences batched in it — so one engine's
//! requests never add up to more than its wall time. What the requests did not
//! use is that day's idle cost, and the hybrid total includes it. Only local
//! models running side by side (each on its own thread) can attribute more
//! than the fleet's wall-clock cost in a day; that day's idle cost is then 0
//! and the excess is reported, never hidden by scaling the requests down.

pub mod rollup;
mod text;

use std::collections::HashMap;

use chrono::NaiveDate;
use serde::Serialize;

use crate::error::LedgerError;
use crate::ledger::LedgerStore;
use rollup::{day_label, DAY_MS};
pub use rollup::{Dimension, Summary, PERCENTILE_RELATIVE_ERROR};

/// Whole UTC days `from_day <= day < to_day` (days since 1970-01-01).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Period {
    pub from_day: i64,
    pub to_day: i64,
}

impl Period {
    /// `from` to `to`, both days included.
    pub fn new(from: NaiveDate, to: NaiveDate) -> Result<Self, LedgerError> {
        if to < from {
            return Err(LedgerError::Invalid(format!(
                "the period ends ({to}) before it starts ({from})"
            )));
        }
        Ok(Self {
            from_day: epoch_day(from),
            to_day: epoch_day(to) + 1,
        })
    }

    /// The `days` days up to and including `to`.
    pub fn last_days(days: u32, to: NaiveDate) -> Self {
        let to_day = epoch_day(to) + 1;
        Self {
            from_day: to_day - i64::from(days.max(1)),
            to_day,
        }
    }

    /// From `--from`/`--to` (`YYYY-MM-DD`, both included): `to` defaults to
    /// `today`, `from` to 29 days before `to` (30 days in all).
    pub fn parse(
        from: Option<&str>,
        to: Option<&str>,
        today: NaiveDate,
    ) -> Result<Self, LedgerError> {
        let to = match to {
            Some(s) => parse_day(s)?,
            None => today,
        };
        match from {
            Some(s) => Self::new(parse_day(s)?, to),
            None => Ok(Self::last_days(30, to)),
        }
    }

    pub fn from_ms(&self) -> i64 {
        self.from_day * DAY_MS
    }

    pub fn to_ms(&self) -> i64 {
        self.to_day * DAY_MS
    }

    pub fn days(&self) -> i64 {
        self.to_day - self.from_day
    }

    /// The first day, `YYYY-MM-DD`.
    pub fn first(&self) -> String {
        day_label(self.from_day)
    }

    /// The last day (included), `YYYY-MM-DD`.
    pub fn last(&self) -> String {
        day_label(self.to_day - 1)
    }
}

fn epoch_day(d: NaiveDate) -> i64 {
    d.signed_duration_since(NaiveDate::default()).num_days()
}

/// Parses `YYYY-MM-DD`.
pub fn parse_day(s: &str) -> Result<NaiveDate, LedgerError> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
        .map_err(|_| LedgerError::Invalid(format!("invalid date \"{s}\" (expected YYYY-MM-DD)")))
}

/// The owned GPUs, as the config's `fleet:` prices them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Fleet {
    pub gpus: f64,
    pub gpu_hour_usd: f64,
}

impl Fleet {
    pub fn usd_per_hour(&self) -> f64 {
        self.gpus * self.gpu_hour_usd
    }
}

/// What to report on.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportQuery {
    pub period: Period,
    /// Only this team's requests (the fleet's idle cost is then left out: it
    /// belongs to no team).
    pub team: Option<String>,
    /// The config's fleet; without one local requests cost 0 and nothing is idle.
    pub fleet: Option<Fleet>,
    /// The config's all-closed reference model, named in the report's notes.
    pub counterfactual_model: Option<String>,
    /// Unix ms of "now": fleet hours are not counted in the future.
    pub now_ms: i64,
}

impl ReportQuery {
    pub fn new(period: Period, now_ms: i64) -> Self {
        Self {
            period,
            team: None,
            fleet: None,
            counterfactual_model: None,
            now_ms,
        }
    }

    /// The fleet that applies to this query: none for a one-team report.
    fn fleet(&self) -> Option<Fleet> {
        if self.team.is_some() {
            None
        } else {
            self.fleet
        }
    }

    /// Hours of `day` inside the period and not after `now_ms`.
    fn fleet_hours(&self, day: i64) -> f64 {
        let start = (day * DAY_MS).max(self.period.from_ms());
        let end = ((day + 1) * DAY_MS)
            .min(self.period.to_ms())
            .min(self.now_ms);
        (end - start).max(0) as f64 / 3_600_000.0
    }
}

/// Figures derived from a `Summary`. Money in USD, times in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    pub requests: i64,
    /// Prompt tokens (for local requests: the local model's tokenizer).
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached_tokens: i64,
    /// Recorded spend: API prices for remote requests plus local requests'
    /// attributed share of the fleet. Idle fleet time is not in it.
    pub spend_usd: f64,
    pub local_spend_usd: f64,
    pub remote_spend_usd: f64,
    /// The same requests priced at the all-closed reference model.
    pub counterfactual_usd: f64,
    /// From the latency histogram: within `PERCENTILE_RELATIVE_ERROR`.
    pub latency_p50_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    pub latency_mean_ms: Option<f64>,
    /// Mean time to first token over the requests that recorded one.
    pub ttft_mean_ms: Option<f64>,
    /// Completion tokens per second of request time, over requests answered
    /// with a status below 400.
    pub tokens_per_s: Option<f64>,
    /// Requests at confidential or restricted, which the policy keeps home.
    pub privacy_routed: i64,
    /// Requests answered with a status of 400 or more.
    pub errors: i64,
    /// Requests that tried more than one target.
    pub fallbacks: i64,
    pub local_requests: i64,
    pub engine_seconds: f64,
}

impl Stats {
    pub fn of(s: &Summary) -> Self {
        let per = |num: f64, den: f64| (den > 0.0).then(|| num / den);
        Self {
            requests: s.requests,
            prompt_tokens: s.prompt_tokens,
            completion_tokens: s.completion_tokens,
            cached_tokens: s.cached_tokens,
            spend_usd: s.cost_usd,
            local_spend_usd: s.local_cost_usd,
            remote_spend_usd: s.cost_usd - s.local_cost_usd,
            counterfactual_usd: s.counterfactual_usd,
            latency_p50_ms: s.latency_percentile(0.50),
            latency_p95_ms: s.latency_percentile(0.95),
            latency_p99_ms: s.latency_percentile(0.99),
            latency_mean_ms: per(s.latency_ms, s.requests as f64),
            ttft_mean_ms: per(s.ttft_ms, s.ttft_count as f64),
            tokens_per_s: per(s.ok_completion_tokens as f64, s.ok_latency_ms / 1000.0),
            privacy_routed: s.privacy_routed,
            errors: s.errors,
            fallbacks: s.fallbacks,
            local_requests: s.local_requests,
            engine_seconds: s.engine_seconds,
        }
    }
}

/// Savings as a percentage of the counterfactual; `None` when that is 0.
fn pct(savings: f64, counterfactual: f64) -> Option<f64> {
    (counterfactual > 0.0).then(|| savings / counterfactual * 100.0)
}

/// One group of a breakdown.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupRow {
    /// The group's value: `YYYY-MM-DD` for days, else the team, key id,
    /// route, backend id or model name.
    pub key: String,
    #[serde(flatten)]
    pub stats: Stats,
    /// Day rows only (and only with a fleet and no team filter): the fleet's
    /// cost that day, and the part of it no request used.
    pub fleet_usd: Option<f64>,
    pub idle_usd: Option<f64>,
    /// `spend_usd + idle_usd`.
    pub hybrid_spend_usd: f64,
    /// `counterfactual_usd - hybrid_spend_usd`.
    pub savings_usd: f64,
    /// Savings as a percentage of the counterfactual; `None` when that is 0.
    pub savings_pct: Option<f64>,
}

impl GroupRow {
    fn new(key: String, s: &Summary, fleet_usd: Option<f64>) -> Self {
        let stats = Stats::of(s);
        let idle_usd = fleet_usd.map(|f| (f - s.local_cost_usd).max(0.0));
        let hybrid_spend_usd = stats.spend_usd + idle_usd.unwrap_or(0.0);
        let savings_usd = stats.counterfactual_usd - hybrid_spend_usd;
        Self {
            key,
            savings_pct: pct(savings_usd, stats.counterfactual_usd),
            stats,
            fleet_usd,
            idle_usd,
            hybrid_spend_usd,
            savings_usd,
        }
    }
}

/// The fleet's cost over a period and where it went.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetCost {
    pub gpus: f64,
    pub gpu_hour_usd: f64,
    /// Hours of the period up to now.
    pub hours: f64,
    /// `gpus × gpu_hour_usd × hours`.
    pub fleet_usd: f64,
    /// Sum of the local requests' recorded cost.
    pub attributed_usd: f64,
    /// Per day `max(0, fleet − attributed)`, summed.
    pub idle_usd: f64,
    /// Per day `max(0, attributed − fleet)`, summed: engine time beyond the
    /// wall clock, possible only with several local models running at once.
    pub excess_usd: f64,
    pub excess_days: i64,
}

/// The whole period at a glance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Overview {
    /// First and last day, `YYYY-MM-DD`, both included.
    pub from: String,
    pub to: String,
    pub team: Option<String>,
    pub totals: Stats,
    pub fleet: Option<FleetCost>,
    /// Recorded spend plus idle fleet cost.
    pub hybrid_spend_usd: f64,
    pub counterfactual_usd: f64,
    /// `counterfactual_usd - hybrid_spend_usd`.
    pub savings_usd: f64,
    pub savings_pct: Option<f64>,
    /// Caveats a reader needs: the counterfactual's tokenizer, how local cost
    /// is attributed, the percentiles' resolution.
    pub notes: Vec<String>,
}

/// An overview and one breakdown.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub by: Dimension,
    pub overview: Overview,
    pub rows: Vec<GroupRow>,
}

/// Sums per group of `by` over the query's period (and team), in group order.
/// Day groups are only the days that have requests; `daily` fills the gaps.
pub async fn breakdown(
    store: &dyn LedgerStore,
    q: &ReportQuery,
    by: Dimension,
) -> Result<Vec<GroupRow>, LedgerError> {
    if by == Dimension::Day {
        return daily(store, q).await;
    }
    let groups = store
        .summarize(
            q.period.from_day,
            q.period.to_day,
            Some(by),
            q.team.as_deref(),
        )
        .await?;
    Ok(groups
        .into_iter()
        .map(|(key, s)| GroupRow::new(key, &s, None))
        .collect())
}

/// Every day of the period, in order, days without requests included, each
/// with the fleet's cost and idle cost that day when a fleet applies.
pub async fn daily(store: &dyn LedgerStore, q: &ReportQuery) -> Result<Vec<GroupRow>, LedgerError> {
    Ok(day_summaries(store, q)
        .await?
        .into_iter()
        .map(|(day, s)| {
            let fleet = q.fleet().map(|f| f.usd_per_hour() * q.fleet_hours(day));
            GroupRow::new(day_label(day), &s, fleet)
        })
        .collect())
}

async fn day_summaries(
    store: &dyn LedgerStore,
    q: &ReportQuery,
) -> Result<Vec<(i64, Summary)>, LedgerError> {
    let mut found: HashMap<String, Summary> = store
        .summarize(
            q.period.from_day,
            q.period.to_day,
            Some(Dimension::Day),
            q.team.as_deref(),
        )
        .await?
        .into_iter()
        .collect();
    Ok((q.period.from_day..q.period.to_day)
        .map(|day| (day, found.remove(&day_label(day)).unwrap_or_default()))
        .collect())
}

/// The period's totals, the fleet's cost split into attributed and idle, and
/// hybrid against all-closed.
pub async fn overview(store: &dyn LedgerStore, q: &ReportQuery) -> Result<Overview, LedgerError> {
    let days = day_summaries(store, q).await?;
    Ok(overview_of(q, &days))
}

/// An overview and a breakdown by `by`.
pub async fn report(
    store: &dyn LedgerStore,
    q: &ReportQuery,
    by: Dimension,
) -> Result<Report, LedgerError> {
    let days = day_summaries(store, q).await?;
    let overview = overview_of(q, &days);
    let rows = match by {
        Dimension::Day => days
            .iter()
            .map(|(day, s)| {
                let fleet = q.fleet().map(|f| f.usd_per_hour() * q.fleet_hours(*day));
                GroupRow::new(day_label(*day), s, fleet)
            })
            .collect(),
        _ => breakdown(store, q, by).await?,
    };
    Ok(Report { by, overview, rows })
}

fn overview_of(q: &ReportQuery, days: &[(i64, Summary)]) -> Overview {
    let mut total = Summary::default();
    for (_, s) in days {
        total.merge(s);
    }
    let totals = Stats::of(&total);
    let fleet = q.fleet().map(|f| {
        let mut c = FleetCost {
            gpus: f.gpus,
            gpu_hour_usd: f.gpu_hour_usd,
            hours: 0.0,
            fleet_usd: 0.0,
            attributed_usd: 0.0,
            idle_usd: 0.0,
            excess_usd: 0.0,
            excess_days: 0,
        };
        for (day, s) in days {
            let hours = q.fleet_hours(*day);
            let cost = f.usd_per_hour() * hours;
            c.hours += hours;
            c.fleet_usd += cost;
            c.attributed_usd += s.local_cost_usd;
            c.idle_usd += (cost - s.local_cost_usd).max(0.0);
            let excess = s.local_cost_usd - cost;
            if excess > 0.0 {
                c.excess_usd += excess;
                c.excess_days += 1;
            }
        }
        c
    });
    let idle = fleet.as_ref().map_or(0.0, |f| f.idle_usd);
    let hybrid_spend_usd = totals.spend_usd + idle;
    let savings_usd = totals.counterfactual_usd - hybrid_spend_usd;
    let notes = notes(q, &totals, fleet.as_ref());
    Overview {
        from: q.period.first(),
        to: q.period.last(),
        team: q.team.clone(),
        hybrid_spend_usd,
        counterfactual_usd: totals.counterfactual_usd,
        savings_usd,
        savings_pct: pct(savings_usd, totals.counterfactual_usd),
        totals,
        fleet,
        notes,
    }
}

fn notes(q: &ReportQuery, totals: &Stats, fleet: Option<&FleetCost>) -> Vec<String> {
    use crate::render::usd;
    let mut notes = Vec::new();
    let reference = q
        .counterfactual_model
        .as_deref()
        .map(|m| format!(" ({m})"))
        .unwrap_or_default();
    notes.push(format!(
        "Counterfactual: every request priced as if it had gone to the all-closed reference \
         model{reference}. Local requests' token counts come from the local model's tokenizer; \
         the reference model's tokenizer counts differently, so their counterfactual is an \
         estimate."
    ));
    match fleet {
        Some(f) => {
            notes.push(format!(
                "Local cost: the fleet costs {} ({} GPUs x {}/h x {:.1} h) busy or idle. Local \
                 requests carry {} of it by their share of engine time (each decode step's time \
                 split among the sequences batched in it); the {} no request used is idle cost, \
                 included in the hybrid total.",
                usd(f.fleet_usd),
                f.gpus,
                usd(f.gpu_hour_usd),
                f.hours,
                usd(f.attributed_usd),
                usd(f.idle_usd),
            ));
            if f.excess_days > 0 {
                notes.push(format!(
                    "On {} day(s) local requests' engine time exceeded the fleet's wall-clock \
                     time (several local models running at once): {} attributed beyond the \
                     fleet's cost is kept as recorded, and those days have no idle cost.",
                    f.excess_days,
                    usd(f.excess_usd)
                ));
            }
        }
        None if q.team.is_some() && q.fleet.is_some() => notes.push(
            "Idle fleet time belongs to no team, so a one-team report leaves it out; local \
             requests show their attributed share."
                .into(),
        ),
        None if totals.local_requests > 0 => notes.push(
            "No fleet in the config: local requests cost nothing here and no idle cost is shown."
                .into(),
        ),
        None => {}
    }
    notes.push(format!(
        "Latency percentiles come from daily histograms with four buckets per doubling \
         (each 19% wide), read at the bucket's geometric middle: within {:.1}% of the exact value.",
        PERCENTILE_RELATIVE_ERROR * 100.0
    ));
    notes
}
