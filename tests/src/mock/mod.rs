//! Mock OpenAI, Anthropic and Gemini upstreams on port 0 that speak the exact wire
//! formats: deterministic answers (plain and streamed), the providers' own error
//! bodies, and scripted faults (an error status with or without `retry-after`,
//! a hang, a trickle of bytes that never completes, malformed JSON or SSE, a
//! connection reset before the first event or in the middle), a `/health`
//! endpoint and a switch that takes the whole mock down and up again (a
//! pool member failing and recovering). Every
//! request is recorded so tests can assert what the gateway sent, and what it
//! never sent. `otlp` is the receiving end of trace export, a collector's
//! OTLP/HTTP endpoint.

mod anthropic;
mod gemini;
mod openai;
pub mod otlp;

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures::StreamExt;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Which API a mock speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    OpenAi,
    Anthropic,
    /// Google's Gemini API (`/v1beta/models/{model}:generateContent`).
    Gemini,
}

/// A scripted failure for the next requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Answer with this status and the provider's own error body for it.
    Status(u16),
    /// Never answer (until the mock shuts down): for timeouts.
    Hang,
    /// Send the head of the answer (for a stream: up to and including the first
    /// text delta), then cut the connection.
    DropMidStream,
    /// Answer 429 with this `retry-after` (seconds).
    RetryAfter(u64),
    /// Send a 200 head, then one byte every 50 ms that never completes a JSON
    /// body or an SSE event, until the client goes away or the mock stops.
    Trickle,
    /// A 200 whose body is not valid JSON (for a plain answer) or whose first
    /// SSE event holds no valid JSON (for a stream).
    Malformed,
    /// A 200 head (SSE for a stream), then the connection is cut before any
    /// byte of the body.
    ResetBeforeFirstEvent,
}

/// One request as the mock received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// Header names in lowercase; repeated headers joined with ", ".
    pub headers: BTreeMap<String, String>,
    /// The JSON body (`Value::Null` when it was empty or not JSON).
    pub body: Value,
}

impl RecordedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// State the handlers share with the test.
struct Shared {
    flavor: Flavor,
    requests: Mutex<Vec<RecordedRequest>>,
    failures: Mutex<VecDeque<Failure>>,
    cached_prompt_tokens: AtomicU32,
    chunk_delay_ms: AtomicU64,
    /// Switched on by the test: every request, health checks included,
    /// answers 503 until it is switched off.
    down: AtomicBool,
    /// A pause before every answer, so requests overlap.
    answer_delay_ms: AtomicU64,
    /// OpenAI flavor only: name the stop string that ended an answer in
    /// each choice's `stop_reason`, as vLLM does (OpenAI names none).
    names_stop: AtomicBool,
    next_id: AtomicU64,
    shutdown: CancellationToken,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A test that panicked while holding the lock must not hide later asserts.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running mock upstream. It shuts down when dropped.
pub struct MockUpstream {
    /// What a provider config uses as `base_url`: `http://127.0.0.1:PORT/v1` for
    /// OpenAI (as the OpenAI SDKs expect; `/chat/completions` without `/v1`
    /// works too), `http://127.0.0.1:PORT` for Anthropic,
    /// `http://127.0.0.1:PORT/v1beta` for Gemini.
    pub base_url: String,
    pub flavor: Flavor,
    shared: Arc<Shared>,
    tracker: TaskTracker,
}

impl std::fmt::Debug for MockUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockUpstream")
            .field("base_url", &self.base_url)
            .field("flavor", &self.flavor)
            .finish()
    }
}

impl MockUpstream {
    /// An OpenAI chat-completions mock.
    pub async fn openai() -> Self {
        Self::start(Flavor::OpenAi).await
    }

    /// An Anthropic Messages mock.
    pub async fn anthropic() -> Self {
        Self::start(Flavor::Anthropic).await
    }

    /// A Gemini API mock.
    pub async fn gemini() -> Self {
        Self::start(Flavor::Gemini).await
    }

