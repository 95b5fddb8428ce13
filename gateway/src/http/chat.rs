//! `POST /v1/chat/completions`: the OpenAI chat wire adapter over the request
//! pipeline. It reads the body into the canonical request and writes the
//! pipeline's answer as a `chat.completion` or its chunk stream.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::Event;
use axum::response::Response;
use futures::{stream, StreamExt};
use watershed_providers::{openai, StreamEvent};

use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::pipeline::{self, Call, Failed, Run, Wire};
use crate::state::AppState;

pub async fn chat_completions(
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
    let req = openai::parse_chat_request(&body)?;
    drop(body);
    match pipeline::run(&call, &headers, req).await? {
        Run::Answer(a) => {
            let body = openai::response_json(
                &completion_id(&a.prepared.request_id),
                a.prepared.now.timestamp(),
                &a.answer.done.model,
                &a.answer,
            );
            Ok(a.respond(body))
        }
        Run::Stream(s) => {
            let s = *s;
            let chunks = openai::ChunkBuilder::new(
                &completion_id(&s.prepared.request_id),
                s.prepared.now.timestamp(),
                &s.target.model_name,
                s.prepared.req.include_usage,
            );
            let head = stream::iter([sse(&chunks.role())]);
            let body = s.events.flat_map(move |item| {
                let out = match item {
                    Ok(ev) => {
                        let mut out: Vec<Event> = chunks.on_event(&ev).iter().map(sse).collect();
                        if matches!(ev, StreamEvent::Done(_)) {
                            out.push(Event::default().data("[DONE]"));
                        }
                        out
                    }
                    // OpenAI sends a data line holding an error object and
                    // ends without `[DONE]`.
                    Err(err) => {
                        let body = serde_json::json!({
                            "error": {"message": err.message, "type": "server_error", "code": err.code.as_str(), "param": null}
                        });
                        vec![Event::default().data(body.to_string())]
                    }
                };
                stream::iter(out)
            });
            Ok(s.headers.sse(head.chain(body)))
        }
    }
}

fn sse(value: &serde_json::Value) -> Event {
    Event::default().data(value.to_string())
}

fn completion_id(request_id: &str) -> String {
    format!("chatcmpl-{request_id}")
}
