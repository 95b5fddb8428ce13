//! The spend ledger: one record per request that reached dispatch, stored behind
//! one interface (`LedgerStore`) so SQLite and PostgreSQL are two
//! implementations of the same contract, and written by a batched background
//! writer so the request path never waits on the database.

/// Binds every column of a `LedgerRecord`, in `COLUMNS` order, to an insert.
/// A macro, so both stores' differently typed queries share one list.
macro_rules! bind_record {
    ($query:expr, $r:expr) => {
        $query
            .bind(&$r.request_id)
            .bind($r.ts_ms)
            .bind(&$r.team)
            .bind(&$r.key_id)
            .bind(&$r.route)
            .bind(&$r.backend)
            .bind(&$r.backend_kind)
            .bind(&$r.model)
            .bind(&$r.privacy)
            .bind($r.prompt_tokens)
            .bind($r.completion_tokens)
            .bind($r.cached_tokens)
            .bind($r.cost_usd)
            .bind($r.counterfactual_usd)
            .bind($r.engine_seconds)
            .bind($r.ttft_ms)
            .bind($r.latency_ms)
            .bind($r.status)
            .bind(&$r.error_code)
            .bind(&$r.finish_reason)
            .bind($r.stream)
            .bind($r.attempts)
            .bind($r.difficulty)
            .bind(&$r.explanation)
    };
}

/// Reads a `LedgerRecord` from a row of either store.
macro_rules! record_from_row {
    ($row:expr) => {
        Ok::<_, sqlx::Error>(LedgerRecord {
            request_id: $row.try_get("request_id")?,
            ts_ms: $row.try_get("ts_ms")?,
            team: $row.try_get("team")?,
            key_id: $row.try_get("key_id")?,
            route: $row.try_get("route")?,
            backend: $row.try_get("backend")?,
            backend_kind: $row.try_get("backend_kind")?,
            model: $row.try_get("model")?,
            privacy: $row.try_get("privacy")?,
            prompt_tokens: $row.try_get("prompt_tokens")?,
            completion_tokens: $row.try_get("completion_tokens")?,
            cached_tokens: $row.try_get("cached_tokens")?,
            cost_usd: $row.try_get("cost_usd")?,
            counterfactual_usd: $row.try_get("counterfactual_usd")?,
            engine_seconds: $row.try_get("engine_seconds")?,
            ttft_ms: $row.try_get("ttft_ms")?,
            latency_ms: $row.try_get("latency_ms")?,
            status: $row.try_get("status")?,
            error_code: $row.try_get("error_code")?,
            finish_reason: $row.try_get("finish_reason")?,
            stream: $row.try_get("stream")?,
            attempts: $row.try_get("attempts")?,
            difficulty: $row.try_get("difficulty")?,
            explanation: $row.try_get("explanation")?,
        })
    };
}

/// Reads a `SettledSpend` from a row of either store.
macro_rules! settled_from_row {
    ($row:expr) => {
        Ok::<_, sqlx::Error>(SettledSpend {
            team: $row.try_get("team")?,
            key_id: $row.try_get("key_id")?,
            day_usd: $row.try_get("day_usd")?,
            month_usd: $row.try_get("month_usd")?,
        })
    };
}

mod postgres;
mod sqlite;
mod writer;

use std::sync::Arc;

use std::collections::HashSet;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::report::rollup::{Dialect, Dimension, Summary};

pub use crate::error::LedgerError;
pub use postgres::PgStore;
pub use sqlite::SqliteStore;
pub use writer::{LedgerHandle, LedgerWriter, WriterConfig, WriterStats};

/// What one request cost and how it went. Never holds prompt or response text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerRecord {
    pub request_id: String,
    /// Unix milliseconds at request start.
    pub ts_ms: i64,
    pub team: String,
    /// The virtual key's id; "anonymous" until keys exist.
    pub key_id: String,
    pub route: String,
    /// The target id that answered (or was tried last).
    pub backend: String,
    /// llama.cpp (the in-process engine) | openai | openai-compatible | anthropic | gcp.gemini
    pub backend_kind: String,
    /// The model that answered, as the backend names it.
    pub model: String,
    pub privacy: String,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached_tokens: i64,
    pub cost_usd: f64,
    pub counterfactual_usd: f64,
    pub engine_seconds: f64,
    pub ttft_ms: Option<f64>,
    pub latency_ms: f64,
    /// The HTTP status returned to the client.
    pub status: i64,
    pub error_code: Option<String>,
    pub finish_reason: Option<String>,
    pub stream: bool,
    /// How many targets were tried.
    pub attempts: i64,
    pub difficulty: Option<f64>,
    /// How the request was classified and routed, as JSON: detector kinds and
    /// character spans (never the values), difficulty, budget state, each rule
    /// checked and why. For `GET /admin/requests/{id}/explain`.
    pub explanation: Option<String>,
}

/// Spend on paid (non-local) targets of one team and key: this month's from
/// `month_start_ms` and today's from `day_start_ms`, for seeding budgets.
#[derive(Debug, Clone, PartialEq)]
pub struct SettledSpend {
    pub team: String,
    pub key_id: String,
    pub day_usd: f64,
    pub month_usd: f64,
}

