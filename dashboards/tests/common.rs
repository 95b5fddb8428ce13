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
            row(4, day + 20, "legal", "bot", "llama.cpp", 7.0),
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

/// Reports over the rollups, the same cases for every store: hand-computed
/// figures, idle fleet cost, a price change mid-period, and rollups equal to a
/// direct aggregation over the raw rows.
pub mod report_contract {
    use std::collections::BTreeMap;

    use chrono::NaiveDate;
    use watershed_dashboards::ledger::{LedgerRecord, LedgerStore};
    use watershed_dashboards::pricing::{PriceOverride, PriceTable};
    use watershed_dashboards::report::rollup::{day_of, Dimension, Summary};
    use watershed_dashboards::report::{
        self, Fleet, Period, ReportQuery, PERCENTILE_RELATIVE_ERROR,
    };
    use watershed_providers::Usage;

    use super::record;

    pub fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    pub fn ms(d: NaiveDate, hour: u32) -> i64 {
        d.and_hms_opt(hour, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp_millis()
    }

    pub fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
    }

    #[track_caller]
    pub fn assert_close(got: f64, want: f64) {
        assert!(close(got, want), "got {got}, want {want}");
    }

    /// 2 GPUs at $6.50/h: $13 an hour, $312 a day.
    pub const FLEET: Fleet = Fleet {
        gpus: 2.0,
        gpu_hour_usd: 6.5,
    };
    const FLEET_PER_SECOND: f64 = 13.0 / 3600.0;

    fn local(id: &str, ts_ms: i64, team: &str, privacy: &str, engine_seconds: f64) -> LedgerRecord {
        LedgerRecord {
            request_id: id.into(),
            ts_ms,
            team: team.into(),
            route: "confidential-stays-home".into(),
            backend: "local-moe".into(),
            backend_kind: "llama.cpp".into(),
            model: "qwen3-30b-a3b".into(),
            privacy: privacy.into(),
            engine_seconds,
            cost_usd: engine_seconds * FLEET_PER_SECOND,
            ..record(0)
        }
    }

    /// Four requests on 2026-03-02, every figure chosen to be checked by hand.
    pub fn hand_ledger() -> Vec<LedgerRecord> {
        let d = day(2026, 3, 2);
        vec![
            // Local, confidential: 1800 engine s x $13/h = $6.50.
            LedgerRecord {
                prompt_tokens: 1000,
                completion_tokens: 500,
                cached_tokens: 0,
                counterfactual_usd: 2.0,
                latency_ms: 2000.0,
                ttft_ms: Some(100.0),
                ..local("a", ms(d, 9), "legal", "confidential", 1800.0)
            },
            // Local, restricted, after a fallback: 900 s = $3.25.
            LedgerRecord {
                prompt_tokens: 400,
                completion_tokens: 100,
                cached_tokens: 0,
                counterfactual_usd: 1.0,
                latency_ms: 1000.0,
                ttft_ms: Some(50.0),
                attempts: 2,
                ..local("b", ms(d, 10), "legal", "restricted", 900.0)
            },
            // Remote, $0.50 against $1.50 all-closed.
            LedgerRecord {
                request_id: "c".into(),
                ts_ms: ms(d, 11),
                team: "support".into(),
                prompt_tokens: 2000,
                completion_tokens: 1000,
                cached_tokens: 0,
                cost_usd: 0.5,
                counterfactual_usd: 1.5,
                latency_ms: 500.0,
                ttft_ms: None,
                ..record(0)
            },
            // Remote, failed after three targets.
            LedgerRecord {
                request_id: "d".into(),
                ts_ms: ms(d, 12),
                team: "support".into(),
                prompt_tokens: 0,
                completion_tokens: 0,
                cached_tokens: 0,
                cost_usd: 0.0,
                counterfactual_usd: 0.0,
                latency_ms: 3000.0,
                ttft_ms: None,
                status: 502,
                error_code: Some("upstream_error".into()),
                attempts: 3,
                ..record(0)
            },
        ]
    }

    fn query(from: NaiveDate, to: NaiveDate, now_ms: i64) -> ReportQuery {
        ReportQuery {
            fleet: Some(FLEET),
            counterfactual_model: Some("claude-sonnet-4.6".into()),
            ..ReportQuery::new(Period::new(from, to).unwrap(), now_ms)
        }
    }

