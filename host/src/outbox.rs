//! Delivery of queued callbacks as a small state machine: lease due rows (per transaction,
//! in queue order), sign the exact stored bytes with the gateway's current secret through
//! the front that queued them, POST them, and let `decide` turn the attempt's result into
//! a `Delivery`: delivered, retry at a time (backoff with jitter, never before the
//! receiver's `Retry-After`), or a dead letter kept for an operator to replay. Rows are
//! durable, so a restart resumes them; delivery is at least once (the receiver
//! de-duplicates by `action_id`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;

use reqwest::StatusCode;
use reqwest::header::RETRY_AFTER;
use tokio::sync::Notify;

use crate::config::{Config, OutboxConfig};
use crate::payments::Front;
use crate::store::{Callback, Store, now_ms};

const BATCH: i64 = 32;
const IDLE_POLL: Duration = Duration::from_millis(250);

/// What one delivery attempt leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Delivered,
    /// Due again at this unix time (ms).
    RetryAt(i64),
    /// Given up on, with the reason an operator reads.
    DeadLetter(String),
}

/// How one attempt went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptResult {
    /// The receiver answered; `retry_after_ms` is its `Retry-After` as a delay from now.
    Answered {
        status: u16,
        retry_after_ms: Option<u64>,
    },
    /// No answer: refused, timed out, cut.
    Transport(String),
}

impl AttemptResult {
    fn describe(&self) -> String {
        match self {
            AttemptResult::Answered { status, .. } => match StatusCode::from_u16(*status) {
                Ok(s) => format!("receiver answered {s}"),
                Err(_) => format!("receiver answered {status}"),
            },
            AttemptResult::Transport(e) => e.clone(),
        }
    }
}

/// The delivery state machine's one transition. `attempts` counts earlier attempts (since
/// queueing or the last replay), `age_from` is when that count started.
pub fn decide(
    config: &OutboxConfig,
    result: &AttemptResult,
    attempts: i64,
    age_from: i64,
    now: i64,
) -> Delivery {
    let retry_after_ms = match result {
        AttemptResult::Answered { status, .. } if (200..300).contains(status) => {
            return Delivery::Delivered;
        }
        // 408 and 429 say "later"; 5xx is the receiver's trouble. Any other answer
        // (another 4xx, a redirect, which is not followed) will not change by itself.
        AttemptResult::Answered {
            status: 408 | 429 | 500..=599,
            retry_after_ms,
        } => *retry_after_ms,
        AttemptResult::Answered { .. } => {
            return Delivery::DeadLetter(format!("{}; not retried", result.describe()));
        }
        AttemptResult::Transport(_) => None,
    };
    if now - age_from >= config.give_up_after_ms as i64 {
        return Delivery::DeadLetter(format!(
            "given up after {} attempts over {} ms: {}",
            attempts + 1,
            now - age_from,
            result.describe()
        ));
    }
    let mut delay = backoff_ms(config, attempts);
    if let Some(asked) = retry_after_ms {
        // Never before the receiver asked, but a receiver cannot park a callback for
        // longer than the longest backoff.
        delay = delay.max(asked.min(config.max_retry_ms));
    }
    Delivery::RetryAt(now + delay as i64)
}

/// `Retry-After` as a delay from `now`: delay-seconds or an HTTP date (RFC 9110 10.2.3).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<u64> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(seconds.saturating_mul(1_000));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).map_or(0, |d| d.as_millis() as u64))
}

/// Delay before attempt `attempts + 1`: doubling from `first`, capped at `max`, with
/// ±20% jitter so a recovering receiver is not hit by every retry at once.
pub fn backoff_ms(config: &OutboxConfig, attempts: i64) -> u64 {
    let exp = attempts.clamp(0, 30) as u32;
    let base = config
        .first_retry_ms
        .saturating_mul(1u64 << exp)
        .min(config.max_retry_ms);
    let jitter = 0.8 + rand::random::<f64>() * 0.4;
    ((base as f64) * jitter) as u64
}

pub struct Outbox {
    store: Arc<dyn Store>,
    /// The configuration the process runs with: gateways and their secrets at send time.
    config: Arc<Config>,
    fronts: HashMap<&'static str, Arc<dyn Front>>,
    client: reqwest::Client,
    wake: Arc<Notify>,
}