/// Where ledger records live. Object safe; stored as `Arc<dyn LedgerStore>`.
#[async_trait]
pub trait LedgerStore: Send + Sync {
    /// Applies the embedded migrations; safe to call on every start.
    async fn migrate(&self) -> Result<(), LedgerError>;
    /// Inserts `rows` in one transaction; a request id already stored is left
    /// as it is (replay is a no-op), and so is a second occurrence of an id
    /// within `rows`. The daily rollups grow by exactly the rows inserted, in
    /// the same transaction.
    async fn insert_batch(&self, rows: &[LedgerRecord]) -> Result<(), LedgerError>;
    async fn fetch(&self, request_id: &str) -> Result<Option<LedgerRecord>, LedgerError>;
    async fn count(&self) -> Result<i64, LedgerError>;
    /// Records with `since_ms <= ts_ms < until_ms`, oldest first, at most `limit`.
    async fn list(
        &self,
        since_ms: i64,
        until_ms: i64,
        limit: i64,
    ) -> Result<Vec<LedgerRecord>, LedgerError>;
    /// Sums of the daily rollups for days `from_day <= day < to_day` (days
    /// since 1970-01-01, UTC), only `team`'s when given, one entry per value
    /// of `by` in ascending order (days as `YYYY-MM-DD`), or a single entry
    /// keyed "" for the whole selection when `by` is `None`.
    async fn summarize(
        &self,
        from_day: i64,
        to_day: i64,
        by: Option<Dimension>,
        team: Option<&str>,
    ) -> Result<Vec<(String, Summary)>, LedgerError>;
    /// Spend on targets other than the local engine since `month_start_ms`,
    /// by team and key, with the part since `day_start_ms`.
    async fn settled_spend(
        &self,
        month_start_ms: i64,
        day_start_ms: i64,
    ) -> Result<Vec<SettledSpend>, LedgerError>;
}

/// The settled-spend query; `{p1}`/`{p2}` are the store's placeholders for the
/// day start and the month start.
pub(crate) fn settled_spend_sql(p1: &str, p2: &str) -> String {
    format!(
        "SELECT team, key_id, \
         COALESCE(SUM(CASE WHEN ts_ms >= {p1} THEN cost_usd ELSE 0.0 END), 0.0) AS day_usd, \
         COALESCE(SUM(cost_usd), 0.0) AS month_usd \
         FROM ledger WHERE ts_ms >= {p2} AND backend_kind <> 'llama.cpp' \
         GROUP BY team, key_id"
    )
}

/// Opens (and migrates) the store a ledger URL names: `sqlite://PATH` (the file
/// is created if missing, WAL mode), `sqlite::memory:`, or
/// `postgres://USER@HOST:PORT/DB[?schema=NAME]`.
pub async fn open_store(url: &str) -> Result<Arc<dyn LedgerStore>, LedgerError> {
    if url.starts_with("sqlite:") {
        let store = SqliteStore::connect(url).await?;
        store.migrate().await?;
        return Ok(Arc::new(store));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let store = PgStore::connect(url).await?;
        store.migrate().await?;
        return Ok(Arc::new(store));
    }
    Err(LedgerError::UnsupportedUrl(url.to_owned()))
}

/// Raw rows per insert statement (23 binds each, within SQLite's 32,766).
pub(crate) const INSERT_CHUNK: usize = 1000;
/// Rollup rows per upsert statement (107 binds each).
pub(crate) const ROLLUP_CHUNK: usize = 256;

/// A multi-row insert of `n` records that skips ids already stored and
/// returns the ids it inserted.
pub(crate) fn insert_rows_sql(d: Dialect, n: usize) -> String {
    let per = COLUMNS.split(',').count();
    let values: Vec<String> = (0..n)
        .map(|r| {
            let ps: Vec<String> = (1..=per).map(|i| d.param(r * per + i)).collect();
            format!("({})", ps.join(", "))
        })
        .collect();
    format!(
        "INSERT INTO ledger ({COLUMNS}) VALUES {} \
         ON CONFLICT (request_id) DO NOTHING RETURNING request_id",
        values.join(", ")
    )
}

/// `rows` with every repeated request id after its first occurrence left out.
pub(crate) fn first_of_each_id(rows: &[LedgerRecord]) -> Vec<&LedgerRecord> {
    let mut seen = HashSet::with_capacity(rows.len());
    rows.iter()
        .filter(|r| seen.insert(r.request_id.as_str()))
        .collect()
}

/// The ledger's columns in the order every statement binds and reads them.
pub(crate) const COLUMNS: &str = "request_id, ts_ms, team, key_id, route, backend, \
    backend_kind, model, privacy, prompt_tokens, completion_tokens, cached_tokens, \
    cost_usd, counterfactual_usd, engine_seconds, ttft_ms, latency_ms, status, \
    error_code, finish_reason, stream, attempts, difficulty, explanation";
