//! The one request pipeline every wire adapter calls: authenticate → (the
//! adapter parses its wire into the canonical request) → classify → decide →
//! reserve → dispatch → meter. Chat completions, Messages and Responses differ
//! only in how they read a body and write an answer; everything that decides
//! where a request goes, what it may cost and what the ledger says about it
//! lives here once.

mod admit;
mod embed;
mod images;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use tracing::warn;
use watershed_policies::BudgetState;
use watershed_providers::{
    anthropic, BackendKind, ChatRequest, ChatResponse, ErrorCode, StreamEvent,
};

pub use admit::{Prepared, Purpose};
pub use embed::{embed, Embedded};

use crate::dispatch::{self, Outbound};
use crate::error::ApiError;
use crate::meter::{BudgetHold, Charged, Meter, RequestInfo};
use crate::state::{AppState, Runtime, TargetHandle};
use crate::telemetry::TraceContext;

pub const PRIVACY_HEADER: &str = "x-watershed-privacy";

/// The wire format a client spoke; answers and errors go back in the same
/// one. Responses errors have OpenAI's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    OpenAi,
    Anthropic,
    Responses,
}

/// An error answer with what had been decided when it happened: the route,
/// once one was chosen, and the last backend tried, once one was.
pub struct Failed {
    pub err: ApiError,
    pub route: Option<String>,
    pub backend: Option<String>,
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

/// A failure as the client's wire says it, with the decision headers known
/// at the time (`x-watershed-route`, `x-watershed-backend`) and `retry-after`.
pub fn failed_response(failed: Failed, wire: Wire) -> Response {
    let Failed {
        err,
        route,
        backend,
    } = failed;
    let mut resp = match wire {
        Wire::OpenAi => err.into_response(),
        Wire::Responses => ApiError {
            param: err.param.map(|p| responses_param(&p)),
            ..err
        }
        .into_response(),
        Wire::Anthropic => {
            let mut resp = (
                err.status(),
                axum::Json(anthropic::error_json(err.code, &anthropic_message(&err))),
            )
                .into_response();
            if let Some(secs) = err.retry_after_s {
                set_header(&mut resp, "retry-after", &secs.to_string());
            }
            resp
        }
    };
    if let Some(route) = &route {
        set_header(&mut resp, "x-watershed-route", route);
    }
    if let Some(backend) = &backend {
        set_header(&mut resp, "x-watershed-backend", backend);
    }
    resp
}

/// An error's message for an Anthropic client, whose error body has no
/// `param`: the field leads the message (`field: message`), as Anthropic's
/// own errors put it, unless the message already names it.
fn anthropic_message(err: &ApiError) -> String {
    match &err.param {
        Some(p) if !err.message.contains(p.as_str()) => format!("{p}: {}", err.message),
        _ => err.message.clone(),
    }
}

/// The Responses API's name for a field the pipeline names as chat
/// completions does: routing and the adapters see a `ChatRequest`, but a
/// Responses client sent `text.format`, `max_output_tokens` and `input`.
fn responses_param(param: &str) -> String {
    match param {
        "response_format" => "text.format",
        "max_tokens" => "max_output_tokens",
        "messages" => "input",
        other => other,
    }
    .to_owned()
}

/// What an adapter's handler gets: the shared state, the runtime (config and
/// targets) in force when the request arrived, and the request's id.
pub struct Call {
    pub state: Arc<AppState>,
    pub rt: Arc<Runtime>,
    pub request_id: String,
}

type Handled = Pin<Box<dyn Future<Output = Result<Response, Failed>> + Send>>;

/// Runs an adapter's handler for one request: gives it a request id and the
/// runtime, answers its failure in `wire`, logs server errors with the
/// request id, and puts `x-request-id` on every answer.
pub async fn serve(
    state: Arc<AppState>,
    wire: Wire,
    handler: impl FnOnce(Call) -> Handled,
) -> Response {
    let request_id = new_request_id();
    let rt = state.runtime();
    let call = Call {
        state,
        rt,
        request_id: request_id.clone(),
    };
    let mut resp = match handler(call).await {
        Ok(resp) => resp,
        Err(failed) => {
            if failed.err.status().is_server_error() {
                warn!(request_id = %request_id, code = failed.err.code.as_str(), message = %failed.err.message, "request failed");
            }
            failed_response(failed, wire)
        }
    };
    set_header(&mut resp, "x-request-id", &request_id);
    resp
}

/// A request the pipeline answered in one piece, and how it was decided.
pub struct Answered {
    pub prepared: Prepared,
    pub target: Arc<TargetHandle>,
    pub answer: ChatResponse,
    pub charged: Charged,
    headers: Headers,
}

impl Answered {
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

/// Canonical stream events of an answer, metered as they pass: the meter
/// lives inside the stream, so when the client disconnects and the stream is
/// dropped the request is recorded as cancelled.
pub type MeteredStream = Pin<Box<dyn Stream<Item = Result<StreamEvent, ApiError>> + Send>>;

/// A request the pipeline is answering as a stream.
pub struct Streaming {
    pub prepared: Prepared,
    pub target: Arc<TargetHandle>,
    pub events: MeteredStream,
    pub headers: Headers,
    outbound: Outbound,
}

impl Streaming {
    /// The prompt's tokens before the answer has reported them, for a wire
    /// that announces them first (Anthropic's `message_start`): the local
    /// engine's count is exact and cheap (its template and tokenizer, as
    /// generation uses them); other backends report theirs only at the end,
    /// so they get the estimate.
    pub async fn input_tokens_before_answer(&mut self) -> u32 {
        let exact = match self.target.kind {
            BackendKind::Local => self
                .target
                .provider
                .count_tokens(self.outbound.for_target(&self.target).0)
                .await
                .ok()
                .flatten(),
            _ => None,
        };
        exact.unwrap_or(self.prepared.estimated_tokens)
    }
}

/// The decision headers of an answer, kept for when its response is built.
pub struct Headers(Vec<(&'static str, String)>);

impl Headers {
    fn apply(&self, resp: &mut Response) {
        for (name, value) in &self.0 {
            set_header(resp, name, value);
        }
    }

    /// `events` (already in the client's wire) as an SSE answer with these headers.
    pub fn sse(&self, events: impl Stream<Item = Event> + Send + 'static) -> Response {
        let mut resp = Sse::new(events.map(Ok::<Event, std::convert::Infallible>)).into_response();
        self.apply(&mut resp);
        set_header(&mut resp, "cache-control", "no-cache");
        resp
    }
}

/// What the pipeline made of a request: a whole answer or a stream.
pub enum Run {
    Answer(Box<Answered>),
    Stream(Box<Streaming>),
}

/// Classify, decide, reserve, dispatch and meter a parsed request: one
/// ledger record, one span, whatever happens after this point.
pub async fn run(call: &Call, headers: &HeaderMap, req: ChatRequest) -> Result<Run, Failed> {
    let Call {
        state,
        rt,
        request_id,
    } = call;
    let (mut prepared, scan) =
        admit::admit(state, rt, headers, req, request_id, Purpose::Answer).await?;
    refuse_paid_while_journal_full(call, &prepared)?;
    let mut meter = start_meter(call, headers, &mut prepared, Metered::Answer);
    let targets =
        dispatch::allowed_targets(rt, &prepared.targets, prepared.privacy, &prepared.needs);
    if targets.is_empty() {
        if let Some(cap) = dispatch::lacked_by_all(rt, &prepared.targets, &prepared.needs) {
            let err = ApiError {
                param: Some(admit::capability_param(cap, &prepared.req)),
                ..ApiError::new(
                    ErrorCode::MissingCapability,
                    format!(
                        "route \"{}\" has no target whose backend can do \"{cap}\" now",
                        prepared.route
                    ),
                )
            };
            let failed = Failed::at(err.clone(), &prepared.route, &meter);
            meter.failure(err.code);
            return Err(failed);
        }
    }
    let outbound = Outbound::new(
        prepared.req.clone(),
        prepared.redact,
        &scan.per_piece,
        &state.metrics,
    );
    let limits = dispatch::Limits::of(&rt.config.server);
    if prepared.req.stream {
        let upstream = tokio::select! {
            r = dispatch::chat_stream(&targets, &outbound, &mut meter, &prepared.route, limits) => Some(r),
            () = state.drain.cancelled() => None,
        };
        let Some(upstream) = upstream else {
            return Err(cut_at_drain(&prepared.route, meter));
        };
        let (target, upstream) = match upstream {
            Ok(ok) => ok,
            Err(e) => {
                let err = ApiError::from(e);
                let failed = Failed::at(err.clone(), &prepared.route, &meter);
                meter.failure(err.code);
                return Err(failed);
            }
        };
        let headers = decision_headers(&prepared, &outbound, &target);
        let events = metered(
            upstream,
            meter,
            prepared.request_id.clone(),
            state.drain.clone(),
        );
        Ok(Run::Stream(Box::new(Streaming {
            prepared,
            target,
            events,
            headers,
            outbound,
        })))
    } else {
        let result = tokio::select! {
            r = dispatch::chat(&targets, &outbound, &mut meter, &prepared.route, limits) => Some(r),
            () = state.drain.cancelled() => None,
        };
        let Some(result) = result else {
            return Err(cut_at_drain(&prepared.route, meter));
        };
        match result {
            Ok((target, answer)) => {
                let charged = meter.success(&answer.done);
                let headers = decision_headers(&prepared, &outbound, &target);
                Ok(Run::Answer(Box::new(Answered {
                    prepared,
                    target,
                    answer,
                    charged,
                    headers,
                })))
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

/// A full ledger journal with `when_full: refuse` turns away what would cost
/// money with no record of it; the local engine still answers.
fn refuse_paid_while_journal_full(call: &Call, prepared: &Prepared) -> Result<(), Failed> {
    let paid = prepared.targets.iter().any(|id| {
        call.rt
            .target(id)
            .is_some_and(|t| t.kind != BackendKind::Local)
    });
    if paid && !call.state.ledger.accepts_paid_requests() {
        return Err(ApiError::new(
            ErrorCode::LedgerUnavailable,
            "the ledger journal is full (ledger.journal.max_bytes) while the ledger database catches up; paid requests are refused until it has",
        )
        .into());
    }
    Ok(())
}

/// What a meter records a request as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Metered {
    /// A chat answer (any wire): its counterfactual and sampling settings.
    Answer,
    /// An embedding: nothing generated, no closed-model counterpart.
    Embedding,
}

/// The meter of an admitted request — one ledger record and one span from
/// here on, whatever happens — holding its budget reservation.
fn start_meter(call: &Call, headers: &HeaderMap, prepared: &mut Prepared, kind: Metered) -> Meter {
    let Call { state, rt, .. } = call;
    let answer = kind == Metered::Answer;
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
        counterfactual_model: prepared.counterfactual.take().filter(|_| answer),
        fleet_usd_per_engine_second: rt
            .config
            .fleet
            .as_ref()
            .map_or(0.0, |f| f64::from(f.gpus) * f.gpu_hour_usd / 3600.0),
        requested_model: prepared.req.model.clone(),
        explanation: Some(std::mem::take(&mut prepared.explanation)),
        max_tokens: prepared.req.max_tokens.filter(|_| answer),
        temperature: prepared.req.temperature.filter(|_| answer),
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
    meter
}

/// A request still waiting on its upstream at the shutdown's drain deadline:
/// answered 503 `shutting_down` in the client's format, and recorded so.
fn cut_at_drain(route: &str, meter: Meter) -> Failed {
    let err = ApiError::new(
        ErrorCode::ShuttingDown,
        "the gateway is shutting down and the upstream did not answer in time",
    );
    let failed = Failed::at(err.clone(), route, &meter);
    meter.failure(err.code);
    failed
}

/// An upstream stream item, or the shutdown's cut.
enum Item {
    Up(Result<StreamEvent, watershed_providers::ProviderError>),
    Cut,
}

/// The upstream stream with the meter inside it: deltas mark the first
/// token, `Done` writes the record, an error after the start writes it as
/// failed. At the drain deadline of a shutdown (`drain` cancelled) a stream
/// still running ends with a `shutting_down` error — each adapter encodes it
/// as its wire's error event — and the record says so.
fn metered(
    upstream: watershed_providers::ChatStream,
    meter: Meter,
    request_id: String,
    drain: tokio_util::sync::CancellationToken,
) -> MeteredStream {
    use std::sync::atomic::{AtomicBool, Ordering};
    let mut meter = Some(meter);
    let ended = Arc::new(AtomicBool::new(false));
    let cut = {
        let (drain, ended) = (drain.clone(), ended.clone());
        futures::stream::once(async move {
            (drain.is_cancelled() && !ended.load(Ordering::Relaxed)).then_some(Item::Cut)
        })
        .filter_map(|x| async move { x })
    };
    let items = upstream
        .map(Item::Up)
        .take_until(drain.cancelled_owned())
        .chain(cut);
    Box::pin(items.map(move |item| {
        let item = match item {
            Item::Up(item) => item,
            Item::Cut => {
                warn!(request_id = %request_id, "stream ended at the shutdown drain deadline");
                let err = ApiError::new(
                    ErrorCode::ShuttingDown,
                    "the gateway is shutting down; the answer was cut short",
                );
                if let Some(m) = meter.take() {
                    m.failure(err.code);
                }
                return Err(err);
            }
        };
        if matches!(item, Ok(StreamEvent::Done(_)) | Err(_)) {
            ended.store(true, Ordering::Relaxed);
        }
        match item {
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
                Ok(ev)
            }
            Err(e) => {
                warn!(request_id = %request_id, error = %e, "stream failed after it started");
                let err = ApiError::from(e);
                if let Some(m) = meter.take() {
                    m.failure(err.code);
                }
                Err(err)
            }
        }
    }))
}

/// A prompt counted without answering it, and who counted.
pub struct Counted {
    pub route: String,
    pub backend: Option<String>,
    pub tokens: u32,
    /// No target on the route could count, so `tokens` is the gateway's estimate.
    pub estimate: bool,
}

/// Count a prompt's input tokens, routed exactly as its answer would be
/// (a confidential prompt is only counted inside the trust boundary): the
/// first allowed, available target counts it if it can (the local engine,
/// Anthropic); if it cannot, the answer is the estimate. Nothing is
/// generated, so nothing is reserved nor metered.
pub async fn count(call: &Call, headers: &HeaderMap, req: ChatRequest) -> Result<Counted, Failed> {
    let Call {
        state,
        rt,
        request_id,
    } = call;
    let (prepared, scan) =
        admit::admit(state, rt, headers, req, request_id, Purpose::Count).await?;
    let targets =
        dispatch::allowed_targets(rt, &prepared.targets, prepared.privacy, &prepared.needs);
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
    let route = prepared.route;
    match (counted, backend, last_err) {
        (Some((id, n)), _, _) => Ok(Counted {
            route,
            backend: Some(id),
            tokens: n,
            estimate: false,
        }),
        (None, Some(id), None) => Ok(Counted {
            route,
            backend: Some(id),
            tokens: prepared.estimated_tokens,
            estimate: true,
        }),
        (None, backend, Some(e)) => Err(Failed {
            err: ApiError::from(e),
            route: Some(route),
            backend,
        }),
        (None, None, None) => Err(Failed {
            err: ApiError::new(
                ErrorCode::UpstreamUnavailable,
                format!("no allowed target can serve route \"{route}\""),
            ),
            route: Some(route),
            backend: None,
        }),
    }
}

/// The headers that say how a request was decided.
fn decision_headers(prepared: &Prepared, outbound: &Outbound, target: &TargetHandle) -> Headers {
    let mut out = vec![
        ("x-watershed-route", prepared.route.clone()),
        ("x-watershed-backend", target.id.clone()),
    ];
    if prepared.budget != BudgetState::Available {
        out.push(("x-watershed-budget", prepared.budget.as_str().to_owned()));
    }
    if let Some(note) = &prepared.downgraded {
        out.push(("x-watershed-downgraded", note.clone()));
    }
    if !target.trusted && outbound.redacted_values() > 0 {
        out.push((
            "x-watershed-redacted",
            outbound.redacted_values().to_string(),
        ));
    }
    Headers(out)
}

pub fn new_request_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

pub fn set_header(resp: &mut Response, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(HeaderName::from_static(name), v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_anthropic_client_hears_the_field_in_the_message() {
        let message = |param: Option<&str>, text: &str| {
            let err = ApiError {
                param: param.map(str::to_owned),
                ..ApiError::new(ErrorCode::MissingCapability, text)
            };
            let resp = failed_response(err.into(), Wire::Anthropic);
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            let bytes = rt
                .block_on(axum::body::to_bytes(resp.into_body(), 1 << 16))
                .unwrap();
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(v["type"], "error", "{v}");
            assert!(v["error"].get("param").is_none(), "{v}");
            v["error"]["message"].as_str().unwrap().to_owned()
        };
        assert_eq!(
            message(Some("messages[0].content[1].source"), "no vision here"),
            "messages[0].content[1].source: no vision here"
        );
        // Named once, not twice; no field, no prefix.
        assert_eq!(
            message(Some("tools[1]"), "tools[1] is not a grammar"),
            "tools[1] is not a grammar"
        );
        assert_eq!(message(None, "no vision here"), "no vision here");
    }

    #[test]
    fn a_responses_client_hears_its_own_field_names() {
        let err = ApiError {
            param: Some("response_format".into()),
            ..ApiError::new(ErrorCode::MissingCapability, "no json_schema")
        };
        let named = |wire: Wire| {
            let failed = Failed {
                err: err.clone(),
                route: None,
                backend: None,
            };
            failed_response(failed, wire)
        };
        let body = |resp: Response| async move {
            let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16)
                .await
                .unwrap();
            serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()["error"]["param"].clone()
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert_eq!(rt.block_on(body(named(Wire::Responses))), "text.format");
        assert_eq!(rt.block_on(body(named(Wire::OpenAi))), "response_format");
        assert_eq!(responses_param("max_tokens"), "max_output_tokens");
        assert_eq!(responses_param("messages"), "input");
        assert_eq!(
            responses_param("input[0].content[1].image_url"),
            "input[0].content[1].image_url"
        );
        assert_eq!(responses_param("tools"), "tools");
    }
}
