//! Dispatch: tries a decision's targets in order, never one outside the privacy
//! boundary nor one whose circuit breaker is open, retries a target's
//! transient failures with backoff, falls back when a target fails for
//! reasons of its own, and does it all within the request's deadline.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use tokio::time::Instant;
use tracing::warn;
use watershed_policies::privacy::{RedactionMap, Restorer};
use watershed_policies::{
    lacking, Capability, Needs, PiiSpan, PrivacyLevel, ServerSettings, TargetCapabilities,
};
use watershed_providers::{
    ChatRequest, ChatResponse, ChatStream, Embeddings, Provider, ProviderError, StreamEvent,
    ToolCallDelta,
};

use crate::breaker::{Breaker, BreakerState};
use crate::meter::Meter;
use crate::metrics::{self, Metrics};
use crate::pool::Lease;
use crate::state::{Runtime, TargetHandle};

/// What leaves the trust boundary: with `redact: true` on the route, a target
/// outside it gets the request with every detected value replaced by a stable
/// placeholder, and the answer comes back with the values restored.
#[derive(Debug, Clone)]
pub struct Outbound {
    /// The request as the client sent it.
    pub original: ChatRequest,
    /// The redacted copy and its map, when the route redacts and something
    /// was detected.
    pub redacted: Option<(ChatRequest, Arc<RedactionMap>)>,
}

impl Outbound {
    /// Prepares `req` for a route; `redact` is the route's option and
    /// `per_piece` the detections of each of the request's outbound texts
    /// (`crate::scan::Scan::per_piece`), so redaction rewrites exactly the
    /// pieces and values the classifier read.
    pub fn new(
        req: ChatRequest,
        redact: bool,
        per_piece: &[Vec<PiiSpan>],
        metrics: &Metrics,
    ) -> Self {
        let redacted = redact
            .then(|| redact_request(&req, per_piece, metrics))
            .flatten();
        Outbound {
            original: req,
            redacted,
        }
    }

    /// The request a target gets, and the map to restore its answer with.
    pub(crate) fn for_target(
        &self,
        t: &TargetHandle,
    ) -> (&ChatRequest, Option<&Arc<RedactionMap>>) {
        match &self.redacted {
            Some((req, map)) if !t.trusted => (req, Some(map)),
            _ => (&self.original, None),
        }
    }

    /// How many distinct values a target outside the boundary would not see.
    pub fn redacted_values(&self) -> usize {
        self.redacted.as_ref().map_or(0, |(_, m)| m.len())
    }
}

fn redact_request(
    req: &ChatRequest,
    per_piece: &[Vec<PiiSpan>],
    metrics: &Metrics,
) -> Option<(ChatRequest, Arc<RedactionMap>)> {
    if per_piece.iter().all(Vec::is_empty) {
        return None;
    }
    let mut map = RedactionMap::new();
    let mut out = req.clone();
    // Every piece goes through the map once anything was detected, also the
    // pieces with no detection: a literal "[EMAIL_1]" the client wrote must
    // not be restored into the value that placeholder stands for.
    out.redact_texts(|i, text| {
        let spans = per_piece.get(i).map_or(&[][..], Vec::as_slice);
        for s in spans {
            metrics.add(
                metrics::REDACTIONS,
                vec![("kind", s.kind.as_str().to_owned())],
                1.0,
            );
        }
        Some(map.redact(text, spans))
    });
    (!map.is_empty()).then(|| (out, Arc::new(map)))
}

/// Restores placeholders in a complete answer: its text and every tool
/// call's id, name and arguments (a model given `[EMAIL_1]` may pass it to
/// a tool).
fn restore_answer(resp: &mut ChatResponse, map: &RedactionMap) {
    resp.text = map.restore(&resp.text);
    let more = resp.more_choices.iter_mut().flat_map(|c| {
        c.text = map.restore(&c.text);
        c.tool_calls.iter_mut()
    });
    for call in resp.tool_calls.iter_mut().chain(more) {
        call.id = map.restore(&call.id);
        call.name = map.restore(&call.name);
        call.arguments = map.restore(&call.arguments);
    }
}

