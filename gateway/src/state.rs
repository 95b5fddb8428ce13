//! Shared state of a running gateway: the active configuration with its backends,
//! the ledger handle, the price table, the dashboard's capacity plan, metrics
//! and the trace exporter.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use crate::breaker::Breaker;
use crate::budget::BudgetBook;
use crate::metrics::Metrics;
use crate::pool::Pool;
use crate::scan::ScanPool;
use crate::telemetry::Traces;
use watershed_dashboards::clock::SharedClock;
use watershed_dashboards::ledger::{LedgerHandle, LedgerStore};
use watershed_dashboards::planner::Plan;
use watershed_dashboards::pricing::{PriceOverride, PriceTable};
use watershed_local_engine::{LoadState, LocalEngine, LocalModelConfig};
use watershed_policies::{Config, GpuLayers, ProviderKind, TargetSpec};
use watershed_providers::anthropic::AnthropicProvider;
use watershed_providers::gemini::GeminiProvider;
use watershed_providers::openai::{EmbeddingModel, OpenAiProvider};
use watershed_providers::remote::RemoteTarget;
use watershed_providers::{BackendKind, Provider};

/// One configured target and the backend that serves it.
pub struct TargetHandle {
    pub id: String,
    pub kind: BackendKind,
    pub trusted: bool,
    pub provider: Arc<dyn Provider>,
    /// Set for local targets so readiness can be reported.
    pub engine: Option<Arc<LocalEngine>>,
    /// The name the model answers under (upstream model or GGUF name).
    pub model_name: String,
    /// A remote target whose API key variable is unset (reported at start-up).
    pub missing_key: Option<String>,
    /// Host and port of a remote target's API (`server.address`/`server.port`
    /// on its spans).
    pub server: Option<(String, u16)>,
    /// Retries on this target after a transient failure (`retries`); none for
    /// the local engine, whose failures (a full queue, a model that did not
    /// load) do not pass within a request.
    pub retries: u32,
    /// Base of the jittered exponential backoff between retries.
    pub retry_backoff: Duration,
    /// The circuit breaker of a remote target; the local engine has none (its
    /// readiness and bounded queue already say whether it can serve).
    pub breaker: Option<Breaker>,
    /// The servers of a pool target (`endpoints:`), among which dispatch
    /// chooses for each attempt; `provider` is then the first member's,
    /// for what all members share (capabilities).
    pub pool: Option<Arc<Pool>>,
}

impl std::fmt::Debug for TargetHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetHandle")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("trusted", &self.trusted)
            .finish_non_exhaustive()
    }
}

/// A validated configuration together with the backends built from it. Replaced
/// as a whole on reload, so a request sees one consistent version.
#[derive(Debug)]
pub struct Runtime {
    pub config: Arc<Config>,
    pub targets: HashMap<String, Arc<TargetHandle>>,
    /// Built-in prices with the config's overrides.
    pub prices: Arc<PriceTable>,
    /// The capacity plan the dashboard's planner view evaluates.
    pub plan: Arc<DashboardPlan>,
    /// `config` with each local target's `tools` as its loaded engine
    /// reports it, set once no local engine is still loading.
    routing: OnceLock<Arc<Config>>,
}

/// A capacity plan and where it was read from.
#[derive(Debug)]
pub struct DashboardPlan {
    /// The plan file's path, or the name of the built-in example.
    pub source: String,
    pub plan: Plan,
}

/// The seed chapter's three-tier example, shown when the config names no plan.
pub const EMBEDDED_PLAN: &str = include_str!("../../config/plans/seed-hybrid.yaml");
pub const EMBEDDED_PLAN_NAME: &str = "the built-in example (config/plans/seed-hybrid.yaml)";

/// Reads `dashboard.plan` (relative to `base_dir`), or the built-in example.
/// A plan that cannot be read or parsed is a configuration error.
pub fn load_plan(config: &Config, base_dir: &Path) -> anyhow::Result<DashboardPlan> {
    let (source, text) = match &config.dashboard.plan {
        None => (EMBEDDED_PLAN_NAME.to_owned(), EMBEDDED_PLAN.to_owned()),
        Some(p) => {
            let path = resolve(base_dir, p);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                anyhow::anyhow!("dashboard.plan: cannot read {}: {e}", path.display())
            })?;
            (path.display().to_string(), text)
        }
    };
    let plan = crate::report::parse_plan(&text, &source)
        .map_err(|e| anyhow::anyhow!("dashboard.plan: {e}"))?;
    Ok(DashboardPlan { source, plan })
}

