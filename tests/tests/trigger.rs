//! The operator's client commands, end to end: `psp-gateway trigger` and `psp-gateway load`
//! (the real binary) against a real gateway process with the real sandbox `.wasm` plugin,
//! over real HTTP. The assertions read what the commands print, as an operator would.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};

use psp_gateway_e2e::{Gateway, Workspace, free_port, gateway_binary, hex_hmac};
use serde_json::{Value, json};

/// Commerce Layer's shared secret of the gateway.
const SHARED_SECRET: &str = "7d1e3a5c9b0f2e4d6a8c1b3e5f7a9d0c";
/// The sandbox plugin's `webhook_secret` setting.
const WEBHOOK_SECRET: &str = "sbx_whsec_trigger_2a4c6e8b0d1f";
/// The variable the commands read the secret from.
const SECRET_ENV: &str = "PSP_TRIGGER_TEST_SECRET";

/// A sandbox gateway `sandbox` whose callbacks (Commerce Layer and PGM) go to
/// `127.0.0.1:callback_port`, where `trigger --callback-port` listens.
fn start(callback_port: u16) -> (Workspace, Gateway) {
    let ws = Workspace::new();
    ws.install("sandbox", "sandbox");
    let config = ws.write_config(&format!(
        "[plugins]\ndir = \"plugins\"\n\n[[gateways]]\nid = \"sandbox\"\nplugin = \"sandbox\"\n\
         shared_secret = \"${{CL_SHARED_SECRET}}\"\n\
         webhook_endpoint_url = \"http://127.0.0.1:{callback_port}/callback\"\n\
         pgm_callback_url = \"http://127.0.0.1:{callback_port}/pgm\"\npgm_auth = \"none\"\n\
         [gateways.settings]\nwebhook_secret = \"${{SANDBOX_WEBHOOK_SECRET}}\"\n"
    ));
    let gw = Gateway::start(
        &config,
        &[
            ("CL_SHARED_SECRET", SHARED_SECRET),
            ("SANDBOX_WEBHOOK_SECRET", WEBHOOK_SECRET),
        ],
    );
    (ws, gw)
}

/// `psp-gateway <args>` with the secret in `SECRET_ENV`.
fn command(args: &[&str], secret: &str) -> Command {
    let mut cmd = Command::new(gateway_binary());
    cmd.args(args)
        .env(SECRET_ENV, secret)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// `trigger --url <gw> --gateway sandbox --secret-env VAR <args>`, run to the end.
fn trigger(gw: &Gateway, args: &[&str], secret: &str) -> Output {
    let url = gw.url("");
    let mut all = vec![
        "trigger",
        "--url",
        &url,
        "--gateway",
        "sandbox",
        "--secret-env",
        SECRET_ENV,
    ];
    all.extend(args);
    command(&all, secret).output().expect("run trigger")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The blocks `< ...` printed: the header line and the JSON below it (up to a blank line).
fn answers(stdout: &str) -> Vec<(String, Value)> {
    let lines: Vec<&str> = stdout.lines().collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(header) = line.strip_prefix("< ") else {
            continue;
        };
        let body: Vec<&str> = lines[i + 1..]
            .iter()
            .take_while(|l| !l.is_empty())
            .copied()
            .collect();
        let json = serde_json::from_str(&body.join("\n")).unwrap_or(Value::Null);
        found.push((header.to_owned(), json));
    }
    found
}

/// The request paths printed (`> POST /path`).
fn paths(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("> "))
        .map(|l| l.split("  (").next().unwrap_or(l).to_owned())
        .collect()
}

