//! Phase two of loading: raw structs → typed `Config`, checking meaning and
//! cross-references and collecting every error with its position.
//!
//! Each section, each target and each route is deserialized on its own, so one type
//! error does not hide the others. The privacy invariant is checked here: a route that a
//! confidential or restricted request can reach may list only trusted targets.

use std::collections::{BTreeMap, HashMap, HashSet};

use indexmap::IndexMap;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::raw::{
    RawBreaker, RawCounterfactual, RawDashboard, RawDifficulty, RawFleet, RawLedger, RawPrice,
    RawPrivacy, RawRoute, RawServer, RawSharedBudgets, RawTarget,
};
use super::{
    BreakerSettings, Config, ConfigError, ConfigErrors, DashboardSettings, DifficultySettings,
    FleetSettings, GpuLayers, JournalFull, JournalSettings, LedgerSettings, LocalSpec, PriceEntry,
    ProviderKind, RemoteEmbeddings, RemoteSpec, Route, ScanSettings, ServerSettings,
    SharedBudgetSettings, Target, TargetSpec, DEFAULT_JOURNAL_DIR, DEFAULT_JOURNAL_MAX_BYTES,
    DEFAULT_JOURNAL_SEGMENT_BYTES, DEFAULT_LEDGER_TIMEOUT_MS, DEFAULT_LEDGER_URL,
    DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_IMAGES, DEFAULT_MAX_IMAGE_BYTES, DEFAULT_MAX_TOKENS_LIMIT,
    DEFAULT_REQUEST_DEADLINE_MS, DEFAULT_RETRIES, DEFAULT_RETRY_BACKOFF_MS,
    DEFAULT_SHUTDOWN_GRACE_MS, DEFAULT_STREAM_DEADLINE_MS, MAX_RETRIES, MAX_RETRY_BACKOFF_MS,
    MIN_JOURNAL_MAX_BYTES, SUPPORTED_VERSIONS,
};
use crate::level::{LevelSet, PrivacyLevel};
use crate::privacy::PiiKind;
use crate::yaml::{self, join_index, join_key, Document};

const TOP_LEVEL_KEYS: &[&str] = &[
    "version",
    "listen",
    "ledger",
    "server",
    "models",
    "pricing",
    "routes",
    "counterfactual",
    "fleet",
    "difficulty",
    "privacy",
    "teams",
    "keys",
    "dashboard",
    "telemetry",
];

/// Which end of a key/value pair an error points at.
#[derive(Clone, Copy)]
pub(super) enum At {
    Key,
    Value,
}

pub(super) struct Ctx<'a> {
    doc: &'a Document,
    source: &'a str,
    errors: Vec<ConfigError>,
    /// `difficulty.threshold`, for `difficulty: strong | weak` in routes.
    pub(super) difficulty_threshold: Option<f64>,
}

impl Ctx<'_> {
    pub(super) fn err(&mut self, path: &str, at: At, message: impl Into<String>) {
        let span = self.doc.nearest_span(path);
        let pos = match at {
            At::Key => span.key,
            At::Value => span.value,
        };
        self.errors.push(ConfigError {
            file: self.source.to_string(),
            line: pos.line,
            col: pos.col,
            path: path.to_string(),
            message: message.into(),
        });
    }

    /// Deserializes `value` (found at `prefix`) into `T`, recording a positioned error
    /// on failure.
    pub(super) fn de<T: DeserializeOwned>(&mut self, value: &Value, prefix: &str) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(v) => Some(v),
            Err(e) => {
                let mut path = prefix.to_string();
                for seg in e.path().iter() {
                    path = match seg {
                        serde_path_to_error::Segment::Seq { index } => join_index(&path, *index),
                        serde_path_to_error::Segment::Map { key }
                        | serde_path_to_error::Segment::Enum { variant: key } => {
                            join_key(&path, key)
                        }
                        serde_path_to_error::Segment::Unknown => path,
                    };
                }
                let message = e.inner().to_string().replace('`', "\"");
                let at = if message.starts_with("unknown field") {
                    At::Key
                } else {
                    At::Value
                };
                self.err(&path, at, message);
                None
            }
        }
    }

    fn positive<T: PartialOrd + Default + Copy>(
        &mut self,
        v: Option<T>,
        path: &str,
        default: T,
    ) -> T {
        match v {
            Some(x) if x <= T::default() => {
                self.err(path, At::Value, "must be greater than 0");
                default
            }
            Some(x) => x,
            None => default,
        }
    }
}

pub(super) fn load(text: &str, source: &str) -> Result<Config, ConfigErrors> {
    let doc = match yaml::parse(text) {
        Ok(doc) => doc,
        Err(errs) => {
            return Err(ConfigErrors(
                errs.into_iter()
                    .map(|e| ConfigError {
                        file: source.to_string(),
                        line: e.pos.line,
                        col: e.pos.col,
                        path: e.path,
                        message: e.message,
                    })
                    .collect(),
            ))
        }
    };
    let mut cx = Ctx {
        doc: &doc,
        source,
        errors: Vec::new(),
        difficulty_threshold: None,
    };
    let config = build(&mut cx);
    let mut errors = cx.errors;
    match config {
        Some(c) if errors.is_empty() => Ok(c),
        _ => {
            if errors.is_empty() {
                // Unreachable in practice: `build` only gives up after recording why.
                cx_fallback(&mut errors, source);
            }
            errors.sort_by_key(|e| (e.line, e.col));
            Err(ConfigErrors(errors))
        }
    }
}

