//! Helpers shared by the dashboards integration tests.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use watershed_dashboards::ledger::LedgerRecord;

/// A fresh path in the temp dir that no other test (or run) uses.
pub fn temp_db(tag: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    std::env::temp_dir().join(format!(
        "watershed-{tag}-{}-{nanos}-{}.db",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// A record with every field set to something distinctive.
pub fn record(i: usize) -> LedgerRecord {
    LedgerRecord {
        request_id: format!("req-{i:06}"),
        ts_ms: 1_774_000_000_000 + i as i64 * 1000,
        team: if i.is_multiple_of(2) {
            "legal"
        } else {
            "support"
        }
        .into(),
        key_id: "anonymous".into(),
        route: "everything-else".into(),
        backend: "gpt-5.4-mini".into(),
        backend_kind: "openai".into(),
        model: "gpt-5.4-mini-2026-03-17".into(),
        privacy: "internal".into(),
        prompt_tokens: 1200 + i as i64,
        completion_tokens: 340,
        cached_tokens: 200,
        cost_usd: 0.0023865,
        counterfactual_usd: 0.00871,
        engine_seconds: 0.0,
        ttft_ms: Some(123.5),
        latency_ms: 987.25,
        status: 200,
        error_code: None,
        finish_reason: Some("stop".into()),
        stream: true,
        attempts: 1,
        difficulty: Some(0.42),
        explanation: Some(r#"{"route":"everything-else","privacy":{"evidence":[]}}"#.into()),
    }
}

/// The `LedgerStore` contract every backend keeps; each backend's test file runs
/// these against its own store.
pub mod contract {
    use watershed_dashboards::ledger::{LedgerRecord, LedgerStore};

    use super::record;

    /// Every field survives a write and a read, optional ones absent included.
    pub async fn every_field_round_trips(s: &dyn LedgerStore) {
        let full = record(7);
        // A failed request: optional fields absent, odd values.
        let sparse = LedgerRecord {
            request_id: "req-failed".into(),
            ts_ms: -5,
            ttft_ms: None,
            error_code: Some("upstream_timeout".into()),
            finish_reason: None,
            difficulty: None,
            explanation: None,
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

    /// The same request id again, alone and inside a batch, leaves the first
    /// write in place.
    pub async fn replaying_a_request_id_leaves_one_row(s: &dyn LedgerStore) {
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
        assert_eq!(
            s.fetch(&first.request_id).await.unwrap(),
            Some(first),
            "the first write wins"
        );
    }

    /// `list` returns a half-open time window, oldest first.
    pub async fn list_returns_a_time_window_in_order(s: &dyn LedgerStore) {
        let rows: Vec<_> = (0..10).rev().map(record).collect();
        s.insert_batch(&rows).await.unwrap();
        let t0 = record(0).ts_ms;
        let got = s.list(t0 + 2000, t0 + 5000, 100).await.unwrap();
        let ids: Vec<_> = got.iter().map(|r| r.request_id.as_str()).collect();
        assert_eq!(ids, ["req-000002", "req-000003", "req-000004"]);
        assert_eq!(
            s.list(t0, t0 + 10_000, 4).await.unwrap().len(),
            4,
            "the limit holds"
        );
    }

    /// Budgets are seeded from spend on paid targets by team and key: this
    /// month's, and today's part of it; local answers do not count.
    pub async fn settled_spend_counts_paid_targets_by_team_and_key(s: &dyn LedgerStore) {
        let day = 1_764_115_200_000; // 2025-11-26T00:00:00Z
        let month = 1_761_955_200_000; // 2025-11-01T00:00:00Z
        let row =
            |i: usize, ts_ms: i64, team: &str, key: &str, kind: &str, cost: f64| LedgerRecord {
                ts_ms,
                team: team.into(),
                key_id: key.into(),
                backend_kind: kind.into(),
                cost_usd: cost,
                ..record(i)
            };
        s.insert_batch(&[
            row(1, day + 10, "legal", "bot", "openai", 1.25),
            row(2, day - 10, "legal", "bot", "openai", 2.0),
            row(3, month - 10, "legal", "bot", "openai", 100.0),
            row(4, day + 20, "legal", "bot", "local", 7.0),
            row(5, day + 30, "support", "anonymous", "anthropic", 0.5),
        ])
        .await
        .unwrap();
        let mut got = s.settled_spend(month, day).await.unwrap();
        got.sort_by(|a, b| a.team.cmp(&b.team));
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(
            (got[0].team.as_str(), got[0].key_id.as_str()),
            ("legal", "bot")
        );
        assert!((got[0].day_usd - 1.25).abs() < 1e-9, "{got:?}");
        assert!((got[0].month_usd - 3.25).abs() < 1e-9, "{got:?}");
        assert!((got[1].day_usd - 0.5).abs() < 1e-9, "{got:?}");
    }
}
