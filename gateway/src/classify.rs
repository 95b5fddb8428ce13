//! Classification of a request before routing — its privacy level (the declared
//! or default level, raised by every detected sensitive value) and its
//! difficulty — for the HTTP path, `watershed policy explain`, and
//! `watershed classify`: JSON Lines in (`prompt` or OpenAI `messages`), one JSON
//! object out per line, in order, with the prompt's difficulty, privacy level and
//! the detected sensitive values as character spans. A line that cannot be read
//! gets an `error` object in its place, so outputs stay aligned with inputs.

use std::io::{BufRead, Write};

use serde_json::{json, Value};
use watershed_policies::difficulty::DifficultyModel;
use watershed_policies::{
    detect, Capability, Config, Explanation, Needs, PrivacyLevel, RequestFacts, Skip,
};
use watershed_providers::{ChatRequest, ResponseFormat};

use crate::access::Caller;
use crate::scan::{FailClosed, Scan};

/// The most detections an explanation lists (`evidence_count` says how many
/// there were in all).
pub const MAX_EVIDENCE: usize = 64;

/// An explanation as JSON: the evidence as detector kinds, spans and the
/// level each gives (never the values), the difficulty, the budget state, each
/// rule checked up to the one that matched, and the outcome.
pub fn explanation_json(
    cfg: &Config,
    e: &Explanation,
    declared: Option<PrivacyLevel>,
    caller: &Caller,
    fail_closed: Option<&FailClosed>,
) -> Value {
    let outcome = match &e.outcome {
        Ok(targets) => json!({
            "route": e.rules.iter().find(|r| r.matched).map(|r| r.route.clone()),
            "targets": targets,
        }),
        Err(d) => json!({"denied": {"code": d.code(), "message": d.to_string()}}),
    };
    json!({
        "model": e.model,
        "caller": {"key": caller.key_id, "team": caller.team},
        "privacy": {
            "level": e.privacy.as_str(),
            "declared": declared.map(|l| l.as_str()),
            "default": cfg.server.default_privacy.as_str(),
            "caller_default": caller.privacy_floor(cfg).map(|l| l.as_str()),
            "fail_closed": fail_closed.map(|f| json!({"reason": f.reason(), "detail": f.to_string()})),
            // Bounded: a long prompt can hold thousands of detections, and
            // the explanation is kept in every ledger record.
            "evidence_count": e.evidence.len(),
            "evidence": e.evidence.iter().take(MAX_EVIDENCE).map(|s| json!({
                "type": s.kind.as_str(),
                "start": s.start,
                "end": s.end,
                "level": cfg.privacy_level(std::slice::from_ref(s), PrivacyLevel::Public).as_str(),
            })).collect::<Vec<_>>(),
        },
        "difficulty": e.difficulty,
        "budget": e.budget.as_str(),
        "rules": e.rules.iter().map(|r| json!({
            "route": r.route,
            "matched": r.matched,
            "reason": r.reason,
        })).collect::<Vec<_>>(),
        "needs": needs_json(&e.needs),
        // The matching route's targets left out: for privacy, or for a
        // capability the request needs (a window too small with its size).
        "skipped": e.skipped.iter().map(|s| match s.why {
            Skip::TrustBoundary => json!({"target": s.target, "reason": "trust_boundary"}),
            Skip::MissingCapability(Capability::ContextTokens) => json!({
                "target": s.target,
                "reason": "missing_capability",
                "capability": Capability::ContextTokens.as_str(),
                "context_tokens": cfg.target(&s.target).and_then(|t| t.capabilities.context_tokens),
            }),
            Skip::MissingCapability(cap) => json!({
                "target": s.target,
                "reason": "missing_capability",
                "capability": cap.as_str(),
            }),
        }).collect::<Vec<_>>(),
        "outcome": outcome,
    })
}

/// The lowest level a request can have before detection: the level the client
/// declared (or the config's default), raised to the caller's key and team
/// defaults.
pub fn privacy_floor(
    cfg: &Config,
    declared: Option<PrivacyLevel>,
    caller: &Caller,
) -> PrivacyLevel {
    let base = declared.unwrap_or(cfg.server.default_privacy);
    caller.privacy_floor(cfg).map_or(base, |f| f.max(base))
}

