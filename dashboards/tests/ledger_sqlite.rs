//! The SQLite ledger store: migrations, round trips, replay idempotence, and
//! reports over its rollups.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use common::{contract, report_contract, temp_db};
use watershed_dashboards::ledger::{open_store, LedgerStore, SqliteStore};

#[tokio::test]
async fn migrations_apply_on_a_fresh_file_and_twice() {
    let path = temp_db("migrate");
    assert!(!path.exists());
    let url = format!("sqlite://{}", path.display());
    let store = open_store(&url).await.unwrap();
    assert!(path.exists(), "the database file is created");
    assert_eq!(store.count().await.unwrap(), 0);
    // Running the migrations again on the same file changes nothing.
    store.migrate().await.unwrap();
    drop(store);
    let again = open_store(&url).await.unwrap();
    assert_eq!(again.count().await.unwrap(), 0);

    let direct = SqliteStore::connect(&url).await.unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(direct.pool())
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    let _ = std::fs::remove_file(path);
}

#[tokio::test]
async fn every_field_round_trips() {
    let path = temp_db("roundtrip");
    let store = open_store(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    contract::every_field_round_trips(&*store).await;
    let _ = std::fs::remove_file(path);
}

#[tokio::test]
async fn replaying_a_request_id_leaves_one_row() {
    let store = open_store("sqlite::memory:").await.unwrap();
    contract::replaying_a_request_id_leaves_one_row(&*store).await;
}

#[tokio::test]
async fn list_returns_a_time_window_in_order() {
    let store = open_store("sqlite::memory:").await.unwrap();
    contract::list_returns_a_time_window_in_order(&*store).await;
}

#[tokio::test]
async fn settled_spend_counts_paid_targets_by_team_and_key() {
    let store = open_store("sqlite::memory:").await.unwrap();
    contract::settled_spend_counts_paid_targets_by_team_and_key(&*store).await;
}

#[tokio::test]
async fn unknown_schemes_are_refused() {
    let err = open_store("mysql://x").await.err().unwrap();
    assert!(err.to_string().contains("mysql://x"), "{err}");
}

#[tokio::test]
async fn hand_computed_report() {
    let store = open_store("sqlite::memory:").await.unwrap();
    report_contract::hand_computed_report(&*store).await;
}

#[tokio::test]
async fn idle_cost_by_day() {
    let store = open_store("sqlite::memory:").await.unwrap();
    report_contract::idle_cost_by_day(&*store).await;
}

#[tokio::test]
async fn a_price_change_mid_period() {
    let store = open_store("sqlite::memory:").await.unwrap();
    report_contract::a_price_change_mid_period(&*store).await;
}

#[tokio::test]
async fn rollups_track_inserts_and_replays() {
    let store = open_store("sqlite::memory:").await.unwrap();
    report_contract::rollups_track_inserts_and_replays(&*store).await;
}

#[tokio::test]
async fn the_rollup_migration_fills_rollups_for_rows_stored_before_it() {
    let path = temp_db("backfill");
    let store = SqliteStore::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let rows = report_contract::generated(1500);
    store.insert_batch(&rows).await.unwrap();
    // Back to the schema before rollups existed, the rows kept; migrating
    // again must rebuild the rollups from them.
    sqlx::raw_sql(
        "DROP TABLE ledger_rollup; DROP TABLE ledger_rollup_backend; \
         DELETE FROM _sqlx_migrations WHERE version = 2",
    )
    .execute(store.pool())
    .await
    .unwrap();
    store.migrate().await.unwrap();
    report_contract::rollups_equal_raw_aggregation(&store, rows.len()).await;
    let _ = std::fs::remove_file(path);
}
