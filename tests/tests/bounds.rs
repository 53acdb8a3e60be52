//! Input bounds and closed fronts, end to end (the real binary, the sandbox `.wasm` plugin,
//! real HTTP): amounts beyond the engine's bound are refused on every front without harming
//! the authorization they name; a card number is refused on every front and found in no log
//! line and no byte of the database; a numeric-token gateway takes PAN-shaped tokens; PGM
//! routes exist only for gateways that configure them; `[admin] listen` moves the operator
//! routes to their own address.

use std::time::Duration;

use psp_gateway_e2e::cl::{
    Action, ClSimulator, ExternalPayment, Order, authorize_body, capture_body, refund_body,
};
use psp_gateway_e2e::{Gateway, Workspace};
use serde_json::{Value, json};

const SHARED_SECRET: &str = "9c2e4a6b8d0f1a3c5e7a9b1d3f5a7c9e";
const WEBHOOK_SECRET: &str = "sbx_whsec_bounds_e2e_4d6f8a0c";
const PGM_TOKEN: &str = "pgm_bearer_bounds_e2e_7e9a1c3b5d";
const WRONG_TOKEN: &str = "pgm_bearer_bounds_wrong_2b4d6f";
/// A token the sandbox approves, distinctive enough to find in a log.
const TOK_OK: &str = "tok_bounds_ok_3f5b7d9a1c";

/// Visa's test PAN, bare and as people type it.
const PAN: &str = "4111111111111111";
const PAN_TYPED: &str = "4111 1111 1111 1111";
/// Mastercard's test PAN, used as a numeric PSP token on a `numeric_tokens` gateway.
const NUMERIC_TOKEN: &str = "5105105105105100";

/// 2^63 and 2^64 - 1: an `i64` overflow and the largest `u64`.
const HUGE: [u64; 2] = [1 << 63, u64::MAX];

/// A sandbox gateway entry; `extra` holds more keys.
fn gateway(id: &str, extra: &str) -> String {
    format!(
        "[[gateways]]\nid = \"{id}\"\nplugin = \"sandbox\"\n{extra}\n\
         [gateways.settings]\nwebhook_secret = \"${{SANDBOX_WEBHOOK_SECRET}}\"\n"
    )
}

fn start(top: &str, gateways: &[String]) -> (Workspace, Gateway) {
    let ws = Workspace::new();
    ws.install("sandbox", "sandbox");
    let config = ws.write_config(&format!(
        "[plugins]\ndir = \"plugins\"\n{top}\n{}",
        gateways.join("\n")
    ));
    let gw = Gateway::start(
        &config,
        &[
            ("CL_SHARED_SECRET", SHARED_SECRET),
            ("SANDBOX_WEBHOOK_SECRET", WEBHOOK_SECRET),
            ("PGM_AUTH_TOKEN", PGM_TOKEN),
        ],
    );
    (ws, gw)
}

/// A gateway serving both fronts: Commerce Layer (shared secret) and PGM (open).
fn both_fronts(id: &str, extra: &str) -> String {
    gateway(
        id,
        &format!("shared_secret = \"${{CL_SHARED_SECRET}}\"\npgm_auth = \"none\"\n{extra}"),
    )
}

/// POSTs JSON to `url` with an optional bearer token; (status, body).
async fn post(url: &str, bearer: Option<&str>, body: &Value) -> (u16, Value) {
    let mut req = reqwest::Client::new().post(url).json(body);
    if let Some(token) = bearer {
        req = req.bearer_auth(token);
    }
    let resp = req.send().await.expect("POST");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn pay_body(shop: &str, amount: u64, token: &str) -> Value {
    json!({"amount": amount, "currency": "EUR", "shopTransactionId": shop,
           "providerData": {"paymentSourceToken": token}})
}

fn assert_ko(status: u16, body: &Value, expected: u16, mentions: &str) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["result"], "KO", "{body}");
    let why = body["resultDescription"].as_str().unwrap_or_default();
    assert!(why.contains(mentions), "should name `{mentions}`: {body}");
}

/// Sets every included order's total: the amount a CL authorize asks for.
fn with_order_total(mut doc: Value, amount: u64) -> Value {
    for item in doc["included"].as_array_mut().expect("included") {
        if item["type"] == "orders" {
            item["attributes"]["total_amount_with_taxes_cents"] = json!(amount);
        }
    }
    doc
}

