//! `watershed serve`: builds the state from the configuration, serves HTTP, and
//! shuts down in order — drain requests, then flush the ledger and export the
//! last spans — all within `server.shutdown_grace_ms`, whatever the database,
//! the upstreams or slow clients do.
//!
//! Start-up does not wait on the ledger database: records go to the local
//! journal, and the writer replays them when the database answers. Budgets
//! start from the database's spend when it answers within
//! `ledger.timeout_ms`, else from the spend of the records the journal holds
//! (and from both while a long journal is still being replayed, so a budget
//! never starts below what was spent).

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};
use watershed_dashboards::ledger::{
    open_store_lazy, Journal, JournalConfig, LedgerRecord, LedgerStore, LedgerWriter, WhenFull,
    WriterConfig,
};

use crate::budget::{BudgetBook, Settled, SharedStore};
use crate::config;
use crate::http::app;
use crate::metrics::Metrics;
use crate::reload;
use crate::state::{build_runtime, AppState};
use crate::telemetry::{self, Traces};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

pub async fn serve(config_path: Option<PathBuf>, listen: Option<String>) -> anyhow::Result<()> {
    let loaded = config::load(config_path.as_deref())?;
    let cfg = Arc::new(loaded.config);
    let listen = listen
        .or_else(|| cfg.listen.clone())
        .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
    let addr: SocketAddr = listen
        .parse()
        .with_context(|| format!("invalid listen address {listen:?}"))?;

    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();

    let ledger_url = cfg
        .ledger_url(|k| std::env::var(k).ok())
        .map_err(anyhow::Error::msg)?;
    let op_timeout = Duration::from_millis(cfg.ledger.timeout_ms);
    let masked = watershed_policies::mask_url_password(&ledger_url);
    let store = open_store_lazy(&ledger_url, op_timeout)
        .await
        .with_context(|| format!("cannot open ledger {masked}"))?;
    let journal_cfg = journal_config(&cfg.ledger.journal, &loaded.base_dir);
    let journal_dir = journal_cfg.dir.display().to_string();
    let (journal, replayed) = Journal::open(journal_cfg)
        .with_context(|| format!("cannot open the ledger journal {journal_dir}"))?;
    // The ledger writer stops only after every request has drained, so the records
    // of requests that finish during shutdown are written too.
    let ledger_stop = CancellationToken::new();
    let clock = watershed_dashboards::clock::from_env().map_err(anyhow::Error::msg)?;
    // A database that is away only makes the ledger degraded; one that
    // refuses the migration (ahead of this build, say) is a start-up error.
    // A migration is heavier than one insert: it gets three operations' time.
    let reachable = match tokio::time::timeout(op_timeout * 3, store.migrate()).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) if !e.is_unreachable() => {
            return Err(anyhow::Error::new(e).context("ledger migration failed"))
        }
        Ok(Err(_)) | Err(_) => false,
    };
    let journaled = journaled_spend(replayed.iter().map(|(_, r)| r), clock.now());
    let writer_cfg = WriterConfig {
        op_timeout,
        ..WriterConfig::default()
    };
    let ledger = LedgerWriter::start_journaled(
        writer_cfg,
        store.clone(),
        Arc::new(journal),
        replayed,
        &tracker,
        ledger_stop.clone(),
    );
    // The first flush replays what a previous process left; it is bounded,
    // and a database that does not answer only makes the ledger degraded
    // (see `/readyz`).
    let flushed = match reachable {
        true => Some(tokio::time::timeout(op_timeout * 3, ledger.flush()).await),
        false => None,
    };
    let seeded = match flushed {
        // The database did not answer.
        None | Some(Ok(Err(_))) => None,
        // Replayed (or still replaying a long journal): read the spend.
        Some(Ok(Ok(())) | Err(_)) => {
            match tokio::time::timeout(op_timeout, seed_budgets(&*store, clock.now())).await {
                Ok(Ok(book)) => Some(book),
                Ok(Err(e)) => {
                    warn!(error = %format!("{e:#}"), "cannot read spend from the ledger");
                    None
                }
                Err(_) => None,
            }
        }
    };
    // On PostgreSQL the replicas share one book (`budget::shared`); on SQLite
    // the process keeps its own, seeded from the ledger or the journal.
    let shared = open_shared_budgets(&ledger_url, &cfg, clock.now()).await?;
    let budgets = match shared {
        Some(book) => book,
        None => match seeded {
            Some(book) => {
                if matches!(flushed, Some(Err(_))) {
                    // Part of the journal is not in the database yet: count it as
                    // well, so a budget starts at or above what was spent (the
                    // part already replayed counts twice until the next start).
                    book.seed(&journaled, clock.now());
                }
                book
            }
            None => {
                warn!(
                    ledger = %masked,
                    journal = %journal_dir,
                    "ledger database unreachable at start; serving with the ledger degraded, budgets from the journal's records"
                );
                let book = BudgetBook::default();
                book.seed(&journaled, clock.now());
                book
            }
        },
    };

    // Trace export is set at start-up (a reload does not move it): the config's
    // `telemetry:` block, else the standard OTEL_* variables, else off.
    let metrics = Arc::new(Metrics::default());
    let traces_stop = CancellationToken::new();
    let traces = match telemetry::resolve(&cfg.telemetry, |k| std::env::var(k).ok())
        .map_err(anyhow::Error::msg)
        .context("cannot set up trace export")?
    {
        Some(export) => telemetry::start(export, metrics.clone(), &tracker, traces_stop.clone())?,
        None => Traces::disabled(),
    };

    let runtime = build_runtime(cfg.clone(), &loaded.base_dir, None)?;
    for t in runtime.targets.values() {
        if let Some(var) = &t.missing_key {
            warn!(target_id = %t.id, env = %var, "API key variable is not set; this target answers 503 until it is");
        }
    }
    let state = Arc::new(
        AppState::new(runtime, ledger, metrics, traces)
            .with_budgets(budgets)
            .with_clock(clock),
    );
    state
        .budgets
        .publish(&cfg, &state.metrics, state.clock.now());
    crate::pool::watch(state.clone(), &tracker, shutdown.clone());
    // The shared book's writes and sweeps stop with the ledger writer, after
    // every request has drained.
    let weak = Arc::downgrade(&state);
    crate::budget::start_sync(
        state.budgets.clone(),
        state.clock.clone(),
        state.metrics.clone(),
        move || weak.upgrade().map(|s| s.runtime().config.clone()),
        &tracker,
        ledger_stop.clone(),
    );
    reload::watch(
        state.clone(),
        loaded.path.clone(),
        loaded.base_dir.clone(),
        &tracker,
        shutdown.clone(),
    );

    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    info!(addr = %local, "watershed listening");

    let grace = Duration::from_millis(cfg.server.shutdown_grace_ms);
    let stopping = CancellationToken::new();
    let token = shutdown.clone();
    let signalled = stopping.clone();
    let server = axum::serve(listener, app(state.clone()))
        .with_graceful_shutdown(async move {
            wait_for_signal().await;
            info!(
                grace_ms = grace.as_millis() as u64,
                "shutting down: draining requests"
            );
            signalled.cancel();
            token.cancel();
        })
        .into_future();
    tokio::pin!(server);
    let stop_by = tokio::select! {
        r = &mut server => {
            r?;
            tokio::time::Instant::now() + grace
        }
        () = stopping.cancelled() => {
            let t0 = tokio::time::Instant::now();
            drain_within(&mut server, &state, t0 + grace * 3 / 4).await?;
            t0 + grace
        }
    };

    // Requests have drained (every request's record and span is queued); now
    // let the ledger writer flush and the trace exporter send what is left.
    shutdown.cancel();
    ledger_stop.cancel();
    traces_stop.cancel();
    let engines: Vec<_> = state
        .runtime()
        .targets
        .values()
        .filter_map(|t| t.engine.clone())
        .collect();
    let ledger = state.ledger.clone();
    drop(state);
    tracker.close();
    if tokio::time::timeout_at(stop_by, tracker.wait())
        .await
        .is_err()
    {
        warn!("shutdown grace period over; the ledger records not yet written stay in the journal");
    }
    // Free the local models before the process exits (see LocalEngine::shutdown).
    let freed = tokio::task::spawn_blocking(move || engines.iter().for_each(|e| e.shutdown()));
    let _ = tokio::time::timeout(FREE_MODELS_GRACE, freed).await;
    let left = ledger.journal().map_or(0, |j| j.stats().records());
    info!(journaled = left, "ledger flushed; bye");
    Ok(())
}

