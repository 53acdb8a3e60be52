//! Operator endpoints: liveness (`/healthz`), readiness (`/readyz`) and the plugin registry's state
//! (`/admin/plugins`), with the admin bearer token when one is configured.

use std::time::SystemTime;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::app::AppState;
use crate::plugins::cache::ArtifactSource;
use crate::plugins::registry::LoadError;
use crate::signature::constant_time_eq;
use crate::store::now_ms;

/// Liveness: fails (503) once the store's writer is dead, since then nothing the gateway
/// does can be recorded and only a restart helps.
pub async fn healthz(State(state): State<AppState>) -> Response {
    if state.payments.store().health().writer_alive {
        (StatusCode::OK, "ok").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "store writer stopped").into_response()
    }
}

#[derive(Serialize)]
struct Readiness {
    ready: bool,
    /// SIGTERM received: finishing what was started, taking nothing new.
    draining: bool,
    store: crate::store::Health,
    plugins_loaded: usize,
}

/// Readiness: whether a load balancer should send payments here now. Not while draining,
/// nor while the store refuses writes (a full disk: the gateway would answer 503 anyway,
/// and recovers by itself when space returns).
pub async fn readyz(State(state): State<AppState>) -> Response {
    let store = state.payments.store().health();
    let draining = state.stop.is_cancelled();
    let ready = store.writer_alive && !store.writes_failing && !draining;
    let body = Readiness {
        ready,
        draining,
        store,
        plugins_loaded: state.plugins.registry().loaded().len(),
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// Prometheus text: what `telemetry` recorded (requests, plugin calls, plugin loads) and
/// the gauges read now from the registry and the store.
pub async fn metrics(State(state): State<AppState>) -> Response {
    use crate::telemetry::set_gauge;
    let age = |at: Option<i64>| at.map_or(0.0, |at| (now_ms() - at).max(0) as f64 / 1000.0);
    set_gauge(
        "psp_plugins_loaded",
        &[],
        state.plugins.registry().loaded().len() as f64,
    );
    if let Ok(b) = state.payments.store().outcome_backlog().await {
        set_gauge(
            "psp_transactions_open",
            &[("status", "pending")],
            b.pending as f64,
        );
        set_gauge(
            "psp_transactions_open",
            &[("status", "unknown")],
            b.unknown as f64,
        );
        set_gauge("psp_transactions_escalated", &[], b.escalated as f64);
        set_gauge(
            "psp_unknown_oldest_age_seconds",
            &[],
            age(b.oldest_unknown_at),
        );
        set_gauge(
            "psp_pending_oldest_age_seconds",
            &[],
            age(b.oldest_pending_at),
        );
    }
    if let Ok(counts) = state.payments.store().callback_counts().await {
        // A dead letter is still owed to the platform: it stays in `waiting` too.
        set_gauge("psp_callbacks_waiting", &[], counts.undelivered as f64);
        set_gauge("psp_callbacks_dead", &[], counts.dead as f64);
        set_gauge(
            "psp_callbacks_oldest_age_seconds",
            &[],
            age(counts.oldest_undelivered_at),
        );
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::telemetry::render(),
    )
        .into_response()
}

/// A plugin file as the registry sees it: loaded, failed to load, or both (the last good
/// version still serving after a bad one was dropped in).
#[derive(Serialize)]
pub(crate) struct PluginView {
    pub name: String,
    pub loaded: Option<LoadedView>,
    pub last_error: Option<LoadError>,
}

#[derive(Serialize)]
pub(crate) struct LoadedView {
    pub plugin_name: String,
    pub version: String,
    pub contract: String,
    pub operations: Vec<String>,
    pub content_hash: String,
    #[serde(serialize_with = "serialize_time")]
    pub loaded_at: SystemTime,
    pub source: ArtifactSource,
    pub load_ms: u64,
}

pub async fn plugins(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "plugins": plugin_views(&state) }))
}

/// Every plugin the registry knows, by name.
pub(crate) fn plugin_views(state: &AppState) -> Vec<PluginView> {
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
    views
}

#[derive(serde::Deserialize)]
pub struct TransactionFilter {
    status: String,
    limit: Option<i64>,
}

/// `GET /admin/transactions?status=unknown|pending|escalated|...`: open work for an
/// operator, newest first, with when each is checked next.
pub async fn transactions(
    State(state): State<AppState>,
    filter: Result<Query<TransactionFilter>, QueryRejection>,
) -> Response {
    let Ok(Query(filter)) = filter else {
        return (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({"error": "status is required; limit is a number"})),
        )
            .into_response();
    };
    let known = [
        "processing",
        "approved",
        "pending",
        "declined",
        "failed",
        "unknown",
        "escalated",
    ];
    if !known.contains(&filter.status.as_str()) {
        return (
            StatusCode::BAD_REQUEST,
            Json(
                serde_json::json!({"error": format!("status must be one of {}", known.join(", "))}),
            ),
        )
            .into_response();
    }
    let limit = filter.limit.unwrap_or(100).clamp(1, 1000);
    match state.payments.store().list(&filter.status, limit).await {
        Ok(rows) => {
            let rows: Vec<_> = rows
                .iter()
                .map(|t| {
                    serde_json::json!({
                        "id": t.id, "gateway": t.gateway, "front": t.front,
                        "action": t.action.as_str(), "status": t.status.as_str(),
                        "transaction_token": t.transaction_token, "action_id": t.action_id,
                        "amount_cents": t.amount_cents, "currency": t.currency,
                        "error_code": t.error_code, "created_at": t.created_at,
                        "next_check_at": t.next_check_at, "checks": t.checks,
                        "escalated_at": t.escalated_at,
                    })
                })
                .collect();
            Json(serde_json::json!({ "transactions": rows })).into_response()
        }
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"error": format!("store: {e}")})),
        )
            .into_response(),
    }
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
