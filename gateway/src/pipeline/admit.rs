//! Admission: classify a parsed request, decide its route and reserve its
//! budget. What comes out (`Prepared`) is everything dispatch and metering
//! need, whichever wire the request arrived in.

use std::sync::Arc;

use axum::http::HeaderMap;
use tracing::warn;
use watershed_policies::{
    decide, BudgetState, Capability, Denial, Needs, OnExhausted, PrivacyLevel, RequestFacts,
};
use watershed_providers::{BackendKind, ChatRequest, ErrorCode, Usage};

use super::{Failed, PRIVACY_HEADER};
use crate::access::{self, Caller};
use crate::budget::{Refusal, Reservation};
use crate::error::ApiError;
use crate::metrics;
use crate::scan::Scan;
use crate::state::{AppState, Runtime};

/// Everything decided about a request before dispatch.
pub struct Prepared {
    pub request_id: String,
    /// The request's instant on the application's clock: its ledger `ts_ms`,
    /// its budget windows and the prices it is charged at.
    pub now: chrono::DateTime<chrono::Utc>,
    pub req: ChatRequest,
    pub route: String,
    pub privacy: PrivacyLevel,
    pub targets: Vec<String>,
    /// What the request needs of its target; dispatch checks the backends
    /// against it again.
    pub needs: Needs,
    pub difficulty: Option<f64>,
    /// About four characters per token: only for records of requests that
    /// never reported usage.
    pub estimated_tokens: u32,
    pub caller: Caller,
    /// The route's `redact` option.
    pub redact: bool,
    /// The all-closed reference model: the route's own, else the config's.
    pub counterfactual: Option<String>,
    /// Budget state of the caller, and what was done about it.
    pub budget: BudgetState,
    pub downgraded: Option<String>,
    pub reservation: Option<Reservation>,
    /// The decision's explanation (JSON, no values) for the ledger.
    pub explanation: String,
}

/// Completion tokens reserved for a request that sets no `max_tokens` and
/// whose target has no `max_tokens_default`.
const RESERVE_COMPLETION_TOKENS: u32 = 4096;

/// What a request is admitted for: an answer (its budget is checked and
/// reserved), or only a count of its prompt (which costs nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Answer,
    Count,
}

/// Classify and route a parsed request: the one path both the answering
/// endpoints and `count_tokens` take, so a count is routed, privacy first,
/// exactly as the answer would be.
pub async fn admit(
    state: &Arc<AppState>,
    rt: &Arc<Runtime>,
    headers: &HeaderMap,
    req: ChatRequest,
    request_id: &str,
    purpose: Purpose,
) -> Result<(Prepared, Scan), Failed> {
    super::images::check_images(&req, &rt.config.server)?;
    // Classification is bounded and, for large requests, off the async
    // workers (`crate::scan`); what it found is used for routing and reused,
    // not recomputed, by redaction.
    let req = Arc::new(req);
    let scan = state.scans.scan(&req, &rt.config.scan).await;
    let req = Arc::try_unwrap(req).unwrap_or_else(|shared| (*shared).clone());
    if let Some(f) = &scan.failed {
        warn!(request_id = %request_id, reason = f.reason(), "{f}");
        state.metrics.add(
            metrics::PRIVACY_FAIL_CLOSED,
            vec![("reason", f.reason().to_owned())],
            1.0,
        );
    }
    // Only a caller with a budget asks the shared store anything.
    let budgeted = (purpose == Purpose::Answer && state.budgets.is_shared())
        .then(|| access::caller(&rt.config, headers).ok())
        .flatten()
        .filter(|c| !crate::budget::scopes_of(&rt.config, c).is_empty());
    let shared = budgeted.is_some();
    if let Some(caller) = &budgeted {
        let now = state.clock.now();
        state.budgets.refresh(&rt.config, caller, now).await;
    }
    let again = shared.then(|| req.clone());
    let mut prepared = prepare(state, rt, headers, req, &scan, request_id, purpose)?;
    // Shared budgets are taken by a conditional update in PostgreSQL. When
    // another replica took the money after the figures were read, the
    // request is decided once more on the figures the refusal returned
    // (downgraded or refused like any exhausted budget), and refused if the
    // second reservation loses too: at most two tries.
    let mut again = again;
    loop {
        let Some(mut r) = prepared.reservation.take() else {
            break;
        };
        match state
            .budgets
            .confirm(&mut r, &rt.config, &state.metrics)
            .await
        {
            Ok(()) => {
                prepared.reservation = Some(r);
                break;
            }
            Err(refusal) => {
                let amount = r.amount();
                drop(r);
                match (refusal, again.take()) {
                    (Refusal::Exhausted(..), Some(req)) => {
                        drop(prepared);
                        prepared = prepare(state, rt, headers, req, &scan, request_id, purpose)?;
                    }
                    (refusal, _) => {
                        return Err(refused(state, &rt.config, &prepared, refusal, amount))
                    }
                }
            }
        }
    }
    Ok((prepared, scan))
}

