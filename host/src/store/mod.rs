//! Durable state: payment transactions (with the answer given, for idempotent replay) and
//! the outbox of callbacks. `Store` is the one interface; `sqlite` is the embedded default.

mod group_commit;
pub mod sqlite;

use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

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

/// A callback to deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCallback {
    pub gateway: String,
    pub url: String,
    pub action_id: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A callback due for delivery, leased to one worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callback {
    pub id: i64,
    pub gateway: String,
    pub url: String,
    pub action_id: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub attempts: i64,
    pub created_at: i64,
}

/// A saved payment source charged on the merchant's request (PGM manual subscriptions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub token: String,
    pub gateway: String,
    pub shop_transaction_id: String,
    pub customer_token: Option<String>,
    pub payment_source_token: String,
    pub currency: String,
    pub interval_unit: Option<String>,
    pub interval_count: Option<i64>,
    /// `PENDING`, `ACTIVE` or `EXPIRED`.
    pub status: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("unsupported store url `{0}` (use sqlite://FILE)")]
    UnsupportedUrl(String),
    #[error("write not committed: {0}")]
    Commit(String),
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

#[async_trait]
pub trait Store: Send + Sync {
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

    /// Leases due callbacks to the caller until `lease_until_ms`.
    async fn claim_callbacks(
        &self,
        now_ms: i64,
        lease_until_ms: i64,
        limit: i64,
    ) -> Result<Vec<Callback>, StoreError>;

    async fn callback_delivered(&self, id: i64, at_ms: i64) -> Result<(), StoreError>;

    async fn callback_failed(
        &self,
        id: i64,
        next_attempt_ms: Option<i64>,
        error: &str,
        now_ms: i64,
    ) -> Result<(), StoreError>;

    /// Callbacks not yet delivered nor given up on.
    async fn callbacks_waiting(&self) -> Result<i64, StoreError>;

    /// Queues a callback on its own (not tied to a state change).
    async fn enqueue_callback(&self, callback: NewCallback) -> Result<(), StoreError>;

    /// The amount drawn from a parent by its children of `action` that hold balance.
    async fn drawn(&self, parent_id: &str, action: Action) -> Result<i64, StoreError>;

    /// Saves a subscription; the existing one if its (gateway, shop transaction id) exists.
    async fn save_subscription(&self, s: Subscription) -> Result<Subscription, StoreError>;

    async fn subscription(
        &self,
        gateway: &str,
        token: &str,
    ) -> Result<Option<Subscription>, StoreError>;

    /// Sets a subscription's status; false if there is no such subscription.
    async fn set_subscription_status(
        &self,
        gateway: &str,
        token: &str,
        status: &str,
    ) -> Result<bool, StoreError>;
}

/// Opens the store a URL names, running migrations.
pub async fn open(url: &str) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        Ok(std::sync::Arc::new(sqlite::SqliteStore::open(path).await?))
    } else {
        Err(StoreError::UnsupportedUrl(
            url.split("://").next().unwrap_or("").to_owned() + "://...",
        ))
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
