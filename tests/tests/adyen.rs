//! The Adyen plugin end to end: the real `psp-gateway` binary with the real `adyen.wasm`,
//! driven by the Commerce Layer simulator, calling **Prism** (`--errors`) serving Adyen's
//! published Checkout v71 OpenAPI file, so every request the plugin sends is validated
//! against the spec and answered with the spec's own examples. Notifications are built and
//! signed by the official `Adyen` Python package (`tests/fakes/adyen/notification.py`).
//!
//! Between the gateway and Prism sits a small recording proxy: it records every exchange
//! and, for `/payments` only, adds Prism's `Prefer: example=<name>` header so a test can pick
//! which of the spec's response examples Prism answers (the plugin itself never sends it).

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use psp_gateway_e2e::cl::{ClSimulator, ExternalPayment, Order};
use psp_gateway_e2e::receiver::{Callback, Receiver};
use psp_gateway_e2e::{
    Gateway, Workspace, free_port, prism_binary, psp_spec, venv_python, workspace_root,
};
use serde_json::{Value, json};

const SHARED_SECRET: &str = "5e1f0c9a7b3d2e4f6a8c0b1d3e5f7a9c";
const API_KEY: &str = "AQEyhmfxK4_adyen_e2e_api_key_7c1d";
/// The gateway's admin token (the diagnostics route calls `complete`).
const ADMIN: &str = "adyen-e2e-admin-token-3f9a";
const HMAC_KEY: &str = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056";
const OTHER_HMAC_KEY: &str = "00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF";
const MERCHANT_ACCOUNT: &str = "AcmeECOM";

// ---------------------------------------------------------------------------------------
// Prism and the recording proxy
// ---------------------------------------------------------------------------------------

/// `prism mock --errors` on Adyen's spec, killed on drop. Its output is kept for checks.
struct Prism {
    child: Child,
    port: u16,
    output: Arc<Mutex<Vec<String>>>,
}