/// Restores placeholders in a streamed answer; text that could be the start of
/// a placeholder is held back until the next delta decides it. Each tool
/// call's arguments stream through a restorer of their own; ids and names
/// arrive whole in a call's first piece.
fn restore_stream(stream: ChatStream, map: Arc<RedactionMap>) -> ChatStream {
    let mut restorer = Some(Restorer::new(map.clone()));
    let mut calls: Vec<(u32, Restorer)> = Vec::new();
    Box::pin(stream.flat_map(move |item| {
        let out: Vec<Result<StreamEvent, ProviderError>> = match item {
            Ok(StreamEvent::Delta(text)) => match restorer.as_mut() {
                Some(r) => {
                    let shown = r.push(&text);
                    if shown.is_empty() {
                        Vec::new()
                    } else {
                        vec![Ok(StreamEvent::Delta(shown))]
                    }
                }
                None => vec![Ok(StreamEvent::Delta(text))],
            },
            Ok(StreamEvent::ToolCall(d)) => {
                let mut v = Vec::new();
                // A new call ends the previous ones' arguments.
                if d.id.is_some() {
                    v.extend(flush_calls(&mut calls));
                }
                let r = match calls.iter_mut().position(|(i, _)| *i == d.index) {
                    Some(p) => &mut calls[p].1,
                    None => {
                        calls.push((d.index, Restorer::new(map.clone())));
                        let last = calls.len() - 1;
                        &mut calls[last].1
                    }
                };
                let arguments = r.push(&d.arguments);
                if d.id.is_some() || !arguments.is_empty() {
                    v.push(Ok(StreamEvent::ToolCall(ToolCallDelta {
                        index: d.index,
                        id: d.id.map(|s| map.restore(&s)),
                        name: d.name.map(|s| map.restore(&s)),
                        arguments,
                    })));
                }
                v
            }
            // Token-level log probabilities are of the redacted text; they
            // are passed on as they came.
            Ok(ev @ StreamEvent::Logprobs(_)) => vec![Ok(ev)],
            Ok(StreamEvent::Done(done)) => {
                let rest = restorer.take().map(Restorer::finish).unwrap_or_default();
                let mut v = Vec::new();
                if !rest.is_empty() {
                    v.push(Ok(StreamEvent::Delta(rest)));
                }
                v.extend(flush_calls(&mut calls));
                v.push(Ok(StreamEvent::Done(done)));
                v
            }
            Err(e) => vec![Err(e)],
        };
        futures::stream::iter(out)
    }))
}

/// The argument text held back for each open tool call, as final pieces.
fn flush_calls(calls: &mut Vec<(u32, Restorer)>) -> Vec<Result<StreamEvent, ProviderError>> {
    calls
        .drain(..)
        .filter_map(|(index, r)| {
            let rest = r.finish();
            (!rest.is_empty()).then_some(Ok(StreamEvent::ToolCall(ToolCallDelta {
                index,
                id: None,
                name: None,
                arguments: rest,
            })))
        })
        .collect()
}

/// The targets a request may be sent to, in order, after the dispatch-time
/// privacy re-check. The policy already filtered them; this check is the second
/// lock on the same door, so a bug in one cannot leak data on its own. A
/// target whose backend lacks a capability the request needs is skipped the
/// same way, by the policy's own check (`watershed_policies::lacking`) over
/// [`backend_capabilities`].
pub fn allowed_targets(
    rt: &Runtime,
    targets: &[String],
    privacy: PrivacyLevel,
    needs: &Needs,
) -> Vec<Arc<TargetHandle>> {
    targets
        .iter()
        .filter_map(|id| rt.target(id))
        .filter(|t| {
            let ok = privacy < PrivacyLevel::Confidential || t.trusted;
            if !ok {
                warn!(target_id = %t.id, privacy = privacy.as_str(), "dispatch refused a target outside the trust boundary");
            }
            ok
        })
        .filter(|t| match lacking(needs, &backend_capabilities(rt, t)) {
            None => true,
            Some(cap) => {
                warn!(target_id = %t.id, capability = cap.as_str(), "dispatch skipped a target lacking a capability");
                false
            }
        })
        .cloned()
        .collect()
}

