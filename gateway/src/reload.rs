//! Hot reload: on SIGHUP or when the config file changes, the new configuration
//! is validated in full and swapped in atomically for new requests. An invalid one
//! is refused, logged and counted; the last good one stays in force.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::config;
use crate::metrics::CONFIG_RELOADS;
use crate::state::{build_runtime, AppState};

/// How often the config file's modification time is checked.
const POLL: Duration = Duration::from_secs(1);

/// Starts the reload watcher. Without a config file (the embedded default) there
/// is nothing to watch.
pub fn watch(
    state: Arc<AppState>,
    path: Option<PathBuf>,
    base_dir: PathBuf,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) {
    let Some(path) = path else { return };
    tracker.spawn(async move {
        let mut last_seen = modified(&path);
        #[cfg(unix)]
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            #[cfg(unix)]
            let hup_fut = async {
                match hup.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            #[cfg(not(unix))]
            let hup_fut = std::future::pending::<()>();
            let trigger = tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = hup_fut => "SIGHUP",
                _ = tokio::time::sleep(POLL) => {
                    let now = modified(&path);
                    if now == last_seen { continue; }
                    last_seen = now;
                    "file change"
                }
            };
            reload_once(&state, &path, &base_dir, trigger);
        }
    });
}

/// Loads, validates and swaps in the configuration at `path`; returns whether it
/// was applied.
pub fn reload_once(
    state: &AppState,
    path: &std::path::Path,
    base_dir: &std::path::Path,
    trigger: &str,
) -> bool {
    let result = config::load(Some(path))
        .map_err(anyhow::Error::from)
        .and_then(|loaded| {
            let current = state.runtime();
            build_runtime(Arc::new(loaded.config), base_dir, Some(&current))
        });
    match result {
        Ok(rt) => {
            info!(path = %path.display(), trigger, routes = rt.config.routes.len(), "configuration reloaded");
            if rt.config.telemetry != state.runtime().config.telemetry {
                warn!(path = %path.display(), "telemetry settings changed; trace export keeps its start-up settings until a restart");
            }
            state.replace_runtime(rt);
            state
                .metrics
                .add(CONFIG_RELOADS, vec![("result", "applied".to_owned())], 1.0);
            true
        }
        Err(e) => {
            error!(path = %path.display(), trigger, "configuration refused, keeping the last good one:\n{e:#}");
            state
                .metrics
                .add(CONFIG_RELOADS, vec![("result", "refused".to_owned())], 1.0);
            false
        }
    }
}

fn modified(path: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}
