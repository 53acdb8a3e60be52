//! `POST /admin/gateways/{gateway}/call/{operation}`: call a gateway's plugin directly with
//! a small JSON request, bypassing the protocol fronts. For operators trying a plugin and
//! for end-to-end tests of the plugin call path. Only mounted when `admin.token` is set,
//! since it moves real money on a real PSP.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use crate::app::AppState;
use crate::plugins::types::{
    AuthorizeRequest, CaptureRequest, CompleteRequest, FollowUpRequest, Money, Operation, Pair,
    SyncRequest, TokenizeRequest,
};
use crate::plugins::{Call, CallError, GatewayCallError, Reply, json as views};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallRequest {
    idempotency_key: String,
    #[serde(default)]
    amount_cents: u64,
    #[serde(default = "eur")]
    currency: String,
    payment_source_token: Option<String>,
    customer_token: Option<String>,
    customer_email: Option<String>,
    transaction_token: Option<String>,
    psp_reference: Option<String>,
    #[serde(default)]
    reference: String,
    /// For `sync` and `complete`: the operation of the transaction.
    sync_operation: Option<String>,
    #[serde(default)]
    final_capture: bool,
    sequence: Option<u32>,
    #[serde(default)]
    return_parameters: std::collections::BTreeMap<String, String>,
    details_json: Option<String>,
}

fn eur() -> String {
    "EUR".into()
}

type Answer = (StatusCode, Json<serde_json::Value>);

fn bad_request(message: impl Into<String>) -> Answer {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"result": "error", "kind": "bad_request", "message": message.into()})),
    )
}

pub async fn call(
    State(state): State<AppState>,
    Path((gateway, operation)): Path<(String, String)>,
    req: Result<Json<CallRequest>, JsonRejection>,
) -> Answer {
    let req = match req {
        Ok(Json(req)) => req,
        Err(e) => return bad_request(e.body_text()),
    };
    let call = match build_call(&operation, req) {
        Ok(call) => call,
        Err(message) => return bad_request(message),
    };
    match state.plugins.call(&gateway, call).await {
        Ok(Reply::Outcome(Ok(o))) => (StatusCode::OK, Json(views::outcome(&o))),
        Ok(Reply::Tokenized(Ok(t))) => (StatusCode::OK, Json(views::tokenized(&t))),
        Ok(Reply::Outcome(Err(f)) | Reply::Tokenized(Err(f)) | Reply::Webhook(Err(f))) => {
            (StatusCode::OK, Json(views::failure(&f)))
        }
        Ok(Reply::Webhook(Ok(w))) => (StatusCode::OK, Json(views::webhook(&w))),
        Ok(Reply::Info(_)) => unreachable!("info is not callable here"),
        Err(e) => {
            let status = match &e {
                GatewayCallError::UnknownGateway(_) => StatusCode::NOT_FOUND,
                GatewayCallError::Call(CallError::NotLoaded(_)) => StatusCode::SERVICE_UNAVAILABLE,
                GatewayCallError::Call(CallError::Deadline(_)) => StatusCode::GATEWAY_TIMEOUT,
                GatewayCallError::Call(_) => StatusCode::BAD_GATEWAY,
            };
            let body = json!({"result": "error", "kind": views::call_error_kind(&e), "message": e.to_string()});
            (status, Json(body))
        }
    }
}

fn parse_operation(name: &str) -> Option<Operation> {
    Some(match name {
        "authorize" => Operation::Authorize,
        "capture" => Operation::Capture,
        "void" => Operation::Void,
        "refund" => Operation::Refund,
        "tokenize" => Operation::Tokenize,
        "sale" => Operation::Sale,
        "sync" => Operation::Sync,
        "complete" => Operation::Complete,
        _ => return None,
    })
}

fn build_call(operation: &str, r: CallRequest) -> Result<Call, String> {
    let op = parse_operation(operation).ok_or_else(|| {
        format!("unknown operation `{operation}` (authorize, capture, void, refund, tokenize, sale, sync, complete)")
    })?;
    let amount = Money {
        amount_cents: r.amount_cents,
        currency: r.currency,
    };
    let need = |field: Option<String>, name: &str| {
        field.ok_or_else(|| format!("`{name}` is required for {operation}"))
    };
    let authorize = |token: Option<String>| -> Result<AuthorizeRequest, String> {
        Ok(AuthorizeRequest {
            idempotency_key: r.idempotency_key.clone(),
            amount: amount.clone(),
            payment_source_token: need(token, "payment_source_token")?,
            customer_token: r.customer_token.clone(),
            reference: r.reference.clone(),
            order: None,
            options_json: None,
            shopper: None,
        })
    };
    let follow_up = |token: Option<String>| -> Result<FollowUpRequest, String> {
        Ok(FollowUpRequest {
            idempotency_key: r.idempotency_key.clone(),
            amount: amount.clone(),
            transaction_token: need(token, "transaction_token")?,
            psp_reference: r.psp_reference.clone(),
            reference: r.reference.clone(),
            order: None,
        })
    };
    let of_operation = || match r.sync_operation.as_deref() {
        None => Ok(Operation::Authorize),
        Some(name) => {
            parse_operation(name).ok_or_else(|| format!("unknown sync_operation `{name}`"))
        }
    };
    Ok(match op {
        Operation::Authorize => Call::Authorize(authorize(r.payment_source_token.clone())?),
        Operation::Sale => Call::Sale(authorize(r.payment_source_token.clone())?),
        Operation::Capture => {
            let f = follow_up(r.transaction_token.clone())?;
            Call::Capture(CaptureRequest::of(
                f,
                r.final_capture,
                r.sequence.unwrap_or(1),
            ))
        }
        Operation::Void => Call::Void(follow_up(r.transaction_token.clone())?),
        Operation::Refund => Call::Refund(follow_up(r.transaction_token.clone())?),
        Operation::Tokenize => Call::Tokenize(TokenizeRequest {
            idempotency_key: r.idempotency_key.clone(),
            payment_source_token: need(r.payment_source_token.clone(), "payment_source_token")?,
            customer_token: r.customer_token.clone(),
            customer_email: r.customer_email.clone(),
            reference: r.reference.clone(),
            order: None,
        }),
        // Without a token, the plugin looks the transaction up by key or reference.
        Operation::Sync => Call::Sync(SyncRequest {
            operation: of_operation()?,
            transaction_token: r.transaction_token.clone(),
            psp_reference: r.psp_reference.clone(),
            idempotency_key: r.idempotency_key.clone(),
            reference: r.reference.clone(),
            amount: amount.clone(),
        }),
        Operation::Complete => Call::Complete(CompleteRequest {
            operation: of_operation()?,
            idempotency_key: r.idempotency_key.clone(),
            transaction_token: need(r.transaction_token.clone(), "transaction_token")?,
            psp_reference: need(r.psp_reference.clone(), "psp_reference")?,
            amount: amount.clone(),
            return_parameters: r
                .return_parameters
                .iter()
                .map(|(key, value)| Pair {
                    key: key.clone(),
                    value: value.clone(),
                })
                .collect(),
            details_json: r.details_json.clone(),
        }),
        Operation::HandleWebhook => unreachable!("not parsed"),
    })
}
