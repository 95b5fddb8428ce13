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

use super::{
    first_of_each_id, insert_rows_sql, settled_spend_sql, LedgerError, LedgerRecord, LedgerStore,
    SettledSpend, COLUMNS, INSERT_CHUNK, ROLLUP_CHUNK,
};
use crate::report::rollup::{
    self, bind_rollup, day_label, summarize_sql, summary_from_row, upsert_sql, Dialect, Dimension,
    RollupTable, Summary,
};

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
        let rows = first_of_each_id(rows);
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        let mut inserted = std::collections::HashSet::with_capacity(rows.len());
        for chunk in rows.chunks(INSERT_CHUNK) {
            let sql = insert_rows_sql(Dialect::Sqlite, chunk.len());
            let mut q = sqlx::query(&sql);
            for r in chunk {
                q = bind_record!(q, r);
            }
            for row in q.fetch_all(&mut *tx).await? {
                inserted.insert(row.try_get::<String, _>(0)?);
            }
        }
        // Only what this batch inserted counts, so a replay adds nothing.
        // Keys go in sorted order, so concurrent writers lock rollup rows in
        // the same order.
        let fine = rollup::rollup(
            rows.into_iter()
                .filter(|r| inserted.contains(&r.request_id)),
        );
        let coarse = rollup::by_backend(&fine);
        for (table, deltas) in [(RollupTable::Fine, fine), (RollupTable::ByBackend, coarse)] {
            let deltas: Vec<_> = deltas.into_iter().collect();
            for chunk in deltas.chunks(ROLLUP_CHUNK) {
                let sql = upsert_sql(Dialect::Sqlite, table, chunk.len());
                let mut q = sqlx::query(&sql);
                for (k, s) in chunk {
                    q = bind_rollup!(q, table, k, s);
                }
                q.execute(&mut *tx).await?;
            }
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

    async fn summarize(
        &self,
        from_day: i64,
        to_day: i64,
        by: Option<Dimension>,
        team: Option<&str>,
    ) -> Result<Vec<(String, Summary)>, LedgerError> {
        let sql = summarize_sql(Dialect::Sqlite, by, team.is_some());
        let mut q = sqlx::query(&sql).bind(from_day).bind(to_day);
        if let Some(t) = team {
            q = q.bind(t);
        }
        let rows = q.fetch_all(&self.pool).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let key = match by {
                None => String::new(),
                Some(Dimension::Day) => day_label(row.try_get::<i64, _>(0)?),
                Some(_) => row.try_get::<String, _>(0)?,
            };
            out.push((key, summary_from_row!(row)?));
        }
        // Byte order, whatever the database's collation.
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
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
