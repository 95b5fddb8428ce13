//! `policy explain`: a structured account of one decision — the privacy evidence as
//! detector names and spans (never the values), the difficulty, the budget state, each
//! rule in order with why it did or did not match, and the outcome.

use crate::budget::BudgetState;
use crate::capability::Needs;
use crate::config::Config;
use crate::level::PrivacyLevel;
use crate::privacy::PiiSpan;
use crate::route::{decide, evaluate, skip_reason, Denial, RequestFacts, Skip};

/// One rule as the decision saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleCheck {
    /// Route name.
    pub route: String,
    /// Whether it matched (at most one does: the first).
    pub matched: bool,
    /// Why it matched or not.
    pub reason: String,
}

/// A target of the matching route that was left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The target id.
    pub target: String,
    /// Why: the trust boundary first, else the first capability it lacks.
    pub why: Skip,
}

/// Everything that went into a decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// The requested model name.
    pub model: String,
    /// The level decided on.
    pub privacy: PrivacyLevel,
    /// Detector hits behind the level (kinds and character spans only).
    pub evidence: Vec<PiiSpan>,
    /// The difficulty score, when the classifier ran.
    pub difficulty: Option<f64>,
    /// The budget state.
    pub budget: BudgetState,
    /// Rules up to and including the one that matched.
    pub rules: Vec<RuleCheck>,
    /// What the request needs of the target that serves it.
    pub needs: Needs,
    /// The matching route's targets that were left out, and why.
    pub skipped: Vec<Skipped>,
    /// The outcome: ordered targets, or the denial.
    pub outcome: Result<Vec<String>, Denial>,
}

/// Explains how `facts` would be routed under `cfg`.
pub fn explain(cfg: &Config, facts: &RequestFacts, evidence: &[PiiSpan]) -> Explanation {
    let mut rules = Vec::new();
    let mut skipped = Vec::new();
    if cfg.is_known_model(&facts.model) {
        for route in &cfg.routes {
            let (matched, reason) = match evaluate(route, facts) {
                Ok(r) => (true, r),
                Err(r) => (false, r),
            };
            rules.push(RuleCheck {
                route: route.name.clone(),
                matched,
                reason,
            });
            if matched {
                for t in route.targets() {
                    if let Some(why) = skip_reason(cfg, t, facts) {
                        skipped.push(Skipped {
                            target: t.to_owned(),
                            why,
                        });
                    }
                }
                break;
            }
        }
    }
    Explanation {
        model: facts.model.clone(),
        privacy: facts.privacy,
        evidence: evidence.to_vec(),
        difficulty: facts.difficulty,
        budget: facts.budget,
        needs: facts.needs,
        rules,
        skipped,
        outcome: decide(cfg, facts).map(|d| d.targets),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_config;
    use crate::privacy::{detect, PiiKind};

    #[test]
    fn explains_evidence_rules_and_outcome_without_values() {
        let cfg = load_config(
            "version: 1\nmodels:\n  local: { engine: local, gguf: m.gguf }\n  gpt: { provider: openai, api_key_env: K }\nroutes:\n  - name: hard\n    when: { difficulty: \"> 0.7\", privacy: \"< confidential\" }\n    to: [gpt]\n  - name: home\n    to: [local]\n",
            "p.yaml",
        )
        .unwrap();
        let prompt = "my card is 4111 1111 1111 1111, please help";
        let evidence = detect(prompt);
        let mut facts = RequestFacts::new("auto", PrivacyLevel::Confidential);
        facts.difficulty = Some(0.9);
        let e = explain(&cfg, &facts, &evidence);
        assert_eq!(evidence[0].kind, PiiKind::CreditCard);
        assert_eq!(e.evidence, evidence);
        assert_eq!(e.rules.len(), 2);
        assert!(!e.rules[0].matched);
        assert_eq!(
            e.rules[0].reason,
            "route \"hard\": privacy confidential does not satisfy < confidential"
        );
        assert!(e.rules[1].matched);
        assert_eq!(e.outcome, Ok(vec!["local".to_string()]));
        assert!(
            !format!("{e:?}").contains("4111"),
            "explanations never carry values"
        );
    }
}
