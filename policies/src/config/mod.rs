//! The typed, validated policy config and its loader.
//!
//! Loading has two phases (see `raw` and `validate`): YAML → raw serde structs, then a
//! validation pass that checks meaning and cross-references and produces these immutable
//! types. Every error in both phases is collected, so one `watershed policy check` run
//! shows everything that is wrong. A `Config` that exists is valid: in particular no
//! route that confidential traffic can reach lists a target outside the trust boundary.

mod access;
mod capabilities;
mod error;
mod pool;
mod raw;
mod telemetry;
mod validate;
mod when;

use std::collections::BTreeMap;
use std::fmt;

use indexmap::IndexMap;

pub use error::{ConfigError, ConfigErrors};
pub use pool::{HealthSettings, PoolMember, PoolSpec, MAX_POOL_MEMBERS};
pub use telemetry::otlp_endpoint_problem;

use crate::budget::{BudgetLimits, BudgetState};
use crate::capability::{Capability, TargetCapabilities};
use crate::level::{LevelCondition, LevelSet, NumCondition, PrivacyLevel};
use crate::privacy::{PiiKind, PiiSpan};

/// The config versions this build reads.
pub const SUPPORTED_VERSIONS: &[u32] = &[1];

/// Default ledger location.
pub const DEFAULT_LEDGER_URL: &str = "sqlite://watershed.db";
/// Default ledger journal directory, relative to the config file's directory.
pub const DEFAULT_JOURNAL_DIR: &str = "watershed-journal";
/// Default bound on the ledger journal: 256 MiB (about a million records).
pub const DEFAULT_JOURNAL_MAX_BYTES: u64 = 256 * 1024 * 1024;
/// Default size at which a journal segment is sealed: 8 MiB.
pub const DEFAULT_JOURNAL_SEGMENT_BYTES: u64 = 8 * 1024 * 1024;
/// Smallest journal bound accepted: 64 KiB (a few records).
pub const MIN_JOURNAL_MAX_BYTES: u64 = 64 * 1024;
/// Default bound on one ledger database operation: 5 s.
pub const DEFAULT_LEDGER_TIMEOUT_MS: u64 = 5_000;
/// Default bound on a graceful stop after SIGTERM: 30 s.
pub const DEFAULT_SHUTDOWN_GRACE_MS: u64 = 30_000;
/// Request body limit: 4 MiB by default.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 4 * 1024 * 1024;
/// The default `server.max_image_bytes`: its base64 (4/3 larger) and the
/// rest of a request fit in the default body limit.
pub const DEFAULT_MAX_IMAGE_BYTES: u64 = 2 * 1024 * 1024;
/// The default `server.max_images` in one request.
pub const DEFAULT_MAX_IMAGES: u32 = 16;
/// Default upper bound on `max_tokens` in a request.
pub const DEFAULT_MAX_TOKENS_LIMIT: u32 = 1_000_000;
/// Default bound on one request's whole dispatch (every target, every retry,
/// up to the first event of a stream): 60 s.
pub const DEFAULT_REQUEST_DEADLINE_MS: u64 = 60_000;
/// Default bound on a whole streamed answer, from dispatch to its last event:
/// 10 minutes.
pub const DEFAULT_STREAM_DEADLINE_MS: u64 = 600_000;
/// Default number of retries on the same target after a retryable failure.
pub const DEFAULT_RETRIES: u32 = 2;
/// The most retries a target may ask for, so a typo cannot make a storm.
pub const MAX_RETRIES: u32 = 10;
/// Default base of the exponential backoff between retries.
pub const DEFAULT_RETRY_BACKOFF_MS: u64 = 200;
/// The longest base backoff a target may ask for.
pub const MAX_RETRY_BACKOFF_MS: u64 = 60_000;

/// Parses and validates a policy config. `source` is the file name used in errors.
pub fn load_config(text: &str, source: &str) -> Result<Config, ConfigErrors> {
    validate::load(text, source)
}

