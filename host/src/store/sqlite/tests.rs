//! The SQLite store's own tests: idempotency, balances, completion, leases, batches.

use super::*;
use crate::store::*;

async fn store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let s = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
    (dir, s)
}

fn new(id: &str, action: Action, key: &str, parent: Option<&str>, amount: i64) -> NewTransaction {
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
        next_check_at: None,
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
        front: "test".into(),
        ordering_key: Some("p".into()),
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

fn open_row(status: Status, next_check_at: i64) -> Completion {
    Completion {
        next_check_at: Some(next_check_at),
        response: None,
        ..Completion::status(status)
    }
}

#[tokio::test]
async fn due_checks_come_soonest_first_and_a_checked_row_goes_to_the_back() {
    let (_d, s) = store().await;
    for (i, due) in [(0, 100), (1, 200), (2, 300)] {
        let id = format!("t{i}");
        s.begin(new(&id, Action::Authorize, &id, None, 5), None)
            .await
            .unwrap();
        let status = if i == 1 {
            Status::Unknown
        } else {
            Status::Pending
        };
        s.complete(&id, open_row(status, due), None, None)
            .await
            .unwrap();
    }
    let ids = |rows: Vec<Transaction>| rows.into_iter().map(|t| t.id).collect::<Vec<_>>();
    assert_eq!(ids(s.due_for_check(250, 10).await.unwrap()), ["t0", "t1"]);
    assert_eq!(ids(s.due_for_check(1_000, 2).await.unwrap()), ["t0", "t1"]);
    // Checked (and still open): rescheduled behind the others, its count kept.
    s.schedule_check("t0", 900).await.unwrap();
    assert_eq!(
        ids(s.due_for_check(1_000, 3).await.unwrap()),
        ["t1", "t2", "t0"]
    );
    assert_eq!(s.get("t0").await.unwrap().unwrap().checks, 1);
    assert_eq!(s.next_check_due().await.unwrap(), Some(200));
    // A final row is never due, whatever its old schedule said.
    s.complete("t1", approved(), None, None).await.unwrap();
    assert_eq!(ids(s.due_for_check(1_000, 3).await.unwrap()), ["t2", "t0"]);
    let t1 = s.get("t1").await.unwrap().unwrap();
    assert_eq!(
        (t1.next_check_at, t1.replay),
        (None, None),
        "final: nothing to check or re-send"
    );
    let backlog = s.outcome_backlog().await.unwrap();
    assert_eq!((backlog.pending, backlog.unknown), (2, 0));
}

#[tokio::test]
async fn interrupted_calls_become_unknown_and_keep_their_call() {
    let (_d, s) = store().await;
    s.begin(new("cut", Action::Authorize, "k-cut", None, 5), None)
        .await
        .unwrap();
    s.begin(new("done", Action::Authorize, "k-done", None, 5), None)
        .await
        .unwrap();
    s.complete("done", approved(), None, None).await.unwrap();
    assert_eq!(s.mark_interrupted(42).await.unwrap(), 1);
    let cut = s.get("cut").await.unwrap().unwrap();
    assert_eq!(cut.status, Status::Unknown);
    assert_eq!(cut.next_check_at, Some(42));
    assert_eq!(cut.replay.as_deref(), Some("{\"call\":\"cut\"}"));
    assert_eq!(
        s.get("done").await.unwrap().unwrap().status,
        Status::Approved
    );
    // Unknown still holds its amount against a parent's balance (the PSP may have acted).
    assert!(Status::Unknown.holds_balance());
    // The first retry answers it once; a second caller finds the answer taken.
    let answer = StoredAnswer {
        status: 202,
        body: "{}".into(),
    };
    assert!(
        s.answer_unknown("cut", "act_1", answer.clone(), 7)
            .await
            .unwrap()
    );
    assert!(!s.answer_unknown("cut", "act_2", answer, 8).await.unwrap());
    let cut = s.get("cut").await.unwrap().unwrap();
    assert_eq!(cut.action_id.as_deref(), Some("act_1"));
    assert_eq!(cut.next_check_at, Some(42), "its schedule stays");
    assert_eq!(s.list("unknown", 10).await.unwrap().len(), 1);
    assert!(s.escalate("cut", 9).await.unwrap());
    assert!(!s.escalate("cut", 10).await.unwrap(), "escalated once");
    assert_eq!(s.list("escalated", 10).await.unwrap()[0].id, "cut");
    assert_eq!(s.outcome_backlog().await.unwrap().escalated, 1);
}
