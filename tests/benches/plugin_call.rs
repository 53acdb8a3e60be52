//! Benchmark: the sandbox plugin's `authorize` through the host's wasm call path (fresh
//! instance + call, per call) against the same sandbox logic linked natively, as µs per
//! call and their ratio; and the time from a plugin file write to the new version serving.
//!
//! `cargo bench -p psp-gateway-e2e --profile dev --bench plugin_call [-- --quick]`
//! (scripts/build-plugins first). Exits non-zero only if a call fails or a reload is not
//! visible within 1 s; the figures are for reading, not asserting.

use std::time::{Duration, Instant};

use psp_gateway::config::Config;
use psp_gateway::plugins::{Call, Plugins, Reply, types as host, watch};
use psp_gateway_e2e::{Workspace, deploy, plugin_wasm};
use psp_plugin_sdk::Plugin;
use psp_plugin_sdk::types as sdk;

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

async fn run(quick: bool) -> anyhow::Result<()> {
    let ws = Workspace::new();
    deploy(
        &ws.plugins(),
        "sandbox",
        &std::fs::read(plugin_wasm("sandbox"))?,
    );
    deploy(
        &ws.plugins(),
        "echo",
        &std::fs::read(plugin_wasm("echo_v1"))?,
    );
    let path = ws.write_config(
        r#"
[plugins]
dir = "plugins"
[[gateways]]
id = "sandbox"
plugin = "sandbox"
[gateways.settings]
webhook_secret = "bench"
[[gateways]]
id = "echo"
plugin = "echo"
"#,
    );
    let config = Config::load(&path)?;
    let plugins = Plugins::start(&config).await?;

    let (batches, wasm_calls, native_calls) = if quick {
        (3, 300, 20_000)
    } else {
        (7, 3_000, 300_000)
    };

    // Wasm path: registry lookup, fresh instance from the pre-linked component, call.
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
    };
    for i in 0..50 {
        plugins
            .call("sandbox", Call::Authorize(wasm_req(i)))
            .await?;
    }
    let mut wasm_us = Vec::new();
    for b in 0..batches {
        let start = Instant::now();
        for i in 0..wasm_calls {
            match plugins
                .call("sandbox", Call::Authorize(wasm_req(b * wasm_calls + i)))
                .await?
            {
                Reply::Outcome(Ok(host::Outcome::Approved(_))) => {}
                other => anyhow::bail!("unexpected wasm answer: {other:?}"),
            }
        }
        wasm_us.push(start.elapsed().as_secs_f64() * 1e6 / wasm_calls as f64);
    }

    // Native: the same sandbox crate linked into this binary.
    let native_req = |i: u64| sdk::AuthorizeRequest {
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
    };
    let mut native_us = Vec::new();
    for b in 0..batches {
        let start = Instant::now();
        for i in 0..native_calls {
            let out = psp_plugin_sandbox::Sandbox::authorize(native_req(b * native_calls + i));
            if !matches!(std::hint::black_box(out), Ok(sdk::Outcome::Approved(_))) {
                anyhow::bail!("unexpected native answer");
            }
        }
        native_us.push(start.elapsed().as_secs_f64() * 1e6 / native_calls as f64);
    }
    let (wasm, native) = (median(wasm_us), median(native_us));

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
    println!("  sandbox authorize, wasm (instantiate + call): {wasm:>9.2} µs/call");
    println!("  sandbox authorize, native (same crate):       {native:>9.2} µs/call");
    println!(
        "  ratio wasm / native:                          {:>9.1} x",
        wasm / native
    );
    println!(
        "  target <= 50 µs per wasm call:                {}",
        if wasm <= 50.0 { "met" } else { "MISSED" }
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
        "  target reload < 500 ms:                       {}",
        if first_loads[0].max(cached_max) < 500.0 {
            "met"
        } else {
            "MISSED"
        }
    );
    Ok(())
}
