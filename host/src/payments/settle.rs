//! The pure part of the engine: the plugin call built from a request and the stored
//! transactions, and a plugin's reply mapped to the result a front renders and the state
//! the store records. No I/O here, so every mapping is unit-testable.

use super::*;
use crate::config::ReconcilerConfig;
use crate::plugins::types::{
    AuthorizeRequest, CaptureRequest, Failure, FollowUpRequest, Money, Operation, Outcome, Pair,
    Pending, ShopperAction, TokenizeRequest,
};

/// A capture's place among its authorization's captures (`capture-request`'s fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct CapturePlace {
    pub sequence: u32,
    pub final_capture: bool,
}

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

/// The plugin call for a request, under its idempotency key.
pub(super) fn build_call(
    key: &str,
    parent: Option<&Transaction>,
    req: &PaymentRequest,
    place: Option<CapturePlace>,
) -> Call {
    let amount = Money {
        amount_cents: req.amount_cents,
        currency: req.currency.clone(),
    };
    let authorize = || AuthorizeRequest {
        idempotency_key: key.to_owned(),
        amount: amount.clone(),
        payment_source_token: req.payment_source_token.clone().unwrap_or_default(),
        customer_token: req.customer_token.clone(),
        reference: req.resource_id.clone(),
        order: req.order.clone(),
        options_json: req.options_json.clone(),
        shopper: req.shopper.clone(),
    };
    let follow_up = || {
        let parent = parent.expect("follow-ups have a parent");
        FollowUpRequest {
            idempotency_key: key.to_owned(),
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
        Action::Capture => {
            let place = place.unwrap_or(CapturePlace {
                sequence: 0,
                final_capture: false,
            });
            Call::Capture(CaptureRequest::of(
                follow_up(),
                place.final_capture,
                place.sequence,
            ))
        }
        Action::Void => Call::Void(follow_up()),
        Action::Refund => Call::Refund(follow_up()),
        Action::Token => Call::Tokenize(TokenizeRequest {
            idempotency_key: key.to_owned(),
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

/// A plugin reply mapped: what the front renders and what the store records.
#[derive(Debug)]
pub(super) struct Settled {
    pub result: PaymentResult,
    pub completion: Completion,
}

/// Why a failed call's outcome is unknown, or `None` when the failure is definite. The
/// host's deadline leaves it unknown whatever happened; other failures do only when a
/// request may have reached the PSP (`contact`) and the failure says nothing about what
/// the PSP did (a timeout, a broken connection or answer, a trap mid-call). A refusal the
/// PSP answered (invalid request, bad credentials, unsupported) is definite.
pub(super) fn unknown_reason(
    reply: &Result<Reply, GatewayCallError>,
    contact: bool,
) -> Option<String> {
    match reply {
        Err(GatewayCallError::Call(CallError::Deadline(ms))) => {
            Some(format!("no answer within the {ms} ms deadline"))
        }
        Err(GatewayCallError::Call(CallError::Trap(m))) if contact => {
            Some(format!("the plugin failed after calling the PSP: {m}"))
        }
        Err(GatewayCallError::Call(CallError::OutOfMemory(_))) if contact => {
            Some("the plugin ran out of memory after calling the PSP".into())
        }
        Ok(Reply::Outcome(Err(f)) | Reply::Tokenized(Err(f))) if contact => match f {
            Failure::Timeout(m)
            | Failure::Unreachable(m)
            | Failure::BadResponse(m)
            | Failure::Internal(m) => Some(m.clone()),
            Failure::Unsupported(_)
            | Failure::InvalidRequest(_)
            | Failure::Misconfigured(_)
            | Failure::Unauthenticated(_) => None,
        },
        _ => None,
    }
}

/// An unknown outcome as answered to the platform: pending, under the host's token.
pub(super) fn unknown_result(txn: &Transaction, action_id: String) -> PaymentResult {
    PaymentResult::Pending {
        transaction_token: txn.transaction_token.clone(),
        amount_cents: txn.amount_cents as u64,
        action_id,
        metadata: vec![("outcome".into(), "unknown".into())],
        action: None,
    }
}

/// Delay before check number `checks + 1` of a pending or unknown row: doubling from
/// `first_retry_ms`, capped at `max_retry_ms`.
pub(super) fn check_backoff_ms(config: &ReconcilerConfig, checks: i64) -> u64 {
    let exp = checks.clamp(0, 30) as u32;
    config
        .first_retry_ms
        .saturating_mul(1u64 << exp)
        .min(config.max_retry_ms)
}

/// Turns a plugin reply into the result to render and the state to store. `deferred`
/// carries the action id already answered (a 202 for a slow call, or for an unknown
/// outcome): the token answered then (the host's) stays. `contact` says whether the call's
/// requests may have reached the PSP.
pub(super) fn settle(
    txn: &Transaction,
    reply: Result<Reply, GatewayCallError>,
    contact: bool,
    deferred: Option<String>,
    checks: &ReconcilerConfig,
) -> Settled {
    let now = now_ms();
    // Tokenizing moves no money, and its retry carries the same key: a plain failure.
    if txn.action != Action::Token
        && let Some(reason) = unknown_reason(&reply, contact)
    {
        let action_id = deferred.unwrap_or_else(|| new_id("act"));
        let completion = Completion {
            action_id: Some(action_id.clone()),
            error_code: Some("outcome_unknown".into()),
            error_message: Some(reason),
            next_check_at: Some(now + checks.first_retry_ms as i64),
            ..Completion::status(Status::Unknown)
        };
        return Settled {
            result: unknown_result(txn, action_id),
            completion,
        };
    }
    let pending_check = (checks.after_ms > 0).then(|| now + checks.after_ms as i64);
    let (result, completion) = map_reply(txn, reply, deferred, pending_check);
    Settled { result, completion }
}

/// A reply that is an outcome (approved, pending, declined, tokenized) settles an unknown
/// row; anything else leaves it unknown. The platform was answered (a 202) if the row
/// has an answer: then its token and action id stay.
pub(super) fn recovered(
    txn: &Transaction,
    reply: Result<Reply, GatewayCallError>,
    checks: &ReconcilerConfig,
) -> Option<Settled> {
    if !matches!(reply, Ok(Reply::Outcome(Ok(_)) | Reply::Tokenized(Ok(_)))) {
        return None;
    }
    let deferred = txn.response.as_ref().and(txn.action_id.clone());
    Some(settle(txn, reply, true, deferred, checks))
}

/// The callback-worthy outcome of a result: approved, declined, or failed without
/// reaching the PSP. Pending (and unknown, rendered as pending) has none yet.
pub(super) fn final_outcome(result: &PaymentResult) -> Option<FinalOutcome> {
    match result {
        PaymentResult::Approved { .. } => Some(FinalOutcome {
            succeeded: true,
            message: "approved by the PSP".into(),
            error_code: None,
            error_detail: None,
        }),
        PaymentResult::Declined { code, message, .. } => Some(FinalOutcome {
            succeeded: false,
            message: message.clone(),
            error_code: Some(code.clone()),
            error_detail: Some(message.clone()),
        }),
        PaymentResult::Failed { kind, message } => Some(FinalOutcome {
            succeeded: false,
            message: message.clone(),
            error_code: Some(kind.code().into()),
            error_detail: Some(message.clone()),
        }),
        PaymentResult::Pending { .. }
        | PaymentResult::Tokenized { .. }
        | PaymentResult::Refused { .. } => None,
    }
}

/// The mapping of replies whose meaning is known.
fn map_reply(
    txn: &Transaction,
    reply: Result<Reply, GatewayCallError>,
    deferred: Option<String>,
    pending_check: Option<i64>,
) -> (PaymentResult, Completion) {
    let mut c = Completion::status(Status::Failed);
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
            c.psp_reference = Some(a.psp_reference);
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
            pending(txn, c, p, None, keep_host_token, deferred, pending_check)
        }
        // Pending at the PSP until the shopper acts; settled like any pending transaction
        // (a notification, `sync`, or `complete` on the shopper's return).
        Ok(Reply::Outcome(Ok(Outcome::ActionRequired(r)))) => {
            let p = Pending {
                transaction_token: r.transaction_token,
                amount_cents: r.amount_cents,
                psp_reference: r.psp_reference,
                metadata: r.metadata,
            };
            let action = Some(r.action);
            pending(txn, c, p, action, keep_host_token, deferred, pending_check)
        }
        Ok(Reply::Outcome(Ok(Outcome::Declined(d)))) => {
            c.status = Status::Declined;
            c.psp_token = d.transaction_token.clone();
            c.psp_reference = d.psp_reference.clone();
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

/// A pending answer (or one waiting for the shopper's `action`) mapped: pending under the
/// PSP's reference, with an action id for the callback and its first check scheduled.
fn pending(
    txn: &Transaction,
    mut c: Completion,
    p: Pending,
    action: Option<ShopperAction>,
    keep_host_token: bool,
    deferred: Option<String>,
    pending_check: Option<i64>,
) -> (PaymentResult, Completion) {
    c.status = Status::Pending;
    c.next_check_at = pending_check;
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
            action,
        },
        c,
    )
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::types::Approved;

    fn txn(action: Action) -> Transaction {
        Transaction {
            id: "txn_1".into(),
            gateway: "gw".into(),
            front: "commerce_layer".into(),
            action,
            idempotency_key: "gw:authorize:k".into(),
            resource_id: "r".into(),
            parent_id: None,
            transaction_token: "pgw_1".into(),
            psp_token: None,
            psp_reference: None,
            action_id: None,
            amount_cents: 1_000,
            currency: "EUR".into(),
            status: Status::Processing,
            error_code: None,
            error_message: None,
            response: None,
            created_at: 0,
            updated_at: 0,
            next_check_at: None,
            checks: 0,
            escalated_at: None,
            replay: Some("{}".into()),
            shopper_return: None,
        }
    }

    fn failure(f: Failure) -> Result<Reply, GatewayCallError> {
        Ok(Reply::Outcome(Err(f)))
    }

    fn deadline() -> Result<Reply, GatewayCallError> {
        Err(GatewayCallError::Call(CallError::Deadline(1_000)))
    }

    #[test]
    fn a_failure_is_unknown_only_when_the_psp_may_have_acted() {
        assert!(
            unknown_reason(&deadline(), false).is_some(),
            "a deadline, always"
        );
        let lost = || failure(Failure::Unreachable("connection reset".into()));
        assert!(unknown_reason(&lost(), true).is_some());
        assert!(
            unknown_reason(&lost(), false).is_none(),
            "nothing left the host"
        );
        assert!(unknown_reason(&failure(Failure::Timeout("t".into())), true).is_some());
        assert!(unknown_reason(&failure(Failure::BadResponse("b".into())), true).is_some());
        for definite in [
            Failure::InvalidRequest("400".into()),
            Failure::Unauthenticated("401".into()),
            Failure::Misconfigured("m".into()),
            Failure::Unsupported("u".into()),
        ] {
            assert!(unknown_reason(&failure(definite), true).is_none());
        }
        let trap = Err(GatewayCallError::Call(CallError::Trap("boom".into())));
        assert!(unknown_reason(&trap, true).is_some());
        assert!(unknown_reason(&trap, false).is_none());
    }

    #[test]
    fn an_unknown_outcome_is_answered_pending_never_failed() {
        let config = ReconcilerConfig::default();
        let settled = settle(&txn(Action::Authorize), deadline(), true, None, &config);
        assert_eq!(settled.completion.status, Status::Unknown);
        assert!(settled.completion.next_check_at.is_some());
        let PaymentResult::Pending {
            transaction_token,
            action_id,
            ..
        } = &settled.result
        else {
            panic!("{:?}", settled.result);
        };
        assert_eq!(transaction_token, "pgw_1");
        assert_eq!(settled.completion.action_id.as_ref(), Some(action_id));
        assert!(final_outcome(&settled.result).is_none(), "no callback yet");
        // After a 202 the action id answered then stays.
        let deferred = settle(
            &txn(Action::Capture),
            deadline(),
            true,
            Some("act_9".into()),
            &config,
        );
        assert_eq!(deferred.completion.action_id.as_deref(), Some("act_9"));
        // Tokenizing moves no money: a plain failure, retried under the same key.
        let token = settle(&txn(Action::Token), deadline(), true, None, &config);
        assert_eq!(token.completion.status, Status::Failed);
        // Not reached: definitely failed, reportable.
        let down = settle(
            &txn(Action::Authorize),
            failure(Failure::Unreachable("refused".into())),
            false,
            None,
            &config,
        );
        assert_eq!(down.completion.status, Status::Failed);
        assert!(final_outcome(&down.result).is_some_and(|o| !o.succeeded));
    }

    #[test]
    fn only_a_real_outcome_resolves_an_unknown_one() {
        let config = ReconcilerConfig::default();
        let mut unknown = txn(Action::Authorize);
        unknown.status = Status::Unknown;
        assert!(recovered(&unknown, deadline(), &config).is_none());
        let in_use = failure(Failure::InvalidRequest("idempotency key in use".into()));
        assert!(recovered(&unknown, in_use, &config).is_none());
        let approved = || {
            Ok(Reply::Outcome(Ok(Outcome::Approved(Approved {
                transaction_token: "pi_1".into(),
                psp_reference: "ch_1".into(),
                amount_cents: 1_000,
                messages: vec![],
                metadata: vec![],
            }))))
        };
        // Never answered: the PSP's token becomes the answer.
        let fresh = recovered(&unknown, approved(), &config).unwrap();
        assert_eq!(fresh.completion.status, Status::Approved);
        // The PSP's own id is kept apart from the token.
        assert_eq!(fresh.completion.psp_reference.as_deref(), Some("ch_1"));
        assert_eq!(fresh.completion.transaction_token.as_deref(), Some("pi_1"));
        // Answered 202 already: the host's token and the action id stay.
        unknown.response = Some(StoredAnswer {
            status: 202,
            body: "{}".into(),
        });
        unknown.action_id = Some("act_1".into());
        let answered = recovered(&unknown, approved(), &config).unwrap();
        assert_eq!(answered.completion.transaction_token, None);
        assert_eq!(answered.completion.psp_token.as_deref(), Some("pi_1"));
        assert!(final_outcome(&answered.result).is_some_and(|o| o.succeeded));
    }

    #[test]
    fn checks_back_off_and_cap() {
        let config = ReconcilerConfig {
            first_retry_ms: 1_000,
            max_retry_ms: 60_000,
            ..ReconcilerConfig::default()
        };
        assert_eq!(check_backoff_ms(&config, 0), 1_000);
        assert_eq!(check_backoff_ms(&config, 3), 8_000);
        assert_eq!(check_backoff_ms(&config, 40), 60_000);
    }

    #[test]
    fn action_required_is_pending_under_the_psp_reference_with_the_action_kept() {
        use crate::plugins::types::{ActionRequired, Redirect, RedirectMethod, ShopperAction};
        let action = ShopperAction::Redirect(Redirect {
            url: "https://psp.example/3ds".into(),
            method: RedirectMethod::Get,
            form_fields: vec![],
        });
        let reply = Ok(Reply::Outcome(Ok(Outcome::ActionRequired(
            ActionRequired {
                transaction_token: "pi_3ds".into(),
                psp_reference: "pi_3ds_ref".into(),
                amount_cents: 1_000,
                action: action.clone(),
                metadata: vec![],
            },
        ))));
        let settled = settle(
            &txn(Action::Authorize),
            reply,
            true,
            None,
            &ReconcilerConfig::default(),
        );
        assert_eq!(settled.completion.status, Status::Pending);
        assert_eq!(
            settled.completion.psp_reference.as_deref(),
            Some("pi_3ds_ref")
        );
        assert!(
            settled.completion.next_check_at.is_some(),
            "recovery checks it"
        );
        let PaymentResult::Pending {
            transaction_token,
            action: Some(kept),
            ..
        } = settled.result
        else {
            panic!("{:?}", settled.result)
        };
        assert_eq!(transaction_token, "pi_3ds");
        assert_eq!(kept, action);
    }

    #[test]
    fn a_capture_carries_its_place_among_the_captures() {
        let mut auth = txn(Action::Authorize);
        auth.psp_token = Some("pi_1".into());
        auth.psp_reference = Some("ch_1".into());
        let req = PaymentRequest {
            gateway: "gw".into(),
            action: Action::Capture,
            natural_key: "cap".into(),
            resource_id: "cap_2".into(),
            amount_cents: 400,
            currency: "EUR".into(),
            payment_source_token: None,
            parent_token: Some("pi_1".into()),
            customer_token: None,
            customer_email: None,
            order: None,
            options_json: None,
            shopper: None,
        };
        let place = CapturePlace {
            sequence: 2,
            final_capture: true,
        };
        let Call::Capture(c) = build_call("k", Some(&auth), &req, Some(place)) else {
            panic!()
        };
        assert_eq!((c.sequence, c.final_capture), (2, true));
        assert_eq!(c.transaction_token, "pi_1");
        assert_eq!(c.psp_reference.as_deref(), Some("ch_1"));
        assert_eq!(c.amount.amount_cents, 400);
    }
}