    /// Start a mock on 127.0.0.1, port 0.
    pub async fn start(flavor: Flavor) -> Self {
        match Self::try_start(flavor).await {
            Ok(m) => m,
            Err(e) => panic!("mock upstream could not bind 127.0.0.1:0: {e}"),
        }
    }

    pub async fn try_start(flavor: Flavor) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            flavor,
            requests: Mutex::new(Vec::new()),
            failures: Mutex::new(VecDeque::new()),
            cached_prompt_tokens: AtomicU32::new(0),
            chunk_delay_ms: AtomicU64::new(1),
            down: AtomicBool::new(false),
            answer_delay_ms: AtomicU64::new(0),
            names_stop: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            shutdown: CancellationToken::new(),
        });
        let state = shared.clone();
        let app = Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let state = state.clone();
                async move { handle(state, method, uri, headers, body).await }
            },
        );
        let tracker = TaskTracker::new();
        let token = shared.shutdown.clone();
        tracker.spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(token.cancelled_owned())
                .await;
            if let Err(e) = served {
                tracing_free_log(&format!("mock upstream stopped: {e}"));
            }
        });
        tracker.close();
        let base_url = match flavor {
            Flavor::OpenAi => format!("http://{addr}/v1"),
            Flavor::Anthropic => format!("http://{addr}"),
            Flavor::Gemini => format!("http://{addr}/v1beta"),
        };
        Ok(Self {
            base_url,
            flavor,
            shared,
            tracker,
        })
    }

    /// An OpenAI-compatible server that says which stop string ended an
    /// answer, in `choices[].stop_reason` (a string, or null), as vLLM does.
    pub async fn vllm() -> Self {
        let m = Self::start(Flavor::OpenAi).await;
        m.shared.names_stop.store(true, Ordering::Relaxed);
        m
    }

    /// The next `n` requests fail with `failure`.
    pub fn fail_next(&self, n: usize, failure: Failure) {
        lock(&self.shared.failures).extend(std::iter::repeat_n(failure, n));
    }

    /// Report this many prompt tokens as read from the provider's prompt cache.
    pub fn set_cached_prompt_tokens(&self, n: u32) {
        self.shared.cached_prompt_tokens.store(n, Ordering::Relaxed);
    }

    /// Pause between streamed events (default 1 ms, so they arrive apart).
    pub fn set_chunk_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.shared.chunk_delay_ms.store(ms, Ordering::Relaxed);
    }

    /// Switches the mock down (every request answers 503, `GET /health`
    /// included) or back up; requests already being answered finish.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::Relaxed);
    }

    /// Pause this long before every answer (default none).
    pub fn set_answer_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.shared.answer_delay_ms.store(ms, Ordering::Relaxed);
    }

    /// How many requests came to `path` (e.g. `/v1/chat/completions`, `/health`).
    pub fn count_path(&self, path: &str) -> usize {
        lock(&self.shared.requests)
            .iter()
            .filter(|r| r.path == path)
            .count()
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    pub fn request_count(&self) -> usize {
        lock(&self.shared.requests).len()
    }

    pub fn last_request(&self) -> Option<RecordedRequest> {
        lock(&self.shared.requests).last().cloned()
    }

    /// Stop serving and wait until the server task has ended.
    pub async fn shutdown(self) {
        self.shared.shutdown.cancel();
        self.tracker.wait().await;
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
    }
}

/// The mock has no tracing subscriber of its own; a server error goes to stderr
/// where the test harness shows it.
fn tracing_free_log(msg: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{msg}");
}

