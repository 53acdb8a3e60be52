//! Stripe webhooks: `Stripe-Signature` verification and the mapping of Stripe events to
//! PSP events.

use psp_plugin_sdk::crypto::{constant_time_eq, hex_decode, hmac_sha256};
use psp_plugin_sdk::types::*;
use serde_json::Value;

use crate::status::last_error;
use crate::{SIGNATURE_HEADER, SIGNATURE_TOLERANCE_SECS, WEBHOOK_SECRET};

/// Checks a `Stripe-Signature` header (`t=<unix secs>,v1=<hex>[,v1=<hex>...]`): some `v1`
/// must be the HMAC-SHA256 of `"{t}.{body}"` keyed with one of `secrets`, and `t` within
/// [`SIGNATURE_TOLERANCE_SECS`] of `now`. Comparisons are constant time.
pub fn verify_signature(
    header: &str,
    body: &[u8],
    secrets: &[&str],
    now: u64,
) -> Result<(), Failure> {
    let unauthenticated =
        |why: &str| Failure::Unauthenticated(format!("{SIGNATURE_HEADER}: {why}"));
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for item in header.split(',') {
        let Some((key, value)) = item.trim().split_once('=') else {
            continue;
        };
        match key.trim() {
            "t" => timestamp = value.trim().parse::<u64>().ok(),
            "v1" => {
                if let Ok(sig) = hex_decode(value.trim()) {
                    signatures.push(sig);
                }
            }
            _ => {}
        }
    }
    let t = timestamp.ok_or_else(|| unauthenticated("no valid timestamp"))?;
    if signatures.is_empty() {
        return Err(unauthenticated("no v1 signature"));
    }
    if secrets.is_empty() {
        return Err(Failure::Misconfigured(format!(
            "setting `{WEBHOOK_SECRET}` is empty"
        )));
    }
    let mut signed = t.to_string().into_bytes();
    signed.push(b'.');
    signed.extend_from_slice(body);
    let mut matched = false;
    for secret in secrets {
        let expected = hmac_sha256(secret.as_bytes(), &signed);
        for given in &signatures {
            // No early exit: every candidate is compared.
            matched |= constant_time_eq(given, &expected);
        }
    }
    if !matched {
        return Err(unauthenticated("no signature matches the body"));
    }
    if now.abs_diff(t) > SIGNATURE_TOLERANCE_SECS {
        return Err(unauthenticated("timestamp outside the tolerance"));
    }
    Ok(())
}

/// Turns a Stripe event into PSP events; unknown types give none.
pub fn events_of(event: &Value) -> Vec<PspEvent> {
    let object = &event["data"]["object"];
    let id = object["id"].as_str().unwrap_or_default().to_owned();
    if id.is_empty() {
        return Vec::new();
    }
    let kind = event["type"].as_str().unwrap_or_default();
    let currency = object["currency"]
        .as_str()
        .unwrap_or_default()
        .to_uppercase();
    let ev = |status, kind, amount_cents: Option<u64>| PspEvent {
        psp_reference: id.clone(),
        transaction_token: None,
        status,
        kind,
        code: None,
        message: None,
        amount: amount_cents
            .filter(|_| !currency.is_empty())
            .map(|cents| Money::new(cents, currency.clone())),
    };
    match kind {
        "payment_intent.amount_capturable_updated" => vec![ev(
            FinalStatus::Succeeded,
            Some(EventKind::Authorized),
            object["amount_capturable"].as_u64(),
        )],
        // Succeeded settles whatever is pending on the PaymentIntent: a sale, a capture, or an
        // authorization (captured meanwhile, which implies it was authorized).
        "payment_intent.succeeded" => vec![ev(
            FinalStatus::Succeeded,
            None,
            object["amount_received"]
                .as_u64()
                .filter(|a| *a > 0)
                .or_else(|| object["amount"].as_u64()),
        )],
        "payment_intent.payment_failed" => {
            let (code, message) = last_error(object);
            vec![PspEvent {
                code: Some(code.unwrap_or_else(|| "payment_failed".into())),
                message,
                ..ev(FinalStatus::Failed, None, None)
            }]
        }
        // A cancel completes a void and fails anything else still pending.
        "payment_intent.canceled" => {
            let reason = object["cancellation_reason"].as_str().unwrap_or("canceled");
            let mut events = vec![ev(FinalStatus::Succeeded, Some(EventKind::Voided), None)];
            // Captured covers both a sale and a capture.
            for op in [EventKind::Authorized, EventKind::Captured] {
                events.push(PspEvent {
                    code: Some("payment_intent_canceled".into()),
                    message: Some(format!("the PaymentIntent was canceled ({reason})")),
                    ..ev(FinalStatus::Failed, Some(op), None)
                });
            }
            events
        }
        "charge.refunded" => object["refunds"]["data"]
            .as_array()
            .map(|refunds| refunds.iter().filter_map(refund_event).collect())
            .unwrap_or_default(),
        "charge.refund.updated" | "refund.updated" | "refund.created" | "refund.failed" => {
            refund_event(object).into_iter().collect()
        }
        _ => Vec::new(),
    }
}

/// A final Refund as a PSP event keyed by its id; `None` while it is pending.
fn refund_event(refund: &Value) -> Option<PspEvent> {
    let id = refund["id"].as_str().filter(|id| id.starts_with("re_"))?;
    let (status, code) = match refund["status"].as_str()? {
        "succeeded" => (FinalStatus::Succeeded, None),
        status @ ("failed" | "canceled") => (
            FinalStatus::Failed,
            Some(
                refund["failure_reason"]
                    .as_str()
                    .map(|r| format!("refund_{r}"))
                    .unwrap_or_else(|| format!("refund_{status}")),
            ),
        ),
        _ => return None,
    };
    let currency = refund["currency"]
        .as_str()
        .unwrap_or_default()
        .to_uppercase();
    Some(PspEvent {
        psp_reference: id.to_owned(),
        transaction_token: None,
        status,
        kind: Some(EventKind::Refunded),
        message: code
            .as_ref()
            .map(|_| "Stripe reports the refund failed".to_owned()),
        code,
        amount: refund["amount"]
            .as_u64()
            .filter(|_| !currency.is_empty())
            .map(|cents| Money::new(cents, currency)),
    })
}