/// The facts routing decides on, from a request's scan (`crate::scan`).
/// `floor` is the level before detection (`privacy_floor`); detected values
/// can only raise it, and a scan that could not finish makes the request
/// `restricted`. Content no detector can read (images, token-id embedding
/// inputs) raises it to `privacy.uninspectable` (`confidential` unless the
/// config says otherwise): this is the one place that rule is applied.
pub fn request_facts(
    cfg: &Config,
    req: &ChatRequest,
    floor: PrivacyLevel,
    scan: &Scan,
) -> RequestFacts {
    let privacy = match scan.failed {
        Some(_) => PrivacyLevel::Restricted,
        None => cfg.privacy_level(&scan.evidence, floor),
    };
    let privacy = if req.has_uninspectable() {
        privacy.max(cfg.uninspectable)
    } else {
        privacy
    };
    let mut facts = RequestFacts::new(req.model.clone(), privacy);
    facts.difficulty = scan.difficulty;
    facts.tags = req.metadata.clone();
    facts.estimated_tokens = Some(estimated_prompt_tokens(req));
    facts.needs = request_needs(req);
    facts
}

/// About four characters a token: the estimate routing and budgets use
/// before a backend counts.
pub fn estimated_prompt_tokens(req: &ChatRequest) -> u64 {
    req.text().chars().count().div_ceil(4) as u64
}

/// What `req` needs of the target that serves it: the one place a request's
/// needs are read, taken apart so each capability is named. The context it
/// needs is its estimated prompt plus `max_tokens` when set; an embeddings
/// request needs none, as each input is embedded on its own (the engine
/// bounds each by its context).
pub fn request_needs(req: &ChatRequest) -> Needs {
    let json_schema = matches!(
        req.response_format,
        Some(ResponseFormat::JsonSchema { .. } | ResponseFormat::JsonObject)
    );
    let logprobs = req.options.logprobs || req.options.top_logprobs.is_some();
    let embeddings = req.needs_embeddings();
    let context = estimated_prompt_tokens(req) + req.max_tokens.map_or(0, u64::from);
    Needs {
        tools: req.needs_tools(),
        json_schema,
        vision: req.has_images(),
        embeddings,
        logprobs,
        context_tokens: (!embeddings).then_some(context),
    }
}

/// A request's needs as JSON for explanations: the capabilities it needs by
/// name and the context window it needs.
fn needs_json(n: &Needs) -> Value {
    let names: Vec<&str> = Capability::ALL
        .into_iter()
        .filter(|c| *c != Capability::ContextTokens && n.has(*c))
        .map(Capability::as_str)
        .collect();
    json!({"capabilities": names, "context_tokens": n.context_tokens})
}

/// The text a line stands for: `prompt`, or the `messages`' contents (strings or
/// arrays of text parts) joined by newlines, in order. Spans index into it.
pub fn prompt_text(v: &Value) -> Result<String, String> {
    if let Some(p) = v.get("prompt") {
        return p
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| "\"prompt\" must be a string".to_owned());
    }
    let messages = v.get("messages").and_then(Value::as_array).ok_or_else(|| {
        "each line needs \"prompt\" (a string) or \"messages\" (an array)".to_owned()
    })?;
    let mut parts = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        match m.get("content") {
            Some(Value::String(s)) => parts.push(s.clone()),
            Some(Value::Array(items)) => {
                let text: Vec<&str> = items
                    .iter()
                    .filter(|p| p.get("type").and_then(Value::as_str) == Some("text"))
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .collect();
                parts.push(text.join("\n"));
            }
            Some(Value::Null) | None => {}
            Some(_) => {
                return Err(format!(
                    "messages[{i}].content must be a string or an array"
                ))
            }
        }
    }
    Ok(parts.join("\n"))
}

/// Classifies one input line.
pub fn classify_line(line: &str, model: &DifficultyModel, cfg: &Config) -> Value {
    let text = match serde_json::from_str::<Value>(line)
        .map_err(|e| format!("not JSON: {e}"))
        .and_then(|v| prompt_text(&v))
    {
        Ok(t) => t,
        Err(e) => return json!({ "error": e }),
    };
    let spans = detect(&text);
    let pii: Vec<Value> = spans
        .iter()
        .map(|s| json!({"type": s.kind.as_str(), "start": s.start, "end": s.end}))
        .collect();
    json!({
        "difficulty": model.score(&text),
        "privacy": cfg.privacy_level(&spans, cfg.server.default_privacy).as_str(),
        "pii": pii,
    })
}

