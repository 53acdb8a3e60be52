//! Durable state, split by aggregate: payment `transactions`, the `outbox` of callbacks and
//! `subscriptions`. `Store` is the one interface the engine holds; `sqlite` is the embedded
//! default, `postgres` the database several replicas share.

mod group_commit;
pub mod outbox;
#[cfg(test)]
mod pg_test_cluster;
pub mod postgres;
pub mod sqlite;
#[cfg(test)]
mod store_tests;
pub mod subscriptions;
pub mod transactions;

use std::time::{SystemTime, UNIX_EPOCH};

pub use outbox::{Callback, NewCallback, OutboxStore};
pub use subscriptions::{Subscription, SubscriptionStore};
pub use transactions::{
    Action, BalanceRule, Begin, Completion, NewTransaction, OutcomeBacklog, RecoveryQueue, Status,
    StoredAnswer, Transaction, TransactionStore,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("unsupported store url `{0}` (use sqlite://FILE or postgres://USER@HOST/DB)")]
    UnsupportedUrl(String),
    #[error("the store cannot take more writes now (its queue is full)")]
    Overloaded,
    #[error("write not committed: {0}")]
    Commit(String),
    #[error("corrupt row: {0}")]
    Corrupt(String),
}
/// Whether the store can take writes now, for `/healthz` and `/readyz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Health {
    /// False once nothing can be written any more (the writer stopped): restart the process.
    pub writer_alive: bool,
    /// True while the last write attempted did not commit (full disk, I/O error); the
    /// store recovers by itself when the cause goes away.
    pub writes_failing: bool,
}

pub trait HealthCheck {
    fn health(&self) -> Health;
}

/// Every aggregate's storage, behind one object.
pub trait Store:
    TransactionStore + RecoveryQueue + OutboxStore + SubscriptionStore + HealthCheck
{
}

impl<T: TransactionStore + RecoveryQueue + OutboxStore + SubscriptionStore + HealthCheck> Store
    for T
{
}

/// Opens the store a URL names, running migrations.
pub async fn open(url: &str) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        Ok(std::sync::Arc::new(sqlite::SqliteStore::open(path).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(std::sync::Arc::new(
            postgres::PostgresStore::open(url).await?,
        ))
    } else {
        Err(StoreError::UnsupportedUrl(
            url.split("://").next().unwrap_or("").to_owned() + "://...",
        ))
    }
}

/// How long a process's claim on the calls it makes lasts without renewal. The owner
/// renews every third of it; another replica takes a call over only past it.
pub const CALL_LEASE_MS: i64 = 30_000;

/// A fresh id for this process's store handle: the owner of its `processing` rows.
fn new_instance_id() -> String {
    use rand::Rng;
    let n: u128 = rand::rng().random();
    format!("inst_{n:032x}")
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
