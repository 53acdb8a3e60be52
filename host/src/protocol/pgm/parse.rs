//! PGM request bodies: the fields every call shares, read without a JSON tree and checked
//! with errors that name them. Public (not `pub(super)`) because the `pgm` fuzz target calls
//! these parsers directly.

use std::borrow::Cow;

use serde::de::IgnoredAny;
use serde_json::Value;
use serde_json::value::RawValue;

use super::{PgmError, bad_request};
use crate::payments::PaymentRequest;
use crate::plugins::types::Shopper;
use crate::protocol::raw::{Fields, Text};
use crate::store::Action;

/// A request body: a JSON object whose members stay raw text until one is asked for.
pub struct Body<'a>(Fields<'a>);

impl<'a> Body<'a> {
    /// A string member at `path` (`["providerData", "customerEmail"]`).
    pub fn text_at(&self, path: &[&str]) -> Option<Cow<'a, str>> {
        Text::of(member_at(&self.0, path)?)
    }

    /// An integer member at `path`; `None` when absent or not one.
    pub fn integer_at(&self, path: &[&str]) -> Option<i64> {
        serde_json::from_str(member_at(&self.0, path)?.get()).ok()
    }

    /// `providerData.options` as sent, for the plugin.
    pub fn provider_options(&self) -> Option<Value> {
        let raw = member_at(&self.0, &["providerData", "options"])?;
        serde_json::from_str(raw.get()).ok()
    }
}

/// The member at `path`, through the nested objects it names.
fn member_at<'a>(fields: &Fields<'a>, path: &[&str]) -> Option<&'a RawValue> {
    match path {
        [] => None,
        [name] => fields.get(name),
        [name, rest @ ..] => member_at(&fields.object(name)?, rest),
    }
}

/// The body as a JSON object.
pub fn parse_json(bytes: &[u8]) -> Result<Body<'_>, PgmError> {
    match serde_json::from_slice::<Fields>(bytes) {
        Ok(fields) => Ok(Body(fields)),
        // Members are taken raw, so a data error is the top level not being an object;
        // a body that is no JSON at all is told as such.
        Err(e) if e.is_data() => match serde_json::from_slice::<IgnoredAny>(bytes) {
            Ok(_) => Err(bad_request("the body must be a JSON object")),
            Err(e) => Err(not_json(&e)),
        },
        Err(e) => Err(not_json(&e)),
    }
}

fn not_json(e: &serde_json::Error) -> PgmError {
    bad_request(format!("the body is not JSON: {e}"))
}

/// A required positive integer amount in minor units.
pub fn amount(body: &Body) -> Result<u64, PgmError> {
    match body.0.value("amount") {
        None => Err(bad_request("`amount` is required")),
        Some(v) => serde_json::from_str::<u64>(v.get())
            .ok()
            .filter(|a| *a > 0)
            .ok_or_else(|| {
                bad_request("`amount` must be a positive integer in the currency's minor unit")
            }),
    }
}

/// A required non-blank string field.
pub fn required_str<'a>(body: &Body<'a>, field: &str) -> Result<Cow<'a, str>, PgmError> {
    body.0
        .text(field)
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| bad_request(format!("`{field}` is required")))
}

/// A required ISO 4217 code (three ASCII letters), upper-cased.
pub fn currency(body: &Body) -> Result<String, PgmError> {
    let c = required_str(body, "currency")?;
    if c.len() == 3 && c.chars().all(|ch| ch.is_ascii_alphabetic()) {
        Ok(c.to_ascii_uppercase())
    } else {
        Err(bad_request("`currency` must be an ISO 4217 code"))
    }
}

/// `providerData.paymentSourceToken` (or `providerData.token`).
pub fn source_token(body: &Body) -> Result<String, PgmError> {
    let data = body.0.object("providerData");
    data.and_then(|d| match d.get("paymentSourceToken") {
        // Present but of another kind is no token (it does not fall back to `token`).
        Some(v) => Text::of(v),
        None => d.text("token"),
    })
    .filter(|s| !s.is_empty())
    .map(Cow::into_owned)
    .ok_or_else(|| bad_request("`providerData.paymentSourceToken` is required"))
}

/// Where PGM sends the shopper back after a redirect (`successRedirectUrl`,
/// `failureRedirectUrl`), when the body says.
pub fn shopper(body: &Body) -> Option<Shopper> {
    let url = |name: &str| {
        body.text_at(&[name])
            .filter(|u| !u.is_empty())
            .map(Cow::into_owned)
    };
    let (return_url, cancel_url) = (url("successRedirectUrl"), url("failureRedirectUrl"));
    (return_url.is_some() || cancel_url.is_some()).then_some(Shopper {
        return_url,
        cancel_url,
        ip_address: None,
        user_agent: None,
        accept_header: None,
    })
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
        shopper: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn description(r: Result<Body, PgmError>) -> String {
        r.err().expect("refused").description
    }

    #[test]
    fn a_body_that_is_no_object_is_told_apart_from_one_that_is_no_json() {
        assert!(description(parse_json(b"[1, 2]")).contains("must be a JSON object"));
        assert!(description(parse_json(b"[1,")).contains("not JSON"));
        assert!(description(parse_json(b"{\"a\": 1} x")).contains("not JSON"));
        assert!(description(parse_json(b"\xff")).contains("not JSON"));
    }

    #[test]
    fn members_are_read_by_path_and_kind() {
        let body = br#"{"paymentId": "p\u0031", "providerData": {"customerEmail": "a@b.c",
            "options": {"n": 1.5}, "token": "t"}, "subscriptionInfo": {"intervalCount": 3,
            "interval": 7}, "shopTransactionId": "  "}"#;
        let body = parse_json(body).unwrap();
        assert_eq!(body.text_at(&["paymentId"]).as_deref(), Some("p1"));
        assert_eq!(
            body.text_at(&["providerData", "customerEmail"]).as_deref(),
            Some("a@b.c")
        );
        assert_eq!(body.text_at(&["subscriptionInfo", "interval"]), None);
        assert_eq!(
            body.integer_at(&["subscriptionInfo", "intervalCount"]),
            Some(3)
        );
        assert_eq!(body.provider_options(), Some(serde_json::json!({"n": 1.5})));
        assert_eq!(source_token(&body).unwrap(), "t");
        assert!(required_str(&body, "shopTransactionId").is_err(), "blank");
    }
}
