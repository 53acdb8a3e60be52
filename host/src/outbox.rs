//! Delivery of queued callbacks: lease due rows, POST the exact stored bytes with their
//! stored headers (the signature among them), and on failure retry with exponential
//! backoff and jitter until the give-up age. Rows are durable, so a restart resumes them;
//! delivery is at least once (the receiver de-duplicates by `action_id`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::config::OutboxConfig;
use crate::store::{Callback, Store, now_ms};

const BATCH: i64 = 32;
const IDLE_POLL: Duration = Duration::from_millis(250);

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
    config: OutboxConfig,
    client: reqwest::Client,
    wake: Arc<Notify>,
}

impl Outbox {
    pub fn new(store: Arc<dyn Store>, config: OutboxConfig, wake: Arc<Notify>) -> Outbox {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_millis(config.delivery_timeout_ms))
            .build()
            .expect("TLS backend initialises");
        Outbox {
            store,
            config,
            client,
            wake,
        }
    }

    /// Runs forever: deliver what is due, then wait for new rows or the next poll.
    pub async fn run(self) {
        loop {
            match self.deliver_due().await {
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(e) => tracing::error!("outbox: {e}"),
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(IDLE_POLL) => {}
            }
        }
    }

    /// Delivers one batch of due callbacks; returns how many were attempted.
    pub async fn deliver_due(&self) -> Result<usize, crate::store::StoreError> {
        let now = now_ms();
        // A claimed row stays invisible to other workers while it is delivered; if this
        // process dies mid-delivery it is due again once the lease (twice the delivery
        // timeout) has passed.
        let lease = 2 * self.config.delivery_timeout_ms as i64 + 1_000;
        let due = self.store.claim_callbacks(now, now + lease, BATCH).await?;
        let n = due.len();
        let results = futures::future::join_all(due.into_iter().map(|cb| async move {
            let outcome = self.send(&cb).await;
            (cb, outcome)
        }))
        .await;
        for (cb, outcome) in results {
            let now = now_ms();
            match outcome {
                Ok(()) => {
                    tracing::info!(gateway = %cb.gateway, action_id = ?cb.action_id, attempt = cb.attempts + 1, "callback delivered");
                    self.store.callback_delivered(cb.id, now).await?;
                }
                Err(error) => {
                    let age = now - cb.created_at;
                    let next = if age >= self.config.give_up_after_ms as i64 {
                        None
                    } else {
                        Some(now + backoff_ms(&self.config, cb.attempts) as i64)
                    };
                    match next {
                        Some(at) => {
                            tracing::warn!(gateway = %cb.gateway, action_id = ?cb.action_id, attempt = cb.attempts + 1, retry_in_ms = at - now, "callback not delivered: {error}")
                        }
                        None => {
                            tracing::error!(gateway = %cb.gateway, action_id = ?cb.action_id, attempts = cb.attempts + 1, "callback given up: {error}")
                        }
                    }
                    self.store.callback_failed(cb.id, next, &error, now).await?;
                }
            }
        }
        Ok(n)
    }

    async fn send(&self, cb: &Callback) -> Result<(), String> {
        let mut request = self.client.post(&cb.url).body(cb.body.clone());
        for (name, value) in &cb.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        match request.send().await {
            Ok(resp) if resp.status().is_success() => Ok(()),
            Ok(resp) => Err(format!("receiver answered {}", resp.status())),
            Err(e) if e.is_timeout() => Err("timed out".into()),
            Err(e) if e.is_connect() => Err("connection refused or unreachable".into()),
            Err(e) => Err(format!("{}", e.without_url())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        let config = OutboxConfig {
            first_retry_ms: 1_000,
            max_retry_ms: 60_000,
            give_up_after_ms: 86_400_000,
            delivery_timeout_ms: 5_000,
        };
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
}
