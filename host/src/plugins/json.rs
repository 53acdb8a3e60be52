//! JSON views of plugin answers, for the diagnostics route and logs-free debugging.
//! (Protocol fronts shape their own answers; this is the host's neutral form.)

use serde_json::{Value, json};

use super::types::{
    Failure, Outcome, Pair, PspEvent, RedirectMethod, ShopperAction, Tokenized, WebhookReply,
};
use super::{CallError, GatewayCallError};

fn pairs(p: &[Pair]) -> Value {
    Value::Object(
        p.iter()
            .map(|kv| (kv.key.clone(), Value::String(kv.value.clone())))
            .collect(),
    )
}

pub fn outcome(o: &Outcome) -> Value {
    match o {
        Outcome::Approved(a) => json!({
            "result": "approved", "transaction_token": a.transaction_token,
            "psp_reference": a.psp_reference, "amount_cents": a.amount_cents, "messages": a.messages, "metadata": pairs(&a.metadata),
        }),
        Outcome::Pending(p) => json!({
            "result": "pending", "transaction_token": p.transaction_token,
            "amount_cents": p.amount_cents, "psp_reference": p.psp_reference,
            "metadata": pairs(&p.metadata),
        }),
        Outcome::Declined(d) => json!({
            "result": "declined", "code": d.code, "message": d.message,
            "transaction_token": d.transaction_token, "psp_reference": d.psp_reference,
        }),
        Outcome::ActionRequired(r) => json!({
            "result": "action_required", "transaction_token": r.transaction_token,
            "amount_cents": r.amount_cents, "psp_reference": r.psp_reference,
            "action": action(&r.action), "metadata": pairs(&r.metadata),
        }),
    }
}

/// What the shopper must do, in the host's neutral form.
pub fn action(a: &ShopperAction) -> Value {
    match a {
        ShopperAction::Redirect(r) => json!({
            "type": "redirect", "url": r.url,
            "method": match r.method { RedirectMethod::Get => "GET", RedirectMethod::Post => "POST" },
            "form_fields": pairs(&r.form_fields),
        }),
        ShopperAction::Sdk(s) => json!({
            "type": "sdk", "kind": s.kind,
            // The PSP's JSON as JSON where it parses, else as the text it is.
            "data": serde_json::from_str::<Value>(&s.data_json).unwrap_or_else(|_| Value::String(s.data_json.clone())),
        }),
    }
}

/// The failure's kind (snake case) and message.
pub fn failure_parts(f: &Failure) -> (&'static str, &str) {
    match f {
        Failure::Unsupported(m) => ("unsupported", m),
        Failure::Unreachable(m) => ("unreachable", m),
        Failure::Timeout(m) => ("timeout", m),
        Failure::Misconfigured(m) => ("misconfigured", m),
        Failure::BadResponse(m) => ("bad_response", m),
        Failure::InvalidRequest(m) => ("invalid_request", m),
        Failure::Unauthenticated(m) => ("unauthenticated", m),
        Failure::Internal(m) => ("internal", m),
    }
}

pub fn failure(f: &Failure) -> Value {
    let (kind, message) = failure_parts(f);
    json!({ "result": "failure", "kind": kind, "message": message })
}

pub fn tokenized(t: &Tokenized) -> Value {
    json!({
        "result": "tokenized", "customer_token": t.customer_token,
        "payment_source_token": t.payment_source_token,
    })
}

/// An event as logged: the PSP reference is shortened (it can be a reusable token).
pub fn event(e: &PspEvent) -> Value {
    json!({
        "psp_reference": crate::redact::token(&e.psp_reference),
        "status": match e.status { super::types::FinalStatus::Succeeded => "succeeded", super::types::FinalStatus::Failed => "failed" },
        "kind": e.kind.map(super::bindings::event_kind_name),
        "transaction_token": e.transaction_token.as_deref().map(crate::redact::token),
        "code": e.code, "message": e.message,
        "amount_cents": e.amount.as_ref().map(|m| m.amount_cents),
        "currency": e.amount.as_ref().map(|m| m.currency.as_str()),
    })
}

pub fn webhook(w: &WebhookReply) -> Value {
    json!({
        "result": "webhook", "status": w.status,
        "events": w.events.iter().map(event).collect::<Vec<_>>(),
    })
}

/// The kind of a host-side call error (snake case).
pub fn call_error_kind(e: &GatewayCallError) -> &'static str {
    match e {
        GatewayCallError::UnknownGateway(_) => "unknown_gateway",
        GatewayCallError::Call(CallError::NotLoaded(_)) => "plugin_not_loaded",
        GatewayCallError::Call(CallError::Deadline(_)) => "deadline",
        GatewayCallError::Call(CallError::OutOfMemory(_)) => "out_of_memory",
        GatewayCallError::Call(CallError::Trap(_)) => "trap",
        GatewayCallError::Call(CallError::Instantiate(_)) => "instantiate",
    }
}
