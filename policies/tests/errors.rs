//! Config error reporting: each error names file:line:col and the key path, and a file
//! with several problems reports all of them.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use watershed_policies::{load_config, ConfigError};

fn errors(text: &str) -> Vec<ConfigError> {
    match load_config(text, "policies.yaml") {
        Ok(_) => panic!("config should have been refused:\n{text}"),
        Err(e) => e.0,
    }
}

/// (line, col, path) of each error.
fn where_(errs: &[ConfigError]) -> Vec<(usize, usize, &str)> {
    errs.iter()
        .map(|e| (e.line, e.col, e.path.as_str()))
        .collect()
}

const GOOD: &str = "\
version: 1
models:
  local: { engine: local, gguf: m.gguf }
  gpt-5.4-mini: { provider: openai, api_key_env: OPENAI_API_KEY }
routes:
  - name: home
    when: { privacy: \">= confidential\" }
    to: [local]
  - name: rest
    to: [local]
    fallback: [gpt-5.4-mini]
";

#[test]
fn the_reference_config_loads() {
    let cfg = load_config(GOOD, "policies.yaml").unwrap();
    assert_eq!(cfg.routes.len(), 2);
    assert_eq!(
        cfg.routes[1].reachable_levels.to_string(),
        "public, internal"
    );
}

#[test]
fn yaml_syntax_error_points_at_the_problem() {
    let errs = errors("version: 1\nmodels:\n  local: { engine: local, gguf: m.gguf\nroutes: []\n");
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].file, "policies.yaml");
    assert!(errs[0].message.starts_with("invalid yaml:"), "{}", errs[0]);
    assert_eq!(errs[0].line, 4, "{}", errs[0]);
}

#[test]
fn unknown_field_points_at_the_key() {
    let text = GOOD.replace("  - name: rest\n", "  - name: rest\n    fallbak: [local]\n");
    let errs = errors(&text);
    assert_eq!(
        where_(&errs),
        vec![(10, 5, "routes[1].fallbak")],
        "{errs:?}"
    );
    assert!(
        errs[0]
            .message
            .starts_with("unknown field \"fallbak\", expected one of"),
        "{}",
        errs[0]
    );
    let text = GOOD.replace("version: 1\n", "version: 1\nrouting: {}\n");
    let errs = errors(&text);
    assert_eq!(where_(&errs), vec![(2, 1, "routing")]);
}

#[test]
fn wrong_type_points_at_the_value() {
    let text = GOOD.replace("gguf: m.gguf }", "gguf: m.gguf, parallel: many }");
    let errs = errors(&text);
    assert_eq!(
        where_(&errs),
        vec![(3, 51, "models.local.parallel")],
        "{errs:?}"
    );
    assert!(
        errs[0]
            .message
            .contains("invalid type: string \"many\", expected u32"),
        "{}",
        errs[0]
    );
}

#[test]
fn unknown_target_in_route_is_named_with_its_route() {
    let text = GOOD.replace(
        "fallback: [gpt-5.4-mini]",
        "fallback: [gpt-5.4-mini, gpt-6]",
    );
    let errs = errors(&text);
    assert_eq!(errs.len(), 1);
    assert_eq!(
        errs[0].to_string(),
        "policies.yaml:11:30: routes[1].fallback[1]: unknown model \"gpt-6\" in route \"rest\""
    );
}

#[test]
fn duplicate_route_name() {
    let text = GOOD.replace("name: rest", "name: home");
    let errs = errors(&text);
    assert_eq!(where_(&errs), vec![(9, 11, "routes[1].name")]);
    assert_eq!(
        errs[0].message,
        "duplicate route name \"home\" (first used by routes[0])"
    );
}

#[test]
fn untrusted_target_reachable_by_confidential_traffic_is_refused_in_to() {
    // Without the first route, the catch-all can see confidential requests.
    let text = "\
version: 1
models:
  local: { engine: local, gguf: m.gguf }
  gpt-5.4-mini: { provider: openai, api_key_env: OPENAI_API_KEY }
routes:
  - name: everything
    to: [local, gpt-5.4-mini]
";
    let errs = errors(text);
    assert_eq!(where_(&errs), vec![(7, 17, "routes[0].to[1]")], "{errs:?}");
    assert!(
        errs[0].message.starts_with(
            "route \"everything\" can receive confidential, restricted requests but target \"gpt-5.4-mini\" is outside the trust boundary"
        ),
        "{}",
        errs[0]
    );
}

#[test]
fn untrusted_target_reachable_by_confidential_traffic_is_refused_in_fallback() {
    // The first route only takes restricted, so confidential still reaches "rest".
    let text = GOOD.replace(">= confidential", "restricted");
    let errs = errors(&text);
    assert_eq!(
        where_(&errs),
        vec![(11, 16, "routes[1].fallback[0]")],
        "{errs:?}"
    );
    assert!(
        errs[0]
            .message
            .contains("can receive confidential requests"),
        "{}",
        errs[0]
    );
}

#[test]
fn a_model_condition_does_not_shield_later_routes() {
    // The first route only takes confidential requests for one model name, so other
    // confidential requests still fall through to the catch-all.
    let text = GOOD.replace(
        "when: { privacy: \">= confidential\" }",
        "when: { privacy: \">= confidential\", model: auto }",
    );
    let errs = errors(&text);
    assert_eq!(
        where_(&errs),
        vec![(11, 16, "routes[1].fallback[0]")],
        "{errs:?}"
    );
}