/// The answer to a request the shared budget store refused.
fn refused(
    state: &AppState,
    cfg: &watershed_policies::Config,
    prepared: &Prepared,
    refusal: Refusal,
    amount: f64,
) -> Failed {
    let now = prepared.now;
    let err = match refusal {
        Refusal::Exhausted(scope, row) => {
            state.metrics.add(
                metrics::BUDGET_ACTIONS,
                vec![("action", "rejected".to_owned())],
                1.0,
            );
            let verdict = crate::budget::refused_verdict(cfg, scope, row, amount, now);
            let mut err = ApiError::new(
                ErrorCode::BudgetExceeded,
                format!(
                    "{}; this request needs up to ${amount:.6}",
                    verdict.describe(now)
                ),
            );
            err.retry_after_s = verdict.resets_in_s(now);
            err
        }
        Refusal::Unknown(scope) => ApiError::new(
            ErrorCode::UpstreamUnavailable,
            format!(
                "{scope} budget cannot be checked: the shared budget store is unreachable \
                 and this replica has no figure for it (ledger.budgets.when_unknown: closed)"
            ),
        ),
    };
    Failed {
        err,
        route: Some(prepared.route.clone()),
        backend: None,
    }
}

pub(super) fn prepare(
    state: &AppState,
    rt: &Runtime,
    headers: &HeaderMap,
    req: ChatRequest,
    scan: &Scan,
    request_id: &str,
    purpose: Purpose,
) -> Result<Prepared, Failed> {
    let routing = rt.routing_config();
    let cfg = &*routing;
    let caller = access::caller(cfg, headers)?;
    let declared = declared_privacy(headers)?;
    if let Some(max) = req.max_tokens {
        if max > cfg.server.max_tokens_limit {
            return Err(ApiError::bad_request(
                format!(
                    "max_tokens {max} is above this gateway's limit of {}",
                    cfg.server.max_tokens_limit
                ),
                Some("max_tokens"),
            )
            .into());
        }
    }
    let floor = crate::classify::privacy_floor(cfg, declared, &caller);
    let mut facts = crate::classify::request_facts(cfg, &req, floor, scan);
    facts.team = Some(caller.team.clone());
    let now = state.clock.now();
    facts.budget = state.budgets.verdict(cfg, &caller, 0.0, now).state;
    let decision = decide(cfg, &facts).map_err(|d| denial_error(d, &req))?;
    let prompt_tokens = facts.estimated_tokens.unwrap_or(0);
    let mut targets = decision.targets;
    let mut cost = targets
        .iter()
        .map(|t| upper_bound_usd(rt, t, prompt_tokens, req.max_tokens, now.timestamp_millis()))
        .fold(0.0, f64::max);
    let verdict = state.budgets.verdict(cfg, &caller, cost, now);
    let mut downgraded = None;
    // A count costs nothing: an exhausted budget neither refuses nor
    // downgrades it, and nothing is reserved for it.
    if verdict.state == BudgetState::Exhausted && cost > 0.0 && purpose == Purpose::Answer {
        let action = verdict
            .worst
            .as_ref()
            .map_or(OnExhausted::Reject, |(_, e)| e.on_exhausted);
        let cheapest = (action == OnExhausted::Downgrade)
            .then(|| {
                cheapest_allowed(
                    rt,
                    cfg,
                    &facts,
                    prompt_tokens,
                    req.max_tokens,
                    now.timestamp_millis(),
                )
            })
            .flatten()
            .filter(|(_, c)| {
                *c == 0.0
                    || state.budgets.verdict(cfg, &caller, *c, now).state != BudgetState::Exhausted
            });
        match cheapest {
            Some((target, c)) => {
                downgraded = Some(format!("to {target}: {}", verdict.describe(now)));
                state.metrics.add(
                    metrics::BUDGET_ACTIONS,
                    vec![("action", "downgraded".to_owned())],
                    1.0,
                );
                targets = vec![target];
                cost = c;
            }
            None => {
                state.metrics.add(
                    metrics::BUDGET_ACTIONS,
                    vec![("action", "rejected".to_owned())],
                    1.0,
                );
                let mut err = ApiError::new(
                    ErrorCode::BudgetExceeded,
                    format!(
                        "{}; this request needs up to ${cost:.6}",
                        verdict.describe(now)
                    ),
                );
                err.retry_after_s = verdict.resets_in_s(now);
                return Err(Failed {
                    err,
                    route: Some(decision.route.clone()),
                    backend: None,
                });
            }
        }
    }
    let has_budget =
        purpose == Purpose::Answer && !crate::budget::scopes_of(cfg, &caller).is_empty();
    let reservation = has_budget.then(|| state.budgets.reserve(cfg, &caller, cost, now));
    let explanation = {
        let e = watershed_policies::explain(cfg, &facts, &scan.evidence);
        let mut v =
            crate::classify::explanation_json(cfg, &e, declared, &caller, scan.failed.as_ref());
        v["budget_detail"] = serde_json::json!({
            "state": verdict.state.as_str(),
            "reserved_usd": cost,
            "detail": verdict.describe(now),
            "downgraded": downgraded,
        });
        v.to_string()
    };
    let rule = cfg.route(&decision.route);
    Ok(Prepared {
        request_id: request_id.to_owned(),
        now,
        req,
        redact: rule.is_some_and(|r| r.redact),
        counterfactual: rule
            .and_then(|r| r.counterfactual.clone())
            .or_else(|| cfg.counterfactual.clone()),
        route: decision.route,
        privacy: decision.privacy,
        targets,
        needs: facts.needs,
        difficulty: facts.difficulty,
        estimated_tokens: u32::try_from(prompt_tokens).unwrap_or(u32::MAX),
        caller,
        budget: verdict.state,
        downgraded,
        reservation,
        explanation,
    })
}