fn assert_no_panic(out: &Output) {
    let err = text(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(!text(&out.stdout).contains(SHARED_SECRET));
    assert!(!err.contains(SHARED_SECRET));
}

#[tokio::test(flavor = "multi_thread")]
async fn authorize_prints_the_approved_answer() {
    let (_ws, gw) = start(free_port());
    let out = trigger(&gw, &["authorize"], SHARED_SECRET);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert_eq!(paths(&stdout), ["POST /commercelayer/sandbox/authorize"]);
    let printed = answers(&stdout);
    assert_eq!(printed.len(), 1, "{stdout}");
    let (status, body) = &printed[0];
    assert_eq!(status, "200", "{stdout}");
    assert_eq!(body["success"], true, "{stdout}");
    let token = body["data"]["transaction_token"].as_str().unwrap_or("");
    assert!(token.starts_with("sbx_") && token.len() > 4, "{stdout}");
    // The sample order's total with taxes.
    assert_eq!(body["data"]["amount_cents"], 12_200, "{stdout}");

    let out = trigger(&gw, &["authorize", "--amount", "2500"], SHARED_SECRET);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert_eq!(
        answers(&stdout)[0].1["data"]["amount_cents"],
        2_500,
        "{stdout}"
    );
    assert_eq!(gw.plugin_calls("sandbox", "authorize").await, 2);
    assert_no_panic(&out);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pending_authorize_prints_the_202_then_the_signed_callback() {
    let port = free_port();
    let (_ws, gw) = start(port);
    let url = gw.url("");
    let port_arg = port.to_string();
    let mut child = command(
        &[
            "trigger",
            "--url",
            &url,
            "--gateway",
            "sandbox",
            "--secret-env",
            SECRET_ENV,
            "--card-token",
            "tok_pending",
            "--callback-port",
            &port_arg,
            "--wait",
            "20s",
            "authorize",
        ],
        SHARED_SECRET,
    )
    .spawn()
    .expect("run trigger");

    // Read up to the wait line: the 202 has been printed, the listener is up.
    let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
    let mut printed = String::new();
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).expect("read trigger output");
        assert!(n > 0, "trigger ended before waiting:\n{printed}");
        printed.push_str(&line);
        if line.starts_with("waiting up to") {
            break;
        }
    }
    let first = answers(&printed);
    let (status, body) = &first[0];
    assert_eq!(status, "202", "{printed}");
    let token = body["data"]["transaction_token"].as_str().expect("token");
    let action_id = body["data"]["action_id"].as_str().expect("action id");
    assert!(token.starts_with("sbx_pend_"), "{printed}");
    assert!(printed.contains(&format!("127.0.0.1:{port}")), "{printed}");

    // The PSP settles it: the gateway calls back the trigger's listener.
    let note = serde_json::to_vec(&json!({"reference": token, "outcome": "succeeded"})).unwrap();
    let status = reqwest::Client::new()
        .post(gw.url("/psp/sandbox/webhook"))
        .header("content-type", "application/json")
        .header("Sandbox-Signature", hex_hmac(WEBHOOK_SECRET, &note))
        .body(note)
        .send()
        .await
        .expect("notify")
        .status();
    assert_eq!(status, 200);

    let mut rest = String::new();
    std::io::Read::read_to_string(&mut reader, &mut rest).expect("read the rest");
    let exit = child.wait().expect("trigger exit");
    printed.push_str(&rest);
    assert!(exit.success(), "{printed}");
    let all = answers(&printed);
    let (header, callback) = all.last().expect("a callback block");
    assert_eq!(
        header, "callback POST /callback (signature valid)",
        "{printed}"
    );
    assert_eq!(callback["data"]["action_id"], action_id, "{printed}");
    assert_eq!(callback["success"], true, "{printed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn capture_void_and_refund_act_on_the_answered_transaction() {
    let (_ws, gw) = start(free_port());
    let out = trigger(&gw, &["capture"], SHARED_SECRET);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert_eq!(
        paths(&stdout),
        [
            "POST /commercelayer/sandbox/authorize",
            "POST /commercelayer/sandbox/capture"
        ]
    );
    let all = answers(&stdout);
    assert_eq!(all[1].0, "200", "{stdout}");
    let capture = all[1].1["data"]["transaction_token"].as_str().unwrap_or("");
    assert!(capture.starts_with("sbx_cap_"), "{stdout}");
    assert_eq!(all[1].1["data"]["amount_cents"], 12_200, "{stdout}");

    let out = trigger(&gw, &["refund", "--amount", "4000"], SHARED_SECRET);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert_eq!(paths(&stdout).len(), 3, "{stdout}");
    assert_eq!(paths(&stdout)[2], "POST /commercelayer/sandbox/refund");
    let all = answers(&stdout);
    assert!(all.iter().all(|(status, _)| status == "200"), "{stdout}");
    let refund = all[2].1["data"]["transaction_token"].as_str().unwrap_or("");
    assert!(refund.starts_with("sbx_ref_"), "{stdout}");
    assert_eq!(all[2].1["data"]["amount_cents"], 4_000, "{stdout}");

    let out = trigger(&gw, &["void"], SHARED_SECRET);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let all = answers(&stdout);
    let void = all[1].1["data"]["transaction_token"].as_str().unwrap_or("");
    assert!(void.starts_with("sbx_void_"), "{stdout}");
    assert_eq!(gw.plugin_calls("sandbox", "capture").await, 2);
    assert_eq!(gw.plugin_calls("sandbox", "refund").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn pgm_pay_and_status() {
    let (_ws, gw) = start(free_port());
    let out = trigger(
        &gw,
        &["--front", "pgm", "status", "--amount", "900"],
        "unused",
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    let printed = paths(&stdout);
    assert_eq!(printed[0], "POST /v3/sandbox/pay", "{stdout}");
    assert!(
        printed[1].starts_with("GET /v3/sandbox/status?paymentId="),
        "{stdout}"
    );
    let all = answers(&stdout);
    assert_eq!(all[0].1["result"], "OK", "{stdout}");
    assert_eq!(all[1].1["status"], "ACCEPTED", "{stdout}");
    assert_eq!(all[1].1["amount"], 900, "{stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn load_at_a_fixed_rate_reports_and_every_200_is_a_plugin_call() {
    let (_ws, gw) = start(free_port());
    let before = gw.plugin_calls("sandbox", "authorize").await;
    let url = gw.url("");
    let out = command(
        &[
            "load",
            "--url",
            &url,
            "--gateway",
            "sandbox",
            "--secret-env",
            SECRET_ENV,
            "--rate",
            "200",
            "--duration",
            "3s",
        ],
        SHARED_SECRET,
    )
    .output()
    .expect("run load");
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(
        stdout.contains("authorize (fixed rate): 600 requests"),
        "{stdout}"
    );
    assert!(stdout.contains("throughput"), "{stdout}");
    for figure in ["p50 ", "p90 ", "p99 ", "max "] {
        assert!(stdout.contains(figure), "{figure}: {stdout}");
    }
    let ok: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("status: 200: "))
        .and_then(|n| n.split(',').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no 200 count in {stdout}"));
    assert_eq!(ok, 600, "{stdout}");
    let after = gw.plugin_calls("sandbox", "authorize").await;
    assert_eq!(after - before, ok, "{stdout}");
    // stderr is not a terminal here: no progress line, only the preparation note.
    let err = text(&out.stderr);
    assert!(
        err.contains("prepared 600 signed authorize bodies"),
        "{err}"
    );
    assert!(!err.contains("answered"), "{err}");

    // A closed loop too.
    let out = command(
        &[
            "load",
            "--url",
            &url,
            "--gateway",
            "sandbox",
            "--secret-env",
            SECRET_ENV,
            "--concurrency",
            "8",
            "--duration",
            "1s",
        ],
        SHARED_SECRET,
    )
    .output()
    .expect("run load");
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("authorize (closed loop): "), "{stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_secret_and_a_bad_url_are_clear_errors() {
    let (_ws, gw) = start(free_port());
    let out = trigger(&gw, &["authorize"], "not-the-shared-secret");
    assert!(!out.status.success());
    let stdout = text(&out.stdout);
    assert_eq!(answers(&stdout)[0].0, "401", "{stdout}");
    let err = text(&out.stderr);
    assert!(
        err.contains("error: the gateway refused the call (401)"),
        "{err}"
    );
    assert_no_panic(&out);

    // Nothing listens on the port.
    let dead = format!("http://127.0.0.1:{}", free_port());
    for args in [
        vec![
            "trigger",
            "--url",
            &dead,
            "--gateway",
            "sandbox",
            "--secret-env",
            SECRET_ENV,
            "authorize",
        ],
        vec![
            "load",
            "--url",
            &dead,
            "--gateway",
            "sandbox",
            "--secret-env",
            SECRET_ENV,
            "--rate",
            "10",
            "--duration",
            "1s",
        ],
    ] {
        let out = command(&args, SHARED_SECRET).output().expect("run");
        assert!(!out.status.success());
        let err = text(&out.stderr);
        assert!(
            err.contains(&format!("error: cannot reach the gateway at {dead}")),
            "{err}"
        );
        assert!(err.to_lowercase().contains("connection refused"), "{err}");
        assert_no_panic(&out);
    }
    // Not a URL at all.
    let out = command(
        &[
            "trigger",
            "--url",
            "localhost:8080",
            "--gateway",
            "sandbox",
            "--secret-env",
            SECRET_ENV,
            "authorize",
        ],
        SHARED_SECRET,
    )
    .output()
    .expect("run");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("`localhost:8080` is not an http:// or https:// URL"),
        "{}",
        text(&out.stderr)
    );

    // A load with the wrong secret counts the refusals and fails.
    let url = gw.url("");
    let out = command(
        &[
            "load",
            "--url",
            &url,
            "--gateway",
            "sandbox",
            "--secret-env",
            SECRET_ENV,
            "--rate",
            "20",
            "--duration",
            "1s",
        ],
        "not-the-shared-secret",
    )
    .output()
    .expect("run load");
    assert!(!out.status.success());
    let stdout = text(&out.stdout);
    assert!(stdout.contains("status: 401: 20"), "{stdout}");
    assert_no_panic(&out);
    assert_eq!(gw.plugin_calls("sandbox", "authorize").await, 0);
}
