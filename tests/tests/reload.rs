//! Hot reload under load, and restarts that reuse the compiled-plugin cache.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use psp_gateway_e2e::{Gateway, Workspace, deploy, plugin_wasm};
use serde_json::{Value, json};

const ADMIN: &str = "admin-token-for-tests";

fn config(ws: &Workspace) -> std::path::PathBuf {
    ws.write_config(&format!(
        r#"
[plugins]
dir = "plugins"
[admin]
token = "{ADMIN}"
[[gateways]]
id = "echo"
plugin = "echo"
"#
    ))
}

/// The version that answered, or the error kind.
async fn call(client: &reqwest::Client, gw_url: &str, key: u64) -> Result<String, String> {
    let resp = client
        .post(format!("{gw_url}/admin/gateways/echo/call/authorize"))
        .bearer_auth(ADMIN)
        .json(&json!({"idempotency_key": format!("k{key}"), "amount_cents": 100, "payment_source_token": "tok"}))
        .send()
        .await
        .map_err(|e| format!("transport: {e}"))?;
    let body: Value = resp.json().await.map_err(|e| format!("body: {e}"))?;
    match body["metadata"]["version"].as_str() {
        Some(v) if body["result"] == "approved" => Ok(v.to_owned()),
        _ => Err(body["kind"].as_str().unwrap_or("unexpected").to_owned()),
    }
}

struct Observation {
    at: Instant,
    result: Result<String, String>,
}

/// Waits until a call answers with `version`; returns how long after `since` that was.
async fn await_version(
    client: &reqwest::Client,
    url: &str,
    version: &str,
    since: Instant,
) -> Duration {
    let mut key = 1_000_000;
    loop {
        key += 1;
        if call(client, url, key).await.as_deref() == Ok(version) {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < Duration::from_secs(5),
            "{version} never served"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hot_reload_under_load() {
    let ws = Workspace::new();
    let v1 = std::fs::read(plugin_wasm("echo_v1")).unwrap();
    let v2 = std::fs::read(plugin_wasm("echo_v2")).unwrap();
    deploy(&ws.plugins(), "echo", &v1);
    let gw = Gateway::start(&config(&ws), &[]);
    let url = gw.url("");
    let client = reqwest::Client::new();
    assert_eq!(call(&client, &url, 0).await.as_deref(), Ok("1.0.0"));

    // Two clients call without pause for the whole test.
    let observations = Arc::new(Mutex::new(Vec::<Observation>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..2u64)
        .map(|c| {
            let (url, obs, stop) = (url.clone(), observations.clone(), stop.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut key = c * 1_000_000_000;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    key += 1;
                    let result = call(&client, &url, key).await;
                    obs.lock().unwrap().push(Observation {
                        at: Instant::now(),
                        result,
                    });
                }
            })
        })
        .collect();

    // 20 replacements, alternating versions; each must serve within 1 s of its write.
    let mut worst = Duration::ZERO;
    for i in 0..20 {
        let (bytes, version) = if i % 2 == 0 {
            (&v2, "2.0.0")
        } else {
            (&v1, "1.0.0")
        };
        let written = Instant::now();
        deploy(&ws.plugins(), "echo", bytes);
        let seen = await_version(&client, &url, version, written).await;
        assert!(
            seen < Duration::from_secs(1),
            "replacement {i}: {version} after {seen:?}"
        );
        worst = worst.max(seen);
    }
    let active = "1.0.0"; // the 20th write was v1

    // A truncated file never becomes active; the error is visible.
    std::fs::write(ws.plugins().join("echo.wasm"), &v2[..v2.len() / 2]).unwrap();
    let rejected = gw.wait_for_log(Duration::from_secs(3), |l| {
        l["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("plugin file rejected")
    });
    assert!(
        rejected.is_some(),
        "truncated file not reported:\n{}",
        gw.dump_logs()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(call(&client, &url, 7).await.as_deref(), Ok(active));
    let view: Value = client
        .get(format!("{url}/admin/plugins"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(view["plugins"][0]["loaded"]["version"], active, "{view}");
    assert!(
        view["plugins"][0]["last_error"]["message"].is_string(),
        "{view}"
    );

    // Removed: a clear "not loaded" error. Restored: served again.
    let removed_at = Instant::now();
    std::fs::remove_file(ws.plugins().join("echo.wasm")).unwrap();
    loop {
        if call(&client, &url, 8).await == Err("plugin_not_loaded".into()) {
            break;
        }
        assert!(
            removed_at.elapsed() < Duration::from_secs(1),
            "removal not seen within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let restored_at = Instant::now();
    deploy(&ws.plugins(), "echo", &v2);
    let seen = await_version(&client, &url, "2.0.0", restored_at).await;
    assert!(seen < Duration::from_secs(1), "restore seen after {seen:?}");
    let serving_again = Instant::now();
    tokio::time::sleep(Duration::from_millis(200)).await;

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let observations = observations.lock().unwrap();
    assert!(
        observations.len() > 100,
        "only {} calls made",
        observations.len()
    );
    for o in observations.iter() {
        if let Err(kind) = &o.result {
            let during_removal = o.at >= removed_at && o.at <= serving_again;
            assert!(
                during_removal && kind == "plugin_not_loaded",
                "call failed outside the removal window: {kind}"
            );
        }
    }
    let versions: std::collections::HashSet<_> = observations
        .iter()
        .filter_map(|o| o.result.clone().ok())
        .collect();
    assert!(versions.contains("1.0.0") && versions.contains("2.0.0"));
    eprintln!("worst reload latency over 20 replacements: {worst:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_reuses_compiled_plugins() {
    let ws = Workspace::new();
    ws.install("echo_v1", "echo");
    let config = config(&ws);
    let loaded_from = |gw: &Gateway| {
        gw.wait_for_log(Duration::from_secs(5), |l| l["message"] == "plugin loaded")
            .map(|l| l["source"].as_str().unwrap_or("").to_owned())
    };
    let mut first = Gateway::start(&config, &[]);
    assert_eq!(loaded_from(&first).as_deref(), Some("Compiled"));
    first.kill();

    let second = Gateway::start(&config, &[]);
    assert_eq!(
        loaded_from(&second).as_deref(),
        Some("Cache"),
        "{}",
        second.dump_logs()
    );
    let view: Value = reqwest::Client::new()
        .get(second.url("/admin/plugins"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(view["plugins"][0]["loaded"]["source"], "cache", "{view}");
    let client = reqwest::Client::new();
    assert_eq!(
        call(&client, &second.url(""), 1).await.as_deref(),
        Ok("1.0.0")
    );

    // A changed file is compiled, not taken from the cache.
    drop(second);
    ws.install("echo_v2", "echo");
    let third = Gateway::start(&config, &[]);
    assert_eq!(loaded_from(&third).as_deref(), Some("Compiled"));
}