fn cx_fallback(errors: &mut Vec<ConfigError>, source: &str) {
    errors.push(ConfigError {
        file: source.to_string(),
        line: 1,
        col: 1,
        path: String::new(),
        message: "invalid config".into(),
    });
}

fn build(cx: &mut Ctx<'_>) -> Option<Config> {
    let root = match &cx.doc.value {
        Value::Object(m) => m,
        Value::Null => {
            cx.err(
                "",
                At::Value,
                "empty config (expected a mapping starting with version: 1)",
            );
            return None;
        }
        _ => {
            cx.err(
                "",
                At::Value,
                "the config must be a mapping of keys to values",
            );
            return None;
        }
    };
    let version = check_version(cx, root)?;
    for key in root.keys() {
        if !TOP_LEVEL_KEYS.contains(&key.as_str()) {
            cx.err(
                key,
                At::Key,
                format!(
                    "unknown field \"{key}\", expected one of {}",
                    TOP_LEVEL_KEYS.join(", ")
                ),
            );
        }
    }
    let get = |k: &str| root.get(k).filter(|v| !v.is_null());

    let listen: Option<String> = get("listen").and_then(|v| cx.de(v, "listen"));
    if let Some(l) = &listen {
        let port_ok = l
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !port_ok {
            cx.err(
                "listen",
                At::Value,
                format!("invalid listen address \"{l}\" (expected host:port)"),
            );
        }
    }

    let ledger = ledger(cx, get("ledger"));
    let server = server(cx, get("server"));
    let fleet = fleet(cx, get("fleet"));
    let dashboard = dashboard(cx, get("dashboard"));
    let difficulty = difficulty(cx, get("difficulty"));
    let (detector_levels, scan, uninspectable) = privacy(cx, get("privacy"));
    let telemetry = super::telemetry::telemetry(cx, get("telemetry"));
    cx.difficulty_threshold = difficulty.threshold;

    let (models, declared) = models(cx, get("models"));
    let pricing = pricing(cx, get("pricing"));
    let counterfactual = get("counterfactual")
        .and_then(|v| cx.de::<RawCounterfactual>(v, "counterfactual"))
        .and_then(|c| {
            if c.all_closed.trim().is_empty() {
                cx.err("counterfactual.all_closed", At::Value, "must name a model");
                None
            } else {
                Some(c.all_closed)
            }
        });
    let routes = routes(cx, get("routes"), &models, &declared);
    let teams = super::access::teams(cx, get("teams"));
    let keys = super::access::keys(cx, get("keys"), &teams);

    Some(Config {
        source: cx.source.to_string(),
        version,
        listen,
        ledger: ledger?,
        server: server?,
        models,
        pricing,
        routes: routes?,
        counterfactual,
        fleet,
        difficulty,
        detector_levels,
        scan,
        uninspectable,
        teams,
        keys,
        dashboard,
        telemetry,
    })
}

fn check_version(cx: &mut Ctx<'_>, root: &Map<String, Value>) -> Option<u32> {
    let supported = SUPPORTED_VERSIONS
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    match root.get("version") {
        None => {
            cx.err(
                "",
                At::Value,
                format!("missing field \"version\" (this build reads version {supported})"),
            );
            None
        }
        Some(v) => match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(n) if SUPPORTED_VERSIONS.contains(&n) => Some(n),
            _ => {
                // Nothing else is checked: an unknown version may mean a different schema.
                cx.err(
                    "version",
                    At::Value,
                    format!(
                        "unsupported config version {v} (this build reads version {supported})"
                    ),
                );
                None
            }
        },
    }
}

/// Whether `url` names a ledger store this build has.
pub(super) fn is_ledger_url(url: &str) -> bool {
    url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://")
}

