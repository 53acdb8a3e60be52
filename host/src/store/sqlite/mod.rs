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

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::Semaphore;

use super::group_commit::Writer;
use super::{Health, HealthCheck, StoreError, now_ms};

/// Read connections open at most.
const READERS: usize = 4;
/// Prepared statements each connection keeps (every query of the store fits).
const STATEMENT_CACHE: usize = 64;

pub struct SqliteStore {
    /// SQLite allows one writer at a time: queueing writes on one thread (an async wait,
    /// batched into one commit) is far cheaper than SQLite's sleeping busy handler.
    writer: Writer,
    /// Readers run beside the writer (WAL).
    reader: Readers,
    /// This process, as the owner of the calls it makes (`processing` rows).
    instance: String,
}

impl SqliteStore {
    pub async fn open(path: &str) -> Result<SqliteStore, StoreError> {
        let path = PathBuf::from(path);
        let (writer, path) = tokio::task::spawn_blocking(move || {
            let mut conn = open_connection(&path, false)?;
            migrate(&mut conn)?;
            Ok::<_, StoreError>((conn, path))
        })
        .await
        .map_err(|e| StoreError::Commit(format!("opening the store: {e}")))??;
        Ok(SqliteStore {
            writer: Writer::spawn(writer)
                .map_err(|e| StoreError::Commit(format!("starting the store writer: {e}")))?,
            reader: Readers::new(path),
            instance: super::new_instance_id(),
        })
    }
}

impl HealthCheck for SqliteStore {
    fn health(&self) -> Health {
        self.writer.health()
    }
}

fn open_connection(path: &Path, read_only: bool) -> Result<Connection, StoreError> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE
    } | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    if !read_only {
        // WAL: readers run beside the writer. FULL: a committed payment survives power
        // loss, not only a process crash.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
    }
    Ok(conn)
}

/// Read-only connections, each used by one blocking task at a time.
#[derive(Clone)]
pub(super) struct Readers {
    path: Arc<PathBuf>,
    idle: Arc<Mutex<Vec<Connection>>>,
    permits: Arc<Semaphore>,
}

impl Readers {
    fn new(path: PathBuf) -> Readers {
        Readers {
            path: Arc::new(path),
            idle: Arc::new(Mutex::new(Vec::new())),
            permits: Arc::new(Semaphore::new(READERS)),
        }
    }

    /// Runs `query` on a read connection, off the async threads (SQLite blocks on disk).
    pub(super) async fn read<R, F>(&self, query: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Commit("the store is closed".into()))?;
        let readers = self.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let taken = readers.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let conn = match taken {
                Some(conn) => conn,
                None => open_connection(&readers.path, true)?,
            };
            let result = query(&conn);
            readers
                .idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(conn);
            result
        })
        .await
        .map_err(|e| StoreError::Commit(format!("a store read stopped: {e}")))?
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
    (
        6,
        include_str!("../../../migrations/sqlite/0006_shopper_return.sql"),
    ),
];

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute_batch("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)")?;
    let current: i64 = tx.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |row| row.get(0),
    )?;
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
            (version, now_ms()),
        )?;
    }
    tx.commit()?;
    Ok(())
}
