//! Transactions and the recovery queue, for every store: idempotency, balances (also under
//! concurrency), completion with its callback, due checks, interrupted calls.

use std::sync::Arc;

use super::{approved, new};
use crate::store::*;

for_each_store!(
    idempotency_key_is_unique,
    capture_and_refund_balances,
    void_blocks_captures_and_only_once,
    completion_with_callback_and_outbox_leases,
    concurrent_captures_never_exceed_the_balance,
    due_checks_come_soonest_first_and_a_checked_row_goes_to_the_back,
    subscriptions_are_saved_once_per_shop_transaction,
    the_shoppers_return_is_kept_past_the_outcome,
);

for_each_store_pair!(
    interrupted_calls_become_unknown_and_keep_their_call,
    a_live_lease_keeps_a_call_from_other_replicas_until_released,
);

async fn idempotency_key_is_unique(s: Arc<dyn Store>) {
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

async fn capture_and_refund_balances(s: Arc<dyn Store>) {
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

async fn void_blocks_captures_and_only_once(s: Arc<dyn Store>) {
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

async fn completion_with_callback_and_outbox_leases(s: Arc<dyn Store>) {
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

async fn concurrent_captures_never_exceed_the_balance(s: Arc<dyn Store>) {
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

/// `before` made two calls and stopped; `s` is the process that follows (past the lease,
/// so a shared store sees the owner dead too).
async fn interrupted_calls_become_unknown_and_keep_their_call(
    before: Arc<dyn Store>,
    s: Arc<dyn Store>,
) {
    before
        .begin(new("cut", Action::Authorize, "k-cut", None, 5), None)
        .await
        .unwrap();
    before
        .begin(new("done", Action::Authorize, "k-done", None, 5), None)
        .await
        .unwrap();
    before
        .complete("done", approved(), None, None)
        .await
        .unwrap();
    let later = now_ms() + CALL_LEASE_MS + 1;
    // A process never takes its own calls.
    assert_eq!(before.mark_interrupted(later, 42).await.unwrap(), 0);
    assert_eq!(s.mark_interrupted(later, 42).await.unwrap(), 1);
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

fn open_row(status: Status, next_check_at: i64) -> Completion {
    Completion {
        next_check_at: Some(next_check_at),
        response: None,
        ..Completion::status(status)
    }
}

/// Each claimed row is rescheduled at once, as the reconciler does: a store may lease
/// what it hands out (PostgreSQL does, so replicas never check one row together).
async fn due_checks_come_soonest_first_and_a_checked_row_goes_to_the_back(s: Arc<dyn Store>) {
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
    // Checked (and still open): rescheduled behind the others, its count kept.
    s.schedule_check("t0", 900).await.unwrap();
    s.schedule_check("t1", 400).await.unwrap();
    assert_eq!(s.next_check_due().await.unwrap(), Some(300));
    assert_eq!(ids(s.due_for_check(1_000, 2).await.unwrap()), ["t2", "t1"]);
    s.schedule_check("t2", 2_000).await.unwrap();
    s.schedule_check("t1", 2_100).await.unwrap();
    assert_eq!(s.get("t0").await.unwrap().unwrap().checks, 1);
    assert_eq!(s.get("t1").await.unwrap().unwrap().checks, 2);
    // A final row is never due, whatever its old schedule said.
    s.complete("t1", approved(), None, None).await.unwrap();
    assert_eq!(ids(s.due_for_check(3_000, 3).await.unwrap()), ["t0", "t2"]);
    let t1 = s.get("t1").await.unwrap().unwrap();
    assert_eq!(
        (t1.next_check_at, t1.replay),
        (None, None),
        "final: nothing to check or re-send"
    );
    let backlog = s.outcome_backlog().await.unwrap();
    assert_eq!((backlog.pending, backlog.unknown), (2, 0));
}

async fn subscriptions_are_saved_once_per_shop_transaction(s: Arc<dyn Store>) {
    let sub = |token: &str| Subscription {
        token: token.into(),
        gateway: "gw".into(),
        shop_transaction_id: "shop-1".into(),
        customer_token: None,
        payment_source_token: "src".into(),
        currency: "EUR".into(),
        interval_unit: Some("MONTH".into()),
        interval_count: Some(1),
        status: "PENDING".into(),
    };
    let first = s.save_subscription(sub("sub-a")).await.unwrap();
    let again = s.save_subscription(sub("sub-b")).await.unwrap();
    assert_eq!(again, first, "the existing one is returned");
    assert!(
        s.set_subscription_status("gw", "sub-a", "ACTIVE")
            .await
            .unwrap()
    );
    assert!(
        !s.set_subscription_status("gw", "nope", "ACTIVE")
            .await
            .unwrap()
    );
    assert_eq!(
        s.subscription("gw", "sub-a").await.unwrap().unwrap().status,
        "ACTIVE"
    );
    assert_eq!(s.subscription("gw", "sub-b").await.unwrap(), None);
}

/// On a shared store a replica's call stays its own while the lease holds (renewed) and is
/// taken over once it is released; on SQLite (one process per file) the next process takes
/// every call of the one before, lease or not.
async fn a_live_lease_keeps_a_call_from_other_replicas_until_released(
    a: Arc<dyn Store>,
    b: Arc<dyn Store>,
) {
    a.begin(new("live", Action::Authorize, "k-live", None, 5), None)
        .await
        .unwrap();
    let now = now_ms();
    assert_eq!(a.renew_leases(now + 20_000).await.unwrap(), 1);
    let shared = b
        .mark_interrupted(now + CALL_LEASE_MS + 1, 7)
        .await
        .unwrap()
        == 0;
    if shared {
        assert_eq!(
            b.get("live").await.unwrap().unwrap().status,
            Status::Processing
        );
        // Past the renewed lease, or once released, it is taken over.
        assert_eq!(a.release_leases().await.unwrap(), 1);
        assert_eq!(b.mark_interrupted(now, 7).await.unwrap(), 1);
    }
    let row = b.get("live").await.unwrap().unwrap();
    assert_eq!(row.status, Status::Unknown);
    assert_eq!(row.next_check_at, Some(7));
    // An unknown row is nobody's call any more: nothing left to renew.
    assert_eq!(a.renew_leases(now).await.unwrap(), 0);
}

async fn the_shoppers_return_is_kept_past_the_outcome(s: Arc<dyn Store>) {
    let back = r#"{"return_url":"https://shop.example/ok"}"#;
    let mut with_return = new("a", Action::Authorize, "k", None, 100);
    with_return.shopper_return = Some(back.into());
    match s.begin(with_return, None).await.unwrap() {
        Begin::Started(t) => assert_eq!(t.shopper_return.as_deref(), Some(back)),
        other => panic!("{other:?}"),
    }
    s.complete("a", approved(), None, None).await.unwrap();
    // Unlike the stored call, it outlives the final outcome: the shopper may come back late.
    let t = s.get("a").await.unwrap().unwrap();
    assert_eq!(t.shopper_return.as_deref(), Some(back));
    assert_eq!(t.replay, None);
    s.begin(new("b", Action::Authorize, "k2", None, 100), None)
        .await
        .unwrap();
    assert_eq!(s.get("b").await.unwrap().unwrap().shopper_return, None);
}