fn ledger(cx: &mut Ctx<'_>, v: Option<&Value>) -> Option<LedgerSettings> {
    let raw: RawLedger = match v {
        Some(v) => cx.de(v, "ledger")?,
        None => RawLedger::default(),
    };
    if raw.url.is_some() && raw.url_env.is_some() {
        cx.err(
            "ledger.url_env",
            At::Key,
            "set ledger.url or ledger.url_env, not both",
        );
    }
    if let Some(var) = &raw.url_env {
        if !is_env_var_name(var) {
            cx.err(
                "ledger.url_env",
                At::Value,
                format!("\"{var}\" is not an environment variable name"),
            );
        }
    }
    let url = raw.url.unwrap_or_else(|| DEFAULT_LEDGER_URL.to_string());
    if !is_ledger_url(&url) {
        cx.err(
            "ledger.url",
            At::Value,
            format!(
                "unsupported ledger url \"{}\" (expected sqlite:… or postgres://…)",
                super::mask_url_password(&url)
            ),
        );
    }
    let budgets = shared_budgets(cx, raw.budgets.unwrap_or_default());
    let j = raw.journal.unwrap_or_default();
    let when_full = match j.when_full.as_deref() {
        None | Some("refuse") => JournalFull::Refuse,
        Some("drop") => JournalFull::Drop,
        Some(other) => {
            cx.err(
                "ledger.journal.when_full",
                At::Value,
                format!("unknown action \"{other}\" (expected refuse or drop)"),
            );
            JournalFull::Refuse
        }
    };
    let max_bytes = cx.positive(
        j.max_bytes,
        "ledger.journal.max_bytes",
        DEFAULT_JOURNAL_MAX_BYTES,
    );
    if max_bytes < MIN_JOURNAL_MAX_BYTES {
        cx.err(
            "ledger.journal.max_bytes",
            At::Value,
            format!("must be at least {MIN_JOURNAL_MAX_BYTES} (64 KiB), not {max_bytes}"),
        );
    }
    let segment_bytes = cx.positive(
        j.segment_bytes,
        "ledger.journal.segment_bytes",
        DEFAULT_JOURNAL_SEGMENT_BYTES.min(max_bytes),
    );
    if segment_bytes > max_bytes {
        cx.err(
            "ledger.journal.segment_bytes",
            At::Value,
            format!("must not exceed ledger.journal.max_bytes ({max_bytes}), not {segment_bytes}"),
        );
    }
    let dir = match j.dir {
        Some(d) if d.trim().is_empty() => {
            cx.err("ledger.journal.dir", At::Value, "must not be empty");
            DEFAULT_JOURNAL_DIR.to_owned()
        }
        Some(d) => d,
        None => DEFAULT_JOURNAL_DIR.to_owned(),
    };
    Some(LedgerSettings {
        url,
        url_env: raw.url_env,
        budgets,
        timeout_ms: cx.positive(
            raw.timeout_ms,
            "ledger.timeout_ms",
            DEFAULT_LEDGER_TIMEOUT_MS,
        ),
        journal: JournalSettings {
            dir,
            max_bytes,
            segment_bytes,
            when_full,
        },
    })
}

fn shared_budgets(cx: &mut Ctx<'_>, raw: RawSharedBudgets) -> SharedBudgetSettings {
    let d = SharedBudgetSettings::default();
    let when_unknown_open = match raw.when_unknown.as_deref() {
        None | Some("closed") => false,
        Some("open") => true,
        Some(other) => {
            cx.err(
                "ledger.budgets.when_unknown",
                At::Value,
                format!("unknown value \"{other}\" (expected open or closed)"),
            );
            false
        }
    };
    SharedBudgetSettings {
        reservation_ttl_s: cx.positive(
            raw.reservation_ttl_s,
            "ledger.budgets.reservation_ttl_s",
            d.reservation_ttl_s,
        ),
        sync_interval_ms: cx.positive(
            raw.sync_interval_ms,
            "ledger.budgets.sync_interval_ms",
            d.sync_interval_ms,
        ),
        timeout_ms: cx.positive(raw.timeout_ms, "ledger.budgets.timeout_ms", d.timeout_ms),
        when_unknown_open,
    }
}

fn server(cx: &mut Ctx<'_>, v: Option<&Value>) -> Option<ServerSettings> {
    let raw: RawServer = match v {
        Some(v) => cx.de(v, "server")?,
        None => RawServer::default(),
    };
    let default_privacy = match raw.default_privacy.as_deref() {
        None => PrivacyLevel::Internal,
        Some(s) => match s.parse::<PrivacyLevel>() {
            Ok(l) => l,
            Err(e) => {
                cx.err("server.default_privacy", At::Value, e.to_string());
                PrivacyLevel::Internal
            }
        },
    };
    let max_body_bytes = cx.positive(
        raw.max_body_bytes,
        "server.max_body_bytes",
        DEFAULT_MAX_BODY_BYTES,
    );
    // An image the limit allows must fit in a body the limit allows: as
    // base64 (4 bytes per 3) plus room for the rest of the request. Unset,
    // the limit is the default or what the body limit leaves room for.
    let fits = max_body_bytes.saturating_sub(IMAGE_BODY_HEADROOM) / 4 * 3;
    let max_image_bytes = match raw.max_image_bytes {
        None => DEFAULT_MAX_IMAGE_BYTES.min(fits),
        Some(n) => {
            let n = cx.positive(Some(n), "server.max_image_bytes", DEFAULT_MAX_IMAGE_BYTES);
            let image_body = n.div_ceil(3).saturating_mul(4) + IMAGE_BODY_HEADROOM;
            if image_body > max_body_bytes {
                cx.err(
                    "server.max_image_bytes",
                    At::Value,
                    format!(
                        "max_image_bytes {n} needs a body of at least {image_body} bytes \
                         (base64 plus {IMAGE_BODY_HEADROOM} for the rest), above server.max_body_bytes \
                         {max_body_bytes}"
                    ),
                );
            }
            n
        }
    };
    Some(ServerSettings {
        max_body_bytes,
        default_privacy,
        max_tokens_limit: cx.positive(
            raw.max_tokens_limit,
            "server.max_tokens_limit",
            DEFAULT_MAX_TOKENS_LIMIT,
        ),
        max_embedding_inputs: match raw.max_embedding_inputs {
            Some(n) if n > MAX_EMBEDDING_INPUTS => {
                cx.err(
                    "server.max_embedding_inputs",
                    At::Value,
                    format!(
                        "max_embedding_inputs {n} is above the limit of {MAX_EMBEDDING_INPUTS}"
                    ),
                );
                DEFAULT_MAX_EMBEDDING_INPUTS
            }
            other => cx.positive(
                other,
                "server.max_embedding_inputs",
                DEFAULT_MAX_EMBEDDING_INPUTS,
            ),
        },
        max_image_bytes,
        max_images: cx.positive(raw.max_images, "server.max_images", DEFAULT_MAX_IMAGES),
        image_http_loopback: raw.image_http_loopback.unwrap_or(false),
        require_key: raw.require_key.unwrap_or(false),
        admin_key_env: raw.admin_key_env.filter(|v| {
            let ok = is_env_var_name(v);
            if !ok {
                cx.err(
                    "server.admin_key_env",
                    At::Value,
                    format!("\"{v}\" is not an environment variable name"),
                );
            }
            ok
        }),
        request_deadline_ms: cx.positive(
            raw.request_deadline_ms,
            "server.request_deadline_ms",
            DEFAULT_REQUEST_DEADLINE_MS,
        ),
        stream_deadline_ms: cx.positive(
            raw.stream_deadline_ms,
            "server.stream_deadline_ms",
            DEFAULT_STREAM_DEADLINE_MS,
        ),
        shutdown_grace_ms: cx.positive(
            raw.shutdown_grace_ms,
            "server.shutdown_grace_ms",
            DEFAULT_SHUTDOWN_GRACE_MS,
        ),
    })
}

