//! Adyen's standard notifications: `{"live": "false", "notificationItems":
//! [{"NotificationRequestItem": {...}}]}`, each item signed in `additionalData.hmacSignature`.

use psp_plugin_sdk::crypto::{base64_decode, constant_time_eq, hex_decode, hmac_sha256};
use psp_plugin_sdk::log;
use psp_plugin_sdk::types::{EventKind, Failure, FinalStatus, Money, PspEvent};
use serde_json::Value;

/// The fields of the signed string, in Adyen's order (`value` and `currency` from `amount`).
const SIGNED_FIELDS: [&str; 8] = [
    "pspReference",
    "originalReference",
    "merchantAccountCode",
    "merchantReference",
    "value",
    "currency",
    "eventCode",
    "success",
];

/// A field as text: strings as they are, numbers and booleans as JSON writes them, missing or
/// null as the empty string.
fn field_text(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// `pspReference:originalReference:merchantAccountCode:merchantReference:value:currency:eventCode:success`
/// of one `NotificationRequestItem`.
pub fn signing_string(item: &Value) -> String {
    SIGNED_FIELDS
        .iter()
        .map(|f| match *f {
            "value" | "currency" => field_text(item.get("amount").and_then(|a| a.get(f))),
            _ => field_text(item.get(f)),
        })
        .collect::<Vec<_>>()
        .join(":")
}

/// Checks an item's `additionalData.hmacSignature` (base64 HMAC-SHA256 keyed with the
/// hex-decoded key) in constant time.
pub fn verify_item(item: &Value, key: &[u8]) -> Result<(), Failure> {
    let given = item
        .get("additionalData")
        .and_then(|d| d.get("hmacSignature"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            Failure::Unauthenticated("a notification item has no hmacSignature".into())
        })?;
    let bad = || Failure::Unauthenticated("a notification item's hmacSignature is wrong".into());
    let given = base64_decode(given.trim()).map_err(|_| bad())?;
    let expected = hmac_sha256(key, signing_string(item).as_bytes());
    if constant_time_eq(&given, &expected) {
        Ok(())
    } else {
        Err(bad())
    }
}

/// Verifies every item (one bad item rejects the batch, so Adyen retries it whole) and turns
/// the ones about payments and their modifications into events.
pub fn handle(body: &[u8], hex_key: &str) -> Result<Vec<PspEvent>, Failure> {
    let key = hex_decode(hex_key.trim())
        .map_err(|_| Failure::Misconfigured("setting `hmac_key` is not hexadecimal".into()))?;
    let invalid = |what: &str| Failure::InvalidRequest(format!("Adyen notification: {what}"));
    let doc: Value = serde_json::from_slice(body).map_err(|_| invalid("body is not JSON"))?;
    let items = doc
        .get("notificationItems")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("no notificationItems"))?;
    let items: Vec<&Value> = items
        .iter()
        .map(|i| {
            i.get("NotificationRequestItem")
                .filter(|v| v.is_object())
                .ok_or_else(|| invalid("an item has no NotificationRequestItem"))
        })
        .collect::<Result<_, _>>()?;
    for item in &items {
        verify_item(item, &key)?;
    }
    let mut events = Vec::new();
    for item in items {
        events.extend(event(item));
    }
    Ok(events)
}

/// The events one verified item reports (none for event codes the plugin does not track).
pub fn event(item: &Value) -> Vec<PspEvent> {
    let text = |k: &str| item.get(k).and_then(Value::as_str).unwrap_or_default();
    let event_code = text("eventCode");
    let (kind, always_failed) = match event_code {
        "AUTHORISATION" => (EventKind::Authorized, false),
        "CAPTURE" => (EventKind::Captured, false),
        "CAPTURE_FAILED" => (EventKind::Captured, true),
        "CANCELLATION" => (EventKind::Voided, false),
        "REFUND" => (EventKind::Refunded, false),
        "REFUND_FAILED" => (EventKind::Refunded, true),
        "REFUNDED_REVERSED" => (EventKind::Reversed, false),
        "CHARGEBACK" => (EventKind::Chargeback, false),
        other => {
            log::info(&format!("Adyen notification {other} ignored"));
            return Vec::new();
        }
    };
    let psp_reference = text("pspReference");
    if psp_reference.is_empty() {
        log::warn(&format!(
            "Adyen notification {event_code} without pspReference ignored"
        ));
        return Vec::new();
    }
    let success = field_text(item.get("success")).eq_ignore_ascii_case("true");
    let status = if success && !always_failed {
        FinalStatus::Succeeded
    } else {
        FinalStatus::Failed
    };
    let reason = text("reason");
    let amount = item.get("amount").and_then(|a| {
        let value = a.get("value")?;
        let cents = value
            .as_u64()
            .or_else(|| value.as_str().and_then(|s| s.parse().ok()))?;
        Some(Money::new(cents, a.get("currency")?.as_str()?))
    });
    let make = |reference: &str| PspEvent {
        psp_reference: reference.to_owned(),
        transaction_token: None,
        status,
        kind: Some(kind),
        code: Some(event_code.to_owned()),
        message: (!reason.is_empty()).then(|| reason.to_owned()),
        amount: amount.clone(),
    };
    let mut events = vec![make(psp_reference)];
    // A payment answered with an action but no pspReference is pending under its merchant
    // reference (see `payment_outcome`).
    let merchant_reference = text("merchantReference");
    if kind == EventKind::Authorized
        && !merchant_reference.is_empty()
        && merchant_reference != psp_reference
    {
        events.push(make(merchant_reference));
    }
    events
}
