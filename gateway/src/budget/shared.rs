//! The budget book replicas share when the ledger is PostgreSQL: each
//! budget's spend in its current day and month and the money reserved by
//! requests in flight live in `budget_spend`, one row per team or key, and
//! each reservation in `budget_reservations` (migration
//! `0004_shared_budgets.sql` of the ledger's PostgreSQL set).
//!
//! **Conditional updates, not advisory locks.** A reservation is one
//! transaction of one `UPDATE budget_spend SET reserved_usd = reserved_usd + $x
//! WHERE scope = $s AND spent + reserved_usd + $x <= $limit RETURNING …` per
//! budget of the caller (team, then key, in one fixed order so two replicas
//! never wait on each other in a cycle), plus the reservation's row. The check
//! and the increment are one statement under the row's lock, so no two
//! replicas can both take the last dollar, and a refusal always means the
//! budget's shared figures at that instant could not cover the reservation.
//! Advisory locks would give the same answer with a lock, a read and a write
//! per budget and a lock held across round trips; a replica that stalls while
//! holding one stalls every other replica's requests for that budget.
//!
//! **The bound.** A reservation is the most the request can cost (its prompt
//! estimate with a margin, and every completion token it may generate). With
//! every reservation admitted by the conditional update, `spent + reserved <=
//! limit` holds after each reservation, and settling replaces a reservation by
//! the real cost. So the total spend exceeds a limit only by what requests
//! really cost beyond their reservations — zero while the upper bound holds —
//! plus the spend of requests that outlived `ledger.budgets.reservation_ttl_s`
//! (their reservation was swept before they settled). The end-to-end test of
//! three replicas checks the first; the sweep test here shows the second.
//!
//! **Windows and the clock.** As in the process's book, every call takes
//! `now` from the application's clock and a request's cost counts in the day
//! and month it was reserved in; rows only roll forward (`GREATEST`), so a
//! replica whose clock is a second behind never reopens yesterday.
//!
//! **Settling** is not in the request path: a settled or released reservation
//! is queued in the process and written by the sync task in one transaction
//! (remove the reservation row if it is still there, take its amount off
//! `reserved_usd`, add the cost to the windows it was reserved in). Until
//! then the row still holds the reservation, which only errs on the strict
//! side. A reservation whose replica died is removed by any replica's sweep
//! once `expires_ms` passes; removing a row is what frees its money, so a
//! late settle of a swept reservation adds its cost and frees nothing twice.
//!
//! **While PostgreSQL is unreachable** (a query fails to connect or takes
//! longer than `ledger.budgets.timeout_ms`), each replica enforces budgets
//! from the last shared figures it read plus what it reserved and spent
//! since (the process's book keeps exactly that), and stops asking the
//! database in the request path. A budget it never read a figure for admits
//! paid requests only with `ledger.budgets.when_unknown: open`; `closed`, the
//! default, refuses them (503). Every `sync_interval_ms` the sync task tries
//! again; when the database answers, it writes what this replica spent while
//! cut off, re-reads the shared figures, and requests go back to conditional
//! updates. While cut off, N replicas can each spend what was left at the
//! last read: the outage bound is (N − 1) × the remaining budget at the cut.
//! Spend this replica could not write before it stopped (killed while cut
//! off, or still cut off at shutdown) is missing from the shared figures;
//! the ledger has it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};
use watershed_dashboards::clock::SharedClock;
use watershed_policies::{BudgetLimits, SharedBudgetSettings};

use super::{day_index, month_index, BudgetBook, Scope};
use crate::metrics::{self, Metrics};

/// How a reservation is held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Held {
    /// In this process's figures only: the process's book, or a shared
    /// reservation of $0 or one not confirmed yet.
    Local,
    /// A row of `budget_reservations` with this id.
    Shared(String),
    /// Made while the database was unreachable.
    Offline,
}

/// Why the shared book refused a reservation.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// This budget's shared figures (as locked when it was refused) could
    /// not cover it.
    Exhausted(Scope, SpendRow),
    /// The database is unreachable and this replica never read the figures
    /// of this budget (`when_unknown: closed`).
    Unknown(Scope),
}

/// One budget's row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpendRow {
    pub day: i64,
    pub day_usd: f64,
    pub month: i64,
    pub month_usd: f64,
    pub reserved_usd: f64,
}

/// What PostgreSQL has not taken yet from this replica.
#[derive(Debug, Default, Clone)]
struct Unwritten {
    /// Reservation rows to remove, with their budgets and amount.
    releases: Vec<(String, Vec<Scope>, f64)>,
    /// Cost to add, by budget and the day and month it counts in.
    spend: BTreeMap<(Scope, i64, i64), f64>,
}

impl Unwritten {
    fn is_empty(&self) -> bool {
        self.releases.is_empty() && self.spend.is_empty()
    }

    fn merge(&mut self, other: Unwritten) {
        self.releases.extend(other.releases);
        for (k, v) in other.spend {
            *self.spend.entry(k).or_insert(0.0) += v;
        }
    }
}

#[derive(Debug, Default)]
struct Local {
    /// Reserved by this replica while cut off, by budget: in no row.
    offline_reserved: HashMap<Scope, f64>,
    queued: Unwritten,
    /// Taken by the sync task, in a transaction not yet committed.
    writing: Unwritten,
    /// Budgets whose row this replica has read.
    known: HashSet<Scope>,
    /// Bumped when a write commits, so a read that raced with it is not mirrored.
    generation: u64,
}

