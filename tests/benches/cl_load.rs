//! Load benchmark of the Commerce Layer front: the real binary with the sandbox plugin and
//! SQLite on disk, driven over HTTP on 127.0.0.1. One run measures
//! a) `GET /healthz` at maximum throughput (the floor: HTTP stack only),
//! b) unique, signed authorize calls at maximum throughput (same concurrency and duration),
//! c) authorize at a fixed rate (open loop: latency counted from each call's planned send
//!    time, so a stalled server cannot hide its stall by slowing the sender down).
//!
//! d) durable authorizes at maximum throughput on PostgreSQL (a throwaway cluster with fsync
//!    on, as SQLite's commits are fsync'd), with one replica and with three (requests spread
//!    over them), as ratios against SQLite's run a).
//!
//! Authorize bodies are full CL documents built by the simulator and signed before timing.
//!
//! `cargo bench -p psp-gateway-e2e --profile dev --bench cl_load [-- --quick]
//! [--concurrency N] [--seconds S] [--rate R]`. Exits non-zero only if an authorize call
//! fails (anything but 200); the figures are for reading, not asserting.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use psp_gateway_e2e::cl::{self, Action, ClSimulator, ExternalPayment, Order};
use psp_gateway_e2e::pg_cluster::Cluster;
use psp_gateway_e2e::{Gateway, Workspace};

const SHARED_SECRET: &str = "1c0994cc4e996e8c6ee56a2198f66f3c";
const GATEWAY: &str = "sandbox";
/// Upper bound of the memory held by pre-built bodies for one max-throughput run; a run
/// that uses them all ends early and says so.
const MAX_POOL_BYTES: usize = 1 << 30;

struct Options {
    concurrency: usize,
    duration: Duration,
    rate: u32,
}

impl Options {
    fn from_args() -> Options {
        let args: Vec<String> = std::env::args().collect();
        let quick = args.iter().any(|a| a == "--quick");
        let value = |flag: &str| {
            args.iter()
                .position(|a| a == flag)
                .and_then(|i| args.get(i + 1))
                .map(|v| {
                    v.parse::<u64>()
                        .unwrap_or_else(|_| panic!("{flag} takes a number"))
                })
        };
        Options {
            concurrency: value("--concurrency").unwrap_or(64) as usize,
            duration: Duration::from_secs(value("--seconds").unwrap_or(if quick { 2 } else { 10 })),
            rate: value("--rate").unwrap_or(500) as u32,
        }
    }
}

fn main() -> anyhow::Result<()> {
    let options = Options::from_args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let failed = rt.block_on(run(&options))?;
    if failed {
        std::process::exit(1);
    }
    Ok(())
}

/// One signed request, ready to send.
struct Prepared {
    body: Vec<u8>,
    signature: String,
}

/// Latencies and outcomes of one measured run.
struct Run {
    name: &'static str,
    latencies_us: Vec<u64>,
    errors: usize,
    elapsed: Duration,
    first_error: Option<String>,
}

impl Run {
    fn requests(&self) -> usize {
        self.latencies_us.len()
    }

