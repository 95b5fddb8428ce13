//! The route decision: request facts in, an ordered list of allowed targets and the
//! reasons out. First matching route wins; targets outside the trust boundary are
//! filtered again for confidential traffic, and the decision fails closed.

use std::collections::BTreeMap;

use crate::budget::BudgetState;
use crate::capability::{lacking, Capability, Needs};
use crate::config::{Config, Route};
use crate::level::PrivacyLevel;

/// What the gateway knows about a request when it routes it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RequestFacts {
    /// The model name the client asked for (`auto` lets the policy choose).
    pub model: String,
    /// The request's privacy level after all hints and detectors.
    pub privacy: PrivacyLevel,
    /// Difficulty score in [0,1] from the classifier, when it ran.
    pub difficulty: Option<f64>,
    /// Budget state of the request's team or key.
    pub budget: BudgetState,
    /// The team the virtual key belongs to.
    pub team: Option<String>,
    /// Estimated prompt tokens.
    pub estimated_tokens: Option<u64>,
    /// Request metadata tags.
    pub tags: BTreeMap<String, String>,
    /// What only some targets can do and this request needs (tools, JSON
    /// schema, images, embeddings, logprobs, a context window of some
    /// size); a target lacking any is skipped.
    pub needs: Needs,
}

impl RequestFacts {
    /// Facts with the two fields every request has; further fields keep their defaults.
    pub fn new(model: impl Into<String>, privacy: PrivacyLevel) -> Self {
        RequestFacts {
            model: model.into(),
            privacy,
            ..RequestFacts::default()
        }
    }
}

/// Where a request goes and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Name of the matching route.
    pub route: String,
    /// The privacy level the decision was made at.
    pub privacy: PrivacyLevel,
    /// `to` then `fallback`, in order, each allowed at this privacy level. Never empty.
    pub targets: Vec<String>,
    /// Why earlier routes did not match, why this one did, and any target left out.
    pub reasons: Vec<String>,
}

/// Why a request cannot be routed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    /// The requested name is neither a target nor a name any route matches.
    #[error("unknown model \"{model}\"")]
    UnknownModel {
        /// The requested name.
        model: String,
    },
    /// No route matches.
    #[error("no route matches model \"{model}\" at privacy {privacy}")]
    NoRoute {
        /// The requested name.
        model: String,
        /// The request's level.
        privacy: PrivacyLevel,
    },
    /// A route matched, but none of its targets may receive this request.
    #[error("route \"{route}\" has no target allowed at privacy {privacy}")]
    NoAllowedTarget {
        /// The matching route.
        route: String,
        /// The request's level.
        privacy: PrivacyLevel,
    },
    /// A route matched, but every target it may use lacks a capability the
    /// request needs.
    #[error("route \"{route}\" has no target with the capability \"{capability}\" allowed at privacy {privacy}")]
    MissingCapability {
        /// The matching route.
        route: String,
        /// The capability.
        capability: Capability,
        /// The request's level.
        privacy: PrivacyLevel,
    },
}

/// The family of a denial, for the gateway to turn into a status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenialKind {
    /// The model does not exist (404).
    NotFound,
    /// Policy forbids the request (403).
    PolicyDenied,
    /// The request asks for something no allowed target can do (400).
    BadRequest,
}

impl Denial {
    /// The family of this denial.
    pub fn kind(&self) -> DenialKind {
        match self {
            Denial::UnknownModel { .. } => DenialKind::NotFound,
            Denial::NoRoute { .. } | Denial::NoAllowedTarget { .. } => DenialKind::PolicyDenied,
            Denial::MissingCapability { .. } => DenialKind::BadRequest,
        }
    }

    /// A machine-readable code, stable for logs and the ledger.
    pub fn code(&self) -> &'static str {
        match self {
            Denial::UnknownModel { .. } => "unknown_model",
            Denial::NoRoute { .. } => "no_route",
            Denial::NoAllowedTarget { .. } => "no_allowed_target",
            Denial::MissingCapability { .. } => "missing_capability",
        }
    }
}

