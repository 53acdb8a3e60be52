//! Three gateway replicas on one PostgreSQL database (a throwaway cluster), the real binary
//! and the sandbox `.wasm` plugin: duplicates spread over the replicas are one PSP call,
//! concurrent captures on one authorization never exceed it, a replica reads what another
//! has just written, notifications at any replica give one callback each, and callbacks
//! held by a replica that is SIGKILLed are delivered by the others.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use psp_gateway_e2e::cl::{
    Action, ClSimulator, ExternalPayment, JSON_API, Order, authorize_body, capture_body,
};
use psp_gateway_e2e::receiver::Receiver;
use psp_gateway_e2e::{Gateway, Workspace, hex_hmac, pg_cluster};

const SHARED_SECRET: &str = "2e4a6c8e0b2d4f6a8c1e3b5d7f9a1c3e";
const WEBHOOK_SECRET: &str = "whsec_r";

/// Three replicas of the sandbox gateway on one fresh database.
async fn replicas() -> (Vec<Workspace>, Vec<Gateway>) {
    replicas_with(&format!(
        "[gateways.settings]\nwebhook_secret = \"{WEBHOOK_SECRET}\""
    ))
    .await
}

/// `replicas` with more keys in the gateway entry and tables after it (`extra`).
async fn replicas_with(extra: &str) -> (Vec<Workspace>, Vec<Gateway>) {
    let url = pg_cluster::database().await;
    let mut workspaces = Vec::new();
    let mut gateways = Vec::new();
    for _ in 0..3 {
        let ws = Workspace::new();
        ws.install("sandbox", "sandbox");
        let config = ws.write_config_with(
            "",
            &format!("{url}?pool_max=8"),
            &format!(
                "[plugins]\ndir = \"plugins\"\n[[gateways]]\nid = \"sandbox\"\nplugin = \"sandbox\"\n\
                 shared_secret = \"${{CL_SHARED_SECRET}}\"\n{extra}\n"
            ),
        );
        gateways.push(Gateway::start(
            &config,
            &[("CL_SHARED_SECRET", SHARED_SECRET)],
        ));
        workspaces.push(ws);
    }
    (workspaces, gateways)
}

fn simulators(gateways: &[Gateway]) -> Vec<Arc<ClSimulator>> {
    gateways
        .iter()
        .map(|gw| Arc::new(ClSimulator::new(&gw.url(""), "sandbox", SHARED_SECRET)))
        .collect()
}

/// `psp_plugin_calls_total` of one operation, summed over the replicas.
async fn plugin_calls(gateways: &[Gateway], operation: &str) -> u64 {
    let mut total = 0;
    for gw in gateways {
        total += gw.plugin_calls("sandbox", operation).await;
    }
    total
}

#[tokio::test(flavor = "multi_thread")]
async fn three_replicas_on_one_postgres_keep_idempotency_and_balances() {
    let (_ws, gateways) = replicas().await;
    let sims = simulators(&gateways);
    // Warm each replica's plugin, so the bursts race on the database.
    for sim in &sims {
        let (resp, _) = sim.authorize(&Order::sample(), "tok_visa").await;
        assert_eq!(resp.status, 200, "{resp}");
    }
    let warm = plugin_calls(&gateways, "authorize").await;
    assert_eq!(warm, 3);

    // 30 identical authorizes spread over the replicas: one PSP call, one token.
    let payment = ExternalPayment::new(&Order::sample(), "tok_visa");
    let (body, signature) = sims[0].encode(&authorize_body(&payment));
    let mut burst = tokio::task::JoinSet::new();
    for i in 0..30 {
        let (sim, body, signature) = (sims[i % 3].clone(), body.clone(), signature.clone());
        burst.spawn(async move {
            sim.post_raw(Action::Authorize, body, Some(signature), JSON_API)
                .await
        });
    }
    let answers = burst.join_all().await;
    for resp in &answers {
        assert_eq!(resp.status, 200, "{resp}");
        assert_eq!(resp.transaction_token(), answers[0].transaction_token());
    }
    assert_eq!(plugin_calls(&gateways, "authorize").await, warm + 1);

    // Answered by replica A, captured at once through replica B: no stale read.
    let (resp, auth) = sims[0]
        .authorize_payment(&ExternalPayment::new(
            &Order::for_amount("EUR", 1_000),
            "tok_visa",
        ))
        .await;
    assert_eq!(resp.status, 200, "{resp}");
    let auth = auth.expect("authorization");
    let (resp, _) = sims[1].capture(&auth, 100).await;
    assert_eq!(resp.status, 200, "a capture on B right after A: {resp}");

    // 10 distinct concurrent 300-cent captures of one 1,000-cent authorization, spread over
    // the replicas: exactly 3 fit.
    let (resp, auth) = sims[2]
        .authorize_payment(&ExternalPayment::new(
            &Order::for_amount("EUR", 1_000),
            "tok_visa",
        ))
        .await;
    assert_eq!(resp.status, 200, "{resp}");
    let auth = auth.expect("authorization");
    let mut captures = tokio::task::JoinSet::new();
    for i in 0..10 {
        let sim = sims[i % 3].clone();
        // Each as its own operation (CL's view of the balance differs per request); the
        // gateway decides on its own ledger.
        // (sent as built, past the simulator's own balance book-keeping).
        let mut view = auth.clone();
        view.capture_balance_cents = auth.amount_cents - i as i64;
        let (body, signature) = sim.encode(&capture_body(&view, 300));
        captures.spawn(async move {
            sim.post_raw(Action::Capture, body, Some(signature), JSON_API)
                .await
        });
    }
    let results = captures.join_all().await;
    let approved = results.iter().filter(|r| r.status == 200).count();
    let refused: Vec<_> = results
        .iter()
        .filter(|r| r.error_code() == Some("amount_exceeds_balance"))
        .collect();
    assert_eq!(approved, 3, "{results:#?}");
    let mut tokens: Vec<_> = results
        .iter()
        .filter_map(|r| r.transaction_token())
        .collect();
    tokens.sort_unstable();
    tokens.dedup();
    assert_eq!(tokens.len(), 3, "three distinct captures: {tokens:?}");
    assert_eq!(refused.len(), 7, "{results:#?}");
    for gw in &gateways {
        gw.assert_no_leaks(&[SHARED_SECRET]);
    }
}

