//! Misbehaving plugins (trap, endless loop, memory bomb, a host outside the allow-list,
//! a call parked past its deadline) each end in a typed failure within the configured
//! deadline, while a healthy plugin on the same host keeps answering.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use psp_gateway_e2e::{Gateway, Workspace};
use serde_json::{Value, json};

const ADMIN: &str = "admin-token-for-tests";
const DEADLINE_MS: u64 = 500;

fn start() -> (Workspace, Gateway) {
    let ws = Workspace::new();
    ws.install("sandbox", "sandbox");
    ws.install("misbehave", "misbehave");
    let config = ws.write_config(&format!(
        r#"
[plugins]
dir = "plugins"
memory_limit_mb = 32
[admin]
token = "{ADMIN}"
[[gateways]]
id = "healthy"
plugin = "sandbox"
[gateways.settings]
webhook_secret = "sandbox-webhook-secret"
[[gateways]]
id = "bad"
plugin = "misbehave"
call_timeout_ms = {DEADLINE_MS}
allowed_hosts = ["api.allowed.example"]
"#
    ));
    let gw = Gateway::start(&config, &[]);
    (ws, gw)
}

async fn authorize(
    client: &reqwest::Client,
    gw: &Gateway,
    gateway: &str,
    token: &str,
) -> (u16, Value) {
    let resp = client
        .post(gw.url(&format!("/admin/gateways/{gateway}/call/authorize")))
        .bearer_auth(ADMIN)
        .json(&json!({"idempotency_key": format!("k-{token}"), "amount_cents": 100, "payment_source_token": token}))
        .send()
        .await
        .expect("request");
    (resp.status().as_u16(), resp.json().await.expect("json"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn misbehaving_plugins_fail_typed_and_alone() {
    let (_ws, gw) = start();
    let gw = Arc::new(gw);
    let client = reqwest::Client::new();
    let (status, ok) = authorize(&client, &gw, "bad", "ok").await;
    assert_eq!(
        (status, ok["result"].as_str()),
        (200, Some("approved")),
        "{ok}"
    );

    // A healthy gateway is called without pause during the whole test.
    let stop = Arc::new(AtomicBool::new(false));
    let healthy_ok = Arc::new(AtomicUsize::new(0));
    let healthy_failed = Arc::new(AtomicUsize::new(0));
    let slowest = Arc::new(std::sync::Mutex::new(Duration::ZERO));
    let background: Vec<_> = (0..2)
        .map(|_| {
            let (gw, stop, ok, failed, slowest) = (
                gw.clone(),
                stop.clone(),
                healthy_ok.clone(),
                healthy_failed.clone(),
                slowest.clone(),
            );
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let (status, r) = authorize(&client, &gw, "healthy", "tok_visa").await;
                    let took = t.elapsed();
                    let mut s = slowest.lock().unwrap();
                    *s = (*s).max(took);
                    if status == 200 && r["result"] == "approved" {
                        ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();

    // (token, expected HTTP status, expected kind)
    let cases = [
        ("trap", 502, "trap"),
        ("loop", 504, "deadline"),
        ("memory", 502, "out_of_memory"),
        ("sleep_5000", 504, "deadline"),
        ("forbidden_host", 200, "misconfigured"),
    ];
    let limit = Duration::from_millis(DEADLINE_MS) + Duration::from_millis(400);
    for (token, want_status, want_kind) in cases {
        let started = Instant::now();
        let (status, body) = authorize(&client, &gw, "bad", token).await;
        let took = started.elapsed();
        assert_eq!(status, want_status, "{token}: {body}");
        assert_eq!(body["kind"], want_kind, "{token}: {body}");
        eprintln!("{token}: {status} {} in {took:?}", body["kind"]);
        assert!(took < limit, "{token} took {took:?}");
        if token == "forbidden_host" {
            assert_eq!(body["result"], "failure");
            assert!(
                body["message"].as_str().unwrap().contains("allowed_hosts"),
                "{body}"
            );
        }
        // The misbehaving plugin still serves its good calls afterwards.
        let (_, ok) = authorize(&client, &gw, "bad", "ok").await;
        assert_eq!(ok["result"], "approved", "after {token}: {ok}");
    }
    // Two runaway loops at once still leave the healthy gateway answering.
    let (a, b) = tokio::join!(
        authorize(&client, &gw, "bad", "loop"),
        authorize(&client, &gw, "bad", "loop")
    );
    assert_eq!(
        (a.1["kind"].as_str(), b.1["kind"].as_str()),
        (Some("deadline"), Some("deadline"))
    );

    stop.store(true, Ordering::Relaxed);
    for t in background {
        t.await.unwrap();
    }
    let ok = healthy_ok.load(Ordering::Relaxed);
    assert_eq!(
        healthy_failed.load(Ordering::Relaxed),
        0,
        "healthy calls failed"
    );
    assert!(ok >= 20, "only {ok} healthy calls went through");
    let slowest = *slowest.lock().unwrap();
    eprintln!("healthy calls: {ok}, slowest {slowest:?}");
    // Runaway guests yield to the scheduler every epoch tick: healthy calls wait a few
    // ticks at most (about 30 ms measured), not a runaway call's whole deadline.
    assert!(
        slowest < Duration::from_millis(200),
        "a healthy call took {slowest:?}"
    );
    // The refused host was logged without the request's headers or body.
    assert!(gw.logs().iter().any(|l| {
        l["message"]
            .as_str()
            .unwrap_or("")
            .contains("forbidden.example.com")
    }));
}

/// Every call gets an instance holding only the component's initial image: statics reset,
/// memory beyond it zero, even in a slot a memory bomb has just filled (the pooling
/// allocator recycles slots and keeps some of their memory resident).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_state_survives_between_calls() {
    let (_ws, gw) = start();
    let gw = Arc::new(gw);
    let client = reqwest::Client::new();
    for round in 0..3 {
        let (status, body) = authorize(&client, &gw, "bad", "memory").await;
        assert_eq!(
            (status, &body["kind"]),
            (502, &json!("out_of_memory")),
            "{body}"
        );
        for i in 0..10 {
            let (status, body) = authorize(&client, &gw, "bad", "remember").await;
            assert_eq!(
                (status, body["result"].as_str()),
                (200, Some("approved")),
                "round {round}, call {i}: {body}"
            );
        }
        let mut together = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let (client, gw) = (client.clone(), gw.clone());
            together.spawn(async move { authorize(&client, &gw, "bad", "remember").await });
        }
        while let Some(answer) = together.join_next().await {
            let (status, body) = answer.unwrap();
            assert_eq!(
                (status, body["result"].as_str()),
                (200, Some("approved")),
                "{body}"
            );
        }
    }
}
