//! SQLite storage of manual subscriptions.

use async_trait::async_trait;
use rusqlite::params;

use super::SqliteStore;
use crate::store::subscriptions::*;
use crate::store::{StoreError, now_ms};

#[async_trait]
impl SubscriptionStore for SqliteStore {
    async fn save_subscription(&self, sub: Subscription) -> Result<Subscription, StoreError> {
        self.writer
            .submit(move |conn| {
                let now = now_ms();
                conn.prepare_cached(
                    "INSERT INTO subscriptions (token, gateway, shop_transaction_id, \
                     customer_token, payment_source_token, currency, interval_unit, \
                     interval_count, status, created_at, updated_at) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                     ON CONFLICT (gateway, shop_transaction_id) DO NOTHING",
                )?
                .execute(params![
                    sub.token,
                    sub.gateway,
                    sub.shop_transaction_id,
                    sub.customer_token,
                    sub.payment_source_token,
                    sub.currency,
                    sub.interval_unit,
                    sub.interval_count,
                    sub.status,
                    now,
                    now,
                ])?;
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions \
                     WHERE gateway = ? AND shop_transaction_id = ?"
                ))?;
                let mut rows = stmt.query(params![sub.gateway, sub.shop_transaction_id])?;
                // The row exists: inserted just now, or the one the insert gave way to.
                let row = rows.next()?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
                row_to_subscription(row)
            })
            .await
    }

    async fn subscription(
        &self,
        gateway: &str,
        token: &str,
    ) -> Result<Option<Subscription>, StoreError> {
        let (gateway, token) = (gateway.to_owned(), token.to_owned());
        self.reader
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE gateway = ? AND token = ?"
                ))?;
                let mut rows = stmt.query(params![gateway, token])?;
                rows.next()?.map(row_to_subscription).transpose()
            })
            .await
    }

    async fn set_subscription_status(
        &self,
        gateway: &str,
        token: &str,
        status: &str,
    ) -> Result<bool, StoreError> {
        let (gateway, token, status) = (gateway.to_owned(), token.to_owned(), status.to_owned());
        self.writer
            .submit(move |conn| {
                let done = conn
                    .prepare_cached(
                        "UPDATE subscriptions SET status = ?, updated_at = ? \
                         WHERE gateway = ? AND token = ?",
                    )?
                    .execute(params![status, now_ms(), gateway, token])?;
                Ok(done == 1)
            })
            .await
    }
}

const SUBSCRIPTION_COLUMNS: &str = "token, gateway, shop_transaction_id, customer_token, \
    payment_source_token, currency, interval_unit, interval_count, status";

fn row_to_subscription(row: &rusqlite::Row<'_>) -> Result<Subscription, StoreError> {
    Ok(Subscription {
        token: row.get("token")?,
        gateway: row.get("gateway")?,
        shop_transaction_id: row.get("shop_transaction_id")?,
        customer_token: row.get("customer_token")?,
        payment_source_token: row.get("payment_source_token")?,
        currency: row.get("currency")?,
        interval_unit: row.get("interval_unit")?,
        interval_count: row.get("interval_count")?,
        status: row.get("status")?,
    })
}
