//! Group commit under faults: a batch that SQLite rolls back behind the writer's back, a
//! write that cannot commit, a full queue and a writer that died. Every caller must hear
//! what happened to its own write, and the table must hold each committed write once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rusqlite::Connection;

use super::Writer;
use crate::store::StoreError;

async fn writer(capacity: usize) -> (Writer, Reader) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gc.db");
    let conn = Connection::open(&path).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.execute_batch("CREATE TABLE t (v INTEGER NOT NULL)")
        .unwrap();
    let reader = Connection::open(&path).unwrap();
    (
        Writer::with_capacity(conn, capacity).unwrap(),
        Reader(reader, dir),
    )
}

/// A second connection on the same file (and the folder that holds it).
struct Reader(Connection, #[allow(dead_code)] tempfile::TempDir);

impl Reader {
    async fn values(&mut self) -> Vec<i64> {
        let mut stmt = self.0.prepare("SELECT v FROM t ORDER BY v").unwrap();
        stmt.query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }
}

fn insert(w: &Writer, v: i64) -> impl std::future::Future<Output = Result<(), StoreError>> + use<> {
    let w = w.clone();
    async move {
        w.submit(move |conn| {
            conn.execute("INSERT INTO t (v) VALUES (?)", [v])?;
            Ok(())
        })
        .await
    }
}

/// An operation that rolls the whole transaction back (as SQLite itself does on a full
/// disk or an I/O error) on its first `bad_runs` runs, then inserts `v`.
fn rogue(
    w: &Writer,
    v: i64,
    bad_runs: usize,
) -> impl std::future::Future<Output = Result<(), StoreError>> + use<> {
    let w = w.clone();
    let runs = Arc::new(AtomicUsize::new(0));
    async move {
        w.submit(move |conn| {
            if runs.fetch_add(1, Ordering::SeqCst) < bad_runs {
                conn.execute_batch("ROLLBACK")?;
                return Ok(());
            }
            conn.execute("INSERT INTO t (v) VALUES (?)", [v])?;
            Ok(())
        })
        .await
    }
}

/// Holds the writer inside a batch until `release` is sent (or dropped).
fn hold(
    w: &Writer,
    release: std::sync::mpsc::Receiver<()>,
) -> tokio::task::JoinHandle<Result<(), StoreError>> {
    let w = w.clone();
    tokio::spawn(async move {
        w.submit(move |_conn| {
            let _ = release.recv();
            Ok(())
        })
        .await
    })
}

/// Waits until `n` jobs wait in the writer's queue (so they form the next batch).
async fn queued(w: &Writer, n: usize) {
    for _ in 0..500 {
        if w.jobs.max_capacity() - w.jobs.capacity() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the jobs were never queued");
}

/// Runs three writes as one batch behind a held writer; the middle one is `rogue`.
async fn batch_of_three(bad_runs: usize) -> (Vec<Result<(), StoreError>>, Vec<i64>, Writer) {
    let (w, mut reader) = writer(64).await;
    let (release, held) = std::sync::mpsc::channel();
    let held = hold(&w, held);
    queued(&w, 0).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let a = tokio::spawn(insert(&w, 1));
    queued(&w, 1).await;
    let b = tokio::spawn(rogue(&w, 2, bad_runs));
    queued(&w, 2).await;
    let c = tokio::spawn(insert(&w, 3));
    queued(&w, 3).await;
    release.send(()).unwrap();
    held.await.unwrap().unwrap();
    let results = vec![a.await.unwrap(), b.await.unwrap(), c.await.unwrap()];
    (results, reader.values().await, w)
}

#[tokio::test]
async fn a_batch_rolled_back_under_the_writer_is_rerun_write_by_write() {
    // The rogue write rolls the batch back once, then succeeds alone: every caller hears
    // "committed" and every write is in the table exactly once.
    let (results, values, w) = batch_of_three(1).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(values, vec![1, 2, 3]);
    assert!(!w.health().writes_failing);
}

#[tokio::test]
async fn a_write_that_never_commits_is_reported_failed_and_the_others_committed() {
    let (results, values, w) = batch_of_three(usize::MAX).await;
    assert!(results[0].is_ok(), "{results:?}");
    assert!(
        matches!(results[1], Err(StoreError::Commit(_))),
        "{results:?}"
    );
    assert!(results[2].is_ok(), "{results:?}");
    assert_eq!(values, vec![1, 3], "no failed write in the table");
    // The last write tried alone was the good third one.
    assert!(w.health().writer_alive);
    insert(&w, 4).await.unwrap();
    assert!(!w.health().writes_failing);
}

#[tokio::test]
async fn a_failed_commit_shows_in_health_until_the_next_commit() {
    let (w, mut reader) = writer(8).await;
    assert!(rogue(&w, 1, usize::MAX).await.is_err());
    let h = w.health();
    assert!(h.writer_alive && h.writes_failing, "{h:?}");
    insert(&w, 2).await.unwrap();
    assert!(!w.health().writes_failing);
    assert_eq!(reader.values().await, vec![2]);
}

#[tokio::test]
async fn a_full_queue_refuses_at_once_and_accepts_nothing_it_cannot_record() {
    let (w, mut reader) = writer(4).await;
    let (release, held) = std::sync::mpsc::channel();
    let held = hold(&w, held);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let waiting: Vec<_> = (1..=4).map(|v| tokio::spawn(insert(&w, v))).collect();
    queued(&w, 4).await;
    let refused = tokio::time::timeout(Duration::from_secs(5), insert(&w, 99))
        .await
        .expect("a full queue answers at once");
    assert!(
        matches!(refused, Err(StoreError::Overloaded)),
        "{refused:?}"
    );
    release.send(()).unwrap();
    held.await.unwrap().unwrap();
    for w in waiting {
        w.await.unwrap().unwrap();
    }
    assert_eq!(reader.values().await, vec![1, 2, 3, 4]);
}

#[tokio::test]
async fn a_dead_writer_is_reported_and_refuses_writes() {
    let (w, _reader) = writer(8).await;
    assert!(w.health().writer_alive);
    let boom = w
        .submit(|_conn| -> Result<(), StoreError> { panic!("an operation panicked") })
        .await;
    assert!(boom.is_err(), "{boom:?}");
    for _ in 0..100 {
        if !w.health().writer_alive {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!w.health().writer_alive);
    assert!(matches!(insert(&w, 1).await, Err(StoreError::Commit(_))));
}
