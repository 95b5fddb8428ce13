//! Phase one of loading: serde structs that mirror the YAML exactly, with
//! `deny_unknown_fields` so a misspelt key is an error instead of a silent default.
//! Nothing here checks meaning; `validate` does that.

use std::fmt;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// `ledger:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLedger {
    pub url: Option<String>,
    pub url_env: Option<String>,
    pub budgets: Option<RawSharedBudgets>,
    pub timeout_ms: Option<u64>,
    pub journal: Option<RawJournal>,
}

/// `ledger.budgets:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSharedBudgets {
    pub reservation_ttl_s: Option<u64>,
    pub sync_interval_ms: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub when_unknown: Option<String>,
}

/// `ledger.journal:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawJournal {
    pub dir: Option<String>,
    pub max_bytes: Option<u64>,
    pub segment_bytes: Option<u64>,
    pub when_full: Option<String>,
}

/// `server:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    pub max_body_bytes: Option<u64>,
    pub default_privacy: Option<String>,
    pub max_tokens_limit: Option<u32>,
    pub max_embedding_inputs: Option<u32>,
    pub max_image_bytes: Option<u64>,
    pub max_images: Option<u32>,
    pub image_http_loopback: Option<bool>,
    pub require_key: Option<bool>,
    pub admin_key_env: Option<String>,
    pub request_deadline_ms: Option<u64>,
    pub stream_deadline_ms: Option<u64>,
    pub shutdown_grace_ms: Option<u64>,
}

/// `privacy:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPrivacy {
    pub detectors: Option<indexmap::IndexMap<String, String>>,
    pub scan: Option<RawScan>,
    pub uninspectable: Option<String>,
}

/// `privacy.scan:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawScan {
    pub max_bytes: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub workers: Option<u32>,
    pub inline_bytes: Option<u64>,
}

/// `difficulty:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDifficulty {
    pub strong_fraction: Option<f64>,
    pub threshold: Option<f64>,
}

/// `dashboard:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDashboard {
    pub plan: Option<String>,
}

/// `telemetry:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTelemetry {
    pub otlp_endpoint: Option<String>,
    pub service_name: Option<String>,
}

/// `fleet:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFleet {
    pub gpus: u32,
    pub gpu_hour_usd: f64,
}

/// One entry under `models:`. Local and remote fields share one struct so that a field
/// of the wrong kind gets a precise error from `validate` rather than serde's opaque
/// "did not match any variant".
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTarget {
    pub engine: Option<String>,
    pub provider: Option<String>,
    pub trusted: Option<bool>,
    // Local engine.
    pub gguf: Option<String>,
    pub context_tokens: Option<u32>,
    pub parallel: Option<u32>,
    pub threads: Option<u32>,
    pub gpu_layers: Option<Value>,
    pub main_gpu: Option<u32>,
    pub moe_experts_on_cpu: Option<bool>,
    pub queue: Option<u32>,
    /// `tools: false` keeps tool-calling requests away from a local model.
    pub tools: Option<bool>,
    // Remote provider.
    pub model: Option<String>,
    pub base_url: Option<String>,
    pub api_key_env: Option<String>,
    pub connect_timeout_ms: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub max_tokens_default: Option<u32>,
    pub retries: Option<u32>,
    pub retry_backoff_ms: Option<u64>,
    pub breaker: Option<RawBreaker>,
    // A pool of OpenAI-compatible servers instead of one `base_url`.
    pub endpoints: Option<Vec<RawEndpoint>>,
    pub health: Option<RawHealth>,
    // Embeddings: `true`/`false` for the local engine, `{ model, dimensions }`
    // for a remote target.
    pub embeddings: Option<Value>,
    // What a remote target can do, over the built-in facts.
    pub capabilities: Option<RawCapabilities>,
}

/// `models.<id>.capabilities:` of a remote target; each one set replaces the
/// built-in fact (`embeddings:` says whether it embeds).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCapabilities {
    pub tools: Option<bool>,
    pub json_schema: Option<bool>,
    pub vision: Option<bool>,
    pub logprobs: Option<bool>,
    pub context_tokens: Option<u64>,
}