async fn handle(
    shared: Arc<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let mut recorded_headers = BTreeMap::new();
    for (name, value) in &headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        recorded_headers
            .entry(name.as_str().to_owned())
            .and_modify(|v: &mut String| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    lock(&shared.requests).push(RecordedRequest {
        method: method.to_string(),
        path: uri.path().to_owned(),
        headers: recorded_headers,
        body: parsed.clone().unwrap_or(Value::Null),
    });

    let flavor = shared.flavor;
    if shared.down.load(Ordering::Relaxed) {
        return error_response(flavor, 503, Some("mock upstream is down"));
    }
    // A server's health endpoint (vLLM, SGLang, llama.cpp server): 200 while
    // up, outside the scripted failures, which are for model requests.
    if method == Method::GET && uri.path() == "/health" {
        return json_response(StatusCode::OK, &Value::Object(serde_json::Map::new()));
    }
    let failure = lock(&shared.failures).pop_front();
    match failure {
        Some(Failure::Status(status)) => return error_response(flavor, status, None),
        Some(Failure::Hang) => {
            shared.shutdown.cancelled().await;
            return error_response(flavor, 503, Some("mock upstream shut down"));
        }
        // Gemini says how long to wait in the body's RetryInfo, not a header.
        Some(Failure::RetryAfter(secs)) if flavor == Flavor::Gemini => {
            let body = gemini::error_body(429, None, secs);
            return json_response(StatusCode::TOO_MANY_REQUESTS, &body);
        }
        Some(Failure::RetryAfter(secs)) => {
            let mut resp = error_response(flavor, 429, None);
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert("retry-after", v);
            }
            return resp;
        }
        Some(Failure::Trickle) => return trickle(&shared),
        Some(Failure::Malformed) => {
            let streamed = parsed.as_ref().and_then(|b| b.get("stream"))
                == Some(&Value::Bool(true))
                || uri.path().ends_with(":streamGenerateContent");
            return if streamed {
                sse_response(
                    vec![Bytes::from_static(b"data: {\"choices\": [oops\n\n")],
                    Duration::ZERO,
                )
            } else {
                (
                    StatusCode::OK,
                    [("content-type", HeaderValue::from_static("application/json"))],
                    "{\"id\": \"x\", \"choices\": [",
                )
                    .into_response()
            };
        }
        Some(Failure::ResetBeforeFirstEvent) => return cut_body(Vec::new(), Duration::ZERO),
        Some(Failure::DropMidStream) | None => {}
    }
    let drop_mid_stream = failure == Some(Failure::DropMidStream);

    let route = match (flavor, &method, uri.path()) {
        (Flavor::OpenAi, &Method::POST, "/v1/chat/completions" | "/chat/completions") => true,
        (Flavor::Anthropic, &Method::POST, "/v1/messages") => true,
        (Flavor::Gemini, &Method::POST, path) => {
            match gemini::route(path, uri.query()) {
                Some((_, gemini::Method::CountTokens)) => {
                    return match parsed.as_ref().map(gemini::count_tokens) {
                        Some(Ok(v)) => json_response(StatusCode::OK, &v),
                        Some(Err(m)) => error_response(flavor, 400, Some(&m)),
                        None => error_response(flavor, 400, Some("Invalid JSON payload received.")),
                    };
                }
                Some((_, gemini::Method::Stream { sse: false })) => {
                    // Without alt=sse Gemini streams one JSON array; the
                    // gateway must always ask for SSE.
                    return error_response(
                        flavor,
                        400,
                        Some("mock answers streamGenerateContent only with alt=sse"),
                    );
                }
                Some(_) => true,
                None => false,
            }
        }
        (Flavor::OpenAi, &Method::GET, "/v1/models" | "/models") => {
            return json_response(StatusCode::OK, &openai::models());
        }
        (Flavor::OpenAi, &Method::POST, "/v1/embeddings" | "/embeddings") => {
            return match parsed.as_ref().map(openai::embeddings) {
                Some(Ok(v)) => json_response(StatusCode::OK, &v),
                Some(Err(m)) => error_response(flavor, 400, Some(&m)),
                None => error_response(flavor, 400, Some("request body is not valid json")),
            };
        }
        (Flavor::Anthropic, &Method::POST, "/v1/messages/count_tokens") => {
            return match parsed.as_ref().map(anthropic::count_tokens) {
                Some(Ok(v)) => json_response(StatusCode::OK, &v),
                Some(Err(m)) => error_response(flavor, 400, Some(&m)),
                None => error_response(flavor, 400, Some("request body is not valid json")),
            };
        }
        _ => false,
    };
    if !route {
        return error_response(
            flavor,
            404,
            Some(&format!("no route for {method} {}", uri.path())),
        );
    }
    let Some(body) = parsed else {
        return error_response(flavor, 400, Some("request body is not valid json"));
    };
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let cached = shared.cached_prompt_tokens.load(Ordering::Relaxed);
    let answer = match flavor {
        Flavor::OpenAi => {
            openai::answer(&body, id, cached, shared.names_stop.load(Ordering::Relaxed))
        }
        Flavor::Anthropic => anthropic::answer(&body, id, cached),
        Flavor::Gemini => match gemini::route(uri.path(), uri.query()) {
            Some((model, method)) => gemini::answer(
                &body,
                &model,
                method != gemini::Method::Generate,
                id,
                cached,
            ),
            None => Err(format!("no route for {}", uri.path())),
        },
    };
    let answer = match answer {
        Ok(a) => a,
        Err(message) => return error_response(flavor, 400, Some(&message)),
    };
    let pause = shared.answer_delay_ms.load(Ordering::Relaxed);
    if pause > 0 {
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    let delay = Duration::from_millis(shared.chunk_delay_ms.load(Ordering::Relaxed));
    match answer {
        Answer::Json(v) if drop_mid_stream => {
            // Half a JSON body, then the connection goes away.
            let text = v.to_string();
            let half = text.len() / 2;
            let head = Bytes::from(text.into_bytes()).slice(..half);
            cut_body(vec![head], Duration::ZERO)
        }
        Answer::Json(v) => json_response(StatusCode::OK, &v),
        Answer::Sse { events, cut_after } => {
            let frames: Vec<Bytes> = events.into_iter().map(Bytes::from).collect();
            if drop_mid_stream {
                let head = frames.into_iter().take(cut_after).collect();
                cut_body(head, delay)
            } else {
                sse_response(frames, delay)
            }
        }
    }
}

/// What a flavor answers to a valid request.
pub(crate) enum Answer {
    Json(Value),
    /// Complete SSE frames (each ending in a blank line) and how many of them a
    /// `DropMidStream` failure sends before cutting the connection.
    Sse {
        events: Vec<String>,
        cut_after: usize,
    },
}

fn json_response(status: StatusCode, v: &Value) -> Response {
    (
        status,
        [("content-type", HeaderValue::from_static("application/json"))],
        v.to_string(),
    )
        .into_response()
}

fn sse_headers(resp: &mut Response) {
    let h = resp.headers_mut();
    h.insert(
        "content-type",
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    h.insert("cache-control", HeaderValue::from_static("no-cache"));
}

fn sse_response(frames: Vec<Bytes>, delay: Duration) -> Response {
    let stream = futures::stream::iter(frames).then(move |frame| async move {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        Ok::<_, Infallible>(frame)
    });
    let mut resp = Response::new(Body::from_stream(stream));
    sse_headers(&mut resp);
    resp
}

/// A 200 whose body sends `frames` and then fails, which makes the server drop
/// the connection without finishing the chunked body.
fn cut_body(frames: Vec<Bytes>, delay: Duration) -> Response {
    let head = futures::stream::iter(frames).then(move |frame| async move {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        Ok::<_, std::io::Error>(frame)
    });
    // The head is flushed to the socket before the cut: a real upstream that dies
    // mid-answer has already sent what it sent.
    let cut = futures::stream::once(async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Err::<Bytes, _>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "mock upstream cut the stream",
        ))
    });
    let mut resp = Response::new(Body::from_stream(head.chain(cut)));
    sse_headers(&mut resp);
    resp
}