    fn throughput(&self) -> f64 {
        self.requests() as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile_ms(&self, p: f64) -> f64 {
        let mut sorted = self.latencies_us.clone();
        sorted.sort_unstable();
        match sorted.len() {
            0 => 0.0,
            n => sorted[((n - 1) as f64 * p).round() as usize] as f64 / 1000.0,
        }
    }

    fn print(&self) {
        println!(
            "{:<28} {:>8} {:>7} {:>10.0} {:>9.2} {:>9.2} {:>9.2}",
            self.name,
            self.requests(),
            self.errors,
            self.throughput(),
            self.percentile_ms(0.50),
            self.percentile_ms(0.99),
            self.percentile_ms(1.0),
        );
        if let Some(e) = &self.first_error {
            println!("    first error: {e}");
        }
    }
}

/// What one request's task reports back.
struct Sample {
    latency: Duration,
    error: Option<String>,
}

const GATEWAY_CONFIG: &str = r#"
[plugins]
dir = "plugins"
[[gateways]]
id = "sandbox"
plugin = "sandbox"
shared_secret = "${CL_SHARED_SECRET}"
[gateways.settings]
webhook_secret = "${SANDBOX_WEBHOOK_SECRET}"
"#;

/// One gateway process on `store_url` (with its workspace).
fn start_gateway(store_url: &str) -> (Workspace, Gateway) {
    let ws = Workspace::new();
    ws.install("sandbox", "sandbox");
    let config = ws.write_config_with("", store_url, GATEWAY_CONFIG);
    let gw = Gateway::start(
        &config,
        &[
            ("CL_SHARED_SECRET", SHARED_SECRET),
            ("SANDBOX_WEBHOOK_SECRET", "bench-webhook-secret"),
        ],
    );
    (ws, gw)
}

async fn run(options: &Options) -> anyhow::Result<bool> {
    let (_ws, gw) = start_gateway("sqlite://gateway.db");
    let sim = ClSimulator::new(&gw.url(""), GATEWAY, SHARED_SECRET);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(options.concurrency)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()?;
    println!(
        "concurrency {}, {} s per run, fixed rate {}/s",
        options.concurrency,
        options.duration.as_secs(),
        options.rate
    );

    let healthz_url = gw.url("/healthz");
    let healthz_client = client.clone();
    let healthz = closed_loop(
        "healthz (max)",
        options.concurrency,
        options.duration,
        usize::MAX,
        Arc::new(move |_| healthz_client.get(&healthz_url)),
    )
    .await;

    // One authorize first: until the CL routes answer there is nothing to measure.
    let probe = sim
        .send(
            Action::Authorize,
            &cl::authorize_body(&ExternalPayment::new(&Order::sample(), "tok_visa")),
        )
        .await;
    if !probe.is_success() || probe.transaction_token().is_none() {
        print_header();
        healthz.print();
        println!("authorize probe failed ({probe}); skipping the authorize runs");
        return Ok(true);
    }

    // A short warm-up run also tells how fast authorize goes, which sizes the pool of
    // pre-built bodies for the measured run (they are large: keep memory bounded).
    let url = sim.url(Action::Authorize);
    let warm_count = 2_000;
    let warm_up = closed_loop(
        "authorize (warm-up, 1 s)",
        options.concurrency,
        Duration::from_secs(1),
        warm_count,
        authorize_requests(&client, &url, prepare(&sim, warm_count)),
    )
    .await;
    let body_len = cl::authorize_body(&ExternalPayment::new(&Order::sample(), "tok_visa"))
        .to_string()
        .len();
    let pool_cap = (MAX_POOL_BYTES / body_len).max(1_000);
    let max_bodies = ((warm_up.throughput() * 2.0) as usize * options.duration.as_secs() as usize)
        .clamp(1_000, pool_cap);
    let max = closed_loop(
        "authorize (max)",
        options.concurrency,
        options.duration,
        max_bodies,
        authorize_requests(&client, &url, prepare(&sim, max_bodies)),
    )
    .await;

    let fixed_count = (options.rate as usize) * options.duration.as_secs() as usize;
    let fixed = open_loop(&client, &url, options, prepare(&sim, fixed_count)).await;

    print_header();
    for r in [&healthz, &warm_up, &max, &fixed] {
        r.print();
    }
    println!(
        "ratio authorize/healthz throughput: {:.3}",
        max.throughput() / healthz.throughput()
    );
    if max.requests() == max_bodies {
        println!(
            "note: the authorize (max) run used all {max_bodies} pre-built bodies and ended early"
        );
    }
    let stores = postgres_runs(options, &client, &max).await;
    Ok(warm_up.errors + max.errors + fixed.errors + stores > 0)
}

/// Run d): the same max-throughput authorize run on PostgreSQL with one replica and with
/// three, after a warm-up each; prints their table against SQLite's run. Returns errors.
async fn postgres_runs(options: &Options, client: &reqwest::Client, sqlite: &Run) -> usize {
    let cluster = match Cluster::start_durable() {
        Ok(c) => c,
        Err(e) => panic!("the PostgreSQL runs need a cluster: {e}"),
    };
    cluster.clean_up_at_exit();
    let mut rows = Vec::new();
    let mut errors = 0;
    for replicas in [1usize, 3] {
        let url = format!("{}?pool_max=16", cluster.database().await);
        let deployment: Vec<_> = (0..replicas).map(|_| start_gateway(&url)).collect();
        let sims: Vec<_> = deployment
            .iter()
            .map(|(_, gw)| ClSimulator::new(&gw.url(""), GATEWAY, SHARED_SECRET))
            .collect();
        let count = (sqlite.throughput() * 3.0) as usize * options.duration.as_secs() as usize;
        let count = count.clamp(1_000, 200_000);
        let spread = |n: usize| {
            let per: Vec<_> = sims
                .iter()
                .map(|sim| prepare(sim, n / sims.len() + 1))
                .collect();
            let urls: Vec<_> = sims.iter().map(|sim| sim.url(Action::Authorize)).collect();
            spread_requests(client, urls, per)
        };
        let name: &'static str = if replicas == 1 {
            "postgres, 1 replica (max)"
        } else {
            "postgres, 3 replicas (max)"
        };
        let warm = closed_loop(
            "warm-up",
            options.concurrency,
            Duration::from_secs(1),
            1_500,
            spread(1_500),
        )
        .await;
        let run = closed_loop(
            name,
            options.concurrency,
            options.duration,
            count,
            spread(count),
        )
        .await;
        errors += warm.errors + run.errors;
        rows.push(run);
    }
    println!("durable authorizes by store (PostgreSQL with fsync on, as SQLite's commits):");
    print_header();
    sqlite.print();
    for r in &rows {
        r.print();
    }
    for r in &rows {
        println!(
            "ratio {} / sqlite throughput: {:.2}",
            r.name,
            r.throughput() / sqlite.throughput()
        );
    }
    errors
}

