//! The outbox as a delivery state machine, end to end: the real binary, the sandbox plugin,
//! a real receiver. A refused callback is a dead letter after one try, shows on `/metrics`
//! and `/admin/callbacks`, and is delivered by a replay; `Retry-After` is honoured; queued
//! callbacks are signed when sent, so a secret rotated while they wait applies to them.
//!
//! Callbacks come from `tok_pending` authorizations settled by a signed sandbox
//! notification.

use std::time::{Duration, Instant};

use psp_gateway_e2e::cl::{ClSimulator, Order, verify};
use psp_gateway_e2e::receiver::{Callback, Receiver};
use psp_gateway_e2e::{Gateway, Workspace, hex_hmac};
use serde_json::{Value, json};

const OLD_SECRET: &str = "5e1f0c9a7b3d2e4f6a8c0b1d3e5f7a9c";
const NEW_SECRET: &str = "9c7a5f3e1d0b8c6a4f2e3d7b9a0c1f5e";
const WEBHOOK_SECRET: &str = "sbx_whsec_outbox_e2e_8a2c4e6f";
const ADMIN: &str = "admin-token-for-outbox-tests";

/// Retries every 200 ms .. 1 s: many retry periods fit in a short test.
const FAST_RETRIES: u64 = 1_000;

/// A workspace with the sandbox plugin and one gateway `sandbox` calling back `webhook_url`,
/// retrying from 200 ms up to `max_retry_ms`; the shared secret comes from
/// `CL_SHARED_SECRET`, so a restart can rotate it.
fn workspace(webhook_url: &str, max_retry_ms: u64) -> (Workspace, std::path::PathBuf) {
    let ws = Workspace::new();
    ws.install("sandbox", "sandbox");
    let config = ws.write_config(&format!(
        r#"
[plugins]
dir = "plugins"
[admin]
token = "{ADMIN}"
[outbox]
first_retry_ms = 200
max_retry_ms = {max_retry_ms}
delivery_timeout_ms = 1000
[[gateways]]
id = "sandbox"
plugin = "sandbox"
shared_secret = "${{CL_SHARED_SECRET}}"
webhook_endpoint_url = "{webhook_url}"
[gateways.settings]
webhook_secret = "{WEBHOOK_SECRET}"
"#
    ));
    (ws, config)
}

fn start(config: &std::path::Path, shared_secret: &str) -> Gateway {
    Gateway::start(config, &[("CL_SHARED_SECRET", shared_secret)])
}

/// Authorizes with `tok_pending` (202) and settles it with a signed PSP notification:
/// one callback is queued. Returns its action id.
async fn queue_callback(gw: &Gateway, shared_secret: &str) -> String {
    let sim = ClSimulator::new(&gw.url(""), "sandbox", shared_secret);
    let (resp, _) = sim.authorize(&Order::sample(), "tok_pending").await;
    assert_eq!(resp.status, 202, "{resp}");
    let action_id = resp.action_id().expect("action id").to_owned();
    let reference = resp.transaction_token().expect("token").to_owned();
    let body = serde_json::to_vec(&json!({"reference": reference, "outcome": "succeeded"}))
        .expect("notification");
    let status = reqwest::Client::new()
        .post(gw.url("/psp/sandbox/webhook"))
        .header("content-type", "application/json")
        .header("Sandbox-Signature", hex_hmac(WEBHOOK_SECRET, &body))
        .body(body)
        .send()
        .await
        .expect("POST notification")
        .status();
    assert_eq!(status, 200);
    action_id
}

fn for_action(receiver: &Receiver, action_id: &str) -> Vec<Callback> {
    receiver
        .callbacks()
        .into_iter()
        .filter(|c| c.json["data"]["action_id"] == action_id)
        .collect()
}

/// The `n`-th (from 1) callback for `action_id`, waiting up to `timeout`.
async fn nth_callback(
    receiver: &Receiver,
    gw: &Gateway,
    action_id: &str,
    n: usize,
    timeout: Duration,
) -> Callback {
    receiver
        .wait_for(
            |c| {
                c.json["data"]["action_id"] == action_id
                    && for_action(receiver, action_id).len() >= n
            },
            timeout,
        )
        .await
        .unwrap_or_else(|| {
            panic!(
                "callback #{n} for {action_id} not seen in {timeout:?} (got {}); logs:\n{}",
                for_action(receiver, action_id).len(),
                gw.dump_logs()
            )
        });
    for_action(receiver, action_id)
        .into_iter()
        .nth(n - 1)
        .expect("n-th callback")
}

