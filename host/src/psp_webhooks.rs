//! `POST /psp/{gateway}/webhook`: a PSP's notification, handed untouched (headers, raw
//! body) to the gateway plugin's `handle-webhook`, which verifies the PSP's own signature
//! and turns it into events. The plugin also decides what the PSP is answered.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::app::AppState;
use crate::plugins::types::{Failure, Pair, WebhookRequest};
use crate::plugins::{Call, GatewayCallError, Reply, json as views};

pub async fn receive(
    State(state): State<AppState>,
    Path(gateway): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = WebhookRequest {
        headers: headers
            .iter()
            .map(|(k, v)| Pair {
                key: k.as_str().to_owned(),
                value: String::from_utf8_lossy(v.as_bytes()).into_owned(),
            })
            .collect(),
        body: body.to_vec(),
    };
    match state
        .plugins
        .call(&gateway, Call::HandleWebhook(request))
        .await
    {
        Ok(Reply::Webhook(Ok(reply))) => {
            for event in &reply.events {
                tracing::info!(gateway, event = %views::event(event), "psp event");
            }
            // Recorded before the PSP is answered: if this fails, the PSP retries.
            if let Err(e) = state.payments.apply_events(&gateway, &reply.events).await {
                tracing::error!(gateway, "cannot apply psp events: {e}");
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    axum::Json(json!({"error": "cannot record the notification now"})),
                )
                    .into_response();
            }
            let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK);
            (
                status,
                [(header::CONTENT_TYPE, reply.content_type)],
                reply.body,
            )
                .into_response()
        }
        Ok(Reply::Webhook(Err(failure))) => {
            let status = match failure {
                Failure::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
                Failure::InvalidRequest(_) => StatusCode::BAD_REQUEST,
                Failure::Unsupported(_) => StatusCode::NOT_IMPLEMENTED,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            tracing::warn!(gateway, failure = %views::failure(&failure), "psp notification rejected");
            (status, axum::Json(views::failure(&failure))).into_response()
        }
        Ok(_) => unreachable!("handle-webhook answers with a webhook reply"),
        Err(e) => {
            let status = match e {
                GatewayCallError::UnknownGateway(_) => StatusCode::NOT_FOUND,
                // 5xx: PSPs retry notifications they could not deliver.
                GatewayCallError::Call(_) => StatusCode::SERVICE_UNAVAILABLE,
            };
            (status, axum::Json(json!({"error": e.to_string()}))).into_response()
        }
    }
}
