//! Privacy classification of a request's outbound text, bounded in size and
//! time and kept off the async runtime.
//!
//! Small requests (at most `privacy.scan.inline_bytes` of outbound text) are
//! classified in line: the detectors take microseconds there, less than a
//! hand-off to another thread. Larger ones run on a blocking thread, at most
//! `privacy.scan.workers` at once, so a flood of large prompts holds blocking
//! threads and never the async workers that answer small requests and
//! `/healthz`. A request that is larger than `privacy.scan.max_bytes`, or
//! whose classification (waiting for a worker included) does not finish in
//! `privacy.scan.timeout_ms`, **fails closed**: it is treated as `restricted`,
//! counted in `watershed_privacy_fail_closed_total`, and its explanation
//! says why. It is never sent anywhere unclassified.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use watershed_policies::difficulty::DifficultyModel;
use watershed_policies::{detect, PiiSpan, ScanSettings};
use watershed_providers::ChatRequest;

/// Why a request's classification did not finish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailClosed {
    /// More outbound text than `privacy.scan.max_bytes`.
    TooLarge { bytes: usize, limit: u64 },
    /// Not done within `privacy.scan.timeout_ms` (a worker included).
    Timeout { ms: u64 },
}

impl FailClosed {
    /// The `reason` label of the fail-closed metric.
    pub fn reason(&self) -> &'static str {
        match self {
            FailClosed::TooLarge { .. } => "too_large",
            FailClosed::Timeout { .. } => "timeout",
        }
    }
}

impl std::fmt::Display for FailClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FailClosed::TooLarge { bytes, limit } => write!(
                f,
                "classification skipped: {bytes} bytes of outbound text exceed privacy.scan.max_bytes ({limit}); treated as restricted"
            ),
            FailClosed::Timeout { ms } => write!(
                f,
                "classification did not finish within privacy.scan.timeout_ms ({ms} ms); treated as restricted"
            ),
        }
    }
}

/// What classification found in one request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scan {
    /// Detections of each piece of `ChatRequest::outbound_texts`, in order,
    /// in character offsets into that piece: what redaction rewrites.
    pub per_piece: Vec<Vec<PiiSpan>>,
    /// The same detections in character offsets into the pieces joined by
    /// newlines: the explanation's evidence.
    pub evidence: Vec<PiiSpan>,
    /// The difficulty score of the messages' text.
    pub difficulty: Option<f64>,
    /// Set when classification could not finish; the request is restricted.
    pub failed: Option<FailClosed>,
}

/// How many bytes of outbound text a request carries.
pub fn outbound_bytes(req: &ChatRequest) -> usize {
    req.outbound_texts().iter().map(|t| t.text.len()).sum()
}

/// Runs the detectors over every outbound piece and scores difficulty: the
/// work itself, unbounded; callers bound it.
pub fn scan_now(req: &ChatRequest) -> Scan {
    let mut per_piece = Vec::new();
    let mut evidence = Vec::new();
    let mut offset = 0usize;
    for (i, t) in req.outbound_texts().iter().enumerate() {
        if i > 0 {
            offset += 1; // the joining newline
        }
        let spans = detect(t.text);
        evidence.extend(spans.iter().map(|s| PiiSpan {
            kind: s.kind,
            start: s.start + offset,
            end: s.end + offset,
        }));
        offset += t.text.chars().count();
        per_piece.push(spans);
    }
    Scan {
        per_piece,
        evidence,
        difficulty: DifficultyModel::builtin()
            .ok()
            .map(|m| m.score(&req.text())),
        failed: None,
    }
}

fn failed(reason: FailClosed) -> Scan {
    Scan {
        failed: Some(reason),
        ..Scan::default()
    }
}

/// Classification within the size bound only, on the calling thread: for
/// `watershed policy explain` and `watershed classify`, which have no
/// runtime to protect.
pub fn scan_sized(req: &ChatRequest, limits: &ScanSettings) -> Scan {
    let bytes = outbound_bytes(req);
    if bytes as u64 > limits.max_bytes {
        return failed(FailClosed::TooLarge {
            bytes,
            limit: limits.max_bytes,
        });
    }
    scan_now(req)
}

/// The bounded pool large requests are classified on.
#[derive(Debug)]
pub struct ScanPool {
    permits: Arc<Semaphore>,
}