/// `privacy:` — `detectors`, the level each detector's findings give a
/// request (kinds not named keep their built-in level), and `scan`, the
/// bounds on classifying one request, and `uninspectable`, the lowest level
/// of a request holding content no detector can read.
fn privacy(
    cx: &mut Ctx<'_>,
    v: Option<&Value>,
) -> (BTreeMap<PiiKind, PrivacyLevel>, ScanSettings, PrivacyLevel) {
    let mut out: BTreeMap<PiiKind, PrivacyLevel> = PiiKind::ALL
        .into_iter()
        .map(|k| (k, k.default_level()))
        .collect();
    let Some(raw) = v.and_then(|v| cx.de::<RawPrivacy>(v, "privacy")) else {
        return (out, ScanSettings::default(), PrivacyLevel::Confidential);
    };
    let uninspectable = match raw.uninspectable.as_deref().map(str::parse::<PrivacyLevel>) {
        None => PrivacyLevel::Confidential,
        Some(Ok(l)) => l,
        Some(Err(e)) => {
            cx.err("privacy.uninspectable", At::Value, e.to_string());
            PrivacyLevel::Confidential
        }
    };
    for (name, level) in raw.detectors.unwrap_or_default() {
        let path = format!("privacy.detectors.{name}");
        let Some(kind) = PiiKind::parse(&name) else {
            let known: Vec<&str> = PiiKind::ALL.iter().map(|k| k.as_str()).collect();
            cx.err(
                &path,
                At::Key,
                format!("unknown detector \"{name}\" (known: {})", known.join(", ")),
            );
            continue;
        };
        match level.parse::<PrivacyLevel>() {
            Ok(l) => {
                out.insert(kind, l);
            }
            Err(e) => cx.err(&path, At::Value, e.to_string()),
        }
    }
    let mut scan = ScanSettings::default();
    if let Some(r) = raw.scan {
        let mut positive = |key: &str, x: Option<u64>, into: &mut u64| match x {
            Some(0) => cx.err(
                &format!("privacy.scan.{key}"),
                At::Value,
                format!("{key} must be greater than 0"),
            ),
            Some(x) => *into = x,
            None => {}
        };
        positive("max_bytes", r.max_bytes, &mut scan.max_bytes);
        positive("timeout_ms", r.timeout_ms, &mut scan.timeout_ms);
        let mut workers = u64::from(scan.workers);
        positive("workers", r.workers.map(u64::from), &mut workers);
        scan.workers = u32::try_from(workers).unwrap_or(u32::MAX);
        if let Some(b) = r.inline_bytes {
            scan.inline_bytes = b;
        }
    }
    (out, scan, uninspectable)
}

fn difficulty(cx: &mut Ctx<'_>, v: Option<&Value>) -> DifficultySettings {
    let Some(raw) = v.and_then(|v| cx.de::<RawDifficulty>(v, "difficulty")) else {
        return DifficultySettings::default();
    };
    let mut unit = |key: &str, x: Option<f64>| match x {
        Some(x) if !(0.0..=1.0).contains(&x) => {
            cx.err(
                &format!("difficulty.{key}"),
                At::Value,
                format!("{key} must be between 0 and 1, not {x}"),
            );
            None
        }
        x => x,
    };
    DifficultySettings {
        strong_fraction: unit("strong_fraction", raw.strong_fraction),
        threshold: unit("threshold", raw.threshold),
    }
}

fn dashboard(cx: &mut Ctx<'_>, v: Option<&Value>) -> DashboardSettings {
    let Some(raw) = v.and_then(|v| cx.de::<RawDashboard>(v, "dashboard")) else {
        return DashboardSettings::default();
    };
    if raw.plan.as_deref().is_some_and(|p| p.trim().is_empty()) {
        cx.err("dashboard.plan", At::Value, "must be a path to a plan file");
        return DashboardSettings::default();
    }
    DashboardSettings { plan: raw.plan }
}

fn fleet(cx: &mut Ctx<'_>, v: Option<&Value>) -> Option<FleetSettings> {
    let raw: RawFleet = cx.de(v?, "fleet")?;
    if !(raw.gpu_hour_usd.is_finite() && raw.gpu_hour_usd >= 0.0) {
        cx.err(
            "fleet.gpu_hour_usd",
            At::Value,
            "must be a price of 0 or more",
        );
    }
    Some(FleetSettings {
        gpus: raw.gpus,
        gpu_hour_usd: raw.gpu_hour_usd,
    })
}