/// Whether `target` may receive a request at `level`: it exists and, for confidential
/// and restricted requests, is inside the trust boundary. The gateway calls this again
/// right before dispatch.
pub fn allowed(cfg: &Config, target: &str, level: PrivacyLevel) -> bool {
    cfg.target(target)
        .is_some_and(|t| t.trusted || !level.requires_trusted())
}

/// Why a route's target was left out of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Outside the trust boundary for the request's privacy level.
    TrustBoundary,
    /// Lacks a capability the request needs (for `ContextTokens`: its
    /// window is smaller than the request).
    MissingCapability(Capability),
}

/// Why `target` may not serve `facts`, or `None` when it may. Trust comes
/// first: a target refused for privacy is never reported as merely lacking
/// a capability.
pub fn skip_reason(cfg: &Config, target: &str, facts: &RequestFacts) -> Option<Skip> {
    if !allowed(cfg, target, facts.privacy) {
        return Some(Skip::TrustBoundary);
    }
    let caps = cfg.target(target)?.capabilities;
    lacking(&facts.needs, &caps).map(Skip::MissingCapability)
}

/// Why a target was left out, as a sentence for the decision's reasons.
pub(crate) fn skip_sentence(cfg: &Config, target: &str, why: Skip, facts: &RequestFacts) -> String {
    match why {
        Skip::TrustBoundary => format!(
            "target \"{target}\" skipped: outside the trust boundary for {} requests",
            facts.privacy
        ),
        Skip::MissingCapability(Capability::ContextTokens) => format!(
            "target \"{target}\" skipped: its context window of {} tokens is smaller than the {} the request needs",
            cfg.target(target)
                .and_then(|t| t.capabilities.context_tokens)
                .unwrap_or(0),
            facts.needs.context_tokens.unwrap_or(0)
        ),
        Skip::MissingCapability(cap) => format!(
            "target \"{target}\" skipped: lacks the capability \"{cap}\" the request needs"
        ),
    }
}

/// Why `route` does or does not match `facts`: `Ok(reason)` when it matches.
pub(crate) fn evaluate(route: &Route, facts: &RequestFacts) -> Result<String, String> {
    let mut held = Vec::new();
    if let Some(cond) = &route.when.privacy {
        if !cond.matches(facts.privacy) {
            return Err(format!(
                "route \"{}\": privacy {} does not satisfy {cond}",
                route.name, facts.privacy
            ));
        }
        held.push(format!("privacy {} satisfies {cond}", facts.privacy));
    }
    if let Some(models) = &route.when.model {
        if !models.contains(&facts.model) {
            return Err(format!(
                "route \"{}\": model \"{}\" is not one of [{}]",
                route.name,
                facts.model,
                models.join(", ")
            ));
        }
        held.push(format!("model \"{}\" is listed", facts.model));
    }
    let w = &route.when;
    let fail = |what: String| Err(format!("route \"{}\": {what}", route.name));
    if let Some(cond) = &w.difficulty {
        match facts.difficulty {
            None => return fail(format!("difficulty unknown, needs {cond}")),
            Some(d) if !cond.matches(d) => {
                return fail(format!("difficulty {d:.3} does not satisfy {cond}"))
            }
            Some(d) => held.push(format!("difficulty {d:.3} satisfies {cond}")),
        }
    }
    if let Some(b) = w.budget {
        if facts.budget != b {
            return fail(format!("budget is {}, not {b}", facts.budget));
        }
        held.push(format!("budget is {b}"));
    }
    if let Some(teams) = &w.team {
        match &facts.team {
            Some(t) if teams.contains(t) => held.push(format!("team \"{t}\" is listed")),
            Some(t) => return fail(format!("team \"{t}\" is not one of [{}]", teams.join(", "))),
            None => return fail("request has no team".to_string()),
        }
    }
    if let Some(cond) = &w.estimated_tokens {
        match facts.estimated_tokens {
            Some(n) if cond.matches(n as f64) => {
                held.push(format!("estimated tokens {n} satisfy {cond}"))
            }
            Some(n) => return fail(format!("estimated tokens {n} do not satisfy {cond}")),
            None => return fail(format!("estimated tokens unknown, needs {cond}")),
        }
    }
    if let Some(needs) = &w.needs {
        if let Some(missing) = needs.iter().find(|c| !facts.needs.has(**c)) {
            return fail(format!("request does not need {missing}"));
        }
        let names: Vec<&str> = needs.iter().map(|c| c.as_str()).collect();
        held.push(format!("request needs {}", names.join(", ")));
    }
    if let Some(tags) = &w.metadata {
        for (k, v) in tags {
            if facts.tags.get(k) != Some(v) {
                return fail(format!("metadata {k}={v} is not set"));
            }
        }
        held.push("metadata tags match".to_string());
    }
    if held.is_empty() {
        Ok(format!(
            "route \"{}\" matched: it has no conditions",
            route.name
        ))
    } else {
        Ok(format!(
            "route \"{}\" matched: {}",
            route.name,
            held.join(", ")
        ))
    }
}

