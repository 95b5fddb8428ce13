//! Errors a backend can return, each with a small code that the gateway maps to
//! an HTTP status in one place.

use thiserror::Error;

/// Stable error codes shared by every crate; only `gateway` turns them into
/// HTTP statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    BadRequest,
    /// No target the request may reach can do something it needs (tools,
    /// JSON schema, images, logprobs, embeddings, a large enough context).
    MissingCapability,
    Unauthorized,
    PolicyDenied,
    /// An unknown model (the only thing a valid endpoint can fail to find).
    NotFound,
    /// A path the gateway does not serve.
    UnknownEndpoint,
    /// A path it serves, with another method.
    MethodNotAllowed,
    PayloadTooLarge,
    BudgetExceeded,
    RateLimited,
    Overloaded,
    UpstreamError,
    UpstreamUnavailable,
    UpstreamTimeout,
    /// The ledger journal is full and new paid requests are refused.
    LedgerUnavailable,
    /// The gateway is stopping and ended the answer at its drain deadline.
    ShuttingDown,
    Cancelled,
    Internal,
}

impl ErrorCode {
    /// The machine-readable `code` field of the OpenAI error body and the ledger.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::MissingCapability => "missing_capability",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::PolicyDenied => "policy_denied",
            ErrorCode::NotFound => "model_not_found",
            ErrorCode::UnknownEndpoint => "unknown_endpoint",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::BudgetExceeded => "budget_exceeded",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::UpstreamError => "upstream_error",
            ErrorCode::UpstreamUnavailable => "upstream_unavailable",
            ErrorCode::UpstreamTimeout => "upstream_timeout",
            ErrorCode::LedgerUnavailable => "ledger_unavailable",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::Cancelled => "cancelled",
            ErrorCode::Internal => "internal_error",
        }
    }
}

#[derive(Debug, Clone, Error)]
pub enum ProviderError {
    /// The request cannot be served as asked (names the offending field).
    #[error("{message}")]
    BadRequest {
        message: String,
        param: Option<String>,
    },
    /// The target's API key variable is not set.
    #[error("target \"{target}\" is unavailable: environment variable {env} is not set")]
    MissingKey { target: String, env: String },
    /// The upstream answered with an error status.
    #[error("upstream {target} answered {status}: {message}")]
    Upstream {
        target: String,
        status: u16,
        message: String,
        /// The upstream's `retry-after` in whole seconds, when it sent one.
        retry_after_s: Option<u64>,
    },
    /// The upstream could not be reached or broke the connection.
    #[error("upstream {target} unreachable: {message}")]
    Unreachable { target: String, message: String },
    #[error("upstream {target} timed out after {after_ms} ms")]
    Timeout { target: String, after_ms: u64 },
    /// The request's own deadline (`server.request_deadline_ms` or
    /// `server.stream_deadline_ms`) ran out, across every target and retry.
    #[error("no answer within the request deadline of {after_ms} ms")]
    Deadline { after_ms: u64 },
    /// The local engine's queue is full or the model is not loaded.
    #[error("{message}")]
    Overloaded {
        message: String,
        retry_after_s: Option<u64>,
    },
    /// The upstream sent something we could not understand.
    #[error("invalid response from {target}: {message}")]
    Protocol { target: String, message: String },
    #[error("request cancelled")]
    Cancelled,
    #[error("internal error: {0}")]
    Internal(String),
}

impl ProviderError {
    pub fn bad_request(message: impl Into<String>, param: Option<&str>) -> Self {
        ProviderError::BadRequest {
            message: message.into(),
            param: param.map(str::to_owned),
        }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            ProviderError::BadRequest { .. } => ErrorCode::BadRequest,
            ProviderError::MissingKey { .. } => ErrorCode::UpstreamUnavailable,
            ProviderError::Upstream { status, .. } => match *status {
                400 | 404 | 413 | 422 => ErrorCode::BadRequest,
                429 => ErrorCode::RateLimited,
                503 | 529 => ErrorCode::UpstreamUnavailable,
                _ => ErrorCode::UpstreamError,
            },
            ProviderError::Unreachable { .. } => ErrorCode::UpstreamUnavailable,
            ProviderError::Timeout { .. } | ProviderError::Deadline { .. } => {
                ErrorCode::UpstreamTimeout
            }
            ProviderError::Overloaded { .. } => ErrorCode::Overloaded,
            ProviderError::Protocol { .. } => ErrorCode::UpstreamError,
            ProviderError::Cancelled => ErrorCode::Cancelled,
            ProviderError::Internal(_) => ErrorCode::Internal,
        }
    }

    /// How long the client should wait before trying again, when the backend
    /// said (a full local queue, an upstream's `Retry-After`).
    pub fn retry_after_s(&self) -> Option<u64> {
        match self {
            ProviderError::Overloaded { retry_after_s, .. }
            | ProviderError::Upstream { retry_after_s, .. } => *retry_after_s,
            _ => None,
        }
    }

    /// Whether dispatch may try the next target: the fault lies with this target,
    /// not with the request.
    pub fn is_retryable(&self) -> bool {
        !matches!(self.code(), ErrorCode::BadRequest | ErrorCode::Cancelled)
    }

    /// Whether the same target is worth another try after a pause: it was rate
    /// limited, failed on its side (5xx), could not be reached or timed out.
    /// Everything else (a bad request, a missing key, an answer we could not
    /// read, a full local queue) would fail the same way again.
    pub fn is_transient(&self) -> bool {
        match self {
            ProviderError::Upstream { status, .. } => *status == 429 || *status >= 500,
            ProviderError::Unreachable { .. } | ProviderError::Timeout { .. } => true,
            _ => false,
        }
    }

    /// What a client may be shown. An upstream's URL (in connection errors)
    /// and its raw error text can carry hosts, account ids or echoed secrets,
    /// so they stay in the log, keyed by request id; the client learns which
    /// target failed and how.
    pub fn public_message(&self) -> String {
        match self {
            ProviderError::Upstream { target, status, .. } => {
                format!("upstream {target} answered {status}")
            }
            ProviderError::Unreachable { target, .. } => {
                format!("upstream {target} could not be reached")
            }
            ProviderError::Protocol { target, .. } => {
                format!("upstream {target} sent an answer that could not be read")
            }
            ProviderError::Internal(_) => "internal error".to_owned(),
            other => other.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_messages_name_the_target_and_status_but_not_the_upstream_text() {
        let e = ProviderError::Upstream {
            target: "gpt".into(),
            status: 500,
            message: "key sk-live-123 at https://internal.example failed".into(),
            retry_after_s: None,
        };
        assert_eq!(e.public_message(), "upstream gpt answered 500");
        let e = ProviderError::Unreachable {
            target: "gpt".into(),
            message: "error sending request for url (https://internal.example/v1)".into(),
        };
        assert!(!e.public_message().contains("internal.example"));
        assert!(e.is_transient());
        let e = ProviderError::Protocol {
            target: "gpt".into(),
            message: "raw body".into(),
        };
        assert!(!e.is_transient() && e.is_retryable());
    }
}
