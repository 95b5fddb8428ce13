//! `watershed serve`: builds the state from the configuration, serves HTTP, and
//! shuts down in order — drain requests, then flush the ledger and export the
//! last spans.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};
use watershed_dashboards::ledger::{open_store, LedgerStore, LedgerWriter};

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
    let store = open_store(&ledger_url).await.with_context(|| {
        format!(
            "cannot open ledger {}",
            watershed_policies::mask_url_password(&ledger_url)
        )
    })?;
    store.migrate().await.context("ledger migration failed")?;
    // The ledger writer stops only after every request has drained, so the records
    // of requests that finish during shutdown are written too.
    let ledger_stop = CancellationToken::new();
    let clock = watershed_dashboards::clock::from_env().map_err(anyhow::Error::msg)?;
    let budgets = open_budgets(&ledger_url, &cfg, &*store, clock.now()).await?;
    let ledger = LedgerWriter::start(store, &tracker, ledger_stop.clone());

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

    let token = shutdown.clone();
    axum::serve(listener, app(state.clone()))
        .with_graceful_shutdown(async move {
            wait_for_signal().await;
            info!("shutting down: draining requests");
            token.cancel();
        })
        .await?;

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
    drop(state);
    tracker.close();
    tracker.wait().await;
    // Free the local models before the process exits (see LocalEngine::shutdown).
    let _ = tokio::task::spawn_blocking(move || engines.iter().for_each(|e| e.shutdown())).await;
    info!("ledger flushed; bye");
    Ok(())
}

/// The budget book for the ledger at `ledger_url`: on PostgreSQL the book
/// replicas share (its figures read now), else the process's own, seeded
/// from the ledger.
pub(crate) async fn open_budgets(
    ledger_url: &str,
    cfg: &watershed_policies::Config,
    store: &dyn LedgerStore,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<BudgetBook> {
    if !(ledger_url.starts_with("postgres://") || ledger_url.starts_with("postgresql://")) {
        return seed_budgets(store, now).await;
    }
    // Connected on first use: a replica that starts while the database is
    // away starts with no figures, under `ledger.budgets.when_unknown`.
    let pg = watershed_dashboards::ledger::PgStore::connect_lazy(ledger_url, 8)
        .context("invalid shared budget store url")?;
    let book = BudgetBook::shared(SharedStore::new(pg.pool().clone(), cfg.ledger.budgets));
    if let Err(e) = book.load(now).await {
        warn!(error = %e, "cannot read the shared budgets yet; retrying every sync round");
    }
    Ok(book)
}

/// Budgets start from what the ledger says was spent in `now`'s month and day.
pub(crate) async fn seed_budgets(
    store: &dyn LedgerStore,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<BudgetBook> {
    use chrono::{Datelike, TimeZone, Utc};
    let day = now
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .map_or(0, |d| d.and_utc().timestamp_millis());
    let month = Utc
        .with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
        .single()
        .map_or(0, |d| d.timestamp_millis());
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
