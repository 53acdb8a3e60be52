//! Operator routes over the outbox: `GET /admin/callbacks?state=dead|waiting|delivered`
//! lists callbacks (never their headers or body, so never a signature), and
//! `POST /admin/callbacks/{id}/replay` puts a dead letter back as due now. Both sit behind
//! `ops::require_admin`; replay, a write, is mounted only when an admin token is set.

use std::time::{Duration, UNIX_EPOCH};

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::app::AppState;
use crate::store::outbox::{CallbackState, CallbackSummary, Replay};
use crate::store::{StoreError, now_ms};

const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1_000;

#[derive(Deserialize)]
pub struct ListQuery {
    state: Option<String>,
    limit: Option<i64>,
}

/// A callback as an operator reads it, times in RFC 3339.
#[derive(Serialize)]
struct CallbackView {
    id: i64,
    gateway: String,
    url: String,
    action_id: Option<String>,
    state: CallbackState,
    attempts: i64,
    last_error: Option<String>,
    created_at: String,
    delivered_at: Option<String>,
    dead_at: Option<String>,
}

fn rfc3339(ms: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(at).to_string()
}

impl From<CallbackSummary> for CallbackView {
    fn from(c: CallbackSummary) -> CallbackView {
        CallbackView {
            id: c.id,
            gateway: c.gateway,
            url: c.url,
            action_id: c.action_id,
            state: c.state,
            attempts: c.attempts,
            last_error: c.last_error,
            created_at: rfc3339(c.created_at),
            delivered_at: c.delivered_at.map(rfc3339),
            dead_at: c.dead_at.map(rfc3339),
        }
    }
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

fn unavailable(e: StoreError) -> Response {
    tracing::error!("admin callbacks: {e}");
    error(StatusCode::SERVICE_UNAVAILABLE, "store unavailable".into())
}

pub async fn list(
    State(state): State<AppState>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else {
        return error(StatusCode::BAD_REQUEST, "limit must be a number".into());
    };
    let wanted = q.state.as_deref().unwrap_or("dead");
    let Some(wanted) = CallbackState::parse(wanted) else {
        return error(
            StatusCode::BAD_REQUEST,
            "state must be dead, waiting or delivered".into(),
        );
    };
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    match state.payments.store().list_callbacks(wanted, limit).await {
        Ok(rows) => {
            let views: Vec<CallbackView> = rows.into_iter().map(Into::into).collect();
            Json(json!({ "callbacks": views, "as_of": rfc3339(now_ms()) })).into_response()
        }
        Err(e) => unavailable(e),
    }
}

pub async fn replay(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return error(StatusCode::BAD_REQUEST, "a callback id is a number".into());
    };
    let now = now_ms();
    match state.payments.store().replay_callback(id, now).await {
        Ok(Replay::Requeued) => {
            tracing::info!(callback_id = id, "dead callback replayed by an operator");
            state.outbox_wake.notify_one();
            Json(json!({ "id": id, "state": CallbackState::Waiting })).into_response()
        }
        Ok(Replay::NotFound) => error(StatusCode::NOT_FOUND, format!("no callback {id}")),
        Ok(Replay::NotDead(current)) => error(
            StatusCode::CONFLICT,
            format!("callback {id} is {}, not dead", current.as_str()),
        ),
        Err(e) => unavailable(e),
    }
}
