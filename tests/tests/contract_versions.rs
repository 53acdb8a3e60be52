//! Plugin contracts 0.1 and 0.2 side by side in the real binary, and what 0.2 adds as the
//! platforms see it: a 0.1 plugin (built with plain wit-bindgen on the frozen WIT) serves
//! Commerce Layer's actions beside the 0.2 sandbox, its pending payments settle through
//! `sync`; a 0.2 `action-required` reaches Commerce Layer as a 202 with the redirect in
//! `metadata` and PGM as `REDIRECT_TO_URL`, and the PSP's notification settles it.

use std::time::Duration;

use psp_gateway_e2e::cl::{ClSimulator, Order};
use psp_gateway_e2e::receiver::Receiver;
use psp_gateway_e2e::{Gateway, Workspace, hex_hmac};
use serde_json::{Value, json};

const ADMIN: &str = "admin-token-for-tests";
const SHARED_SECRET: &str = "cl-shared-secret-for-tests";
const WEBHOOK_SECRET: &str = "sandbox-webhook-secret-for-tests";

/// The sandbox (0.2) as `sandbox` and the 0.1 fixture as `legacy`, both calling back
/// `receiver`; the reconciler looks at pending payments quickly.
fn start(receiver: &Receiver) -> (Workspace, Gateway) {
    let ws = Workspace::new();
    ws.install("sandbox", "sandbox");
    ws.install("legacy_v0_1", "legacy");
    let callback = receiver.url();
    let config = ws.write_config(&format!(
        r#"
[plugins]
dir = "plugins"
[admin]
token = "${{ADMIN_TOKEN}}"
[reconciler]
after_ms = 300
interval_ms = 200
[[gateways]]
id = "sandbox"
plugin = "sandbox"
shared_secret = "${{CL_SHARED_SECRET}}"
webhook_endpoint_url = "{callback}"
pgm_auth = "none"
[gateways.settings]
webhook_secret = "${{SANDBOX_WEBHOOK_SECRET}}"
[[gateways]]
id = "legacy"
plugin = "legacy"
shared_secret = "${{CL_SHARED_SECRET}}"
webhook_endpoint_url = "{callback}"
"#
    ));
    let gw = Gateway::start(
        &config,
        &[
            ("ADMIN_TOKEN", ADMIN),
            ("CL_SHARED_SECRET", SHARED_SECRET),
            ("SANDBOX_WEBHOOK_SECRET", WEBHOOK_SECRET),
        ],
    );
    (ws, gw)
}

async fn admin_plugins(gw: &Gateway) -> Value {
    reqwest::Client::new()
        .get(gw.url("/admin/plugins"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("admin request")
        .json()
        .await
        .expect("json")
}

fn contract_of<'a>(view: &'a Value, plugin: &str) -> &'a Value {
    let entry = view["plugins"]
        .as_array()
        .and_then(|all| all.iter().find(|p| p["name"] == plugin))
        .unwrap_or_else(|| panic!("no plugin {plugin} in {view}"));
    &entry["loaded"]["contract"]
}

