//! `/metrics` counts what happened: request histograms by front, gateway, action and status,
//! plugin calls by result (a PSP outage as `unreachable`, not as answered), plugin loads, and
//! the store's gauges. Every metric the Grafana dashboard (`ops/grafana-dashboard.json`)
//! queries is exported.

use psp_gateway_e2e::cl::{ClSimulator, ExternalPayment, Order};
use psp_gateway_e2e::{Gateway, Workspace, workspace_root};

const SHARED_SECRET: &str = "7d1f3b5a9c2e4f6a8b0d2c4e6f8a0b1c";

/// The value of the sample named `name` whose labels include every `labels` pair.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_the_requests_calls_and_loads_a_test_made() {
    let ws = Workspace::new();
    ws.install("sandbox", "sandbox");
    let config = ws.write_config(
        "[plugins]\ndir = \"plugins\"\n[[gateways]]\nid = \"sandbox\"\nplugin = \"sandbox\"\n\
         shared_secret = \"${CL_SHARED_SECRET}\"\n[gateways.settings]\nwebhook_secret = \"whsec_m\"\n",
    );
    let gw = Gateway::start(&config, &[("CL_SHARED_SECRET", SHARED_SECRET)]);
    let sim = ClSimulator::new(&gw.url(""), "sandbox", SHARED_SECRET);
    for _ in 0..5 {
        let payment = ExternalPayment::new(&Order::sample(), "tok_visa");
        assert_eq!(sim.authorize_payment(&payment).await.0.status, 200);
    }
    let declined = ExternalPayment::new(&Order::sample(), "tok_decline");
    assert_eq!(sim.authorize_payment(&declined).await.0.status, 422);
    let outage = ExternalPayment::new(&Order::sample(), "tok_fail");
    let (resp, _) = sim.authorize_payment(&outage).await;
    assert!(resp.status >= 500, "{resp}");
    // A gateway nobody configured: labelled `unknown`, not with the caller's text.
    let stray = reqwest::Client::new()
        .post(gw.url("/commercelayer/made-up-gateway-x1/authorize"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert!(stray.status().is_client_error());

    let text = gw.metrics().await;
    let cl = |status: &str| {
        sample(
            &text,
            "psp_request_duration_seconds_count",
            &[
                ("front", "commerce_layer"),
                ("gateway", "sandbox"),
                ("action", "authorize"),
                ("status", status),
            ],
        )
    };
    assert_eq!(cl("200"), Some(5.0), "{text}");
    assert_eq!(cl("422"), Some(1.0), "{text}");
    assert!(
        sample(
            &text,
            "psp_request_duration_seconds_bucket",
            &[("gateway", "sandbox"), ("status", "200"), ("le", "+Inf")]
        ) == Some(5.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "psp_request_duration_seconds_count",
            &[("gateway", "unknown")]
        ),
        Some(1.0),
        "{text}"
    );
    assert!(!text.contains("made-up-gateway-x1"));

    let calls = |result: &str| {
        sample(
            &text,
            "psp_plugin_calls_total",
            &[
                ("gateway", "sandbox"),
                ("operation", "authorize"),
                ("result", result),
            ],
        )
    };
    // Approved and declined are answers; the outage is not.
    assert_eq!(calls("answered"), Some(6.0), "{text}");
    assert_eq!(calls("unreachable"), Some(1.0), "{text}");
    assert_eq!(
        sample(
            &text,
            "psp_plugin_call_duration_seconds_count",
            &[("gateway", "sandbox"), ("result", "answered")]
        ),
        Some(6.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "psp_plugin_loads_total",
            &[("plugin", "sandbox"), ("result", "loaded")]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(sample(&text, "psp_plugins_loaded", &[]), Some(1.0));
    assert_eq!(sample(&text, "psp_callbacks_dead", &[]), Some(0.0));

    // The dashboard asks only for what is exported.
    let dashboard =
        std::fs::read_to_string(workspace_root().join("ops/grafana-dashboard.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    let mut names = Vec::new();
    for panel in json["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let mut rest = expr;
            while let Some(at) = rest.find("psp_") {
                let name: String = rest[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[at + name.len()..];
                names.push(name);
            }
        }
    }
    assert!(names.len() >= 10, "{names:?}");
    for name in names {
        assert!(
            text.lines().any(|l| l.starts_with(&name)),
            "the dashboard queries `{name}`, which /metrics does not export:\n{text}"
        );
    }
}
