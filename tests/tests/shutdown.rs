//! Stopping and store faults, end to end: the real binary and the sandbox `.wasm` plugin.
//!
//! - SIGTERM while deferred (202) calls run: they finish within `shutdown_grace_ms`, their
//!   outcomes are written and their callbacks sent before the process exits.
//! - SIGTERM with a grace too short for the calls: the process exits on time and the next
//!   start resolves what was cut off, with one signed callback carrying the real outcome.
//! - The store on a small tmpfs that fills up: no 200 without a durable row, `/readyz`
//!   says so, and once space returns the same process takes payments again.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use psp_gateway_e2e::cl::{ClSimulator, ExternalPayment, Order};
use psp_gateway_e2e::receiver::Receiver;
use psp_gateway_e2e::{Gateway, Workspace};
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

const SHARED_SECRET: &str = "5b8e2d4f6a1c3e5a7c9e1b3d5f7a9c2e";

fn env() -> [(&'static str, &'static str); 2] {
    [
        ("CL_SHARED_SECRET", SHARED_SECRET),
        ("SANDBOX_WEBHOOK_SECRET", "sbx_whsec_shutdown_8c1e"),
    ]
}

/// The sandbox gateway's config, calling back `receiver`.
fn config(
    ws: &Workspace,
    server: &str,
    store_url: &str,
    top: &str,
    receiver: &Receiver,
) -> PathBuf {
    ws.install("sandbox", "sandbox");
    ws.write_config_with(
        server,
        store_url,
        &format!(
            "[plugins]\ndir = \"plugins\"\n{top}\n[[gateways]]\nid = \"sandbox\"\nplugin = \"sandbox\"\n\
             shared_secret = \"${{CL_SHARED_SECRET}}\"\nwebhook_endpoint_url = \"{}\"\n\
             async_after_ms = 200\ncall_timeout_ms = 20000\n\
             [gateways.settings]\nwebhook_secret = \"${{SANDBOX_WEBHOOK_SECRET}}\"\n",
            receiver.url()
        ),
    )
}

fn simulator(gw: &Gateway) -> ClSimulator {
    ClSimulator::new(&gw.url(""), "sandbox", SHARED_SECRET)
}

