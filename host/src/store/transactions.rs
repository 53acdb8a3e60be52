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

/// Where a transaction stands: what the gateway knows, never more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The plugin call is under way, owned by a live task (rows found so at start-up were
    /// cut off by a crash and become `Unknown`).
    Processing,
    Approved,
    /// The PSP will decide; a notification or `sync` will tell.
    Pending,
    Declined,
    /// The PSP was not reached: nothing happened there; a retry may try again.
    Failed,
    /// The call may have reached the PSP and its answer was lost. Resolved against the PSP
    /// (`sync`, or the call re-sent with the same idempotency key), never reported as a
    /// failure.
    Unknown,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Processing => "processing",
            Status::Approved => "approved",
            Status::Pending => "pending",
            Status::Declined => "declined",
            Status::Failed => "failed",
            Status::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "processing" => Status::Processing,
            "approved" => Status::Approved,
            "pending" => Status::Pending,
            "declined" => Status::Declined,
            "failed" => Status::Failed,
            "unknown" => Status::Unknown,
            _ => return None,
        })
    }

    /// Counts against the balance of its parent (an answer may still be coming).
    pub fn holds_balance(self) -> bool {
        matches!(
            self,
            Status::Processing | Status::Approved | Status::Pending | Status::Unknown
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
    /// Pending or unknown: when recovery next looks at it.
    pub next_check_at: Option<i64>,
    /// Recovery checks made so far (the backoff exponent).
    pub checks: i64,
    /// When it was escalated to an operator (unresolved past the give-up age).
    pub escalated_at: Option<i64>,
    /// The plugin call as sent (JSON), until the outcome is final.
    pub replay: Option<String>,
    /// Where the platform wants the shopper back after a shopper action (JSON), when the
    /// host routes the return through itself.
    pub shopper_return: Option<String>,
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
    /// The plugin call that will be made, kept to re-send it if its outcome is lost.
    pub replay: Option<String>,
    pub shopper_return: Option<String>,
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
    /// When recovery should look next (pending, unknown); `None` clears it.
    pub next_check_at: Option<i64>,
}

impl Completion {
    /// A completion of `status` that changes nothing else.
    pub fn status(status: Status) -> Completion {
        Completion {
            status,
            transaction_token: None,
            psp_token: None,
            psp_reference: None,
            action_id: None,
            error_code: None,
            error_message: None,
            response: None,
            next_check_at: None,
        }
    }
}

/// Pending and unknown work, for metrics and the admin listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutcomeBacklog {
    pub pending: i64,
    pub unknown: i64,
    pub escalated: i64,
    /// Creation time of the oldest unknown row.
    pub oldest_unknown_at: Option<i64>,
    pub oldest_pending_at: Option<i64>,
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

    /// The amount drawn from a parent by its children of `action` that hold balance.
    async fn drawn(&self, parent_id: &str, action: Action) -> Result<i64, StoreError>;

    /// How many children of `action` a parent has had, whatever became of them (a capture's
    /// sequence number is this plus one).
    async fn follow_ups(&self, parent_id: &str, action: Action) -> Result<i64, StoreError>;
}

/// The pending and unknown transactions that recovery works through: each row has its own
/// next check, so rows that never settle cannot starve the others.
#[async_trait]
pub trait RecoveryQueue: Send + Sync {
    /// Pending and unknown transactions whose next check is due, soonest first. The caller
    /// reschedules each (`schedule_check`); a shared store leases them until it does
    /// (PostgreSQL moves their next check on), so two processes never check one row at once.
    async fn due_for_check(&self, now_ms: i64, limit: i64) -> Result<Vec<Transaction>, StoreError>;

    /// Counts a check and sets the next one (only while pending or unknown).
    async fn schedule_check(&self, id: &str, next_check_at: i64) -> Result<(), StoreError>;

    /// The soonest next check of any pending or unknown row.
    async fn next_check_due(&self) -> Result<Option<i64>, StoreError>;

    /// Marks an unresolved row as escalated to an operator; false if it already was.
    async fn escalate(&self, id: &str, at_ms: i64) -> Result<bool, StoreError>;

    /// Gives an unknown row that has no answer yet its 202 (with `action_id`), keeping its
    /// check schedule (checking sooner would only meet the PSP still busy with the lost
    /// call); false if it has an answer already or is no longer unknown.
    async fn answer_unknown(
        &self,
        id: &str,
        action_id: &str,
        answer: StoredAnswer,
        now_ms: i64,
    ) -> Result<bool, StoreError>;

    /// `processing` rows whose call no live process is making any more become `unknown`,
    /// due for a check at `check_at`. Run at start-up (the previous process's rows) and by
    /// the reconciler (a dead replica's rows). Never this process's own rows; on SQLite,
    /// one process per file, every other owner is dead; on a shared store, only an owner
    /// whose lease ran out before `now`. Returns how many.
    async fn mark_interrupted(&self, now: i64, check_at: i64) -> Result<u64, StoreError>;

    /// Extends this process's lease on its `processing` rows to `now + CALL_LEASE_MS`.
    async fn renew_leases(&self, now: i64) -> Result<u64, StoreError>;

    /// Ends this process's leases (a clean stop with calls still running): another replica
    /// takes them over at once rather than after the lease.
    async fn release_leases(&self) -> Result<u64, StoreError>;

    /// Transactions in `status` (escalated ones: `escalated`), newest first.
    async fn list(&self, status: &str, limit: i64) -> Result<Vec<Transaction>, StoreError>;

    async fn outcome_backlog(&self) -> Result<OutcomeBacklog, StoreError>;
}
