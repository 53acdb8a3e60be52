//! SQLite storage of payment transactions: idempotent insertion with the balance check,
//! completion (with its callback in the same transaction), lookups.

use async_trait::async_trait;
use rusqlite::{Connection, params};

use super::SqliteStore;
use super::outbox::insert_callback;
use crate::store::transactions::*;
use crate::store::{CALL_LEASE_MS, NewCallback, StoreError, now_ms};

pub(super) const COLUMNS: &str = "id, gateway, front, action, idempotency_key, resource_id, parent_id, \
    transaction_token, psp_token, psp_reference, action_id, amount_cents, currency, status, \
    error_code, error_message, response_status, response_body, created_at, updated_at, \
    next_check_at, checks, escalated_at, replay, shopper_return";

#[async_trait]
impl TransactionStore for SqliteStore {
    async fn begin(
        &self,
        new: NewTransaction,
        rule: Option<BalanceRule>,
    ) -> Result<Begin, StoreError> {
        let owner = self.instance.clone();
        self.writer
            .submit(move |conn| begin(conn, &new, rule, &owner))
            .await
    }

    async fn retry(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        let owner = self.instance.clone();
        self.writer
            .submit(move |conn| {
                let now = now_ms();
                let changed = conn
                    .prepare_cached(
                        "UPDATE transactions SET status = 'processing', response_status = NULL, \
                         response_body = NULL, updated_at = ?, owner = ?, lease_until = ? \
                         WHERE id = ? AND status = 'failed'",
                    )?
                    .execute(params![now, owner, now + CALL_LEASE_MS, id])?;
                Ok(changed == 1)
            })
            .await
    }

    async fn get(&self, id: &str) -> Result<Option<Transaction>, StoreError> {
        let id = id.to_owned();
        self.reader
            .read(move |conn| {
                one(
                    conn,
                    &format!("SELECT {COLUMNS} FROM transactions WHERE id = ?"),
                    &id,
                )
            })
            .await
    }

    async fn get_by_key(&self, idempotency_key: &str) -> Result<Option<Transaction>, StoreError> {
        let key = idempotency_key.to_owned();
        self.reader.read(move |conn| by_key(conn, &key)).await
    }

    async fn find_by_token(
        &self,
        gateway: &str,
        token: &str,
        actions: &[Action],
    ) -> Result<Option<Transaction>, StoreError> {
        let (gateway, token, actions) = (gateway.to_owned(), token.to_owned(), actions.to_vec());
        self.reader
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM transactions WHERE gateway = ? AND transaction_token = ? \
                     ORDER BY created_at"
                ))?;
                let mut rows = stmt.query(params![gateway, token])?;
                while let Some(row) = rows.next()? {
                    let t = row_to_transaction(row)?;
                    if actions.contains(&t.action) {
                        return Ok(Some(t));
                    }
                }
                Ok(None)
            })
            .await
    }

    async fn find_pending_by_reference(
        &self,
        gateway: &str,
        psp_reference: &str,
    ) -> Result<Vec<Transaction>, StoreError> {
        let (gateway, reference) = (gateway.to_owned(), psp_reference.to_owned());
        self.reader
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM transactions WHERE gateway = ? AND psp_reference = ? \
                     AND status IN ('pending', 'unknown') ORDER BY created_at"
                ))?;
                transactions(stmt.query(params![gateway, reference])?)
            })
            .await
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
            .submit(move |conn| complete(conn, &id, &completion, callback.as_ref(), only_if))
            .await
    }

    async fn drawn(&self, parent_id: &str, action: Action) -> Result<i64, StoreError> {
        let parent_id = parent_id.to_owned();
        self.reader
            .read(move |conn| drawn(conn, &parent_id, action.as_str()))
            .await
    }

    async fn follow_ups(&self, parent_id: &str, action: Action) -> Result<i64, StoreError> {
        let parent_id = parent_id.to_owned();
        self.reader
            .read(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "SELECT COUNT(*) FROM transactions WHERE parent_id = ? AND action = ?",
                    )?
                    .query_row(params![parent_id, action.as_str()], |row| row.get(0))?)
            })
            .await
    }
}

/// The transaction `sql` selects by its one parameter, if any.
fn one(conn: &Connection, sql: &str, param: &str) -> Result<Option<Transaction>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query([param])?;
    rows.next()?.map(row_to_transaction).transpose()
}

fn by_key(conn: &Connection, key: &str) -> Result<Option<Transaction>, StoreError> {
    one(
        conn,
        &format!("SELECT {COLUMNS} FROM transactions WHERE idempotency_key = ?"),
        key,
    )
}

/// Every transaction of a query's rows, in their order.
pub(super) fn transactions(mut rows: rusqlite::Rows<'_>) -> Result<Vec<Transaction>, StoreError> {
    let mut found = Vec::new();
    while let Some(row) = rows.next()? {
        found.push(row_to_transaction(row)?);
    }
    Ok(found)
}

