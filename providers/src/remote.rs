//! What the remote adapters share: the configured target, one pooled HTTP client
//! per provider, upstream error bodies turned into [`ProviderError`]s, and SSE
//! bodies read with a timeout on the response head and between two events.

use std::collections::VecDeque;
use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use serde_json::Value;

use crate::sse::{SseDecoder, SseEvent};
use crate::{BackendKind, ChatStream, ProviderError, StreamEvent};

/// One configured remote target (an OpenAI, OpenAI-compatible or Anthropic
/// endpoint serving one model).
#[derive(Clone)]
pub struct RemoteTarget {
    /// The target's name in the config, used in errors and logs.
    pub target: String,
    pub kind: BackendKind,
    /// Base URL without the API path, e.g. `https://api.openai.com/v1` for OpenAI
    /// (chat goes to `{base_url}/chat/completions`) or `https://api.anthropic.com`
    /// for Anthropic (messages go to `{base_url}/v1/messages`).
    pub base_url: String,
    /// The model name sent upstream.
    pub upstream_model: String,
    /// The resolved API key, if any.
    pub api_key: Option<String>,
    /// The environment variable the key comes from. When it is named but
    /// `api_key` is `None`, every call fails with [`ProviderError::MissingKey`].
    pub api_key_env: Option<String>,
    pub connect_timeout: Duration,
    /// Whole-request limit for plain answers; for streams, the limit on the wait
    /// for the response head and between two complete SSE events.
    pub request_timeout: Duration,
    /// `max_tokens` sent when the request has none (Anthropic requires one).
    pub max_tokens_default: Option<u32>,
}

impl std::fmt::Debug for RemoteTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key itself must never reach a log line.
        f.debug_struct("RemoteTarget")
            .field("target", &self.target)
            .field("kind", &self.kind)
            .field("base_url", &self.base_url)
            .field("upstream_model", &self.upstream_model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("api_key_env", &self.api_key_env)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_tokens_default", &self.max_tokens_default)
            .finish()
    }
}

impl RemoteTarget {
    /// A target with default timeouts (5 s connect, 120 s request) and no key.
    pub fn new(
        target: impl Into<String>,
        kind: BackendKind,
        base_url: impl Into<String>,
        upstream_model: impl Into<String>,
    ) -> Self {
        Self {
            target: target.into(),
            kind,
            base_url: base_url.into(),
            upstream_model: upstream_model.into(),
            api_key: None,
            api_key_env: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(120),
            max_tokens_default: None,
        }
    }

    /// Fill `api_key` from the variable `api_key_env` names, when it is set and
    /// not empty; otherwise leave it `None` so calls report the missing variable.
    pub fn with_key_from_env(mut self) -> Self {
        if self.api_key.is_none() {
            if let Some(env) = &self.api_key_env {
                self.api_key = std::env::var(env).ok().filter(|k| !k.is_empty());
            }
        }
        self
    }

    /// The key to send, or the error naming the variable that should hold it.
    pub fn key(&self) -> Result<Option<&str>, ProviderError> {
        match (&self.api_key, &self.api_key_env) {
            (Some(key), _) => Ok(Some(key)),
            (None, Some(env)) => Err(ProviderError::MissingKey {
                target: self.target.clone(),
                env: env.clone(),
            }),
            (None, None) => Ok(None),
        }
    }

    /// `base_url` joined with `path` without doubling the slash.
    pub(crate) fn url(&self, path: &str) -> String {
        format!(
            "{}/{}",
            self.base_url.trim_end_matches('/'),
            path.trim_start_matches('/')
        )
    }