#[test]
fn restricting_the_route_itself_is_accepted() {
    let text = "\
version: 1
models:
  local: { engine: local, gguf: m.gguf }
  gpt-5.4-mini: { provider: openai, api_key_env: OPENAI_API_KEY }
routes:
  - name: public-only
    when: { privacy: \"< confidential\" }
    to: [gpt-5.4-mini]
  - name: rest
    to: [local]
";
    assert!(load_config(text, "p.yaml").is_ok());
}

#[test]
fn several_errors_are_all_reported_in_source_order() {
    let text = "\
version: 1
listen: nowhere
models:
  local: { engine: local, gguf: m.gguf, base_url: http://x }
  gpt-5.4-mini: { provider: openai }
  broken: { provider: openai, api_key_env: K, timeout_ms: soon }
  ds: { provider: openai-compatible, api_key_env: sk-abc123 }
server: { default_privacy: secret }
routes:
  - name: a
    when: { privacy: \">= topsecret\" }
    to: [local]
  - name: b
    to: [gpt-6, broken]
  - name: b
    to: []
";
    let errs = errors(text);
    let shown: Vec<String> = errs.iter().map(ToString::to_string).collect();
    assert_eq!(
        where_(&errs),
        vec![
            (2, 9, "listen"),
            (4, 41, "models.local.base_url"),
            (5, 3, "models.gpt-5.4-mini"),
            (6, 59, "models.broken.timeout_ms"),
            (7, 3, "models.ds"),
            (7, 51, "models.ds.api_key_env"),
            (8, 28, "server.default_privacy"),
            (11, 22, "routes[0].when.privacy"),
            (14, 10, "routes[1].to[0]"),
            (15, 11, "routes[2].name"),
            (16, 9, "routes[2].to"),
        ],
        "{shown:#?}"
    );
    assert!(shown[2].ends_with(
        "missing field \"api_key_env\" for target \"gpt-5.4-mini\" (required for openai)"
    ));
    assert!(shown[4].ends_with(
        "missing field \"base_url\" for target \"ds\" (required for openai-compatible)"
    ));
    assert!(shown[5].contains("must name an environment variable"));
}

#[test]
fn version_is_required_and_checked_first() {
    let errs = errors("models: {}\nroutes: []\n");
    assert_eq!(errs.len(), 1);
    assert_eq!(
        errs[0].message,
        "missing field \"version\" (this build reads version 1)"
    );
    let errs = errors("version: 2\nmodels: 7\n");
    assert_eq!(where_(&errs), vec![(1, 10, "version")]);
    assert_eq!(
        errs[0].message,
        "unsupported config version 2 (this build reads version 1)"
    );
}

#[test]
fn empty_and_non_mapping_documents() {
    assert_eq!(
        errors("")[0].message,
        "empty config (expected a mapping starting with version: 1)"
    );
    assert_eq!(
        errors("- a\n- b\n")[0].message,
        "the config must be a mapping of keys to values"
    );
}

#[test]
fn duplicate_yaml_keys_are_refused() {
    let text = GOOD.replace("version: 1\n", "version: 1\nversion: 1\n");
    let errs = errors(&text);
    assert_eq!(where_(&errs), vec![(2, 1, "version")]);
    assert_eq!(errs[0].message, "duplicate key \"version\"");
}

#[test]
fn local_target_cannot_be_declared_untrusted() {
    let text = GOOD.replace("gguf: m.gguf }", "gguf: m.gguf, trusted: false }");
    let errs = errors(&text);
    assert_eq!(where_(&errs), vec![(3, 50, "models.local.trusted")]);
}

#[test]
fn bad_route_conditions_are_reported_at_their_values() {
    let text = GOOD.replace(
        "  - name: rest\n",
        "  - name: hard\n    when: { difficulty: \"> 1.5\", budget: broke, estimated_tokens: \"lots\" }\n    to: [local]\n  - name: rest\n",
    );
    let errs = errors(&text);
    let shown: Vec<String> = errs.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        vec![
            "policies.yaml:10:25: routes[1].when.difficulty: difficulty threshold 1.5 is outside 0..1",
            "policies.yaml:10:42: routes[1].when.budget: unknown budget state \"broke\" (expected available, alerting or exhausted)",
            "policies.yaml:10:67: routes[1].when.estimated_tokens: invalid condition \"lots\" (expected an operator and a number, like \"> 0.7\")",
        ]
    );
}

#[test]
fn a_conditioned_privacy_route_does_not_shield_later_routes() {
    // Difficulty, budget, team, tokens and metadata all make a route partial, so a
    // later catch-all can still see confidential traffic.
    for cond in [
        "difficulty: \"> 0.5\"",
        "budget: available",
        "team: legal",
        "estimated_tokens: \"> 10\"",
        "metadata: { a: b }",
    ] {
        let text = GOOD.replace(
            "when: { privacy: \">= confidential\" }",
            &format!("when: {{ privacy: \">= confidential\", {cond} }}"),
        );
        let errs = errors(&text);
        assert_eq!(
            where_(&errs),
            vec![(11, 16, "routes[1].fallback[0]")],
            "{cond}"
        );
    }
}

#[test]
fn gpu_layers_takes_all_fit_or_a_count() {
    use watershed_policies::{GpuLayers, TargetSpec};
    let layers = |v: &str| {
        let text = GOOD.replace(
            "gguf: m.gguf }",
            &format!("gguf: m.gguf, gpu_layers: {v} }}"),
        );
        match load_config(&text, "policies.yaml").unwrap().models["local"].spec {
            TargetSpec::Local(ref l) => l.gpu_layers,
            _ => unreachable!(),
        }
    };
    assert_eq!(layers("all"), GpuLayers::All);
    assert_eq!(layers("fit"), GpuLayers::Fit);
    assert_eq!(layers("12"), GpuLayers::N(12));
    let errs = errors(&GOOD.replace("gguf: m.gguf }", "gguf: m.gguf, gpu_layers: most }"));
    assert_eq!(
        where_(&errs),
        vec![(3, 53, "models.local.gpu_layers")],
        "{errs:?}"
    );
    // Fitting places the experts itself, so forcing them to host memory too is refused.
    let errs = errors(&GOOD.replace(
        "gguf: m.gguf }",
        "gguf: m.gguf, gpu_layers: fit, moe_experts_on_cpu: true }",
    ));
    assert_eq!(
        where_(&errs),
        vec![(3, 78, "models.local.moe_experts_on_cpu")],
        "{errs:?}"
    );
}

#[test]
fn difficulty_strong_and_weak_use_the_calibrated_threshold() {
    use watershed_policies::{decide, PrivacyLevel, RequestFacts};
    let routes = "\
routes:
  - name: home
    when: { privacy: \">= confidential\" }
    to: [local]
  - name: hard
    when: { difficulty: strong }
    to: [gpt-5.4-mini]
  - name: rest
    to: [local]
";
    let head = GOOD.split("routes:").next().unwrap();
    let cfg = load_config(
        &format!("{head}difficulty: {{ strong_fraction: 0.3, threshold: 0.6 }}\n{routes}"),
        "policies.yaml",
    )
    .unwrap();
    assert_eq!(cfg.difficulty.threshold, Some(0.6));
    let route_for = |d: f64| {
        let mut f = RequestFacts::new("auto", PrivacyLevel::Internal);
        f.difficulty = Some(d);
        decide(&cfg, &f).unwrap().route
    };
    assert_eq!(route_for(0.61), "hard");
    assert_eq!(route_for(0.6), "rest");
    // Without a threshold, `strong` cannot be resolved: refused at its position.
    let errs = errors(&format!("{head}{routes}"));
    assert_eq!(
        where_(&errs),
        vec![(10, 25, "routes[1].when.difficulty")],
        "{errs:?}"
    );
    assert!(errs[0].message.contains("policy calibrate"), "{}", errs[0]);
    let errs = errors(&format!(
        "{head}difficulty: {{ threshold: 1.5 }}\nroutes:\n  - name: r\n    to: [local]\n"
    ));
    assert_eq!(
        where_(&errs),
        vec![(5, 26, "difficulty.threshold")],
        "{errs:?}"
    );
}

#[test]
fn prices_take_effect_on_their_dates() {
    let head = GOOD.split("routes:").next().unwrap();
    let rest = &GOOD[head.len()..];
    let cfg = load_config(
        &format!(
            "{head}pricing:\n  gpt-5.4-mini:\n    - {{ input: 0.5, output: 4.0, effective_from: 2026-12-01 }}\n    - {{ input: 0.75, output: 4.5 }}\n  my-vllm: {{ input: 0.1, output: 0.2 }}\n{rest}"
        ),
        "policies.yaml",
    )
    .unwrap();
    let history = &cfg.pricing["gpt-5.4-mini"];
    assert_eq!(history.len(), 2);
    assert_eq!(
        history[0].effective_from, None,
        "the undated price comes first"
    );
    assert_eq!(history[1].effective_from.as_deref(), Some("2026-12-01"));
    assert_eq!(cfg.pricing["my-vllm"][0].input, 0.1);
    let errs = errors(&format!(
        "{head}pricing:\n  gpt-5.4-mini:\n    - {{ input: 1, output: 2, effective_from: 2026-13-01 }}\n    - {{ input: 1, output: 2, effective_from: 2026-12-01 }}\n    - {{ input: 3, output: 4, effective_from: 2026-12-01 }}\n{rest}"
    ));
    assert_eq!(
        where_(&errs),
        vec![
            (7, 46, "pricing.gpt-5.4-mini[0].effective_from"),
            (9, 46, "pricing.gpt-5.4-mini[2].effective_from"),
        ],
        "{errs:?}"
    );
    assert!(errs[1].message.contains("two prices"), "{}", errs[1]);
}

#[test]
fn detector_levels_are_checked() {
    let errs = errors(&format!(
        "{GOOD}privacy:\n  detectors:\n    email: internal\n    passport: restricted\n    ip: secret\n"
    ));
    assert_eq!(
        where_(&errs),
        vec![
            (15, 5, "privacy.detectors.passport"),
            (16, 9, "privacy.detectors.ip"),
        ],
        "{errs:?}"
    );
    assert!(
        errs[0].message.contains("known: secret, email"),
        "{}",
        errs[0]
    );
}

#[test]
fn teams_and_keys_load_and_their_mistakes_are_positioned() {
    let good = format!(
        "{GOOD}teams:\n  legal: {{ privacy_default: confidential, budget: {{ monthly_usd: 5000 }} }}\n\
         keys:\n  bot: {{ sha256: {}, team: legal, budget: {{ daily_usd: 2, alert_at: 0.8, on_exhausted: reject }} }}\n",
        "AB".repeat(32)
    );
    let cfg = load_config(&good, "policies.yaml").unwrap();
    let key = cfg.key_by_sha256(&"ab".repeat(32)).unwrap();
    assert_eq!((key.id.as_str(), key.team.as_str()), ("bot", "legal"));
    assert_eq!(
        key.budget.as_ref().unwrap().on_exhausted,
        watershed_policies::OnExhausted::Reject
    );
    assert_eq!(
        cfg.team("legal").unwrap().privacy_default,
        Some(watershed_policies::PrivacyLevel::Confidential)
    );

    let bad = format!(
        "{GOOD}teams:\n  legal: {{ privacy_default: secret, budget: {{ alert_at: 2 }} }}\n\
         keys:\n  bot: {{ sha256: abc, team: sales }}\n  twin: {{ sha256: {h}, budget: {{ daily_usd: -1, on_exhausted: shrug }} }}\n  copy: {{ sha256: {h} }}\n",
        h = "cd".repeat(32)
    );
    let errs = errors(&bad);
    let got: Vec<(usize, &str)> = errs.iter().map(|e| (e.line, e.path.as_str())).collect();
    assert_eq!(
        got,
        [
            (13, "teams.legal.privacy_default"),
            (13, "teams.legal.budget"),
            (13, "teams.legal.budget.alert_at"),
            (15, "keys.bot.sha256"),
            (15, "keys.bot.team"),
            (16, "keys.twin.sha256"),
            (16, "keys.twin.budget.daily_usd"),
            (16, "keys.twin.budget.on_exhausted"),
        ],
        "{errs:#?}"
    );
    assert!(
        errs[4].message.contains("unknown team \"sales\""),
        "{}",
        errs[4]
    );
    assert!(
        errs[5].message.contains("already configured as \"copy\""),
        "{}",
        errs[5]
    );
}

#[test]
fn a_route_may_redact_and_name_its_own_counterfactual() {
    let text = GOOD.replace(
        "    fallback: [gpt-5.4-mini]\n",
        "    fallback: [gpt-5.4-mini]\n    redact: true\n    counterfactual: claude-opus-4.6\n",
    );
    let cfg = load_config(&text, "policies.yaml").unwrap();
    assert!(cfg.routes[1].redact);
    assert!(!cfg.routes[0].redact);
    assert_eq!(
        cfg.routes[1].counterfactual.as_deref(),
        Some("claude-opus-4.6")
    );
    let errs = errors(&GOOD.replace(
        "    fallback: [gpt-5.4-mini]\n",
        "    fallback: [gpt-5.4-mini]\n    counterfactual: \"\"\n",
    ));
    assert_eq!(where_(&errs), [(12, 21, "routes[1].counterfactual")]);
}

#[test]
fn the_dashboard_plan_is_a_path_and_nothing_else() {
    let cfg = load_config(
        &format!("{GOOD}dashboard: {{ plan: plans/mine.yaml }}\n"),
        "p.yaml",
    )
    .unwrap();
    assert_eq!(cfg.dashboard.plan.as_deref(), Some("plans/mine.yaml"));
    assert_eq!(load_config(GOOD, "p.yaml").unwrap().dashboard.plan, None);
    let errs = errors(&format!("{GOOD}dashboard: {{ plan: \"\" }}\n"));
    assert_eq!(where_(&errs), vec![(12, 20, "dashboard.plan")], "{errs:?}");
    let errs = errors(&format!("{GOOD}dashboard: {{ plam: x.yaml }}\n"));
    assert_eq!(where_(&errs), vec![(12, 14, "dashboard.plam")], "{errs:?}");
}

#[test]
fn telemetry_settings_are_checked() {
    let cfg = load_config(
        &format!(
            "{GOOD}telemetry:\n  otlp_endpoint: http://collector:4318/\n  service_name: gw-eu\n"
        ),
        "policies.yaml",
    )
    .unwrap();
    assert_eq!(
        cfg.telemetry.otlp_endpoint.as_deref(),
        Some("http://collector:4318")
    );
    assert_eq!(cfg.telemetry.service_name.as_deref(), Some("gw-eu"));
    assert_eq!(
        load_config(GOOD, "policies.yaml").unwrap().telemetry,
        Default::default()
    );

    let errs = errors(&format!(
        "{GOOD}telemetry:\n  otlp_endpoint: collector:4317\n  service_name: \" \"\n"
    ));
    assert_eq!(
        where_(&errs),
        vec![
            (13, 18, "telemetry.otlp_endpoint"),
            (14, 17, "telemetry.service_name"),
        ],
        "{errs:?}"
    );
    assert!(
        errs[0].message.starts_with(
            "invalid otlp_endpoint \"collector:4317\": expected an http:// or https:// URL"
        ),
        "{}",
        errs[0]
    );
    let errs = errors(&format!("{GOOD}telemetry:\n  endpoint: http://c:4318\n"));
    assert_eq!(
        where_(&errs),
        vec![(13, 3, "telemetry.endpoint")],
        "{errs:?}"
    );
    assert!(
        errs[0].message.starts_with("unknown field \"endpoint\""),
        "{}",
        errs[0]
    );
}

#[test]
fn the_privacy_scan_bounds_are_checked() {
    let cfg = load_config(
        &format!("{GOOD}privacy:\n  scan: {{ max_bytes: 1000, timeout_ms: 50, workers: 3, inline_bytes: 0 }}\n"),
        "policies.yaml",
    )
    .unwrap();
    assert_eq!(
        cfg.scan,
        watershed_policies::ScanSettings {
            max_bytes: 1000,
            timeout_ms: 50,
            workers: 3,
            inline_bytes: 0,
        }
    );
    assert_eq!(
        load_config(GOOD, "policies.yaml").unwrap().scan,
        watershed_policies::ScanSettings::default()
    );
    let errs = errors(&format!(
        "{GOOD}privacy:\n  scan:\n    timeout_ms: 0\n    workers: 0\n    max_byts: 5\n"
    ));
    assert!(
        errs.iter().any(|e| e.message.contains("max_byts")),
        "{errs:?}"
    );
    let errs = errors(&format!(
        "{GOOD}privacy:\n  scan:\n    timeout_ms: 0\n    workers: 0\n"
    ));
    assert_eq!(
        where_(&errs),
        vec![
            (14, 17, "privacy.scan.timeout_ms"),
            (15, 14, "privacy.scan.workers"),
        ],
        "{errs:?}"
    );
}

#[test]
fn the_ledger_url_may_come_from_the_environment_and_never_shows_its_password() {
    let cfg = load_config(
        &format!("{GOOD}ledger: {{ url_env: WATERSHED_LEDGER_URL }}\n"),
        "policies.yaml",
    )
    .unwrap();
    assert_eq!(cfg.ledger.url_env.as_deref(), Some("WATERSHED_LEDGER_URL"));
    let env = |v: Option<&'static str>| move |_: &str| v.map(str::to_owned);
    assert_eq!(
        cfg.ledger_url(env(Some("postgres://app:s3cret@db:5432/ws"))),
        Ok("postgres://app:s3cret@db:5432/ws".to_owned())
    );
    let unset = cfg.ledger_url(env(None)).unwrap_err();
    assert!(unset.contains("WATERSHED_LEDGER_URL is not set"), "{unset}");
    let wrong = cfg
        .ledger_url(env(Some("mysql://u:hunter2@db/x")))
        .unwrap_err();
    assert!(
        !wrong.contains("hunter2") && wrong.contains("u:***@db"),
        "{wrong}"
    );
    // Without url_env the config's url is used.
    let plain = load_config(GOOD, "policies.yaml").unwrap();
    assert_eq!(
        plain.ledger_url(env(Some("ignored"))).unwrap(),
        plain.ledger.url
    );

    let errs = errors(&format!(
        "{GOOD}ledger: {{ url: \"mysql://u:hunter2@db/x\", url_env: \"1BAD\" }}\n"
    ));
    let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        ["ledger.url", "ledger.url_env", "ledger.url_env"],
        "{errs:?}"
    );
    assert!(
        errs.iter().all(|e| !e.message.contains("hunter2")),
        "{errs:?}"
    );

    for (url, masked) in [
        ("postgres://app:s3cret@db/x", "postgres://app:***@db/x"),
        ("postgresql://app@db/x", "postgresql://app@db/x"),
        ("postgres://db/x?password=no", "postgres://db/x?password=no"),
        ("sqlite://watershed.db", "sqlite://watershed.db"),
        ("postgres://a:b:c@h", "postgres://a:***@h"),
    ] {
        assert_eq!(watershed_policies::mask_url_password(url), masked);
    }
}

#[test]
fn fault_settings_have_stated_defaults_and_bounded_values() {
    let cfg = load_config(GOOD, "policies.yaml").unwrap();
    assert_eq!(cfg.server.request_deadline_ms, 60_000);
    assert_eq!(cfg.server.stream_deadline_ms, 600_000);
    let spec = match &cfg.models["gpt-5.4-mini"].spec {
        watershed_policies::TargetSpec::Remote(r) => r.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!((spec.retries, spec.retry_backoff_ms), (2, 200));
    assert_eq!(
        (
            spec.breaker.failures,
            spec.breaker.window_ms,
            spec.breaker.cooldown_ms
        ),
        (5, 60_000, 30_000)
    );
    let text = GOOD.replace(
        "api_key_env: OPENAI_API_KEY }",
        "api_key_env: OPENAI_API_KEY, breaker: { failures: 0, cooldown: 5 } }",
    );
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].message.contains("unknown field"), "{}", errs[0]);
    let text = GOOD.replace(
        "api_key_env: OPENAI_API_KEY }",
        "api_key_env: OPENAI_API_KEY, breaker: { failures: 0 } }",
    );
    assert_eq!(
        errors(&text)[0].path,
        "models.gpt-5.4-mini.breaker.failures"
    );

    let text = GOOD
        .replace(
            "version: 1\n",
            "version: 1\nserver: { request_deadline_ms: 0 }\n",
        )
        .replace(
            "api_key_env: OPENAI_API_KEY }",
            "api_key_env: OPENAI_API_KEY, retries: 11, retry_backoff_ms: 60001 }",
        );
    let errs = errors(&text);
    let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "server.request_deadline_ms",
            "models.gpt-5.4-mini.retries",
            "models.gpt-5.4-mini.retry_backoff_ms"
        ],
        "{errs:?}"
    );
    assert_eq!((errs[0].line, errs[0].col), (2, 32), "{}", errs[0]);
    assert!(errs[1].message.contains("11"), "{}", errs[1]);
    assert_eq!(errs[1].line, 5, "{}", errs[1]);
    // Retries are a remote target's setting; the local engine refuses them.
    let text = GOOD.replace("gguf: m.gguf }", "gguf: m.gguf, retries: 1 }");
    assert_eq!(errors(&text)[0].path, "models.local.retries");
}

