//! A payment outcome is never lost and never invented, end to end: the real binary, the real
//! sandbox and Stripe `.wasm` plugins, a Commerce Layer simulator, a callback receiver, and
//! for PSP-side faults our fake Stripe (`psp_gateway_e2e::fake_stripe`), which de-duplicates
//! by `Idempotency-Key`, counts charges and can hold an answer while the charge stands.
//!
//! Covered here: a platform that hangs up mid-call; a SIGKILL while the PSP holds the call;
//! the host's deadline after a 202; pending rows that never settle next to a newer one whose
//! notification was lost; an unknown outcome that stays unresolved and is escalated.

use std::path::Path;
use std::time::{Duration, Instant};

use psp_gateway_e2e::cl::{ClSimulator, ExternalPayment, Order};
use psp_gateway_e2e::fake_stripe::FakeStripe;
use psp_gateway_e2e::receiver::{Callback, Receiver};
use psp_gateway_e2e::{Gateway, Workspace};
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

const SHARED_SECRET: &str = "0f3c5a7e9b1d2f4a6c8e0b2d4f6a8c1e";
const WEBHOOK_SECRET: &str = "sbx_whsec_outcomes_5d2a9c";
const STRIPE_KEY: &str = "sk_test_outcomes_4b7d1f";

fn env() -> [(&'static str, &'static str); 3] {
    [
        ("CL_SHARED_SECRET", SHARED_SECRET),
        ("SANDBOX_WEBHOOK_SECRET", WEBHOOK_SECRET),
        ("STRIPE_SECRET_KEY", STRIPE_KEY),
    ]
}

/// A sandbox gateway `sandbox` calling back `receiver`, with `extra` keys in its entry
/// and `top` tables (such as `[reconciler]`) before it.
fn sandbox(receiver: &Receiver, top: &str, extra: &str) -> (Workspace, Gateway) {
    let ws = Workspace::new();
    ws.install("sandbox", "sandbox");
    let config = ws.write_config(&format!(
        "[plugins]\ndir = \"plugins\"\n{top}\n[[gateways]]\nid = \"sandbox\"\nplugin = \"sandbox\"\n\
         shared_secret = \"${{CL_SHARED_SECRET}}\"\nwebhook_endpoint_url = \"{}\"\n{extra}\n\
         [gateways.settings]\nwebhook_secret = \"${{SANDBOX_WEBHOOK_SECRET}}\"\n",
        receiver.url()
    ));
    let gw = Gateway::start(&config, &env());
    (ws, gw)
}

/// A Stripe gateway `stripe` on the fake Stripe, calling back `receiver`.
fn stripe(fake: &FakeStripe, receiver: &Receiver, top: &str, extra: &str) -> (Workspace, Gateway) {
    let ws = Workspace::new();
    ws.install("stripe", "stripe");
    let base = fake.base();
    let config = ws.write_config(&format!(
        "[plugins]\ndir = \"plugins\"\n{top}\n[[gateways]]\nid = \"stripe\"\nplugin = \"stripe\"\n\
         shared_secret = \"${{CL_SHARED_SECRET}}\"\nwebhook_endpoint_url = \"{}\"\n\
         allowed_hosts = [\"{base}\"]\n{extra}\n[gateways.settings]\n\
         secret_key = \"${{STRIPE_SECRET_KEY}}\"\napi_base = \"{base}\"\nwebhook_secret = \"whsec_unused\"\n",
        receiver.url()
    ));
    let gw = Gateway::start(&config, &env());
    (ws, gw)
}

fn simulator(gw: &Gateway, gateway: &str) -> ClSimulator {
    ClSimulator::new(&gw.url(""), gateway, SHARED_SECRET)
}