    /// The four hand-computed requests: totals, fleet, idle, savings, per
    /// team, and the same figures after the batch is replayed.
    pub async fn hand_computed_report(s: &dyn LedgerStore) {
        let rows = hand_ledger();
        s.insert_batch(&rows).await.unwrap();
        let d = day(2026, 3, 2);
        let q = query(d, d, ms(day(2026, 4, 1), 0));
        for pass in 0..2 {
            let r = report::report(s, &q, Dimension::Team).await.unwrap();
            let o = &r.overview;
            let t = &o.totals;
            assert_eq!(
                (o.from.as_str(), o.to.as_str()),
                ("2026-03-02", "2026-03-02")
            );
            assert_eq!(t.requests, 4, "pass {pass}");
            assert_eq!((t.prompt_tokens, t.completion_tokens), (3400, 1600));
            // 6.50 + 3.25 + 0.50
            assert_close(t.spend_usd, 10.25);
            assert_close(t.local_spend_usd, 9.75);
            assert_close(t.remote_spend_usd, 0.5);
            assert_close(t.counterfactual_usd, 4.5);
            assert_close(t.engine_seconds, 2700.0);
            assert_eq!(
                (t.privacy_routed, t.errors, t.fallbacks, t.local_requests),
                (2, 1, 2, 2)
            );
            // TTFT over the two that have one; tokens/s over the three that
            // succeeded: 1600 tokens in 3.5 s.
            assert_close(t.ttft_mean_ms.unwrap(), 75.0);
            assert_close(t.tokens_per_s.unwrap(), 1600.0 / 3.5);
            assert_close(t.latency_mean_ms.unwrap(), 6500.0 / 4.0);
            // p50 is the 2nd of 500, 1000, 2000, 3000: 1000 ms, in the bucket
            // [861.08, 1024) and reported at its geometric middle.
            let p50 = t.latency_p50_ms.unwrap();
            assert_close(p50, (861.0779292198037f64 * 1024.0).sqrt());
            assert!((p50 / 1000.0 - 1.0).abs() <= PERCENTILE_RELATIVE_ERROR);
            // p99 is the largest, 3000 ms: its bucket's middle (3158) is
            // clamped to the observed maximum.
            assert_close(t.latency_p99_ms.unwrap(), 3000.0);

            // One whole day of 2 x $6.50/h = $312; $9.75 of it attributed.
            let f = o.fleet.as_ref().unwrap();
            assert_close(f.hours, 24.0);
            assert_close(f.fleet_usd, 312.0);
            assert_close(f.attributed_usd, 9.75);
            assert_close(f.idle_usd, 302.25);
            assert_eq!(f.excess_days, 0);
            // Hybrid = 10.25 recorded + 302.25 idle; all-closed would have cost 4.50.
            assert_close(o.hybrid_spend_usd, 312.5);
            assert_close(o.savings_usd, -308.0);
            assert_close(o.savings_pct.unwrap(), -308.0 / 4.5 * 100.0);
            assert!(
                o.notes.iter().any(|n| n.contains("tokenizer")),
                "{:?}",
                o.notes
            );

            let keys: Vec<&str> = r.rows.iter().map(|g| g.key.as_str()).collect();
            assert_eq!(keys, ["legal", "support"]);
            let legal = &r.rows[0];
            assert_eq!(legal.stats.requests, 2);
            assert_close(legal.stats.spend_usd, 9.75);
            assert_close(legal.stats.counterfactual_usd, 3.0);
            assert_close(legal.savings_usd, -6.75);
            assert_eq!((legal.stats.privacy_routed, legal.stats.fallbacks), (2, 1));
            let support = &r.rows[1];
            assert_close(support.stats.spend_usd, 0.5);
            assert_close(support.savings_usd, 1.0);
            assert_close(support.savings_pct.unwrap(), 100.0 / 1.5);
            assert_eq!((support.stats.errors, support.stats.fallbacks), (1, 1));
            assert_eq!(support.idle_usd, None);

            // Replaying the whole batch changes nothing.
            s.insert_batch(&rows).await.unwrap();
        }

        let text = report::report(s, &q, Dimension::Team)
            .await
            .unwrap()
            .render(watershed_dashboards::render::Format::Table);
        assert!(text.contains("(idle GPU time)"), "{text}");
        assert!(text.contains("$302.25"), "{text}");
        assert!(text.contains("$312.50"), "{text}");
        assert!(text.contains("tokenizer"), "{text}");

        // One team: its own requests, and no idle cost (it belongs to no team).
        let legal = ReportQuery {
            team: Some("legal".into()),
            ..q.clone()
        };
        let o = report::overview(s, &legal).await.unwrap();
        assert_eq!(o.totals.requests, 2);
        assert!(o.fleet.is_none());
        assert_close(o.hybrid_spend_usd, 9.75);
        let by_backend = report::breakdown(s, &legal, Dimension::Backend)
            .await
            .unwrap();
        assert_eq!(by_backend.len(), 1);
        assert_eq!(by_backend[0].key, "local-moe");
    }

