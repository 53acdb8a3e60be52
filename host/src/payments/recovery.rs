//! Outcomes that arrive after the answer, and the recovery of outcomes not known: PSP
//! events from notifications; the reconciler, which gives each pending or unknown row its
//! own next check with backoff (so rows that never settle cannot starve the others), asks
//! plugins (`sync`) about pending ones, resolves unknown ones against the PSP (`sync`, or
//! the stored call re-sent with the same idempotency key), expires pending ones by the
//! gateway's rule and escalates what stays unresolved; and the start-up pass over calls a
//! crash cut off.

use std::time::Duration;
use tokio_util::sync::CancellationToken;

use futures::StreamExt;

use super::settle::{check_backoff_ms, operation_of, recovered};
use super::*;
use crate::plugins::types::{EventKind, FinalStatus, Money, Outcome, PspEvent, SyncRequest};

/// Rows one reconciler round takes at most, and how many it checks at once.
const ROUND: i64 = 100;
const CONCURRENT_CHECKS: usize = 8;

impl Payments {
    /// Applies PSP events (from a notification) to the open (pending or unknown)
    /// transactions they name.
    /// Returns how many transactions changed.
    pub async fn apply_events(
        &self,
        gateway: &str,
        events: &[PspEvent],
    ) -> Result<usize, PaymentError> {
        let mut changed = 0;
        for event in events {
            let applies_to: &[Action] = match event.kind {
                None => &[],
                Some(EventKind::Authorized | EventKind::Expired) => &[Action::Authorize],
                Some(EventKind::Captured) => &[Action::Capture, Action::Sale],
                Some(EventKind::Refunded) => &[Action::Refund],
                Some(EventKind::Voided) => &[Action::Void],
                // News about a payment already final: not an open transaction's outcome.
                Some(kind @ (EventKind::Reversed | EventKind::Chargeback)) => {
                    tracing::warn!(gateway, kind = crate::plugins::bindings::event_kind_name(kind), psp_reference = %redact::token(&event.psp_reference), "psp event about a settled payment: recorded in the log only");
                    continue;
                }
            };
            let outcome = FinalOutcome {
                succeeded: event.status == FinalStatus::Succeeded,
                message: event.message.clone().unwrap_or_else(|| match event.status {
                    FinalStatus::Succeeded => "Payment confirmed by the PSP".into(),
                    FinalStatus::Failed => "Payment failed at the PSP".into(),
                }),
                error_code: match event.status {
                    FinalStatus::Succeeded => None,
                    FinalStatus::Failed => {
                        Some(event.code.clone().unwrap_or_else(|| "psp_failed".into()))
                    }
                },
                error_detail: match event.status {
                    FinalStatus::Succeeded => None,
                    FinalStatus::Failed => event.message.clone(),
                },
            };
            let pending = self
                .inner
                .store
                .find_pending_by_reference(gateway, &event.psp_reference)
                .await?;
            if pending.is_empty() {
                tracing::info!(gateway, psp_reference = %redact::token(&event.psp_reference), "psp event for no open transaction (already final, or unknown here)");
            }
            for txn in pending {
                if event.kind.is_some() && !applies_to.contains(&txn.action) {
                    continue;
                }
                if let Some(token) = &event.transaction_token
                    && txn.psp_token.as_ref() != Some(token)
                {
                    continue;
                }
                if self.finish(&txn, &outcome).await? {
                    changed += 1;
                }
            }
        }
        Ok(changed)
    }

    /// Moves a pending or unknown transaction to its final state and queues its callback.
    async fn finish(
        &self,
        txn: &Transaction,
        outcome: &FinalOutcome,
    ) -> Result<bool, PaymentError> {
        if self.inner.config.gateway(&txn.gateway).is_none() {
            return Ok(false);
        }
        let callback = self.callback(txn, outcome);
        let completion = Completion {
            error_code: outcome.error_code.clone(),
            error_message: outcome.error_detail.clone(),
            ..Completion::status(if outcome.succeeded {
                Status::Approved
            } else {
                Status::Declined
            })
        };
        let changed = self
            .record(txn, completion, callback, Some(txn.status))
            .await?;
        if changed {
            tracing::info!(gateway = %txn.gateway, action = txn.action.as_str(), action_id = ?txn.action_id, succeeded = outcome.succeeded, "open transaction settled");
        }
        Ok(changed)
    }

    /// The callback reporting `outcome` of `txn` to its platform, where the front has one.
    pub(super) fn callback(
        &self,
        txn: &Transaction,
        outcome: &FinalOutcome,
    ) -> Option<NewCallback> {
        let gateway = self.inner.config.gateway(&txn.gateway)?;
        self.inner
            .fronts
            .get(txn.front.as_str())
            .and_then(|f| f.callback(gateway, txn, outcome))
    }

