//! Budget state, evaluated purely from a spend snapshot the gateway passes in (the
//! ledger and the clock live outside this crate).

use std::fmt;
use std::str::FromStr;

/// Where a team or key stands against its limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum BudgetState {
    /// Under the alert threshold, or no limit at all.
    #[default]
    Available,
    /// At or past `alert_at` of a limit, not yet over it.
    Alerting,
    /// A limit would be exceeded by this request.
    Exhausted,
}

impl BudgetState {
    /// The name used in YAML and explanations.
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetState::Available => "available",
            BudgetState::Alerting => "alerting",
            BudgetState::Exhausted => "exhausted",
        }
    }
}

impl fmt::Display for BudgetState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not a budget state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown budget state \"{0}\" (expected available, alerting or exhausted)")]
pub struct UnknownBudgetState(pub String);

impl FromStr for BudgetState {
    type Err = UnknownBudgetState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "available" => Ok(BudgetState::Available),
            "alerting" => Ok(BudgetState::Alerting),
            "exhausted" => Ok(BudgetState::Exhausted),
            other => Err(UnknownBudgetState(other.to_string())),
        }
    }
}

/// What happens to a request once its budget is exhausted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnExhausted {
    /// Route to the cheapest allowed target (usually local) and say so.
    #[default]
    Downgrade,
    /// Refuse with 429, naming the budget, what is left and when it resets.
    Reject,
}

/// The window a limit applies to; the gateway turns it into a reset time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetWindow {
    /// The current UTC day.
    Daily,
    /// The current UTC month.
    Monthly,
}

impl BudgetWindow {
    /// `daily` or `monthly`.
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetWindow::Daily => "daily",
            BudgetWindow::Monthly => "monthly",
        }
    }
}

/// Limits of one team or key.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BudgetLimits {
    /// USD per UTC day.
    pub daily_usd: Option<f64>,
    /// USD per UTC month.
    pub monthly_usd: Option<f64>,
    /// Fraction of a limit at which to alert (0..1).
    pub alert_at: Option<f64>,
    /// What to do when exhausted.
    pub on_exhausted: OnExhausted,
}

/// Spend so far, as the ledger knows it, including open reservations.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SpendSnapshot {
    /// Settled spend in the current day.
    pub day_usd: f64,
    /// Settled spend in the current month.
    pub month_usd: f64,
    /// Reservations of requests in flight (counted in both windows).
    pub reserved_usd: f64,
}

/// The outcome for one request.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetEval {
    /// The overall state: the worst over all windows.
    pub state: BudgetState,
    /// The window that decided the state, when a limit did.
    pub window: Option<BudgetWindow>,
    /// That window's limit.
    pub limit_usd: Option<f64>,
    /// What is left in that window before this request (never negative).
    pub remaining_usd: Option<f64>,
    /// What to do if exhausted.
    pub on_exhausted: OnExhausted,
}

/// Evaluates limits against spend plus the upper-bound cost of the request about to be
/// sent. A free request (cost 0, e.g. local) never exhausts a budget that is not
/// already over.
pub fn evaluate_budget(
    limits: &BudgetLimits,
    spend: &SpendSnapshot,
    request_cost_usd: f64,
) -> BudgetEval {
    let alert_at = limits.alert_at.unwrap_or(1.0);
    let cost = request_cost_usd.max(0.0);
    let mut best = BudgetEval {
        state: BudgetState::Available,
        window: None,
        limit_usd: None,
        remaining_usd: None,
        on_exhausted: limits.on_exhausted,
    };
    let windows = [
        (BudgetWindow::Daily, limits.daily_usd, spend.day_usd),
        (BudgetWindow::Monthly, limits.monthly_usd, spend.month_usd),
    ];
    for (window, limit, spent) in windows {
        let Some(limit) = limit else { continue };
        let used = spent + spend.reserved_usd;
        let remaining = (limit - used).max(0.0);
        let state = if used >= limit || (cost > 0.0 && used + cost > limit) {
            BudgetState::Exhausted
        } else if used + cost >= alert_at * limit {
            BudgetState::Alerting
        } else {
            BudgetState::Available
        };
        // The worst window wins; on a tie, the one with less left is the one to report.
        let worse = state > best.state
            || (state == best.state && best.remaining_usd.is_none_or(|r| remaining < r));
        if worse {
            best.state = state;
            best.window = Some(window);
            best.limit_usd = Some(limit);
            best.remaining_usd = Some(remaining);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> BudgetLimits {
        BudgetLimits {
            daily_usd: Some(200.0),
            monthly_usd: Some(5000.0),
            alert_at: Some(0.8),
            on_exhausted: OnExhausted::Reject,
        }
    }

    #[test]
    fn states_follow_spend() {
        let s = |day, month, reserved| SpendSnapshot {
            day_usd: day,
            month_usd: month,
            reserved_usd: reserved,
        };
        let e = evaluate_budget(&limits(), &s(10.0, 100.0, 0.0), 1.0);
        assert_eq!(e.state, BudgetState::Available);
        let e = evaluate_budget(&limits(), &s(150.0, 100.0, 10.0), 1.0);
        assert_eq!(
            (e.state, e.window, e.remaining_usd),
            (BudgetState::Alerting, Some(BudgetWindow::Daily), Some(40.0))
        );
        let e = evaluate_budget(&limits(), &s(199.5, 300.0, 0.0), 1.0);
        assert_eq!(
            (e.state, e.window),
            (BudgetState::Exhausted, Some(BudgetWindow::Daily))
        );
        assert_eq!(e.on_exhausted, OnExhausted::Reject);
        let e = evaluate_budget(&limits(), &s(10.0, 5000.0, 0.0), 0.0);
        assert_eq!(
            (e.state, e.window, e.remaining_usd),
            (
                BudgetState::Exhausted,
                Some(BudgetWindow::Monthly),
                Some(0.0)
            )
        );
    }

    #[test]
    fn free_requests_do_not_exhaust_and_no_limit_is_available() {
        let s = SpendSnapshot {
            day_usd: 199.9,
            month_usd: 0.0,
            reserved_usd: 0.0,
        };
        assert_eq!(
            evaluate_budget(&limits(), &s, 0.0).state,
            BudgetState::Alerting
        );
        let e = evaluate_budget(&BudgetLimits::default(), &s, 1e9);
        assert_eq!((e.state, e.window), (BudgetState::Available, None));
    }

    #[test]
    fn states_parse() {
        assert_eq!(
            "exhausted".parse::<BudgetState>(),
            Ok(BudgetState::Exhausted)
        );
        assert!("broke".parse::<BudgetState>().is_err());
    }
}
