//! SQLite storage of the outbox: queueing, leasing due callbacks, recording attempts.

use async_trait::async_trait;
use futures::FutureExt;
use sqlx::{Row, SqliteConnection};

use super::SqliteStore;
use crate::store::outbox::*;
use crate::store::{StoreError, now_ms};

#[async_trait]
impl OutboxStore for SqliteStore {
    async fn claim_callbacks(
        &self,
        now_ms: i64,
        lease_until_ms: i64,
        limit: i64,
    ) -> Result<Vec<Callback>, StoreError> {
        self.writer
            .submit(move |conn| {
                async move { claim_callbacks(conn, now_ms, lease_until_ms, limit).await }.boxed()
            })
            .await
    }

    async fn callback_delivered(&self, id: i64, at_ms: i64) -> Result<(), StoreError> {
        self.writer
            .submit(move |conn| {
                async move {
                    sqlx::query(
                        "UPDATE outbox SET delivered_at = ?, attempts = attempts + 1 WHERE id = ?",
                    )
                    .bind(at_ms)
                    .bind(id)
                    .execute(&mut *conn)
                    .await?;
                    Ok(())
                }
                .boxed()
            })
            .await
    }

    async fn callback_failed(
        &self,
        id: i64,
        next_attempt_ms: Option<i64>,
        error: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let error = error.to_owned();
        self.writer
            .submit(move |conn| {
                let error = error.clone();
                async move {
                    match next_attempt_ms {
                        Some(next) => sqlx::query(
                            "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, \
                             last_error = ? WHERE id = ?",
                        )
                        .bind(next)
                        .bind(&error)
                        .bind(id),
                        None => sqlx::query(
                            "UPDATE outbox SET attempts = attempts + 1, dead_at = ?, \
                             last_error = ? WHERE id = ?",
                        )
                        .bind(now_ms)
                        .bind(&error)
                        .bind(id),
                    }
                    .execute(&mut *conn)
                    .await?;
                    Ok(())
                }
                .boxed()
            })
            .await
    }

    async fn callbacks_waiting(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL AND dead_at IS NULL",
        )
        .fetch_one(&self.reader)
        .await?)
    }

    async fn enqueue_callback(&self, cb: NewCallback) -> Result<(), StoreError> {
        self.writer
            .submit(move |conn| {
                let cb = cb.clone();
                async move {
                    insert_callback(conn, &cb, now_ms()).await?;
                    Ok(())
                }
                .boxed()
            })
            .await
    }
}

pub(super) async fn insert_callback(
    conn: &mut SqliteConnection,
    cb: &NewCallback,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO outbox (gateway, url, action_id, headers, body, next_attempt_at, \
         created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&cb.gateway)
    .bind(&cb.url)
    .bind(&cb.action_id)
    .bind(serde_json::to_string(&cb.headers).expect("headers serialise"))
    .bind(&cb.body)
    .bind(now)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn claim_callbacks(
    conn: &mut SqliteConnection,
    now_ms: i64,
    lease_until_ms: i64,
    limit: i64,
) -> Result<Vec<Callback>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, gateway, url, action_id, headers, body, attempts, created_at FROM outbox \
         WHERE delivered_at IS NULL AND dead_at IS NULL AND next_attempt_at <= ? \
         ORDER BY next_attempt_at, id LIMIT ?",
    )
    .bind(now_ms)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    let mut claimed = Vec::with_capacity(rows.len());
    for row in rows {
        let id: i64 = row.try_get("id")?;
        // The lease: if this worker dies mid-delivery, the row is due again after it.
        sqlx::query("UPDATE outbox SET next_attempt_at = ? WHERE id = ?")
            .bind(lease_until_ms)
            .bind(id)
            .execute(&mut *conn)
            .await?;
        let headers: String = row.try_get("headers")?;
        claimed.push(Callback {
            id,
            gateway: row.try_get("gateway")?,
            url: row.try_get("url")?,
            action_id: row.try_get("action_id")?,
            headers: serde_json::from_str(&headers)
                .map_err(|e| StoreError::Corrupt(format!("outbox headers: {e}")))?,
            body: row.try_get("body")?,
            attempts: row.try_get("attempts")?,
            created_at: row.try_get("created_at")?,
        });
    }
    Ok(claimed)
}
