//! SQLite storage of the outbox: queueing, leasing due callbacks in per-key order,
//! recording attempts, counting, listing and replaying dead letters.

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

    async fn callback_counts(&self) -> Result<CallbackCounts, StoreError> {
        let row = sqlx::query(
            "SELECT COALESCE(SUM(delivered_at IS NULL), 0) AS undelivered, \
             COALESCE(SUM(dead_at IS NOT NULL), 0) AS dead, MIN(created_at) AS oldest \
             FROM outbox WHERE delivered_at IS NULL",
        )
        .fetch_one(&self.reader)
        .await?;
        Ok(CallbackCounts {
            undelivered: row.try_get("undelivered")?,
            dead: row.try_get("dead")?,
            oldest_undelivered_at: row.try_get("oldest")?,
        })
    }

    async fn list_callbacks(
        &self,
        state: CallbackState,
        limit: i64,
    ) -> Result<Vec<CallbackSummary>, StoreError> {
        let filter = match state {
            CallbackState::Waiting => "delivered_at IS NULL AND dead_at IS NULL",
            CallbackState::Delivered => "delivered_at IS NOT NULL",
            CallbackState::Dead => "dead_at IS NOT NULL",
        };
        let rows = sqlx::query(&format!(
            "SELECT id, gateway, url, action_id, attempts, last_error, created_at, \
             delivered_at, dead_at FROM outbox WHERE {filter} ORDER BY id DESC LIMIT ?"
        ))
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(CallbackSummary {
                    id: row.try_get("id")?,
                    gateway: row.try_get("gateway")?,
                    url: row.try_get("url")?,
                    action_id: row.try_get("action_id")?,
                    state,
                    attempts: row.try_get("attempts")?,
                    last_error: row.try_get("last_error")?,
                    created_at: row.try_get("created_at")?,
                    delivered_at: row.try_get("delivered_at")?,
                    dead_at: row.try_get("dead_at")?,
                })
            })
            .collect()
    }

    async fn replay_callback(&self, id: i64, now_ms: i64) -> Result<Replay, StoreError> {
        self.writer
            .submit(move |conn| async move { replay(conn, id, now_ms).await }.boxed())
            .await
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
        "INSERT INTO outbox (gateway, front, ordering_key, url, action_id, headers, body, \
         next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&cb.gateway)
    .bind(&cb.front)
    .bind(&cb.ordering_key)
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
    // Per-key order: a row waits while an earlier row of its key is neither delivered nor
    // dead, so at most the first waiting row of each key is ever claimed.
    let rows = sqlx::query(
        "SELECT id, gateway, front, url, action_id, headers, body, attempts, \
         COALESCE(replayed_at, created_at) AS age_from FROM outbox AS o \
         WHERE delivered_at IS NULL AND dead_at IS NULL AND next_attempt_at <= ? \
         AND (ordering_key IS NULL OR NOT EXISTS (SELECT 1 FROM outbox AS e \
              WHERE e.ordering_key = o.ordering_key AND e.id < o.id \
              AND e.delivered_at IS NULL AND e.dead_at IS NULL)) \
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
            front: row.try_get("front")?,
            url: row.try_get("url")?,
            action_id: row.try_get("action_id")?,
            headers: serde_json::from_str(&headers)
                .map_err(|e| StoreError::Corrupt(format!("outbox headers: {e}")))?,
            body: row.try_get("body")?,
            attempts: row.try_get("attempts")?,
            age_from: row.try_get("age_from")?,
        });
    }
    Ok(claimed)
}

async fn replay(conn: &mut SqliteConnection, id: i64, now_ms: i64) -> Result<Replay, StoreError> {
    let row = sqlx::query("SELECT delivered_at, dead_at FROM outbox WHERE id = ?")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else {
        return Ok(Replay::NotFound);
    };
    let delivered: Option<i64> = row.try_get("delivered_at")?;
    let dead: Option<i64> = row.try_get("dead_at")?;
    match (delivered, dead) {
        (Some(_), _) => return Ok(Replay::NotDead(CallbackState::Delivered)),
        (None, None) => return Ok(Replay::NotDead(CallbackState::Waiting)),
        (None, Some(_)) => {}
    }
    // `last_error` stays until the next attempt, so the operator still sees why it died.
    sqlx::query(
        "UPDATE outbox SET dead_at = NULL, attempts = 0, next_attempt_at = ?, replayed_at = ? \
         WHERE id = ?",
    )
    .bind(now_ms)
    .bind(now_ms)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(Replay::Requeued)
}
