//! Request body extraction that answers malformed input in the OpenAI error shape.

use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use bytes::Bytes;
use watershed_providers::ErrorCode;

use crate::error::ApiError;

/// A JSON object body. Oversized bodies answer 413, malformed ones 400 with the
/// parser's position, both in the OpenAI error shape.
#[derive(Debug)]
pub struct JsonBody(pub serde_json::Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rej| {
            if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    ErrorCode::PayloadTooLarge,
                    "request body is larger than the configured limit (server.max_body_bytes)",
                )
            } else {
                ApiError::bad_request(format!("could not read request body: {rej}"), None)
            }
        })?;
        if bytes.is_empty() {
            return Err(ApiError::bad_request("request body is empty", None));
        }
        let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::bad_request(format!("malformed JSON in request body: {e}"), None)
        })?;
        if !value.is_object() {
            return Err(ApiError::bad_request(
                "request body must be a JSON object",
                None,
            ));
        }
        Ok(JsonBody(value))
    }
}
