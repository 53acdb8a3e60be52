//! Mia-Platform Payment Gateway Manager's "external provider" contract, under
//! `/v3/{gateway}`: a translation onto the shared payment engine. `pay` is a sale (or an
//! authorization and a capture when the plugin has no sale), `refund` draws on the paid
//! amount, `status`/`check`/`callback` read the stored payment and refresh it with the
//! plugin's `sync` while pending, and manual subscriptions are a saved payment source
//! (tokenize) charged with merchant-initiated sales.

use std::borrow::Cow;
use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::app::AppState;
use crate::config::{GatewayConfig, PgmAccess};
use crate::payments::{FinalOutcome, Front, PaymentRequest, PaymentResult, RefusalCode};
use crate::plugins::types::{Operation, RedirectMethod, ShopperAction};
use crate::signature::constant_time_eq;
use crate::store::{Action, NewCallback, Status, StoredAnswer, Transaction};

/// Public for the `pgm` fuzz target (fuzz/), which feeds it arbitrary bodies.
pub mod parse;
mod subscription;

use parse::{amount, currency, parse_json, required_str, sale_request, shopper, source_token};
use subscription::*;

/// The PGM front.
pub struct Pgm;

impl Pgm {
    pub fn front() -> Arc<dyn Front> {
        Arc::new(Pgm)
    }
}

/// The routes, relative to `/v3/{gateway}`.
pub fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/v3/{gateway}/pay", post(pay))
        .route("/v3/{gateway}/refund", post(refund))
        .route("/v3/{gateway}/status", get(status).post(status_post))
        .route("/v3/{gateway}/check", get(check))
        // The PSP side says a payment changed: re-syncing it is what `status` does (a
        // change found is pushed by the engine).
        .route("/v3/{gateway}/callback", get(status).post(status))
        .route("/v3/{gateway}/subscription/schedule", post(schedule))
        .route("/v3/{gateway}/subscription/start", post(subscription_start))
        .route("/v3/{gateway}/subscription/pay", post(subscription_pay))
        .route(
            "/v3/{gateway}/subscription/update/{token}",
            post(subscription_update),
        )
        .route(
            "/v3/{gateway}/subscription/status/{token}",
            get(subscription_status),
        )
        .route(
            "/v3/{gateway}/subscription/expire/{token}",
            post(subscription_expire).delete(subscription_expire),
        )
        .route_layer(axum::middleware::from_fn_with_state(state, authenticate))
}

type Answer = (StatusCode, Json<Value>);

/// A KO answer: `{"result": "KO", "resultDescription"}` with its HTTP status. Every
/// refusal of this front is one, so handlers return `Result<Answer, PgmError>`.
#[derive(Debug)]
pub struct PgmError {
    status: StatusCode,
    description: String,
}

impl IntoResponse for PgmError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"result": "KO", "resultDescription": self.description})),
        )
            .into_response()
    }
}

fn ko(status: StatusCode, description: impl Into<String>) -> PgmError {
    PgmError {
        status,
        description: description.into(),
    }
}

fn bad_request(description: impl Into<String>) -> PgmError {
    ko(StatusCode::BAD_REQUEST, description)
}

/// The store failed: logged, answered 503.
fn store_unavailable(e: impl std::fmt::Display) -> PgmError {
    tracing::error!("store: {e}");
    ko(StatusCode::SERVICE_UNAVAILABLE, "the store is unavailable")
}

/// The engine could not record the operation: logged, answered 503.
fn engine_unavailable(e: impl std::fmt::Display) -> PgmError {
    tracing::error!("payment engine: {e}");
    ko(
        StatusCode::SERVICE_UNAVAILABLE,
        "the gateway cannot record payments right now",
    )
}

fn stored(answer: &StoredAnswer) -> Answer {
    let body = serde_json::from_str(&answer.body).unwrap_or(Value::Null);
    (
        StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK),
        Json(body),
    )
}

/// A gateway serves PGM only when configured to: with `pgm_auth_token` (a bearer token,
/// compared in constant time) or `pgm_auth = "none"`. Otherwise the routes do not exist for
/// it: the same 404 as an unknown gateway, so a scan learns nothing.
async fn authenticate(
    State(state): State<AppState>,
    Path(params): Path<Vec<(String, String)>>,
    req: Request,
    next: Next,
) -> Response {
    let gateway = params
        .iter()
        .find(|(k, _)| k == "gateway")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    let unknown = || {
        ko(
            StatusCode::NOT_FOUND,
            format!("unknown gateway `{gateway}`"),
        )
    };
    let Some(config) = state.config.gateway(gateway) else {
        return unknown().into_response();
    };
    match config.pgm_access() {
        PgmAccess::Closed => return unknown().into_response(),
        PgmAccess::Open => {}
        PgmAccess::Bearer(token) => {
            let given = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or("");
            if !constant_time_eq(given.as_bytes(), token.expose().as_bytes()) {
                return ko(StatusCode::UNAUTHORIZED, "a valid bearer token is required")
                    .into_response();
            }
        }
    }
    next.run(req).await
}

