//! Property test for the privacy invariant: over many generated policies, whenever a
//! policy loads, no confidential or restricted request is ever routed to a target
//! outside the trust boundary — neither by `decide` nor by the routes as written (so the
//! load-time check alone already holds the line, and `decide`'s filter is a second one).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use watershed_policies::{
    allowed, decide, lacking, load_config, Config, Denial, Needs, PrivacyLevel, RequestFacts,
};

/// SplitMix64: a tiny deterministic PRNG so failures reproduce from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const CONDITIONS: &[&str] = &[
    ">= confidential",
    "> internal",
    "< confidential",
    "<= internal",
    "restricted",
    "confidential",
    "public",
    "internal",
    "!= internal",
    "!= restricted",
    ">= public",
    "<= confidential",
];
const ALIASES: &[&str] = &["auto", "smart", "cheap", "t0", "t1", "t2"];

/// A random policy as YAML text, with target ids t0..tn.
fn generate(rng: &mut Rng) -> String {
    let n_targets = 1 + rng.below(5);
    let mut y = String::from("version: 1\nmodels:\n");
    for i in 0..n_targets {
        match rng.below(3) {
            0 => y.push_str(&format!("  t{i}: {{ engine: local, gguf: m{i}.gguf }}\n")),
            1 => y.push_str(&format!(
                "  t{i}: {{ provider: openai-compatible, base_url: http://pool{i}:8000, trusted: true }}\n"
            )),
            _ => y.push_str(&format!("  t{i}: {{ provider: openai, api_key_env: KEY_{i} }}\n")),
        }
    }
    y.push_str("routes:\n");
    for r in 0..1 + rng.below(6) {
        y.push_str(&format!("  - name: r{r}\n"));
        let mut when = Vec::new();
        if rng.chance(60) {
            when.push(format!("privacy: \"{}\"", rng.pick(CONDITIONS)));
        }
        if rng.chance(30) {
            let a = rng.pick(ALIASES);
            let b = rng.pick(ALIASES);
            when.push(format!("model: [{a}, {b}]"));
        }
        if !when.is_empty() {
            y.push_str(&format!("    when: {{ {} }}\n", when.join(", ")));
        }
        let list = |rng: &mut Rng, len: usize| -> String {
            (0..len)
                .map(|_| format!("t{}", rng.below(n_targets)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let len = 1 + rng.below(3);
        let to = list(rng, len);
        y.push_str(&format!("    to: [{to}]\n"));
        let len = rng.below(3);
        let fb = list(rng, len);
        y.push_str(&format!("    fallback: [{fb}]\n"));
    }
    y
}

/// The first route whose conditions hold, read straight from the config (no filtering).
fn first_match<'a>(cfg: &'a Config, facts: &RequestFacts) -> Option<&'a watershed_policies::Route> {
    cfg.routes.iter().find(|r| {
        r.when.privacy.is_none_or(|c| c.matches(facts.privacy))
            && r.when
                .model
                .as_ref()
                .is_none_or(|m| m.contains(&facts.model))
    })
}

#[test]
fn no_loaded_policy_ever_sends_confidential_data_outside_the_boundary() {
    let mut rng = Rng(0x5EED_2026);
    let (mut loaded, mut refused, mut checked, mut routed) = (0, 0, 0, 0);
    for _ in 0..4000 {
        let text = generate(&mut rng);
        let cfg = match load_config(&text, "gen.yaml") {
            Ok(c) => c,
            Err(e) => {
                // Every generated policy is well-formed, so only the privacy check refuses.
                assert!(
                    e.0.iter()
                        .all(|x| x.message.contains("outside the trust boundary")),
                    "unexpected error for\n{text}\n{e}"
                );
                refused += 1;
                continue;
            }
        };
        loaded += 1;
        let mut names = cfg.known_models();
        names.push("not-a-model".into());
        for model in &names {
            let with_tools = Needs {
                tools: true,
                ..Needs::default()
            };
            // Every capability at once, with a window no target has.
            let with_all = Needs {
                tools: true,
                json_schema: true,
                vision: true,
                embeddings: false,
                logprobs: true,
                context_tokens: Some(10_000_000),
            };
            for (level, needs) in [
                (PrivacyLevel::Confidential, Needs::default()),
                (PrivacyLevel::Restricted, Needs::default()),
                (PrivacyLevel::Confidential, with_tools),
                (PrivacyLevel::Restricted, with_all),
            ] {
                let mut facts = RequestFacts::new(model.clone(), level);
                // A request with needs skips targets that lack them; it must
                // never fall through to an untrusted one instead.
                facts.needs = needs;
                checked += 1;
                if let Some(route) = first_match(&cfg, &facts) {
                    for t in route.targets() {
                        assert!(
                            cfg.target(t).unwrap().trusted,
                            "route {} lists untrusted {t} for {model} at {level}\n{text}",
                            route.name
                        );
                    }
                }
                match decide(&cfg, &facts) {
                    Ok(d) => {
                        routed += 1;
                        assert!(!d.targets.is_empty());
                        for t in &d.targets {
                            assert!(
                                cfg.target(t).unwrap().trusted,
                                "{t} for {model} at {level}\n{text}"
                            );
                            assert!(allowed(&cfg, t, level));
                            let caps = cfg.target(t).unwrap().capabilities;
                            assert_eq!(lacking(&needs, &caps), None, "{t}\n{text}");
                        }
                    }
                    Err(Denial::MissingCapability { .. }) => assert_ne!(needs, Needs::default()),
                    Err(Denial::NoAllowedTarget { .. }) => {
                        panic!("load check should leave no empty route\n{text}")
                    }
                    Err(_) => {}
                }
            }
        }
    }
    // The generator must exercise both outcomes for the test to mean anything.
    assert!(loaded >= 500, "only {loaded} policies loaded");
    assert!(refused >= 500, "only {refused} policies refused");
    assert!(
        routed >= 2000,
        "only {routed} confidential requests routed ({checked} checked)"
    );
}