/// A validated, immutable policy config.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file name it was loaded from, as given to `load_config`.
    pub source: String,
    /// Schema version (`version:`).
    pub version: u32,
    /// Address to listen on, when the config sets one.
    pub listen: Option<String>,
    /// Where the spend ledger lives.
    pub ledger: LedgerSettings,
    /// HTTP server limits and defaults.
    pub server: ServerSettings,
    /// Targets by id, in config order.
    pub models: IndexMap<String, Target>,
    /// Prices by model name, USD per million tokens (built-in defaults are the gateway's).
    /// Price overrides per model, each a history ordered by effective date.
    pub pricing: BTreeMap<String, Vec<PriceEntry>>,
    /// Routes in order; the first that matches wins.
    pub routes: Vec<Route>,
    /// Reference model for the all-closed counterfactual.
    pub counterfactual: Option<String>,
    /// What the owned GPUs cost, for local cost and reports.
    pub fleet: Option<FleetSettings>,
    /// Calibration of the difficulty classifier.
    pub difficulty: DifficultySettings,
    /// The level each detector's findings give a request (`privacy.detectors`),
    /// every kind present: the built-in level unless the config sets another.
    pub detector_levels: BTreeMap<PiiKind, PrivacyLevel>,
    /// The bounds on classifying one request (`privacy.scan`).
    pub scan: ScanSettings,
    /// The lowest level of a request holding content no detector can read
    /// (images, token-id embedding inputs): `privacy.uninspectable`,
    /// `confidential` by default, so such content stays inside the trust
    /// boundary unless the config says otherwise.
    pub uninspectable: PrivacyLevel,
    /// Where request traces go (`telemetry:`); the gateway falls back to the
    /// standard `OTEL_*` environment variables for what this leaves unset.
    pub telemetry: TelemetrySettings,
    /// What the HTML dashboard shows beside the ledger.
    pub dashboard: DashboardSettings,
    /// Teams by name (`teams:`): default privacy and budget. Requests without a
    /// key belong to `default`.
    pub teams: BTreeMap<String, Team>,
    /// Virtual keys by id (`keys:`), each naming its team.
    pub keys: IndexMap<String, ApiKey>,
}

/// The team of requests that present no key.
pub const DEFAULT_TEAM: &str = "default";
/// The key id recorded for requests that present no key.
pub const ANONYMOUS_KEY: &str = "anonymous";

/// `teams.<name>:`
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Team {
    /// The lowest privacy level of the team's requests (`privacy_default`).
    pub privacy_default: Option<PrivacyLevel>,
    /// Spend limits of the whole team.
    pub budget: Option<BudgetLimits>,
}

/// `keys.<id>:` — a virtual key. Only its SHA-256 is configured, so a config
/// file never holds a usable secret.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKey {
    /// The id recorded in the ledger.
    pub id: String,
    /// Lowercase hex SHA-256 of the key as clients send it.
    pub sha256: String,
    /// The team it belongs to.
    pub team: String,
    /// The lowest privacy level of its requests (`privacy_default`).
    pub privacy_default: Option<PrivacyLevel>,
    /// Spend limits of this key alone.
    pub budget: Option<BudgetLimits>,
}

/// `dashboard:` — the capacity plan the dashboard's planner view evaluates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DashboardSettings {
    /// A plan file (YAML), relative to the config file; the built-in seed
    /// example (`config/plans/seed-hybrid.yaml`) when unset.
    pub plan: Option<String>,
}

/// `telemetry:` — OpenTelemetry trace export over OTLP/HTTP.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TelemetrySettings {
    /// The collector's base URL (`http://collector:4318`); spans are posted to
    /// `{otlp_endpoint}/v1/traces`, as with `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub otlp_endpoint: Option<String>,
    /// The `service.name` resource attribute.
    pub service_name: Option<String>,
}

/// `privacy.scan:` — the bounds on classifying one request. A request whose
/// outbound text is larger than `max_bytes`, or whose classification does not
/// finish within `timeout_ms`, is treated as `restricted`: it stays home or is
/// refused, never sent out unclassified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanSettings {
    /// Outbound text above this many bytes is not scanned at all.
    pub max_bytes: u64,
    /// The longest a classification may take, waiting for a worker included.
    pub timeout_ms: u64,
    /// Classifications of large requests that run at once, each on its own
    /// blocking thread (never on the async workers).
    pub workers: u32,
    /// Requests with at most this much outbound text are classified in line:
    /// they take microseconds, less than a hand-off to another thread.
    pub inline_bytes: u64,
}

