//! Dispatch: tries a decision's targets in order, never one outside the privacy
//! boundary, and falls back when a target fails for reasons of its own.

use std::sync::Arc;

use futures::StreamExt;
use tracing::{info, warn};
use watershed_policies::privacy::{RedactionMap, Restorer};
use watershed_policies::{PiiSpan, PrivacyLevel};
use watershed_providers::{ChatRequest, ChatResponse, ChatStream, ProviderError, StreamEvent};

use crate::meter::Meter;
use crate::metrics::{self, Metrics};
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
    out.redact_texts(|i, text| {
        let spans = per_piece.get(i).filter(|s| !s.is_empty())?;
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

/// Restores placeholders in a streamed answer; text that could be the start of
/// a placeholder is held back until the next delta decides it.
fn restore_stream(stream: ChatStream, map: Arc<RedactionMap>) -> ChatStream {
    let mut restorer = Some(Restorer::new(map));
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
            Ok(StreamEvent::Done(done)) => {
                let rest = restorer.take().map(Restorer::finish).unwrap_or_default();
                let mut v = Vec::new();
                if !rest.is_empty() {
                    v.push(Ok(StreamEvent::Delta(rest)));
                }
                v.push(Ok(StreamEvent::Done(done)));
                v
            }
            Err(e) => vec![Err(e)],
        };
        futures::stream::iter(out)
    }))
}

/// The targets a request may be sent to, in order, after the dispatch-time
/// privacy re-check. The policy already filtered them; this check is the second
/// lock on the same door, so a bug in one cannot leak data on its own.
pub fn allowed_targets(
    rt: &Runtime,
    targets: &[String],
    privacy: PrivacyLevel,
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
        .cloned()
        .collect()
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

/// One complete answer from the first target that gives one.
pub async fn chat(
    targets: &[Arc<TargetHandle>],
    out: &Outbound,
    meter: &mut Meter,
    route: &str,
) -> Result<(Arc<TargetHandle>, ChatResponse), ProviderError> {
    let mut last = None;
    for t in targets {
        meter.attempt(t);
        let (req, map) = out.for_target(t);
        match t.provider.chat(req).await {
            Ok(mut resp) => {
                if let Some(map) = map {
                    resp.text = map.restore(&resp.text);
                }
                return Ok((t.clone(), resp));
            }
            Err(e) if e.is_retryable() => {
                info!(backend = %t.id, error = %e, "target failed, trying the next one");
                last = worst(last, e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| no_target(route)))
}

/// A stream from the first target that starts one. Fallback happens only before
/// the first byte of an answer; after that the client has seen text.
pub async fn chat_stream(
    targets: &[Arc<TargetHandle>],
    out: &Outbound,
    meter: &mut Meter,
    route: &str,
) -> Result<(Arc<TargetHandle>, ChatStream), ProviderError> {
    let mut last = None;
    for t in targets {
        meter.attempt(t);
        let (req, map) = out.for_target(t);
        match t.provider.chat_stream(req).await {
            Ok(stream) => {
                let stream = match map {
                    Some(map) => restore_stream(stream, map.clone()),
                    None => stream,
                };
                return Ok((t.clone(), stream));
            }
            Err(e) if e.is_retryable() => {
                info!(backend = %t.id, error = %e, "target failed, trying the next one");
                last = worst(last, e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| no_target(route)))
}
