//! Commerce Layer's external payment gateway: `POST /commercelayer/{gateway}/{action}` for
//! authorize, capture, void, refund and token. Signature first (over the raw bytes, in
//! constant time), then parsing, then the shared engine; answers and callbacks are shaped
//! as Commerce Layer documents them.

pub mod parse;

use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Map, Value, json};
use tracing::Instrument;

use crate::app::{AppState, BODY_LIMIT};
use crate::config::GatewayConfig;
use crate::payments::{FinalOutcome, Front, PaymentResult, RefusalCode, SignError};
use crate::plugins::types::{RedirectMethod, ShopperAction};
use crate::signature::{constant_time_eq, hmac_sha256};
use crate::store::{Action, NewCallback, StoredAnswer, Transaction};

pub const SIGNATURE_HEADER: &str = "X-CommerceLayer-Signature";

/// Base64 HMAC-SHA256 of `body` keyed with the shared secret's bytes as written.
pub fn sign(shared_secret: &str, body: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(hmac_sha256(shared_secret.as_bytes(), body))
}

/// Whether `given` (the header's value, surrounding blanks ignored) is the signature of
/// `body`, compared in constant time. Public so the `commerce_layer` fuzz target checks the
/// same comparison the route makes.
pub fn signature_matches(shared_secret: &str, body: &[u8], given: &str) -> bool {
    constant_time_eq(
        given.trim().as_bytes(),
        sign(shared_secret, body).as_bytes(),
    )
}

/// The Commerce Layer front.
pub struct CommerceLayer;

impl CommerceLayer {
    pub fn front() -> Arc<dyn Front> {
        Arc::new(CommerceLayer)
    }
}

fn answer(status: StatusCode, body: Value) -> StoredAnswer {
    StoredAnswer {
        status: status.as_u16(),
        body: body.to_string(),
    }
}

fn error_answer(status: StatusCode, code: &str, message: &str) -> StoredAnswer {
    answer(
        status,
        json!({"success": false, "error": {"code": code, "message": message}}),
    )
}

fn object(pairs: &[(String, String)]) -> Value {
    Value::Object(
        pairs
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect::<Map<_, _>>(),
    )
}

/// What the shopper must do, as `metadata` keys of a 202 (the legacy external gateway has
/// no field for it; the README documents the keys): `action_type` (`redirect` or `sdk`);
/// for a redirect `redirect_url`, `redirect_method` (`GET`/`POST`) and, for a POST,
/// `redirect_form_fields` (an object of strings); for an SDK action `sdk_action_kind` and
/// `sdk_action_data` (the PSP's JSON).
fn shopper_action_metadata(action: &ShopperAction, m: &mut Map<String, Value>) {
    match action {
        ShopperAction::Redirect(r) => {
            m.insert("action_type".into(), "redirect".into());
            m.insert("redirect_url".into(), r.url.clone().into());
            let method = match r.method {
                RedirectMethod::Get => "GET",
                RedirectMethod::Post => "POST",
            };
            m.insert("redirect_method".into(), method.into());
            if !r.form_fields.is_empty() {
                let fields = r
                    .form_fields
                    .iter()
                    .map(|p| (p.key.clone(), Value::String(p.value.clone())))
                    .collect();
                m.insert("redirect_form_fields".into(), Value::Object(fields));
            }
        }
        ShopperAction::Sdk(s) => {
            m.insert("action_type".into(), "sdk".into());
            m.insert("sdk_action_kind".into(), s.kind.clone().into());
            let data = serde_json::from_str(&s.data_json)
                .unwrap_or_else(|_| Value::String(s.data_json.clone()));
            m.insert("sdk_action_data".into(), data);
        }
    }
}

