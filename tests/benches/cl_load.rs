//! Load benchmark of the Commerce Layer front: the real binary with the sandbox plugin and
//! SQLite on disk, driven over HTTP on 127.0.0.1. One run measures
//! a) `GET /healthz` at maximum throughput (the floor: HTTP stack only),
//! b) unique, signed authorize calls at maximum throughput (same concurrency and duration),
//! c) authorize at a fixed rate (open loop: latency counted from each call's planned send
//!    time, so a stalled server cannot hide its stall by slowing the sender down).
//!
//! e) the same max-throughput authorize with the minimal (about 4 kB) body, and the
//!    baseline: a stateless endpoint in plain Node.js (tests/fakes/baseline/cl_endpoint.mjs:
//!    verify the signature, parse, answer) driven with the same bodies at both sizes;
//!    the ratios gateway / Node.js are printed.
//!
//! d) durable authorizes at maximum throughput on PostgreSQL (a throwaway cluster with fsync
//!    on, as SQLite's commits are fsync'd), with one replica and with three (requests spread
//!    over them), as ratios against SQLite's run a).
//!
//! Each authorize run starts after `sync` and a second's pause, so that it does not pay for
//! the disk writeback of the run before it.
//!
//! Authorize bodies are full CL documents built by the simulator and signed before timing.
//! Preparing, the loops and the figures are the client crate's (`psp_gateway_client::load`),
//! the code `psp-gateway load` measures with.
//!
//! `cargo bench -p psp-gateway-e2e --profile dev --bench cl_load [-- --quick]
//! [--concurrency N] [--seconds S] [--rate R]`. Exits non-zero only if an authorize call
//! fails (anything but 200); the figures are for reading, not asserting.

use std::sync::Arc;
use std::time::Duration;

use psp_gateway_client::load::{
    self, BodySize, Prepared, Progress, Run, authorize_requests, closed_loop, cycling_requests,
    open_loop, print_header, spread_requests,
};
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
        &Progress::new(),
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
        &Progress::new(),
    )
    .await;
    let body_len = cl::authorize_body(&ExternalPayment::new(&Order::sample(), "tok_visa"))
        .to_string()
        .len();
    let pool_cap = (MAX_POOL_BYTES / body_len).max(1_000);
    let max_bodies = ((warm_up.throughput() * 2.0) as usize * options.duration.as_secs() as usize)
        .clamp(1_000, pool_cap);
    let requests = authorize_requests(&client, &url, prepare(&sim, max_bodies));
    settle().await;
    let before = StoreCounters::read(&client, &gw).await;
    let max = closed_loop(
        "authorize (max)",
        options.concurrency,
        options.duration,
        max_bodies,
        requests,
        &Progress::new(),
    )
    .await;
    let max_batches = StoreCounters::read(&client, &gw).await.since(&before);

    let fixed_count = (options.rate as usize) * options.duration.as_secs() as usize;
    let bodies = prepare(&sim, fixed_count);
    settle().await;
    let before = StoreCounters::read(&client, &gw).await;
    let fixed = open_loop(
        "authorize (fixed rate)",
        &client,
        &url,
        options.rate,
        bodies,
        &Progress::new(),
    )
    .await;
    let fixed_batches = StoreCounters::read(&client, &gw).await.since(&before);

    let minimal_count = ((warm_up.throughput() * 4.0) as usize
        * options.duration.as_secs() as usize)
        .clamp(1_000, MAX_POOL_BYTES / load::body_len(BodySize::Minimal));
    let minimal_bodies = prepare_sized(&sim, minimal_count, BodySize::Minimal);
    settle().await;
    let minimal = closed_loop(
        "authorize 4 kB (max)",
        options.concurrency,
        options.duration,
        minimal_count,
        authorize_requests(&client, &url, minimal_bodies),
        &Progress::new(),
    )
    .await;
    let baselines = node_runs(options, &client, &sim).await;

    print_header();
    for r in [&healthz, &warm_up, &max, &fixed, &minimal] {
        r.print();
    }
    for r in &baselines {
        r.print();
    }
    println!(
        "ratio authorize/healthz throughput: {:.3} (28 kB), {:.3} (4 kB)",
        max.throughput() / healthz.throughput(),
        minimal.throughput() / healthz.throughput()
    );
    if let [node_minimal, node_small] = &baselines[..] {
        println!(
            "ratio authorize/node baseline throughput: {:.2} (4 kB), {:.2} (28 kB)",
            minimal.throughput() / node_minimal.throughput(),
            max.throughput() / node_small.throughput()
        );
    }
    println!("group commit, authorize (max): {max_batches}");
    println!("group commit, authorize (fixed rate): {fixed_batches}");
    if max.requests() == max_bodies {
        println!(
            "note: the authorize (max) run used all {max_bodies} pre-built bodies and ended early"
        );
    }
    let stores = postgres_runs(options, &client, &max).await;
    let baseline_errors: usize = baselines.iter().map(|r| r.errors).sum();
    Ok(warm_up.errors + max.errors + fixed.errors + minimal.errors + baseline_errors + stores > 0)
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
            &Progress::new(),
        )
        .await;
        let requests = spread(count);
        settle().await;
        let run = closed_loop(
            name,
            options.concurrency,
            options.duration,
            count,
            requests,
            &Progress::new(),
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

/// The store's commit counters on a gateway's `/metrics`: how many writes each commit
/// carried (the group commit's batches).
struct StoreCounters {
    commits: f64,
    writes: f64,
}

impl StoreCounters {
    async fn read(client: &reqwest::Client, gw: &Gateway) -> StoreCounters {
        let text = match client.get(gw.url("/metrics")).send().await {
            Ok(resp) => resp.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        let value = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        StoreCounters {
            commits: value("psp_store_commits_total"),
            writes: value("psp_store_writes_total"),
        }
    }

    fn since(self, before: &StoreCounters) -> StoreCounters {
        StoreCounters {
            commits: self.commits - before.commits,
            writes: self.writes - before.writes,
        }
    }
}

impl std::fmt::Display for StoreCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mean = if self.commits > 0.0 {
            self.writes / self.commits
        } else {
            0.0
        };
        write!(
            f,
            "{} writes in {} commits, {mean:.1} writes per commit",
            self.writes, self.commits
        )
    }
}