/// The PostgreSQL side of a shared book.
#[derive(Debug)]
pub struct SharedStore {
    pool: PgPool,
    settings: SharedBudgetSettings,
    up: AtomicBool,
    local: Mutex<Local>,
    wake: Notify,
}

/// `team:NAME` or `key:ID`.
fn key_of(s: &Scope) -> String {
    format!("{}:{}", s.kind(), s.name())
}

fn scope_of(key: &str) -> Option<Scope> {
    match key.split_once(':')? {
        ("team", n) => Some(Scope::Team(n.to_owned())),
        ("key", n) => Some(Scope::Key(n.to_owned())),
        _ => None,
    }
}

const COLUMNS: &str = "scope, day_idx, day_usd, month_idx, month_usd, reserved_usd";

fn row_of(r: &PgRow) -> Result<(Option<Scope>, SpendRow), sqlx::Error> {
    Ok((
        scope_of(&r.try_get::<String, _>("scope")?),
        SpendRow {
            day: r.try_get("day_idx")?,
            day_usd: r.try_get("day_usd")?,
            month: r.try_get("month_idx")?,
            month_usd: r.try_get("month_usd")?,
            reserved_usd: r.try_get("reserved_usd")?,
        },
    ))
}

/// Locks a row, rolls it forward to day `$2` / month `$3` (never back) and
/// adds `$4` to `reserved_usd` only if every limited window can take it —
/// the same test as `evaluate_budget`: `spent + reserved + cost <= limit`.
/// Returns the row and whether it took the reservation.
fn reserve_sql() -> String {
    "WITH cur AS (SELECT scope, \
       CASE WHEN day_idx >= $2 THEN day_usd ELSE 0 END AS d_usd, \
       CASE WHEN month_idx >= $3 THEN month_usd ELSE 0 END AS m_usd, \
       GREATEST(day_idx, $2) AS d_idx, GREATEST(month_idx, $3) AS m_idx, reserved_usd AS r_usd \
       FROM budget_spend WHERE scope = $1 FOR UPDATE), \
     ok AS (SELECT ($5::float8 IS NULL OR d_usd + r_usd + $4 <= $5) \
       AND ($6::float8 IS NULL OR m_usd + r_usd + $4 <= $6) AS took FROM cur) \
     UPDATE budget_spend b SET day_usd = cur.d_usd, month_usd = cur.m_usd, \
       day_idx = cur.d_idx, month_idx = cur.m_idx, \
       reserved_usd = cur.r_usd + CASE WHEN ok.took THEN $4 ELSE 0 END \
     FROM cur, ok WHERE b.scope = cur.scope \
     RETURNING b.scope, b.day_idx, b.day_usd, b.month_idx, b.month_usd, b.reserved_usd, ok.took"
        .to_owned()
}

/// Rolls a row forward to `$2`/`$3`, takes `$4` off `reserved_usd` and adds
/// `$5` to the day `$6` and the month `$7` if they are the row's windows.
fn settle_sql() -> String {
    format!(
        "UPDATE budget_spend SET \
         day_usd = (CASE WHEN day_idx >= $2 THEN day_usd ELSE 0 END) \
           + (CASE WHEN GREATEST(day_idx, $2) = $6 THEN $5 ELSE 0 END), \
         month_usd = (CASE WHEN month_idx >= $3 THEN month_usd ELSE 0 END) \
           + (CASE WHEN GREATEST(month_idx, $3) = $7 THEN $5 ELSE 0 END), \
         day_idx = GREATEST(day_idx, $2), month_idx = GREATEST(month_idx, $3), \
         reserved_usd = GREATEST(reserved_usd - $4, 0) \
         WHERE scope = $1 RETURNING {COLUMNS}"
    )
}

/// Whether an error means the database cannot be reached (rather than that
/// it refused one statement).
fn unreachable(e: &sqlx::Error) -> bool {
    !matches!(
        e,
        sqlx::Error::Database(_) | sqlx::Error::RowNotFound | sqlx::Error::ColumnDecode { .. }
    )
}

/// A query that took longer than the timeout counts as an unreachable database.
#[derive(Debug)]
enum StoreError {
    Timeout,
    Sql(sqlx::Error),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Timeout => f.write_str("budget query timed out"),
            StoreError::Sql(e) => write!(f, "{e}"),
        }
    }
}

impl StoreError {
    fn unreachable(&self) -> bool {
        match self {
            StoreError::Timeout => true,
            StoreError::Sql(e) => unreachable(e),
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Sql(e)
    }
}

type Rows = Vec<(Scope, SpendRow)>;

impl SharedStore {
    pub fn new(pool: PgPool, settings: SharedBudgetSettings) -> Self {
        Self {
            pool,
            settings,
            up: AtomicBool::new(true),
            local: Mutex::new(Local::default()),
            wake: Notify::new(),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Local) -> R) -> R {
        match self.local.lock() {
            Ok(mut g) => f(&mut g),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// Whether the database answered last time it was asked.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.settings.timeout_ms)
    }

    async fn bounded<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout(), work).await {
            Ok(r) => r.map_err(StoreError::Sql),
            Err(_) => Err(StoreError::Timeout),
        }
    }