/// Returns the valid targets and the ids of every declared target, valid or not (so a
/// route naming a broken target is not also reported as naming an unknown one).
fn models(cx: &mut Ctx<'_>, v: Option<&Value>) -> (IndexMap<String, Target>, HashSet<String>) {
    let mut out = IndexMap::new();
    let mut declared = HashSet::new();
    let Some(v) = v else {
        cx.err(
            "",
            At::Value,
            "missing field \"models\" (at least one target is required)",
        );
        return (out, declared);
    };
    let Some(map) = v.as_object() else {
        cx.err(
            "models",
            At::Value,
            "models must be a mapping of target id to target",
        );
        return (out, declared);
    };
    if map.is_empty() {
        cx.err("models", At::Key, "at least one target is required");
    }
    for (id, tv) in map {
        declared.insert(id.clone());
        let path = join_key("models", id);
        if id.trim().is_empty() || id.contains(char::is_whitespace) || id == "auto" {
            cx.err(
                &path,
                At::Key,
                format!("invalid target id \"{id}\" (no spaces; \"auto\" is reserved)"),
            );
            continue;
        }
        if let Some(raw) = cx.de::<RawTarget>(tv, &path) {
            if let Some(t) = target(cx, id, &path, raw) {
                out.insert(id.clone(), t);
            }
        }
    }
    (out, declared)
}

fn target(cx: &mut Ctx<'_>, id: &str, path: &str, raw: RawTarget) -> Option<Target> {
    match (&raw.engine, &raw.provider) {
        (Some(_), Some(_)) => {
            cx.err(
                &join_key(path, "provider"),
                At::Key,
                "a target has either engine: local or provider:, not both",
            );
            None
        }
        (Some(engine), None) => {
            if engine != "local" {
                cx.err(
                    &join_key(path, "engine"),
                    At::Value,
                    format!("unknown engine \"{engine}\" (expected local)"),
                );
            }
            local_target(cx, id, path, raw)
        }
        (None, Some(_)) => remote_target(cx, id, path, raw),
        (None, None) => {
            cx.err(
                path,
                At::Key,
                format!(
                    "target \"{id}\" needs engine: local or provider: (openai, openai-compatible, anthropic, gemini)"
                ),
            );
            None
        }
    }
}

fn local_target(cx: &mut Ctx<'_>, id: &str, path: &str, raw: RawTarget) -> Option<Target> {
    let before = cx.errors.len();
    for (field, set) in raw.remote_fields() {
        if set {
            cx.err(
                &join_key(path, field),
                At::Key,
                format!("\"{field}\" is for remote providers, not a local engine"),
            );
        }
    }
    if raw.trusted == Some(false) {
        cx.err(
            &join_key(path, "trusted"),
            At::Value,
            "a local target is always inside the trust boundary",
        );
    }
    let gguf = match raw.gguf {
        Some(g) if !g.trim().is_empty() => g,
        Some(_) => {
            cx.err(
                &join_key(path, "gguf"),
                At::Value,
                "must be a path to a .gguf file",
            );
            String::new()
        }
        None => {
            cx.err(
                path,
                At::Key,
                format!("missing field \"gguf\" for local target \"{id}\""),
            );
            String::new()
        }
    };
    let gpu_layers = match &raw.gpu_layers {
        None => GpuLayers::All,
        Some(Value::String(s)) if s == "all" => GpuLayers::All,
        Some(Value::String(s)) if s == "fit" => GpuLayers::Fit,
        Some(Value::Number(n)) if n.as_u64().and_then(|n| u32::try_from(n).ok()).is_some() => {
            GpuLayers::N(n.as_u64().and_then(|n| u32::try_from(n).ok()).unwrap_or(0))
        }
        Some(other) => {
            cx.err(
                &join_key(path, "gpu_layers"),
                At::Value,
                format!("gpu_layers must be \"all\", \"fit\" or a number of layers, not {other}"),
            );
            GpuLayers::All
        }
    };
    if gpu_layers == GpuLayers::Fit && raw.moe_experts_on_cpu == Some(true) {
        cx.err(
            &join_key(path, "moe_experts_on_cpu"),
            At::Value,
            "moe_experts_on_cpu cannot be combined with gpu_layers: fit, which places the \
             experts itself (in host memory first when the GPU is short)"
                .to_owned(),
        );
    }
    let spec = LocalSpec {
        gguf,
        context_tokens: cx.positive(raw.context_tokens, &join_key(path, "context_tokens"), 4096),
        parallel: cx.positive(raw.parallel, &join_key(path, "parallel"), 4),
        threads: raw
            .threads
            .map(|t| cx.positive(Some(t), &join_key(path, "threads"), 1)),
        gpu_layers,
        main_gpu: raw.main_gpu.unwrap_or(0),
        moe_experts_on_cpu: raw.moe_experts_on_cpu.unwrap_or(false),
        queue: cx.positive(raw.queue, &join_key(path, "queue"), 64),
        embeddings: match &raw.embeddings {
            None => true,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                cx.err(
                    &join_key(path, "embeddings"),
                    At::Value,
                    format!("embeddings on a local target is true or false, not {other}"),
                );
                true
            }
        },
        tools: raw.tools.unwrap_or(true),
    };
    let capabilities = crate::capability::local(spec.context_tokens, spec.embeddings, spec.tools);
    (cx.errors.len() == before).then(|| Target {
        id: id.to_string(),
        trusted: true,
        spec: TargetSpec::Local(spec),
        capabilities,
    })
}