/// A 200 SSE head, then a byte every 50 ms that never ends an event (nor a
/// JSON value), until the mock shuts down or the client hangs up.
fn trickle(shared: &Shared) -> Response {
    let stop = shared.shutdown.clone();
    let head = futures::stream::once(async { Ok::<_, Infallible>(Bytes::from_static(b"data: ")) });
    let drip = futures::stream::unfold(stop, |stop| async move {
        tokio::select! {
            () = stop.cancelled() => None,
            () = tokio::time::sleep(Duration::from_millis(50)) => {
                Some((Ok::<_, Infallible>(Bytes::from_static(b"x")), stop))
            }
        }
    });
    let mut resp = Response::new(Body::from_stream(head.chain(drip)));
    sse_headers(&mut resp);
    resp
}

/// The provider's own error body for `status`, with its usual headers.
fn error_response(flavor: Flavor, status: u16, message: Option<&str>) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = match flavor {
        Flavor::OpenAi => openai::error_body(status, message),
        Flavor::Anthropic => anthropic::error_body(status, message),
        Flavor::Gemini => gemini::error_body(status, message, 1),
    };
    let mut resp = json_response(code, &body);
    if matches!(status, 429 | 503 | 529) && flavor != Flavor::Gemini {
        resp.headers_mut()
            .insert("retry-after", HeaderValue::from_static("1"));
    }
    resp
}