    /// Days without requests are idle all day; today counts only up to now;
    /// a day whose local engine time exceeds its wall-clock time has no idle
    /// cost and reports the excess.
    pub async fn idle_cost_by_day(s: &dyn LedgerStore) {
        s.insert_batch(&hand_ledger()).await.unwrap();
        // 100,000 engine s on 03-05 (two engines side by side): $361.11 > $312.
        let busy = local("e", ms(day(2026, 3, 5), 8), "legal", "internal", 100_000.0);
        s.insert_batch(std::slice::from_ref(&busy)).await.unwrap();

        // 03-01 .. 03-03 with "now" at 03-03 12:00: 24 + 24 + 12 hours.
        let q = query(day(2026, 3, 1), day(2026, 3, 3), ms(day(2026, 3, 3), 12));
        let r = report::report(s, &q, Dimension::Day).await.unwrap();
        let days: Vec<(&str, f64, f64)> = r
            .rows
            .iter()
            .map(|g| (g.key.as_str(), g.fleet_usd.unwrap(), g.idle_usd.unwrap()))
            .collect();
        assert_eq!(days.len(), 3);
        assert_eq!(
            (days[0].0, days[1].0, days[2].0),
            ("2026-03-01", "2026-03-02", "2026-03-03")
        );
        for ((_, fleet, idle), (want_fleet, want_idle)) in
            days.iter()
                .zip([(312.0, 312.0), (312.0, 302.25), (156.0, 156.0)])
        {
            assert_close(*fleet, want_fleet);
            assert_close(*idle, want_idle);
        }
        assert_close(r.rows[1].hybrid_spend_usd, 312.5);
        let f = r.overview.fleet.as_ref().unwrap();
        assert_close(f.hours, 60.0);
        assert_close(f.fleet_usd, 780.0);
        assert_close(f.idle_usd, 770.25);
        assert_close(r.overview.hybrid_spend_usd, 10.25 + 770.25);
        let text = r.render(watershed_dashboards::render::Format::Table);
        assert!(text.contains("idle GPU"), "{text}");

        // 03-05 alone: attributed 100000 x 13 / 3600 = 361.11 against 312.
        let q = query(day(2026, 3, 5), day(2026, 3, 5), ms(day(2026, 4, 1), 0));
        let o = report::overview(s, &q).await.unwrap();
        let f = o.fleet.as_ref().unwrap();
        assert_close(f.attributed_usd, 100_000.0 * 13.0 / 3600.0);
        assert_close(f.idle_usd, 0.0);
        assert_close(f.excess_usd, 100_000.0 * 13.0 / 3600.0 - 312.0);
        assert_eq!(f.excess_days, 1);
        assert_close(o.hybrid_spend_usd, 100_000.0 * 13.0 / 3600.0);
        assert!(
            o.notes.iter().any(|n| n.contains("exceeded")),
            "{:?}",
            o.notes
        );

        // A period wholly in the future costs nothing yet.
        let q = query(day(2026, 3, 10), day(2026, 3, 11), ms(day(2026, 3, 1), 0));
        let o = report::overview(s, &q).await.unwrap();
        assert_close(o.fleet.unwrap().fleet_usd, 0.0);
    }

