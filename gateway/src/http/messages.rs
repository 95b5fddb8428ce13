//! `POST /v1/messages` and `POST /v1/messages/count_tokens`: the Anthropic
//! Messages wire adapter over the request pipeline. Errors go back in
//! Anthropic's shape.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use futures::{stream, StreamExt};
use watershed_providers::anthropic;

use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::pipeline::{self, set_header, Call, Failed, Run, Wire};
use crate::state::AppState;

pub async fn messages(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<JsonBody, ApiError>,
) -> Response {
    pipeline::serve(state, Wire::Anthropic, move |call| {
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
    let req = anthropic::parse_messages_request(&body)?;
    drop(body);
    match pipeline::run(&call, &headers, req).await? {
        Run::Answer(a) => {
            let body = anthropic::messages_response_json(
                &message_id(&a.prepared.request_id),
                &a.answer.done.model,
                &a.answer,
            );
            Ok(a.respond(body))
        }
        Run::Stream(s) => {
            let mut s = *s;
            // message_start announces the input tokens before the first token.
            let input_tokens = s.input_tokens_before_answer().await;
            let mut encoder = anthropic::MessagesStreamEncoder::new(
                &message_id(&s.prepared.request_id),
                &s.target.model_name,
            );
            let head: Vec<Event> = encoder.start(input_tokens).iter().map(named).collect();
            let body = s.events.flat_map(move |item| {
                let out: Vec<Event> = match item {
                    Ok(ev) => encoder.on_event(&ev).iter().map(named).collect(),
                    Err(err) => vec![named(&encoder.error(err.code, &err.message))],
                };
                stream::iter(out)
            });
            Ok(s.headers.sse(stream::iter(head).chain(body)))
        }
    }
}

/// `POST /v1/messages/count_tokens`: the prompt's input tokens, `{"input_tokens": N}`.
///
/// Routed like the message it counts (`pipeline::count`): exact for the
/// local engine and Anthropic, otherwise the gateway's estimate, which the
/// answer marks with `x-watershed-estimate: true`. Nothing is metered.
pub async fn count_tokens(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<JsonBody, ApiError>,
) -> Response {
    pipeline::serve(state, Wire::Anthropic, move |call| {
        Box::pin(async move { count(call, headers, body).await })
    })
    .await
}

async fn count(
    call: Call,
    headers: HeaderMap,
    body: Result<JsonBody, ApiError>,
) -> Result<Response, Failed> {
    let JsonBody(mut body) = body?;
    // count_tokens takes a Messages body without `max_tokens`.
    if let Some(obj) = body.as_object_mut() {
        obj.entry("max_tokens").or_insert(serde_json::json!(1));
        obj.remove("stream");
    }
    let req = anthropic::parse_messages_request(&body)?;
    drop(body);
    let counted = pipeline::count(&call, &headers, req).await?;
    let mut resp = axum::Json(serde_json::json!({"input_tokens": counted.tokens})).into_response();
    set_header(&mut resp, "x-watershed-route", &counted.route);
    if let Some(b) = &counted.backend {
        set_header(&mut resp, "x-watershed-backend", b);
    }
    if counted.estimate {
        set_header(&mut resp, "x-watershed-estimate", "true");
    }
    Ok(resp)
}

fn named((name, data): &(&'static str, serde_json::Value)) -> Event {
    Event::default().event(*name).data(data.to_string())
}

fn message_id(request_id: &str) -> String {
    format!("msg_{request_id}")
}