impl Outbox {
    pub fn new(
        store: Arc<dyn Store>,
        config: Arc<Config>,
        fronts: Vec<Arc<dyn Front>>,
        wake: Arc<Notify>,
    ) -> Outbox {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_millis(config.outbox.delivery_timeout_ms))
            .build()
            .expect("TLS backend initialises");
        Outbox {
            store,
            config,
            fronts: fronts.into_iter().map(|f| (f.name(), f)).collect(),
            client,
            wake,
        }
    }

    /// Delivers what is due, then waits for new rows or the next poll, until `stop`: then
    /// one last round for what was queued meanwhile (the calls drained at shutdown queue
    /// their callbacks just before), and it returns. What is left goes out at the next start.
    pub async fn run(self, stop: CancellationToken) {
        loop {
            match self.deliver_due().await {
                Ok(n) if n > 0 && !stop.is_cancelled() => continue,
                Ok(_) => {}
                Err(e) => tracing::error!("outbox: {e}"),
            }
            if stop.is_cancelled() {
                return;
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(IDLE_POLL) => {}
                _ = stop.cancelled() => {}
            }
        }
    }

    /// Delivers one batch of due callbacks; returns how many were attempted.
    pub async fn deliver_due(&self) -> Result<usize, crate::store::StoreError> {
        let now = now_ms();
        // A claimed row stays invisible to other workers while it is delivered; if this
        // process dies mid-delivery it is due again once the lease (twice the delivery
        // timeout) has passed.
        let lease = 2 * self.config.outbox.delivery_timeout_ms as i64 + 1_000;
        let due = self.store.claim_callbacks(now, now + lease, BATCH).await?;
        let n = due.len();
        let results = futures::future::join_all(due.into_iter().map(|cb| async move {
            let delivery = self.attempt(&cb).await;
            (cb, delivery)
        }))
        .await;
        for (cb, (delivery, error)) in results {
            let now = now_ms();
            let attempt = cb.attempts + 1;
            match &delivery {
                Delivery::Delivered => {
                    tracing::info!(gateway = %cb.gateway, action_id = ?cb.action_id, attempt, "callback delivered");
                    self.store.callback_delivered(cb.id, now).await?;
                }
                Delivery::RetryAt(at) => {
                    tracing::warn!(gateway = %cb.gateway, action_id = ?cb.action_id, attempt, retry_in_ms = at - now, "callback not delivered: {error}");
                    self.store
                        .callback_failed(cb.id, Some(*at), &error, now)
                        .await?;
                }
                Delivery::DeadLetter(reason) => {
                    tracing::error!(gateway = %cb.gateway, action_id = ?cb.action_id, callback_id = cb.id, attempt, "callback dead-lettered (replay: POST /admin/callbacks/{}/replay): {reason}", cb.id);
                    self.store.callback_failed(cb.id, None, reason, now).await?;
                }
            }
        }
        Ok(n)
    }

    /// One attempt and its decision, with the error text to record.
    async fn attempt(&self, cb: &Callback) -> (Delivery, String) {
        let headers = match self.signed_headers(cb) {
            Ok(h) => h,
            Err(reason) => {
                let reason = format!("not sent: {reason}");
                return (Delivery::DeadLetter(reason.clone()), reason);
            }
        };
        let result = self.send(cb, headers).await;
        let delivery = decide(
            &self.config.outbox,
            &result,
            cb.attempts,
            cb.age_from,
            now_ms(),
        );
        (delivery, result.describe())
    }

    /// The stored headers plus the front's signature over the stored body, made now.
    fn signed_headers(&self, cb: &Callback) -> Result<Vec<(String, String)>, String> {
        let Some(front) = &cb.front else {
            // Queued before signing moved to send time: signed then, sent as stored.
            return Ok(cb.headers.clone());
        };
        let front = self
            .fronts
            .get(front.as_str())
            .ok_or_else(|| format!("no front `{front}` to sign it"))?;
        let gateway = self
            .config
            .gateway(&cb.gateway)
            .ok_or_else(|| format!("gateway `{}` is no longer configured", cb.gateway))?;
        let mut headers = cb.headers.clone();
        headers.extend(front.sign(gateway, &cb.body).map_err(|e| e.to_string())?);
        Ok(headers)
    }

    async fn send(&self, cb: &Callback, headers: Vec<(String, String)>) -> AttemptResult {
        let mut request = self.client.post(&cb.url).body(cb.body.clone());
        for (name, value) in &headers {
            request = request.header(name.as_str(), value.as_str());
        }
        match request.send().await {
            Ok(resp) => AttemptResult::Answered {
                status: resp.status().as_u16(),
                retry_after_ms: resp
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, SystemTime::now())),
            },
            Err(e) if e.is_timeout() => AttemptResult::Transport("timed out".into()),
            Err(e) if e.is_connect() => {
                AttemptResult::Transport("connection refused or unreachable".into())
            }
            Err(e) => AttemptResult::Transport(format!("{}", e.without_url())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> OutboxConfig {
        OutboxConfig {
            first_retry_ms: 1_000,
            max_retry_ms: 60_000,
            give_up_after_ms: 86_400_000,
            delivery_timeout_ms: 5_000,
        }
    }

    fn answered(status: u16) -> AttemptResult {
        AttemptResult::Answered {
            status,
            retry_after_ms: None,
        }
    }

    const NOW: i64 = 1_700_000_000_000;

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        let config = config();
        for _ in 0..100 {
            let first = backoff_ms(&config, 0);
            assert!((800..=1_200).contains(&first), "{first}");
            let fourth = backoff_ms(&config, 3);
            assert!((6_400..=9_600).contains(&fourth), "{fourth}");
            let capped = backoff_ms(&config, 40);
            assert!((48_000..=72_000).contains(&capped), "{capped}");
        }
        // The default schedule keeps retrying for at least 24 hours.
        let defaults = OutboxConfig::default();
        assert!(defaults.give_up_after_ms >= 24 * 3_600_000);
    }

    #[test]
    fn success_is_delivered() {
        for status in [200, 201, 202, 204, 299] {
            assert_eq!(
                decide(&config(), &answered(status), 0, NOW, NOW),
                Delivery::Delivered
            );
        }
    }

    #[test]
    fn other_client_errors_are_dead_after_one_try() {
        for status in [400, 401, 403, 404, 409, 410, 422, 301, 302] {
            match decide(&config(), &answered(status), 0, NOW, NOW) {
                Delivery::DeadLetter(reason) => {
                    assert!(reason.contains(&status.to_string()), "{reason}")
                }
                other => panic!("{status}: {other:?}"),
            }
        }
    }

    #[test]
    fn timeouts_throttling_server_errors_and_transport_are_retried_with_backoff() {
        let results = [
            answered(408),
            answered(429),
            answered(500),
            answered(502),
            answered(503),
            answered(599),
            AttemptResult::Transport("connection refused or unreachable".into()),
        ];
        for result in results {
            for _ in 0..20 {
                match decide(&config(), &result, 2, NOW - 10_000, NOW) {
                    // Third attempt failed: 4 s ±20%.
                    Delivery::RetryAt(at) => {
                        assert!((NOW + 3_200..=NOW + 4_800).contains(&at), "{result:?} {at}")
                    }
                    other => panic!("{result:?}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn retry_after_is_never_undercut_and_is_capped() {
        let asked = |ms| AttemptResult::Answered {
            status: 429,
            retry_after_ms: Some(ms),
        };
        for _ in 0..20 {
            // Longer than the backoff: exactly what it asks.
            assert_eq!(
                decide(&config(), &asked(30_000), 0, NOW, NOW),
                Delivery::RetryAt(NOW + 30_000)
            );
            // Shorter than the backoff: the backoff.
            let Delivery::RetryAt(at) = decide(&config(), &asked(10), 0, NOW, NOW) else {
                panic!()
            };
            assert!(at >= NOW + 800, "{at}");
            // A week: capped at max_retry_ms.
            assert_eq!(
                decide(&config(), &asked(7 * 86_400_000), 0, NOW, NOW),
                Delivery::RetryAt(NOW + 60_000)
            );
        }
        // A 503 may carry it too.
        let busy = AttemptResult::Answered {
            status: 503,
            retry_after_ms: Some(20_000),
        };
        assert_eq!(
            decide(&config(), &busy, 0, NOW, NOW),
            Delivery::RetryAt(NOW + 20_000)
        );
    }

    #[test]
    fn past_the_give_up_age_a_retryable_failure_is_a_dead_letter() {
        let config = config();
        let old = NOW - config.give_up_after_ms as i64;
        match decide(&config, &answered(503), 41, old, NOW) {
            Delivery::DeadLetter(reason) => {
                assert!(reason.contains("42 attempts"), "{reason}");
                assert!(reason.contains("503"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        // Just before it: retried.
        assert!(matches!(
            decide(&config, &answered(503), 41, old + 1, NOW),
            Delivery::RetryAt(_)
        ));
        // A success is a success at any age.
        assert_eq!(
            decide(&config, &answered(200), 41, old, NOW),
            Delivery::Delivered
        );
    }

    /// A receiver on 127.0.0.1 recording each request's signature header and body.
    async fn receiver() -> (
        String,
        Arc<std::sync::Mutex<Vec<(Option<String>, Vec<u8>)>>>,
    ) {
        use axum::http::HeaderMap;
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = seen.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let sink = sink.clone();
                async move {
                    let signature = headers
                        .get("X-CommerceLayer-Signature")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    sink.lock().unwrap().push((signature, body.to_vec()));
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, seen)
    }

    #[tokio::test]
    async fn signs_at_send_time_and_dead_letters_what_it_cannot_sign() {
        use crate::protocol::commerce_layer::{CommerceLayer, sign};
        use crate::store::outbox::{CallbackState, NewCallback};
        let (url, seen) = receiver().await;
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(
            crate::store::sqlite::SqliteStore::open(dir.path().join("t.db").to_str().unwrap())
                .await
                .unwrap(),
        );
        let raw = "[plugins]\ndir = \"plugins\"\n\
            [[gateways]]\nid = \"signed\"\nplugin = \"sandbox\"\nshared_secret = \"current-secret\"\n\
            [[gateways]]\nid = \"no_secret\"\nplugin = \"sandbox\"\n";
        let config = Config::from_toml(
            raw,
            std::path::Path::new("config.toml"),
            std::path::Path::new("/tmp"),
            &|_| None,
        )
        .unwrap();
        let queue = |gateway: &str, body: &str| NewCallback {
            gateway: gateway.into(),
            front: "commerce_layer".into(),
            ordering_key: Some(format!("txn-{gateway}")),
            url: url.clone(),
            action_id: Some(format!("act-{gateway}")),
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.as_bytes().to_vec(),
        };
        for (gateway, body) in [
            ("signed", r#"{"a":1}"#),
            ("no_secret", "{}"),
            ("gone", "{}"),
        ] {
            store.enqueue_callback(queue(gateway, body)).await.unwrap();
        }
        let outbox = Outbox::new(
            store.clone(),
            Arc::new(config),
            vec![CommerceLayer::front()],
            Arc::new(Notify::new()),
        );
        assert_eq!(outbox.deliver_due().await.unwrap(), 3);

        // Only the signable one was sent, signed over the exact stored bytes.
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen[0].1, br#"{"a":1}"#);
        assert_eq!(
            seen[0].0.as_deref(),
            Some(sign("current-secret", br#"{"a":1}"#).as_str())
        );
        let dead = store.list_callbacks(CallbackState::Dead, 10).await.unwrap();
        let reason = |gateway: &str| {
            dead.iter()
                .find(|c| c.gateway == gateway)
                .and_then(|c| c.last_error.clone())
                .unwrap_or_else(|| panic!("{gateway} not dead: {dead:?}"))
        };
        assert!(reason("no_secret").contains("no shared_secret"), "{dead:?}");
        assert!(reason("gone").contains("no longer configured"), "{dead:?}");
        assert_eq!(dead.len(), 2);
    }

    #[test]
    fn retry_after_in_seconds_or_as_an_http_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("2", now), Some(2_000));
        assert_eq!(parse_retry_after(" 120 ", now), Some(120_000));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(parse_retry_after(&later, now), Some(90_000));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(90));
        assert_eq!(parse_retry_after(&past, now), Some(0));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
    }
}