#[tokio::test(flavor = "multi_thread")]
async fn a_0_1_plugin_loads_and_serves_beside_0_2_plugins() {
    let receiver = Receiver::start(SHARED_SECRET).await;
    let (_ws, gw) = start(&receiver);
    let view = admin_plugins(&gw).await;
    assert_eq!(contract_of(&view, "legacy"), "0.1.0", "{view}");
    assert_eq!(contract_of(&view, "sandbox"), "0.2.0", "{view}");

    for gateway in ["legacy", "sandbox"] {
        let sim = ClSimulator::new(&gw.url(""), gateway, SHARED_SECRET);
        let (resp, auth) = sim.authorize(&Order::sample(), "tok_visa").await;
        assert_eq!(resp.status, 200, "{gateway}: {resp}");
        let auth = auth.expect("authorized");
        let (resp, capture) = sim.capture(&auth, 1000).await;
        assert_eq!(resp.status, 200, "{gateway}: {resp}");
        let (resp, _) = sim.refund(&capture.expect("captured"), 400).await;
        assert_eq!(resp.status, 200, "{gateway}: {resp}");
        if gateway == "legacy" {
            // The 0.1 plugin's own answer, through the 0.1 adapter.
            assert_eq!(resp.body["data"]["metadata"]["contract"], "0.1", "{resp}");
            let token = resp.transaction_token().unwrap_or_default();
            assert!(token.starts_with("legacy_ref_"), "{resp}");
        }
    }

    // A 0.1 pending payment is asked about with 0.1's `sync` (by its token) and settles.
    let sim = ClSimulator::new(&gw.url(""), "legacy", SHARED_SECRET);
    let (pending, _) = sim.authorize(&Order::sample(), "tok_pending").await;
    assert_eq!(pending.status, 202, "{pending}");
    let action_id = pending.action_id().expect("action id").to_owned();
    let cb = receiver
        .wait_for(
            |c| c.json["data"]["action_id"] == action_id.as_str(),
            Duration::from_secs(15),
        )
        .await
        .unwrap_or_else(|| panic!("no callback for {action_id}:\n{}", gw.dump_logs()));
    assert!(cb.signature_valid);
    assert_eq!(cb.json["success"], true, "{}", cb.json);
    assert!(gw.plugin_calls("legacy", "sync").await >= 1);

    // What 0.1 has no operation for is refused by the adapter, never sent.
    let (status, body) = diagnostic(
        &gw,
        "legacy",
        "complete",
        json!({"idempotency_key": "c1", "transaction_token": "t", "psp_reference": "r"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["kind"], "unsupported", "{body}");
    assert!(
        body["message"].as_str().unwrap_or("").contains("0.1"),
        "{body}"
    );
}

async fn diagnostic(gw: &Gateway, gateway: &str, op: &str, body: Value) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(gw.url(&format!("/admin/gateways/{gateway}/call/{op}")))
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .await
        .expect("request");
    (resp.status().as_u16(), resp.json().await.expect("json"))
}

#[tokio::test(flavor = "multi_thread")]
async fn action_required_reaches_both_platforms_and_a_notification_settles_it() {
    let receiver = Receiver::start(SHARED_SECRET).await;
    let (_ws, gw) = start(&receiver);

    // Commerce Layer: 202, the action id, and the redirect in metadata.
    let sim = ClSimulator::new(&gw.url(""), "sandbox", SHARED_SECRET);
    let (resp, _) = sim.authorize(&Order::sample(), "tok_3ds").await;
    assert_eq!(resp.status, 202, "{resp}");
    let meta = &resp.body["data"]["metadata"];
    assert_eq!(meta["action_type"], "redirect", "{resp}");
    assert_eq!(meta["redirect_method"], "GET", "{resp}");
    let token = resp.transaction_token().expect("token").to_owned();
    assert!(token.starts_with("sbx_3ds_"), "{resp}");
    assert_eq!(
        meta["redirect_url"],
        format!("https://sandbox.psp-gateway.invalid/3ds/{token}"),
        "{resp}"
    );
    let action_id = resp.action_id().expect("action id").to_owned();

    // The PSP reports the shopper passed: the signed callback follows.
    let notification = json!({"reference": token, "outcome": "succeeded", "kind": "authorized"});
    let body = serde_json::to_vec(&notification).unwrap();
    let resp = reqwest::Client::new()
        .post(gw.url("/psp/sandbox/webhook"))
        .header("Sandbox-Signature", hex_hmac(WEBHOOK_SECRET, &body))
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let cb = receiver
        .wait_for(
            |c| c.json["data"]["action_id"] == action_id.as_str(),
            Duration::from_secs(10),
        )
        .await
        .unwrap_or_else(|| panic!("no callback for {action_id}:\n{}", gw.dump_logs()));
    assert!(cb.signature_valid);
    assert_eq!(cb.json["success"], true, "{}", cb.json);

    // PGM: REDIRECT_TO_URL, carrying the shop's return address to the PSP.
    let pay = json!({
        "amount": 2500, "currency": "EUR", "shopTransactionId": "shop-3ds-1",
        "successRedirectUrl": "https://shop.example/ok",
        "failureRedirectUrl": "https://shop.example/ko",
        "providerData": {"paymentSourceToken": "tok_3ds"}
    });
    let resp = reqwest::Client::new()
        .post(gw.url("/v3/sandbox/pay"))
        .json(&pay)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["result"], "REDIRECT_TO_URL", "{body}");
    let url = body["redirectToUrl"].as_str().expect("a redirect URL");
    assert!(
        url.starts_with("https://sandbox.psp-gateway.invalid/3ds/sbx_3ds_")
            && url.ends_with("?return_url=https%3A%2F%2Fshop.example%2Fok"),
        "{body}"
    );
}