/// A model name that can stand in Gemini's URL path.
fn is_gemini_model_name(s: &str) -> bool {
    let name = s.strip_prefix("models/").unwrap_or(s);
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

pub(super) fn is_env_var_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn remote_target(cx: &mut Ctx<'_>, id: &str, path: &str, raw: RawTarget) -> Option<Target> {
    let before = cx.errors.len();
    for (field, set) in raw.local_fields() {
        if set {
            cx.err(
                &join_key(path, field),
                At::Key,
                format!("\"{field}\" is for the local engine, not a remote provider"),
            );
        }
    }
    let name = raw.provider.as_deref().unwrap_or_default();
    let Some(provider) = ProviderKind::parse(name) else {
        cx.err(
            &join_key(path, "provider"),
            At::Value,
            format!(
                "unknown provider \"{name}\" (expected openai, openai-compatible, anthropic or gemini)"
            ),
        );
        return None;
    };
    let is_pool = raw.endpoints.is_some();
    let pool = match raw.endpoints {
        Some(endpoints) => {
            if provider != ProviderKind::OpenaiCompatible {
                cx.err(
                    &join_key(path, "endpoints"),
                    At::Key,
                    format!("endpoints (a pool) is for openai-compatible targets, not {provider}"),
                );
            }
            if raw.base_url.is_some() {
                cx.err(
                    &join_key(path, "base_url"),
                    At::Key,
                    "give base_url or endpoints, not both",
                );
            }
            super::pool::pool(cx, path, endpoints, raw.health)
        }
        None => {
            if raw.health.is_some() {
                cx.err(
                    &join_key(path, "health"),
                    At::Key,
                    "health checks are for a pool (endpoints:), not a single base_url",
                );
            }
            None
        }
    };
    let base_url = match (raw.base_url, provider.default_base_url()) {
        // A pool's first member stands for it where one URL is asked for.
        (None, _) if is_pool => pool
            .as_ref()
            .and_then(|p| p.members.first())
            .map(|m| m.url.clone())
            .unwrap_or_default(),
        (Some(u), _) => {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                cx.err(
                    &join_key(path, "base_url"),
                    At::Value,
                    format!("base_url \"{u}\" must start with http:// or https://"),
                );
            }
            u.trim_end_matches('/').to_string()
        }
        (None, Some(d)) => d.to_string(),
        (None, None) => {
            cx.err(
                path,
                At::Key,
                format!("missing field \"base_url\" for target \"{id}\" (required for {provider})"),
            );
            String::new()
        }
    };
    match &raw.api_key_env {
        Some(v) if !is_env_var_name(v) => cx.err(
            &join_key(path, "api_key_env"),
            At::Value,
            "api_key_env must name an environment variable (like OPENAI_API_KEY), not hold the key",
        ),
        None if provider != ProviderKind::OpenaiCompatible => cx.err(
            path,
            At::Key,
            format!("missing field \"api_key_env\" for target \"{id}\" (required for {provider})"),
        ),
        _ => {}
    }
    let model_set = raw.model.is_some();
    let model = raw.model.unwrap_or_else(|| id.to_string());
    if model.trim().is_empty() {
        cx.err(
            &join_key(path, "model"),
            At::Value,
            "must name the upstream model",
        );
    } else if provider == ProviderKind::Gemini && !is_gemini_model_name(&model) {
        // Gemini puts the model in the URL path (models/{model}:generateContent).
        let (key, at) = if model_set {
            (join_key(path, "model"), At::Value)
        } else {
            (path.to_string(), At::Key)
        };
        cx.err(
            &key,
            at,
            format!(
                "gemini model \"{model}\" must be letters, digits, '.', '-' or '_' (optionally after \"models/\"); set model: to the upstream name"
            ),
        );
    }
    if is_pool && raw.embeddings.is_some() {
        cx.err(
            &join_key(path, "embeddings"),
            At::Key,
            "a pool does not serve embeddings yet; give them a target with one base_url",
        );
    }
    let spec = RemoteSpec {
        provider,
        model,
        base_url,
        api_key_env: raw.api_key_env,
        connect_timeout_ms: cx.positive(
            raw.connect_timeout_ms,
            &join_key(path, "connect_timeout_ms"),
            5000,
        ),
        timeout_ms: cx.positive(raw.timeout_ms, &join_key(path, "timeout_ms"), 120_000),
        max_tokens_default: raw
            .max_tokens_default
            .map(|t| cx.positive(Some(t), &join_key(path, "max_tokens_default"), 1)),
        retries: match raw.retries {
            Some(n) if n > MAX_RETRIES => {
                cx.err(
                    &join_key(path, "retries"),
                    At::Value,
                    format!("retries {n} is above the limit of {MAX_RETRIES}"),
                );
                DEFAULT_RETRIES
            }
            Some(n) => n,
            None => DEFAULT_RETRIES,
        },
        retry_backoff_ms: match raw.retry_backoff_ms {
            Some(ms) if ms > MAX_RETRY_BACKOFF_MS => {
                cx.err(
                    &join_key(path, "retry_backoff_ms"),
                    At::Value,
                    format!("retry_backoff_ms {ms} is above the limit of {MAX_RETRY_BACKOFF_MS}"),
                );
                DEFAULT_RETRY_BACKOFF_MS
            }
            other => cx.positive(
                other,
                &join_key(path, "retry_backoff_ms"),
                DEFAULT_RETRY_BACKOFF_MS,
            ),
        },
        breaker: breaker(cx, &join_key(path, "breaker"), raw.breaker),
        embeddings: remote_embeddings(cx, &join_key(path, "embeddings"), provider, raw.embeddings),
        pool,
    };
    let capabilities =
        super::capabilities::remote(cx, &join_key(path, "capabilities"), &spec, raw.capabilities);
    (cx.errors.len() == before).then(|| Target {
        id: id.to_string(),
        trusted: raw.trusted.unwrap_or(false),
        spec: TargetSpec::Remote(spec),
        capabilities,
    })
}