/// When the policy allowed `targets` but every one of them lacks, by its
/// backend's own account, something the request needs: the capability the
/// first lacks, for a 400 `missing_capability` instead of "no target".
pub fn lacked_by_all(rt: &Runtime, targets: &[String], needs: &Needs) -> Option<Capability> {
    let mut first = None;
    for t in targets.iter().filter_map(|id| rt.target(id)) {
        match lacking(needs, &backend_capabilities(rt, t)) {
            None => return None,
            Some(cap) => {
                first.get_or_insert(cap);
            }
        }
    }
    first
}

/// What a target can do now: its configured capabilities met with what its
/// backend itself reports — tool calling, JSON mode, embeddings and the
/// context window from `Provider::capabilities` (for the local engine, its
/// loaded model's), logprobs from `Provider::sends_option`, images from
/// whether its adapter can send them at all (the local engine cannot).
pub fn backend_capabilities(rt: &Runtime, t: &TargetHandle) -> TargetCapabilities {
    let own = t.provider.capabilities();
    let backend = TargetCapabilities {
        tools: own.tools,
        json_schema: own.json_mode,
        vision: own.vision,
        embeddings: own.embeddings,
        logprobs: t.provider.sends_option("logprobs"),
        context_tokens: own.context_tokens.map(u64::from),
    };
    match rt.routing_config().target(&t.id) {
        Some(cfg) => cfg.capabilities.meet(&backend),
        None => backend,
    }
}

/// Picks the error to report when every target failed: a real upstream failure
/// says more than "key not configured", which says more than nothing.
fn worst(current: Option<ProviderError>, new: ProviderError) -> Option<ProviderError> {
    match current {
        Some(ProviderError::MissingKey { .. }) | None => Some(new),
        Some(old) if matches!(new, ProviderError::MissingKey { .. }) => Some(old),
        Some(_) => Some(new),
    }
}

fn no_target(route: &str) -> ProviderError {
    ProviderError::Overloaded {
        message: format!("no allowed target can serve route \"{route}\""),
        retry_after_s: None,
    }
}

/// The time bounds of one request's dispatch (`server.request_deadline_ms`,
/// `server.stream_deadline_ms`), both counted from when dispatch starts.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Every target and retry together, and for a stream up to its first event.
    pub request_deadline: Duration,
    /// A whole streamed answer, up to its last event.
    pub stream_deadline: Duration,
}

impl Limits {
    pub fn of(server: &ServerSettings) -> Self {
        Limits {
            request_deadline: Duration::from_millis(server.request_deadline_ms),
            stream_deadline: Duration::from_millis(server.stream_deadline_ms),
        }
    }
}

/// The longest `retry-after` dispatch honours before retrying the same
/// target; an upstream asking for more is left for the next target.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// The pause before retry number `retry` (0 for the first) on a target with
/// backoff base `base`: the upstream's `retry-after` when it sent one (up to
/// [`MAX_RETRY_AFTER`], `None` beyond), otherwise `base × 2^retry` with
/// jitter over its upper half, so clients failing together do not come back
/// together.
fn backoff(base: Duration, retry: u32, err: &ProviderError) -> Option<Duration> {
    if let Some(secs) = err.retry_after_s() {
        let wait = Duration::from_secs(secs);
        return (wait <= MAX_RETRY_AFTER).then_some(wait);
    }
    let base = base.saturating_mul(1u32 << retry.min(16));
    let half = base / 2;
    Some(half + half.mul_f64(jitter()))
}

/// A number in [0, 1) that differs between calls; the standard library's
/// randomly keyed hasher is enough for spreading retries.
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let bits = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    // The top 53 bits fill an f64 mantissa exactly.
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// What one attempt produced.
enum Answer {
    Full(ChatResponse),
    Stream(ChatStream),
}

/// What a successful attempt gives, and how it lets go of the pool member
/// that produced it.
trait Attempted: Sized {
    /// Reports the member `lease` healthy; a stream keeps holding it until
    /// its last event.
    fn settle(self, t: &TargetHandle, lease: Option<Lease>, meter: &Meter) -> Self;
}

