//! The SQLite ledger store: migrations, round trips and replay idempotence.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use common::{record, temp_db};
use watershed_dashboards::ledger::{open_store, LedgerRecord, SqliteStore};

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
    let full = record(7);
    // A failed request: optional fields absent, odd values.
    let sparse = LedgerRecord {
        request_id: "req-failed".into(),
        ts_ms: -5,
        ttft_ms: None,
        error_code: Some("upstream_timeout".into()),
        finish_reason: None,
        difficulty: None,
        status: 504,
        stream: false,
        attempts: 3,
        cost_usd: 0.0,
        prompt_tokens: i64::MAX,
        ..record(8)
    };
    store
        .insert_batch(&[full.clone(), sparse.clone()])
        .await
        .unwrap();
    assert_eq!(store.fetch("req-000007").await.unwrap(), Some(full));
    assert_eq!(store.fetch("req-failed").await.unwrap(), Some(sparse));
    assert_eq!(store.fetch("missing").await.unwrap(), None);
    assert_eq!(store.count().await.unwrap(), 2);
    let _ = std::fs::remove_file(path);
}

#[tokio::test]
async fn replaying_a_request_id_leaves_one_row() {
    let store = open_store("sqlite::memory:").await.unwrap();
    let first = record(1);
    store
        .insert_batch(std::slice::from_ref(&first))
        .await
        .unwrap();
    // The same id again, alone and inside a batch, with different content.
    let replay = LedgerRecord {
        cost_usd: 99.0,
        ..first.clone()
    };
    store
        .insert_batch(std::slice::from_ref(&replay))
        .await
        .unwrap();
    store
        .insert_batch(&[record(2), replay, record(3)])
        .await
        .unwrap();
    assert_eq!(store.count().await.unwrap(), 3);
    assert_eq!(
        store.fetch(&first.request_id).await.unwrap(),
        Some(first),
        "the first write wins"
    );
}

#[tokio::test]
async fn list_returns_a_time_window_in_order() {
    let store = open_store("sqlite::memory:").await.unwrap();
    let rows: Vec<_> = (0..10).rev().map(record).collect();
    store.insert_batch(&rows).await.unwrap();
    let t0 = record(0).ts_ms;
    let got = store.list(t0 + 2000, t0 + 5000, 100).await.unwrap();
    let ids: Vec<_> = got.iter().map(|r| r.request_id.as_str()).collect();
    assert_eq!(ids, ["req-000002", "req-000003", "req-000004"]);
    assert_eq!(store.list(t0, t0 + 10_000, 4).await.unwrap().len(), 4);
}

#[tokio::test]
async fn unknown_schemes_are_refused() {
    let err = open_store("mysql://x").await.err().unwrap();
    assert!(err.to_string().contains("mysql://x"), "{err}");
}
