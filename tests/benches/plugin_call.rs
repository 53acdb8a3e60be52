//! Benchmark: plugin calls through the host's wasm path (fresh instance + call, per call)
//! against the same plugin crate linked natively, as µs per call and their ratio:
//! - the sandbox's `authorize` (the smallest useful call);
//! - Stripe's and Adyen's `handle-webhook` on a validly signed notification (signature
//!   check, JSON parsing, event mapping: their heaviest call that needs no network);
//!
//! and the time from a plugin file write to the new version serving.
//!
//! `cargo bench -p psp-gateway-e2e --profile dev --bench plugin_call [-- --quick]`
//! (scripts/build-plugins first). Exits non-zero only if a call fails or a reload is not
//! visible within 1 s; the figures are for reading, not asserting.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, Mac};
use psp_gateway::config::Config;
use psp_gateway::plugins::{Call, Plugins, Reply, types as host, watch};
use psp_gateway_e2e::{Workspace, deploy, plugin_wasm};
use psp_plugin_sdk::Plugin;
use psp_plugin_sdk::testing::{Harness, webhook_request};
use psp_plugin_sdk::types as sdk;
use sha2::Sha256;

const STRIPE_WEBHOOK_SECRET: &str = "whsec_bench";
const ADYEN_HMAC_KEY: &str = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056";

fn main() -> anyhow::Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(quick))
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    xs[xs.len() / 2]
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// Median µs per call over `batches` batches of `n` calls of `call(i)`.
fn time_native(batches: u64, n: u64, mut call: impl FnMut(u64) -> bool) -> anyhow::Result<f64> {
    let mut per_call = Vec::new();
    for b in 0..batches {
        let start = Instant::now();
        for i in 0..n {
            anyhow::ensure!(call(b * n + i), "unexpected native answer");
        }
        per_call.push(start.elapsed().as_secs_f64() * 1e6 / n as f64);
    }
    Ok(median(per_call))
}

/// Minor page faults of this process so far (the 10th field of /proc/self/stat): resetting
/// a recycled instance slot with `madvise` shows up here as faults on the next call.
fn minor_faults() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    stat.rsplit_once(')')
        .and_then(|(_, fields)| fields.split_whitespace().nth(7))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// One wasm row: median µs per call and minor page faults per call.
struct WasmTiming {
    micros: f64,
    faults: f64,
}

/// The same through the host: registry lookup, fresh instance, call.
async fn time_wasm(
    plugins: &Plugins,
    gateway: &str,
    batches: u64,
    n: u64,
    call: impl Fn(u64) -> Call,
    ok: impl Fn(&Reply) -> bool,
) -> anyhow::Result<WasmTiming> {
    for i in 0..20 {
        plugins.call(gateway, call(i)).await?;
    }
    let faults_before = minor_faults();
    let mut per_call = Vec::new();
    for b in 0..batches {
        let start = Instant::now();
        for i in 0..n {
            let reply = plugins.call(gateway, call(b * n + i)).await?;
            anyhow::ensure!(
                ok(&reply),
                "unexpected wasm answer from {gateway}: {reply:?}"
            );
        }
        per_call.push(start.elapsed().as_secs_f64() * 1e6 / n as f64);
    }
    Ok(WasmTiming {
        micros: median(per_call),
        faults: (minor_faults() - faults_before) as f64 / (batches * n) as f64,
    })
}