/// `(status, transaction_token, error_code)` of every transaction of one CL resource.
async fn rows(db_dir: &Path, resource_id: &str) -> Vec<(String, String, Option<String>)> {
    let options = SqliteConnectOptions::new()
        .filename(db_dir.join("gateway.db"))
        .read_only(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .expect("open the store read-only");
    let rows = sqlx::query(
        "SELECT status, transaction_token, error_code FROM transactions \
         WHERE resource_id = ? ORDER BY created_at",
    )
    .bind(resource_id)
    .fetch_all(&pool)
    .await
    .expect("read transactions")
    .iter()
    .map(|r| {
        (
            r.get("status"),
            r.get("transaction_token"),
            r.get("error_code"),
        )
    })
    .collect();
    pool.close().await;
    rows
}

fn callbacks_for(receiver: &Receiver, action_id: &str) -> Vec<Callback> {
    receiver
        .callbacks()
        .into_iter()
        .filter(|c| c.json["data"]["action_id"].as_str() == Some(action_id))
        .collect()
}

async fn wait_callback(
    receiver: &Receiver,
    gw: &Gateway,
    action_id: &str,
    within: Duration,
) -> Callback {
    receiver
        .wait_for(
            |c| c.json["data"]["action_id"].as_str() == Some(action_id),
            within,
        )
        .await
        .unwrap_or_else(|| {
            panic!(
                "no callback for {action_id} within {within:?}; logs:\n{}",
                gw.dump_logs()
            )
        })
}

/// The one idempotency key the gateway used to create PaymentIntents at the fake.
fn authorize_key(fake: &FakeStripe) -> String {
    let mut keys: Vec<String> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path == "/v1/payment_intents")
        .filter_map(|r| r.idempotency_key)
        .collect();
    keys.dedup();
    assert_eq!(keys.len(), 1, "one operation, one key: {keys:?}");
    keys.remove(0)
}

/// Commerce Layer gives up on a slow call and closes the connection; the gateway finishes
/// the call anyway and records its outcome, so the retry gets it (not a 409, not a second
/// PSP call).
#[tokio::test(flavor = "multi_thread")]
async fn a_platform_that_hangs_up_gets_the_recorded_outcome_on_its_retry() {
    let receiver = Receiver::start(SHARED_SECRET).await;
    let (_ws, gw) = sandbox(&receiver, "", "async_after_ms = 5000");
    let impatient = simulator(&gw, "sandbox").with_timeout(Duration::from_millis(500));
    let sim = simulator(&gw, "sandbox");
    let payment = ExternalPayment::new(&Order::sample(), "tok_slow_2000");

    let (cut, _) = impatient.authorize_payment(&payment).await;
    assert_eq!(cut.status, 0, "the simulator hung up: {cut}");
    let started = Instant::now();
    let (retry, _) = sim.authorize_payment(&payment).await;
    assert_eq!(retry.status, 200, "{retry}");
    assert!(
        retry
            .transaction_token()
            .is_some_and(|t| t.starts_with("sbx_")),
        "{retry}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "waited {:?}",
        started.elapsed()
    );
    assert_eq!(
        gw.plugin_calls("sandbox", "authorize").await,
        1,
        "the PSP was called once"
    );
    // A later retry replays the same answer.
    let (again, _) = sim.authorize_payment(&payment).await;
    assert_eq!(again.raw, retry.raw);
    let stored = rows(&gw.dir, &payment.id).await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0].0, "approved");
    assert_eq!(Some(stored[0].1.as_str()), retry.transaction_token());
}