/// Requests spread over several gateways in turn, each with its own pre-built bodies.
fn spread_requests(
    client: &reqwest::Client,
    urls: Vec<String>,
    bodies: Vec<Vec<Prepared>>,
) -> MakeRequest {
    let client = client.clone();
    let n = urls.len();
    Arc::new(move |i| {
        let p = &bodies[i % n][i / n];
        client
            .post(&urls[i % n])
            .header("content-type", cl::JSON_API)
            .header(cl::SIGNATURE_HEADER, &p.signature)
            .body(p.body.clone())
    })
}

/// Requests that post the pre-built bodies, one per index.
fn authorize_requests(client: &reqwest::Client, url: &str, bodies: Vec<Prepared>) -> MakeRequest {
    let (client, url) = (client.clone(), url.to_owned());
    Arc::new(move |i| {
        let p = &bodies[i];
        client
            .post(&url)
            .header("content-type", cl::JSON_API)
            .header(cl::SIGNATURE_HEADER, &p.signature)
            .body(p.body.clone())
    })
}

fn print_header() {
    println!(
        "{:<28} {:>8} {:>7} {:>10} {:>9} {:>9} {:>9}",
        "run", "requests", "errors", "req/s", "p50 ms", "p99 ms", "max ms"
    );
}

/// `count` distinct authorize bodies, signed. The simulator builds one document; each
/// copy gets a fresh external payment id (the authorize's natural key) and order id by
/// substitution in the serialised bytes, which costs a fraction of building a new document.
fn prepare(sim: &ClSimulator, count: usize) -> Vec<Prepared> {
    let started = Instant::now();
    let order = Order::sample();
    let payment = ExternalPayment::new(&order, "tok_visa");
    let (template, _) = sim.encode(&cl::authorize_body(&payment));
    let template = String::from_utf8(template).expect("JSON is UTF-8");
    let prepared: Vec<Prepared> = (0..count)
        .map(|_| {
            // Ids are random 10-character strings, so they occur nowhere else in the text.
            let body = template
                .replace(&payment.id, &cl::new_id())
                .replace(&order.id, &cl::new_id())
                .into_bytes();
            let signature = sim.sign(&body);
            Prepared { body, signature }
        })
        .collect();
    eprintln!(
        "prepared {count} signed authorize bodies of {} bytes in {:.1} s",
        template.len(),
        started.elapsed().as_secs_f64()
    );
    prepared
}