/// The collapsed PGM status of a stored payment.
fn pgm_status(status: Status) -> &'static str {
    match status {
        Status::Approved => "ACCEPTED",
        // An unknown outcome is never reported as a failure.
        Status::Pending | Status::Processing | Status::Unknown => "PENDING",
        Status::Declined | Status::Failed => "FAILED",
    }
}

fn status_object(gateway: &GatewayConfig, txn: &Transaction) -> Value {
    json!({
        "status": pgm_status(txn.status),
        "paymentId": txn.transaction_token,
        "shopTransactionId": txn.resource_id,
        "providerName": gateway.plugin,
        "amount": txn.amount_cents,
        "currency": txn.currency,
    })
}

impl Front for Pgm {
    fn name(&self) -> &'static str {
        "pgm"
    }

    fn render(&self, action: Action, result: &PaymentResult) -> StoredAnswer {
        let (status, body) = match result {
            PaymentResult::Approved {
                transaction_token, ..
            } => (
                StatusCode::OK,
                json!({"result": "OK", "paymentId": transaction_token}),
            ),
            PaymentResult::Pending {
                transaction_token,
                metadata,
                action,
                ..
            } => {
                // PGM takes a URL to send the shopper to: a GET redirect. A POST form or an
                // SDK action cannot be said in PGM's terms; such a payment stays PENDING.
                let redirect = match action {
                    Some(ShopperAction::Redirect(r)) if r.method == RedirectMethod::Get => {
                        Some(r.url.clone())
                    }
                    Some(_) => None,
                    // 0.1 plugins could only pass a URL by this metadata convention.
                    None => metadata
                        .iter()
                        .find(|(k, _)| k == "redirectToUrl" || k == "redirect_url")
                        .map(|(_, v)| v.clone()),
                };
                let body = match redirect {
                    Some(url) => {
                        json!({"result": "REDIRECT_TO_URL", "paymentId": transaction_token, "redirectToUrl": url})
                    }
                    None => json!({"result": "PENDING", "paymentId": transaction_token}),
                };
                (StatusCode::OK, body)
            }
            PaymentResult::Declined {
                transaction_token,
                code,
                message,
                ..
            } => (
                StatusCode::OK,
                json!({"result": "KO", "resultDescription": format!("{code}: {message}"), "paymentId": transaction_token}),
            ),
            PaymentResult::Tokenized {
                customer_token,
                payment_source_token,
            } => (
                StatusCode::OK,
                json!({"result": "OK", "customerToken": customer_token, "paymentSourceToken": payment_source_token}),
            ),
            PaymentResult::Refused { code, message } => {
                let status = match code {
                    RefusalCode::UnknownGateway | RefusalCode::UnknownTransaction => {
                        StatusCode::NOT_FOUND
                    }
                    // Input no PSP could accept: the caller's mistake, as a bad field is.
                    RefusalCode::InvalidAmount | RefusalCode::CardNumberRefused => {
                        StatusCode::BAD_REQUEST
                    }
                    _ => StatusCode::OK,
                };
                (
                    status,
                    json!({"result": "KO", "resultDescription": format!("{}: {message}", code.as_str())}),
                )
            }
            PaymentResult::Failed { kind, message } => {
                let status = StatusCode::from_u16(kind.http_status()).expect("a valid status");
                (
                    status,
                    json!({"result": "KO", "resultDescription": format!("{}: {message}", kind.code())}),
                )
            }
        };
        // A refund answers only its result.
        let body = if action == Action::Refund {
            json!({"result": body["result"], "resultDescription": body.get("resultDescription")})
        } else {
            body
        };
        StoredAnswer {
            status: status.as_u16(),
            body: body.to_string(),
        }
    }

    fn callback(
        &self,
        gateway: &GatewayConfig,
        txn: &Transaction,
        outcome: &FinalOutcome,
    ) -> Option<NewCallback> {
        if !matches!(txn.action, Action::Sale | Action::Capture) {
            return None;
        }
        let mut settled = txn.clone();
        settled.status = if outcome.succeeded {
            Status::Approved
        } else {
            Status::Declined
        };
        push(gateway, &settled)
    }
}

