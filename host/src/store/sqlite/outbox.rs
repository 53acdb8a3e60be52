//! SQLite storage of the outbox: queueing, leasing due callbacks in per-key order,
//! recording attempts, counting, listing and replaying dead letters.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

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
            .submit(move |conn| claim_callbacks(conn, now_ms, lease_until_ms, limit))
            .await
    }

    async fn callback_delivered(&self, id: i64, at_ms: i64) -> Result<(), StoreError> {
        self.writer
            .submit(move |conn| {
                conn.prepare_cached(
                    "UPDATE outbox SET delivered_at = ?, attempts = attempts + 1 WHERE id = ?",
                )?
                .execute(params![at_ms, id])?;
                Ok(())
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
                match next_attempt_ms {
                    Some(next) => conn
                        .prepare_cached(
                            "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, \
                             last_error = ? WHERE id = ?",
                        )?
                        .execute(params![next, error, id])?,
                    None => conn
                        .prepare_cached(
                            "UPDATE outbox SET attempts = attempts + 1, dead_at = ?, \
                             last_error = ? WHERE id = ?",
                        )?
                        .execute(params![now_ms, error, id])?,
                };
                Ok(())
            })
            .await
    }

    async fn callbacks_waiting(&self) -> Result<i64, StoreError> {
        self.reader
            .read(|conn| {
                Ok(conn
                    .prepare_cached(
                        "SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL AND dead_at IS NULL",
                    )?
                    .query_row([], |row| row.get(0))?)
            })
            .await
    }

    async fn callback_counts(&self) -> Result<CallbackCounts, StoreError> {
        self.reader
            .read(|conn| {
                Ok(conn
                    .prepare_cached(
                        "SELECT COALESCE(SUM(delivered_at IS NULL), 0) AS undelivered, \
                         COALESCE(SUM(dead_at IS NOT NULL), 0) AS dead, MIN(created_at) AS oldest \
                         FROM outbox WHERE delivered_at IS NULL",
                    )?
                    .query_row([], |row| {
                        Ok(CallbackCounts {
                            undelivered: row.get("undelivered")?,
                            dead: row.get("dead")?,
                            oldest_undelivered_at: row.get("oldest")?,
                        })
                    })?)
            })
            .await
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
        let sql = format!(
            "SELECT id, gateway, url, action_id, attempts, last_error, created_at, \
             delivered_at, dead_at FROM outbox WHERE {filter} ORDER BY id DESC LIMIT ?"
        );
        self.reader
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(&sql)?;
                let rows = stmt.query_map(params![limit], |row| {
                    Ok(CallbackSummary {
                        id: row.get("id")?,
                        gateway: row.get("gateway")?,
                        url: row.get("url")?,
                        action_id: row.get("action_id")?,
                        state,
                        attempts: row.get("attempts")?,
                        last_error: row.get("last_error")?,
                        created_at: row.get("created_at")?,
                        delivered_at: row.get("delivered_at")?,
                        dead_at: row.get("dead_at")?,
                    })
                })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
    }

    async fn replay_callback(&self, id: i64, now_ms: i64) -> Result<Replay, StoreError> {
        self.writer
            .submit(move |conn| replay(conn, id, now_ms))
            .await
    }

    async fn enqueue_callback(&self, cb: NewCallback) -> Result<(), StoreError> {
        self.writer
            .submit(move |conn| insert_callback(conn, &cb, now_ms()))
            .await
    }
}

pub(super) fn insert_callback(
    conn: &Connection,
    cb: &NewCallback,
    now: i64,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO outbox (gateway, front, ordering_key, url, action_id, headers, body, \
         next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )?
    .execute(params![
        cb.gateway,
        cb.front,
        cb.ordering_key,
        cb.url,
        cb.action_id,
        serde_json::to_string(&cb.headers).expect("headers serialise"),
        cb.body,
        now,
        now,
    ])?;
    Ok(())
}

fn claim_callbacks(
    conn: &Connection,
    now_ms: i64,
    lease_until_ms: i64,
    limit: i64,
) -> Result<Vec<Callback>, StoreError> {
    // Per-key order: a row waits while an earlier row of its key is neither delivered nor
    // dead, so at most the first waiting row of each key is ever claimed.
    let mut select = conn.prepare_cached(
        "SELECT id, gateway, front, url, action_id, headers, body, attempts, \
         COALESCE(replayed_at, created_at) AS age_from FROM outbox AS o \
         WHERE delivered_at IS NULL AND dead_at IS NULL AND next_attempt_at <= ? \
         AND (ordering_key IS NULL OR NOT EXISTS (SELECT 1 FROM outbox AS e \
              WHERE e.ordering_key = o.ordering_key AND e.id < o.id \
              AND e.delivered_at IS NULL AND e.dead_at IS NULL)) \
         ORDER BY next_attempt_at, id LIMIT ?",
    )?;
    // All rows are read before any lease is written: updating `next_attempt_at` under a
    // running scan of it could let the scan meet a row again.
    let mut claimed = Vec::new();
    let mut rows = select.query(params![now_ms, limit])?;
    while let Some(row) = rows.next()? {
        let headers: String = row.get("headers")?;
        claimed.push(Callback {
            id: row.get("id")?,
            gateway: row.get("gateway")?,
            front: row.get("front")?,
            url: row.get("url")?,
            action_id: row.get("action_id")?,
            headers: serde_json::from_str(&headers)
                .map_err(|e| StoreError::Corrupt(format!("outbox headers: {e}")))?,
            body: row.get("body")?,
            attempts: row.get("attempts")?,
            age_from: row.get("age_from")?,
        });
    }
    drop(rows);
    // The lease: if this worker dies mid-delivery, the row is due again after it.
    let mut lease = conn.prepare_cached("UPDATE outbox SET next_attempt_at = ? WHERE id = ?")?;
    for cb in &claimed {
        lease.execute(params![lease_until_ms, cb.id])?;
    }
    Ok(claimed)
}

fn replay(conn: &Connection, id: i64, now_ms: i64) -> Result<Replay, StoreError> {
    let row: Option<(Option<i64>, Option<i64>)> = conn
        .prepare_cached("SELECT delivered_at, dead_at FROM outbox WHERE id = ?")?
        .query_row(params![id], |row| {
            Ok((row.get("delivered_at")?, row.get("dead_at")?))
        })
        .optional()?;
    let Some((delivered, dead)) = row else {
        return Ok(Replay::NotFound);
    };
    match (delivered, dead) {
        (Some(_), _) => return Ok(Replay::NotDead(CallbackState::Delivered)),
        (None, None) => return Ok(Replay::NotDead(CallbackState::Waiting)),
        (None, Some(_)) => {}
    }
    // `last_error` stays until the next attempt, so the operator still sees why it died.
    conn.prepare_cached(
        "UPDATE outbox SET dead_at = NULL, attempts = 0, next_attempt_at = ?, replayed_at = ? \
         WHERE id = ?",
    )?
    .execute(params![now_ms, now_ms, id])?;
    Ok(Replay::Requeued)
}
