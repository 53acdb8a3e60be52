//! PGM's manual subscriptions: a payment source saved at the PSP (tokenize) and charged
//! with merchant-initiated sales on the merchant's request; renewals run by the provider
//! are answered KO with the reason.

use std::borrow::Cow;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::parse::{amount, currency, parse_json, required_str, sale_request, source_token};
use super::{
    Answer, PgmError, bad_request, charge, engine_unavailable, ko, store_unavailable, stored,
};
use crate::app::AppState;
use crate::payments::PaymentRequest;
use crate::store::{Action, Subscription};

pub(super) async fn schedule(
    State(state): State<AppState>,
    Path(gateway): Path<String>,
) -> Result<Answer, PgmError> {
    let plugin = state
        .config
        .gateway(&gateway)
        .map_or("", |g| g.plugin.as_str());
    Err(ko(
        StatusCode::OK,
        format!(
            "automatic renewals run by the provider are not supported by plugin `{plugin}`; \
             use subscription/start and subscription/pay"
        ),
    ))
}

pub(super) async fn subscription_update(
    State(state): State<AppState>,
    Path((gateway, token)): Path<(String, String)>,
) -> Result<Answer, PgmError> {
    subscription(&state, &gateway, &token).await?;
    Ok((
        StatusCode::OK,
        Json(json!({"result": "KO", "subscriptionToken": token,
                "resultDescription": "a manual subscription has nothing to update: each subscription/pay names its amount"})),
    ))
}

/// A subscription of this gateway; 404 naming the token when there is none.
pub(super) async fn subscription(
    state: &AppState,
    gateway: &str,
    token: &str,
) -> Result<Subscription, PgmError> {
    state
        .payments
        .store()
        .subscription(gateway, token)
        .await
        .map_err(store_unavailable)?
        .ok_or_else(|| {
            ko(
                StatusCode::NOT_FOUND,
                format!("unknown subscriptionToken `{token}`"),
            )
        })
}

/// Saves the payment source (tokenize) and takes the first payment.
pub(super) async fn subscription_start(
    State(state): State<AppState>,
    Path(gateway): Path<String>,
    body: axum::body::Bytes,
) -> Result<Answer, PgmError> {
    let run = async {
        let body = parse_json(&body)?;
        let amount = amount(&body)?;
        let currency = currency(&body)?;
        let shop = required_str(&body, "shopTransactionId")?.into_owned();
        let token = source_token(&body)?;
        let saved = PaymentRequest {
            gateway: gateway.clone(),
            action: Action::Token,
            natural_key: format!("subscription:{shop}"),
            resource_id: shop.clone(),
            amount_cents: 0,
            currency: currency.clone(),
            payment_source_token: Some(token),
            parent_token: None,
            customer_token: None,
            customer_email: body
                .text_at(&["providerData", "customerEmail"])
                .map(Cow::into_owned),
            order: None,
            options_json: None,
            shopper: None,
        };
        let answer = state
            .payments
            .execute(&state.pgm, saved)
            .await
            .map_err(engine_unavailable)?;
        let (status, saved) = stored(&answer);
        let Some(source) = saved["paymentSourceToken"].as_str() else {
            return Ok((status, saved));
        };
        let customer = saved["customerToken"].as_str().map(str::to_owned);
        let subscription = state
            .payments
            .store()
            .save_subscription(Subscription {
                token: format!("sub_{}", hex::encode(rand::random::<[u8; 12]>())),
                gateway: gateway.clone(),
                shop_transaction_id: shop.clone(),
                customer_token: customer.clone(),
                payment_source_token: source.to_owned(),
                currency: currency.clone(),
                interval_unit: body
                    .text_at(&["subscriptionInfo", "interval"])
                    .map(Cow::into_owned),
                interval_count: body.integer_at(&["subscriptionInfo", "intervalCount"]),
                status: "PENDING".into(),
            })
            .await
            .map_err(store_unavailable)?;
        let first = sale_request(
            &gateway,
            &shop,
            amount,
            currency,
            subscription.payment_source_token.clone(),
            customer,
            None,
        );
        let (status, mut paid) = charge(&state, first).await?;
        let next = match paid["result"].as_str() {
            Some("OK") => "ACTIVE",
            Some("KO") => "EXPIRED",
            _ => "PENDING",
        };
        let _ = state
            .payments
            .store()
            .set_subscription_status(&gateway, &subscription.token, next)
            .await;
        paid["subscriptionToken"] = Value::String(subscription.token);
        Ok((status, paid))
    };
    run.await
}

/// A merchant-initiated charge on a subscription's saved payment source.
pub(super) async fn subscription_pay(
    State(state): State<AppState>,
    Path(gateway): Path<String>,
    body: axum::body::Bytes,
) -> Result<Answer, PgmError> {
    let run = async {
        let body = parse_json(&body)?;
        let amount = amount(&body)?;
        let currency = currency(&body)?;
        let shop = required_str(&body, "shopTransactionId")?;
        let token = body
            .text_at(&["subscriptionInfo", "token"])
            .ok_or_else(|| bad_request("`subscriptionInfo.token` is required"))?;
        let subscription = subscription(&state, &gateway, &token).await?;
        if subscription.status != "ACTIVE" {
            return Err(ko(
                StatusCode::OK,
                format!("the subscription is {}", subscription.status.to_lowercase()),
            ));
        }
        let req = sale_request(
            &gateway,
            &shop,
            amount,
            currency,
            subscription.payment_source_token.clone(),
            subscription.customer_token.clone(),
            None,
        );
        let (status, mut paid) = charge(&state, req).await?;
        paid["subscriptionToken"] = Value::String(subscription.token);
        Ok((status, paid))
    };
    run.await
}

pub(super) async fn subscription_status(
    State(state): State<AppState>,
    Path((gateway, token)): Path<(String, String)>,
) -> Result<Answer, PgmError> {
    let s = subscription(&state, &gateway, &token).await?;
    Ok((
        StatusCode::OK,
        Json(json!({"subscriptionToken": s.token, "status": s.status})),
    ))
}

pub(super) async fn subscription_expire(
    State(state): State<AppState>,
    Path((gateway, token)): Path<(String, String)>,
) -> Result<Answer, PgmError> {
    match state
        .payments
        .store()
        .set_subscription_status(&gateway, &token, "EXPIRED")
        .await
    {
        Ok(true) => Ok((StatusCode::OK, Json(json!({"result": "OK"})))),
        Ok(false) => Err(ko(
            StatusCode::NOT_FOUND,
            format!("unknown subscriptionToken `{token}`"),
        )),
        Err(e) => Err(store_unavailable(e)),
    }
}