/// Sends a request and reports its latency and whether it failed (anything but 200).
async fn measure(request: reqwest::RequestBuilder, since: Instant) -> Sample {
    let error = match request.send().await {
        Ok(reply) => {
            let status = reply.status();
            let body = reply.bytes().await;
            match body {
                // 200 is the only success: an authorize answering 202 (pending) would be a
                // different measurement.
                Ok(_) if status == reqwest::StatusCode::OK => None,
                Ok(body) => Some(format!("{status} {}", String::from_utf8_lossy(&body))),
                Err(e) => Some(e.to_string()),
            }
        }
        Err(e) => Some(e.to_string()),
    };
    Sample {
        latency: since.elapsed(),
        error,
    }
}

/// Builds the request with the given index.
type MakeRequest = Arc<dyn Fn(usize) -> reqwest::RequestBuilder + Send + Sync>;

/// `concurrency` workers, each sending its next request as soon as the previous answers,
/// until the duration is over or `limit` requests have been sent.
async fn closed_loop(
    name: &'static str,
    concurrency: usize,
    duration: Duration,
    limit: usize,
    request: MakeRequest,
) -> Run {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (next, request) = (next.clone(), request.clone());
            tokio::spawn(async move {
                let mut samples = Vec::new();
                while Instant::now() < deadline {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= limit {
                        break;
                    }
                    samples.push(measure(request(i), Instant::now()).await);
                }
                samples
            })
        })
        .collect();
    let mut samples = Vec::new();
    for w in workers {
        samples.extend(w.await.expect("worker"));
    }
    summarise(name, samples, started.elapsed())
}

/// Sends one request per planned instant (`rate` per second), each in its own task, and
/// measures from the planned instant rather than the actual send.
async fn open_loop(
    client: &reqwest::Client,
    url: &str,
    options: &Options,
    bodies: Vec<Prepared>,
) -> Run {
    let interval = Duration::from_secs_f64(1.0 / f64::from(options.rate.max(1)));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(bodies.len());
    for (i, p) in bodies.into_iter().enumerate() {
        let planned = started + interval * i as u32;
        tokio::time::sleep_until(planned.into()).await;
        let request = client
            .post(url)
            .header("content-type", cl::JSON_API)
            .header(cl::SIGNATURE_HEADER, p.signature)
            .body(p.body);
        tasks.push(tokio::spawn(measure(request, planned)));
    }
    let mut samples = Vec::with_capacity(tasks.len());
    for t in tasks {
        samples.push(t.await.expect("request task"));
    }
    let name = "authorize (fixed rate)";
    summarise(name, samples, started.elapsed())
}

fn summarise(name: &'static str, samples: Vec<Sample>, elapsed: Duration) -> Run {
    let errors = samples.iter().filter(|s| s.error.is_some()).count();
    let first_error = samples.iter().find_map(|s| s.error.clone());
    Run {
        name,
        latencies_us: samples
            .iter()
            .map(|s| s.latency.as_micros() as u64)
            .collect(),
        errors,
        elapsed,
        first_error,
    }
}