impl Prism {
    fn start() -> Prism {
        let port = free_port();
        let mut child = Command::new(prism_binary())
            .args(["mock", "--errors", "--host", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .arg(psp_spec("adyen-checkout-v71.json"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start prism");
        let output = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let sink = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    sink.lock().expect("prism output").push(line);
                }
            });
        }
        let mut prism = Prism {
            child,
            port,
            output,
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = prism.child.try_wait() {
                panic!("prism exited ({status}):\n{}", prism.output().join("\n"));
            }
            assert!(
                Instant::now() < deadline,
                "prism did not listen:\n{}",
                prism.output().join("\n")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        prism
    }

    fn output(&self) -> Vec<String> {
        self.output.lock().expect("prism output").clone()
    }

    /// Prism's log lines reporting a request that violates the spec.
    fn violations(&self) -> Vec<String> {
        self.output()
            .into_iter()
            .filter(|l| l.contains("Violation") || l.contains("did not pass the validation"))
            .collect()
    }
}

impl Drop for Prism {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request the plugin made, and Prism's answer.
#[derive(Debug, Clone)]
struct Exchange {
    path: String,
    api_key: Option<String>,
    idempotency_key: Option<String>,
    /// The `Prefer` header the proxy added (never sent by the plugin).
    prefer: Option<String>,
    request: Value,
    status: u16,
    response: Value,
}

struct ProxyState {
    upstream: String,
    client: reqwest::Client,
    prefer: Mutex<Option<String>>,
    exchanges: Mutex<Vec<Exchange>>,
}

/// The recording proxy in front of Prism.
struct Proxy {
    port: u16,
    state: Arc<ProxyState>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(prism: &Prism) -> Proxy {
        let state = Arc::new(ProxyState {
            upstream: format!("http://127.0.0.1:{}", prism.port),
            client: reqwest::Client::new(),
            prefer: Mutex::new(None),
            exchanges: Mutex::new(Vec::new()),
        });
        let app = Router::new().fallback(forward).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("proxy serve");
        });
        Proxy { port, state, task }
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The `Prefer` header added to the next `/payments` calls (`example=card-direct`,
    /// `code=422`), or none (Prism's first example).
    fn prefer(&self, value: Option<&str>) {
        *self.state.prefer.lock().expect("prefer") = value.map(str::to_owned);
    }

    fn exchanges(&self) -> Vec<Exchange> {
        self.state.exchanges.lock().expect("exchanges").clone()
    }

    fn last(&self) -> Exchange {
        self.exchanges().last().cloned().expect("an exchange")
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(
    State(state): State<Arc<ProxyState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let url = format!(
        "{}{}",
        state.upstream,
        uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let method = reqwest::Method::from_bytes(method.as_str().as_bytes()).expect("method");
    let mut request = state.client.request(method, url).body(body.to_vec());
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    for name in ["content-type", "accept", "x-api-key", "idempotency-key"] {
        if let Some(value) = header(name) {
            request = request.header(name, value);
        }
    }
    let prefer = if path == "/payments" {
        state.prefer.lock().expect("prefer").clone()
    } else {
        None
    };
    if let Some(prefer) = &prefer {
        request = request.header("Prefer", prefer);
    }
    let reply = match request.send().await {
        Ok(reply) => reply,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let status = reply.status().as_u16();
    let content_type = reply
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_owned();
    let answer = reply.bytes().await.unwrap_or_default();
    state.exchanges.lock().expect("exchanges").push(Exchange {
        path,
        api_key: header("x-api-key"),
        idempotency_key: header("idempotency-key"),
        prefer,
        request: serde_json::from_slice(&body).unwrap_or(Value::Null),
        status,
        response: serde_json::from_slice(&answer).unwrap_or(Value::Null),
    });
    (
        StatusCode::from_u16(status).expect("status"),
        [(header::CONTENT_TYPE, content_type)],
        answer.to_vec(),
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------
// The gateway, notifications
// ---------------------------------------------------------------------------------------

/// A gateway `adyen` on the real plugin, calling `checkout_base`, calling back `callbacks`.
fn start_gateway(checkout_base: &str, callbacks: Option<&str>) -> (Workspace, Gateway) {
    let ws = Workspace::new();
    ws.install("adyen", "adyen");
    let webhook = callbacks
        .map(|u| format!("webhook_endpoint_url = \"{u}\"\n"))
        .unwrap_or_default();
    let config = ws.write_config(&format!(
        r#"[plugins]
dir = "plugins"

[admin]
token = "{ADMIN}"

[[gateways]]
id = "adyen"
plugin = "adyen"
shared_secret = "${{CL_SHARED_SECRET}}"
{webhook}allowed_hosts = ["{checkout_base}"]

[gateways.settings]
api_key = "${{ADYEN_API_KEY}}"
merchant_account = "{MERCHANT_ACCOUNT}"
checkout_base = "{checkout_base}"
hmac_key = "${{ADYEN_HMAC_KEY}}"
return_url = "https://shop.example/checkout/return"
"#
    ));
    let gw = Gateway::start(
        &config,
        &[
            ("CL_SHARED_SECRET", SHARED_SECRET),
            ("ADYEN_API_KEY", API_KEY),
            ("ADYEN_HMAC_KEY", HMAC_KEY),
        ],
    );
    (ws, gw)
}

/// A notification built and signed by the official Adyen package.
fn adyen_notification(hmac_key: &str, args: &[(&str, &str)]) -> Vec<u8> {
    let script = workspace_root().join("tests/fakes/adyen/notification.py");
    let mut cmd = Command::new(venv_python());
    cmd.arg(script).args(["--hmac-key", hmac_key]);
    for (k, v) in args {
        cmd.arg(format!("--{k}")).arg(v);
    }
    let out = cmd.output().expect("run notification.py");
    assert!(
        out.status.success(),
        "notification.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// POSTs a notification to the gateway's PSP webhook: status, content type, body.
async fn notify(gw: &Gateway, body: Vec<u8>) -> (u16, String, String) {
    let resp = reqwest::Client::new()
        .post(gw.url("/psp/adyen/webhook"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("POST webhook");
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, content_type, resp.text().await.expect("body"))
}

async fn callback_for(receiver: &Receiver, action_id: &str) -> Callback {
    receiver
        .wait_for(
            |c| c.json["data"]["action_id"].as_str() == Some(action_id),
            Duration::from_secs(15),
        )
        .await
        .unwrap_or_else(|| panic!("no callback for {action_id}: {:?}", receiver.callbacks()))
}

fn assert_no_secret_in_logs(gw: &Gateway) {
    for line in gw.logs().iter().map(Value::to_string) {
        for secret in [API_KEY, HMAC_KEY, SHARED_SECRET] {
            assert!(!line.contains(secret), "a log line leaks a secret: {line}");
        }
    }
}

/// Encrypted card fields as Adyen's Drop-in / Components produce them (opaque to the plugin).
fn encrypted_card() -> Value {
    json!({
        "type": "scheme",
        "encryptedCardNumber": "adyenjs_0_1_25$XqYgH2bW4ncard",
        "encryptedExpiryMonth": "adyenjs_0_1_25$Tz9pQ1month",
        "encryptedExpiryYear": "adyenjs_0_1_25$Lk3wV8year",
        "encryptedSecurityCode": "adyenjs_0_1_25$Ms5dR7cvc",
        "holderName": "Ann Smith"
    })
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

/// Authorize, capture, refund, void and token through the host against Prism; the capture,
/// refund and void are settled by Adyen notifications signed with the official package,
/// and Commerce Layer gets signed callbacks with the action ids it was answered.
#[tokio::test(flavor = "multi_thread")]
async fn payment_lifecycle_against_adyens_openapi_with_signed_notifications() {
    let prism = Prism::start();
    let proxy = Proxy::start(&prism).await;
    let receiver = Receiver::start(SHARED_SECRET).await;
    let (_ws, gw) = start_gateway(&proxy.base(), Some(&receiver.url()));
    let sim = ClSimulator::new(&gw.url(""), "adyen", SHARED_SECRET);

    // 1. Authorize with encrypted card data in the external payment's options: Authorised.
    let order = Order::for_amount("EUR", 2000);
    let mut payment = ExternalPayment::new(&order, "adyen-dropin");
    payment.options = json!({"paymentMethod": encrypted_card()});
    proxy.prefer(Some("example=card-direct"));
    let (resp, auth) = sim.authorize_payment(&payment).await;
    assert!(resp.is_success(), "{resp}");
    assert_eq!(resp.transaction_token(), Some("993617895204576J"));
    assert_eq!(resp.amount_cents(), Some(2000));
    let auth = auth.expect("authorization recorded");
    let sent = proxy.last();
    assert_eq!(sent.path, "/payments");
    assert_eq!(sent.status, 200);
    assert_eq!(
        sent.request["amount"],
        json!({"value": 2000, "currency": "EUR"})
    );
    assert_eq!(sent.request["merchantAccount"], MERCHANT_ACCOUNT);
    assert_eq!(
        sent.request["reference"],
        format!("{}-{}", order.number, payment.id)
    );
    assert_eq!(sent.request["additionalData"]["manualCapture"], "true");
    assert_eq!(
        sent.request["paymentMethod"]["encryptedCardNumber"],
        encrypted_card()["encryptedCardNumber"]
    );

    // 2. Capture: Adyen answers `received`, so the host answers 202 with an action id.
    let (resp, capture) = sim.capture(&auth, 2000).await;
    assert!(resp.is_pending(), "{resp}");
    let capture_action = resp.action_id().expect("action_id").to_owned();
    let capture_token = resp.transaction_token().expect("token").to_owned();
    let (payment_ref, capture_ref) = capture_token.split_once(':').expect("payment:capture");
    assert_eq!(payment_ref, "993617895204576J");
    let sent = proxy.last();
    assert_eq!(sent.path, "/payments/993617895204576J/captures");
    assert_eq!(sent.status, 201);
    assert_eq!(capture_ref, sent.response["pspReference"].as_str().unwrap());
    assert_eq!(
        sent.request["amount"],
        json!({"value": 2000, "currency": "EUR"})
    );
    let capture = capture.expect("capture recorded");
    assert!(!capture.succeeded);

    // 3. Adyen's CAPTURE notification (signed by the Adyen package) settles it.
    let body = adyen_notification(
        HMAC_KEY,
        &[
            ("event-code", "CAPTURE"),
            ("psp-reference", capture_ref),
            ("original-reference", payment_ref),
            (
                "merchant-reference",
                sent.request["reference"].as_str().unwrap(),
            ),
            ("value", "2000"),
            ("success", "true"),
        ],
    );
    let (status, content_type, text) = notify(&gw, body).await;
    assert_eq!((status, text.as_str()), (200, "[accepted]"));
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let cb = callback_for(&receiver, &capture_action).await;
    assert!(cb.signature_valid, "{cb:?}");
    assert_eq!(cb.json["success"], true, "{}", cb.json);
    assert_eq!(cb.json["data"]["action_id"], capture_action.as_str());
    assert_eq!(sim.apply_callback(&cb.json), Some(true));
    assert!(sim.find_capture(&capture.id).unwrap().succeeded);

    // 4. Refund part of it: pending, then REFUND settles it.
    let (resp, _refund) = sim.refund(&capture, 500).await;
    assert!(resp.is_pending(), "{resp}");
    let refund_action = resp.action_id().unwrap().to_owned();
    let sent = proxy.last();
    assert_eq!(sent.path, "/payments/993617895204576J/refunds");
    assert_eq!(sent.status, 201);
    assert_eq!(
        sent.request["amount"],
        json!({"value": 500, "currency": "EUR"})
    );
    // What Adyen answered: its notification carries that reference. (Prism answers every
    // modification with the spec's one example reference, so the gateway gives the refunds
    // tokens of its own; the reference stays Adyen's.)
    let refund_ref = sent.response["pspReference"]
        .as_str()
        .expect("pspReference");
    assert!(
        resp.transaction_token()
            .unwrap()
            .starts_with(&format!("{payment_ref}:")),
        "{resp}"
    );
    let body = adyen_notification(
        HMAC_KEY,
        &[
            ("event-code", "REFUND"),
            ("psp-reference", refund_ref),
            ("original-reference", payment_ref),
            ("value", "500"),
        ],
    );
    assert_eq!(notify(&gw, body).await.0, 200);
    let cb = callback_for(&receiver, &refund_action).await;
    assert_eq!(cb.json["success"], true, "{}", cb.json);

    // 5. A second refund fails at Adyen (REFUND_FAILED): CL is told so.
    let (resp, _refund) = sim.refund(&capture, 300).await;
    assert!(resp.is_pending(), "{resp}");
    let failed_action = resp.action_id().unwrap().to_owned();
    let answered = proxy.last();
    let refund_ref = answered.response["pspReference"]
        .as_str()
        .expect("pspReference");
    let body = adyen_notification(
        HMAC_KEY,
        &[
            ("event-code", "REFUND_FAILED"),
            ("psp-reference", refund_ref),
            ("original-reference", payment_ref),
            ("value", "300"),
            ("reason", "Refund failed at the acquirer"),
        ],
    );
    assert_eq!(notify(&gw, body).await.0, 200);
    let cb = callback_for(&receiver, &failed_action).await;
    assert_eq!(cb.json["success"], false, "{}", cb.json);

    // 6. Authorize a saved card (stored payment method id), then void it.
    let order2 = Order::for_amount("EUR", 1500);
    proxy.prefer(Some("example=card-securedfields"));
    let (resp, auth2) = sim.authorize(&order2, "M5N7TQ4TG5PFWR50").await;
    assert!(resp.is_success(), "{resp}");
    assert_eq!(resp.transaction_token(), Some("993617895215577D"));
    let sent = proxy.last();
    assert_eq!(
        sent.request["paymentMethod"],
        json!({"type": "scheme", "storedPaymentMethodId": "M5N7TQ4TG5PFWR50"})
    );
    assert_eq!(sent.request["shopperInteraction"], "ContAuth");
    assert_eq!(sent.request["recurringProcessingModel"], "CardOnFile");
    assert!(
        sent.request["shopperReference"]
            .as_str()
            .unwrap()
            .starts_with("cl-")
    );
    let (resp, _void) = sim.void(&auth2.unwrap()).await;
    assert!(resp.is_pending(), "{resp}");
    let void_action = resp.action_id().unwrap().to_owned();
    let sent = proxy.last();
    assert_eq!(sent.path, "/payments/993617895215577D/cancels");
    assert_eq!(sent.status, 201);
    assert!(sent.request.get("amount").is_none());
    let body = adyen_notification(
        HMAC_KEY,
        &[
            ("event-code", "CANCELLATION"),
            (
                "psp-reference",
                sent.response["pspReference"].as_str().unwrap(),
            ),
            ("original-reference", "993617895215577D"),
            ("value", "1500"),
        ],
    );
    assert_eq!(notify(&gw, body).await.0, 200);
    let cb = callback_for(&receiver, &void_action).await;
    assert_eq!(cb.json["success"], true, "{}", cb.json);

    // 7. Prism's first /payments example is a 3DS2 IdentifyShopper: pending, with the action.
    proxy.prefer(None);
    let mut payment3 = ExternalPayment::new(&Order::for_amount("EUR", 900), "adyen-dropin");
    payment3.options = json!({"paymentMethod": encrypted_card()});
    let (resp, _) = sim.authorize_payment(&payment3).await;
    assert!(resp.is_pending(), "{resp}");
    assert!(resp.text().contains("IdentifyShopper"), "{resp}");
    assert!(resp.text().contains("threeDS2"), "{resp}");

    // 8. Token: a zero-amount verification that stores the card.
    proxy.prefer(Some("example=enableOneClick-SF"));
    let token = ExternalPayment::new(&Order::sample(), &encrypted_card().to_string());
    let (resp, saved) = sim.save_to_wallet(&token).await;
    assert!(resp.is_success(), "{resp}");
    let saved = saved.expect("saved");
    assert_eq!(saved.payment_source_token, "M5N7TQ4TG5PFWR50");
    assert!(saved.customer_token.as_deref().unwrap().starts_with("cl-"));
    let sent = proxy.last();
    assert_eq!(sent.request["amount"]["value"], 0);
    assert_eq!(sent.request["storePaymentMethod"], true);
    assert_eq!(sent.request["recurringProcessingModel"], "CardOnFile");
    assert_eq!(sent.request["shopperInteraction"], "Ecommerce");

    // Every request validated against Adyen's published OpenAPI and was authenticated.
    let exchanges = proxy.exchanges();
    assert_eq!(exchanges.len(), 8, "{exchanges:#?}");
    for x in &exchanges {
        assert!(
            (200..300).contains(&x.status),
            "Prism refused a request: {x:#?}"
        );
        assert_eq!(x.api_key.as_deref(), Some(API_KEY), "{x:?}");
        assert!(x.prefer.is_none() || x.path == "/payments", "{x:?}");
        let key = x.idempotency_key.as_deref().expect("Idempotency-Key");
        assert!(key.len() <= 64 && key.starts_with("adyen:"), "{key}");
    }
    let violations = prism.violations();
    assert!(
        violations.is_empty(),
        "Prism reports violations:\n{}",
        violations.join("\n")
    );

    // 9. A 4xx from Adyen (Prism's 422 ServiceError example, forced) is an invalid request,
    // never an outcome.
    proxy.prefer(Some("code=422"));
    let (resp, _) = sim
        .authorize(&Order::for_amount("EUR", 100), "M5N7TQ4TG5PFWR50")
        .await;
    assert_eq!(resp.status, 422, "{resp}");
    assert_eq!(resp.error_code(), Some("invalid_request"), "{resp}");
    assert_eq!(proxy.last().status, 422);
    assert!(prism.violations().is_empty());

    assert_no_secret_in_logs(&gw);
}

/// Notifications signed by the official Adyen package pass the real host's webhook route;
/// tampered, wrongly keyed or unsigned ones are refused with 401.
#[tokio::test(flavor = "multi_thread")]
async fn notifications_signed_by_the_adyen_package_are_verified() {
    // No PSP calls here: the checkout base is never reached.
    let (_ws, gw) = start_gateway(&format!("http://127.0.0.1:{}", free_port()), None);
    let args = [
        ("event-code", "AUTHORISATION"),
        ("psp-reference", "8816118280275544"),
        ("merchant-reference", "4200001-XAyRWNUzyN"),
        ("value", "12200"),
        ("currency", "EUR"),
    ];

    let valid = adyen_notification(HMAC_KEY, &args);
    let (status, content_type, text) = notify(&gw, valid.clone()).await;
    assert_eq!((status, text.as_str()), (200, "[accepted]"));
    assert!(content_type.starts_with("text/plain"));

    // Tampered amount after signing.
    let mut doc: Value = serde_json::from_slice(&valid).unwrap();
    doc["notificationItems"][0]["NotificationRequestItem"]["amount"]["value"] = json!(1);
    let (status, _, text) = notify(&gw, serde_json::to_vec(&doc).unwrap()).await;
    assert_eq!(status, 401, "{text}");

    // A tampered item beside a valid one rejects the whole batch.
    let mut batch: Value = serde_json::from_slice(&valid).unwrap();
    let mut bad = batch["notificationItems"][0].clone();
    bad["NotificationRequestItem"]["success"] = json!("false");
    batch["notificationItems"].as_array_mut().unwrap().push(bad);
    assert_eq!(
        notify(&gw, serde_json::to_vec(&batch).unwrap()).await.0,
        401
    );

    // Signed with another key.
    let other = adyen_notification(OTHER_HMAC_KEY, &args);
    assert_eq!(notify(&gw, other).await.0, 401);

    // Unsigned.
    let mut unsigned: Value = serde_json::from_slice(&valid).unwrap();
    unsigned["notificationItems"][0]["NotificationRequestItem"]["additionalData"] = json!({});
    assert_eq!(
        notify(&gw, serde_json::to_vec(&unsigned).unwrap()).await.0,
        401
    );

    // Not a notification at all.
    assert_eq!(notify(&gw, b"[accepted]".to_vec()).await.0, 400);

    assert_no_secret_in_logs(&gw);
}

/// After a redirect, `complete` (called here through the admin diagnostics route, as the
/// host's shopper-return handling would) sends `/payments/details` with the
/// `redirectResult`, which Prism validates against Adyen's spec; Adyen's example answer
/// (Authorised) becomes the approval under Adyen's pspReference.
#[tokio::test(flavor = "multi_thread")]
async fn complete_calls_payments_details_on_adyens_openapi() {
    let prism = Prism::start();
    let proxy = Proxy::start(&prism).await;
    let (_ws, gw) = start_gateway(&proxy.base(), None);
    let resp = reqwest::Client::new()
        .post(gw.url("/admin/gateways/adyen/call/complete"))
        .bearer_auth(ADMIN)
        .json(&json!({
            "idempotency_key": "complete-e2e-1",
            "amount_cents": 2500,
            "transaction_token": "12345-ref-1",
            "psp_reference": "12345-ref-1",
            "sync_operation": "authorize",
            "return_parameters": {"redirectResult": "X6XtfGC3!Y2hlY2tvdXQ", "utm": "x"},
        }))
        .send()
        .await
        .expect("diagnostics call");
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["result"], "approved", "{body}");
    assert_eq!(body["transaction_token"], "V4HZ4RBFJGXXGN82", "{body}");
    assert_eq!(body["amount_cents"], 2500, "{body}");

    let sent = proxy.last();
    assert_eq!(sent.path, "/payments/details");
    assert_eq!(sent.status, 200, "{sent:?}");
    assert_eq!(
        sent.request,
        json!({"details": {"redirectResult": "X6XtfGC3!Y2hlY2tvdXQ"}})
    );
    assert_eq!(sent.api_key.as_deref(), Some(API_KEY));
    assert!(sent.idempotency_key.is_some(), "{sent:?}");
    let violations = prism.violations();
    assert!(
        violations.is_empty(),
        "Prism reports violations:\n{}",
        violations.join("\n")
    );
    assert_no_secret_in_logs(&gw);
}