impl Front for CommerceLayer {
    fn name(&self) -> &'static str {
        "commerce_layer"
    }

    fn render(&self, _action: Action, result: &PaymentResult) -> StoredAnswer {
        match result {
            PaymentResult::Approved {
                transaction_token,
                amount_cents,
                messages,
                metadata,
            } => answer(
                StatusCode::OK,
                json!({"success": true, "data": {
                    "transaction_token": transaction_token, "amount_cents": amount_cents,
                    "messages": messages, "metadata": object(metadata)}}),
            ),
            PaymentResult::Pending {
                transaction_token,
                amount_cents,
                action_id,
                metadata,
                action,
            } => {
                let mut metadata = object(metadata);
                if let (Some(action), Value::Object(m)) = (action, &mut metadata) {
                    shopper_action_metadata(action, m);
                }
                answer(
                    StatusCode::ACCEPTED,
                    json!({"success": true, "data": {
                        "transaction_token": transaction_token, "amount_cents": amount_cents,
                        "action_id": action_id, "metadata": metadata}}),
                )
            }
            PaymentResult::Declined {
                transaction_token,
                amount_cents,
                code,
                message,
            } => answer(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"success": false,
                    "data": {"transaction_token": transaction_token, "amount_cents": amount_cents},
                    "error": {"code": code, "message": message}}),
            ),
            PaymentResult::Tokenized {
                customer_token,
                payment_source_token,
            } => {
                let mut data = Map::new();
                if let Some(c) = customer_token {
                    data.insert("customer_token".into(), Value::String(c.clone()));
                }
                data.insert(
                    "payment_source_token".into(),
                    Value::String(payment_source_token.clone()),
                );
                answer(StatusCode::OK, json!({"success": true, "data": data}))
            }
            PaymentResult::Refused { code, message } => {
                let status = match code {
                    RefusalCode::UnknownGateway => StatusCode::NOT_FOUND,
                    _ => StatusCode::UNPROCESSABLE_ENTITY,
                };
                error_answer(status, code.as_str(), message)
            }
            PaymentResult::Failed { kind, message } => {
                let status = StatusCode::from_u16(kind.http_status()).expect("a valid status");
                error_answer(status, kind.code(), message)
            }
        }
    }

    fn callback(
        &self,
        gateway: &GatewayConfig,
        txn: &Transaction,
        outcome: &FinalOutcome,
    ) -> Option<NewCallback> {
        let url = gateway.webhook_endpoint_url.clone()?;
        // Without a secret nothing could be signed at send time either.
        gateway.shared_secret.as_ref()?;
        let action_id = txn.action_id.clone()?;
        let mut data = Map::new();
        data.insert("action_id".into(), Value::String(action_id.clone()));
        data.insert("message".into(), Value::String(outcome.message.clone()));
        if let Some(code) = &outcome.error_code {
            data.insert("error_code".into(), Value::String(code.clone()));
        }
        if let Some(detail) = &outcome.error_detail {
            data.insert("error_detail".into(), Value::String(detail.clone()));
        }
        let body = serde_json::to_vec(&json!({"success": outcome.succeeded, "data": data}))
            .expect("JSON serialises");
        Some(NewCallback {
            gateway: gateway.id.clone(),
            front: self.name().to_owned(),
            ordering_key: Some(txn.id.clone()),
            url,
            action_id: Some(action_id),
            headers: vec![("Content-Type".into(), "application/json".into())],
            body,
        })
    }

    fn sign(
        &self,
        gateway: &GatewayConfig,
        body: &[u8],
    ) -> Result<Vec<(String, String)>, SignError> {
        let secret = gateway
            .shared_secret
            .as_ref()
            .ok_or_else(|| SignError::NoSecret(gateway.id.clone()))?;
        Ok(vec![(SIGNATURE_HEADER.into(), sign(secret.expose(), body))])
    }
}

fn respond(a: StoredAnswer) -> Response {
    let status = StatusCode::from_u16(a.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [(header::CONTENT_TYPE, "application/json")], a.body).into_response()
}

/// A request this front refuses before (or instead of) the engine: answered as
/// `{"success": false, "error": {"code", "message"}}` with its HTTP status.
#[derive(Debug)]
pub struct ClError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ClError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ClError {
        ClError {
            status,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for ClError {
    fn into_response(self) -> Response {
        respond(error_answer(self.status, self.code, &self.message))
    }
}

/// `POST /commercelayer/{gateway}/{action}`.
pub async fn handle(
    State(state): State<AppState>,
    Path((gateway, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let request_id = format!("req_{}", hex::encode(rand::random::<[u8; 8]>()));
    let span = tracing::info_span!("commerce_layer", %request_id, %gateway, %action);
    let response = serve(state, gateway, action, headers, body)
        .instrument(span.clone())
        .await
        .unwrap_or_else(IntoResponse::into_response);
    span.in_scope(|| tracing::info!(status = response.status().as_u16(), "answered"));
    response
}

async fn serve(
    state: AppState,
    gateway: String,
    action: String,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ClError> {
    let Some(action) = Action::parse(&action).filter(|a| *a != Action::Sale) else {
        return Err(ClError::new(
            StatusCode::NOT_FOUND,
            "unknown_action",
            "use authorize, capture, void, refund or token",
        ));
    };
    let Some(config) = state.config.gateway(&gateway) else {
        return Err(ClError::new(
            StatusCode::NOT_FOUND,
            "unknown_gateway",
            format!("unknown gateway `{gateway}`"),
        ));
    };
    let Some(secret) = &config.shared_secret else {
        return Err(ClError::new(
            StatusCode::NOT_FOUND,
            "unknown_gateway",
            format!("gateway `{gateway}` has no Commerce Layer shared_secret"),
        ));
    };
    let body = match to_bytes(body, BODY_LIMIT).await {
        Ok(b) => b,
        Err(_) => {
            return Err(ClError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the body exceeds 1 MiB",
            ));
        }
    };
    // Authenticate before reading a byte of the document.
    let Some(given) = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok()) else {
        return Err(ClError::new(
            StatusCode::UNAUTHORIZED,
            "missing_signature",
            "X-CommerceLayer-Signature is required",
        ));
    };
    if !signature_matches(secret.expose(), &body, given) {
        return Err(ClError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
            "X-CommerceLayer-Signature does not match the body",
        ));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if content_type != "application/json" && content_type != "application/vnd.api+json" {
        return Err(ClError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send application/json or application/vnd.api+json",
        ));
    }
    // Amounts and card numbers are bounded by the engine, for every front alike.
    let request = parse::parse(&gateway, action, &body)
        .map_err(|e| ClError::new(StatusCode::BAD_REQUEST, "invalid_payload", e.to_string()))?;
    match state.payments.execute(&state.commerce_layer, request).await {
        Ok(answer) => Ok(respond(answer)),
        Err(e) => {
            tracing::error!("payment engine: {e}");
            Err(ClError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "the gateway cannot record payments right now",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_reference_vector() {
        let body =
            br#"{"success":true,"data":{"action_id":"tr_abc123","message":"Payment authorized"}}"#;
        assert_eq!(
            sign("1c0994cc4e996e8c6ee56a2198f66f3c", body),
            "aO/vfPXJj0E0HOhDrVoo+f8jJP8Aw4+TNxpKDijyIo0="
        );
    }
}
