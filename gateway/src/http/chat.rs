//! `POST /v1/chat/completions` (OpenAI wire format) and `POST /v1/messages`
//! (Anthropic wire format): parse, classify and route, dispatch, answer (JSON or
//! SSE) in the format the client spoke, meter.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures::{stream, StreamExt};
use tracing::warn;
use watershed_policies::{decide, BudgetState, Denial, OnExhausted, PrivacyLevel};
use watershed_providers::{
    anthropic, openai, BackendKind, ChatRequest, ErrorCode, StreamEvent, Usage,
};

use crate::access::{self, Caller};
use crate::budget::{Refusal, Reservation};
use crate::dispatch::{self, Outbound};
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::meter::{BudgetHold, Meter, RequestInfo};
use crate::metrics;
use crate::scan::Scan;
use crate::state::{AppState, Runtime};
use crate::telemetry::TraceContext;

pub const PRIVACY_HEADER: &str = "x-watershed-privacy";

/// Everything decided about a request before dispatch.
struct Prepared {
    request_id: String,
    /// The request's instant on the application's clock: its ledger `ts_ms`,
    /// its budget windows and the prices it is charged at.
    now: chrono::DateTime<chrono::Utc>,
    req: ChatRequest,
    route: String,
    privacy: PrivacyLevel,
    targets: Vec<String>,
    difficulty: Option<f64>,
    /// About four characters per token: only for records of requests that
    /// never reported usage.
    estimated_tokens: u32,
    caller: Caller,
    /// The route's `redact` option.
    redact: bool,
    /// The all-closed reference model: the route's own, else the config's.
    counterfactual: Option<String>,
    /// Budget state of the caller, and what was done about it.
    budget: BudgetState,
    downgraded: Option<String>,
    reservation: Option<Reservation>,
    /// The decision's explanation (JSON, no values) for the ledger.
    explanation: String,
}

/// Completion tokens reserved for a request that sets no `max_tokens` and
/// whose target has no `max_tokens_default`.
const RESERVE_COMPLETION_TOKENS: u32 = 4096;

/// The wire format a client spoke; answers and errors go back in the same one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    OpenAi,
    Anthropic,
}

pub async fn chat_completions(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<JsonBody, ApiError>,
) -> Response {
    entry(state, headers, body, Wire::OpenAi).await
}

pub async fn messages(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<JsonBody, ApiError>,
) -> Response {
    entry(state, headers, body, Wire::Anthropic).await
}

/// An error answer with what had been decided when it happened: the route,
/// once one was chosen, and the last backend tried, once one was.
struct Failed {
    err: ApiError,
    route: Option<String>,
    backend: Option<String>,
}

impl From<ApiError> for Failed {
    fn from(err: ApiError) -> Self {
        Failed {
            err,
            route: None,
            backend: None,
        }
    }
}

impl From<watershed_providers::ProviderError> for Failed {
    fn from(e: watershed_providers::ProviderError) -> Self {
        ApiError::from(e).into()
    }
}

impl Failed {
    fn at(err: ApiError, route: &str, meter: &Meter) -> Self {
        Failed {
            err,
            route: Some(route.to_owned()),
            backend: meter.backend_id().map(str::to_owned),
        }
    }
}

async fn entry(
    state: Arc<AppState>,
    headers: HeaderMap,
    body: Result<JsonBody, ApiError>,
    wire: Wire,
) -> Response {
    let request_id = new_request_id();
    let rt = state.runtime();
    let mut resp = match handle(&state, &rt, &headers, body, &request_id, wire).await {
        Ok(resp) => resp,
        Err(Failed {
            err,
            route,
            backend,
        }) => {
            if err.status().is_server_error() {
                warn!(request_id = %request_id, code = err.code.as_str(), message = %err.message, "request failed");
            }
            let mut resp = error_response(err, wire);
            if let Some(route) = &route {
                set_header(&mut resp, "x-watershed-route", route);
            }
            if let Some(backend) = &backend {
                set_header(&mut resp, "x-watershed-backend", backend);
            }
            resp
        }
    };
    set_header(&mut resp, "x-request-id", &request_id);
    resp
}

