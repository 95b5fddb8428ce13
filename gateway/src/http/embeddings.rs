//! `POST /v1/embeddings` (OpenAI wire format): a wire adapter over the request
//! pipeline. The body becomes the canonical request with its `embedding`
//! set, so classification reads every input text like a message
//! (`ChatRequest::outbound_texts`) and admission (key, privacy, route,
//! budget reservation) is the one every endpoint uses; `pipeline::embed`
//! tries the route's targets that can embed and writes one ledger record,
//! with the input tokens and no completion tokens.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use watershed_providers::openai::{embeddings_response_json, parse_embeddings_request};

use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::pipeline::{self, Call, Failed, Wire};
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

async fn handle(
    call: Call,
    headers: HeaderMap,
    body: Result<JsonBody, ApiError>,
) -> Result<Response, Failed> {
    let JsonBody(body) = body?;
    let (mut req, format) =
        parse_embeddings_request(&body, call.rt.config.server.max_embedding_inputs as usize)?;
    drop(body);
    // An embedding generates nothing: reserve for one completion token, not
    // for a chat answer's default.
    req.max_tokens = Some(1);
    let done = pipeline::embed(&call, &headers, req).await?;
    let body = embeddings_response_json(&done.embeddings, format);
    Ok(done.respond(body))
}
