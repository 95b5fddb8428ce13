//! Seeds a large ledger into SQLite and PostgreSQL through the stores' own
//! `insert_batch` (raw rows and their daily rollups in one transaction per
//! batch, exactly as the gateway's writer does), then times the queries the
//! dashboard and `watershed report` make and prints a table.
//!
//! `scripts/bench_ledger.sh` builds and runs it; see BENCHMARKS.md.
//!
//! Usage: bench_ledger [--rows N] [--days D] [--batch B] [--runs R]
//!        [--sqlite PATH] [--postgres URL] [--reuse]
//! `--reuse` skips seeding when the store already holds N rows.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::time::{Duration, Instant};

use watershed_dashboards::ledger::{open_store, LedgerRecord, LedgerStore};
use watershed_dashboards::report::rollup::DAY_MS;
use watershed_dashboards::report::{self, Dimension, Fleet, Period, ReportQuery};

struct Args {
    rows: u64,
    days: i64,
    batch: usize,
    runs: usize,
    sqlite: Option<String>,
    postgres: Option<String>,
    reuse: bool,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        rows: 10_000_000,
        days: 30,
        batch: 20_000,
        runs: 5,
        sqlite: None,
        postgres: None,
        reuse: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--rows" => a.rows = value()?.parse().map_err(|e| format!("--rows: {e}"))?,
            "--days" => a.days = value()?.parse().map_err(|e| format!("--days: {e}"))?,
            "--batch" => a.batch = value()?.parse().map_err(|e| format!("--batch: {e}"))?,
            "--runs" => a.runs = value()?.parse().map_err(|e| format!("--runs: {e}"))?,
            "--sqlite" => a.sqlite = Some(value()?),
            "--postgres" => a.postgres = Some(value()?),
            "--reuse" => a.reuse = true,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.days < 1 || a.batch < 1 || a.runs < 1 {
        return Err("--days, --batch and --runs must be at least 1".into());
    }
    Ok(a)
}

/// 2026-03-01T00:00Z: the ledger covers `days` days from here.
const START_MS: i64 = 1_772_323_200_000;

const TEAMS: [&str; 8] = [
    "legal",
    "support",
    "research",
    "sales",
    "finance",
    "platform",
    "marketing",
    "hr",
];
/// (route, backend, backend kind, model, USD per 1k tokens or 0 for local)
const TARGETS: [(&str, &str, &str, &str, f64); 6] = [
    (
        "confidential-stays-home",
        "local-moe",
        "llama.cpp",
        "qwen3-30b-a3b",
        0.0,
    ),
    (
        "everything-else",
        "local-moe",
        "llama.cpp",
        "qwen3-30b-a3b",
        0.0,
    ),
    (
        "everything-else",
        "gpt-5.4-mini",
        "openai",
        "gpt-5.4-mini-2026-03-17",
        0.002,
    ),
    (
        "hard-goes-frontier",
        "claude-opus-4.6",
        "anthropic",
        "claude-opus-4-6",
        0.015,
    ),
    (
        "hard-goes-frontier",
        "deepseek-v3.2",
        "openai-compatible",
        "deepseek-chat",
        0.0004,
    ),
    (
        "asked-for-gpt-5.4",
        "gpt-5.4",
        "openai",
        "gpt-5.4-2026-03-05",
        0.008,
    ),
];

/// A small deterministic generator (PCG-style LCG), so every run seeds the
/// same ledger.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) as u32
    }
    fn below(&mut self, n: u32) -> u32 {
        self.next() % n
    }
}

/// Request `i` of `n`, in time order over `days` days: 64 keys across 8
/// teams, six route/backend pairs, four privacy levels (confidential and
/// restricted always local), latencies from 50 ms to a few minutes.
fn request(i: u64, n: u64, days: i64, rng: &mut Lcg) -> LedgerRecord {
    let span = days * DAY_MS;
    let ts_ms = START_MS + (i as i128 * span as i128 / n as i128) as i64;
    let key = rng.below(64);
    let team = TEAMS[(key % 8) as usize];
    let privacy = [
        "public",
        "internal",
        "internal",
        "internal",
        "confidential",
        "restricted",
    ][rng.below(6) as usize];
    let target = if privacy == "confidential" || privacy == "restricted" {
        TARGETS[0]
    } else {
        TARGETS[1 + rng.below(5) as usize]
    };
    let (route, backend, kind, model, usd_per_ktok) = target;
    let prompt = 200 + i64::from(rng.below(4000));
    let completion = 20 + i64::from(rng.below(800));
    let latency = 50.0 * 2f64.powf(f64::from(rng.below(1200)) / 100.0);
    let status = match rng.below(100) {
        0 => 502,
        1 => 429,
        2 => 499,
        _ => 200,
    };
    let local = kind == "llama.cpp";
    let engine_seconds = if local { latency / 1000.0 / 4.0 } else { 0.0 };
    let tokens = (prompt + completion) as f64;
    LedgerRecord {
        request_id: format!("bench-{i:010}"),
        ts_ms,
        team: team.into(),
        key_id: format!("key-{key:02}"),
        route: route.into(),
        backend: backend.into(),
        backend_kind: kind.into(),
        model: model.into(),
        privacy: privacy.into(),
        prompt_tokens: prompt,
        completion_tokens: completion,
        cached_tokens: i64::from(rng.below(200)),
        cost_usd: if local {
            engine_seconds * 13.0 / 3600.0
        } else {
            tokens / 1000.0 * usd_per_ktok
        },
        counterfactual_usd: (prompt as f64 * 3.0 + completion as f64 * 15.0) / 1e6,
        engine_seconds,
        ttft_ms: (status == 200).then(|| latency / 10.0),
        latency_ms: latency,
        status,
        error_code: (status != 200).then(|| "upstream_error".into()),
        finish_reason: (status == 200).then(|| "stop".into()),
        stream: rng.below(2) == 0,
        attempts: 1 + i64::from(rng.below(20) == 0),
        difficulty: Some(f64::from(rng.below(1000)) / 1000.0),
        explanation: None,
    }
}

