//! The Stripe plugin end to end: the real `psp-gateway` binary with the real `stripe.wasm`,
//! driven by the Commerce Layer simulator, against **localstripe** (a stateful fake Stripe,
//! `scripts/setup-fakes`), with webhook signatures made by the official `stripe` Python
//! package (`tests/fakes/stripe/sign_webhook.py`) and by localstripe itself.
//!
//! Every test runs its own localstripe on a free port (killed on drop) and its own gateway.
//! What localstripe cannot do (legacy `tok_` card tokens on PaymentIntents,
//! `amount_capturable_updated` events) is covered by the plugin's unit tests instead.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use psp_gateway_e2e::cl::{
    Action, Authorization, ClSimulator, ExternalPayment, Order, authorize_body,
};
use psp_gateway_e2e::localstripe::{
    CARD_3DS, CARD_3DS_DECLINED, CARD_DECLINED, CARD_OK, LocalStripe,
};
use psp_gateway_e2e::receiver::Receiver;
use psp_gateway_e2e::{Gateway, Workspace, venv_python, workspace_root};
use psp_plugin_sdk::http::Form;
use serde_json::{Value, json};

/// Commerce Layer's shared secret of the gateway.
const SHARED_SECRET: &str = "7a1c3e5f9b2d4f6a8c0e1a3c5e7f9b1d";
/// The gateway's Stripe secret key (localstripe accepts any `sk_...`).
const SECRET_KEY: &str = "sk_test_e2e_4f8a2c6e1b3d5f7a";
/// The webhook signing secret shared by the gateway and localstripe / the official SDK.
const WEBHOOK_SECRET: &str = "whsec_e2e_9d1f3b5a7c2e4f6a";

// ---------------------------------------------------------------------------------------
// localstripe
// ---------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------
// The gateway
// ---------------------------------------------------------------------------------------

/// A gateway `stripe` pointing at `api_base` (localstripe, or any URL).
fn start_gateway(api_base: &str, webhook_url: Option<&str>) -> (Workspace, Gateway) {
    start_gateway_with(api_base, webhook_url, "")
}

