//! Metrics: every name, label and bucket the gateway exports, recorded through the `metrics`
//! facade into one Prometheus recorder and rendered on `/metrics`. Label values come from
//! bounded sets (configured gateways, known actions, failure kinds), never from raw input,
//! so a caller cannot grow the series without bound.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::app::AppState;

/// Seconds: from a fast local call to the hard deadlines.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process's recorder, installed on first use. None if another recorder was installed
/// first (an embedding program's): then the gateway's metrics go there.
fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(BUCKETS)
                .expect("non-empty buckets")
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok().map(|()| handle)
        })
        .as_ref()
}

/// Installs the recorder (before anything records).
pub fn install() {
    let _ = handle();
}

/// The recorded metrics in Prometheus text.
pub fn render() -> String {
    match handle() {
        Some(h) => {
            h.run_upkeep();
            h.render()
        }
        None => String::new(),
    }
}

/// A plugin call: `psp_plugin_calls_total` (its name and labels are kept from before this
/// module) and `psp_plugin_call_duration_seconds`. `result` is `answered`, the kind of
/// failure the plugin reported (`unreachable`, `timeout`, ...: a PSP outage counts as
/// such), or `error` when the host could not complete the call (trap, deadline, ...).
pub fn plugin_call(gateway: &str, operation: &'static str, result: &'static str, took: Duration) {
    let labels = [
        ("gateway", gateway.to_owned()),
        ("operation", operation.to_owned()),
        ("result", result.to_owned()),
    ];
    metrics::counter!("psp_plugin_calls_total", &labels).increment(1);
    metrics::histogram!("psp_plugin_call_duration_seconds", &labels).record(took.as_secs_f64());
}

/// A plugin file loaded (`loaded`) or refused (`failed`).
pub fn plugin_load(plugin: &str, loaded: bool) {
    let result = if loaded { "loaded" } else { "failed" };
    metrics::counter!("psp_plugin_loads_total", "plugin" => plugin.to_owned(), "result" => result)
        .increment(1);
}

/// A store commit carrying `writes` write operations: `psp_store_commits_total` and
/// `psp_store_writes_total`, whose ratio is the mean group-commit batch.
pub fn store_commit(writes: usize) {
    metrics::counter!("psp_store_commits_total").increment(1);
    metrics::counter!("psp_store_writes_total").increment(writes as u64);
}

/// The gauges read from the store and the registry when `/metrics` is scraped.
pub fn set_gauge(name: &'static str, labels: &[(&'static str, &'static str)], value: f64) {
    let labels: Vec<(&'static str, String)> =
        labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
    metrics::gauge!(name, &labels).set(value);
}

/// Middleware: `psp_request_duration_seconds{front, gateway, action, status}` for the
/// payment routes (Commerce Layer, PGM, PSP notifications).
pub async fn track_requests(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let labels = route_labels(&state, req.uri().path());
    let started = Instant::now();
    let response = next.run(req).await;
    if let Some((front, gateway, action)) = labels {
        metrics::histogram!(
            "psp_request_duration_seconds",
            "front" => front,
            "gateway" => gateway,
            "action" => action,
            "status" => response.status().as_u16().to_string(),
        )
        .record(started.elapsed().as_secs_f64());
    }
    response
}

const CL_ACTIONS: &[&str] = &["authorize", "capture", "void", "refund", "token"];
const PGM_ACTIONS: &[&str] = &[
    "pay",
    "refund",
    "status",
    "check",
    "callback",
    "subscription/schedule",
    "subscription/start",
    "subscription/pay",
    "subscription/status",
    "subscription/expire",
    "subscription/update",
];

/// (front, gateway, action) of a payment route; None for the others. An unknown gateway
/// or action is labelled as such rather than with what the caller sent.
fn route_labels(state: &AppState, path: &str) -> Option<(&'static str, String, String)> {
    let mut parts = path.trim_start_matches('/').splitn(3, '/');
    let (front, known): (&'static str, &[&str]) = match parts.next()? {
        "commercelayer" => ("commerce_layer", CL_ACTIONS),
        "v3" => ("pgm", PGM_ACTIONS),
        "psp" => ("psp_webhook", &["webhook"]),
        _ => return None,
    };
    let gateway = parts.next().unwrap_or("");
    let gateway = match state.config.gateway(gateway) {
        Some(gw) => gw.id.clone(),
        None => "unknown".to_owned(),
    };
    let action = parts.next().unwrap_or("").trim_end_matches('/');
    // PGM's subscription routes end with the subscription's token: not a label.
    let action = known
        .iter()
        .find(|a| {
            action == **a
                || action
                    .strip_prefix(**a)
                    .is_some_and(|rest| rest.starts_with('/'))
        })
        .map_or("other", |a| *a)
        .to_owned();
    Some((front, gateway, action))
}
