//! PostgreSQL storage of the recovery queue: due rows claimed by one process at a time
//! (`SKIP LOCKED`, their next check moved on in the same statement), escalation, and the
//! start-up pass over calls a crash cut off.

use async_trait::async_trait;
use sqlx::Row;

use super::PostgresStore;
use super::transactions::{COLUMNS, row_to_transaction};
use crate::store::transactions::*;
use crate::store::{CALL_LEASE_MS, StoreError};

const OPEN: &str = "status IN ('pending', 'unknown')";

/// How long a claimed row stays out of other processes' rounds: the engine reschedules
/// each row right after claiming it, so this only matters if the claimer dies first.
pub const CHECK_LEASE_MS: i64 = 60_000;

#[async_trait]
impl RecoveryQueue for PostgresStore {
    async fn due_for_check(&self, now_ms: i64, limit: i64) -> Result<Vec<Transaction>, StoreError> {
        let result = sqlx::query(&format!(
            "WITH due AS (SELECT id AS due_id, next_check_at AS was FROM transactions \
             WHERE next_check_at <= $1 AND {OPEN} ORDER BY next_check_at LIMIT $2 \
             FOR UPDATE SKIP LOCKED) \
             UPDATE transactions SET next_check_at = $3 FROM due WHERE id = due.due_id \
             RETURNING {COLUMNS}, due.was"
        ))
        .bind(now_ms)
        .bind(limit)
        .bind(now_ms + CHECK_LEASE_MS)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::from)
        .and_then(|rows| {
            let mut due = rows
                .iter()
                .map(|row| {
                    let mut t = row_to_transaction(row)?;
                    // As it was when claimed: what the caller's round is about.
                    t.next_check_at = row.try_get("was")?;
                    Ok(t)
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            // RETURNING has no order: soonest first, as selected.
            due.sort_by_key(|t| t.next_check_at);
            Ok(due)
        });
        self.written(result)
    }

    async fn schedule_check(&self, id: &str, next_check_at: i64) -> Result<(), StoreError> {
        let result = sqlx::query(&format!(
            "UPDATE transactions SET next_check_at = $1, checks = checks + 1 \
             WHERE id = $2 AND {OPEN}"
        ))
        .bind(next_check_at)
        .bind(id)
        .execute(&self.pool)
        .await;
        self.written(result.map(|_| ()).map_err(Into::into))
    }

    async fn next_check_due(&self) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(&format!(
            "SELECT MIN(next_check_at) FROM transactions WHERE next_check_at IS NOT NULL AND {OPEN}"
        ))
        .fetch_one(&self.pool)
        .await?)
    }

    async fn escalate(&self, id: &str, at_ms: i64) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE transactions SET escalated_at = $1 WHERE id = $2 AND escalated_at IS NULL",
        )
        .bind(at_ms)
        .bind(id)
        .execute(&self.pool)
        .await;
        self.written(result.map(|d| d.rows_affected() == 1).map_err(Into::into))
    }

    async fn answer_unknown(
        &self,
        id: &str,
        action_id: &str,
        answer: StoredAnswer,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE transactions SET action_id = $1, response_status = $2, \
             response_body = $3, updated_at = $4 \
             WHERE id = $5 AND status = 'unknown' AND response_status IS NULL",
        )
        .bind(action_id)
        .bind(answer.status as i64)
        .bind(&answer.body)
        .bind(now_ms)
        .bind(id)
        .execute(&self.pool)
        .await;
        self.written(result.map(|d| d.rows_affected() == 1).map_err(Into::into))
    }

    async fn mark_interrupted(&self, now: i64, check_at: i64) -> Result<u64, StoreError> {
        // Replicas share the table: only rows whose owner let its lease run out (it died,
        // or stopped and released them) are taken, never a live replica's call.
        let result = sqlx::query(
            "UPDATE transactions SET status = 'unknown', next_check_at = $1, \
             updated_at = $2, lease_until = NULL WHERE status = 'processing' \
             AND (owner IS NULL OR owner <> $3) AND (lease_until IS NULL OR lease_until < $2)",
        )
        .bind(check_at)
        .bind(now)
        .bind(&self.instance)
        .execute(&self.pool)
        .await;
        self.written(result.map(|d| d.rows_affected()).map_err(Into::into))
    }

    async fn renew_leases(&self, now: i64) -> Result<u64, StoreError> {
        self.set_leases(now + CALL_LEASE_MS).await
    }

    async fn release_leases(&self) -> Result<u64, StoreError> {
        self.set_leases(0).await
    }

    async fn list(&self, status: &str, limit: i64) -> Result<Vec<Transaction>, StoreError> {
        let rows = if status == "escalated" {
            sqlx::query(&format!(
                "SELECT {COLUMNS} FROM transactions WHERE escalated_at IS NOT NULL \
                 AND {OPEN} ORDER BY created_at DESC LIMIT $1"
            ))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?
        } else {
            sqlx::query(&format!(
                "SELECT {COLUMNS} FROM transactions WHERE status = $1 \
                 ORDER BY created_at DESC LIMIT $2"
            ))
            .bind(status)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?
        };
        rows.iter().map(row_to_transaction).collect()
    }

    async fn outcome_backlog(&self) -> Result<OutcomeBacklog, StoreError> {
        type Row = (i64, i64, i64, Option<i64>, Option<i64>);
        let (pending, unknown, escalated, oldest_unknown_at, oldest_pending_at): Row =
            sqlx::query_as(&format!(
                "SELECT COUNT(*) FILTER (WHERE status = 'pending'), \
                 COUNT(*) FILTER (WHERE status = 'unknown'), \
                 COUNT(*) FILTER (WHERE escalated_at IS NOT NULL), \
                 MIN(created_at) FILTER (WHERE status = 'unknown'), \
                 MIN(created_at) FILTER (WHERE status = 'pending') \
                 FROM transactions WHERE {OPEN}"
            ))
            .fetch_one(&self.pool)
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

impl PostgresStore {
    async fn set_leases(&self, until: i64) -> Result<u64, StoreError> {
        let result = sqlx::query(
            "UPDATE transactions SET lease_until = $1 WHERE owner = $2 AND status = 'processing'",
        )
        .bind(until)
        .bind(&self.instance)
        .execute(&self.pool)
        .await;
        self.written(result.map(|d| d.rows_affected()).map_err(Into::into))
    }
}