    fn failed(&self, what: &str, e: &StoreError) {
        if e.unreachable() {
            if self.up.swap(false, Ordering::Relaxed) {
                warn!(error = %e, "shared budget store unreachable: enforcing budgets from this replica's last known figures");
            }
        } else {
            warn!(error = %e, "shared budget {what} failed");
        }
    }

    /// Creates the rows of `scopes` this replica has not read, seeded from
    /// the ledger's spend in `now`'s day and month (a budget that existed
    /// before the shared book, or was added by a reload, starts from what it
    /// really spent). A row that exists is left as it is.
    async fn ensure(
        conn: &mut sqlx::PgConnection,
        scopes: &[Scope],
        now: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        use chrono::{Datelike, TimeZone};
        let day_start = now
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .map_or(0, |d| d.and_utc().timestamp_millis());
        let month_start = Utc
            .with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
            .single()
            .map_or(0, |d| d.timestamp_millis());
        for s in scopes {
            let column = match s {
                Scope::Team(_) => "team",
                Scope::Key(_) => "key_id",
            };
            sqlx::query(&format!(
                "INSERT INTO budget_spend ({COLUMNS}) \
                 SELECT $1, $2, COALESCE(SUM(CASE WHEN ts_ms >= $4 THEN cost_usd ELSE 0 END), 0), \
                 $3, COALESCE(SUM(cost_usd), 0), 0 \
                 FROM ledger WHERE ts_ms >= $5 AND backend_kind <> 'llama.cpp' AND {column} = $6 \
                 ON CONFLICT (scope) DO NOTHING"
            ))
            .bind(key_of(s))
            .bind(day_index(now))
            .bind(month_index(now))
            .bind(day_start)
            .bind(month_start)
            .bind(s.name())
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }

    fn unknown(&self, scopes: &[Scope]) -> Vec<Scope> {
        self.with(|l| {
            scopes
                .iter()
                .filter(|s| !l.known.contains(*s))
                .cloned()
                .collect()
        })
    }

    async fn read(
        &self,
        scopes: Option<&[Scope]>,
        now: DateTime<Utc>,
    ) -> Result<Rows, sqlx::Error> {
        let mut conn = self.pool.acquire().await?;
        if let Some(scopes) = scopes {
            Self::ensure(&mut conn, &self.unknown(scopes), now).await?;
        }
        let rows = match scopes {
            Some(scopes) => {
                let keys: Vec<String> = scopes.iter().map(key_of).collect();
                sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM budget_spend WHERE scope = ANY($1)"
                ))
                .bind(keys)
                .fetch_all(&mut *conn)
                .await?
            }
            None => {
                sqlx::query(&format!("SELECT {COLUMNS} FROM budget_spend"))
                    .fetch_all(&mut *conn)
                    .await?
            }
        };
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            if let (Some(s), row) = row_of(r)? {
                out.push((s, row));
            }
        }
        Ok(out)
    }

    /// Puts the shared figures of `rows`, read at `generation`, into the
    /// process's book, with what this replica did that the rows cannot show
    /// yet (queued settles, reservations made while cut off).
    fn mirror(&self, book: &BudgetBook, rows: &Rows, generation: u64, now: DateTime<Utc>) {
        self.with(|l| {
            if l.generation != generation {
                return;
            }
            book.with(|m| {
                for (scope, row) in rows {
                    l.known.insert(scope.clone());
                    let e = m.entry(scope.clone()).or_default();
                    e.day = row.day;
                    e.day_usd = row.day_usd;
                    e.month = row.month;
                    e.month_usd = row.month_usd;
                    e.reserved_usd = row.reserved_usd;
                    e.roll(now);
                    for pending in [&l.queued, &l.writing] {
                        for (_, scopes, amount) in &pending.releases {
                            if scopes.contains(scope) {
                                e.reserved_usd -= amount;
                            }
                        }
                        for ((s, d, mo), cost) in &pending.spend {
                            if s == scope {
                                if e.day == *d {
                                    e.day_usd += cost;
                                }
                                if e.month == *mo {
                                    e.month_usd += cost;
                                }
                            }
                        }
                    }
                    e.reserved_usd += l.offline_reserved.get(scope).copied().unwrap_or(0.0);
                    e.reserved_usd = e.reserved_usd.max(0.0);
                }
            });
        });
    }

    fn generation(&self) -> u64 {
        self.with(|l| l.generation)
    }

    /// Re-reads the shared figures of `scopes` (creating their rows) into
    /// `book`; does nothing while the database is unreachable.
    pub(crate) async fn refresh(&self, book: &BudgetBook, scopes: &[Scope], now: DateTime<Utc>) {
        if scopes.is_empty() || !self.is_up() {
            return;
        }
        let generation = self.generation();
        match self.bounded(self.read(Some(scopes), now)).await {
            Ok(rows) => self.mirror(book, &rows, generation, now),
            Err(e) => self.failed("read", &e),
        }
    }

    /// Reads every budget's row into `book` (at start). On failure the
    /// store counts as unreachable: nothing is known until a sync round
    /// reads it.
    pub(crate) async fn load_all(
        &self,
        book: &BudgetBook,
        now: DateTime<Utc>,
    ) -> Result<(), String> {
        let generation = self.generation();
        match self.bounded(self.read(None, now)).await {
            Ok(rows) => {
                self.mirror(book, &rows, generation, now);
                Ok(())
            }
            Err(e) => {
                self.failed("read", &e);
                Err(e.to_string())
            }
        }
    }

    async fn reserve_rows(
        &self,
        scopes: &[(Scope, Option<BudgetLimits>)],
        id: &str,
        amount: f64,
        at: DateTime<Utc>,
    ) -> Result<Result<Rows, (Scope, SpendRow)>, sqlx::Error> {
        let mut sorted: Vec<&(Scope, Option<BudgetLimits>)> = scopes.iter().collect();
        sorted.sort_by_key(|(s, _)| key_of(s));
        let all: Vec<Scope> = sorted.iter().map(|(s, _)| s.clone()).collect();
        let mut tx = self.pool.begin().await?;
        Self::ensure(&mut tx, &self.unknown(&all), at).await?;
        let sql = reserve_sql();
        let mut rows = Vec::with_capacity(sorted.len());
        for (scope, limits) in sorted {
            let row = sqlx::query(&sql)
                .bind(key_of(scope))
                .bind(day_index(at))
                .bind(month_index(at))
                .bind(amount)
                .bind(limits.as_ref().and_then(|l| l.daily_usd))
                .bind(limits.as_ref().and_then(|l| l.monthly_usd))
                .fetch_optional(&mut *tx)
                .await?;
            let Some(r) = row else {
                return Err(sqlx::Error::RowNotFound);
            };
            let row = row_of(&r)?.1;
            if !r.try_get::<bool, _>("took")? {
                tx.rollback().await?;
                return Ok(Err((scope.clone(), row)));
            }
            rows.push((scope.clone(), row));
        }
        let ttl_ms = i64::try_from(self.settings.reservation_ttl_s)
            .unwrap_or(i64::MAX / 1000)
            .saturating_mul(1000);
        sqlx::query(
            "INSERT INTO budget_reservations (id, scopes, amount_usd, at_ms, expires_ms) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(all.iter().map(key_of).collect::<Vec<_>>())
        .bind(amount)
        .bind(at.timestamp_millis())
        .bind(at.timestamp_millis().saturating_add(ttl_ms))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Ok(rows))
    }

    /// Takes `amount` in every budget of `scopes` in PostgreSQL, or, while it
    /// is unreachable, from this replica's figures (already checked by the
    /// caller's verdict).
    pub(crate) async fn confirm(
        &self,
        book: &BudgetBook,
        scopes: &[(Scope, Option<BudgetLimits>)],
        amount: f64,
        at: DateTime<Utc>,
        metrics: &Metrics,
    ) -> Result<Held, Refusal> {
        if amount <= 0.0 || scopes.is_empty() {
            return Ok(Held::Local);
        }
        if self.is_up() {
            let id = uuid::Uuid::new_v4().to_string();
            let generation = self.generation();
            match self
                .bounded(self.reserve_rows(scopes, &id, amount, at))
                .await
            {
                Ok(Ok(rows)) => {
                    self.mirror(book, &rows, generation, at);
                    return Ok(Held::Shared(id));
                }
                Ok(Err((scope, row))) => {
                    // The caller still holds the reservation in this
                    // process's figures and releases it there next.
                    let held = SpendRow {
                        reserved_usd: row.reserved_usd + amount,
                        ..row
                    };
                    let rows = vec![(scope.clone(), held)];
                    self.mirror(book, &rows, generation, at);
                    return Err(Refusal::Exhausted(scope, row));
                }
                // A timed-out transaction may still commit: its row then
                // expires and is swept, so the money is held for at most the
                // reservation's lifetime.
                Err(e) => self.failed("reservation", &e),
            }
        }
        let names: Vec<Scope> = scopes.iter().map(|(s, _)| s.clone()).collect();
        let unknown = self.unknown(&names);
        if let Some(s) = unknown.first() {
            if !self.settings.when_unknown_open {
                metrics.add(
                    metrics::BUDGET_OFFLINE,
                    vec![("outcome", "refused_unknown".to_owned())],
                    1.0,
                );
                return Err(Refusal::Unknown(s.clone()));
            }
        }
        self.with(|l| {
            for s in &names {
                *l.offline_reserved.entry(s.clone()).or_insert(0.0) += amount;
            }
        });
        metrics.add(
            metrics::BUDGET_OFFLINE,
            vec![("outcome", "admitted".to_owned())],
            1.0,
        );
        Ok(Held::Offline)
    }

    /// Queues what a finished reservation leaves for PostgreSQL: its row to
    /// remove and its cost to add.
    pub(crate) fn finished(
        &self,
        held: &Held,
        scopes: &[Scope],
        amount: f64,
        cost: f64,
        at: DateTime<Utc>,
    ) {
        let queued = self.with(|l| {
            match held {
                Held::Shared(id) => l
                    .queued
                    .releases
                    .push((id.clone(), scopes.to_vec(), amount)),
                Held::Offline => {
                    for s in scopes {
                        if let Some(v) = l.offline_reserved.get_mut(s) {
                            *v = (*v - amount).max(0.0);
                        }
                    }
                }
                Held::Local => {}
            }
            if cost > 0.0 {
                for s in scopes {
                    *l.queued
                        .spend
                        .entry((s.clone(), day_index(at), month_index(at)))
                        .or_insert(0.0) += cost;
                }
            }
            !l.queued.is_empty()
        });
        if queued {
            self.wake.notify_one();
        }
    }

    async fn write(&self, w: &Unwritten, now: DateTime<Utc>) -> Result<Rows, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let mut scopes: BTreeSet<Scope> = w.spend.keys().map(|(s, _, _)| s.clone()).collect();
        for (_, s, _) in &w.releases {
            scopes.extend(s.iter().cloned());
        }
        let all: Vec<Scope> = scopes.iter().cloned().collect();
        Self::ensure(&mut tx, &self.unknown(&all), now).await?;
        // Only rows still there free money: a swept reservation was freed by the sweep.
        let ids: Vec<String> = w.releases.iter().map(|(id, _, _)| id.clone()).collect();
        let removed: HashSet<String> = sqlx::query_scalar(
            "DELETE FROM budget_reservations WHERE id IN \
             (SELECT id FROM budget_reservations WHERE id = ANY($1) ORDER BY id FOR UPDATE) \
             RETURNING id",
        )
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect();
        let mut freed: HashMap<&Scope, f64> = HashMap::new();
        for (id, scopes, amount) in &w.releases {
            if removed.contains(id) {
                for s in scopes {
                    *freed.entry(s).or_insert(0.0) += amount;
                }
            }
        }
        let sql = settle_sql();
        let (nd, nm) = (day_index(now), month_index(now));
        let mut rows = Vec::new();
        for scope in &all {
            let mut groups: Vec<(i64, i64, f64)> = w
                .spend
                .iter()
                .filter(|((s, _, _), _)| s == scope)
                .map(|((_, d, m), c)| (*d, *m, *c))
                .collect();
            if groups.is_empty() {
                groups.push((nd, nm, 0.0));
            }
            let mut free = freed.get(scope).copied().unwrap_or(0.0);
            for (d, m, cost) in groups {
                let row = sqlx::query(&sql)
                    .bind(key_of(scope))
                    .bind(nd.max(d))
                    .bind(nm.max(m))
                    .bind(free)
                    .bind(cost)
                    .bind(d)
                    .bind(m)
                    .fetch_optional(&mut *tx)
                    .await?;
                free = 0.0;
                if let Some(r) = row {
                    rows.push((scope.clone(), row_of(&r)?.1));
                }
            }
        }
        tx.commit().await?;
        Ok(rows)
    }

    /// Writes what is queued; true when nothing is left or it was written.
    async fn flush(&self, book: &BudgetBook, now: DateTime<Utc>) -> bool {
        let w = self.with(|l| {
            let w = std::mem::take(&mut l.queued);
            l.writing = w.clone();
            w
        });
        if w.is_empty() {
            return true;
        }
        match self.bounded(self.write(&w, now)).await {
            Ok(rows) => {
                let generation = self.with(|l| {
                    l.writing = Unwritten::default();
                    l.generation += 1;
                    l.generation
                });
                self.mirror(book, &rows, generation, now);
                true
            }
            Err(e) => {
                // A transaction that timed out while its commit was on the
                // wire may have committed; writing it again then counts its
                // cost twice, which errs on the strict side, where losing it
                // would let budgets overspend.
                self.with(|l| {
                    let w = std::mem::take(&mut l.writing);
                    let newer = std::mem::take(&mut l.queued);
                    l.queued = w;
                    l.queued.merge(newer);
                    l.generation += 1;
                });
                self.failed("settle", &e);
                // Whatever the error, new reservations stay in this process
                // until a sync round writes the queue: so the queue of rows
                // to remove never outgrows the reservations in flight when
                // writing began to fail (spend is one sum per budget and
                // window).
                if self.up.swap(false, Ordering::Relaxed) && !e.unreachable() {
                    warn!("shared budget writes failing: enforcing budgets from this replica's last known figures");
                }
                false
            }
        }
    }

    /// Removes reservations that expired by `now` and frees their money;
    /// returns how many.
    async fn sweep(&self, now: DateTime<Utc>) -> Result<u64, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(
            "WITH gone AS (DELETE FROM budget_reservations WHERE id IN \
               (SELECT id FROM budget_reservations WHERE expires_ms <= $1 ORDER BY id FOR UPDATE) \
               RETURNING scopes, amount_usd) \
             SELECT s AS scope, SUM(amount_usd)::float8 AS amount, COUNT(*)::int8 AS n \
             FROM gone, unnest(gone.scopes) AS s GROUP BY s ORDER BY s",
        )
        .bind(now.timestamp_millis())
        .fetch_all(&mut *tx)
        .await?;
        let mut swept = 0;
        for r in &rows {
            let scope: String = r.try_get("scope")?;
            let amount: f64 = r.try_get("amount")?;
            swept = swept.max(u64::try_from(r.try_get::<i64, _>("n")?).unwrap_or(0));
            sqlx::query(
                "UPDATE budget_spend SET reserved_usd = GREATEST(reserved_usd - $2, 0) WHERE scope = $1",
            )
            .bind(scope)
            .bind(amount)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(swept)
    }

    /// One round of the sync task: sweep, write what is queued, re-read every
    /// known budget. Also the probe that brings an unreachable store back.
    pub(crate) async fn sync(&self, book: &BudgetBook, now: DateTime<Utc>, metrics: &Metrics) {
        let reachable = match self.bounded(self.sweep(now)).await {
            Ok(n) => {
                if n > 0 {
                    info!(reservations = n, "swept expired budget reservations");
                    metrics.add(metrics::BUDGET_EXPIRED, Vec::new(), n as f64);
                }
                true
            }
            Err(e) => {
                self.failed("sweep", &e);
                !e.unreachable()
            }
        };
        if !reachable {
            metrics.set(metrics::BUDGET_STORE_UP, Vec::new(), 0.0);
            return;
        }
        if !self.flush(book, now).await {
            metrics.set(metrics::BUDGET_STORE_UP, Vec::new(), 0.0);
            return;
        }
        let generation = self.generation();
        match self.bounded(self.read(None, now)).await {
            Ok(rows) => {
                self.mirror(book, &rows, generation, now);
                self.with(|l| l.offline_reserved.retain(|_, v| *v > 0.0));
                if !self.up.swap(true, Ordering::Relaxed) {
                    info!("shared budget store reachable again: spend written, figures re-read");
                }
            }
            Err(e) => self.failed("read", &e),
        }
        metrics.set(
            metrics::BUDGET_STORE_UP,
            Vec::new(),
            if self.is_up() { 1.0 } else { 0.0 },
        );
    }
}

