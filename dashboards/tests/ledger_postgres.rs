//! The PostgreSQL ledger store against the real server (127.0.0.1:5432, user
//! postgres, database test; `scripts/setup.sh --test` starts it): the same
//! contract as the SQLite store — migrations, every field round trips, replay
//! is a no-op, time windows — each test in a schema of its own.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::sync::Arc;

use common::record;
use watershed_dashboards::ledger::{open_store, LedgerRecord, LedgerStore};

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
    let s = store("roundtrip").await;
    let full = record(7);
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
    s.insert_batch(&[full.clone(), sparse.clone()])
        .await
        .unwrap();
    assert_eq!(s.fetch("req-000007").await.unwrap(), Some(full));
    assert_eq!(s.fetch("req-failed").await.unwrap(), Some(sparse));
    assert_eq!(s.fetch("missing").await.unwrap(), None);
    assert_eq!(s.count().await.unwrap(), 2);
}

#[tokio::test]
async fn replaying_a_request_id_leaves_one_row() {
    let s = store("replay").await;
    let first = record(1);
    s.insert_batch(std::slice::from_ref(&first)).await.unwrap();
    let replay = LedgerRecord {
        cost_usd: 99.0,
        ..first.clone()
    };
    s.insert_batch(std::slice::from_ref(&replay)).await.unwrap();
    s.insert_batch(&[record(2), replay, record(3)])
        .await
        .unwrap();
    assert_eq!(s.count().await.unwrap(), 3);
    assert_eq!(s.fetch(&first.request_id).await.unwrap(), Some(first));
}

#[tokio::test]
async fn list_returns_a_time_window_in_order() {
    let s = store("list").await;
    let rows: Vec<_> = (0..10).rev().map(record).collect();
    s.insert_batch(&rows).await.unwrap();
    let t0 = record(0).ts_ms;
    let got = s.list(t0 + 2000, t0 + 5000, 100).await.unwrap();
    let ids: Vec<_> = got.iter().map(|r| r.request_id.as_str()).collect();
    assert_eq!(ids, ["req-000002", "req-000003", "req-000004"]);
}

#[tokio::test]
async fn a_bad_schema_name_is_refused() {
    let err = open_store(&format!("{}?schema=x;drop", base_url()))
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("invalid schema"), "{err}");
}