impl Attempted for Answer {
    fn settle(self, t: &TargetHandle, lease: Option<Lease>, meter: &Meter) -> Self {
        match (self, lease) {
            (Answer::Stream(s), Some(l)) => {
                l.report_ok();
                Answer::Stream(match t.pool.clone() {
                    Some(p) => l.hold(p, meter.metrics().clone(), s),
                    None => s,
                })
            }
            (answer, lease) => {
                if let Some(l) = lease {
                    l.report_ok();
                }
                answer
            }
        }
    }
}

impl Attempted for Embeddings {
    fn settle(self, _t: &TargetHandle, lease: Option<Lease>, _meter: &Meter) -> Self {
        if let Some(l) = lease {
            l.report_ok();
        }
        self
    }
}

/// One attempt on `t` through `provider` (the target's, or for a pool the
/// leased member's): a complete answer, or a stream that has produced its
/// first event, so a stream failing after its headers but before anything
/// reached the client can still fall back.
async fn attempt(
    t: &TargetHandle,
    provider: &Arc<dyn Provider>,
    out: &Outbound,
    stream: bool,
) -> Result<Answer, ProviderError> {
    let (req, map) = out.for_target(t);
    if !stream {
        let mut resp = provider.chat(req).await?;
        if let Some(map) = map {
            restore_answer(&mut resp, map);
        }
        return Ok(Answer::Full(resp));
    }
    let mut upstream = provider.chat_stream(req).await?;
    let first = match upstream.next().await {
        Some(Ok(ev)) => ev,
        Some(Err(e)) => return Err(e),
        None => {
            return Err(ProviderError::Protocol {
                target: t.id.clone(),
                message: "the stream ended before its first event".to_owned(),
            })
        }
    };
    let upstream: ChatStream = Box::pin(futures::stream::iter([Ok(first)]).chain(upstream));
    Ok(Answer::Stream(match map {
        Some(map) => restore_stream(upstream, map.clone()),
        None => upstream,
    }))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Tries the targets in order, each up to `1 + retries` times, all within
/// the request deadline, making each try with `attempt` (an answer, whole or
/// streamed, or embeddings: every kind of request goes through this one
/// loop). A transient failure (429, 5xx, connect error, timeout) is retried
/// on the same target after a backoff that would still end before the
/// deadline; any other failure of the target's own moves on to the next; a
/// failure caused by the request itself ends dispatch.
async fn run<A, F>(
    targets: &[Arc<TargetHandle>],
    out: &Outbound,
    meter: &mut Meter,
    route: &str,
    limits: Limits,
    attempt: F,
) -> Result<(Arc<TargetHandle>, A), ProviderError>
where
    A: Attempted,
    F: for<'a> Fn(
        &'a TargetHandle,
        &'a Arc<dyn Provider>,
        &'a Outbound,
    ) -> BoxFuture<'a, Result<A, ProviderError>>,
{
    let deadline = Instant::now() + limits.request_deadline;
    let expired = || ProviderError::Deadline {
        after_ms: millis(limits.request_deadline),
    };
    let mut last = None;
    let mut open = Vec::new();
    for t in targets {
        // A target that cannot honour an option the request sets is skipped,
        // never sent the request without it.
        if let Some(field) = t.provider.refused_option(&out.original) {
            meter.skipped(t, "unsupported option");
            warn!(request_id = %meter.request_id(), backend = %t.id, field, "dispatch skipped a target that cannot honour an option");
            last = worst(last, unsupported_option(t, field));
            continue;
        }
        if let Some(b) = &t.breaker {
            let (admitted, moved) = b.admit(std::time::Instant::now());
            if let Some(to) = moved {
                meter.breaker_moved(t, to);
            }
            if !admitted {
                meter.skipped(t, "circuit open");
                let wait = b.retry_in(std::time::Instant::now()).unwrap_or_default();
                open.push((t.id.as_str(), wait));
                continue;
            }
        }
        let mut retry = 0;
        // The pool members this request tried on `t`, so a retry goes to
        // another one where there is one.
        let mut tried: Vec<usize> = Vec::new();
        loop {
            let lease = match &t.pool {
                None => None,
                Some(pool) => match pool.pick(&tried) {
                    Some(l) => Some(l),
                    // No member is usable. On a first try that is the pool's
                    // one failure its breaker counts; on a retry the failure
                    // that emptied the pool was counted already.
                    None if tried.is_empty() => {
                        meter.skipped(t, "no usable pool member");
                        breaker_failure(t, meter);
                        last = worst(last, no_member(&t.id));
                        break;
                    }
                    None => break,
                },
            };
            meter.attempt(t);
            if let Some(l) = &lease {
                tried.push(l.index);
                meter.member(&l.member);
            }
            let provider = lease.as_ref().map_or(&t.provider, |l| &l.member.provider);
            let result = tokio::time::timeout_at(deadline, attempt(t, provider, out)).await;
            let Ok(result) = result else {
                warn!(request_id = %meter.request_id(), backend = %t.id, "request deadline reached during an attempt");
                let timeout = ProviderError::Timeout {
                    target: t.id.clone(),
                    after_ms: millis(limits.request_deadline),
                };
                member_failure(t, lease.as_ref(), &timeout, meter);
                return Err(expired());
            };
            let e = match result {
                Ok(answer) => {
                    breaker_success(t, meter);
                    return Ok((t.clone(), answer.settle(t, lease, meter)));
                }
                Err(e) if !e.is_retryable() => {
                    // The target answered; the request was at fault.
                    if let Some(l) = &lease {
                        l.report_ok();
                    }
                    breaker_success(t, meter);
                    return Err(e);
                }
                Err(e) => e,
            };
            // A target without its key never sent anything: not a sign of
            // the upstream's health.
            if !matches!(e, ProviderError::MissingKey { .. }) {
                member_failure(t, lease.as_ref(), &e, meter);
            }
            drop(lease);
            // The upstream's own words stay here, in the log: they may hold
            // its URL or echo what it was sent.
            warn!(request_id = %meter.request_id(), backend = %t.id, attempt = retry + 1, error = %e, "upstream attempt failed");
            // A breaker this failure opened ends the retries too.
            let closed = t
                .breaker
                .as_ref()
                .is_none_or(|b| b.state() == BreakerState::Closed);
            // A retry on another pool member need not wait: that server
            // did not fail.
            let elsewhere = t.pool.as_ref().is_some_and(|p| p.has_untried(&tried));
            let pause = (e.is_transient() && retry < t.retries && closed)
                .then(|| {
                    if elsewhere {
                        Some(Duration::ZERO)
                    } else {
                        backoff(t.retry_backoff, retry, &e)
                    }
                })
                .flatten()
                .filter(|p| Instant::now() + *p < deadline);
            last = worst(last, e);
            let Some(pause) = pause else { break };
            meter.retried(t, retry + 1);
            tokio::time::sleep(pause).await;
            retry += 1;
        }
        if Instant::now() >= deadline {
            return Err(expired());
        }
    }
    Err(last.unwrap_or_else(|| {
        if open.is_empty() {
            no_target(route)
        } else {
            let names: Vec<&str> = open.iter().map(|(id, _)| *id).collect();
            // The client may come back when the first breaker lets a probe through.
            let soonest = open.iter().map(|(_, wait)| *wait).min().unwrap_or_default();
            ProviderError::Overloaded {
                message: format!(
                    "no target of route \"{route}\" can serve now: circuit open for {}",
                    names.join(", ")
                ),
                retry_after_s: Some(soonest.as_secs_f64().ceil() as u64),
            }
        }
    }))
}

