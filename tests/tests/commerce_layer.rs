//! Acceptance tests of the Commerce Layer front, end to end: the real `psp-gateway` binary,
//! the real sandbox (and echo) `.wasm` plugins, real HTTP from the Commerce Layer simulator,
//! signed callbacks to a real receiver, and a read-only look at the SQLite store.
//!
//! The contract is `shared/reference/commerce-layer.md`. Every test starts its own gateway
//! in its own temp directory and, before it ends, checks that the gateway's logs leak neither
//! secret nor any payment source token it was given.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use psp_gateway_e2e::cl::{
    Action, ClSimulator, ExternalPayment, JSON, JSON_API, Order, authorize_body, capture_body,
    verify,
};
use psp_gateway_e2e::receiver::{Callback, Receiver};
use psp_gateway_e2e::{Gateway, Workspace, hex_hmac};
use serde_json::json;
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};

/// Commerce Layer's shared secret of every gateway here (32 hex characters, like CL's).
const SHARED_SECRET: &str = "5e1f0c9a7b3d2e4f6a8c0b1d3e5f7a9c";
/// The sandbox plugin's `webhook_secret` setting.
const WEBHOOK_SECRET: &str = "sbx_whsec_e2e_3c7a1f9d5b2e8c4a";

/// Distinctive payment source tokens (the sandbox approves them): easy to find in a log.
const TOK_VISA: &str = "tok_visa_9f8e7d6c5b4a";
const TOK_MASTERCARD: &str = "tok_mc_0a1b2c3d4e5f6a7b";
const TOK_AMEX: &str = "tok_amex_77e1d0c4b2a9f3";
/// A Luhn-valid 16-digit card number (never to reach a plugin or a log line).
const CARD_NUMBER: &str = "4000056655665556";
/// Payment source tokens with a sandbox meaning.
const TOK_PENDING: &str = "tok_pending";
const TOK_DECLINE: &str = "tok_decline";
const TOK_FAIL: &str = "tok_fail";
const TOK_SLOW_TIMEOUT: &str = "tok_slow_1500";
const TOK_SLOW_DEFERRED: &str = "tok_slow_5000";

/// What must never appear in a log line, whichever test ran.
const NEVER_LOGGED: &[&str] = &[
    SHARED_SECRET,
    WEBHOOK_SECRET,
    TOK_VISA,
    TOK_MASTERCARD,
    TOK_AMEX,
    CARD_NUMBER,
    TOK_PENDING,
    TOK_DECLINE,
    TOK_FAIL,
    TOK_SLOW_TIMEOUT,
    TOK_SLOW_DEFERRED,
];

// ---------------------------------------------------------------------------------------
// Starting a gateway
// ---------------------------------------------------------------------------------------

/// One `[[gateways]]` entry using CL's shared secret; sandbox gateways get the
/// `webhook_secret` setting. `extra` holds more keys of the entry (`async_after_ms = 200`).
fn gateway_toml(id: &str, plugin: &str, webhook_url: Option<&str>, extra: &str) -> String {
    let mut entry = format!(
        "[[gateways]]\nid = \"{id}\"\nplugin = \"{plugin}\"\nshared_secret = \"${{CL_SHARED_SECRET}}\"\n"
    );
    if let Some(url) = webhook_url {
        entry.push_str(&format!("webhook_endpoint_url = \"{url}\"\n"));
    }
    entry.push_str(extra);
    entry.push('\n');
    if plugin == "sandbox" {
        entry.push_str("[gateways.settings]\nwebhook_secret = \"${SANDBOX_WEBHOOK_SECRET}\"\n");
    }
    entry
}

/// A workspace with the given plugins installed (`(built, as_name)`), and a gateway serving
/// `top` (top-level tables such as `[outbox]`) and the gateway entries. Secrets come from
/// the environment through `${VAR}`.
fn start(plugins: &[(&str, &str)], top: &str, gateways: &[String]) -> (Workspace, Gateway) {
    let ws = Workspace::new();
    for (built, name) in plugins {
        ws.install(built, name);
    }
    let config = ws.write_config(&format!(
        "[plugins]\ndir = \"plugins\"\n{top}\n{}",
        gateways.join("\n")
    ));
    let gw = start_on(&config);
    (ws, gw)
}

fn start_on(config: &Path) -> Gateway {
    Gateway::start(
        config,
        &[
            ("CL_SHARED_SECRET", SHARED_SECRET),
            ("SANDBOX_WEBHOOK_SECRET", WEBHOOK_SECRET),
        ],
    )
}

/// The common case: one sandbox gateway `sandbox` calling back `receiver`.
fn start_sandbox(receiver: &Receiver, extra: &str) -> (Workspace, Gateway) {
    start(
        &[("sandbox", "sandbox")],
        "",
        &[gateway_toml(
            "sandbox",
            "sandbox",
            Some(&receiver.url()),
            extra,
        )],
    )
}

fn simulator(gw: &Gateway, gateway: &str) -> ClSimulator {
    ClSimulator::new(&gw.url(""), gateway, SHARED_SECRET)
}

// ---------------------------------------------------------------------------------------
// Logs, metrics, the store, PSP notifications
// ---------------------------------------------------------------------------------------

/// Fails naming every log line that contains a secret or a payment source token.
fn assert_no_leaks(gw: &Gateway, also: &[&str]) {
    gw.assert_no_leaks(&[NEVER_LOGGED, also].concat());
}