#[test]
fn shared_budget_settings_have_defaults_and_bad_values_point_at_themselves() {
    let cfg = load_config(
        &format!("{GOOD}ledger:\n  budgets: {{ reservation_ttl_s: 120, sync_interval_ms: 500, timeout_ms: 250, when_unknown: open }}\n"),
        "policies.yaml",
    )
    .unwrap();
    assert_eq!(
        cfg.ledger.budgets,
        watershed_policies::SharedBudgetSettings {
            reservation_ttl_s: 120,
            sync_interval_ms: 500,
            timeout_ms: 250,
            when_unknown_open: true,
        }
    );
    let default = load_config(GOOD, "policies.yaml").unwrap().ledger.budgets;
    assert_eq!(default, watershed_policies::SharedBudgetSettings::default());
    assert!(
        !default.when_unknown_open,
        "fail closed unless told otherwise"
    );
    let errs = errors(&format!(
        "{GOOD}ledger:\n  budgets:\n    reservation_ttl_s: 0\n    when_unknown: maybe\n"
    ));
    let mut at = where_(&errs);
    at.sort();
    assert_eq!(
        at,
        vec![
            (14, 24, "ledger.budgets.reservation_ttl_s"),
            (15, 19, "ledger.budgets.when_unknown"),
        ],
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.message.contains("\"maybe\"") && e.message.contains("open or closed")),
        "{errs:?}"
    );
}