fn breaker_success(t: &TargetHandle, meter: &Meter) {
    if let Some(to) = t.breaker.as_ref().and_then(Breaker::success) {
        meter.breaker_moved(t, to);
    }
}

/// A failed attempt: for a pool, counted against the member (which may
/// eject it) and against the target's breaker only when no member is left
/// usable; otherwise against the breaker.
fn member_failure(t: &TargetHandle, lease: Option<&Lease>, e: &ProviderError, meter: &Meter) {
    if let (Some(pool), Some(l)) = (&t.pool, lease) {
        l.report(pool, Some(e), meter.metrics());
        if pool.any_usable() {
            return;
        }
    }
    breaker_failure(t, meter);
}

/// The 400 for a request whose option `field` target `t` cannot honour; it
/// is what the client gets when no other target of the route could serve.
fn unsupported_option(t: &TargetHandle, field: &str) -> ProviderError {
    let kind = t.provider.capabilities().kind;
    ProviderError::bad_request(
        format!(
            "unsupported parameter \"{field}\": target \"{}\" ({}) cannot honour it",
            t.id,
            kind.otel_name()
        ),
        Some(field),
    )
}

fn no_member(target: &str) -> ProviderError {
    ProviderError::Overloaded {
        message: format!("no member of pool target \"{target}\" is usable now"),
        retry_after_s: None,
    }
}

