//! The embedded store: one SQLite file in WAL mode. Writes go through one writer task
//! (`group_commit`) on the only write connection, so a balance check and the insert it
//! guards can never interleave with another write; reads use a separate pool.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{ConnectOptions, Row, SqliteConnection};

use super::group_commit::Writer;
use super::*;

pub struct SqliteStore {
    /// SQLite allows one writer at a time: queueing writes in one task (an async wait,
    /// batched into one commit) is far cheaper than SQLite's sleeping busy handler.
    writer: Writer,
    /// Readers run beside the writer (WAL).
    reader: SqlitePool,
}

const COLUMNS: &str = "id, gateway, front, action, idempotency_key, resource_id, parent_id, \
    transaction_token, psp_token, psp_reference, action_id, amount_cents, currency, status, \
    error_code, error_message, response_status, response_body, created_at, updated_at";

impl SqliteStore {
    pub async fn open(path: &str) -> Result<SqliteStore, StoreError> {
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a committed payment survives power loss, not only a process crash.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let mut conn = options.connect().await?;
        migrate(&mut conn).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await?;
        Ok(SqliteStore {
            writer: Writer::spawn(conn),
            reader,
        })
    }
}

/// Schema versions, applied in order, each once, each in one transaction.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/sqlite/0001_payments.sql")),
    (
        2,
        include_str!("../../migrations/sqlite/0002_subscriptions.sql"),
    ),
];

async fn migrate(conn: &mut SqliteConnection) -> Result<(), StoreError> {
    use sqlx::Connection;
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    sqlx::raw_sql("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)")
        .execute(&mut *tx)
        .await?;
    let current: i64 =
        sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
            .fetch_one(&mut *tx)
            .await?;
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        sqlx::raw_sql(sql).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)")
            .bind(version)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

fn row_to_transaction(row: &SqliteRow) -> Result<Transaction, StoreError> {
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
    })
}

/// What a parent's children of one action hold: those that succeeded or may still.
const DRAWN: &str = "SELECT COALESCE(SUM(amount_cents), 0) FROM transactions \
    WHERE parent_id = ? AND action = ? AND status IN ('processing', 'approved', 'pending')";

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

#[async_trait]
impl Store for SqliteStore {
    async fn begin(
        &self,
        new: NewTransaction,
        rule: Option<BalanceRule>,
    ) -> Result<Begin, StoreError> {
        self.writer
            .submit(move |conn| async move { begin(conn, new, rule).await }.boxed())
            .await
    }

    async fn retry(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.writer
            .submit(move |conn| {
                async move {
                    let done = sqlx::query(
                        "UPDATE transactions SET status = 'processing', response_status = NULL, \
                         response_body = NULL, updated_at = ? WHERE id = ? AND status = 'failed'",
                    )
                    .bind(now_ms())
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
             AND status = 'pending' ORDER BY created_at"
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
                async move { complete(conn, &id, completion, callback, only_if).await }.boxed()
            })
            .await
    }

    async fn pending_before(
        &self,
        before_ms: i64,
        limit: i64,
    ) -> Result<Vec<Transaction>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM transactions WHERE status = 'pending' AND updated_at < ? \
             ORDER BY updated_at LIMIT ?"
        ))
        .bind(before_ms)
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(row_to_transaction).collect()
    }

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
                async move {
                    insert_callback(conn, &cb, now_ms()).await?;
                    Ok(())
                }
                .boxed()
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

    async fn save_subscription(&self, sub: Subscription) -> Result<Subscription, StoreError> {
        self.writer
            .submit(move |conn| {
                async move {
                    let now = now_ms();
                    sqlx::query(
                        "INSERT INTO subscriptions (token, gateway, shop_transaction_id, \
                         customer_token, payment_source_token, currency, interval_unit, \
                         interval_count, status, created_at, updated_at) \
                         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                         ON CONFLICT (gateway, shop_transaction_id) DO NOTHING",
                    )
                    .bind(&sub.token)
                    .bind(&sub.gateway)
                    .bind(&sub.shop_transaction_id)
                    .bind(&sub.customer_token)
                    .bind(&sub.payment_source_token)
                    .bind(&sub.currency)
                    .bind(&sub.interval_unit)
                    .bind(sub.interval_count)
                    .bind(&sub.status)
                    .bind(now)
                    .bind(now)
                    .execute(&mut *conn)
                    .await?;
                    let row = sqlx::query(&format!(
                        "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions \
                         WHERE gateway = ? AND shop_transaction_id = ?"
                    ))
                    .bind(&sub.gateway)
                    .bind(&sub.shop_transaction_id)
                    .fetch_one(&mut *conn)
                    .await?;
                    row_to_subscription(&row)
                }
                .boxed()
            })
            .await
    }

    async fn subscription(
        &self,
        gateway: &str,
        token: &str,
    ) -> Result<Option<Subscription>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE gateway = ? AND token = ?"
        ))
        .bind(gateway)
        .bind(token)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(row_to_subscription).transpose()
    }

    async fn set_subscription_status(
        &self,
        gateway: &str,
        token: &str,
        status: &str,
    ) -> Result<bool, StoreError> {
        let (gateway, token, status) = (gateway.to_owned(), token.to_owned(), status.to_owned());
        self.writer
            .submit(move |conn| {
                async move {
                    let done = sqlx::query(
                        "UPDATE subscriptions SET status = ?, updated_at = ? \
                         WHERE gateway = ? AND token = ?",
                    )
                    .bind(&status)
                    .bind(now_ms())
                    .bind(&gateway)
                    .bind(&token)
                    .execute(&mut *conn)
                    .await?;
                    Ok(done.rows_affected() == 1)
                }
                .boxed()
            })
            .await
    }
}

