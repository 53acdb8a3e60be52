//! The payment engine that every protocol front shares: idempotency (a natural key per
//! operation, stored answers replayed, concurrent duplicates joined), balances, the plugin
//! call with its slow-PSP deferral, and durable outcomes.
//!
//! Every operation runs in a task the engine owns, never in the HTTP request's future: a
//! platform that hangs up cancels nothing, and its retry gets the recorded outcome. An
//! outcome that cannot be known (the host's deadline, a transport failure after sending,
//! a crash) is recorded `unknown`, answered as pending, and resolved against the PSP by
//! `recovery`. `settle` holds the pure mapping of plugin replies; `types` what fronts and
//! the engine exchange.

pub mod bounds;
mod recovery;
mod settle;
mod shopper_return;
mod types;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

use crate::config::{Config, GatewayConfig};
use crate::plugins::{Call, CallError, GatewayCallError, Plugins, PspContact, Reply};
use crate::redact;
use crate::store::{
    Action, BalanceRule, Begin, Completion, NewCallback, NewTransaction, Status, Store, StoreError,
    StoredAnswer, Transaction, now_ms,
};
pub use recovery::{keep_leases, reconcile_forever};
use settle::{CapturePlace, Settled, build_call, final_outcome, log_result, settle};
pub use shopper_return::{PlatformReturn, ShopperReturned, return_url};
pub use types::*;

/// The engine. Cheap to clone.
#[derive(Clone)]
pub struct Payments {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    plugins: Arc<Plugins>,
    config: Arc<Config>,
    fronts: HashMap<&'static str, Arc<dyn Front>>,
    outbox_wake: Arc<Notify>,
    /// Wakes the reconciler when a row needs a check now.
    recovery_wake: Notify,
    /// Every task the engine owns: operations and the background halves of deferred
    /// calls. Shutdown closes it and waits for them.
    tasks: TaskTracker,
}

type PluginTask = JoinHandle<Result<Reply, GatewayCallError>>;

