//! The SQLite ledger store: migrations, round trips and replay idempotence.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use common::{contract, temp_db};
use watershed_dashboards::ledger::{open_store, SqliteStore};

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
