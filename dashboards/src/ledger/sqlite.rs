//! The SQLite ledger store: the embedded default, one file in WAL mode so the
//! background writer and report readers do not block each other.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::Row;

use super::{settled_spend_sql, LedgerError, LedgerRecord, LedgerStore, SettledSpend, COLUMNS};

/// A ledger in one SQLite database.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Connects to `sqlite://PATH` (creating the file if missing) or
    /// `sqlite::memory:`; does not migrate.
    pub async fn connect(url: &str) -> Result<Self, LedgerError> {
        let memory = url.contains(":memory:") || url.contains("mode=memory");
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5));
        // An in-memory database lives as long as its one connection, so the
        // pool must hold exactly one and never retire it.
        let pool = if memory {
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            SqlitePoolOptions::new().max_connections(4)
        }
        .connect_with(options)
        .await?;
        Ok(Self { pool })
    }

    /// The pool, for report queries that live next to the store.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

fn insert_sql() -> String {
    format!(
        "INSERT INTO ledger ({COLUMNS}) VALUES \
         (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT(request_id) DO NOTHING"
    )
}

pub(crate) fn record_from_row(row: &SqliteRow) -> Result<LedgerRecord, sqlx::Error> {
    record_from_row!(row)
}

#[async_trait]
impl LedgerStore for SqliteStore {
    async fn migrate(&self) -> Result<(), LedgerError> {
        sqlx::migrate!("./migrations/sqlite")
            .run(&self.pool)
            .await?;
        Ok(())
    }

    async fn insert_batch(&self, rows: &[LedgerRecord]) -> Result<(), LedgerError> {
        if rows.is_empty() {
            return Ok(());
        }
        let sql = insert_sql();
        let mut tx = self.pool.begin().await?;
        for r in rows {
            bind_record!(sqlx::query(&sql), r).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn fetch(&self, request_id: &str) -> Result<Option<LedgerRecord>, LedgerError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM ledger WHERE request_id = ?"
        ))
        .bind(request_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(record_from_row).transpose()?)
    }

    async fn count(&self) -> Result<i64, LedgerError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ledger")
            .fetch_one(&self.pool)
            .await?;
        Ok(n)
    }

    async fn list(
        &self,
        since_ms: i64,
        until_ms: i64,
        limit: i64,
    ) -> Result<Vec<LedgerRecord>, LedgerError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM ledger WHERE ts_ms >= ? AND ts_ms < ? \
             ORDER BY ts_ms, request_id LIMIT ?"
        ))
        .bind(since_ms)
        .bind(until_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(record_from_row).collect::<Result<_, _>>()?)
    }

    async fn settled_spend(
        &self,
        month_start_ms: i64,
        day_start_ms: i64,
    ) -> Result<Vec<SettledSpend>, LedgerError> {
        let rows = sqlx::query(&settled_spend_sql("?", "?"))
            .bind(day_start_ms)
            .bind(month_start_ms)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|row| settled_from_row!(row))
            .collect::<Result<_, _>>()?)
    }
}
