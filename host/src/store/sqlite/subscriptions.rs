//! SQLite storage of manual subscriptions.

use async_trait::async_trait;
use futures::FutureExt;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::SqliteStore;
use crate::store::subscriptions::*;
use crate::store::{StoreError, now_ms};

#[async_trait]
impl SubscriptionStore for SqliteStore {
    async fn save_subscription(&self, sub: Subscription) -> Result<Subscription, StoreError> {
        self.writer
            .submit(move |conn| {
                let sub = sub.clone();
                async move {
                    let now = now_ms();
                    sqlx::query(
                        "INSERT INTO subscriptions (token, gateway, shop_transaction_id, \
                         customer_token, payment_source_token, currency, interval_unit, \
                         interval_count, status, created_at, updated_at) \
                         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                         ON CONFLICT (gateway, shop_transaction_id) DO NOTHING",
                    )
                    .bind(&sub.token)
                    .bind(&sub.gateway)
                    .bind(&sub.shop_transaction_id)
                    .bind(&sub.customer_token)
                    .bind(&sub.payment_source_token)
                    .bind(&sub.currency)
                    .bind(&sub.interval_unit)
                    .bind(sub.interval_count)
                    .bind(&sub.status)
                    .bind(now)
                    .bind(now)
                    .execute(&mut *conn)
                    .await?;
                    let row = sqlx::query(&format!(
                        "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions \
                         WHERE gateway = ? AND shop_transaction_id = ?"
                    ))
                    .bind(&sub.gateway)
                    .bind(&sub.shop_transaction_id)
                    .fetch_one(&mut *conn)
                    .await?;
                    row_to_subscription(&row)
                }
                .boxed()
            })
            .await
    }

    async fn subscription(
        &self,
        gateway: &str,
        token: &str,
    ) -> Result<Option<Subscription>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE gateway = ? AND token = ?"
        ))
        .bind(gateway)
        .bind(token)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(row_to_subscription).transpose()
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
                let gateway = gateway.clone();
                let token = token.clone();
                let status = status.clone();
                async move {
                    let done = sqlx::query(
                        "UPDATE subscriptions SET status = ?, updated_at = ? \
                         WHERE gateway = ? AND token = ?",
                    )
                    .bind(&status)
                    .bind(now_ms())
                    .bind(&gateway)
                    .bind(&token)
                    .execute(&mut *conn)
                    .await?;
                    Ok(done.rows_affected() == 1)
                }
                .boxed()
            })
            .await
    }
}

const SUBSCRIPTION_COLUMNS: &str = "token, gateway, shop_transaction_id, customer_token, \
    payment_source_token, currency, interval_unit, interval_count, status";

fn row_to_subscription(row: &SqliteRow) -> Result<Subscription, StoreError> {
    Ok(Subscription {
        token: row.try_get("token")?,
        gateway: row.try_get("gateway")?,
        shop_transaction_id: row.try_get("shop_transaction_id")?,
        customer_token: row.try_get("customer_token")?,
        payment_source_token: row.try_get("payment_source_token")?,
        currency: row.try_get("currency")?,
        interval_unit: row.try_get("interval_unit")?,
        interval_count: row.try_get("interval_count")?,
        status: row.try_get("status")?,
    })
}
