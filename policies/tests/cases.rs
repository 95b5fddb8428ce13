//! Data-driven routing tests: each file in tests/cases/ holds a policy and a list of
//! requests with the decision each one must get.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::path::Path;

use serde::Deserialize;
use watershed_policies::{
    decide, explain, load_config, yaml, Capability, Denial, Needs, PrivacyLevel, RequestFacts, Skip,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    description: String,
    policy: String,
    requests: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    model: String,
    #[serde(default)]
    privacy: Option<String>,
    #[serde(default)]
    difficulty: Option<f64>,
    #[serde(default)]
    budget: Option<String>,
    #[serde(default)]
    team: Option<String>,
    #[serde(default)]
    estimated_tokens: Option<u64>,
    #[serde(default)]
    tags: std::collections::BTreeMap<String, String>,
    /// Capabilities the request needs, by their YAML names.
    #[serde(default)]
    needs: Vec<String>,
    /// The context window it needs (prompt plus max_tokens).
    #[serde(default)]
    context_tokens: Option<u64>,
    expect: Expect,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    #[serde(default)]
    route: Option<String>,
    #[serde(default)]
    targets: Option<Vec<String>>,
    #[serde(default)]
    denial: Option<String>,
    /// For a denial naming a capability: its name.
    #[serde(default)]
    capability: Option<String>,
    /// Every target of the matching route left out, as `target: why`
    /// (`trust_boundary` or the capability it lacks), in route order.
    #[serde(default)]
    skipped: Option<Vec<String>>,
}

fn needs_of(names: &[String], context_tokens: Option<u64>) -> Needs {
    let mut needs = Needs {
        context_tokens,
        ..Needs::default()
    };
    for n in names {
        match Capability::parse_need(n) {
            Some(Capability::Tools) => needs.tools = true,
            Some(Capability::JsonSchema) => needs.json_schema = true,
            Some(Capability::Vision) => needs.vision = true,
            Some(Capability::Embeddings) => needs.embeddings = true,
            Some(Capability::Logprobs) => needs.logprobs = true,
            Some(Capability::ContextTokens) | None => panic!("unknown need {n}"),
        }
    }
    needs
}

fn run_file(path: &Path) -> usize {
    let text = std::fs::read_to_string(path).unwrap();
    let doc = yaml::parse(&text).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
    let file: CaseFile =
        serde_json::from_value(doc.value).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let name = path.file_name().unwrap().to_string_lossy().to_string();
    let cfg = load_config(&file.policy, &name)
        .unwrap_or_else(|e| panic!("{name} ({}): policy must load:\n{e}", file.description));
    for (i, case) in file.requests.iter().enumerate() {
        let privacy = match &case.privacy {
            Some(p) => p.parse::<PrivacyLevel>().unwrap(),
            None => cfg.server.default_privacy,
        };
        let mut facts = RequestFacts::new(case.model.clone(), privacy);
        facts.difficulty = case.difficulty;
        if let Some(b) = &case.budget {
            facts.budget = b.parse().unwrap();
        }
        facts.team = case.team.clone();
        facts.estimated_tokens = case.estimated_tokens;
        facts.tags = case.tags.clone();
        facts.needs = needs_of(&case.needs, case.context_tokens);
        let got = decide(&cfg, &facts);
        let ctx = format!(
            "{name} request {i} ({} at {privacy}): got {got:?}",
            case.model
        );
        if let Some(want) = &case.expect.skipped {
            let e = explain(&cfg, &facts, &[]);
            let seen: Vec<String> = e
                .skipped
                .iter()
                .map(|s| match s.why {
                    Skip::TrustBoundary => format!("{}: trust_boundary", s.target),
                    Skip::MissingCapability(c) => format!("{}: {c}", s.target),
                })
                .collect();
            assert_eq!(&seen, want, "{ctx}");
        }
        match (&case.expect.denial, got) {
            (Some(code), Err(d)) => {
                assert_eq!(d.code(), code, "{ctx}");
                if let Some(cap) = &case.expect.capability {
                    match &d {
                        Denial::MissingCapability { capability, .. } => {
                            assert_eq!(capability.as_str(), cap, "{ctx}")
                        }
                        other => panic!("{ctx}: expected a missing capability, got {other:?}"),
                    }
                }
            }
            (Some(_), Ok(_)) => panic!("{ctx}: expected a denial"),
            (None, Err(_)) => panic!("{ctx}: expected a decision"),
            (None, Ok(d)) => {
                if let Some(r) = &case.expect.route {
                    assert_eq!(&d.route, r, "{ctx}");
                }
                if let Some(t) = &case.expect.targets {
                    assert_eq!(&d.targets, t, "{ctx}");
                }
                assert!(
                    !d.reasons.is_empty(),
                    "{ctx}: a decision carries its reasons"
                );
                for t in &d.targets {
                    assert!(
                        !privacy.requires_trusted() || cfg.target(t).unwrap().trusted,
                        "{ctx}: untrusted target {t}"
                    );
                }
            }
        }
    }
    file.requests.len()
}

#[test]
fn every_case_file_routes_as_expected() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "expected case files in {}", dir.display());
    let total: usize = files.iter().map(|f| run_file(f)).sum();
    assert!(total >= 20, "only {total} cases ran");
}

#[test]
fn the_embedded_default_config_loads_and_keeps_confidential_traffic_local() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/default.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let cfg = load_config(&text, "default.yaml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.ledger.url, "sqlite://watershed.db");
    assert!(cfg.target("local").unwrap().is_local());
    for model in cfg.known_models() {
        for level in [PrivacyLevel::Confidential, PrivacyLevel::Restricted] {
            let d = decide(&cfg, &RequestFacts::new(model.clone(), level)).unwrap();
            assert_eq!(d.targets, vec!["local".to_string()], "{model} at {level}");
        }
    }
    let d = decide(
        &cfg,
        &RequestFacts::new("gpt-5.4-mini", PrivacyLevel::Internal),
    )
    .unwrap();
    assert_eq!(d.targets, vec!["gpt-5.4-mini", "local"]);
    let d = decide(&cfg, &RequestFacts::new("auto", PrivacyLevel::Public)).unwrap();
    assert_eq!(d.targets[0], "local");
    assert_eq!(d.targets.len(), 5);
    let d = decide(
        &cfg,
        &RequestFacts::new("gemini-3-flash", PrivacyLevel::Internal),
    )
    .unwrap();
    assert_eq!(d.targets, vec!["gemini-3-flash", "local"]);
}