async fn handle(
    state: &Arc<AppState>,
    rt: &Arc<Runtime>,
    headers: &HeaderMap,
    body: Result<JsonBody, ApiError>,
    request_id: &str,
    wire: Wire,
) -> Result<Response, Failed> {
    let JsonBody(body) = body?;
    let req = match wire {
        Wire::OpenAi => openai::parse_chat_request(&body)?,
        Wire::Anthropic => anthropic::parse_messages_request(&body)?,
    };
    drop(body);
    let (mut prepared, scan) = admit(state, rt, headers, req, request_id, Purpose::Answer).await?;
    let info = RequestInfo {
        request_id: prepared.request_id.clone(),
        ts_ms: prepared.now.timestamp_millis(),
        team: prepared.caller.team.clone(),
        key_id: prepared.caller.key_id.clone(),
        route: prepared.route.clone(),
        privacy: prepared.privacy.as_str().to_owned(),
        stream: prepared.req.stream,
        difficulty: prepared.difficulty,
        estimated_prompt_tokens: prepared.estimated_tokens,
        counterfactual_model: prepared.counterfactual.take(),
        fleet_usd_per_engine_second: rt
            .config
            .fleet
            .as_ref()
            .map_or(0.0, |f| f64::from(f.gpus) * f.gpu_hour_usd / 3600.0),
        requested_model: prepared.req.model.clone(),
        explanation: Some(std::mem::take(&mut prepared.explanation)),
        max_tokens: prepared.req.max_tokens,
        temperature: prepared.req.temperature,
        trace: TraceContext::from_headers(headers),
    };
    let mut meter = Meter::start(
        info,
        state.ledger.clone(),
        rt.prices.clone(),
        state.metrics.clone(),
        state.traces.clone(),
    );
    if let Some(reservation) = prepared.reservation.take() {
        meter.hold_budget(BudgetHold {
            reservation,
            book: state.budgets.clone(),
            config: rt.config.clone(),
            clock: state.clock.clone(),
        });
    }
    let targets = dispatch::allowed_targets(
        rt,
        &prepared.targets,
        prepared.privacy,
        prepared.req.needs_tools(),
    );
    let outbound = Outbound::new(
        prepared.req.clone(),
        prepared.redact,
        &scan.per_piece,
        &state.metrics,
    );
    if prepared.req.stream {
        let limits = dispatch::Limits::of(&rt.config.server);
        stream_answer(prepared, outbound, targets, meter, wire, limits).await
    } else {
        let limits = dispatch::Limits::of(&rt.config.server);
        let result = dispatch::chat(&targets, &outbound, &mut meter, &prepared.route, limits).await;
        match result {
            Ok((target, answer)) => {
                let charged = meter.success(&answer.done);
                let body = match wire {
                    Wire::OpenAi => openai::response_json(
                        &completion_id(&prepared.request_id),
                        prepared.now.timestamp(),
                        &answer.done.model,
                        &answer,
                    ),
                    Wire::Anthropic => anthropic::messages_response_json(
                        &message_id(&prepared.request_id),
                        &answer.done.model,
                        &answer,
                    ),
                };
                let mut resp = axum::Json(body).into_response();
                decision_headers(&mut resp, &prepared, &outbound, &target);
                set_header(
                    &mut resp,
                    "x-watershed-cost-usd",
                    &format!("{:.8}", charged.cost_usd),
                );
                Ok(resp)
            }
            Err(e) => {
                let err = ApiError::from(e);
                let failed = Failed::at(err.clone(), &prepared.route, &meter);
                meter.failure(err.code);
                Err(failed)
            }
        }
    }
}

/// What a request is admitted for: an answer (its budget is checked and
/// reserved), or only a count of its prompt (which costs nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Answer,
    Count,
}