#[tokio::test(flavor = "multi_thread")]
async fn amounts_beyond_the_bound_are_refused_and_balances_stay_intact() {
    let (_ws, gw) = start("", &[both_fronts("shop", "")]);
    let sim = ClSimulator::new(&gw.url(""), "shop", SHARED_SECRET);

    // CL authorize: an order total beyond the bound.
    for amount in HUGE {
        let doc = with_order_total(
            authorize_body(&ExternalPayment::new(
                &Order::for_amount("EUR", 1_000),
                TOK_OK,
            )),
            amount,
        );
        let resp = sim.send(Action::Authorize, &doc).await;
        assert_eq!(resp.status, 422, "{resp}");
        assert_eq!(resp.error_code(), Some("invalid_amount"), "{resp}");
    }
    assert_eq!(gw.plugin_calls("shop", "authorize").await, 0);

    let (resp, auth) = sim
        .authorize(&Order::for_amount("EUR", 1_000), TOK_OK)
        .await;
    assert_eq!(resp.status, 200, "{resp}");
    let auth = auth.expect("authorization");

    // CL capture of 2^63 and 2^64 - 1 on a 1,000-cent authorization: refused, not stored.
    for amount in HUGE {
        let mut doc = capture_body(&auth, 1_000);
        doc["data"]["attributes"]["capture_amount_cents"] = json!(amount);
        let resp = sim.send(Action::Capture, &doc).await;
        assert_eq!(resp.status, 422, "{resp}");
        assert_eq!(resp.error_code(), Some("invalid_amount"), "{resp}");
    }
    // Beyond u64 altogether: a clear 400 naming the field.
    let mut doc = capture_body(&auth, 1_000);
    doc["data"]["attributes"]["capture_amount_cents"] = json!(1);
    let text = serde_json::to_string(&doc).unwrap().replace(
        "\"capture_amount_cents\":1,",
        "\"capture_amount_cents\":18446744073709551616,",
    );
    assert!(text.contains("18446744073709551616"), "{text}");
    let raw: Vec<u8> = text.into_bytes();
    let signature = sim.sign(&raw);
    let resp = sim
        .post_raw(Action::Capture, raw, Some(signature), "application/json")
        .await;
    assert_eq!(resp.status, 400, "{resp}");
    assert!(resp.text().contains("capture_amount_cents"), "{resp}");
    assert_eq!(gw.plugin_calls("shop", "capture").await, 0);

    // The authorization captures normally afterwards, for exactly its amount.
    let (resp, first) = sim.capture(&auth, 400).await;
    assert_eq!(resp.status, 200, "{resp}");
    let (resp, _) = sim.capture(&auth, 600).await;
    assert_eq!(resp.status, 200, "{resp}");
    let (resp, _) = sim.capture(&auth, 1).await;
    assert_eq!(resp.status, 422, "{resp}");
    assert_eq!(resp.error_code(), Some("amount_exceeds_balance"), "{resp}");

    // CL refund beyond the bound, then a normal one of the capture's full amount.
    let capture = first.expect("capture");
    for amount in HUGE {
        let mut doc = refund_body(&capture, 400);
        doc["data"]["attributes"]["refund_amount_cents"] = json!(amount);
        let resp = sim.send(Action::Refund, &doc).await;
        assert_eq!(resp.status, 422, "{resp}");
        assert_eq!(resp.error_code(), Some("invalid_amount"), "{resp}");
    }
    assert_eq!(gw.plugin_calls("shop", "refund").await, 0);
    let (resp, _) = sim.refund(&capture, 400).await;
    assert_eq!(resp.status, 200, "{resp}");

    // PGM pay and refund beyond the bound: 400 KO naming `amount`.
    let pgm = gw.url("/v3/shop");
    for (i, amount) in HUGE.into_iter().enumerate() {
        let (s, b) = post(
            &format!("{pgm}/pay"),
            None,
            &pay_body(&format!("shop-huge-{i}"), amount, TOK_OK),
        )
        .await;
        assert_ko(s, &b, 400, "amount");
    }
    let (s, paid) = post(
        &format!("{pgm}/pay"),
        None,
        &pay_body("shop-ok", 1_000, TOK_OK),
    )
    .await;
    assert_eq!((s, paid["result"].as_str()), (200, Some("OK")), "{paid}");
    let payment_id = paid["paymentId"].as_str().expect("paymentId");
    for amount in HUGE {
        let (s, b) = post(
            &format!("{pgm}/refund"),
            None,
            &json!({"amount": amount, "currency": "EUR", "paymentId": payment_id}),
        )
        .await;
        assert_ko(s, &b, 400, "amount");
    }
    // The payment's balance is intact: all of it refunds, and not a cent more.
    let (s, b) = post(
        &format!("{pgm}/refund"),
        None,
        &json!({"amount": 1_000, "currency": "EUR", "paymentId": payment_id}),
    )
    .await;
    assert_eq!((s, b["result"].as_str()), (200, Some("OK")), "{b}");
    let (s, b) = post(
        &format!("{pgm}/refund"),
        None,
        &json!({"amount": 1, "currency": "EUR", "paymentId": payment_id}),
    )
    .await;
    assert_eq!(b["result"], "KO", "{s} {b}");

    gw.assert_no_leaks(&[SHARED_SECRET, WEBHOOK_SECRET, TOK_OK]);
}

