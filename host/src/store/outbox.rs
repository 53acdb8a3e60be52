//! The outbox aggregate: callbacks to the merchant platform, queued in the same database
//! transaction as the state change they announce and delivered at least once.

use async_trait::async_trait;

use super::StoreError;

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

#[async_trait]
pub trait OutboxStore: Send + Sync {
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
}
