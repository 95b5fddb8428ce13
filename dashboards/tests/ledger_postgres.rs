//! The PostgreSQL ledger store against the real server (127.0.0.1:5432, user
//! postgres, database test; `scripts/setup.sh --test` starts it): the same
//! contract as the SQLite store — migrations, every field round trips, replay
//! is a no-op, time windows, reports over the rollups — each test in a schema
//! of its own.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::sync::Arc;

use common::{contract, report_contract};
use watershed_dashboards::ledger::{open_store, LedgerStore, PgStore};

fn base_url() -> String {
    std::env::var("WATERSHED_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A store in a fresh schema, dropped first if an earlier run left it.
async fn store(tag: &str) -> Arc<dyn LedgerStore> {
    let schema = format!("ledger_{tag}_{}", std::process::id());
    let pool = sqlx::PgPool::connect(&base_url())
        .await
        .expect("PostgreSQL at 127.0.0.1:5432 (scripts/setup.sh --test starts it)");
    sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .execute(&pool)
        .await
        .unwrap();
    open_store(&format!("{}?schema={schema}", base_url()))
        .await
        .unwrap()
}

#[tokio::test]
async fn migrations_apply_to_a_fresh_schema_and_twice() {
    let s = store("migrate").await;
    assert_eq!(s.count().await.unwrap(), 0);
    s.migrate().await.unwrap();
    assert_eq!(s.count().await.unwrap(), 0);
}

#[tokio::test]
async fn every_field_round_trips() {
    contract::every_field_round_trips(&*store("roundtrip").await).await;
}

#[tokio::test]
async fn replaying_a_request_id_leaves_one_row() {
    contract::replaying_a_request_id_leaves_one_row(&*store("replay").await).await;
}

#[tokio::test]
async fn list_returns_a_time_window_in_order() {
    contract::list_returns_a_time_window_in_order(&*store("list").await).await;
}

#[tokio::test]
async fn settled_spend_counts_paid_targets_by_team_and_key() {
    contract::settled_spend_counts_paid_targets_by_team_and_key(&*store("settled").await).await;
}

#[tokio::test]
async fn a_bad_schema_name_is_refused() {
    let err = open_store(&format!("{}?schema=x;drop", base_url()))
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("invalid schema"), "{err}");
}

#[tokio::test]
async fn hand_computed_report() {
    report_contract::hand_computed_report(&*store("report").await).await;
}

#[tokio::test]
async fn idle_cost_by_day() {
    report_contract::idle_cost_by_day(&*store("idle").await).await;
}

#[tokio::test]
async fn a_price_change_mid_period() {
    report_contract::a_price_change_mid_period(&*store("price").await).await;
}

#[tokio::test]
async fn rollups_track_inserts_and_replays() {
    report_contract::rollups_track_inserts_and_replays(&*store("rollups").await).await;
}

#[tokio::test]
async fn the_rollup_migration_fills_rollups_for_rows_stored_before_it() {
    let schema = format!("ledger_backfill_{}", std::process::id());
    let url = format!("{}?schema={schema}", base_url());
    drop(store("backfill").await);
    let s = PgStore::connect(&url).await.unwrap();
    s.migrate().await.unwrap();
    let rows = report_contract::generated(1500);
    s.insert_batch(&rows).await.unwrap();
    sqlx::raw_sql(
        "DROP TABLE ledger_rollup; DROP TABLE ledger_rollup_backend; \
         DELETE FROM _sqlx_migrations WHERE version = 2",
    )
    .execute(s.pool())
    .await
    .unwrap();
    s.migrate().await.unwrap();
    report_contract::rollups_equal_raw_aggregation(&s, rows.len()).await;
}
