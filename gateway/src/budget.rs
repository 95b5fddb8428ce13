//! The spend book behind budgets: what each team and key has spent on paid
//! (remote) targets in the current UTC day and month, plus reservations of
//! requests in flight. Seeded from the ledger at start, reserved before
//! dispatch from an upper-bound cost, settled with the real cost when the
//! request's ledger record is written. Local answers cost nothing here: the
//! fleet is paid for whether it is busy or not, so budgets never close it.
//!
//! On a SQLite ledger the book lives in the process, seeded from the ledger
//! at start. On a PostgreSQL ledger the same book is the replica's view of
//! the budgets all replicas share (`shared`): every reservation is also a
//! conditional update there, the figures are re-read before each paid
//! request is decided, and settles are written back by a sync task. One book,
//! one set of rules (`evaluate_budget`), two places the money is kept.
//!
//! The book has no clock of its own: every call that decides by the date
//! (seed, verdict, reserve, settle, publish) is given `now` by its caller,
//! which reads it from the application's one clock
//! (`watershed_dashboards::clock`).
//!
//! A request's cost counts in the windows of the instant it was reserved —
//! its start, the same instant as its ledger record's `ts_ms` — not of the
//! instant it settled. A request reserved at 23:59:59 and settled at
//! 00:00:03 is yesterday's spend (and last month's, across a month end), so
//! the live book agrees with what a replica seeded from the ledger reads.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Datelike, TimeZone, Utc};
use tracing::warn;
use watershed_policies::{
    evaluate_budget, BudgetEval, BudgetLimits, BudgetState, BudgetWindow, Config, SpendSnapshot,
};

use crate::access::Caller;
use crate::metrics::{self, Metrics};

mod shared;

use shared::Held;
pub use shared::{start_sync, Refusal, SharedStore, SpendRow};

/// Whose budget: a team's or a single key's.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    Team(String),
    Key(String),
}

impl Scope {
    pub fn kind(&self) -> &'static str {
        match self {
            Scope::Team(_) => "team",
            Scope::Key(_) => "key",
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Scope::Team(n) | Scope::Key(n) => n,
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} \"{}\"", self.kind(), self.name())
    }
}

/// Settled spend of one ledger group, for seeding the book.
#[derive(Debug, Clone, PartialEq)]
pub struct Settled {
    pub team: String,
    pub key_id: String,
    pub day_usd: f64,
    pub month_usd: f64,
}

#[derive(Debug, Default, Clone)]
struct Entry {
    day: i64,
    month: i64,
    day_usd: f64,
    month_usd: f64,
    reserved_usd: f64,
    /// The day (and month) an alert was last raised for, so each window alerts once.
    alerted_day: Option<i64>,
    alerted_month: Option<i64>,
}

fn day_index(t: DateTime<Utc>) -> i64 {
    i64::from(t.num_days_from_ce())
}

fn month_index(t: DateTime<Utc>) -> i64 {
    i64::from(t.year()) * 12 + i64::from(t.month0())
}

impl Entry {
    /// Starts new windows when the day or month changed.
    fn roll(&mut self, now: DateTime<Utc>) {
        let (d, m) = (day_index(now), month_index(now));
        if self.day != d {
            self.day = d;
            self.day_usd = 0.0;
        }
        if self.month != m {
            self.month = m;
            self.month_usd = 0.0;
        }
    }

    fn snapshot(&self) -> SpendSnapshot {
        SpendSnapshot {
            day_usd: self.day_usd,
            month_usd: self.month_usd,
            reserved_usd: self.reserved_usd,
        }
    }
}

/// The worst budget a request is subject to.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub state: BudgetState,
    /// The budget that decided the state and its evaluation, when any applies.
    pub worst: Option<(Scope, BudgetEval)>,
}

