//! Load runs against the Commerce Layer front: unique, signed authorize bodies prepared
//! before the clock starts, sent in a closed loop (a fixed number of workers, each sending
//! as soon as its previous call answered) or an open loop (a fixed rate, latency counted
//! from each call's planned send time, so a stalled server cannot hide its stall by slowing
//! the sender down). The `load` command ([`command`]) and the `cl_load` benchmark both
//! measure with this code.

pub mod command;
pub mod stats;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub use stats::{Run, Sample, print_header, summarise};

use crate::cl::{self, ClClient, ExternalPayment, LineItem, Order};

/// One signed request, ready to send.
pub struct Prepared {
    pub body: Vec<u8>,
    pub signature: String,
}

/// The authorize document a run sends copies of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodySize {
    /// The sample order with nothing else included and no null attributes (about 4 kB):
    /// what parsing costs at the least.
    Minimal,
    /// The simulator's sample order: two SKU lines, shipping, a discount (about 28 kB).
    Small,
    /// A 60-line cart: what a big basket costs the gateway to parse (several times larger).
    Large,
}

impl BodySize {
    fn order(self) -> Order {
        match self {
            BodySize::Minimal | BodySize::Small => Order::sample(),
            BodySize::Large => {
                let lines = (0..60)
                    .map(|i| LineItem::sku(&format!("SKU{i:05}"), "Catalogue item", 1, 990))
                    .collect();
                Order::sample().with_line_items(lines)
            }
        }
    }

    /// The authorize document of this size for `payment`.
    fn document(self, payment: &ExternalPayment) -> serde_json::Value {
        match self {
            BodySize::Minimal => cl::minimal_authorize_body(payment),
            BodySize::Small | BodySize::Large => cl::authorize_body(payment),
        }
    }
}

/// Pre-built bodies and what building them took.
pub struct Pool {
    pub bodies: Vec<Prepared>,
    /// Bytes of one body.
    pub body_len: usize,
    pub took: Duration,
}

impl Pool {
    /// `prepared N signed authorize bodies of B bytes in T s`.
    pub fn describe(&self) -> String {
        format!(
            "prepared {} signed authorize bodies of {} bytes in {:.1} s",
            self.bodies.len(),
            self.body_len,
            self.took.as_secs_f64()
        )
    }
}

/// Bytes of one authorize body of `size`, to bound how many a run pre-builds.
pub fn body_len(size: BodySize) -> usize {
    size.document(&ExternalPayment::new(&size.order(), "tok_visa"))
        .to_string()
        .len()
}

/// `count` distinct authorize bodies for `client`'s gateway, signed with its secret. One
/// document is built; each copy gets a fresh external payment id (the authorize's natural
/// key) and order id by substitution in the serialised bytes, which costs a fraction of
/// building a new document.
pub fn prepare(client: &ClClient, count: usize, size: BodySize) -> Pool {
    let started = Instant::now();
    let order = size.order();
    let payment = ExternalPayment::new(&order, "tok_visa");
    let (template, _) = client.encode(&size.document(&payment));
    // serde_json writes UTF-8.
    let template = String::from_utf8_lossy(&template).into_owned();
    let bodies = (0..count)
        .map(|_| {
            // Ids are random 10-character strings, so they occur nowhere else in the text.
            let body = template
                .replace(&payment.id, &cl::new_id())
                .replace(&order.id, &cl::new_id())
                .into_bytes();
            let signature = client.sign(&body);
            Prepared { body, signature }
        })
        .collect();
    Pool {
        bodies,
        body_len: template.len(),
        took: started.elapsed(),
    }
}

/// Builds the request with the given index.
pub type MakeRequest = Arc<dyn Fn(usize) -> reqwest::RequestBuilder + Send + Sync>;

/// Requests that post pre-built authorize bodies to `url`, one per index.
pub fn authorize_requests(http: &reqwest::Client, url: &str, bodies: Vec<Prepared>) -> MakeRequest {
    let (http, url) = (http.clone(), url.to_owned());
    Arc::new(move |i| signed_post(&http, &url, &bodies[i]))
}

/// Requests that post pre-built bodies to `url` round and round: for a stateless endpoint
/// (the benchmark's baseline), where a repeated body costs what a new one would.
pub fn cycling_requests(http: &reqwest::Client, url: &str, bodies: Vec<Prepared>) -> MakeRequest {
    assert!(!bodies.is_empty(), "no bodies to cycle through");
    let (http, url) = (http.clone(), url.to_owned());
    Arc::new(move |i| signed_post(&http, &url, &bodies[i % bodies.len()]))
}

