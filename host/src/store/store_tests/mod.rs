//! The store's behaviour, one test suite for every store: each test is written once
//! against `Arc<dyn Store>` and `for_each_store!` instantiates it for SQLite and for
//! PostgreSQL (a throwaway cluster, see `pg_test_cluster`). Tests of one store's
//! mechanics (SQLite's group commit, PostgreSQL's replicas) stay with that store.

use std::sync::Arc;

use super::*;

/// Instantiates each named `async fn(Arc<dyn Store>)` as a test per store, in modules
/// `sqlite` and `postgres`.
macro_rules! for_each_store {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let (_keep, store) = crate::store::store_tests::sqlite().await;
                    super::$test(store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let store = crate::store::store_tests::postgres().await;
                    super::$test(store).await;
                }
            )*
        }
    };
}

/// As `for_each_store!`, for tests of two processes on one database: each named
/// `async fn(Arc<dyn Store>, Arc<dyn Store>)` gets two store handles (two writers, two
/// pools, two instance ids) on the same file or database.
macro_rules! for_each_store_pair {
    ($($test:ident),* $(,)?) => {
        mod sqlite_pair {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let (_keep, a, b) = crate::store::store_tests::sqlite_pair().await;
                    super::$test(a, b).await;
                }
            )*
        }
        mod postgres_pair {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let (a, b) = crate::store::store_tests::postgres_pair().await;
                    super::$test(a, b).await;
                }
            )*
        }
    };
}

mod outbox;
mod transactions;

/// A store in a fresh file; the directory lives as long as the returned guard.
pub async fn sqlite() -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let s = sqlite::SqliteStore::open(path.to_str().unwrap())
        .await
        .unwrap();
    (dir, Arc::new(s))
}

/// Two handles on one fresh SQLite file: the process that was, and the one that follows.
pub async fn sqlite_pair() -> (tempfile::TempDir, Arc<dyn Store>, Arc<dyn Store>) {
    let (dir, a) = sqlite().await;
    let path = dir.path().join("t.db");
    let b = sqlite::SqliteStore::open(path.to_str().unwrap())
        .await
        .unwrap();
    (dir, a, Arc::new(b))
}

/// Two handles on one fresh database: two replicas.
pub async fn postgres_pair() -> (Arc<dyn Store>, Arc<dyn Store>) {
    let url = super::pg_test_cluster::database().await;
    let open = || async {
        Arc::new(
            postgres::PostgresStore::open(&format!("{url}?pool_max=4"))
                .await
                .unwrap(),
        ) as Arc<dyn Store>
    };
    (open().await, open().await)
}

/// A store on a fresh database of the test cluster (small pool: many tests run at once).
pub async fn postgres() -> Arc<dyn Store> {
    let url = super::pg_test_cluster::database().await;
    Arc::new(
        postgres::PostgresStore::open(&format!("{url}?pool_max=4"))
            .await
            .unwrap(),
    )
}

pub fn new(
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
        replay: Some(format!("{{\"call\":\"{id}\"}}")),
        shopper_return: None,
    }
}

pub fn approved() -> Completion {
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
        next_check_at: None,
    }
}

pub fn callback(key: Option<&str>, action_id: &str) -> NewCallback {
    NewCallback {
        gateway: "gw".into(),
        front: "commerce_layer".into(),
        ordering_key: key.map(Into::into),
        url: "http://receiver/webhook".into(),
        action_id: Some(action_id.into()),
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: format!("{{\"action_id\":\"{action_id}\"}}").into_bytes(),
    }
}
