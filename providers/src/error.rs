//! Errors a backend can return, each with a small code that the gateway maps to
//! an HTTP status in one place.

use thiserror::Error;

/// Stable error codes shared by every crate; only `gateway` turns them into
/// HTTP statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    BadRequest,
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
    Cancelled,
    Internal,
}

impl ErrorCode {
    /// The machine-readable `code` field of the OpenAI error body and the ledger.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
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
        /// The upstream's `Retry-After`, in seconds, passed on to the client.
        retry_after_s: Option<u64>,
    },
    /// The upstream could not be reached or broke the connection.
    #[error("upstream {target} unreachable: {message}")]
    Unreachable { target: String, message: String },
    #[error("upstream {target} timed out after {after_ms} ms")]
    Timeout { target: String, after_ms: u64 },
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
            ProviderError::Timeout { .. } => ErrorCode::UpstreamTimeout,
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
}
