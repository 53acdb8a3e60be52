//! Three gateway replicas on one PostgreSQL database (a throwaway cluster), the real binary
//! and the sandbox `.wasm` plugin: duplicates spread over the replicas are one PSP call,
//! concurrent captures on one authorization never exceed it, and a replica reads what
//! another has just written.

use std::sync::Arc;

use psp_gateway_e2e::cl::{Action, ClSimulator, ExternalPayment, JSON_API, Order, authorize_body};
use psp_gateway_e2e::{Gateway, Workspace, pg_cluster};

const SHARED_SECRET: &str = "2e4a6c8e0b2d4f6a8c1e3b5d7f9a1c3e";

/// Three replicas of the sandbox gateway on one fresh database.
async fn replicas() -> (Vec<Workspace>, Vec<Gateway>) {
    let url = pg_cluster::database().await;
    let mut workspaces = Vec::new();
    let mut gateways = Vec::new();
    for _ in 0..3 {
        let ws = Workspace::new();
        ws.install("sandbox", "sandbox");
        let config = ws.write_config_with(
            "",
            &format!("{url}?pool_max=8"),
            "[plugins]\ndir = \"plugins\"\n[[gateways]]\nid = \"sandbox\"\nplugin = \"sandbox\"\n\
             shared_secret = \"${CL_SHARED_SECRET}\"\n[gateways.settings]\nwebhook_secret = \"whsec_r\"\n",
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
        let mut view = auth.clone();
        view.capture_balance_cents = auth.amount_cents - i as i64;
        captures.spawn(async move { sim.capture(&view, 300).await.0 });
    }
    let results = captures.join_all().await;
    let approved = results.iter().filter(|r| r.status == 200).count();
    let refused: Vec<_> = results
        .iter()
        .filter(|r| r.error_code() == Some("amount_exceeds_balance"))
        .collect();
    assert_eq!(approved, 3, "{results:#?}");
    assert_eq!(refused.len(), 7, "{results:#?}");
    for gw in &gateways {
        gw.assert_no_leaks(&[SHARED_SECRET]);
    }
}