impl Default for ScanSettings {
    fn default() -> Self {
        ScanSettings {
            max_bytes: 16 * 1024 * 1024,
            timeout_ms: 2_000,
            workers: 2,
            inline_bytes: 32 * 1024,
        }
    }
}

/// `difficulty:` — where the classifier's score splits weak from strong.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DifficultySettings {
    /// The share of traffic meant for strong targets.
    pub strong_fraction: Option<f64>,
    /// The score above which a request counts as `strong` in route conditions;
    /// `watershed policy calibrate` derives it from sample prompts and
    /// `strong_fraction`.
    pub threshold: Option<f64>,
}

impl Config {
    /// The ledger url in force: the variable `ledger.url_env` names when the
    /// config names one (an error when it is unset or not a ledger url), else
    /// `ledger.url`. `env` reads a variable; the caller passes the process's.
    pub fn ledger_url(&self, env: impl Fn(&str) -> Option<String>) -> Result<String, String> {
        let Some(var) = &self.ledger.url_env else {
            return Ok(self.ledger.url.clone());
        };
        match env(var) {
            Some(v) if validate::is_ledger_url(v.trim()) => Ok(v.trim().to_owned()),
            Some(v) => Err(format!(
                "{var} holds no ledger url (expected sqlite:… or postgres://…): \"{}\"",
                mask_url_password(&v)
            )),
            None => Err(format!("{var} is not set (ledger.url_env)")),
        }
    }

    /// A request's level: the highest of `floor` (declared or default) and the
    /// level of every detection.
    pub fn privacy_level(&self, spans: &[PiiSpan], floor: PrivacyLevel) -> PrivacyLevel {
        spans
            .iter()
            .map(|s| {
                self.detector_levels
                    .get(&s.kind)
                    .copied()
                    .unwrap_or_else(|| s.kind.default_level())
            })
            .fold(floor, PrivacyLevel::max)
    }

    /// The key whose SHA-256 (lowercase hex) is `sha256`.
    pub fn key_by_sha256(&self, sha256: &str) -> Option<&ApiKey> {
        self.keys.values().find(|k| k.sha256 == sha256)
    }

    /// A route by name.
    pub fn route(&self, name: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.name == name)
    }

    /// A team by name.
    pub fn team(&self, name: &str) -> Option<&Team> {
        self.teams.get(name)
    }

    /// A target by id.
    pub fn target(&self, id: &str) -> Option<&Target> {
        self.models.get(id)
    }

    /// Whether `name` may be requested: a target id, a name some route matches on, or
    /// `auto`.
    pub fn is_known_model(&self, name: &str) -> bool {
        name == "auto"
            || self.models.contains_key(name)
            || self.routes.iter().any(|r| {
                r.when
                    .model
                    .as_ref()
                    .is_some_and(|ms| ms.iter().any(|m| m == name))
            })
    }

    /// Every name a client may request, sorted and without duplicates.
    pub fn known_models(&self) -> Vec<String> {
        let mut names: Vec<String> = std::iter::once("auto".to_string())
            .chain(self.models.keys().cloned())
            .chain(
                self.routes
                    .iter()
                    .filter_map(|r| r.when.model.as_ref())
                    .flatten()
                    .cloned(),
            )
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

/// `url` with the password of its user info, if any, replaced by `***`, for
/// messages and logs: `postgres://app:s3cret@db/x` → `postgres://app:***@db/x`.
pub fn mask_url_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    match authority[..at].find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &url[..scheme_end],
            &authority[..colon],
            &rest[at..]
        ),
        None => url.to_owned(),
    }
}