/// On a PostgreSQL ledger, the budget book replicas share (its figures read
/// now, or on a later sync round if the database is away); `None` on SQLite,
/// whose book lives in the process.
pub(crate) async fn open_shared_budgets(
    ledger_url: &str,
    cfg: &watershed_policies::Config,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<Option<BudgetBook>> {
    if !(ledger_url.starts_with("postgres://") || ledger_url.starts_with("postgresql://")) {
        return Ok(None);
    }
    // Connected on first use: a replica that starts while the database is
    // away starts with no figures, under `ledger.budgets.when_unknown`.
    let pg = watershed_dashboards::ledger::PgStore::connect_lazy(
        ledger_url,
        Duration::from_millis(cfg.ledger.budgets.timeout_ms),
    )
    .context("invalid shared budget store url")?;
    let book = BudgetBook::shared(SharedStore::new(pg.pool().clone(), cfg.ledger.budgets));
    if let Err(e) = book.load(now).await {
        warn!(error = %e, "cannot read the shared budgets yet; retrying every sync round");
    }
    Ok(Some(book))
}

/// How long the local models get to be freed after the grace period's work.
const FREE_MODELS_GRACE: Duration = Duration::from_secs(2);
/// How long streams cut at the drain deadline get to send their last event.
const CUT_STREAMS_GRACE: Duration = Duration::from_millis(500);

/// Lets requests drain until `deadline`; then ends the streams still running
/// (each sends an error event and gets its ledger record) and the requests
/// still waiting on an upstream (503 `shutting_down`, recorded so), and after
/// a short moment gives up on connections still open (a client still sending
/// its body; anything dropped with the runtime writes its record to the
/// journal as cancelled).
async fn drain_within<F>(
    server: &mut std::pin::Pin<&mut F>,
    state: &AppState,
    deadline: tokio::time::Instant,
) -> anyhow::Result<()>
where
    F: std::future::Future<Output = std::io::Result<()>>,
{
    tokio::select! {
        r = server.as_mut() => return Ok(r?),
        () = tokio::time::sleep_until(deadline) => {}
    }
    warn!("drain deadline reached; ending the streams still running");
    state.drain.cancel();
    match tokio::time::timeout(CUT_STREAMS_GRACE, server.as_mut()).await {
        Ok(r) => Ok(r?),
        Err(_) => {
            warn!("drain deadline reached; closing the connections still open");
            Ok(())
        }
    }
}

/// The journal's settings with its directory resolved against the config's.
fn journal_config(j: &watershed_policies::JournalSettings, base_dir: &Path) -> JournalConfig {
    let dir = PathBuf::from(&j.dir);
    JournalConfig {
        dir: if dir.is_absolute() {
            dir
        } else {
            base_dir.join(dir)
        },
        segment_bytes: j.segment_bytes,
        max_bytes: j.max_bytes,
        when_full: match j.when_full {
            watershed_policies::JournalFull::Refuse => WhenFull::Refuse,
            watershed_policies::JournalFull::Drop => WhenFull::Drop,
        },
    }
}

/// The paid spend of journaled records in `now`'s month and day, by team
/// and key: what budgets start from when the database cannot be read.
pub(crate) fn journaled_spend<'a>(
    records: impl Iterator<Item = &'a LedgerRecord>,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<Settled> {
    let (month, day) = window_starts(now);
    let mut sums: std::collections::BTreeMap<(String, String), (f64, f64)> = Default::default();
    for r in records {
        if r.ts_ms < month || r.backend_kind == watershed_providers::BackendKind::Local.otel_name()
        {
            continue;
        }
        let e = sums.entry((r.team.clone(), r.key_id.clone())).or_default();
        e.1 += r.cost_usd;
        if r.ts_ms >= day {
            e.0 += r.cost_usd;
        }
    }
    sums.into_iter()
        .map(|((team, key_id), (day_usd, month_usd))| Settled {
            team,
            key_id,
            day_usd,
            month_usd,
        })
        .collect()
}