/// Streams `input` to `output`; returns how many lines could not be classified.
pub fn run(
    input: impl BufRead,
    mut output: impl Write,
    model: &DifficultyModel,
    cfg: &Config,
) -> std::io::Result<usize> {
    let mut failed = 0;
    for line in input.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let out = classify_line(&line, model, cfg);
        failed += usize::from(out.get("error").is_some());
        serde_json::to_writer(&mut output, &out)?;
        output.write_all(b"\n")?;
    }
    output.flush()?;
    Ok(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> &'static DifficultyModel {
        DifficultyModel::builtin().unwrap()
    }

    /// A config with `default` as the default level and `extra` YAML appended.
    fn config(default: &str, extra: &str) -> Config {
        watershed_policies::load_config(
            &format!(
                "version: 1\nserver: {{ default_privacy: {default} }}\n\
                 models:\n  local: {{ engine: local, gguf: m.gguf }}\n\
                 routes:\n  - name: all\n    to: [local]\n{extra}"
            ),
            "test.yaml",
        )
        .unwrap()
    }

    #[test]
    fn prompt_and_messages_give_scores_levels_and_character_spans() {
        let internal = config("internal", "");
        let public = config("public", "");
        let out = classify_line(
            r#"{"prompt":"Zoë: mail zoe@example.com please"}"#,
            model(),
            &internal,
        );
        assert_eq!(out["privacy"], "confidential");
        // Character offsets, not bytes: "ë" is one character.
        assert_eq!(
            out["pii"],
            json!([{"type": "email", "start": 10, "end": 25}])
        );
        let d = out["difficulty"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&d));
        let out = classify_line(
            r#"{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":[{"type":"text","text":"key AKIAIOSFODNN7EXAMPLE"}]}]}"#,
            model(),
            &public,
        );
        assert_eq!(out["privacy"], "restricted", "{out}");
        assert_eq!(out["pii"][0]["type"], "secret");
        assert_eq!(out["pii"][0]["start"], 14);
        let out = classify_line(
            r#"{"prompt":"Version 2.4.1, released 2024-03-01"}"#,
            model(),
            &public,
        );
        assert_eq!(out["privacy"], "public");
        assert_eq!(out["pii"], json!([]));
    }

    #[test]
    fn the_config_sets_each_detectors_level() {
        let cfg = config(
            "public",
            "privacy:\n  detectors: { email: internal, ip: restricted }\n",
        );
        let level = |prompt: &str| {
            classify_line(&json!({ "prompt": prompt }).to_string(), model(), &cfg)["privacy"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        assert_eq!(level("write to zoe@example.com"), "internal");
        assert_eq!(level("the host is 10.1.2.3"), "restricted");
        // Kinds the config does not name keep their built-in level.
        assert_eq!(level("call +44 20 7946 0958"), "confidential");
    }

    #[test]
    fn bad_lines_keep_their_place() {
        let input = "{\"prompt\":\"a\"}\nnot json\n{\"prompt\":3}\n\n{\"messages\":[]}\n";
        let mut out = Vec::new();
        let failed = run(input.as_bytes(), &mut out, model(), &config("internal", "")).unwrap();
        let lines: Vec<Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(failed, 2);
        assert_eq!(lines.len(), 4);
        assert!(lines[0].get("difficulty").is_some());
        assert!(lines[1]["error"].as_str().unwrap().starts_with("not JSON"));
        assert_eq!(lines[2]["error"], "\"prompt\" must be a string");
        assert_eq!(lines[3]["privacy"], "internal");
    }

    #[test]
    fn an_explanation_lists_a_bounded_number_of_detections() {
        let cfg = config("internal", "");
        let req = ChatRequest {
            model: "m".into(),
            messages: vec![watershed_providers::Message::new(
                watershed_providers::Role::User,
                "host 10.0.0.1 ".repeat(100),
            )],
            ..ChatRequest::default()
        };
        let scan = crate::scan::scan_now(&req);
        assert_eq!(scan.evidence.len(), 100);
        let facts = request_facts(&cfg, &req, PrivacyLevel::Internal, &scan);
        let e = watershed_policies::explain(&cfg, &facts, &scan.evidence);
        let caller = Caller {
            key_id: "k".into(),
            team: "t".into(),
        };
        let v = explanation_json(&cfg, &e, None, &caller, None);
        assert_eq!(v["privacy"]["evidence_count"], 100);
        assert_eq!(
            v["privacy"]["evidence"].as_array().unwrap().len(),
            MAX_EVIDENCE
        );
        assert!(v["privacy"]["fail_closed"].is_null());
    }
}