/// `(status, transaction_token)` of each transaction of one CL resource.
async fn rows(db: &Path, resource_id: &str) -> Vec<(String, String)> {
    let options = SqliteConnectOptions::new().filename(db).read_only(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .expect("open the store read-only");
    let rows = sqlx::query(
        "SELECT status, transaction_token FROM transactions WHERE resource_id = ? ORDER BY created_at",
    )
    .bind(resource_id)
    .fetch_all(&pool)
    .await
    .expect("read transactions")
    .iter()
    .map(|r| (r.get("status"), r.get("transaction_token")))
    .collect();
    pool.close().await;
    rows
}

/// Starts three authorizations the sandbox takes `ms` to answer: each is answered 202 (the
/// gateway's `async_after_ms`) and goes on in the background. Returns (payment, action id).
async fn deferred_calls(sim: &ClSimulator, ms: u64) -> Vec<(ExternalPayment, String)> {
    let mut started = Vec::new();
    for _ in 0..3 {
        let payment = ExternalPayment::new(&Order::sample(), &format!("tok_slow_{ms}"));
        let (resp, _) = sim.authorize_payment(&payment).await;
        assert_eq!(resp.status, 202, "{resp}");
        started.push((payment, resp.action_id().expect("action id").to_owned()));
    }
    started
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_deferred_calls_and_sends_their_callbacks_before_exit() {
    let receiver = Receiver::start(SHARED_SECRET).await;
    let ws = Workspace::new();
    let path = config(
        &ws,
        "shutdown_grace_ms = 20000",
        "sqlite://gateway.db",
        "",
        &receiver,
    );
    let mut gw = Gateway::start(&path, &env());
    let sim = simulator(&gw);
    let ready = reqwest::get(gw.url("/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);
    let calls = deferred_calls(&sim, 3_000).await;
    assert!(receiver.callbacks().is_empty());

    let (status, took) = gw.terminate(Duration::from_secs(30));
    let status = status.unwrap_or_else(|| panic!("still running; logs:\n{}", gw.dump_logs()));
    assert!(status.success(), "{status:?}\n{}", gw.dump_logs());
    // It waited for the calls (about 3 s from their start), not for the whole grace.
    assert!(
        took >= Duration::from_millis(1_500) && took < Duration::from_secs(18),
        "exited after {took:?}"
    );
    assert!(
        gw.logs()
            .iter()
            .any(|l| l["message"] == "stopped: everything started was finished"),
        "{}",
        gw.dump_logs()
    );
    let db = gw.dir.join("gateway.db");
    for (payment, action_id) in &calls {
        let stored = rows(&db, &payment.id).await;
        assert_eq!(stored.len(), 1, "{stored:?}");
        assert_eq!(stored[0].0, "approved", "{stored:?}");
        let got: Vec<_> = receiver
            .callbacks()
            .into_iter()
            .filter(|c| c.json["data"]["action_id"].as_str() == Some(action_id))
            .collect();
        assert_eq!(got.len(), 1, "one callback for {action_id} before exit");
        assert!(got[0].signature_valid);
        assert_eq!(got[0].json["success"], true, "{}", got[0].json);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_past_the_grace_leaves_calls_for_the_next_start_to_resolve() {
    let receiver = Receiver::start(SHARED_SECRET).await;
    let ws = Workspace::new();
    let path = config(
        &ws,
        "shutdown_grace_ms = 300",
        "sqlite://gateway.db",
        "[reconciler]\nfirst_retry_ms = 500\ninterval_ms = 500",
        &receiver,
    );
    let mut gw = Gateway::start(&path, &env());
    let calls = deferred_calls(&simulator(&gw), 4_000).await;

    let (status, took) = gw.terminate(Duration::from_secs(10));
    assert!(status.is_some(), "still running; logs:\n{}", gw.dump_logs());
    assert!(took < Duration::from_secs(3), "exited after {took:?}");
    let db = gw.dir.join("gateway.db");
    for (payment, _) in &calls {
        assert_eq!(rows(&db, &payment.id).await[0].0, "processing");
    }
    assert!(receiver.callbacks().is_empty(), "no outcome was known");

    // The next start: the cut-off calls are unknown, re-sent under their keys, and their
    // real outcomes called back, once each.
    let gw = Gateway::start(&path, &env());
    for (payment, action_id) in &calls {
        let cb = receiver
            .wait_for(
                |c| c.json["data"]["action_id"].as_str() == Some(action_id),
                Duration::from_secs(30),
            )
            .await
            .unwrap_or_else(|| panic!("no callback for {action_id}; logs:\n{}", gw.dump_logs()));
        assert!(cb.signature_valid);
        assert_eq!(cb.json["success"], true, "{}", cb.json);
        assert_eq!(rows(&db, &payment.id).await[0].0, "approved");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.callbacks().len(), calls.len(), "one callback each");
}

/// A tmpfs of `size` mounted on `dir` for one test, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test needs to mount a tmpfs (root, or CAP_SYS_ADMIN): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir.to_owned())
    }

    /// Writes a file until the filesystem is full; returns its path.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.0.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 16 * 1024];
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    assert_eq!(e.raw_os_error(), Some(28), "ENOSPC expected: {e}");
                    break;
                }
            }
        }
        // Also the last partial blocks.
        while f.write(&[0u8; 512]).is_ok_and(|n| n > 0) {}
        let _ = f.sync_all();
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

async fn readyz(gw: &Gateway) -> (u16, serde_json::Value) {
    let resp = reqwest::get(gw.url("/readyz")).await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_answers_503_never_200_without_a_row_and_recovers_without_restart() {
    let receiver = Receiver::start(SHARED_SECRET).await;
    let ws = Workspace::new();
    let fs = Tmpfs::mount(&ws.root.path().join("db"), "3m");
    let path = config(&ws, "", "sqlite://db/gateway.db", "", &receiver);
    let mut gw = Gateway::start(&path, &env());
    let pid = gw.pid();
    let sim = simulator(&gw);
    let first = ExternalPayment::new(&Order::sample(), "tok_visa");
    assert_eq!(sim.authorize_payment(&first).await.0.status, 200);
    assert_eq!(readyz(&gw).await.0, 200);

    let filler = fs.fill();
    let payments: Vec<_> = (0..20)
        .map(|_| ExternalPayment::new(&Order::sample(), "tok_visa"))
        .collect();
    let mut answered = Vec::new();
    let mut refused = 0;
    for p in &payments {
        let (resp, _) = sim.authorize_payment(p).await;
        match resp.status {
            200 => answered.push((p.id.clone(), resp.transaction_token().unwrap().to_owned())),
            503 => {
                assert_eq!(resp.error_code(), Some("store_unavailable"), "{resp}");
                refused += 1;
            }
            other => panic!("{other}: {resp}"),
        }
    }
    assert!(
        refused > 0,
        "the full disk never refused a write; logs:\n{}",
        gw.dump_logs()
    );
    let (status, body) = readyz(&gw).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["store"]["writes_failing"], true, "{body}");
    // Alive all the same: the store is not dead, it is full.
    assert_eq!(
        reqwest::get(gw.url("/healthz")).await.unwrap().status(),
        200
    );

    // Space returns: the same process takes every payment (retries of the refused ones
    // included) without a restart.
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    for p in &payments {
        loop {
            let (resp, _) = sim.authorize_payment(p).await;
            if resp.status == 200 {
                let token = resp.transaction_token().unwrap().to_owned();
                if let Some((_, before)) = answered.iter().find(|(id, _)| *id == p.id) {
                    assert_eq!(*before, token, "a retry replays the recorded answer");
                } else {
                    answered.push((p.id.clone(), token));
                }
                break;
            }
            assert!(Instant::now() < deadline, "still refused: {resp}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    assert_eq!(readyz(&gw).await.0, 200);
    assert_eq!(gw.pid(), pid);

    // Every 200 has its durable row: what a SIGKILL leaves on disk says so.
    gw.kill();
    let db = ws.root.path().join("db/gateway.db");
    for (id, token) in &answered {
        let stored = rows(&db, id).await;
        assert_eq!(stored.len(), 1, "{stored:?}");
        assert_eq!(stored[0], ("approved".to_owned(), token.clone()));
    }
    assert_eq!(answered.len(), payments.len());
}
