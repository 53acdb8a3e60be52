//! The payment engine that every protocol front shares: idempotency (a natural key per
//! operation, stored answers replayed, concurrent duplicates joined), balances, the plugin
//! call with its slow-PSP deferral, durable outcomes, and final outcomes that arrive later
//! (deferred calls, PSP notifications, reconciliation) turned into outbox callbacks.
//!
//! A front parses its protocol into a `PaymentRequest` and renders `PaymentResult`s and
//! callbacks through its `Front` implementation; the engine never sees protocol JSON.
//! `settle` holds the pure mapping of plugin replies, `recovery` the outcomes that arrive
//! later (PSP events, reconciliation).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::Notify;

mod recovery;
mod settle;

use crate::config::{Config, GatewayConfig};
use crate::plugins::types::Order;
use crate::plugins::{CallError, GatewayCallError, Plugins, Reply};
use crate::store::{
    Action, BalanceRule, Begin, Completion, NewCallback, NewTransaction, Status, Store, StoreError,
    StoredAnswer, Transaction, now_ms,
};
pub use recovery::reconcile_forever;
use settle::{build_call, log_result, settle};

/// An operation, parsed by a front.
#[derive(Debug, Clone)]
pub struct PaymentRequest {
    pub gateway: String,
    pub action: Action,
    /// What makes two requests the same operation (see the front's reference).
    pub natural_key: String,
    /// The platform's id of the resource acted upon.
    pub resource_id: String,
    pub amount_cents: u64,
    pub currency: String,
    /// Authorize, sale and token: the PSP token of the payment source.
    pub payment_source_token: Option<String>,
    /// Capture, void, refund: the token answered for the transaction acted upon.
    pub parent_token: Option<String>,
    pub customer_token: Option<String>,
    pub customer_email: Option<String>,
    pub order: Option<Order>,
    pub options_json: Option<String>,
}

/// What happened, for the front to render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentResult {
    Approved {
        transaction_token: String,
        amount_cents: u64,
        messages: Vec<String>,
        metadata: Vec<(String, String)>,
    },
    Pending {
        transaction_token: String,
        amount_cents: u64,
        action_id: String,
        metadata: Vec<(String, String)>,
    },
    Declined {
        transaction_token: Option<String>,
        amount_cents: u64,
        code: String,
        message: String,
    },
    Tokenized {
        customer_token: Option<String>,
        payment_source_token: String,
    },
    /// Nothing was done: the request is wrong for the state (unknown token, balance).
    Refused { code: RefusalCode, message: String },
    /// The PSP or the plugin failed; a retry may succeed.
    Failed { kind: FailureKind, message: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalCode {
    UnknownGateway,
    UnknownTransaction,
    NotApproved,
    AmountExceedsBalance,
    InvalidRequest,
}

impl RefusalCode {
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalCode::UnknownGateway => "unknown_gateway",
            RefusalCode::UnknownTransaction => "unknown_transaction",
            RefusalCode::NotApproved => "transaction_not_approved",
            RefusalCode::AmountExceedsBalance => "amount_exceeds_balance",
            RefusalCode::InvalidRequest => "invalid_request",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The plugin does not implement the operation.
    Unsupported,
    /// The PSP did not answer in time (plugin-reported or the host's hard deadline).
    Timeout,
    /// Unreachable PSP, bad response, misconfiguration, plugin trap: an outage.
    Unavailable,
    /// A duplicate is still being processed elsewhere.
    InProgress,
}

impl FailureKind {
    pub fn code(self) -> &'static str {
        match self {
            FailureKind::Unsupported => "unsupported_operation",
            FailureKind::Timeout => "psp_timeout",
            FailureKind::Unavailable => "psp_unavailable",
            FailureKind::InProgress => "in_progress",
        }
    }
}

/// The final outcome of something answered `pending` earlier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalOutcome {
    pub succeeded: bool,
    pub message: String,
    pub error_code: Option<String>,
    pub error_detail: Option<String>,
}

