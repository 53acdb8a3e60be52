//! The payment transactions aggregate: one row per operation the host was asked to
//! perform, its state, its balance against its parent, and the answer given (replayed to
//! duplicates).

use async_trait::async_trait;

use super::StoreError;
use super::outbox::NewCallback;

/// What the merchant platform asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Authorize,
    Capture,
    Void,
    Refund,
    Token,
    Sale,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Authorize => "authorize",
            Action::Capture => "capture",
            Action::Void => "void",
            Action::Refund => "refund",
            Action::Token => "token",
            Action::Sale => "sale",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        Some(match s {
            "authorize" => Action::Authorize,
            "capture" => Action::Capture,
            "void" => Action::Void,
            "refund" => Action::Refund,
            "token" => Action::Token,
            "sale" => Action::Sale,
            _ => return None,
        })
    }
}

/// Where a transaction stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The plugin call is under way (or was, when the host stopped).
    Processing,
    Approved,
    /// Waiting for the PSP (notification, sync) or for a deferred plugin call.
    Pending,
    Declined,
    /// The PSP could not be reached or the plugin failed; a retry may try again.
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Processing => "processing",
            Status::Approved => "approved",
            Status::Pending => "pending",
            Status::Declined => "declined",
            Status::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "processing" => Status::Processing,
            "approved" => Status::Approved,
            "pending" => Status::Pending,
            "declined" => Status::Declined,
            "failed" => Status::Failed,
            _ => return None,
        })
    }

    /// Counts against the balance of its parent (an answer may still be coming).
    pub fn holds_balance(self) -> bool {
        matches!(
            self,
            Status::Processing | Status::Approved | Status::Pending
        )
    }
}

/// One payment operation and the answer it got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    pub id: String,
    pub gateway: String,
    pub front: String,
    pub action: Action,
    pub idempotency_key: String,
    pub resource_id: String,
    pub parent_id: Option<String>,
    pub transaction_token: String,
    pub psp_token: Option<String>,
    pub psp_reference: Option<String>,
    pub action_id: Option<String>,
    pub amount_cents: i64,
    pub currency: String,
    pub status: Status,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub response: Option<StoredAnswer>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// An HTTP answer as given, replayed verbatim to duplicates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAnswer {
    pub status: u16,
    pub body: String,
}

/// A transaction about to be attempted.
#[derive(Debug, Clone)]
pub struct NewTransaction {
    pub id: String,
    pub gateway: String,
    pub front: String,
    pub action: Action,
    pub idempotency_key: String,
    pub resource_id: String,
    pub parent_id: Option<String>,
    pub transaction_token: String,
    pub amount_cents: i64,
    pub currency: String,
}

/// The balance a follow-up draws from, checked atomically with its insertion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BalanceRule {
    /// Capture: the authorization's amount, less captures and any void.
    Capture,
    /// Void: the authorization must not be voided or fully captured.
    Void,
    /// Refund: the capture's amount, less refunds.
    Refund,
}

/// The result of trying to start a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// Inserted: the caller performs it.
    Started(Transaction),
    /// The same idempotency key exists: replay, wait, or retry it.
    Existing(Transaction),
    /// Not enough balance left on the parent; nothing was inserted.
    InsufficientBalance { available: i64 },
}

/// How a transaction ended (or paused, for pending).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub status: Status,
    /// Replaces the token answered so far (set when the plugin answered in time).
    pub transaction_token: Option<String>,
    pub psp_token: Option<String>,
    pub psp_reference: Option<String>,
    pub action_id: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub response: Option<StoredAnswer>,
}

#[async_trait]
pub trait TransactionStore: Send + Sync {
    /// Inserts a transaction in `processing`, unless its idempotency key exists; for a
    /// follow-up, only if `amount_cents` fits the parent's balance under `rule`.
    async fn begin(
        &self,
        new: NewTransaction,
        rule: Option<BalanceRule>,
    ) -> Result<Begin, StoreError>;

    /// Takes a `failed` transaction back to `processing` for a retry; false if another
    /// caller did first or it is not failed.
    async fn retry(&self, id: &str) -> Result<bool, StoreError>;

    async fn get(&self, id: &str) -> Result<Option<Transaction>, StoreError>;

    async fn get_by_key(&self, idempotency_key: &str) -> Result<Option<Transaction>, StoreError>;

    /// The transaction a token was answered for (an authorization or sale for capture and
    /// void, a capture for refund).
    async fn find_by_token(
        &self,
        gateway: &str,
        token: &str,
        actions: &[Action],
    ) -> Result<Option<Transaction>, StoreError>;

    /// Pending transactions the PSP knows by this reference.
    async fn find_pending_by_reference(
        &self,
        gateway: &str,
        psp_reference: &str,
    ) -> Result<Vec<Transaction>, StoreError>;

    /// Records how a transaction ended; with a callback, both in one database transaction.
    /// With `only_if`, nothing happens (false) unless the row is in that status.
    async fn complete(
        &self,
        id: &str,
        completion: Completion,
        callback: Option<NewCallback>,
        only_if: Option<Status>,
    ) -> Result<bool, StoreError>;

    /// Pending transactions last touched before `before_ms`.
    async fn pending_before(
        &self,
        before_ms: i64,
        limit: i64,
    ) -> Result<Vec<Transaction>, StoreError>;

    /// The amount drawn from a parent by its children of `action` that hold balance.
    async fn drawn(&self, parent_id: &str, action: Action) -> Result<i64, StoreError>;
}
