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
    /// local | openai | openai-compatible | anthropic
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
    let per = 23;
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
    error_code, finish_reason, stream, attempts, difficulty";