/// A protocol front: how results and callbacks look on its wire.
pub trait Front: Send + Sync {
    /// Stored with each transaction, to find the front again for its callbacks.
    fn name(&self) -> &'static str;
    fn render(&self, action: Action, result: &PaymentResult) -> StoredAnswer;
    /// The callback announcing a final outcome, if the gateway has somewhere to send it.
    /// Its body is stored unsigned; `sign` runs when it is sent.
    fn callback(
        &self,
        gateway: &GatewayConfig,
        txn: &Transaction,
        outcome: &FinalOutcome,
    ) -> Option<NewCallback>;
    /// Headers authenticating `body` (the exact bytes about to be sent), computed with the
    /// gateway's configuration at send time so a rotated secret applies to queued
    /// callbacks too. None by default.
    fn sign(
        &self,
        _gateway: &GatewayConfig,
        _body: &[u8],
    ) -> Result<Vec<(String, String)>, SignError> {
        Ok(Vec::new())
    }
}

/// Why a callback cannot be signed when it is due: it becomes a dead letter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("gateway `{0}` has no shared_secret to sign callbacks with")]
    NoSecret(String),
}

#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

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
    /// Deferred calls still running here; the reconciler leaves them alone.
    in_flight: Mutex<std::collections::HashSet<String>>,
}

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
                in_flight: Mutex::new(Default::default()),
            }),
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    pub fn plugins(&self) -> &Arc<Plugins> {
        &self.inner.plugins
    }

    /// Performs an operation once, however often it is asked for, and answers as `front`
    /// renders it.
    pub async fn execute(
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
        let (parent, rule) = match self.parent(&req).await? {
            Ok(found) => found,
            Err((code, message)) => return refuse(code, message),
        };
        let key = idempotency_key(&req);
        let id = new_id("txn");
        let new = NewTransaction {
            id: id.clone(),
            gateway: req.gateway.clone(),
            front: front.name().to_owned(),
            action: req.action,
            idempotency_key: key.clone(),
            resource_id: req.resource_id.clone(),
            parent_id: parent.as_ref().map(|p| p.id.clone()),
            // Replaced by the plugin's token when it answers in time.
            transaction_token: format!("pgw_{}", &id[4..]),
            amount_cents: req.amount_cents as i64,
            currency: req.currency.clone(),
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
                match self.join_existing(front, gateway, existing, &req).await? {
                    Joined::Answer(answer) => return Ok(answer),
                    Joined::Retry(txn) => *txn,
                }
            }
        };
        self.perform(front, gateway, txn, parent, req).await
    }

    /// A request whose key exists: replay its answer, wait for it, or retry a failure.
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
        parent: Option<Transaction>,
        req: PaymentRequest,
    ) -> Result<StoredAnswer, PaymentError> {
        let call = build_call(&txn, parent.as_ref(), &req);
        let plugins = self.inner.plugins.clone();
        let gateway_id = req.gateway.clone();
        let mut running = tokio::spawn(async move { plugins.call(&gateway_id, call).await });
        // The token action cannot be asynchronous: it waits up to the hard deadline.
        let deferrable = req.action != Action::Token;
        let reply = if deferrable {
            match tokio::time::timeout(Duration::from_millis(gateway.async_after_ms), &mut running)
                .await
            {
                Ok(joined) => joined,
                Err(_) => return self.defer(front, gateway, txn, running).await,
            }
        } else {
            running.await
        };
        let reply = reply.unwrap_or_else(|e| {
            Err(GatewayCallError::Call(CallError::Trap(format!(
                "plugin task failed: {e}"
            ))))
        });
        let (result, completion) = settle(&txn, reply, None);
        let answer = front.render(txn.action, &result);
        let completion = Completion {
            response: Some(answer.clone()),
            ..completion
        };
        self.inner
            .store
            .complete(&txn.id, completion, None, None)
            .await?;
        log_result(&txn, &result);
        Ok(answer)
    }

    /// Answers 202 now and finishes the call in the background.
    async fn defer(
        &self,
        front: &Arc<dyn Front>,
        gateway: &GatewayConfig,
        txn: Transaction,
        running: tokio::task::JoinHandle<Result<Reply, GatewayCallError>>,
    ) -> Result<StoredAnswer, PaymentError> {
        let action_id = new_id("act");
        let result = PaymentResult::Pending {
            transaction_token: txn.transaction_token.clone(),
            amount_cents: txn.amount_cents as u64,
            action_id: action_id.clone(),
            metadata: vec![("deferred".into(), "true".into())],
        };
        let answer = front.render(txn.action, &result);
        let completion = Completion {
            status: Status::Pending,
            transaction_token: None,
            psp_token: None,
            psp_reference: None,
            action_id: Some(action_id.clone()),
            error_code: None,
            error_message: None,
            response: Some(answer.clone()),
        };
        self.inner
            .store
            .complete(&txn.id, completion, None, None)
            .await?;
        tracing::info!(gateway = %txn.gateway, action = txn.action.as_str(), %action_id, after_ms = gateway.async_after_ms, "slow psp: answered 202, finishing in background");
        self.inner
            .in_flight
            .lock()
            .expect("in-flight")
            .insert(txn.id.clone());
        let engine = self.clone();
        let front = front.clone();
        let gateway = gateway.clone();
        tokio::spawn(async move {
            let reply = running.await.unwrap_or_else(|e| {
                Err(GatewayCallError::Call(CallError::Trap(format!(
                    "plugin task failed: {e}"
                ))))
            });
            let (result, completion) = settle(&txn, reply, Some(action_id.clone()));
            log_result(&txn, &result);
            let outcome = match &result {
                PaymentResult::Approved { .. } => Some(FinalOutcome {
                    succeeded: true,
                    message: format!("{} approved", txn.action.as_str()),
                    error_code: None,
                    error_detail: None,
                }),
                PaymentResult::Pending { .. } => None,
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
                PaymentResult::Tokenized { .. } | PaymentResult::Refused { .. } => None,
            };
            // A failure after a 202 is final for this transaction: CL sees it through the
            // callback, and a retry is a new operation on its side.
            let completion = Completion {
                status: if completion.status == Status::Failed {
                    Status::Declined
                } else {
                    completion.status
                },
                ..completion
            };
            let mut updated = txn.clone();
            updated.psp_reference = completion.psp_reference.clone().or(updated.psp_reference);
            // `txn` was read before the 202: the callback must carry the action id answered then.
            updated.action_id = Some(action_id);
            let callback = outcome
                .as_ref()
                .and_then(|o| front.callback(&gateway, &updated, o));
            if outcome.is_some() && callback.is_none() {
                tracing::error!(gateway = %txn.gateway, "the final outcome of a 202 cannot be reported: the gateway needs webhook_endpoint_url and shared_secret");
            }
            match engine
                .inner
                .store
                .complete(&txn.id, completion, callback, Some(Status::Pending))
                .await
            {
                Ok(_) => engine.inner.outbox_wake.notify_one(),
                Err(e) => tracing::error!(txn = %txn.id, "cannot record deferred outcome: {e}"),
            }
            engine
                .inner
                .in_flight
                .lock()
                .expect("in-flight")
                .remove(&txn.id);
        });
        Ok(answer)
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

fn new_id(prefix: &str) -> String {
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
        };
        let a = idempotency_key(&req("g", Action::Authorize, "p1:100"));
        assert_eq!(a, idempotency_key(&req("g", Action::Authorize, "p1:100")));
        assert_ne!(a, idempotency_key(&req("g", Action::Authorize, "p1:101")));
        assert_ne!(a, idempotency_key(&req("h", Action::Authorize, "p1:100")));
        assert_ne!(a, idempotency_key(&req("g", Action::Sale, "p1:100")));
    }
}