impl Verdict {
    /// Seconds until the deciding window resets.
    pub fn resets_in_s(&self, now: DateTime<Utc>) -> Option<u64> {
        let (_, e) = self.worst.as_ref()?;
        let reset = reset_time(e.window?, now);
        Some(u64::try_from((reset - now).num_seconds().max(1)).unwrap_or(1))
    }

    /// "team \"support\" daily budget of $5.00: $0.12 left, resets at …".
    pub fn describe(&self, now: DateTime<Utc>) -> String {
        match &self.worst {
            Some((scope, e)) => {
                let window = e.window.map_or("", BudgetWindow::as_str);
                let reset = e
                    .window
                    .map(|w| reset_time(w, now).format("%Y-%m-%dT%H:%M:%SZ").to_string())
                    .unwrap_or_default();
                format!(
                    "{scope} {window} budget of ${:.2} is {}: ${:.4} left, resets at {reset}",
                    e.limit_usd.unwrap_or(0.0),
                    self.state,
                    e.remaining_usd.unwrap_or(0.0),
                )
            }
            None => "no budget applies".to_owned(),
        }
    }
}

/// When a window that contains `now` ends (UTC midnight, or the first of the next month).
pub fn reset_time(window: BudgetWindow, now: DateTime<Utc>) -> DateTime<Utc> {
    let (y, m, d) = match window {
        BudgetWindow::Daily => {
            let next = now.date_naive().succ_opt().unwrap_or(now.date_naive());
            (next.year(), next.month(), next.day())
        }
        BudgetWindow::Monthly if now.month() == 12 => (now.year() + 1, 1, 1),
        BudgetWindow::Monthly => (now.year(), now.month() + 1, 1),
    };
    Utc.with_ymd_and_hms(y, m, d, 0, 0, 0)
        .single()
        .unwrap_or(now)
}

/// Team and key spend, shared by all requests of the process, and by all
/// replicas when `shared` is set.
#[derive(Debug, Default)]
pub struct BudgetBook {
    entries: Mutex<HashMap<Scope, Entry>>,
    shared: Option<Arc<SharedStore>>,
}

/// Money set aside for one request in flight; released when dropped, or
/// settled with the real cost.
#[derive(Debug)]
pub struct Reservation {
    book: Arc<BudgetBook>,
    scopes: Vec<Scope>,
    amount: f64,
    /// When the reservation was made: the windows its cost belongs to.
    at: DateTime<Utc>,
    done: bool,
    held: Held,
}

impl Reservation {
    /// Replaces the reservation with what the request really cost. `now` is
    /// the settle time; the cost is counted in the windows the reservation
    /// was made in (see the module doc), and only while they are current.
    pub fn settle(mut self, cost_usd: f64, now: DateTime<Utc>) {
        self.book
            .finish(&self.scopes, self.amount, cost_usd, self.at, now);
        if let Some(shared) = &self.book.shared {
            shared.finished(&self.held, &self.scopes, self.amount, cost_usd, self.at);
        }
        self.done = true;
    }

    /// When the reservation was made.
    pub fn at(&self) -> DateTime<Utc> {
        self.at
    }

    pub fn amount(&self) -> f64 {
        self.amount
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.done {
            self.book.release(&self.scopes, self.amount);
            if let Some(shared) = &self.book.shared {
                shared.finished(&self.held, &self.scopes, self.amount, 0.0, self.at);
            }
        }
    }
}

/// The budgets that apply to a caller, with their limits.
pub fn scopes_of<'a>(cfg: &'a Config, caller: &Caller) -> Vec<(Scope, &'a BudgetLimits)> {
    let team = cfg
        .team(&caller.team)
        .and_then(|t| t.budget.as_ref())
        .map(|b| (Scope::Team(caller.team.clone()), b));
    let key = cfg
        .keys
        .get(&caller.key_id)
        .and_then(|k| k.budget.as_ref())
        .map(|b| (Scope::Key(caller.key_id.clone()), b));
    team.into_iter().chain(key).collect()
}

