//! Validation of `teams:` and `keys:` — who a request belongs to, the lowest
//! privacy level its requests carry, and what it may spend.

use std::collections::{BTreeMap, HashMap};

use indexmap::IndexMap;
use serde_json::Value;

use super::raw::{RawBudget, RawKey, RawTeam};
use super::validate::{At, Ctx};
use super::{ApiKey, Team, DEFAULT_TEAM};
use crate::budget::{BudgetLimits, OnExhausted};
use crate::level::PrivacyLevel;
use crate::yaml::join_key;

pub(super) fn teams(cx: &mut Ctx<'_>, v: Option<&Value>) -> BTreeMap<String, Team> {
    let mut out = BTreeMap::new();
    let Some(v) = v else { return out };
    let Some(map) = v.as_object() else {
        cx.err("teams", At::Value, "teams must be a mapping of team names");
        return out;
    };
    for (name, tv) in map {
        let path = join_key("teams", name);
        let Some(raw) = cx.de::<RawTeam>(tv, &path) else {
            continue;
        };
        let privacy_default = level(cx, &path, raw.privacy_default);
        let budget = raw.budget.and_then(|b| budget(cx, &path, b));
        out.insert(
            name.clone(),
            Team {
                privacy_default,
                budget,
            },
        );
    }
    out
}

pub(super) fn keys(
    cx: &mut Ctx<'_>,
    v: Option<&Value>,
    teams: &BTreeMap<String, Team>,
) -> IndexMap<String, ApiKey> {
    let mut out = IndexMap::new();
    let Some(v) = v else { return out };
    let Some(map) = v.as_object() else {
        cx.err("keys", At::Value, "keys must be a mapping of key ids");
        return out;
    };
    let mut hashes: HashMap<String, String> = HashMap::new();
    for (id, kv) in map {
        let path = join_key("keys", id);
        let Some(raw) = cx.de::<RawKey>(kv, &path) else {
            continue;
        };
        let sha256 = raw.sha256.trim().to_ascii_lowercase();
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            cx.err(
                &join_key(&path, "sha256"),
                At::Value,
                "must be the key's SHA-256 as 64 hex digits (printf %s \"$KEY\" | sha256sum)",
            );
        } else if let Some(first) = hashes.get(&sha256) {
            cx.err(
                &join_key(&path, "sha256"),
                At::Value,
                format!("the same key is already configured as \"{first}\""),
            );
        } else {
            hashes.insert(sha256.clone(), id.clone());
        }
        let team = raw.team.unwrap_or_else(|| DEFAULT_TEAM.to_owned());
        if team != DEFAULT_TEAM && !teams.contains_key(&team) {
            cx.err(
                &join_key(&path, "team"),
                At::Value,
                format!("unknown team \"{team}\" (declare it under teams:)"),
            );
        }
        let privacy_default = level(cx, &path, raw.privacy_default);
        let budget = raw.budget.and_then(|b| budget(cx, &path, b));
        out.insert(
            id.clone(),
            ApiKey {
                id: id.clone(),
                sha256,
                team,
                privacy_default,
                budget,
            },
        );
    }
    out
}

fn level(cx: &mut Ctx<'_>, path: &str, raw: Option<String>) -> Option<PrivacyLevel> {
    let s = raw?;
    match s.parse::<PrivacyLevel>() {
        Ok(l) => Some(l),
        Err(e) => {
            cx.err(&join_key(path, "privacy_default"), At::Value, e.to_string());
            None
        }
    }
}

fn budget(cx: &mut Ctx<'_>, owner: &str, raw: RawBudget) -> Option<BudgetLimits> {
    let path = join_key(owner, "budget");
    let mut ok = true;
    for (field, v) in [
        ("daily_usd", raw.daily_usd),
        ("monthly_usd", raw.monthly_usd),
    ] {
        if v.is_some_and(|x| !(x.is_finite() && x > 0.0)) {
            cx.err(&join_key(&path, field), At::Value, "must be greater than 0");
            ok = false;
        }
    }
    if raw.daily_usd.is_none() && raw.monthly_usd.is_none() {
        cx.err(
            &path,
            At::Key,
            "a budget needs daily_usd, monthly_usd or both",
        );
        ok = false;
    }
    if raw.alert_at.is_some_and(|a| !(a > 0.0 && a <= 1.0)) {
        cx.err(
            &join_key(&path, "alert_at"),
            At::Value,
            "must be a fraction of the limit in (0, 1]",
        );
        ok = false;
    }
    let on_exhausted = match raw.on_exhausted.as_deref() {
        None | Some("downgrade") => OnExhausted::Downgrade,
        Some("reject") => OnExhausted::Reject,
        Some(other) => {
            cx.err(
                &join_key(&path, "on_exhausted"),
                At::Value,
                format!("unknown action \"{other}\" (expected downgrade or reject)"),
            );
            ok = false;
            OnExhausted::Downgrade
        }
    };
    ok.then_some(BudgetLimits {
        daily_usd: raw.daily_usd,
        monthly_usd: raw.monthly_usd,
        alert_at: raw.alert_at,
        on_exhausted,
    })
}