    /// Requests are costed at the price in force when they ran: a GPT-5.4
    /// price cut effective 2026-03-03 shows up from that day on.
    pub async fn a_price_change_mid_period(s: &dyn LedgerStore) {
        let cut: BTreeMap<String, PriceOverride> = serde_json::from_value(serde_json::json!({
            "gpt-5.4": { "input": 2.0, "output": 12.0, "effective_from": "2026-03-03" }
        }))
        .unwrap();
        let prices = PriceTable::with_overrides(cut).unwrap();
        let usage = Usage {
            prompt_tokens: 1_000_000,
            completion_tokens: 100_000,
            cached_prompt_tokens: 0,
        };
        let rows: Vec<LedgerRecord> = [(2, 23), (3, 0), (3, 1)]
            .into_iter()
            .enumerate()
            .map(|(i, (d, h))| {
                let ts_ms = ms(day(2026, 3, d), h);
                LedgerRecord {
                    request_id: format!("p{i}"),
                    ts_ms,
                    backend: "gpt-5.4".into(),
                    model: "gpt-5.4".into(),
                    prompt_tokens: 1_000_000,
                    completion_tokens: 100_000,
                    cached_tokens: 0,
                    cost_usd: prices.cost_at("gpt-5.4", ts_ms, usage).unwrap(),
                    counterfactual_usd: prices.cost_at("claude-sonnet-4.6", ts_ms, usage).unwrap(),
                    ..record(i)
                }
            })
            .collect();
        s.insert_batch(&rows).await.unwrap();
        let q = ReportQuery::new(
            Period::new(day(2026, 3, 2), day(2026, 3, 3)).unwrap(),
            ms(day(2026, 4, 1), 0),
        );
        let r = report::report(s, &q, Dimension::Day).await.unwrap();
        // Before: 1M x $2.50 + 0.1M x $15 = $4.00; after: 1M x $2 + 0.1M x $12 = $3.20.
        assert_close(r.rows[0].stats.spend_usd, 4.0);
        assert_close(r.rows[1].stats.spend_usd, 6.4);
        assert_close(r.overview.totals.spend_usd, 10.4);
        // Sonnet is unchanged: 1M x $3 + 0.1M x $15 = $4.50 each.
        assert_close(r.overview.counterfactual_usd, 13.5);
        assert_close(r.overview.savings_usd, 3.1);
        assert!(r.overview.fleet.is_none(), "no fleet configured");
    }