/// The `x-watershed-privacy` header, if the client sent one.
fn declared_privacy(headers: &HeaderMap) -> Result<Option<PrivacyLevel>, ApiError> {
    let Some(v) = headers.get(PRIVACY_HEADER) else {
        return Ok(None);
    };
    v.to_str()
        .ok()
        .and_then(|s| s.trim().parse::<PrivacyLevel>().ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::bad_request(
                format!(
                    "invalid {PRIVACY_HEADER} header {:?}: expected public, internal, confidential or restricted",
                    String::from_utf8_lossy(v.as_bytes())
                ),
                Some(PRIVACY_HEADER),
            )
        })
}

/// The most a request can cost on `target`: the prompt estimate with a margin
/// for tokenizers that split finer, and every completion token it may
/// generate. Local targets cost nothing against budgets.
fn upper_bound_usd(
    rt: &Runtime,
    target: &str,
    prompt_tokens: u64,
    max_tokens: Option<u32>,
    now_ms: i64,
) -> f64 {
    let Some(t) = rt.target(target) else {
        return 0.0;
    };
    if t.kind == BackendKind::Local {
        return 0.0;
    }
    let default = rt.config.target(target).and_then(|c| match &c.spec {
        watershed_policies::TargetSpec::Remote(r) => r.max_tokens_default,
        watershed_policies::TargetSpec::Local(_) => None,
    });
    let usage = Usage {
        prompt_tokens: u32::try_from(prompt_tokens.saturating_mul(4) / 3 + 1).unwrap_or(u32::MAX),
        completion_tokens: max_tokens.or(default).unwrap_or(RESERVE_COMPLETION_TOKENS),
        cached_prompt_tokens: 0,
    };
    rt.prices
        .cost_for(&[t.id.as_str(), t.model_name.as_str()], now_ms, usage)
}

/// The cheapest target allowed for `facts` (a ready local one costs
/// nothing): inside the trust boundary its privacy needs, lacking nothing it
/// needs; for requests downgraded by an exhausted budget.
fn cheapest_allowed(
    rt: &Runtime,
    cfg: &watershed_policies::Config,
    facts: &RequestFacts,
    prompt_tokens: u64,
    max_tokens: Option<u32>,
    now_ms: i64,
) -> Option<(String, f64)> {
    cfg.models
        .keys()
        .filter(|id| watershed_policies::skip_reason(cfg, id, facts).is_none())
        .filter(|id| rt.target(id).is_some_and(|t| t.missing_key.is_none()))
        .map(|id| {
            (
                id.clone(),
                upper_bound_usd(rt, id, prompt_tokens, max_tokens, now_ms),
            )
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))
}

/// The request field a 400 `missing_capability` names: for images the first
/// image's own place in the client's wire format
/// (`messages[0].content[1].image_url.url`), else the capability's field.
pub(crate) fn capability_param(cap: Capability, req: &ChatRequest) -> String {
    let image = (cap == Capability::Vision)
        .then(|| req.messages.iter().flat_map(|m| m.images()).next())
        .flatten();
    match image {
        Some(img) => img.field.clone(),
        None => cap.request_field().to_owned(),
    }
}

fn denial_error(d: Denial, req: &ChatRequest) -> ApiError {
    match d {
        Denial::UnknownModel { .. } => ApiError::new(ErrorCode::NotFound, d.to_string()),
        Denial::MissingCapability { capability, .. } => ApiError {
            param: Some(capability_param(capability, req)),
            ..ApiError::new(ErrorCode::MissingCapability, d.to_string())
        },
        _ => ApiError::new(ErrorCode::PolicyDenied, d.to_string()),
    }
}
