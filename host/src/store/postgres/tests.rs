//! PostgreSQL's own tests: what two replicas (two stores, two pools, one database) may do
//! at once, and the URL's pool setting. The behaviour every store shares is tested in
//! `store_tests`, for each store.

use std::collections::HashSet;
use std::sync::Arc;

use super::*;
use crate::store::store_tests::{approved, callback, new};
use crate::store::*;

/// Two stores on one fresh database, as two gateway replicas would have.
async fn replicas() -> (Arc<PostgresStore>, Arc<PostgresStore>) {
    let url = crate::store::pg_test_cluster::database().await;
    let a = PostgresStore::open(&format!("{url}?pool_max=8"))
        .await
        .unwrap();
    // The second runs the migrations again: already applied, nothing happens.
    let b = PostgresStore::open(&format!("{url}?pool_max=8"))
        .await
        .unwrap();
    (Arc::new(a), Arc::new(b))
}

fn pick(a: &Arc<PostgresStore>, b: &Arc<PostgresStore>, i: usize) -> Arc<PostgresStore> {
    if i.is_multiple_of(2) {
        a.clone()
    } else {
        b.clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_captures_over_two_replicas_never_exceed_the_balance() {
    let (a, b) = replicas().await;
    a.begin(new("auth", Action::Authorize, "k0", None, 1_000), None)
        .await
        .unwrap();
    a.complete("auth", approved(), None, None).await.unwrap();
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let s = pick(&a, &b, i);
            tokio::spawn(async move {
                let id = format!("c{i}");
                s.begin(
                    new(&id, Action::Capture, &id, Some("auth"), 300),
                    Some(BalanceRule::Capture),
                )
                .await
                .unwrap()
            })
        })
        .collect();
    let (mut started, mut refused) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Begin::Started(_) => started += 1,
            Begin::InsufficientBalance { available } => {
                assert!(available < 300, "refused with {available} left");
                refused += 1
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((started, refused), (3, 7));
    assert_eq!(b.drawn("auth", Action::Capture).await.unwrap(), 900);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_begins_over_two_replicas_start_once() {
    let (a, b) = replicas().await;
    let tasks: Vec<_> = (0..30)
        .map(|i| {
            let s = pick(&a, &b, i);
            tokio::spawn(async move {
                let id = format!("t{i}");
                s.begin(new(&id, Action::Authorize, "same-key", None, 100), None)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let (mut started, mut existing) = (Vec::new(), Vec::new());
    for t in tasks {
        match t.await.unwrap() {
            Begin::Started(t) => started.push(t.id),
            Begin::Existing(t) => existing.push(t.id),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(started.len(), 1, "{started:?}");
    assert_eq!(existing.len(), 29);
    assert!(existing.iter().all(|id| *id == started[0]), "{existing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_claimed_by_two_replicas_go_to_one() {
    let (a, b) = replicas().await;
    for i in 0..60 {
        // Every third shares a key with the previous ones: only the first is claimable.
        let key = format!("txn-{}", i / 3);
        a.enqueue_callback(callback(Some(&key), &format!("cb-{i}")))
            .await
            .unwrap();
    }
    for i in 0..40 {
        b.enqueue_callback(callback(None, &format!("free-{i}")))
            .await
            .unwrap();
    }
    let now = now_ms() + 1;
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let s = pick(&a, &b, i);
            tokio::spawn(async move { s.claim_callbacks(now, now + 30_000, 7).await.unwrap() })
        })
        .collect();
    let mut rounds = Vec::new();
    for t in tasks {
        rounds.push(t.await.unwrap());
    }
    // What the concurrent rounds left (a round may find fewer rows while others hold them).
    rounds.push(a.claim_callbacks(now, now + 30_000, 100).await.unwrap());
    let mut seen = HashSet::new();
    let mut keyed = 0;
    for c in rounds.into_iter().flatten() {
        assert!(seen.insert(c.id), "callback {} handed out twice", c.id);
        if c.action_id.as_deref().is_some_and(|a| a.starts_with("cb-")) {
            keyed += 1;
        }
    }
    // 20 keys with one callback due each, and 40 unkeyed ones: each claimed once.
    assert_eq!(
        keyed, 20,
        "per-key order: only the first of each key is due"
    );
    assert_eq!(seen.len(), 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_due_row_is_checked_by_one_replica() {
    let (a, b) = replicas().await;
    for i in 0..20 {
        let id = format!("p{i}");
        a.begin(new(&id, Action::Authorize, &id, None, 5), None)
            .await
            .unwrap();
        let pending = Completion {
            next_check_at: Some(100 + i),
            ..Completion::status(Status::Pending)
        };
        a.complete(&id, pending, None, None).await.unwrap();
    }
    let (x, y) = tokio::join!(a.due_for_check(1_000, 15), b.due_for_check(1_000, 15));
    let rest = a.due_for_check(1_000, 20).await.unwrap();
    let rounds = [x.unwrap(), y.unwrap(), rest];
    let mut seen = HashSet::new();
    for t in rounds.iter().flatten() {
        assert!(seen.insert(t.id.clone()), "{} went to two checkers", t.id);
    }
    assert_eq!(seen.len(), 20);
    // Claimed: leased past the round, not due again until the lease ends.
    assert!(a.due_for_check(1_000, 20).await.unwrap().is_empty());
    assert_eq!(
        b.due_for_check(1_000 + recovery::CHECK_LEASE_MS, 20)
            .await
            .unwrap()
            .len(),
        20
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_the_pool() {
    let (a, _b) = replicas().await;
    assert_eq!(
        a.health(),
        Health {
            writer_alive: true,
            writes_failing: false
        }
    );
    a.pool.close().await;
    assert!(
        a.begin(new("x", Action::Authorize, "kx", None, 1), None)
            .await
            .is_err()
    );
    assert_eq!(
        a.health(),
        Health {
            writer_alive: false,
            writes_failing: true
        }
    );
}

#[test]
fn pool_max_is_taken_out_of_the_url() {
    let (url, n) = split_pool_max("postgres://u:p@h:5432/db?sslmode=require&pool_max=5").unwrap();
    assert_eq!(
        (url.as_str(), n),
        ("postgres://u:p@h:5432/db?sslmode=require", 5)
    );
    let (url, n) = split_pool_max("postgresql://u@h/db?pool_max=2").unwrap();
    assert_eq!((url.as_str(), n), ("postgresql://u@h/db", 2));
    let (url, n) = split_pool_max("postgres://u@h/db").unwrap();
    assert_eq!((url.as_str(), n), ("postgres://u@h/db", DEFAULT_POOL_MAX));
    assert!(split_pool_max("postgres://u@h/db?pool_max=0").is_err());
}

#[tokio::test]
async fn both_schemes_open_the_postgres_store() {
    let url = crate::store::pg_test_cluster::database().await;
    let long = url.replacen("postgres://", "postgresql://", 1);
    for url in [url, long] {
        let store = crate::store::open(&format!("{url}?pool_max=2"))
            .await
            .unwrap();
        assert!(store.health().writer_alive, "{url}");
        assert_eq!(store.callbacks_waiting().await.unwrap(), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_never_takes_over_a_live_call() {
    let (a, b) = replicas().await;
    a.begin(new("mine", Action::Authorize, "k-mine", None, 5), None)
        .await
        .unwrap();
    let now = now_ms();
    // Within the lease, as at any replica's start-up or reconciler round.
    assert_eq!(b.mark_interrupted(now, 1).await.unwrap(), 0);
    assert_eq!(a.renew_leases(now + 20_000).await.unwrap(), 1);
    assert_eq!(
        b.mark_interrupted(now + CALL_LEASE_MS + 1, 1)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        a.get("mine").await.unwrap().unwrap().status,
        Status::Processing
    );
    // The owner died: past its last lease the call is unknown, for recovery.
    assert_eq!(
        b.mark_interrupted(now + 20_000 + CALL_LEASE_MS + 1, 1)
            .await
            .unwrap(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_commit_durably_even_on_a_server_that_does_not() {
    // The test cluster runs with synchronous_commit = off (fast, and what a careless
    // server could have): every session of the store raises it.
    let (a, _b) = replicas().await;
    let server_default: String =
        sqlx::query_scalar("SELECT reset_val FROM pg_settings WHERE name = 'synchronous_commit'")
            .fetch_one(&a.pool)
            .await
            .unwrap();
    if std::env::var_os("PSP_TEST_POSTGRES_URL").is_none() {
        assert_eq!(server_default, "off");
    }
    for _ in 0..4 {
        let mode: String = sqlx::query_scalar("SHOW synchronous_commit")
            .fetch_one(&a.pool)
            .await
            .unwrap();
        assert_eq!(mode, "on");
    }
}