/// `ledger:`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerSettings {
    /// `sqlite://…` or `postgres://…`; the default when only `url_env` is set.
    pub url: String,
    /// An environment variable holding the url instead (`ledger.url_env`), so
    /// a database password can live in a secret rather than in the policy
    /// file; the gateway reads it at start.
    pub url_env: Option<String>,
    /// How budgets are shared when the ledger is PostgreSQL (`ledger.budgets`).
    pub budgets: SharedBudgetSettings,
    /// The bound on one database operation of the ledger writer (connect, a
    /// batch insert; a migration gets three times it); past it the database
    /// counts as unreachable.
    pub timeout_ms: u64,
    pub journal: JournalSettings,
}

/// `ledger.budgets:` the budget book replicas share in PostgreSQL. Read at
/// start; ignored on a SQLite ledger, whose book lives in the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedBudgetSettings {
    /// A reservation nobody settled (its replica died) stops holding budget
    /// this long after it was made, when a replica's sweep removes it. Must
    /// exceed the longest request.
    pub reservation_ttl_s: u64,
    /// How often each replica sweeps expired reservations, writes the spend
    /// it could not write at once, re-reads the shared figures and, while the
    /// database is unreachable, tries it again.
    pub sync_interval_ms: u64,
    /// The bound on each budget query; a query that takes longer counts the
    /// database as unreachable.
    pub timeout_ms: u64,
    /// While the database is unreachable, whether a budget this replica never
    /// read a shared figure for admits paid requests (`open`) or refuses
    /// them (`closed`, the default).
    pub when_unknown_open: bool,
}

impl Default for SharedBudgetSettings {
    fn default() -> Self {
        Self {
            reservation_ttl_s: 900,
            sync_interval_ms: 2_000,
            timeout_ms: 1_000,
            when_unknown_open: false,
        }
    }
}

/// `ledger.journal:` — the local append-only journal every record goes to
/// before the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalSettings {
    /// Directory of the segment files (relative to the config file's directory).
    pub dir: String,
    /// The most it holds for new work.
    pub max_bytes: u64,
    /// A segment is sealed at this size.
    pub segment_bytes: u64,
    pub when_full: JournalFull,
}

/// `ledger.journal.when_full`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalFull {
    /// Answer new paid requests with 503 until the writer has caught up.
    Refuse,
    /// Keep serving; records that do not fit are dropped and counted.
    Drop,
}

/// `server:`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    /// Larger request bodies are refused (413).
    pub max_body_bytes: u64,
    /// The privacy level of a request that carries no hint.
    pub default_privacy: PrivacyLevel,
    /// Larger `max_tokens` values are refused (400).
    pub max_tokens_limit: u32,
    /// More inputs in one embeddings request are refused (400).
    pub max_embedding_inputs: u32,
    /// An inline image larger than this once decoded is refused (413).
    /// Unset, 2 MiB, or less where `max_body_bytes` leaves room for less.
    pub max_image_bytes: u64,
    /// More images in one request are refused (413).
    pub max_images: u32,
    /// Allow plain-http image URLs to 127.0.0.1 (tests against a local
    /// server); otherwise image URLs must be https.
    pub image_http_loopback: bool,
    /// Refuse requests that present no virtual key (401).
    pub require_key: bool,
    /// Environment variable holding the bearer token of the `/admin` API; the
    /// admin API is off without it.
    pub admin_key_env: Option<String>,
    /// The bound on one request's dispatch: every target and retry together,
    /// and for a stream up to its first event. Each attempt is also bound by
    /// its target's own `timeout_ms`.
    pub request_deadline_ms: u64,
    /// The bound on a whole streamed answer, from dispatch to the last event.
    pub stream_deadline_ms: u64,
    /// The bound on stopping after SIGTERM: requests drain for three
    /// quarters of it (streams still running then end with an error event),
    /// the ledger writer and the trace exporter get the rest.
    pub shutdown_grace_ms: u64,
}

/// `fleet:` — the owned GPUs, priced by the hour whether busy or idle.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetSettings {
    /// Number of GPUs.
    pub gpus: u32,
    /// USD per GPU-hour.
    pub gpu_hour_usd: f64,
}