/// The verdict of a reservation of `amount` the shared store refused on
/// `scope`'s figures `row`, for the refusal's message.
pub fn refused_verdict(
    cfg: &Config,
    scope: Scope,
    row: shared::SpendRow,
    amount: f64,
    now: DateTime<Utc>,
) -> Verdict {
    let mut e = Entry {
        day: row.day,
        month: row.month,
        day_usd: row.day_usd,
        month_usd: row.month_usd,
        reserved_usd: row.reserved_usd,
        ..Entry::default()
    };
    e.roll(now);
    let eval = limits_of(cfg, &scope).map(|l| evaluate_budget(l, &e.snapshot(), amount));
    Verdict {
        state: BudgetState::Exhausted,
        worst: eval.map(|eval| (scope, eval)),
    }
}

/// The limits of one budget in `cfg`, if it still has one.
fn limits_of<'a>(cfg: &'a Config, scope: &Scope) -> Option<&'a BudgetLimits> {
    match scope {
        Scope::Team(n) => cfg.team(n).and_then(|t| t.budget.as_ref()),
        Scope::Key(id) => cfg.keys.get(id).and_then(|k| k.budget.as_ref()),
    }
}

impl BudgetBook {
    fn with<R>(&self, f: impl FnOnce(&mut HashMap<Scope, Entry>) -> R) -> R {
        match self.entries.lock() {
            Ok(mut g) => f(&mut g),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// Adds settled spend read from the ledger (this month's and today's,
    /// paid targets only), once at start.
    pub fn seed(&self, rows: &[Settled], now: DateTime<Utc>) {
        self.with(|m| {
            for r in rows {
                for scope in [Scope::Team(r.team.clone()), Scope::Key(r.key_id.clone())] {
                    let e = m.entry(scope).or_default();
                    e.roll(now);
                    e.day_usd += r.day_usd;
                    e.month_usd += r.month_usd;
                }
            }
        });
    }

    /// Evaluates every budget of `caller` against spend, reservations and a
    /// request that may cost up to `cost_usd`; the worst one decides.
    pub fn verdict(
        &self,
        cfg: &Config,
        caller: &Caller,
        cost_usd: f64,
        now: DateTime<Utc>,
    ) -> Verdict {
        let scopes = scopes_of(cfg, caller);
        self.with(|m| {
            let mut out = Verdict {
                state: BudgetState::Available,
                worst: None,
            };
            for (scope, limits) in scopes {
                let e = m.entry(scope.clone()).or_default();
                e.roll(now);
                let eval = evaluate_budget(limits, &e.snapshot(), cost_usd);
                let worse = out.worst.as_ref().is_none_or(|(_, w)| {
                    eval.state > w.state
                        || (eval.state == w.state
                            && eval.remaining_usd.unwrap_or(f64::MAX)
                                < w.remaining_usd.unwrap_or(f64::MAX))
                });
                if worse {
                    out.state = eval.state;
                    out.worst = Some((scope, eval));
                }
            }
            out
        })
    }

    /// Sets `amount` aside in every budget of `caller`.
    pub fn reserve(
        self: &Arc<Self>,
        cfg: &Config,
        caller: &Caller,
        amount: f64,
        now: DateTime<Utc>,
    ) -> Reservation {
        let scopes: Vec<Scope> = scopes_of(cfg, caller).into_iter().map(|(s, _)| s).collect();
        self.with(|m| {
            for s in &scopes {
                let e = m.entry(s.clone()).or_default();
                e.roll(now);
                e.reserved_usd += amount;
            }
        });
        Reservation {
            book: self.clone(),
            scopes,
            amount,
            at: now,
            done: false,
            held: Held::Local,
        }
    }

    /// A book whose figures are the budgets `store` shares with other
    /// replicas (read into this book with `load`, kept by `start_sync`).
    pub fn shared(store: SharedStore) -> Self {
        Self {
            entries: Mutex::default(),
            shared: Some(Arc::new(store)),
        }
    }

    /// Whether the budgets are shared in PostgreSQL.
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// Reads every shared budget's figures (a shared book, at start).
    pub async fn load(&self, now: DateTime<Utc>) -> Result<(), String> {
        match &self.shared {
            Some(s) => s.load_all(self, now).await,
            None => Ok(()),
        }
    }

    /// Re-reads the shared figures of `caller`'s budgets, so a decision
    /// about to be made sees what every replica reserved and spent; nothing
    /// for a process's own book or while the store is unreachable.
    pub async fn refresh(&self, cfg: &Config, caller: &Caller, now: DateTime<Utc>) {
        if let Some(s) = &self.shared {
            let scopes: Vec<Scope> = scopes_of(cfg, caller).into_iter().map(|(s, _)| s).collect();
            s.refresh(self, &scopes, now).await;
        }
    }

    /// Makes `r` hold in the shared store too: a conditional update per
    /// budget, refused when the shared figures cannot cover it. A process's
    /// own book has nothing to confirm.
    pub async fn confirm(
        &self,
        r: &mut Reservation,
        cfg: &Config,
        metrics: &Metrics,
    ) -> Result<(), Refusal> {
        let Some(s) = &self.shared else {
            return Ok(());
        };
        let scopes: Vec<(Scope, Option<BudgetLimits>)> = r
            .scopes
            .iter()
            .map(|scope| (scope.clone(), limits_of(cfg, scope).cloned()))
            .collect();
        r.held = s.confirm(self, &scopes, r.amount, r.at, metrics).await?;
        Ok(())
    }

    /// Frees a reservation that cost nothing (the request failed first, or
    /// the client went away before any target answered).
    fn release(&self, scopes: &[Scope], reserved: f64) {
        self.with(|m| {
            for s in scopes {
                if let Some(e) = m.get_mut(s) {
                    e.reserved_usd = (e.reserved_usd - reserved).max(0.0);
                }
            }
        });
    }

    /// Turns a reservation made at `at` into spend of `cost`, settled at
    /// `now`: the cost goes to `at`'s day and month, which still count only
    /// if they are the current windows at `now`.
    fn finish(
        &self,
        scopes: &[Scope],
        reserved: f64,
        cost: f64,
        at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) {
        // A clock that stepped back (or a settle "before" its reservation)
        // must not reopen an old window: roll to the later of the two.
        let roll_to = now.max(at);
        self.with(|m| {
            for s in scopes {
                let e = m.entry(s.clone()).or_default();
                e.roll(roll_to);
                e.reserved_usd = (e.reserved_usd - reserved).max(0.0);
                if e.day == day_index(at) {
                    e.day_usd += cost;
                }
                if e.month == month_index(at) {
                    e.month_usd += cost;
                }
            }
        });
    }

    /// Publishes every budget's gauges and raises each window's alert once
    /// when its spend reaches `alert_at`.
    pub fn publish(&self, cfg: &Config, metrics: &Metrics, now: DateTime<Utc>) {
        let mut all: Vec<(Scope, &BudgetLimits)> = cfg
            .teams
            .iter()
            .filter_map(|(n, t)| t.budget.as_ref().map(|b| (Scope::Team(n.clone()), b)))
            .collect();
        all.extend(
            cfg.keys
                .iter()
                .filter_map(|(id, k)| k.budget.as_ref().map(|b| (Scope::Key(id.clone()), b))),
        );
        self.with(|m| {
            for (scope, limits) in all {
                let e = m.entry(scope.clone()).or_default();
                e.roll(now);
                let (day, month) = (e.day, e.month);
                for (window, limit, spent) in [
                    (BudgetWindow::Daily, limits.daily_usd, e.day_usd),
                    (BudgetWindow::Monthly, limits.monthly_usd, e.month_usd),
                ] {
                    let Some(limit) = limit else { continue };
                    let labels = || {
                        vec![
                            ("scope", scope.kind().to_owned()),
                            ("name", scope.name().to_owned()),
                            ("window", window.as_str().to_owned()),
                        ]
                    };
                    metrics.set(
                        metrics::BUDGET_REMAINING,
                        labels(),
                        (limit - spent).max(0.0),
                    );
                    metrics.set(metrics::BUDGET_USED_RATIO, labels(), spent / limit);
                    let alert_at = limits.alert_at.unwrap_or(1.0);
                    let (mark, current) = match window {
                        BudgetWindow::Daily => (&mut e.alerted_day, day),
                        BudgetWindow::Monthly => (&mut e.alerted_month, month),
                    };
                    if spent >= alert_at * limit && *mark != Some(current) {
                        *mark = Some(current);
                        warn!(
                            budget = %scope,
                            window = window.as_str(),
                            spent_usd = spent,
                            limit_usd = limit,
                            "budget alert: spend reached {:.0}% of the limit",
                            alert_at * 100.0
                        );
                        metrics.add(metrics::BUDGET_ALERTS, labels(), 1.0);
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        watershed_policies::load_config(
            "version: 1\nmodels:\n  local: { engine: local, gguf: m.gguf }\n\
             routes:\n  - name: all\n    to: [local]\n\
             teams:\n  support: { budget: { daily_usd: 1.0, alert_at: 0.5, on_exhausted: reject } }\n\
             keys:\n  bot: { sha256: ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad, team: support, budget: { monthly_usd: 10 } }\n",
            "t.yaml",
        )
        .unwrap()
    }

    fn caller() -> Caller {
        Caller {
            key_id: "bot".into(),
            team: "support".into(),
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn reservations_count_until_settled_and_the_worst_budget_decides() {
        let cfg = config();
        let book = Arc::new(BudgetBook::default());
        let now = at("2026-11-26T10:00:00Z");
        assert_eq!(
            book.verdict(&cfg, &caller(), 0.4, now).state,
            BudgetState::Available
        );
        let r1 = book.reserve(&cfg, &caller(), 0.7, now);
        // 0.7 reserved of a $1.00 day: another 0.4 would cross the limit.
        let v = book.verdict(&cfg, &caller(), 0.4, now);
        assert_eq!(v.state, BudgetState::Exhausted);
        let (scope, eval) = v.worst.clone().unwrap();
        assert_eq!(scope, Scope::Team("support".into()));
        assert!((eval.remaining_usd.unwrap() - 0.3).abs() < 1e-9);
        assert!(
            v.describe(now).contains("resets at 2026-11-27T00:00:00Z"),
            "{}",
            v.describe(now)
        );
        assert_eq!(v.resets_in_s(now), Some(14 * 3600));
        // Settled for less than reserved: the difference is free again.
        r1.settle(0.1, now);
        assert_eq!(
            book.verdict(&cfg, &caller(), 0.3, now).state,
            BudgetState::Available
        );
        // A dropped reservation (request failed before any cost) is released.
        drop(book.reserve(&cfg, &caller(), 0.8, now));
        assert_eq!(
            book.verdict(&cfg, &caller(), 0.3, now).state,
            BudgetState::Available
        );
    }

    #[test]
    fn windows_roll_over_and_seeded_spend_counts() {
        let cfg = config();
        let book = BudgetBook::default();
        let now = at("2026-11-26T23:59:00Z");
        book.seed(
            &[Settled {
                team: "support".into(),
                key_id: "bot".into(),
                day_usd: 1.0,
                month_usd: 9.95,
            }],
            now,
        );
        let v = book.verdict(&cfg, &caller(), 0.0, now);
        assert_eq!(v.state, BudgetState::Exhausted);
        // Next day: the daily budget is fresh but the key's month is nearly spent.
        let v = book.verdict(&cfg, &caller(), 0.1, at("2026-11-27T00:01:00Z"));
        assert_eq!(v.state, BudgetState::Exhausted);
        assert_eq!(v.worst.unwrap().0, Scope::Key("bot".into()));
        // Next month: everything is fresh.
        let v = book.verdict(&cfg, &caller(), 0.1, at("2026-12-01T00:01:00Z"));
        assert_eq!(v.state, BudgetState::Available);
        assert_eq!(
            reset_time(BudgetWindow::Monthly, at("2026-12-15T08:00:00Z")),
            at("2027-01-01T00:00:00Z")
        );
    }

    #[test]
    fn alerts_fire_once_per_window_and_gauges_follow_spend() {
        let cfg = config();
        let book = Arc::new(BudgetBook::default());
        let metrics = Metrics::default();
        let now = at("2026-11-26T10:00:00Z");
        book.reserve(&cfg, &caller(), 0.0, now).settle(0.6, now);
        book.publish(&cfg, &metrics, now);
        book.publish(&cfg, &metrics, now);
        let text = metrics.render();
        assert!(
            text.contains(
                "watershed_budget_alerts_total{scope=\"team\",name=\"support\",window=\"daily\"} 1.0"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "watershed_budget_remaining_usd{scope=\"team\",name=\"support\",window=\"daily\"} 0.4"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "watershed_budget_used_ratio{scope=\"key\",name=\"bot\",window=\"monthly\"} 0.06"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_reservation_settled_after_midnight_counts_in_the_window_it_was_made_in() {
        let cfg = config();
        let book = Arc::new(BudgetBook::default());
        // Reserved on the last second of November, settled in December.
        let before = at("2026-11-30T23:59:59Z");
        let after = at("2026-12-01T00:00:03Z");
        let r = book.reserve(&cfg, &caller(), 0.9, before);
        assert_eq!(r.at(), before);
        book.reserve(&cfg, &caller(), 0.2, before)
            .settle(0.2, before);
        // November's last day is spent: $0.20 settled and $0.90 reserved of $1.00.
        let v = book.verdict(&cfg, &caller(), 0.0, before);
        assert_eq!(v.state, BudgetState::Exhausted);
        r.settle(0.9, after);
        // December starts fresh in both windows: the late settle is November's.
        // (0.4 stays under the team's 50 % alert mark of a fresh $1.00 day.)
        let v = book.verdict(&cfg, &caller(), 0.4, after);
        assert_eq!(v.state, BudgetState::Available, "{}", v.describe(after));
        let metrics = Metrics::default();
        book.publish(&cfg, &metrics, after);
        let text = metrics.render();
        assert!(
            text.contains(
                "watershed_budget_remaining_usd{scope=\"team\",name=\"support\",window=\"daily\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "watershed_budget_used_ratio{scope=\"key\",name=\"bot\",window=\"monthly\"} 0.0"
            ),
            "{text}"
        );

        // Within one day, a settle seconds later counts in that day.
        let book = Arc::new(BudgetBook::default());
        let t = at("2028-02-29T12:00:00Z");
        book.reserve(&cfg, &caller(), 0.5, t)
            .settle(0.5, at("2028-02-29T12:00:05Z"));
        let v = book.verdict(&cfg, &caller(), 0.6, at("2028-02-29T23:59:59Z"));
        assert_eq!(v.state, BudgetState::Exhausted);
        assert_eq!(
            reset_time(BudgetWindow::Daily, t),
            at("2028-03-01T00:00:00Z")
        );
        // A reservation dropped unsettled frees its money in any window.
        let book = Arc::new(BudgetBook::default());
        drop(book.reserve(&cfg, &caller(), 0.9, at("2026-12-31T23:59:50Z")));
        let v = book.verdict(&cfg, &caller(), 0.4, at("2027-01-01T00:00:05Z"));
        assert_eq!(v.state, BudgetState::Available);
    }
}
