//! `POST /v1/embeddings` (OpenAI wire format): a wire adapter over the request
//! pipeline. The body becomes the canonical request with its `embedding`
//! set, so classification reads every input text like a message
//! (`ChatRequest::outbound_texts`) and admission (key, privacy, route,
//! budget reservation) is the one every endpoint uses; `pipeline::embed`
//! tries the route's targets that can embed and writes one ledger record,
//! with the input tokens and no completion tokens.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;
use watershed_policies::PrivacyLevel;
use watershed_providers::openai::{embeddings_response_json, parse_embeddings_request};
use watershed_providers::EmbeddingInput;

use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::pipeline::{self, Call, Failed, Wire, PRIVACY_HEADER};
use crate::state::AppState;

pub async fn embeddings(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<JsonBody, ApiError>,
) -> Response {
    pipeline::serve(state, Wire::OpenAi, move |call| {
        Box::pin(async move { handle(call, headers, body).await })
    })
    .await
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
    call: Call,
    mut headers: HeaderMap,
    body: Result<JsonBody, ApiError>,
) -> Result<Response, Failed> {
    let JsonBody(body) = body?;
    let (mut req, format) =
        parse_embeddings_request(&body, call.rt.config.server.max_embedding_inputs as usize)?;
    drop(body);
    // An embedding generates nothing: reserve for one completion token, not
    // for a chat answer's default.
    req.max_tokens = Some(1);
    raise_for_token_inputs(&mut headers, &req);
    let done = pipeline::embed(&call, &headers, req).await?;
    let body = embeddings_response_json(&done.embeddings, format);
    Ok(done.respond(body))
}
