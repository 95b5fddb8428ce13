//! The capacity planner: tiers of traffic, each served self-hosted (a fixed
//! GPU cost per day) or through an API (a blended price per million tokens),
//! against the all-closed alternative; hybrid vs all-closed per day and month,
//! savings, and the daily volume at which self-hosting beats the API.
//!
//! The plan arrives as data (the CLI parses the YAML through `policies`); see
//! `config/plans/seed-hybrid.yaml` for the seed chapter's three-tier example.

use serde::{Deserialize, Serialize};

use crate::error::LedgerError;
use crate::pricing::PriceTable;
use crate::render::{count, usd, Format, Table};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Days a month is reckoned as (the chapter uses 30).
    #[serde(default = "thirty")]
    pub days_per_month: f64,
    /// The self-hosted set-up API tiers are compared against for their
    /// break-even volume, unless a tier names its own.
    #[serde(default)]
    pub self_hosted_reference: Option<SelfHosted>,
    pub tiers: Vec<Tier>,
}

fn thirty() -> f64 {
    30.0
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    pub name: String,
    pub tokens_per_day: f64,
    /// How the hybrid set-up serves this tier.
    pub serve: Serving,
    /// What the same traffic would cost on closed models.
    pub all_closed: ApiPrice,
    /// For an API tier: the self-hosted set-up its break-even is computed for.
    #[serde(default)]
    pub self_hosted_alternative: Option<SelfHosted>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Serving {
    SelfHosted(SelfHosted),
    Api(ApiPrice),
}

/// Owned GPUs: they cost the same busy or idle.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SelfHosted {
    #[serde(default)]
    pub model: Option<String>,
    pub gpus: f64,
    pub gpu_hour_usd: f64,
    #[serde(default = "twenty_four")]
    pub hours_per_day: f64,
}

fn twenty_four() -> f64 {
    24.0
}

impl SelfHosted {
    pub fn per_day(&self) -> f64 {
        self.gpus * self.gpu_hour_usd * self.hours_per_day
    }
}

/// An API's price for this traffic: a blended USD per million tokens, or the
/// model's input/output prices from the price table mixed by `input_fraction`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiPrice {
    pub model: String,
    #[serde(default)]
    pub blended_usd_per_mtok: Option<f64>,
    #[serde(default)]
    pub input_fraction: Option<f64>,
}

impl ApiPrice {
    /// USD per million tokens of this traffic at the prices in force at `at_ms`.
    pub fn blended(&self, prices: &PriceTable, at_ms: i64) -> Result<f64, LedgerError> {
        if let Some(b) = self.blended_usd_per_mtok {
            return Ok(b);
        }
        let f = self.input_fraction.ok_or_else(|| {
            LedgerError::Invalid(format!(
                "api price for \"{}\" needs blended_usd_per_mtok or input_fraction",
                self.model
            ))
        })?;
        if !(0.0..=1.0).contains(&f) {
            return Err(LedgerError::Invalid(format!(
                "input_fraction of \"{}\" must be within 0..1, got {f}",
                self.model
            )));
        }
        let p = prices.price_at(&self.model, at_ms).ok_or_else(|| {
            LedgerError::Invalid(format!("no price for model \"{}\"", self.model))
        })?;
        Ok(f * p.input + (1.0 - f) * p.output)
    }
}

/// One tier's outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TierResult {
    pub name: String,
    pub solution: String,
    pub tokens_per_day: f64,
    pub hybrid_per_day: f64,
    pub all_closed_per_day: f64,
    pub savings_per_day: f64,
    /// Tokens a day above which self-hosting costs less than the API it is
    /// compared with; `None` when the tier has no self-hosted side to compare.
    pub break_even_tokens_per_day: Option<f64>,
}

/// The plan's outcome: per tier, then totals.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanResult {
    pub days_per_month: f64,
    pub tiers: Vec<TierResult>,
    pub hybrid_per_day: f64,
    pub all_closed_per_day: f64,
    pub hybrid_per_month: f64,
    pub all_closed_per_month: f64,
    pub savings_per_day: f64,
    pub savings_per_month: f64,
    /// Savings as a percentage of the all-closed cost.
    pub savings_pct: f64,
}

impl Plan {
    /// Reads a plan from parsed YAML or JSON, naming the offending key.
    pub fn from_value(v: serde_json::Value) -> Result<Self, LedgerError> {
        serde_json::from_value(v).map_err(|e| LedgerError::Invalid(format!("invalid plan: {e}")))
    }

