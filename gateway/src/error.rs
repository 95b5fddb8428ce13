//! The one place where error codes become HTTP statuses and OpenAI-shaped bodies.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use watershed_providers::{ErrorCode, ProviderError};

/// An error answered to a client as `{"error":{"message","type","code","param"}}`.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub param: Option<String>,
    pub retry_after_s: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            param: None,
            retry_after_s: None,
        }
    }

    pub fn bad_request(message: impl Into<String>, param: Option<&str>) -> Self {
        Self {
            param: param.map(str::to_owned),
            ..Self::new(ErrorCode::BadRequest, message)
        }
    }

    pub fn status(&self) -> StatusCode {
        status_of(self.code)
    }
}

/// HTTP status for each error code. Nothing else in the workspace decides this.
pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::BadRequest | ErrorCode::MissingCapability => StatusCode::BAD_REQUEST,
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::PolicyDenied => StatusCode::FORBIDDEN,
        ErrorCode::NotFound | ErrorCode::UnknownEndpoint => StatusCode::NOT_FOUND,
        ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::BudgetExceeded | ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Overloaded
        | ErrorCode::UpstreamUnavailable
        | ErrorCode::LedgerUnavailable
        | ErrorCode::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::UpstreamError => StatusCode::BAD_GATEWAY,
        ErrorCode::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
        // The client is gone; nginx's "client closed request" is what logs expect.
        ErrorCode::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// OpenAI's `error.type` for a status class.
fn error_type(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::BadRequest
        | ErrorCode::MissingCapability
        | ErrorCode::NotFound
        | ErrorCode::UnknownEndpoint
        | ErrorCode::MethodNotAllowed
        | ErrorCode::PayloadTooLarge => "invalid_request_error",
        ErrorCode::Unauthorized => "authentication_error",
        ErrorCode::PolicyDenied => "permission_error",
        ErrorCode::BudgetExceeded | ErrorCode::RateLimited => "rate_limit_error",
        _ => "server_error",
    }
}

impl From<ProviderError> for ApiError {
    fn from(e: ProviderError) -> Self {
        let code = e.code();
        let param = match &e {
            ProviderError::BadRequest { param, .. } => param.clone(),
            _ => None,
        };
        // A full local queue and an upstream's 429/503 both say when to come
        // back; the client's SDK reads `retry-after` to time its retry.
        let retry_after_s = e.retry_after_s();
        // Causes that could carry an upstream URL or a provider's raw text
        // stay in the log (dispatch writes them with the request id).
        let message = e.public_message();
        Self {
            code,
            message,
            param,
            retry_after_s,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "error": {
                "message": self.message,
                "type": error_type(self.code),
                "code": self.code.as_str(),
                "param": self.param,
            }
        });
        let mut resp = (self.status(), axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after_s {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_interface_contract() {
        let cases = [
            (ErrorCode::BadRequest, 400),
            (ErrorCode::MissingCapability, 400),
            (ErrorCode::Unauthorized, 401),
            (ErrorCode::PolicyDenied, 403),
            (ErrorCode::NotFound, 404),
            (ErrorCode::UnknownEndpoint, 404),
            (ErrorCode::MethodNotAllowed, 405),
            (ErrorCode::PayloadTooLarge, 413),
            (ErrorCode::BudgetExceeded, 429),
            (ErrorCode::UpstreamError, 502),
            (ErrorCode::UpstreamUnavailable, 503),
            (ErrorCode::LedgerUnavailable, 503),
            (ErrorCode::ShuttingDown, 503),
            (ErrorCode::UpstreamTimeout, 504),
            (ErrorCode::Internal, 500),
        ];
        for (code, status) in cases {
            assert_eq!(status_of(code).as_u16(), status, "{code:?}");
        }
    }

    #[test]
    fn an_upstream_retry_after_becomes_the_answer_header() {
        let e: ApiError = ProviderError::Upstream {
            target: "gpt".into(),
            status: 429,
            message: "slow down".into(),
            retry_after_s: Some(7),
        }
        .into();
        let resp = e.into_response();
        assert_eq!(resp.status().as_u16(), 429);
        assert_eq!(resp.headers().get(header::RETRY_AFTER).unwrap(), "7");
    }

    #[test]
    fn missing_key_is_503_naming_the_variable() {
        let e: ApiError = ProviderError::MissingKey {
            target: "gpt-5.4-mini".into(),
            env: "OPENAI_API_KEY".into(),
        }
        .into();
        assert_eq!(e.status().as_u16(), 503);
        assert!(e.message.contains("OPENAI_API_KEY"), "{}", e.message);
    }
}
