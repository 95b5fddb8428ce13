//! Validation of a pool target: an `openai-compatible` target served by
//! several servers (`endpoints:`) with active health checks (`health:`). The
//! pool is one target with one trust level; what varies is only where a
//! request is sent.

use super::raw::{RawEndpoint, RawHealth};
use super::validate::{At, Ctx};
use crate::yaml::{join_index, join_key};

/// The most members one pool may list.
pub const MAX_POOL_MEMBERS: usize = 64;
/// Bounds of `health.interval_ms`.
pub const MIN_HEALTH_INTERVAL_MS: u64 = 100;
pub const MAX_HEALTH_INTERVAL_MS: u64 = 600_000;
/// The most consecutive results a threshold may ask for.
pub const MAX_HEALTH_THRESHOLD: u32 = 100;

/// `models.<id>.endpoints` and `health` of a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSpec {
    pub members: Vec<PoolMember>,
    pub health: HealthSettings,
}

/// One server of a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolMember {
    /// How metrics, `/readyz` and the ledger name it (default: its index).
    pub name: String,
    /// Its base URL (like a target's `base_url`, e.g. `http://10.0.0.7:8000/v1`).
    /// Never shown to clients.
    pub url: String,
}

/// `health:` — how members are checked and when one is taken out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthSettings {
    /// Requested with GET on each member's host (`/health` for vLLM, SGLang
    /// and llama.cpp server; `/v1/models` works on all of them and Ollama).
    pub path: String,
    /// Time between two checks of a member.
    pub interval_ms: u64,
    /// The longest one check may take; at most `interval_ms`.
    pub timeout_ms: u64,
    /// Failed checks in a row that take a healthy member out.
    pub unhealthy_threshold: u32,
    /// Passed checks in a row that bring an unhealthy or ejected member back.
    pub healthy_threshold: u32,
    /// Failed requests in a row (connect error, 5xx, timeout) that eject a
    /// member until it passes `healthy_threshold` checks again.
    pub eject_after_failures: u32,
}

impl Default for HealthSettings {
    fn default() -> Self {
        HealthSettings {
            path: "/v1/models".to_owned(),
            interval_ms: 5_000,
            timeout_ms: 2_000,
            unhealthy_threshold: 2,
            healthy_threshold: 2,
            eject_after_failures: 3,
        }
    }
}

fn is_member_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Checks `endpoints` (at `path.endpoints`) and `health`; `None` with the
/// errors recorded in `cx` when something is wrong.
pub(super) fn pool(
    cx: &mut Ctx<'_>,
    path: &str,
    endpoints: Vec<RawEndpoint>,
    health: Option<RawHealth>,
) -> Option<PoolSpec> {
    let at = join_key(path, "endpoints");
    let mut ok = true;
    if endpoints.is_empty() {
        cx.err(&at, At::Value, "a pool needs at least one endpoint");
        ok = false;
    }
    if endpoints.len() > MAX_POOL_MEMBERS {
        cx.err(
            &at,
            At::Value,
            format!(
                "{} endpoints is above the limit of {MAX_POOL_MEMBERS}",
                endpoints.len()
            ),
        );
        ok = false;
    }
    let mut members: Vec<PoolMember> = Vec::new();
    for (i, e) in endpoints.into_iter().enumerate() {
        let epath = join_index(&at, i);
        let url = e.url.trim_end_matches('/').to_owned();
        let host = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_default();
        if host.is_empty() || url.contains(char::is_whitespace) {
            cx.err(
                &join_key(&epath, "url"),
                At::Value,
                format!(
                    "url \"{}\" must be an http:// or https:// URL with a host",
                    e.url
                ),
            );
            ok = false;
        } else if members.iter().any(|m| m.url == url) {
            cx.err(
                &join_key(&epath, "url"),
                At::Value,
                format!("url \"{}\" is listed twice in this pool", e.url),
            );
            ok = false;
        }
        let name = e.name.unwrap_or_else(|| i.to_string());
        if !is_member_name(&name) {
            cx.err(
                &join_key(&epath, "name"),
                At::Value,
                format!("name \"{name}\" must be 1 to 64 letters, digits, '-', '_' or '.'"),
            );
            ok = false;
        } else if members.iter().any(|m| m.name == name) {
            cx.err(
                &join_key(&epath, "name"),
                At::Value,
                format!("name \"{name}\" is used by another endpoint of this pool"),
            );
            ok = false;
        }
        members.push(PoolMember { name, url });
    }
    let health = health_settings(cx, &join_key(path, "health"), health, &mut ok);
    ok.then_some(PoolSpec { members, health })
}

fn health_settings(
    cx: &mut Ctx<'_>,
    path: &str,
    raw: Option<RawHealth>,
    ok: &mut bool,
) -> HealthSettings {
    let d = HealthSettings::default();
    let Some(raw) = raw else { return d };
    let mut bad = |cx: &mut Ctx<'_>, key: &str, message: String| {
        cx.err(&join_key(path, key), At::Value, message);
        *ok = false;
    };
    let hpath = raw.path.unwrap_or(d.path);
    if !hpath.starts_with('/') || hpath.contains(char::is_whitespace) {
        bad(
            cx,
            "path",
            format!("path \"{hpath}\" must start with / (like /health or /v1/models)"),
        );
    }
    let interval_ms = raw.interval_ms.unwrap_or(d.interval_ms);
    if !(MIN_HEALTH_INTERVAL_MS..=MAX_HEALTH_INTERVAL_MS).contains(&interval_ms) {
        bad(
            cx,
            "interval_ms",
            format!(
                "interval_ms {interval_ms} must be between {MIN_HEALTH_INTERVAL_MS} and {MAX_HEALTH_INTERVAL_MS}"
            ),
        );
    }
    // A check never outlives the next one.
    let timeout_ms = raw.timeout_ms.unwrap_or(d.timeout_ms.min(interval_ms));
    if timeout_ms == 0 || timeout_ms > interval_ms {
        bad(
            cx,
            "timeout_ms",
            format!("timeout_ms {timeout_ms} must be between 1 and interval_ms ({interval_ms})"),
        );
    }
    let mut threshold = |cx: &mut Ctx<'_>, key: &str, v: Option<u32>, default: u32| {
        let n = v.unwrap_or(default);
        if n == 0 || n > MAX_HEALTH_THRESHOLD {
            cx.err(
                &join_key(path, key),
                At::Value,
                format!("{key} {n} must be between 1 and {MAX_HEALTH_THRESHOLD}"),
            );
            *ok = false;
        }
        n
    };
    HealthSettings {
        path: hpath,
        interval_ms,
        timeout_ms,
        unhealthy_threshold: threshold(
            cx,
            "unhealthy_threshold",
            raw.unhealthy_threshold,
            d.unhealthy_threshold,
        ),
        healthy_threshold: threshold(
            cx,
            "healthy_threshold",
            raw.healthy_threshold,
            d.healthy_threshold,
        ),
        eject_after_failures: threshold(
            cx,
            "eject_after_failures",
            raw.eject_after_failures,
            d.eject_after_failures,
        ),
    }
}