/// `models.<id>.endpoints[i]:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEndpoint {
    pub url: String,
    pub name: Option<String>,
}

/// `models.<id>.health:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHealth {
    pub path: Option<String>,
    pub interval_ms: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub unhealthy_threshold: Option<u32>,
    pub healthy_threshold: Option<u32>,
    pub eject_after_failures: Option<u32>,
}

/// `models.<id>.breaker:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBreaker {
    pub failures: Option<u32>,
    pub window_ms: Option<u64>,
    pub cooldown_ms: Option<u64>,
}

impl RawTarget {
    /// Fields that only make sense for the local engine, with whether each is set.
    pub fn local_fields(&self) -> [(&'static str, bool); 9] {
        [
            ("gguf", self.gguf.is_some()),
            ("context_tokens", self.context_tokens.is_some()),
            ("parallel", self.parallel.is_some()),
            ("threads", self.threads.is_some()),
            ("gpu_layers", self.gpu_layers.is_some()),
            ("main_gpu", self.main_gpu.is_some()),
            ("moe_experts_on_cpu", self.moe_experts_on_cpu.is_some()),
            ("queue", self.queue.is_some()),
            ("tools", self.tools.is_some()),
        ]
    }

    /// Fields that only make sense for a remote provider, with whether each is set.
    pub fn remote_fields(&self) -> [(&'static str, bool); 12] {
        [
            ("model", self.model.is_some()),
            ("base_url", self.base_url.is_some()),
            ("api_key_env", self.api_key_env.is_some()),
            ("connect_timeout_ms", self.connect_timeout_ms.is_some()),
            ("timeout_ms", self.timeout_ms.is_some()),
            ("max_tokens_default", self.max_tokens_default.is_some()),
            ("retries", self.retries.is_some()),
            ("retry_backoff_ms", self.retry_backoff_ms.is_some()),
            ("breaker", self.breaker.is_some()),
            ("endpoints", self.endpoints.is_some()),
            ("health", self.health.is_some()),
            ("capabilities", self.capabilities.is_some()),
        ]
    }
}

/// `pricing.<name>:` in USD per million tokens.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPrice {
    pub input: f64,
    pub output: f64,
    pub cached_input: Option<f64>,
    pub effective_from: Option<String>,
}

/// `counterfactual:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCounterfactual {
    pub all_closed: String,
}

/// One entry under `routes:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    pub name: String,
    #[serde(default)]
    pub when: Option<RawWhen>,
    pub to: Vec<String>,
    #[serde(default)]
    pub fallback: Vec<String>,
    #[serde(default)]
    pub redact: Option<bool>,
    #[serde(default)]
    pub counterfactual: Option<String>,
}

/// `routes[i].when:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWhen {
    pub privacy: Option<String>,
    pub model: Option<OneOrMany>,
    pub difficulty: Option<String>,
    pub budget: Option<String>,
    pub team: Option<OneOrMany>,
    pub estimated_tokens: Option<String>,
    pub metadata: Option<std::collections::BTreeMap<String, String>>,
    pub needs: Option<Vec<String>>,
}

/// A string or a list of strings (`model: gpt-5.4` or `model: [a, b]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OneOrMany(pub Vec<String>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany(vec![v.to_string()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OneOrMany, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                Ok(OneOrMany(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// `budget:` of a team or key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBudget {
    pub daily_usd: Option<f64>,
    pub monthly_usd: Option<f64>,
    pub alert_at: Option<f64>,
    pub on_exhausted: Option<String>,
}

/// `teams.<name>:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTeam {
    pub privacy_default: Option<String>,
    pub budget: Option<RawBudget>,
}

/// `keys.<id>:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawKey {
    pub sha256: String,
    pub team: Option<String>,
    pub privacy_default: Option<String>,
    pub budget: Option<RawBudget>,
}