/// The status object POSTed to the gateway's `pgm_callback_url`, if it has one.
fn push(gateway: &GatewayConfig, txn: &Transaction) -> Option<NewCallback> {
    let url = gateway.pgm_callback_url.clone()?;
    Some(NewCallback {
        gateway: gateway.id.clone(),
        front: "pgm".into(),
        ordering_key: Some(txn.id.clone()),
        url,
        action_id: Some(txn.transaction_token.clone()),
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: serde_json::to_vec(&status_object(gateway, txn)).expect("JSON serialises"),
    })
}

/// Charges once per shop transaction id: a sale, or an authorization then a capture when
/// the plugin has no sale.
async fn charge(state: &AppState, req: PaymentRequest) -> Result<Answer, PgmError> {
    let front = &state.pgm;
    let has_sale = state
        .plugins
        .gateway(&req.gateway)
        .and_then(|g| state.plugins.registry().get(&g.plugin))
        .is_some_and(|p| p.info.operations.contains(&Operation::Sale));
    if has_sale {
        let answer = state
            .payments
            .execute(front, req.clone())
            .await
            .map_err(engine_unavailable)?;
        return Ok(stored(&answer));
    }
    let authorize = PaymentRequest {
        action: Action::Authorize,
        ..req.clone()
    };
    let answer = state
        .payments
        .execute(front, authorize)
        .await
        .map_err(engine_unavailable)?;
    let (status, body) = stored(&answer);
    if body["result"] != "OK" {
        return Ok((status, body));
    }
    let capture = PaymentRequest {
        action: Action::Capture,
        parent_token: body["paymentId"].as_str().map(str::to_owned),
        payment_source_token: None,
        ..req
    };
    let answer = state
        .payments
        .execute(front, capture)
        .await
        .map_err(engine_unavailable)?;
    Ok(stored(&answer))
}

async fn pay(
    State(state): State<AppState>,
    Path(gateway): Path<String>,
    body: axum::body::Bytes,
) -> Result<Answer, PgmError> {
    let run = async {
        let body = parse_json(&body)?;
        let amount = amount(&body)?;
        let currency = currency(&body)?;
        let shop = required_str(&body, "shopTransactionId")?;
        let token = source_token(&body)?;
        let mut req = sale_request(
            &gateway,
            &shop,
            amount,
            currency,
            token,
            None,
            body.provider_options().as_ref(),
        );
        req.shopper = shopper(&body);
        charge(&state, req).await
    };
    run.await
}

/// The payment a `paymentId` names (a sale, or the capture of authorize + capture).
async fn payment(
    state: &AppState,
    gateway: &str,
    payment_id: &str,
) -> Result<Transaction, PgmError> {
    state
        .payments
        .find(gateway, payment_id, &[Action::Sale, Action::Capture])
        .await
        .map_err(store_unavailable)?
        .ok_or_else(|| {
            ko(
                StatusCode::NOT_FOUND,
                format!("unknown paymentId `{payment_id}`"),
            )
        })
}

async fn refund(
    State(state): State<AppState>,
    Path(gateway): Path<String>,
    body: axum::body::Bytes,
) -> Result<Answer, PgmError> {
    let run = async {
        let body = parse_json(&body)?;
        let amount = amount(&body)?;
        let currency = currency(&body)?;
        let payment_id = required_str(&body, "paymentId")?;
        let paid = payment(&state, &gateway, &payment_id).await?;
        if currency != paid.currency {
            return Err(bad_request(format!(
                "`currency` is {currency}, the payment is in {}",
                paid.currency
            )));
        }
        // PGM sends no refund id: a repeat is recognised by the amount and what was
        // refunded before it, so a second partial refund of the same amount is a new one.
        let refunded = state
            .payments
            .store()
            .drawn(&paid.id, Action::Refund)
            .await
            .map_err(store_unavailable)?;
        let req = PaymentRequest {
            gateway: gateway.clone(),
            action: Action::Refund,
            natural_key: format!("{payment_id}:{amount}:{refunded}"),
            resource_id: paid.resource_id.clone(),
            amount_cents: amount,
            currency,
            payment_source_token: None,
            parent_token: Some(payment_id.into_owned()),
            customer_token: None,
            customer_email: None,
            order: None,
            options_json: None,
            shopper: None,
        };
        let answer = state
            .payments
            .execute(&state.pgm, req)
            .await
            .map_err(engine_unavailable)?;
        Ok(stored(&answer))
    };
    run.await
}

#[derive(serde::Deserialize)]
struct PaymentQuery {
    #[serde(rename = "paymentId")]
    payment_id: Option<String>,
}

