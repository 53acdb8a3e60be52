//! `trigger` on the Commerce Layer front: authorize (or the customer token call) with a
//! fresh order, and for capture, void and refund the authorize first, then the action on
//! the transaction it answered, with the documents Commerce Layer would send.

use super::{Session, TriggerAction, TriggerError, TriggerOptions, check};
use crate::cl::{
    Action, Authorization, Capture, ClClient, ExternalPayment, Order, Response, authorize_body,
    capture_body, refund_body, token_body, void_body,
};

pub(super) async fn run(
    options: &TriggerOptions,
    session: &mut Session<'_>,
) -> Result<(), TriggerError> {
    let secret = options.secret.as_deref().ok_or(TriggerError::NoSecret)?;
    let client = ClClient::new(&session.base, &options.gateway, secret);
    let order = match options.amount_cents {
        Some(cents) => Order::for_amount(&options.currency, cents),
        None => Order::sample().with_currency(&options.currency),
    };
    let payment = ExternalPayment::new(&order, &options.card_token);
    let note = format!(
        "order {}, payment source token {}, {} {} cents",
        order.number,
        options.card_token,
        order.total_amount_with_taxes_cents(),
        order.currency_code
    );
    let gateway = options.gateway.as_str();

    let action = match options.action {
        TriggerAction::Token => {
            let (resp, _) = call(
                session,
                &client,
                Action::Token,
                &token_body(&payment),
                &note,
            )
            .await?;
            return check("token", resp.status, gateway);
        }
        TriggerAction::Authorize => None,
        TriggerAction::Capture => Some(Action::Capture),
        TriggerAction::Void => Some(Action::Void),
        TriggerAction::Refund => Some(Action::Refund),
        other => {
            return Err(TriggerError::WrongFront {
                action: other.name(),
                front: "Commerce Layer",
                allowed: "authorize, capture, void, refund, token",
            });
        }
    };

    let (resp, settled) = call(
        session,
        &client,
        Action::Authorize,
        &authorize_body(&payment),
        &note,
    )
    .await?;
    check("authorize", resp.status, gateway)?;
    if !settled {
        return Err(TriggerError::CallbackFailed);
    }
    let Some(action) = action else {
        return Ok(());
    };
    let require_token = |resp: &Response| {
        resp.transaction_token()
            .filter(|t| !t.is_empty())
            .map(|_| ())
            .ok_or(TriggerError::Incomplete {
                step: "authorize",
                field: "data.transaction_token",
            })
    };
    require_token(&resp)?;
    let mut auth = Authorization::from_answer(
        &payment,
        order.clone(),
        format!("{}/T/001", order.number),
        &resp,
    );
    // The callback settled it: CL now holds it as succeeded.
    auth.succeeded = true;
    match action {
        Action::Void => {
            let note = format!("authorization {}", auth.token);
            let (resp, _) = call(session, &client, Action::Void, &void_body(&auth), &note).await?;
            check("void", resp.status, gateway)
        }
        _ => {
            let amount = auth.amount_cents;
            let note = format!("authorization {}, {amount} cents", auth.token);
            let (resp, settled) = call(
                session,
                &client,
                Action::Capture,
                &capture_body(&auth, amount),
                &note,
            )
            .await?;
            check("capture", resp.status, gateway)?;
            if !settled {
                return Err(TriggerError::CallbackFailed);
            }
            if action == Action::Capture {
                return Ok(());
            }
            if resp.transaction_token().is_none_or(str::is_empty) {
                return Err(TriggerError::Incomplete {
                    step: "capture",
                    field: "data.transaction_token",
                });
            }
            let mut capture = Capture::from_answer(
                &auth,
                order.clone(),
                format!("{}/T/002", order.number),
                amount,
                &resp,
            );
            capture.succeeded = true;
            let refund = capture.amount_cents;
            let note = format!("capture {}, {refund} cents", capture.token);
            let (resp, _) = call(
                session,
                &client,
                Action::Refund,
                &refund_body(&capture, refund),
                &note,
            )
            .await?;
            check("refund", resp.status, gateway)
        }
    }
}

/// Sends one call and prints it and its answer; a 202 waits for (and prints) the callback
/// of its `action_id`. Returns the answer and whether the call is settled successfully
/// (a 2xx answer, and for a 202 a successful callback).
async fn call(
    session: &mut Session<'_>,
    client: &ClClient,
    action: Action,
    doc: &serde_json::Value,
    note: &str,
) -> Result<(Response, bool), TriggerError> {
    session.request("POST", &client.path(action), note)?;
    let resp = client.send(action, doc).await;
    session.answer(resp.status, &resp.body, &resp.raw)?;
    if resp.status != 202 {
        let settled = (200..300).contains(&resp.status);
        return Ok((resp, settled));
    }
    let Some(action_id) = resp.action_id().map(str::to_owned) else {
        return Err(TriggerError::Incomplete {
            step: action.path(),
            field: "data.action_id",
        });
    };
    let callback = session
        .callback(&format!("action {action_id}"), |json| {
            json["data"]["action_id"] == action_id.as_str()
        })
        .await?;
    let succeeded = callback.json["success"] == true;
    Ok((resp, succeeded))
}
