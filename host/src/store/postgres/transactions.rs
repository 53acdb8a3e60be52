//! PostgreSQL storage of payment transactions: idempotent insertion with the balance check
//! under the parent's row lock, completion (with its callback in the same transaction),
//! lookups.

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use super::PostgresStore;
use super::outbox::insert_callback;
use crate::store::transactions::*;
use crate::store::{CALL_LEASE_MS, NewCallback, StoreError, now_ms};

pub(super) const COLUMNS: &str = "id, gateway, front, action, idempotency_key, resource_id, parent_id, \
    transaction_token, psp_token, psp_reference, action_id, amount_cents, currency, status, \
    error_code, error_message, response_status, response_body, created_at, updated_at, \
    next_check_at, checks, escalated_at, replay, shopper_return";

#[async_trait]
impl TransactionStore for PostgresStore {
    async fn begin(
        &self,
        new: NewTransaction,
        rule: Option<BalanceRule>,
    ) -> Result<Begin, StoreError> {
        let result = async {
            if rule.is_some() && new.parent_id.is_some() {
                let mut tx = self.pool.begin().await?;
                let begun = begin(&mut tx, new, rule, &self.instance).await?;
                tx.commit().await?;
                Ok(begun)
            } else {
                // Without a balance to check, `begin` writes with one statement, which is
                // its own transaction: BEGIN and COMMIT would add two round trips for nothing.
                begin(&mut *self.pool.acquire().await?, new, None, &self.instance).await
            }
        }
        .await;
        self.written(result)
    }

    async fn retry(&self, id: &str) -> Result<bool, StoreError> {
        let now = now_ms();
        let result = sqlx::query(
            "UPDATE transactions SET status = 'processing', response_status = NULL, \
             response_body = NULL, updated_at = $1, owner = $3, lease_until = $4 \
             WHERE id = $2 AND status = 'failed'",
        )
        .bind(now)
        .bind(id)
        .bind(&self.instance)
        .bind(now + CALL_LEASE_MS)
        .execute(&self.pool)
        .await;
        self.written(
            result
                .map(|done| done.rows_affected() == 1)
                .map_err(Into::into),
        )
    }

    async fn get(&self, id: &str) -> Result<Option<Transaction>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM transactions WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(row_to_transaction).transpose()
    }

    async fn get_by_key(&self, idempotency_key: &str) -> Result<Option<Transaction>, StoreError> {
        get_by_key(&self.pool, idempotency_key).await
    }

    async fn find_by_token(
        &self,
        gateway: &str,
        token: &str,
        actions: &[Action],
    ) -> Result<Option<Transaction>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM transactions WHERE gateway = $1 AND transaction_token = $2 \
             ORDER BY created_at"
        ))
        .bind(gateway)
        .bind(token)
        .fetch_all(&self.pool)
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
            "SELECT {COLUMNS} FROM transactions WHERE gateway = $1 AND psp_reference = $2 \
             AND status IN ('pending', 'unknown') ORDER BY created_at"
        ))
        .bind(gateway)
        .bind(psp_reference)
        .fetch_all(&self.pool)
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
        let result = async {
            if callback.is_some() {
                let mut tx = self.pool.begin().await?;
                let done = complete(&mut tx, id, completion, callback, only_if).await?;
                tx.commit().await?;
                Ok(done)
            } else {
                // One UPDATE: its own transaction (see `begin`).
                complete(
                    &mut *self.pool.acquire().await?,
                    id,
                    completion,
                    None,
                    only_if,
                )
                .await
            }
        }
        .await;
        self.written(result)
    }

    async fn drawn(&self, parent_id: &str, action: Action) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(DRAWN)
            .bind(parent_id)
            .bind(action.as_str())
            .fetch_one(&self.pool)
            .await?)
    }

    async fn follow_ups(&self, parent_id: &str, action: Action) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM transactions WHERE parent_id = $1 AND action = $2",
        )
        .bind(parent_id)
        .bind(action.as_str())
        .fetch_one(&self.pool)
        .await?)
    }
}