fn breaker_failure(t: &TargetHandle, meter: &Meter) {
    let now = std::time::Instant::now();
    if let Some(to) = t.breaker.as_ref().and_then(|b| b.failure(now)) {
        meter.breaker_moved(t, to);
    }
}

/// One complete answer from the first target that gives one.
pub async fn chat(
    targets: &[Arc<TargetHandle>],
    out: &Outbound,
    meter: &mut Meter,
    route: &str,
    limits: Limits,
) -> Result<(Arc<TargetHandle>, ChatResponse), ProviderError> {
    let whole = run(targets, out, meter, route, limits, |t, p, o| {
        attempt(t, p, o, false).boxed()
    });
    match whole.await? {
        (t, Answer::Full(resp)) => Ok((t, resp)),
        (t, Answer::Stream(_)) => Err(ProviderError::Internal(format!(
            "target {} streamed an answer asked for whole",
            t.id
        ))),
    }
}

/// A stream from the first target whose stream produces a first event.
/// Fallback happens only before that event reaches the client; after it, a
/// failure is an error event in the stream. The whole stream ends by
/// `limits.stream_deadline`.
pub async fn chat_stream(
    targets: &[Arc<TargetHandle>],
    out: &Outbound,
    meter: &mut Meter,
    route: &str,
    limits: Limits,
) -> Result<(Arc<TargetHandle>, ChatStream), ProviderError> {
    let until = Instant::now() + limits.stream_deadline;
    let streamed = run(targets, out, meter, route, limits, |t, p, o| {
        attempt(t, p, o, true).boxed()
    });
    match streamed.await? {
        (t, Answer::Stream(s)) => Ok((t, bounded(s, until, millis(limits.stream_deadline)))),
        (t, Answer::Full(_)) => Err(ProviderError::Internal(format!(
            "target {} answered whole a request asked as a stream",
            t.id
        ))),
    }
}

/// Embeddings from the first target that gives them, tried exactly as an
/// answer is: in order, past open breakers, on pool members, with the
/// target's `retries` and `retry_backoff_ms`, within the request deadline.
/// An embedding needs no restoring: the redacted copy's vectors stand.
pub async fn embed(
    targets: &[Arc<TargetHandle>],
    out: &Outbound,
    meter: &mut Meter,
    route: &str,
    limits: Limits,
) -> Result<(Arc<TargetHandle>, Embeddings), ProviderError> {
    run(targets, out, meter, route, limits, |t, p, o| {
        p.embed(o.for_target(t).0)
    })
    .await
}

