//! The pure part of the engine: the plugin call built from a request and the stored
//! transactions, and a plugin's reply mapped to the result a front renders and the state
//! the store records. No I/O here, so every mapping is unit-testable.

use super::*;
use crate::plugins::Call;
use crate::plugins::types::{
    AuthorizeRequest, Failure, FollowUpRequest, Money, Operation, Outcome, Pair, TokenizeRequest,
};

pub(super) fn operation_of(action: Action) -> Option<Operation> {
    Some(match action {
        Action::Authorize => Operation::Authorize,
        Action::Capture => Operation::Capture,
        Action::Void => Operation::Void,
        Action::Refund => Operation::Refund,
        Action::Sale => Operation::Sale,
        Action::Token => return None,
    })
}

pub(super) fn build_call(
    txn: &Transaction,
    parent: Option<&Transaction>,
    req: &PaymentRequest,
) -> Call {
    let amount = Money {
        amount_cents: req.amount_cents,
        currency: req.currency.clone(),
    };
    let authorize = || AuthorizeRequest {
        idempotency_key: txn.idempotency_key.clone(),
        amount: amount.clone(),
        payment_source_token: req.payment_source_token.clone().unwrap_or_default(),
        customer_token: req.customer_token.clone(),
        reference: req.resource_id.clone(),
        order: req.order.clone(),
        options_json: req.options_json.clone(),
    };
    let follow_up = || {
        let parent = parent.expect("follow-ups have a parent");
        FollowUpRequest {
            idempotency_key: txn.idempotency_key.clone(),
            amount: amount.clone(),
            transaction_token: parent
                .psp_token
                .clone()
                .unwrap_or_else(|| parent.transaction_token.clone()),
            psp_reference: parent.psp_reference.clone(),
            reference: req.resource_id.clone(),
            order: req.order.clone(),
        }
    };
    match req.action {
        Action::Authorize => Call::Authorize(authorize()),
        Action::Sale => Call::Sale(authorize()),
        Action::Capture => Call::Capture(follow_up()),
        Action::Void => Call::Void(follow_up()),
        Action::Refund => Call::Refund(follow_up()),
        Action::Token => Call::Tokenize(TokenizeRequest {
            idempotency_key: txn.idempotency_key.clone(),
            payment_source_token: req.payment_source_token.clone().unwrap_or_default(),
            customer_token: req.customer_token.clone(),
            customer_email: req.customer_email.clone(),
            reference: req.resource_id.clone(),
            order: req.order.clone(),
        }),
    }
}

pub(super) fn pairs(p: Vec<Pair>) -> Vec<(String, String)> {
    p.into_iter().map(|kv| (kv.key, kv.value)).collect()
}