impl Payments {
    pub fn new(
        store: Arc<dyn Store>,
        plugins: Arc<Plugins>,
        config: Arc<Config>,
        fronts: Vec<Arc<dyn Front>>,
        outbox_wake: Arc<Notify>,
    ) -> Payments {
        Payments {
            inner: Arc::new(Inner {
                store,
                plugins,
                config,
                fronts: fronts.into_iter().map(|f| (f.name(), f)).collect(),
                outbox_wake,
                recovery_wake: Notify::new(),
                tasks: TaskTracker::new(),
            }),
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    pub fn plugins(&self) -> &Arc<Plugins> {
        &self.inner.plugins
    }

    /// The engine's tasks, for shutdown to drain.
    pub fn tasks(&self) -> &TaskTracker {
        &self.inner.tasks
    }

    /// Performs an operation once, however often it is asked for, and answers as `front`
    /// renders it. The work runs in a task of its own, so dropping this future (a caller
    /// that hung up) stops nothing: the outcome is recorded for the caller's retry.
    pub async fn execute(
        &self,
        front: &Arc<dyn Front>,
        req: PaymentRequest,
    ) -> Result<StoredAnswer, PaymentError> {
        let engine = self.clone();
        let front = front.clone();
        self.inner
            .tasks
            .spawn(async move { engine.operate(&front, req).await })
            .await
            .map_err(|e| PaymentError::Task(e.to_string()))?
    }

    async fn operate(
        &self,
        front: &Arc<dyn Front>,
        req: PaymentRequest,
    ) -> Result<StoredAnswer, PaymentError> {
        let refuse = |code: RefusalCode, message: String| {
            Ok(front.render(req.action, &PaymentResult::Refused { code, message }))
        };
        let Some(gateway) = self.inner.config.gateway(&req.gateway) else {
            return refuse(
                RefusalCode::UnknownGateway,
                format!("unknown gateway `{}`", req.gateway),
            );
        };
        // Before anything is stored, logged or sent to a plugin.
        if let Err((code, message)) = bounds::check(gateway, &req) {
            return refuse(code, message);
        }
        let (parent, rule) = match self.parent(&req).await? {
            Ok(found) => found,
            Err((code, message)) => return refuse(code, message),
        };
        let key = idempotency_key(&req);
        let place = match (&parent, req.action) {
            (Some(parent), Action::Capture) => Some(self.capture_place(parent, &req).await?),
            _ => None,
        };
        let id = new_id("txn");
        // With a public address, the shopper comes back through the host (`shopper_return`).
        let mut shopper_return = None;
        let routed;
        let req = match self.inner.config.server.public_base() {
            Some(base) if matches!(req.action, Action::Authorize | Action::Sale) => {
                let (shopper, kept) = shopper_return::route_through_host(
                    base,
                    &req.gateway,
                    &id,
                    req.shopper.as_ref(),
                );
                shopper_return = kept;
                routed = PaymentRequest {
                    shopper: Some(shopper),
                    ..req.clone()
                };
                &routed
            }
            _ => &req,
        };
        let call = build_call(&key, parent.as_ref(), req, place);
        let new = NewTransaction {
            id: id.clone(),
            gateway: req.gateway.clone(),
            front: front.name().to_owned(),
            action: req.action,
            idempotency_key: key,
            resource_id: req.resource_id.clone(),
            parent_id: parent.as_ref().map(|p| p.id.clone()),
            // Replaced by the plugin's token when it answers in time.
            transaction_token: format!("pgw_{}", &id[4..]),
            amount_cents: req.amount_cents as i64,
            currency: req.currency.clone(),
            // Stored before the call: if its answer is lost, it is re-sent as it was.
            replay: Some(serde_json::to_string(&call).expect("plugin calls serialise")),
            shopper_return,
        };
        let txn = match self.inner.store.begin(new, rule).await? {
            Begin::Started(txn) => txn,
            Begin::InsufficientBalance { available } => {
                return refuse(
                    RefusalCode::AmountExceedsBalance,
                    format!(
                        "{} {} asked, {available} left on the {}",
                        req.amount_cents,
                        req.currency,
                        if req.action == Action::Refund {
                            "capture"
                        } else {
                            "authorization"
                        }
                    ),
                );
            }
            Begin::Existing(existing) => {
                match self.join_existing(front, gateway, existing, req).await? {
                    Joined::Answer(answer) => return Ok(answer),
                    Joined::Retry(txn) => *txn,
                }
            }
        };
        self.perform(front, gateway, txn, call).await
    }

    /// A request whose key exists: replay its answer, wait for it, retry a failure (the
    /// PSP was not reached), or answer an unknown outcome as pending.
    async fn join_existing(
        &self,
        front: &Arc<dyn Front>,
        gateway: &GatewayConfig,
        mut existing: Transaction,
        req: &PaymentRequest,
    ) -> Result<Joined, PaymentError> {
        let wait_until = Instant::now()
            + gateway.call_timeout(&self.inner.config.plugins)
            + Duration::from_secs(1);
        loop {
            match (&existing.response, existing.status) {
                (_, Status::Failed) => {
                    if self.inner.store.retry(&existing.id).await? {
                        existing.status = Status::Processing;
                        return Ok(Joined::Retry(Box::new(existing)));
                    }
                }
                (Some(answer), _) => return Ok(Joined::Answer(answer.clone())),
                // The token action cannot be asynchronous: it waits for recovery.
                (None, Status::Unknown) if existing.action != Action::Token => {
                    if let Some(answer) = self.answer_unknown(front, &existing).await? {
                        return Ok(Joined::Answer(answer));
                    }
                }
                (None, _) => {}
            }
            if Instant::now() >= wait_until {
                return Ok(Joined::Answer(front.render(
                    req.action,
                    &PaymentResult::Failed {
                        kind: FailureKind::InProgress,
                        message: "the same operation is still being processed".into(),
                    },
                )));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
            existing = match self.inner.store.get(&existing.id).await? {
                Some(t) => t,
                None => return Err(StoreError::Corrupt("transaction vanished".into()).into()),
            };
        }
    }

    /// The first retry of an operation whose outcome is unknown and was never answered
    /// (a crash cut its call off): 202 with an action id, the outcome following as a
    /// callback when recovery resolves it. `None` if another caller answered first.
    async fn answer_unknown(
        &self,
        front: &Arc<dyn Front>,
        txn: &Transaction,
    ) -> Result<Option<StoredAnswer>, PaymentError> {
        let action_id = new_id("act");
        let answer = front.render(txn.action, &settle::unknown_result(txn, action_id.clone()));
        let answered = self
            .inner
            .store
            .answer_unknown(&txn.id, &action_id, answer.clone(), now_ms())
            .await?;
        if !answered {
            return Ok(None);
        }
        tracing::info!(gateway = %txn.gateway, action = txn.action.as_str(), txn = %txn.id, %action_id, "retry of an unknown outcome: answered 202, the outcome follows as a callback");
        Ok(Some(answer))
    }

    /// Where a capture falls among its authorization's: its sequence number, and whether
    /// it takes what is left (with the captures under way, were they all to succeed).
    /// Read before the capture is stored, so captures racing each other may share a
    /// number; the balance itself is checked atomically when the capture is stored.
    async fn capture_place(
        &self,
        parent: &Transaction,
        req: &PaymentRequest,
    ) -> Result<CapturePlace, PaymentError> {
        let store = &self.inner.store;
        let earlier = store.follow_ups(&parent.id, Action::Capture).await?;
        let drawn = store.drawn(&parent.id, Action::Capture).await?;
        Ok(CapturePlace {
            sequence: u32::try_from(earlier + 1).unwrap_or(u32::MAX),
            final_capture: drawn.saturating_add(req.amount_cents as i64) >= parent.amount_cents,
        })
    }

    /// The transaction a follow-up acts upon, and the balance rule it draws under.
    async fn parent(
        &self,
        req: &PaymentRequest,
    ) -> Result<
        Result<(Option<Transaction>, Option<BalanceRule>), (RefusalCode, String)>,
        PaymentError,
    > {
        let (actions, rule): (&[Action], BalanceRule) = match req.action {
            Action::Capture => (&[Action::Authorize], BalanceRule::Capture),
            Action::Void => (&[Action::Authorize], BalanceRule::Void),
            Action::Refund => (&[Action::Capture, Action::Sale], BalanceRule::Refund),
            Action::Authorize | Action::Sale | Action::Token => return Ok(Ok((None, None))),
        };
        let Some(token) = &req.parent_token else {
            return Ok(Err((
                RefusalCode::InvalidRequest,
                "no transaction token".into(),
            )));
        };
        let Some(parent) = self
            .inner
            .store
            .find_by_token(&req.gateway, token, actions)
            .await?
        else {
            return Ok(Err((
                RefusalCode::UnknownTransaction,
                format!(
                    "no {} with this token on gateway `{}`",
                    actions[0].as_str(),
                    req.gateway
                ),
            )));
        };
        if parent.status != Status::Approved {
            return Ok(Err((
                RefusalCode::NotApproved,
                format!(
                    "the {} is {}",
                    parent.action.as_str(),
                    parent.status.as_str()
                ),
            )));
        }
        Ok(Ok((Some(parent), Some(rule))))
    }

    async fn perform(
        &self,
        front: &Arc<dyn Front>,
        gateway: &GatewayConfig,
        txn: Transaction,
        call: Call,
    ) -> Result<StoredAnswer, PaymentError> {
        let contact = PspContact::default();
        let plugins = self.inner.plugins.clone();
        let gateway_id = txn.gateway.clone();
        let watch = contact.clone();
        let mut running: PluginTask =
            tokio::spawn(async move { plugins.call_watched(&gateway_id, call, watch).await });
        // The token action cannot be asynchronous: it waits up to the hard deadline.
        let reply = if txn.action != Action::Token {
            let async_after = Duration::from_millis(gateway.async_after_ms);
            match tokio::time::timeout(async_after, &mut running).await {
                Ok(joined) => joined,
                Err(_) => return self.defer(front, gateway, txn, running, contact).await,
            }
        } else {
            running.await
        };
        let mut settled = settle(
            &txn,
            joined(reply),
            contact.made(),
            None,
            &self.inner.config.reconciler,
        );
        if matches!(txn.action, Action::Capture | Action::Void | Action::Refund) {
            self.keep_token_unique(&txn, &mut settled).await;
        }
        let answer = front.render(txn.action, &settled.result);
        let unknown = settled.completion.status == Status::Unknown;
        let completion = Completion {
            response: Some(answer.clone()),
            ..settled.completion
        };
        self.record(&txn, completion, None, None).await?;
        log_result(&txn, &settled.result);
        if unknown {
            self.inner.recovery_wake.notify_one();
        }
        Ok(answer)
    }

    /// A follow-up answered under a token another of the gateway's transactions holds (a
    /// PSP that names every capture by its payment's id) would make the platform's later
    /// requests ambiguous (a refund booked against the wrong capture). The platform gets a
    /// token of the host's making instead; the plugin's stays the PSP token that later calls
    /// carry. A lookup that fails keeps the plugin's token: never at the outcome's expense.
    async fn keep_token_unique(&self, txn: &Transaction, settled: &mut Settled) {
        let Some(token) = settled.completion.transaction_token.clone() else {
            return;
        };
        let any = [
            Action::Authorize,
            Action::Sale,
            Action::Capture,
            Action::Void,
            Action::Refund,
        ];
        match self
            .inner
            .store
            .find_by_token(&txn.gateway, &token, &any)
            .await
        {
            Ok(Some(other)) if other.id != txn.id => {
                // Transaction ids are `txn_` and a random part, unique in the store.
                let unique = format!("{token}.{}", txn.id.trim_start_matches("txn_"));
                settled.completion.transaction_token = Some(unique.clone());
                settled.result.rename_token(unique);
                tracing::info!(gateway = %txn.gateway, action = txn.action.as_str(), token = %redact::token(&token), "the plugin answered a token another transaction has: the platform gets a unique one");
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(gateway = %txn.gateway, txn = %txn.id, "cannot check the answered token is unique ({e}); keeping it")
            }
        }
    }

    /// Answers 202 now and finishes the call in the background. The row stays
    /// `processing` (its call is under way, owned by the task below) with the 202 as the
    /// answer duplicates get.
    async fn defer(
        &self,
        front: &Arc<dyn Front>,
        gateway: &GatewayConfig,
        txn: Transaction,
        running: PluginTask,
        contact: PspContact,
    ) -> Result<StoredAnswer, PaymentError> {
        let action_id = new_id("act");
        let result = PaymentResult::Pending {
            transaction_token: txn.transaction_token.clone(),
            amount_cents: txn.amount_cents as u64,
            action_id: action_id.clone(),
            metadata: vec![("deferred".into(), "true".into())],
            action: None,
        };
        let answer = front.render(txn.action, &result);
        let completion = Completion {
            action_id: Some(action_id.clone()),
            response: Some(answer.clone()),
            ..Completion::status(Status::Processing)
        };
        self.inner
            .store
            .complete(&txn.id, completion, None, None)
            .await?;
        tracing::info!(gateway = %txn.gateway, action = txn.action.as_str(), %action_id, after_ms = gateway.async_after_ms, "slow psp: answered 202, finishing in background");
        let engine = self.clone();
        let front = front.clone();
        let gateway = gateway.clone();
        self.inner.tasks.spawn(async move {
            let settled = settle(
                &txn,
                joined(running.await),
                contact.made(),
                Some(action_id.clone()),
                &engine.inner.config.reconciler,
            );
            log_result(&txn, &settled.result);
            let mut completion = settled.completion;
            let mut answered = txn.clone();
            answered.psp_reference = completion.psp_reference.clone().or(answered.psp_reference);
            // `txn` was read before the 202: the callback carries the action id answered then.
            answered.action_id = Some(action_id);
            let outcome = final_outcome(&settled.result);
            let callback = outcome
                .as_ref()
                .and_then(|o| front.callback(&gateway, &answered, o));
            if outcome.is_some() && callback.is_none() {
                tracing::error!(gateway = %txn.gateway, "the final outcome of a 202 cannot be reported: the gateway needs webhook_endpoint_url and shared_secret");
            }
            // The PSP was not reached after a 202: final for this transaction, reported
            // through the callback (a retry is a new operation on the platform's side).
            if completion.status == Status::Failed {
                completion.status = Status::Declined;
            }
            let unknown = completion.status == Status::Unknown;
            let _ = engine
                .record(&txn, completion, callback, Some(Status::Processing))
                .await;
            if unknown {
                engine.inner.recovery_wake.notify_one();
            }
        });
        Ok(answer)
    }

    /// Writes an outcome. The outcome is known only here, so a write that fails is retried
    /// in the background for a while, and the outcome is logged (tokens redacted) so that
    /// an operator can recover it if every try fails; a row left `processing` becomes
    /// `unknown` at the next start and is resolved against the PSP.
    async fn record(
        &self,
        txn: &Transaction,
        completion: Completion,
        callback: Option<NewCallback>,
        only_if: Option<Status>,
    ) -> Result<bool, PaymentError> {
        let store = &self.inner.store;
        let first = store
            .complete(&txn.id, completion.clone(), callback.clone(), only_if)
            .await;
        let error = match first {
            Ok(changed) => {
                if changed {
                    self.inner.outbox_wake.notify_one();
                }
                return Ok(changed);
            }
            Err(e) => e,
        };
        tracing::error!(
            txn = %txn.id, gateway = %txn.gateway, action = txn.action.as_str(),
            status = completion.status.as_str(),
            psp_token = completion.psp_token.as_deref().map(redact::token).unwrap_or_default(),
            psp_reference = completion.psp_reference.as_deref().map(redact::token).unwrap_or_default(),
            "cannot record the outcome ({error}); retrying in the background"
        );
        let engine = self.clone();
        let id = txn.id.clone();
        self.inner.tasks.spawn(async move {
            let mut delay = Duration::from_millis(200);
            for _ in 0..12 {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
                let again = engine
                    .inner
                    .store
                    .complete(&id, completion.clone(), callback.clone(), only_if)
                    .await;
                match again {
                    Ok(_) => {
                        tracing::info!(txn = %id, "outcome recorded after a retry");
                        engine.inner.outbox_wake.notify_one();
                        return;
                    }
                    Err(e) => tracing::warn!(txn = %id, "outcome still not recorded: {e}"),
                }
            }
            tracing::error!(txn = %id, "outcome not recorded: the row is checked with the PSP at the next start");
        });
        Err(error.into())
    }

    /// The transaction a front answered `token` for, on `gateway`, among `actions`.
    pub async fn find(
        &self,
        gateway: &str,
        token: &str,
        actions: &[Action],
    ) -> Result<Option<Transaction>, PaymentError> {
        Ok(self
            .inner
            .store
            .find_by_token(gateway, token, actions)
            .await?)
    }
}

enum Joined {
    Answer(StoredAnswer),
    Retry(Box<Transaction>),
}

/// A plugin task's reply; a task that panicked or was cancelled is a trap.
fn joined(
    reply: Result<Result<Reply, GatewayCallError>, tokio::task::JoinError>,
) -> Result<Reply, GatewayCallError> {
    reply.unwrap_or_else(|e| {
        Err(GatewayCallError::Call(CallError::Trap(format!(
            "plugin task failed: {e}"
        ))))
    })
}

/// `gateway:action:sha256(natural key)`: also the key the plugin forwards to its PSP.
fn idempotency_key(req: &PaymentRequest) -> String {
    let digest = Sha256::digest(req.natural_key.as_bytes());
    format!(
        "{}:{}:{}",
        req.gateway,
        req.action.as_str(),
        &hex::encode(digest)[..32]
    )
}

pub(super) fn new_id(prefix: &str) -> String {
    let bytes: [u8; 12] = rand::random();
    format!("{prefix}_{}", hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_depend_on_gateway_action_and_natural_key() {
        let req = |gateway: &str, action, key: &str| PaymentRequest {
            gateway: gateway.into(),
            action,
            natural_key: key.into(),
            resource_id: String::new(),
            amount_cents: 1,
            currency: "EUR".into(),
            payment_source_token: None,
            parent_token: None,
            customer_token: None,
            customer_email: None,
            order: None,
            options_json: None,
            shopper: None,
        };
        let a = idempotency_key(&req("g", Action::Authorize, "p1:100"));
        assert_eq!(a, idempotency_key(&req("g", Action::Authorize, "p1:100")));
        assert_ne!(a, idempotency_key(&req("g", Action::Authorize, "p1:101")));
        assert_ne!(a, idempotency_key(&req("h", Action::Authorize, "p1:100")));
        assert_ne!(a, idempotency_key(&req("g", Action::Sale, "p1:100")));
    }
}