    /// Evaluates the plan at the prices in force at `at_ms` (unix ms).
    pub fn evaluate(&self, prices: &PriceTable, at_ms: i64) -> Result<PlanResult, LedgerError> {
        if self.tiers.is_empty() {
            return Err(LedgerError::Invalid(
                "a plan needs at least one tier".into(),
            ));
        }
        let mut tiers = Vec::with_capacity(self.tiers.len());
        for t in &self.tiers {
            if !t.tokens_per_day.is_finite() || t.tokens_per_day < 0.0 {
                return Err(LedgerError::Invalid(format!(
                    "tokens_per_day of tier \"{}\" must be a non-negative number",
                    t.name
                )));
            }
            let mtok = t.tokens_per_day / 1_000_000.0;
            let closed_rate = t.all_closed.blended(prices, at_ms)?;
            let all_closed_per_day = mtok * closed_rate;
            let (hybrid_per_day, solution, break_even) = match &t.serve {
                Serving::SelfHosted(s) => (
                    s.per_day(),
                    format!(
                        "{} self-hosted on {} GPU(s) at {}/h",
                        s.model.as_deref().unwrap_or("model"),
                        s.gpus,
                        usd(s.gpu_hour_usd)
                    ),
                    break_even(s.per_day(), closed_rate),
                ),
                Serving::Api(a) => {
                    let rate = a.blended(prices, at_ms)?;
                    let alt = t
                        .self_hosted_alternative
                        .as_ref()
                        .or(self.self_hosted_reference.as_ref());
                    (
                        mtok * rate,
                        format!("{} API at {}/MTok blended", a.model, usd(rate)),
                        alt.and_then(|s| break_even(s.per_day(), rate)),
                    )
                }
            };
            tiers.push(TierResult {
                name: t.name.clone(),
                solution,
                tokens_per_day: t.tokens_per_day,
                hybrid_per_day,
                all_closed_per_day,
                savings_per_day: all_closed_per_day - hybrid_per_day,
                break_even_tokens_per_day: break_even,
            });
        }
        let hybrid_per_day: f64 = tiers.iter().map(|t| t.hybrid_per_day).sum();
        let all_closed_per_day: f64 = tiers.iter().map(|t| t.all_closed_per_day).sum();
        let savings_per_day = all_closed_per_day - hybrid_per_day;
        Ok(PlanResult {
            days_per_month: self.days_per_month,
            hybrid_per_day,
            all_closed_per_day,
            hybrid_per_month: hybrid_per_day * self.days_per_month,
            all_closed_per_month: all_closed_per_day * self.days_per_month,
            savings_per_day,
            savings_per_month: savings_per_day * self.days_per_month,
            savings_pct: if all_closed_per_day > 0.0 {
                savings_per_day / all_closed_per_day * 100.0
            } else {
                0.0
            },
            tiers,
        })
    }
}

/// Tokens a day at which a fixed daily cost equals an API bill.
fn break_even(fixed_per_day: f64, usd_per_mtok: f64) -> Option<f64> {
    (usd_per_mtok > 0.0).then(|| fixed_per_day / usd_per_mtok * 1_000_000.0)
}

impl PlanResult {
    pub fn table(&self) -> Table {
        let mut t = Table::new(
            "Hybrid vs all-closed",
            &[
                "tier",
                "solution",
                "tokens/day",
                "hybrid/day",
                "all-closed/day",
                "savings/day",
                "break-even tokens/day",
            ],
        );
        for r in &self.tiers {
            t.rows.push(vec![
                r.name.clone(),
                r.solution.clone(),
                count(r.tokens_per_day),
                usd(r.hybrid_per_day),
                usd(r.all_closed_per_day),
                usd(r.savings_per_day),
                r.break_even_tokens_per_day
                    .map(count)
                    .unwrap_or_else(|| "-".into()),
            ]);
        }
        t.rows.push(vec![
            "total".into(),
            String::new(),
            count(self.tiers.iter().map(|r| r.tokens_per_day).sum()),
            usd(self.hybrid_per_day),
            usd(self.all_closed_per_day),
            usd(self.savings_per_day),
            String::new(),
        ]);
        let d = self.days_per_month;
        t.notes.push(format!(
            "Per month ({d} days): hybrid {}, all-closed {}, savings {} ({:.0}%)",
            usd(self.hybrid_per_month),
            usd(self.all_closed_per_month),
            usd(self.savings_per_month),
            self.savings_pct
        ));
        t.notes.push(
            "Self-hosted cost is the GPUs' fixed cost whatever the volume; break-even assumes \
             the GPUs can serve that volume."
                .into(),
        );
        t
    }

    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Table => self.table().to_text(),
            Format::Csv => self.table().to_csv(),
            Format::Json => serde_json::to_string_pretty(self).unwrap_or_else(|e| {
                format!("{{\"error\":{}}}", serde_json::Value::String(e.to_string()))
            }),
        }
    }
}