/// Unix milliseconds of the start of `now`'s month and day (UTC).
fn window_starts(now: chrono::DateTime<chrono::Utc>) -> (i64, i64) {
    use chrono::{Datelike, TimeZone, Utc};
    let day = now
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .map_or(0, |d| d.and_utc().timestamp_millis());
    let month = Utc
        .with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
        .single()
        .map_or(0, |d| d.timestamp_millis());
    (month, day)
}

/// Budgets start from what the ledger says was spent in `now`'s month and day.
pub(crate) async fn seed_budgets(
    store: &dyn LedgerStore,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<BudgetBook> {
    let (month, day) = window_starts(now);
    let rows = store
        .settled_spend(month, day)
        .await
        .context("cannot read this month's spend from the ledger")?;
    let book = BudgetBook::default();
    book.seed(
        &rows
            .into_iter()
            .map(|r| Settled {
                team: r.team,
                key_id: r.key_id,
                day_usd: r.day_usd,
                month_usd: r.month_usd,
            })
            .collect::<Vec<_>>(),
        now,
    );
    Ok(book)
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn rec(team: &str, kind: &str, ts: chrono::DateTime<chrono::Utc>, cost: f64) -> LedgerRecord {
        LedgerRecord {
            request_id: format!("{team}-{}", ts.timestamp_millis()),
            ts_ms: ts.timestamp_millis(),
            team: team.into(),
            key_id: "k".into(),
            route: "r".into(),
            backend: "b".into(),
            backend_kind: kind.into(),
            model: "m".into(),
            privacy: "internal".into(),
            prompt_tokens: 1,
            completion_tokens: 1,
            cached_tokens: 0,
            cost_usd: cost,
            counterfactual_usd: 0.0,
            engine_seconds: 0.0,
            ttft_ms: None,
            latency_ms: 1.0,
            status: 200,
            error_code: None,
            finish_reason: None,
            stream: false,
            attempts: 1,
            difficulty: None,
            explanation: None,
        }
    }

    #[test]
    fn journaled_spend_counts_paid_records_of_this_month_and_day() {
        let at = |d: u32, h: u32| chrono::Utc.with_ymd_and_hms(2027, 3, d, h, 0, 0).unwrap();
        let now = at(15, 12);
        let last_month = chrono::Utc.with_ymd_and_hms(2027, 2, 28, 23, 0, 0).unwrap();
        let records = [
            rec("a", "openai", at(15, 1), 1.0),
            rec("a", "anthropic", at(3, 1), 2.0),
            rec("a", "openai", last_month, 100.0),
            rec("a", "llama.cpp", at(15, 2), 50.0),
            rec("b", "openai", at(15, 3), 0.5),
        ];
        let got = journaled_spend(records.iter(), now);
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[0].team.as_str(), got[0].day_usd, got[0].month_usd),
            ("a", 1.0, 3.0)
        );
        assert_eq!(
            (got[1].team.as_str(), got[1].day_usd, got[1].month_usd),
            ("b", 0.5, 0.5)
        );
    }
}