/// A place a request can be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The key under `models:`.
    pub id: String,
    /// Inside the trust boundary: always true for local targets, `trusted: true` for
    /// remote ones (a vLLM pool in the company's network, say).
    pub trusted: bool,
    /// How to reach it.
    pub spec: TargetSpec,
    /// What it can do: for a remote target the built-in facts of its
    /// provider and model with `capabilities:` over them; for a local one
    /// what the engine does, with the configured context window, which the
    /// gateway narrows to the GGUF's trained one and whose `tools` it takes
    /// from the engine (`watershed::config::load`, `state::build_runtime`).
    pub capabilities: TargetCapabilities,
}

impl Target {
    /// Whether this is the in-process engine.
    pub fn is_local(&self) -> bool {
        matches!(self.spec, TargetSpec::Local(_))
    }
}

/// Local engine or remote provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSpec {
    /// In-process llama.cpp (`engine: local`).
    Local(LocalSpec),
    /// An HTTP API (`provider: …`).
    Remote(RemoteSpec),
}

/// How many layers to offload to the GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpuLayers {
    /// Every layer (`gpu_layers: all`).
    All,
    /// As many as fit in free GPU memory, with MoE experts moved to host memory
    /// first (`gpu_layers: fit`, llama.cpp's parameter fitting).
    Fit,
    /// This many layers.
    N(u32),
}

/// An in-process llama.cpp model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalSpec {
    /// Path to the GGUF file, as written in the config.
    pub gguf: String,
    /// Context window per sequence.
    pub context_tokens: u32,
    /// Sequences decoded together.
    pub parallel: u32,
    /// CPU threads; `None` lets the engine choose.
    pub threads: Option<u32>,
    /// GPU offload.
    pub gpu_layers: GpuLayers,
    /// Which GPU holds the non-split tensors.
    pub main_gpu: u32,
    /// Keep MoE expert tensors in host memory.
    pub moe_experts_on_cpu: bool,
    /// Requests that may wait for a slot before new ones are refused.
    pub queue: u32,
    /// Serves embeddings (mean pooling); `embeddings: false` turns it off.
    pub embeddings: bool,
    /// Serves tool calling (grammar-constrained calls); `tools: false`
    /// turns it off, so routing skips it for requests with tools.
    pub tools: bool,
}

/// Which wire protocol a remote target speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    /// OpenAI's API (`openai`).
    Openai,
    /// Any server speaking OpenAI's format at its own URL (`openai-compatible`).
    OpenaiCompatible,
    /// Anthropic's Messages API (`anthropic`).
    Anthropic,
    /// Google's Gemini API, `generateContent` (`gemini`).
    Gemini,
}

impl ProviderKind {
    /// The name used in YAML.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Openai => "openai",
            ProviderKind::OpenaiCompatible => "openai-compatible",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Gemini => "gemini",
        }
    }

    /// The base URL used when the config gives none.
    pub fn default_base_url(self) -> Option<&'static str> {
        match self {
            ProviderKind::Openai => Some("https://api.openai.com/v1"),
            ProviderKind::Anthropic => Some("https://api.anthropic.com"),
            ProviderKind::Gemini => Some("https://generativelanguage.googleapis.com/v1beta"),
            ProviderKind::OpenaiCompatible => None,
        }
    }

    fn parse(s: &str) -> Option<ProviderKind> {
        match s {
            "openai" => Some(ProviderKind::Openai),
            "openai-compatible" => Some(ProviderKind::OpenaiCompatible),
            "anthropic" => Some(ProviderKind::Anthropic),
            "gemini" => Some(ProviderKind::Gemini),
            _ => None,
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The embedding model of a remote target (`embeddings: { model, dimensions }`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteEmbeddings {
    /// The model name sent to `{base_url}/embeddings`.
    pub model: String,
    /// Whether the model accepts `dimensions` (default: yes for `openai`).
    pub dimensions: bool,
}

/// A model behind an HTTP API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteSpec {
    /// Wire protocol.
    pub provider: ProviderKind,
    /// Model name sent upstream (defaults to the target id).
    pub model: String,
    /// Base URL without the `/v1/...` path.
    pub base_url: String,
    /// Environment variable holding the API key.
    pub api_key_env: Option<String>,
    /// TCP connect timeout.
    pub connect_timeout_ms: u64,
    /// Whole-request timeout of one attempt; for streams, the wait for the
    /// response head and the longest gap between two SSE events.
    pub timeout_ms: u64,
    /// `max_tokens` to send when the request has none (Anthropic requires one).
    pub max_tokens_default: Option<u32>,
    /// Retries on this target after a 429, a 5xx, a connect error or a
    /// timeout, before dispatch moves to the next target.
    pub retries: u32,
    /// Base of the jittered exponential backoff between those retries.
    pub retry_backoff_ms: u64,
    /// When dispatch stops sending this target requests for a while.
    pub breaker: BreakerSettings,
    /// Serves `POST /v1/embeddings` with this model; `None`: it cannot embed.
    pub embeddings: Option<RemoteEmbeddings>,
    /// Several servers behind this one target (`endpoints:`), for
    /// `openai-compatible`; `base_url` is then the first member's.
    pub pool: Option<PoolSpec>,
}

/// `models.<id>.breaker:` — a target that fails `failures` times in a row,
/// each within `window_ms` of the first, is skipped for `cooldown_ms`; then
/// one request probes it, and its success closes the breaker again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    pub failures: u32,
    pub window_ms: u64,
    pub cooldown_ms: u64,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            failures: 5,
            window_ms: 60_000,
            cooldown_ms: 30_000,
        }
    }
}

