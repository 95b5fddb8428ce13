//! The PostgreSQL ledger store, for several gateway replicas sharing one
//! ledger: the same `LedgerStore` contract as the SQLite store, with its own
//! migration set.

use std::str::FromStr;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, Row};

use super::{
    first_of_each_id, insert_rows_sql, settled_spend_sql, LedgerError, LedgerRecord, LedgerStore,
    SettledSpend, COLUMNS, INSERT_CHUNK, ROLLUP_CHUNK,
};
use crate::report::rollup::{
    self, bind_rollup, day_label, summarize_sql, summary_from_row, upsert_sql, Dialect, Dimension,
    RollupTable, Summary,
};

/// A ledger in one PostgreSQL database (optionally in its own schema).
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

/// Splits a `schema=NAME` parameter off a postgres URL (sqlx does not know it).
fn split_schema(url: &str) -> Result<(String, Option<String>), LedgerError> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), None));
    };
    let mut schema = None;
    let mut rest = Vec::new();
    for kv in query.split('&') {
        match kv.strip_prefix("schema=") {
            Some(s) => schema = Some(s.to_owned()),
            None => rest.push(kv),
        }
    }
    if let Some(s) = &schema {
        if s.is_empty() || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(LedgerError::Invalid(format!(
                "invalid schema \"{s}\" in ledger url (letters, digits and _ only)"
            )));
        }
    }
    let url = if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    Ok((url, schema))
}

impl PgStore {
    /// Connects to `postgres://...`; a `schema=NAME` URL parameter keeps the
    /// ledger (and its migration history) in that schema, creating it.
    pub async fn connect(url: &str) -> Result<Self, LedgerError> {
        let (url, schema) = split_schema(url)?;
        let mut options = PgConnectOptions::from_str(&url)?;
        if let Some(s) = &schema {
            let mut conn = sqlx::PgConnection::connect_with(&options).await?;
            sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS \"{s}\""))
                .execute(&mut conn)
                .await?;
            conn.close().await?;
            options = options.options([("search_path", s.as_str())]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }

    /// Like `connect`, but connects on first use (and the schema must
    /// exist): for callers that must start while the database is away.
    pub fn connect_lazy(url: &str, max_connections: u32) -> Result<Self, LedgerError> {
        let (url, schema) = split_schema(url)?;
        let mut options = PgConnectOptions::from_str(&url)?;
        if let Some(s) = &schema {
            options = options.options([("search_path", s.as_str())]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .connect_lazy_with(options);
        Ok(Self { pool })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

pub(crate) fn record_from_row(row: &PgRow) -> Result<LedgerRecord, sqlx::Error> {
    record_from_row!(row)
}

#[async_trait]
impl LedgerStore for PgStore {
    async fn migrate(&self) -> Result<(), LedgerError> {
        sqlx::migrate!("./migrations/postgres")
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
            let sql = insert_rows_sql(Dialect::Postgres, chunk.len());
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
                let sql = upsert_sql(Dialect::Postgres, table, chunk.len());
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
            "SELECT {COLUMNS} FROM ledger WHERE request_id = $1"
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
            "SELECT {COLUMNS} FROM ledger WHERE ts_ms >= $1 AND ts_ms < $2 \
             ORDER BY ts_ms, request_id LIMIT $3"
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
        let sql = summarize_sql(Dialect::Postgres, by, team.is_some());
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
        let rows = sqlx::query(&settled_spend_sql("$1", "$2"))
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