async fn seed(store: &dyn LedgerStore, a: &Args, name: &str) -> Result<(), String> {
    let have = store.count().await.map_err(|e| e.to_string())?;
    if a.reuse && have == a.rows as i64 {
        eprintln!("{name}: reusing {have} rows");
        return Ok(());
    }
    if have != 0 {
        return Err(format!(
            "{name}: the ledger already holds {have} rows; give an empty one (or --reuse with --rows {have})"
        ));
    }
    let started = Instant::now();
    let mut rng = Lcg(0x5eed);
    let mut batch = Vec::with_capacity(a.batch);
    let mut i = 0u64;
    while i < a.rows {
        batch.clear();
        let end = (i + a.batch as u64).min(a.rows);
        for j in i..end {
            batch.push(request(j, a.rows, a.days, &mut rng));
        }
        store
            .insert_batch(&batch)
            .await
            .map_err(|e| format!("{name}: {e}"))?;
        i = end;
        if i % 1_000_000 < a.batch as u64 || i == a.rows {
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "{name}: {i} rows in {secs:.0} s ({:.0} rows/s)",
                i as f64 / secs
            );
        }
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Times `f` `runs` times; returns (first, median, max) in ms.
async fn time<F, Fut, T>(runs: usize, mut f: F) -> Result<(f64, f64, f64, T), String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let mut times = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        last = Some(f().await?);
        times.push(ms(t.elapsed()));
    }
    let first = times[0];
    times.sort_by(f64::total_cmp);
    let out = last.ok_or("no run")?;
    Ok((first, times[times.len() / 2], times[times.len() - 1], out))
}

async fn bench(store: &dyn LedgerStore, a: &Args, name: &str) -> Result<Vec<String>, String> {
    seed(store, a, name).await?;
    let period = Period {
        from_day: START_MS / DAY_MS,
        to_day: START_MS / DAY_MS + a.days,
    };
    let q = ReportQuery {
        fleet: Some(Fleet {
            gpus: 2.0,
            gpu_hour_usd: 6.5,
        }),
        counterfactual_model: Some("claude-sonnet-4.6".into()),
        ..ReportQuery::new(period, START_MS + 40 * DAY_MS)
    };
    let e = |e: watershed_dashboards::LedgerError| e.to_string();
    let mut lines = Vec::new();
    let mut row = |query: &str, (first, median, max): (f64, f64, f64), groups: usize| {
        lines.push(format!(
            "| {name} | {query} | {groups} | {first:.1} | {median:.1} | {max:.1} |"
        ));
    };
    let (f, m, x, o) = time(a.runs, || async {
        report::overview(store, &q).await.map_err(e)
    })
    .await?;
    if o.totals.requests != a.rows as i64 {
        return Err(format!(
            "{name}: the overview counts {} requests, the ledger holds {}",
            o.totals.requests, a.rows
        ));
    }
    row(&format!("overview, {} days", a.days), (f, m, x), 1);
    let mut page = m;
    for (label, by) in [
        ("by team", Dimension::Team),
        ("by backend", Dimension::Backend),
        ("daily series", Dimension::Day),
        ("latency percentiles by model", Dimension::Model),
    ] {
        let (f, m, x, rows) = time(a.runs, || async {
            report::breakdown(store, &q, by).await.map_err(e)
        })
        .await?;
        page += m;
        row(label, (f, m, x), rows.len());
    }
    let team = ReportQuery {
        team: Some("legal".into()),
        ..q.clone()
    };
    let (f, m, x, rows) = time(a.runs, || async {
        report::breakdown(store, &team, Dimension::Key)
            .await
            .map_err(e)
    })
    .await?;
    row("one team by key", (f, m, x), rows.len());
    lines.push(format!(
        "| {name} | **dashboard page (the five above, medians)** | | | {page:.1} | |"
    ));
    Ok(lines)
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(lines) => {
            for l in lines {
                println!("{l}");
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<Vec<String>, String> {
    let a = args()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    rt.block_on(async {
        let mut lines = vec![
            format!(
                "{} requests over {} days; times in ms over {} runs (first, median, max)",
                a.rows, a.days, a.runs
            ),
            String::new(),
            "| store | query | groups | first | median | max |".into(),
            "|---|---|---:|---:|---:|---:|".into(),
        ];
        for (name, url) in [("SQLite", &a.sqlite), ("PostgreSQL", &a.postgres)] {
            let Some(url) = url else { continue };
            let store = open_store(url).await.map_err(|e| format!("{name}: {e}"))?;
            lines.extend(bench(&*store, &a, name).await?);
        }
        Ok(lines)
    })
}
