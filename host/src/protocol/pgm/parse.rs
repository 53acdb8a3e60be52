//! PGM request bodies: the fields every call shares, checked with errors that name them.
//! Public (not `pub(super)`) because the `pgm` fuzz target calls these parsers directly.

use serde_json::Value;

use super::{PgmError, bad_request};
use crate::payments::PaymentRequest;
use crate::store::Action;

/// A required positive integer amount in minor units.
pub fn amount(body: &Value) -> Result<u64, PgmError> {
    match body.get("amount") {
        None | Some(Value::Null) => Err(bad_request("`amount` is required")),
        Some(v) => v.as_u64().filter(|a| *a > 0).ok_or_else(|| {
            bad_request("`amount` must be a positive integer in the currency's minor unit")
        }),
    }
}

/// A required non-blank string field.
pub fn required_str<'a>(body: &'a Value, field: &str) -> Result<&'a str, PgmError> {
    body.get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| bad_request(format!("`{field}` is required")))
}

/// A required ISO 4217 code (three ASCII letters), upper-cased.
pub fn currency(body: &Value) -> Result<String, PgmError> {
    let c = required_str(body, "currency")?;
    if c.len() == 3 && c.chars().all(|ch| ch.is_ascii_alphabetic()) {
        Ok(c.to_ascii_uppercase())
    } else {
        Err(bad_request("`currency` must be an ISO 4217 code"))
    }
}

/// `providerData.paymentSourceToken` (or `providerData.token`).
pub fn source_token(body: &Value) -> Result<String, PgmError> {
    let data = body.get("providerData");
    data.and_then(|d| d.get("paymentSourceToken").or_else(|| d.get("token")))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| bad_request("`providerData.paymentSourceToken` is required"))
}

/// The body as a JSON object.
pub fn parse_json(bytes: &[u8]) -> Result<Value, PgmError> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| bad_request(format!("the body is not JSON: {e}")))?;
    if value.is_object() {
        Ok(value)
    } else {
        Err(bad_request("the body must be a JSON object"))
    }
}

/// The engine's sale request for a PGM `pay`.
pub fn sale_request(
    gateway: &str,
    shop_transaction_id: &str,
    amount_cents: u64,
    currency: String,
    token: String,
    customer_token: Option<String>,
    options: Option<&Value>,
) -> PaymentRequest {
    PaymentRequest {
        gateway: gateway.to_owned(),
        action: Action::Sale,
        natural_key: shop_transaction_id.to_owned(),
        resource_id: shop_transaction_id.to_owned(),
        amount_cents,
        currency,
        payment_source_token: Some(token),
        parent_token: None,
        customer_token,
        customer_email: None,
        order: None,
        options_json: options.map(Value::to_string),
    }
}