/// As [`start_gateway`], with `top` (top-level config tables) in front.
fn start_gateway_with(
    api_base: &str,
    webhook_url: Option<&str>,
    top: &str,
) -> (Workspace, Gateway) {
    let ws = Workspace::new();
    ws.install("stripe", "stripe");
    let callback = webhook_url
        .map(|u| format!("webhook_endpoint_url = \"{u}\"\n"))
        .unwrap_or_default();
    let config = ws.write_config(&format!(
        "{top}[plugins]\ndir = \"plugins\"\n\n\
         [[gateways]]\nid = \"stripe\"\nplugin = \"stripe\"\n\
         shared_secret = \"${{CL_SHARED_SECRET}}\"\n{callback}\
         allowed_hosts = [\"{api_base}\"]\n\
         [gateways.settings]\nsecret_key = \"${{STRIPE_SECRET_KEY}}\"\n\
         api_base = \"{api_base}\"\nwebhook_secret = \"${{STRIPE_WEBHOOK_SECRET}}\"\n"
    ));
    let gw = Gateway::start(
        &config,
        &[
            ("CL_SHARED_SECRET", SHARED_SECRET),
            ("STRIPE_SECRET_KEY", SECRET_KEY),
            ("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET),
        ],
    );
    (ws, gw)
}

fn simulator(gw: &Gateway) -> ClSimulator {
    ClSimulator::new(&gw.url(""), "stripe", SHARED_SECRET)
}

/// Fails naming every log line that contains a secret, or one of `also` (payment method and
/// customer ids, which the host shortens even in the paths of outbound requests).
fn assert_no_leaks(gw: &Gateway, also: &[&str]) {
    gw.assert_no_leaks(&[&[SECRET_KEY, WEBHOOK_SECRET, SHARED_SECRET], also].concat());
}

// ---------------------------------------------------------------------------------------
// Webhook signatures from the official SDK
// ---------------------------------------------------------------------------------------

fn sign_script() -> PathBuf {
    workspace_root().join("tests/fakes/stripe/sign_webhook.py")
}

/// `Stripe-Signature` for `payload`, made by the official `stripe` package.
fn official_signature(payload: &[u8], secret: &str, timestamp: Option<u64>) -> String {
    let mut cmd = Command::new(venv_python());
    cmd.arg(sign_script()).args(["--secret", secret]);
    if let Some(t) = timestamp {
        cmd.args(["--timestamp", &t.to_string()]);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run sign_webhook.py");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(payload)
        .expect("write payload");
    let out = child.wait_with_output().expect("sign_webhook.py output");
    assert!(out.status.success(), "sign_webhook.py failed");
    String::from_utf8(out.stdout).expect("header is text")
}

async fn post_webhook(gw: &Gateway, body: &[u8], signature: Option<&str>) -> (u16, String) {
    let mut req = reqwest::Client::new()
        .post(gw.url("/psp/stripe/webhook"))
        .header("Content-Type", "application/json; charset=utf-8")
        .body(body.to_vec());
    if let Some(sig) = signature {
        req = req.header("Stripe-Signature", sig);
    }
    let resp = req.send().await.expect("POST webhook");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread")]
async fn webhooks_signed_by_the_official_sdk_are_verified() {
    // No Stripe calls happen on this route: the API base need not answer.
    let (_ws, gw) = start_gateway("http://127.0.0.1:9", None);
    let payload = serde_json::to_vec_pretty(&json!({
        "id": "evt_sdk_1", "object": "event", "type": "payment_intent.succeeded",
        "created": 1_700_000_000u64,
        "data": {"object": {"id": "pi_unknown_to_the_gateway", "object": "payment_intent",
                            "amount": 1000, "amount_received": 1000, "status": "succeeded"}}
    }))
    .unwrap();

    // Valid.
    let header = official_signature(&payload, WEBHOOK_SECRET, None);
    let (status, body) = post_webhook(&gw, &payload, Some(&header)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"received": true})
    );

    // Several v1 values, one valid (as during a secret rotation).
    let other = official_signature(&payload, "whsec_rotated_away", None);
    let other_v1 = other.split_once(",v1=").unwrap().1;
    let both = format!("{header},v1={other_v1}");
    let (status, body) = post_webhook(&gw, &payload, Some(&both)).await;
    assert_eq!(status, 200, "{body}");

    // Tampered body.
    let mut tampered = payload.clone();
    let at = tampered.windows(4).position(|w| w == b"1000").unwrap();
    tampered[at] = b'9';
    let (status, body) = post_webhook(&gw, &tampered, Some(&header)).await;
    assert_eq!(status, 401, "{body}");

    // Wrong secret.
    let wrong = official_signature(&payload, "whsec_not_the_gateways", None);
    let (status, body) = post_webhook(&gw, &payload, Some(&wrong)).await;
    assert_eq!(status, 401, "{body}");

    // Expired: signed correctly six minutes ago.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let old = official_signature(&payload, WEBHOOK_SECRET, Some(now - 360));
    let (status, body) = post_webhook(&gw, &payload, Some(&old)).await;
    assert_eq!(status, 401, "{body}");

    // No signature at all.
    let (status, body) = post_webhook(&gw, &payload, None).await;
    assert_eq!(status, 401, "{body}");

    assert_no_leaks(&gw, &[]);
}

// ---------------------------------------------------------------------------------------
// Payments against localstripe
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn authorize_partial_capture_and_refund() {
    let stripe = LocalStripe::start(SECRET_KEY).await;
    let (_ws, gw) = start_gateway(&stripe.base(), None);
    let sim = simulator(&gw);
    let pm = stripe.card(CARD_OK).await;

    let order = Order::sample();
    let (resp, auth) = sim.authorize(&order, &pm).await;
    assert_eq!(resp.status, 200, "{resp}");
    let auth = auth.expect("authorization");
    let pi_id = resp.transaction_token().expect("token").to_owned();
    assert!(pi_id.starts_with("pi_"), "{resp}");
    assert_eq!(
        resp.amount_cents(),
        Some(order.total_amount_with_taxes_cents())
    );

    let pi = stripe.get(&format!("/v1/payment_intents/{pi_id}")).await;
    assert_eq!(pi["status"], "requires_capture", "{pi}");
    assert_eq!(pi["capture_method"], "manual");
    assert_eq!(pi["amount"], order.total_amount_with_taxes_cents());
    assert_eq!(pi["currency"], "eur");
    assert_eq!(pi["payment_method"], pm.as_str());
    assert_eq!(
        pi["metadata"]["order_number"],
        order.number.as_str(),
        "{pi}"
    );
    assert_eq!(pi["metadata"]["cl_order_id"], order.id.as_str(), "{pi}");
    assert!(pi["metadata"]["cl_payment_id"].is_string(), "{pi}");

    // Partial capture.
    let (resp, capture) = sim.capture(&auth, 5_000).await;
    assert_eq!(resp.status, 200, "{resp}");
    assert_eq!(resp.amount_cents(), Some(5_000));
    let capture = capture.expect("capture");
    let pi = stripe.get(&format!("/v1/payment_intents/{pi_id}")).await;
    assert_eq!(pi["status"], "succeeded", "{pi}");
    let charge = &pi["latest_charge"];
    assert_eq!(charge["captured"], true, "{pi}");

    // Refund part of the capture.
    let (resp, refund) = sim.refund(&capture, 2_000).await;
    assert_eq!(resp.status, 200, "{resp}");
    assert!(refund.is_some());
    let re_id = resp.transaction_token().expect("refund token").to_owned();
    assert!(re_id.starts_with("re_"), "{resp}");
    let re = stripe.get(&format!("/v1/refunds/{re_id}")).await;
    assert_eq!(re["amount"], 2_000, "{re}");
    assert_eq!(re["status"], "succeeded", "{re}");
    assert_eq!(re["payment_intent"], pi_id.as_str(), "{re}");
    assert_eq!(
        re["metadata"]["order_number"],
        order.number.as_str(),
        "{re}"
    );
    assert_eq!(
        sim.find_capture(&capture.id).unwrap().refund_balance_cents,
        3_000
    );

    assert_no_leaks(&gw, &[&pm]);
}

#[tokio::test(flavor = "multi_thread")]
async fn authorize_then_void() {
    let stripe = LocalStripe::start(SECRET_KEY).await;
    let (_ws, gw) = start_gateway(&stripe.base(), None);
    let sim = simulator(&gw);
    let pm = stripe.card(CARD_OK).await;

    let (resp, auth) = sim.authorize(&Order::sample(), &pm).await;
    assert_eq!(resp.status, 200, "{resp}");
    let pi_id = resp.transaction_token().unwrap().to_owned();
    let (resp, void) = sim.void(&auth.expect("authorization")).await;
    assert_eq!(resp.status, 200, "{resp}");
    assert!(void.is_some());
    let void_token = format!("{pi_id}.void");
    assert_eq!(resp.transaction_token(), Some(void_token.as_str()));
    let pi = stripe.get(&format!("/v1/payment_intents/{pi_id}")).await;
    assert_eq!(pi["status"], "canceled", "{pi}");

    assert_no_leaks(&gw, &[&pm]);
}

#[tokio::test(flavor = "multi_thread")]
async fn save_to_wallet_then_pay_with_the_saved_method() {
    let stripe = LocalStripe::start(SECRET_KEY).await;
    let (_ws, gw) = start_gateway(&stripe.base(), None);
    let sim = simulator(&gw);
    let order = Order::sample();

    // Save a card: a customer is created for the order's email and the card attached.
    let pm = stripe.card(CARD_OK).await;
    let (resp, saved) = sim.save_to_wallet(&ExternalPayment::new(&order, &pm)).await;
    assert_eq!(resp.status, 200, "{resp}");
    let saved = saved.expect("saved source");
    let customer = saved.customer_token.clone().expect("customer token");
    assert!(customer.starts_with("cus_"), "{resp}");
    assert_eq!(saved.payment_source_token, pm);
    let cus = stripe.get(&format!("/v1/customers/{customer}")).await;
    assert_eq!(cus["email"], order.customer_email.as_str(), "{cus}");
    let attached = stripe.get(&format!("/v1/payment_methods/{pm}")).await;
    assert_eq!(attached["customer"], customer.as_str(), "{attached}");

    // A second card for the same email joins the same customer.
    let pm2 = stripe.card(CARD_OK).await;
    let (resp, saved2) = sim
        .save_to_wallet(&ExternalPayment::new(&Order::sample(), &pm2))
        .await;
    assert_eq!(resp.status, 200, "{resp}");
    assert_eq!(
        saved2.expect("saved").customer_token.as_deref(),
        Some(customer.as_str())
    );

    // Pay with the saved method alone: the plugin finds its customer.
    let (resp, auth) = sim.authorize(&Order::sample(), &pm).await;
    assert_eq!(resp.status, 200, "{resp}");
    assert!(auth.is_some());
    let pi = stripe
        .get(&format!(
            "/v1/payment_intents/{}",
            resp.transaction_token().unwrap()
        ))
        .await;
    assert_eq!(pi["customer"], customer.as_str(), "{pi}");
    assert_eq!(pi["status"], "requires_capture", "{pi}");

    // Pay with the saved customer and method, as CL sends them on the external payment.
    let mut doc = authorize_body(&ExternalPayment::new(&Order::sample(), &pm2));
    doc["data"]["attributes"]["customer_token"] = json!(customer);
    let resp = sim.send(Action::Authorize, &doc).await;
    assert_eq!(resp.status, 200, "{resp}");
    let pi = stripe
        .get(&format!(
            "/v1/payment_intents/{}",
            resp.transaction_token().unwrap()
        ))
        .await;
    assert_eq!(pi["customer"], customer.as_str(), "{pi}");
    assert_eq!(pi["payment_method"], pm2.as_str(), "{pi}");

    assert_no_leaks(&gw, &[&pm, &pm2, &customer]);
}

#[tokio::test(flavor = "multi_thread")]
async fn declined_card_answers_422_with_stripes_code() {
    let stripe = LocalStripe::start(SECRET_KEY).await;
    let (_ws, gw) = start_gateway(&stripe.base(), None);
    let sim = simulator(&gw);
    let pm = stripe.card(CARD_DECLINED).await;

    let (resp, auth) = sim.authorize(&Order::sample(), &pm).await;
    assert_eq!(resp.status, 422, "{resp}");
    assert_eq!(resp.body["success"], false, "{resp}");
    assert_eq!(resp.error_code(), Some("card_declined"), "{resp}");
    assert!(auth.is_none());

    assert_no_leaks(&gw, &[&pm]);
}

// ---------------------------------------------------------------------------------------
// localstripe's own signed webhooks settle pending payments
// ---------------------------------------------------------------------------------------

/// Authorizes with a 3-D Secure card: Stripe leaves the PaymentIntent in `requires_action`,
/// the gateway answers 202 with an action id and, in metadata, what Stripe.js needs to let
/// the shopper authenticate (localstripe gives no `redirect_to_url`, only `use_stripe_sdk`).
/// Returns the PaymentIntent id, the action id, the client secret taken from the metadata,
/// and the pending authorization.
async fn pending_authorize(
    stripe: &LocalStripe,
    sim: &ClSimulator,
    card: &str,
) -> (String, String, String, Authorization) {
    let pm = stripe.card(card).await;
    let (resp, auth) = sim.authorize(&Order::sample(), &pm).await;
    assert_eq!(resp.status, 202, "{resp}");
    let auth = auth.expect("pending authorization");
    let action_id = resp.action_id().expect("action id").to_owned();
    assert_eq!(auth.action_id.as_deref(), Some(action_id.as_str()));
    let pi_id = resp.transaction_token().expect("token").to_owned();
    let pi = stripe.get(&format!("/v1/payment_intents/{pi_id}")).await;
    assert_eq!(pi["status"], "requires_action", "{pi}");

    let meta = &resp.body["data"]["metadata"];
    assert_eq!(meta["action_type"], "sdk", "{resp}");
    assert_eq!(meta["sdk_action_kind"], "use_stripe_sdk", "{resp}");
    // Stripe's JSON, as JSON.
    let data = &meta["sdk_action_data"];
    assert_eq!(data["payment_intent"], pi_id.as_str(), "{data}");
    assert_eq!(data["client_secret"], pi["client_secret"], "{data}");
    assert_eq!(data["next_action"], pi["next_action"], "{data}");
    let secret = data["client_secret"].as_str().unwrap().to_owned();
    (pi_id, action_id, secret, auth)
}

#[tokio::test(flavor = "multi_thread")]
async fn localstripe_payment_failed_webhook_settles_a_pending_authorization() {
    let stripe = LocalStripe::start(SECRET_KEY).await;
    let receiver = Receiver::start(SHARED_SECRET).await;
    let (_ws, gw) = start_gateway(&stripe.base(), Some(&receiver.url()));
    stripe
        .register_webhook(&gw.url("/psp/stripe/webhook"), WEBHOOK_SECRET)
        .await;
    let sim = simulator(&gw);

    let (pi_id, action_id, ..) = pending_authorize(&stripe, &sim, CARD_3DS_DECLINED).await;
    // 3-D Secure passes, then the issuer declines: localstripe answers the browser 402 and
    // sends a signed `payment_intent.payment_failed` to the gateway.
    assert_eq!(stripe.authenticate(&pi_id, true).await, 402);

    let callback = receiver
        .wait_for(
            |c| c.json["data"]["action_id"] == action_id.as_str(),
            Duration::from_secs(20),
        )
        .await
        .unwrap_or_else(|| panic!("no callback; gateway logs:\n{}", gw.dump_logs()));
    assert!(callback.signature_valid, "{:?}", callback);
    assert_eq!(callback.json["success"], false, "{}", callback.json);
    assert_eq!(
        callback.json["data"]["error_code"], "card_declined",
        "{}",
        callback.json
    );
    assert_eq!(sim.apply_callback(&callback.json), Some(false));
    // The gateway really got it from localstripe, through the plugin. (The log line is
    // written after the commit that also queues the callback: it may come just after it.)
    assert!(
        gw.wait_for_log(Duration::from_secs(5), |l| l["message"]
            == "open transaction settled")
            .is_some(),
        "{}",
        gw.dump_logs()
    );
    assert_no_leaks(&gw, &[]);
}

#[tokio::test(flavor = "multi_thread")]
async fn localstripe_succeeded_webhook_settles_a_pending_authorization() {
    let stripe = LocalStripe::start(SECRET_KEY).await;
    let receiver = Receiver::start(SHARED_SECRET).await;
    let (_ws, gw) = start_gateway(&stripe.base(), Some(&receiver.url()));
    stripe
        .register_webhook(&gw.url("/psp/stripe/webhook"), WEBHOOK_SECRET)
        .await;
    let sim = simulator(&gw);

    let (pi_id, action_id, ..) = pending_authorize(&stripe, &sim, CARD_3DS).await;
    assert_eq!(stripe.authenticate(&pi_id, true).await, 200);
    let pi = stripe.get(&format!("/v1/payment_intents/{pi_id}")).await;
    assert_eq!(pi["status"], "requires_capture", "{pi}");
    // Real Stripe now sends `payment_intent.amount_capturable_updated`; localstripe sends no
    // event for a manual-capture authorization, only `payment_intent.succeeded` once the
    // PaymentIntent is captured. Capture it at Stripe (as a merchant could from Stripe's
    // dashboard): the signed `payment_intent.succeeded` settles the pending authorization.
    let (status, captured) = stripe
        .post(
            &format!("/v1/payment_intents/{pi_id}/capture"),
            &Form::new(),
        )
        .await;
    assert_eq!(status, 200, "{captured}");

    let callback = receiver
        .wait_for(
            |c| c.json["data"]["action_id"] == action_id.as_str(),
            Duration::from_secs(20),
        )
        .await
        .unwrap_or_else(|| panic!("no callback; gateway logs:\n{}", gw.dump_logs()));
    assert!(callback.signature_valid, "{:?}", callback);
    assert_eq!(callback.json["success"], true, "{}", callback.json);
    assert_eq!(sim.apply_callback(&callback.json), Some(true));
    assert_no_leaks(&gw, &[]);
}

/// 3-D Secure with card 4000000000003220 and no webhook at all: the browser authenticates
/// with what the 202's metadata carried; the reconciler's `sync` reads the PaymentIntent and
/// the signed callback follows. Then a capture (its own token) and a refund of it.
#[tokio::test(flavor = "multi_thread")]
async fn three_d_secure_authenticated_by_the_shopper_is_called_back_then_captured() {
    let stripe = LocalStripe::start(SECRET_KEY).await;
    let receiver = Receiver::start(SHARED_SECRET).await;
    let (_ws, gw) = start_gateway_with(
        &stripe.base(),
        Some(&receiver.url()),
        "[reconciler]\nafter_ms = 300\ninterval_ms = 200\nfirst_retry_ms = 300\n\
         max_retry_ms = 1000\n\n",
    );
    let sim = simulator(&gw);

    // Stripe's "3-D Secure 2 required" test card.
    let (pi_id, action_id, secret, auth) =
        pending_authorize(&stripe, &sim, "4000000000003220").await;
    assert_eq!(
        stripe.authenticate_with(&pi_id, &secret, true).await,
        200,
        "localstripe took the client secret the gateway handed out"
    );
    let callback = receiver
        .wait_for(
            |c| c.json["data"]["action_id"] == action_id.as_str(),
            Duration::from_secs(30),
        )
        .await
        .unwrap_or_else(|| panic!("no callback; gateway logs:\n{}", gw.dump_logs()));
    assert!(callback.signature_valid, "{:?}", callback);
    assert_eq!(callback.json["success"], true, "{}", callback.json);
    assert_eq!(sim.apply_callback(&callback.json), Some(true));

    // Capture part of it: the capture answers its own token on the PaymentIntent.
    let (resp, capture) = sim.capture(&auth, 4000).await;
    assert_eq!(resp.status, 200, "{resp}");
    let capture = capture.expect("capture");
    assert_eq!(capture.token, format!("{pi_id}.capture.1"), "{resp}");
    let pi = stripe.get(&format!("/v1/payment_intents/{pi_id}")).await;
    assert_eq!(pi["status"], "succeeded", "{pi}");
    assert_eq!(pi["latest_charge"]["captured"], true, "{pi}");

    // A refund of that capture reaches Stripe against the PaymentIntent.
    let (resp, _) = sim.refund(&capture, 1500).await;
    assert_eq!(resp.status, 200, "{resp}");
    let re_id = resp.transaction_token().expect("refund token").to_owned();
    let re = stripe.get(&format!("/v1/refunds/{re_id}")).await;
    assert_eq!(re["amount"], 1500, "{re}");
    assert_eq!(re["payment_intent"], pi_id.as_str(), "{re}");
    assert_no_leaks(&gw, &[&secret]);
}
