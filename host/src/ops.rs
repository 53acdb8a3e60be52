//! Operator endpoints: liveness (`/healthz`) and the plugin registry's state
//! (`/admin/plugins`), with the admin bearer token when one is configured.

use std::time::SystemTime;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::app::AppState;
use crate::plugins::cache::ArtifactSource;
use crate::plugins::registry::LoadError;
use crate::signature::constant_time_eq;

pub async fn healthz() -> &'static str {
    "ok"
}

/// Prometheus text exposition: plugin calls, loaded plugins, callbacks waiting and dead.
pub async fn metrics(State(state): State<AppState>) -> Response {
    use std::fmt::Write;
    let mut out = String::new();
    out.push_str("# HELP psp_plugin_calls_total Plugin calls by gateway, operation and result.\n");
    out.push_str("# TYPE psp_plugin_calls_total counter\n");
    for ((gateway, op, result), n) in state.plugins.call_counts() {
        let _ = writeln!(
            out,
            "psp_plugin_calls_total{{gateway=\"{gateway}\",operation=\"{op}\",result=\"{result}\"}} {n}"
        );
    }
    out.push_str(
        "# HELP psp_plugins_loaded Plugins loaded now.\n# TYPE psp_plugins_loaded gauge\n",
    );
    let _ = writeln!(
        out,
        "psp_plugins_loaded {}",
        state.plugins.registry().loaded().len()
    );
    if let Ok(counts) = state.payments.store().callback_counts().await {
        // A dead letter is still owed to the platform: it stays in `waiting` too.
        out.push_str("# HELP psp_callbacks_waiting Callbacks queued and not yet delivered, dead letters included.\n# TYPE psp_callbacks_waiting gauge\n");
        let _ = writeln!(out, "psp_callbacks_waiting {}", counts.undelivered);
        out.push_str("# HELP psp_callbacks_dead Callbacks given up on, waiting for an operator's replay.\n# TYPE psp_callbacks_dead gauge\n");
        let _ = writeln!(out, "psp_callbacks_dead {}", counts.dead);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

#[derive(Serialize)]
struct PluginView {
    name: String,
    loaded: Option<LoadedView>,
    last_error: Option<LoadError>,
}

#[derive(Serialize)]
struct LoadedView {
    plugin_name: String,
    version: String,
    contract: String,
    operations: Vec<String>,
    content_hash: String,
    #[serde(serialize_with = "serialize_time")]
    loaded_at: SystemTime,
    source: ArtifactSource,
    load_ms: u64,
}

pub async fn plugins(State(state): State<AppState>) -> Json<serde_json::Value> {
    let registry = state.plugins.registry();
    let mut errors = registry.errors();
    let mut views: Vec<PluginView> = registry
        .loaded()
        .into_iter()
        .map(|p| PluginView {
            name: p.name.clone(),
            last_error: errors.remove(&p.name),
            loaded: Some(LoadedView {
                plugin_name: p.info.name.clone(),
                version: p.info.version.clone(),
                contract: p.info.contract.clone(),
                operations: p
                    .info
                    .operations
                    .iter()
                    .map(|o| crate::plugins::bindings::operation_name(*o).to_owned())
                    .collect(),
                content_hash: p.content_hash.clone(),
                loaded_at: p.loaded_at,
                source: p.source,
                load_ms: p.load_time.as_millis() as u64,
            }),
        })
        .collect();
    views.extend(errors.into_iter().map(|(name, e)| PluginView {
        name,
        loaded: None,
        last_error: Some(e),
    }));
    views.sort_by(|a, b| a.name.cmp(&b.name));
    Json(serde_json::json!({ "plugins": views }))
}

/// Guards `/admin/*` with `Authorization: Bearer <admin.token>` when a token is set.
pub async fn require_admin(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(token) = &state.config.admin.token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !constant_time_eq(given.as_bytes(), token.expose().as_bytes()) {
            return (
                StatusCode::UNAUTHORIZED,
                Json(serde_json::json!({"error": "admin token required"})),
            )
                .into_response();
        }
    }
    next.run(req).await
}

/// RFC 3339 UTC timestamps in JSON.
pub fn serialize_time<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_rfc3339_millis(*t).to_string())
}