    /// Start-up: rows still `processing` lost their task with the previous process. Their
    /// outcome is unknown; they are checked with the PSP shortly.
    pub async fn recover_interrupted(&self) -> Result<u64, PaymentError> {
        let first = self.inner.config.reconciler.first_retry_ms as i64;
        let now = now_ms();
        let n = self.inner.store.mark_interrupted(now, now + first).await?;
        if n > 0 {
            tracing::warn!(
                transactions = n,
                "calls cut off by a stopped process: outcome unknown, checking them with the PSP"
            );
        }
        Ok(n)
    }

    /// One round over the rows whose check is due, soonest first. Each is rescheduled
    /// before it is checked: a row that never settles goes to the back of the line, and a
    /// crash mid-check costs only a delay. Returns how many changed.
    pub async fn reconcile_once(&self) -> Result<usize, PaymentError> {
        let config = &self.inner.config.reconciler;
        let now = now_ms();
        let due = self.inner.store.due_for_check(now, ROUND).await?;
        for txn in &due {
            let next = now + check_backoff_ms(config, txn.checks) as i64;
            self.inner.store.schedule_check(&txn.id, next).await?;
            self.escalate_if_overdue(txn, now).await?;
        }
        let checks = due.into_iter().map(|txn| {
            let engine = self.clone();
            async move { engine.refresh(&txn).await }
        });
        let results: Vec<_> = futures::stream::iter(checks)
            .buffer_unordered(CONCURRENT_CHECKS)
            .collect()
            .await;
        let mut changed = 0;
        for result in results {
            if result? {
                changed += 1;
            }
        }
        Ok(changed)
    }

    async fn escalate_if_overdue(&self, txn: &Transaction, now: i64) -> Result<(), PaymentError> {
        let give_up = self.inner.config.reconciler.give_up_after_ms as i64;
        if txn.status == Status::Unknown
            && txn.escalated_at.is_none()
            && now - txn.created_at >= give_up
            && self.inner.store.escalate(&txn.id, now).await?
        {
            tracing::error!(txn = %txn.id, gateway = %txn.gateway, action = txn.action.as_str(), amount_cents = txn.amount_cents, currency = %txn.currency, age_ms = now - txn.created_at, "outcome still unknown: escalated to an operator (GET /admin/transactions?status=escalated); it keeps being checked");
        }
        Ok(())
    }

    /// Asks the PSP about one open transaction now; true if it changed.
    pub async fn refresh(&self, txn: &Transaction) -> Result<bool, PaymentError> {
        match txn.status {
            Status::Pending => self.check_pending(txn).await,
            Status::Unknown => self.resolve_unknown(txn).await,
            _ => Ok(false),
        }
    }

    /// A pending transaction: expired by the gateway's rule, else asked about (`sync`)
    /// and settled if the PSP has a final answer.
    async fn check_pending(&self, txn: &Transaction) -> Result<bool, PaymentError> {
        let expiry = self
            .inner
            .config
            .gateway(&txn.gateway)
            .and_then(|g| g.pending_expiry_ms);
        if let Some(expiry) = expiry
            && now_ms() - txn.created_at >= expiry as i64
        {
            let message = format!("the PSP gave no final answer within {expiry} ms");
            return self
                .finish(
                    txn,
                    &FinalOutcome {
                        succeeded: false,
                        message: message.clone(),
                        error_code: Some("expired".into()),
                        error_detail: Some(message),
                    },
                )
                .await;
        }
        if txn.psp_token.is_none() && txn.psp_reference.is_none() {
            tracing::warn!(txn = %txn.id, action_id = ?txn.action_id, "pending without any PSP reference: needs an operator");
            return Ok(false);
        }
        let Some(call) = sync_call(txn) else {
            return Ok(false);
        };
        let outcome = match self.inner.plugins.call(&txn.gateway, call).await {
            Ok(Reply::Outcome(Ok(Outcome::Approved(_)))) => FinalOutcome {
                succeeded: true,
                message: "Confirmed by the PSP on reconciliation".into(),
                error_code: None,
                error_detail: None,
            },
            Ok(Reply::Outcome(Ok(Outcome::Declined(d)))) => FinalOutcome {
                succeeded: false,
                message: d.message.clone(),
                error_code: Some(d.code),
                error_detail: Some(d.message),
            },
            Ok(Reply::Outcome(Ok(Outcome::Pending(_)))) => return Ok(false),
            other => {
                tracing::debug!(txn = %txn.id, "sync gave no final state: {other:?}");
                return Ok(false);
            }
        };
        self.finish(txn, &outcome).await
    }

