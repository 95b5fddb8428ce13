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
use watershed_policies::{decide, Denial, PrivacyLevel};
use watershed_providers::{anthropic, openai, ChatRequest, ErrorCode, StreamEvent};

use crate::dispatch;
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::meter::{Meter, RequestInfo};
use crate::state::{AppState, Runtime};
use crate::telemetry::TraceContext;

pub const PRIVACY_HEADER: &str = "x-watershed-privacy";

/// Everything decided about a request before dispatch.
struct Prepared {
    request_id: String,
    req: ChatRequest,
    route: String,
    privacy: PrivacyLevel,
    targets: Vec<String>,
    difficulty: Option<f64>,
    /// About four characters per token: only for records of requests that
    /// never reported usage.
    estimated_tokens: u32,
}

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
        Err(err) => {
            if err.status().is_server_error() {
                warn!(request_id = %request_id, code = err.code.as_str(), message = %err.message, "request failed");
            }
            match wire {
                Wire::OpenAi => err.into_response(),
                Wire::Anthropic => (
                    err.status(),
                    axum::Json(anthropic::error_json(err.code, &err.message)),
                )
                    .into_response(),
            }
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
) -> Result<Response, ApiError> {
    let JsonBody(body) = body?;
    let req = match wire {
        Wire::OpenAi => openai::parse_chat_request(&body)?,
        Wire::Anthropic => anthropic::parse_messages_request(&body)?,
    };
    let prepared = prepare(rt, headers, req, request_id)?;
    let info = RequestInfo {
        request_id: prepared.request_id.clone(),
        ts_ms: chrono::Utc::now().timestamp_millis(),
        team: "default".to_owned(),
        key_id: "anonymous".to_owned(),
        route: prepared.route.clone(),
        privacy: prepared.privacy.as_str().to_owned(),
        stream: prepared.req.stream,
        difficulty: prepared.difficulty,
        estimated_prompt_tokens: prepared.estimated_tokens,
        counterfactual_model: rt.config.counterfactual.clone(),
        fleet_usd_per_engine_second: rt
            .config
            .fleet
            .as_ref()
            .map_or(0.0, |f| f64::from(f.gpus) * f.gpu_hour_usd / 3600.0),
        requested_model: prepared.req.model.clone(),
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
    let targets = dispatch::allowed_targets(rt, &prepared.targets, prepared.privacy);
    if prepared.req.stream {
        stream_answer(prepared, targets, meter, wire).await
    } else {
        let result = dispatch::chat(&targets, &prepared.req, &mut meter, &prepared.route).await;
        match result {
            Ok((target, answer)) => {
                let charged = meter.success(&answer.done);
                let body = match wire {
                    Wire::OpenAi => openai::response_json(
                        &completion_id(&prepared.request_id),
                        chrono::Utc::now().timestamp(),
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
                set_header(&mut resp, "x-watershed-route", &prepared.route);
                set_header(&mut resp, "x-watershed-backend", &target.id);
                set_header(
                    &mut resp,
                    "x-watershed-cost-usd",
                    &format!("{:.8}", charged.cost_usd),
                );
                Ok(resp)
            }
            Err(e) => {
                let err = ApiError::from(e);
                meter.failure(err.code);
                Err(err)
            }
        }
    }
}

fn prepare(
    rt: &Runtime,
    headers: &HeaderMap,
    req: ChatRequest,
    request_id: &str,
) -> Result<Prepared, ApiError> {
    let cfg = &rt.config;
    let declared = match headers.get(PRIVACY_HEADER) {
        None => None,
        Some(v) => Some(v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<PrivacyLevel>().ok())
            .ok_or_else(|| {
                ApiError::bad_request(
                    format!(
                        "invalid {PRIVACY_HEADER} header {:?}: expected public, internal, confidential or restricted",
                        String::from_utf8_lossy(v.as_bytes())
                    ),
                    Some(PRIVACY_HEADER),
                )
            })?),
    };
    if let Some(max) = req.max_tokens {
        if max > cfg.server.max_tokens_limit {
            return Err(ApiError::bad_request(
                format!(
                    "max_tokens {max} is above this gateway's limit of {}",
                    cfg.server.max_tokens_limit
                ),
                Some("max_tokens"),
            ));
        }
    }
    let (facts, _evidence) = crate::classify::request_facts(cfg, &req, declared);
    let decision = decide(cfg, &facts).map_err(denial_error)?;
    Ok(Prepared {
        request_id: request_id.to_owned(),
        req,
        route: decision.route,
        privacy: decision.privacy,
        targets: decision.targets,
        difficulty: facts.difficulty,
        estimated_tokens: facts
            .estimated_tokens
            .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX)),
    })
}

fn denial_error(d: Denial) -> ApiError {
    match d {
        Denial::UnknownModel { .. } => ApiError::new(ErrorCode::NotFound, d.to_string()),
        _ => ApiError::new(ErrorCode::PolicyDenied, d.to_string()),
    }
}

async fn stream_answer(
    prepared: Prepared,
    targets: Vec<Arc<crate::state::TargetHandle>>,
    mut meter: Meter,
    wire: Wire,
) -> Result<Response, ApiError> {
    let upstream =
        dispatch::chat_stream(&targets, &prepared.req, &mut meter, &prepared.route).await;
    let (target, upstream) = match upstream {
        Ok(ok) => ok,
        Err(e) => {
            let err = ApiError::from(e);
            meter.failure(err.code);
            return Err(err);
        }
    };
    let encoder = Encoder::new(wire, &prepared, &target.model_name);
    let head = stream::iter(encoder.start(meter.estimated_prompt_tokens()));
    // The meter lives inside the stream: when the client disconnects, axum drops
    // the stream and the meter records the request as cancelled.
    let mut meter = Some(meter);
    let body = upstream.flat_map(move |item| {
        let out = match item {
            Ok(ev) => {
                match &ev {
                    StreamEvent::Delta(_) => {
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
                warn!(error = %e, "stream failed after it started");
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
    set_header(&mut resp, "x-watershed-route", &prepared.route);
    set_header(&mut resp, "x-watershed-backend", &target.id);
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
                chrono::Utc::now().timestamp(),
                model,
                prepared.req.include_usage,
            )),
            Wire::Anthropic => Encoder::Anthropic(anthropic::MessagesStreamEncoder::new(
                &message_id(&prepared.request_id),
                model,
            )),
        }
    }

    fn start(&self, input_tokens: u32) -> Vec<Event> {
        match self {
            Encoder::OpenAi(b) => vec![sse(&b.role())],
            Encoder::Anthropic(e) => e.start(input_tokens).iter().map(named).collect(),
        }
    }

    fn event(&self, ev: &StreamEvent) -> Vec<Event> {
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