async fn get_by_key<'e, E: sqlx::PgExecutor<'e>>(
    executor: E,
    key: &str,
) -> Result<Option<Transaction>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM transactions WHERE idempotency_key = $1"
    ))
    .bind(key)
    .fetch_optional(executor)
    .await?;
    row.as_ref().map(row_to_transaction).transpose()
}

pub(super) fn row_to_transaction(row: &PgRow) -> Result<Transaction, StoreError> {
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
        shopper_return: row.try_get("shopper_return")?,
    })
}

/// What a parent's children of one action hold: those that succeeded or may still.
/// (`SUM` of BIGINT is NUMERIC in PostgreSQL: cast back.)
const DRAWN: &str = "SELECT COALESCE(SUM(amount_cents), 0)::BIGINT FROM transactions \
    WHERE parent_id = $1 AND action = $2 \
    AND status IN ('processing', 'approved', 'pending', 'unknown')";

/// The amount a follow-up may still draw from its parent, whose row the caller has locked.
async fn available(
    conn: &mut PgConnection,
    parent: i64,
    parent_id: &str,
    rule: BalanceRule,
) -> Result<i64, StoreError> {
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
    conn: &mut PgConnection,
    new: NewTransaction,
    rule: Option<BalanceRule>,
    owner: &str,
) -> Result<Begin, StoreError> {
    if let (Some(rule), Some(parent_id)) = (rule, &new.parent_id) {
        // The parent's row lock serialises every follow-up of one parent, in every
        // process: the sum read below already counts all children committed before us.
        let parent: i64 =
            sqlx::query_scalar("SELECT amount_cents FROM transactions WHERE id = $1 FOR UPDATE")
                .bind(parent_id)
                .fetch_one(&mut *conn)
                .await?;
        // Under the lock, so a duplicate of a follow-up that just drew the balance is
        // answered as the duplicate it is, not as insufficient balance.
        if let Some(existing) = get_by_key(&mut *conn, &new.idempotency_key).await? {
            return Ok(Begin::Existing(existing));
        }
        let available = available(conn, parent, parent_id, rule).await?;
        let fits = match rule {
            BalanceRule::Void => available > 0,
            _ => new.amount_cents <= available,
        };
        if !fits {
            return Ok(Begin::InsufficientBalance { available });
        }
    }
    let now = now_ms();
    let inserted = sqlx::query(
        "INSERT INTO transactions (id, gateway, front, action, idempotency_key, resource_id, \
         parent_id, transaction_token, amount_cents, currency, status, created_at, updated_at, \
         replay, owner, lease_until, shopper_return) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'processing', $11, $11, $12, $13, $14, \
         $15) \
         ON CONFLICT (idempotency_key) DO NOTHING",
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
    .bind(&new.replay)
    .bind(owner)
    .bind(now + CALL_LEASE_MS)
    .bind(&new.shopper_return)
    .execute(&mut *conn)
    .await?;
    if inserted.rows_affected() == 0 {
        // The key's row committed elsewhere (ON CONFLICT waited for it): this statement
        // reads it with a fresh snapshot.
        return match get_by_key(&mut *conn, &new.idempotency_key).await? {
            Some(existing) => Ok(Begin::Existing(existing)),
            None => Err(StoreError::Corrupt(format!(
                "idempotency key {} conflicted but has no row",
                new.idempotency_key
            ))),
        };
    }
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
        shopper_return: new.shopper_return,
    }))
}

async fn complete(
    conn: &mut PgConnection,
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
    // deferred call's 202 stays the answer replayed to duplicates). `only_if` is part of
    // the UPDATE, so of two processes completing one row only one matches.
    let updated = sqlx::query(
        "UPDATE transactions SET status = $1, \
         transaction_token = COALESCE($2, transaction_token), \
         psp_token = COALESCE($3, psp_token), psp_reference = COALESCE($4, psp_reference), \
         action_id = COALESCE($5, action_id), error_code = $6, error_message = $7, \
         response_status = COALESCE($8, response_status), \
         response_body = COALESCE($9, response_body), updated_at = $10, next_check_at = $11, \
         replay = CASE WHEN $1 IN ('approved', 'declined') THEN NULL ELSE replay END \
         WHERE id = $12 AND ($13::TEXT IS NULL OR status = $13)",
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
    .bind(id)
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
