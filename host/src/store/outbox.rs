//! The outbox aggregate: callbacks to the merchant platform, queued in the same database
//! transaction as the state change they announce and delivered at least once. A callback
//! is waiting, delivered or dead (given up on, kept for an operator to replay); callbacks
//! sharing an ordering key are delivered in the order they were queued.

use async_trait::async_trait;
use serde::Serialize;

use super::StoreError;

/// A callback to deliver. The body is stored unsigned: the front named here signs it when
/// it is sent, with the secret the gateway has then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCallback {
    pub gateway: String,
    /// The front (`Front::name`) that shapes and signs it.
    pub front: String,
    /// Callbacks with the same key (the transaction id) are delivered in queue order.
    pub ordering_key: Option<String>,
    pub url: String,
    pub action_id: Option<String>,
    /// Unsigned headers (content type); the signature is added at send time.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A callback due for delivery, leased to one worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callback {
    pub id: i64,
    pub gateway: String,
    /// `None` for rows queued before signing moved to send time: their stored headers
    /// carry the signature already.
    pub front: Option<String>,
    pub url: String,
    pub action_id: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Attempts since it was queued or last replayed.
    pub attempts: i64,
    /// When it was queued, or last replayed: the give-up age counts from here.
    pub age_from: i64,
}

/// Where a callback is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallbackState {
    Waiting,
    Delivered,
    Dead,
}

impl CallbackState {
    pub fn parse(s: &str) -> Option<CallbackState> {
        match s {
            "waiting" => Some(CallbackState::Waiting),
            "delivered" => Some(CallbackState::Delivered),
            "dead" => Some(CallbackState::Dead),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CallbackState::Waiting => "waiting",
            CallbackState::Delivered => "delivered",
            CallbackState::Dead => "dead",
        }
    }
}

/// What an operator sees of a callback: never its headers (a legacy row's signature) nor
/// its body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallbackSummary {
    pub id: i64,
    pub gateway: String,
    pub url: String,
    pub action_id: Option<String>,
    pub state: CallbackState,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub delivered_at: Option<i64>,
    pub dead_at: Option<i64>,
}

/// Callbacks still owed to the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CallbackCounts {
    /// Not delivered: waiting for an attempt or dead.
    pub undelivered: i64,
    /// Given up on: waiting for an operator's replay.
    pub dead: i64,
    /// When the oldest callback not delivered (dead ones included) was queued.
    pub oldest_undelivered_at: Option<i64>,
}

/// What a replay request found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// Dead before, due now.
    Requeued,
    NotFound,
    /// Waiting or delivered: nothing to replay.
    NotDead(CallbackState),
}

#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Leases due callbacks to the caller until `lease_until_ms`. A callback is not due
    /// while an earlier one with the same ordering key is still waiting.
    async fn claim_callbacks(
        &self,
        now_ms: i64,
        lease_until_ms: i64,
        limit: i64,
    ) -> Result<Vec<Callback>, StoreError>;

    async fn callback_delivered(&self, id: i64, at_ms: i64) -> Result<(), StoreError>;

    /// Records a failed attempt: due again at `next_attempt_ms`, or dead (`None`).
    async fn callback_failed(
        &self,
        id: i64,
        next_attempt_ms: Option<i64>,
        error: &str,
        now_ms: i64,
    ) -> Result<(), StoreError>;

    /// Callbacks not yet delivered nor given up on.
    async fn callbacks_waiting(&self) -> Result<i64, StoreError>;

    /// Undelivered and dead callbacks, read together.
    async fn callback_counts(&self) -> Result<CallbackCounts, StoreError>;

    /// The newest `limit` callbacks in `state`, newest first.
    async fn list_callbacks(
        &self,
        state: CallbackState,
        limit: i64,
    ) -> Result<Vec<CallbackSummary>, StoreError>;

    /// Puts a dead callback back as due at `now_ms`, its attempts and give-up age reset.
    async fn replay_callback(&self, id: i64, now_ms: i64) -> Result<Replay, StoreError>;

    /// Queues a callback on its own (not tied to a state change).
    async fn enqueue_callback(&self, callback: NewCallback) -> Result<(), StoreError>;
}