/// USD per million tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceEntry {
    /// Prompt tokens.
    pub input: f64,
    /// Completion tokens.
    pub output: f64,
    /// Prompt tokens served from the provider's cache, when it prices them apart.
    pub cached_input: Option<f64>,
    /// `YYYY-MM-DD` (UTC) from which this price applies; `None` for always.
    pub effective_from: Option<String>,
}

/// One routing rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// Unique name, reported in `x-watershed-route` and the ledger.
    pub name: String,
    /// Conditions; all must hold. Empty matches everything.
    pub when: When,
    /// Targets tried first, in order.
    pub to: Vec<String>,
    /// Targets tried after `to`, in order.
    pub fallback: Vec<String>,
    /// Replace detected sensitive values with placeholders before sending to a
    /// target outside the trust boundary, and restore them in the answer.
    pub redact: bool,
    /// The all-closed reference model for this route's requests, instead of
    /// `counterfactual.all_closed`.
    pub counterfactual: Option<String>,
    /// Privacy levels that can still reach this route once earlier routes have taken
    /// theirs (computed at load; used by the privacy check and by `explain`).
    pub reachable_levels: LevelSet,
}

impl Route {
    /// `to` then `fallback`, without repeats.
    pub fn targets(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for t in self.to.iter().chain(self.fallback.iter()) {
            if !out.contains(&t.as_str()) {
                out.push(t);
            }
        }
        out
    }
}

/// The conditions of a route; all that are set must hold.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct When {
    /// Privacy level condition.
    pub privacy: Option<LevelCondition>,
    /// Requested model names, any of which matches.
    pub model: Option<Vec<String>>,
    /// Difficulty score condition (a request without a score does not match).
    pub difficulty: Option<NumCondition>,
    /// Budget state the request's team or key must be in.
    pub budget: Option<BudgetState>,
    /// Teams, any of which matches.
    pub team: Option<Vec<String>>,
    /// Estimated prompt tokens condition.
    pub estimated_tokens: Option<NumCondition>,
    /// Metadata tags that must all be present with these values.
    pub metadata: Option<BTreeMap<String, String>>,
    /// Capabilities the request must need, all of them (`needs: [tools, vision]`).
    pub needs: Option<Vec<Capability>>,
}

impl When {
    /// Whether any condition other than privacy is set: such a route does not take all
    /// requests at its privacy levels, so later routes can still see those levels.
    pub fn has_non_privacy_condition(&self) -> bool {
        self.model.is_some()
            || self.difficulty.is_some()
            || self.budget.is_some()
            || self.team.is_some()
            || self.estimated_tokens.is_some()
            || self.metadata.is_some()
            || self.needs.is_some()
    }

    /// The privacy levels this route's privacy condition admits.
    pub fn privacy_levels(&self) -> LevelSet {
        self.privacy.map_or(LevelSet::ALL, |c| c.levels())
    }
}
