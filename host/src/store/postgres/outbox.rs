//! PostgreSQL storage of the outbox: queueing, leasing due callbacks in per-key order to
//! one process at a time (`SKIP LOCKED`), recording attempts, counting, listing and
//! replaying dead letters.

use async_trait::async_trait;
use sqlx::{PgConnection, Row};

use super::PostgresStore;
use crate::store::outbox::*;
use crate::store::{StoreError, now_ms};

#[async_trait]
impl OutboxStore for PostgresStore {
    async fn claim_callbacks(
        &self,
        now_ms: i64,
        lease_until_ms: i64,
        limit: i64,
    ) -> Result<Vec<Callback>, StoreError> {
        let result = claim_callbacks(&self.pool, now_ms, lease_until_ms, limit).await;
        self.written(result)
    }

    async fn callback_delivered(&self, id: i64, at_ms: i64) -> Result<(), StoreError> {
        let result = sqlx::query(
            "UPDATE outbox SET delivered_at = $1, attempts = attempts + 1 WHERE id = $2",
        )
        .bind(at_ms)
        .bind(id)
        .execute(&self.pool)
        .await;
        self.written(result.map(|_| ()).map_err(Into::into))
    }

    async fn callback_failed(
        &self,
        id: i64,
        next_attempt_ms: Option<i64>,
        error: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let query = match next_attempt_ms {
            Some(next) => sqlx::query(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $1, \
                 last_error = $2 WHERE id = $3",
            )
            .bind(next),
            None => sqlx::query(
                "UPDATE outbox SET attempts = attempts + 1, dead_at = $1, \
                 last_error = $2 WHERE id = $3",
            )
            .bind(now_ms),
        };
        let result = query.bind(error).bind(id).execute(&self.pool).await;
        self.written(result.map(|_| ()).map_err(Into::into))
    }

    async fn callbacks_waiting(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL AND dead_at IS NULL",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    async fn callback_counts(&self) -> Result<CallbackCounts, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS undelivered, COUNT(*) FILTER (WHERE dead_at IS NOT NULL) AS dead, \
             MIN(created_at) AS oldest FROM outbox WHERE delivered_at IS NULL",
        )
        .fetch_one(&self.pool)
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
             delivered_at, dead_at FROM outbox WHERE {filter} ORDER BY id DESC LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(&self.pool)
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
        let result = replay(&self.pool, id, now_ms).await;
        self.written(result)
    }

    async fn enqueue_callback(&self, cb: NewCallback) -> Result<(), StoreError> {
        let result = async {
            let mut conn = self.pool.acquire().await?;
            insert_callback(&mut conn, &cb, now_ms()).await
        }
        .await;
        self.written(result)
    }
}

pub(super) async fn insert_callback(
    conn: &mut PgConnection,
    cb: &NewCallback,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO outbox (gateway, front, ordering_key, url, action_id, headers, body, \
         next_attempt_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
    )
    .bind(&cb.gateway)
    .bind(&cb.front)
    .bind(&cb.ordering_key)
    .bind(&cb.url)
    .bind(&cb.action_id)
    .bind(serde_json::to_string(&cb.headers).expect("headers serialise"))
    .bind(&cb.body)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn claim_callbacks(
    pool: &sqlx::PgPool,
    now_ms: i64,
    lease_until_ms: i64,
    limit: i64,
) -> Result<Vec<Callback>, StoreError> {
    // One statement selects, locks and leases: rows another process is claiming now are
    // skipped (SKIP LOCKED), rows it has claimed are leased past `now_ms`. Per-key order:
    // a row waits while an earlier row of its key is neither delivered nor dead (a leased
    // one included), so at most the first waiting row of each key is ever claimed.
    let rows = sqlx::query(
        "WITH due AS (SELECT id AS due_id FROM outbox AS o \
         WHERE delivered_at IS NULL AND dead_at IS NULL AND next_attempt_at <= $1 \
         AND (ordering_key IS NULL OR NOT EXISTS (SELECT 1 FROM outbox AS e \
              WHERE e.ordering_key = o.ordering_key AND e.id < o.id \
              AND e.delivered_at IS NULL AND e.dead_at IS NULL)) \
         ORDER BY next_attempt_at, id LIMIT $3 FOR UPDATE OF o SKIP LOCKED) \
         UPDATE outbox SET next_attempt_at = $2 FROM due WHERE id = due.due_id \
         RETURNING id, gateway, front, url, action_id, headers, body, attempts, \
         COALESCE(replayed_at, created_at) AS age_from",
    )
    .bind(now_ms)
    .bind(lease_until_ms)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    let mut claimed = rows
        .iter()
        .map(|row| {
            let headers: String = row.try_get("headers")?;
            Ok(Callback {
                id: row.try_get("id")?,
                gateway: row.try_get("gateway")?,
                front: row.try_get("front")?,
                url: row.try_get("url")?,
                action_id: row.try_get("action_id")?,
                headers: serde_json::from_str(&headers)
                    .map_err(|e| StoreError::Corrupt(format!("outbox headers: {e}")))?,
                body: row.try_get("body")?,
                attempts: row.try_get("attempts")?,
                age_from: row.try_get("age_from")?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    // Queue order (RETURNING has none).
    claimed.sort_by_key(|c| c.id);
    Ok(claimed)
}

/// One conditional UPDATE: of two operators replaying one letter, one requeues it.
async fn replay(pool: &sqlx::PgPool, id: i64, now_ms: i64) -> Result<Replay, StoreError> {
    // `last_error` stays until the next attempt, so the operator still sees why it died.
    let requeued = sqlx::query(
        "UPDATE outbox SET dead_at = NULL, attempts = 0, next_attempt_at = $1, replayed_at = $1 \
         WHERE id = $2 AND delivered_at IS NULL AND dead_at IS NOT NULL",
    )
    .bind(now_ms)
    .bind(id)
    .execute(pool)
    .await?;
    if requeued.rows_affected() == 1 {
        return Ok(Replay::Requeued);
    }
    let row = sqlx::query("SELECT delivered_at FROM outbox WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?;
    let Some(row) = row else {
        return Ok(Replay::NotFound);
    };
    let delivered: Option<i64> = row.try_get("delivered_at")?;
    Ok(Replay::NotDead(if delivered.is_some() {
        CallbackState::Delivered
    } else {
        CallbackState::Waiting
    }))
}