/// The payment's state, refreshed through the plugin while it is pending.
async fn current(
    state: &AppState,
    gateway: &str,
    payment_id: Option<&str>,
) -> Result<(Transaction, bool), PgmError> {
    let payment_id = payment_id
        .filter(|p| !p.is_empty())
        .ok_or_else(|| bad_request("`paymentId` is required"))?;
    let txn = payment(state, gateway, payment_id).await?;
    let changed = state.payments.refresh(&txn).await.unwrap_or_else(|e| {
        tracing::warn!("refresh: {e}");
        false
    });
    let txn = if changed {
        payment(state, gateway, payment_id).await?
    } else {
        txn
    };
    Ok((txn, changed))
}

async fn status(
    State(state): State<AppState>,
    Path(gateway): Path<String>,
    Query(q): Query<PaymentQuery>,
) -> Result<Answer, PgmError> {
    answer_status(&state, &gateway, q.payment_id.as_deref()).await
}

async fn status_post(
    State(state): State<AppState>,
    Path(gateway): Path<String>,
    Query(q): Query<PaymentQuery>,
    body: axum::body::Bytes,
) -> Result<Answer, PgmError> {
    let from_body = parse_json(&body)
        .ok()
        .and_then(|b| b.text_at(&["paymentId"]))
        .map(Cow::into_owned);
    answer_status(
        &state,
        &gateway,
        q.payment_id.as_deref().or(from_body.as_deref()),
    )
    .await
}

async fn answer_status(
    state: &AppState,
    gateway: &str,
    payment_id: Option<&str>,
) -> Result<Answer, PgmError> {
    let config = state
        .config
        .gateway(gateway)
        .expect("checked by authenticate");
    let (txn, _) = current(state, gateway, payment_id).await?;
    Ok((StatusCode::OK, Json(status_object(config, &txn))))
}

/// Status, and a push of it to the callback URL.
async fn check(
    State(state): State<AppState>,
    Path(gateway): Path<String>,
    Query(q): Query<PaymentQuery>,
) -> Result<Answer, PgmError> {
    let config = state
        .config
        .gateway(&gateway)
        .expect("checked by authenticate");
    let (txn, changed) = current(&state, &gateway, q.payment_id.as_deref()).await?;
    // A change found by the refresh was pushed already, through the engine.
    if !changed && let Some(cb) = push(config, &txn) {
        if let Err(e) = state.payments.store().enqueue_callback(cb).await {
            tracing::error!("cannot queue the status push: {e}");
        }
        state.outbox_wake.notify_one();
    }
    Ok((StatusCode::OK, Json(status_object(config, &txn))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_collapse_to_three() {
        assert_eq!(pgm_status(Status::Approved), "ACCEPTED");
        assert_eq!(pgm_status(Status::Pending), "PENDING");
        assert_eq!(pgm_status(Status::Processing), "PENDING");
        assert_eq!(pgm_status(Status::Declined), "FAILED");
        assert_eq!(pgm_status(Status::Failed), "FAILED");
    }

    #[test]
    fn amounts_must_be_positive_integers() {
        let amount = |v: &Value| amount(&parse_json(v.to_string().as_bytes()).unwrap());
        assert_eq!(amount(&json!({"amount": 1299})).unwrap(), 1299);
        for bad in [
            json!({}),
            json!({"amount": 12.99}),
            json!({"amount": "1299"}),
            json!({"amount": -1}),
            json!({"amount": 0}),
        ] {
            let e = amount(&bad).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{bad}");
            assert!(e.description.contains("amount"));
        }
    }

    #[test]
    fn renders_pgm_results() {
        let ok = Pgm.render(
            Action::Sale,
            &PaymentResult::Approved {
                transaction_token: "t1".into(),
                amount_cents: 5,
                messages: vec![],
                metadata: vec![],
            },
        );
        assert_eq!(ok.status, 200);
        assert_eq!(
            serde_json::from_str::<Value>(&ok.body).unwrap(),
            json!({"result": "OK", "paymentId": "t1"})
        );
        let refused = Pgm.render(
            Action::Refund,
            &PaymentResult::Refused {
                code: RefusalCode::AmountExceedsBalance,
                message: "x".into(),
            },
        );
        let body: Value = serde_json::from_str(&refused.body).unwrap();
        assert_eq!((refused.status, body["result"].as_str()), (200, Some("KO")));
        for action in [Action::Sale, Action::Refund] {
            let out_of_bounds = Pgm.render(
                action,
                &PaymentResult::Refused {
                    code: RefusalCode::InvalidAmount,
                    message: "amount 9223372036854775808 is out of bounds".into(),
                },
            );
            let body: Value = serde_json::from_str(&out_of_bounds.body).unwrap();
            assert_eq!(out_of_bounds.status, 400);
            assert_eq!(body["result"], "KO");
            assert!(
                body["resultDescription"]
                    .as_str()
                    .unwrap()
                    .contains("amount")
            );
        }
    }
}
