//! SQLite storage of payment transactions: idempotent insertion with the balance check,
//! completion (with its callback in the same transaction), lookups.

use async_trait::async_trait;
use futures::FutureExt;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

use super::SqliteStore;
use super::outbox::insert_callback;
use crate::store::transactions::*;
use crate::store::{CALL_LEASE_MS, NewCallback, StoreError, now_ms};

pub(super) const COLUMNS: &str = "id, gateway, front, action, idempotency_key, resource_id, parent_id, \
    transaction_token, psp_token, psp_reference, action_id, amount_cents, currency, status, \
    error_code, error_message, response_status, response_body, created_at, updated_at, \
    next_check_at, checks, escalated_at, replay";

#[async_trait]
impl TransactionStore for SqliteStore {
    async fn begin(
        &self,
        new: NewTransaction,
        rule: Option<BalanceRule>,
    ) -> Result<Begin, StoreError> {
        let owner = self.instance.clone();
        self.writer
            .submit(move |conn| {
                let new = new.clone();
                let owner = owner.clone();
                async move { begin(conn, new, rule, &owner).await }.boxed()
            })
            .await
    }

    async fn retry(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        let owner = self.instance.clone();
        self.writer
            .submit(move |conn| {
                let id = id.clone();
                let owner = owner.clone();
                async move {
                    let now = now_ms();
                    let done = sqlx::query(
                        "UPDATE transactions SET status = 'processing', response_status = NULL, \
                         response_body = NULL, updated_at = ?, owner = ?, lease_until = ? \
                         WHERE id = ? AND status = 'failed'",
                    )
                    .bind(now)
                    .bind(&owner)
                    .bind(now + CALL_LEASE_MS)
                    .bind(&id)
                    .execute(&mut *conn)
                    .await?;
                    Ok(done.rows_affected() == 1)
                }
                .boxed()
            })
            .await
    }

    async fn get(&self, id: &str) -> Result<Option<Transaction>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM transactions WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(row_to_transaction).transpose()
    }

    async fn get_by_key(&self, idempotency_key: &str) -> Result<Option<Transaction>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM transactions WHERE idempotency_key = ?"
        ))
        .bind(idempotency_key)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(row_to_transaction).transpose()
    }

    async fn find_by_token(
        &self,
        gateway: &str,
        token: &str,
        actions: &[Action],
    ) -> Result<Option<Transaction>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM transactions WHERE gateway = ? AND transaction_token = ? \
             ORDER BY created_at"
        ))
        .bind(gateway)
        .bind(token)
        .fetch_all(&self.reader)
        .await?;
        for row in &rows {
            let t = row_to_transaction(row)?;
            if actions.contains(&t.action) {
                return Ok(Some(t));
            }
        }
        Ok(None)
    }

    async fn find_pending_by_reference(
        &self,
        gateway: &str,
        psp_reference: &str,
    ) -> Result<Vec<Transaction>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM transactions WHERE gateway = ? AND psp_reference = ? \
             AND status IN ('pending', 'unknown') ORDER BY created_at"
        ))
        .bind(gateway)
        .bind(psp_reference)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(row_to_transaction).collect()
    }

    async fn complete(
        &self,
        id: &str,
        completion: Completion,
        callback: Option<NewCallback>,
        only_if: Option<Status>,
    ) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.writer
            .submit(move |conn| {
                let id = id.clone();
                let completion = completion.clone();
                let callback = callback.clone();
                async move { complete(conn, &id, completion, callback, only_if).await }.boxed()
            })
            .await
    }

    async fn drawn(&self, parent_id: &str, action: Action) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(DRAWN)
            .bind(parent_id)
            .bind(action.as_str())
            .fetch_one(&self.reader)
            .await?)
    }
}

pub(super) fn row_to_transaction(row: &SqliteRow) -> Result<Transaction, StoreError> {
    let action: String = row.try_get("action")?;
    let status: String = row.try_get("status")?;
    let response_status: Option<i64> = row.try_get("response_status")?;
    let response_body: Option<String> = row.try_get("response_body")?;
    Ok(Transaction {
        id: row.try_get("id")?,
        gateway: row.try_get("gateway")?,
        front: row.try_get("front")?,
        action: Action::parse(&action).ok_or_else(|| StoreError::Corrupt(action.clone()))?,
        idempotency_key: row.try_get("idempotency_key")?,
        resource_id: row.try_get("resource_id")?,
        parent_id: row.try_get("parent_id")?,
        transaction_token: row.try_get("transaction_token")?,
        psp_token: row.try_get("psp_token")?,
        psp_reference: row.try_get("psp_reference")?,
        action_id: row.try_get("action_id")?,
        amount_cents: row.try_get("amount_cents")?,
        currency: row.try_get("currency")?,
        status: Status::parse(&status).ok_or_else(|| StoreError::Corrupt(status.clone()))?,
        error_code: row.try_get("error_code")?,
        error_message: row.try_get("error_message")?,
        response: match (response_status, response_body) {
            (Some(status), Some(body)) => Some(StoredAnswer {
                status: status as u16,
                body,
            }),
            _ => None,
        },
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        next_check_at: row.try_get("next_check_at")?,
        checks: row.try_get("checks")?,
        escalated_at: row.try_get("escalated_at")?,
        replay: row.try_get("replay")?,
    })
}