    fn timeout_error(&self) -> ProviderError {
        ProviderError::Timeout {
            target: self.target.clone(),
            after_ms: u64::try_from(self.request_timeout.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

/// A sampling parameter as JSON with its shortest decimal form, so `0.2f32`
/// goes out as `0.2` rather than `0.20000000298023224`.
pub(crate) fn f32_json(v: f32) -> Value {
    v.to_string()
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map_or(Value::Null, Value::Number)
}

/// One pooled client per provider: TCP_NODELAY because streamed tokens are small
/// writes, a connect timeout from config, and keep-alive so repeated calls reuse
/// connections.
pub(crate) fn build_client(t: &RemoteTarget) -> Result<reqwest::Client, ProviderError> {
    reqwest::Client::builder()
        .tcp_nodelay(true)
        .connect_timeout(t.connect_timeout)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_keepalive(Duration::from_secs(30))
        .user_agent(concat!("watershed/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ProviderError::Internal(format!("http client for {}: {e}", t.target)))
}

/// The error and its causes on one line; reqwest's top-level message alone
/// ("error sending request") hides the reason.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

pub(crate) fn map_reqwest(t: &RemoteTarget, err: &reqwest::Error) -> ProviderError {
    if err.is_timeout() {
        return t.timeout_error();
    }
    ProviderError::Unreachable {
        target: t.target.clone(),
        message: error_chain(err),
    }
}

/// An upstream error body, OpenAI (`{"error":{"message",..}}`) or Anthropic
/// (`{"type":"error","error":{"type","message"}}`) shaped, as a [`ProviderError`].
#[cfg(test)]
pub(crate) fn upstream_error(t: &RemoteTarget, status: u16, body: &[u8]) -> ProviderError {
    upstream_error_with(t, status, body, None)
}

/// The `retry-after` header as whole seconds; the HTTP-date form is rare from
/// API providers and is treated as absent (dispatch then uses its own backoff).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<u64> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| s.ceil() as u64)
}

/// [`upstream_error`] with the answer's `retry-after`.
pub(crate) fn upstream_error_with(
    t: &RemoteTarget,
    status: u16,
    body: &[u8],
    retry_after_s: Option<u64>,
) -> ProviderError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let message = parsed
        .as_ref()
        .and_then(|v| v.get("error"))
        .and_then(|e| match e {
            Value::String(s) => Some(s.clone()),
            other => other
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_owned),
        })
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(body);
            let text: String = text.trim().chars().take(200).collect();
            if text.is_empty() {
                format!("status {status} with an empty body")
            } else {
                text
            }
        });
    ProviderError::Upstream {
        target: t.target.clone(),
        status,
        message,
        retry_after_s,
    }
}

pub(crate) fn protocol(t: &RemoteTarget, message: impl Into<String>) -> ProviderError {
    ProviderError::Protocol {
        target: t.target.clone(),
        message: message.into(),
    }
}

/// Turns an upstream's error answer (status, body, `retry-after` seconds)
/// into a [`ProviderError`]; each wire format with its own error shape
/// brings one ([`upstream_error_with`] reads OpenAI's and Anthropic's).
pub(crate) type ErrorReader = fn(&RemoteTarget, u16, &[u8], Option<u64>) -> ProviderError;

/// Send a request and read the whole JSON answer within `request_timeout`.
pub(crate) async fn send_json(
    t: &RemoteTarget,
    req: reqwest::RequestBuilder,
) -> Result<Value, ProviderError> {
    send_json_with(t, req, upstream_error_with).await
}

/// [`send_json`] with the wire format's own error reader.
pub(crate) async fn send_json_with(
    t: &RemoteTarget,
    req: reqwest::RequestBuilder,
    read_error: ErrorReader,
) -> Result<Value, ProviderError> {
    let resp = req
        .timeout(t.request_timeout)
        .send()
        .await
        .map_err(|e| map_reqwest(t, &e))?;
    let status = resp.status();
    let wait = retry_after(resp.headers());
    let body = resp.bytes().await.map_err(|e| map_reqwest(t, &e))?;
    if !status.is_success() {
        return Err(read_error(t, status.as_u16(), &body, wait));
    }
    serde_json::from_slice(&body).map_err(|e| protocol(t, format!("answer is not json: {e}")))
}

pub(crate) type SseStream = Pin<Box<dyn Stream<Item = Result<SseEvent, ProviderError>> + Send>>;

/// Send a streaming request. Errors before the body starts (status, network,
/// timeout waiting for the head) are returned here; the events come with a
/// timeout between chunks.
pub(crate) async fn send_sse(
    t: &RemoteTarget,
    req: reqwest::RequestBuilder,
) -> Result<SseStream, ProviderError> {
    send_sse_with(t, req, upstream_error_with).await
}

/// [`send_sse`] with the wire format's own error reader.
pub(crate) async fn send_sse_with(
    t: &RemoteTarget,
    req: reqwest::RequestBuilder,
    read_error: ErrorReader,
) -> Result<SseStream, ProviderError> {
    let resp = match tokio::time::timeout(t.request_timeout, req.send()).await {
        Err(_) => return Err(t.timeout_error()),
        Ok(r) => r.map_err(|e| map_reqwest(t, &e))?,
    };
    let status = resp.status();
    if !status.is_success() {
        let wait = retry_after(resp.headers());
        let body = match tokio::time::timeout(t.request_timeout, resp.bytes()).await {
            Ok(Ok(b)) => b,
            Ok(Err(_)) | Err(_) => bytes::Bytes::new(),
        };
        return Err(read_error(t, status.as_u16(), &body, wait));
    }
    struct State {
        body: Pin<Box<dyn Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
        decoder: SseDecoder,
        queue: VecDeque<SseEvent>,
        ended: bool,
        t: RemoteTarget,
        /// When the next complete event must have arrived. It moves only when
        /// an event is decoded, not on every chunk, so an upstream trickling
        /// a byte now and then without finishing an event still times out.
        idle_deadline: tokio::time::Instant,
    }
    let state = State {
        body: Box::pin(resp.bytes_stream()),
        decoder: SseDecoder::new(),
        queue: VecDeque::new(),
        ended: false,
        t: t.clone(),
        idle_deadline: tokio::time::Instant::now() + t.request_timeout,
    };
    let stream = futures::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(ev) = s.queue.pop_front() {
                return Some((Ok(ev), s));
            }
            if s.ended {
                return None;
            }
            match tokio::time::timeout_at(s.idle_deadline, s.body.next()).await {
                Err(_) => {
                    s.ended = true;
                    let err = s.t.timeout_error();
                    return Some((Err(err), s));
                }
                Ok(None) => {
                    s.ended = true;
                    s.queue.extend(s.decoder.finish());
                }
                Ok(Some(Err(e))) => {
                    s.ended = true;
                    let err = map_reqwest(&s.t, &e);
                    return Some((Err(err), s));
                }
                Ok(Some(Ok(chunk))) => {
                    let evs = s.decoder.feed(&chunk);
                    if !evs.is_empty() {
                        s.idle_deadline = tokio::time::Instant::now() + s.t.request_timeout;
                    }
                    s.queue.extend(evs);
                }
            }
        }
    });
    Ok(Box::pin(stream))
}