/// `stream` cut at `until` with a deadline error as its last item.
fn bounded(stream: ChatStream, until: Instant, after_ms: u64) -> ChatStream {
    Box::pin(futures::stream::unfold(Some(stream), move |s| async move {
        let mut s = s?;
        match tokio::time::timeout_at(until, s.next()).await {
            Ok(Some(item)) => Some((item, Some(s))),
            Ok(None) => None,
            Err(_) => Some((Err(ProviderError::Deadline { after_ms }), None)),
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16, retry_after_s: Option<u64>) -> ProviderError {
        ProviderError::Upstream {
            target: "a".into(),
            status,
            message: String::new(),
            retry_after_s,
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_and_honours_a_capped_retry_after() {
        let base = Duration::from_millis(200);
        for retry in 0..4 {
            let full = base * (1 << retry);
            let wait = backoff(base, retry, &status(503, None)).unwrap();
            assert!(wait >= full / 2 && wait <= full, "{retry}: {wait:?}");
        }
        // A huge retry count saturates instead of overflowing.
        assert!(backoff(base, 1000, &status(503, None)).is_some());
        assert_eq!(
            backoff(base, 0, &status(429, Some(3))),
            Some(Duration::from_secs(3))
        );
        assert_eq!(backoff(base, 0, &status(429, Some(3600))), None);
    }

    use watershed_providers::{Message, Role};

    #[test]
    fn a_literal_placeholder_in_another_field_is_not_restored_into_a_value() {
        let req = ChatRequest {
            model: "m".into(),
            messages: vec![
                Message::new(Role::User, "write to zoe@example.com"),
                Message::new(Role::User, "and keep [EMAIL_1] as it is"),
            ],
            ..ChatRequest::default()
        };
        let scan = crate::scan::scan_now(&req);
        let out = Outbound::new(req.clone(), true, &scan.per_piece, &Metrics::default());
        let (sent, map) = out.redacted.clone().unwrap();
        assert!(!sent.messages[0].content.contains("zoe@example.com"));
        // What the target saw restores to exactly what the client wrote.
        for (s, o) in sent.messages.iter().zip(&req.messages) {
            assert_eq!(map.restore(&s.content), o.content, "{}", s.content);
        }
        assert_eq!(out.redacted_values(), map.len());
        // Nothing detected: nothing is rewritten.
        let plain = ChatRequest {
            messages: vec![Message::new(Role::User, "keep [EMAIL_1]")],
            ..ChatRequest::default()
        };
        let scan = crate::scan::scan_now(&plain);
        assert!(
            Outbound::new(plain, true, &scan.per_piece, &Metrics::default())
                .redacted
                .is_none()
        );
    }

    #[test]
    fn dispatch_asks_the_backend_itself_with_the_policys_check() {
        // The config claims more than the Anthropic adapter can do (as a
        // config changed after load could): dispatch still skips it, from
        // the backend's own capabilities, while the OpenAI target passes.
        let mut cfg = watershed_policies::load_config(
            "version: 1\nmodels:\n  claude: { provider: anthropic, model: claude-2.1, base_url: http://127.0.0.1:9, api_key_env: K }\n  \
             gpt: { provider: openai, model: gpt-4o, base_url: http://127.0.0.1:9, api_key_env: K }\n\
             server: { default_privacy: public }\n\
             routes:\n  - name: all\n    when: { privacy: \"< confidential\" }\n    to: [claude, gpt]\n",
            "p.yaml",
        )
        .unwrap();
        let claude = cfg.models.get_mut("claude").unwrap();
        claude.capabilities.json_schema = true;
        claude.capabilities.logprobs = true;
        let rt =
            crate::state::build_runtime(std::sync::Arc::new(cfg), std::path::Path::new("."), None)
                .unwrap();
        let ids = |needs: Needs| -> Vec<String> {
            allowed_targets(
                &rt,
                &["claude".into(), "gpt".into()],
                PrivacyLevel::Public,
                &needs,
            )
            .iter()
            .map(|t| t.id.clone())
            .collect()
        };
        assert_eq!(ids(Needs::default()), vec!["claude", "gpt"]);
        for needs in [
            Needs {
                logprobs: true,
                ..Needs::default()
            },
            Needs {
                json_schema: true,
                ..Needs::default()
            },
        ] {
            assert_eq!(ids(needs), vec!["gpt"], "{needs:?}");
        }
        // When every target lacks it, the capability is named.
        let logprobs = Needs {
            logprobs: true,
            ..Needs::default()
        };
        assert_eq!(
            lacked_by_all(&rt, &["claude".into()], &logprobs),
            Some(Capability::Logprobs)
        );
        assert_eq!(
            lacked_by_all(&rt, &["claude".into(), "gpt".into()], &logprobs),
            None
        );
        // The configured window stands where the backend knows none (the
        // built-in facts give Claude 2 none).
        let claude = rt.target("claude").unwrap();
        assert_eq!(backend_capabilities(&rt, claude).context_tokens, None);
        let gpt = rt.target("gpt").unwrap();
        assert_eq!(backend_capabilities(&rt, gpt).context_tokens, Some(128_000));
        let big = Needs {
            context_tokens: Some(200_000),
            ..Needs::default()
        };
        assert_eq!(ids(big), vec!["claude"]);
    }
}
