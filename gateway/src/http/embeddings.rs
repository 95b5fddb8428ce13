//! `POST /v1/embeddings` (OpenAI wire format): a wire adapter over the shared
//! request pipeline. The body becomes the canonical request with its
//! `embedding` set, so classification reads every input text like a message
//! (`ChatRequest::outbound_texts`), and admission (key, privacy, route,
//! budget reservation) is the one chat uses; then the route's targets that
//! can embed are tried in order and one ledger record is written, with the
//! input tokens and no completion tokens.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use tokio::time::Instant;
use tracing::warn;
use watershed_policies::PrivacyLevel;
use watershed_providers::openai::{embeddings_response_json, parse_embeddings_request};
use watershed_providers::{
    Completion, EmbeddingInput, ErrorCode, FinishReason, ProviderError, Usage,
};

use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::http::chat::{self, Failed, Purpose, PRIVACY_HEADER};
use crate::meter::{BudgetHold, Meter, RequestInfo};
use crate::state::{AppState, Runtime, TargetHandle};
use crate::telemetry::TraceContext;

pub async fn embeddings(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<JsonBody, ApiError>,
) -> Response {
    let request_id = chat::new_request_id();
    let rt = state.runtime();
    let mut resp = match handle(&state, &rt, headers, body, &request_id).await {
        Ok(resp) => resp,
        Err(Failed {
            err,
            route,
            backend,
        }) => {
            if err.status().is_server_error() {
                warn!(request_id = %request_id, code = err.code.as_str(), message = %err.message, "embeddings request failed");
            }
            let mut resp = err.into_response();
            if let Some(route) = &route {
                chat::set_header(&mut resp, "x-watershed-route", route);
            }
            if let Some(backend) = &backend {
                chat::set_header(&mut resp, "x-watershed-backend", backend);
            }
            resp
        }
    };
    chat::set_header(&mut resp, "x-request-id", &request_id);
    resp
}

/// Token-id inputs carry nothing the detectors can read, so a request with
/// any is classed at least confidential: it is embedded by the local engine
/// or a trusted target, never outside the trust boundary.
fn raise_for_token_inputs(headers: &mut HeaderMap, req: &watershed_providers::ChatRequest) {
    let has_tokens = req.embedding.as_ref().is_some_and(|p| {
        p.inputs
            .iter()
            .any(|i| matches!(i, EmbeddingInput::Tokens(_)))
    });
    if !has_tokens {
        return;
    }
    let declared = headers
        .get(PRIVACY_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<PrivacyLevel>().ok());
    // A header that does not parse is left alone: admission refuses it by name.
    let unreadable = headers.contains_key(PRIVACY_HEADER) && declared.is_none();
    if !unreadable && declared.is_none_or(|d| d < PrivacyLevel::Confidential) {
        headers.insert(
            PRIVACY_HEADER,
            HeaderValue::from_static(PrivacyLevel::Confidential.as_str()),
        );
    }
}

