//! `POST /v1/responses`: the OpenAI Responses wire adapter over the request
//! pipeline, stateless. The body becomes the canonical request (so it is
//! classified, routed, metered and traced exactly like a chat request, and
//! any target can serve it through its own wire); the answer goes back as a
//! `response` object or the Responses event stream. Errors have OpenAI's
//! shape.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::Event;
use axum::response::Response;
use futures::{stream, StreamExt};
use watershed_providers::openai::{self, ResponsesStreamEncoder};

use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::pipeline::{self, Call, Failed, Run, Wire};
use crate::state::AppState;

pub async fn responses(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<JsonBody, ApiError>,
) -> Response {
    pipeline::serve(state, Wire::Responses, move |call| {
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
    let openai::ResponsesRequest { chat, echo } = openai::parse_responses_request(&body)?;
    drop(body);
    let run = pipeline::run(&call, &headers, chat).await;
    match run.map_err(responses_names)? {
        Run::Answer(a) => {
            let body = openai::responses::response_json(
                &response_id(&a.prepared.request_id),
                a.prepared.now.timestamp(),
                &a.answer.done.model,
                &echo,
                &a.answer,
            );
            Ok(a.respond(body))
        }
        Run::Stream(s) => {
            let s = *s;
            let mut encoder = ResponsesStreamEncoder::new(
                &response_id(&s.prepared.request_id),
                s.prepared.now.timestamp(),
                &s.target.model_name,
                &echo,
            );
            let head: Vec<Event> = encoder.start().iter().map(named).collect();
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

/// An error naming a canonical option (a target refusing `reasoning_effort`)
/// names it as the Responses body has it (`reasoning.effort`).
fn responses_names(mut failed: Failed) -> Failed {
    if let Some(param) = failed.err.param.take() {
        let path = openai::responses::responses_param(&param);
        if path != param {
            failed.err.message = failed
                .err
                .message
                .replace(&format!("\"{param}\""), &format!("\"{path}\""));
        }
        failed.err.param = Some(path.to_owned());
    }
    failed
}

fn named((name, data): &(&'static str, serde_json::Value)) -> Event {
    Event::default().event(*name).data(data.to_string())
}

fn response_id(request_id: &str) -> String {
    format!("resp_{request_id}")
}
