//! Pure mapping of Stripe's objects (PaymentIntents, Refunds) to outcomes, and the
//! helpers that name and redact Stripe ids.

use psp_plugin_sdk::types::*;
use serde_json::Value;

/// Maps a PaymentIntent to the outcome of `op` (see the table in README.md).
pub fn intent_outcome(pi: &Value, op: Operation, requested: u64) -> Result<Outcome, Failure> {
    let id = id_of(pi, "payment intent")?;
    let status = pi["status"]
        .as_str()
        .ok_or_else(|| Failure::BadResponse("the PaymentIntent has no status".into()))?;
    let amount = pi["amount"].as_u64().unwrap_or(requested);
    let pending = || Outcome::pending(id.clone(), amount, id.clone());
    let declined = |code: String, message: String| {
        Outcome::Declined(Declined {
            code,
            message,
            transaction_token: Some(id.clone()),
            psp_reference: Some(id.clone()),
        })
    };
    let failed = || {
        let (code, message) = last_error(pi);
        declined(
            code.unwrap_or_else(|| "payment_failed".into()),
            message.unwrap_or_else(|| "Stripe could not complete the payment".into()),
        )
    };
    let canceled = || {
        let reason = pi["cancellation_reason"].as_str().unwrap_or("canceled");
        declined(
            "payment_intent_canceled".into(),
            format!("the PaymentIntent is canceled ({reason})"),
        )
    };
    let unexpected = || {
        Err(Failure::BadResponse(format!(
            "unexpected PaymentIntent status `{status}` for {}",
            op_name(op)
        )))
    };
    let outcome = match (op, status) {
        (Operation::Void, "canceled") => Outcome::approved(id.clone(), requested),
        (Operation::Void, _) => declined(
            "payment_intent_not_canceled".into(),
            format!("the PaymentIntent is {status}, not canceled"),
        ),
        (_, "canceled") => canceled(),
        (Operation::Authorize, "requires_capture") => Outcome::approved(
            id.clone(),
            pi["amount_capturable"]
                .as_u64()
                .filter(|a| *a > 0)
                .unwrap_or(amount),
        ),
        (Operation::Authorize | Operation::Sale, "succeeded") => Outcome::approved(
            id.clone(),
            pi["amount_received"]
                .as_u64()
                .filter(|a| *a > 0)
                .unwrap_or(amount),
        ),
        (Operation::Capture, "succeeded") => Outcome::approved(
            id.clone(),
            pi["amount_received"]
                .as_u64()
                .filter(|a| *a > 0)
                .unwrap_or(requested),
        ),
        // The shopper must authenticate (3-D Secure): how is in `next_action`.
        (Operation::Authorize | Operation::Sale, "requires_action") => match shopper_action(pi) {
            Some(action) => Outcome::action_required(id.clone(), id.clone(), amount, action),
            None => pending(),
        },
        (
            Operation::Authorize | Operation::Sale | Operation::Capture,
            "processing" | "requires_action" | "requires_confirmation",
        ) => pending(),
        // A sale that stopped at an authorization (it should not), or a capture still on its
        // way: not final either way.
        (Operation::Sale | Operation::Capture, "requires_capture") => pending(),
        (
            Operation::Authorize | Operation::Sale | Operation::Capture,
            "requires_payment_method",
        ) => failed(),
        _ => return unexpected(),
    };
    Ok(outcome)
}

/// What the shopper must do for a PaymentIntent in `requires_action`: follow Stripe's
/// `redirect_to_url`, or let Stripe.js handle the `next_action` (it needs the
/// PaymentIntent's client secret, which is meant for the shopper's browser).
pub fn shopper_action(pi: &Value) -> Option<ShopperAction> {
    let next = pi.get("next_action").filter(|n| n.is_object())?;
    let kind = next["type"].as_str().unwrap_or("use_stripe_sdk");
    if kind == "redirect_to_url"
        && let Some(url) = next["redirect_to_url"]["url"]
            .as_str()
            .filter(|u| !u.is_empty())
    {
        return Some(ShopperAction::redirect(url));
    }
    let data = serde_json::json!({
        "payment_intent": pi["id"],
        "client_secret": pi["client_secret"],
        "next_action": next,
    });
    Some(ShopperAction::sdk(kind, data.to_string()))
}

/// Maps a Refund: succeeded -> approved, pending -> pending, failed/canceled -> declined.
pub fn refund_outcome(refund: &Value, requested: u64) -> Result<Outcome, Failure> {
    let id = id_of(refund, "refund")?;
    let amount = refund["amount"].as_u64().unwrap_or(requested);
    match refund["status"].as_str() {
        Some("succeeded") => Ok(Outcome::approved(id, amount)),
        Some("pending" | "requires_action") => Ok(Outcome::pending(id.clone(), amount, id)),
        Some(status @ ("failed" | "canceled")) => Ok(Outcome::Declined(Declined {
            code: refund["failure_reason"]
                .as_str()
                .map(|r| format!("refund_{r}"))
                .unwrap_or_else(|| format!("refund_{status}")),
            message: format!("Stripe reports the refund {status}"),
            psp_reference: Some(id.clone()),
            transaction_token: Some(id),
        })),
        other => Err(Failure::BadResponse(format!(
            "unexpected Refund status {}",
            other.unwrap_or("(none)")
        ))),
    }
}

/// `last_payment_error`'s decline code (or code) and message.
pub(crate) fn last_error(pi: &Value) -> (Option<String>, Option<String>) {
    let error = &pi["last_payment_error"];
    let text = |f: &str| {
        error[f]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    (
        text("decline_code").or_else(|| text("code")),
        text("message"),
    )
}

pub(crate) fn id_of(object: &Value, what: &str) -> Result<String, Failure> {
    object["id"]
        .as_str()
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| Failure::BadResponse(format!("Stripe answered a {what} without an id")))
}

/// An expandable field: the id, or the expanded object's id.
pub(crate) fn id_or_object(value: &Value) -> Option<String> {
    match value {
        Value::String(id) if !id.is_empty() => Some(id.clone()),
        Value::Object(_) => value["id"].as_str().map(str::to_owned),
        _ => None,
    }
}

pub(crate) fn op_name(op: Operation) -> &'static str {
    match op {
        Operation::Authorize => "authorize",
        Operation::Capture => "capture",
        Operation::Void => "void",
        Operation::Refund => "refund",
        Operation::Tokenize => "tokenize",
        Operation::Sale => "sale",
        Operation::Sync => "sync",
        Operation::HandleWebhook => "handle-webhook",
        Operation::Complete => "complete",
    }
}

/// A log-safe summary of an outcome.
pub(crate) fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Approved(a) => format!("approved {}", redact(&a.transaction_token)),
        Outcome::Pending(p) => format!("pending {}", redact(&p.transaction_token)),
        Outcome::Declined(d) => format!("declined ({})", d.code),
        Outcome::ActionRequired(r) => format!("action required {}", redact(&r.transaction_token)),
    }
}

/// `pi_3Nx...Kq9` -> `pi_…Kq9`: enough to correlate, never a whole token.
pub fn redact(id: &str) -> String {
    let prefix = id.find('_').map_or("", |i| &id[..=i]);
    let tail: String = id
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    if id.len() <= prefix.len() + 8 {
        format!("{prefix}…")
    } else {
        format!("{prefix}…{tail}")
    }
}
