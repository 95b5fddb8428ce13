//! Validation of a route's `when:` conditions.

use super::raw::RawWhen;
use super::validate::{At, Ctx};
use super::When;
use crate::budget::BudgetState;
use crate::capability::Capability;
use crate::level::{CmpOp, LevelCondition, NumCondition};
use crate::yaml::{join_index, join_key};

/// Typed conditions, or `None` when any of them is invalid (the errors are recorded).
pub(super) fn when(cx: &mut Ctx<'_>, route_path: &str, raw: RawWhen) -> Option<When> {
    let path = join_key(route_path, "when");
    let mut ok = true;
    let privacy = match raw.privacy {
        None => None,
        Some(s) => match s.parse::<LevelCondition>() {
            Ok(c) => Some(c),
            Err(e) => {
                cx.err(
                    &join_key(&path, "privacy"),
                    At::Value,
                    format!("{e} in condition \"{s}\""),
                );
                ok = false;
                None
            }
        },
    };
    let mut names =
        |field: &str, list: Option<Vec<String>>, cx: &mut Ctx<'_>| -> Option<Vec<String>> {
            let list = list?;
            let mp = join_key(&path, field);
            if list.is_empty() {
                cx.err(
                    &mp,
                    At::Value,
                    format!("{field} condition needs at least one name"),
                );
                ok = false;
            }
            for (j, m) in list.iter().enumerate() {
                if m.trim().is_empty() {
                    cx.err(
                        &join_index(&mp, j),
                        At::Value,
                        format!("{field} name must not be empty"),
                    );
                    ok = false;
                }
            }
            Some(list)
        };
    let model = names("model", raw.model.map(|m| m.0), cx);
    let team = names("team", raw.team.map(|m| m.0), cx);
    let mut num = |field: &str,
                   s: Option<String>,
                   lo: f64,
                   hi: f64,
                   cx: &mut Ctx<'_>|
     -> Option<NumCondition> {
        let s = s?;
        let fp = join_key(&path, field);
        match s.parse::<NumCondition>() {
            Ok(c) if (lo..=hi).contains(&c.value) => Some(c),
            Ok(c) => {
                cx.err(
                    &fp,
                    At::Value,
                    format!("{field} threshold {} is outside {lo}..{hi}", c.value),
                );
                ok = false;
                None
            }
            Err(e) => {
                cx.err(&fp, At::Value, e.to_string());
                ok = false;
                None
            }
        }
    };
    let threshold = cx.difficulty_threshold;
    let mut unresolved = false;
    let difficulty = match raw.difficulty.as_deref().map(str::trim) {
        Some(word @ ("strong" | "weak")) => match threshold {
            Some(t) => Some(NumCondition {
                op: if word == "strong" {
                    CmpOp::Gt
                } else {
                    CmpOp::Le
                },
                value: t,
            }),
            None => {
                cx.err(
                    &join_key(&path, "difficulty"),
                    At::Value,
                    format!(
                        "difficulty: {word} needs difficulty.threshold at the top level \
                         (watershed policy calibrate derives it from sample prompts)"
                    ),
                );
                unresolved = true;
                None
            }
        },
        _ => num("difficulty", raw.difficulty, 0.0, 1.0, cx),
    };
    let estimated_tokens = num("estimated_tokens", raw.estimated_tokens, 0.0, f64::MAX, cx);
    if unresolved {
        ok = false;
    }
    let budget = match raw.budget {
        None => None,
        Some(s) => match s.parse::<BudgetState>() {
            Ok(b) => Some(b),
            Err(e) => {
                cx.err(&join_key(&path, "budget"), At::Value, e.to_string());
                ok = false;
                None
            }
        },
    };
    let needs = raw.needs.map(|list| {
        let np = join_key(&path, "needs");
        if list.is_empty() {
            cx.err(&np, At::Value, "needs condition names at least one capability");
            ok = false;
        }
        let mut caps = Vec::new();
        for (j, name) in list.iter().enumerate() {
            match Capability::parse_need(name.trim()) {
                Some(c) if !caps.contains(&c) => caps.push(c),
                Some(_) => {}
                None => {
                    cx.err(
                        &join_index(&np, j),
                        At::Value,
                        format!(
                            "unknown capability \"{name}\" (expected tools, json_schema, vision, embeddings or logprobs)"
                        ),
                    );
                    ok = false;
                }
            }
        }
        caps
    });
    ok.then_some(When {
        privacy,
        model,
        difficulty,
        budget,
        team,
        estimated_tokens,
        metadata: raw.metadata,
        needs,
    })
}
