//! The SQLite store's own tests: a batch of the group commit survives one failing write.
//! The behaviour every store shares is tested in `store_tests`, for each store.

use super::*;
use crate::store::store_tests::new;
use crate::store::*;

async fn store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let s = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
    (dir, s)
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
            Err(StoreError::Sqlite(_)) => failed += 1,
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