/// Runs the sync task of `book`'s shared store until `stop`: settles are
/// written as soon as they are queued, the rest every `sync_interval_ms`,
/// after which the budget gauges are published from the fresh figures
/// (under `config()`, the configuration in force). At stop, what is queued
/// gets one bounded last write.
pub fn start_sync(
    book: Arc<BudgetBook>,
    clock: SharedClock,
    metrics: Arc<Metrics>,
    config: impl Fn() -> Option<Arc<watershed_policies::Config>> + Send + 'static,
    tracker: &TaskTracker,
    stop: CancellationToken,
) {
    let Some(shared) = book.shared.clone() else {
        return;
    };
    let interval = Duration::from_millis(shared.settings.sync_interval_ms);
    tracker.spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = shared.wake.notified() => {
                    if shared.is_up() {
                        shared.flush(&book, clock.now()).await;
                    }
                }
                _ = tick.tick() => {
                    let now = clock.now();
                    shared.sync(&book, now, &metrics).await;
                    if let Some(cfg) = config() {
                        book.publish(&cfg, &metrics, now);
                    }
                }
            }
        }
        if shared.is_up() && !shared.flush(&book, clock.now()).await {
            warn!("budget spend not written at shutdown; other replicas undercount it until their reservations expire");
        }
    });
}