    /// An unknown outcome, resolved against the PSP: `sync` when the PSP's id for it is
    /// known, else the stored call re-sent as it was, with the same idempotency key (the
    /// PSP de-duplicates it: the operation happens once). Only a real outcome settles it;
    /// anything else leaves it unknown until its next check.
    async fn resolve_unknown(&self, txn: &Transaction) -> Result<bool, PaymentError> {
        let call = match (&txn.psp_token, &txn.psp_reference, &txn.replay) {
            (Some(_), _, _) | (_, Some(_), _) => sync_call(txn),
            (None, None, Some(replay)) => match Call::from_stored(replay) {
                Ok(call) => Some(call),
                Err(e) => {
                    tracing::error!(txn = %txn.id, "stored call unreadable ({e}): needs an operator");
                    None
                }
            },
            (None, None, None) => {
                tracing::warn!(txn = %txn.id, "unknown outcome with nothing to ask the PSP: needs an operator");
                None
            }
        };
        let Some(call) = call else {
            return Ok(false);
        };
        let reply = self.inner.plugins.call(&txn.gateway, call).await;
        let Some(settled) = recovered(txn, reply, &self.inner.config.reconciler) else {
            tracing::info!(gateway = %txn.gateway, action = txn.action.as_str(), txn = %txn.id, checks = txn.checks + 1, "outcome still unknown: will check again");
            return Ok(false);
        };
        let front = self.inner.fronts.get(txn.front.as_str());
        let mut completion = settled.completion;
        let callback = match (&txn.response, front) {
            // Never answered (a crash cut the call off, and no retry came yet): the outcome
            // becomes the answer a retry replays.
            (None, Some(front)) => {
                completion.response = Some(front.render(txn.action, &settled.result));
                None
            }
            // Answered 202: the outcome follows as a callback to that action id.
            (Some(_), _) => final_outcome(&settled.result).and_then(|o| self.callback(txn, &o)),
            (None, None) => None,
        };
        let changed = self
            .record(txn, completion, callback, Some(Status::Unknown))
            .await?;
        if changed {
            log_result(txn, &settled.result);
            tracing::info!(gateway = %txn.gateway, action = txn.action.as_str(), txn = %txn.id, action_id = ?txn.action_id, "unknown outcome resolved with the PSP");
        }
        Ok(changed)
    }
}

/// The plugin's `sync` for an open transaction: by the PSP's id for it where known, with
/// the call's idempotency key and the platform's reference for PSPs that look up by those.
fn sync_call(txn: &Transaction) -> Option<Call> {
    Some(Call::Sync(SyncRequest {
        operation: operation_of(txn.action)?,
        transaction_token: txn.psp_token.clone(),
        psp_reference: txn.psp_reference.clone(),
        idempotency_key: txn.idempotency_key.clone(),
        reference: txn.resource_id.clone(),
        amount: Money {
            amount_cents: txn.amount_cents as u64,
            currency: txn.currency.clone(),
        },
    }))
}

/// Runs reconciler rounds: as soon as a row is due (sleeping at most `interval`), or when
/// the engine says a row needs a check now.
/// Renews this process's lease on the calls it is making, every third of the lease, so
/// no other replica takes them over while this one lives; and on the same tick takes over
/// the calls of replicas that died mid-call (lease over: unknown like any cut-off call, a
/// no-op on a one-process store), waking the reconciler for them. Runs until the process
/// exits: calls drained at shutdown keep their lease to the end.
pub async fn keep_leases(payments: Payments) {
    let every = Duration::from_millis(crate::store::CALL_LEASE_MS as u64 / 3);
    loop {
        tokio::time::sleep(every).await;
        if let Err(e) = payments.inner.store.renew_leases(now_ms()).await {
            tracing::error!("renewing the leases on calls under way: {e}");
        }
        match payments.recover_interrupted().await {
            Ok(0) => {}
            Ok(_) => payments.inner.recovery_wake.notify_one(),
            Err(e) => tracing::error!("taking over calls of stopped processes: {e}"),
        }
    }
}

pub async fn reconcile_forever(payments: Payments, interval: Duration, stop: CancellationToken) {
    // A round under way when `stop` comes is finished (its re-sends are PSP calls whose
    // outcomes must be recorded); no new round starts.
    while !stop.is_cancelled() {
        match payments.reconcile_once().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(settled = n, "reconciler settled open transactions"),
            Err(e) => tracing::error!("reconciler: {e}"),
        }
        let now = now_ms();
        let nap = match payments.inner.store.next_check_due().await {
            Ok(Some(at)) => {
                Duration::from_millis((at - now).clamp(10, interval.as_millis() as i64) as u64)
            }
            _ => interval,
        };
        tokio::select! {
            _ = payments.inner.recovery_wake.notified() => {}
            _ = tokio::time::sleep(nap) => {}
            _ = stop.cancelled() => {}
        }
    }
}
