//! The subscriptions aggregate: payment sources saved at the PSP and charged on the
//! merchant's request (Mia-Platform PGM's manual subscriptions).

use async_trait::async_trait;

use super::StoreError;

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

#[async_trait]
pub trait SubscriptionStore: Send + Sync {
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
