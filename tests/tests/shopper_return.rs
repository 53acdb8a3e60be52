//! The shopper's return through the host (`[server] public_url`), in the real binary with the
//! real sandbox component: the plugin is given the host's return address, the test stands
//! in for the shopper's browser (and for the proxy that makes `public_url` reach the
//! gateway), and the return completes the payment: Commerce Layer gets its signed callback,
//! PGM's shop gets its shopper back at its own success or failure URL.

use std::time::Duration;

use psp_gateway_e2e::cl::{ClSimulator, Order};
use psp_gateway_e2e::receiver::Receiver;
use psp_gateway_e2e::{Gateway, Workspace};
use serde_json::{Value, json};

const SHARED_SECRET: &str = "cl-shared-secret-for-tests";
const WEBHOOK_SECRET: &str = "sandbox-webhook-secret-for-tests";
const PUBLIC: &str = "https://pay.example.test";

fn start(receiver: &Receiver) -> (Workspace, Gateway) {
    let ws = Workspace::new();
    ws.install("sandbox", "sandbox");
    let callback = receiver.url();
    let config = ws.write_config_with(
        &format!("public_url = \"{PUBLIC}/\"\n"),
        "sqlite://gateway.db",
        &format!(
            r#"
[plugins]
dir = "plugins"
[[gateways]]
id = "sandbox"
plugin = "sandbox"
shared_secret = "${{CL_SHARED_SECRET}}"
webhook_endpoint_url = "{callback}"
pgm_auth = "none"
[gateways.settings]
webhook_secret = "${{SANDBOX_WEBHOOK_SECRET}}"
"#
        ),
    );
    let gw = Gateway::start(
        &config,
        &[
            ("CL_SHARED_SECRET", SHARED_SECRET),
            ("SANDBOX_WEBHOOK_SECRET", WEBHOOK_SECRET),
        ],
    );
    (ws, gw)
}

/// The `return_url` the sandbox's 3-D Secure page would send the shopper back to, as a path
/// on the gateway (what the proxy behind `public_url` does).
fn return_path(redirect_url: &str) -> String {
    let url = reqwest::Url::parse(redirect_url).expect("redirect URL");
    let back = url
        .query_pairs()
        .find(|(k, _)| k == "return_url")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no return_url in {redirect_url}"));
    let path = back
        .strip_prefix(PUBLIC)
        .unwrap_or_else(|| panic!("{back} is not under {PUBLIC}"));
    assert!(path.starts_with("/psp/sandbox/return/txn_"), "{back}");
    path.to_owned()
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn commerce_layer_payment_completed_on_the_shoppers_return_is_called_back_once() {
    let receiver = Receiver::start(SHARED_SECRET).await;
    let (_ws, gw) = start(&receiver);
    let sim = ClSimulator::new(&gw.url(""), "sandbox", SHARED_SECRET);

    let (resp, _) = sim.authorize(&Order::sample(), "tok_3ds").await;
    assert_eq!(resp.status, 202, "{resp}");
    let action_id = resp.action_id().expect("action id").to_owned();
    let meta = &resp.body["data"]["metadata"];
    let path = return_path(meta["redirect_url"].as_str().expect("redirect url"));

    // A return without what the PSP needs changes nothing: still pending, no callback.
    let page = browser().get(gw.url(&path)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("being processed"));
    assert!(receiver.callbacks().is_empty());

    // The shopper passed 3-D Secure and is back: completed, then called back.
    let page = browser()
        .get(gw.url(&format!("{path}?outcome=succeeded")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        page.status(),
        200,
        "Commerce Layer gives no return URL: a page"
    );
    assert!(page.text().await.unwrap().contains("confirmed"));
    let cb = receiver
        .wait_for(
            |c| c.json["data"]["action_id"] == action_id.as_str(),
            Duration::from_secs(15),
        )
        .await
        .unwrap_or_else(|| panic!("no callback:\n{}", gw.dump_logs()));
    assert!(cb.signature_valid);
    assert_eq!(cb.json["success"], true, "{}", cb.json);
    assert_eq!(sim.apply_callback(&cb.json), Some(true));

    // A reload (or the PSP's return racing a notification) neither calls the PSP again nor
    // sends a second callback; a failing outcome afterwards cannot undo the approval.
    let completes = gw.plugin_calls("sandbox", "complete").await;
    let page = browser()
        .get(gw.url(&format!("{path}?outcome=failed")))
        .send()
        .await
        .unwrap();
    assert!(page.text().await.unwrap().contains("confirmed"));
    assert_eq!(gw.plugin_calls("sandbox", "complete").await, completes);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ours = receiver
        .callbacks()
        .iter()
        .filter(|c| c.json["data"]["action_id"] == action_id.as_str())
        .count();
    assert_eq!(ours, 1);

    // Another gateway's path, or an id never issued: not found.
    let wrong = path.replace("/psp/sandbox/", "/psp/other/");
    assert_eq!(
        browser().get(gw.url(&wrong)).send().await.unwrap().status(),
        404
    );
    let unknown = browser()
        .get(gw.url("/psp/sandbox/return/txn_nosuchpayment"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn pgm_shopper_is_sent_on_to_the_shops_own_urls() {
    let receiver = Receiver::start(SHARED_SECRET).await;
    let (_ws, gw) = start(&receiver);
    let pay = |shop_id: &str| {
        json!({
            "amount": 2500, "currency": "EUR", "shopTransactionId": shop_id,
            "successRedirectUrl": "https://shop.example/ok?order=1",
            "failureRedirectUrl": "https://shop.example/ko?order=1",
            "providerData": {"paymentSourceToken": "tok_3ds"}
        })
    };
    let mut returns = Vec::new();
    for shop_id in ["shop-return-1", "shop-return-2"] {
        let resp = reqwest::Client::new()
            .post(gw.url("/v3/sandbox/pay"))
            .json(&pay(shop_id))
            .send()
            .await
            .unwrap();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["result"], "REDIRECT_TO_URL", "{body}");
        // The PSP is given the host's return address, not the shop's.
        let url = body["redirectToUrl"].as_str().unwrap();
        assert!(!url.contains("shop.example"), "{url}");
        returns.push((
            return_path(url),
            body["paymentId"].as_str().unwrap().to_owned(),
        ));
    }

    // Passed: on to the success URL; failed (a form post, 3-D Secure 1 style): the failure URL.
    let (ok_path, ok_payment) = &returns[0];
    let resp = browser()
        .get(gw.url(&format!("{ok_path}?outcome=succeeded")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(
        resp.headers()["location"],
        "https://shop.example/ok?order=1"
    );
    let (ko_path, ko_payment) = &returns[1];
    let resp = browser()
        .post(gw.url(ko_path))
        .form(&[("outcome", "failed")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(
        resp.headers()["location"],
        "https://shop.example/ko?order=1"
    );

    // The shop, asking PGM's status, sees what the returns recorded.
    for (payment, want) in [(ok_payment, "ACCEPTED"), (ko_payment, "FAILED")] {
        let status: Value = reqwest::Client::new()
            .get(gw.url(&format!("/v3/sandbox/status?paymentId={payment}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(status["status"], want, "{status}");
    }
}