/// A Stripe event and its `Stripe-Signature` header, signed now.
fn stripe_notification() -> (Vec<(&'static str, String)>, Vec<u8>) {
    let body = serde_json::to_vec(&serde_json::json!({
        "id": "evt_bench", "object": "event", "type": "payment_intent.amount_capturable_updated",
        "data": {"object": {"id": "pi_3Qbench0000000001", "object": "payment_intent",
            "status": "requires_capture", "amount": 12900, "amount_capturable": 12900,
            "currency": "eur", "metadata": {"order": "42"}}}
    }))
    .expect("JSON");
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(&body);
    let v1 = hex::encode(hmac_sha256(STRIPE_WEBHOOK_SECRET.as_bytes(), &signed));
    (vec![("Stripe-Signature", format!("t={t},v1={v1}"))], body)
}

/// An Adyen standard notification with one signed `AUTHORISATION` item.
fn adyen_notification() -> (Vec<(&'static str, String)>, Vec<u8>) {
    let fields = [
        "8815000000000001",
        "",
        "BenchMerchant",
        "42-ext1",
        "12900",
        "EUR",
        "AUTHORISATION",
        "true",
    ];
    let key = hex::decode(ADYEN_HMAC_KEY).expect("hex key");
    let signature = base64::engine::general_purpose::STANDARD
        .encode(hmac_sha256(&key, fields.join(":").as_bytes()));
    let body = serde_json::to_vec(&serde_json::json!({
        "live": "false",
        "notificationItems": [{"NotificationRequestItem": {
            "pspReference": fields[0], "originalReference": "", "merchantAccountCode": fields[2],
            "merchantReference": fields[3], "amount": {"value": 12900, "currency": "EUR"},
            "eventCode": "AUTHORISATION", "success": "true", "reason": "",
            "additionalData": {"hmacSignature": signature}}}]
    }))
    .expect("JSON");
    (vec![("Content-Type", "application/json".into())], body)
}

async fn run(quick: bool) -> anyhow::Result<()> {
    let ws = Workspace::new();
    for plugin in ["sandbox", "stripe", "adyen"] {
        deploy(&ws.plugins(), plugin, &std::fs::read(plugin_wasm(plugin))?);
    }
    deploy(
        &ws.plugins(),
        "echo",
        &std::fs::read(plugin_wasm("echo_v1"))?,
    );
    let path = ws.write_config(&format!(
        r#"
[plugins]
dir = "plugins"
[[gateways]]
id = "sandbox"
plugin = "sandbox"
[gateways.settings]
webhook_secret = "bench"
[[gateways]]
id = "stripe"
plugin = "stripe"
[gateways.settings]
secret_key = "sk_test_bench"
webhook_secret = "{STRIPE_WEBHOOK_SECRET}"
[[gateways]]
id = "adyen"
plugin = "adyen"
[gateways.settings]
api_key = "bench"
merchant_account = "BenchMerchant"
hmac_key = "{ADYEN_HMAC_KEY}"
return_url = "https://shop.example/return"
[[gateways]]
id = "echo"
plugin = "echo"
"#
    ));
    let config = Config::load(&path)?;
    let plugins = Plugins::start(&config).await?;
    let (batches, wasm_calls, native_calls) = if quick {
        (3, 300, 20_000)
    } else {
        (7, 3_000, 300_000)
    };

    // Sandbox authorize.
    let wasm_req = |i: u64| host::AuthorizeRequest {
        idempotency_key: format!("bench-{i}"),
        amount: host::Money {
            amount_cents: 12900,
            currency: "EUR".into(),
        },
        payment_source_token: "tok_visa".into(),
        customer_token: None,
        reference: "ext-payment-1".into(),
        order: None,
        options_json: None,
        shopper: None,
    };
    let approved = |r: &Reply| matches!(r, Reply::Outcome(Ok(host::Outcome::Approved(_))));
    let sandbox_wasm = time_wasm(
        &plugins,
        "sandbox",
        batches,
        wasm_calls,
        |i| Call::Authorize(wasm_req(i)),
        approved,
    )
    .await?;
    let sandbox_native = time_native(batches, native_calls, |i| {
        let out = psp_plugin_sandbox::Sandbox::authorize(sdk::AuthorizeRequest {
            idempotency_key: format!("bench-{i}"),
            amount: sdk::Money {
                amount_cents: 12900,
                currency: "EUR".into(),
            },
            payment_source_token: "tok_visa".into(),
            customer_token: None,
            reference: "ext-payment-1".into(),
            order: None,
            options_json: None,
            shopper: None,
        });
        matches!(std::hint::black_box(out), Ok(sdk::Outcome::Approved(_)))
    })?;

    // Webhook verification: the same signed notification each time.
    let mapped = |r: &Reply| matches!(r, Reply::Webhook(Ok(w)) if !w.events.is_empty());
    let mut webhook_rows = Vec::new();
    for (gateway, (headers, body)) in [
        ("stripe", stripe_notification()),
        ("adyen", adyen_notification()),
    ] {
        let wasm_request = host::WebhookRequest {
            headers: headers
                .iter()
                .map(|(k, v)| host::Pair {
                    key: (*k).into(),
                    value: v.clone(),
                })
                .collect(),
            body: body.clone(),
        };
        let wasm = time_wasm(
            &plugins,
            gateway,
            batches,
            wasm_calls,
            |_| Call::HandleWebhook(wasm_request.clone()),
            mapped,
        )
        .await?;
        let pairs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let native_request = webhook_request(&pairs, body.clone());
        let harness = match gateway {
            "stripe" => Harness::new().setting("webhook_secret", STRIPE_WEBHOOK_SECRET),
            _ => Harness::new().setting("hmac_key", ADYEN_HMAC_KEY),
        };
        let native_n = native_calls / 10;
        let native = time_native(batches, native_n, |_| {
            let out = harness.run(|| match gateway {
                "stripe" => psp_plugin_stripe::Stripe::handle_webhook(native_request.clone()),
                _ => psp_plugin_adyen::Adyen::handle_webhook(native_request.clone()),
            });
            matches!(std::hint::black_box(out), Ok(w) if !w.events.is_empty())
        })?;
        webhook_rows.push((gateway, wasm, native));
    }

    // Reload: write a new version (temp file + rename), poll until a call answers with it.
    let _watch = watch::spawn(plugins.registry().clone(), true, Duration::ZERO);
    let versions = [
        (std::fs::read(plugin_wasm("echo_v2"))?, "2.0.0"),
        (std::fs::read(plugin_wasm("echo_v1"))?, "1.0.0"),
    ];
    let rounds = if quick { 6 } else { 20 };
    let mut first_loads = Vec::new();
    let mut cached_loads = Vec::new();
    for round in 0..rounds {
        let (bytes, version) = &versions[round % 2];
        let written = Instant::now();
        deploy(&ws.plugins(), "echo", bytes);
        loop {
            let reply = plugins
                .call("echo", Call::Authorize(wasm_req(round as u64)))
                .await;
            if let Ok(Reply::Outcome(Ok(host::Outcome::Approved(a)))) = reply
                && a.metadata
                    .iter()
                    .any(|p| p.key == "version" && &p.value == version)
            {
                break;
            }
            if written.elapsed() > Duration::from_secs(1) {
                anyhow::bail!("version {version} not serving 1 s after its write");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let ms = written.elapsed().as_secs_f64() * 1e3;
        // echo v2 is compiled on its first write; every later write is a cache hit
        // (v1 was compiled at start-up).
        if round == 0 {
            first_loads.push(ms)
        } else {
            cached_loads.push(ms)
        }
    }

    println!(
        "plugin_call benchmark ({})",
        if quick { "quick" } else { "full" }
    );
    println!(
        "  {:<40} {:>10} {:>10} {:>8} {:>12}",
        "call", "wasm µs", "native µs", "ratio", "faults/call"
    );
    let row = |name: &str, wasm: &WasmTiming, native: f64| {
        println!(
            "  {name:<40} {:>10.2} {native:>10.2} {:>7.1}x {:>12.1}",
            wasm.micros,
            wasm.micros / native,
            wasm.faults
        );
    };
    row("sandbox authorize", &sandbox_wasm, sandbox_native);
    for (gateway, wasm, native) in &webhook_rows {
        row(
            &format!("{gateway} handle-webhook (verify + map)"),
            wasm,
            *native,
        );
    }
    println!(
        "  target <= 20 µs per sandbox wasm call:    {}",
        if sandbox_wasm.micros <= 20.0 {
            "met"
        } else {
            "MISSED"
        }
    );
    let cached_median = median(cached_loads.clone());
    let cached_max = cached_loads.iter().cloned().fold(0.0, f64::max);
    println!(
        "  reload, write -> serving, new version (compile): {:>7.1} ms",
        first_loads[0]
    );
    println!(
        "  reload, write -> serving, cached version: median {cached_median:.1} ms, max {cached_max:.1} ms ({} writes)",
        cached_loads.len()
    );
    println!(
        "  target reload < 500 ms:                   {}",
        if first_loads[0].max(cached_max) < 500.0 {
            "met"
        } else {
            "MISSED"
        }
    );
    Ok(())
}