#[test]
fn a_pool_lists_its_endpoints_with_bounded_health_settings() {
    let pool = "\
version: 1
models:
  vllm:
    provider: openai-compatible
    model: qwen3
    trusted: true
    endpoints:
      - { url: \"http://10.0.0.1:8000/v1/\", name: gpu-a }
      - { url: \"http://10.0.0.2:8000/v1\" }
    health: { path: /health, interval_ms: 1000 }
routes:
  - name: rest
    to: [vllm]
";
    let cfg = load_config(pool, "policies.yaml").unwrap();
    let spec = match &cfg.models["vllm"].spec {
        watershed_policies::TargetSpec::Remote(r) => r.clone(),
        other => panic!("{other:?}"),
    };
    let p = spec.pool.unwrap();
    let members: Vec<(&str, &str)> = p
        .members
        .iter()
        .map(|m| (m.name.as_str(), m.url.as_str()))
        .collect();
    assert_eq!(
        members,
        [
            ("gpu-a", "http://10.0.0.1:8000/v1"),
            ("1", "http://10.0.0.2:8000/v1")
        ]
    );
    // Unset values take their stated defaults; the timeout fits the interval.
    assert_eq!(p.health.path, "/health");
    assert_eq!(
        (
            p.health.interval_ms,
            p.health.timeout_ms,
            p.health.unhealthy_threshold,
            p.health.healthy_threshold,
            p.health.eject_after_failures
        ),
        (1000, 1000, 2, 2, 3)
    );
    assert_eq!(spec.base_url, "http://10.0.0.1:8000/v1");

    // Every mistake is reported at its place.
    let bad = pool
        .replace("\"http://10.0.0.2:8000/v1\"", "\"http://10.0.0.1:8000/v1\", name: gpu-a")
        .replace(
            "path: /health, interval_ms: 1000",
            "path: health, interval_ms: 50, timeout_ms: 60, healthy_threshold: 0, eject_after_failures: 101",
        );
    let errs = errors(&bad);
    let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "models.vllm.endpoints[1].url",
            "models.vllm.endpoints[1].name",
            "models.vllm.health.path",
            "models.vllm.health.interval_ms",
            "models.vllm.health.timeout_ms",
            "models.vllm.health.healthy_threshold",
            "models.vllm.health.eject_after_failures",
        ],
        "{errs:?}"
    );
    assert_eq!(where_(&errs)[0].0, 9, "{}", errs[0]);
    assert!(errs[0].message.contains("twice"), "{}", errs[0]);
    assert!(
        errs[3].message.contains("between 100 and 600000"),
        "{}",
        errs[3]
    );

    // A pool is for openai-compatible targets and replaces base_url.
    let errs = errors(&pool.replace(
        "provider: openai-compatible\n",
        "provider: openai\n    api_key_env: K\n    base_url: http://x/v1\n",
    ));
    let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        ["models.vllm.base_url", "models.vllm.endpoints"],
        "{errs:?}"
    );
    // health: without endpoints, endpoints on a local engine, an empty list.
    let single = GOOD.replace(
        "api_key_env: OPENAI_API_KEY }",
        "api_key_env: OPENAI_API_KEY, health: { path: /health } }",
    );
    assert_eq!(errors(&single)[0].path, "models.gpt-5.4-mini.health");
    let local = GOOD.replace("gguf: m.gguf }", "gguf: m.gguf, endpoints: [] }");
    assert_eq!(errors(&local)[0].path, "models.local.endpoints");
    let empty = "\
version: 1
models:
  vllm: { provider: openai-compatible, endpoints: [] }
