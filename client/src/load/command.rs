//! The `psp-gateway load` command: checks the gateway answers, prepares the bodies, runs
//! one open or closed loop with a progress line on stderr (only for a terminal), and
//! returns the run for the caller to report.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{
    BodySize, Progress, Run, authorize_requests, body_len, closed_loop, open_loop, prepare,
};
use crate::cl::{Action, ClClient};

/// Upper bound of the memory the pre-built bodies of a closed-loop run may take; a run
/// that sends them all ends early and says so.
const MAX_POOL_BYTES: usize = 512 << 20;
/// Most bodies a closed-loop run pre-builds (building takes time too).
const MAX_POOL_BODIES: usize = 200_000;

/// How calls are paced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Open loop: this many calls per second, whatever the answers take.
    Rate(u32),
    /// Closed loop: this many calls in flight, each sent when the previous one answered.
    Concurrency(usize),
}

/// What `load` was asked to do.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// The gateway's base URL, `http://HOST:PORT`.
    pub url: String,
    pub gateway: String,
    pub shared_secret: String,
    pub pace: Pace,
    pub duration: Duration,
    pub body_size: BodySize,
}

/// Why a load run could not start.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("`{url}` is not an http:// or https:// URL")]
    InvalidUrl { url: String },
    #[error("cannot reach the gateway at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the rate and the concurrency must be at least 1")]
    NothingToSend,
}

/// The outcome of a run, and what the caller should say about it.
pub struct Outcome {
    pub run: Run,
    /// Set when a closed loop sent every pre-built body before the duration was over.
    pub ended_early: Option<usize>,
}

/// Runs the load described by `options`; notes (what was prepared) go to stderr.
pub async fn run(options: &LoadOptions) -> Result<Outcome, LoadError> {
    let base = options.url.trim_end_matches('/');
    if !(base.starts_with("http://") || base.starts_with("https://"))
        || reqwest::Url::parse(base).is_err()
    {
        return Err(LoadError::InvalidUrl {
            url: options.url.clone(),
        });
    }
    let workers = match options.pace {
        Pace::Rate(0) | Pace::Concurrency(0) => return Err(LoadError::NothingToSend),
        Pace::Rate(r) => (r as usize).min(512),
        Pace::Concurrency(c) => c,
    };
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(workers)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| LoadError::Unreachable {
            url: base.to_owned(),
            reason: e.to_string(),
        })?;
    // Fail fast on a wrong URL, before minutes of preparation and thousands of refusals;
    // `/healthz` calls no plugin, so the gateway's counters only see the run.
    let health = format!("{base}/healthz");
    if let Err(e) = http.get(&health).send().await {
        return Err(LoadError::Unreachable {
            url: base.to_owned(),
            reason: super::error_chain(&e),
        });
    }

    let client = ClClient::new(base, &options.gateway, &options.shared_secret);
    let url = client.url(Action::Authorize);
    let seconds = options.duration.as_secs_f64();
    let count = match options.pace {
        Pace::Rate(rate) => ((f64::from(rate) * seconds).ceil() as usize).max(1),
        Pace::Concurrency(_) => {
            (MAX_POOL_BYTES / body_len(options.body_size)).clamp(1_000, MAX_POOL_BODIES)
        }
    };
    let pool = prepare(&client, count, options.body_size);
    eprintln!("{}", pool.describe());

    let progress = Progress::new();
    let ticker = std::io::stderr()
        .is_terminal()
        .then(|| tokio::spawn(show_progress(progress.clone(), options.duration)));
    let run = match options.pace {
        Pace::Rate(rate) => {
            open_loop(
                "authorize (fixed rate)",
                &http,
                &url,
                rate,
                pool.bodies,
                &progress,
            )
            .await
        }
        Pace::Concurrency(concurrency) => {
            let request = authorize_requests(&http, &url, pool.bodies);
            closed_loop(
                "authorize (closed loop)",
                concurrency,
                options.duration,
                count,
                request,
                &progress,
            )
            .await
        }
    };
    if let Some(ticker) = ticker {
        ticker.abort();
        // Clear the progress line so the report starts on a clean one.
        eprint!("\r\x1b[2K");
    }
    let ended_early =
        (matches!(options.pace, Pace::Concurrency(_)) && run.requests() == count).then_some(count);
    Ok(Outcome { run, ended_early })
}

/// Rewrites one stderr line four times a second: time, calls sent, answered, failed.
async fn show_progress(progress: Arc<Progress>, duration: Duration) {
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        let elapsed = started.elapsed().as_secs_f64();
        let sent = progress.sent.load(Ordering::Relaxed);
        let answered = progress.answered.load(Ordering::Relaxed);
        let failed = progress.failed.load(Ordering::Relaxed);
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[2K{elapsed:5.1}/{:.0} s  sent {sent}  answered {answered}  failed {failed}  {:.0} req/s",
            duration.as_secs_f64(),
            answered as f64 / elapsed.max(0.001),
        );
        let _ = err.flush();
    }
}
