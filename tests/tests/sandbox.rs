//! The real binary loads the real sandbox component from its plugins directory, and every
//! sandbox behaviour is exercised through the host's plugin call path over HTTP.

use std::time::{Duration, Instant};

use psp_gateway_e2e::{Gateway, Workspace, hex_hmac};
use serde_json::{Value, json};

const ADMIN: &str = "admin-token-for-tests";
const WEBHOOK_SECRET: &str = "sandbox-webhook-secret-for-tests";

fn start() -> (Workspace, Gateway) {
    let ws = Workspace::new();
    ws.install("sandbox", "sandbox");
    let config = ws.write_config(
        r#"
[plugins]
dir = "plugins"
[admin]
token = "${ADMIN_TOKEN}"
[[gateways]]
id = "sandbox"
plugin = "sandbox"
shared_secret = "${CL_SHARED_SECRET}"
[gateways.settings]
webhook_secret = "${SANDBOX_WEBHOOK_SECRET}"
"#,
    );
    let gw = Gateway::start(
        &config,
        &[
            ("ADMIN_TOKEN", ADMIN),
            ("CL_SHARED_SECRET", "cl-shared-secret-for-tests"),
            ("SANDBOX_WEBHOOK_SECRET", WEBHOOK_SECRET),
        ],
    );
    (ws, gw)
}

async fn call(gw: &Gateway, op: &str, body: Value) -> (u16, Value) {
    call_gateway(gw, "sandbox", op, body).await
}

async fn call_gateway(gw: &Gateway, gateway: &str, op: &str, body: Value) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(gw.url(&format!("/admin/gateways/{gateway}/call/{op}")))
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json body"))
}

fn authorize(key: &str, token: &str) -> Value {
    json!({"idempotency_key": key, "amount_cents": 12900, "currency": "EUR", "payment_source_token": token})
}

