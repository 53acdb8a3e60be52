//! Group commit for SQLite: one thread owns the only write connection and runs the write
//! operations that are waiting, together, in one `BEGIN IMMEDIATE` transaction, each inside
//! its own savepoint (a failing operation is rolled back alone). Each caller hears back
//! only after the batch's COMMIT has returned, so an acknowledged write is as durable as
//! the connection's `synchronous` setting makes any commit; under load one fsync then
//! serves many operations.
//!
//! When the batch itself goes wrong (a savepoint statement or COMMIT fails, as on a full
//! disk, or SQLite rolled the whole transaction back on its own), everything is rolled
//! back and each operation is run again alone, so every caller hears what happened to its
//! own write: never "committed" for a write that was not, nor the reverse. The queue is
//! bounded: a full queue refuses a write at once rather than accepting what it may never
//! record.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::{Health, StoreError};

/// The most operations one transaction carries.
const MAX_BATCH: usize = 256;
/// Writes waiting at most; more are refused with `StoreError::Overloaded`.
const QUEUE: usize = 8192;

/// A queued write. `run` may be called more than once (after a rollback of its batch); the
/// result of the last run is the one delivered.
trait Op: Send {
    /// Runs the operation on the connection, inside a savepoint; true if it succeeded.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Tells the caller: its last run's result if `committed` is Ok, else the error.
    fn deliver(self: Box<Self>, committed: Result<(), String>);
}

struct Pending<R, F> {
    op: F,
    result: Option<Result<R, StoreError>>,
    reply: oneshot::Sender<Result<R, StoreError>>,
}

impl<R, F> Op for Pending<R, F>
where
    R: Send + 'static,
    F: FnMut(&Connection) -> Result<R, StoreError> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let result = (self.op)(conn);
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn deliver(self: Box<Self>, committed: Result<(), String>) {
        let result = match (committed, self.result) {
            (Ok(()), Some(result)) => result,
            (Ok(()), None) => Err(StoreError::Commit("the write was never run".into())),
            (Err(e), _) => Err(StoreError::Commit(e)),
        };
        let _ = self.reply.send(result);
    }
}

#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Box<dyn Op>>,
    /// Set while the last write the writer tried did not commit (a full disk, an I/O
    /// error); cleared by the next commit.
    failing: Arc<AtomicBool>,
}

impl Writer {
    /// Starts the writer thread on its own connection.
    pub fn spawn(conn: Connection) -> std::io::Result<Writer> {
        Writer::with_capacity(conn, QUEUE)
    }

    fn with_capacity(conn: Connection, capacity: usize) -> std::io::Result<Writer> {
        let (jobs, rx) = mpsc::channel(capacity);
        let failing = Arc::new(AtomicBool::new(false));
        let flag = failing.clone();
        // A thread of its own, not a blocking task: the statements of a batch run one
        // after another on it with no hop between them.
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run(conn, rx, flag))?;
        Ok(Writer { jobs, failing })
    }

    /// Whether writes can be made now. The writer is dead once its thread has stopped (the
    /// receiver is dropped with it, also when an operation panicked).
    pub fn health(&self) -> Health {
        Health {
            writer_alive: !self.jobs.is_closed(),
            writes_failing: self.failing.load(Ordering::Relaxed),
        }
    }

    /// Runs `op` in the next batch and returns its result after the batch commits. `op`
    /// must be repeatable: it is run again if its batch had to be rolled back. It runs on
    /// the writer's thread, so it must not wait on anything but the connection.
    pub async fn submit<R, F>(&self, op: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnMut(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel::<Result<R, StoreError>>();
        let job: Box<dyn Op> = Box::new(Pending {
            op,
            result: None,
            reply,
        });
        self.jobs.try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => StoreError::Overloaded,
            mpsc::error::TrySendError::Closed(_) => {
                StoreError::Commit("the store writer has stopped".into())
            }
        })?;
        rx.await.map_err(|_| {
            StoreError::Commit("the write was not carried out (see the store writer's log)".into())
        })?
    }
}

/// Runs transaction control statements in order, stopping at the first error. Each is
/// prepared once and kept in the connection's statement cache.
fn exec(conn: &Connection, statements: &[&str]) -> Result<(), String> {
    for sql in statements {
        conn.prepare_cached(sql)
            .and_then(|mut stmt| stmt.execute([]))
            .map_err(|e| format!("{sql}: {e}"))?;
    }
    Ok(())
}

/// What follows an operation: keep or take back its savepoint, then open the next one or
/// commit.
fn after_op(succeeded: bool, last: bool) -> &'static [&'static str] {
    match (succeeded, last) {
        (true, false) => &["RELEASE op", "SAVEPOINT op"],
        (false, false) => &["ROLLBACK TO op", "RELEASE op", "SAVEPOINT op"],
        (true, true) => &["RELEASE op", "COMMIT"],
        (false, true) => &["ROLLBACK TO op", "RELEASE op", "COMMIT"],
    }
}

/// Runs `batch` in one transaction, each operation in its own savepoint. Any error of the
/// transaction's own statements (not of an operation, which its savepoint takes back) fails
/// the whole batch, rolled back; RELEASE fails too if SQLite already rolled the whole
/// transaction back.
fn run_batch(conn: &Connection, batch: &mut [Box<dyn Op>]) -> Result<(), String> {
    let last = batch.len().saturating_sub(1);
    let outcome = (|| {
        exec(conn, &["BEGIN IMMEDIATE", "SAVEPOINT op"])?;
        for (i, op) in batch.iter_mut().enumerate() {
            let succeeded = op.run(conn);
            exec(conn, after_op(succeeded, i == last))?;
        }
        Ok(())
    })();
    if outcome.is_err() && !conn.is_autocommit() {
        let _ = exec(conn, &["ROLLBACK"]);
    }
    outcome
}

fn run(conn: Connection, mut rx: mpsc::Receiver<Box<dyn Op>>, failing: Arc<AtomicBool>) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        match run_batch(&conn, &mut batch) {
            Ok(()) => {
                failing.store(false, Ordering::Relaxed);
                crate::telemetry::store_commit(batch.len());
                batch.into_iter().for_each(|op| op.deliver(Ok(())));
            }
            Err(e) if batch.len() == 1 => {
                failing.store(true, Ordering::Relaxed);
                tracing::error!("store write not committed: {e}");
                batch.into_iter().for_each(|op| op.deliver(Err(e.clone())));
            }
            Err(e) => {
                tracing::warn!(
                    operations = batch.len(),
                    "store batch rolled back ({e}); retrying its writes one by one"
                );
                for mut op in batch {
                    let committed = run_batch(&conn, std::slice::from_mut(&mut op));
                    failing.store(committed.is_err(), Ordering::Relaxed);
                    match &committed {
                        Ok(()) => crate::telemetry::store_commit(1),
                        Err(e) => tracing::error!("store write not committed: {e}"),
                    }
                    op.deliver(committed);
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "group_commit_tests.rs"]
mod tests;