async fn handle(
    state: &Arc<AppState>,
    rt: &Arc<Runtime>,
    mut headers: HeaderMap,
    body: Result<JsonBody, ApiError>,
    request_id: &str,
) -> Result<Response, Failed> {
    let JsonBody(body) = body?;
    let (mut req, format) =
        parse_embeddings_request(&body, rt.config.server.max_embedding_inputs as usize)?;
    drop(body);
    // An embedding generates nothing: reserve for one completion token, not
    // for a chat answer's default.
    req.max_tokens = Some(1);
    raise_for_token_inputs(&mut headers, &req);
    let (mut prepared, scan) =
        chat::admit(state, rt, &headers, req, request_id, Purpose::Answer).await?;
    let info = RequestInfo {
        request_id: prepared.request_id.clone(),
        ts_ms: prepared.now.timestamp_millis(),
        team: prepared.caller.team.clone(),
        key_id: prepared.caller.key_id.clone(),
        route: prepared.route.clone(),
        privacy: prepared.privacy.as_str().to_owned(),
        stream: false,
        difficulty: prepared.difficulty,
        estimated_prompt_tokens: prepared.estimated_tokens,
        // The all-closed reference is a chat model; an embedding has no
        // counterpart there.
        counterfactual_model: None,
        fleet_usd_per_engine_second: rt
            .config
            .fleet
            .as_ref()
            .map_or(0.0, |f| f64::from(f.gpus) * f.gpu_hour_usd / 3600.0),
        requested_model: prepared.req.model.clone(),
        explanation: Some(std::mem::take(&mut prepared.explanation)),
        max_tokens: None,
        temperature: None,
        trace: TraceContext::from_headers(&headers),
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
    let allowed = crate::dispatch::allowed_targets(rt, &prepared.targets, prepared.privacy, false);
    let wants_dimensions = prepared
        .req
        .embedding
        .as_ref()
        .is_some_and(|p| p.dimensions.is_some());
    let targets = embedding_targets(allowed, wants_dimensions);
    let targets = match targets {
        Ok(t) => t,
        Err(err) => {
            let failed = Failed::at(err.clone(), &prepared.route, &meter);
            meter.failure(err.code);
            return Err(failed);
        }
    };
    let outbound = crate::dispatch::Outbound::new(
        prepared.req.clone(),
        prepared.redact,
        &scan.per_piece,
        &state.metrics,
    );
    let deadline =
        Instant::now() + std::time::Duration::from_millis(rt.config.server.request_deadline_ms);
    let mut last: Option<ProviderError> = None;
    for t in &targets {
        meter.attempt(t);
        let (req, _) = outbound.for_target(t);
        let result = match tokio::time::timeout_at(deadline, t.provider.embed(req)).await {
            Ok(r) => r,
            Err(_) => Err(ProviderError::Deadline {
                after_ms: rt.config.server.request_deadline_ms,
            }),
        };
        match result {
            Ok(e) => {
                let done = Completion {
                    model: e.model.clone(),
                    finish_reason: FinishReason::Stop,
                    stop_sequence: None,
                    usage: Usage {
                        prompt_tokens: e.prompt_tokens,
                        completion_tokens: 0,
                        cached_prompt_tokens: 0,
                    },
                    engine_seconds: e.engine_seconds,
                };
                let charged = meter.success(&done);
                let mut resp = axum::Json(embeddings_response_json(&e, format)).into_response();
                chat::decision_headers(&mut resp, &prepared, &outbound, t);
                chat::set_header(
                    &mut resp,
                    "x-watershed-cost-usd",
                    &format!("{:.8}", charged.cost_usd),
                );
                return Ok(resp);
            }
            // The request itself is wrong (an input over the context, say):
            // another target would refuse it too.
            Err(e) if e.code() == ErrorCode::BadRequest => {
                last = Some(e);
                break;
            }
            Err(e @ ProviderError::Deadline { .. }) => {
                last = Some(e);
                break;
            }
            Err(e) => {
                warn!(request_id = %request_id, backend = %t.id, error = %e, "embeddings target failed");
                last = Some(e);
            }
        }
    }
    let err = last.map(ApiError::from).unwrap_or_else(|| {
        ApiError::new(
            ErrorCode::UpstreamUnavailable,
            format!(
                "no allowed target can embed for route \"{}\"",
                prepared.route
            ),
        )
    });
    let failed = Failed::at(err.clone(), &prepared.route, &meter);
    meter.failure(err.code);
    Err(failed)
}

/// Whether a backend can serve an embeddings request: the target-kind check
/// dispatch makes after the policy's (`watershed_policies::supports_embeddings`).
fn can_embed(t: &TargetHandle) -> bool {
    t.provider.capabilities().embeddings
}

/// The route's allowed targets that can embed, and of those, when the
/// client asks for `dimensions`, only the ones that accept it; a 400 naming
/// `dimensions` when none does.
fn embedding_targets(
    allowed: Vec<Arc<TargetHandle>>,
    wants_dimensions: bool,
) -> Result<Vec<Arc<TargetHandle>>, ApiError> {
    let embedders: Vec<_> = allowed
        .into_iter()
        .filter(|t| {
            let ok = can_embed(t);
            if !ok {
                warn!(target_id = %t.id, capability = "embeddings", "dispatch skipped a target lacking a capability");
            }
            ok
        })
        .collect();
    if !wants_dimensions || embedders.is_empty() {
        return Ok(embedders);
    }
    let with: Vec<_> = embedders
        .iter()
        .filter(|t| t.provider.capabilities().embedding_dimensions)
        .cloned()
        .collect();
    if with.is_empty() {
        let names: Vec<&str> = embedders.iter().map(|t| t.id.as_str()).collect();
        return Err(ApiError::bad_request(
            format!(
                "dimensions is not supported by the targets that may embed this request ({})",
                names.join(", ")
            ),
            Some("dimensions"),
        ));
    }
    Ok(with)
}
