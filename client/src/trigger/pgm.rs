//! `trigger` on the PGM front (`/v3/{gateway}`): pay, and for refund and status a pay
//! first, then the call on the `paymentId` it answered. A `PENDING` pay waits for the
//! status push the gateway sends to its `pgm_callback_url` (PGM pushes carry no signature).

use serde_json::{Value, json};

use super::{Session, TriggerAction, TriggerError, TriggerOptions, check};
use crate::cl::new_id;

/// The sample order's total, when no amount is given (as on the Commerce Layer front).
const DEFAULT_AMOUNT: i64 = 12_200;

pub(super) async fn run(
    options: &TriggerOptions,
    session: &mut Session<'_>,
) -> Result<(), TriggerError> {
    let then = match options.action {
        TriggerAction::Pay => None,
        TriggerAction::Refund | TriggerAction::Status => Some(options.action),
        other => {
            return Err(TriggerError::WrongFront {
                action: other.name(),
                front: "PGM",
                allowed: "pay, refund, status",
            });
        }
    };
    let pgm = Pgm {
        http: reqwest::Client::new(),
        base: format!("{}/v3/{}", session.base, options.gateway),
        path: format!("/v3/{}", options.gateway),
        bearer: options.secret.clone().filter(|s| !s.is_empty()),
        gateway: options.gateway.clone(),
    };
    let amount = options.amount_cents.unwrap_or(DEFAULT_AMOUNT);
    let shop = format!("trigger-{}", new_id());
    let pay = json!({
        "amount": amount,
        "currency": options.currency,
        "shopTransactionId": shop,
        "successRedirectUrl": "https://shop.example/ok",
        "failureRedirectUrl": "https://shop.example/ko",
        "providerData": {"paymentSourceToken": options.card_token},
    });
    let note = format!(
        "shopTransactionId {shop}, payment source token {}, {amount} {} cents",
        options.card_token, options.currency
    );
    let (status, body) = pgm.call(session, "POST", "/pay", Some(&pay), &note).await?;
    check("pay", status, &pgm.gateway)?;
    let payment_id = body["paymentId"]
        .as_str()
        .filter(|p| !p.is_empty())
        .ok_or(TriggerError::Incomplete {
            step: "pay",
            field: "paymentId",
        })?
        .to_owned();
    if body["result"] == "PENDING" {
        let push = session
            .callback(&format!("payment {payment_id}"), |json| {
                json["paymentId"] == payment_id.as_str() && json["status"] != "PENDING"
            })
            .await?;
        if push.json["status"] != "ACCEPTED" {
            return Err(TriggerError::CallbackFailed);
        }
    } else if body["result"] != "OK" {
        return Err(TriggerError::Failed {
            step: "pay",
            status,
        });
    }
    match then {
        None => Ok(()),
        Some(TriggerAction::Refund) => {
            let refund =
                json!({"amount": amount, "currency": options.currency, "paymentId": payment_id});
            let note = format!("paymentId {payment_id}, {amount} cents");
            let (status, _) = pgm
                .call(session, "POST", "/refund", Some(&refund), &note)
                .await?;
            check("refund", status, &pgm.gateway)
        }
        Some(_) => {
            let path = format!("/status?paymentId={payment_id}");
            let (status, _) = pgm.call(session, "GET", &path, None, "").await?;
            check("status", status, &pgm.gateway)
        }
    }
}

struct Pgm {
    http: reqwest::Client,
    /// `http://HOST:PORT/v3/{gateway}`.
    base: String,
    /// `/v3/{gateway}`, for printing.
    path: String,
    bearer: Option<String>,
    gateway: String,
}

impl Pgm {
    async fn call(
        &self,
        session: &mut Session<'_>,
        method: &str,
        path: &str,
        body: Option<&Value>,
        note: &str,
    ) -> Result<(u16, Value), TriggerError> {
        session.request(method, &format!("{}{path}", self.path), note)?;
        let url = format!("{}{path}", self.base);
        let mut request = match body {
            Some(body) => self
                .http
                .post(&url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string()),
            None => self.http.get(&url),
        };
        if let Some(token) = &self.bearer {
            request = request.bearer_auth(token);
        }
        let (status, raw) = match request.send().await {
            Ok(reply) => {
                let status = reply.status().as_u16();
                match reply.bytes().await {
                    Ok(raw) => (status, raw.to_vec()),
                    Err(e) => (0, e.to_string().into_bytes()),
                }
            }
            Err(e) => (0, crate::load::error_chain(&e).into_bytes()),
        };
        let json = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        session.answer(status, &json, &raw)?;
        Ok((status, json))
    }
}
