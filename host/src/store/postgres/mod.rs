//! The shared store: one PostgreSQL database that several gateway replicas use at once.
//! Every guarantee across processes (idempotency, balances, leases) is held by the
//! database (unique keys, row locks, `SKIP LOCKED` claims), never in process memory. One
//! file per aggregate holds its queries.

mod outbox;
mod recovery;
mod subscriptions;
#[cfg(test)]
mod tests;
mod transactions;

use std::sync::atomic::{AtomicBool, Ordering};

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use super::{Health, HealthCheck, StoreError, now_ms};

/// Connections per process when the URL has no `pool_max`.
pub const DEFAULT_POOL_MAX: u32 = 16;

/// Any fixed key: replicas starting together take this lock, so one migrates at a time.
const MIGRATION_LOCK: i64 = 0x7073_705f_6777_0001;

pub struct PostgresStore {
    pool: PgPool,
    /// Set when the last write failed for want of the database (connection, I/O), cleared
    /// by the next write that succeeds.
    writes_failing: AtomicBool,
    /// This process, as the owner of the calls it makes (`processing` rows).
    instance: String,
}

const ACQUIRE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

impl PostgresStore {
    /// Opens `postgres://` (or `postgresql://`) URL, running migrations. A `pool_max`
    /// query parameter sets the pool size (default 16); the rest of the URL (`sslmode`,
    /// ...) goes to sqlx as it is.
    pub async fn open(url: &str) -> Result<PostgresStore, StoreError> {
        let (url, pool_max) = split_pool_max(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(pool_max)
            // With the database down a request answers 503 within this, not after sqlx's
            // default 30 s; the pool reconnects by itself once the server is back.
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(|conn, _| Box::pin(require_durable_commits(conn)))
            .connect(&url)
            .await?;
        migrate(&pool).await?;
        Ok(PostgresStore {
            pool,
            writes_failing: AtomicBool::new(false),
            instance: super::new_instance_id(),
        })
    }

    /// Records how a write went for `health` (and counts its commit: each write here is
    /// its own), passing its result through.
    fn written<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        match &result {
            Ok(_) => {
                self.writes_failing.store(false, Ordering::Relaxed);
                crate::telemetry::store_commit(1);
            }
            Err(StoreError::Database(e)) if is_unavailable(e) => {
                self.writes_failing.store(true, Ordering::Relaxed)
            }
            // A constraint or a corrupt row says nothing about the database being reachable.
            Err(_) => {}
        }
        result
    }
}

/// An answer follows its commit, so a commit must be durable when acknowledged: a server
/// (or role) running with `synchronous_commit = off` would lose the last acknowledged
/// payments in a crash. Such a session is raised to `on`; stronger settings are kept.
async fn require_durable_commits(conn: &mut sqlx::PgConnection) -> Result<(), sqlx::Error> {
    let mode: String = sqlx::query_scalar("SHOW synchronous_commit")
        .fetch_one(&mut *conn)
        .await?;
    if mode == "off" {
        sqlx::query("SET synchronous_commit = on")
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

fn is_unavailable(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
    )
}

/// Takes `pool_max` out of the URL's query (sqlx would refuse an unknown parameter).
fn split_pool_max(raw: &str) -> Result<(String, u32), StoreError> {
    let bad = || StoreError::UnsupportedUrl(format!("{}://...", scheme(raw)));
    let mut url = url::Url::parse(raw).map_err(|_| bad())?;
    let mut pool_max = DEFAULT_POOL_MAX;
    let mut kept = Vec::new();
    for (k, v) in url.query_pairs() {
        if k == "pool_max" {
            pool_max = v.parse().ok().filter(|n| *n > 0).ok_or_else(bad)?;
        } else {
            kept.push((k.into_owned(), v.into_owned()));
        }
    }
    if kept.is_empty() {
        url.set_query(None);
    } else {
        url.query_pairs_mut().clear().extend_pairs(kept);
    }
    Ok((url.into(), pool_max))
}

fn scheme(url: &str) -> &str {
    url.split("://").next().unwrap_or("")
}

impl HealthCheck for PostgresStore {
    fn health(&self) -> Health {
        Health {
            writer_alive: !self.pool.is_closed(),
            writes_failing: self.writes_failing.load(Ordering::Relaxed),
        }
    }
}

/// Schema versions, numbered as SQLite's, applied in order, each once.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        include_str!("../../../migrations/postgres/0001_payments.sql"),
    ),
    (
        2,
        include_str!("../../../migrations/postgres/0002_subscriptions.sql"),
    ),
    (
        3,
        include_str!("../../../migrations/postgres/0003_outcomes.sql"),
    ),
    (
        4,
        include_str!("../../../migrations/postgres/0004_outbox_delivery.sql"),
    ),
    (
        5,
        include_str!("../../../migrations/postgres/0005_call_leases.sql"),
    ),
    (
        6,
        include_str!("../../../migrations/postgres/0006_shopper_return.sql"),
    ),
];

/// All pending versions in one transaction, under an advisory lock held until it ends:
/// replicas starting together wait for each other instead of racing.
async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS schema_migrations \
         (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )
    .execute(&mut *tx)
    .await?;
    let current: i64 =
        sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
            .fetch_one(&mut *tx)
            .await?;
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        sqlx::raw_sql(sql).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
            .bind(version)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}
