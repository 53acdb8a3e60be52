//! The admin page at `/admin`, end to end: the real binary with the sandbox plugin, a real
//! receiver, and Debian's headless Chromium (driven by `tests/fakes/browser/admin_page.mjs`)
//! signing in, reading the plugins and a pending transaction, and replaying a dead letter
//! from its button; the replayed callback must reach the receiver. Plus what a browser
//! cannot show: the sign-in wall, headers, and no secret value on the page.

use std::process::Command;
use std::time::Duration;

use psp_gateway_e2e::cl::{ClSimulator, Order};
use psp_gateway_e2e::receiver::Receiver;
use psp_gateway_e2e::{Gateway, Workspace, hex_hmac, target_dir, workspace_root};
use serde_json::{Value, json};

const SECRET: &str = "3a7d9c1e5b2f4a6c8e0d1f3b5a7c9e2d";
const WEBHOOK_SECRET: &str = "sbx_whsec_admin_page_4f6a8c0e";
const ADMIN: &str = "admin-token-for-the-page-test";

fn start(webhook_url: &str) -> (Workspace, Gateway) {
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
max_retry_ms = 1000
delivery_timeout_ms = 1000
[[gateways]]
id = "sandbox"
plugin = "sandbox"
shared_secret = "{SECRET}"
webhook_endpoint_url = "{webhook_url}"
[gateways.settings]
webhook_secret = "{WEBHOOK_SECRET}"
"#
    ));
    let gw = Gateway::start(&config, &[]);
    (ws, gw)
}

/// A `tok_pending` authorization: 202, left pending. Returns (transaction token, action id).
async fn pending_authorization(gw: &Gateway) -> (String, String) {
    let sim = ClSimulator::new(&gw.url(""), "sandbox", SECRET);
    let (resp, _) = sim.authorize(&Order::sample(), "tok_pending").await;
    assert_eq!(resp.status, 202, "{resp}");
    (
        resp.transaction_token().expect("token").to_owned(),
        resp.action_id().expect("action id").to_owned(),
    )
}

/// Settles a pending authorization with a signed sandbox notification: a callback is queued.
async fn settle(gw: &Gateway, token: &str) {
    let body = serde_json::to_vec(&json!({"reference": token, "outcome": "succeeded"})).unwrap();
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
}

async fn get_json(gw: &Gateway, path: &str) -> Value {
    reqwest::Client::new()
        .get(gw.url(path))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON")
}

/// The id of the dead letter for `action_id`, waiting for the refusal to be recorded.
async fn dead_letter(gw: &Gateway, action_id: &str) -> i64 {
    for _ in 0..200 {
        let listed = get_json(gw, "/admin/callbacks?state=dead").await;
        let found = listed["callbacks"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["action_id"] == action_id);
        if let Some(c) = found {
            return c["id"].as_i64().expect("id");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no dead letter for {action_id}; logs:\n{}", gw.dump_logs());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_is_behind_the_token_and_never_shows_a_secret_value() {
    let (_ws, gw) = start("http://127.0.0.1:9/unused");
    let client = reqwest::Client::new();

    let wall = client.get(gw.url("/admin")).send().await.unwrap();
    assert_eq!(wall.status(), 401);
    let csp = wall.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    let text = wall.text().await.unwrap();
    assert!(
        text.contains("name=\"token\"") && !text.contains("sandbox"),
        "{text}"
    );

    let wrong = client
        .post(gw.url("/admin/login"))
        .form(&[("token", "nope")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get("set-cookie").is_none());

    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let signed = no_redirect
        .post(gw.url("/admin/login"))
        .form(&[("token", ADMIN)])
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), 303);
    let cookie = signed.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(
        !cookie.contains(ADMIN),
        "the cookie carries the token itself: {cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_owned();

    let page = client
        .get(gw.url("/admin"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("data-plugin=\"sandbox"), "{html}");
    assert!(html.contains("data-gateway=\"sandbox\"") && html.contains("webhook_secret"));
    assert!(!html.contains(WEBHOOK_SECRET) && !html.contains(SECRET) && !html.contains(ADMIN));

    // A form posted from another site is refused even with the cookie.
    let forged = no_redirect
        .post(gw.url("/admin/page/callbacks/1/replay"))
        .header("cookie", &session)
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    // A made-up cookie is not a session.
    let fake = client
        .get(gw.url("/admin"))
        .header("cookie", "psp_admin_session=00ff")
        .send()
        .await
        .unwrap();
    assert_eq!(fake.status(), 401);
}

/// Runs the Chromium script against the page; its checks are in the script.
async fn run_browser(
    gw: &Gateway,
    pending: &str,
    dead_id: i64,
    screenshot: &std::path::Path,
) -> std::process::Output {
    let mut cmd = Command::new("node");
    cmd.arg(workspace_root().join("tests/fakes/browser/admin_page.mjs"))
        .env("ADMIN_URL", gw.url(""))
        .env("ADMIN_TOKEN", ADMIN)
        .env("EXPECT_PLUGIN", "sandbox")
        .env("EXPECT_PENDING_TOKEN", pending)
        .env("DEAD_CALLBACK_ID", dead_id.to_string())
        .env("SECRET_SETTING_VALUE", WEBHOOK_SECRET)
        .env("SCREENSHOT", screenshot);
    tokio::task::spawn_blocking(move || cmd.output().expect("run node (scripts/setup-fakes)"))
        .await
        .expect("browser task")
}

#[tokio::test(flavor = "multi_thread")]
async fn chromium_lists_plugins_and_a_pending_payment_and_replays_a_dead_letter() {
    let receiver = Receiver::start(SECRET).await;
    receiver.set_status(400);
    let (_ws, gw) = start(&receiver.url());

    // One dead letter (refused once), and one authorization left pending.
    let (settled, dead_action) = pending_authorization(&gw).await;
    settle(&gw, &settled).await;
    let dead_id = dead_letter(&gw, &dead_action).await;
    let (pending, _) = pending_authorization(&gw).await;
    receiver.set_status(200);

    let screenshot = target_dir().join("screenshots").join("admin-page.png");
    std::fs::create_dir_all(screenshot.parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(&screenshot);
    let out = run_browser(&gw, &pending, dead_id, &screenshot).await;
    assert!(
        out.status.success(),
        "browser script failed:\n{}\n{}\nlogs:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        gw.dump_logs()
    );
    assert!(
        std::fs::metadata(&screenshot).unwrap().len() > 10_000,
        "screenshot missing or empty"
    );

    let delivered = receiver
        .wait_for(
            |c| c.json["data"]["action_id"] == dead_action.as_str() && c.answered == 200,
            Duration::from_secs(10),
        )
        .await
        .unwrap_or_else(|| panic!("replayed callback not delivered; logs:\n{}", gw.dump_logs()));
    assert!(delivered.signature_valid);
    let listed = get_json(&gw, "/admin/callbacks?state=dead").await;
    assert_eq!(listed["callbacks"].as_array().unwrap().len(), 0, "{listed}");
}