routes:
  - name: rest
    to: [vllm]
";
    let errs = errors(empty);
    assert_eq!(errs[0].path, "models.vllm.endpoints", "{errs:?}");
    assert!(errs[0].message.contains("at least one"), "{}", errs[0]);
}

#[test]
fn a_gemini_target_has_its_default_url_needs_a_key_and_a_url_safe_model() {
    let text = GOOD.replace(
        "  gpt-5.4-mini:",
        "  gemini-3-flash: { provider: gemini, model: gemini-3-flash-preview, api_key_env: GEMINI_API_KEY }\n  gpt-5.4-mini:",
    );
    let cfg = load_config(&text, "policies.yaml").unwrap();
    let spec = match &cfg.models["gemini-3-flash"].spec {
        watershed_policies::TargetSpec::Remote(r) => r.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(spec.provider, watershed_policies::ProviderKind::Gemini);
    assert_eq!(spec.provider.as_str(), "gemini");
    assert_eq!(
        spec.base_url,
        "https://generativelanguage.googleapis.com/v1beta"
    );
    assert_eq!(spec.model, "gemini-3-flash-preview");
    assert!(!cfg.models["gemini-3-flash"].trusted);

    // Without a key variable, and with a model that cannot stand in a URL
    // path: both reported, each where it is written.
    let text = GOOD.replace(
        "  gpt-5.4-mini:",
        "  gem: { provider: gemini, model: \"gemini/3 flash?\" }\n  gpt-5.4-mini:",
    );
    let errs = errors(&text);
    assert_eq!(
        where_(&errs),
        vec![(4, 3, "models.gem"), (4, 35, "models.gem.model")],
        "{errs:?}"
    );
    assert!(errs[0].message.contains("api_key_env"), "{}", errs[0]);
    assert!(errs[1].message.contains("gemini/3 flash?"), "{}", errs[1]);
    let text = GOOD.replace("provider: openai,", "provider: gemini-pro,");
    let errs = errors(&text);
    assert!(
        errs[0]
            .message
            .contains("expected openai, openai-compatible, anthropic or gemini"),
        "{}",
        errs[0]
    );
}

#[test]
fn journal_and_shutdown_settings_have_stated_defaults_and_bounded_values() {
    let cfg = load_config(GOOD, "policies.yaml").unwrap();
    assert_eq!(cfg.server.shutdown_grace_ms, 30_000);
    assert_eq!(cfg.ledger.timeout_ms, 5_000);
    let j = &cfg.ledger.journal;
    assert_eq!(j.dir, "watershed-journal");
    assert_eq!(j.max_bytes, 256 * 1024 * 1024);
    assert_eq!(j.segment_bytes, 8 * 1024 * 1024);
    assert_eq!(j.when_full, watershed_policies::JournalFull::Refuse);

    let text = GOOD.replace(
        "version: 1\n",
        "version: 1\nserver: { shutdown_grace_ms: 0 }\nledger:\n  timeout_ms: 0\n  journal: { dir: j, max_bytes: 1000, when_full: spill }\n",
    );
    let errs = errors(&text);
    let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "server.shutdown_grace_ms",
            "ledger.timeout_ms",
            "ledger.journal.max_bytes",
            "ledger.journal.when_full",
        ],
        "{errs:?}"
    );
    assert_eq!((errs[0].line, errs[0].col), (2, 30), "{}", errs[0]);
    assert!(errs[2].message.contains("65536"), "{}", errs[2]);
    assert!(errs[3].message.contains("\"spill\""), "{}", errs[3]);
    assert_eq!((errs[3].line, errs[3].col), (5, 50), "{}", errs[3]);
    let text = GOOD.replace(
        "version: 1\n",
        "version: 1\nledger: { journal: { max_bytes: 100000, segment_bytes: 200000, when_full: drop } }\n",
    );
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].path, "ledger.journal.segment_bytes");
    let text = GOOD.replace(
        "version: 1\n",
        "version: 1\nledger: { journal: { when_full: drop, max_bytes: 100000 } }\n",
    );
    let cfg = load_config(&text, "policies.yaml").unwrap();
    assert_eq!(
        cfg.ledger.journal.when_full,
        watershed_policies::JournalFull::Drop
    );
    assert_eq!(cfg.ledger.journal.segment_bytes, 100_000);
}