/// A sandbox PSP notification that `reference` ended with `outcome`, sent to `gw`.
async fn notify(gw: &Gateway, reference: &str, outcome: &str) {
    let body = serde_json::to_vec(&serde_json::json!({"reference": reference, "outcome": outcome}))
        .unwrap();
    let resp = reqwest::Client::new()
        .post(gw.url("/psp/sandbox/webhook"))
        .header("content-type", "application/json")
        .header("Sandbox-Signature", hex_hmac(WEBHOOK_SECRET, &body))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

/// `count` pending authorizations through `sims[pick(i)]`: (reference, action id) each.
async fn pending(
    sims: &[Arc<ClSimulator>],
    count: usize,
    pick: impl Fn(usize) -> usize,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for i in 0..count {
        let (resp, _) = sims[pick(i)]
            .authorize(&Order::sample(), "tok_pending")
            .await;
        assert_eq!(resp.status, 202, "{resp}");
        out.push((
            resp.transaction_token().unwrap().to_owned(),
            resp.action_id().unwrap().to_owned(),
        ));
    }
    out
}

/// Callbacks per action id, once `expected` distinct ones arrived (or the time is up).
async fn callbacks_by_action(
    receiver: &Receiver,
    expected: usize,
    within: Duration,
) -> HashMap<String, Vec<bool>> {
    let deadline = Instant::now() + within;
    loop {
        let mut seen: HashMap<String, Vec<bool>> = HashMap::new();
        for cb in receiver.callbacks() {
            if let Some(id) = cb.json["data"]["action_id"].as_str() {
                seen.entry(id.to_owned())
                    .or_default()
                    .push(cb.signature_valid);
            }
        }
        if seen.len() >= expected || Instant::now() > deadline {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn notifications_at_any_replica_give_each_payment_one_callback() {
    let receiver = Receiver::start(SHARED_SECRET).await;
    let (_ws, gateways) = replicas_with(&format!(
        "webhook_endpoint_url = \"{}\"\n[gateways.settings]\nwebhook_secret = \"{WEBHOOK_SECRET}\"",
        receiver.url()
    ))
    .await;
    let sims = simulators(&gateways);
    let payments = pending(&sims, 30, |i| i % 3).await;
    for (i, (reference, _)) in payments.iter().enumerate() {
        // Another replica than the one that took the payment, in turn.
        notify(&gateways[(i * 7 + 1) % 3], reference, "succeeded").await;
    }
    let seen = callbacks_by_action(&receiver, 30, Duration::from_secs(30)).await;
    // Time for a duplicate to show up, had two replicas claimed one row.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let seen_after = callbacks_by_action(&receiver, 30, Duration::ZERO).await;
    assert_eq!(seen, seen_after);
    for (_, action_id) in &payments {
        let got = seen
            .get(action_id)
            .unwrap_or_else(|| panic!("no callback for {action_id}"));
        assert_eq!(got, &vec![true], "{action_id}: one signed callback");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn callbacks_held_by_a_killed_replica_are_delivered_by_the_others() {
    // The receiver hangs (accepts, never answers): the replicas' deliveries hold their
    // leases (twice the 1 s delivery timeout, plus 1 s) until they time out.
    let hanging = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = hanging.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut sockets = Vec::new();
        while let Ok((socket, _)) = hanging.accept().await {
            sockets.push(socket);
        }
    });
    let url = format!("http://127.0.0.1:{port}/webhook");
    let (_ws, mut gateways) = replicas_with(&format!(
        "webhook_endpoint_url = \"{url}\"\n[gateways.settings]\nwebhook_secret = \"{WEBHOOK_SECRET}\"\n\
         [outbox]\nfirst_retry_ms = 200\nmax_retry_ms = 1000\ndelivery_timeout_ms = 1000"
    ))
    .await;
    let sims = simulators(&gateways);
    // All on replica 0: it queues the 20 callbacks and is first to claim them.
    let payments = pending(&sims, 20, |_| 0).await;
    for (reference, _) in &payments {
        notify(&gateways[0], reference, "succeeded").await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    gateways[0].kill();

    // The receiver comes back on the same port.
    held.abort();
    let _ = held.await;
    let receiver = Receiver::start_on(port, SHARED_SECRET).await;
    let seen = callbacks_by_action(&receiver, 20, Duration::from_secs(40)).await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    for (_, action_id) in &payments {
        let got = seen.get(action_id).unwrap_or_else(|| {
            panic!(
                "no callback for {action_id}; logs:\n{}",
                gateways[1].dump_logs()
            )
        });
        assert!(
            !got.is_empty() && got.iter().all(|valid| *valid),
            "{action_id}: {got:?}"
        );
    }
}