/// Waits until the data earlier runs wrote is on disk (`sync`), then a moment more: each
/// run measures its own load, not the kernel's writeback of the run before it, which
/// otherwise shows up in the next run's commit latency (fsync waits behind it).
async fn settle() {
    let synced = tokio::process::Command::new("sync").status().await;
    if !synced.is_ok_and(|s| s.success()) {
        eprintln!("note: `sync` failed; the next run may pay for the last one's writeback");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// `count` distinct signed authorize bodies of the sample order for `sim`'s gateway.
fn prepare(sim: &ClSimulator, count: usize) -> Vec<Prepared> {
    prepare_sized(sim, count, BodySize::Small)
}

fn prepare_sized(sim: &ClSimulator, count: usize, size: BodySize) -> Vec<Prepared> {
    let pool = load::prepare(sim.client(), count, size);
    eprintln!("{}", pool.describe());
    pool.bodies
}

/// The Node.js baseline endpoint, stopped on drop.
struct NodeBaseline {
    child: std::process::Child,
    url: String,
}

impl NodeBaseline {
    fn start() -> NodeBaseline {
        use std::io::BufRead;
        let script = psp_gateway_e2e::workspace_root().join("tests/fakes/baseline/cl_endpoint.mjs");
        let mut child = std::process::Command::new("node")
            .arg(&script)
            .env("CL_SHARED_SECRET", SHARED_SECRET)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("node {}: {e}", script.display()));
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut line)
            .expect("the baseline's first line");
        let port = line
            .trim()
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("the baseline printed {line:?}"));
        NodeBaseline {
            child,
            url: format!("http://127.0.0.1:{port}/authorize"),
        }
    }
}

impl Drop for NodeBaseline {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run e)'s baseline: the Node.js endpoint at maximum throughput with the minimal and the
/// sample bodies (signed for the same secret; the endpoint keeps nothing, so a pool of
/// bodies is sent round and round), each after a warm-up that lets V8 compile.
async fn node_runs(options: &Options, client: &reqwest::Client, sim: &ClSimulator) -> Vec<Run> {
    let node = NodeBaseline::start();
    let mut runs = Vec::new();
    for (name, size) in [
        ("node baseline 4 kB (max)", BodySize::Minimal),
        ("node baseline 28 kB (max)", BodySize::Small),
    ] {
        let requests = cycling_requests(client, &node.url, prepare_sized(sim, 2_000, size));
        closed_loop(
            "warm-up",
            options.concurrency,
            Duration::from_secs(1),
            usize::MAX,
            requests.clone(),
            &Progress::new(),
        )
        .await;
        runs.push(
            closed_loop(
                name,
                options.concurrency,
                options.duration,
                usize::MAX,
                requests,
                &Progress::new(),
            )
            .await,
        );
    }
    runs
}