/// Picks the route and the ordered targets for a request.
pub fn decide(cfg: &Config, facts: &RequestFacts) -> Result<Decision, Denial> {
    if !cfg.is_known_model(&facts.model) {
        return Err(Denial::UnknownModel {
            model: facts.model.clone(),
        });
    }
    let mut reasons = Vec::new();
    for route in &cfg.routes {
        match evaluate(route, facts) {
            Err(why) => reasons.push(why),
            Ok(why) => {
                reasons.push(why);
                let mut targets = Vec::new();
                let mut missing = None;
                for t in route.targets() {
                    match skip_reason(cfg, t, facts) {
                        None => targets.push(t.to_string()),
                        Some(why) => {
                            if let Skip::MissingCapability(cap) = why {
                                missing.get_or_insert(cap);
                            }
                            reasons.push(skip_sentence(cfg, t, why, facts));
                        }
                    }
                }
                if let (true, Some(capability)) = (targets.is_empty(), missing) {
                    return Err(Denial::MissingCapability {
                        route: route.name.clone(),
                        capability,
                        privacy: facts.privacy,
                    });
                }
                if targets.is_empty() {
                    return Err(Denial::NoAllowedTarget {
                        route: route.name.clone(),
                        privacy: facts.privacy,
                    });
                }
                return Ok(Decision {
                    route: route.name.clone(),
                    privacy: facts.privacy,
                    targets,
                    reasons,
                });
            }
        }
    }
    Err(Denial::NoRoute {
        model: facts.model.clone(),
        privacy: facts.privacy,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_config;

    const POLICY: &str = "\
version: 1
models:
  local: { engine: local, gguf: m.gguf }
  pool: { provider: openai-compatible, base_url: http://pool:8000, trusted: true }
  gpt: { provider: openai, api_key_env: OPENAI_API_KEY }
routes:
  - name: home
    when: { privacy: \">= confidential\" }
    to: [pool]
    fallback: [local, pool]
  - name: rest
    to: [gpt]
    fallback: [local]
";

    #[test]
    fn targets_are_deduplicated_in_order_and_reasons_name_each_route() {
        let cfg = load_config(POLICY, "p.yaml").unwrap();
        let d = decide(&cfg, &RequestFacts::new("auto", PrivacyLevel::Restricted)).unwrap();
        assert_eq!(d.targets, vec!["pool", "local"]);
        assert_eq!(
            d.reasons,
            vec!["route \"home\" matched: privacy restricted satisfies >= confidential"]
        );
        let d = decide(&cfg, &RequestFacts::new("gpt", PrivacyLevel::Public)).unwrap();
        assert_eq!(d.route, "rest");
        assert_eq!(
            d.reasons,
            vec![
                "route \"home\": privacy public does not satisfy >= confidential",
                "route \"rest\" matched: it has no conditions",
            ]
        );
    }

    #[test]
    fn decide_filters_untrusted_targets_again_and_fails_closed() {
        // Simulate a config that slipped past the load check (or a target whose trust
        // was revoked): decide must still never hand out an untrusted target.
        let mut cfg = load_config(POLICY, "p.yaml").unwrap();
        if let Some(t) = cfg.models.get_mut("pool") {
            t.trusted = false;
        }
        let d = decide(&cfg, &RequestFacts::new("auto", PrivacyLevel::Confidential)).unwrap();
        assert_eq!(d.targets, vec!["local"]);
        assert!(d
            .reasons
            .iter()
            .any(|r| r.contains("target \"pool\" skipped")));
        cfg.routes[0].fallback.clear();
        let err = decide(&cfg, &RequestFacts::new("auto", PrivacyLevel::Confidential)).unwrap_err();
        assert_eq!(
            err,
            Denial::NoAllowedTarget {
                route: "home".into(),
                privacy: PrivacyLevel::Confidential
            }
        );
        assert_eq!(err.kind(), DenialKind::PolicyDenied);
        assert_eq!(
            err.to_string(),
            "route \"home\" has no target allowed at privacy confidential"
        );
    }

    #[test]
    fn allowed_checks_existence_and_trust() {
        let cfg = load_config(POLICY, "p.yaml").unwrap();
        assert!(allowed(&cfg, "gpt", PrivacyLevel::Internal));
        assert!(!allowed(&cfg, "gpt", PrivacyLevel::Confidential));
        assert!(allowed(&cfg, "pool", PrivacyLevel::Restricted));
        assert!(allowed(&cfg, "local", PrivacyLevel::Restricted));
        assert!(!allowed(&cfg, "nope", PrivacyLevel::Public));
    }

    #[test]
    fn denial_kinds() {
        let cfg = load_config(POLICY, "p.yaml").unwrap();
        let err = decide(&cfg, &RequestFacts::new("gpt-6", PrivacyLevel::Public)).unwrap_err();
        assert_eq!(
            (err.kind(), err.code()),
            (DenialKind::NotFound, "unknown_model")
        );
        assert_eq!(err.to_string(), "unknown model \"gpt-6\"");
    }

    #[test]
    fn targets_that_cannot_embed_are_skipped_and_none_left_names_embeddings() {
        let cfg = load_config(
            "version: 1\nmodels:\n  local: { engine: local, gguf: m.gguf, embeddings: false }\n  \
             gpt: { provider: openai, api_key_env: K }\n  \
             emb: { provider: openai, api_key_env: K, embeddings: { model: e } }\n\
             routes:\n  - name: home\n    when: { privacy: \">= confidential\" }\n    to: [local]\n  \
             - name: rest\n    to: [local, gpt]\n    fallback: [emb]\n",
            "p.yaml",
        )
        .unwrap();
        let mut facts = RequestFacts::new("auto", PrivacyLevel::Public);
        facts.needs.embeddings = true;
        let d = decide(&cfg, &facts).unwrap();
        assert_eq!(d.targets, vec!["emb".to_string()]);
        for t in ["local", "gpt"] {
            assert_eq!(
                skip_reason(&cfg, t, &facts),
                Some(Skip::MissingCapability(Capability::Embeddings))
            );
            let want = format!("\"{t}\" skipped: lacks the capability \"embeddings\"");
            assert!(
                d.reasons.iter().any(|r| r.contains(&want)),
                "{:?}",
                d.reasons
            );
        }
        // Confidential: the only trusted target cannot embed, so the request
        // fails closed naming the capability, never reaching `emb`.
        facts.privacy = PrivacyLevel::Confidential;
        let err = decide(&cfg, &facts).unwrap_err();
        assert_eq!(err.code(), "missing_capability");
        assert!(err.to_string().contains("\"embeddings\""), "{err}");
        // A chat request is not held to it.
        facts.needs.embeddings = false;
        facts.privacy = PrivacyLevel::Public;
        assert_eq!(
            decide(&cfg, &facts).unwrap().targets,
            vec!["local", "gpt", "emb"]
        );
    }

    #[test]
    fn targets_without_tools_are_skipped_and_none_left_is_a_bad_request() {
        // A local engine does tools unless its config says `tools: false`.
        let cfg = load_config(POLICY, "p.yaml").unwrap();
        let mut facts = RequestFacts::new("auto", PrivacyLevel::Public);
        facts.needs.tools = true;
        assert_eq!(decide(&cfg, &facts).unwrap().targets, vec!["gpt", "local"]);
        assert_eq!(skip_reason(&cfg, "local", &facts), None);
        let no_tools = POLICY.replace("gguf: m.gguf }", "gguf: m.gguf, tools: false }");
        let cfg = load_config(&no_tools, "p.yaml").unwrap();
        let d = decide(&cfg, &facts).unwrap();
        assert_eq!(d.targets, vec!["gpt".to_string()]);
        assert!(
            d.reasons
                .iter()
                .any(|r| r.contains("\"local\" skipped: lacks the capability \"tools\"")),
            "{:?}",
            d.reasons
        );
        assert_eq!(
            skip_reason(&cfg, "local", &facts),
            Some(Skip::MissingCapability(Capability::Tools))
        );
        assert_eq!(skip_reason(&cfg, "pool", &facts), None);
        // A confidential request whose only trusted targets cannot do tools
        // fails closed, as a bad request naming the capability.
        let only_local = load_config(
            "version: 1\nmodels:\n  local: { engine: local, gguf: m.gguf, tools: false }\n  gpt: { provider: openai, api_key_env: K }\nroutes:\n  - name: home\n    when: { privacy: \">= confidential\" }\n    to: [local]\n  - name: rest\n    to: [gpt]\n",
            "p.yaml",
        )
        .unwrap();
        let mut facts = RequestFacts::new("auto", PrivacyLevel::Confidential);
        facts.needs.tools = true;
        let err = decide(&only_local, &facts).unwrap_err();
        assert_eq!(err.kind(), DenialKind::BadRequest);
        assert_eq!(err.code(), "missing_capability");
        assert!(err.to_string().contains("\"tools\""), "{err}");
        assert_eq!(
            skip_reason(&only_local, "gpt", &facts),
            Some(Skip::TrustBoundary)
        );
    }

    #[test]
    fn trust_comes_before_capability_and_a_small_window_says_its_sizes() {
        // `pool` loses its trust after load and cannot do JSON schema: for a
        // confidential request it is reported outside the trust boundary,
        // never as merely lacking the capability.
        let mut cfg = load_config(POLICY, "p.yaml").unwrap();
        let pool = cfg.models.get_mut("pool").unwrap();
        pool.trusted = false;
        pool.capabilities.json_schema = false;
        let mut facts = RequestFacts::new("auto", PrivacyLevel::Confidential);
        facts.needs.json_schema = true;
        assert_eq!(skip_reason(&cfg, "pool", &facts), Some(Skip::TrustBoundary));
        let d = decide(&cfg, &facts).unwrap();
        assert_eq!(d.targets, vec!["local"]);
        // With the local engine out too, the denial names the capability
        // only because a trusted target lacked it.
        cfg.routes[0].fallback.clear();
        let err = decide(&cfg, &facts).unwrap_err();
        assert_eq!(err.code(), "no_allowed_target");
        // A context window too small, with both sizes in the reason.
        let cfg = load_config(POLICY, "p.yaml").unwrap();
        let mut facts = RequestFacts::new("auto", PrivacyLevel::Public);
        facts.needs.context_tokens = Some(5000);
        let d = decide(&cfg, &facts).unwrap();
        assert_eq!(d.targets, vec!["gpt"]);
        assert!(
            d.reasons.contains(
                &"target \"local\" skipped: its context window of 4096 tokens is smaller than the 5000 the request needs"
                    .to_string()
            ),
            "{:?}",
            d.reasons
        );
    }
}