#[cfg(test)]
mod tests {
    //! Against the real PostgreSQL (`WATERSHED_TEST_POSTGRES`, else the local
    //! `test` database), each test in a schema of its own, dropped at the end.
    //! Two books on one schema are two replicas.

    use watershed_dashboards::ledger::{LedgerStore, PgStore};
    use watershed_policies::{BudgetState, Config};
    use watershed_tests::proxy::CutProxy;

    use super::*;
    use crate::access::Caller;
    use crate::budget::Reservation;

    fn base() -> String {
        std::env::var("WATERSHED_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
    }

    fn config() -> Config {
        watershed_policies::load_config(
            "version: 1\nmodels:\n  local: { engine: local, gguf: m.gguf }\n\
             routes:\n  - name: all\n    to: [local]\n\
             teams:\n  support: { budget: { daily_usd: 1.0, on_exhausted: reject } }\n\
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

    fn settings() -> SharedBudgetSettings {
        SharedBudgetSettings {
            reservation_ttl_s: 60,
            sync_interval_ms: 100,
            timeout_ms: 1_000,
            when_unknown_open: false,
        }
    }

    /// A fresh schema with the ledger's migrations; dropped by `drop_schema`.
    async fn schema(tag: &str) -> String {
        let name = format!("budget_pg_{tag}_{}", std::process::id());
        let admin = sqlx::PgPool::connect(&base()).await.unwrap();
        sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
            .execute(&admin)
            .await
            .unwrap();
        let store = PgStore::connect(&format!("{}?schema={name}", base()))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        name
    }

    /// Drops the schema when the test ends, also when it fails: others share
    /// the server.
    struct Dropper(String);

    impl Drop for Dropper {
        fn drop(&mut self) {
            let name = self.0.clone();
            let _ = std::thread::spawn(move || {
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    rt.block_on(drop_schema(&name));
                }
            })
            .join();
        }
    }

    async fn drop_schema(name: &str) {
        let admin = sqlx::PgPool::connect(&base()).await.unwrap();
        sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
            .execute(&admin)
            .await
            .unwrap();
    }

    async fn replica(url: &str, settings: SharedBudgetSettings) -> Arc<BudgetBook> {
        let store = PgStore::connect(url).await.unwrap();
        Arc::new(BudgetBook::shared(SharedStore::new(
            store.pool().clone(),
            settings,
        )))
    }

    /// Reserves `amount` for `caller()` the way the request path does:
    /// re-read, verdict, reserve, confirm.
    async fn take(
        book: &Arc<BudgetBook>,
        cfg: &Config,
        amount: f64,
        now: DateTime<Utc>,
    ) -> Result<Reservation, String> {
        take_as(book, cfg, &caller(), amount, now).await
    }

    async fn take_as(
        book: &Arc<BudgetBook>,
        cfg: &Config,
        caller: &Caller,
        amount: f64,
        now: DateTime<Utc>,
    ) -> Result<Reservation, String> {
        let metrics = Metrics::default();
        book.refresh(cfg, caller, now).await;
        let v = book.verdict(cfg, caller, amount, now);
        if v.state == BudgetState::Exhausted {
            return Err(format!("verdict: {}", v.describe(now)));
        }
        let mut r = book.reserve(cfg, caller, amount, now);
        book.confirm(&mut r, cfg, &metrics)
            .await
            .map_err(|e| format!("{e:?}"))?;
        Ok(r)
    }

    /// The value of the sample `series` in a rendering of the metrics.
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    }

    fn store_of(book: &BudgetBook) -> &SharedStore {
        book.shared.as_deref().unwrap()
    }

    async fn row(url: &str, scope: &str) -> SpendRow {
        let store = PgStore::connect(url).await.unwrap();
        let r = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM budget_spend WHERE scope = $1"
        ))
        .bind(scope)
        .fetch_one(store.pool())
        .await
        .unwrap();
        row_of(&r).unwrap().1
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_replicas_racing_for_one_budget_admit_exactly_what_fits() {
        let name = schema("race").await;
        let _drop = Dropper(name.clone());
        let url = format!("{}?schema={name}", base());
        let cfg = Arc::new(config());
        let (a, b) = (
            replica(&url, settings()).await,
            replica(&url, settings()).await,
        );
        let now = at("2026-11-26T10:00:00Z");
        // 40 reservations of $0.07 at once, half through each replica, on a
        // $1.00 day: exactly 14 fit (0.98), the 15th would make 1.05.
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..40 {
            let book = if i % 2 == 0 { a.clone() } else { b.clone() };
            let cfg = cfg.clone();
            tasks.spawn(async move { take(&book, &cfg, 0.07, now).await });
        }
        let mut held = Vec::new();
        let mut refused = 0;
        while let Some(r) = tasks.join_next().await {
            match r.unwrap() {
                Ok(r) => held.push(r),
                Err(_) => refused += 1,
            }
        }
        assert_eq!(held.len(), 14, "{refused} refused");
        let r = row(&url, "team:support").await;
        assert!((r.reserved_usd - 0.98).abs() < 1e-9, "{r:?}");
        assert!(r.day_usd + r.reserved_usd <= 1.0);
        // Each settles for less than it reserved; the money comes back to
        // both replicas once the settles are written.
        for r in held {
            r.settle(0.05, now);
        }
        assert!(store_of(&a).flush(&a, now).await);
        assert!(store_of(&b).flush(&b, now).await);
        let r = row(&url, "team:support").await;
        assert!((r.day_usd - 0.70).abs() < 1e-9, "{r:?}");
        assert!(r.reserved_usd.abs() < 1e-9, "{r:?}");
        let reservations: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM budget_reservations")
            .fetch_one(PgStore::connect(&url).await.unwrap().pool())
            .await
            .unwrap();
        assert_eq!(reservations, 0);
        // The key's monthly budget got the same spend.
        let k = row(&url, "key:bot").await;
        assert!((k.month_usd - 0.70).abs() < 1e-9, "{k:?}");
        // $0.30 is left: one more $0.29 fits, through either replica, and a
        // $0.02 after it does not.
        let r = take(&a, &cfg, 0.29, now).await.unwrap();
        assert!(take(&b, &cfg, 0.02, now).await.is_err());
        drop(r);
        assert!(store_of(&a).flush(&a, now).await);
        assert!(take(&b, &cfg, 0.02, now).await.is_ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dead_replicas_reservation_expires_and_is_swept() {
        let name = schema("sweep").await;
        let _drop = Dropper(name.clone());
        let url = format!("{}?schema={name}", base());
        let cfg = config();
        let (a, b) = (
            replica(&url, settings()).await,
            replica(&url, settings()).await,
        );
        let now = at("2026-11-26T10:00:00Z");
        let metrics = Metrics::default();
        // Replica A reserves $0.90 and dies before settling (its reservation
        // is never dropped, as in a killed process).
        let dead = take(&a, &cfg, 0.9, now).await.unwrap();
        assert!(take(&b, &cfg, 0.5, now).await.is_err());
        // Before the lifetime passes, a sweep frees nothing.
        store_of(&b)
            .sync(&b, now + chrono::Duration::seconds(59), &metrics)
            .await;
        assert!(take(&b, &cfg, 0.5, now).await.is_err());
        let later = now + chrono::Duration::seconds(61);
        store_of(&b).sync(&b, later, &metrics).await;
        assert_eq!(
            sample(
                &metrics.render(),
                "watershed_budget_reservations_expired_total"
            ),
            Some(1.0)
        );
        let ok = take(&b, &cfg, 0.5, later).await.unwrap();
        assert!((row(&url, "team:support").await.reserved_usd - 0.5).abs() < 1e-9);
        // Had A only stalled, its late settle adds its cost and frees
        // nothing a second time: B's $0.50 stays reserved.
        dead.settle(0.3, later);
        assert!(store_of(&a).flush(&a, later).await);
        let r = row(&url, "team:support").await;
        assert!((r.reserved_usd - 0.5).abs() < 1e-9, "{r:?}");
        assert!((r.day_usd - 0.3).abs() < 1e-9, "{r:?}");
        drop(ok);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replica_started_while_the_store_is_away_knows_nothing_until_it_returns() {
        let name = schema("start").await;
        let _drop = Dropper(name.clone());
        let direct = format!("{}?schema={name}", base());
        let proxy = CutProxy::start("127.0.0.1:5432").await.unwrap();
        proxy.cut().await;
        let via = direct.replace("127.0.0.1:5432", &format!("127.0.0.1:{}", proxy.port));
        let cfg = config();
        let metrics = Metrics::default();
        let now = at("2026-11-26T10:00:00Z");
        let b = replica(&direct, settings()).await;
        take(&b, &cfg, 0.4, now).await.unwrap().settle(0.4, now);
        assert!(store_of(&b).flush(&b, now).await);
        let pool = PgStore::connect_lazy(&via, 2).unwrap().pool().clone();
        let a = Arc::new(BudgetBook::shared(SharedStore::new(
            pool.clone(),
            settings(),
        )));
        assert!(a.load(now).await.is_err());
        assert!(!store_of(&a).is_up());
        let mut r = a.reserve(&cfg, &caller(), 0.1, now);
        assert!(matches!(
            a.confirm(&mut r, &cfg, &metrics).await,
            Err(Refusal::Unknown(_))
        ));
        drop(r);
        // With when_unknown: open it admits from nothing known.
        let open = Arc::new(BudgetBook::shared(SharedStore::new(
            pool,
            SharedBudgetSettings {
                when_unknown_open: true,
                ..settings()
            },
        )));
        assert!(open.load(now).await.is_err());
        let mut r = open.reserve(&cfg, &caller(), 0.1, now);
        open.confirm(&mut r, &cfg, &metrics).await.unwrap();
        assert_eq!(r.held, Held::Offline);
        drop(r);
        proxy.restore();
        store_of(&a).sync(&a, now, &metrics).await;
        assert!(store_of(&a).is_up());
        // Now it knows B's $0.40: $0.70 more does not fit.
        assert_eq!(
            a.verdict(&cfg, &caller(), 0.7, now).state,
            BudgetState::Exhausted
        );
        assert!(take(&a, &cfg, 0.6, now).await.is_ok());
        drop(proxy);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn while_the_store_is_cut_off_budgets_hold_from_the_last_figures_and_reconcile() {
        let name = schema("cut").await;
        let _drop = Dropper(name.clone());
        let direct = format!("{}?schema={name}", base());
        let proxy = CutProxy::start("127.0.0.1:5432").await.unwrap();
        let via = direct.replace("127.0.0.1:5432", &format!("127.0.0.1:{}", proxy.port));
        assert_ne!(via, direct, "the test database must be on 127.0.0.1:5432");
        let cfg = config();
        let metrics = Metrics::default();
        let a = replica(&via, settings()).await;
        let b = replica(&direct, settings()).await;
        let now = at("2026-11-26T10:00:00Z");
        // A caller of the team without a budget of its own key.
        let other = Caller {
            key_id: "anonymous".into(),
            team: "support".into(),
        };
        // Replica B spent $0.40 of the team's day; nobody used key "bot" yet.
        take_as(&b, &cfg, &other, 0.4, now)
            .await
            .unwrap()
            .settle(0.4, now);
        assert!(store_of(&b).flush(&b, now).await);
        a.load(now).await.unwrap();
        assert!(store_of(&a).is_up());

        proxy.cut().await;
        // The first query finds the store gone; after it A decides alone.
        a.refresh(&cfg, &caller(), now).await;
        assert!(!store_of(&a).is_up());
        // The key's budget was never read: with when_unknown closed it refuses.
        let mut r = a.reserve(&cfg, &caller(), 0.2, now);
        assert_eq!(
            a.confirm(&mut r, &cfg, &metrics).await,
            Err(Refusal::Unknown(Scope::Key("bot".into())))
        );
        drop(r);
        // The team alone (a caller without a key budget): $0.60 left at the
        // last read; $0.50 taken here leaves $0.10, so $0.20 more is refused.
        let mut r = a.reserve(&cfg, &other, 0.5, now);
        a.confirm(&mut r, &cfg, &metrics).await.unwrap();
        assert_eq!(r.held, Held::Offline);
        assert_eq!(
            a.verdict(&cfg, &other, 0.2, now).state,
            BudgetState::Exhausted
        );
        assert_eq!(
            a.verdict(&cfg, &other, 0.1, now).state,
            BudgetState::Alerting
        );
        r.settle(0.45, now);
        // Still cut: the sync round writes nothing and says so.
        store_of(&a).sync(&a, now, &metrics).await;
        assert!(!store_of(&a).is_up());
        assert_eq!(
            sample(&metrics.render(), "watershed_budget_store_up"),
            Some(0.0)
        );
        assert!((row(&direct, "team:support").await.day_usd - 0.4).abs() < 1e-9);

        proxy.restore();
        store_of(&a).sync(&a, now, &metrics).await;
        assert!(store_of(&a).is_up());
        assert_eq!(
            sample(&metrics.render(), "watershed_budget_store_up"),
            Some(1.0)
        );
        // What A spent while cut off is in the shared row now, once.
        let r = row(&direct, "team:support").await;
        assert!((r.day_usd - 0.85).abs() < 1e-9, "{r:?}");
        assert!(r.reserved_usd.abs() < 1e-9, "{r:?}");
        store_of(&a).sync(&a, now, &metrics).await;
        assert!((row(&direct, "team:support").await.day_usd - 0.85).abs() < 1e-9);
        // And B sees it: $0.15 left for the team.
        assert!(take_as(&b, &cfg, &other, 0.2, now).await.is_err());
        assert!(take_as(&b, &cfg, &other, 0.1, now).await.is_ok());
        drop(proxy);
    }
}