fn row_to_transaction(row: &rusqlite::Row<'_>) -> Result<Transaction, StoreError> {
    let action: String = row.get("action")?;
    let status: String = row.get("status")?;
    let response_status: Option<i64> = row.get("response_status")?;
    let response_body: Option<String> = row.get("response_body")?;
    Ok(Transaction {
        id: row.get("id")?,
        gateway: row.get("gateway")?,
        front: row.get("front")?,
        action: Action::parse(&action).ok_or_else(|| StoreError::Corrupt(action.clone()))?,
        idempotency_key: row.get("idempotency_key")?,
        resource_id: row.get("resource_id")?,
        parent_id: row.get("parent_id")?,
        transaction_token: row.get("transaction_token")?,
        psp_token: row.get("psp_token")?,
        psp_reference: row.get("psp_reference")?,
        action_id: row.get("action_id")?,
        amount_cents: row.get("amount_cents")?,
        currency: row.get("currency")?,
        status: Status::parse(&status).ok_or_else(|| StoreError::Corrupt(status.clone()))?,
        error_code: row.get("error_code")?,
        error_message: row.get("error_message")?,
        response: match (response_status, response_body) {
            (Some(status), Some(body)) => Some(StoredAnswer {
                status: status as u16,
                body,
            }),
            _ => None,
        },
        created_at: row.get("created_at")?,
        updated_at: row.get("updated_at")?,
        next_check_at: row.get("next_check_at")?,
        checks: row.get("checks")?,
        escalated_at: row.get("escalated_at")?,
        replay: row.get("replay")?,
        shopper_return: row.get("shopper_return")?,
    })
}

/// What a parent's children of one action hold: those that succeeded or may still.
fn drawn(conn: &Connection, parent_id: &str, action: &str) -> Result<i64, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT COALESCE(SUM(amount_cents), 0) FROM transactions \
             WHERE parent_id = ? AND action = ? \
             AND status IN ('processing', 'approved', 'pending', 'unknown')",
        )?
        .query_row(params![parent_id, action], |row| row.get(0))?)
}

/// The amount a follow-up may still draw from its parent.
fn available(conn: &Connection, parent_id: &str, rule: BalanceRule) -> Result<i64, StoreError> {
    let parent: i64 = conn
        .prepare_cached("SELECT amount_cents FROM transactions WHERE id = ?")?
        .query_row([parent_id], |row| row.get(0))?;
    Ok(match rule {
        BalanceRule::Refund => parent - drawn(conn, parent_id, "refund")?,
        BalanceRule::Capture | BalanceRule::Void => {
            if drawn(conn, parent_id, "void")? > 0 {
                0
            } else {
                parent - drawn(conn, parent_id, "capture")?
            }
        }
    })
}

fn begin(
    conn: &Connection,
    new: &NewTransaction,
    rule: Option<BalanceRule>,
    owner: &str,
) -> Result<Begin, StoreError> {
    if let Some(existing) = by_key(conn, &new.idempotency_key)? {
        return Ok(Begin::Existing(existing));
    }
    if let (Some(rule), Some(parent)) = (rule, &new.parent_id) {
        let available = available(conn, parent, rule)?;
        let fits = match rule {
            BalanceRule::Void => available > 0,
            _ => new.amount_cents <= available,
        };
        if !fits {
            return Ok(Begin::InsufficientBalance { available });
        }
    }
    let now = now_ms();
    conn.prepare_cached(
        "INSERT INTO transactions (id, gateway, front, action, idempotency_key, resource_id, \
         parent_id, transaction_token, amount_cents, currency, status, created_at, updated_at, \
         replay, owner, lease_until, shopper_return) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'processing', ?, ?, ?, ?, ?, ?)",
    )?
    .execute(params![
        new.id,
        new.gateway,
        new.front,
        new.action.as_str(),
        new.idempotency_key,
        new.resource_id,
        new.parent_id,
        new.transaction_token,
        new.amount_cents,
        new.currency,
        now,
        now,
        new.replay,
        owner,
        now + CALL_LEASE_MS,
        new.shopper_return,
    ])?;
    let new = new.clone();
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

fn complete(
    conn: &Connection,
    id: &str,
    c: &Completion,
    callback: Option<&NewCallback>,
    only_if: Option<Status>,
) -> Result<bool, StoreError> {
    let now = now_ms();
    let (response_status, response_body) = match &c.response {
        Some(a) => (Some(a.status as i64), Some(a.body.as_str())),
        None => (None, None),
    };
    // COALESCE: a completion without a stored answer keeps the one already given (a
    // deferred call's 202 stays the answer replayed to duplicates).
    let updated = conn
        .prepare_cached(
            "UPDATE transactions SET status = ?1, \
             transaction_token = COALESCE(?2, transaction_token), psp_token = COALESCE(?3, psp_token), \
             psp_reference = COALESCE(?4, psp_reference), action_id = COALESCE(?5, action_id), \
             error_code = ?6, error_message = ?7, response_status = COALESCE(?8, response_status), \
             response_body = COALESCE(?9, response_body), updated_at = ?10, next_check_at = ?11, \
             replay = CASE WHEN ?1 IN ('approved', 'declined') THEN NULL ELSE replay END \
             WHERE id = ?12 AND (?13 IS NULL OR status = ?13)",
        )?
        .execute(params![
            c.status.as_str(),
            c.transaction_token,
            c.psp_token,
            c.psp_reference,
            c.action_id,
            c.error_code,
            c.error_message,
            response_status,
            response_body,
            now,
            c.next_check_at,
            id,
            only_if.map(Status::as_str),
        ])?;
    if updated == 0 {
        return Ok(false);
    }
    if let Some(cb) = callback {
        insert_callback(conn, cb, now)?;
    }
    Ok(true)
}
