//! PostgreSQL storage of manual subscriptions.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::PostgresStore;
use crate::store::subscriptions::*;
use crate::store::{StoreError, now_ms};

const SUBSCRIPTION_COLUMNS: &str = "token, gateway, shop_transaction_id, customer_token, \
    payment_source_token, currency, interval_unit, interval_count, status";

#[async_trait]
impl SubscriptionStore for PostgresStore {
    async fn save_subscription(&self, sub: Subscription) -> Result<Subscription, StoreError> {
        let result = async {
            let now = now_ms();
            // A concurrent save of the same (gateway, shop transaction id) waits here and
            // then reads the row the other one committed.
            sqlx::query(
                "INSERT INTO subscriptions (token, gateway, shop_transaction_id, \
                 customer_token, payment_source_token, currency, interval_unit, \
                 interval_count, status, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) \
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
            .execute(&self.pool)
            .await?;
            let row = sqlx::query(&format!(
                "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions \
                 WHERE gateway = $1 AND shop_transaction_id = $2"
            ))
            .bind(&sub.gateway)
            .bind(&sub.shop_transaction_id)
            .fetch_one(&self.pool)
            .await?;
            row_to_subscription(&row)
        }
        .await;
        self.written(result)
    }

    async fn subscription(
        &self,
        gateway: &str,
        token: &str,
    ) -> Result<Option<Subscription>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE gateway = $1 AND token = $2"
        ))
        .bind(gateway)
        .bind(token)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(row_to_subscription).transpose()
    }

    async fn set_subscription_status(
        &self,
        gateway: &str,
        token: &str,
        status: &str,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE subscriptions SET status = $1, updated_at = $2 \
             WHERE gateway = $3 AND token = $4",
        )
        .bind(status)
        .bind(now_ms())
        .bind(gateway)
        .bind(token)
        .execute(&self.pool)
        .await;
        self.written(result.map(|d| d.rows_affected() == 1).map_err(Into::into))
    }
}

fn row_to_subscription(row: &PgRow) -> Result<Subscription, StoreError> {
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
