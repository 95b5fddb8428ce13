//! Dispatch: tries a decision's targets in order, never one outside the privacy
//! boundary, and falls back when a target fails for reasons of its own.

use std::sync::Arc;

use tracing::{info, warn};
use watershed_policies::PrivacyLevel;
use watershed_providers::{ChatRequest, ChatResponse, ChatStream, ProviderError};

use crate::meter::Meter;
use crate::state::{Runtime, TargetHandle};

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
    req: &ChatRequest,
    meter: &mut Meter,
    route: &str,
) -> Result<(Arc<TargetHandle>, ChatResponse), ProviderError> {
    let mut last = None;
    for t in targets {
        meter.attempt(t);
        match t.provider.chat(req).await {
            Ok(resp) => return Ok((t.clone(), resp)),
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
    req: &ChatRequest,
    meter: &mut Meter,
    route: &str,
) -> Result<(Arc<TargetHandle>, ChatStream), ProviderError> {
    let mut last = None;
    for t in targets {
        meter.attempt(t);
        match t.provider.chat_stream(req).await {
            Ok(stream) => return Ok((t.clone(), stream)),
            Err(e) if e.is_retryable() => {
                info!(backend = %t.id, error = %e, "target failed, trying the next one");
                last = worst(last, e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| no_target(route)))
}