/// What a parent's children of one action hold: those that succeeded or may still.
const DRAWN: &str = "SELECT COALESCE(SUM(amount_cents), 0) FROM transactions \
    WHERE parent_id = ? AND action = ? \
    AND status IN ('processing', 'approved', 'pending', 'unknown')";

/// The amount a follow-up may still draw from its parent.
async fn available(
    conn: &mut SqliteConnection,
    parent_id: &str,
    rule: BalanceRule,
) -> Result<i64, StoreError> {
    let parent: i64 = sqlx::query_scalar("SELECT amount_cents FROM transactions WHERE id = ?")
        .bind(parent_id)
        .fetch_one(&mut *conn)
        .await?;
    let drawn = |action: &'static str| {
        sqlx::query_scalar::<_, i64>(DRAWN)
            .bind(parent_id)
            .bind(action)
    };
    Ok(match rule {
        BalanceRule::Refund => parent - drawn("refund").fetch_one(&mut *conn).await?,
        BalanceRule::Capture | BalanceRule::Void => {
            let voided = drawn("void").fetch_one(&mut *conn).await?;
            if voided > 0 {
                0
            } else {
                parent - drawn("capture").fetch_one(&mut *conn).await?
            }
        }
    })
}

async fn begin(
    conn: &mut SqliteConnection,
    new: NewTransaction,
    rule: Option<BalanceRule>,
    owner: &str,
) -> Result<Begin, StoreError> {
    let existing = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM transactions WHERE idempotency_key = ?"
    ))
    .bind(&new.idempotency_key)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(row) = existing {
        return Ok(Begin::Existing(row_to_transaction(&row)?));
    }
    if let (Some(rule), Some(parent)) = (rule, &new.parent_id) {
        let available = available(conn, parent, rule).await?;
        let fits = match rule {
            BalanceRule::Void => available > 0,
            _ => new.amount_cents <= available,
        };
        if !fits {
            return Ok(Begin::InsufficientBalance { available });
        }
    }
    let now = now_ms();
    sqlx::query(
        "INSERT INTO transactions (id, gateway, front, action, idempotency_key, resource_id, \
         parent_id, transaction_token, amount_cents, currency, status, created_at, updated_at, \
         replay, owner, lease_until) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'processing', ?, ?, ?, ?, ?)",
    )
    .bind(&new.id)
    .bind(&new.gateway)
    .bind(&new.front)
    .bind(new.action.as_str())
    .bind(&new.idempotency_key)
    .bind(&new.resource_id)
    .bind(&new.parent_id)
    .bind(&new.transaction_token)
    .bind(new.amount_cents)
    .bind(&new.currency)
    .bind(now)
    .bind(now)
    .bind(&new.replay)
    .bind(owner)
    .bind(now + CALL_LEASE_MS)
    .execute(&mut *conn)
    .await?;
    Ok(Begin::Started(Transaction {
        id: new.id,
        gateway: new.gateway,
        front: new.front,
        action: new.action,
        idempotency_key: new.idempotency_key,
        resource_id: new.resource_id,
        parent_id: new.parent_id,
        transaction_token: new.transaction_token,
        psp_token: None,
        psp_reference: None,
        action_id: None,
        amount_cents: new.amount_cents,
        currency: new.currency,
        status: Status::Processing,
        error_code: None,
        error_message: None,
        response: None,
        created_at: now,
        updated_at: now,
        next_check_at: None,
        checks: 0,
        escalated_at: None,
        replay: new.replay,
    }))
}

async fn complete(
    conn: &mut SqliteConnection,
    id: &str,
    c: Completion,
    callback: Option<NewCallback>,
    only_if: Option<Status>,
) -> Result<bool, StoreError> {
    let now = now_ms();
    let (response_status, response_body) = match &c.response {
        Some(a) => (Some(a.status as i64), Some(a.body.clone())),
        None => (None, None),
    };
    // COALESCE: a completion without a stored answer keeps the one already given (a
    // deferred call's 202 stays the answer replayed to duplicates).
    let updated = sqlx::query(
        "UPDATE transactions SET status = ?, \
         transaction_token = COALESCE(?, transaction_token), psp_token = COALESCE(?, psp_token), \
         psp_reference = COALESCE(?, psp_reference), action_id = COALESCE(?, action_id), \
         error_code = ?, error_message = ?, response_status = COALESCE(?, response_status), \
         response_body = COALESCE(?, response_body), updated_at = ?, next_check_at = ?, \
         replay = CASE WHEN ? IN ('approved', 'declined') THEN NULL ELSE replay END \
         WHERE id = ? AND (? IS NULL OR status = ?)",
    )
    .bind(c.status.as_str())
    .bind(&c.transaction_token)
    .bind(&c.psp_token)
    .bind(&c.psp_reference)
    .bind(&c.action_id)
    .bind(&c.error_code)
    .bind(&c.error_message)
    .bind(response_status)
    .bind(response_body)
    .bind(now)
    .bind(c.next_check_at)
    .bind(c.status.as_str())
    .bind(id)
    .bind(only_if.map(Status::as_str))
    .bind(only_if.map(Status::as_str))
    .execute(&mut *conn)
    .await?;
    if updated.rows_affected() == 0 {
        return Ok(false);
    }
    if let Some(cb) = callback {
        insert_callback(conn, &cb, now).await?;
    }
    Ok(true)
}
