//! SQLite storage of the recovery queue: pending and unknown transactions, each with its
//! own next check, escalation, and the start-up pass over calls a crash cut off.

use async_trait::async_trait;
use rusqlite::params;

use super::SqliteStore;
use super::transactions::{COLUMNS, transactions};
use crate::store::transactions::*;
use crate::store::{CALL_LEASE_MS, StoreError};

const OPEN: &str = "status IN ('pending', 'unknown')";

#[async_trait]
impl RecoveryQueue for SqliteStore {
    async fn due_for_check(&self, now_ms: i64, limit: i64) -> Result<Vec<Transaction>, StoreError> {
        self.reader
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM transactions WHERE next_check_at <= ? AND {OPEN} \
                     ORDER BY next_check_at LIMIT ?"
                ))?;
                transactions(stmt.query(params![now_ms, limit])?)
            })
            .await
    }

    async fn schedule_check(&self, id: &str, next_check_at: i64) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.writer
            .submit(move |conn| {
                conn.prepare_cached(&format!(
                    "UPDATE transactions SET next_check_at = ?, checks = checks + 1 \
                     WHERE id = ? AND {OPEN}"
                ))?
                .execute(params![next_check_at, id])?;
                Ok(())
            })
            .await
    }

    async fn next_check_due(&self) -> Result<Option<i64>, StoreError> {
        self.reader
            .read(|conn| {
                Ok(conn
                    .prepare_cached(&format!(
                        "SELECT MIN(next_check_at) FROM transactions \
                         WHERE next_check_at IS NOT NULL AND {OPEN}"
                    ))?
                    .query_row([], |row| row.get(0))?)
            })
            .await
    }

    async fn escalate(&self, id: &str, at_ms: i64) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.writer
            .submit(move |conn| {
                let done = conn
                    .prepare_cached(
                        "UPDATE transactions SET escalated_at = ? \
                         WHERE id = ? AND escalated_at IS NULL",
                    )?
                    .execute(params![at_ms, id])?;
                Ok(done == 1)
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
                let done = conn
                    .prepare_cached(
                        "UPDATE transactions SET action_id = ?, response_status = ?, \
                         response_body = ?, updated_at = ? \
                         WHERE id = ? AND status = 'unknown' AND response_status IS NULL",
                    )?
                    .execute(params![
                        action_id,
                        answer.status as i64,
                        answer.body,
                        now_ms,
                        id
                    ])?;
                Ok(done == 1)
            })
            .await
    }

    async fn mark_interrupted(&self, now: i64, check_at: i64) -> Result<u64, StoreError> {
        // One process per SQLite file: every owner but this process is dead, lease or not.
        let me = self.instance.clone();
        self.writer
            .submit(move |conn| {
                let done = conn
                    .prepare_cached(
                        "UPDATE transactions SET status = 'unknown', next_check_at = ?, \
                         updated_at = ?, lease_until = NULL WHERE status = 'processing' \
                         AND (owner IS NULL OR owner <> ?)",
                    )?
                    .execute(params![check_at, now, me])?;
                Ok(done as u64)
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
        let escalated = status == "escalated";
        let filter = if escalated {
            "escalated_at IS NOT NULL AND status IN ('pending', 'unknown')"
        } else {
            "status = ?"
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM transactions WHERE {filter} ORDER BY created_at DESC LIMIT ?"
        );
        let status = status.to_owned();
        self.reader
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(&sql)?;
                transactions(if escalated {
                    stmt.query(params![limit])?
                } else {
                    stmt.query(params![status, limit])?
                })
            })
            .await
    }

    async fn outcome_backlog(&self) -> Result<OutcomeBacklog, StoreError> {
        self.reader
            .read(|conn| {
                Ok(conn
                    .prepare_cached(
                        "SELECT COALESCE(SUM(status = 'pending'), 0), COALESCE(SUM(status = 'unknown'), 0), \
                         COALESCE(SUM(escalated_at IS NOT NULL), 0), \
                         MIN(CASE WHEN status = 'unknown' THEN created_at END), \
                         MIN(CASE WHEN status = 'pending' THEN created_at END) \
                         FROM transactions WHERE status IN ('pending', 'unknown')",
                    )?
                    .query_row([], |row| {
                        Ok(OutcomeBacklog {
                            pending: row.get(0)?,
                            unknown: row.get(1)?,
                            escalated: row.get(2)?,
                            oldest_unknown_at: row.get(3)?,
                            oldest_pending_at: row.get(4)?,
                        })
                    })?)
            })
            .await
    }
}

impl SqliteStore {
    async fn set_leases(&self, until: Option<i64>) -> Result<u64, StoreError> {
        let me = self.instance.clone();
        self.writer
            .submit(move |conn| {
                let done = conn
                    .prepare_cached(
                        "UPDATE transactions SET lease_until = ? \
                         WHERE owner = ? AND status = 'processing'",
                    )?
                    .execute(params![until, me])?;
                Ok(done as u64)
            })
            .await
    }
}