/// The room a body keeps for the rest of a request beside one image of
/// `server.max_image_bytes`.
pub const IMAGE_BODY_HEADROOM: u64 = 64 * 1024;

/// The most inputs `server.max_embedding_inputs` may allow, and its default
/// (OpenAI's own limit).
pub const MAX_EMBEDDING_INPUTS: u32 = 65_536;
pub const DEFAULT_MAX_EMBEDDING_INPUTS: u32 = 2048;

/// `embeddings:` of a remote target: `{ model: NAME, dimensions: BOOL }`.
fn remote_embeddings(
    cx: &mut Ctx<'_>,
    path: &str,
    provider: ProviderKind,
    raw: Option<Value>,
) -> Option<RemoteEmbeddings> {
    let raw = raw?;
    match provider {
        ProviderKind::Anthropic => {
            cx.err(path, At::Key, "anthropic has no embeddings API");
            return None;
        }
        ProviderKind::Gemini => {
            cx.err(
                path,
                At::Key,
                "gemini targets do not serve embeddings yet (its embedContent API is not wired)",
            );
            return None;
        }
        _ => {}
    }
    let Value::Object(map) = raw else {
        cx.err(
            path,
            At::Value,
            "embeddings on a remote target is { model: NAME, dimensions: true|false }",
        );
        return None;
    };
    let mut model = None;
    let mut dimensions = provider == ProviderKind::Openai;
    for (k, v) in map {
        match (k.as_str(), v) {
            ("model", Value::String(m)) if !m.trim().is_empty() => model = Some(m),
            ("dimensions", Value::Bool(b)) => dimensions = b,
            ("model", _) => cx.err(
                &join_key(path, "model"),
                At::Value,
                "must be the name of the embedding model",
            ),
            ("dimensions", _) => cx.err(
                &join_key(path, "dimensions"),
                At::Value,
                "must be true or false",
            ),
            (other, _) => cx.err(
                &join_key(path, other),
                At::Key,
                format!("unknown field \"{other}\" (expected model, dimensions)"),
            ),
        }
    }
    match model {
        Some(model) => Some(RemoteEmbeddings { model, dimensions }),
        None => {
            cx.err(
                path,
                At::Key,
                "embeddings needs the embedding model's name in \"model\"",
            );
            None
        }
    }
}

/// `breaker:` of a remote target; every value must be positive.
fn breaker(cx: &mut Ctx<'_>, path: &str, raw: Option<RawBreaker>) -> BreakerSettings {
    let d = BreakerSettings::default();
    let Some(raw) = raw else { return d };
    BreakerSettings {
        failures: cx.positive(raw.failures, &join_key(path, "failures"), d.failures),
        window_ms: cx.positive(raw.window_ms, &join_key(path, "window_ms"), d.window_ms),
        cooldown_ms: cx.positive(
            raw.cooldown_ms,
            &join_key(path, "cooldown_ms"),
            d.cooldown_ms,
        ),
    }
}

/// A calendar date `YYYY-MM-DD` with a plausible month and day.
fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let num = |r: std::ops::Range<usize>| s.get(r).and_then(|t| t.parse::<u32>().ok());
    matches!(
        (num(0..4), num(5..7), num(8..10)),
        (Some(_), Some(1..=12), Some(1..=31))
    ) && b
        .iter()
        .enumerate()
        .all(|(k, c)| k == 4 || k == 7 || c.is_ascii_digit())
}