    /// A deterministic generated ledger: several days, teams, keys, routes,
    /// backends, privacy levels, statuses and latencies from 0.3 ms to 5 min.
    pub fn generated(n: usize) -> Vec<LedgerRecord> {
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u32
        };
        let base = ms(day(2026, 2, 26), 0);
        (0..n)
            .map(|i| {
                let teams = ["legal", "support", "research", "sales"];
                let backends = [
                    ("local-moe", "llama.cpp", "qwen3-30b-a3b"),
                    ("gpt-5.4-mini", "openai", "gpt-5.4-mini-2026-03-17"),
                    ("claude-opus-4.6", "anthropic", "claude-opus-4-6"),
                ];
                let levels = ["public", "internal", "confidential", "restricted"];
                let (backend, kind, model) = backends[next() as usize % 3];
                let latency = 0.3 * 10f64.powf(f64::from(next() % 6000) / 1000.0);
                let status = [200, 200, 200, 200, 200, 429, 499, 502][next() as usize % 8];
                LedgerRecord {
                    request_id: format!("g{i:06}"),
                    ts_ms: base + i64::from(next() % (5 * 86_400)) * 1000,
                    team: teams[next() as usize % 4].into(),
                    key_id: format!("key-{}", next() % 6),
                    route: ["hard", "default"][next() as usize % 2].into(),
                    backend: backend.into(),
                    backend_kind: kind.into(),
                    model: model.into(),
                    privacy: levels[next() as usize % 4].into(),
                    prompt_tokens: i64::from(next() % 5000),
                    completion_tokens: i64::from(next() % 2000),
                    cached_tokens: i64::from(next() % 100),
                    cost_usd: f64::from(next() % 10_000) / 1e5,
                    counterfactual_usd: f64::from(next() % 10_000) / 1e5,
                    engine_seconds: if kind == "llama.cpp" {
                        f64::from(next() % 3000) / 100.0
                    } else {
                        0.0
                    },
                    ttft_ms: (next() % 3 != 0).then(|| latency / 4.0),
                    latency_ms: latency,
                    status,
                    error_code: (status >= 400).then(|| "x".into()),
                    finish_reason: None,
                    stream: next() % 2 == 0,
                    attempts: 1 + i64::from(next() % 5 == 0),
                    difficulty: None,
                    explanation: None,
                }
            })
            .collect()
    }

    #[track_caller]
    fn assert_summary_eq(got: &Summary, want: &Summary, what: &str) {
        let ints = |s: &Summary| {
            [
                s.requests,
                s.ok_requests,
                s.errors,
                s.fallbacks,
                s.privacy_routed,
                s.local_requests,
                s.prompt_tokens,
                s.completion_tokens,
                s.cached_tokens,
                s.ok_completion_tokens,
                s.ttft_count,
            ]
        };
        assert_eq!(ints(got), ints(want), "{what}");
        let reals = |s: &Summary| {
            [
                s.cost_usd,
                s.local_cost_usd,
                s.counterfactual_usd,
                s.engine_seconds,
                s.latency_ms,
                s.ok_latency_ms,
                s.ttft_ms,
            ]
        };
        for (g, w) in reals(got).iter().zip(reals(want)) {
            assert!(
                close(*g, w),
                "{what}: {:?} vs {:?}",
                reals(got),
                reals(want)
            );
        }
        assert_eq!(got.latency_min_ms, want.latency_min_ms, "{what}");
        assert_eq!(got.latency_max_ms, want.latency_max_ms, "{what}");
        assert_eq!(got.latency_hist, want.latency_hist, "{what}");
    }

    /// What every grouping of the rollups says equals the same sums taken
    /// directly over the raw rows the ledger returns; percentiles are within
    /// the histogram's stated resolution of the exact order statistics.
    pub async fn rollups_equal_raw_aggregation(s: &dyn LedgerStore, rows: usize) {
        let all = s.list(i64::MIN, i64::MAX, i64::MAX).await.unwrap();
        assert_eq!(all.len(), rows);
        let from_day = all.iter().map(|r| day_of(r.ts_ms)).min().unwrap();
        let to_day = all.iter().map(|r| day_of(r.ts_ms)).max().unwrap() + 1;
        for by in Dimension::ALL {
            let mut want: BTreeMap<String, Summary> = BTreeMap::new();
            let mut latencies: BTreeMap<String, Vec<f64>> = BTreeMap::new();
            for r in &all {
                want.entry(by.value_of(r)).or_default().add(r);
                latencies
                    .entry(by.value_of(r))
                    .or_default()
                    .push(r.latency_ms);
            }
            let got = s.summarize(from_day, to_day, Some(by), None).await.unwrap();
            let got_keys: Vec<&String> = got.iter().map(|(k, _)| k).collect();
            assert_eq!(got_keys, want.keys().collect::<Vec<_>>(), "groups by {by}");
            for (key, summary) in &got {
                assert_summary_eq(summary, &want[key], &format!("{by} {key}"));
                let mut lat = latencies[key].clone();
                lat.sort_by(f64::total_cmp);
                for q in [0.5, 0.95, 0.99] {
                    let rank = ((q * lat.len() as f64).ceil() as usize).max(1);
                    let exact = lat[rank - 1];
                    let est = summary.latency_percentile(q).unwrap();
                    if exact >= 1.0 {
                        assert!(
                            (est / exact - 1.0).abs() <= PERCENTILE_RELATIVE_ERROR,
                            "{by} {key} p{q}: {est} vs exact {exact}"
                        );
                    } else {
                        assert!(est < 1.0, "{by} {key} p{q}: {est} vs exact {exact}");
                    }
                }
            }
        }
        // One team, whole selection.
        let mut want = Summary::default();
        all.iter()
            .filter(|r| r.team == "legal")
            .for_each(|r| want.add(r));
        let got = s
            .summarize(from_day, to_day, None, Some("legal"))
            .await
            .unwrap();
        assert_eq!(got.len(), 1);
        assert_summary_eq(&got[0].1, &want, "team legal");
    }

    /// Writes a generated ledger in uneven batches with replays and repeated
    /// ids inside a batch, then checks the rollups against the raw rows.
    pub async fn rollups_track_inserts_and_replays(s: &dyn LedgerStore) -> usize {
        let rows = generated(3000);
        let mut at = 0;
        for (i, size) in [1usize, 7, 256, 1200, 3].iter().cycle().enumerate() {
            if at >= rows.len() {
                break;
            }
            let end = (at + size).min(rows.len());
            let mut batch = rows[at..end].to_vec();
            if i % 2 == 1 && at > 10 {
                // A replay of earlier rows (with other figures) and a repeated id.
                let mut replay = rows[at - 10].clone();
                replay.cost_usd = 1000.0;
                batch.push(replay);
                batch.push(batch[0].clone());
            }
            s.insert_batch(&batch).await.unwrap();
            at = end;
        }
        rollups_equal_raw_aggregation(s, rows.len()).await;
        rows.len()
    }
}
