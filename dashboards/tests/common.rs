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
    }
}