#[tokio::test(flavor = "multi_thread")]
async fn sandbox_behaviours_through_the_real_binary() {
    let (_ws, gw) = start();

    // Ordinary token: approved, token derived from the idempotency key.
    let (status, a1) = call(&gw, "authorize", authorize("key-1", "tok_visa")).await;
    assert_eq!(status, 200, "{a1}");
    assert_eq!(a1["result"], "approved", "{a1}");
    assert_eq!(a1["amount_cents"], 12900);
    let (_, a1_again) = call(&gw, "authorize", authorize("key-1", "tok_other")).await;
    let (_, a2) = call(&gw, "authorize", authorize("key-2", "tok_visa")).await;
    assert_eq!(a1["transaction_token"], a1_again["transaction_token"]);
    assert_ne!(a1["transaction_token"], a2["transaction_token"]);
    assert!(a1["transaction_token"].as_str().unwrap().len() > 8);

    // Sale behaves like authorize.
    let (_, sale) = call(&gw, "sale", authorize("key-sale", "tok_visa")).await;
    assert_eq!(sale["result"], "approved", "{sale}");

    // Decline.
    let (status, d) = call(&gw, "authorize", authorize("key-3", "tok_decline")).await;
    assert_eq!(status, 200);
    assert_eq!(d["result"], "declined", "{d}");
    assert_eq!(d["code"], "card_declined");

    // Pending: the PSP reference is the transaction token the caller receives.
    let (_, p) = call(&gw, "authorize", authorize("key-4", "tok_pending")).await;
    assert_eq!(p["result"], "pending", "{p}");
    assert_eq!(p["psp_reference"], p["transaction_token"]);

    // PSP failure (unreachable), distinct from a decline.
    let (_, f) = call(&gw, "authorize", authorize("key-5", "tok_fail")).await;
    assert_eq!(f["result"], "failure", "{f}");
    assert_eq!(f["kind"], "unreachable");

    // Capture, void, refund approve for the amount asked.
    let token = a1["transaction_token"].as_str().unwrap();
    for op in ["capture", "void", "refund"] {
        let (_, r) = call(
            &gw,
            op,
            json!({"idempotency_key": format!("{op}-1"), "amount_cents": 500, "transaction_token": token}),
        )
        .await;
        assert_eq!(r["result"], "approved", "{op}: {r}");
        assert_eq!(r["amount_cents"], 500, "{op}: {r}");
    }

    // Tokenize returns both tokens; the saved source then authorizes.
    let (_, t) = call(
        &gw,
        "tokenize",
        json!({"idempotency_key": "tok-1", "payment_source_token": "tok_visa", "customer_email": "ann@example.com"}),
    )
    .await;
    assert_eq!(t["result"], "tokenized", "{t}");
    let saved = t["payment_source_token"].as_str().expect("saved token");
    assert!(t["customer_token"].as_str().is_some(), "{t}");
    let (_, again) = call(&gw, "authorize", authorize("key-6", saved)).await;
    assert_eq!(again["result"], "approved", "{again}");

    // Sync: a pending reference stays pending.
    let (_, s) = call(
        &gw,
        "sync",
        json!({"idempotency_key": "s", "amount_cents": 12900, "transaction_token": p["transaction_token"], "psp_reference": p["psp_reference"]}),
    )
    .await;
    assert_eq!(s["result"], "pending", "{s}");

    // Bad input is named.
    let (status, bad) = call(&gw, "capture", json!({"idempotency_key": "x"})).await;
    assert_eq!(status, 400);
    assert!(
        bad["message"]
            .as_str()
            .unwrap()
            .contains("transaction_token"),
        "{bad}"
    );
    let (status, _) = call_gateway(&gw, "nope", "authorize", authorize("k", "tok_visa")).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_psp_calls_block_no_host_thread() {
    let (_ws, gw) = start();
    // Warm up: the first call pays for nothing, but keep the timing honest.
    call(&gw, "authorize", authorize("warm", "tok_visa")).await;
    // The host runs 2 worker threads here; 8 sleeps of 400 ms would take >= 1.6 s if each
    // held a thread.
    let started = Instant::now();
    let calls: Vec<_> = (0..8)
        .map(|i| {
            let body = authorize(&format!("slow-{i}"), "tok_slow_400");
            let url = gw.url("/admin/gateways/sandbox/call/authorize");
            tokio::spawn(async move {
                let r = reqwest::Client::new()
                    .post(url)
                    .bearer_auth(ADMIN)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                r.json::<Value>().await.unwrap()
            })
        })
        .collect();
    // Meanwhile the host answers other requests at once.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let probe = Instant::now();
    let health = reqwest::get(gw.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    assert!(
        probe.elapsed() < Duration::from_millis(200),
        "healthz took {:?}",
        probe.elapsed()
    );
    for c in calls {
        let r = c.await.unwrap();
        assert_eq!(r["result"], "approved", "{r}");
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(400),
        "slept too little: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_millis(1200),
        "sleeps serialised: {elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sandbox_notifications_are_verified_by_the_plugin() {
    let (_ws, gw) = start();
    let (_, p) = call(&gw, "authorize", authorize("key-n", "tok_pending")).await;
    let reference = p["transaction_token"].as_str().unwrap().to_owned();
    let client = reqwest::Client::new();
    let post = |body: Vec<u8>, signature: String| {
        client
            .post(gw.url("/psp/sandbox/webhook"))
            .header("Sandbox-Signature", signature)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    // Wrong signature: rejected, no event.
    let body = serde_json::to_vec(&json!({"reference": reference, "outcome": "failed"})).unwrap();
    let r = post(body.clone(), hex_hmac("not-the-secret", &body))
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Missing signature: rejected.
    let r = client
        .post(gw.url("/psp/sandbox/webhook"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Valid: accepted, the event names the reference and the outcome.
    let body =
        serde_json::to_vec(&json!({"reference": reference, "outcome": "succeeded"})).unwrap();
    let r = post(body.clone(), hex_hmac(WEBHOOK_SECRET, &body))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"received": true}));
    let event = gw
        .wait_for_log(Duration::from_secs(2), |l| l["message"] == "psp event")
        .expect("psp event logged");
    let event: Value = serde_json::from_str(event["event"].as_str().unwrap()).unwrap();
    // Logged shortened: first and last four characters only.
    let logged = event["psp_reference"].as_str().unwrap();
    assert!(
        logged.starts_with(&reference[..4]) && logged.ends_with(&reference[reference.len() - 4..])
    );
    assert!(
        !logged.contains(&reference[4..reference.len() - 4]),
        "{logged}"
    );
    assert_eq!(event["status"], "succeeded");
    // Only the valid notification produced an event.
    let events = gw
        .logs()
        .into_iter()
        .filter(|l| l["message"] == "psp event")
        .count();
    assert_eq!(events, 1);

    // Malformed body with a valid signature: 400.
    let body = b"{\"reference\": 5}".to_vec();
    let r = post(body.clone(), hex_hmac(WEBHOOK_SECRET, &body))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_routes_need_the_token_and_show_the_plugin() {
    let (_ws, gw) = start();
    let client = reqwest::Client::new();
    let r = client.get(gw.url("/admin/plugins")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = client
        .post(gw.url("/admin/gateways/sandbox/call/authorize"))
        .bearer_auth("wrong")
        .json(&authorize("k", "tok_visa"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let view: Value = client
        .get(gw.url("/admin/plugins"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sandbox = &view["plugins"][0];
    assert_eq!(sandbox["name"], "sandbox", "{view}");
    assert_eq!(sandbox["loaded"]["plugin_name"], "sandbox");
    assert_eq!(sandbox["loaded"]["contract"], "0.2.0");
    assert_eq!(
        sandbox["loaded"]["content_hash"].as_str().unwrap().len(),
        64
    );
    assert!(
        sandbox["loaded"]["operations"].as_array().unwrap().len() >= 8,
        "{view}"
    );
    assert!(sandbox["last_error"].is_null());
    // No secret in the logs of the whole run.
    let logs = gw.dump_logs();
    assert!(!logs.contains(WEBHOOK_SECRET) && !logs.contains("cl-shared-secret-for-tests"));
}