async fn gauge(gw: &Gateway, name: &str) -> u64 {
    let text = gw.metrics().await;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

async fn wait_gauge(gw: &Gateway, name: &str, expected: u64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let now = gauge(gw, name).await;
        if now == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} stayed {now}, expected {expected}; logs:\n{}",
            gw.dump_logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn admin_get(gw: &Gateway, path: &str, token: Option<&str>) -> (u16, String) {
    let mut req = reqwest::Client::new().get(gw.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("admin GET");
    (resp.status().as_u16(), resp.text().await.expect("text"))
}

async fn replay(gw: &Gateway, id: &str) -> u16 {
    reqwest::Client::new()
        .post(gw.url(&format!("/admin/callbacks/{id}/replay")))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("POST replay")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_callback_is_a_dead_letter_after_one_try_and_replay_delivers_it() {
    let receiver = Receiver::start(OLD_SECRET).await;
    receiver.set_status(400);
    let (_ws, config) = workspace(&receiver.url(), FAST_RETRIES);
    let gw = start(&config, OLD_SECRET);

    let action_id = queue_callback(&gw, OLD_SECRET).await;
    let first = nth_callback(&receiver, &gw, &action_id, 1, Duration::from_secs(10)).await;
    assert!(first.signature_valid && first.answered == 400);
    wait_gauge(&gw, "psp_callbacks_dead", 1, Duration::from_secs(5)).await;
    // Still owed to the platform: a dead letter does not leave `waiting`.
    assert_eq!(gauge(&gw, "psp_callbacks_waiting").await, 1);
    // Exactly one try, over many retry periods (200 ms .. 1 s).
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(for_action(&receiver, &action_id).len(), 1);

    // Listed for the operator, behind the admin token, without any signature.
    let (status, _) = admin_get(&gw, "/admin/callbacks?state=dead", None).await;
    assert_eq!(status, 401);
    let (status, text) = admin_get(&gw, "/admin/callbacks?state=dead", Some(ADMIN)).await;
    assert_eq!(status, 200, "{text}");
    let listed: Value = serde_json::from_str(&text).expect("JSON");
    let dead = listed["callbacks"].as_array().expect("callbacks");
    assert_eq!(dead.len(), 1, "{text}");
    let row = &dead[0];
    assert_eq!(row["action_id"], action_id.as_str(), "{row}");
    assert_eq!(row["gateway"], "sandbox");
    assert_eq!(row["url"], receiver.url().as_str());
    assert_eq!(row["attempts"], 1);
    assert_eq!(row["state"], "dead");
    assert!(row["last_error"].as_str().unwrap().contains("400"), "{row}");
    assert!(
        row["created_at"].is_string() && row["dead_at"].is_string(),
        "{row}"
    );
    let signature = first.signature.as_deref().unwrap();
    assert!(!text.contains(signature), "{text}");
    assert!(!text.to_lowercase().contains("signature"), "{text}");
    let (_, waiting) = admin_get(&gw, "/admin/callbacks?state=waiting", Some(ADMIN)).await;
    assert_eq!(
        serde_json::from_str::<Value>(&waiting).unwrap()["callbacks"],
        json!([])
    );
    let (status, _) = admin_get(&gw, "/admin/callbacks?state=lost", Some(ADMIN)).await;
    assert_eq!(status, 400);

    // Replay: unknown id 404, then, the receiver fixed, delivered and signed.
    assert_eq!(replay(&gw, "987654").await, 404);
    receiver.set_status(200);
    let id = row["id"].to_string();
    assert_eq!(replay(&gw, &id).await, 200);
    let second = nth_callback(&receiver, &gw, &action_id, 2, Duration::from_secs(10)).await;
    assert!(second.signature_valid, "{:?}", second.signature);
    assert!(verify(
        OLD_SECRET,
        &second.raw,
        second.signature.as_deref().unwrap()
    ));
    assert_eq!(second.answered, 200);
    assert_eq!(second.raw, first.raw, "the same callback");
    wait_gauge(&gw, "psp_callbacks_waiting", 0, Duration::from_secs(5)).await;
    assert_eq!(gauge(&gw, "psp_callbacks_dead").await, 0);
    // Delivered now: not dead, so not replayable.
    assert_eq!(replay(&gw, &id).await, 409);
    let (_, delivered) = admin_get(&gw, "/admin/callbacks?state=delivered", Some(ADMIN)).await;
    let delivered: Value = serde_json::from_str(&delivered).unwrap();
    assert_eq!(delivered["callbacks"][0]["action_id"], action_id.as_str());
    gw.assert_no_leaks(&[OLD_SECRET, WEBHOOK_SECRET, ADMIN, signature]);
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_after_is_honoured() {
    let receiver = Receiver::start(OLD_SECRET).await;
    receiver.set_reply(429, &[("Retry-After", "2")]);
    // Retry-After is capped at max_retry_ms: leave room above the 2 s it asks for.
    let (_ws, config) = workspace(&receiver.url(), 10_000);
    let gw = start(&config, OLD_SECRET);

    let action_id = queue_callback(&gw, OLD_SECRET).await;
    let first = nth_callback(&receiver, &gw, &action_id, 1, Duration::from_secs(10)).await;
    assert_eq!(first.answered, 429);
    receiver.set_status(200);
    // Without Retry-After the next try would come after ~200 ms.
    let second = nth_callback(&receiver, &gw, &action_id, 2, Duration::from_secs(15)).await;
    let gap = second.received_at - first.received_at;
    assert!(gap >= Duration::from_secs(2), "retried after {gap:?}");
    assert_eq!(second.answered, 200);
    assert!(second.signature_valid);
    wait_gauge(&gw, "psp_callbacks_waiting", 0, Duration::from_secs(5)).await;
    assert_eq!(gauge(&gw, "psp_callbacks_dead").await, 0);
    eprintln!("429 with Retry-After: 2 retried after {gap:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn callbacks_queued_before_a_secret_rotation_are_signed_with_the_new_secret() {
    const QUEUED: usize = 3;
    let mut receiver = Receiver::start(OLD_SECRET).await;
    let (_ws, config) = workspace(&receiver.url(), FAST_RETRIES);
    let mut gw = start(&config, OLD_SECRET);
    receiver.stop().await;

    let mut actions = Vec::new();
    for _ in 0..QUEUED {
        actions.push(queue_callback(&gw, OLD_SECRET).await);
    }
    assert_eq!(gauge(&gw, "psp_callbacks_waiting").await, QUEUED as u64);
    // Let the outbox try (and fail) before the stop.
    gw.wait_for_log(Duration::from_secs(10), |l| {
        l["fields"]["message"]
            .as_str()
            .or(l["message"].as_str())
            .is_some_and(|m| m.starts_with("callback not delivered"))
    })
    .unwrap_or_else(|| panic!("no failed attempt; logs:\n{}", gw.dump_logs()));
    gw.kill();

    // Rotation: Commerce Layer and the gateway's config both move to the new secret.
    receiver.set_secret(NEW_SECRET);
    let gw2 = start(&config, NEW_SECRET);
    receiver.restart().await;
    for action_id in &actions {
        let cb = nth_callback(&receiver, &gw2, action_id, 1, Duration::from_secs(20)).await;
        let signature = cb.signature.as_deref().expect("signed");
        assert!(cb.signature_valid, "{action_id}: {signature}");
        assert!(verify(NEW_SECRET, &cb.raw, signature));
        assert!(!verify(OLD_SECRET, &cb.raw, signature));
        assert_eq!(cb.answered, 200);
        assert_eq!(cb.json["success"], true, "{}", cb.json);
    }
    wait_gauge(&gw2, "psp_callbacks_waiting", 0, Duration::from_secs(5)).await;
    assert_eq!(gauge(&gw2, "psp_callbacks_dead").await, 0);
    assert!(receiver.callbacks().iter().all(|c| c.signature_valid));
    gw.assert_no_leaks(&[OLD_SECRET, WEBHOOK_SECRET, ADMIN]);
    gw2.assert_no_leaks(&[OLD_SECRET, NEW_SECRET, WEBHOOK_SECRET, ADMIN]);
}