async fn callbacks_waiting(gw: &Gateway) -> u64 {
    let text = gw.metrics().await;
    text.lines()
        .find_map(|l| l.strip_prefix("psp_callbacks_waiting "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no psp_callbacks_waiting in:\n{text}"))
}

/// Polls `psp_callbacks_waiting` until it reads `expected`.
async fn wait_callbacks_waiting(gw: &Gateway, expected: u64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let now = callbacks_waiting(gw).await;
        if now == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "psp_callbacks_waiting stayed {now}, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A row of the `transactions` table.
#[derive(Debug, Clone)]
#[allow(dead_code)] // Fields are read through `Debug` in assertion messages too.
struct Txn {
    id: String,
    gateway: String,
    action: String,
    resource_id: String,
    parent_id: Option<String>,
    transaction_token: String,
    psp_token: Option<String>,
    action_id: Option<String>,
    amount_cents: i64,
    currency: String,
    status: String,
    error_code: Option<String>,
    response_status: Option<i64>,
    response_body: Option<String>,
}

/// A row of the `outbox` table.
#[derive(Debug, Clone)]
struct OutboxRow {
    action_id: Option<String>,
    attempts: i64,
    delivered_at: Option<i64>,
    dead_at: Option<i64>,
}

/// The gateway's SQLite file, opened read-only.
struct Store {
    pool: SqlitePool,
}

impl Store {
    async fn open(gw: &Gateway) -> Store {
        let file = gw.dir.join("gateway.db");
        let options = SqliteConnectOptions::new()
            .filename(&file)
            .read_only(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .unwrap_or_else(|e| panic!("open {} read-only: {e}", file.display()));
        Store { pool }
    }

    async fn transactions(&self, filter: &str, bind: &str) -> Vec<Txn> {
        let sql = format!(
            "SELECT id, gateway, action, resource_id, parent_id, transaction_token, psp_token, \
             action_id, amount_cents, currency, status, error_code, response_status, \
             response_body FROM transactions WHERE {filter} ORDER BY created_at, rowid"
        );
        sqlx::query(&sql)
            .bind(bind)
            .fetch_all(&self.pool)
            .await
            .expect("read transactions")
            .iter()
            .map(|r| Txn {
                id: r.get("id"),
                gateway: r.get("gateway"),
                action: r.get("action"),
                resource_id: r.get("resource_id"),
                parent_id: r.get("parent_id"),
                transaction_token: r.get("transaction_token"),
                psp_token: r.get("psp_token"),
                action_id: r.get("action_id"),
                amount_cents: r.get("amount_cents"),
                currency: r.get("currency"),
                status: r.get("status"),
                error_code: r.get("error_code"),
                response_status: r.get("response_status"),
                response_body: r.get("response_body"),
            })
            .collect()
    }

    /// Rows created for one CL resource (`data.id` of the request).
    async fn for_resource(&self, resource_id: &str) -> Vec<Txn> {
        self.transactions("resource_id = ?", resource_id).await
    }

    async fn by_action_id(&self, action_id: &str) -> Txn {
        let mut rows = self.transactions("action_id = ?", action_id).await;
        assert_eq!(rows.len(), 1, "rows with action_id {action_id}: {rows:?}");
        rows.remove(0)
    }

    async fn with_action(&self, action: &str) -> Vec<Txn> {
        self.transactions("action = ?", action).await
    }

    async fn outbox(&self) -> Vec<OutboxRow> {
        sqlx::query("SELECT action_id, attempts, delivered_at, dead_at FROM outbox ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .expect("read outbox")
            .iter()
            .map(|r| OutboxRow {
                action_id: r.get("action_id"),
                attempts: r.get("attempts"),
                delivered_at: r.get("delivered_at"),
                dead_at: r.get("dead_at"),
            })
            .collect()
    }

    /// Polls until the row with `action_id` has `status`.
    async fn wait_status(&self, action_id: &str, status: &str, timeout: Duration) -> Txn {
        let deadline = Instant::now() + timeout;
        loop {
            let row = self.by_action_id(action_id).await;
            if row.status == status {
                return row;
            }
            assert!(
                Instant::now() < deadline,
                "row {action_id} is still {} (expected {status}): {row:?}",
                row.status
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn close(self) {
        self.pool.close().await;
    }
}

/// A sandbox PSP notification to `/psp/{gateway}/webhook`, signed with `secret` (`None`:
/// no signature header). Returns the HTTP status.
async fn notify(
    gw: &Gateway,
    gateway: &str,
    reference: &str,
    outcome: &str,
    secret: Option<&str>,
) -> u16 {
    let body = serde_json::to_vec(&json!({"reference": reference, "outcome": outcome}))
        .expect("serialise notification");
    let mut request = reqwest::Client::new()
        .post(gw.url(&format!("/psp/{gateway}/webhook")))
        .header("content-type", "application/json");
    if let Some(secret) = secret {
        request = request.header("Sandbox-Signature", hex_hmac(secret, &body));
    }
    request
        .body(body)
        .send()
        .await
        .expect("POST notification")
        .status()
        .as_u16()
}

fn action_id_of(c: &Callback) -> Option<&str> {
    c.json["data"]["action_id"].as_str()
}

/// Callbacks the receiver got for one action id.
fn callbacks_for(receiver: &Receiver, action_id: &str) -> Vec<Callback> {
    receiver
        .callbacks()
        .into_iter()
        .filter(|c| action_id_of(c) == Some(action_id))
        .collect()
}

/// The first callback for `action_id`; on a timeout, fails with what arrived and the
/// gateway's logs.
async fn wait_callback(
    receiver: &Receiver,
    gw: &Gateway,
    action_id: &str,
    timeout: Duration,
) -> Callback {
    receiver
        .wait_for(|c| action_id_of(c) == Some(action_id), timeout)
        .await
        .unwrap_or_else(|| {
            panic!(
                "no callback for {action_id} within {timeout:?}; got {:?}\nlogs:\n{}",
                receiver
                    .callbacks()
                    .iter()
                    .map(|c| String::from_utf8_lossy(&c.raw).into_owned())
                    .collect::<Vec<_>>(),
                gw.dump_logs()
            )
        })
}

/// Asserts that no further callback for `action_id` arrives within `window`.
async fn assert_no_more_callbacks(
    receiver: &Receiver,
    action_id: &str,
    seen: usize,
    window: Duration,
) {
    let extra = receiver
        .wait_for(
            |c| {
                action_id_of(c) == Some(action_id)
                    && callbacks_for(receiver, action_id).len() > seen
            },
            window,
        )
        .await;
    assert!(
        extra.is_none(),
        "{action_id}: more than {seen} callback(s): {:?}",
        callbacks_for(receiver, action_id)
            .iter()
            .map(|c| String::from_utf8_lossy(&c.raw).into_owned())
            .collect::<Vec<_>>()
    );
}

fn luhn_valid(number: &str) -> bool {
    let sum: u32 = number
        .chars()
        .rev()
        .map(|c| c.to_digit(10).expect("digits only"))
        .enumerate()
        .map(|(i, d)| match (i % 2 == 1, d * 2) {
            (true, d2) if d2 > 9 => d2 - 9,
            (true, d2) => d2,
            (false, _) => d,
        })
        .sum();
    sum.is_multiple_of(10)
}

// ---------------------------------------------------------------------------------------
// 1. The answers table
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn every_row_of_the_answers_table() {
    let receiver = Receiver::start(SHARED_SECRET).await;
    let (_ws, gw) = start(
        &[("sandbox", "sandbox"), ("echo_v1", "echo")],
        "",
        &[
            gateway_toml("sandbox", "sandbox", Some(&receiver.url()), ""),
            gateway_toml("echo", "echo", None, ""),
            // The hard deadline comes before the 202 deferral: a slow PSP times out.
            gateway_toml(
                "tight",
                "sandbox",
                Some(&receiver.url()),
                "call_timeout_ms = 300\nasync_after_ms = 2000",
            ),
        ],
    );
    let sim = simulator(&gw, "sandbox");

    // Approved: 200, the PSP's token, the order's total with taxes (not without).
    let order = Order::sample();
    assert_ne!(
        order.total_amount_with_taxes_cents(),
        order.totals().total,
        "the sample order must tell the two totals apart"
    );
    let (resp, auth) = sim.authorize(&order, TOK_VISA).await;
    assert_eq!(resp.status, 200, "{resp}");
    assert_eq!(resp.body["success"], true, "{resp}");
    assert!(
        resp.transaction_token().is_some_and(|t| !t.is_empty()),
        "{resp}"
    );
    assert_eq!(
        resp.amount_cents(),
        Some(order.total_amount_with_taxes_cents()),
        "{resp}"
    );
    assert!(auth.is_some());

    // Both content types are accepted.
    for content_type in [JSON, JSON_API, "application/vnd.api+json; charset=utf-8"] {
        let sim = simulator(&gw, "sandbox").with_content_type(content_type);
        let (resp, _) = sim.authorize(&Order::sample(), TOK_VISA).await;
        assert_eq!(resp.status, 200, "{content_type}: {resp}");
        assert!(resp.is_success(), "{content_type}: {resp}");
    }

    // Pending: 202 with an action id.
    let (resp, _) = sim.authorize(&Order::sample(), TOK_PENDING).await;
    assert_eq!(resp.status, 202, "{resp}");
    assert!(resp.is_pending(), "{resp}");
    assert!(resp.action_id().is_some_and(|a| !a.is_empty()), "{resp}");

    // Declined: 422, the error at the top level.
    let (resp, _) = sim.authorize(&Order::sample(), TOK_DECLINE).await;
    assert_eq!(resp.status, 422, "{resp}");
    assert_eq!(resp.body["success"], false, "{resp}");
    assert_eq!(resp.body["error"]["code"], "card_declined", "{resp}");
    assert!(resp.body["error"]["message"].is_string(), "{resp}");

    // Bad and missing signatures: 401, before anything else.
    let doc = authorize_body(&ExternalPayment::new(&Order::sample(), TOK_VISA));
    let body = serde_json::to_vec(&doc).unwrap();
    let wrong = psp_gateway_e2e::cl::sign("not-the-shared-secret", &body);
    let resp = sim
        .post_raw(Action::Authorize, body.clone(), Some(wrong), JSON_API)
        .await;
    assert_eq!(resp.status, 401, "{resp}");
    assert_eq!(resp.body["success"], false, "{resp}");
    let resp = sim
        .post_raw(Action::Authorize, body.clone(), None, JSON_API)
        .await;
    assert_eq!(resp.status, 401, "{resp}");
    // A valid signature of other bytes (the same JSON re-serialised) is a bad signature.
    let pretty = serde_json::to_vec_pretty(&doc).unwrap();
    let resp = sim
        .post_raw(Action::Authorize, pretty, Some(sim.sign(&body)), JSON_API)
        .await;
    assert_eq!(resp.status, 401, "{resp}");

    // Malformed: 400 naming the field.
    let mut doc = authorize_body(&ExternalPayment::new(&Order::sample(), TOK_VISA));
    doc["data"]["attributes"]
        .as_object_mut()
        .unwrap()
        .remove("payment_source_token");
    let resp = sim.send(Action::Authorize, &doc).await;
    assert_eq!(resp.status, 400, "{resp}");
    let message = resp.body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("data.attributes.payment_source_token"),
        "{resp}"
    );
    let not_json = b"{\"data\": ".to_vec();
    let resp = sim
        .post_raw(
            Action::Authorize,
            not_json.clone(),
            Some(sim.sign(&not_json)),
            JSON,
        )
        .await;
    assert_eq!(resp.status, 400, "{resp}");

    // Oversized (> 1 MiB): 413.
    let mut doc = authorize_body(&ExternalPayment::new(&Order::sample(), TOK_VISA));
    doc["meta"] = json!({ "padding": "x".repeat(1024 * 1024 + 16) });
    let (big, signature) = sim.encode(&doc);
    assert!(big.len() > 1024 * 1024);
    let resp = sim
        .post_raw(Action::Authorize, big, Some(signature), JSON_API)
        .await;
    assert_eq!(resp.status, 413, "{resp}");

    // Unknown gateway: 404.
    let nowhere = simulator(&gw, "no-such-gateway");
    let (resp, _) = nowhere.authorize(&Order::sample(), TOK_VISA).await;
    assert_eq!(resp.status, 404, "{resp}");
    assert_eq!(resp.error_code(), Some("unknown_gateway"), "{resp}");

    // Unsupported operation: 501 (the echo plugin only authorizes).
    let echo = simulator(&gw, "echo");
    let (resp, echo_auth) = echo.authorize(&Order::sample(), TOK_VISA).await;
    assert_eq!(resp.status, 200, "{resp}");
    let echo_auth = echo_auth.expect("echo authorization");
    let (resp, _) = echo.capture(&echo_auth, 1_000).await;
    assert_eq!(resp.status, 501, "{resp}");
    assert_eq!(resp.error_code(), Some("unsupported_operation"), "{resp}");
    let (resp, _) = echo.void(&echo_auth).await;
    assert_eq!(resp.status, 501, "{resp}");

    // PSP failure: 502.
    let (resp, _) = sim.authorize(&Order::sample(), TOK_FAIL).await;
    assert_eq!(resp.status, 502, "{resp}");
    assert_eq!(resp.body["success"], false, "{resp}");
    assert_eq!(resp.error_code(), Some("psp_unavailable"), "{resp}");

    // The gateway's hard deadline (300 ms) passes before the PSP answers: the outcome is
    // unknown, not a failure: 202 with an action id (the real outcome follows as a callback).
    let tight = simulator(&gw, "tight");
    let (resp, _) = tight.authorize(&Order::sample(), TOK_SLOW_TIMEOUT).await;
    assert_eq!(resp.status, 202, "{resp}");
    assert!(resp.is_pending() && resp.action_id().is_some(), "{resp}");
    assert_eq!(
        resp.body["data"]["metadata"]["outcome"], "unknown",
        "{resp}"
    );
    assert!(
        resp.elapsed < Duration::from_millis(1_400),
        "{:?}",
        resp.elapsed
    );

    // A card number instead of a PSP token: 422, and it reaches no plugin and no log.
    assert!(luhn_valid(CARD_NUMBER) && CARD_NUMBER.len() == 16);
    let authorize_calls = gw.plugin_calls("sandbox", "authorize").await;
    let (resp, _) = sim.authorize(&Order::sample(), CARD_NUMBER).await;
    assert_eq!(resp.status, 422, "{resp}");
    assert_eq!(resp.error_code(), Some("card_number_refused"), "{resp}");
    assert!(!resp.text().contains(CARD_NUMBER), "{resp}");
    assert_eq!(
        gw.plugin_calls("sandbox", "authorize").await,
        authorize_calls
    );

    // More than the balance: 422, and the plugin is not called.
    let auth = auth.expect("authorization");
    let capture_calls = gw.plugin_calls("sandbox", "capture").await;
    let (resp, _) = sim.capture(&auth, auth.amount_cents + 1).await;
    assert_eq!(resp.status, 422, "{resp}");
    assert_eq!(resp.error_code(), Some("amount_exceeds_balance"), "{resp}");
    assert_eq!(gw.plugin_calls("sandbox", "capture").await, capture_calls);

    // The card number is in no line (checked with the rest).
    assert_no_leaks(&gw, &[]);
}

// ---------------------------------------------------------------------------------------
// 2. Lifecycles
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn capture_and_refund_lifecycle_in_answers_and_store() {
    let receiver = Receiver::start(SHARED_SECRET).await;
    let (_ws, gw) = start_sandbox(&receiver, "");
    let sim = simulator(&gw, "sandbox");
    let order = Order::sample();
    let total = order.total_amount_with_taxes_cents();

    let (resp, auth) = sim.authorize(&order, TOK_VISA).await;
    assert_eq!(resp.status, 200, "{resp}");
    let auth = auth.expect("authorization");
    assert_eq!(auth.amount_cents, total);

    // Partial capture, then the rest of the balance.
    let first = 5_000;
    let (resp, capture1) = sim.capture(&auth, first).await;
    assert_eq!(resp.status, 200, "{resp}");
    assert_eq!(resp.amount_cents(), Some(first), "{resp}");
    let capture1 = capture1.expect("capture 1");
    let rest = sim
        .find_authorization(&auth.id)
        .unwrap()
        .capture_balance_cents;
    assert_eq!(rest, total - first);
    let (resp, capture2) = sim.capture(&auth, rest).await;
    assert_eq!(resp.status, 200, "{resp}");
    assert_eq!(resp.amount_cents(), Some(rest), "{resp}");
    let capture2 = capture2.expect("capture 2");
    assert_ne!(capture1.token, capture2.token);
    assert_eq!(
        sim.find_authorization(&auth.id)
            .unwrap()
            .capture_balance_cents,
        0
    );
    // Nothing is left to capture.
    let (resp, _) = sim.capture(&auth, 100).await;
    assert_eq!(resp.status, 422, "{resp}");
    assert_eq!(resp.error_code(), Some("amount_exceeds_balance"), "{resp}");

    // Refund part of the second capture, then the rest, then one cent too many.
    let part = 2_000;
    let (resp, refund1) = sim.refund(&capture2, part).await;
    assert_eq!(resp.status, 200, "{resp}");
    assert_eq!(resp.amount_cents(), Some(part), "{resp}");
    let refund1 = refund1.expect("refund 1");
    let (resp, refund2) = sim.refund(&capture2, rest - part).await;
    assert_eq!(resp.status, 200, "{resp}");
    assert_eq!(resp.amount_cents(), Some(rest - part), "{resp}");
    let refund2 = refund2.expect("refund 2");
    assert_eq!(
        sim.find_capture(&capture2.id).unwrap().refund_balance_cents,
        0
    );
    let (resp, _) = sim.refund(&capture2, 1).await;
    assert_eq!(resp.status, 422, "{resp}");
    assert_eq!(resp.error_code(), Some("amount_exceeds_balance"), "{resp}");

    // The store holds exactly what was approved, linked parent to child.
    let store = Store::open(&gw).await;
    let auths = store.for_resource(&auth.external_payment_id).await;
    assert_eq!(auths.len(), 1, "{auths:?}");
    let a = &auths[0];
    assert_eq!(
        (a.action.as_str(), a.status.as_str(), a.amount_cents),
        ("authorize", "approved", total),
        "{a:?}"
    );
    assert_eq!(a.currency, "EUR");
    assert_eq!(a.transaction_token, auth.token);
    assert_eq!(a.response_status, Some(200));

    let captures = store.for_resource(&auth.id).await;
    assert_eq!(captures.len(), 2, "{captures:?}");
    for (row, (amount, token)) in captures
        .iter()
        .zip([(first, &capture1.token), (rest, &capture2.token)])
    {
        assert_eq!(row.action, "capture", "{row:?}");
        assert_eq!(row.status, "approved", "{row:?}");
        assert_eq!(row.amount_cents, amount, "{row:?}");
        assert_eq!(&row.transaction_token, token, "{row:?}");
        assert_eq!(row.parent_id.as_deref(), Some(a.id.as_str()), "{row:?}");
    }

    let refunds = store.for_resource(&capture2.id).await;
    assert_eq!(refunds.len(), 2, "{refunds:?}");
    for (row, (amount, token)) in refunds
        .iter()
        .zip([(part, &refund1.token), (rest - part, &refund2.token)])
    {
        assert_eq!(row.action, "refund", "{row:?}");
        assert_eq!(row.status, "approved", "{row:?}");
        assert_eq!(row.amount_cents, amount, "{row:?}");
        assert_eq!(&row.transaction_token, token, "{row:?}");
        assert_eq!(
            row.parent_id.as_deref(),
            Some(captures[1].id.as_str()),
            "{row:?}"
        );
    }
    // The refused capture and refund left no row behind.
    assert!(store.for_resource(&capture1.id).await.is_empty());
    assert_eq!(store.with_action("capture").await.len(), 2);
    assert_eq!(store.with_action("refund").await.len(), 2);
    store.close().await;
    assert_no_leaks(&gw, &[]);
}

/// Three partial captures of one authorization, then a refund of the second: the sandbox
/// (the PSP here) is told each capture's sequence and whether it is the last, and the refund
/// reaches it against the second capture's token; the balances of the others are untouched.
#[tokio::test(flavor = "multi_thread")]
async fn three_partial_captures_then_a_refund_of_the_second() {
    let receiver = Receiver::start(SHARED_SECRET).await;
    let (_ws, gw) = start_sandbox(&receiver, "");
    let sim = simulator(&gw, "sandbox");
    let order = Order::sample();
    let total = order.total_amount_with_taxes_cents();
    let (resp, auth) = sim.authorize(&order, TOK_VISA).await;
    assert_eq!(resp.status, 200, "{resp}");
    let auth = auth.expect("authorization");

    let amounts = [total / 4, total / 4, total - 2 * (total / 4)];
    let mut captures = Vec::new();
    for (i, amount) in amounts.iter().enumerate() {
        let (resp, capture) = sim.capture(&auth, *amount).await;
        assert_eq!(resp.status, 200, "{resp}");
        let meta = &resp.body["data"]["metadata"];
        assert_eq!(meta["capture_sequence"], (i + 1).to_string(), "{resp}");
        assert_eq!(meta["final_capture"], (i == 2).to_string(), "{resp}");
        assert_eq!(meta["captured_transaction"], auth.token.as_str(), "{resp}");
        captures.push(capture.expect("capture"));
    }
    let tokens: std::collections::HashSet<_> = captures.iter().map(|c| &c.token).collect();
    assert_eq!(
        tokens.len(),
        3,
        "every capture has its own token: {captures:?}"
    );

    let (resp, refund) = sim.refund(&captures[1], 700).await;
    assert_eq!(resp.status, 200, "{resp}");
    assert_eq!(
        resp.body["data"]["metadata"]["refunded_transaction"],
        captures[1].token.as_str(),
        "the refund reached the PSP against the second capture: {resp}"
    );
    let refund = refund.expect("refund");
    let balance =
        |c: &psp_gateway_e2e::cl::Capture| sim.find_capture(&c.id).unwrap().refund_balance_cents;
    assert_eq!(balance(&captures[0]), amounts[0]);
    assert_eq!(balance(&captures[1]), amounts[1] - 700);
    assert_eq!(balance(&captures[2]), amounts[2]);
    // The gateway's own balance of the second capture holds too: one cent over is refused
    // without a PSP call, while the first capture can still be refunded in full.
    let refunds_made = gw.plugin_calls("sandbox", "refund").await;
    let (resp, _) = sim.refund(&captures[1], amounts[1] - 700 + 1).await;
    assert_eq!(resp.status, 422, "{resp}");
    assert_eq!(resp.error_code(), Some("amount_exceeds_balance"), "{resp}");
    assert_eq!(gw.plugin_calls("sandbox", "refund").await, refunds_made);
    let (resp, _) = sim.refund(&captures[0], amounts[0]).await;
    assert_eq!(resp.status, 200, "{resp}");

    // The store links the refund to the second capture's row.
    let store = Store::open(&gw).await;
    let rows = store.for_resource(&captures[1].id).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].transaction_token, refund.token, "{rows:?}");
    let second = store.for_resource(&auth.id).await;
    let second = second
        .iter()
        .find(|r| r.transaction_token == captures[1].token)
        .expect("second capture row");
    assert_eq!(rows[0].parent_id.as_deref(), Some(second.id.as_str()));
    store.close().await;
}

/// A PSP that names every capture by its payment's id (the sandbox's `tok_same_id`): the
/// host answers each capture a token of its own, so the refund of the second capture is
/// booked against the second capture, while the PSP is still called with its own id.
#[tokio::test(flavor = "multi_thread")]
async fn captures_under_the_payments_reused_id_get_tokens_of_their_own() {
    let receiver = Receiver::start(SHARED_SECRET).await;
    let (_ws, gw) = start_sandbox(&receiver, "");
    let sim = simulator(&gw, "sandbox");
    let order = Order::sample();
    let total = order.total_amount_with_taxes_cents();
    let (resp, auth) = sim.authorize(&order, "tok_same_id").await;
    assert_eq!(resp.status, 200, "{resp}");
    let auth = auth.expect("authorization");
    assert!(auth.token.starts_with("sbx_same_"), "{resp}");

    let (first, second) = (total / 2, total - total / 2);
    let (resp, c1) = sim.capture(&auth, first).await;
    assert_eq!(resp.status, 200, "{resp}");
    let (resp, c2) = sim.capture(&auth, second).await;
    assert_eq!(resp.status, 200, "{resp}");
    let (c1, c2) = (c1.expect("capture 1"), c2.expect("capture 2"));
    for c in [&c1, &c2] {
        assert!(c.token.starts_with(&format!("{}.", auth.token)), "{c:?}");
    }
    assert_ne!(c1.token, c2.token);

    let (resp, refund) = sim.refund(&c2, 300).await;
    assert_eq!(resp.status, 200, "{resp}");
    assert_eq!(
        resp.body["data"]["metadata"]["refunded_transaction"],
        auth.token.as_str(),
        "the PSP is called with its own id: {resp}"
    );
    let refund = refund.expect("refund");
    assert_eq!(
        sim.find_capture(&c1.id).unwrap().refund_balance_cents,
        first
    );
    assert_eq!(
        sim.find_capture(&c2.id).unwrap().refund_balance_cents,
        second - 300
    );
    let (resp, _) = sim.refund(&c2, second - 300 + 1).await;
    assert_eq!(resp.error_code(), Some("amount_exceeds_balance"), "{resp}");

    let store = Store::open(&gw).await;
    let captures = store.for_resource(&auth.id).await;
    let second_row = captures
        .iter()
        .find(|r| r.transaction_token == c2.token)
        .expect("second capture row");
    let refunds = store.for_resource(&c2.id).await;
    assert_eq!(refunds.len(), 1, "{refunds:?}");
    assert_eq!(refunds[0].transaction_token, refund.token);
    assert_eq!(
        refunds[0].parent_id.as_deref(),
        Some(second_row.id.as_str())
    );
    assert!(store.for_resource(&c1.id).await.is_empty());
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn void_lifecycle_and_saved_payment_source() {
    let receiver = Receiver::start(SHARED_SECRET).await;
    let (_ws, gw) = start_sandbox(&receiver, "");
    let sim = simulator(&gw, "sandbox");

    // Authorize, void, then a capture is refused.
    let order = Order::sample();
    let (resp, auth) = sim.authorize(&order, TOK_AMEX).await;
    assert_eq!(resp.status, 200, "{resp}");
    let auth = auth.expect("authorization");
    let (resp, void) = sim.void(&auth).await;
    assert_eq!(resp.status, 200, "{resp}");
    assert_eq!(resp.amount_cents(), Some(auth.amount_cents), "{resp}");
    let void = void.expect("void");
    let capture_calls = gw.plugin_calls("sandbox", "capture").await;
    let (resp, _) = sim.capture(&auth, 1_000).await;
    assert_eq!(resp.status, 422, "{resp}");
    assert_eq!(resp.error_code(), Some("amount_exceeds_balance"), "{resp}");
    assert_eq!(gw.plugin_calls("sandbox", "capture").await, capture_calls);

    // Save a payment source to the wallet, then pay with it.
    let payment = ExternalPayment::new(&Order::sample(), TOK_MASTERCARD);
    let (resp, saved) = sim.save_to_wallet(&payment).await;
    assert_eq!(resp.status, 200, "{resp}");
    assert_eq!(resp.body["success"], true, "{resp}");
    let saved = saved.expect("saved source");
    assert!(!saved.payment_source_token.is_empty(), "{resp}");
    assert_ne!(saved.payment_source_token, TOK_MASTERCARD);
    assert!(
        saved
            .customer_token
            .as_deref()
            .is_some_and(|c| !c.is_empty()),
        "{resp}"
    );
    let (resp, paid) = sim
        .authorize(&Order::sample(), &saved.payment_source_token)
        .await;
    assert_eq!(resp.status, 200, "{resp}");
    assert!(resp.is_success(), "{resp}");
    assert!(paid.is_some());

    // The store: the authorization, its void, no capture; the token action.
    let store = Store::open(&gw).await;
    let auths = store.for_resource(&auth.external_payment_id).await;
    assert_eq!(auths.len(), 1, "{auths:?}");
    assert_eq!(auths[0].status, "approved");
    let follow_ups = store.for_resource(&auth.id).await;
    assert_eq!(follow_ups.len(), 1, "{follow_ups:?}");
    let v = &follow_ups[0];
    assert_eq!(
        (v.action.as_str(), v.status.as_str(), v.amount_cents),
        ("void", "approved", auth.amount_cents),
        "{v:?}"
    );
    assert_eq!(v.parent_id.as_deref(), Some(auths[0].id.as_str()));
    assert_eq!(v.transaction_token, void.token);
    assert!(store.with_action("capture").await.is_empty());
    let tokens = store.for_resource(&payment.id).await;
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    assert_eq!(
        (tokens[0].action.as_str(), tokens[0].status.as_str()),
        ("token", "approved")
    );
    store.close().await;
    assert_no_leaks(&gw, &[&saved.payment_source_token]);
}

// ---------------------------------------------------------------------------------------
// 3. Idempotency
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn duplicates_reach_the_psp_once() {
    let receiver = Receiver::start(SHARED_SECRET).await;
    let (_ws, gw) = start_sandbox(&receiver, "");
    let sim = Arc::new(simulator(&gw, "sandbox"));
    // Warm the plugin up so the burst below races on the store, not on compilation.
    let (resp, _) = sim.authorize(&Order::sample(), TOK_VISA).await;
    assert_eq!(resp.status, 200, "{resp}");

    // 50 identical authorizes at once: one plugin call, 50 identical answers.
    let payment = ExternalPayment::new(&Order::sample(), TOK_VISA);
    let (body, signature) = sim.encode(&authorize_body(&payment));
    let before = gw.plugin_calls("sandbox", "authorize").await;
    let mut burst = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let (sim, body, signature) = (sim.clone(), body.clone(), signature.clone());
        burst.spawn(async move {
            sim.post_raw(Action::Authorize, body, Some(signature), JSON_API)
                .await
        });
    }
    let answers: Vec<_> = burst.join_all().await;
    assert_eq!(answers.len(), 50);
    for resp in &answers {
        assert_eq!(resp.status, 200, "{resp}");
        assert_eq!(resp.raw, answers[0].raw, "answers differ");
    }
    assert_eq!(gw.plugin_calls("sandbox", "authorize").await, before + 1);
    // A later repeat gets the stored answer, byte for byte.
    let again = sim
        .post_raw(
            Action::Authorize,
            body.clone(),
            Some(signature.clone()),
            JSON_API,
        )
        .await;
    assert_eq!(again.status, 200, "{again}");
    assert_eq!(again.raw, answers[0].raw);
    assert_eq!(gw.plugin_calls("sandbox", "authorize").await, before + 1);

    // A capture sent twice with the same body (same balance) is captured once...
    let (resp, auth) = sim.authorize(&Order::sample(), TOK_VISA).await;
    assert_eq!(resp.status, 200, "{resp}");
    let auth = auth.expect("authorization");
    let (body, signature) = sim.encode(&capture_body(&auth, 4_000));
    let captures_before = gw.plugin_calls("sandbox", "capture").await;
    let first = sim
        .post_raw(
            Action::Capture,
            body.clone(),
            Some(signature.clone()),
            JSON_API,
        )
        .await;
    let second = sim
        .post_raw(Action::Capture, body, Some(signature), JSON_API)
        .await;
    assert_eq!(first.status, 200, "{first}");
    assert_eq!(second.raw, first.raw);
    assert_eq!(
        gw.plugin_calls("sandbox", "capture").await,
        captures_before + 1
    );
    // ...while the next partial capture of the same amount (the balance moved) is new.
    let mut moved = auth.clone();
    moved.capture_balance_cents -= 4_000;
    let next = sim
        .send(Action::Capture, &capture_body(&moved, 4_000))
        .await;
    assert_eq!(next.status, 200, "{next}");
    assert_ne!(next.transaction_token(), first.transaction_token());
    assert_eq!(
        gw.plugin_calls("sandbox", "capture").await,
        captures_before + 2
    );

    let store = Store::open(&gw).await;
    let rows = store.for_resource(&payment.id).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        rows[0].response_body.as_deref().map(str::as_bytes),
        Some(&answers[0].raw[..])
    );
    let captures = store.for_resource(&auth.id).await;
    assert_eq!(captures.len(), 2, "{captures:?}");
    assert!(captures.iter().all(|c| c.amount_cents == 4_000));
    store.close().await;
    assert_no_leaks(&gw, &[]);
}

// ---------------------------------------------------------------------------------------
// 4. Asynchronous payments settled by PSP notifications
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn pending_payments_settle_through_signed_callbacks() {
    let receiver = Receiver::start(SHARED_SECRET).await;
    let (_ws, gw) = start_sandbox(&receiver, "");
    let sim = simulator(&gw, "sandbox");
    let store = Store::open(&gw).await;

    // Two pending authorizations.
    let (a, auth_a) = sim.authorize(&Order::sample(), TOK_PENDING).await;
    let (b, auth_b) = sim.authorize(&Order::sample(), TOK_PENDING).await;
    for resp in [&a, &b] {
        assert_eq!(resp.status, 202, "{resp}");
        assert!(resp.is_pending(), "{resp}");
    }
    let (auth_a, auth_b) = (auth_a.unwrap(), auth_b.unwrap());
    let (action_a, action_b) = (a.action_id().unwrap(), b.action_id().unwrap());
    assert_ne!(action_a, action_b);
    let (ref_a, ref_b) = (
        a.transaction_token().unwrap(),
        b.transaction_token().unwrap(),
    );
    assert_eq!(store.by_action_id(action_a).await.status, "pending");

    // A notification with a bad or missing signature is refused and changes nothing.
    let bad = notify(
        &gw,
        "sandbox",
        ref_a,
        "succeeded",
        Some("not-the-webhook-secret"),
    )
    .await;
    assert_eq!(bad, 401);
    let unsigned = notify(&gw, "sandbox", ref_a, "succeeded", None).await;
    assert_eq!(unsigned, 401);
    assert_no_more_callbacks(&receiver, action_a, 0, Duration::from_millis(800)).await;
    assert_eq!(store.by_action_id(action_a).await.status, "pending");
    assert_eq!(callbacks_waiting(&gw).await, 0);

    // A failed outcome: a signed callback with success false and an error code.
    assert_eq!(
        notify(&gw, "sandbox", ref_a, "failed", Some(WEBHOOK_SECRET)).await,
        200
    );
    let cb = wait_callback(&receiver, &gw, action_a, Duration::from_secs(10)).await;
    assert!(cb.signature_valid, "{:?}", cb.signature);
    assert!(verify(
        SHARED_SECRET,
        &cb.raw,
        cb.signature.as_deref().unwrap()
    ));
    assert_eq!(cb.json["success"], false, "{}", cb.json);
    assert!(
        cb.json["data"]["error_code"]
            .as_str()
            .is_some_and(|c| !c.is_empty()),
        "{}",
        cb.json
    );
    assert_eq!(sim.apply_callback(&cb.json), Some(false));
    assert!(!sim.find_authorization(&auth_a.id).unwrap().succeeded);
    let row = store
        .wait_status(action_a, "declined", Duration::from_secs(5))
        .await;
    assert!(row.error_code.is_some(), "{row:?}");

    // A succeeded outcome: one signed callback with success true and the same action id.
    assert_eq!(
        notify(&gw, "sandbox", ref_b, "succeeded", Some(WEBHOOK_SECRET)).await,
        200
    );
    let cb = wait_callback(&receiver, &gw, action_b, Duration::from_secs(10)).await;
    assert!(cb.signature_valid, "{:?}", cb.signature);
    assert_eq!(cb.json["success"], true, "{}", cb.json);
    assert_eq!(action_id_of(&cb), Some(action_b));
    assert_eq!(sim.apply_callback(&cb.json), Some(true));
    assert!(sim.find_authorization(&auth_b.id).unwrap().succeeded);
    store
        .wait_status(action_b, "approved", Duration::from_secs(5))
        .await;

    // The same notification again (PSPs retry) settles nothing twice.
    assert_eq!(
        notify(&gw, "sandbox", ref_b, "succeeded", Some(WEBHOOK_SECRET)).await,
        200
    );
    assert_no_more_callbacks(&receiver, action_b, 1, Duration::from_millis(800)).await;
    assert_eq!(callbacks_for(&receiver, action_a).len(), 1);
    assert!(receiver.callbacks().iter().all(|c| c.signature_valid));
    wait_callbacks_waiting(&gw, 0, Duration::from_secs(5)).await;
    // The authorization, now approved, can be captured.
    let (resp, _) = sim.capture(&auth_b, 1_000).await;
    assert_eq!(resp.status, 200, "{resp}");
    store.close().await;
    assert_no_leaks(&gw, &[]);
}

// ---------------------------------------------------------------------------------------
// 5. The outbox survives a receiver outage and a SIGKILL
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn callbacks_survive_receiver_outage_and_host_kill() {
    const PENDING: usize = 4;
    let mut receiver = Receiver::start(SHARED_SECRET).await;
    let (_ws, mut gw) = start(
        &[("sandbox", "sandbox")],
        "[outbox]\nfirst_retry_ms = 200\nmax_retry_ms = 1000\n",
        &[gateway_toml(
            "sandbox",
            "sandbox",
            Some(&receiver.url()),
            "",
        )],
    );
    let sim = simulator(&gw, "sandbox");

    let mut pending = Vec::new();
    for _ in 0..PENDING {
        let (resp, _) = sim.authorize(&Order::sample(), TOK_PENDING).await;
        assert_eq!(resp.status, 202, "{resp}");
        pending.push((
            resp.action_id().unwrap().to_owned(),
            resp.transaction_token().unwrap().to_owned(),
        ));
    }

    // The receiver goes down; the PSP confirms every payment.
    receiver.stop().await;
    for (_, reference) in &pending {
        assert_eq!(
            notify(&gw, "sandbox", reference, "succeeded", Some(WEBHOOK_SECRET)).await,
            200
        );
    }
    assert_eq!(callbacks_waiting(&gw).await, PENDING as u64);
    // Let the outbox try (and fail) at least once for each before the kill: the store
    // records the failed attempts.
    let store = Store::open(&gw).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = store.outbox().await;
        if rows.len() == PENDING && rows.iter().all(|r| r.attempts >= 1) {
            break;
        }
        assert!(Instant::now() < deadline, "outbox never tried: {rows:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    store.close().await;
    gw.kill();

    // The rows are durable: queued, undelivered.
    let store = Store::open(&gw).await;
    let queued = store.outbox().await;
    assert_eq!(queued.len(), PENDING, "{queued:?}");
    assert!(
        queued
            .iter()
            .all(|r| r.delivered_at.is_none() && r.dead_at.is_none() && r.attempts >= 1),
        "{queued:?}"
    );
    let mut queued_ids: Vec<_> = queued.iter().filter_map(|r| r.action_id.clone()).collect();
    let mut pending_ids: Vec<_> = pending.iter().map(|(a, _)| a.clone()).collect();
    queued_ids.sort();
    pending_ids.sort();
    assert_eq!(queued_ids, pending_ids);
    for (action_id, _) in &pending {
        assert_eq!(store.by_action_id(action_id).await.status, "approved");
    }
    store.close().await;

    // Restart on the same config and store, still without a receiver, then bring it back.
    let gw2 = start_on(gw.config_path());
    assert_eq!(callbacks_waiting(&gw2).await, PENDING as u64);
    assert!(receiver.callbacks().is_empty());
    receiver.restart().await;
    let back = Instant::now();
    // A row claimed at the moment of the kill stays leased for twice the delivery timeout
    // plus a second (11 s by default): allow for it.
    for (action_id, _) in &pending {
        let cb = wait_callback(&receiver, &gw2, action_id, Duration::from_secs(30)).await;
        assert!(cb.signature_valid, "{:?}", cb.signature);
        assert_eq!(cb.json["success"], true, "{}", cb.json);
    }
    let delivered_in = back.elapsed();
    wait_callbacks_waiting(&gw2, 0, Duration::from_secs(10)).await;
    // No duplicate within a few retry periods.
    for (action_id, _) in &pending {
        assert_no_more_callbacks(&receiver, action_id, 1, Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let seen = receiver.callbacks();
    let mut per_action: HashMap<&str, usize> = HashMap::new();
    for c in &seen {
        *per_action
            .entry(action_id_of(c).unwrap_or("?"))
            .or_default() += 1;
    }
    assert_eq!(seen.len(), PENDING, "{per_action:?}");
    for (action_id, _) in &pending {
        assert_eq!(
            per_action.get(action_id.as_str()),
            Some(&1),
            "{per_action:?}"
        );
    }
    assert!(seen.iter().all(|c| c.signature_valid && c.answered == 200));
    let store = Store::open(&gw2).await;
    assert!(
        store
            .outbox()
            .await
            .iter()
            .all(|r| r.delivered_at.is_some()),
    );
    store.close().await;
    eprintln!(
        "outbox: {PENDING} callbacks delivered {delivered_in:?} after the receiver came back"
    );

    assert_no_leaks(&gw, &[]);
    assert_no_leaks(&gw2, &[]);
}

// ---------------------------------------------------------------------------------------
// 6. A slow PSP is answered 202 in time and reported later
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn slow_psp_is_deferred_then_called_back() {
    let receiver = Receiver::start(SHARED_SECRET).await;
    let (_ws, gw) = start_sandbox(&receiver, "async_after_ms = 200\ncall_timeout_ms = 8000");
    let sim = simulator(&gw, "sandbox");
    // Warm up (first instantiation), so the timing below measures the deferral only.
    let (resp, _) = sim.authorize(&Order::sample(), TOK_VISA).await;
    assert_eq!(resp.status, 200, "{resp}");

    let order = Order::sample();
    let started = Instant::now();
    let (resp, auth) = sim.authorize(&order, TOK_SLOW_DEFERRED).await;
    let answered_in = started.elapsed();
    assert_eq!(resp.status, 202, "{resp}");
    assert!(resp.is_pending(), "{resp}");
    assert!(
        answered_in < Duration::from_millis(400),
        "answered in {answered_in:?}"
    );
    assert_eq!(
        resp.amount_cents(),
        Some(order.total_amount_with_taxes_cents())
    );
    let action_id = resp.action_id().unwrap();
    let auth = auth.unwrap();

    let store = Store::open(&gw).await;
    // Still `processing`: the call is under way, owned by the gateway's task.
    assert_eq!(store.by_action_id(action_id).await.status, "processing");

    let cb = wait_callback(&receiver, &gw, action_id, Duration::from_secs(10)).await;
    let settled_in = started.elapsed();
    assert!(cb.signature_valid, "{:?}", cb.signature);
    assert_eq!(cb.json["success"], true, "{}", cb.json);
    assert!(
        settled_in >= Duration::from_millis(5_000),
        "called back before the PSP answered: {settled_in:?}"
    );
    assert_eq!(sim.apply_callback(&cb.json), Some(true));
    assert!(sim.find_authorization(&auth.id).unwrap().succeeded);
    let row = store
        .wait_status(action_id, "approved", Duration::from_secs(5))
        .await;
    // The token answered with the 202 stays the transaction's token.
    assert_eq!(
        Some(row.transaction_token.as_str()),
        resp.transaction_token()
    );
    assert_no_more_callbacks(&receiver, action_id, 1, Duration::from_millis(500)).await;
    // And the deferred authorization can be captured by that token.
    let (resp, _) = sim.capture(&auth, 1_000).await;
    assert_eq!(resp.status, 200, "{resp}");
    store.close().await;
    eprintln!("slow psp: 202 in {answered_in:?}, callback after {settled_in:?}");
    assert_no_leaks(&gw, &[]);
}

/// A PSP notification that never comes: the reconciler asks the plugin (`sync`), and the
/// final outcome reaches Commerce Layer through the outbox as a notification's would. A
/// payment the PSP still reports pending is left alone.
#[tokio::test(flavor = "multi_thread")]
async fn reconciler_settles_payments_whose_notification_never_came() {
    let receiver = Receiver::start(SHARED_SECRET).await;
    let (_ws, gw) = start(
        &[("sandbox", "sandbox")],
        "[reconciler]\nafter_ms = 300\ninterval_ms = 200",
        &[gateway_toml(
            "sandbox",
            "sandbox",
            Some(&receiver.url()),
            "",
        )],
    );
    let sim = simulator(&gw, "sandbox");
    let (lost, _) = sim.authorize(&Order::sample(), "tok_pending_sync").await;
    assert_eq!(lost.status, 202, "{lost}");
    let (waiting, _) = sim.authorize(&Order::sample(), "tok_pending").await;
    assert_eq!(waiting.status, 202, "{waiting}");
    let lost_id = lost.action_id().unwrap().to_owned();
    let waiting_id = waiting.action_id().unwrap().to_owned();

    let cb = wait_callback(&receiver, &gw, &lost_id, Duration::from_secs(10)).await;
    assert!(cb.signature_valid, "{:?}", cb.signature);
    assert_eq!(cb.json["success"], true, "{}", cb.json);
    let store = Store::open(&gw).await;
    assert_eq!(store.by_action_id(&lost_id).await.status, "approved");

    // Several reconcile rounds later the other one is still pending, and nothing was sent.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(gw.plugin_calls("sandbox", "sync").await >= 2);
    assert!(callbacks_for(&receiver, &waiting_id).is_empty());
    assert_eq!(store.by_action_id(&waiting_id).await.status, "pending");
    assert_eq!(callbacks_for(&receiver, &lost_id).len(), 1);
    store.close().await;
    assert_no_leaks(&gw, &[]);
}
