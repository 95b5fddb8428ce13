//! `GET /v1/models` and `GET /v1/models/{id}`: every model name a client may
//! ask for, with what is known of the backend behind it.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value};
use watershed_local_engine::LoadState;
use watershed_providers::ErrorCode;

use crate::error::ApiError;
use crate::state::{AppState, Runtime};

pub async fn list(State(state): State<Arc<AppState>>) -> Json<Value> {
    let rt = state.runtime();
    Json(json!({"object": "list", "data": models(&rt)}))
}

/// One model object, as OpenAI's `models.retrieve` answers; an id that is
/// neither a target nor an alias is 404 `model_not_found`.
pub async fn retrieve(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let rt = state.runtime();
    models(&rt)
        .into_iter()
        .find(|m| m["id"] == id.as_str())
        .map(Json)
        .ok_or_else(|| {
            let mut e = ApiError::new(
                ErrorCode::NotFound,
                format!("the model \"{id}\" does not exist"),
            );
            e.param = Some("model".to_owned());
            e
        })
}

fn models(rt: &Runtime) -> Vec<Value> {
    let created = 0;
    let mut data = Vec::new();
    let mut ids: Vec<&String> = rt.config.models.keys().collect();
    ids.sort();
    for id in ids {
        let Some(t) = rt.target(id) else { continue };
        let caps = t.provider.capabilities();
        // What routing and dispatch hold this target to, the same for both.
        let can = crate::dispatch::backend_capabilities(rt, t);
        let unavailable = match (&t.missing_key, &t.engine) {
            (Some(var), _) => Some(format!("{var} is not set")),
            (None, Some(engine)) => match engine.load_state() {
                LoadState::Failed(e) => Some(e.to_string()),
                LoadState::Loading => Some("still loading".to_owned()),
                LoadState::Ready => None,
            },
            (None, None) => None,
        };
        data.push(json!({
            "id": id,
            "object": "model",
            "created": created,
            "owned_by": "watershed",
            "watershed": {
                "backend": caps.kind.otel_name(),
                "upstream_model": caps.upstream_model,
                "trusted": t.trusted,
                "context_tokens": caps.context_tokens,
                "tools": caps.tools,
                "capabilities": {
                    "tools": can.tools,
                    "json_schema": can.json_schema,
                    "vision": can.vision,
                    "embeddings": can.embeddings,
                    "logprobs": can.logprobs,
                    "context_tokens": can.context_tokens,
                },
                "details": caps.details,
                "unavailable": unavailable,
            }
        }));
    }
    // Aliases that routes answer to but that are not target ids.
    let mut aliases: Vec<&String> = rt
        .config
        .routes
        .iter()
        .filter_map(|r| r.when.model.as_ref())
        .flatten()
        .filter(|m| !rt.config.models.contains_key(*m))
        .collect();
    aliases.sort();
    aliases.dedup();
    for alias in aliases.into_iter().map(String::as_str).chain(["auto"]) {
        data.push(json!({"id": alias, "object": "model", "created": created, "owned_by": "watershed", "watershed": {"alias": true}}));
    }
    data
}