/// Turns a plugin reply into the result to render and the state to store. `deferred`
/// carries the action id already answered when the call outlived `async_after_ms`: the
/// token answered then (the host's) stays.
pub(super) fn settle(
    txn: &Transaction,
    reply: Result<Reply, GatewayCallError>,
    deferred: Option<String>,
) -> (PaymentResult, Completion) {
    let mut c = Completion {
        status: Status::Failed,
        transaction_token: None,
        psp_token: None,
        psp_reference: None,
        action_id: None,
        error_code: None,
        error_message: None,
        response: None,
    };
    let keep_host_token = deferred.is_some();
    let failed = |kind: FailureKind, message: String, mut c: Completion| {
        c.status = Status::Failed;
        c.error_code = Some(kind.code().into());
        c.error_message = Some(message.clone());
        (PaymentResult::Failed { kind, message }, c)
    };
    match reply {
        Ok(Reply::Outcome(Ok(Outcome::Approved(a)))) => {
            c.status = Status::Approved;
            c.psp_token = Some(a.transaction_token.clone());
            if !keep_host_token {
                c.transaction_token = Some(a.transaction_token.clone());
            }
            let token = if keep_host_token {
                txn.transaction_token.clone()
            } else {
                a.transaction_token
            };
            (
                PaymentResult::Approved {
                    transaction_token: token,
                    amount_cents: a.amount_cents,
                    messages: a.messages,
                    metadata: pairs(a.metadata),
                },
                c,
            )
        }
        Ok(Reply::Outcome(Ok(Outcome::Pending(p)))) => {
            c.status = Status::Pending;
            c.psp_token = Some(p.transaction_token.clone());
            c.psp_reference = Some(p.psp_reference);
            if !keep_host_token {
                c.transaction_token = Some(p.transaction_token.clone());
            }
            let action_id = deferred.unwrap_or_else(|| new_id("act"));
            c.action_id = Some(action_id.clone());
            let token = if keep_host_token {
                txn.transaction_token.clone()
            } else {
                p.transaction_token
            };
            (
                PaymentResult::Pending {
                    transaction_token: token,
                    amount_cents: p.amount_cents,
                    action_id,
                    metadata: pairs(p.metadata),
                },
                c,
            )
        }
        Ok(Reply::Outcome(Ok(Outcome::Declined(d)))) => {
            c.status = Status::Declined;
            c.psp_token = d.transaction_token.clone();
            if !keep_host_token {
                c.transaction_token = d.transaction_token.clone();
            }
            c.error_code = Some(d.code.clone());
            c.error_message = Some(d.message.clone());
            (
                PaymentResult::Declined {
                    // Without a PSP token the host's own names the attempt, so a front can
                    // still refer to it (PGM's paymentId, CL's transaction token).
                    transaction_token: Some(
                        d.transaction_token
                            .unwrap_or_else(|| txn.transaction_token.clone()),
                    ),
                    amount_cents: txn.amount_cents as u64,
                    code: d.code,
                    message: d.message,
                },
                c,
            )
        }
        Ok(Reply::Tokenized(Ok(t))) => {
            c.status = Status::Approved;
            c.transaction_token = Some(t.payment_source_token.clone());
            c.psp_token = Some(t.payment_source_token.clone());
            (
                PaymentResult::Tokenized {
                    customer_token: t.customer_token,
                    payment_source_token: t.payment_source_token,
                },
                c,
            )
        }
        Ok(Reply::Outcome(Err(f)) | Reply::Tokenized(Err(f)) | Reply::Webhook(Err(f))) => {
            let (kind, message) = match f {
                Failure::Unsupported(m) => (FailureKind::Unsupported, m),
                Failure::Timeout(m) => (FailureKind::Timeout, m),
                Failure::InvalidRequest(m) => {
                    c.status = Status::Declined;
                    c.error_code = Some("invalid_request".into());
                    c.error_message = Some(m.clone());
                    return (
                        PaymentResult::Refused {
                            code: RefusalCode::InvalidRequest,
                            message: m,
                        },
                        c,
                    );
                }
                Failure::Unreachable(m)
                | Failure::Misconfigured(m)
                | Failure::BadResponse(m)
                | Failure::Unauthenticated(m)
                | Failure::Internal(m) => (FailureKind::Unavailable, m),
            };
            failed(kind, message, c)
        }
        Ok(other) => failed(
            FailureKind::Unavailable,
            format!("plugin answered the wrong kind of reply: {other:?}"),
            c,
        ),
        Err(GatewayCallError::Call(CallError::Deadline(ms))) => failed(
            FailureKind::Timeout,
            format!("the PSP did not answer within {ms} ms"),
            c,
        ),
        Err(e) => failed(FailureKind::Unavailable, e.to_string(), c),
    }
}

pub(super) fn log_result(txn: &Transaction, result: &PaymentResult) {
    let outcome = match result {
        PaymentResult::Approved { .. } => "approved",
        PaymentResult::Pending { .. } => "pending",
        PaymentResult::Declined { .. } => "declined",
        PaymentResult::Tokenized { .. } => "tokenized",
        PaymentResult::Refused { code, .. } => code.as_str(),
        PaymentResult::Failed { kind, .. } => kind.code(),
    };
    tracing::info!(gateway = %txn.gateway, action = txn.action.as_str(), txn = %txn.id, amount_cents = txn.amount_cents, currency = %txn.currency, outcome, "payment operation");
}
