//! Embeddings through the pipeline: admitted (key, classification of every
//! input as outbound text, route, budget reservation) and metered like an
//! answer; dispatched to the route's allowed targets that can embed by the
//! same loop as an answer (`dispatch::embed`: order, breakers, pools, each
//! target's `retries` with backoff, `server.request_deadline_ms`). One ledger record with the
//! input tokens and no completion tokens.

use std::sync::Arc;

use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use watershed_providers::{ChatRequest, Completion, Embeddings, ErrorCode, FinishReason, Usage};

use super::{
    admit, decision_headers, set_header, start_meter, Call, Failed, Headers, Metered, Prepared,
    Purpose,
};
use crate::dispatch::{self, Outbound};
use crate::error::ApiError;
use crate::meter::Charged;
use crate::state::TargetHandle;

/// An embeddings request the pipeline answered, and how it was decided.
pub struct Embedded {
    pub prepared: Prepared,
    pub target: Arc<TargetHandle>,
    pub embeddings: Embeddings,
    pub charged: Charged,
    headers: Headers,
}

impl Embedded {
    /// `body` as a JSON answer with the decision and cost headers.
    pub fn respond(self, body: serde_json::Value) -> Response {
        let mut resp = axum::Json(body).into_response();
        self.headers.apply(&mut resp);
        set_header(
            &mut resp,
            "x-watershed-cost-usd",
            &format!("{:.8}", self.charged.cost_usd),
        );
        resp
    }
}

/// Classify, decide, reserve, dispatch and meter an embeddings request
/// (`req.embedding` set).
pub async fn embed(call: &Call, headers: &HeaderMap, req: ChatRequest) -> Result<Embedded, Failed> {
    let (state, rt) = (&call.state, &call.rt);
    let (mut prepared, scan) =
        admit::admit(state, rt, headers, req, &call.request_id, Purpose::Answer).await?;
    super::refuse_paid_while_journal_full(call, &prepared)?;
    let mut meter = start_meter(call, headers, &mut prepared, Metered::Embedding);
    // The request needs embeddings, so targets that cannot embed are left out.
    let allowed =
        dispatch::allowed_targets(rt, &prepared.targets, prepared.privacy, &prepared.needs);
    let wants_dimensions = prepared
        .req
        .embedding
        .as_ref()
        .is_some_and(|p| p.dimensions.is_some());
    let targets = match embedding_targets(allowed, wants_dimensions) {
        Ok(t) => t,
        Err(err) => {
            let failed = Failed::at(err.clone(), &prepared.route, &meter);
            meter.failure(err.code);
            return Err(failed);
        }
    };
    let outbound = Outbound::new(
        prepared.req.clone(),
        prepared.redact,
        &scan.per_piece,
        &state.metrics,
    );
    if targets.is_empty() {
        let err = ApiError::new(
            ErrorCode::UpstreamUnavailable,
            format!(
                "no allowed target can embed for route \"{}\"",
                prepared.route
            ),
        );
        let failed = Failed::at(err.clone(), &prepared.route, &meter);
        meter.failure(err.code);
        return Err(failed);
    }
    let limits = dispatch::Limits::of(&rt.config.server);
    let route = prepared.route.clone();
    match dispatch::embed(&targets, &outbound, &mut meter, &route, limits).await {
        Ok((t, embeddings)) => {
            let done = Completion {
                model: embeddings.model.clone(),
                finish_reason: FinishReason::Stop,
                stop_sequence: None,
                usage: Usage {
                    prompt_tokens: embeddings.prompt_tokens,
                    completion_tokens: 0,
                    cached_prompt_tokens: 0,
                },
                engine_seconds: embeddings.engine_seconds,
            };
            let charged = meter.success(&done);
            let headers = decision_headers(&prepared, &outbound, &t);
            Ok(Embedded {
                prepared,
                target: t,
                embeddings,
                charged,
                headers,
            })
        }
        Err(e) => {
            let err = ApiError::from(e);
            let failed = Failed::at(err.clone(), &prepared.route, &meter);
            meter.failure(err.code);
            Err(failed)
        }
    }
}

/// The route's allowed targets (all of which can embed), and of those, when the
/// client asks for `dimensions`, only the ones that accept it; a 400 naming
/// `dimensions` when none does.
fn embedding_targets(
    embedders: Vec<Arc<TargetHandle>>,
    wants_dimensions: bool,
) -> Result<Vec<Arc<TargetHandle>>, ApiError> {
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
