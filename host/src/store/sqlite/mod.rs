//! The embedded store: one SQLite file in WAL mode. Writes go through one writer task
//! (`group_commit`) on the only write connection, so a balance check and the insert it
//! guards can never interleave with another write; reads use a separate pool. One file per
//! aggregate holds its queries.

mod outbox;
mod recovery;
mod subscriptions;
#[cfg(test)]
mod tests;
mod transactions;

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{ConnectOptions, SqliteConnection};

use super::group_commit::Writer;
use super::{Health, HealthCheck, StoreError, now_ms};

pub struct SqliteStore {
    /// SQLite allows one writer at a time: queueing writes in one task (an async wait,
    /// batched into one commit) is far cheaper than SQLite's sleeping busy handler.
    writer: Writer,
    /// Readers run beside the writer (WAL).
    reader: SqlitePool,
    /// This process, as the owner of the calls it makes (`processing` rows).
    instance: String,
}

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
            instance: super::new_instance_id(),
        })
    }
}

impl HealthCheck for SqliteStore {
    fn health(&self) -> Health {
        self.writer.health()
    }
}

/// Schema versions, applied in order, each once, each in one transaction.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        include_str!("../../../migrations/sqlite/0001_payments.sql"),
    ),
    (
        2,
        include_str!("../../../migrations/sqlite/0002_subscriptions.sql"),
    ),
    (
        3,
        include_str!("../../../migrations/sqlite/0003_outcomes.sql"),
    ),
    (
        4,
        include_str!("../../../migrations/sqlite/0004_outbox_delivery.sql"),
    ),
    (
        5,
        include_str!("../../../migrations/sqlite/0005_call_leases.sql"),
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