impl Runtime {
    pub fn target(&self, id: &str) -> Option<&Arc<TargetHandle>> {
        self.targets.get(id)
    }

    /// The config routing and dispatch decide on: `config` while a local
    /// engine is still loading, then, once, `config` with each loaded
    /// engine's `tools` as the engine itself reports it — a model's tool
    /// calling is known only when its engine has read it.
    pub fn routing_config(&self) -> Arc<Config> {
        if let Some(c) = self.routing.get() {
            return c.clone();
        }
        let mut tools = Vec::new();
        for t in self.targets.values() {
            let Some(engine) = &t.engine else { continue };
            match engine.load_state() {
                LoadState::Loading => return self.config.clone(),
                LoadState::Ready => tools.push((t.id.clone(), engine.capabilities().tools)),
                LoadState::Failed(_) => {}
            }
        }
        self.routing
            .get_or_init(|| with_engine_tools(self.config.clone(), &tools))
            .clone()
    }
}

pub struct AppState {
    runtime: RwLock<Arc<Runtime>>,
    pub ledger: LedgerHandle,
    pub metrics: Arc<Metrics>,
    pub traces: Traces,
    /// Team and key spend against their budgets.
    pub budgets: Arc<BudgetBook>,
    /// The bounded pool large requests are classified on; its size
    /// (`privacy.scan.workers`) is read at start.
    pub scans: ScanPool,
    /// The one clock every calendar decision reads (budget windows, the price
    /// in force, dashboard defaults): the wall clock unless a test sets one.
    pub clock: SharedClock,
    /// Cancelled at the drain deadline of a shutdown: streams still running
    /// end with an error event.
    pub drain: tokio_util::sync::CancellationToken,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("runtime", &self.runtime)
            .field("budgets", &self.budgets)
            .finish_non_exhaustive()
    }
}

impl AppState {
    pub fn new(
        runtime: Runtime,
        ledger: LedgerHandle,
        metrics: Arc<Metrics>,
        traces: Traces,
    ) -> Self {
        let scans = ScanPool::new(runtime.config.scan.workers);
        Self {
            scans,
            runtime: RwLock::new(Arc::new(runtime)),
            ledger,
            metrics,
            traces,
            budgets: Arc::new(BudgetBook::default()),
            clock: watershed_dashboards::clock::system(),
            drain: tokio_util::sync::CancellationToken::new(),
        }
    }

    /// The same state on another clock.
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The same state with budgets starting from `book` (spend read from the ledger).
    pub fn with_budgets(mut self, book: BudgetBook) -> Self {
        self.budgets = Arc::new(book);
        self
    }

    /// The ledger's store, for reads; writes go through `ledger`.
    pub fn store(&self) -> &Arc<dyn LedgerStore> {
        self.ledger.store()
    }

