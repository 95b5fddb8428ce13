//! Who is calling: the virtual key a request presents (`Authorization: Bearer`
//! as the OpenAI SDK sends it, or `x-api-key` as the Anthropic SDK does), and
//! the team it belongs to. Keys are configured by their SHA-256 only.

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};
use watershed_policies::{Config, PrivacyLevel, ANONYMOUS_KEY, DEFAULT_TEAM};
use watershed_providers::ErrorCode;

use crate::error::ApiError;

/// The caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The key's id, or `anonymous`.
    pub key_id: String,
    /// The key's team, or `default`.
    pub team: String,
}

impl Caller {
    fn anonymous() -> Self {
        Caller {
            key_id: ANONYMOUS_KEY.to_owned(),
            team: DEFAULT_TEAM.to_owned(),
        }
    }

    /// The lowest privacy level of this caller's requests: the highest of the
    /// key's and the team's `privacy_default`, if either is set.
    pub fn privacy_floor(&self, cfg: &Config) -> Option<PrivacyLevel> {
        let key = cfg.keys.get(&self.key_id).and_then(|k| k.privacy_default);
        let team = cfg.team(&self.team).and_then(|t| t.privacy_default);
        match (key, team) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Lowercase hex SHA-256 of a key as clients send it.
pub fn key_sha256(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn presented_key(headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers.get(axum::http::header::AUTHORIZATION) {
        let s = v.to_str().ok()?.trim();
        let token = s
            .strip_prefix("Bearer ")
            .or_else(|| s.strip_prefix("bearer "))
            .unwrap_or(s);
        return Some(token.trim().to_owned()).filter(|t| !t.is_empty());
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_owned())
        .filter(|t| !t.is_empty())
}

/// Resolves the caller. Without configured keys every request is anonymous (the
/// SDKs insist on sending some key; it is ignored). With keys, a presented key
/// must be one of them, and `server.require_key` refuses requests with none.
pub fn caller(cfg: &Config, headers: &HeaderMap) -> Result<Caller, ApiError> {
    if cfg.keys.is_empty() && !cfg.server.require_key {
        return Ok(Caller::anonymous());
    }
    match presented_key(headers) {
        None if cfg.server.require_key => Err(ApiError::new(
            ErrorCode::Unauthorized,
            "this gateway requires a virtual key: send Authorization: Bearer <key>",
        )),
        None => Ok(Caller::anonymous()),
        Some(key) => match cfg.key_by_sha256(&key_sha256(&key)) {
            Some(k) => Ok(Caller {
                key_id: k.id.clone(),
                team: k.team.clone(),
            }),
            None => Err(ApiError::new(
                ErrorCode::Unauthorized,
                "invalid virtual key: it is not configured on this gateway",
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn config(extra: &str) -> Config {
        watershed_policies::load_config(
            &format!(
                "version: 1\nmodels:\n  local: {{ engine: local, gguf: m.gguf }}\n\
                 routes:\n  - name: all\n    to: [local]\n{extra}"
            ),
            "test.yaml",
        )
        .unwrap()
    }

    fn headers(name: &'static str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn keys_resolve_to_their_team_and_floor() {
        let cfg = config(&format!(
            "teams:\n  legal: {{ privacy_default: confidential }}\n\
             keys:\n  contracts-bot: {{ sha256: {}, team: legal, privacy_default: internal }}\n",
            key_sha256("sk-legal-1")
        ));
        let c = caller(&cfg, &headers("authorization", "Bearer sk-legal-1")).unwrap();
        assert_eq!(
            c,
            Caller {
                key_id: "contracts-bot".into(),
                team: "legal".into()
            }
        );
        assert_eq!(c.privacy_floor(&cfg), Some(PrivacyLevel::Confidential));
        let c = caller(&cfg, &headers("x-api-key", "sk-legal-1")).unwrap();
        assert_eq!(c.key_id, "contracts-bot");
        let e = caller(&cfg, &headers("authorization", "Bearer sk-wrong")).unwrap_err();
        assert_eq!(e.status().as_u16(), 401);
        assert!(!e.message.contains("sk-wrong"), "never echo a key");
        // No key at all: anonymous unless the config requires one.
        assert_eq!(caller(&cfg, &HeaderMap::new()).unwrap().team, "default");
    }

    #[test]
    fn without_keys_any_presented_key_is_ignored_unless_required() {
        let cfg = config("");
        let c = caller(&cfg, &headers("authorization", "Bearer sk-whatever")).unwrap();
        assert_eq!(c.key_id, "anonymous");
        let cfg = config("server: { require_key: true }\n");
        let e = caller(&cfg, &HeaderMap::new()).unwrap_err();
        assert_eq!(e.status().as_u16(), 401);
    }

    #[test]
    fn sha256_is_the_usual_hex_digest() {
        assert_eq!(
            key_sha256("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