/// `pricing:` — per model one price, or a list of prices with `effective_from`
/// dates (a price change mid-month re-prices only what comes after it).
fn pricing(cx: &mut Ctx<'_>, v: Option<&Value>) -> BTreeMap<String, Vec<PriceEntry>> {
    let mut out = BTreeMap::new();
    let Some(v) = v else { return out };
    let Some(raw) = cx.de::<IndexMap<String, Value>>(v, "pricing") else {
        return out;
    };
    for (name, pv) in raw {
        let path = join_key("pricing", &name);
        let items: Vec<(String, &Value)> = match &pv {
            Value::Array(list) => list
                .iter()
                .enumerate()
                .map(|(k, item)| (join_index(&path, k), item))
                .collect(),
            other => vec![(path.clone(), other)],
        };
        let mut entries: Vec<PriceEntry> = Vec::new();
        let mut ok = true;
        for (ipath, item) in items {
            let Some(p) = cx.de::<RawPrice>(item, &ipath) else {
                ok = false;
                continue;
            };
            let fields = [
                ("input", Some(p.input)),
                ("output", Some(p.output)),
                ("cached_input", p.cached_input),
            ];
            for (field, value) in fields {
                if let Some(x) = value {
                    if !(x.is_finite() && x >= 0.0) {
                        cx.err(
                            &join_key(&ipath, field),
                            At::Value,
                            "must be a price of 0 or more (USD per million tokens)",
                        );
                        ok = false;
                    }
                }
            }
            if let Some(d) = &p.effective_from {
                if !is_date(d) {
                    cx.err(
                        &join_key(&ipath, "effective_from"),
                        At::Value,
                        format!("effective_from must be a date YYYY-MM-DD, not \"{d}\""),
                    );
                    ok = false;
                } else if entries
                    .iter()
                    .any(|e| e.effective_from.as_deref() == Some(d))
                {
                    cx.err(
                        &join_key(&ipath, "effective_from"),
                        At::Value,
                        format!("two prices for \"{name}\" take effect on {d}"),
                    );
                    ok = false;
                }
            }
            entries.push(PriceEntry {
                input: p.input,
                output: p.output,
                cached_input: p.cached_input,
                effective_from: p.effective_from,
            });
        }
        if ok {
            entries.sort_by(|a, b| a.effective_from.cmp(&b.effective_from));
            out.insert(name, entries);
        }
    }
    out
}

fn routes(
    cx: &mut Ctx<'_>,
    v: Option<&Value>,
    models: &IndexMap<String, Target>,
    declared: &HashSet<String>,
) -> Option<Vec<Route>> {
    let Some(v) = v else {
        cx.err(
            "",
            At::Value,
            "missing field \"routes\" (at least one route is required)",
        );
        return None;
    };
    let Some(items) = v.as_array() else {
        cx.err("routes", At::Value, "routes must be a list");
        return None;
    };
    if items.is_empty() {
        cx.err("routes", At::Key, "at least one route is required");
    }
    let mut out = Vec::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    // Levels that can still reach the next route. `None` once a route with errors makes
    // the answer unknown: later routes are then not privacy-checked, to avoid reporting
    // errors that fixing the broken route would remove.
    let mut remaining = Some(LevelSet::ALL);
    for (i, rv) in items.iter().enumerate() {
        let path = join_index("routes", i);
        let Some(raw) = cx.de::<RawRoute>(rv, &path) else {
            remaining = None;
            continue;
        };
        let before = cx.errors.len();
        if raw.name.trim().is_empty() {
            cx.err(&join_key(&path, "name"), At::Value, "a route needs a name");
        } else if let Some(first) = names.get(&raw.name) {
            cx.err(
                &join_key(&path, "name"),
                At::Value,
                format!(
                    "duplicate route name \"{}\" (first used by routes[{first}])",
                    raw.name
                ),
            );
        } else {
            names.insert(raw.name.clone(), i);
        }
        let when = super::when::when(cx, &path, raw.when.unwrap_or_default());
        if raw
            .counterfactual
            .as_ref()
            .is_some_and(|m| m.trim().is_empty())
        {
            cx.err(
                &join_key(&path, "counterfactual"),
                At::Value,
                "must name a model",
            );
        }
        if raw.to.is_empty() {
            cx.err(
                &join_key(&path, "to"),
                At::Value,
                format!("route \"{}\" needs at least one target in \"to\"", raw.name),
            );
        }
        for (field, list) in [("to", &raw.to), ("fallback", &raw.fallback)] {
            for (j, t) in list.iter().enumerate() {
                if !declared.contains(t) {
                    cx.err(
                        &join_index(&join_key(&path, field), j),
                        At::Value,
                        format!("unknown model \"{t}\" in route \"{}\"", raw.name),
                    );
                }
            }
        }
        let Some(when) = when else {
            remaining = None;
            continue;
        };
        let reachable = match remaining {
            Some(r) => r.intersect(when.privacy_levels()),
            None => LevelSet::EMPTY,
        };
        if remaining.is_some() && reachable.any_requires_trusted() {
            for (field, list) in [("to", &raw.to), ("fallback", &raw.fallback)] {
                for (j, t) in list.iter().enumerate() {
                    if models.get(t).is_some_and(|m| !m.trusted) {
                        cx.err(
                            &join_index(&join_key(&path, field), j),
                            At::Value,
                            format!(
                                "route \"{}\" can receive {} requests but target \"{t}\" is outside the trust boundary (route confidential traffic elsewhere first, e.g. an earlier route with privacy: \">= confidential\", or mark the target trusted: true)",
                                raw.name,
                                reachable.intersect(LevelSet::EMPTY.with(PrivacyLevel::Confidential).with(PrivacyLevel::Restricted)),
                            ),
                        );
                    }
                }
            }
        }
        if let Some(r) = remaining.as_mut() {
            if !when.has_non_privacy_condition() {
                *r = r.minus(when.privacy_levels());
            }
        }
        if cx.errors.len() == before {
            out.push(Route {
                name: raw.name,
                when,
                to: raw.to,
                fallback: raw.fallback,
                redact: raw.redact.unwrap_or(false),
                counterfactual: raw.counterfactual,
                reachable_levels: reachable,
            });
        }
    }
    Some(out)
}