/// Requests spread over several gateways in turn, each with its own pre-built bodies.
pub fn spread_requests(
    http: &reqwest::Client,
    urls: Vec<String>,
    bodies: Vec<Vec<Prepared>>,
) -> MakeRequest {
    let http = http.clone();
    let n = urls.len();
    Arc::new(move |i| signed_post(&http, &urls[i % n], &bodies[i % n][i / n]))
}

fn signed_post(http: &reqwest::Client, url: &str, p: &Prepared) -> reqwest::RequestBuilder {
    http.post(url)
        .header("content-type", cl::JSON_API)
        .header(cl::SIGNATURE_HEADER, &p.signature)
        .body(p.body.clone())
}

/// Calls sent and answered so far, for a progress line while a run goes on.
#[derive(Debug, Default)]
pub struct Progress {
    pub sent: AtomicUsize,
    pub answered: AtomicUsize,
    pub failed: AtomicUsize,
}

impl Progress {
    pub fn new() -> Arc<Progress> {
        Arc::new(Progress::default())
    }
}

/// Sends a request and reports its latency and whether it failed (anything but 200).
pub async fn measure(request: reqwest::RequestBuilder, since: Instant) -> Sample {
    let (status, error) = match request.send().await {
        Ok(reply) => {
            let status = reply.status();
            let body = reply.bytes().await;
            match body {
                // 200 is the only success: an authorize answering 202 (pending) would be a
                // different measurement.
                Ok(_) if status == reqwest::StatusCode::OK => (status.as_u16(), None),
                Ok(body) => (
                    status.as_u16(),
                    Some(format!("{status} {}", String::from_utf8_lossy(&body))),
                ),
                Err(e) => (status.as_u16(), Some(e.to_string())),
            }
        }
        Err(e) => (0, Some(error_chain(&e))),
    };
    Sample {
        latency: since.elapsed(),
        status,
        error,
    }
}

/// An error with its causes (reqwest's own text leaves out "connection refused").
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

fn record(progress: &Progress, sample: &Sample) {
    progress.answered.fetch_add(1, Ordering::Relaxed);
    if sample.error.is_some() {
        progress.failed.fetch_add(1, Ordering::Relaxed);
    }
}

/// `concurrency` workers, each sending its next request as soon as the previous answers,
/// until the duration is over or `limit` requests have been sent.
pub async fn closed_loop(
    name: &'static str,
    concurrency: usize,
    duration: Duration,
    limit: usize,
    request: MakeRequest,
    progress: &Arc<Progress>,
) -> Run {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (next, request, progress) = (next.clone(), request.clone(), progress.clone());
            tokio::spawn(async move {
                let mut samples = Vec::new();
                while Instant::now() < deadline {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= limit {
                        break;
                    }
                    progress.sent.fetch_add(1, Ordering::Relaxed);
                    let sample = measure(request(i), Instant::now()).await;
                    record(&progress, &sample);
                    samples.push(sample);
                }
                samples
            })
        })
        .collect();
    let mut samples = Vec::new();
    for w in workers {
        // A worker only panics if the request builder does: that is a bug worth surfacing.
        samples.extend(w.await.expect("load worker"));
    }
    summarise(name, samples, started.elapsed())
}

/// Sends one request per planned instant (`rate` per second), each in its own task, and
/// measures from the planned instant rather than the actual send.
pub async fn open_loop(
    name: &'static str,
    http: &reqwest::Client,
    url: &str,
    rate: u32,
    bodies: Vec<Prepared>,
    progress: &Arc<Progress>,
) -> Run {
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(bodies.len());
    for (i, p) in bodies.into_iter().enumerate() {
        let planned = started + interval * i as u32;
        tokio::time::sleep_until(planned.into()).await;
        let request = http
            .post(url)
            .header("content-type", cl::JSON_API)
            .header(cl::SIGNATURE_HEADER, p.signature)
            .body(p.body);
        progress.sent.fetch_add(1, Ordering::Relaxed);
        let progress = progress.clone();
        tasks.push(tokio::spawn(async move {
            let sample = measure(request, planned).await;
            record(&progress, &sample);
            sample
        }));
    }
    let mut samples = Vec::with_capacity(tasks.len());
    for t in tasks {
        samples.push(t.await.expect("request task"));
    }
    summarise(name, samples, started.elapsed())
}
