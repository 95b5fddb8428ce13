//! `/admin/...`: operator endpoints behind a bearer token read from the
//! environment variable `server.admin_key_env` names. Off when it is unset.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use watershed_providers::ErrorCode;

use crate::access::key_sha256;
use crate::error::ApiError;
use crate::state::AppState;

fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let rt = state.runtime();
    let Some(var) = rt.config.server.admin_key_env.as_deref() else {
        return Err(ApiError::new(
            ErrorCode::PolicyDenied,
            "the admin API is off: set server.admin_key_env to the variable holding its token",
        ));
    };
    let Some(expected) = std::env::var(var).ok().filter(|v| !v.is_empty()) else {
        return Err(ApiError::new(
            ErrorCode::PolicyDenied,
            format!("the admin API is off: environment variable {var} is not set"),
        ));
    };
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.strip_prefix("Bearer "))
        .unwrap_or_default();
    // Compare digests so the time taken says nothing about the token.
    if key_sha256(given.trim()) != key_sha256(&expected) {
        return Err(ApiError::new(
            ErrorCode::Unauthorized,
            "the admin API needs Authorization: Bearer <admin token>",
        ));
    }
    Ok(())
}

/// `GET /admin/requests/{id}/explain`: how a logged request was classified and
/// routed, from its ledger record.
pub async fn explain_request(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(e) = authorize(&state, &headers) {
        return e.into_response();
    }
    match state.store().fetch(&id).await {
        Ok(Some(rec)) => {
            let explanation = rec
                .explanation
                .as_deref()
                .and_then(|s| serde_json::from_str::<Value>(s).ok())
                .unwrap_or(Value::Null);
            axum::Json(json!({
                "request_id": rec.request_id,
                "ts_ms": rec.ts_ms,
                "team": rec.team,
                "key": rec.key_id,
                "route": rec.route,
                "backend": rec.backend,
                "status": rec.status,
                "cost_usd": rec.cost_usd,
                "explanation": explanation,
            }))
            .into_response()
        }
        Ok(None) => ApiError::new(
            ErrorCode::NotFound,
            format!("no request \"{id}\" in the ledger (records are written within a second of the answer)"),
        )
        .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "ledger read failed");
            ApiError::new(ErrorCode::Internal, "the ledger cannot be read").into_response()
        }
    }
}
