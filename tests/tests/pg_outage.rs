//! PostgreSQL stopped (immediate mode, as a crash) for 3 s under load, then started again:
//! two replicas answer 503 `store_unavailable` meanwhile, never 200 without the row; once
//! the server is back they serve again by themselves (the pool reconnects, no restart).
//! The cluster is this test's own, so stopping it disturbs no other test.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use psp_gateway_e2e::cl::{ClSimulator, ExternalPayment, Order};
use psp_gateway_e2e::pg_cluster::Cluster;
use psp_gateway_e2e::{Gateway, Workspace};
use sqlx::Connection;

const SHARED_SECRET: &str = "9a1c3e5b7d9f1a3c5e7b9d1f3a5c7e9b";

#[tokio::test(flavor = "multi_thread")]
async fn a_database_outage_is_503_never_200_without_a_row_and_passes_by_itself() {
    let cluster = Cluster::start().unwrap_or_else(|e| panic!("no PostgreSQL: {e}"));
    cluster.clean_up_at_exit();
    let url = cluster.database().await;
    let mut workspaces = Vec::new();
    let mut gateways = Vec::new();
    for _ in 0..2 {
        let ws = Workspace::new();
        ws.install("sandbox", "sandbox");
        let config = ws.write_config_with(
            "",
            &format!("{url}?pool_max=8"),
            "[plugins]\ndir = \"plugins\"\n[[gateways]]\nid = \"sandbox\"\nplugin = \"sandbox\"\n\
             shared_secret = \"${CL_SHARED_SECRET}\"\n[gateways.settings]\nwebhook_secret = \"whsec_o\"\n",
        );
        gateways.push(Gateway::start(
            &config,
            &[("CL_SHARED_SECRET", SHARED_SECRET)],
        ));
        workspaces.push(ws);
    }
    let sims: Vec<_> = gateways
        .iter()
        .map(|gw| Arc::new(ClSimulator::new(&gw.url(""), "sandbox", SHARED_SECRET)))
        .collect();

    // Load: 4 workers, each sending unique authorizes to the replicas in turn, recording
    // every answer with the time it came.
    let running = Arc::new(AtomicBool::new(true));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..4 {
        let (sims, running) = (sims.clone(), running.clone());
        workers.spawn(async move {
            let mut answers = Vec::new();
            let mut n = w;
            while running.load(Ordering::Relaxed) {
                let payment = ExternalPayment::new(&Order::sample(), "tok_visa");
                let (resp, _) = sims[n % 2].authorize_payment(&payment).await;
                answers.push((
                    started.elapsed(),
                    payment.id.clone(),
                    resp.status,
                    resp.error_code().map(str::to_owned),
                    resp.transaction_token().map(str::to_owned),
                ));
                n += 1;
            }
            answers
        });
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let down_at = started.elapsed();
    cluster.stop_immediate().unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.start_again().unwrap();
    let up_at = started.elapsed();
    // Load goes on until the replicas have served again for a while.
    tokio::time::sleep(Duration::from_secs(6)).await;
    running.store(false, Ordering::Relaxed);
    let answers: Vec<_> = workers.join_all().await.into_iter().flatten().collect();

    let ok: Vec<_> = answers.iter().filter(|a| a.2 == 200).collect();
    let unavailable = answers
        .iter()
        .filter(|a| a.2 == 503 && a.3.as_deref() == Some("store_unavailable"))
        .count();
    let other: Vec<_> = answers
        .iter()
        .filter(|a| a.2 != 200 && a.2 != 503)
        .collect();
    assert!(other.is_empty(), "unexpected answers: {other:?}");
    assert!(unavailable > 0, "the outage was never seen");
    assert!(ok.iter().any(|a| a.0 < down_at), "served before the outage");
    // Served again without a restart: 200s well after the server came back, from both.
    let recovered: Vec<_> = ok
        .iter()
        .filter(|a| a.0 > up_at + Duration::from_secs(3))
        .collect();
    assert!(
        recovered.len() >= 10,
        "{} 200s after recovery",
        recovered.len()
    );
    let last = answers
        .iter()
        .filter(|a| a.0 > up_at + Duration::from_secs(4));
    assert!(
        last.clone().all(|a| a.2 == 200),
        "{:?}",
        last.collect::<Vec<_>>()
    );

    // Every 200 has its durable row, with the token it answered.
    let mut db = sqlx::PgConnection::connect(&url).await.unwrap();
    for (_, id, _, _, token) in &ok {
        let row: Option<(String, String)> = sqlx::query_as(
            "SELECT status, transaction_token FROM transactions WHERE resource_id = $1",
        )
        .bind(id)
        .fetch_optional(&mut db)
        .await
        .unwrap();
        assert_eq!(
            row,
            Some(("approved".to_owned(), token.clone().unwrap())),
            "payment {id}"
        );
    }
    eprintln!(
        "{} answers: {} ok, {unavailable} store_unavailable",
        answers.len(),
        ok.len()
    );
}