#[test]
fn embeddings_settings_are_checked_with_their_place() {
    let text = "\
version: 1
server: { max_embedding_inputs: 100000 }
models:
  local: { engine: local, gguf: m.gguf, embeddings: maybe }
  emb: { provider: openai, api_key_env: K, embeddings: { dimensions: 3 } }
  claude: { provider: anthropic, api_key_env: K, embeddings: { model: x } }
  oai: { provider: openai-compatible, base_url: \"http://x/v1\", embeddings: [a] }
routes:
  - name: rest
    to: [local]
";
    let errs = errors(text);
    let got: Vec<(usize, &str, &str)> = errs
        .iter()
        .map(|e| (e.line, e.path.as_str(), e.message.as_str()))
        .collect();
    let has = |line: usize, path: &str, words: &str| {
        assert!(
            got.iter()
                .any(|(l, p, m)| *l == line && *p == path && m.contains(words)),
            "no error at {line} {path} with {words:?}: {got:?}"
        );
    };
    has(2, "server.max_embedding_inputs", "above the limit of 65536");
    has(4, "models.local.embeddings", "true or false");
    has(5, "models.emb.embeddings.dimensions", "true or false");
    has(5, "models.emb.embeddings", "\"model\"");
    has(
        6,
        "models.claude.embeddings",
        "anthropic has no embeddings API",
    );
    has(7, "models.oai.embeddings", "{ model: NAME");
    // Well formed, it loads: a local target embeds by default, a remote one
    // when it names its embedding model; dimensions default by provider.
    let ok = load_config(
        "\
version: 1
models:
  local: { engine: local, gguf: m.gguf }
  off: { engine: local, gguf: m.gguf, embeddings: false }
  emb: { provider: openai, api_key_env: K, embeddings: { model: text-embedding-3-small } }
  vllm: { provider: openai-compatible, base_url: \"http://x/v1\", embeddings: { model: bge } }
routes:
  - name: rest
    to: [local]
",
        "p.yaml",
    )
    .unwrap();
    assert_eq!(ok.server.max_embedding_inputs, 2048);
    for (id, embeds) in [
        ("local", true),
        ("off", false),
        ("emb", true),
        ("vllm", true),
    ] {
        assert_eq!(
            ok.target(id).unwrap().capabilities.embeddings,
            embeds,
            "{id}"
        );
    }
    let remote = |id: &str| match &ok.target(id).unwrap().spec {
        watershed_policies::TargetSpec::Remote(r) => r.embeddings.clone().unwrap(),
        watershed_policies::TargetSpec::Local(_) => panic!("{id} is local"),
    };
    assert!(remote("emb").dimensions);
    assert!(!remote("vllm").dimensions);
    assert_eq!(remote("vllm").model, "bge");
}

#[test]
fn capabilities_and_needs_are_checked_with_file_line_col() {
    let text = "\
version: 1
models:
  local: { engine: local, gguf: m.gguf, capabilities: { vision: true } }
  claude: { provider: anthropic, api_key_env: K, capabilities: { json_schema: true, logprobs: true } }
  vllm: { provider: openai-compatible, base_url: http://v:8000, capabilities: { vison: true } }
  gpt: { provider: openai, api_key_env: K, capabilities: { context_tokens: 0 } }
routes:
  - name: a
    when: { needs: [tools, telepathy, context_tokens] }
    to: [gpt]
  - name: b
    when: { needs: [] }
    to: [gpt]
";
    let errs = errors(text);
    let got: Vec<(usize, usize, &str, &str)> = errs
        .iter()
        .map(|e| (e.line, e.col, e.path.as_str(), e.message.as_str()))
        .collect();
    let want = [
        (
            3,
            41,
            "models.local.capabilities",
            "\"capabilities\" is for remote providers, not a local engine",
        ),
        (
            4,
            79,
            "models.claude.capabilities.json_schema",
            "anthropic targets cannot take response_format (the Messages API has none)",
        ),
        (
            4,
            95,
            "models.claude.capabilities.logprobs",
            "anthropic targets cannot return logprobs (the Messages API has none)",
        ),
        (6, 76, "models.gpt.capabilities.context_tokens", "context_tokens must be positive"),
        (
            9,
            28,
            "routes[0].when.needs[1]",
            "unknown capability \"telepathy\" (expected tools, json_schema, vision, embeddings or logprobs)",
        ),
        (
            9,
            39,
            "routes[0].when.needs[2]",
            "unknown capability \"context_tokens\" (expected tools, json_schema, vision, embeddings or logprobs)",
        ),
        (
            12,
            20,
            "routes[1].when.needs",
            "needs condition names at least one capability",
        ),
    ];
    for w in want {
        assert!(got.contains(&w), "missing {w:?} in\n{got:#?}");
    }
    // A misspelt capability is serde's unknown field, at its key.
    let vison = errs
        .iter()
        .find(|e| e.path.starts_with("models.vllm"))
        .unwrap_or_else(|| panic!("{got:#?}"));
    assert_eq!((vison.line, vison.col), (5, 81), "{vison}");
    assert!(vison.message.contains("unknown field \"vison\""), "{vison}");
}

#[test]
fn capabilities_override_the_built_in_facts() {
    let cfg = load_config(
        "version: 1\nmodels:\n  local: { engine: local, gguf: m.gguf, context_tokens: 2048, embeddings: false }\n  \
         vllm: { provider: openai-compatible, base_url: http://v:8000, capabilities: { vision: true, logprobs: true, tools: false, context_tokens: 32768 } }\n  \
         gpt: { provider: openai, model: gpt-4o, api_key_env: K }\n\
         routes:\n  - name: home\n    when: { privacy: \">= confidential\" }\n    to: [local]\n  \
         - name: all\n    to: [local, vllm, gpt]\n",
        "p.yaml",
    )
    .unwrap();
    let caps = |id: &str| cfg.target(id).unwrap().capabilities;
    let local = caps("local");
    assert!(local.tools && local.json_schema && local.logprobs && !local.vision);
    assert!(!local.embeddings);
    assert_eq!(local.context_tokens, Some(2048));
    let vllm = caps("vllm");
    assert!(vllm.vision && vllm.logprobs && !vllm.tools && vllm.json_schema);
    assert_eq!(vllm.context_tokens, Some(32768));
    let gpt = caps("gpt");
    assert!(gpt.tools && gpt.vision && gpt.logprobs && !gpt.embeddings);
    assert_eq!(gpt.context_tokens, Some(128_000));
}

#[test]
fn image_settings_are_checked_with_their_place() {
    let text = "\
version: 1
server: { max_body_bytes: 1048576, max_image_bytes: 1048576, max_images: 0 }
privacy: { uninspectable: secret }
models:
  local: { engine: local, gguf: m.gguf }
routes:
  - name: rest
    to: [local]
";
    let errs = errors(text);
    let got: Vec<(usize, &str, &str)> = errs
        .iter()
        .map(|e| (e.line, e.path.as_str(), e.message.as_str()))
        .collect();
    let has = |line: usize, path: &str, words: &str| {
        assert!(
            got.iter()
                .any(|(l, p, m)| *l == line && *p == path && m.contains(words)),
            "no error at {line} {path} with {words:?}: {got:?}"
        );
    };
    // A 1 MiB image is 1398104 bytes of base64, plus room for the rest.
    has(
        2,
        "server.max_image_bytes",
        "needs a body of at least 1463640 bytes",
    );
    has(2, "server.max_images", "greater than 0");
    has(3, "privacy.uninspectable", "secret");
    // Unset, images and token inputs are confidential, the image limits fit
    // the default body limit, and a compatible server reads images only
    // when its `capabilities` say so.
    let cfg = load_config(
        "\
version: 1
models:
  local: { engine: local, gguf: m.gguf }
  vllm: { provider: openai-compatible, base_url: \"http://x/v1\", capabilities: { vision: true }, trusted: true }
  plain: { provider: openai-compatible, base_url: \"http://x/v1\", trusted: true }
routes:
  - name: rest
    to: [local]
",
        "policies.yaml",
    )
    .unwrap();
    assert_eq!(
        cfg.uninspectable,
        watershed_policies::PrivacyLevel::Confidential
    );
    assert_eq!(cfg.server.max_image_bytes, 2 * 1024 * 1024);
    assert_eq!(cfg.server.max_images, 16);
    assert!(!cfg.server.image_http_loopback);
    let vision = |id: &str| cfg.models[id].capabilities.vision;
    assert!(vision("vllm"));
    assert!(!vision("plain"));
    assert!(!vision("local"));
    // With a small body limit and no image limit set, the image limit shrinks to fit.
    let small = load_config(
        "version: 1\nserver: { max_body_bytes: 131072 }\n\
         models: { local: { engine: local, gguf: m.gguf } }\n\
         routes: [{ name: rest, to: [local] }]\n",
        "policies.yaml",
    )
    .unwrap();
    assert_eq!(small.server.max_image_bytes, 49152);
    let public = load_config(
        "version: 1\nprivacy: { uninspectable: public }\n\
         models: { local: { engine: local, gguf: m.gguf } }\n\
         routes: [{ name: rest, to: [local] }]\n",
        "policies.yaml",
    )
    .unwrap();
    assert_eq!(
        public.uninspectable,
        watershed_policies::PrivacyLevel::Public
    );
}

#[test]
fn tools_false_turns_tool_calling_off_for_a_local_target_and_is_refused_on_a_remote_one() {
    let ok = load_config(
        "\
version: 1
models:
  local: { engine: local, gguf: m.gguf }
  off: { engine: local, gguf: m.gguf, tools: false }
  gpt: { provider: openai, api_key_env: K }
routes:
  - name: rest
    to: [local]
",
        "p.yaml",
    )
    .unwrap();
    for (id, tools) in [("local", true), ("off", false), ("gpt", true)] {
        assert_eq!(ok.models[id].capabilities.tools, tools, "{id}");
    }
    let err = load_config(
        "version: 1\nmodels:\n  gpt: { provider: openai, api_key_env: K, tools: false }\nroutes:\n  - name: rest\n    to: [gpt]\n",
        "p.yaml",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("models.gpt.tools"), "{err}");
    assert!(err.contains("is for the local engine"), "{err}");
}
