//! The HTTP surface. Only this crate serves HTTP; every route and status lives here.

mod admin;
pub mod chat;
pub mod dashboard;
mod embeddings;
mod messages;
mod models;
mod responses;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::json;
use watershed_providers::ErrorCode;

use crate::error::ApiError;
use crate::state::AppState;

/// The application with all routes, for `serve` and for in-process tests.
pub fn app(state: Arc<AppState>) -> Router {
    let limit = usize::try_from(state.runtime().config.server.max_body_bytes).unwrap_or(usize::MAX);
    Router::new()
        .route("/v1/chat/completions", post(chat::chat_completions))
        .route("/v1/messages", post(messages::messages))
        .route("/v1/messages/count_tokens", post(messages::count_tokens))
        .route("/v1/responses", post(responses::responses))
        .route("/v1/embeddings", post(embeddings::embeddings))
        .route("/v1/models", get(models::list))
        .route("/v1/models/{id}", get(models::retrieve))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/admin/requests/{id}/explain", get(admin::explain_request))
        .route("/dashboard", get(dashboard::page))
        .route("/api/dashboard/{chart}", get(dashboard::chart))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    // Breaker states are read when scraped, so every remote target has its
    // gauge from the start, not only after its first move.
    for (id, t) in &state.runtime().targets {
        if let Some(b) = &t.breaker {
            state.metrics.set(
                crate::metrics::BREAKER_STATE,
                vec![("backend", id.clone())],
                b.state().gauge(),
            );
        }
        for m in t.pool.iter().flat_map(|p| p.members.iter()) {
            let labels = || vec![("backend", id.clone()), ("member", m.name.clone())];
            state.metrics.set(
                crate::metrics::POOL_MEMBER_STATE,
                labels(),
                m.health.state().gauge(),
            );
            state.metrics.set(
                crate::metrics::POOL_MEMBER_OUTSTANDING,
                labels(),
                f64::from(m.outstanding()),
            );
        }
    }
    crate::metrics::set_ledger(&state.metrics, &state.ledger);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

async fn healthz() -> &'static str {
    "ok"
}

/// Ready once every local model has finished loading. A model that failed to load
/// is reported but does not hold the gateway back: remote targets still serve.
/// `targets` lists each remote target's circuit breaker state, and for a
/// pool each member's state, outstanding requests and ejections.
async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let rt = state.runtime();
    let mut loading = false;
    let mut models = serde_json::Map::new();
    let mut targets = serde_json::Map::new();
    for (id, t) in &rt.targets {
        let status = match &t.engine {
            None => match &t.missing_key {
                Some(var) => format!("unavailable: {var} is not set"),
                None => "ready".to_owned(),
            },
            Some(engine) => match engine.load_state() {
                watershed_local_engine::LoadState::Loading => {
                    loading = true;
                    "loading".to_owned()
                }
                watershed_local_engine::LoadState::Ready => "ready".to_owned(),
                watershed_local_engine::LoadState::Failed(e) => format!("failed: {e}"),
            },
        };
        models.insert(id.clone(), json!(status));
        if let Some(b) = &t.breaker {
            let mut entry = json!({"breaker": b.state().as_str()});
            // A pool's members by name (never their URLs).
            if let Some(pool) = &t.pool {
                entry["members"] = pool
                    .members
                    .iter()
                    .map(|m| {
                        (
                            m.name.clone(),
                            json!({
                                "state": m.health.state().as_str(),
                                "outstanding": m.outstanding(),
                                "ejections": m.ejections(),
                            }),
                        )
                    })
                    .collect::<serde_json::Map<_, _>>()
                    .into();
            }
            targets.insert(id.clone(), entry);
        }
    }
    let ledger = ledger_status(&state.ledger);
    let refusing = !state.ledger.accepts_paid_requests();
    let status = if loading || refusing {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    // An open breaker does not make the gateway unready: other targets and
    // the cool-down's probe still serve. Neither does a degraded ledger: the
    // journal keeps every record until the database is back. A full journal
    // that refuses paid requests does.
    let body = json!({"ready": !loading && !refusing, "models": models, "targets": targets, "ledger": ledger});
    (status, axum::Json(body)).into_response()
}

/// The ledger's part of `/readyz`: `ok` while the database takes records,
/// `degraded` while it does not (records wait in the journal), `full` while
/// a full journal refuses new paid requests.
fn ledger_status(ledger: &watershed_dashboards::ledger::LedgerHandle) -> serde_json::Value {
    let stats = ledger.stats();
    let status = if !ledger.accepts_paid_requests() {
        "full"
    } else if stats.db_up() {
        "ok"
    } else {
        "degraded"
    };
    let (bytes, records) = ledger
        .journal()
        .map_or((0, 0), |j| (j.stats().bytes(), j.stats().records()));
    json!({
        "status": status,
        "backlog": stats.backlog(),
        "journal_bytes": bytes,
        "journal_records": records,
    })
}

/// A path nothing is served at. Not `model_not_found`: SDKs read that code as
/// "the model is wrong" and would send the user looking in the wrong place.
async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        ErrorCode::UnknownEndpoint,
        format!("unknown endpoint: {method} {}", uri.path()),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        format!("method {method} is not allowed on {}", uri.path()),
    )
}