    /// The configuration in force now; hold the `Arc` for the whole request.
    pub fn runtime(&self) -> Arc<Runtime> {
        match self.runtime.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Swaps in a new configuration atomically for new requests.
    pub fn replace_runtime(&self, rt: Runtime) {
        let rt = Arc::new(rt);
        match self.runtime.write() {
            Ok(mut guard) => *guard = rt,
            Err(poisoned) => *poisoned.into_inner() = rt,
        }
    }
}

/// Builds a backend for every target of `config`. Local engines start loading in
/// the background; `existing` engines with an identical configuration are reused
/// so a policy reload does not reload models. Paths are relative to `base_dir`.
pub fn build_runtime(
    config: Arc<Config>,
    base_dir: &Path,
    existing: Option<&Runtime>,
) -> anyhow::Result<Runtime> {
    // Before any engine starts loading, so a bad plan costs nothing.
    let plan = Arc::new(load_plan(&config, base_dir)?);
    let mut targets = HashMap::new();
    let mut engine_tools = Vec::new();
    for (id, target) in &config.models {
        let handle = match &target.spec {
            TargetSpec::Local(spec) => {
                let gguf = resolve(base_dir, &spec.gguf);
                let cfg = LocalModelConfig {
                    id: id.clone(),
                    gguf,
                    context_tokens: spec.context_tokens,
                    parallel: spec.parallel,
                    threads: spec.threads,
                    gpu_layers: match spec.gpu_layers {
                        GpuLayers::All | GpuLayers::Fit => None,
                        GpuLayers::N(n) => Some(n),
                    },
                    fit_to_memory: spec.gpu_layers == GpuLayers::Fit,
                    main_gpu: spec.main_gpu,
                    moe_experts_on_cpu: spec.moe_experts_on_cpu,
                    queue: spec.queue,
                    embeddings: spec.embeddings,
                    tools: spec.tools,
                };
                let reused = existing
                    .and_then(|rt| rt.target(id))
                    .and_then(|h| h.engine.clone())
                    .filter(|e| e.config() == &cfg);
                let engine = match reused {
                    Some(e) => e,
                    None => LocalEngine::start(cfg)?,
                };
                let own = engine.capabilities();
                engine_tools.push((id.clone(), own.tools));
                let model_name = own.upstream_model;
                TargetHandle {
                    id: id.clone(),
                    kind: BackendKind::Local,
                    trusted: true,
                    provider: engine.clone(),
                    engine: Some(engine),
                    model_name,
                    missing_key: None,
                    server: None,
                    retries: 0,
                    retry_backoff: Duration::ZERO,
                    breaker: None,
                    pool: None,
                }
            }
            TargetSpec::Remote(spec) => {
                let api_key = spec
                    .api_key_env
                    .as_ref()
                    .and_then(|var| std::env::var(var).ok())
                    .filter(|k| !k.is_empty());
                let missing_key = match (&spec.api_key_env, &api_key) {
                    (Some(var), None) => Some(var.clone()),
                    _ => None,
                };
                let kind = match spec.provider {
                    ProviderKind::Openai => BackendKind::Openai,
                    ProviderKind::OpenaiCompatible => BackendKind::OpenaiCompatible,
                    ProviderKind::Anthropic => BackendKind::Anthropic,
                    ProviderKind::Gemini => BackendKind::Gemini,
                };
                let remote = RemoteTarget {
                    target: id.clone(),
                    kind,
                    base_url: spec.base_url.clone(),
                    upstream_model: spec.model.clone(),
                    api_key,
                    api_key_env: spec.api_key_env.clone(),
                    connect_timeout: Duration::from_millis(spec.connect_timeout_ms),
                    request_timeout: Duration::from_millis(spec.timeout_ms),
                    max_tokens_default: spec.max_tokens_default,
                };
                let pool = match &spec.pool {
                    Some(p) => Some(Arc::new(Pool::new(p, &remote)?)),
                    None => None,
                };
                let provider: Arc<dyn Provider> = match spec.provider {
                    ProviderKind::Anthropic => Arc::new(AnthropicProvider::new(remote)?),
                    ProviderKind::Gemini => Arc::new(GeminiProvider::new(remote)?),
                    ProviderKind::Openai | ProviderKind::OpenaiCompatible => {
                        let p = OpenAiProvider::new(remote)?;
                        Arc::new(match &spec.embeddings {
                            Some(e) => p.with_embeddings(EmbeddingModel {
                                model: e.model.clone(),
                                dimensions: e.dimensions,
                            }),
                            None => p,
                        })
                    }
                };
                // A pool answers through its members; its first member's
                // client stands for what they share (capabilities).
                let provider = pool
                    .as_ref()
                    .and_then(|p| p.members.first())
                    .map_or(provider, |m| m.provider.clone());
                TargetHandle {
                    id: id.clone(),
                    kind,
                    trusted: target.trusted,
                    provider,
                    engine: None,
                    model_name: spec.model.clone(),
                    missing_key,
                    server: server_of(&spec.base_url),
                    retries: spec.retries,
                    retry_backoff: Duration::from_millis(spec.retry_backoff_ms),
                    breaker: Some(Breaker::new(spec.breaker, std::time::Instant::now())),
                    pool,
                }
            }
        };
        targets.insert(id.clone(), Arc::new(handle));
    }
    let config = with_engine_tools(config, &engine_tools);
    let prices = Arc::new(price_table(&config)?);
    for id in unpriced_targets(&config, &prices) {
        tracing::warn!(target_id = %id, "{}", unpriced_warning(&id));
    }
    Ok(Runtime {
        config,
        targets,
        prices,
        plan,
        routing: OnceLock::new(),
    })
}

/// The config with each local target's `tools` capability as its engine
/// reports it, so the policy routes tool calls to a local model exactly when
/// its engine can serve them (dispatch asks the engine again).
fn with_engine_tools(config: Arc<Config>, engines: &[(String, bool)]) -> Arc<Config> {
    let same = engines.iter().all(|(id, tools)| {
        config
            .target(id)
            .is_none_or(|t| t.capabilities.tools == *tools)
    });
    if same {
        return config;
    }
    let mut config = Arc::unwrap_or_clone(config);
    for (id, tools) in engines {
        if let Some(t) = config.models.get_mut(id) {
            t.capabilities.tools = *tools;
        }
    }
    Arc::new(config)
}

/// Remote targets with no price, neither built in nor under `pricing:` (by
/// target id or model name): their requests would be costed at $0.
pub fn unpriced_targets(config: &Config, prices: &PriceTable) -> Vec<String> {
    let mut out: Vec<String> = config
        .models
        .iter()
        .filter_map(|(id, t)| match &t.spec {
            watershed_policies::TargetSpec::Remote(r) => {
                (!prices.has_price(&[id.as_str(), r.model.as_str()])).then(|| id.clone())
            }
            watershed_policies::TargetSpec::Local(_) => None,
        })
        .collect();
    out.sort();
    out
}

/// The warning for an unpriced target, at start-up and in `policy check`.
pub fn unpriced_warning(target: &str) -> String {
    format!(
        "target \"{target}\" has no price (not built in, not under pricing:); its requests are costed at $0 and counted in watershed_unpriced_requests_total"
    )
}

/// The built-in prices with the config's `pricing` overrides.
pub fn price_table(config: &Config) -> Result<PriceTable, watershed_dashboards::LedgerError> {
    let overrides = config.pricing.iter().flat_map(|(model, history)| {
        history.iter().map(move |p| {
            let o = PriceOverride {
                input: p.input,
                output: p.output,
                cached_input: p.cached_input,
                effective_from: p.effective_from.clone(),
                long_context: None,
            };
            (model.clone(), o)
        })
    });
    PriceTable::with_overrides(overrides)
}

/// The host and port a base URL points at, the port defaulted by its scheme.
fn server_of(base_url: &str) -> Option<(String, u16)> {
    let url = reqwest::Url::parse(base_url).ok()?;
    let host = url.host_str()?.trim_matches(['[', ']']).to_owned();
    Some((host, url.port_or_known_default()?))
}

pub(crate) fn resolve(base_dir: &Path, path: &str) -> PathBuf {
    let p = PathBuf::from(path);
    if p.is_absolute() {
        p
    } else {
        base_dir.join(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test model, as the end-to-end tests find it.
    fn test_model() -> PathBuf {
        std::env::var("WATERSHED_TEST_MODEL").map_or_else(
            |_| {
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../models/SmolLM2-135M-Instruct.Q4_1.gguf")
            },
            PathBuf::from,
        )
    }

    #[tokio::test]
    async fn routing_follows_what_each_loaded_engine_reports() {
        let text = format!(
            "version: 1\nmodels:\n  local: {{ engine: local, gguf: \"{}\", context_tokens: 512, parallel: 1 }}\n  \
             broken: {{ engine: local, gguf: does-not-exist.gguf }}\n\
             routes:\n  - name: all\n    to: [local, broken]\n",
            test_model().display()
        );
        let mut cfg = watershed_policies::load_config(&text, "p.yaml").unwrap();
        // A config that claims the opposite of the engine, to see which wins.
        let claimed = !LocalEngine::start(LocalModelConfig {
            id: "probe".into(),
            gguf: test_model(),
            context_tokens: 512,
            parallel: 1,
            threads: None,
            gpu_layers: None,
            fit_to_memory: false,
            main_gpu: 0,
            moe_experts_on_cpu: false,
            queue: 1,
            embeddings: false,
            tools: true,
        })
        .unwrap()
        .capabilities()
        .tools;
        cfg.models.get_mut("local").unwrap().capabilities.tools = claimed;
        let rt = build_runtime(Arc::new(cfg), Path::new("."), None).unwrap();
        // At build, the engine's own account before loading replaces the claim.
        assert_eq!(
            rt.config.target("local").unwrap().capabilities.tools,
            !claimed
        );
        let local = rt.target("local").unwrap().engine.clone().unwrap();
        let broken = rt.target("broken").unwrap().engine.clone().unwrap();
        assert!(broken.wait_ready().await.is_err());
        local.wait_ready().await.unwrap();
        let routing = rt.routing_config();
        assert_eq!(
            routing.target("local").unwrap().capabilities.tools,
            local.capabilities().tools
        );
        // Computed once, then the same for every request.
        assert!(Arc::ptr_eq(&routing, &rt.routing_config()));
    }
}