/// Classify and route a parsed request: the one path both the answering
/// endpoints and `count_tokens` take, so a count is routed, privacy first,
/// exactly as the answer would be.
async fn admit(
    state: &Arc<AppState>,
    rt: &Arc<Runtime>,
    headers: &HeaderMap,
    req: ChatRequest,
    request_id: &str,
    purpose: Purpose,
) -> Result<(Prepared, Scan), Failed> {
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

/// `POST /v1/messages/count_tokens`: the prompt's input tokens, `{"input_tokens": N}`.
///
/// Routed like the message it counts (a confidential prompt is only counted
/// by a target inside the trust boundary): the first allowed target that is
/// available counts it, exactly for the local engine (its own template and
/// tokenizer) and Anthropic (forwarded to its count_tokens); any other target
/// has no way to count, so the answer is the gateway's estimate and says so
/// in `x-watershed-estimate: true`. Nothing is generated, so nothing is
/// metered.
pub async fn count_tokens(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<JsonBody, ApiError>,
) -> Response {
    let request_id = new_request_id();
    let rt = state.runtime();
    let mut resp = match count(&state, &rt, &headers, body, &request_id).await {
        Ok(resp) => resp,
        Err(Failed {
            err,
            route,
            backend,
        }) => {
            let mut resp = error_response(err, Wire::Anthropic);
            if let Some(route) = &route {
                set_header(&mut resp, "x-watershed-route", route);
            }
            if let Some(backend) = &backend {
                set_header(&mut resp, "x-watershed-backend", backend);
            }
            resp
        }
    };
    set_header(&mut resp, "x-request-id", &request_id);
    resp
}

async fn count(
    state: &Arc<AppState>,
    rt: &Arc<Runtime>,
    headers: &HeaderMap,
    body: Result<JsonBody, ApiError>,
    request_id: &str,
) -> Result<Response, Failed> {
    let JsonBody(mut body) = body?;
    // count_tokens takes a Messages body without `max_tokens`.
    if let Some(obj) = body.as_object_mut() {
        obj.entry("max_tokens").or_insert(serde_json::json!(1));
        obj.remove("stream");
    }
    let req = anthropic::parse_messages_request(&body)?;
    drop(body);
    let (prepared, scan) = admit(state, rt, headers, req, request_id, Purpose::Count).await?;
    let targets = dispatch::allowed_targets(
        rt,
        &prepared.targets,
        prepared.privacy,
        prepared.req.needs_tools(),
    );
    let outbound = Outbound::new(
        prepared.req.clone(),
        prepared.redact,
        &scan.per_piece,
        &state.metrics,
    );
    let mut counted = None;
    let mut last_err = None;
    let mut backend = None;
    for t in targets.iter().filter(|t| t.missing_key.is_none()) {
        let (req, _) = outbound.for_target(t);
        match t.provider.count_tokens(req).await {
            Ok(Some(n)) => {
                counted = Some((t.id.clone(), n));
                break;
            }
            // The first target that would answer cannot count: estimate.
            Ok(None) => {
                backend = Some(t.id.clone());
                break;
            }
            Err(e) => {
                warn!(request_id = %request_id, backend = %t.id, error = %e, "count_tokens failed");
                backend = Some(t.id.clone());
                last_err = Some(e);
            }
        }
    }
    let (backend, tokens, estimate) = match (counted, backend, last_err) {
        (Some((id, n)), _, _) => (Some(id), n, false),
        (None, Some(id), None) => (Some(id), prepared.estimated_tokens, true),
        (None, backend, Some(e)) => {
            return Err(Failed {
                err: ApiError::from(e),
                route: Some(prepared.route.clone()),
                backend,
            })
        }
        (None, None, None) => {
            return Err(Failed {
                err: ApiError::new(
                    ErrorCode::UpstreamUnavailable,
                    format!("no allowed target can serve route \"{}\"", prepared.route),
                ),
                route: Some(prepared.route.clone()),
                backend: None,
            })
        }
    };
    let mut resp = axum::Json(serde_json::json!({"input_tokens": tokens})).into_response();
    set_header(&mut resp, "x-watershed-route", &prepared.route);
    if let Some(b) = &backend {
        set_header(&mut resp, "x-watershed-backend", b);
    }
    if estimate {
        set_header(&mut resp, "x-watershed-estimate", "true");
    }
    Ok(resp)
}

/// An error in the client's wire format, with its `retry-after`.
fn error_response(err: ApiError, wire: Wire) -> Response {
    match wire {
        Wire::OpenAi => err.into_response(),
        Wire::Anthropic => {
            let mut resp = (
                err.status(),
                axum::Json(anthropic::error_json(err.code, &err.message)),
            )
                .into_response();
            if let Some(secs) = err.retry_after_s {
                set_header(&mut resp, "retry-after", &secs.to_string());
            }
            resp
        }
    }
}

fn prepare(
    state: &AppState,
    rt: &Runtime,
    headers: &HeaderMap,
    req: ChatRequest,
    scan: &Scan,
    request_id: &str,
    purpose: Purpose,
) -> Result<Prepared, Failed> {
    let cfg = &rt.config;
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
    let decision = decide(cfg, &facts).map_err(denial_error)?;
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
                    decision.privacy,
                    req.needs_tools(),
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

/// The cheapest target allowed at `privacy` (a ready local one costs nothing),
/// for requests downgraded by an exhausted budget.
fn cheapest_allowed(
    rt: &Runtime,
    privacy: PrivacyLevel,
    needs_tools: bool,
    prompt_tokens: u64,
    max_tokens: Option<u32>,
    now_ms: i64,
) -> Option<(String, f64)> {
    rt.config
        .models
        .keys()
        .filter(|id| watershed_policies::allowed(&rt.config, id, privacy))
        .filter(|id| !needs_tools || watershed_policies::supports_tools(&rt.config, id))
        .filter(|id| rt.target(id).is_some_and(|t| t.missing_key.is_none()))
        .map(|id| {
            (
                id.clone(),
                upper_bound_usd(rt, id, prompt_tokens, max_tokens, now_ms),
            )
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))
}

/// The headers that say how a request was decided.
fn decision_headers(
    resp: &mut Response,
    prepared: &Prepared,
    outbound: &Outbound,
    target: &crate::state::TargetHandle,
) {
    set_header(resp, "x-watershed-route", &prepared.route);
    set_header(resp, "x-watershed-backend", &target.id);
    if prepared.budget != BudgetState::Available {
        set_header(resp, "x-watershed-budget", prepared.budget.as_str());
    }
    if let Some(note) = &prepared.downgraded {
        set_header(resp, "x-watershed-downgraded", note);
    }
    if !target.trusted && outbound.redacted_values() > 0 {
        set_header(
            resp,
            "x-watershed-redacted",
            &outbound.redacted_values().to_string(),
        );
    }
}

fn denial_error(d: Denial) -> ApiError {
    match d {
        Denial::UnknownModel { .. } => ApiError::new(ErrorCode::NotFound, d.to_string()),
        Denial::MissingCapability { capability, .. } => {
            ApiError::bad_request(d.to_string(), Some(capability))
        }
        _ => ApiError::new(ErrorCode::PolicyDenied, d.to_string()),
    }
}

async fn stream_answer(
    prepared: Prepared,
    outbound: Outbound,
    targets: Vec<Arc<crate::state::TargetHandle>>,
    mut meter: Meter,
    wire: Wire,
    limits: dispatch::Limits,
) -> Result<Response, Failed> {
    let upstream =
        dispatch::chat_stream(&targets, &outbound, &mut meter, &prepared.route, limits).await;
    let (target, upstream) = match upstream {
        Ok(ok) => ok,
        Err(e) => {
            let err = ApiError::from(e);
            let failed = Failed::at(err.clone(), &prepared.route, &meter);
            meter.failure(err.code);
            return Err(failed);
        }
    };
    let mut encoder = Encoder::new(wire, &prepared, &target.model_name);
    // Anthropic's message_start announces the input tokens before the first
    // token. The local engine's count is exact and cheap (its template and
    // tokenizer, as generation uses them); other backends report theirs only
    // at the end, so they get the estimate.
    let input_tokens = match (wire, target.kind) {
        (Wire::Anthropic, BackendKind::Local) => target
            .provider
            .count_tokens(outbound.for_target(&target).0)
            .await
            .ok()
            .flatten(),
        _ => None,
    }
    .unwrap_or_else(|| meter.estimated_prompt_tokens());
    let head = stream::iter(encoder.start(input_tokens));
    // The meter lives inside the stream: when the client disconnects, axum drops
    // the stream and the meter records the request as cancelled.
    let mut meter = Some(meter);
    let request_id = prepared.request_id.clone();
    let body = upstream.flat_map(move |item| {
        let out = match item {
            Ok(ev) => {
                match &ev {
                    StreamEvent::Delta(_) | StreamEvent::ToolCall(_) | StreamEvent::Logprobs(_) => {
                        if let Some(m) = meter.as_mut() {
                            m.delta();
                        }
                    }
                    StreamEvent::Done(done) => {
                        if let Some(m) = meter.take() {
                            m.success(done);
                        }
                    }
                }
                encoder.event(&ev)
            }
            Err(e) => {
                warn!(request_id = %request_id, error = %e, "stream failed after it started");
                let err = ApiError::from(e);
                if let Some(m) = meter.take() {
                    m.failure(err.code);
                }
                vec![encoder.error(&err)]
            }
        };
        stream::iter(out)
    });
    let events = head.chain(body).map(Ok::<Event, Infallible>);
    let mut resp = Sse::new(events).into_response();
    decision_headers(&mut resp, &prepared, &outbound, &target);
    set_header(&mut resp, "cache-control", "no-cache");
    Ok(resp)
}

/// Turns canonical stream events into SSE events of the client's wire format.
enum Encoder {
    OpenAi(openai::ChunkBuilder),
    Anthropic(anthropic::MessagesStreamEncoder),
}

impl Encoder {
    fn new(wire: Wire, prepared: &Prepared, model: &str) -> Self {
        match wire {
            Wire::OpenAi => Encoder::OpenAi(openai::ChunkBuilder::new(
                &completion_id(&prepared.request_id),
                prepared.now.timestamp(),
                model,
                prepared.req.include_usage,
            )),
            Wire::Anthropic => Encoder::Anthropic(anthropic::MessagesStreamEncoder::new(
                &message_id(&prepared.request_id),
                model,
            )),
        }
    }

    fn start(&mut self, input_tokens: u32) -> Vec<Event> {
        match self {
            Encoder::OpenAi(b) => vec![sse(&b.role())],
            Encoder::Anthropic(e) => e.start(input_tokens).iter().map(named).collect(),
        }
    }

    fn event(&mut self, ev: &StreamEvent) -> Vec<Event> {
        match self {
            Encoder::OpenAi(b) => {
                let mut out: Vec<Event> = b.on_event(ev).iter().map(sse).collect();
                if matches!(ev, StreamEvent::Done(_)) {
                    out.push(Event::default().data("[DONE]"));
                }
                out
            }
            Encoder::Anthropic(e) => e.on_event(ev).iter().map(named).collect(),
        }
    }

    /// An error after the stream started. OpenAI sends a data line holding an
    /// error object and ends without `[DONE]`; Anthropic sends an `error` event.
    fn error(&self, err: &ApiError) -> Event {
        match self {
            Encoder::OpenAi(_) => {
                let body = serde_json::json!({
                    "error": {"message": err.message, "type": "server_error", "code": err.code.as_str(), "param": null}
                });
                Event::default().data(body.to_string())
            }
            Encoder::Anthropic(e) => named(&e.error(err.code, &err.message)),
        }
    }
}

fn named((name, data): &(&'static str, serde_json::Value)) -> Event {
    Event::default().event(*name).data(data.to_string())
}

fn sse(value: &serde_json::Value) -> Event {
    Event::default().data(value.to_string())
}

pub fn new_request_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

fn completion_id(request_id: &str) -> String {
    format!("chatcmpl-{request_id}")
}

fn message_id(request_id: &str) -> String {
    format!("msg_{request_id}")
}

pub fn set_header(resp: &mut Response, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(HeaderName::from_static(name), v);
    }
}
