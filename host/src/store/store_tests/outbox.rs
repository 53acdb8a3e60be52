//! The outbox, for every store: per-key order, dead letters and replay, counts, listing.

use std::sync::Arc;

use super::callback;
use crate::store::outbox::*;
use crate::store::{Store, now_ms};

for_each_store!(
    a_later_callback_of_a_key_waits_for_the_earlier_one,
    a_dead_letter_no_longer_blocks_its_key,
    dead_letters_are_counted_listed_and_replayed,
);

fn actions(claimed: &[Callback]) -> Vec<String> {
    let mut v: Vec<_> = claimed.iter().filter_map(|c| c.action_id.clone()).collect();
    v.sort();
    v
}

const LEASE: i64 = 30_000;

async fn a_later_callback_of_a_key_waits_for_the_earlier_one(s: Arc<dyn Store>) {
    s.enqueue_callback(callback(Some("txn-1"), "t1-first"))
        .await
        .unwrap();
    s.enqueue_callback(callback(Some("txn-1"), "t1-second"))
        .await
        .unwrap();
    s.enqueue_callback(callback(Some("txn-2"), "t2-only"))
        .await
        .unwrap();
    s.enqueue_callback(callback(None, "unkeyed")).await.unwrap();
    let now = now_ms() + 1;

    // One of txn-1 (the first), txn-2's, the unkeyed one.
    let claimed = s.claim_callbacks(now, now + LEASE, 10).await.unwrap();
    assert_eq!(actions(&claimed), ["t1-first", "t2-only", "unkeyed"]);
    let first = claimed
        .iter()
        .find(|c| c.action_id.as_deref() == Some("t1-first"))
        .unwrap();
    assert_eq!(first.front.as_deref(), Some("commerce_layer"));

    // The first failed and is due again later: the second still waits, even when the
    // first's retry time has not come and the second's has.
    s.callback_failed(first.id, Some(now + 5_000), "receiver answered 503", now)
        .await
        .unwrap();
    assert!(
        s.claim_callbacks(now + 1_000, now + LEASE, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // When the first is due, it alone is claimed again.
    let again = s
        .claim_callbacks(now + 5_000, now + LEASE, 10)
        .await
        .unwrap();
    assert_eq!(actions(&again), ["t1-first"]);
    assert_eq!(again[0].attempts, 1);

    // Delivered: now the second goes.
    s.callback_delivered(again[0].id, now).await.unwrap();
    let next = s
        .claim_callbacks(now + 5_000, now + LEASE, 10)
        .await
        .unwrap();
    assert_eq!(actions(&next), ["t1-second"]);
}

async fn a_dead_letter_no_longer_blocks_its_key(s: Arc<dyn Store>) {
    s.enqueue_callback(callback(Some("txn"), "first"))
        .await
        .unwrap();
    s.enqueue_callback(callback(Some("txn"), "second"))
        .await
        .unwrap();
    let now = now_ms() + 1;
    let claimed = s.claim_callbacks(now, now + LEASE, 10).await.unwrap();
    assert_eq!(actions(&claimed), ["first"]);
    s.callback_failed(
        claimed[0].id,
        None,
        "receiver answered 400 Bad Request; not retried",
        now,
    )
    .await
    .unwrap();
    let next = s.claim_callbacks(now, now + LEASE, 10).await.unwrap();
    assert_eq!(actions(&next), ["second"]);
}

async fn dead_letters_are_counted_listed_and_replayed(s: Arc<dyn Store>) {
    s.enqueue_callback(callback(Some("a"), "to-die"))
        .await
        .unwrap();
    s.enqueue_callback(callback(Some("b"), "to-deliver"))
        .await
        .unwrap();
    s.enqueue_callback(callback(Some("c"), "to-wait"))
        .await
        .unwrap();
    let now = now_ms() + 1;
    let claimed = s.claim_callbacks(now, now + LEASE, 10).await.unwrap();
    let id = |a: &str| {
        claimed
            .iter()
            .find(|c| c.action_id.as_deref() == Some(a))
            .unwrap()
            .id
    };
    let (dead, delivered, waiting) = (id("to-die"), id("to-deliver"), id("to-wait"));
    s.callback_failed(
        dead,
        None,
        "receiver answered 400 Bad Request; not retried",
        now,
    )
    .await
    .unwrap();
    s.callback_delivered(delivered, now).await.unwrap();
    s.callback_failed(waiting, Some(now + 1_000), "timed out", now)
        .await
        .unwrap();

    // A dead letter is not waiting for an attempt, but it is still undelivered.
    assert_eq!(s.callbacks_waiting().await.unwrap(), 1);
    let counts = s.callback_counts().await.unwrap();
    assert_eq!((counts.undelivered, counts.dead), (2, 1));
    // The delivered one is not counted in the age either.
    let mut undelivered = s.list_callbacks(CallbackState::Dead, 10).await.unwrap();
    undelivered.extend(s.list_callbacks(CallbackState::Waiting, 10).await.unwrap());
    assert_eq!(undelivered.len(), 2);
    let oldest = undelivered.iter().map(|c| c.created_at).min();
    assert_eq!(counts.oldest_undelivered_at, oldest);

    let listed = s.list_callbacks(CallbackState::Dead, 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    let row = &listed[0];
    assert_eq!(row.id, dead);
    assert_eq!(row.state, CallbackState::Dead);
    assert_eq!(row.attempts, 1);
    assert_eq!(row.dead_at, Some(now));
    assert!(
        row.last_error.as_deref().unwrap().contains("400"),
        "{row:?}"
    );
    let ids = |rows: Vec<CallbackSummary>| rows.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(
        ids(s.list_callbacks(CallbackState::Waiting, 10).await.unwrap()),
        [waiting]
    );
    assert_eq!(
        ids(s
            .list_callbacks(CallbackState::Delivered, 10)
            .await
            .unwrap()),
        [delivered]
    );

    // Only a dead letter can be replayed.
    assert_eq!(
        s.replay_callback(9_999, now).await.unwrap(),
        Replay::NotFound
    );
    assert_eq!(
        s.replay_callback(delivered, now).await.unwrap(),
        Replay::NotDead(CallbackState::Delivered)
    );
    assert_eq!(
        s.replay_callback(waiting, now).await.unwrap(),
        Replay::NotDead(CallbackState::Waiting)
    );
    let replayed_at = now + 60_000;
    assert_eq!(
        s.replay_callback(dead, replayed_at).await.unwrap(),
        Replay::Requeued
    );
    assert_eq!(s.callback_counts().await.unwrap().dead, 0);
    assert_eq!(s.callbacks_waiting().await.unwrap(), 2);
    // Due at once, with a fresh attempt count and give-up age.
    let due = s
        .claim_callbacks(replayed_at, replayed_at + LEASE, 10)
        .await
        .unwrap();
    let back = due.iter().find(|c| c.id == dead).expect("replayed is due");
    assert_eq!(back.attempts, 0);
    assert_eq!(back.age_from, replayed_at);
    assert_eq!(
        s.replay_callback(dead, replayed_at).await.unwrap(),
        Replay::NotDead(CallbackState::Waiting)
    );
}