/// Turns one wire format's SSE events into canonical stream events.
pub(crate) trait StreamTranslator: Send + 'static {
    /// Handle one event, pushing what it produces; `Ok(true)` once the answer is
    /// complete (the translator has pushed its `Done`).
    fn on_event(
        &mut self,
        ev: SseEvent,
        out: &mut VecDeque<StreamEvent>,
    ) -> Result<bool, ProviderError>;

    /// The error to report when the body ends before the answer is complete.
    fn on_eof(&self) -> ProviderError;
}

/// Drive a translator over an SSE stream: deltas in order, then exactly one
/// `Done`, or an error item (never a silent end) when the upstream fails.
pub(crate) fn translate<T: StreamTranslator>(events: SseStream, translator: T) -> ChatStream {
    struct State<T> {
        events: SseStream,
        tr: T,
        queue: VecDeque<StreamEvent>,
        pending_err: Option<ProviderError>,
        over: bool,
    }
    let state = State {
        events,
        tr: translator,
        queue: VecDeque::new(),
        pending_err: None,
        over: false,
    };
    Box::pin(futures::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(ev) = s.queue.pop_front() {
                return Some((Ok(ev), s));
            }
            if let Some(err) = s.pending_err.take() {
                return Some((Err(err), s));
            }
            if s.over {
                return None;
            }
            match s.events.next().await {
                None => {
                    s.over = true;
                    s.pending_err = Some(s.tr.on_eof());
                }
                Some(Err(e)) => {
                    s.over = true;
                    s.pending_err = Some(e);
                }
                Some(Ok(ev)) => match s.tr.on_event(ev, &mut s.queue) {
                    Ok(done) => s.over = done,
                    Err(e) => {
                        s.over = true;
                        s.pending_err = Some(e);
                    }
                },
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> RemoteTarget {
        RemoteTarget::new("gpt", BackendKind::Openai, "http://x/v1/", "gpt-5.4-mini")
    }

    #[test]
    fn debug_never_shows_the_key_and_floats_go_out_short() {
        let mut t = target();
        t.api_key = Some("sk-secret-123".into());
        assert!(!format!("{t:?}").contains("sk-secret"));
        assert_eq!(f32_json(0.2).to_string(), "0.2");
        assert_eq!(f32_json(1.0).to_string(), "1.0");
    }

    #[test]
    fn url_join_and_key_rules() {
        let mut t = target();
        assert_eq!(t.url("/chat/completions"), "http://x/v1/chat/completions");
        assert_eq!(t.key().unwrap(), None);
        t.api_key_env = Some("WATERSHED_TEST_NEVER_SET_KEY".into());
        let t = t.with_key_from_env();
        match t.key() {
            Err(ProviderError::MissingKey { target, env }) => {
                assert_eq!(target, "gpt");
                assert_eq!(env, "WATERSHED_TEST_NEVER_SET_KEY");
            }
            other => panic!("expected MissingKey, got {other:?}"),
        }
    }

    #[test]
    fn retry_after_in_seconds_is_read_and_a_date_is_not_guessed() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert("retry-after", "12".parse().unwrap());
        assert_eq!(retry_after(&h), Some(12));
        assert!(matches!(
            upstream_error_with(&target(), 429, b"", retry_after(&h)),
            ProviderError::Upstream {
                retry_after_s: Some(12),
                ..
            }
        ));
        h.insert("retry-after", "0.5".parse().unwrap());
        assert_eq!(retry_after(&h), Some(1));
        h.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn error_bodies_of_both_shapes_and_plain_text() {
        let t = target();
        let openai = br#"{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
        let anthropic =
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        for (status, body, msg) in [
            (429, &openai[..], "Rate limit reached"),
            (529, &anthropic[..], "Overloaded"),
            (
                502,
                &b"<html>bad gateway</html>"[..],
                "<html>bad gateway</html>",
            ),
            (500, &b""[..], "status 500 with an empty body"),
        ] {
            match upstream_error(&t, status, body) {
                ProviderError::Upstream {
                    status: s, message, ..
                } => {
                    assert_eq!(s, status);
                    assert_eq!(message, msg);
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
