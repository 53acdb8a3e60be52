//! Stripe's HTTP API as the plugin sees it: one authenticated form call, and the
//! classification of Stripe's answers into objects, declines and failures.

use psp_plugin_sdk::http::{Form, Method, Request, Response};
use psp_plugin_sdk::settings;
use psp_plugin_sdk::types::*;
use serde_json::Value;

use crate::status::id_or_object;
use crate::{API_BASE, DEFAULT_API_BASE, SECRET_KEY, STRIPE_VERSION};

/// What Stripe answered: the object, or a card error (a business decline).
#[derive(Debug)]
pub enum Answer {
    Ok(Value),
    Declined(Declined),
}

pub struct Api {
    base: String,
    key: String,
}

impl Api {
    pub fn from_settings() -> Result<Api, Failure> {
        let key = settings::require(SECRET_KEY)?;
        let base = settings::get(API_BASE)
            .map(|b| b.trim().trim_end_matches('/').to_owned())
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| DEFAULT_API_BASE.to_owned());
        Ok(Api { base, key })
    }

    /// Performs one call and classifies the answer.
    pub fn call(
        &self,
        method: Method,
        path: &str,
        form: Option<&Form>,
        idempotency_key: Option<&str>,
    ) -> Result<Answer, Failure> {
        let mut request = Request::new(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .header("Stripe-Version", STRIPE_VERSION);
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        if let Some(form) = form {
            request = request.form(form);
        }
        let response = request.send()?;
        classify(method, path, &response)
    }

    /// The PaymentIntent as Stripe has it now (complete, sync).
    pub fn intent(&self, id: &str) -> Result<Value, Failure> {
        self.ok(
            Method::Get,
            &format!("/v1/payment_intents/{id}"),
            None,
            None,
        )
    }

    /// A call whose card errors are not declines of a payment (tokenize, reads).
    pub fn ok(
        &self,
        method: Method,
        path: &str,
        form: Option<&Form>,
        idempotency_key: Option<&str>,
    ) -> Result<Value, Failure> {
        match self.call(method, path, form, idempotency_key)? {
            Answer::Ok(value) => Ok(value),
            Answer::Declined(d) => Err(Failure::InvalidRequest(format!(
                "Stripe declined the payment method ({}): {}",
                d.code, d.message
            ))),
        }
    }
}

/// Maps an HTTP answer of Stripe: 2xx -> the object; 402 or `card_error` -> a decline;
/// 5xx and 429 -> unreachable; 401/403 -> misconfigured; other 4xx -> invalid request.
fn classify(method: Method, path: &str, response: &Response) -> Result<Answer, Failure> {
    let what = format!("{method} {}", endpoint_name(path));
    if response.status >= 500 {
        return Err(Failure::Unreachable(format!(
            "Stripe answered HTTP {} to {what}",
            response.status
        )));
    }
    if response.status == 429 {
        return Err(Failure::Unreachable(format!(
            "Stripe rate-limited {what} (HTTP 429)"
        )));
    }
    if response.is_success() {
        return response.json::<Value>().map(Answer::Ok);
    }
    let body: Value = response.json().unwrap_or(Value::Null);
    let error = &body["error"];
    let text = |field: &str| error[field].as_str().filter(|s| !s.is_empty());
    let code = text("code");
    let message = text("message").unwrap_or("no message").to_owned();
    if response.status == 402 || text("type") == Some("card_error") {
        let code = text("decline_code")
            .or(code)
            .unwrap_or("card_declined")
            .to_owned();
        let transaction_token = error
            .get("payment_intent")
            .and_then(id_or_object)
            .filter(|id| id.starts_with("pi_"));
        return Ok(Answer::Declined(Declined {
            code,
            message,
            psp_reference: transaction_token.clone(),
            transaction_token,
        }));
    }
    // The same key is still being processed by Stripe (our earlier try of this very call):
    // its outcome is not known yet, so this is not a refusal; the host re-sends later.
    if response.status == 409 && code == Some("idempotency_key_in_use") {
        return Err(Failure::Unreachable(format!(
            "Stripe is still processing an earlier {what} with this idempotency key (HTTP 409)"
        )));
    }
    let code = code.unwrap_or("no code");
    match response.status {
        // Stripe's message quotes part of the key: do not pass it on.
        401 => Err(Failure::Misconfigured(format!(
            "Stripe rejected the secret key (HTTP 401 to {what})"
        ))),
        403 => Err(Failure::Misconfigured(format!(
            "the secret key may not call {what} (HTTP 403, {code})"
        ))),
        status => Err(Failure::InvalidRequest(format!(
            "Stripe refused {what} (HTTP {status}, {code}): {message}"
        ))),
    }
}

/// `/v1/payment_intents/pi_123/capture` -> `/v1/payment_intents/{id}/capture` (no ids in
/// messages that end up in logs).
pub(crate) fn endpoint_name(path: &str) -> String {
    path.split('?')
        .next()
        .unwrap_or_default()
        .split('/')
        .map(|seg| match seg.find('_') {
            Some(i) if i <= 4 && seg.len() > i + 4 => "{id}",
            _ => seg,
        })
        .collect::<Vec<_>>()
        .join("/")
}