/// SIGKILL while the PSP holds the authorize (it has charged; its answer is lost), then a
/// restart: the row is unknown, the platform's retry is answered 202, recovery re-sends the
/// stored call with the same idempotency key, and the real outcome arrives as one signed
/// callback. The PSP saw the operation twice, under one key, and charged once.
#[tokio::test(flavor = "multi_thread")]
async fn sigkill_during_the_psp_call_then_restart_charges_once_and_calls_back() {
    let fake = FakeStripe::start().await;
    let receiver = Receiver::start(SHARED_SECRET).await;
    let (_ws, mut gw) = stripe(
        &fake,
        &receiver,
        // The first re-check after the restart comes once the PSP finished the lost call.
        "[reconciler]\nfirst_retry_ms = 3000\ninterval_ms = 500",
        "async_after_ms = 8000",
    );
    let config = gw.config_path().to_owned();
    let payment = ExternalPayment::new(&Order::sample(), "pm_card_visa");
    fake.hold_next_ms(2_500);
    let first = {
        let sim = simulator(&gw, "stripe");
        let payment = payment.clone();
        tokio::spawn(async move { sim.authorize_payment(&payment).await.0 })
    };
    assert!(
        fake.wait_for_request("/v1/payment_intents", Duration::from_secs(20))
            .await,
        "the authorize never reached the PSP; logs:\n{}",
        gw.dump_logs()
    );
    gw.kill();
    let lost = first.await.unwrap();
    assert_eq!(lost.status, 0, "no answer from a killed gateway: {lost}");
    assert_eq!(fake.charges_total(), 1, "the PSP charged before the kill");

    let gw = Gateway::start(&config, &env());
    assert!(
        gw.wait_for_log(Duration::from_secs(5), |l| l["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("calls cut off by a stopped process")))
            .is_some(),
        "start-up recovery found nothing; logs:\n{}",
        gw.dump_logs()
    );
    let started = Instant::now();
    let sim = simulator(&gw, "stripe");
    let (retry, auth) = sim.authorize_payment(&payment).await;
    let (token, action_id) = match retry.status {
        202 => (
            retry.transaction_token().unwrap().to_owned(),
            retry.action_id().unwrap().to_owned(),
        ),
        other => panic!("the retry of an unknown outcome must be 202, got {other}: {retry}"),
    };
    let cb = wait_callback(&receiver, &gw, &action_id, Duration::from_secs(30)).await;
    assert!(cb.signature_valid, "{:?}", cb.signature);
    assert_eq!(cb.json["success"], true, "{}", cb.json);
    eprintln!("settled {:?} after the restart", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(30));

    let key = authorize_key(&fake);
    assert_eq!(
        fake.requests_with_key(&key),
        2,
        "the PSP saw the operation twice"
    );
    assert_eq!(fake.charges_for_key(&key), 1);
    assert_eq!(fake.charges_total(), 1, "charged once");
    let stored = rows(&gw.dir, &payment.id).await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(
        (stored[0].0.as_str(), stored[0].1.as_str()),
        ("approved", token.as_str())
    );
    // Only the real outcome was called back, once.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(callbacks_for(&receiver, &action_id).len(), 1);
    // The recovered authorization captures normally, by the token answered in the 202.
    assert_eq!(sim.apply_callback(&cb.json), Some(true));
    let (capture, _) = sim
        .capture(&auth.expect("CL recorded the authorization"), 500)
        .await;
    assert_eq!(capture.status, 200, "{capture}");
    gw.assert_no_leaks(&[SHARED_SECRET, STRIPE_KEY]);
}

/// The host's hard deadline passes after the 202 while the PSP is still working: that is
/// not a decline. No failure is called back; the row stays unknown until recovery learns
/// the PSP's real outcome, and only that is called back.
#[tokio::test(flavor = "multi_thread")]
async fn a_deadline_after_a_202_ends_with_the_psps_real_outcome() {
    let fake = FakeStripe::start().await;
    let receiver = Receiver::start(SHARED_SECRET).await;
    let (_ws, gw) = stripe(
        &fake,
        &receiver,
        "[reconciler]\nfirst_retry_ms = 2500\ninterval_ms = 500",
        "async_after_ms = 200\ncall_timeout_ms = 1000",
    );
    let sim = simulator(&gw, "stripe");
    let payment = ExternalPayment::new(&Order::sample(), "pm_card_visa");
    fake.hold_next_ms(2_000);
    let started = Instant::now();
    let (resp, _) = sim.authorize_payment(&payment).await;
    assert_eq!(resp.status, 202, "{resp}");
    let action_id = resp.action_id().unwrap().to_owned();

    // Past the deadline, before the PSP answered: unknown, and nothing sent.
    tokio::time::sleep(Duration::from_millis(1_600).saturating_sub(started.elapsed())).await;
    let stored = rows(&gw.dir, &payment.id).await;
    assert_eq!(
        stored[0].0,
        "unknown",
        "{stored:?}\nlogs:\n{}",
        gw.dump_logs()
    );
    assert!(
        callbacks_for(&receiver, &action_id).is_empty(),
        "a timeout is not an outcome"
    );

    let cb = wait_callback(&receiver, &gw, &action_id, Duration::from_secs(20)).await;
    assert_eq!(cb.json["success"], true, "{}", cb.json);
    assert!(cb.signature_valid);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let all = callbacks_for(&receiver, &action_id);
    assert_eq!(
        all.len(),
        1,
        "only the real outcome: {:?}",
        all.iter().map(|c| &c.json).collect::<Vec<_>>()
    );
    let key = authorize_key(&fake);
    assert_eq!(fake.requests_with_key(&key), 2);
    assert_eq!(fake.charges_total(), 1);
    assert_eq!(rows(&gw.dir, &payment.id).await[0].0, "approved");
}

/// 110 payments the PSP keeps pending forever, then one whose notification was lost (the
/// sandbox's `sync` approves it): every due row is rescheduled when checked, so the newer
/// one is reconciled within a few intervals instead of waiting behind the 110 for ever.
#[tokio::test(flavor = "multi_thread")]
async fn pending_payments_that_never_settle_do_not_starve_a_newer_one() {
    let receiver = Receiver::start(SHARED_SECRET).await;
    let (_ws, gw) = sandbox(
        &receiver,
        "[reconciler]\nafter_ms = 300\ninterval_ms = 200\nfirst_retry_ms = 300\nmax_retry_ms = 600000",
        "",
    );
    let sim = simulator(&gw, "sandbox");
    let mut waiting = Vec::new();
    for chunk in 0..11 {
        let sends: Vec<_> = (0..10)
            .map(|_| {
                let sim = simulator(&gw, "sandbox");
                tokio::spawn(async move { sim.authorize(&Order::sample(), "tok_pending").await.0 })
            })
            .collect();
        for send in sends {
            let resp = send.await.unwrap();
            assert_eq!(resp.status, 202, "chunk {chunk}: {resp}");
            waiting.push(resp.action_id().unwrap().to_owned());
        }
    }
    // Let the 110 become due and be checked (and found still pending) at least once.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let started = Instant::now();
    let (lost, _) = sim.authorize(&Order::sample(), "tok_pending_sync").await;
    assert_eq!(lost.status, 202, "{lost}");
    let lost_id = lost.action_id().unwrap().to_owned();
    let cb = wait_callback(&receiver, &gw, &lost_id, Duration::from_secs(10)).await;
    assert_eq!(cb.json["success"], true);
    eprintln!(
        "the newer payment was reconciled after {:?}",
        started.elapsed()
    );
    assert!(
        waiting
            .iter()
            .all(|id| callbacks_for(&receiver, id).is_empty()),
        "nothing was invented for the payments still pending"
    );
    assert!(gw.plugin_calls("sandbox", "sync").await >= 111);
}

/// An unknown outcome that no check can resolve (the re-sent call keeps missing the
/// deadline) is escalated to an operator past `give_up_after_ms`: an error log, a metric, an
/// admin listing. It is never failed: no callback, still unknown, still checked.
#[tokio::test(flavor = "multi_thread")]
async fn an_unresolved_unknown_outcome_is_escalated_never_failed() {
    let receiver = Receiver::start(SHARED_SECRET).await;
    let (_ws, gw) = sandbox(
        &receiver,
        "[reconciler]\nfirst_retry_ms = 300\ninterval_ms = 200\ngive_up_after_ms = 1500",
        "async_after_ms = 200\ncall_timeout_ms = 600",
    );
    let sim = simulator(&gw, "sandbox");
    let (resp, _) = sim.authorize(&Order::sample(), "tok_slow_3000").await;
    assert_eq!(resp.status, 202, "{resp}");
    let action_id = resp.action_id().unwrap().to_owned();
    assert!(
        gw.wait_for_log(Duration::from_secs(15), |l| l["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("outcome still unknown: escalated")))
            .is_some(),
        "never escalated; logs:\n{}",
        gw.dump_logs()
    );
    let metrics = gw.metrics().await;
    assert!(
        metrics.lines().any(|l| l == "psp_transactions_escalated 1"),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l == "psp_transactions_open{status=\"unknown\"} 1"),
        "{metrics}"
    );
    let listed: serde_json::Value = reqwest::get(gw.url("/admin/transactions?status=escalated"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rows = listed["transactions"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{listed}");
    assert_eq!(rows[0]["action_id"], action_id.as_str());
    assert_eq!(rows[0]["status"], "unknown");
    assert!(rows[0]["checks"].as_i64().unwrap() >= 1);
    assert!(
        callbacks_for(&receiver, &action_id).is_empty(),
        "no failure was invented"
    );
    // Still checked after the escalation.
    let before = gw.plugin_calls("sandbox", "authorize").await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert!(gw.plugin_calls("sandbox", "authorize").await > before);
}