/// The text of the last user message, string or array content.
pub(crate) fn last_user_text(messages: &[Value]) -> String {
    messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .map(|m| content_text(m.get("content")))
        .unwrap_or_default()
}

/// String content, or the text parts of array content joined with a space.
pub(crate) fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// The arguments of the mock's tool calls: the last user text as `query`,
/// so a test can see what the model was given come back in a call.
pub(crate) fn tool_arguments(messages: &[Value]) -> String {
    serde_json::json!({ "query": last_user_text(messages) }).to_string()
}

/// A tool-call answer's arguments in two streamed pieces (split on a char
/// boundary) that concatenate to the whole.
pub(crate) fn argument_pieces(args: &str) -> (String, String) {
    let mut cut = args.len() / 2;
    while !args.is_char_boundary(cut) {
        cut += 1;
    }
    (args[..cut].to_owned(), args[cut..].to_owned())
}

/// Mock tokens are words.
pub(crate) fn words(text: &str) -> u32 {
    u32::try_from(text.split_whitespace().count()).unwrap_or(u32::MAX)
}

/// How a deterministic reply ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum End {
    Stop,
    /// A stop string cut the reply (Anthropic reports which one).
    StopSequence(String),
    Length,
}

/// The reply to `prompt`: `echo: <prompt>`, cut to `max_tokens` words, then cut
/// before the first stop string, as a real model would stop.
pub(crate) fn reply(prompt: &str, max_tokens: Option<u64>, stops: &[String]) -> (String, End) {
    let full = format!("echo: {prompt}");
    let pieces: Vec<&str> = full.split_inclusive(' ').collect();
    let limit = max_tokens.map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
    let (mut text, mut end) = if pieces.len() > limit {
        (pieces[..limit].concat().trim_end().to_owned(), End::Length)
    } else {
        (full.clone(), End::Stop)
    };
    let first_stop = stops
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text.find(s.as_str()).map(|at| (at, s)))
        .min_by_key(|(at, _)| *at);
    if let Some((at, s)) = first_stop {
        text.truncate(at);
        end = End::StopSequence(s.clone());
    }
    (text, end)
}

/// The pieces a reply is streamed in; they concatenate to the reply.
pub(crate) fn pieces(text: &str) -> Vec<&str> {
    text.split_inclusive(' ').collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_cut_by_max_tokens_and_stop_strings() {
        assert_eq!(reply("a b c", None, &[]), ("echo: a b c".into(), End::Stop));
        assert_eq!(
            reply("a b c", Some(2), &[]),
            ("echo: a".into(), End::Length)
        );
        assert_eq!(
            reply("a STOP b", None, &["STOP".into()]),
            ("echo: a ".into(), End::StopSequence("STOP".into()))
        );
        assert_eq!(pieces("echo: a b").concat(), "echo: a b");
        assert_eq!(words("echo: a b"), 3);
    }
}