const SUBSCRIPTION_COLUMNS: &str = "token, gateway, shop_transaction_id, customer_token, \
    payment_source_token, currency, interval_unit, interval_count, status";

fn row_to_subscription(row: &SqliteRow) -> Result<Subscription, StoreError> {
    Ok(Subscription {
        token: row.try_get("token")?,
        gateway: row.try_get("gateway")?,
        shop_transaction_id: row.try_get("shop_transaction_id")?,
        customer_token: row.try_get("customer_token")?,
        payment_source_token: row.try_get("payment_source_token")?,
        currency: row.try_get("currency")?,
        interval_unit: row.try_get("interval_unit")?,
        interval_count: row.try_get("interval_count")?,
        status: row.try_get("status")?,
    })
}

async fn insert_callback(
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

async fn begin(
    conn: &mut SqliteConnection,
    new: NewTransaction,
    rule: Option<BalanceRule>,
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
         parent_id, transaction_token, amount_cents, currency, status, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'processing', ?, ?)",
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
         response_body = COALESCE(?, response_body), updated_at = ? \
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

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let s = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
        (dir, s)
    }

    fn new(
        id: &str,
        action: Action,
        key: &str,
        parent: Option<&str>,
        amount: i64,
    ) -> NewTransaction {
        NewTransaction {
            id: id.into(),
            gateway: "gw".into(),
            front: "test".into(),
            action,
            idempotency_key: key.into(),
            resource_id: format!("res-{id}"),
            parent_id: parent.map(Into::into),
            transaction_token: format!("tok-{id}"),
            amount_cents: amount,
            currency: "EUR".into(),
        }
    }

    fn approved() -> Completion {
        Completion {
            status: Status::Approved,
            transaction_token: None,
            psp_token: None,
            psp_reference: None,
            action_id: None,
            error_code: None,
            error_message: None,
            response: Some(StoredAnswer {
                status: 200,
                body: "{}".into(),
            }),
        }
    }

    #[tokio::test]
    async fn idempotency_key_is_unique() {
        let (_d, s) = store().await;
        let first = s
            .begin(new("a", Action::Authorize, "k", None, 100), None)
            .await
            .unwrap();
        assert!(matches!(first, Begin::Started(_)));
        let again = s
            .begin(new("b", Action::Authorize, "k", None, 100), None)
            .await
            .unwrap();
        match again {
            Begin::Existing(t) => assert_eq!(t.id, "a"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn capture_and_refund_balances() {
        let (_d, s) = store().await;
        s.begin(new("auth", Action::Authorize, "k0", None, 1000), None)
            .await
            .unwrap();
        s.complete("auth", approved(), None, None).await.unwrap();
        let cap = |id: &str, amount| new(id, Action::Capture, id, Some("auth"), amount);
        assert!(matches!(
            s.begin(cap("c1", 600), Some(BalanceRule::Capture))
                .await
                .unwrap(),
            Begin::Started(_)
        ));
        assert_eq!(
            s.begin(cap("c2", 500), Some(BalanceRule::Capture))
                .await
                .unwrap(),
            Begin::InsufficientBalance { available: 400 }
        );
        assert!(matches!(
            s.begin(cap("c3", 400), Some(BalanceRule::Capture))
                .await
                .unwrap(),
            Begin::Started(_)
        ));
        // A failed capture gives its amount back.
        s.complete(
            "c3",
            Completion {
                status: Status::Failed,
                response: None,
                ..approved()
            },
            None,
            None,
        )
        .await
        .unwrap();
        assert!(matches!(
            s.begin(cap("c4", 400), Some(BalanceRule::Capture))
                .await
                .unwrap(),
            Begin::Started(_)
        ));
        s.complete("c1", approved(), None, None).await.unwrap();
        let refund = |id: &str, amount| new(id, Action::Refund, id, Some("c1"), amount);
        assert!(matches!(
            s.begin(refund("r1", 600), Some(BalanceRule::Refund))
                .await
                .unwrap(),
            Begin::Started(_)
        ));
        assert_eq!(
            s.begin(refund("r2", 1), Some(BalanceRule::Refund))
                .await
                .unwrap(),
            Begin::InsufficientBalance { available: 0 }
        );
    }

    #[tokio::test]
    async fn void_blocks_captures_and_only_once() {
        let (_d, s) = store().await;
        s.begin(new("auth", Action::Authorize, "k0", None, 1000), None)
            .await
            .unwrap();
        let void = |id: &str| new(id, Action::Void, id, Some("auth"), 1000);
        assert!(matches!(
            s.begin(void("v1"), Some(BalanceRule::Void)).await.unwrap(),
            Begin::Started(_)
        ));
        assert!(matches!(
            s.begin(void("v2"), Some(BalanceRule::Void)).await.unwrap(),
            Begin::InsufficientBalance { .. }
        ));
        let cap = new("c", Action::Capture, "c", Some("auth"), 1);
        assert!(matches!(
            s.begin(cap, Some(BalanceRule::Capture)).await.unwrap(),
            Begin::InsufficientBalance { available: 0 }
        ));
    }

    #[tokio::test]
    async fn completion_with_callback_and_outbox_leases() {
        let (_d, s) = store().await;
        s.begin(new("p", Action::Authorize, "k", None, 5), None)
            .await
            .unwrap();
        let pending = Completion {
            status: Status::Pending,
            psp_reference: Some("ref-1".into()),
            action_id: Some("act-1".into()),
            ..approved()
        };
        s.complete("p", pending, None, None).await.unwrap();
        assert_eq!(
            s.find_pending_by_reference("gw", "ref-1")
                .await
                .unwrap()
                .len(),
            1
        );
        let cb = NewCallback {
            gateway: "gw".into(),
            url: "http://x".into(),
            action_id: Some("act-1".into()),
            headers: vec![("X-Sig".into(), "abc".into())],
            body: b"{}".to_vec(),
        };
        // Only from pending: a second completion is refused.
        assert!(
            s.complete(
                "p",
                Completion {
                    response: None,
                    ..approved()
                },
                Some(cb.clone()),
                Some(Status::Pending)
            )
            .await
            .unwrap()
        );
        assert!(
            !s.complete(
                "p",
                Completion {
                    response: None,
                    ..approved()
                },
                Some(cb),
                Some(Status::Pending)
            )
            .await
            .unwrap()
        );
        let t = s.get("p").await.unwrap().unwrap();
        assert_eq!(t.status, Status::Approved);
        assert_eq!(t.response.unwrap().status, 200, "the first answer stays");
        assert_eq!(s.callbacks_waiting().await.unwrap(), 1);
        let now = now_ms();
        let claimed = s.claim_callbacks(now, now + 30_000, 10).await.unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(
            claimed[0].headers,
            vec![("X-Sig".to_owned(), "abc".to_owned())]
        );
        // Leased: not claimable again until the lease ends.
        assert!(
            s.claim_callbacks(now, now + 30_000, 10)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            s.claim_callbacks(now + 30_000, now + 60_000, 10)
                .await
                .unwrap()
                .len(),
            1
        );
        s.callback_delivered(claimed[0].id, now).await.unwrap();
        assert_eq!(s.callbacks_waiting().await.unwrap(), 0);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn concurrent_captures_never_exceed_the_balance() {
        let (_d, s) = store().await;
        let s = std::sync::Arc::new(s);
        s.begin(new("auth", Action::Authorize, "k0", None, 1000), None)
            .await
            .unwrap();
        s.complete("auth", approved(), None, None).await.unwrap();
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let s = s.clone();
                tokio::spawn(async move {
                    let id = format!("c{i}");
                    s.begin(
                        new(&id, Action::Capture, &id, Some("auth"), 100),
                        Some(BalanceRule::Capture),
                    )
                    .await
                    .unwrap()
                })
            })
            .collect();
        let mut started = 0;
        for t in tasks {
            if matches!(t.await.unwrap(), Begin::Started(_)) {
                started += 1;
            }
        }
        assert_eq!(started, 10, "exactly the authorized amount is captured");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_failing_write_does_not_spoil_its_batch() {
        let (_d, s) = store().await;
        let s = std::sync::Arc::new(s);
        s.begin(new("dup", Action::Authorize, "k-dup", None, 1), None)
            .await
            .unwrap();
        // Same primary key, other idempotency key: the insert fails inside the batch.
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let s = s.clone();
                tokio::spawn(async move {
                    let id = if i % 5 == 0 {
                        "dup".to_owned()
                    } else {
                        format!("ok{i}")
                    };
                    s.begin(new(&id, Action::Authorize, &format!("k{i}"), None, 1), None)
                        .await
                })
            })
            .collect();
        let (mut ok, mut failed) = (0, 0);
        for t in tasks {
            match t.await.unwrap() {
                Ok(Begin::Started(_)) => ok += 1,
                Err(StoreError::Database(_)) => failed += 1,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!((ok, failed), (16, 4));
        for i in (0..20).filter(|i| i % 5 != 0) {
            assert!(
                s.get(&format!("ok{i}")).await.unwrap().is_some(),
                "ok{i} was committed"
            );
        }
    }
}