/// Every byte of the SQLite files (database, write-ahead log).
fn database_bytes(ws: &Workspace) -> Vec<u8> {
    let mut bytes = Vec::new();
    for name in ["gateway.db", "gateway.db-wal", "gateway.db-shm"] {
        if let Ok(b) = std::fs::read(ws.root.path().join(name)) {
            bytes.extend(b);
        }
    }
    assert!(!bytes.is_empty(), "no database file");
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread")]
async fn card_numbers_are_refused_on_every_front_and_recorded_nowhere() {
    let (ws, mut gw) = start(
        "",
        &[
            both_fronts("shop", ""),
            both_fronts("numeric", "numeric_tokens = true"),
        ],
    );
    let sim = ClSimulator::new(&gw.url(""), "shop", SHARED_SECRET);
    for pan in [PAN, PAN_TYPED, NUMERIC_TOKEN] {
        // Commerce Layer authorize and customer token.
        let (resp, _) = sim.authorize(&Order::for_amount("EUR", 1_000), pan).await;
        assert_eq!(resp.status, 422, "{resp}");
        assert_eq!(resp.error_code(), Some("card_number_refused"), "{resp}");
        let payment = ExternalPayment::new(&Order::for_amount("EUR", 1_000), pan);
        let (resp, _) = sim.save_to_wallet(&payment).await;
        assert_eq!(resp.status, 422, "{resp}");
        assert_eq!(resp.error_code(), Some("card_number_refused"), "{resp}");
        // PGM pay and subscription start.
        let (s, b) = post(
            &gw.url("/v3/shop/pay"),
            None,
            &pay_body("pay-pan", 1_000, pan),
        )
        .await;
        assert_ko(s, &b, 400, "card_number");
        let (s, b) = post(
            &gw.url("/v3/shop/subscription/start"),
            None,
            &pay_body("sub-pan", 1_000, pan),
        )
        .await;
        assert_ko(s, &b, 400, "card_number");
        assert!(!b.to_string().contains(PAN), "{b}");
    }
    for op in ["authorize", "sale", "tokenize"] {
        assert_eq!(gw.plugin_calls("shop", op).await, 0, "{op}");
    }

    // A numeric-token gateway takes bare digits as the PSP's token, on both fronts...
    let numeric = ClSimulator::new(&gw.url(""), "numeric", SHARED_SECRET);
    let (resp, _) = numeric
        .authorize(&Order::for_amount("EUR", 1_000), NUMERIC_TOKEN)
        .await;
    assert_eq!(resp.status, 200, "{resp}");
    let (s, b) = post(
        &gw.url("/v3/numeric/pay"),
        None,
        &pay_body("pay-numeric", 1_000, NUMERIC_TOKEN),
    )
    .await;
    assert_eq!((s, b["result"].as_str()), (200, Some("OK")), "{b}");
    // ...but a number typed with spaces is still a card number there.
    let (resp, _) = numeric
        .authorize(&Order::for_amount("EUR", 1_000), PAN_TYPED)
        .await;
    assert_eq!(resp.status, 422, "{resp}");
    assert_eq!(resp.error_code(), Some("card_number_refused"), "{resp}");

    // Something legitimate was stored, so the database is not trivially empty.
    let (s, b) = post(
        &gw.url("/v3/shop/pay"),
        None,
        &pay_body("pay-ok", 1_000, TOK_OK),
    )
    .await;
    assert_eq!((s, b["result"].as_str()), (200, Some("OK")), "{b}");

    gw.assert_no_leaks(&[PAN, PAN_TYPED, "1111 1111", SHARED_SECRET, WEBHOOK_SECRET]);
    let live = database_bytes(&ws);
    gw.kill();
    let after = database_bytes(&ws);
    for bytes in [&live, &after] {
        assert!(contains(bytes, "pay-ok"), "the database holds no payment");
        for needle in [PAN, PAN_TYPED, "1111 1111"] {
            assert!(!contains(bytes, needle), "`{needle}` is in the database");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pgm_is_closed_by_default_and_operator_routes_move_to_admin_listen() {
    let (_ws, gw) = start(
        "[admin]\nlisten = \"127.0.0.1:0\"\n",
        &[
            gateway("cl_only", "shared_secret = \"${CL_SHARED_SECRET}\""),
            gateway("locked", "pgm_auth_token = \"${PGM_AUTH_TOKEN}\""),
            gateway("open", "pgm_auth = \"none\""),
        ],
    );

    // No PGM settings: the routes do not exist, answered exactly as for an unknown gateway.
    let (s, unknown) = post(
        &gw.url("/v3/nowhere/pay"),
        None,
        &pay_body("x", 100, TOK_OK),
    )
    .await;
    assert_eq!(s, 404, "{unknown}");
    for path in ["/pay", "/refund", "/subscription/start"] {
        let (s, b) = post(
            &gw.url(&format!("/v3/cl_only{path}")),
            None,
            &pay_body("x", 100, TOK_OK),
        )
        .await;
        assert_eq!(s, 404, "{path}: {b}");
        assert_eq!(
            b.to_string(),
            unknown.to_string().replace("nowhere", "cl_only"),
            "{path}"
        );
    }
    let resp = reqwest::get(gw.url("/v3/cl_only/status?paymentId=p1"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    // A bearer token: missing or wrong is 401, the right one is served.
    for bearer in [None, Some(WRONG_TOKEN)] {
        let (s, b) = post(
            &gw.url("/v3/locked/pay"),
            bearer,
            &pay_body("l-1", 100, TOK_OK),
        )
        .await;
        assert_ko(s, &b, 401, "bearer");
    }
    let (s, b) = post(
        &gw.url("/v3/locked/pay"),
        Some(PGM_TOKEN),
        &pay_body("l-1", 100, TOK_OK),
    )
    .await;
    assert_eq!((s, b["result"].as_str()), (200, Some("OK")), "{b}");

    // `pgm_auth = "none"`: served to anyone, and warned about at start, by gateway.
    let (s, b) = post(&gw.url("/v3/open/pay"), None, &pay_body("o-1", 100, TOK_OK)).await;
    assert_eq!((s, b["result"].as_str()), (200, Some("OK")), "{b}");
    let warned = |id: &'static str| move |l: &Value| l["level"] == "WARN" && l["gateway"] == id;
    assert!(
        gw.wait_for_log(Duration::from_secs(1), warned("open"))
            .is_some(),
        "{}",
        gw.dump_logs()
    );
    assert!(gw.wait_for_log(Duration::ZERO, warned("locked")).is_none());
    assert!(gw.wait_for_log(Duration::ZERO, warned("cl_only")).is_none());

    // `[admin] listen`: the operator routes answer there, and 404 on the main address.
    let admin = gw
        .wait_for_log(Duration::from_secs(5), |l| {
            l["message"] == "admin listening"
        })
        .unwrap_or_else(|| panic!("no admin address logged:\n{}", gw.dump_logs()));
    let admin = admin["addr"].as_str().expect("addr").to_owned();
    assert_ne!(admin, gw.addr);
    for path in ["/metrics", "/admin/plugins"] {
        let on_admin = reqwest::get(format!("http://{admin}{path}")).await.unwrap();
        assert_eq!(on_admin.status(), 200, "{path} on the admin address");
        let text = on_admin.text().await.unwrap();
        let on_main = reqwest::get(gw.url(path)).await.unwrap();
        assert_eq!(on_main.status(), 404, "{path} on the main address");
        if path == "/metrics" {
            assert!(text.contains("psp_plugin_calls_total"), "{text}");
        } else {
            assert!(text.contains("sandbox"), "{text}");
        }
    }
    // The payment routes stay on the main address only.
    let (s, _) = post(
        &format!("http://{admin}/v3/open/pay"),
        None,
        &pay_body("o-2", 100, TOK_OK),
    )
    .await;
    assert_eq!(s, 404);
    assert_eq!(
        reqwest::get(gw.url("/healthz")).await.unwrap().status(),
        200
    );

    gw.assert_no_leaks(&[
        PGM_TOKEN,
        WRONG_TOKEN,
        SHARED_SECRET,
        WEBHOOK_SECRET,
        TOK_OK,
    ]);
}
