//! Group commit for SQLite: one task owns the only write connection and runs the write
//! operations that are waiting, together, in one `BEGIN IMMEDIATE` transaction, each inside
//! its own savepoint (a failing operation is rolled back alone). Each caller hears back
//! only after the batch's COMMIT has returned, so an acknowledged write is as durable as
//! the connection's `synchronous` setting makes any commit; under load one fsync then
//! serves many operations.

use futures::future::BoxFuture;
use sqlx::{Connection, SqliteConnection};
use tokio::sync::{mpsc, oneshot};

use super::StoreError;

/// The most operations one transaction carries.
const MAX_BATCH: usize = 256;

/// Sends the operation's result once the batch's fate is known.
type Deliver = Box<dyn FnOnce(Result<(), String>) + Send>;
/// A write operation: runs on the connection, says whether it succeeded (its savepoint is
/// kept or rolled back) and how to deliver its result after COMMIT.
type Job =
    Box<dyn for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, (bool, Deliver)> + Send>;

#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::UnboundedSender<Job>,
}

impl Writer {
    /// Starts the writer task on its own connection.
    pub fn spawn(conn: SqliteConnection) -> Writer {
        let (jobs, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(conn, rx));
        Writer { jobs }
    }

    /// Runs `op` in the next batch and returns its result after the batch commits.
    pub async fn submit<R, F>(&self, op: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<R, StoreError>>
            + Send
            + 'static,
    {
        let (tx, rx) = oneshot::channel::<Result<R, StoreError>>();
        let job: Job = Box::new(move |conn| {
            Box::pin(async move {
                let result = op(conn).await;
                let ok = result.is_ok();
                let deliver: Deliver = Box::new(move |committed| {
                    let _ = tx.send(match committed {
                        Ok(()) => result,
                        Err(e) => Err(StoreError::Commit(e)),
                    });
                });
                (ok, deliver)
            })
        });
        self.jobs
            .send(job)
            .map_err(|_| StoreError::Commit("the store writer has stopped".into()))?;
        rx.await.map_err(|_| {
            StoreError::Commit("the write was not carried out (see the store writer's log)".into())
        })?
    }
}

/// One statement on the connection (a named function keeps the borrow's lifetime simple
/// for the spawned writer future).
async fn exec(conn: &mut SqliteConnection, sql: &'static str) -> Result<(), sqlx::Error> {
    sqlx::query(sql).execute(conn).await.map(|_| ())
}

async fn run(mut conn: SqliteConnection, mut rx: mpsc::UnboundedReceiver<Job>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let mut delivers = Vec::with_capacity(batch.len());
        let began = exec(&mut conn, "BEGIN IMMEDIATE").await;
        if let Err(e) = began {
            // Dropping the jobs unrun tells each caller its write was not carried out.
            tracing::error!(
                operations = batch.len(),
                "store writer cannot begin a transaction: {e}"
            );
            continue;
        }
        for job in batch {
            let _ = exec(&mut conn, "SAVEPOINT op").await;
            let (ok, deliver) = job(&mut conn).await;
            if !ok {
                let _ = exec(&mut conn, "ROLLBACK TO op").await;
            }
            let _ = exec(&mut conn, "RELEASE op").await;
            delivers.push(deliver);
        }
        let committed = match exec(&mut conn, "COMMIT").await {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = exec(&mut conn, "ROLLBACK").await;
                Err(format!("commit failed: {e}"))
            }
        };
        for deliver in delivers {
            deliver(committed.clone());
        }
    }
    let _ = conn.close().await;
}
