//! SQLite storage of the recovery queue: pending and unknown transactions, each with its
//! own next check, escalation, and the start-up pass over calls a crash cut off.

use async_trait::async_trait;
use futures::FutureExt;

use super::SqliteStore;
use super::transactions::{COLUMNS, row_to_transaction};
use crate::store::transactions::*;
use crate::store::{CALL_LEASE_MS, StoreError};

const OPEN: &str = "status IN ('pending', 'unknown')";

#[async_trait]
impl RecoveryQueue for SqliteStore {
    async fn due_for_check(&self, now_ms: i64, limit: i64) -> Result<Vec<Transaction>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM transactions WHERE next_check_at <= ? AND {OPEN} \
             ORDER BY next_check_at LIMIT ?"
        ))
        .bind(now_ms)
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(row_to_transaction).collect()
    }

    async fn schedule_check(&self, id: &str, next_check_at: i64) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.writer
            .submit(move |conn| {
                let id = id.clone();
                async move {
                    sqlx::query(&format!(
                        "UPDATE transactions SET next_check_at = ?, checks = checks + 1 \
                         WHERE id = ? AND {OPEN}"
                    ))
                    .bind(next_check_at)
                    .bind(&id)
                    .execute(&mut *conn)
                    .await?;
                    Ok(())
                }
                .boxed()
            })
            .await
    }

    async fn next_check_due(&self) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(&format!(
            "SELECT MIN(next_check_at) FROM transactions WHERE next_check_at IS NOT NULL AND {OPEN}"
        ))
        .fetch_one(&self.reader)
        .await?)
    }

    async fn escalate(&self, id: &str, at_ms: i64) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.writer
            .submit(move |conn| {
                let id = id.clone();
                async move {
                    let done = sqlx::query(
                        "UPDATE transactions SET escalated_at = ? \
                         WHERE id = ? AND escalated_at IS NULL",
                    )
                    .bind(at_ms)
                    .bind(&id)
                    .execute(&mut *conn)
                    .await?;
                    Ok(done.rows_affected() == 1)
                }
                .boxed()
            })
            .await
    }

    async fn answer_unknown(
        &self,
        id: &str,
        action_id: &str,
        answer: StoredAnswer,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let (id, action_id) = (id.to_owned(), action_id.to_owned());
        self.writer
            .submit(move |conn| {
                let (id, action_id, answer) = (id.clone(), action_id.clone(), answer.clone());
                async move {
                    let done = sqlx::query(
                        "UPDATE transactions SET action_id = ?, response_status = ?, \
                         response_body = ?, updated_at = ? \
                         WHERE id = ? AND status = 'unknown' AND response_status IS NULL",
                    )
                    .bind(&action_id)
                    .bind(answer.status as i64)
                    .bind(&answer.body)
                    .bind(now_ms)
                    .bind(&id)
                    .execute(&mut *conn)
                    .await?;
                    Ok(done.rows_affected() == 1)
                }
                .boxed()
            })
            .await
    }

    async fn mark_interrupted(&self, now: i64, check_at: i64) -> Result<u64, StoreError> {
        // One process per SQLite file: every owner but this process is dead, lease or not.
        let me = self.instance.clone();
        self.writer
            .submit(move |conn| {
                let me = me.clone();
                async move {
                    let done = sqlx::query(
                        "UPDATE transactions SET status = 'unknown', next_check_at = ?, \
                         updated_at = ?, lease_until = NULL WHERE status = 'processing' \
                         AND (owner IS NULL OR owner <> ?)",
                    )
                    .bind(check_at)
                    .bind(now)
                    .bind(&me)
                    .execute(&mut *conn)
                    .await?;
                    Ok(done.rows_affected())
                }
                .boxed()
            })
            .await
    }

    async fn renew_leases(&self, now: i64) -> Result<u64, StoreError> {
        self.set_leases(Some(now + CALL_LEASE_MS)).await
    }

    async fn release_leases(&self) -> Result<u64, StoreError> {
        self.set_leases(Some(0)).await
    }

    async fn list(&self, status: &str, limit: i64) -> Result<Vec<Transaction>, StoreError> {
        let filter = if status == "escalated" {
            "escalated_at IS NOT NULL AND status IN ('pending', 'unknown')"
        } else {
            "status = ?"
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM transactions WHERE {filter} ORDER BY created_at DESC LIMIT ?"
        );
        let mut query = sqlx::query(&sql);
        if status != "escalated" {
            query = query.bind(status);
        }
        let rows = query.bind(limit).fetch_all(&self.reader).await?;
        rows.iter().map(row_to_transaction).collect()
    }

    async fn outcome_backlog(&self) -> Result<OutcomeBacklog, StoreError> {
        type Row = (i64, i64, i64, Option<i64>, Option<i64>);
        let (pending, unknown, escalated, oldest_unknown_at, oldest_pending_at): Row =
            sqlx::query_as(
                "SELECT COALESCE(SUM(status = 'pending'), 0), COALESCE(SUM(status = 'unknown'), 0), \
                 COALESCE(SUM(escalated_at IS NOT NULL), 0), \
                 MIN(CASE WHEN status = 'unknown' THEN created_at END), \
                 MIN(CASE WHEN status = 'pending' THEN created_at END) \
                 FROM transactions WHERE status IN ('pending', 'unknown')",
            )
            .fetch_one(&self.reader)
            .await?;
        Ok(OutcomeBacklog {
            pending,
            unknown,
            escalated,
            oldest_unknown_at,
            oldest_pending_at,
        })
    }
}

impl SqliteStore {
    async fn set_leases(&self, until: Option<i64>) -> Result<u64, StoreError> {
        let me = self.instance.clone();
        self.writer
            .submit(move |conn| {
                let me = me.clone();
                async move {
                    let done = sqlx::query(
                        "UPDATE transactions SET lease_until = ? \
                         WHERE owner = ? AND status = 'processing'",
                    )
                    .bind(until)
                    .bind(&me)
                    .execute(&mut *conn)
                    .await?;
                    Ok(done.rows_affected())
                }
                .boxed()
            })
            .await
    }
}
