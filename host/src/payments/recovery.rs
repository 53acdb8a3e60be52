//! Outcomes that arrive after the answer: PSP events from notifications, and the
//! reconciler that asks plugins (`sync`) about transactions left pending.

use std::time::Duration;

use super::settle::operation_of;
use super::*;
use crate::plugins::Call;
use crate::plugins::types::{FinalStatus, Money, Outcome, PspEvent, SyncRequest};
use crate::redact;

impl Payments {
    /// Applies PSP events (from a notification) to the pending transactions they name.
    /// Returns how many transactions changed.
    pub async fn apply_events(
        &self,
        gateway: &str,
        events: &[PspEvent],
    ) -> Result<usize, PaymentError> {
        let mut changed = 0;
        for event in events {
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
                tracing::info!(gateway, psp_reference = %redact::token(&event.psp_reference), "psp event for no pending transaction (already final or unknown)");
            }
            for txn in pending {
                if let Some(op) = event.operation
                    && operation_of(txn.action) != Some(op)
                {
                    continue;
                }
                if self.finish_pending(&txn, &outcome).await? {
                    changed += 1;
                }
            }
        }
        Ok(changed)
    }

    /// Moves a pending transaction to its final state and queues its callback.
    async fn finish_pending(
        &self,
        txn: &Transaction,
        outcome: &FinalOutcome,
    ) -> Result<bool, PaymentError> {
        let Some(gateway) = self.inner.config.gateway(&txn.gateway) else {
            return Ok(false);
        };
        let callback = self
            .inner
            .fronts
            .get(txn.front.as_str())
            .and_then(|f| f.callback(gateway, txn, outcome));
        let completion = Completion {
            status: if outcome.succeeded {
                Status::Approved
            } else {
                Status::Declined
            },
            transaction_token: None,
            psp_token: None,
            psp_reference: None,
            action_id: None,
            error_code: outcome.error_code.clone(),
            error_message: outcome.error_detail.clone(),
            response: None,
        };
        let changed = self
            .inner
            .store
            .complete(&txn.id, completion, callback, Some(Status::Pending))
            .await?;
        if changed {
            tracing::info!(gateway = %txn.gateway, action = txn.action.as_str(), action_id = ?txn.action_id, succeeded = outcome.succeeded, "pending transaction settled");
            self.inner.outbox_wake.notify_one();
        }
        Ok(changed)
    }

    /// Asks plugins about transactions pending for longer than the configured age.
    pub async fn reconcile_once(&self) -> Result<usize, PaymentError> {
        let age = self.inner.config.reconciler.after_ms as i64;
        let stale = self.inner.store.pending_before(now_ms() - age, 100).await?;
        let mut settled = 0;
        for txn in stale {
            if self.refresh(&txn).await? {
                settled += 1;
            }
        }
        Ok(settled)
    }

    /// Asks the plugin (`sync`) about one pending transaction and settles it if the PSP
    /// has a final answer. True if it changed.
    pub async fn refresh(&self, txn: &Transaction) -> Result<bool, PaymentError> {
        if txn.status != Status::Pending
            || self
                .inner
                .in_flight
                .lock()
                .expect("in-flight")
                .contains(&txn.id)
        {
            return Ok(false);
        }
        let Some(op) = operation_of(txn.action) else {
            return Ok(false);
        };
        // A deferred call that never came back (the host stopped mid-call) left no PSP
        // token or reference: there is nothing the PSP could be asked about.
        if txn.psp_token.is_none() && txn.psp_reference.is_none() {
            tracing::warn!(txn = %txn.id, action_id = ?txn.action_id, "pending without any PSP reference: needs an operator");
            return Ok(false);
        }
        let call = Call::Sync(SyncRequest {
            operation: op,
            transaction_token: txn
                .psp_token
                .clone()
                .unwrap_or_else(|| txn.transaction_token.clone()),
            psp_reference: txn.psp_reference.clone(),
            amount: Money {
                amount_cents: txn.amount_cents as u64,
                currency: txn.currency.clone(),
            },
        });
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
        self.finish_pending(txn, &outcome).await
    }
}

/// Re-checks stale pending transactions every `interval` (when `after_ms` > 0).
pub async fn reconcile_forever(payments: Payments, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match payments.reconcile_once().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(settled = n, "reconciler settled pending transactions"),
            Err(e) => tracing::error!("reconciler: {e}"),
        }
    }
}