impl ScanPool {
    /// A pool of `workers` blocking threads at most.
    pub fn new(workers: u32) -> Self {
        ScanPool {
            permits: Arc::new(Semaphore::new(workers.max(1) as usize)),
        }
    }

    /// Classifies `req` within `limits`. The request is shared with the
    /// blocking thread, so it is still here when that thread overruns the
    /// time budget and the request fails closed.
    pub async fn scan(&self, req: &Arc<ChatRequest>, limits: &ScanSettings) -> Scan {
        let bytes = outbound_bytes(req);
        if bytes as u64 > limits.max_bytes {
            return failed(FailClosed::TooLarge {
                bytes,
                limit: limits.max_bytes,
            });
        }
        if bytes as u64 <= limits.inline_bytes {
            return scan_now(req);
        }
        let budget = Duration::from_millis(limits.timeout_ms);
        let permits = self.permits.clone();
        let shared = req.clone();
        let work = async move {
            // The permit travels into the blocking thread and is given back
            // only when the scan really ends, so overrunning scans still
            // count against the pool and the number of threads stays bounded.
            let permit = permits.acquire_owned().await.ok()?;
            tokio::task::spawn_blocking(move || {
                let _permit = permit;
                scan_now(&shared)
            })
            .await
            .ok()
        };
        match tokio::time::timeout(budget, work).await {
            Ok(Some(scan)) => scan,
            // A scan that panicked is as unclassified as one that timed out.
            Ok(None) | Err(_) => failed(FailClosed::Timeout {
                ms: limits.timeout_ms,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use watershed_policies::PiiKind;
    use watershed_providers::{Message, ResponseFormat, Role};

    fn req(user: &str, big: usize) -> ChatRequest {
        ChatRequest {
            model: "m".into(),
            messages: vec![
                Message::new(Role::System, "Be brief."),
                Message::new(Role::User, format!("{}hello", "lorem ipsum ".repeat(big))),
            ],
            user: Some(user.into()),
            stop: vec!["4111 1111 1111 1111".into()],
            response_format: Some(ResponseFormat::JsonSchema {
                name: "out".into(),
                schema: serde_json::json!({"description": "key AKIAIOSFODNN7EXAMPLE"}),
                strict: false,
            }),
            ..ChatRequest::default()
        }
    }

    #[test]
    fn every_outbound_field_is_detected_with_offsets_into_the_joined_text() {
        let r = req("zoe@example.com", 0);
        let s = scan_now(&r);
        let kinds: Vec<PiiKind> = s.evidence.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [PiiKind::CreditCard, PiiKind::Email, PiiKind::Secret],
            "{s:?}"
        );
        let joined: Vec<&str> = r.outbound_texts().iter().map(|t| t.text).collect();
        let joined: Vec<char> = joined.join("\n").chars().collect();
        let email = &s.evidence[1];
        let found: String = joined[email.start..email.end].iter().collect();
        assert_eq!(found, "zoe@example.com");
        // Per piece: the user id is piece 3 (two messages, one stop).
        assert_eq!(s.per_piece[3][0].start, 0);
    }

    #[tokio::test]
    async fn too_large_or_too_slow_fails_closed_and_large_scans_leave_the_runtime() {
        let pool = ScanPool::new(1);
        let r = Arc::new(req("zoe@example.com", 10_000));
        let tight = ScanSettings {
            max_bytes: 1024,
            ..ScanSettings::default()
        };
        let s = pool.scan(&r, &tight).await;
        assert_eq!(s.failed.as_ref().map(FailClosed::reason), Some("too_large"));
        assert!(s.failed.unwrap().to_string().contains("max_bytes (1024)"));
        // Off the runtime, found the same as in line.
        let off = ScanSettings {
            inline_bytes: 1024,
            ..ScanSettings::default()
        };
        let s = pool.scan(&r, &off).await;
        assert_eq!(s, scan_now(&r));
        assert_eq!(s.evidence.len(), 3);
        // No worker free within the budget: fails closed.
        let hold = pool.permits.clone().acquire_owned().await.unwrap();
        let slow = ScanSettings {
            inline_bytes: 1024,
            timeout_ms: 50,
            ..ScanSettings::default()
        };
        let s = pool.scan(&r, &slow).await;
        assert_eq!(s.failed, Some(FailClosed::Timeout { ms: 50 }));
        assert!(s.evidence.is_empty());
        drop(hold);
    }
}
